use serde::{Deserialize, Serialize};

use crate::config::{PipelineConfig, ValidationMethod};
use crate::train::metrics::Metrics;
use crate::train::EpochRecord;
use crate::verify::Verification;

/// `report.json`: everything needed to understand and reproduce a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The graft version that wrote the run.
    pub graft_version: String,
    /// The validated pipeline, overrides applied.
    pub pipeline: PipelineConfig,
    /// The seed of every random choice.
    pub seed: u64,
    /// What was trained on.
    pub data: DataSummary,
    /// How the model was evaluated, and its metrics.
    pub validation: ValidationSummary,
    /// Per-epoch history of the exported model's training.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights were exported.
    pub best_epoch: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// The export run on tract and ONNX Runtime against the native model.
    pub verification: Verification,
    /// Wall-clock seconds.
    pub timing: Timing,
    /// Image pipelines: embedding and skipped files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSummary>,
    /// Text pipelines: vocabulary, encoder, skipped rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSummary>,
    /// Fine-tuned backbones: where the tail starts and both phases (`history` is phase 2's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTuneSummary>,
    /// Files written into the run folder.
    pub outputs: Vec<String>,
}

/// How a backbone's tail was fine-tuned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FineTuneSummary {
    /// The unfreeze point: the tensor whose cached values the tail starts from.
    pub unfrozen_from: String,
    /// The tensor the tail ends at (the backbone's cut tensor).
    pub tail_end: String,
    /// Its `(node, op type)` count and trainable scalars.
    pub tail_nodes: usize,
    /// Trainable scalars of the tail.
    pub tail_parameters: usize,
    /// Phase 1 (`head`: the head alone on the frozen tail's output), then phase 2 (`fine-tune`:
    /// tail and head together).
    pub phases: Vec<Phase>,
}

/// One training phase of a fine-tuning run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    /// `head` or `fine-tune`.
    pub name: String,
    /// Per-epoch history.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Whether early stopping ended the phase.
    pub stopped_early: bool,
    /// Seconds in the training loop.
    pub seconds: f64,
}

/// What was trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataSummary {
    /// The data file or folder.
    pub path: String,
    /// Examples used.
    pub rows: usize,
    /// Feature column names (tabular).
    pub features: Vec<String>,
    /// Class names, in the model's output order.
    pub labels: Vec<String>,
    /// Examples per class.
    pub class_counts: Vec<usize>,
    /// Rows of a tabular CSV left out with `data.skip_bad_rows`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_rows: Vec<crate::data::BadRow>,
}

impl DataSummary {
    /// The summary of `data` read from the pipeline's data path, with `features` describing its inputs.
    pub fn new(
        cfg: &PipelineConfig,
        data: &crate::data::Dataset,
        labels: &crate::data::Labels,
        features: Vec<String>,
    ) -> Self {
        DataSummary {
            path: cfg.data.path.display().to_string(),
            rows: data.len(),
            features,
            labels: labels.0.clone(),
            class_counts: crate::data::class_counts(&data.y, labels.len()),
            skipped_rows: Vec::new(),
        }
    }
}

/// How the model was evaluated and the resulting metrics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationSummary {
    /// The validation scheme.
    pub method: ValidationMethod,
    /// `out-of-fold`, `holdout` or `train`.
    pub evaluated_on: String,
    /// Examples the metrics are computed on.
    pub rows: usize,
    /// Accuracy, log loss, per-class metrics, confusion matrix.
    pub metrics: Metrics,
    /// Per-fold results for k-fold.
    pub folds: Vec<FoldResult>,
}

/// One cross-validation fold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FoldResult {
    /// Fold number, from 1.
    pub fold: usize,
    /// Validation rows of the fold.
    pub rows: usize,
    /// Accuracy on the fold's validation rows.
    pub accuracy: f32,
    /// Log loss on the fold's validation rows.
    pub log_loss: f32,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs: usize,
}

/// Wall-clock seconds of the command that finished the run (`train_seconds <= total_seconds`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timing {
    /// Inside training loops (all folds and the final model).
    pub train_seconds: f64,
    /// The whole command.
    pub total_seconds: f64,
    /// Inside training loops, in the interrupted commands that this one resumed (`--resume`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub earlier_train_seconds: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// What an image pipeline adds to the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The frozen backbone.
    pub backbone: crate::features::backbone::BackboneInfo,
    /// How images became tensors.
    pub preprocess: crate::preprocess::ImagePreprocess,
    /// Images found in the folder.
    pub found: usize,
    /// Images embedded (found minus skipped).
    pub embedded: usize,
    /// Embedded in this run (the rest came from the feature cache).
    pub embedded_now: usize,
    /// Seconds spent embedding.
    pub embed_seconds: f64,
    /// Unreadable images, with the reason.
    pub skipped: Vec<crate::preprocess::Skip>,
    /// The validation images the model got wrong with the highest confidence.
    pub most_confidently_wrong: Vec<Mistake>,
}

/// A misclassified example.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mistake {
    /// The example (path, or line and text).
    pub id: String,
    /// Its true label.
    pub label: String,
    /// The label predicted.
    pub predicted: String,
    /// The predicted label's probability.
    pub probability: f32,
}

/// What a text pipeline adds to the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TextSummary {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// The frozen encoder (`text_encoder` pipelines).
    pub encoder: Option<crate::features::backbone::BackboneInfo>,
    /// Texts embedded in this run (the rest came from the feature cache).
    pub embedded_now: Option<usize>,
    /// Seconds spent embedding (`text_encoder` pipelines).
    pub embed_seconds: Option<f64>,
    /// Rows left out with `data.skip_bad_rows`.
    pub skipped_rows: Vec<crate::data::BadRow>,
    /// The validation texts the model got wrong with the highest confidence.
    pub most_confidently_wrong: Vec<Mistake>,
}
