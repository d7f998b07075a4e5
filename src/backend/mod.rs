//! Inference engines behind one trait: ONNX Runtime (CPU or CUDA, loaded at run time) and `tract`
//! (pure Rust, always built: the verifier, and the fallback when ORT is absent).

pub mod bench;
pub mod device;
pub mod ort;
mod tract;

pub use self::device::{Device, DeviceRequest};
pub use self::ort::{CudaTuning, OrtBackend, OrtOptions};
pub use self::tract::TractBackend;

use std::path::Path;

use ndarray::ArrayD;

use crate::{Error, Result};

/// The element type of a tensor graft feeds an engine, parsed once from its name (`f32`, `i64`,
/// `u8`; the same words in JSON, as in an image model's `graft.preprocess`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer (token ids, masks).
    I64,
    /// 8-bit unsigned integer (raw RGB).
    U8,
}

impl Dtype {
    /// The type's short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
            Dtype::U8 => "u8",
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" | "float" => Ok(Dtype::F32),
            "i64" | "int64" => Ok(Dtype::I64),
            "u8" | "uint8" => Ok(Dtype::U8),
            _ => Err(Error::Invalid(format!("unknown element type `{s}`: expected f32, i64 or u8"))),
        }
    }
}

/// A tensor crossing the engine boundary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// 32-bit floats.
    F32(ArrayD<f32>),
    /// 64-bit integers.
    I64(ArrayD<i64>),
    /// Bytes.
    U8(ArrayD<u8>),
}

impl Value {
    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Value::F32(_) => Dtype::F32,
            Value::I64(_) => Dtype::I64,
            Value::U8(_) => Dtype::U8,
        }
    }

    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(a) => a.shape(),
            Value::I64(a) => a.shape(),
            Value::U8(a) => a.shape(),
        }
    }

    /// The f32 array, or an error naming `name`.
    pub fn into_f32(self, name: &str) -> Result<ArrayD<f32>> {
        match self {
            Value::F32(a) => Ok(a),
            other => Err(Error::Tensor { name: name.into(), msg: format!("is {}, expected f32", other.dtype()) }),
        }
    }
}

/// Name, element type and shape (`None` for a symbolic dimension) of a model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its element type, as the engine names it.
    pub dtype: String,
    /// Its dimensions.
    pub shape: Vec<Option<usize>>,
}

/// An engine with one loaded model. Engines are `Send`: a model can move to another thread (share
/// one between threads behind a `Mutex`, as [`crate::predict::Model`] does).
pub trait Backend: Send {
    /// Short engine name (`tract`, `ort`).
    fn name(&self) -> &'static str;
    /// Where it runs (`cpu`, `cuda:0`).
    fn device(&self) -> String {
        "cpu".into()
    }
    /// The model's inputs, in order.
    fn inputs(&self) -> &[TensorInfo];
    /// The model's outputs, in order.
    fn outputs(&self) -> &[TensorInfo];
    /// Runs the model on named inputs; returns every output, in order.
    fn run(&mut self, inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>>;

    /// Runs the model and returns the output named `name` as f32.
    fn run_output(&mut self, inputs: Vec<(String, Value)>, name: &str) -> Result<ArrayD<f32>> {
        let outputs = self.run(inputs)?;
        let backend = self.name();
        let (_, v) = outputs
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Error::Backend { backend, msg: format!("the model has no output `{name}`") })?;
        v.into_f32(name)
    }
}

/// Serialises a type as its `Display` string and deserialises it through its `FromStr`, so that
/// pipelines and reports hold the same words the command line takes (`cuda:1`, `tract`).
macro_rules! serde_as_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(|e: crate::Error| serde::de::Error::custom(e))
            }
        }
    };
}
pub(crate) use serde_as_str;

/// Loads `path` on tract.
pub fn tract(path: &Path) -> Result<Box<dyn Backend>> {
    Ok(Box::new(TractBackend::load(path)?))
}

/// Which engine `--backend` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// ONNX Runtime when it can be loaded, else tract (with a `log` warning).
    #[default]
    Auto,
    /// ONNX Runtime; an error when it cannot be loaded.
    Ort,
    /// tract (pure Rust, always available).
    Tract,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::Ort => "ort",
            BackendKind::Tract => "tract",
        })
    }
}

serde_as_str!(BackendKind);

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "ort" => Ok(BackendKind::Ort),
            "tract" => Ok(BackendKind::Tract),
            _ => Err(Error::Invalid(format!("unknown backend `{s}`: expected auto, ort or tract"))),
        }
    }
}

/// Engine choice plus ORT's device and threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineOptions {
    /// Which engine.
    pub backend: BackendKind,
    /// ONNX Runtime's device and threads.
    pub ort: OrtOptions,
}

/// Loads `path` on the engine `opts` asks for. `auto` falling back to tract is reported through
/// the `log` facade (warning), never printed.
pub fn open(path: &Path, opts: &EngineOptions) -> Result<Box<dyn Backend>> {
    match opts.backend {
        BackendKind::Tract => tract(path),
        BackendKind::Ort => Ok(Box::new(OrtBackend::load(path, &opts.ort)?)),
        BackendKind::Auto => match self::ort::init(opts.ort.device != DeviceRequest::Cpu) {
            Ok(_) => Ok(Box::new(OrtBackend::load(path, &opts.ort)?)),
            Err(e) => {
                log::warn!("{e}; using tract");
                tract(path)
            }
        },
    }
}
