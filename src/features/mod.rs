//! Feature extraction with a frozen backbone: inputs are prepared (read once, decoded, resized,
//! tokenised) by one worker per core, several batches in flight while the engine runs earlier ones,
//! with a fixed bound on the batches in flight, so memory does not grow with the dataset
//! ([`pipeline`]); results go through the content-addressed [`FeatureCache`], so a re-run only
//! embeds new or changed inputs and an interrupted run resumes.

pub mod backbone;
pub mod cache;
mod dataset;
mod image;
pub mod partition;
pub mod pipeline;
mod store;
mod text;

pub use backbone::Backbone;
pub use cache::FeatureCache;
pub(crate) use dataset::take as take_items;
pub use dataset::{embed_dataset, EmbedOptions, EmbeddedDataset, Items};
pub use image::{embed_images, file_keys, prepare_image, ImageItem};
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
#[derive(Default)]
pub struct Prepared {
    /// The model inputs.
    pub inputs: Vec<(String, Value)>,
    /// The items prepared, in the inputs' row order.
    pub ok: Vec<usize>,
    /// The items that could not be prepared, with why.
    pub skipped: Vec<Skip>,
    /// Content keys learnt while preparing ([`extract_by_content`]): `(item, key)` for every item
    /// of the batch that could be read, those in `ok` and those already cached.
    pub keys: Vec<(usize, String)>,
}

/// Features of every usable item.
#[derive(Debug)]
pub struct Embedded {
    /// # Shapes
    /// `[rows.len(), d]`
    pub features: Array2<f32>,
    /// The item index of each feature row (skipped items have none).
    pub rows: Vec<usize>,
    /// Items that could not be used (unreadable images), with why.
    pub skipped: Vec<Skip>,
    /// Items embedded now (the rest came from the cache).
    pub computed: usize,
    /// Seconds of the whole call.
    pub seconds: f64,
    /// Seconds the engine waited for prepared batches, and the seconds of the whole prepare-and-run
    /// pipeline they are part of.
    pub waited: f64,
    /// Seconds of the prepare-and-run pipeline.
    pub pipeline_seconds: f64,
    /// Seconds spent opening the engine (0 when everything was cached).
    pub engine_start: f64,
    /// Seconds of the engine's first run, where a GPU engine chooses its kernels, and the items
    /// it embedded (0 when everything was cached).
    pub first_run: (f64, usize),
    /// Problems met on the way that did not stop the extraction (damaged cache shards), for the
    /// caller to report.
    pub warnings: Vec<String>,
}

impl Embedded {
    /// Items per second over the whole call.
    pub fn rate(&self) -> f64 {
        self.rows.len() as f64 / self.seconds.max(1e-9)
    }

    /// Items per second of the prepare-and-run pipeline once the engine is open and has run once:
    /// the throughput a long job settles at.
    pub fn steady_rate(&self) -> f64 {
        let items = self.computed.saturating_sub(self.first_run.1);
        items as f64 / (self.pipeline_seconds - self.engine_start - self.first_run.0).max(1e-9)
    }
}

/// Whether an input with this content key is cached, for preparation workers.
pub type Lookup<'a> = dyn Fn(&str) -> bool + Sync + 'a;

/// Embeds the items whose content keys are `keys`: cached ones are looked up, the rest are
/// prepared by `prepare` (on worker threads, several batches ahead, see [`pipeline::ordered`]) and
/// run by `run`.
pub fn extract<P, R>(
    keys: &[String],
    cache: &mut FeatureCache,
    batch: usize,
    progress: ProgressMode,
    label: &str,
    prepare: P,
    run: R,
) -> Result<Embedded>
where
    P: Fn(&[usize]) -> Prepared + Sync,
    R: FnMut(Vec<(String, Value)>) -> Result<Array2<f32>>,
{
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| !cache.contains(&keys[i])).collect();
    let jobs: Vec<&[usize]> = missing.chunks(batch.max(1)).collect();
    let known: Vec<Option<String>> = keys.iter().cloned().map(Some).collect();
    run_jobs(known, &jobs, cache, progress, label, |idx, _| prepare(idx), run)
}

/// Embeds `n` items whose content keys are only known once each is read (files: hashed from the
/// bytes that are then decoded, so each is read once). `prepare` gets a batch of item indices and
/// whether a key is cached, and returns the keys it learnt in [`Prepared::keys`] and model inputs
/// for the items not cached; items it cannot read are skipped and have no key.
pub fn extract_by_content<P, R>(
    n: usize,
    cache: &mut FeatureCache,
    batch: usize,
    progress: ProgressMode,
    label: &str,
    prepare: P,
    run: R,
) -> Result<Embedded>
where
    P: Fn(&[usize], &Lookup) -> Prepared + Sync,
    R: FnMut(Vec<(String, Value)>) -> Result<Array2<f32>>,
{
    let all: Vec<usize> = (0..n).collect();
    let jobs: Vec<&[usize]> = all.chunks(batch.max(1)).collect();
    run_jobs(vec![None; n], &jobs, cache, progress, label, prepare, run)
}

fn run_jobs<P, R>(
    mut keys: Vec<Option<String>>,
    jobs: &[&[usize]],
    cache: &mut FeatureCache,
    progress: ProgressMode,
    label: &str,
    prepare: P,
    mut run: R,
) -> Result<Embedded>
where
    P: Fn(&[usize], &Lookup) -> Prepared + Sync,
    R: FnMut(Vec<(String, Value)>) -> Result<Array2<f32>>,
{
    let started = Instant::now();
    let total: usize = jobs.iter().map(|j| j.len()).sum();
    let mut bar = Progress::new(progress, label, total as u64, "items");
    let mut skipped = Vec::new();
    let mut computed = 0;
    let shared = std::sync::Mutex::new(cache);
    let lookup = |k: &str| shared.lock().expect("cache lock").contains(k);
    let waited = pipeline::ordered(
        jobs,
        pipeline::Flow::for_this_machine(),
        |idx| (idx.len(), prepare(idx, &lookup)),
        |(n, prepared): (usize, Prepared)| {
            for (i, k) in prepared.keys {
                keys[i] = Some(k);
            }
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
                let batch_keys = prepared
                    .ok
                    .iter()
                    .map(|&i| {
                        keys[i].clone().ok_or_else(|| Error::Invalid(format!("item {i} was prepared without a key")))
                    })
                    .collect::<Result<Vec<String>>>()?;
                shared.lock().expect("cache lock").append(&batch_keys, &features)?;
                computed += rows;
            }
            bar.advance(n as u64, String::new);
            Ok(())
        },
    )?;
    let cache = shared.into_inner().expect("cache lock");
    if computed > 0 {
        cache.compact()?;
    }
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut row = Vec::new();
    let mut dim = 0;
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k.as_deref() {
            if cache.read_into(k, &mut row)? {
                dim = row.len();
                rows.push(i);
                data.extend_from_slice(&row);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish(&format!("{} items ({computed} new, {} skipped) in {seconds:.1}s", rows.len(), skipped.len()));
    let features = Array2::from_shape_vec((rows.len(), dim), data).expect("rows of equal width");
    Ok(Embedded {
        features,
        rows,
        skipped,
        computed,
        seconds,
        waited: waited.waiting.as_secs_f64(),
        pipeline_seconds: waited.total.as_secs_f64(),
        engine_start: 0.0,
        first_run: (0.0, 0),
        warnings: cache.take_warnings(),
    })
}
