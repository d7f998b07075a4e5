use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graft::backend::BackendKind;

/// Check an exported model on tract and ONNX Runtime against the native model (head.safetensors
/// beside it): max |diff| <= 1e-4 and 100% argmax agreement; exits 1 when it fails.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft verify runs/iris/model.onnx --data ../shared/data/iris/iris.csv
  graft verify runs/iris/model.onnx --data ../shared/data/iris/iris.csv --backend tract
  graft verify runs/cats-vs-dogs/model.onnx --data ../shared/data/cats-vs-dogs/train/cat
  graft verify runs/who-said-it-lstm/model.onnx --data ../shared/data/spooky-authors/train.csv")]
pub struct VerifyArgs {
    /// The exported model (head.safetensors must be beside it).
    model: PathBuf,
    /// Examples to compare on: a CSV (tabular, text: its `text` column), or images.
    #[arg(long)]
    data: PathBuf,
    /// Engines to check: auto (tract, and ONNX Runtime on the CPU when it can be loaded), ort or
    /// tract (that engine alone).
    #[arg(long, default_value = "auto", value_parser = super::engine::parse::<BackendKind>)]
    backend: BackendKind,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let v = graft::verify::verify_file(&args.model, &args.data, args.backend)?;
    println!("{}", v.summary());
    Ok(if v.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
