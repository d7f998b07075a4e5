//! Backbone manifests (`models/*.toml`): where a pretrained model comes from and how to feed it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A pretrained backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name (`efficientnet-lite0`).
    pub name: String,
    /// Image or text backbone.
    pub kind: BackboneKind,
    /// Local path (relative to the manifest's folder) or `hf://ORG/NAME/PATH[@REV]`.
    pub source: String,
    /// Expected sha256 of the model file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Tensor to cut at (`auto`: the final classifier's input); `None` keeps the model's output.
    #[serde(default)]
    pub cut: Option<String>,
    /// The output to use when the model has several.
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    /// How images are fed (image backbones).
    pub input: Option<ImageInput>,
    #[serde(default)]
    /// How texts are fed (text backbones).
    pub text: Option<TextInput>,
}

/// What a backbone consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// Takes images.
    Image,
    /// Takes token ids.
    Text,
}

/// Image preprocessing a backbone expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// The graph's image input.
    pub name: String,
    /// Side of the square input, in pixels.
    pub size: u32,
    /// NCHW or NHWC.
    pub layout: Layout,
    /// How images are brought to `size x size`.
    pub resize: ResizeMode,
    /// Per-channel mean and std on 0..255 RGB values.
    pub mean: [f32; 3],
    /// Per-channel std on 0..255 RGB values.
    pub std: [f32; 3],
}

/// Tensor layout of an image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    #[serde(rename = "NCHW")]
    /// `[N, channels, height, width]`.
    Nchw,
    #[serde(rename = "NHWC")]
    /// `[N, height, width, channels]`.
    Nhwc,
}

/// How an image reaches `size x size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Resize both sides to `size` (aspect ratio not kept).
    Stretch,
    /// Resize the shorter side to `size`, then centre-crop.
    ShorterSideCrop,
}

/// Text encoding a backbone expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    /// `tokenizer.json`, relative to the model file's folder.
    pub tokenizer: String,
    #[serde(default)]
    /// Expected sha256 of the tokenizer file.
    pub tokenizer_sha256: Option<String>,
    /// How token states become one vector.
    pub pooling: Pooling,
    /// Tokens kept per text.
    pub max_length: usize,
}

/// How token states become one sentence vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over tokens where `attention_mask = 1`.
    #[default]
    Mean,
    /// The first token's state.
    Cls,
}

impl Pooling {
    /// Whether this is the default, [`Pooling::Mean`] (left out of `graft.text` metadata).
    pub fn is_mean(&self) -> bool {
        *self == Pooling::Mean
    }
}

impl Manifest {
    /// Loads a manifest by name (`models/NAME.toml`, looked up in the current folder and beside the
    /// executable's ancestors) or by path.
    pub fn load(name_or_path: &str) -> Result<Manifest> {
        let path = Self::locate(name_or_path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(1);
            Error::config(format!("{}:{line}", path.display()), e.message().to_string())
        })?;
        let mut m = m.build().map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
        if !m.source.starts_with("hf://") {
            // A local source is relative to the manifest's folder, like a pipeline's paths.
            m.source =
                super::resolve(path.parent().unwrap_or(Path::new("")), Path::new(&m.source)).display().to_string();
        }
        Ok(m)
    }

    fn locate(name_or_path: &str) -> Result<PathBuf> {
        let direct = PathBuf::from(name_or_path);
        if direct.extension().is_some_and(|e| e == "toml") || name_or_path.contains('/') {
            return if direct.is_file() {
                Ok(direct)
            } else {
                Err(Error::io(&direct, std::io::ErrorKind::NotFound.into()))
            };
        }
        let file = format!("{name_or_path}.toml");
        let mut bases: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
        if let Ok(exe) = std::env::current_exe() {
            bases.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
        }
        bases
            .iter()
            .map(|b| b.join("models").join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Invalid(format!("no backbone manifest `{name_or_path}` (looked for models/{file})")))
    }

    /// Checks that the fields fit the kind.
    pub fn build(self) -> Result<Self> {
        match (self.kind, &self.input, &self.text) {
            (BackboneKind::Image, Some(i), _) if i.size == 0 || i.std.iter().any(|s| *s <= 0.0) => {
                return Err(Error::Invalid("[input]: size and std must be positive".into()))
            }
            (BackboneKind::Image, None, _) => {
                return Err(Error::Invalid("an image backbone needs an [input] section".into()))
            }
            (BackboneKind::Text, _, Some(t)) if t.max_length == 0 => {
                return Err(Error::Invalid("[text]: max_length must be positive".into()))
            }
            (BackboneKind::Text, _, None) => {
                return Err(Error::Invalid("a text backbone needs a [text] section".into()))
            }
            _ => {}
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_manifests_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let e = Manifest::load(root.join("efficientnet-lite0.toml").to_str().unwrap()).unwrap();
        let input = e.input.unwrap();
        assert_eq!((input.size, input.layout, input.mean[0], input.std[0]), (224, Layout::Nchw, 127.0, 128.0));
        assert_eq!(e.cut.as_deref(), Some("auto"));
        let m = Manifest::load(root.join("all-minilm-l6-v2.toml").to_str().unwrap()).unwrap();
        let text = m.text.unwrap();
        assert_eq!((text.pooling, text.max_length), (Pooling::Mean, 128));
        assert!(m.source.starts_with("hf://"));
    }
}
