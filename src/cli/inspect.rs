use std::process::ExitCode;

use clap::Args;
use graft::hub::{self, HubOptions};

/// Summarise an ONNX model: inputs and outputs, opset, parameters, op histogram and candidate cut
/// points (the input of the final classifier, global-pool outputs), and the block boundaries where
/// fine-tuning can start (numbered from the end, each with whether everything after it is trainable).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft inspect ../shared/models/efficientnet-lite0/model.onnx
  graft inspect hf://ORG/NAME/model.onnx --json")]
pub struct InspectArgs {
    /// Model file or hf://ORG/NAME/PATH[@REV].
    model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let path = hub::resolve(&args.model, None, &HubOptions::from_env())?;
    let summary = graft::onnx::inspect::summarize(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
