//! `graft explain`: where an image model looks, as Grad-CAM heatmaps.
//!
//! ```text
//! image ─► [model cut at the feature map A, on a Backend] ─► A [N,C,h,w] ─► [native tail] ─► class scores
//!                                                                         ◄─ d score / d A (reverse mode)
//! ```
//!
//! - The feature map is found in the exported model's own graph: the input of the last global
//!   pooling (`GlobalAveragePool`, `GlobalMaxPool`, or `ReduceMean` over axes 2 and 3) that the
//!   output depends on, i.e. the last spatial block's output.
//! - The class score is the input of the final `Softmax` (the logits), or the output itself when
//!   the graph does not end in one.
//! - Grad-CAM ([`grad_cam`]): channel weights are the spatial means of d score / d `A`, the map is
//!   `relu(sum_c w_c A_c)` divided by its maximum. For a linear head after global average pooling
//!   this is the classic CAM (the head's weights applied to `A`).

mod cam;
mod draw;

pub use cam::{grad_cam, normalise, Cam};
pub use draw::{gallery, jet, overlay, upsample, write_png, Tile};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Serialize;

use crate::backend::{Backend, EngineOptions, Value};
use crate::data::Labels;
use crate::export::{ModelMeta, IMAGE_INPUT};
use crate::graph::Tail;
use crate::onnx::pb;
use crate::preprocess::{ImagePreprocess, Skip};
use crate::{Error, Result};

/// Where Grad-CAM reads a model: the feature map, the class score, and whether the score goes
/// through a final softmax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taps {
    /// The last spatial feature map (the input of the last global pooling).
    pub feature: String,
    /// The class scores (the logits when `softmax`).
    pub score: String,
    /// The graph's output is `Softmax(score)`.
    pub softmax: bool,
}

fn is_global_pool(n: &pb::NodeProto) -> bool {
    match n.op_type.as_str() {
        "GlobalAveragePool" | "GlobalMaxPool" => true,
        "ReduceMean" => n.attribute.iter().any(|a| a.name == "axes" && matches!(a.ints.as_slice(), [2, 3] | [-2, -1])),
        _ => false,
    }
}

/// Finds the feature map and the class score of `model` (see the module docs). `what` names the
/// model in errors.
pub fn taps(model: &pb::ModelProto, what: &str) -> Result<Taps> {
    let graph = model.graph.as_ref().ok_or_else(|| Error::onnx(what, "no graph"))?;
    let output = graph.output.first().map(|o| o.name.as_str()).ok_or_else(|| Error::onnx(what, "no output"))?;
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let (score, softmax) = match producer.get(output).map(|&i| &graph.node[i]) {
        Some(n) if n.op_type == "Softmax" => (n.input[0].as_str(), true),
        _ => (output, false),
    };
    // Every node the score depends on; the last global pooling among them, in graph order.
    let mut needed = vec![false; graph.node.len()];
    let mut stack = vec![score];
    while let Some(t) = stack.pop() {
        if let Some(&i) = producer.get(t) {
            if !needed[i] {
                needed[i] = true;
                stack.extend(graph.node[i].input.iter().filter(|s| !s.is_empty()).map(String::as_str));
            }
        }
    }
    let pool = graph.node.iter().zip(&needed).rev().find(|(n, k)| **k && is_global_pool(n)).map(|(n, _)| n);
    let pool = pool.ok_or_else(|| {
        Error::onnx(
            what,
            format!("no global pooling before `{score}`: explain needs a CNN whose last feature map is pooled"),
        )
    })?;
    Ok(Taps { feature: pool.input[0].clone(), score: score.to_string(), softmax })
}

/// One explained image.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The image file.
    pub image: String,
    /// The class explained.
    pub class: String,
    /// Its probability.
    pub probability: f32,
    /// The most probable class and its probability (the same as `class` unless one was asked).
    pub predicted: String,
    /// The most probable class's probability.
    pub predicted_probability: f32,
    /// The normalised low-resolution map, `[h][w]`, values in `[0, 1]`.
    pub map: Vec<Vec<f32>>,
    /// The PNG written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// An image model ready to explain: its front (the graph cut at the feature map) on an engine,
/// and its tail (feature map to class scores) on the native interpreter.
pub struct Explainer {
    labels: Labels,
    pre: ImagePreprocess,
    taps: Taps,
    front: Box<dyn Backend>,
    tail: Tail,
    _dir: tempfile::TempDir,
}

impl Explainer {
    /// Opens the exported image model at `model` (its `graft.preprocess` and labels say how to
    /// feed it and name its classes); the front runs on the engine `opts` picks.
    ///
    /// Errors: not an image model, no pooled feature map (see [`taps`]), or a tail op the native
    /// interpreter cannot differentiate (named).
    pub fn open(model: &Path, opts: &EngineOptions) -> Result<Explainer> {
        let what = model.display().to_string();
        let meta = ModelMeta::read(model)?;
        let pre =
            meta.preprocess.clone().filter(|_| meta.task == "image").ok_or_else(|| {
                Error::Invalid(format!("{what}: a {} model has no image heatmaps to explain", meta.task))
            })?;
        let proto = crate::onnx::load(model)?;
        let taps = taps(&proto, &what)?;
        let tail = Tail::new(&proto, &taps.feature, Some(&taps.score))?;
        let cut = crate::onnx::cut::cut(&proto, &taps.feature, model)?;
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("front.onnx");
        crate::onnx::save(&path, &cut)?;
        let front = crate::backend::open(&path, opts)?;
        Ok(Explainer { labels: meta.labels, pre, taps, front, tail, _dir: dir })
    }

    /// The model's class names.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// How the model's images are decoded and resized.
    pub fn preprocess(&self) -> &ImagePreprocess {
        &self.pre
    }

    /// Where Grad-CAM reads the model.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }

    /// The class named `name`, or an error listing the model's classes.
    pub fn class(&self, name: &str) -> Result<usize> {
        self.labels.0.iter().position(|l| l == name).ok_or_else(|| {
            Error::Invalid(format!("no class `{name}`: the model's classes are {}", self.labels.0.join(", ")))
        })
    }

    /// The feature map of `images` (decoded and resized as [`Explainer::preprocess`] says).
    ///
    /// # Shapes
    /// `images` each `[size, size, 3]` -> `[N, C, h, w]`
    pub fn features(&mut self, images: &[image::RgbImage]) -> Result<ndarray::ArrayD<f32>> {
        let input = if self.pre.dtype.as_str() == "u8" {
            Value::U8(self.pre.tensor_u8(images).into_dyn())
        } else {
            Value::F32(self.pre.tensor(images).into_dyn())
        };
        self.front.run_output(vec![(IMAGE_INPUT.to_string(), input)], &self.taps.feature)
    }

    /// Grad-CAM of `images` for `class` (or each image's predicted class).
    ///
    /// # Shapes
    /// `images` each `[size, size, 3]` -> `N` maps `[h, w]`
    pub fn cams(&mut self, images: &[image::RgbImage], class: Option<usize>) -> Result<Vec<Cam>> {
        let a = self.features(images)?;
        grad_cam(&mut self.tail, a, class, self.taps.softmax)
    }

    /// Explains image files, `batch` at a time: with `out`, writes each photo (as the model sees
    /// it) with its heatmap blended over it to `out/STEM.png` (`STEM-2.png`, ... when names
    /// repeat). Unreadable images are returned as skips.
    pub fn files(
        &mut self,
        paths: &[PathBuf],
        class: Option<usize>,
        out: Option<&Path>,
        batch: usize,
    ) -> Result<(Vec<Explanation>, Vec<Skip>)> {
        let (mut done, mut skipped) = (Vec::new(), Vec::new());
        let mut used: HashMap<String, usize> = HashMap::new();
        for chunk in paths.chunks(batch.max(1)) {
            let mut ok = Vec::new();
            for p in chunk {
                match self.pre.load(p) {
                    Ok(img) => ok.push((p, img)),
                    Err(s) => skipped.push(s),
                }
            }
            if ok.is_empty() {
                continue;
            }
            let imgs: Vec<image::RgbImage> = ok.iter().map(|(_, i)| i.clone()).collect();
            for ((path, img), cam) in ok.iter().zip(self.cams(&imgs, class)?) {
                let output = match out {
                    Some(dir) => {
                        let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
                        let n = used.entry(stem.clone()).or_insert(0);
                        *n += 1;
                        let name = if *n == 1 { format!("{stem}.png") } else { format!("{stem}-{n}.png") };
                        let file = dir.join(name);
                        write_png(&file, &overlay(img, cam.map.view()))?;
                        Some(file.display().to_string())
                    }
                    None => None,
                };
                done.push(self.explanation(path, &cam, output));
            }
        }
        Ok((done, skipped))
    }

    fn explanation(&self, path: &Path, cam: &Cam, output: Option<String>) -> Explanation {
        let p = &cam.probabilities;
        let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        let name = |c: usize| self.labels.0.get(c).cloned().unwrap_or_else(|| c.to_string());
        Explanation {
            image: path.display().to_string(),
            class: name(cam.class),
            probability: cam.probabilities[cam.class],
            predicted: name(best),
            predicted_probability: cam.probabilities[best],
            map: rows(&cam.map),
            output,
        }
    }
}

fn rows(map: &Array2<f32>) -> Vec<Vec<f32>> {
    map.rows().into_iter().map(|r| r.to_vec()).collect()
}

#[cfg(test)]
mod tests;
