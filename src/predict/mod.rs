//! Prediction with an exported model: [`Model::load`] reads the file's metadata once and opens an
//! inference engine on it (never the native weights); the `predict_*` methods prepare inputs as the
//! metadata says and return typed [`Prediction`]s.
//!
//! ```
//! # fn main() -> graft::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("model.onnx");
//! # graft::predict::doc_model(&path)?;
//! use graft::predict::Model;
//!
//! let model = Model::load(&path)?; // a tabular model over 2 features, labels `no` and `yes`
//! let rows = ndarray::array![[0.0f32, 1.0], [5.0, -3.0]];
//! for p in model.predict_rows(rows.view())? {
//!     println!("row {}: {} ({:.3})", p.id, p.label, p.probability());
//! }
//! # Ok(())
//! # }
//! ```

mod inputs;
mod model;

pub use inputs::{accepts, check_inputs};
pub use model::{Model, Predicted, Request};

use std::path::Path;

use serde::Serialize;

use crate::backend::Value;
use crate::export::ModelMeta;
use crate::{Error, Result};

/// One predicted example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Which input: `1`, `2`, ... (rows), the path (images), `line N` (a CSV's texts), `text N`
    /// (texts given directly).
    pub id: String,
    /// Index of the most likely class (a column of the model's `probabilities`).
    pub class: usize,
    /// Name of the most likely class.
    pub label: String,
    /// `(label, probability)` for every class, in the model's label order.
    pub probabilities: Vec<(String, f32)>,
}

impl Prediction {
    /// The probability of the predicted class.
    pub fn probability(&self) -> f32 {
        self.probabilities[self.class].1
    }

    /// The `k` most likely `(label, probability)` pairs, most likely first.
    pub fn top_k(&self, k: usize) -> Vec<(String, f32)> {
        let mut probs = self.probabilities.clone();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        probs.truncate(k);
        probs
    }
}

/// Turns a probability matrix into predictions named by `ids`.
///
/// # Shapes
/// `proba` `[N, C]`, `ids` `[N]`, `meta.labels` `[C]`
pub fn to_predictions(proba: ndarray::ArrayView2<f32>, ids: Vec<String>, meta: &ModelMeta) -> Vec<Prediction> {
    let best = crate::train::metrics::argmax_rows(proba);
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| Prediction {
            id,
            class: best[i],
            label: meta.labels.0[best[i]].clone(),
            probabilities: meta.labels.0.iter().cloned().zip(proba.row(i).iter().copied()).collect(),
        })
        .collect()
}

/// The tokenizer of a text model: `tokenizer.json` beside it, checked against the model's
/// `graft.tokenizer_sha256`.
pub fn text_encoder(
    model: &Path,
    meta: &ModelMeta,
) -> Result<(crate::preprocess::TextEncoder, crate::export::TextMeta)> {
    let text = meta
        .text
        .clone()
        .ok_or_else(|| Error::onnx(model.display().to_string(), "metadata `graft.text` is missing"))?;
    let path = model.with_file_name("tokenizer.json");
    let bytes = crate::io::read(&path)?;
    if let Some(want) = &meta.tokenizer_sha256 {
        let got = crate::io::sha256_hex(&bytes);
        if &got != want {
            return Err(Error::data(
                &path,
                None,
                format!("sha256 {got} does not match the model's graft.tokenizer_sha256 {want}"),
            ));
        }
    }
    Ok((crate::preprocess::TextEncoder::from_file(&path, text.max_length)?, text))
}

/// The model inputs for `texts`, as a text model's metadata describes them.
pub fn text_inputs(
    encoder: &crate::preprocess::TextEncoder,
    text: &crate::export::TextMeta,
    texts: &[&str],
) -> Result<Vec<(String, Value)>> {
    let e = if text.fixed_padding { encoder.encode_fixed(texts)? } else { encoder.encode(texts)? };
    e.inputs(&text.inputs)
}

/// Writes a tiny tabular model (2 features, labels `no` and `yes`, the second likelier as the
/// or the other, by random weights) to `path`, for the documentation's examples.
#[doc(hidden)]
pub fn doc_model(path: &Path) -> Result<()> {
    use crate::nn::{Init, LayerSpec, Sequential};
    let specs = [LayerSpec::Dense { inputs: 2, units: 2, init: Init::Glorot }];
    let model = Sequential::new(&specs, &mut crate::rng::Rng::new(1));
    let labels = crate::data::Labels(vec!["no".into(), "yes".into()]);
    let features = serde_json::to_string(&["a", "b"]).expect("serialises");
    let meta = crate::export::metadata(
        crate::export::ModelTask::Tabular,
        &labels,
        &[(crate::export::keys::FEATURES, features)],
    );
    let proto = crate::export::tabular(&model, crate::export::TABULAR_INPUT, 2, 2, &meta)?;
    crate::onnx::save(path, &proto)
}
