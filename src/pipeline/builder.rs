//! The pipeline as a library: [`Pipeline::from_toml`] or [`Pipeline::builder`], then
//! [`Pipeline::fit`], which returns a [`Run`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{fit, FitOptions, Report};
use crate::backend::{BackendKind, DeviceRequest};
use crate::config::{
    BackboneConfig, DataConfig, ExportConfig, ModelConfig, PipelineConfig, Task, TrainConfig, ValidationConfig,
    ValidationMethod,
};
use crate::nn::OptimizerKind;
use crate::predict::Model;
use crate::train::{ProgressMode, Session};
use crate::{Error, Result};

/// A validated pipeline and how to run it: where the run folder goes, whether to resume or
/// replace, how to report progress.
///
/// ```
/// # fn main() -> graft::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use graft::pipeline::Pipeline;
/// use graft::train::ProgressMode;
///
/// let run = Pipeline::from_toml("pipelines/iris.toml")?
///     .out(dir.path().join("iris"))
///     .progress(ProgressMode::Quiet)
///     .fit()?;
/// assert!(run.report.validation.metrics.accuracy > 0.8);
/// assert!(run.model_path().is_file());
/// # Ok(())
/// # }
/// ```
pub struct Pipeline {
    config: PipelineConfig,
    out: Option<PathBuf>,
    force: bool,
    session: Session,
}

/// A finished run: its folder (`model.onnx`, `report.json`, plots, native weights) and its report.
#[derive(Clone, Debug)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// What `report.json` holds: data, history, validation metrics, verification, timings.
    pub report: Report,
}

impl Run {
    /// The exported, verified model: `DIR/model.onnx`.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }

    /// `DIR/report.json`.
    pub fn report_path(&self) -> PathBuf {
        self.dir.join("report.json")
    }

    /// The exported model, loaded for prediction on the default engine.
    pub fn model(&self) -> Result<Model> {
        Model::load(self.model_path())
    }
}

impl Pipeline {
    /// Reads and validates the pipeline TOML at `path` (relative paths in it resolve against its
    /// folder).
    pub fn from_toml(path: impl AsRef<Path>) -> Result<Pipeline> {
        Pipeline::from_toml_with(path, &[])
    }

    /// Like [`Pipeline::from_toml`], then applies `overrides` (`key.path=value`, values in TOML, as
    /// `graft fit --set` takes them), each validated.
    pub fn from_toml_with(path: impl AsRef<Path>, overrides: &[String]) -> Result<Pipeline> {
        Pipeline::from_config(PipelineConfig::load(path.as_ref(), overrides)?)
    }

    /// A pipeline from a config built in code; validated.
    pub fn from_config(config: PipelineConfig) -> Result<Pipeline> {
        Ok(Pipeline {
            config: config.build()?,
            out: None,
            force: false,
            session: Session::new(None, false, ProgressMode::Auto),
        })
    }

    /// Starts a pipeline in code: its `name`, its `task` and its data (a CSV, or an image folder with
    /// one subfolder per class); every other setting has the TOML's default.
    pub fn builder(name: &str, task: Task, data: impl Into<PathBuf>) -> PipelineBuilder {
        PipelineBuilder {
            config: PipelineConfig {
                name: name.to_string(),
                task,
                data: DataConfig {
                    path: data.into(),
                    label: None,
                    text: None,
                    skip_bad_rows: false,
                    features: None,
                    exclude: Vec::new(),
                },
                model: ModelConfig::default(),
                train: TrainConfig::default(),
                validation: ValidationConfig::default(),
                backbone: None,
                export: ExportConfig::default(),
            },
        }
    }

    /// The validated config (what `report.json` records).
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Writes the run to `dir` (default: `runs/<name>`).
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out = Some(dir.into());
        self
    }

    /// The run folder [`Pipeline::fit`] writes.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&self.config.name))
    }

    /// Replace a finished run in the folder, or discard an interrupted one (the folder is replaced
    /// only once the new run is complete); without it an existing folder is an error.
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    /// Continue an interrupted run from its checkpoints (refused when the data changed).
    pub fn resume(mut self, yes: bool) -> Self {
        self.session.resume = yes;
        self
    }

    /// How training progress is reported (default: a bar on a terminal, lines elsewhere).
    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.session.progress = mode;
        self
    }

    /// The training session's settings (checkpoint interval, epoch observers, a test-only halt).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// A flag that, once set from any thread, stops training at the end of the current epoch with
    /// a checkpoint: [`Pipeline::fit`] then returns [`Error::Interrupted`] and
    /// [`Pipeline::resume`] continues.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.session.stop.clone()
    }

    /// Trains, exports and verifies into [`Pipeline::out_dir`] (built aside in `OUT.partial/` and
    /// renamed once complete); an error when verification fails.
    pub fn fit(self) -> Result<Run> {
        let dir = self.out_dir();
        let report = fit(&self.config, FitOptions { out: dir.clone(), session: self.session, force: self.force })?;
        Ok(Run { dir, report })
    }
}

/// Builds a [`PipelineConfig`] in code, for [`Pipeline::builder`]; [`PipelineBuilder::build`]
/// validates it as a TOML would be. Relative paths are relative to the current folder.
///
/// ```
/// # fn main() -> graft::Result<()> {
/// use graft::config::Task;
/// use graft::pipeline::Pipeline;
///
/// let pipeline = Pipeline::builder("iris", Task::Tabular, "../shared/data/iris/iris.csv")
///     .label("species")
///     .hidden(&[16])
///     .epochs(50)
///     .kfold(5)
///     .build()?;
/// assert_eq!(pipeline.out_dir(), std::path::Path::new("runs/iris"));
/// assert!(Pipeline::builder("x", Task::Tabular, "x.csv").epochs(0).build().is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PipelineBuilder {
    config: PipelineConfig,
}

impl PipelineBuilder {
    /// The label column (tabular and text CSVs).
    pub fn label(mut self, column: &str) -> Self {
        self.config.data.label = Some(column.to_string());
        self
    }

    /// The text column (text CSVs).
    pub fn text_column(mut self, column: &str) -> Self {
        self.config.data.text = Some(column.to_string());
        self
    }

    /// A frozen pretrained backbone: a manifest name (`models/NAME.toml`) or path; `model_file`
    /// replaces the manifest's source (a local copy).
    pub fn backbone(mut self, manifest: &str, model_file: Option<&Path>) -> Self {
        let mut table = toml::Table::new();
        table.insert("manifest".into(), toml::Value::String(manifest.to_string()));
        let mut b: BackboneConfig = toml::Value::Table(table).try_into().expect("a manifest alone is a backbone");
        b.path = model_file.map(Path::to_path_buf);
        self.config.backbone = Some(b);
        self
    }

    /// The backbone's device and engine (default: `auto`, ONNX Runtime).
    pub fn device(mut self, device: DeviceRequest, backend: BackendKind) -> Self {
        if let Some(b) = &mut self.config.backbone {
            b.device = device;
            b.backend = backend;
        }
        self
    }

    /// Units of each hidden Dense + ReLU layer of the head (`&[]`: one Dense layer).
    pub fn hidden(mut self, units: &[usize]) -> Self {
        self.config.model.hidden = units.to_vec();
        self
    }

    /// Dropout before each Dense layer (0 = none).
    pub fn dropout(mut self, rate: f32) -> Self {
        self.config.model.dropout = rate;
        self
    }

    /// Training epochs (an upper bound with early stopping).
    pub fn epochs(mut self, n: usize) -> Self {
        self.config.train.epochs = n;
        self
    }

    /// Examples per training step.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.train.batch_size = n;
        self
    }

    /// The seed of every random choice (initialisation, shuffling, splits, dropout).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.train.seed = seed;
        self
    }

    /// The optimizer and its learning rate.
    pub fn optimizer(mut self, kind: OptimizerKind, lr: f32) -> Self {
        self.config.train.optimizer.kind = kind;
        self.config.train.optimizer.lr = lr;
        self
    }

    /// Stop after `patience` epochs without improvement, restoring the best weights.
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.config.train.early_stopping.patience = patience;
        self
    }

    /// Validate on a stratified `fraction` of the data, trained on the rest.
    pub fn holdout(mut self, fraction: f32) -> Self {
        self.config.validation =
            ValidationConfig { method: ValidationMethod::Holdout, fraction, ..self.config.validation };
        self
    }

    /// `k`-fold cross-validation (out-of-fold metrics), then a model trained on all the data.
    pub fn kfold(mut self, k: usize) -> Self {
        self.config.validation =
            ValidationConfig { method: ValidationMethod::Kfold, folds: k, ..self.config.validation };
        self
    }

    /// Any other setting, on the config itself.
    pub fn with(mut self, edit: impl FnOnce(&mut PipelineConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    /// The pipeline, validated as a TOML file would be (errors name the field).
    pub fn build(self) -> Result<Pipeline> {
        if self.config.name.is_empty() {
            return Err(Error::config("name", "must not be empty"));
        }
        Pipeline::from_config(self.config)
    }
}
