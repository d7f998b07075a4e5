//! [`TailLayer`]: a backbone's [`Tail`] as an [`nn::Layer`](crate::nn::Layer), so the one
//! trainer trains it with a head after it, checkpoints cover its weights, and export writes them
//! back into the original graph.

use std::path::Path;

use ndarray::ArrayD;

use super::Tail;
use crate::nn::{Ctx, Layer, LayerSpec, Param};
use crate::onnx::GraphBuilder;
use crate::{io, Error, Result};

/// The trainable tail of an ONNX backbone file. Its parameters are named by their initializer
/// names; its side inputs come from [`Ctx::side`].
///
/// # Shapes
/// input: the start tensor's shape in the backbone (e.g. `[N, S, 384]`, `[N, C, H, W]`);
/// output: the end tensor's.
pub struct TailLayer {
    tail: Tail,
    backbone: String,
    sha256: String,
    end: Option<String>,
}

impl TailLayer {
    /// The tail of the backbone at `backbone` from tensor `start` to `end` (default: the graph's
    /// first output), with the backbone's weights. With `sha256`, the file must have that digest.
    ///
    /// Errors: the file cannot be read or decoded, its digest differs, or [`Tail::new`] refuses
    /// the tail (each naming the file or the tensor/node).
    pub fn open(backbone: &Path, start: &str, end: Option<&str>, sha256: Option<&str>) -> Result<TailLayer> {
        let digest = io::sha256_hex(&io::read(backbone)?);
        if let Some(want) = sha256.filter(|w| **w != digest) {
            return Err(Error::onnx(
                backbone.display().to_string(),
                format!("its sha256 is {digest}, but the model was trained from a backbone with sha256 {want}"),
            ));
        }
        let model = crate::onnx::load(backbone)?;
        let tail = Tail::new(&model, start, end)
            .map_err(|e| Error::onnx(backbone.display().to_string(), format!("fine-tuned tail: {e}")))?;
        Ok(TailLayer { tail, backbone: backbone.display().to_string(), sha256: digest, end: end.map(str::to_string) })
    }

    /// The interpreter.
    pub fn tail(&self) -> &Tail {
        &self.tail
    }

    /// The side inputs `ctx` holds that this tail reads.
    fn side(&self, ctx: &Ctx) -> Vec<(String, crate::backend::Value)> {
        let wanted = self.tail.side_inputs();
        ctx.side.iter().filter(|(n, _)| wanted.contains(&n.as_str())).cloned().collect()
    }
}

impl Layer for TailLayer {
    /// Panics with the tail's error (naming the node) when the input or a side input does not fit,
    /// like the other layers on a wrong shape.
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        let side = self.side(ctx);
        self.tail.forward(x, side, ctx.train).unwrap_or_else(|e| panic!("{}: {e}", self.backbone))
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let dx = self.tail.backward(grad, true).unwrap_or_else(|e| panic!("{}: {e}", self.backbone));
        dx.expect("the tail's start tensor receives a gradient")
    }

    fn backward_params(&mut self, grad: ArrayD<f32>) {
        self.tail.backward(grad, false).unwrap_or_else(|e| panic!("{}: {e}", self.backbone));
    }

    /// The tail's parameters named by their initializers; weight decay on tensors of rank 2 or
    /// more.
    fn params(&mut self) -> Vec<Param<'_>> {
        let Tail { names, fixed, params, grads, .. } = &mut self.tail;
        let mut out = Vec::with_capacity(params.len());
        let mut grads = grads.iter_mut();
        let mut next = params.iter().peekable();
        for (slot, v) in fixed.iter_mut().enumerate() {
            if next.peek() != Some(&&slot) {
                continue;
            }
            next.next();
            if let (Some(super::Value::F32(value)), Some(grad)) = (v.as_mut(), grads.next()) {
                let decay = value.ndim() >= 2;
                out.push(Param { name: names[slot].as_str(), value, grad, decay });
            }
        }
        out
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Tail {
            backbone: self.backbone.clone(),
            sha256: self.sha256.clone(),
            start: self.tail.start().to_string(),
            end: self.end.clone(),
        }
    }

    /// Writes the trained values into the backbone's own initializers: `g` must hold the backbone
    /// graph (cut at the tail's end tensor, `input`). No node is added; returns `input`.
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        if input != self.tail.end() {
            return Err(Error::onnx(
                format!("tensor `{input}`"),
                format!("the fine-tuned tail ends at `{}`: export it on the backbone cut there", self.tail.end()),
            ));
        }
        for (name, value) in self.tail.initializers() {
            if !g.set_initializer(name, value) {
                return Err(Error::onnx(
                    format!("initializer `{name}`"),
                    format!(
                        "not in the exported graph with shape {:?}: it is not the backbone {}",
                        value.shape(),
                        self.backbone
                    ),
                ));
            }
        }
        Ok(input.to_string())
    }
}

#[cfg(test)]
mod tests;
