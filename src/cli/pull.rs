use std::process::ExitCode;

use clap::Args;
use graft::hub::{self, HubOptions};

/// Download files of a Hugging Face hub model repository into the standard cache
/// ($HF_HOME/hub), or find them there with --offline. Honours HF_HOME, HF_ENDPOINT, HF_TOKEN and
/// HF_HUB_OFFLINE. Prints the local paths.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft pull sentence-transformers/all-MiniLM-L6-v2 --file onnx/model.onnx --file tokenizer.json
  graft pull ORG/NAME --file model.onnx --revision v1.0 --sha256 93a1...283d
  HF_HUB_OFFLINE=1 graft pull ORG/NAME --file model.onnx     # cache only")]
pub struct PullArgs {
    /// Repository id, e.g. ORG/NAME.
    repo: String,
    /// File in the repository (repeatable; default model.onnx).
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<String>,
    /// Branch, tag or commit.
    #[arg(long)]
    revision: Option<String>,
    /// Expected sha256 of the (single) file.
    #[arg(long)]
    sha256: Option<String>,
    /// Resolve from the cache only.
    #[arg(long)]
    offline: bool,
}

pub fn run(args: PullArgs) -> anyhow::Result<ExitCode> {
    let mut opts = HubOptions::from_env();
    opts.offline |= args.offline;
    let files = if args.files.is_empty() { vec!["model.onnx".to_string()] } else { args.files };
    if args.sha256.is_some() && files.len() > 1 {
        anyhow::bail!("--sha256 checks one file; pass a single --file");
    }
    for file in &files {
        let path = hub::pull(&args.repo, file, args.revision.as_deref(), args.sha256.as_deref(), &opts)?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
