//! Prediction with an exported model: reads its metadata, prepares the inputs accordingly and runs
//! the graph on an inference engine (never the native model).

use std::path::Path;

use ndarray::Ix2;
use serde::Serialize;

use crate::backend::{Backend, Value};
use crate::data::{read_csv, CsvOptions};
use crate::export::{ModelMeta, OUTPUT, TABULAR_INPUT};
use crate::{Error, Result};

/// One predicted example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Row number (CSV) or path (images).
    pub id: String,
    pub label: String,
    /// `(label, probability)` in label order.
    pub probabilities: Vec<(String, f32)>,
}

impl Prediction {
    /// One output line: tab-separated `id`, `label` and `label=p` pairs (the `top_k` most likely), or
    /// a JSON object `{"id", "label", "probabilities": {label: p}}`.
    pub fn line(&self, json: bool, top_k: Option<usize>) -> String {
        let mut probs = self.probabilities.clone();
        if let Some(k) = top_k {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1));
            probs.truncate(k);
        }
        if json {
            let map: serde_json::Map<String, serde_json::Value> =
                probs.into_iter().map(|(l, p)| (l, serde_json::json!(p))).collect();
            serde_json::json!({"id": self.id, "label": self.label, "probabilities": map}).to_string()
        } else {
            let ps: Vec<String> = probs.iter().map(|(l, p)| format!("{l}={p:.4}")).collect();
            format!("{}\t{}\t{}", self.id, self.label, ps.join(" "))
        }
    }
}

/// What a model of `task` predicts on, for messages.
pub fn accepts(task: &str) -> &'static str {
    match task {
        "tabular" => "one CSV of numeric features",
        "image" => "image files and folders of images",
        "text" => "a CSV with a text column (--text-column, default `text`) and/or --text \"...\"",
        _ => "inputs of a task this graft does not know",
    }
}

/// `a tabular`, `an image`.
fn a(task: &str) -> String {
    let vowel = task.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {task}", if vowel { "an" } else { "a" })
}

/// What kind of input a path looks like, by its name (folders by the file system).
fn kind_of(p: &Path) -> Option<&'static str> {
    if p.is_dir() {
        return Some("a folder");
    }
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff" => Some("an image"),
        "csv" | "tsv" | "txt" => Some("a CSV"),
        _ => None,
    }
}

/// Checks, before anything runs, that `inputs` (paths) and `texts` (`--text` values) can be
/// predicted by the `task` model at `model`: an error names the model's task and what it takes.
pub fn check_inputs(model: &Path, task: &str, inputs: &[std::path::PathBuf], texts: usize) -> Result<()> {
    let refuse = |what: String| {
        Error::Invalid(format!("{} is {} model: it predicts {}, not {what}", model.display(), a(task), accepts(task)))
    };
    if inputs.is_empty() && texts == 0 {
        return Err(Error::Invalid(format!(
            "{}: nothing to predict: {} model predicts {}",
            model.display(),
            a(task),
            accepts(task)
        )));
    }
    if texts > 0 && task != "text" {
        return Err(refuse("--text".into()));
    }
    let wrong = match task {
        "image" => ["a CSV"].as_slice(),
        "tabular" | "text" => ["a folder", "an image"].as_slice(),
        _ => &[],
    };
    for p in inputs {
        if let Some(k) = kind_of(p).filter(|k| wrong.contains(k)) {
            return Err(refuse(format!("{} ({k})", p.display())));
        }
    }
    if task != "image" && inputs.len() > 1 {
        return Err(refuse(format!("{} files", inputs.len())));
    }
    Ok(())
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
            label: meta.labels.0[best[i]].clone(),
            probabilities: meta.labels.0.iter().cloned().zip(proba.row(i).iter().copied()).collect(),
        })
        .collect()
}

/// Predicts every row of `csv` with the tabular model at `model` (the label column may be absent).
pub fn tabular(model: &Path, csv: &Path, engine: &mut dyn Backend) -> Result<Vec<Prediction>> {
    let meta = ModelMeta::read(model)?;
    if meta.task != "tabular" {
        return Err(Error::Invalid(format!(
            "{}: a {} model cannot predict on a CSV of features",
            model.display(),
            meta.task
        )));
    }
    let features = meta
        .features
        .clone()
        .ok_or_else(|| Error::onnx(model.display().to_string(), "metadata `graft.features` is missing"))?;
    let table = read_csv(csv, &CsvOptions { features: Some(features), ..Default::default() })?;
    let n = table.x.shape()[0];
    let proba = engine.run_output(vec![(TABULAR_INPUT.into(), Value::F32(table.x))], OUTPUT)?;
    let proba =
        proba.into_dimensionality::<Ix2>().map_err(|e| Error::Tensor { name: OUTPUT.into(), msg: e.to_string() })?;
    Ok(to_predictions(proba.view(), (1..=n).map(|i| i.to_string()).collect(), &meta))
}

/// Predicts image files with the image model at `model`, preprocessing them as its
/// `graft.preprocess` metadata says; unreadable images are returned as skips.
pub fn images(
    model: &Path,
    paths: &[std::path::PathBuf],
    engine: &mut dyn Backend,
    batch: usize,
) -> Result<(Vec<Prediction>, Vec<crate::preprocess::Skip>)> {
    use rayon::prelude::*;
    let meta = ModelMeta::read(model)?;
    let pre =
        meta.preprocess.clone().filter(|_| meta.task == "image").ok_or_else(|| {
            Error::Invalid(format!("{}: a {} model does not take images", model.display(), meta.task))
        })?;
    let (mut predictions, mut skipped) = (Vec::new(), Vec::new());
    for chunk in paths.chunks(batch.max(1)) {
        let loaded: Vec<_> = chunk.par_iter().map(|p| (p, pre.load(p))).collect();
        let mut ids = Vec::new();
        let mut imgs = Vec::new();
        for (p, r) in loaded {
            match r {
                Ok(img) => {
                    ids.push(p.display().to_string());
                    imgs.push(img);
                }
                Err(s) => skipped.push(s),
            }
        }
        if imgs.is_empty() {
            continue;
        }
        let input = if pre.dtype == crate::backend::Dtype::U8 {
            Value::U8(pre.tensor_u8(&imgs).into_dyn())
        } else {
            Value::F32(pre.tensor(&imgs).into_dyn())
        };
        let proba = engine.run_output(vec![(crate::export::IMAGE_INPUT.into(), input)], OUTPUT)?;
        let proba = proba
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Tensor { name: OUTPUT.into(), msg: e.to_string() })?;
        predictions.extend(to_predictions(proba.view(), ids, &meta));
    }
    Ok((predictions, skipped))
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

/// Predicts `texts` (ids: `ids`) with the text model at `model`, tokenised by the `tokenizer.json`
/// beside it.
pub fn texts(
    model: &Path,
    texts: &[String],
    ids: Vec<String>,
    engine: &mut dyn Backend,
    batch: usize,
) -> Result<Vec<Prediction>> {
    let meta = ModelMeta::read(model)?;
    if meta.task != "text" {
        return Err(Error::Invalid(format!("{}: a {} model does not take text", model.display(), meta.task)));
    }
    let (encoder, text) = text_encoder(model, &meta)?;
    let mut out = Vec::new();
    for (chunk, chunk_ids) in texts.chunks(batch.max(1)).zip(ids.chunks(batch.max(1))) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let proba = engine.run_output(text_inputs(&encoder, &text, &refs)?, OUTPUT)?;
        let proba = proba
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Tensor { name: OUTPUT.into(), msg: e.to_string() })?;
        out.extend(to_predictions(proba.view(), chunk_ids.to_vec(), &meta));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn check(task: &str, inputs: &[&str], texts: usize) -> std::result::Result<(), String> {
        let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
        check_inputs(Path::new("m.onnx"), task, &inputs, texts).map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_that_cannot_apply_are_refused_naming_the_task() {
        let e = check("image", &["a.jpg"], 1).unwrap_err();
        assert!(e.contains("m.onnx is an image model") && e.contains("not --text"), "{e}");
        let e = check("tabular", &[], 2).unwrap_err();
        assert!(e.contains("tabular model") && e.contains("--text"), "{e}");
        let e = check("text", &["photo.JPG"], 0).unwrap_err();
        assert!(e.contains("text model") && e.contains("--text") && e.contains("photo.JPG (an image)"), "{e}");
        let e = check("image", &["rows.csv"], 0).unwrap_err();
        assert!(e.contains("rows.csv (a CSV)"), "{e}");
        let e = check("tabular", &["a.csv", "b.csv"], 0).unwrap_err();
        assert!(e.contains("not 2 files"), "{e}");
        let e = check("text", &[], 0).unwrap_err();
        assert!(e.contains("nothing to predict") && e.contains("--text"), "{e}");
        assert!(check("text", &["rows.csv"], 2).is_ok(), "a CSV and --text together");
        assert!(check("image", &["a.jpg", "b.png"], 0).is_ok());
        assert!(check("tabular", &["rows.csv"], 0).is_ok());
    }
}
