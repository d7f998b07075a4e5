use std::process::ExitCode;

use clap::Args;
use graft::hub::{self, HubOptions};

use super::engine::EngineArgs;

/// Measure a model's throughput on random inputs (symbolic dimensions become the batch size).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft bench ../shared/models/efficientnet-lite0/model.onnx --batch 32 --device cpu
  graft bench ../shared/models/efficientnet-lite0/model.onnx --batch 64 --device cuda --iters 50")]
pub struct BenchArgs {
    /// Model file or hf://ORG/NAME/PATH[@REV].
    model: String,
    /// Batch size (the value of every symbolic dimension).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let path = hub::resolve(&args.model, None, &HubOptions::from_env())?;
    let r = graft::backend::bench::throughput(&path, &args.engine.options(), args.batch, args.warmup, args.iters)?;
    println!("{r}");
    Ok(ExitCode::SUCCESS)
}
