use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graft::config::manifest::Manifest;
use graft::data::{collect_images, ImageFolder};
use graft::data::{read_text_csv, Labels, TextOptions};
use graft::features::{cache, embed_images, embed_texts, Backbone, Embedded, FeatureCache, FeatureFile};
use graft::train::ProgressMode;

use super::engine::EngineArgs;

/// Extract backbone features for a dataset, cached by content: a re-run embeds only new or
/// changed files, and an interrupted run resumes.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft embed efficientnet-lite0 ../shared/data/cats-vs-dogs/train --out features.safetensors
  graft embed models/efficientnet-lite0.toml photos/ --out f.safetensors --device cuda --batch 64
  graft embed all-minilm-l6-v2 ../shared/data/spooky-authors/train.csv --text-column text --label-column author \\
      --model ../shared/models/all-minilm-l6-v2/model.onnx --out sentences.safetensors")]
pub struct EmbedArgs {
    /// Backbone manifest name (models/NAME.toml) or path.
    backbone: String,
    /// Images: a folder with one subfolder per class (labels), or a folder of images.
    /// Text: a CSV.
    data: PathBuf,
    /// Text column of the CSV (text backbones).
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Label column of the CSV (optional).
    #[arg(long)]
    label_column: Option<String>,
    /// Embed only the first N texts or images.
    #[arg(long)]
    limit: Option<usize>,
    /// Output: safetensors with `features` [N, D], `labels` [N] and the file list in its metadata.
    #[arg(long, short)]
    out: PathBuf,
    /// Use this model file instead of the manifest's source.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Items per engine run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Feature cache root (default $GRAFT_CACHE or ~/.cache/graft).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Recompute everything and keep nothing.
    #[arg(long)]
    no_cache: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let root = args.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&args.backbone)?, args.model.as_deref(), &root)?;
    let progress = if args.quiet { ProgressMode::Quiet } else { ProgressMode::Auto };
    if backbone.manifest.text.is_some() {
        return embed_text(&args, &backbone, &root, progress);
    }
    let pre =
        backbone.preprocess.clone().ok_or_else(|| anyhow::anyhow!("`{}` is not an image backbone", args.backbone))?;
    let (paths, labels, classes) = match ImageFolder::scan(&args.data) {
        Ok(folder) => {
            let (p, l): (Vec<_>, Vec<_>) = folder.items.iter().cloned().unzip();
            (p, l.into_iter().map(|c| c as f32).collect::<Vec<_>>(), folder.classes)
        }
        Err(_) => {
            let p = collect_images(std::slice::from_ref(&args.data))?;
            let n = p.len();
            (p, vec![-1.0; n], Vec::new())
        }
    };
    let n = args.limit.unwrap_or(paths.len()).min(paths.len());
    let (paths, labels) = (&paths[..n], &labels[..n]);
    let recipe = backbone.recipe(None)?;
    let mut fcache =
        if args.no_cache { FeatureCache::disabled() } else { FeatureCache::open(&root, &backbone.sha256, &recipe)? };
    let emb = embed_images(&backbone, &args.engine.options(), paths, &mut fcache, args.batch, progress)?;
    for s in &emb.skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    let ids: Vec<String> = emb.rows.iter().map(|&i| paths[i].display().to_string()).collect();
    let metadata = HashMap::from([
        ("ids".to_string(), serde_json::to_string(&ids)?),
        ("classes".to_string(), serde_json::to_string(&classes)?),
        ("skipped".to_string(), serde_json::to_string(&emb.skipped)?),
        ("backbone".to_string(), serde_json::to_string(&backbone.info())?),
        ("preprocess".to_string(), pre.to_json()),
    ]);
    write(&args, emb, labels, metadata)
}

fn write(
    args: &EmbedArgs,
    emb: Embedded,
    labels: &[f32],
    metadata: HashMap<String, String>,
) -> anyhow::Result<ExitCode> {
    for w in &emb.warnings {
        eprintln!("warning: {w}");
    }
    let file =
        FeatureFile { features: emb.features.clone(), labels: emb.rows.iter().map(|&i| labels[i]).collect(), metadata };
    file.save(&args.out)?;
    println!("wrote {} ({} x {})", args.out.display(), emb.features.nrows(), emb.features.ncols());
    println!("{}", summary(emb.rows.len(), emb.computed, emb.seconds));
    Ok(ExitCode::SUCCESS)
}

/// The closing line: `embedded N items in S s (R items/s)`, where the rate counts only the items
/// embedded now; a run served from the cache says so instead of quoting a cache-read rate.
fn summary(items: usize, computed: usize, seconds: f64) -> String {
    let rate = computed as f64 / seconds.max(1e-9);
    let how = match items - computed.min(items) {
        0 => format!("{rate:.1} items/s"),
        cached if computed == 0 => format!("all {cached} cached"),
        cached => format!("{computed} new at {rate:.1} items/s, {cached} cached"),
    };
    format!("embedded {items} items in {seconds:.2} s ({how})")
}

fn embed_text(
    args: &EmbedArgs,
    backbone: &Backbone,
    root: &std::path::Path,
    progress: ProgressMode,
) -> anyhow::Result<ExitCode> {
    let encoder = backbone.text_encoder()?;
    let opts = TextOptions { text: args.text_column.clone(), label: args.label_column.clone(), skip_bad_rows: false };
    let table = read_text_csv(&args.data, &opts)?;
    let n = args.limit.unwrap_or(table.texts.len()).min(table.texts.len());
    let texts = &table.texts[..n];
    let (labels, classes) = match &table.labels {
        Some(raw) => {
            let l = Labels::fit(raw);
            (l.encode(&raw[..n])?.into_iter().map(|c| c as f32).collect::<Vec<_>>(), l.0)
        }
        None => (vec![-1.0; n], Vec::new()),
    };
    let recipe = backbone.recipe(Some(&encoder))?;
    let mut fcache =
        if args.no_cache { FeatureCache::disabled() } else { FeatureCache::open(root, &backbone.sha256, &recipe)? };
    let emb = embed_texts(backbone, &args.engine.options(), &encoder, texts, &mut fcache, args.batch, progress)?;
    let ids: Vec<String> = emb.rows.iter().map(|&i| format!("line {}", table.lines[i])).collect();
    let metadata = HashMap::from([
        ("ids".to_string(), serde_json::to_string(&ids)?),
        ("classes".to_string(), serde_json::to_string(&classes)?),
        ("backbone".to_string(), serde_json::to_string(&backbone.info())?),
    ]);
    write(args, emb, &labels, metadata)
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn a_cached_run_says_so_instead_of_a_rate() {
        assert_eq!(summary(2000, 0, 0.0465), "embedded 2000 items in 0.05 s (all 2000 cached)");
        assert_eq!(summary(2000, 2000, 4.0), "embedded 2000 items in 4.00 s (500.0 items/s)");
        assert_eq!(summary(2000, 500, 1.0), "embedded 2000 items in 1.00 s (500 new at 500.0 items/s, 1500 cached)");
        assert_eq!(summary(0, 0, 0.01), "embedded 0 items in 0.01 s (0.0 items/s)");
    }
}
