//! `graft verify MODEL --data DATA` for every task: the exported graph on tract and ONNX Runtime
//! against the native model (`head.safetensors` beside it). For models with a frozen backbone the
//! native reference is the head on features computed by ONNX Runtime from the backbone part of the
//! same file (the graph cut at the backbone's output).

use std::path::Path;

use ndarray::Array2;

use super::{against_on, tabular_csv, Verification};
use crate::backend::{BackendKind, DeviceRequest, EngineOptions, OrtOptions, Value};
use crate::export::{ModelMeta, ModelTask};
use crate::features::backbone::BackboneInfo;
use crate::nn::Sequential;
use crate::{Error, Result};

/// Examples compared at most (tract runs whole backbones).
pub const MAX_EXAMPLES: usize = 32;

/// Verifies the exported model at `model` on examples from `data` (a CSV, or images), on the
/// engines `kind` asks for (see [`super::engines_on`]).
pub fn verify_file(model: &Path, data: &Path, kind: BackendKind) -> Result<Verification> {
    let meta = ModelMeta::read(model)?;
    match meta.task {
        ModelTask::Tabular => tabular_csv(model, data, kind),
        ModelTask::Image => image(model, data, &meta, kind),
        ModelTask::Text => text(model, data, &meta, kind),
    }
}

fn head(model: &Path) -> Result<Sequential> {
    Ok(Sequential::load(&model.with_file_name("head.safetensors"))?.0)
}

/// Output `output` of the backbone graph at `path` on ONNX Runtime's CPU provider: the reference
/// features of a verification, whatever device the features for training came from (CUDA may use
/// TF32 and other kernels).
pub fn cpu_features(path: &Path, inputs: Vec<(String, Value)>, output: &str) -> Result<ndarray::ArrayD<f32>> {
    let opts = EngineOptions {
        backend: BackendKind::Ort,
        ort: OrtOptions { device: DeviceRequest::Cpu, threads: None, ..Default::default() },
    };
    crate::backend::open(path, &opts)?.run_output(inputs, output)
}

/// Runs the graph of `model` cut at `tensor` on ONNX Runtime (CPU).
fn backbone_part(model: &Path, tensor: &str, inputs: Vec<(String, Value)>) -> Result<ndarray::ArrayD<f32>> {
    let proto = crate::onnx::load(model)?;
    let cut = crate::onnx::cut::cut(&proto, tensor, model)?;
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("backbone.onnx");
    crate::onnx::save(&path, &cut)?;
    cpu_features(&path, inputs, tensor)
}

fn image(model: &Path, data: &Path, meta: &ModelMeta, kind: BackendKind) -> Result<Verification> {
    let pre = meta.preprocess.clone().ok_or_else(|| Error::onnx(model.display().to_string(), "no graft.preprocess"))?;
    let proto = crate::onnx::load(model)?;
    let info: BackboneInfo = crate::onnx::metadata(&proto, crate::export::keys::BACKBONE)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| Error::onnx(model.display().to_string(), "no graft.backbone"))?;
    let cut = info.cut.ok_or_else(|| Error::onnx(model.display().to_string(), "graft.backbone has no cut tensor"))?;
    let files = crate::data::collect_images(&[data.to_path_buf()])?;
    let images: Vec<_> = files.iter().filter_map(|f| pre.load(f).ok()).take(MAX_EXAMPLES).collect();
    if images.is_empty() {
        return Err(Error::data(data, None, "no readable images"));
    }
    let input = if pre.dtype == crate::backend::Dtype::U8 {
        Value::U8(pre.tensor_u8(&images).into_dyn())
    } else {
        Value::F32(pre.tensor(&images).into_dyn())
    };
    let inputs = vec![(crate::export::IMAGE_INPUT.to_string(), input)];
    let mut native_model = head(model)?;
    // A fine-tuned tail starts at its unfreeze point and takes that tensor as it is.
    let native = match native_model.specs().first() {
        Some(crate::nn::LayerSpec::Tail { start, .. }) => {
            let at_start = backbone_part(model, &start.clone(), inputs.clone())?;
            crate::train::predict(&mut native_model, &at_start, 64)
        }
        _ => {
            let features = crate::features::flatten_rows(backbone_part(model, &cut, inputs.clone())?, &cut)?;
            crate::train::predict(&mut native_model, &features.into_dyn(), 1024)
        }
    };
    against_on(kind, &native, model, &inputs)
}

fn text(model: &Path, data: &Path, meta: &ModelMeta, kind: BackendKind) -> Result<Verification> {
    let (encoder, text) = crate::predict::text_encoder(model, meta)?;
    let opts = crate::data::TextOptions { text: "text".into(), label: None, skip_bad_rows: true };
    let table = crate::data::read_text_csv(data, &opts)?;
    let texts: Vec<&str> = table.texts.iter().take(MAX_EXAMPLES).map(String::as_str).collect();
    let inputs = crate::predict::text_inputs(&encoder, &text, &texts)?;
    let mut native_model = head(model)?;
    let native: Array2<f32> = match &text.encoder_output {
        None => {
            let ids = inputs.iter().find(|(n, _)| n == "input_ids").and_then(|(_, v)| match v {
                Value::I64(a) => Some(a.mapv(|x| x as f32)),
                _ => None,
            });
            let ids = ids.ok_or_else(|| Error::Tensor { name: "input_ids".into(), msg: "missing".into() })?;
            crate::train::predict(&mut native_model, &ids, 1024)
        }
        Some(hidden) => {
            let mask = inputs.iter().find_map(|(n, v)| match (n.as_str(), v) {
                ("attention_mask", Value::I64(m)) => Some(m.clone()),
                _ => None,
            });
            let mask = mask.ok_or_else(|| Error::Tensor { name: "attention_mask".into(), msg: "missing".into() })?;
            let states = backbone_part(model, hidden, inputs.clone())?;
            let pooled = crate::features::pool(text.pooling, &states, &mask)?;
            crate::train::predict(&mut native_model, &pooled.into_dyn(), 1024)
        }
    };
    against_on(kind, &native, model, &inputs)
}
