use ndarray::{ArrayD, Ix2, IxDyn};

use super::{Ctx, Layer, LayerSpec};
use crate::onnx::GraphBuilder;
use crate::{Error, Result};

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

    /// Fits mean and (population) standard deviation per column of `x`, accumulated in f64 so that
    /// large values (1e19 and up) do not overflow. Columns that pass [`Standardize::check`] give
    /// finite statistics.
    ///
    /// # Shapes
    /// `x` `[N, F]` -> `mean`, `std` `[F]`
    pub fn fit(x: &ArrayD<f32>) -> LayerSpec {
        let (mean, std) = statistics(x);
        LayerSpec::Standardize {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.iter().map(|&s| s as f32).collect(),
        }
    }

    /// Checks that every column of `x` can be standardised in f32: its statistics are finite, and
    /// so is the spread of its values (else `x - mean` overflows, here or in a training subset).
    /// The error names the column (`names[j]` for column `j`).
    ///
    /// # Shapes
    /// `x` `[N, F]`, `names` `[F]`
    pub fn check(x: &ArrayD<f32>, names: &[String]) -> Result<()> {
        let x2 = x
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Tensor { name: "x".into(), msg: e.to_string() })?;
        let (mean, std) = statistics(x);
        for (j, column) in x2.columns().into_iter().enumerate() {
            let min = column.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
            let max = column.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let finite = |v: f64| (v as f32).is_finite();
            if !(finite(mean[j]) && finite(std[j]) && finite(max - min)) {
                let name = names.get(j).cloned().unwrap_or_else(|| format!("#{j}"));
                return Err(Error::Invalid(format!(
                    "column `{name}`: its values span {min:e} to {max:e}, too wide to standardise in 32-bit floats \
                     (mean {:e}, std {:e}); rescale the column",
                    mean[j], std[j]
                )));
            }
        }
        Ok(())
    }
}

/// Per-column mean and population standard deviation, in f64 (two passes).
///
/// # Shapes
/// `x` `[N, F]` -> `[F]`, `[F]`
fn statistics(x: &ArrayD<f32>) -> (Vec<f64>, Vec<f64>) {
    let x2 = x.view().into_dimensionality::<Ix2>().expect("[N, F]");
    let n = x2.nrows().max(1) as f64;
    x2.columns()
        .into_iter()
        .map(|c| {
            let mean = c.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = c.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        })
        .unzip()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&[values.len(), 1]), values.to_vec()).unwrap()
    }

    #[test]
    fn large_values_do_not_overflow() {
        let x = column(&[5.1e19, 4.9e19, 4.7e19]);
        let LayerSpec::Standardize { mean, std } = Standardize::fit(&x) else { panic!("not a Standardize spec") };
        assert!((mean[0] / 4.9e19 - 1.0).abs() < 1e-6, "{mean:?}");
        let want = 0.163_299_3e19;
        assert!((std[0] / want - 1.0).abs() < 1e-5, "{std:?}, expected {want}");
        Standardize::check(&x, &["sepal".into()]).unwrap();
    }

    #[test]
    fn a_column_too_wide_for_f32_is_rejected_by_name() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, -3e38, 2.0, 3e38]).unwrap();
        let err = Standardize::check(&x, &["a".into(), "b".into()]).unwrap_err().to_string();
        assert!(err.contains("column `b`") && err.contains("rescale"), "{err}");
    }
}
