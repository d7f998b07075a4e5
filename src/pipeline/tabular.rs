//! Numeric CSV classification: Standardize → (Dropout → Dense → ReLU)* → Dropout → Dense, trained
//! by the shared loop, exported with the standardisation inside the graph.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::common::{csv_options, dense_stack};
use super::head::{finish, train_head, Finish};
use super::report::{DataSummary, Report};
use crate::config::PipelineConfig;
use crate::data::{read_csv, Dataset, Labels};
use crate::export::{self, keys};
use crate::nn::Standardize;
use crate::train::{self, Session};
use crate::{verify, Result};

/// Runs the tabular pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let opts = csv_options(cfg);
    let table = read_csv(&cfg.data.path, &opts)?;
    for b in &table.skipped {
        log::warn!("skipped {}:{}: {}", cfg.data.path.display(), b.line, b.reason);
    }
    Standardize::check(&table.x, &table.feature_names)?;
    let raw = table.labels.clone().expect("label column was asked for");
    let labels = Labels::fit(&raw);
    let data = Dataset { x: table.x.clone(), y: labels.encode(&raw)? };
    let classes = labels.len();
    let arch = |train: &Dataset| {
        let mut specs = vec![Standardize::fit(&train.x)];
        specs.extend(dense_stack(cfg, train.x.shape()[1], classes));
        specs
    };
    let mut run = train_head(cfg, &data, classes, &arch, session)?;

    let features_json = serde_json::to_string(&table.feature_names).expect("strings serialise");
    let meta = export::metadata(export::ModelTask::Tabular, &labels, &[(keys::FEATURES, features_json)]);
    let onnx = export::tabular(&run.model, export::TABULAR_INPUT, table.feature_names.len(), classes, &meta)?;
    let model_path = out.join("model.onnx");
    crate::onnx::save(&model_path, &onnx)?;
    run.model.save(&out.join("head.safetensors"), meta.into_iter().collect::<HashMap<_, _>>())?;
    let native = train::predict(&mut run.model, &data.x, 1024);
    let verification = verify::tabular(&model_path, &data.x, &native)?;

    let metrics = run.metrics(&data, &labels);
    finish(
        &run,
        Finish {
            cfg,
            out,
            data: DataSummary {
                skipped_rows: table.skipped.clone(),
                ..DataSummary::new(cfg, &data, &labels, table.feature_names.clone())
            },
            labels: &labels,
            metrics,
            verification,
            total_seconds: started.elapsed().as_secs_f64(),
            outputs: vec!["model.onnx".into(), "head.safetensors".into()],
            images: None,
            text: None,
        },
    )
}
