//! Content-addressed feature cache, safe for many writers on one folder (several processes, or
//! several machines on a shared volume): one folder per (model, preprocessing) key, holding shards
//! of `features [n, d]` with the content key of each row and a sha256 of the shard's content.
//!
//! - A shard is written under a temporary name and renamed, under a name no other process picks
//!   (host, process, random part), after every batch: an interrupted extraction resumes where it
//!   stopped, and a reader sees a shard whole or not at all.
//! - Compaction merges the shards this process listed into new shards written aside, then deletes
//!   exactly those inputs; shards other processes write meanwhile are never touched. A reader that
//!   lists both a merged shard and its inputs sees duplicates with identical values.
//! - Reads stream: opening reads each shard's header (its keys) into an index of 24 bytes per
//!   item; rows are read from disk when asked for. Each shard's checksum is verified once per
//!   process; a damaged shard is deleted and its items are embedded again.

mod maintain;
mod shard;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

pub use maintain::{cache_folders, gc, verify, Dataset, FolderStats, Gc};
use shard::Problem;

use crate::{io, Error, Result};

/// Shards of fewer rows are merged by [`FeatureCache::compact`].
pub const FULL_SHARD_ROWS: usize = 1 << 16;
/// Open shard files kept for reads.
const HANDLES: usize = 16;
/// Re-listings of the folder when shards vanish under a read (other processes compacting).
const RETRIES: usize = 8;

/// The cache root: `$GRAFT_CACHE`, else `$XDG_CACHE_HOME/graft`, else `~/.cache/graft`.
pub fn default_root() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("GRAFT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("graft")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/graft")))
        .unwrap_or_else(|| PathBuf::from(".graft-cache"))
}

/// The index key of a content key: the first 16 bytes of its sha256.
fn digest(key: &str) -> u128 {
    let d = Sha256::digest(key.as_bytes());
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// Where an item's row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    shard: u32,
    row: u32,
}

/// A shard in the index.
#[derive(Clone, Debug)]
struct ShardInfo {
    path: PathBuf,
    rows: usize,
    dim: usize,
    data_start: u64,
}

/// Features of inputs already embedded with one model and one preprocessing recipe.
pub struct FeatureCache {
    dir: Option<PathBuf>,
    shards: Vec<ShardInfo>,
    index: HashMap<u128, Loc>,
    dim: Option<usize>,
    /// Shard names whose checksum this process has checked (shards never change once named).
    verified: HashSet<PathBuf>,
    handles: Vec<(u32, File)>,
    /// Rows of a disabled cache, kept for this process only.
    memory: HashMap<String, Vec<f32>>,
    warnings: Vec<String>,
}

impl FeatureCache {
    /// The cache folder for `model_sha256` + `recipe` under `root`, indexing what it holds.
    pub fn open(root: &Path, model_sha256: &str, recipe: &str) -> Result<Self> {
        let key = io::sha256_hex(format!("{model_sha256}\n{recipe}").as_bytes());
        let dir = root.join("features").join(&key[..24]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let recipe_json = serde_json::from_str(recipe).unwrap_or_else(|_| serde_json::Value::from(recipe));
        let about = serde_json::json!({ "model_sha256": model_sha256, "recipe": recipe_json });
        let about = format!("{about:#}\n");
        if std::fs::read(dir.join("recipe.json")).ok().as_deref() != Some(about.as_bytes()) {
            io::write_atomic(&dir.join("recipe.json"), about.as_bytes())?;
        }
        Self::open_dir(&dir)
    }

    /// The cache in `dir`, a folder of shards, indexing what it holds.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let mut cache = Self::disabled();
        cache.dir = Some(dir.to_path_buf());
        cache.reload()?;
        Ok(cache)
    }

    /// A cache that keeps nothing on disk (`--no-cache`); what is appended stays in memory for
    /// the life of the value.
    pub fn disabled() -> Self {
        FeatureCache {
            dir: None,
            shards: Vec::new(),
            index: HashMap::new(),
            dim: None,
            verified: HashSet::new(),
            handles: Vec::new(),
            memory: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Lists the folder and indexes its shards again: the ones not yet checked are verified,
    /// damaged ones deleted (one warning), vanished ones skipped (the listing is taken again).
    fn reload(&mut self) -> Result<()> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        self.handles.clear();
        let mut damaged = Vec::new();
        for _ in 0..RETRIES {
            self.shards.clear();
            self.index.clear();
            let mut vanished = false;
            for path in shard_files(&dir)? {
                let mut file = match shard::open(&path)? {
                    Ok(f) => f,
                    Err(_) => {
                        vanished = true;
                        continue;
                    }
                };
                let verify = !self.verified.contains(&path);
                let header = match shard::read_header(&mut file, &path, verify)? {
                    Ok(h) if self.dim.is_some_and(|d| d != h.dim) => {
                        Err(Problem::Damaged(format!("rows of width {}, the cache's are {:?}", h.dim, self.dim)))
                    }
                    other => other,
                };
                match header {
                    Ok(h) => {
                        self.dim = Some(h.dim);
                        self.verified.insert(path.clone());
                        let id = self.shards.len() as u32;
                        for (row, k) in h.keys.iter().enumerate() {
                            self.index.insert(digest(k), Loc { shard: id, row: row as u32 });
                        }
                        self.shards.push(ShardInfo { path, rows: h.rows(), dim: h.dim, data_start: h.data_start });
                    }
                    Err(Problem::Gone) => vanished = true,
                    Err(Problem::Damaged(why)) => {
                        // Deleted so that the next open does not warn again; what it held is recomputed.
                        let _ = std::fs::remove_file(&path);
                        damaged.push(format!("{}: {why}", path.file_name().unwrap_or_default().to_string_lossy()));
                    }
                }
            }
            if !vanished {
                break;
            }
        }
        if !damaged.is_empty() {
            self.warnings.push(format!(
                "feature cache {}: dropped {} damaged shard(s), their inputs are embedded again ({})",
                dir.display(),
                damaged.len(),
                damaged.join("; ")
            ));
        }
        Ok(())
    }

    /// What opening the cache found wrong (damaged shards that were dropped), at most one message;
    /// the caller reports it. Taken once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Whether anything is kept (false for [`FeatureCache::disabled`]).
    pub fn is_enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// The cache's folder (`None` when disabled).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the input with content key `key` is cached.
    pub fn contains(&self, key: &str) -> bool {
        match self.dir {
            Some(_) => self.index.contains_key(&digest(key)),
            None => self.memory.contains_key(key),
        }
    }

    /// The width of the cached rows, once something is cached.
    pub fn dim(&self) -> Option<usize> {
        self.dim.or_else(|| self.memory.values().next().map(Vec::len))
    }

    /// The cached features of the input with content key `key`, read from disk. A shard merged
    /// away by another process meanwhile is found again in the merged one.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<f32>>> {
        let mut row = Vec::new();
        Ok(self.read_into(key, &mut row)?.then_some(row))
    }

    /// Like [`FeatureCache::get`], into `out`; false when `key` is not cached.
    pub fn read_into(&mut self, key: &str, out: &mut Vec<f32>) -> Result<bool> {
        if self.dir.is_none() {
            let Some(row) = self.memory.get(key) else { return Ok(false) };
            out.clear();
            out.extend_from_slice(row);
            return Ok(true);
        }
        let d = digest(key);
        for _ in 0..RETRIES {
            let Some(&loc) = self.index.get(&d) else { return Ok(false) };
            let info = self.shards[loc.shard as usize].clone();
            let file = match self.handles.iter().position(|(s, _)| *s == loc.shard) {
                Some(i) => &self.handles[i].1,
                None => match shard::open(&info.path)? {
                    Ok(f) => {
                        if self.handles.len() == HANDLES {
                            self.handles.remove(0);
                        }
                        self.handles.push((loc.shard, f));
                        &self.handles.last().expect("just pushed").1
                    }
                    Err(_) => {
                        self.reload()?;
                        continue;
                    }
                },
            };
            let offset = info.data_start + (loc.row as usize * info.dim * 4) as u64;
            shard::read_row(file, &info.path, info.dim, offset, out)?;
            return Ok(true);
        }
        Err(Error::Invalid(format!(
            "feature cache {}: shards keep vanishing while reading; is something deleting them?",
            self.dir.as_deref().unwrap_or(Path::new("")).display()
        )))
    }

    /// Number of cached inputs.
    pub fn len(&self) -> usize {
        if self.dir.is_some() {
            self.index.len()
        } else {
            self.memory.len()
        }
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards indexed.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Adds rows of `features` under `keys`, writing a new shard.
    ///
    /// # Shapes
    /// `features` `[keys.len(), d]`
    pub fn append(&mut self, keys: &[String], features: &Array2<f32>) -> Result<()> {
        let Some(dir) = self.dir.clone() else {
            for (k, row) in keys.iter().zip(features.rows()) {
                self.memory.insert(k.clone(), row.to_vec());
            }
            return Ok(());
        };
        let dim = features.ncols();
        if let Some(d) = self.dim.filter(|&d| d != dim) {
            return Err(Error::Invalid(format!(
                "feature cache {}: rows of width {dim}, the cache's are {d}",
                dir.display()
            )));
        }
        let path = shard::new_path(&dir);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let data_start = shard::write(&path, &refs, dim, |i, out| {
            out.clear();
            out.extend(features.row(i).iter().copied());
            Ok(())
        })?;
        self.dim = Some(dim);
        self.verified.insert(path.clone());
        let id = self.shards.len() as u32;
        for (row, k) in keys.iter().enumerate() {
            self.index.insert(digest(k), Loc { shard: id, row: row as u32 });
        }
        self.shards.push(ShardInfo { path, rows: keys.len(), dim, data_start });
        Ok(())
    }

    /// Merges the shards of fewer than [`FULL_SHARD_ROWS`] rows that this value has indexed into
    /// new shards (written aside, then renamed), then deletes exactly those inputs. Shards other
    /// processes add meanwhile are left alone; one that another compaction removed first makes
    /// this one stop without deleting anything. Returns the number of shards removed.
    pub fn compact(&mut self) -> Result<usize> {
        let small: Vec<u32> =
            (0..self.shards.len() as u32).filter(|&s| self.shards[s as usize].rows < FULL_SHARD_ROWS).collect();
        if small.len() < 2 {
            return Ok(0);
        }
        self.rewrite(&small, |_| true)
    }

    /// Rewrites the shards `group` (ids into `self.shards`), keeping the rows whose key `keep`
    /// accepts and that the index points to (one copy of each item), into new shards; then deletes
    /// the inputs and indexes the folder again. Returns the number of shards removed.
    fn rewrite(&mut self, group: &[u32], keep: impl Fn(&str) -> bool) -> Result<usize> {
        let Some(dir) = self.dir.clone() else { return Ok(0) };
        let mut removed = 0;
        // Input files stay open while they are copied, so a concurrent deletion cannot cut a copy short.
        'parts: for part in group.chunks(256) {
            let mut sources = Vec::new();
            let mut rows: Vec<(String, usize, u64)> = Vec::new();
            for &s in part {
                let info = &self.shards[s as usize];
                let Ok(mut file) = shard::open(&info.path)? else { break 'parts };
                let Ok(header) = shard::read_header(&mut file, &info.path, false)? else { break 'parts };
                for (row, k) in header.keys.into_iter().enumerate() {
                    if self.index.get(&digest(&k)) == Some(&Loc { shard: s, row: row as u32 }) && keep(&k) {
                        rows.push((k, sources.len(), header.data_start + (row * info.dim * 4) as u64));
                    }
                }
                sources.push((file, info.path.clone(), info.dim));
            }
            let dim = sources.first().map_or(0, |s| s.2);
            for chunk in rows.chunks(FULL_SHARD_ROWS) {
                let path = shard::new_path(&dir);
                let keys: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
                shard::write(&path, &keys, dim, |i, out| {
                    let (_, src, offset) = &chunk[i];
                    let (file, p, d) = &sources[*src];
                    shard::read_row(file, p, *d, *offset, out)
                })?;
                self.verified.insert(path);
            }
            for (_, path, _) in &sources {
                match std::fs::remove_file(path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
            }
        }
        self.reload()?;
        Ok(removed)
    }
}

/// The shard files in `dir`, sorted by name.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests;
