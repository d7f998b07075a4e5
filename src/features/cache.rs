//! Content-addressed feature cache: one folder per (model, preprocessing) key, holding shards of
//! `features [n, d]` with the content hash of each row's input in the shard's metadata. A shard is
//! written atomically after every batch, so an interrupted extraction resumes where it stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};

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
}

impl FeatureCache {
    /// The cache folder for `model_sha256` + `recipe` under `root`, loading what it holds.
    pub fn open(root: &Path, model_sha256: &str, recipe: &str) -> Result<Self> {
        let key = io::sha256_hex(format!("{model_sha256}\n{recipe}").as_bytes());
        let dir = root.join("features").join(&key[..24]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        io::write_atomic(
            &dir.join("recipe.json"),
            format!("{{\"model_sha256\": \"{model_sha256}\", \"recipe\": {recipe}}}\n").as_bytes(),
        )?;
        let mut map = HashMap::new();
        let mut shards = 0;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        entries.sort();
        for shard in entries {
            let (tensors, meta) = load_tensors(&shard)?;
            let keys: Vec<String> = meta
                .get("keys")
                .and_then(|k| serde_json::from_str(k).ok())
                .ok_or_else(|| Error::data(&shard, None, "feature shard without `keys`"))?;
            let f = tensors.get("features").ok_or_else(|| Error::data(&shard, None, "no `features` tensor"))?;
            let d = f.shape().get(1).copied().unwrap_or(0);
            let data = f.as_standard_layout();
            for (i, k) in keys.into_iter().enumerate() {
                map.insert(k, data.as_slice().expect("standard layout")[i * d..(i + 1) * d].to_vec());
            }
            shards += 1;
        }
        Ok(FeatureCache { dir: Some(dir), map, shards })
    }

    /// A cache that keeps nothing (`--no-cache`).
    pub fn disabled() -> Self {
        FeatureCache { dir: None, map: HashMap::new(), shards: 0 }
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
        let meta = HashMap::from([("keys".to_string(), serde_json::to_string(keys).expect("strings"))]);
        save_tensors(&path, &[("features".into(), features.clone().into_dyn())], meta)
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
        let meta = HashMap::from([("keys".to_string(), serde_json::to_string(&keys).expect("strings"))]);
        save_tensors(&merged, &[("features".into(), features)], meta)?;
        for p in old.into_iter().filter(|p| *p != merged) {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        self.shards = 1;
        Ok(())
    }
}
