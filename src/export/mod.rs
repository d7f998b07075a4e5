//! Export: a trained [`Sequential`] becomes an ONNX graph (walking the same layers that were
//! trained), with a final `Softmax` named `probabilities` and graft's `metadata_props`.

mod merge;
mod text;

pub use merge::{image_model, IMAGE_INPUT};
pub use text::{encoder_model, finetuned_encoder_model, native_text_model, ATTENTION_MASK, INPUT_IDS};

use crate::data::Labels;
use crate::nn::Sequential;
use crate::onnx::{pb, Attr, Dim, GraphBuilder, OPSET};
use crate::Result;

use pb::tensor_proto::DataType;

/// The output every graft model has: `probabilities` f32 `[N, C]`.
pub const OUTPUT: &str = "probabilities";

/// The input of tabular models: `features` f32 `[N, F]`, raw (unstandardised) values.
pub const TABULAR_INPUT: &str = "features";

/// Metadata keys graft writes.
pub mod keys {
    /// The graft version that exported the model.
    pub const VERSION: &str = "graft.version";
    /// [`ModelTask`](super::ModelTask): `tabular`, `image` or `text`.
    pub const TASK: &str = "graft.task";
    /// Class names, JSON, in output order.
    pub const LABELS: &str = "graft.labels";
    /// Feature column names, JSON (tabular models).
    pub const FEATURES: &str = "graft.features";
    /// Image preprocessing, JSON (image models).
    pub const PREPROCESS: &str = "graft.preprocess";
    /// The frozen backbone's name, source, sha256 and cut, JSON.
    pub const BACKBONE: &str = "graft.backbone";
    /// How text inputs are made, JSON (text models).
    pub const TEXT: &str = "graft.text";
    /// sha256 of the `tokenizer.json` beside a text model.
    pub const TOKENIZER_SHA256: &str = "graft.tokenizer_sha256";
}

/// What an exported model predicts on: its `graft.task` metadata, read once into this enum.
///
/// A pipeline's [`crate::config::Task`] says how a model is trained; this says what the exported
/// file takes (both text routes export a `Text` model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTask {
    /// Rows of numeric features (input [`TABULAR_INPUT`]).
    Tabular,
    /// Images, preprocessed as the model's `graft.preprocess` says (input [`IMAGE_INPUT`]).
    Image,
    /// Texts, tokenised by the `tokenizer.json` beside the model (`graft.text` names the inputs).
    Text,
}

impl ModelTask {
    /// The word written in `graft.task`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelTask::Tabular => "tabular",
            ModelTask::Image => "image",
            ModelTask::Text => "text",
        }
    }
}

impl std::fmt::Display for ModelTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModelTask {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tabular" => Ok(ModelTask::Tabular),
            "image" => Ok(ModelTask::Image),
            "text" => Ok(ModelTask::Text),
            _ => Err(crate::Error::Invalid(format!("unknown task `{s}`: expected tabular, image or text"))),
        }
    }
}

impl PartialEq<&str> for ModelTask {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The `metadata_props` common to every exported model, plus `extra`.
pub fn metadata(task: ModelTask, labels: &Labels, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut m = vec![
        (keys::VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (keys::TASK.to_string(), task.to_string()),
        (keys::LABELS.to_string(), labels.to_json()),
    ];
    m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    m
}

/// Appends `model`'s layers after tensor `input` of `g`, then the softmax output.
pub fn append_head(g: &mut GraphBuilder, model: &Sequential, input: &str, classes: usize) -> Result<()> {
    let mut x = input.to_string();
    for layer in model.layers() {
        x = layer.to_onnx(g, &x)?;
    }
    g.node_to("Softmax", &[&x], &[Attr::Int("axis", -1)], &[OUTPUT]);
    g.output(OUTPUT, DataType::Float, &[Dim::Symbol("N".into()), Dim::Fixed(classes as i64)]);
    Ok(())
}

/// A standalone graph for a model over a 2-D f32 input named `input` with `features` columns.
///
/// # Shapes
/// input `[N, features]` -> `probabilities` `[N, classes]`
pub fn tabular(
    model: &Sequential,
    input: &str,
    features: usize,
    classes: usize,
    metadata: &[(String, String)],
) -> Result<pb::ModelProto> {
    let mut g = GraphBuilder::new("");
    g.input(input, DataType::Float, &[Dim::Symbol("N".into()), Dim::Fixed(features as i64)]);
    append_head(&mut g, model, input, classes)?;
    Ok(g.into_model(OPSET, metadata))
}

/// What `graft predict` and `graft verify` need to know about an exported model, read back from its
/// metadata.
#[derive(Clone, Debug)]
pub struct ModelMeta {
    /// What the model predicts on (`graft.task`).
    pub task: ModelTask,
    /// The class names, in the order of the `probabilities` columns (`graft.labels`).
    pub labels: Labels,
    /// Feature column names (tabular models).
    pub features: Option<Vec<String>>,
    /// Image preprocessing (image models).
    pub preprocess: Option<crate::preprocess::ImagePreprocess>,
    /// Text settings (text models).
    pub text: Option<TextMeta>,
    /// sha256 of the `tokenizer.json` that must sit beside a text model.
    pub tokenizer_sha256: Option<String>,
}

/// `graft.text`: how a text model's inputs are made.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextMeta {
    /// Tokens kept per text.
    pub max_length: usize,
    /// The graph's inputs, in order.
    pub inputs: Vec<String>,
    /// Pad every batch to `max_length` rather than to its longest text. Only older bidirectional
    /// LSTM exports say `true` (their reverse direction read the padding); no longer written (the
    /// LSTM is padding-invariant now), still honoured when read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_padding: bool,
    /// The frozen encoder's output tensor inside the graph (encoder models).
    #[serde(default)]
    pub encoder_output: Option<String>,
    /// How an encoder model pools `encoder_output` (mean when absent).
    #[serde(default, skip_serializing_if = "crate::config::manifest::Pooling::is_mean")]
    pub pooling: crate::config::manifest::Pooling,
}

impl ModelMeta {
    /// Reads the metadata of the ONNX file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let model = crate::onnx::load(path)?;
        let task = crate::onnx::require_metadata(&model, keys::TASK, path)?
            .parse::<ModelTask>()
            .map_err(|e| crate::Error::onnx(path.display().to_string(), format!("{}: {e}", keys::TASK)))?;
        let labels = Labels::from_json(crate::onnx::require_metadata(&model, keys::LABELS, path)?)
            .map_err(|e| crate::Error::onnx(path.display().to_string(), e.to_string()))?;
        let features = crate::onnx::metadata(&model, keys::FEATURES)
            .map(serde_json::from_str::<Vec<String>>)
            .transpose()
            .map_err(|e| crate::Error::onnx(path.display().to_string(), format!("{}: {e}", keys::FEATURES)))?;
        let preprocess = crate::onnx::metadata(&model, keys::PREPROCESS)
            .map(crate::preprocess::ImagePreprocess::from_json)
            .transpose()
            .map_err(|e| crate::Error::onnx(path.display().to_string(), e.to_string()))?;
        let text = crate::onnx::metadata(&model, keys::TEXT)
            .map(serde_json::from_str::<TextMeta>)
            .transpose()
            .map_err(|e| crate::Error::onnx(path.display().to_string(), format!("{}: {e}", keys::TEXT)))?;
        let tokenizer_sha256 = crate::onnx::metadata(&model, keys::TOKENIZER_SHA256).map(str::to_string);
        Ok(ModelMeta { task, labels, features, preprocess, text, tokenizer_sha256 })
    }
}

#[cfg(test)]
mod tail_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, TractBackend, Value};
    use crate::nn::{Init, LayerSpec};
    use crate::rng::Rng;

    /// `fixed_padding` is no longer written; older models that say `true` still read as such.
    #[test]
    fn fixed_padding_is_read_but_not_written() {
        let meta = TextMeta {
            max_length: 8,
            inputs: vec![],
            fixed_padding: false,
            encoder_output: None,
            pooling: Default::default(),
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert!(!json.contains("fixed_padding"), "{json}");
        assert_eq!(serde_json::from_str::<TextMeta>(&json).unwrap(), meta);
        let old = r#"{"max_length":64,"inputs":["input_ids","attention_mask"],"fixed_padding":true}"#;
        assert!(serde_json::from_str::<TextMeta>(old).unwrap().fixed_padding);
    }

    /// Native model -> ONNX file -> tract gives the same probabilities.
    #[test]
    fn onnx_round_trip_through_tract() {
        let specs = vec![
            LayerSpec::Standardize { mean: vec![1.0, -2.0, 0.5], std: vec![2.0, 0.5, 1.5] },
            LayerSpec::Dense { inputs: 3, units: 8, init: Init::He },
            LayerSpec::Relu,
            LayerSpec::Dropout { rate: 0.3 },
            LayerSpec::Dense { inputs: 8, units: 4, init: Init::Glorot },
        ];
        let mut model = Sequential::new(&specs, &mut Rng::new(3));
        let labels = Labels(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        let proto = tabular(&model, TABULAR_INPUT, 3, 4, &metadata(ModelTask::Tabular, &labels, &[])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        crate::onnx::save(&path, &proto).unwrap();

        let x = crate::nn::gradcheck::input(&[7, 3], 11);
        let native = model.predict_proba(x.clone());
        let mut tract = TractBackend::load(&path).unwrap();
        assert_eq!(tract.inputs()[0].name, TABULAR_INPUT);
        assert_eq!(tract.outputs()[0].name, OUTPUT);
        let got = tract.run_output(vec![(TABULAR_INPUT.into(), Value::F32(x))], OUTPUT).unwrap();
        let diff = native.iter().zip(got.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "{diff}");
        let meta = ModelMeta::read(&path).unwrap();
        assert_eq!(meta.labels, labels);
        assert_eq!(meta.task, ModelTask::Tabular);
    }
}
