use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Check an exported model on a second engine against the native model (max |diff| <= 1e-4,
/// 100% argmax agreement); exits 1 when it fails.
#[derive(Args, Debug)]
#[command(after_help = "Example:
  graft verify runs/iris/model.onnx --data ../shared/data/iris/iris.csv")]
pub struct VerifyArgs {
    /// The exported model (head.safetensors must be beside it).
    model: PathBuf,
    /// Rows to compare on.
    #[arg(long)]
    data: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let v = graft::verify::tabular_csv(&args.model, &args.data)?;
    println!("{}", v.summary());
    Ok(if v.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
