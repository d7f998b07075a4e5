//! The cats-vs-dogs pipeline (`pipelines/cats-vs-dogs.toml`) built in code with
//! [`graft::pipeline::PipelineBuilder`] instead of TOML: EfficientNet-Lite0 cut at its pooled
//! 1280-d tensor and frozen, a Dropout + Dense head trained on its cached features, one exported
//! graph, verified on tract and ONNX Runtime.
//!
//! ```sh
//! cargo run --release --example pipeline_in_code -- runs/cats-vs-dogs-in-code
//! ```
//!
//! Paths are relative to the repository root, with the shared models and data in `../shared`. The
//! features are cached by content (`$GRAFT_CACHE`), so a second run only trains the head.

use std::path::{Path, PathBuf};

use graft::backend::{BackendKind, DeviceRequest};
use graft::config::Task;
use graft::nn::OptimizerKind;
use graft::pipeline::Pipeline;
use graft::train::ProgressMode;

fn main() -> graft::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/cats-vs-dogs-in-code".into()));
    let shared = Path::new("../shared");

    let run = Pipeline::builder("cats-vs-dogs", Task::Image, shared.join("data/cats-vs-dogs/train"))
        .backbone("models/efficientnet-lite0.toml", Some(&shared.join("models/efficientnet-lite0/model.onnx")))
        .device(DeviceRequest::Auto, BackendKind::Auto)
        .hidden(&[])
        .dropout(0.2)
        .epochs(8)
        .batch_size(32)
        .seed(42)
        .optimizer(OptimizerKind::Adam, 1e-3)
        .early_stopping(5)
        .holdout(0.2)
        .build()?
        .out(&out)
        .force(true)
        .progress(ProgressMode::Quiet)
        .fit()?;

    let v = &run.report.validation;
    println!("cats-vs-dogs: {} accuracy {:.4} on {} rows", v.evaluated_on, v.metrics.accuracy, v.rows);
    println!("{}", run.report.verification.summary());
    println!("wrote {}", run.model_path().display());
    Ok(())
}
