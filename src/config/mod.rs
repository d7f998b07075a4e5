//! Pipeline TOML: `data`, `model`, `train` and `validation` sections, `--set key=value` overrides,
//! and validation of the result. Unknown keys are errors that name their line.
//!
//! Relative paths written in a pipeline file (`data.path`, `backbone.path`, `backbone.cache`, and
//! `backbone.manifest` when it is a path) are resolved against the file's own folder, as Cargo and
//! Compose do, so a pipeline runs the same from any folder; a path given with `--set` is relative
//! to the current folder.

pub mod manifest;
mod overrides;

pub use overrides::apply_override;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::nn::OptimizerConfig;
use crate::{Error, Result};

/// A whole pipeline, as written in `pipelines/*.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Short name, used for the default output folder.
    pub name: String,
    /// What kind of pipeline this is.
    pub task: Task,
    /// Where the examples come from.
    pub data: DataConfig,
    #[serde(default)]
    /// The trainable model.
    pub model: ModelConfig,
    #[serde(default)]
    /// The training loop.
    pub train: TrainConfig,
    #[serde(default)]
    /// How the model is evaluated.
    pub validation: ValidationConfig,
    /// The frozen pretrained model (image and text-encoder pipelines).
    #[serde(default)]
    pub backbone: Option<BackboneConfig>,
    #[serde(default)]
    /// Export options.
    pub export: ExportConfig,
}

/// Which pretrained model to run frozen, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Manifest name (`models/NAME.toml`) or path.
    pub manifest: String,
    /// Use this model file instead of the manifest's source (e.g. a local copy, offline).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Items per backbone run.
    #[serde(default = "default_backbone_batch")]
    pub batch_size: usize,
    /// `auto` (the default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: crate::backend::DeviceRequest,
    /// Engine that embeds: `ort` (default), `tract` or `auto` (ONNX Runtime when it can be loaded).
    #[serde(default = "default_backbone_backend")]
    pub backend: crate::backend::BackendKind,
    /// ONNX Runtime intra-op threads.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Feature cache root (default `$GRAFT_CACHE` or `~/.cache/graft`).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// Fine-tune the last N blocks (`graft inspect` numbers the boundaries from the end), or
    /// `"all"` (everything after the first boundary: the embeddings for a transformer); 0 keeps the
    /// whole backbone frozen.
    #[serde(default)]
    pub unfreeze: Unfreeze,
    /// Fine-tune everything after this tensor instead of counting blocks.
    #[serde(default)]
    pub unfreeze_from: Option<String>,
}

impl BackboneConfig {
    /// Whether part of the backbone is trained (`unfreeze` not 0, or `unfreeze_from`).
    pub fn fine_tunes(&self) -> bool {
        self.unfreeze != Unfreeze::Blocks(0) || self.unfreeze_from.is_some()
    }
}

/// How much of a backbone `backbone.unfreeze` trains: its last N blocks (TOML `2`), or every
/// block (TOML `"all"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Unfreeze {
    /// The last N blocks; 0 is the frozen backbone.
    Blocks(usize),
    /// Everything after the first block boundary.
    All(AllBlocks),
}

/// The word `"all"` of [`Unfreeze::All`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllBlocks {
    /// `"all"`.
    All,
}

impl Default for Unfreeze {
    fn default() -> Self {
        Unfreeze::Blocks(0)
    }
}

fn default_backbone_batch() -> usize {
    32
}

fn default_backbone_backend() -> crate::backend::BackendKind {
    crate::backend::BackendKind::Ort
}

/// Export options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Also write `model-u8.onnx`, whose input is uint8 `[N, H, W, 3]` RGB with cast, transpose and
    /// normalisation inside the graph.
    pub with_preprocessing: bool,
}

/// Pipeline kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Numeric CSV classification.
    Tabular,
    /// Image folder classification on a frozen backbone.
    Image,
    /// Text classification with a native Embedding → LSTM model trained from scratch.
    TextLstm,
    /// Text classification with a frozen sentence encoder (BERT-style) and a new head.
    TextEncoder,
}

/// Where the examples come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A CSV, or a folder with one subfolder per class.
    pub path: PathBuf,
    /// Label column (tabular and text CSVs).
    #[serde(default)]
    pub label: Option<String>,
    /// Text column (text CSVs).
    #[serde(default)]
    pub text: Option<String>,
    /// Skip (and report) bad rows of a text CSV instead of stopping.
    #[serde(default)]
    pub skip_bad_rows: bool,
    /// Feature columns (default: all others except `exclude`).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    /// Columns left out of the default feature list.
    pub exclude: Vec<String>,
}

/// The trainable model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Units of each hidden Dense + ReLU layer.
    pub hidden: Vec<usize>,
    /// Dropout rate before each Dense layer (0 = none).
    pub dropout: f32,
    /// The recurrent part of `text_lstm` pipelines.
    pub lstm: LstmConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { hidden: vec![16, 16], dropout: 0.0, lstm: LstmConfig::default() }
    }
}

/// Embedding → LSTM → masked mean, before the Dense head; and the vocabulary it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LstmConfig {
    /// Most frequent training words kept (with `[PAD]` and `[UNK]`).
    pub vocab_size: usize,
    /// Lowercase texts before splitting them into words.
    pub lowercase: bool,
    /// Tokens kept per text.
    pub max_length: usize,
    /// Word vector size.
    pub embedding_dim: usize,
    /// Dropout on the word vectors (0 = none).
    pub embedding_dropout: f32,
    /// LSTM units per direction.
    pub units: usize,
    /// Also run a reverse LSTM (over each text's own words, backwards).
    pub bidirectional: bool,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig {
            vocab_size: 20_000,
            lowercase: true,
            max_length: 64,
            embedding_dim: 64,
            embedding_dropout: 0.0,
            units: 64,
            bidirectional: false,
        }
    }
}

/// Training loop settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Epochs at most (early stopping may end sooner).
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of every random choice (initialisation, shuffling, splits, dropout).
    pub seed: u64,
    /// Per-class loss weights.
    pub class_weight: ClassWeight,
    /// The optimizer and its settings.
    pub optimizer: OptimizerConfig,
    /// Early stopping.
    pub early_stopping: EarlyStoppingConfig,
    /// Learning-rate reduction on plateaus.
    pub reduce_lr: ReduceLrConfig,
    /// The second phase when the backbone is partly unfrozen (`backbone.unfreeze`).
    pub fine_tune: FineTuneConfig,
    /// Write TensorBoard event files (per-epoch loss, accuracy and learning rate) under this folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
}

/// Phase 2 of fine-tuning: the unfrozen tail and the head trained together with AdamW, each with
/// its own learning rate, after the head alone (phase 1, the `train` settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuneConfig {
    /// Epochs of phase 2 at most.
    pub epochs: usize,
    /// Learning rate of the backbone's unfrozen tail.
    pub tail_lr: f32,
    /// Learning rate of the head.
    pub head_lr: f32,
    /// Decoupled weight decay on weights (matrices, kernels), not on biases or scales.
    pub weight_decay: f32,
    /// Clip gradients to this global L2 norm.
    pub clip_norm: Option<f32>,
    /// Early stopping on the validation loss, restoring the best epoch's weights.
    pub early_stopping: EarlyStoppingConfig,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        FineTuneConfig {
            epochs: 5,
            tail_lr: 1e-4,
            head_lr: 1e-3,
            weight_decay: 0.01,
            clip_norm: Some(1.0),
            early_stopping: EarlyStoppingConfig { patience: 2, min_delta: 0.0 },
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 32,
            seed: 42,
            class_weight: ClassWeight::Named(ClassWeightMode::None),
            optimizer: OptimizerConfig::default(),
            early_stopping: EarlyStoppingConfig::default(),
            reduce_lr: ReduceLrConfig::default(),
            fine_tune: FineTuneConfig::default(),
            tensorboard: None,
        }
    }
}

/// Per-class loss weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", untagged)]
pub enum ClassWeight {
    /// `"none"` or `"balanced"` (`n / (classes * count)`, as scikit-learn).
    Named(ClassWeightMode),
    /// One weight per class, in label order.
    Explicit(Vec<f32>),
}

/// Named class-weight schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeightMode {
    /// Every class weighs 1.
    None,
    /// Classes weigh inversely to their frequency.
    Balanced,
}

/// Stop when the monitored loss has not improved for `patience` epochs, then restore the best
/// weights. `patience = 0` disables it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    /// Epochs without improvement before stopping (0 disables it).
    pub patience: usize,
    /// Least decrease of the loss that counts as an improvement.
    pub min_delta: f32,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig { patience: 10, min_delta: 0.0 }
    }
}

/// Multiply the learning rate by `factor` when the monitored loss has not improved for `patience`
/// epochs, down to `min_lr`. `patience = 0` disables it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReduceLrConfig {
    /// Epochs without improvement before a reduction (0 disables it).
    pub patience: usize,
    /// Multiplier of the learning rate, in (0, 1).
    pub factor: f32,
    /// The learning rate is never reduced below this.
    pub min_lr: f32,
}

impl Default for ReduceLrConfig {
    fn default() -> Self {
        ReduceLrConfig { patience: 0, factor: 0.5, min_lr: 1e-6 }
    }
}

/// How the model is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// `kfold`, `holdout` or `none`.
    pub method: ValidationMethod,
    /// Folds for `kfold`.
    pub folds: usize,
    /// Validation share for `holdout`.
    pub fraction: f32,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig { method: ValidationMethod::Holdout, folds: 5, fraction: 0.2 }
    }
}

/// Validation schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMethod {
    /// Stratified k-fold cross-validation, then a final model on all rows.
    Kfold,
    /// One stratified validation split; early stopping watches it.
    Holdout,
    /// Train on everything, evaluate on the training rows.
    None,
}

impl PipelineConfig {
    /// Reads a pipeline file and applies `overrides` (`key=value`, TOML values; bare words are
    /// strings), then validates. Relative paths in the file are resolved against its folder; those
    /// given in `overrides` stay relative to the current folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse_in(&text, &path.display().to_string(), base, overrides)
    }

    /// Like [`PipelineConfig::load`] from text; `origin` names it in errors. Relative paths stay
    /// relative to the current folder.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        Self::parse_in(text, origin, Path::new(""), overrides)
    }

    /// Like [`PipelineConfig::parse`], resolving the text's relative paths against `base`.
    pub fn parse_in(text: &str, origin: &str, base: &Path, overrides: &[String]) -> Result<Self> {
        let located = |e: toml::de::Error| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!("{origin}:{l}")).unwrap_or_else(|| origin.to_string());
            Error::config(at, e.message().to_string())
        };
        let mut value: toml::Value = toml::from_str(text).map_err(located)?;
        let cfg: PipelineConfig = toml::from_str(text).map_err(located)?;
        let mut cfg = cfg.resolve_paths(base).build().map_err(|e| relabel(e, origin))?;
        resolve_value_paths(&mut value, base);
        for o in overrides {
            apply_override(&mut value, o)?;
            cfg = value
                .clone()
                .try_into::<PipelineConfig>()
                .map_err(|e| Error::config(format!("--set {o}"), e.message().to_string()))?
                .build()
                .map_err(|e| relabel(e, &format!("--set {o}")))?;
        }
        Ok(cfg)
    }

    /// Validates every field; returns the config unchanged when it is usable.
    pub fn build(self) -> Result<Self> {
        let bad = |field: &str, msg: &str| Err(Error::config(field, msg));
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs", "must be at least 1");
        }
        if t.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return bad("model.dropout", "must be in [0, 1)");
        }
        if self.model.hidden.contains(&0) {
            return bad("model.hidden", "layer sizes must be at least 1");
        }
        let l = &self.model.lstm;
        if !(0.0..1.0).contains(&l.embedding_dropout) {
            return bad("model.lstm.embedding_dropout", "must be in [0, 1)");
        }
        if l.vocab_size < 3 || l.max_length == 0 || l.embedding_dim == 0 || l.units == 0 {
            return bad("model.lstm", "vocab_size >= 3 and positive max_length, embedding_dim and units");
        }
        if !(t.reduce_lr.factor > 0.0 && t.reduce_lr.factor < 1.0) {
            return bad("train.reduce_lr.factor", "must be in (0, 1)");
        }
        if let ClassWeight::Explicit(w) = &t.class_weight {
            if w.iter().any(|w| !(*w > 0.0 && w.is_finite())) {
                return bad("train.class_weight", "weights must be positive numbers");
            }
        }
        match self.task {
            Task::Tabular if self.data.label.is_none() => {
                return bad("data.label", "a tabular pipeline needs the label column")
            }
            Task::Image | Task::TextEncoder if self.backbone.is_none() => {
                return bad("backbone", "this pipeline needs a [backbone] section")
            }
            Task::TextLstm | Task::TextEncoder if self.data.label.is_none() => {
                return bad("data.label", "a text pipeline needs the label column")
            }
            _ => {}
        }
        if let Some(b) = &self.backbone {
            if b.batch_size == 0 {
                return bad("backbone.batch_size", "must be at least 1");
            }
            self.check_fine_tune(b)?;
        }
        let v = &self.validation;
        if v.method == ValidationMethod::Kfold && v.folds < 2 {
            return bad("validation.folds", "must be at least 2");
        }
        if v.method == ValidationMethod::Holdout && !(v.fraction > 0.0 && v.fraction < 1.0) {
            return bad("validation.fraction", "must be in (0, 1)");
        }
        t.optimizer.build().map_err(|e| match e {
            Error::Config { msg, .. } => Error::config("train.optimizer", msg),
            e => e,
        })?;
        Ok(self)
    }
}

impl PipelineConfig {
    /// The fine-tuning settings that can be checked without the model (the unfreeze point itself is
    /// checked against the backbone when the pipeline runs).
    fn check_fine_tune(&self, b: &BackboneConfig) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(Error::config(field, msg));
        if b.unfreeze != Unfreeze::Blocks(0) && b.unfreeze_from.is_some() {
            return bad("backbone.unfreeze_from", "give either backbone.unfreeze or backbone.unfreeze_from, not both");
        }
        if b.unfreeze_from.as_deref() == Some("") {
            return bad("backbone.unfreeze_from", "must name a tensor of the backbone");
        }
        if !b.fine_tunes() {
            return Ok(());
        }
        if !matches!(self.task, Task::Image | Task::TextEncoder) {
            return bad("backbone.unfreeze", "fine-tuning is available for image and text_encoder pipelines only");
        }
        if self.validation.method == ValidationMethod::Kfold {
            return bad("validation.method", "fine-tuning needs `holdout` or `none` validation, not `kfold`");
        }
        let f = &self.train.fine_tune;
        if f.epochs == 0 {
            return bad("train.fine_tune.epochs", "must be at least 1");
        }
        for (field, lr) in [("train.fine_tune.tail_lr", f.tail_lr), ("train.fine_tune.head_lr", f.head_lr)] {
            if !(lr > 0.0 && lr.is_finite()) {
                return bad(field, "must be a positive number");
            }
        }
        if !(f.weight_decay >= 0.0 && f.weight_decay < 1.0) {
            return bad("train.fine_tune.weight_decay", "must be in [0, 1)");
        }
        if f.clip_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("train.fine_tune.clip_norm", "must be > 0");
        }
        Ok(())
    }

    /// Resolves the relative paths of the pipeline against `base` (see the module docs).
    fn resolve_paths(mut self, base: &Path) -> Self {
        self.data.path = resolve(base, &self.data.path);
        self.train.tensorboard = self.train.tensorboard.as_deref().map(|p| resolve(base, p));
        if let Some(b) = &mut self.backbone {
            b.path = b.path.as_deref().map(|p| resolve(base, p));
            b.cache = b.cache.as_deref().map(|p| resolve(base, p));
            if manifest_is_path(&b.manifest) {
                b.manifest = resolve(base, Path::new(&b.manifest)).display().to_string();
            }
        }
        self
    }
}

/// [`PipelineConfig::resolve_paths`] on the TOML document that `--set` overrides are applied to,
/// so that the file's paths are resolved and the overrides' are not.
fn resolve_value_paths(doc: &mut toml::Value, base: &Path) {
    let mut fix = |section: &str, key: &str, only_paths: bool| {
        let Some(toml::Value::String(s)) = doc.get_mut(section).and_then(|t| t.get_mut(key)) else { return };
        if !only_paths || manifest_is_path(s) {
            *s = resolve(base, Path::new(s.as_str())).display().to_string();
        }
    };
    fix("data", "path", false);
    fix("backbone", "path", false);
    fix("backbone", "cache", false);
    fix("backbone", "manifest", true);
    fix("train", "tensorboard", false);
}

/// A manifest given as a path (`models/x.toml`, `../m.toml`) rather than a name (`x`).
fn manifest_is_path(reference: &str) -> bool {
    let p = Path::new(reference);
    p.extension().is_some_and(|e| e == "toml") || p.components().count() > 1
}

/// `path` relative to `base` (absolute paths are kept), with `.` and `..` folded lexically so that
/// `pipelines/../data.csv` reads `data.csv`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out: Vec<Component> = Vec::new();
    for c in base.components().chain(path.components()) {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::ParentDir if matches!(out.last(), Some(Component::RootDir | Component::Prefix(_))) => {}
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

fn relabel(e: Error, origin: &str) -> Error {
    match e {
        Error::Config { origin: field, msg } => Error::config(format!("{origin}: {field}"), msg),
        e => e,
    }
}

#[cfg(test)]
mod tests;
