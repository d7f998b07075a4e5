use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graft::hub::{self, HubOptions};

/// Cut a model at an inner tensor: the new graph's output is that tensor; nodes and initializers no
/// longer needed are pruned; opset and metadata are kept.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft cut ../shared/models/efficientnet-lite0/model.onnx --at auto -o backbone.onnx
  graft cut model.onnx --at /features/pool/Flatten_output_0 -o backbone.onnx")]
pub struct CutArgs {
    /// Model file or hf://ORG/NAME/PATH[@REV].
    model: String,
    /// Tensor to cut at, or `auto` (the input of the final classifier; see `graft inspect`).
    #[arg(long, default_value = "auto")]
    at: String,
    /// Output file.
    #[arg(long, short)]
    output: PathBuf,
}

pub fn run(args: CutArgs) -> anyhow::Result<ExitCode> {
    let path = hub::resolve(&args.model, None, &HubOptions::from_env())?;
    let model = graft::onnx::load(&path)?;
    let cut = graft::onnx::cut::cut(&model, &args.at, &path)?;
    graft::onnx::save(&args.output, &cut)?;
    let out = &cut.graph.as_ref().expect("cut keeps a graph").output[0].name;
    println!("wrote {} (output `{out}`)", args.output.display());
    Ok(ExitCode::SUCCESS)
}
