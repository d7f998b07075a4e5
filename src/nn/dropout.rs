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
        // Two 32-bit draws per random word: dropout masks are the hot path of small heads.
        let threshold = (keep as f64 * (1u64 << 32) as f64) as u64;
        let mut y = x.as_standard_layout().into_owned();
        let mut mask = ArrayD::<f32>::zeros(y.raw_dim());
        let values = y.as_slice_mut().expect("standard layout");
        let masks = mask.as_slice_mut().expect("fresh arrays are contiguous");
        for (v, m) in values.chunks_mut(2).zip(masks.chunks_mut(2)) {
            let bits = ctx.rng.next_u64();
            for ((v, m), word) in v.iter_mut().zip(m.iter_mut()).zip([bits & 0xFFFF_FFFF, bits >> 32]) {
                if word < threshold {
                    *m = 1.0 / keep;
                    *v *= *m;
                } else {
                    *v = 0.0;
                }
            }
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
