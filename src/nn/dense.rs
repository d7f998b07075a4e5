use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use super::{Ctx, Init, Layer, LayerSpec, Param};
use crate::onnx::GraphBuilder;
use crate::rng::Rng;
use crate::Result;

/// Fully connected layer `y = x W + b`.
///
/// # Shapes
/// - input `[N, inputs]`, output `[N, units]`
/// - `weight` `[inputs, units]`, `bias` `[units]`
pub struct Dense {
    weight: ArrayD<f32>,
    bias: ArrayD<f32>,
    d_weight: ArrayD<f32>,
    d_bias: ArrayD<f32>,
    init: Init,
    input: Option<ArrayD<f32>>,
}

impl Dense {
    /// A layer with weights drawn by `init` and zero biases.
    pub fn new(inputs: usize, units: usize, init: Init, rng: &mut Rng) -> Self {
        Dense {
            weight: init.matrix(inputs, units, rng),
            bias: ArrayD::zeros(IxDyn(&[units])),
            d_weight: ArrayD::zeros(IxDyn(&[inputs, units])),
            d_bias: ArrayD::zeros(IxDyn(&[units])),
            init,
            input: None,
        }
    }

    /// Stores dL/dW and dL/db from dL/dy; returns dL/dy as a matrix.
    fn param_grads(&mut self, grad: ArrayD<f32>) -> ndarray::Array2<f32> {
        let g = grad.into_dimensionality::<Ix2>().expect("dense grad is [N, units]");
        let x = self.input.take().expect("backward after a training forward");
        let x = x.into_dimensionality::<Ix2>().expect("cached input is 2-D");
        self.d_weight = x.t().dot(&g).into_dyn();
        self.d_bias = g.sum_axis(Axis(0)).into_dyn();
        g
    }

    fn w(&self) -> ndarray::ArrayView2<'_, f32> {
        self.weight.view().into_dimensionality::<Ix2>().expect("dense weight is 2-D")
    }
}

impl Layer for Dense {
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        let x2 = x.view().into_dimensionality::<Ix2>().expect("dense input is [N, F]");
        let y = x2.dot(&self.w()) + &self.bias;
        if ctx.train {
            self.input = Some(x);
        }
        y.into_dyn()
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let g = self.param_grads(grad);
        g.dot(&self.w().t()).into_dyn()
    }

    fn backward_params(&mut self, grad: ArrayD<f32>) {
        self.param_grads(grad);
    }

    fn params(&mut self) -> Vec<Param<'_>> {
        vec![
            Param { name: "weight", value: &mut self.weight, grad: &mut self.d_weight, decay: true },
            Param { name: "bias", value: &mut self.bias, grad: &mut self.d_bias, decay: false },
        ]
    }

    fn spec(&self) -> LayerSpec {
        let s = self.weight.shape();
        LayerSpec::Dense { inputs: s[0], units: s[1], init: self.init }
    }

    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let w = g.initializer("dense_weight", &self.weight);
        let b = g.initializer("dense_bias", &self.bias);
        Ok(g.node("Gemm", &[input, &w, &b], &[]))
    }
}
