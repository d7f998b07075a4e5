use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use graft::config::PipelineConfig;
use graft::pipeline::{self, FitOptions};
use graft::train::{ProgressMode, Session};

/// Train a pipeline and write a run folder: model.onnx (verified), report.json, curves.png,
/// confusion.png and the native weights.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft fit pipelines/iris.toml --out runs/iris
  graft fit pipelines/iris.toml --out runs/wine --set data.path=wine.csv --set data.label=class
  graft fit pipelines/iris.toml --out runs/iris --set validation.method=holdout --set model.hidden=[32]
  graft fit pipelines/iris.toml --out runs/iris --resume      # continue an interrupted run
  graft fit pipelines/cats-vs-dogs.toml --out runs/cats-vs-dogs --with-preprocessing --device cuda")]
pub struct FitArgs {
    /// Pipeline TOML (see pipelines/).
    pipeline: PathBuf,
    /// Run folder (default: runs/<pipeline name>).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Override a pipeline field, e.g. --set train.epochs=50 (repeatable; values are TOML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from the run folder's checkpoints.
    #[arg(long)]
    resume: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Backbone device (shorthand for --set backbone.device=...): auto, cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Backbone engine (shorthand for --set backbone.backend=...): ort (default), tract or auto.
    /// Verification always runs the export on tract and, when it can be loaded, ONNX Runtime.
    #[arg(long, value_parser = ["auto", "ort", "tract"])]
    backend: Option<String>,
    /// Also export model-u8.onnx, taking raw uint8 RGB with the preprocessing inside the graph
    /// (shorthand for --set export.with_preprocessing=true).
    #[arg(long)]
    with_preprocessing: bool,
    /// Stop after this many epochs (for testing --resume).
    #[arg(long, hide = true)]
    halt_after_epochs: Option<usize>,
}

pub fn run(args: FitArgs) -> anyhow::Result<ExitCode> {
    let mut sets = args.set.clone();
    if let Some(d) = &args.device {
        sets.push(format!("backbone.device={d}"));
    }
    if let Some(b) = &args.backend {
        sets.push(format!("backbone.backend=\"{b}\""));
    }
    if args.with_preprocessing {
        sets.push("export.with_preprocessing=true".into());
    }
    let cfg = PipelineConfig::load(&args.pipeline, &sets)?;
    let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    let progress = if args.quiet { ProgressMode::Quiet } else { ProgressMode::Auto };
    let mut session = Session::new(None, args.resume, progress);
    session.halt_after_epochs = args.halt_after_epochs;
    let report = pipeline::fit(&cfg, FitOptions { out: out.clone(), session })
        .with_context(|| format!("fitting {}", args.pipeline.display()))?;
    let v = &report.validation;
    println!(
        "{}: {} accuracy {:.4} (log loss {:.4}) on {} rows",
        cfg.name, v.evaluated_on, v.metrics.accuracy, v.metrics.log_loss, v.rows
    );
    println!("{}", report.verification.summary());
    println!("wrote {}", out.join("model.onnx").display());
    Ok(ExitCode::SUCCESS)
}
