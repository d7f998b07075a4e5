//! What every pipeline shares once its examples are tensors: train the trainable model with the
//! pipeline's validation scheme (k-fold, holdout or none) through the one training loop, then write
//! the plots and the report.

use std::path::Path;

use ndarray::Array2;

use super::report::{DataSummary, FoldResult, Report, Timing, ValidationSummary};
use crate::config::{PipelineConfig, TrainConfig, ValidationMethod};
use crate::data::{stratified_kfold, stratified_split, Dataset, Labels};
use crate::nn::{LayerSpec, Sequential};
use crate::rng::Rng;
use crate::train::metrics::{self, Metrics};
use crate::train::{self, plot, FitOutcome, Session};
use crate::verify::Verification;
use crate::{io, Result};

/// A trained model and how it was evaluated.
pub struct HeadRun {
    /// The model to export.
    pub model: Sequential,
    /// Its training run.
    pub outcome: FitOutcome,
    pub folds: Vec<FoldResult>,
    /// Histories to plot.
    pub curves: Vec<plot::Curve>,
    /// Seconds in training loops, all runs, in this process.
    pub train_seconds: f64,
    /// Seconds in training loops spent by the interrupted processes this run resumed from.
    pub earlier_train_seconds: f64,
    /// `out-of-fold`, `holdout` or `train`.
    pub evaluated_on: &'static str,
    /// The rows of the dataset that were evaluated, and their predicted probabilities.
    pub eval_rows: Vec<usize>,
    /// # Shapes
    /// `[eval_rows.len(), classes]`
    pub eval_proba: Array2<f32>,
}

impl HeadRun {
    /// Metrics of the evaluated rows.
    pub fn metrics(&self, data: &Dataset, labels: &Labels) -> Metrics {
        let y: Vec<usize> = self.eval_rows.iter().map(|&i| data.y[i]).collect();
        metrics::evaluate(self.eval_proba.view(), &y, &labels.0)
    }
}

/// Builds a model for a training subset.
pub type Architecture<'a> = &'a dyn Fn(&Dataset) -> Vec<LayerSpec>;

fn train_one(
    data: &Dataset,
    (idx, val): (&[usize], Option<&Dataset>),
    (arch, bucket): (Architecture, bool),
    cfg: &TrainConfig,
    classes: usize,
    (mut rng, run): (Rng, &str),
    session: &mut Session,
) -> Result<(Sequential, FitOutcome)> {
    let train = data.subset(idx);
    let mut model = Sequential::new(&arch(&train), &mut rng);
    let weights = train::class_weights(&cfg.class_weight, &train.y, classes)?;
    let job = train::Job { train: &train, val, cfg, class_weights: weights.as_deref(), run, bucket_by_length: bucket };
    let outcome = train::fit(&mut model, &job, rng, session)?;
    Ok((model, outcome))
}

/// The rows the model of [`train_head`] learns from when it holds some out (the holdout split's
/// training rows; every row otherwise): what a vocabulary may be fitted on without leaking.
pub fn training_rows(cfg: &PipelineConfig, y: &[usize]) -> Result<Vec<usize>> {
    match cfg.validation.method {
        ValidationMethod::Holdout => Ok(stratified_split(y, cfg.validation.fraction, &mut Rng::new(cfg.train.seed))?.0),
        _ => Ok((0..y.len()).collect()),
    }
}

/// Trains with `cfg.validation`: k-fold (then a final model on every row for the folds' median
/// best epoch), a stratified holdout split watched by early stopping, or everything.
pub fn train_head(
    cfg: &PipelineConfig,
    data: &Dataset,
    classes: usize,
    arch: Architecture,
    session: &mut Session,
) -> Result<HeadRun> {
    train_head_with(cfg, data, classes, arch, false, session)
}

/// [`train_head`] for right-padded token ids, optionally bucketed by length.
pub fn train_head_with(
    cfg: &PipelineConfig,
    data: &Dataset,
    classes: usize,
    arch: Architecture,
    bucket: bool,
    session: &mut Session,
) -> Result<HeadRun> {
    let mut rng = Rng::new(cfg.train.seed);
    let all: Vec<usize> = (0..data.len()).collect();
    match cfg.validation.method {
        ValidationMethod::Kfold => {
            let splits = stratified_kfold(&data.y, cfg.validation.folds, &mut rng)?;
            let mut oof = Array2::<f32>::zeros((data.len(), classes));
            let (mut folds, mut histories, mut seconds, mut earlier) = (Vec::new(), Vec::new(), 0.0, 0.0);
            for (f, (tr, va)) in splits.iter().enumerate() {
                let val = data.subset(va);
                let run = format!("fold-{}", f + 1);
                let (mut model, outcome) = train_one(
                    data,
                    (tr, Some(&val)),
                    (arch, bucket),
                    &cfg.train,
                    classes,
                    (rng.fork(f as u64), &run),
                    session,
                )?;
                let p = train::predict_with(&mut model, &val.x, 1024, bucket);
                for (row, &i) in va.iter().enumerate() {
                    oof.row_mut(i).assign(&p.row(row));
                }
                folds.push(FoldResult {
                    fold: f + 1,
                    rows: va.len(),
                    accuracy: metrics::accuracy(p.view(), &val.y),
                    log_loss: metrics::log_loss(p.view(), &val.y),
                    best_epoch: outcome.best_epoch,
                    epochs: outcome.history.len(),
                });
                seconds += outcome.seconds;
                earlier += outcome.earlier_seconds;
                histories.push(outcome.history);
            }
            let mut final_cfg = cfg.train.clone();
            if cfg.train.early_stopping.patience > 0 {
                let mut best: Vec<usize> = folds.iter().map(|f| f.best_epoch.max(1)).collect();
                best.sort_unstable();
                final_cfg.epochs = best[best.len() / 2];
                final_cfg.early_stopping.patience = 0;
            }
            let (model, outcome) =
                train_one(data, (&all, None), (arch, bucket), &final_cfg, classes, (rng.fork(1000), "final"), session)?;
            let mut curves = plot::kfold_curves(&histories);
            curves.push(plot::Curve::new("final", outcome.history.clone()));
            Ok(HeadRun {
                train_seconds: seconds + outcome.seconds,
                earlier_train_seconds: earlier + outcome.earlier_seconds,
                model,
                outcome,
                folds,
                curves,
                evaluated_on: "out-of-fold",
                eval_rows: all,
                eval_proba: oof,
            })
        }
        ValidationMethod::Holdout | ValidationMethod::None => {
            let holdout = cfg.validation.method == ValidationMethod::Holdout;
            let (tr, va) = match holdout {
                true => stratified_split(&data.y, cfg.validation.fraction, &mut rng).map(|(t, v)| (t, Some(v)))?,
                false => (all.clone(), None),
            };
            let val = va.as_ref().map(|v| data.subset(v));
            let (run, evaluated_on) = if holdout { ("holdout", "holdout") } else { ("final", "train") };
            let (mut model, outcome) =
                train_one(data, (&tr, val.as_ref()), (arch, bucket), &cfg.train, classes, (rng.fork(0), run), session)?;
            let eval_proba = train::predict_with(&mut model, val.as_ref().map_or(&data.x, |v| &v.x), 1024, bucket);
            Ok(HeadRun {
                train_seconds: outcome.seconds,
                earlier_train_seconds: outcome.earlier_seconds,
                curves: vec![plot::Curve::new(run, outcome.history.clone())],
                model,
                outcome,
                folds: Vec::new(),
                evaluated_on,
                eval_rows: va.unwrap_or(all),
                eval_proba,
            })
        }
    }
}

/// Everything a pipeline adds to the shared report.
pub struct Finish<'a> {
    pub cfg: &'a PipelineConfig,
    pub out: &'a Path,
    pub data: DataSummary,
    pub labels: &'a Labels,
    pub metrics: Metrics,
    pub verification: Verification,
    pub total_seconds: f64,
    pub outputs: Vec<String>,
    pub images: Option<super::report::ImageSummary>,
    pub text: Option<super::report::TextSummary>,
}

/// Writes `curves.png`, `confusion.png` and `report.json`; returns the report.
pub fn finish(run: &HeadRun, f: Finish) -> Result<Report> {
    plot::learning_curves(&f.out.join("curves.png"), &f.cfg.name, &run.curves)?;
    let title = format!("{} — {}", f.cfg.name, run.evaluated_on);
    plot::confusion(&f.out.join("confusion.png"), &title, &f.labels.0, &f.metrics.confusion)?;
    let mut outputs = f.outputs;
    outputs.extend(["report.json", "curves.png", "confusion.png"].map(String::from));
    let report = Report {
        graft_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: f.cfg.clone(),
        seed: f.cfg.train.seed,
        data: f.data,
        validation: ValidationSummary {
            method: f.cfg.validation.method,
            evaluated_on: run.evaluated_on.into(),
            rows: run.eval_rows.len(),
            metrics: f.metrics,
            folds: run.folds.clone(),
        },
        history: run.outcome.history.clone(),
        best_epoch: run.outcome.best_epoch,
        stopped_early: run.outcome.stopped_early,
        verification: f.verification,
        timing: Timing {
            train_seconds: run.train_seconds,
            total_seconds: f.total_seconds,
            earlier_train_seconds: run.earlier_train_seconds,
        },
        images: f.images,
        text: f.text,
        fine_tune: None,
        outputs,
    };
    io::write_json(&f.out.join("report.json"), &report)?;
    Ok(report)
}
