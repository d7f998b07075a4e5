use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graft::config::manifest::Manifest;
use graft::config::{AllBlocks, Unfreeze};
use graft::features::partition::Shard;
use graft::features::{cache, embed_dataset, Backbone, EmbedOptions, Items};
use graft::pipeline::{embed_front, UnfreezeAt};
use graft::train::ProgressMode;

use super::engine::EngineArgs;

/// Extract backbone features for a dataset, cached by content: a re-run embeds only new or
/// changed files, and an interrupted run resumes.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft embed efficientnet-lite0 ../shared/data/cats-vs-dogs/train --out features.safetensors
  graft embed models/efficientnet-lite0.toml photos/ --out f.safetensors --device cuda --batch 64
  graft embed all-minilm-l6-v2 ../shared/data/spooky-authors/train.csv --text-column text --label-column author \\
      --model ../shared/models/all-minilm-l6-v2/model.onnx --out sentences.safetensors
  # one worker of a Kubernetes Indexed Job, for `graft fit pipelines/cats-vs-dogs-finetune.toml`:
  graft embed efficientnet-lite0 /data/photos --model /models/efficientnet-lite0.onnx --unfreeze 2 \\
      --shard auto --cache /cache")]
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
    /// Without it only the feature cache is filled (a cluster worker's job: `graft fit` reads it).
    #[arg(long, short)]
    out: Option<PathBuf>,
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
    /// Embed only this worker's part: INDEX/COUNT (0-based, e.g. 2/8), or `auto` from a Kubernetes
    /// Indexed Job (JOB_COMPLETION_INDEX of GRAFT_SHARDS) or a Slurm array (SLURM_ARRAY_TASK_ID of
    /// SLURM_ARRAY_TASK_COUNT). Parts are decided by each item's content hash; share --cache.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Fine-tuning: compute the frozen front's tensor at the unfreeze point that `graft fit` of a
    /// pipeline with `backbone.unfreeze = N` (or "all") reads, instead of the backbone's output.
    /// Shards and caches the same way; for texts, the states of the valid tokens (cache only).
    #[arg(long, value_parser = parse_unfreeze)]
    unfreeze: Option<Unfreeze>,
    /// Fine-tuning: as --unfreeze, from this tensor (`backbone.unfreeze_from`).
    #[arg(long, conflicts_with = "unfreeze")]
    unfreeze_from: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let root = args.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&args.backbone)?, args.model.as_deref(), &root)?;
    let opts = EmbedOptions {
        text_column: args.text_column.clone(),
        label_column: args.label_column.clone(),
        limit: args.limit,
        shard: args.shard,
        batch: args.batch,
        cache: (!args.no_cache).then_some(root),
        engine: args.engine.options(),
        progress: if args.quiet { ProgressMode::Quiet } else { ProgressMode::Auto },
    };
    let at = match (args.unfreeze, &args.unfreeze_from) {
        (None, None) => None,
        (u, from) => Some(UnfreezeAt { unfreeze: u.unwrap_or(Unfreeze::Blocks(0)), from: from.clone() }),
    };
    match (&args.out, args.no_cache, backbone.manifest.text.is_some() && at.is_some()) {
        (None, true, _) => anyhow::bail!("nothing to write: give --out, or drop --no-cache to fill the cache"),
        (Some(out), _, true) => anyhow::bail!(
            "--out {}: token states at the unfreeze point vary in length per text and go to the cache only; drop --out",
            out.display()
        ),
        _ => {}
    }
    let data = match &at {
        Some(at) => embed_front(&backbone, &args.data, at, &opts)?,
        None => embed_dataset(&backbone, &args.data, &opts)?,
    };
    let emb = &data.embedded;
    if let Some(s) = args.shard {
        let what = match data.items {
            Items::Images => "images",
            Items::Texts => "texts",
        };
        println!("shard {s}: {} of {} {what}", data.considered, data.before_shard);
    }
    for s in &emb.skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    for w in &emb.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(out) = &args.out {
        data.to_file().save(out)?;
        println!("wrote {} ({} x {})", out.display(), emb.features.nrows(), emb.features.ncols());
    }
    if emb.computed > 0 {
        println!("{}", pipeline_line(emb));
    }
    println!("{}", summary(emb.rows.len(), emb.computed, emb.seconds));
    Ok(ExitCode::SUCCESS)
}

/// `N` (the last N blocks) or `all`, as a pipeline's `backbone.unfreeze`.
fn parse_unfreeze(spec: &str) -> Result<Unfreeze, String> {
    match spec {
        "all" => Ok(Unfreeze::All(AllBlocks::All)),
        n => n.parse().map(Unfreeze::Blocks).map_err(|_| format!("`{n}`: give a number of blocks or `all`")),
    }
}

fn parse_shard(spec: &str) -> Result<Shard, String> {
    Shard::parse(spec).map_err(|e| e.to_string())
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

/// How the prepare-and-run pipeline went: `engine started in A s, first run F s; waited W s for
/// prepared batches (P% of the S s pipeline); steady state R items/s`.
fn pipeline_line(emb: &graft::features::Embedded) -> String {
    let share = 100.0 * emb.waited / emb.pipeline_seconds.max(1e-9);
    format!(
        "engine started in {:.2} s, first run {:.2} s; waited {:.2} s for prepared batches ({share:.1}% of the {:.2} s pipeline); steady state {:.1} items/s",
        emb.engine_start,
        emb.first_run.0,
        emb.waited,
        emb.pipeline_seconds,
        emb.steady_rate()
    )
}

#[cfg(test)]
mod tests {
    use super::{pipeline_line, summary};

    #[test]
    fn the_pipeline_line_gives_the_share_of_the_run_spent_waiting() {
        let emb = graft::features::Embedded {
            features: ndarray::Array2::zeros((0, 0)),
            rows: Vec::new(),
            skipped: Vec::new(),
            computed: 2064,
            seconds: 41.0,
            waited: 1.0,
            pipeline_seconds: 40.0,
            engine_start: 0.5,
            first_run: (1.5, 64),
            warnings: Vec::new(),
        };
        // 2000 items after the first run, in 40 - 0.5 - 1.5 = 38 s.
        assert_eq!(
            pipeline_line(&emb),
            "engine started in 0.50 s, first run 1.50 s; waited 1.00 s for prepared batches (2.5% of the 40.00 s pipeline); steady state 52.6 items/s"
        );
    }

    #[test]
    fn a_cached_run_says_so_instead_of_a_rate() {
        assert_eq!(summary(2000, 0, 0.0465), "embedded 2000 items in 0.05 s (all 2000 cached)");
        assert_eq!(summary(2000, 2000, 4.0), "embedded 2000 items in 4.00 s (500.0 items/s)");
        assert_eq!(summary(2000, 500, 1.0), "embedded 2000 items in 1.00 s (500 new at 500.0 items/s, 1500 cached)");
        assert_eq!(summary(0, 0, 0.01), "embedded 0 items in 0.01 s (0.0 items/s)");
    }
}
