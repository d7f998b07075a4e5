use ndarray::ArrayD;

use super::{Ctx, Layer, LayerSpec};
use crate::onnx::GraphBuilder;
use crate::Result;

/// Rectified linear unit, `max(x, 0)`.
///
/// # Shapes
/// any; output has the input's shape.
#[derive(Default)]
pub struct Relu {
    output: Option<ArrayD<f32>>,
}

impl Layer for Relu {
    fn forward(&mut self, mut x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        x.mapv_inplace(|v| v.max(0.0));
        if ctx.train {
            self.output = Some(x.clone());
        }
        x
    }

    fn backward(&mut self, mut grad: ArrayD<f32>) -> ArrayD<f32> {
        let y = self.output.take().expect("backward after a training forward");
        ndarray::Zip::from(&mut grad).and(&y).for_each(|g, &y| {
            if y <= 0.0 {
                *g = 0.0
            }
        });
        grad
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Relu
    }

    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        Ok(g.node("Relu", &[input], &[]))
    }
}
