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
        let threshold = (keep as f64 * (1u64 << 32) as f64).min(u32::MAX as f64) as u32;
        let scale = 1.0 / keep;
        let mut y = x.as_standard_layout().into_owned();
        let mut mask = ArrayD::<f32>::zeros(y.raw_dim());
        // Random words first (the generator is sequential), then a branch-free pass the compiler
        // vectorises: dropout masks are the hot path of small heads on wide features.
        let mut words = vec![0u32; y.len()];
        for pair in words.chunks_mut(2) {
            let bits = ctx.rng.next_u64();
            pair[0] = bits as u32;
            if let Some(w) = pair.get_mut(1) {
                *w = (bits >> 32) as u32;
            }
        }
        let values = y.as_slice_mut().expect("standard layout");
        let masks = mask.as_slice_mut().expect("fresh arrays are contiguous");
        for ((v, m), &w) in values.iter_mut().zip(masks.iter_mut()).zip(&words) {
            *m = (w < threshold) as u8 as f32 * scale;
            *v *= *m;
        }
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
