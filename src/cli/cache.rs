use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use graft::features::cache::{self, cache_folders, Dataset, FeatureCache};

/// Look after a feature cache folder shared by many workers: what it holds, checksums, merging
/// shards, removing what no dataset uses.
#[derive(Args, Debug)]
#[command(
    after_help = "DIR is a cache root (the default is $GRAFT_CACHE or ~/.cache/graft; it holds features/*/) or one
feature folder. compact and gc are safe while workers write: they only remove shards they have
merged themselves; gc also removes what a worker writes meanwhile if no listed dataset uses it.

Examples:
  graft cache stats ~/.cache/graft
  graft cache verify /mnt/cache --json
  graft cache compact /mnt/cache
  graft cache gc /mnt/cache --keep pipelines/cats-vs-dogs.toml --keep photos/ --keep reviews.csv"
)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Items, rows, shards and bytes of each feature folder.
    Stats(Target),
    /// Check every shard against its sha256 (reads everything, changes nothing); fails when one
    /// is damaged.
    Verify(Target),
    /// Merge each folder's small shards into few large ones.
    Compact(Target),
    /// Remove the items that none of the datasets given with --keep uses, and temporary files
    /// older than an hour that killed writers left.
    Gc(GcArgs),
}

#[derive(Args, Debug)]
struct Target {
    /// Cache root or feature folder.
    dir: PathBuf,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct GcArgs {
    #[command(flatten)]
    target: Target,
    /// A dataset whose items are kept: a pipeline TOML (its data.path), an image folder, or a
    /// text CSV (column --text-column). Repeat for each; at least one.
    #[arg(long, required = true)]
    keep: Vec<PathBuf>,
    /// Text column of the CSVs given with --keep.
    #[arg(long, default_value = "text")]
    text_column: String,
}

pub fn run(args: CacheArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Stats(t) => stats(&t),
        Action::Verify(t) => verify(&t),
        Action::Compact(t) => compact(&t),
        Action::Gc(g) => gc(&g),
    }
}

fn stats(t: &Target) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for dir in cache_folders(&t.dir)? {
        all.push(FeatureCache::open_dir(&dir)?.stats());
    }
    if t.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for s in &all {
        let dim = s.dim.map_or("-".into(), |d| d.to_string());
        println!(
            "{}: {} items of {dim} floats, {} rows in {} shards, {}",
            s.dir.display(),
            s.items,
            s.rows,
            s.shards,
            bytes(s.bytes)
        );
    }
    let (items, shards, total) = all.iter().fold((0, 0, 0), |(i, s, b), x| (i + x.items, s + x.shards, b + x.bytes));
    println!("{} folders: {items} items, {shards} shards, {}", all.len(), bytes(total));
    Ok(ExitCode::SUCCESS)
}

fn verify(t: &Target) -> anyhow::Result<ExitCode> {
    let mut bad = Vec::new();
    let mut shards = 0;
    for dir in cache_folders(&t.dir)? {
        shards += std::fs::read_dir(&dir)?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .count();
        bad.extend(cache::verify(&dir)?);
    }
    if t.json {
        let list: Vec<_> = bad.iter().map(|(p, why)| serde_json::json!({ "shard": p, "problem": why })).collect();
        println!("{}", serde_json::json!({ "shards": shards, "damaged": list }));
    } else {
        for (p, why) in &bad {
            println!("damaged: {}: {why}", p.display());
        }
        println!("{shards} shards checked, {} damaged", bad.len());
    }
    Ok(if bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn compact(t: &Target) -> anyhow::Result<ExitCode> {
    let mut removed = 0;
    let mut now = 0;
    for dir in cache_folders(&t.dir)? {
        let mut c = FeatureCache::open_dir(&dir)?;
        for w in c.take_warnings() {
            eprintln!("warning: {w}");
        }
        removed += c.compact()?;
        now += c.shard_count();
    }
    if t.json {
        println!("{}", serde_json::json!({ "merged_shards": removed, "shards": now }));
    } else {
        println!("merged {removed} shards; {now} shards now");
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(g: &GcArgs) -> anyhow::Result<ExitCode> {
    let mut used = Vec::new();
    for p in &g.keep {
        used.extend(Dataset::from_path(p, &g.text_column).content_keys()?);
    }
    let out = cache::gc(&g.target.dir, &used)?;
    if g.target.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "removed {} items ({} shards rewritten) and {} stale temporary files; {} dataset items kept",
            out.items,
            out.shards,
            out.temp_files,
            used.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}
