//! clap types only; each subcommand converts its arguments into library calls.

mod fit;
mod predict;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Transfer learning centred on ONNX: train small native heads (or whole small models), export one
/// deployable ONNX graph, verify it on a second engine.
#[derive(Parser, Debug)]
#[command(name = "graft", version, about, long_about = None)]
#[command(after_help = "Examples:
  graft fit pipelines/iris.toml --out runs/iris
  graft verify runs/iris/model.onnx --data ../shared/data/iris/iris.csv
  graft predict runs/iris/model.onnx ../shared/data/iris/iris.csv --json")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Fit(fit::FitArgs),
    Predict(predict::PredictArgs),
    Verify(verify::VerifyArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Verify(a) => verify::run(a),
    }
}
