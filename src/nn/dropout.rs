use ndarray::ArrayD;

use super::{Ctx, Layer, LayerSpec};
use crate::onnx::GraphBuilder;
use crate::Result;

/// Inverted dropout: in training, zeroes each unit with probability `rate` and scales the rest by
/// `1 / (1 - rate)`; at inference it is the identity (and exports to nothing).
///
/// # Shapes
/// any; output has the input's shape.
pub struct Dropout {
    rate: f32,
    mask: Option<ArrayD<f32>>,
}

impl Dropout {
    /// `rate` in `[0, 1)`.
    pub fn new(rate: f32) -> Self {
        Dropout { rate, mask: None }
    }
}

impl Layer for Dropout {
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        if !ctx.train || self.rate == 0.0 {
            self.mask = None;
            return x;
        }
        let keep = 1.0 - self.rate;
        let mask = x.mapv(|_| if ctx.rng.uniform() < keep { 1.0 / keep } else { 0.0 });
        let y = x * &mask;
        self.mask = Some(mask);
        y
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        match self.mask.take() {
            Some(mask) => grad * mask,
            None => grad,
        }
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout { rate: self.rate }
    }

    fn to_onnx(&self, _g: &mut GraphBuilder, input: &str) -> Result<String> {
        Ok(input.to_string())
    }
}
