//! The frozen front of a fine-tuning run, computed ahead of `graft fit` on one machine or many:
//! [`embed_front`] (`graft embed --unfreeze`) writes the very cache entries that `graft fit` of a
//! pipeline with the same backbone and unfreeze point reads, for one worker's shard of the items:
//! the front's tensor at the unfreeze point per image, or per valid token of each text.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, Array3, Axis};

use super::common::{front, unfreeze_tensor};
use crate::backend::EngineOptions;
use crate::config::Unfreeze;
use crate::data::{read_text_csv, TextOptions};
use crate::features::{
    embed_dataset, take_items, Backbone, EmbedOptions, Embedded, EmbeddedDataset, FeatureCache, Items,
};
use crate::preprocess::TextEncoder;
use crate::{io, Error, Result};

/// Where the backbone is unfrozen, as a pipeline's `backbone.unfreeze` / `backbone.unfreeze_from`
/// say.
#[derive(Clone, Debug)]
pub struct UnfreezeAt {
    /// The last N blocks, or all.
    pub unfreeze: Unfreeze,
    /// A named tensor instead (wins over `unfreeze`).
    pub from: Option<String>,
}

/// The front's tensor at the unfreeze point for the items of `data` (an image folder or a text
/// CSV) in `opts`' shard, written to the feature cache under `opts.cache` with the keys and recipe
/// `graft fit` uses, so that a fit with the same cache computes none of them again. Images also
/// come back as features (`[N, prod(tensor dims)]`); texts, whose token states vary in length,
/// only go to the cache (the returned features are empty).
pub fn embed_front(backbone: &Backbone, data: &Path, at: &UnfreezeAt, opts: &EmbedOptions) -> Result<EmbeddedDataset> {
    let root = opts.cache.as_deref().ok_or_else(|| {
        Error::Invalid("states at the unfreeze point are computed for the feature cache: drop --no-cache".into())
    })?;
    let source = crate::onnx::load(&backbone.source)?;
    let what = backbone.source.display().to_string();
    let start = unfreeze_tensor(&source, at.unfreeze, at.from.as_deref(), &backbone.output, &what)?;
    let front = front(backbone, &source, &start, root)?;
    if backbone.manifest.text.is_none() {
        return embed_dataset(&front, data, opts);
    }
    let started = Instant::now();
    let encoder = backbone.text_encoder()?;
    let read = TextOptions { text: opts.text_column.clone(), label: opts.label_column.clone(), skip_bad_rows: false };
    let table = read_text_csv(data, &read)?;
    let (keep, before_shard) = take_items(table.texts.len(), opts, |s, n| s.select_texts(&table.texts[..n]));
    let texts: Vec<&str> = keep.iter().map(|&i| table.texts[i].as_str()).collect();
    let mut cache = FeatureCache::open(root, &backbone.sha256, &token_recipe(&front, &encoder, &start)?)?;
    let lengths = token_lengths(&encoder, &texts, opts.batch)?;
    let computed =
        fill_token_states(&front, &opts.engine, &encoder, (&texts, &lengths), &start, opts.batch, &mut cache)?;
    let seconds = started.elapsed().as_secs_f64();
    let embedded = Embedded {
        features: Array2::zeros((0, 0)),
        rows: (0..texts.len()).collect(),
        skipped: Vec::new(),
        computed,
        seconds,
        waited: 0.0,
        pipeline_seconds: seconds,
        engine_start: 0.0,
        first_run: (0.0, 0),
        warnings: cache.take_warnings(),
    };
    Ok(EmbeddedDataset {
        items: Items::Texts,
        considered: texts.len(),
        before_shard,
        embedded,
        ids: keep.iter().map(|&i| format!("line {}", table.lines[i])).collect(),
        labels: None,
        classes: Vec::new(),
        metadata: Default::default(),
    })
}

/// The cache recipe of the front's per-token states at `start`: the tokenizer and the tensor.
pub fn token_recipe(front: &Backbone, encoder: &TextEncoder, start: &str) -> Result<String> {
    let text: serde_json::Value = serde_json::from_str(&front.recipe(Some(encoder))?).expect("a JSON recipe");
    Ok(serde_json::json!({ "text": text, "token_states_at": start }).to_string())
}

/// The number of valid tokens of each text, after the encoder's truncation.
pub fn token_lengths(encoder: &TextEncoder, texts: &[&str], batch: usize) -> Result<Vec<usize>> {
    let mut lengths = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        let enc = encoder.encode(chunk)?;
        lengths.extend(enc.mask.rows().into_iter().map(|r| r.iter().filter(|&&m| m != 0).count()));
    }
    Ok(lengths)
}

/// The cache key of token `t` of a text: its sha256 and the position.
fn token_key(sha: &str, t: usize) -> String {
    format!("{sha}/{t}")
}

/// Runs the front on every text with a valid token missing from `cache` and appends the states
/// at `start` of its valid tokens (one row each); returns how many texts were computed.
///
/// # Shapes
/// `texts` and their `lengths`: one each per text.
pub fn fill_token_states(
    front: &Backbone,
    opts: &EngineOptions,
    encoder: &TextEncoder,
    (texts, lengths): (&[&str], &[usize]),
    start: &str,
    batch: usize,
    cache: &mut FeatureCache,
) -> Result<usize> {
    let shas: Vec<String> = texts.iter().map(|t| io::sha256_hex(t.as_bytes())).collect();
    let missing: Vec<usize> =
        (0..texts.len()).filter(|&i| (0..lengths[i]).any(|t| !cache.contains(&token_key(&shas[i], t)))).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let mut engine = crate::backend::open(&front.path, opts)?;
    for chunk in missing.chunks(batch.max(1)) {
        let some: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let enc = encoder.encode(&some)?;
        let states = engine.run_output(enc.inputs(&front.inputs)?, start)?;
        let states = states
            .into_dimensionality::<ndarray::Ix3>()
            .map_err(|e| Error::Tensor { name: start.into(), msg: format!("expected [N, S, H]: {e}") })?;
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        for (j, &i) in chunk.iter().enumerate() {
            for t in 0..lengths[i] {
                keys.push(token_key(&shas[i], t));
                rows.push(states.slice(ndarray::s![j, t, ..]));
            }
        }
        let rows = ndarray::stack(Axis(0), &rows).map_err(|e| Error::Invalid(format!("front states: {e}")))?;
        cache.append(&keys, &rows)?;
    }
    cache.compact()?;
    Ok(missing.len())
}

/// The cached states of the valid tokens of each text, zero-padded to the longest.
///
/// # Shapes
/// -> `[texts.len(), longest, H]`
pub fn read_token_states(cache: &mut FeatureCache, texts: &[&str], lengths: &[usize]) -> Result<Array3<f32>> {
    let longest = lengths.iter().copied().max().unwrap_or(1).max(1);
    let h = cache.dim().unwrap_or(0);
    let mut out = Array3::<f32>::zeros((texts.len(), longest, h));
    let mut row = Vec::with_capacity(h);
    for (i, (text, &len)) in texts.iter().zip(lengths).enumerate() {
        let sha = io::sha256_hex(text.as_bytes());
        for t in 0..len {
            if !cache.read_into(&token_key(&sha, t), &mut row)? {
                return Err(Error::Invalid(format!("feature cache: text {} token {t} vanished", i + 1)));
            }
            out.slice_mut(ndarray::s![i, t, ..]).assign(&ndarray::ArrayView1::from(&row[..]));
        }
    }
    Ok(out)
}
