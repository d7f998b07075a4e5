//! ONNX Runtime through `ort` with `load-dynamic`: the shared library is found at run time
//! ([`find_library`]), so graft builds without downloading anything and runs where ORT is absent
//! (tract then does the work).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::ep::ExecutionProvider;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, ValueType};

use super::device::{self, Device, DeviceRequest};
use super::{Backend, TensorInfo, Value};
use crate::{Error, Result};

/// The command that installs ONNX Runtime, named in every "not found" error.
pub const INSTALL_HINT: &str = "install it with `scripts/setup-ort.sh` (CUDA: `scripts/setup-ort.sh --gpu`), set ORT_DYLIB_PATH, or use --backend tract";

const LIB: &str = "libonnxruntime.so";

/// Where to look for the library, in order: `ORT_DYLIB_PATH`; the project folders `.ort/gpu` (when
/// a GPU is wanted) and `.ort/cpu` under each base folder; finally the bare name for the system
/// loader.
pub fn library_candidates(env_path: Option<PathBuf>, bases: &[PathBuf], want_gpu: bool) -> Vec<PathBuf> {
    if let Some(p) = env_path {
        return vec![p];
    }
    let flavours: &[&str] = if want_gpu { &["gpu", "cpu"] } else { &["cpu", "gpu"] };
    let mut out: Vec<PathBuf> =
        bases.iter().flat_map(|b| flavours.iter().map(move |f| b.join(".ort").join(f).join(LIB))).collect();
    out.push(PathBuf::from(LIB));
    out
}

/// The base folders searched for `.ort/`: the current folder and the ancestors of the executable
/// (so `target/release/graft` finds the repository's `.ort`).
fn search_bases() -> Vec<PathBuf> {
    let mut bases = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        bases.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        bases.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    bases
}

/// The ONNX Runtime library graft would load.
pub fn find_library(want_gpu: bool) -> Result<PathBuf> {
    let env_path = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let from_env = env_path.is_some();
    let candidates = library_candidates(env_path, &search_bases(), want_gpu);
    for c in &candidates {
        if c.is_file() || (c.parent() == Some(Path::new("")) && !from_env) {
            return Ok(c.clone());
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(Error::Backend {
        backend: "ort",
        msg: format!("ONNX Runtime not found (looked at {}); {INSTALL_HINT}", looked.join(", ")),
    })
}

struct Runtime {
    library: PathBuf,
    env: ort::environment::Environment,
}

/// The process's one runtime, or why it cannot be loaded (the message of an `ort` backend error,
/// without the `ort: ` that its `Display` adds).
static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

fn runtime(want_gpu: bool) -> Result<&'static Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        let library = find_library(want_gpu).map_err(|e| match e {
            Error::Backend { msg, .. } => msg,
            other => other.to_string(),
        })?;
        let builder = ort::init_from(&library)
            .map_err(|e| format!("ONNX Runtime could not be loaded from {}: {e}; {INSTALL_HINT}", library.display()))?;
        let env = builder.with_name("graft").build().map_err(|e| format!("ONNX Runtime environment: {e}"))?;
        Ok(Runtime { library, env })
    });
    rt.as_ref().map_err(|msg| Error::Backend { backend: "ort", msg: msg.clone() })
}

/// Loads the library and creates the process's one ORT environment (first call wins); returns the
/// library's path.
pub fn init(want_gpu: bool) -> Result<&'static Path> {
    runtime(want_gpu).map(|rt| rt.library.as_path())
}

/// How to open an ORT session.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrtOptions {
    /// The device asked for.
    pub device: DeviceRequest,
    /// Intra-op threads (`None`: ORT's default, one per core).
    pub threads: Option<usize>,
    /// How the CUDA provider runs convolutions and matrix products (ignored on the CPU).
    pub cuda: CudaTuning,
}

/// CUDA provider settings that trade layout or precision for speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaTuning {
    /// Let convolutions and matrix products use TF32 tensor cores: faster, with features that
    /// differ from float32 ones by about 1e-3 relative (ORT's default: off).
    pub tf32: bool,
    /// Prefer `[N, H, W, C]` kernels for convolutions (ORT's default: `[N, C, H, W]`).
    pub nhwc: bool,
}

/// A model loaded in ONNX Runtime.
pub struct OrtBackend {
    session: Session,
    device: Device,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Backend { backend: "ort", msg: e.to_string() }
}

fn open(
    env: &ort::environment::Environment,
    path: &Path,
    device: Device,
    threads: Option<usize>,
    tuning: CudaTuning,
) -> std::result::Result<Session, String> {
    let mut b = Session::builder(env).map_err(|e| e.to_string())?;
    b = b.with_optimization_level(GraphOptimizationLevel::All).map_err(|e| e.to_string())?;
    if let Some(t) = threads {
        b = b.with_intra_threads(t).map_err(|e| e.to_string())?;
    }
    if let Device::Cuda(n) = device {
        let cuda = ort::ep::CUDA::default()
            .with_device_id(n as i32)
            .with_tf32(tuning.tf32)
            .with_prefer_nhwc(tuning.nhwc)
            .build()
            .error_on_failure();
        b = b.with_execution_providers([cuda]).map_err(|e| e.to_string())?;
    }
    b.commit_from_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn info(outlets: &[ort::value::Outlet]) -> Vec<TensorInfo> {
    outlets
        .iter()
        .map(|o| {
            let (dtype, shape) = match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => {
                    (format!("{ty:?}").to_lowercase(), shape.iter().map(|&d| usize::try_from(d).ok()).collect())
                }
                other => (format!("{other:?}"), Vec::new()),
            };
            TensorInfo { name: o.name().to_string(), dtype, shape }
        })
        .collect()
}

impl OrtBackend {
    /// Loads the model at `path` on the requested device.
    pub fn load(path: &Path, opts: &OrtOptions) -> Result<Self> {
        let env = &runtime(opts.device != DeviceRequest::Cpu)?.env;
        let mut cuda_session = None;
        let selection = device::select(opts.device, |n| {
            if !ort::ep::CUDA::is_available().unwrap_or(false) {
                return Err(
                    "this ONNX Runtime build has no CUDA provider; `scripts/setup-ort.sh --gpu` installs one".into()
                );
            }
            cuda_session = Some(open(env, path, Device::Cuda(n), opts.threads, opts.cuda)?);
            Ok(())
        })?;
        if let Some(why) = &selection.cuda_unavailable {
            log::debug!("--device auto: CUDA is not available ({why}); running on the CPU");
        }
        let session = match cuda_session {
            Some(s) => s,
            None => open(env, path, Device::Cpu, opts.threads, opts.cuda).map_err(err)?,
        };
        let (inputs, outputs) = (info(session.inputs()), info(session.outputs()));
        Ok(OrtBackend { session, device: selection.device, inputs, outputs })
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn device(&self) -> String {
        self.device.to_string()
    }

    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>> {
        let mut feed: Vec<(Cow<str>, SessionInputValue)> = Vec::with_capacity(inputs.len());
        for (name, v) in inputs {
            let value: SessionInputValue = match v {
                Value::F32(a) => ort::value::Tensor::from_array(a).map_err(err)?.into(),
                Value::I64(a) => ort::value::Tensor::from_array(a).map_err(err)?.into(),
                Value::U8(a) => ort::value::Tensor::from_array(a).map_err(err)?.into(),
            };
            feed.push((Cow::Owned(name), value));
        }
        let outputs = self.session.run(feed).map_err(err)?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for info in &self.outputs {
            let v = outputs
                .get(info.name.as_str())
                .ok_or_else(|| err(format!("no output `{}` in the results", info.name)))?;
            let value = match v.dtype().tensor_type() {
                Some(TensorElementType::Float32) => Value::F32(v.try_extract_array::<f32>().map_err(err)?.to_owned()),
                Some(TensorElementType::Int64) => Value::I64(v.try_extract_array::<i64>().map_err(err)?.to_owned()),
                Some(TensorElementType::Uint8) => Value::U8(v.try_extract_array::<u8>().map_err(err)?.to_owned()),
                other => return Err(err(format!("output `{}` has unsupported type {other:?}", info.name))),
            };
            result.push((info.name.clone(), value));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_search_order() {
        let bases = [PathBuf::from("/repo"), PathBuf::from("/opt")];
        let c = library_candidates(None, &bases, false);
        assert_eq!(c[0], PathBuf::from("/repo/.ort/cpu/libonnxruntime.so"));
        assert_eq!(c[1], PathBuf::from("/repo/.ort/gpu/libonnxruntime.so"));
        assert_eq!(c.last().unwrap(), &PathBuf::from("libonnxruntime.so"));
        assert_eq!(library_candidates(None, &bases, true)[0], PathBuf::from("/repo/.ort/gpu/libonnxruntime.so"));
        let env = library_candidates(Some(PathBuf::from("/x/lib.so")), &bases, true);
        assert_eq!(env, vec![PathBuf::from("/x/lib.so")]);
    }
}
