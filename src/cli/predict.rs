use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Predict with an exported model (runs the ONNX graph, not the native weights).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft predict runs/iris/model.onnx new-flowers.csv
  graft predict runs/iris/model.onnx new-flowers.csv --json --top-k 1")]
pub struct PredictArgs {
    /// The exported model.
    model: PathBuf,
    /// Input file (a CSV with the model's feature columns; a label column is ignored).
    input: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Show only the K most likely labels.
    #[arg(long)]
    top_k: Option<usize>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let mut engine = graft::backend::tract(&args.model)?;
    let predictions = graft::predict::tabular(&args.model, &args.input, engine.as_mut())?;
    let mut out = std::io::stdout().lock();
    for p in predictions {
        writeln!(out, "{}", p.line(args.json, args.top_k))?;
    }
    Ok(ExitCode::SUCCESS)
}
