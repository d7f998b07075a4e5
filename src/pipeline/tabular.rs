//! Numeric CSV classification: Standardize → (Dense → ReLU → Dropout)* → Dense, trained by the
//! shared loop, exported with the standardisation inside the graph.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;

use super::report::{DataSummary, FoldResult, Report, Timing, ValidationSummary};
use crate::config::{PipelineConfig, TrainConfig, ValidationMethod};
use crate::data::{class_counts, read_csv, stratified_kfold, stratified_split, CsvOptions, Dataset, Labels};
use crate::export::{self, keys};
use crate::nn::{Init, LayerSpec, Sequential, Standardize};
use crate::rng::Rng;
use crate::train::{self, metrics, plot, FitOutcome, Session};
use crate::{io, verify, Result};

/// The head architecture for `features` inputs, standardised with statistics of `train_x`.
pub fn architecture(cfg: &PipelineConfig, train_x: &ndarray::ArrayD<f32>, classes: usize) -> Vec<LayerSpec> {
    let mut specs = vec![Standardize::fit(train_x)];
    let mut width = train_x.shape()[1];
    for &units in &cfg.model.hidden {
        if cfg.model.dropout > 0.0 {
            specs.push(LayerSpec::Dropout { rate: cfg.model.dropout });
        }
        specs.push(LayerSpec::Dense { inputs: width, units, init: Init::He });
        specs.push(LayerSpec::Relu);
        width = units;
    }
    if cfg.model.dropout > 0.0 {
        specs.push(LayerSpec::Dropout { rate: cfg.model.dropout });
    }
    specs.push(LayerSpec::Dense { inputs: width, units: classes, init: Init::Glorot });
    specs
}

struct Trained {
    model: Sequential,
    outcome: FitOutcome,
}

/// One dataset and pipeline, from which runs on index subsets are trained.
struct Runner<'a> {
    cfg: &'a PipelineConfig,
    data: &'a Dataset,
    classes: usize,
}

impl Runner<'_> {
    fn train(
        &self,
        train_idx: &[usize],
        val: Option<&Dataset>,
        mut rng: Rng,
        run: &str,
        session: &mut Session,
        train_cfg: &TrainConfig,
    ) -> Result<Trained> {
        let train = self.data.subset(train_idx);
        let mut model = Sequential::new(&architecture(self.cfg, &train.x, self.classes), &mut rng);
        let weights = train::class_weights(&train_cfg.class_weight, &train.y, self.classes)?;
        let job = train::Job { train: &train, val, cfg: train_cfg, class_weights: weights.as_deref(), run };
        let outcome = train::fit(&mut model, &job, rng, session)?;
        Ok(Trained { model, outcome })
    }
}

/// Runs the tabular pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let opts = CsvOptions {
        label: Some(cfg.data.label.clone()),
        features: cfg.data.features.clone(),
        exclude: cfg.data.exclude.clone(),
    };
    let table = read_csv(&cfg.data.path, &opts)?;
    let raw = table.labels.clone().expect("label column was asked for");
    let labels = Labels::fit(&raw);
    let data = Dataset { x: table.x.clone(), y: labels.encode(&raw)? };
    let classes = labels.len();
    let runner = Runner { cfg, data: &data, classes };
    let mut rng = Rng::new(cfg.train.seed);
    let mut folds = Vec::new();
    let mut curves: Vec<(String, Vec<train::EpochRecord>)> = Vec::new();
    let mut train_seconds = 0.0;
    let mut fold_histories = Vec::new();

    let (trained, evaluated_on, eval_proba, eval_y) = match cfg.validation.method {
        ValidationMethod::Kfold => {
            let splits = stratified_kfold(&data.y, cfg.validation.folds, &mut rng)?;
            let mut oof = Array2::<f32>::zeros((data.len(), classes));
            for (f, (tr, va)) in splits.iter().enumerate() {
                let val = data.subset(va);
                let run = format!("fold-{}", f + 1);
                let mut t = runner.train(tr, Some(&val), rng.fork(f as u64), &run, session, &cfg.train)?;
                let p = train::predict(&mut t.model, &val.x, 1024);
                for (row, &i) in va.iter().enumerate() {
                    oof.row_mut(i).assign(&p.row(row));
                }
                folds.push(FoldResult {
                    fold: f + 1,
                    rows: va.len(),
                    accuracy: metrics::accuracy(p.view(), &val.y),
                    log_loss: metrics::log_loss(p.view(), &val.y),
                    best_epoch: t.outcome.best_epoch,
                    epochs: t.outcome.history.len(),
                });
                train_seconds += t.outcome.seconds;
                fold_histories.push(t.outcome.history);
            }
            // The final model trains on every row for the folds' median best epoch count.
            let mut final_cfg = cfg.train.clone();
            if cfg.train.early_stopping.patience > 0 {
                let mut best: Vec<usize> = folds.iter().map(|f| f.best_epoch.max(1)).collect();
                best.sort_unstable();
                final_cfg.epochs = best[best.len() / 2];
                final_cfg.early_stopping.patience = 0;
            }
            curves.push((format!("{} folds, mean", folds.len()), train::mean_history(&fold_histories)));
            let all: Vec<usize> = (0..data.len()).collect();
            let t = runner.train(&all, None, rng.fork(1000), "final", session, &final_cfg)?;
            (t, "out-of-fold", oof, data.y.clone())
        }
        ValidationMethod::Holdout => {
            let (tr, va) = stratified_split(&data.y, cfg.validation.fraction, &mut rng)?;
            let val = data.subset(&va);
            let mut t = runner.train(&tr, Some(&val), rng.fork(0), "holdout", session, &cfg.train)?;
            let p = train::predict(&mut t.model, &val.x, 1024);
            (t, "holdout", p, val.y)
        }
        ValidationMethod::None => {
            let all: Vec<usize> = (0..data.len()).collect();
            let mut t = runner.train(&all, None, rng.fork(0), "final", session, &cfg.train)?;
            let p = train::predict(&mut t.model, &data.x, 1024);
            (t, "train", p, data.y.clone())
        }
    };
    let Trained { mut model, outcome } = trained;
    curves.push(("final".into(), outcome.history.clone()));
    let eval = metrics::evaluate(eval_proba.view(), &eval_y, &labels.0);

    let features_json = serde_json::to_string(&table.feature_names).expect("strings serialise");
    let meta = export::metadata("tabular", &labels, &[(keys::FEATURES, features_json)]);
    let onnx = export::tabular(&model, export::TABULAR_INPUT, table.feature_names.len(), classes, &meta)?;
    let model_path = out.join("model.onnx");
    crate::onnx::save(&model_path, &onnx)?;
    model.save(&out.join("head.safetensors"), meta.into_iter().collect::<HashMap<_, _>>())?;

    let native = train::predict(&mut model, &data.x, 1024);
    let verification = verify::tabular(&model_path, &data.x, &native)?;

    let title = format!("{} — {}", cfg.name, evaluated_on);
    write_curves(&out.join("curves.png"), &cfg.name, &curves)?;
    plot::confusion(&out.join("confusion.png"), &title, &labels.0, &eval.confusion)?;

    let report = Report {
        graft_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: cfg.clone(),
        seed: cfg.train.seed,
        data: DataSummary {
            path: cfg.data.path.display().to_string(),
            rows: data.len(),
            features: table.feature_names.clone(),
            labels: labels.0.clone(),
            class_counts: class_counts(&data.y, classes),
        },
        validation: ValidationSummary {
            method: cfg.validation.method,
            evaluated_on: evaluated_on.into(),
            rows: eval_y.len(),
            metrics: eval,
            folds,
        },
        history: outcome.history.clone(),
        best_epoch: outcome.best_epoch,
        stopped_early: outcome.stopped_early,
        verification,
        timing: Timing {
            train_seconds: train_seconds + outcome.seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        },
        outputs: ["model.onnx", "head.safetensors", "report.json", "curves.png", "confusion.png"]
            .map(String::from)
            .to_vec(),
    };
    io::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

fn write_curves(path: &Path, name: &str, runs: &[(String, Vec<train::EpochRecord>)]) -> Result<()> {
    let series = |f: &dyn Fn(&train::EpochRecord) -> Option<f32>, suffix: &str, dashed: bool| {
        runs.iter()
            .filter(|(_, h)| h.iter().any(|r| f(r).is_some()))
            .map(|(run, h)| plot::Series {
                name: format!("{run} {suffix}"),
                points: h.iter().filter_map(|r| f(r).map(|v| (r.epoch as f32, v))).collect(),
                dashed,
            })
            .collect::<Vec<_>>()
    };
    let mut loss = series(&|r| Some(r.loss), "train", false);
    loss.extend(series(&|r| r.val_loss, "val", true));
    let mut acc = series(&|r| Some(r.accuracy), "train", false);
    acc.extend(series(&|r| r.val_accuracy, "val", true));
    plot::curves(path, &format!("{name}: learning curves"), &loss, &acc)
}
