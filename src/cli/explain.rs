use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Show where an image model looks: per image, a PNG of the photo (as the model sees it) with a
/// Grad-CAM heatmap blended over it, for the predicted class or --class. The heatmap is the last
/// spatial feature map of the model's own graph (before its global pooling), weighted by the
/// gradient of the class score, computed by graft's native reverse-mode tail.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft explain runs/cats-vs-dogs/model.onnx photos/cat.1.jpg photos/dog.2.jpg --out heatmaps
  graft explain runs/cats-vs-dogs/model.onnx photos/ --out heatmaps --class dog
  graft explain runs/cats-vs-dogs/model.onnx cat.jpg --json   # class, probability and the 7x7 map")]
pub struct ExplainArgs {
    /// The exported image model.
    model: PathBuf,
    /// Image files and folders of images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Folder for the heatmap PNGs (STEM.png per image; created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Explain this class instead of the predicted one.
    #[arg(long)]
    class: Option<String>,
    /// One JSON object per image: image, class, probability, predicted class, the low-resolution
    /// map ([h][w], normalised to [0, 1]) and the PNG written.
    #[arg(long)]
    json: bool,
    /// Images per engine run.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[command(flatten)]
    engine: super::engine::EngineArgs,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    if args.out.is_none() && !args.json {
        anyhow::bail!("nothing to write: pass --out DIR for the heatmap PNGs, --json for the maps, or both");
    }
    let mut explainer = graft::explain::Explainer::open(&args.model, &args.engine.options())?;
    let class = args.class.as_deref().map(|c| explainer.class(c)).transpose()?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| graft::Error::io(dir, e))?;
    }
    let files = graft::data::collect_images(&args.images)?;
    let (done, skipped) = explainer.files(&files, class, args.out.as_deref(), args.batch)?;
    let mut out = std::io::stdout().lock();
    for e in &done {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            let written = e.output.as_deref().unwrap_or("-");
            writeln!(out, "{}\t{}\t{:.4}\t{written}", e.image, e.class, e.probability)?;
        }
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    if done.is_empty() {
        anyhow::bail!("nothing was explained: all {} images were skipped", skipped.len());
    }
    Ok(ExitCode::SUCCESS)
}
