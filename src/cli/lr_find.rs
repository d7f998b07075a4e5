use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use graft::config::PipelineConfig;
use graft::train::{ProgressMode, Session};

/// The learning-rate range test: one pass of mini-batches over the pipeline's training rows (its
/// cached features) with the learning rate raised exponentially from 1e-7 to 10, stopped when the
/// smoothed loss explodes. Writes the smoothed loss against the learning rate (lr-find.png) and
/// prints the learning rate where the loss falls fastest (fastai's steepest-descent suggestion).
///
/// Tabular and image pipelines; a fine-tuning pipeline is tested on its head alone (phase 1).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft lr-find pipelines/cats-vs-dogs.toml
  graft lr-find pipelines/iris.toml --set train.batch_size=8 --plot runs/iris-lr.png")]
pub struct LrFindArgs {
    /// Pipeline TOML (see pipelines/).
    pipeline: PathBuf,
    /// Override a pipeline field, e.g. --set train.batch_size=64 (repeatable; values are TOML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where to write the plot.
    #[arg(long, default_value = "lr-find.png")]
    plot: PathBuf,
    /// Print the curve and the suggestion as JSON instead of a sentence.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: LrFindArgs) -> anyhow::Result<ExitCode> {
    let cfg = PipelineConfig::load(&args.pipeline, &args.set)?;
    let progress = if args.quiet || args.json { ProgressMode::Quiet } else { ProgressMode::Auto };
    let mut session = Session::new(None, false, progress);
    let found = graft::pipeline::lr_find(&cfg, &args.plot, &mut session)
        .with_context(|| format!("lr-find on {}", args.pipeline.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    for note in &found.notes {
        eprintln!("note: {note}");
    }
    let f = &found.found;
    let end = if f.exploded { "the loss exploded" } else { "the pass ended" };
    println!(
        "{}: {} batches of {} rows ({}), learning rate {:.0e} to {:.1e} ({end})",
        cfg.name,
        f.lrs.len(),
        cfg.train.batch_size,
        found.model,
        f.lrs.first().copied().unwrap_or(0.0),
        f.lrs.last().copied().unwrap_or(0.0),
    );
    match f.suggested {
        Some(lr) => println!(
            "suggested learning rate: {lr:.2e} (steepest descent of the smoothed loss; the pipeline uses {:.2e})",
            found.pipeline_lr
        ),
        None => println!("no suggestion: too few batches ran before the loss exploded (see the plot)"),
    }
    println!("wrote {}", args.plot.display());
    Ok(ExitCode::SUCCESS)
}
