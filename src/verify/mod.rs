//! Verification: run an exported graph on other engines and compare with the native model.

mod file;

pub use file::{cpu_features, verify_file};

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendKind, DeviceRequest, OrtBackend, OrtOptions};
use crate::train::metrics::argmax_rows;
use crate::{Error, Result};

/// Largest tolerated |difference| of probabilities between engines.
pub const TOLERANCE: f32 = 1e-4;

/// One engine compared with the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineCheck {
    /// The engine (`tract`, `ort`).
    pub engine: String,
    /// Examples compared.
    pub rows: usize,
    /// Largest absolute difference of any probability.
    pub max_abs_diff: f32,
    /// Share of rows whose argmax equals the reference's.
    pub argmax_agreement: f32,
}

impl EngineCheck {
    /// Compares `got` with `reference`.
    ///
    /// # Shapes
    /// both `[N, C]`
    pub fn compare(engine: &str, reference: ArrayView2<f32>, got: ArrayView2<f32>) -> Result<Self> {
        if reference.shape() != got.shape() {
            return Err(Error::Verification(format!(
                "{engine} returned shape {:?}, the reference {:?}",
                got.shape(),
                reference.shape()
            )));
        }
        let max_abs_diff = reference.iter().zip(got.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let agree = argmax_rows(reference).iter().zip(argmax_rows(got)).filter(|(a, b)| **a == *b).count();
        Ok(EngineCheck {
            engine: engine.to_string(),
            rows: reference.nrows(),
            max_abs_diff,
            argmax_agreement: agree as f32 / reference.nrows().max(1) as f32,
        })
    }

    /// Within tolerance and in full argmax agreement.
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= TOLERANCE && self.argmax_agreement == 1.0
    }
}

/// The verification result stored in `report.json` and printed by `graft verify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// What the engines are compared against (`native`).
    pub reference: String,
    /// The largest difference that passes.
    pub tolerance: f32,
    /// One per engine that ran.
    pub engines: Vec<EngineCheck>,
    /// Engines that could not run here, with the reason (e.g. ONNX Runtime not installed).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Every engine within `tolerance` with 100% argmax agreement.
    pub passed: bool,
}

impl Verification {
    /// Collects engine checks against the native reference.
    pub fn new(engines: Vec<EngineCheck>) -> Self {
        let passed = !engines.is_empty() && engines.iter().all(EngineCheck::passed);
        Verification { reference: "native".into(), tolerance: TOLERANCE, engines, skipped: Vec::new(), passed }
    }

    /// `Ok` when passed, else a [`Error::Verification`] naming the failing engines.
    pub fn ensure(&self) -> Result<()> {
        if self.passed {
            return Ok(());
        }
        let failing: Vec<String> = self
            .engines
            .iter()
            .filter(|e| !e.passed())
            .map(|e| {
                format!(
                    "{}: max |diff| {:.2e}, argmax agreement {:.2}%",
                    e.engine,
                    e.max_abs_diff,
                    e.argmax_agreement * 100.0
                )
            })
            .collect();
        Err(Error::Verification(failing.join("; ")))
    }

    /// Human-readable lines.
    pub fn summary(&self) -> String {
        let mut s: Vec<String> = self
            .engines
            .iter()
            .map(|e| {
                format!(
                    "{:<6} vs {}: {} rows, max |diff| {:.2e}, argmax agreement {:.2}% {}",
                    e.engine,
                    self.reference,
                    e.rows,
                    e.max_abs_diff,
                    e.argmax_agreement * 100.0,
                    if e.passed() { "ok" } else { "FAILED" }
                )
            })
            .collect();
        s.extend(self.skipped.iter().map(|r| format!("skipped {r}")));
        s.push(format!("verification {}", if self.passed { "passed" } else { "FAILED" }));
        s.join("\n")
    }
}

/// The engines a verification runs, and why any was skipped.
pub struct Engines {
    /// The engines loaded.
    pub engines: Vec<Box<dyn Backend>>,
    /// Engines that could not be loaded, with the reason.
    pub skipped: Vec<String>,
}

/// tract always; ONNX Runtime (CPU) when it can be loaded.
pub fn engines(model: &std::path::Path) -> Result<Engines> {
    engines_on(model, BackendKind::Auto)
}

/// The engines `kind` asks for: `auto` is tract, and ONNX Runtime (CPU) when it can be loaded;
/// `tract` or `ort` is that engine alone (an error when ONNX Runtime cannot be loaded).
pub fn engines_on(model: &std::path::Path, kind: BackendKind) -> Result<Engines> {
    let cpu = OrtOptions { device: DeviceRequest::Cpu, threads: None, ..Default::default() };
    let mut engines: Vec<Box<dyn Backend>> = Vec::new();
    let mut skipped = Vec::new();
    if kind != BackendKind::Ort {
        engines.push(crate::backend::tract(model)?);
    }
    match kind {
        BackendKind::Ort => engines.push(Box::new(OrtBackend::load(model, &cpu)?)),
        BackendKind::Auto => match crate::backend::ort::init(false) {
            Ok(_) => engines.push(Box::new(OrtBackend::load(model, &cpu)?)),
            Err(e) => skipped.push(e.to_string()),
        },
        BackendKind::Tract => skipped.push("ort: not asked for (--backend tract)".into()),
    }
    Ok(Engines { engines, skipped })
}

/// Runs every engine of [`engines`] on the same inputs and compares each with `reference`.
pub fn against(
    reference: &Array2<f32>,
    model: &std::path::Path,
    inputs: &[(String, crate::backend::Value)],
) -> Result<Verification> {
    against_on(BackendKind::Auto, reference, model, inputs)
}

/// [`against`] on the engines of [`engines_on`]`(model, kind)`.
pub fn against_on(
    kind: BackendKind,
    reference: &Array2<f32>,
    model: &std::path::Path,
    inputs: &[(String, crate::backend::Value)],
) -> Result<Verification> {
    let Engines { mut engines, skipped } = engines_on(model, kind)?;
    let mut checks = Vec::new();
    for engine in engines.iter_mut() {
        let got = engine.run_output(inputs.to_vec(), crate::export::OUTPUT)?;
        let got = got
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| Error::Tensor { name: crate::export::OUTPUT.into(), msg: e.to_string() })?;
        checks.push(EngineCheck::compare(engine.name(), reference.view(), got.view())?);
    }
    Ok(Verification { skipped, ..Verification::new(checks) })
}

/// Runs a tabular graph on tract and compares it with the native model's probabilities.
///
/// # Shapes
/// `x` `[N, F]`, `native` `[N, C]`
pub fn tabular(model: &std::path::Path, x: &ndarray::ArrayD<f32>, native: &Array2<f32>) -> Result<Verification> {
    let inputs = vec![(crate::export::TABULAR_INPUT.to_string(), crate::backend::Value::F32(x.clone()))];
    against(native, model, &inputs)
}

/// `graft verify MODEL --data CSV` for a tabular model: the native weights are read from
/// `head.safetensors` beside the model, the rows from `csv` (its label column, if any, is ignored).
pub fn tabular_csv(model: &std::path::Path, csv: &std::path::Path, kind: BackendKind) -> Result<Verification> {
    let meta = crate::export::ModelMeta::read(model)?;
    let features = meta
        .features
        .ok_or_else(|| Error::onnx(model.display().to_string(), "metadata `graft.features` is missing"))?;
    let table =
        crate::data::read_csv(csv, &crate::data::CsvOptions { features: Some(features), ..Default::default() })?;
    let head = model.with_file_name("head.safetensors");
    let (mut native, _) = crate::nn::Sequential::load(&head)?;
    let reference = crate::train::predict(&mut native, &table.x, 1024);
    let inputs = vec![(crate::export::TABULAR_INPUT.to_string(), crate::backend::Value::F32(table.x))];
    against_on(kind, &reference, model, &inputs)
}
