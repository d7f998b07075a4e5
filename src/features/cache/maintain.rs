//! Maintenance of a cache root (`graft cache`): what each feature folder holds, checksum checks,
//! compaction, and garbage collection of the items no listed dataset uses.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{digest, shard, shard_files, FeatureCache};
use crate::config::{PipelineConfig, Task};
use crate::data::{collect_images, read_text_csv, ImageFolder, TextOptions};
use crate::{io, Error, Result};

/// Temporary files (left by killed writers) older than this are removed by [`gc`].
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The feature folders under `dir`: `dir` itself when it holds shards or a `recipe.json`, else
/// the folders of `dir/features/`, sorted.
pub fn cache_folders(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::io(dir, std::io::ErrorKind::NotFound.into()));
    }
    if dir.join("recipe.json").exists() || !shard_files(dir)?.is_empty() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let features = dir.join("features");
    if !features.is_dir() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(&features)
        .map_err(|e| Error::io(&features, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// What one feature folder holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FolderStats {
    /// The folder.
    pub dir: PathBuf,
    /// `recipe.json`: the model's sha256 and the preprocessing recipe.
    pub recipe: Option<serde_json::Value>,
    /// Distinct items.
    pub items: usize,
    /// Rows in all shards (more than `items` when shards overlap, before compaction).
    pub rows: usize,
    /// Shard files.
    pub shards: usize,
    /// Bytes of the shard files.
    pub bytes: u64,
    /// Feature width.
    pub dim: Option<usize>,
}

impl FeatureCache {
    /// What this folder holds (zeros for a disabled cache).
    pub fn stats(&self) -> FolderStats {
        let dir = self.dir.clone().unwrap_or_default();
        let bytes = self.shards.iter().map(|s| std::fs::metadata(&s.path).map_or(0, |m| m.len())).sum();
        FolderStats {
            recipe: io::read_json(&dir.join("recipe.json")).ok(),
            dir,
            items: self.index.len(),
            rows: self.shards.iter().map(|s| s.rows).sum(),
            shards: self.shards.len(),
            bytes,
            dim: self.dim,
        }
    }

    /// Drops the items whose content key `used` rejects, rewriting the shards that hold any;
    /// returns (items removed, shards removed).
    pub fn retain(&mut self, used: impl Fn(&str) -> bool) -> Result<(usize, usize)> {
        let before = self.index.len();
        let mut group = Vec::new();
        for (id, info) in self.shards.iter().enumerate() {
            let Ok(mut file) = shard::open(&info.path)? else { continue };
            let Ok(h) = shard::read_header(&mut file, &info.path, false)? else { continue };
            if h.keys.iter().any(|k| !used(k)) {
                group.push(id as u32);
            }
        }
        if group.is_empty() {
            return Ok((0, 0));
        }
        let shards = self.rewrite(&group, used)?;
        Ok((before.saturating_sub(self.index.len()), shards))
    }
}

/// Checks every shard of the folder `dir` against its checksum without changing anything;
/// returns the damaged ones with what is wrong (a shard removed meanwhile by a compaction is not
/// damaged and is left out).
pub fn verify(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut bad = Vec::new();
    for path in shard_files(dir)? {
        if let Some(shard::Problem::Damaged(why)) = shard::check(&path)? {
            bad.push((path, why));
        }
    }
    Ok(bad)
}

/// A dataset whose items [`gc`] keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dataset {
    /// A pipeline TOML: its `data.path`, read as the pipeline reads it (images or a text CSV).
    Pipeline(PathBuf),
    /// A folder of images (class subfolders or not).
    Images(PathBuf),
    /// A CSV whose column `column` holds texts.
    TextCsv {
        /// The CSV.
        path: PathBuf,
        /// Its text column.
        column: String,
    },
}

impl Dataset {
    /// A `--keep` argument: a `.toml` is a pipeline, a `.csv` a text CSV (column `text_column`),
    /// anything else a folder of images.
    pub fn from_path(path: &Path, text_column: &str) -> Dataset {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Dataset::Pipeline(path.to_path_buf()),
            Some("csv") => Dataset::TextCsv { path: path.to_path_buf(), column: text_column.to_string() },
            _ => Dataset::Images(path.to_path_buf()),
        }
    }

    /// The content keys of the dataset's items, as the cache knows them (sha256 of each image
    /// file's bytes, or of each text).
    pub fn content_keys(&self) -> Result<Vec<String>> {
        match self {
            Dataset::Images(dir) => {
                let paths = match ImageFolder::scan(dir) {
                    Ok(f) => f.items.into_iter().map(|(p, _)| p).collect(),
                    Err(_) => collect_images(std::slice::from_ref(dir))?,
                };
                Ok(crate::features::file_keys(&paths).into_iter().filter(|k| !k.starts_with("unreadable:")).collect())
            }
            Dataset::TextCsv { path, column } => {
                let opts = TextOptions { text: column.clone(), label: None, skip_bad_rows: true };
                Ok(read_text_csv(path, &opts)?.texts.iter().map(|t| io::sha256_hex(t.as_bytes())).collect())
            }
            Dataset::Pipeline(toml) => {
                let cfg = PipelineConfig::load(toml, &[])?;
                match cfg.task {
                    Task::Image => Dataset::Images(cfg.data.path).content_keys(),
                    Task::TextEncoder | Task::TextLstm => {
                        let column = cfg.data.text.unwrap_or_else(|| "text".into());
                        Dataset::TextCsv { path: cfg.data.path, column }.content_keys()
                    }
                    Task::Tabular => Ok(Vec::new()),
                }
            }
        }
    }
}

/// What [`gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Gc {
    /// Items no listed dataset uses.
    pub items: usize,
    /// Shard files rewritten or deleted.
    pub shards: usize,
    /// Temporary files older than an hour, left by killed writers.
    pub temp_files: usize,
}

/// Removes, from every feature folder under `root` (see [`cache_folders`]), the items whose
/// content key is not in `used`; a per-token key `SHA/POSITION` counts as its text's `SHA`. Also
/// removes temporary files older than an hour. Run it when no worker writes to the cache: items
/// written meanwhile that no listed dataset uses are removed too.
pub fn gc(root: &Path, used: &[String]) -> Result<Gc> {
    let used: HashSet<u128> = used.iter().map(|k| digest(k)).collect();
    let keep = |k: &str| used.contains(&digest(k.split('/').next().unwrap_or(k)));
    let mut out = Gc::default();
    for dir in cache_folders(root)? {
        let mut cache = FeatureCache::open_dir(&dir)?;
        let (items, shards) = cache.retain(keep)?;
        out.items += items;
        out.shards += shards;
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if name.starts_with(".graft-")
                && name.ends_with(".tmp")
                && old
                && std::fs::remove_file(entry.path()).is_ok()
            {
                out.temp_files += 1;
            }
        }
    }
    Ok(out)
}
