use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use super::{extract_by_content, Backbone, Embedded, FeatureCache, Lookup, Prepared};
use crate::backend::{Backend, EngineOptions, Value};
use crate::preprocess::{ImagePreprocess, Skip};
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

/// One image file after its single read.
#[derive(Debug)]
pub enum ImageItem {
    /// Its content key is cached: not decoded.
    Cached(String),
    /// Decoded and resized, with its content key.
    Ready(String, RgbImage),
    /// Unusable: why, and its content key when it could be read.
    Skipped(Option<String>, Skip),
}

/// Reads `path` once with `read`, keys it (the sha256 of its bytes when `hashed`, else `key`) and,
/// unless `cached` says that key is cached, decodes and resizes it from the same bytes.
pub fn prepare_image(
    pre: &ImagePreprocess,
    path: &Path,
    key: &str,
    hashed: bool,
    cached: &Lookup,
    read: &(dyn Fn(&Path) -> std::io::Result<Vec<u8>> + Sync),
) -> ImageItem {
    let bytes = match read(path) {
        Ok(b) => b,
        Err(e) => return ImageItem::Skipped(None, Skip { path: path.display().to_string(), reason: e.to_string() }),
    };
    let key = if hashed { io::sha256_hex(&bytes) } else { key.to_string() };
    if cached(&key) {
        return ImageItem::Cached(key);
    }
    match pre.load_bytes(path, &bytes) {
        Ok(img) => ImageItem::Ready(key, img),
        Err(skip) => ImageItem::Skipped(Some(key), skip),
    }
}

/// Embeds image files with `backbone` on the engine `engine` asks for (opened only when something is
/// not cached); bad images are skipped and reported. Each file is read once: hashed for the cache
/// (when the cache keeps anything) and decoded from the same bytes when it is not cached.
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
    let hashed = cache.is_enabled();
    let input = backbone.input.clone();
    let read = |p: &Path| std::fs::read(p);
    let prepare = |idx: &[usize], cached: &Lookup| {
        let mut prepared = Prepared::default();
        let mut images = Vec::new();
        for &i in idx {
            match prepare_image(pre, &paths[i], &format!("#{i}"), hashed, cached, &read) {
                ImageItem::Cached(key) => prepared.keys.push((i, key)),
                ImageItem::Ready(key, img) => {
                    prepared.keys.push((i, key));
                    prepared.ok.push(i);
                    images.push(img);
                }
                ImageItem::Skipped(key, skip) => {
                    prepared.keys.extend(key.map(|k| (i, k)));
                    prepared.skipped.push(skip);
                }
            }
        }
        if !images.is_empty() {
            prepared.inputs.push((input.clone(), Value::F32(pre.tensor(&images).into_dyn())));
        }
        prepared
    };
    let output = backbone.output.clone();
    let mut session: Option<Box<dyn Backend>> = None;
    let (mut engine_start, mut first_run) = (0.0, (0.0, 0));
    let mut embedded = extract_by_content(paths.len(), cache, batch, progress, "embed", prepare, |inputs| {
        let first = session.is_none();
        let session = match &mut session {
            Some(s) => s,
            None => {
                let t = std::time::Instant::now();
                let opened = crate::backend::open(&backbone.path, engine)?;
                engine_start = t.elapsed().as_secs_f64();
                session.insert(opened)
            }
        };
        let t = std::time::Instant::now();
        // A GPU engine chooses kernels for every new input shape: the last, partial batch is run
        // at the full batch size (zero rows added, their outputs dropped).
        let gpu = session.device().starts_with("cuda");
        let rows = inputs.first().map_or(0, |(_, v)| v.shape()[0]);
        let inputs = if gpu { pad_rows(inputs, batch) } else { inputs };
        let mut features = session.run_output(inputs, &output)?;
        // Only the padding rows go (no copy when there are none).
        features.slice_axis_inplace(ndarray::Axis(0), (0..rows).into());
        if first {
            first_run = (t.elapsed().as_secs_f64(), rows);
        }
        super::flatten_rows(features, &output)
    })?;
    embedded.seconds = started.elapsed().as_secs_f64();
    embedded.engine_start = engine_start;
    embedded.first_run = first_run;
    Ok(embedded)
}

/// Every input with zero rows added up to `rows` along the batch axis.
///
/// # Shapes
/// each input `[n, ...]` with `n <= rows`; returns `[rows, ...]`.
fn pad_rows(inputs: Vec<(String, Value)>, rows: usize) -> Vec<(String, Value)> {
    inputs
        .into_iter()
        .map(|(name, v)| match v {
            Value::F32(a) if a.shape()[0] < rows => {
                let mut shape = a.shape().to_vec();
                shape[0] = rows;
                let mut full = ndarray::ArrayD::<f32>::zeros(shape);
                full.slice_axis_mut(ndarray::Axis(0), (0..a.shape()[0]).into()).assign(&a);
                (name, Value::F32(full))
            }
            other => (name, other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::manifest::{Layout, ResizeMode};
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[test]
    fn partial_batches_are_padded_with_zero_rows_up_to_the_batch() {
        let x = ndarray::ArrayD::from_elem(vec![3, 2], 1.0f32);
        let padded = pad_rows(vec![("x".into(), Value::F32(x))], 5);
        let Value::F32(a) = &padded[0].1 else { panic!("f32") };
        assert_eq!(a.shape(), &[5, 2]);
        assert_eq!(a.sum(), 6.0);
    }

    fn pre() -> ImagePreprocess {
        ImagePreprocess {
            size: 8,
            resize: ResizeMode::Stretch,
            mean: [0.0; 3],
            std: [1.0; 3],
            layout: Layout::Nchw,
            dtype: crate::backend::Dtype::F32,
        }
    }

    #[test]
    fn each_file_is_read_once_for_its_key_and_its_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, shade) in [10u8, 200, 90].into_iter().enumerate() {
            let p = dir.path().join(format!("{i}.png"));
            image::RgbImage::from_pixel(20, 16, image::Rgb([shade, 0, 0])).save(&p).unwrap();
            paths.push(p);
        }
        let missing = dir.path().join("gone.jpg");
        let reads = Mutex::new(HashMap::<PathBuf, usize>::new());
        let read = |p: &Path| {
            *reads.lock().unwrap().entry(p.to_path_buf()).or_default() += 1;
            std::fs::read(p)
        };
        let cached_key = io::sha256_hex(&std::fs::read(&paths[1]).unwrap());
        let cached = |k: &str| k == cached_key;
        let pre = pre();
        let items: Vec<ImageItem> =
            paths.iter().chain([&missing]).map(|p| prepare_image(&pre, p, "-", true, &cached, &read)).collect();
        match &items[0] {
            ImageItem::Ready(key, img) => {
                assert_eq!(*key, io::sha256_hex(&std::fs::read(&paths[0]).unwrap()), "keyed by content");
                assert_eq!((img.dimensions(), img.get_pixel(3, 3)[0]), ((8, 8), 10));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&items[1], ImageItem::Cached(k) if *k == cached_key), "{:?}", items[1]);
        match &items[3] {
            ImageItem::Skipped(None, skip) => assert!(skip.path.ends_with("gone.jpg"), "{skip:?}"),
            other => panic!("{other:?}"),
        }
        let reads = reads.into_inner().unwrap();
        for p in paths.iter().chain([&missing]) {
            assert_eq!(reads.get(p), Some(&1), "{} read {:?} times", p.display(), reads.get(p));
        }
        // Without a cache nothing is hashed: the key given is kept.
        let reads_before = std::sync::atomic::AtomicUsize::new(0);
        let count = |p: &Path| {
            reads_before.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::fs::read(p)
        };
        let item = prepare_image(&pre, &paths[2], "#2", false, &|_| false, &count);
        assert!(matches!(item, ImageItem::Ready(ref k, _) if k == "#2"), "{item:?}");
        assert_eq!(reads_before.into_inner(), 1);
    }

    #[test]
    fn a_broken_file_is_skipped_with_its_name_and_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.jpg");
        std::fs::write(&p, [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F']).unwrap();
        match prepare_image(&pre(), &p, "-", true, &|_| false, &|p: &Path| std::fs::read(p)) {
            ImageItem::Skipped(Some(_), skip) => {
                assert!(skip.path.ends_with("cut.jpg") && skip.reason.contains("truncated JPEG"), "{skip:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}
