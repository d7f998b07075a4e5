//! Feature extraction with a frozen backbone: inputs are prepared (decoded, resized, tokenised) on
//! a producer thread while the previous batch runs on the engine, at most one batch ahead, so
//! memory does not grow with the dataset; results go through the content-addressed
//! [`FeatureCache`], so a re-run only embeds new or changed inputs and an interrupted run resumes.

pub mod backbone;
pub mod cache;
mod image;
mod store;
mod text;

pub use backbone::Backbone;
pub use cache::FeatureCache;
pub use image::{embed_images, file_keys};
pub use store::FeatureFile;
pub use text::{embed_texts, first_token, masked_mean, pool};

use std::time::Instant;

use ndarray::Array2;

use crate::backend::Value;
use crate::preprocess::Skip;
use crate::train::{Progress, ProgressMode};
use crate::{Error, Result};

/// Flattens each row of an `[N, ...]` tensor named `name`.
///
/// # Shapes
/// `[N, d1, d2, ...]` -> `[N, d1 * d2 * ...]`
pub fn flatten_rows(a: ndarray::ArrayD<f32>, name: &str) -> Result<Array2<f32>> {
    let (n, len) = (a.shape().first().copied().unwrap_or(0), a.len());
    a.into_shape_with_order((n, len / n.max(1))).map_err(|e| Error::Tensor { name: name.into(), msg: e.to_string() })
}

/// One prepared batch: the model inputs for the items that could be prepared, their indices, and
/// the items skipped with the reason.
pub struct Prepared {
    pub inputs: Vec<(String, Value)>,
    pub ok: Vec<usize>,
    pub skipped: Vec<Skip>,
}

/// Features of every usable item.
#[derive(Debug)]
pub struct Embedded {
    /// # Shapes
    /// `[rows.len(), d]`
    pub features: Array2<f32>,
    /// The item index of each feature row (skipped items have none).
    pub rows: Vec<usize>,
    pub skipped: Vec<Skip>,
    /// Items embedded now (the rest came from the cache).
    pub computed: usize,
    pub seconds: f64,
    /// Problems met on the way that did not stop the extraction (damaged cache shards), for the
    /// caller to report.
    pub warnings: Vec<String>,
}

impl Embedded {
    /// Items per second over the whole call.
    pub fn rate(&self) -> f64 {
        self.rows.len() as f64 / self.seconds.max(1e-9)
    }
}

/// Embeds the items whose content keys are `keys`: cached ones are looked up, the rest are
/// prepared by `prepare` (on a producer thread, one batch ahead) and run by `run`.
pub fn extract<P, R>(
    keys: &[String],
    cache: &mut FeatureCache,
    batch: usize,
    progress: ProgressMode,
    label: &str,
    prepare: P,
    mut run: R,
) -> Result<Embedded>
where
    P: Fn(&[usize]) -> Prepared + Sync,
    R: FnMut(Vec<(String, Value)>) -> Result<Array2<f32>>,
{
    let started = Instant::now();
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| cache.get(&keys[i]).is_none()).collect();
    let mut bar = Progress::new(progress, label, missing.len() as u64, "items");
    let mut skipped = Vec::new();
    let mut computed = 0;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Prepared)>(1);
        let (missing, prepare) = (&missing, &prepare);
        scope.spawn(move || {
            for chunk in missing.chunks(batch.max(1)) {
                if tx.send((chunk.len(), prepare(chunk))).is_err() {
                    break;
                }
            }
        });
        for (n, prepared) in rx {
            skipped.extend(prepared.skipped);
            if !prepared.ok.is_empty() {
                let rows = prepared.ok.len();
                let features = run(prepared.inputs)?;
                if features.nrows() != rows {
                    return Err(Error::Invalid(format!(
                        "the backbone returned {} rows for {rows} inputs",
                        features.nrows()
                    )));
                }
                let batch_keys: Vec<String> = prepared.ok.iter().map(|&i| keys[i].clone()).collect();
                cache.append(&batch_keys, &features)?;
                computed += rows;
            }
            bar.advance(n as u64, String::new);
        }
        Ok(())
    })?;
    if computed > 0 {
        cache.compact()?;
    }
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut dim = 0;
    for (i, k) in keys.iter().enumerate() {
        if let Some(f) = cache.get(k) {
            dim = f.len();
            rows.push(i);
            data.extend_from_slice(f);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish(&format!("{} items ({computed} new, {} skipped) in {seconds:.1}s", rows.len(), skipped.len()));
    let features = Array2::from_shape_vec((rows.len(), dim), data).expect("rows of equal width");
    Ok(Embedded { features, rows, skipped, computed, seconds, warnings: cache.take_warnings() })
}
