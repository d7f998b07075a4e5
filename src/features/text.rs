use ndarray::{Array2, Axis, Ix3};

use super::{extract, Backbone, Embedded, FeatureCache, Prepared};
use crate::backend::{Backend, EngineOptions, Value};
use crate::config::manifest::Pooling;
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

/// The first token's state of each row (`Pooling::Cls`).
///
/// # Shapes
/// `hidden` `[B, S, D]` (S >= 1) -> `[B, D]`
pub fn first_token(hidden: &ndarray::ArrayD<f32>) -> Result<Array2<f32>> {
    let h = hidden
        .view()
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::Tensor { name: "hidden".into(), msg: e.to_string() })?;
    if h.dim().1 == 0 {
        return Err(Error::Tensor { name: "hidden".into(), msg: "no tokens to pool".into() });
    }
    Ok(h.slice(ndarray::s![.., 0, ..]).to_owned())
}

/// Token states pooled into one vector per row as `pooling` says.
///
/// # Shapes
/// `hidden` `[B, S, D]`, `mask` `[B, S]` -> `[B, D]`
pub fn pool(pooling: Pooling, hidden: &ndarray::ArrayD<f32>, mask: &ndarray::ArrayD<i64>) -> Result<Array2<f32>> {
    match pooling {
        Pooling::Mean => masked_mean(hidden, mask),
        Pooling::Cls => first_token(hidden),
    }
}

/// Sentence embeddings of `texts` with an encoder backbone: tokenised in batches of similar length
/// (little padding), run on the engine, pooled as the manifest says (mean over the attention mask,
/// or the first token); cached by the sha256 of each text.
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
        let mut prepared = Prepared { inputs: Vec::new(), ok: idx.to_vec(), ..Prepared::default() };
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
    let pooling = backbone.pooling();
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
        pool(pooling, &session.run_output(inputs, &output)?, &mask)
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
        ..embedded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_first_token_pooling() {
        // Two rows, three tokens, two dims; row 1 has one padded token.
        let hidden = ndarray::Array3::from_shape_fn((2, 3, 2), |(b, t, d)| (b * 100 + t * 10 + d) as f32).into_dyn();
        let mask = ndarray::array![[1i64, 1, 1], [1, 1, 0]].into_dyn();
        let mean = pool(Pooling::Mean, &hidden, &mask).unwrap();
        assert_eq!(mean, ndarray::array![[10.0, 11.0], [105.0, 106.0]]);
        let cls = pool(Pooling::Cls, &hidden, &mask).unwrap();
        assert_eq!(cls, ndarray::array![[0.0, 1.0], [100.0, 101.0]]);
    }

    /// The exported graph pools as the native path does, on tract, for both poolings.
    #[test]
    fn exported_pooling_matches_the_native_pooling() {
        use crate::backend::TractBackend;
        use crate::nn::{Init, LayerSpec, Sequential};
        use crate::onnx::{pb::tensor_proto::DataType, Attr, Dim, GraphBuilder, OPSET};

        // A stand-in encoder: hidden[b, t] = [id, 2 * id] as f32.
        let mut g = GraphBuilder::new("");
        let dims = [Dim::Symbol("N".into()), Dim::Symbol("S".into())];
        g.input("input_ids", DataType::Int64, &dims);
        g.input("attention_mask", DataType::Int64, &dims);
        let axes = g.initializer_i64("axes", &[2], &[1]);
        let ids = g.node("Unsqueeze", &["input_ids", &axes], &[]);
        let ids = g.node("Cast", &[&ids], &[Attr::Int("to", DataType::Float as i64)]);
        let twice = g.node("Add", &[&ids, &ids], &[]);
        g.node_to("Concat", &[&ids, &twice], &[Attr::Int("axis", 2)], &["hidden"]);
        g.output("hidden", DataType::Float, &[dims[0].clone(), dims[1].clone(), Dim::Fixed(2)]);
        let encoder = g.into_model(OPSET, &[]);

        let ids = ndarray::array![[5i64, 1, 0], [7, 2, 3]].into_dyn();
        let mask = ndarray::array![[1i64, 1, 0], [1, 1, 1]].into_dyn();
        let hidden = ids.mapv(|v| v as f32).insert_axis(ndarray::Axis(2));
        let hidden = ndarray::concatenate![ndarray::Axis(2), hidden, hidden.mapv(|v| 2.0 * v)].into_dyn();
        let dir = tempfile::tempdir().unwrap();
        for pooling in [Pooling::Mean, Pooling::Cls] {
            let mut head = Sequential::new(
                &[LayerSpec::Dense { inputs: 2, units: 3, init: Init::Glorot }],
                &mut crate::rng::Rng::new(3),
            );
            let model = crate::export::encoder_model(&encoder, "hidden", pooling, &head, 3, &[]).unwrap();
            let path = dir.path().join("m.onnx");
            crate::onnx::save(&path, &model).unwrap();
            let got = TractBackend::load(&path)
                .unwrap()
                .run_output(
                    vec![
                        ("input_ids".into(), Value::I64(ids.clone())),
                        ("attention_mask".into(), Value::I64(mask.clone())),
                    ],
                    "probabilities",
                )
                .unwrap();
            let want = head.predict_proba(pool(pooling, &hidden, &mask).unwrap().into_dyn());
            let diff = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-6, "{pooling:?}: {got} vs {want}");
        }
    }

    /// `graft.text` records a CLS pooling (for `graft verify`); mean, the default, is left out and
    /// is what metadata without the field means.
    #[test]
    fn text_metadata_records_the_pooling() {
        let meta = crate::export::TextMeta {
            max_length: 8,
            inputs: vec![],
            fixed_padding: false,
            encoder_output: Some("hidden".into()),
            pooling: Pooling::Cls,
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert!(json.contains(r#""pooling":"cls""#), "{json}");
        assert_eq!(serde_json::from_str::<crate::export::TextMeta>(&json).unwrap(), meta);
        let mean = crate::export::TextMeta { pooling: Pooling::Mean, ..meta };
        let json = serde_json::to_string(&mean).unwrap();
        assert!(!json.contains("pooling"), "{json}");
        assert_eq!(serde_json::from_str::<crate::export::TextMeta>(&json).unwrap().pooling, Pooling::Mean);
    }
}
