use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use super::{Ctx, Layer, LayerSpec, Param};
use crate::onnx::GraphBuilder;
use crate::rng::Rng;
use crate::Result;

/// Token embedding: ids (as f32; 0 is padding) to vectors. Records each row's length (its count of
/// non-padding ids; padding is on the right) in the context for masked layers after it.
///
/// # Shapes
/// input `[B, S]` ids, output `[B, S, dim]`; `weight` `[vocab, dim]`
pub struct Embedding {
    weight: ArrayD<f32>,
    d_weight: ArrayD<f32>,
    ids: Option<Vec<usize>>,
}

impl Embedding {
    /// Uniform(-0.05, 0.05) initialisation, as Keras.
    pub fn new(vocab: usize, dim: usize, rng: &mut Rng) -> Self {
        let weight = ArrayD::from_shape_fn(IxDyn(&[vocab, dim]), |_| (rng.uniform() - 0.5) * 0.1);
        Embedding { d_weight: ArrayD::zeros(weight.raw_dim()), weight, ids: None }
    }
}

/// Row lengths of a right-padded id matrix: the position after the last non-zero id.
///
/// # Shapes
/// `ids` `[B, S]` -> `[B]`
pub fn lengths(ids: &ArrayD<f32>) -> Vec<usize> {
    ids.axis_iter(Axis(0))
        .map(|row| row.iter().enumerate().filter(|(_, &v)| v != 0.0).last().map_or(0, |(p, _)| p + 1))
        .collect()
}

impl Layer for Embedding {
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        let (b, s) = (x.shape()[0], x.shape()[1]);
        let dim = self.weight.shape()[1];
        let vocab = self.weight.shape()[0];
        let ids: Vec<usize> = x.iter().map(|&v| (v.max(0.0) as usize).min(vocab - 1)).collect();
        let w = self.weight.view().into_dimensionality::<Ix2>().expect("2-D");
        let mut out = ndarray::Array3::<f32>::zeros((b, s, dim));
        for (row, &id) in out.as_slice_mut().expect("contiguous").chunks_exact_mut(dim).zip(&ids) {
            row.copy_from_slice(w.row(id).as_slice().expect("contiguous"));
        }
        ctx.lengths = Some(lengths(&x));
        if ctx.train {
            self.ids = Some(ids);
        }
        out.into_dyn()
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let ids = self.ids.take().expect("backward after a training forward");
        let dim = self.weight.shape()[1];
        self.d_weight.fill(0.0);
        let dw = self.d_weight.as_slice_mut().expect("contiguous");
        let g = grad.as_standard_layout();
        for (row, &id) in g.as_slice().expect("contiguous").chunks_exact(dim).zip(&ids) {
            for (d, v) in dw[id * dim..(id + 1) * dim].iter_mut().zip(row) {
                *d += v;
            }
        }
        // Ids are not differentiable.
        ArrayD::zeros(IxDyn(&grad.shape()[..2]))
    }

    fn params(&mut self) -> Vec<Param<'_>> {
        vec![Param { name: "weight", value: &mut self.weight, grad: &mut self.d_weight, decay: false }]
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Embedding { vocab: self.weight.shape()[0], dim: self.weight.shape()[1] }
    }

    /// `input` is the i64 `input_ids` tensor.
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let w = g.initializer("embedding_weight", &self.weight);
        Ok(g.node("Gather", &[&w, input], &[crate::onnx::Attr::Int("axis", 0)]))
    }
}
