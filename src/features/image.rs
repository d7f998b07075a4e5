use std::path::PathBuf;

use rayon::prelude::*;

use super::{extract, Backbone, Embedded, FeatureCache, Prepared};
use crate::backend::{Backend, EngineOptions, Value};
use crate::preprocess::ImagePreprocess;
use crate::train::ProgressMode;
use crate::{io, Error, Result};

/// Content keys of files: the sha256 of their bytes (unreadable files get a key that is never
/// cached, so preparation reports them).
pub fn file_keys(paths: &[PathBuf]) -> Vec<String> {
    paths
        .par_iter()
        .map(|p| match std::fs::read(p) {
            Ok(bytes) => io::sha256_hex(&bytes),
            Err(e) => format!("unreadable:{}:{e}", p.display()),
        })
        .collect()
}

/// Embeds image files with `backbone` on the engine `engine` asks for (opened only when something is
/// not cached); bad images are skipped and reported.
pub fn embed_images(
    backbone: &Backbone,
    engine: &EngineOptions,
    paths: &[PathBuf],
    cache: &mut FeatureCache,
    batch: usize,
    progress: ProgressMode,
) -> Result<Embedded> {
    let pre: &ImagePreprocess = backbone
        .preprocess
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("backbone `{}` does not take images", backbone.manifest.name)))?;
    let started = std::time::Instant::now();
    // Content hashes only matter to a cache that keeps them.
    let keys = if cache.is_enabled() { file_keys(paths) } else { (0..paths.len()).map(|i| format!("#{i}")).collect() };
    let input = backbone.input.clone();
    let prepare = |idx: &[usize]| {
        let loaded: Vec<_> = idx.par_iter().map(|&i| (i, pre.load(&paths[i]))).collect();
        let mut prepared = Prepared { inputs: Vec::new(), ok: Vec::new(), skipped: Vec::new() };
        let mut images = Vec::new();
        for (i, r) in loaded {
            match r {
                Ok(img) => {
                    prepared.ok.push(i);
                    images.push(img);
                }
                Err(skip) => prepared.skipped.push(skip),
            }
        }
        if !images.is_empty() {
            prepared.inputs.push((input.clone(), Value::F32(pre.tensor(&images).into_dyn())));
        }
        prepared
    };
    let output = backbone.output.clone();
    let mut session: Option<Box<dyn Backend>> = None;
    let mut embedded = extract(&keys, cache, batch, progress, "embed", prepare, |inputs| {
        let session = match &mut session {
            Some(s) => s,
            None => session.insert(crate::backend::open(&backbone.path, engine)?),
        };
        super::flatten_rows(session.run_output(inputs, &output)?, &output)
    })?;
    embedded.seconds = started.elapsed().as_secs_f64();
    Ok(embedded)
}
