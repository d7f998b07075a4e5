use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use graft::hub::{self, HubOptions, OnProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// Download files of a Hugging Face hub model repository into the standard cache
/// ($HF_HOME/hub), or find them there with --offline. Honours HF_HOME, HF_ENDPOINT, HF_TOKEN,
/// HF_HUB_OFFLINE, GRAFT_HTTP_TIMEOUT and GRAFT_HTTP_RETRIES. Prints the local paths.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft pull sentence-transformers/all-MiniLM-L6-v2 --file onnx/model.onnx --file tokenizer.json
  graft pull ORG/NAME --file model.onnx --revision v1.0 --sha256 93a1...283d
  graft pull ORG/NAME --timeout 120 --retries 5              # a slow or flaky network
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
    /// Seconds to wait for a connection and for each read [default: 10 to connect, 30 to read;
    /// env GRAFT_HTTP_TIMEOUT].
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Further attempts after a 5xx answer, a reset or a timeout, with exponential backoff
    /// [default: 3; env GRAFT_HTTP_RETRIES].
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
}

pub fn run(args: PullArgs) -> anyhow::Result<ExitCode> {
    let mut opts = HubOptions::from_env();
    opts.offline |= args.offline;
    if let Some(secs) = args.timeout {
        opts.http = opts.http.with_timeout_secs(secs).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    }
    if let Some(n) = args.retries {
        opts.http.retries = n;
    }
    let files = if args.files.is_empty() { vec!["model.onnx".to_string()] } else { args.files };
    if args.sha256.is_some() && files.len() > 1 {
        anyhow::bail!("--sha256 checks one file; pass a single --file");
    }
    for file in &files {
        let bar = ProgressBar::new(0).with_message(file.clone());
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})") {
            bar.set_style(style);
        }
        let shown = bar.clone();
        opts.progress = Some(OnProgress(Arc::new(move |done, total| {
            shown.set_length(total);
            shown.set_position(done);
        })));
        let path = hub::pull(&args.repo, file, args.revision.as_deref(), args.sha256.as_deref(), &opts);
        bar.finish_and_clear();
        println!("{}", path?.display());
    }
    Ok(ExitCode::SUCCESS)
}
