use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use graft::backend::{BackendKind, DeviceRequest};
use graft::pipeline::{Pipeline, RunDir};
use graft::train::ProgressMode;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Train a pipeline and write a run folder: model.onnx (verified), report.json, curves.png,
/// confusion.png and the native weights.
///
/// The run is built in OUT.partial and renamed to OUT when complete. Ctrl-C (or SIGTERM) stops
/// after the current epoch with a checkpoint (a second Ctrl-C quits at once); --resume continues.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft fit pipelines/iris.toml --out runs/iris
  graft fit pipelines/iris.toml --out runs/wine --set data.path=wine.csv --set data.label=class
  graft fit pipelines/iris.toml --out runs/iris --set validation.method=holdout --set model.hidden=[32]
  graft fit pipelines/iris.toml --out runs/iris --resume      # continue an interrupted run
  graft fit pipelines/iris.toml --out runs/iris --force       # replace a finished run
  graft fit pipelines/cats-vs-dogs.toml --out runs/cats-vs-dogs --with-preprocessing --device cuda")]
pub struct FitArgs {
    /// Pipeline TOML (see pipelines/).
    pipeline: PathBuf,
    /// Run folder (default: runs/<pipeline name>).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Override a pipeline field, e.g. --set train.epochs=50 (repeatable; values are TOML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue an interrupted run from its checkpoints (in OUT.partial).
    #[arg(long)]
    resume: bool,
    /// Replace the run already in OUT, or discard an interrupted one (OUT is replaced only once
    /// the new run is complete).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Backbone device (shorthand for --set backbone.device=...): auto, cpu, cuda or cuda:N.
    #[arg(long, value_parser = super::engine::parse::<DeviceRequest>)]
    device: Option<DeviceRequest>,
    /// Backbone engine (shorthand for --set backbone.backend=...): ort (default), tract or auto.
    /// Verification always runs the export on tract and, when it can be loaded, ONNX Runtime.
    #[arg(long, value_parser = super::engine::parse::<BackendKind>)]
    backend: Option<BackendKind>,
    /// Also export model-u8.onnx, taking raw uint8 RGB with the preprocessing inside the graph
    /// (shorthand for --set export.with_preprocessing=true).
    #[arg(long)]
    with_preprocessing: bool,
    /// Write TensorBoard event files (per-epoch loss, accuracy, learning rate) under DIR
    /// (shorthand for --set train.tensorboard=DIR).
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
    /// Stop after this many epochs (for testing --resume).
    #[arg(long, hide = true)]
    halt_after_epochs: Option<usize>,
}

pub fn run(args: FitArgs) -> anyhow::Result<ExitCode> {
    let mut sets = args.set.clone();
    if let Some(d) = &args.device {
        sets.push(format!("backbone.device=\"{d}\""));
    }
    if let Some(b) = &args.backend {
        sets.push(format!("backbone.backend=\"{b}\""));
    }
    if args.with_preprocessing {
        sets.push("export.with_preprocessing=true".into());
    }
    if let Some(dir) = &args.tensorboard {
        sets.push(format!("train.tensorboard={}", toml::Value::String(dir.display().to_string())));
    }
    let progress = if args.quiet { ProgressMode::Quiet } else { ProgressMode::Auto };
    let mut pipeline =
        Pipeline::from_toml_with(&args.pipeline, &sets)?.force(args.force).resume(args.resume).progress(progress);
    if let Some(out) = &args.out {
        pipeline = pipeline.out(out);
    }
    pipeline.session_mut().halt_after_epochs = args.halt_after_epochs;
    let (name, out) = (pipeline.config().name.clone(), pipeline.out_dir());
    let signal = catch_interrupts(pipeline.stop_flag(), &name)?;
    let fitted = pipeline.fit();
    if let Err(graft::Error::Interrupted { epoch }) = fitted {
        eprintln!(
            "{name}: interrupted after epoch {epoch}; checkpoints are kept in {}\ncontinue with: {}",
            RunDir::new(&out)?.checkpoints().display(),
            resume_command(&args, &out)
        );
        let code = match signal.load(Ordering::SeqCst) {
            0 => 130,
            sig => 128 + sig,
        };
        return Ok(ExitCode::from(code as u8));
    }
    let report = fitted.with_context(|| format!("fitting {}", args.pipeline.display()))?.report;
    let v = &report.validation;
    println!(
        "{name}: {} accuracy {:.4} (log loss {:.4}) on {} rows",
        v.evaluated_on, v.metrics.accuracy, v.metrics.log_loss, v.rows
    );
    println!("{}", report.verification.summary());
    println!("wrote {}", out.join("model.onnx").display());
    Ok(ExitCode::SUCCESS)
}

/// Catches SIGINT and SIGTERM for the rest of the command: the first one sets `stop` (the training
/// loop then writes a checkpoint at the end of the epoch and stops), a second one exits at once.
/// Returns where the number of the first signal received is stored (0 while none).
fn catch_interrupts(stop: Arc<AtomicBool>, name: &str) -> anyhow::Result<Arc<AtomicI32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let received = Arc::new(AtomicI32::new(0));
    let first = received.clone();
    let name = name.to_string();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(128 + sig);
            }
            first.store(sig, Ordering::SeqCst);
            eprintln!("\n{name}: stopping after the current epoch to save a checkpoint (Ctrl-C again to quit now)");
        }
    });
    Ok(received)
}

/// The command that continues this run: the same pipeline, overrides and folder, with --resume.
fn resume_command(args: &FitArgs, out: &Path) -> String {
    let mut words = vec!["graft".to_string(), "fit".into(), quote(&args.pipeline.to_string_lossy())];
    words.extend(["--out".into(), quote(&out.to_string_lossy())]);
    for set in &args.set {
        words.extend(["--set".into(), quote(set)]);
    }
    if let Some(d) = &args.device {
        words.extend(["--device".into(), quote(&d.to_string())]);
    }
    if let Some(b) = &args.backend {
        words.extend(["--backend".into(), quote(&b.to_string())]);
    }
    if args.with_preprocessing {
        words.push("--with-preprocessing".into());
    }
    if let Some(dir) = &args.tensorboard {
        words.extend(["--tensorboard".into(), quote(&dir.to_string_lossy())]);
    }
    words.push("--resume".into());
    words.join(" ")
}

/// `word` quoted for a POSIX shell when it needs to be.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(quote("train.epochs=3"), "train.epochs=3");
        assert_eq!(quote("data.path=\"my data.csv\""), "'data.path=\"my data.csv\"'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
