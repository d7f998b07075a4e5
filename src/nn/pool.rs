use ndarray::{Array2, Array3, ArrayD, Ix3};

use super::{Ctx, Layer, LayerSpec};
use crate::onnx::{Attr, GraphBuilder};
use crate::{Error, Result};

/// Mean over the valid (non-padding) time steps, using the lengths an [`super::Embedding`]
/// recorded in the context; an empty sequence gives zeros.
///
/// # Shapes
/// input `[B, S, H]`, output `[B, H]`
#[derive(Default)]
pub struct MaskedMean {
    lengths: Option<Vec<usize>>,
    steps: usize,
}

impl Layer for MaskedMean {
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        let x = x.into_dimensionality::<Ix3>().expect("[B, S, H]");
        let (b, s, h) = x.dim();
        let lengths = ctx.lengths.clone().unwrap_or_else(|| vec![s; b]);
        let mut out = Array2::<f32>::zeros((b, h));
        for (i, &len) in lengths.iter().enumerate().filter(|(_, &l)| l > 0) {
            let len = len.min(s);
            let sum = x.slice(ndarray::s![i, ..len, ..]).sum_axis(ndarray::Axis(0));
            out.row_mut(i).assign(&(sum / len as f32));
        }
        self.lengths = Some(lengths);
        self.steps = s;
        out.into_dyn()
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let lengths = self.lengths.take().expect("backward after a forward");
        let (b, h) = (grad.shape()[0], grad.shape()[1]);
        let mut dx = Array3::<f32>::zeros((b, self.steps, h));
        for (i, &len) in lengths.iter().enumerate().filter(|(_, &l)| l > 0) {
            let len = len.min(self.steps);
            let g = grad.slice(ndarray::s![i, ..]).mapv(|v| v / len as f32);
            for t in 0..len {
                dx.slice_mut(ndarray::s![i, t, ..]).assign(&g);
            }
        }
        dx.into_dyn()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::MaskedMean
    }

    /// Needs the graph's `mask` context: the attention mask as f32 `[B, S]`.
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let mask =
            g.context("mask").ok_or_else(|| Error::onnx("export", "masked mean needs an attention mask"))?.to_string();
        let axes1 = g.initializer_i64("axes_1", &[1], &[1]);
        let axes2 = g.initializer_i64("axes_2", &[2], &[1]);
        let m3 = g.node("Unsqueeze", &[&mask, &axes2], &[]);
        let masked = g.node("Mul", &[input, &m3], &[]);
        let sum = g.node("ReduceSum", &[&masked, &axes1], &[Attr::Int("keepdims", 0)]);
        let count = g.node("ReduceSum", &[&m3, &axes1], &[Attr::Int("keepdims", 0)]);
        let one = g.initializer("one", &ArrayD::from_elem(vec![1], 1.0));
        let count = g.node("Max", &[&count, &one], &[]);
        Ok(g.node("Div", &[&sum, &count], &[]))
    }
}
