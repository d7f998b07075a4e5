//! A pretrained backbone made ready to run frozen: resolved (local or `hf://`), checked against its
//! sha256, cut where its manifest says, with its preprocessing or tokenizer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::manifest::{BackboneKind, Manifest, Pooling};
use crate::hub::{self, HubOptions};
use crate::preprocess::{ImagePreprocess, TextEncoder};
use crate::{io, onnx, Error, Result};

/// A pretrained model ready to run frozen: resolved, checked and cut as its manifest says.
#[derive(Clone, Debug)]
pub struct Backbone {
    /// The manifest it was prepared from.
    pub manifest: Manifest,
    /// The file the weights came from.
    pub source: PathBuf,
    /// sha256 of that file.
    pub sha256: String,
    /// The graph to run (the cut graph when the manifest cuts).
    pub path: PathBuf,
    /// The tensor the graph was cut at, if any.
    pub cut: Option<String>,
    /// The graph's (first) input.
    pub input: String,
    /// Every graph input (text encoders take several).
    pub inputs: Vec<String>,
    /// The output whose values are the features.
    pub output: String,
    /// How images become its input (image backbones).
    pub preprocess: Option<ImagePreprocess>,
}

/// What `graft.backbone` metadata records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackboneInfo {
    /// The manifest's name.
    pub name: String,
    /// Where the weights came from (a path or `hf://` reference).
    pub source: String,
    /// sha256 of the weights file.
    pub sha256: String,
    /// The tensor the graph was cut at.
    pub cut: Option<String>,
}

impl Backbone {
    /// Resolves `manifest`'s model (or `model_override`), checks its sha256 when the manifest pins
    /// one, and cuts it into `cache_root/backbones/` (reused on later runs).
    pub fn prepare(manifest: Manifest, model_override: Option<&Path>, cache_root: &Path) -> Result<Backbone> {
        let source = match model_override {
            Some(p) => p.to_path_buf(),
            None => hub::resolve(&manifest.source, manifest.sha256.as_deref(), &HubOptions::from_env())?,
        };
        let bytes = io::read(&source)?;
        let sha256 = io::sha256_hex(&bytes);
        if let Some(want) = &manifest.sha256 {
            if !want.eq_ignore_ascii_case(&sha256) {
                return Err(Error::onnx(
                    source.display().to_string(),
                    format!("sha256 is {sha256}, but manifest `{}` pins {want}", manifest.name),
                ));
            }
        }
        let model = onnx::load(&source)?;
        let graph = model.graph.as_ref().ok_or_else(|| Error::onnx(source.display().to_string(), "no graph"))?;
        let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<String> =
            graph.input.iter().map(|i| i.name.clone()).filter(|n| !inits.contains(&n.as_str())).collect();
        let first_input = inputs.first().cloned();
        let (path, cut, output) = match &manifest.cut {
            Some(at) => {
                // Cut once per (model, cut point); later runs load the cut graph from the cache.
                let file = cache_root.join("backbones").join(format!(
                    "{}-{}.onnx",
                    &sha256[..16],
                    &io::sha256_hex(at.as_bytes())[..8]
                ));
                let cut = match file.exists() {
                    true => onnx::load(&file)?,
                    false => {
                        let cut = onnx::cut::cut(&model, at, &source)?;
                        onnx::save(&file, &cut)?;
                        cut
                    }
                };
                let out = cut.graph.as_ref().and_then(|g| g.output.first()).map(|o| o.name.clone());
                let out = out.ok_or_else(|| Error::onnx(file.display().to_string(), "cut graph without output"))?;
                (file, Some(out.clone()), out)
            }
            None => {
                let out = manifest.output.clone().or_else(|| graph.output.first().map(|o| o.name.clone()));
                (source.clone(), None, out.ok_or_else(|| Error::onnx(source.display().to_string(), "no output"))?)
            }
        };
        let (input, preprocess) = match (manifest.kind, &manifest.input) {
            (BackboneKind::Image, Some(i)) => (i.name.clone(), Some(ImagePreprocess::from_manifest(i))),
            _ => (first_input.unwrap_or_default(), None),
        };
        Ok(Backbone { manifest, source, sha256, path, cut, input, inputs, output, preprocess })
    }

    /// The tokenizer a text backbone's manifest names, beside its model file, truncating at the
    /// manifest's `max_length`. When the manifest pins `tokenizer_sha256`, a file with other bytes
    /// is an error naming the file and both hashes.
    pub fn text_encoder(&self) -> Result<TextEncoder> {
        let text = self
            .manifest
            .text
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("`{}` is not a text backbone", self.manifest.name)))?;
        let path = self.source.parent().unwrap_or(Path::new(".")).join(&text.tokenizer);
        if !path.is_file() {
            return Err(Error::io(&path, std::io::ErrorKind::NotFound.into()));
        }
        if let Some(want) = &text.tokenizer_sha256 {
            let got = io::sha256_hex(&io::read(&path)?);
            if !want.eq_ignore_ascii_case(&got) {
                return Err(Error::data(
                    &path,
                    None,
                    format!("sha256 is {got}, but manifest `{}` pins tokenizer_sha256 = {want}", self.manifest.name),
                ));
            }
        }
        TextEncoder::from_file(&path, text.max_length)
    }

    /// How a text backbone's token states become one vector (mean for any other backbone).
    pub fn pooling(&self) -> Pooling {
        self.manifest.text.as_ref().map_or(Pooling::Mean, |t| t.pooling)
    }

    /// Everything besides the model's own bytes that determines its features, as JSON: the cut
    /// point and image preprocessing, or the pooling, truncation and tokenizer. Part of the
    /// feature-cache key.
    pub fn recipe(&self, encoder: Option<&TextEncoder>) -> Result<String> {
        let recipe = match (&self.preprocess, encoder) {
            // Scaled JPEG decoding changes the pixels of large JPEGs a little: part of the key.
            (Some(pre), _) => serde_json::json!({
                "cut": self.cut,
                "preprocess": pre,
                "jpeg_dct_scaling": crate::preprocess::image::scaled_jpeg_enabled(),
            }),
            (None, Some(enc)) => serde_json::json!({
                "pooling": self.pooling(),
                "max_length": enc.max_length,
                "tokenizer": io::sha256_hex(enc.to_json()?.as_bytes()),
            }),
            (None, None) => serde_json::json!({ "cut": self.cut }),
        };
        Ok(recipe.to_string())
    }

    /// The `graft.backbone` record.
    pub fn info(&self) -> BackboneInfo {
        BackboneInfo {
            name: self.manifest.name.clone(),
            source: self.source.display().to_string(),
            sha256: self.sha256.clone(),
            cut: self.cut.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::manifest::TextInput;

    fn text_backbone(dir: &Path, tokenizer_sha256: Option<String>) -> Backbone {
        let text =
            TextInput { tokenizer: "tokenizer.json".into(), tokenizer_sha256, pooling: Pooling::Cls, max_length: 8 };
        let manifest = Manifest {
            name: "tiny".into(),
            kind: BackboneKind::Text,
            source: "model.onnx".into(),
            sha256: None,
            cut: Some("x".into()),
            output: None,
            input: None,
            text: Some(text),
        };
        Backbone {
            manifest,
            source: dir.join("model.onnx"),
            sha256: "0".repeat(64),
            path: dir.join("model.onnx"),
            cut: Some("x".into()),
            input: "input_ids".into(),
            inputs: vec!["input_ids".into()],
            output: "hidden".into(),
            preprocess: None,
        }
    }

    #[test]
    fn the_pinned_tokenizer_sha256_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let texts = ["a b c".to_string()];
        let sha = TextEncoder::train_word_level(&texts, 10, true, 8)
            .unwrap()
            .save(&dir.path().join("tokenizer.json"))
            .unwrap();
        text_backbone(dir.path(), Some(sha.clone())).text_encoder().unwrap();
        text_backbone(dir.path(), None).text_encoder().unwrap();
        let wrong = "ab".repeat(32);
        let err = text_backbone(dir.path(), Some(wrong.clone())).text_encoder().err().unwrap().to_string();
        assert!(err.contains("tokenizer.json") && err.contains(&sha) && err.contains(&wrong), "{err}");
    }

    #[test]
    fn the_recipe_is_json_with_the_manifest_pooling() {
        let dir = tempfile::tempdir().unwrap();
        let b = text_backbone(dir.path(), None);
        let v: serde_json::Value = serde_json::from_str(&b.recipe(None).unwrap()).unwrap();
        assert_eq!(v["cut"], "x");
        let enc = TextEncoder::train_word_level(&["a b".to_string()], 10, true, 8).unwrap();
        let v: serde_json::Value = serde_json::from_str(&b.recipe(Some(&enc)).unwrap()).unwrap();
        assert_eq!((v["pooling"].as_str(), v["max_length"].as_u64()), (Some("cls"), Some(8)));
        let image = Backbone {
            preprocess: Some(ImagePreprocess {
                size: 8,
                resize: crate::config::manifest::ResizeMode::Stretch,
                mean: [0.0; 3],
                std: [1.0; 3],
                layout: crate::config::manifest::Layout::Nchw,
                dtype: crate::backend::Dtype::F32,
            }),
            ..b
        };
        let v: serde_json::Value = serde_json::from_str(&image.recipe(None).unwrap()).unwrap();
        assert_eq!(v["jpeg_dct_scaling"], true, "whether large JPEGs are decoded scaled is part of the key");
    }
}
