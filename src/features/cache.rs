//! Content-addressed feature cache: one folder per (model, preprocessing) key, holding shards of
//! `features [n, d]` with the content hash of each row's input and a sha256 of the shard's content
//! in its metadata. A shard is written atomically after every batch, so an interrupted extraction
//! resumes where it stopped; a shard that fails its check when the cache is opened is deleted and
//! its items are embedded again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2};
use sha2::{Digest, Sha256};

use crate::io;
use crate::nn::sequential::{load_tensors, save_tensors};
use crate::{Error, Result};

/// The cache root: `$GRAFT_CACHE`, else `$XDG_CACHE_HOME/graft`, else `~/.cache/graft`.
pub fn default_root() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("GRAFT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("graft")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/graft")))
        .unwrap_or_else(|| PathBuf::from(".graft-cache"))
}

/// Features of inputs already embedded with one model and one preprocessing recipe.
pub struct FeatureCache {
    dir: Option<PathBuf>,
    map: HashMap<String, Vec<f32>>,
    shards: usize,
    warnings: Vec<String>,
}

/// The metadata keys of a shard.
const KEYS: &str = "keys";
const SHA256: &str = "sha256";

/// sha256 over a shard's `keys` metadata (as stored) and its features' little-endian bytes.
fn checksum(keys_json: &str, features: &ArrayD<f32>) -> String {
    let mut h = Sha256::new();
    h.update(keys_json.as_bytes());
    h.update([0u8]);
    for v in features.iter() {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes one shard: `features` `[keys.len(), d]`, the keys and the checksum.
fn write_shard(path: &Path, keys: &[&String], features: ArrayD<f32>) -> Result<()> {
    let keys_json = serde_json::to_string(keys).expect("strings serialise");
    let sum = checksum(&keys_json, &features);
    let meta = HashMap::from([(KEYS.to_string(), keys_json), (SHA256.to_string(), sum)]);
    save_tensors(path, &[("features".into(), features)], meta)
}

/// Reads one shard and checks it against its checksum (and `dim`, the width of the shards read so
/// far); the error says what is wrong with it.
fn read_shard(path: &Path, dim: Option<usize>) -> std::result::Result<(Vec<String>, Array2<f32>), String> {
    let (mut tensors, meta) = load_tensors(path).map_err(|e| e.to_string())?;
    let keys_json = meta.get(KEYS).ok_or("no `keys` metadata")?;
    let features = tensors.remove("features").ok_or("no `features` tensor")?;
    match meta.get(SHA256) {
        None => return Err("no checksum (written by an older graft)".into()),
        Some(sum) if *sum != checksum(keys_json, &features) => {
            return Err("its content does not match its sha256".into())
        }
        Some(_) => {}
    }
    let keys: Vec<String> = serde_json::from_str(keys_json).map_err(|e| format!("`keys`: {e}"))?;
    let features = features.into_dimensionality::<Ix2>().map_err(|_| "`features` is not 2-D".to_string())?;
    if features.nrows() != keys.len() || dim.is_some_and(|d| d != features.ncols()) {
        return Err(format!("`features` {:?} does not fit {} keys of width {dim:?}", features.shape(), keys.len()));
    }
    Ok((keys, features))
}

impl FeatureCache {
    /// The cache folder for `model_sha256` + `recipe` under `root`, loading what it holds.
    pub fn open(root: &Path, model_sha256: &str, recipe: &str) -> Result<Self> {
        let key = io::sha256_hex(format!("{model_sha256}\n{recipe}").as_bytes());
        let dir = root.join("features").join(&key[..24]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let recipe_json = serde_json::from_str(recipe).unwrap_or_else(|_| serde_json::Value::from(recipe));
        let about = serde_json::json!({ "model_sha256": model_sha256, "recipe": recipe_json });
        io::write_atomic(&dir.join("recipe.json"), format!("{about:#}\n").as_bytes())?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        entries.sort();
        let mut cache = FeatureCache { dir: None, map: HashMap::new(), shards: 0, warnings: Vec::new() };
        let mut damaged = Vec::new();
        let mut dim = None;
        for shard in entries {
            match read_shard(&shard, dim) {
                Ok((keys, features)) => {
                    dim = Some(features.ncols());
                    for (k, row) in keys.into_iter().zip(features.rows()) {
                        cache.map.insert(k, row.to_vec());
                    }
                    cache.shards += 1;
                }
                Err(why) => {
                    // Deleted so that the next open does not warn again; what it held is recomputed.
                    let _ = std::fs::remove_file(&shard);
                    damaged.push(format!("{}: {why}", shard.file_name().unwrap_or_default().to_string_lossy()));
                }
            }
        }
        if !damaged.is_empty() {
            cache.warnings.push(format!(
                "feature cache {}: dropped {} damaged shard(s), their inputs are embedded again ({})",
                dir.display(),
                damaged.len(),
                damaged.join("; ")
            ));
        }
        cache.dir = Some(dir);
        Ok(cache)
    }

    /// What opening the cache found wrong (damaged shards that were dropped), at most one message;
    /// the caller reports it. Taken once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// A cache that keeps nothing (`--no-cache`).
    pub fn disabled() -> Self {
        FeatureCache { dir: None, map: HashMap::new(), shards: 0, warnings: Vec::new() }
    }

    /// Whether anything is kept (false for [`FeatureCache::disabled`]).
    pub fn is_enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// The cached features of the input with content hash `key`.
    pub fn get(&self, key: &str) -> Option<&[f32]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Number of cached inputs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds rows of `features` under `keys`, writing a new shard.
    ///
    /// # Shapes
    /// `features` `[keys.len(), d]`
    pub fn append(&mut self, keys: &[String], features: &Array2<f32>) -> Result<()> {
        for (k, row) in keys.iter().zip(features.rows()) {
            self.map.insert(k.clone(), row.to_vec());
        }
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(format!("shard-{:06}-{}.safetensors", self.shards, std::process::id()));
        self.shards += 1;
        write_shard(&path, &keys.iter().collect::<Vec<_>>(), features.clone().into_dyn())
    }

    /// Merges all shards into one (after a complete extraction), so later opens read one file.
    pub fn compact(&mut self) -> Result<()> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        if self.shards <= 1 || self.map.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<&String> = self.map.keys().collect();
        keys.sort();
        let d = self.map[keys[0]].len();
        let data: Vec<f32> = keys.iter().flat_map(|k| self.map[*k].iter().copied()).collect();
        let features = ArrayD::from_shape_vec(vec![keys.len(), d], data).expect("rows of d");
        let old: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        // Written before the old shards go: an interruption leaves duplicates, never a loss.
        let merged = dir.join(format!("shard-000000-all-{}.safetensors", std::process::id()));
        write_shard(&merged, &keys, features)?;
        for p in old.into_iter().filter(|p| *p != merged) {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        self.shards = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_files(root: &Path) -> Vec<PathBuf> {
        let dir = std::fs::read_dir(root.join("features")).unwrap().next().unwrap().unwrap().path();
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn damaged_shards_are_dropped_with_one_warning_and_never_crash() {
        let root = tempfile::tempdir().unwrap();
        let open = || FeatureCache::open(root.path(), "m", r#"{"cut": "x"}"#);
        let mut c = open().unwrap();
        c.append(&["a".into(), "b".into()], &ndarray::array![[1.0, 2.0], [3.0, 4.0]]).unwrap();
        c.append(&["c".into()], &ndarray::array![[5.0, 6.0]]).unwrap();
        let mut c = open().unwrap();
        assert_eq!((c.len(), c.get("c")), (3, Some(&[5.0f32, 6.0][..])));
        assert!(c.take_warnings().is_empty());

        // Same-size garbage over the first shard's feature bytes; the second cut short.
        let files = shard_files(root.path());
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&[0xFF; 8]);
        std::fs::write(&files[0], bytes).unwrap();
        let bytes = std::fs::read(&files[1]).unwrap();
        std::fs::write(&files[1], &bytes[..bytes.len() - 5]).unwrap();

        let mut c = open().unwrap();
        assert!(c.is_empty(), "nothing from a damaged shard is used");
        let warnings = c.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("dropped 2 damaged shard(s)"), "{warnings:?}");
        assert!(warnings[0].contains("does not match its sha256"), "{warnings:?}");
        assert!(shard_files(root.path()).is_empty(), "damaged shards are deleted");
        c.append(&["a".into()], &ndarray::array![[1.0, 2.0]]).unwrap();
        let mut c = open().unwrap();
        assert_eq!((c.len(), c.take_warnings().len()), (1, 0));
    }
}
