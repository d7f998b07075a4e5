use ndarray::{Array2, Axis, Ix3};

use super::{extract, Backbone, Embedded, FeatureCache, Prepared};
use crate::backend::{Backend, EngineOptions, Value};
use crate::preprocess::TextEncoder;
use crate::train::ProgressMode;
use crate::{io, Error, Result};

/// Mean of `hidden` over the positions where `mask` is 1 (zeros for an empty mask).
///
/// # Shapes
/// `hidden` `[B, S, D]`, `mask` `[B, S]` -> `[B, D]`
pub fn masked_mean(hidden: &ndarray::ArrayD<f32>, mask: &ndarray::ArrayD<i64>) -> Result<Array2<f32>> {
    let h = hidden
        .view()
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::Tensor { name: "hidden".into(), msg: e.to_string() })?;
    let (b, s, d) = h.dim();
    let mut out = Array2::<f32>::zeros((b, d));
    for i in 0..b {
        let mut count = 0.0f32;
        for t in 0..s {
            if mask[[i, t]] != 0 {
                out.row_mut(i).scaled_add(1.0, &h.slice(ndarray::s![i, t, ..]));
                count += 1.0;
            }
        }
        out.row_mut(i).mapv_inplace(|v| v / count.max(1.0));
    }
    Ok(out)
}

/// Sentence embeddings of `texts` with an encoder backbone: tokenised in batches of similar length
/// (little padding), run on the engine, mean-pooled over the attention mask; cached by the sha256 of
/// each text.
pub fn embed_texts(
    backbone: &Backbone,
    engine: &EngineOptions,
    encoder: &TextEncoder,
    texts: &[String],
    cache: &mut FeatureCache,
    batch: usize,
    progress: ProgressMode,
) -> Result<Embedded> {
    let started = std::time::Instant::now();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let keys: Vec<String> = order.iter().map(|&i| io::sha256_hex(texts[i].as_bytes())).collect();
    let inputs = backbone.inputs.clone();
    let prepare = |idx: &[usize]| {
        let batch: Vec<&str> = idx.iter().map(|&k| texts[order[k]].as_str()).collect();
        let mut prepared = Prepared { inputs: Vec::new(), ok: idx.to_vec(), skipped: Vec::new() };
        match encoder.encode(&batch).and_then(|e| e.inputs(&inputs)) {
            Ok(tensors) => prepared.inputs = tensors,
            Err(err) => {
                prepared.skipped = idx
                    .iter()
                    .map(|&k| crate::preprocess::Skip {
                        path: format!("text {}", order[k] + 1),
                        reason: err.to_string(),
                    })
                    .collect();
                prepared.ok.clear();
            }
        }
        prepared
    };
    let output = backbone.output.clone();
    let mut session: Option<Box<dyn Backend>> = None;
    let embedded = extract(&keys, cache, batch, progress, "embed", prepare, |inputs| {
        let mask = inputs
            .iter()
            .find_map(|(n, v)| match (n.as_str(), v) {
                ("attention_mask", Value::I64(m)) => Some(m.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::Tensor {
                name: "attention_mask".into(),
                msg: "the encoder takes no attention mask".into(),
            })?;
        let session = match &mut session {
            Some(s) => s,
            None => session.insert(crate::backend::open(&backbone.path, engine)?),
        };
        masked_mean(&session.run_output(inputs, &output)?, &mask)
    })?;
    // Back from length order to the caller's order.
    let mut rows: Vec<(usize, usize)> = embedded.rows.iter().enumerate().map(|(r, &k)| (order[k], r)).collect();
    rows.sort_unstable();
    let features = embedded.features.select(Axis(0), &rows.iter().map(|&(_, r)| r).collect::<Vec<_>>());
    Ok(Embedded {
        features,
        rows: rows.into_iter().map(|(i, _)| i).collect(),
        skipped: embedded.skipped,
        computed: embedded.computed,
        seconds: started.elapsed().as_secs_f64(),
    })
}
