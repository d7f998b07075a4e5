//! clap types only; each subcommand converts its arguments into library calls.

mod bench;
mod cache;
mod cut;
mod embed;
mod engine;
mod explain;
mod fit;
mod inspect;
mod logger;
mod lr_find;
mod predict;
mod progress;
mod pull;
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
  graft predict runs/iris/model.onnx ../shared/data/iris/iris.csv --json
  graft inspect ../shared/models/efficientnet-lite0/model.onnx
  graft cut ../shared/models/efficientnet-lite0/model.onnx --at auto -o backbone.onnx
  graft pull sentence-transformers/all-MiniLM-L6-v2 --file onnx/model.onnx")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Fit(fit::FitArgs),
    Predict(predict::PredictArgs),
    Verify(verify::VerifyArgs),
    Pull(pull::PullArgs),
    Inspect(inspect::InspectArgs),
    Cut(cut::CutArgs),
    Embed(embed::EmbedArgs),
    Bench(bench::BenchArgs),
    Cache(cache::CacheArgs),
    Explain(explain::ExplainArgs),
    LrFind(lr_find::LrFindArgs),
}

/// Runs the parsed command; the library's `log` warnings and its progress go to stderr.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    logger::install();
    progress::install();
    match cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Pull(a) => pull::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Cut(a) => cut::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Explain(a) => explain::run(a),
        Command::LrFind(a) => lr_find::run(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn every_argument_has_help() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "`graft {} --{id}` has no help text", sub.get_name());
            }
        }
    }
}
