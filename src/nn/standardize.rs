use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use super::{Ctx, Layer, LayerSpec};
use crate::onnx::GraphBuilder;
use crate::Result;

/// Fixed per-feature standardisation `(x - mean) / std`, fitted on the training split and exported as
/// part of the model so that deployed inputs are raw feature values.
///
/// # Shapes
/// input `[N, F]`, output `[N, F]`; `mean`, `std` `[F]`.
pub struct Standardize {
    mean: ArrayD<f32>,
    std: ArrayD<f32>,
}

impl Standardize {
    /// From fitted statistics; a zero `std` is replaced by 1 so constant columns pass through centred.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        let n = mean.len();
        let std: Vec<f32> = std.into_iter().map(|s| if s > 0.0 && s.is_finite() { s } else { 1.0 }).collect();
        Standardize {
            mean: ArrayD::from_shape_vec(IxDyn(&[n]), mean).expect("1-D"),
            std: ArrayD::from_shape_vec(IxDyn(&[n]), std).expect("1-D"),
        }
    }

    /// Fits mean and (population) standard deviation per column of `x` `[N, F]`.
    pub fn fit(x: &ArrayD<f32>) -> LayerSpec {
        let x2 = x.view().into_dimensionality::<Ix2>().expect("[N, F]");
        let mean = x2.mean_axis(Axis(0)).expect("at least one row");
        let std = x2.std_axis(Axis(0), 0.0);
        LayerSpec::Standardize { mean: mean.to_vec(), std: std.to_vec() }
    }
}

impl Layer for Standardize {
    fn forward(&mut self, x: ArrayD<f32>, _ctx: &mut Ctx) -> ArrayD<f32> {
        (x - &self.mean) / &self.std
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        grad / &self.std
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Standardize { mean: self.mean.iter().copied().collect(), std: self.std.iter().copied().collect() }
    }

    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let mean = g.initializer("standardize_mean", &self.mean);
        let std = g.initializer("standardize_std", &self.std);
        let centred = g.node("Sub", &[input, &mean], &[]);
        Ok(g.node("Div", &[&centred, &std], &[]))
    }
}
