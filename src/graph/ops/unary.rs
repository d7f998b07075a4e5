//! Elementwise unary ops: `Erf`, `Sqrt`, `Relu`, `Sigmoid`, `Tanh`, `Identity`, `Dropout`
//! (identity: the tail trains with the backbone's dropout off), and `Clip`.

use ndarray::ArrayD;

use super::{input, par, simd, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Erf,
    Sqrt,
    Relu,
    Sigmoid,
    Tanh,
    Identity,
    /// `0.5 x (1 + erf(x / sqrt 2))`: never an ONNX node here, only the fusion of the five nodes
    /// exporters write it as (see `graph::fuse`).
    Gelu,
}

/// An elementwise function of one tensor.
///
/// # Shapes
/// Any shape; the output has the input's shape.
pub struct Unary(Kind);

impl Unary {
    /// The exact (erf) GELU, for fused node chains.
    pub fn gelu() -> Self {
        Unary(Kind::Gelu)
    }

    /// The op named `op_type`.
    pub fn new(op_type: &str) -> Self {
        Unary(match op_type {
            "Erf" => Kind::Erf,
            "Sqrt" => Kind::Sqrt,
            "Relu" => Kind::Relu,
            "Sigmoid" => Kind::Sigmoid,
            "Tanh" => Kind::Tanh,
            _ => Kind::Identity,
        })
    }
}

impl Op for Unary {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let v = input(x, 0)?;
        if self.0 == Kind::Identity {
            return Ok(match v {
                Value::F32(a) => Value::F32(par::standard(a.view())),
                other => other.clone(),
            });
        }
        let a = as_f32(v, "input")?;
        Ok(Value::F32(match self.0 {
            Kind::Erf => par::map(a, erf),
            Kind::Sqrt => par::map(a, f32::sqrt),
            Kind::Relu => par::map(a, |v| v.max(0.0)),
            Kind::Sigmoid => par::map(a, |v| 1.0 / (1.0 + simd::exp(-v))),
            Kind::Tanh => par::map(a, f32::tanh),
            Kind::Gelu => par::map(a, |v| 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))),
            Kind::Identity => unreachable!(),
        }))
    }

    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        self.vjp_owned(x, y, dy.clone(), want)
    }

    /// `dy` becomes dx in place.
    fn vjp_owned(&self, x: &[Option<&Value>], y: &Value, mut dy: ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        if self.0 == Kind::Identity {
            return Ok(vec![Some(dy)]);
        }
        let a = as_f32(input(x, 0)?, "input")?;
        let y = as_f32(y, "output")?;
        match self.0 {
            Kind::Identity => unreachable!(),
            Kind::Erf => {
                let c = 2.0 / std::f32::consts::PI.sqrt();
                par::zip_in_place(&mut dy, a, |g, v| g * c * simd::exp(-v * v))
            }
            Kind::Sqrt => par::zip_in_place(&mut dy, y, |g, r| g * 0.5 / r),
            Kind::Relu => par::zip_in_place(&mut dy, a, |g, v| if v > 0.0 { g } else { 0.0 }),
            Kind::Sigmoid => par::zip_in_place(&mut dy, y, |g, s| g * s * (1.0 - s)),
            Kind::Tanh => par::zip_in_place(&mut dy, y, |g, t| g * (1.0 - t * t)),
            Kind::Gelu => {
                let c = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
                par::zip_in_place(&mut dy, a, |g, v| {
                    let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                    g * (cdf + v * c * simd::exp(-0.5 * v * v))
                })
            }
        }
        Ok(vec![Some(dy)])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }

    fn needs_output(&self) -> bool {
        matches!(self.0, Kind::Sqrt | Kind::Sigmoid | Kind::Tanh)
    }

    fn re_views(&self) -> bool {
        self.0 == Kind::Identity
    }

    fn forward_owned(&self, x0: ArrayD<f32>, _x: &[Option<&Value>]) -> OpResult<ArrayD<f32>> {
        Ok(x0)
    }

    fn vjp_view(&self, _x0_shape: &[usize], dy: ArrayD<f32>) -> OpResult<ArrayD<f32>> {
        Ok(dy)
    }
}

/// The error function in f32, to within 5e-7: the rational fit that Eigen and XLA use, `x P(x²) /
/// Q(x²)` on `[-4, 4]` (outside it erf is ±1 in f32). No `exp`, so the compiler vectorises it.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_473_9e-2];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P[1..].iter().fold(P[0], |acc, &c| acc * x2 + c) * x;
    let q = Q[1..].iter().fold(Q[0], |acc, &c| acc * x2 + c);
    p / q
}

/// `Clip`: `min(max(x, lo), hi)`, the bounds from inputs 1 and 2 (opset 11+) or attributes.
///
/// # Shapes
/// Any shape; bounds are scalars.
pub struct Clip {
    lo: Option<f32>,
    hi: Option<f32>,
}

impl Clip {
    /// Reads the attribute bounds of opset < 11.
    pub fn new(a: &Attrs, opset: i64) -> OpResult<Self> {
        Ok(if opset < 11 {
            Clip { lo: a.opt_float("min"), hi: a.opt_float("max") }
        } else {
            Clip { lo: None, hi: None }
        })
    }

    fn bounds(&self, x: &[Option<&Value>]) -> OpResult<(f32, f32)> {
        let bound = |i: usize, attr: Option<f32>, default: f32| -> OpResult<f32> {
            match x.get(i).copied().flatten() {
                Some(v) => as_f32(v, "bound")?.iter().next().copied().ok_or_else(|| "empty bound".to_string()),
                None => Ok(attr.unwrap_or(default)),
            }
        };
        Ok((bound(1, self.lo, f32::NEG_INFINITY)?, bound(2, self.hi, f32::INFINITY)?))
    }
}

impl Op for Clip {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let (lo, hi) = self.bounds(x)?;
        Ok(Value::F32(par::map(as_f32(input(x, 0)?, "input")?, |v| v.max(lo).min(hi))))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let (lo, hi) = self.bounds(x)?;
        let a = as_f32(input(x, 0)?, "input")?;
        Ok(vec![Some(par::zip(dy, a, |g, v| if v >= lo && v <= hi { g } else { 0.0 }))])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }
}

#[cfg(test)]
mod tests {
    use super::erf;
    use crate::graph::ops::check::{grad_check, Case};
    use crate::onnx::Attr;

    #[test]
    fn erf_matches_reference_values() {
        for (x, want) in [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3), (3.5, 0.999_999_3)]
        {
            assert!((erf(x) - want).abs() < 5e-7, "erf({x}) = {} vs {want}", erf(x));
        }
    }

    #[test]
    fn unary_gradients() {
        for op in ["Erf", "Relu", "Sigmoid", "Tanh", "Identity", "Dropout"] {
            let mut c = Case::new(&[3, 4]);
            let y = c.node(op, &["x"], &[]);
            grad_check(c.finish_with_input(&y, |v| if v.abs() < 0.1 { v + 0.3 } else { v }));
        }
        let mut c = Case::new(&[3, 4]);
        let y = c.node("Sqrt", &["x"], &[]);
        grad_check(c.finish_with_input(&y, |v| v.abs() + 0.5));
    }

    #[test]
    fn clip_gradient_passes_inside_the_bounds_only() {
        let mut c = Case::new(&[4, 5]);
        let (lo, hi) = (c.scalar(-0.5), c.scalar(0.7));
        let y = c.node("Clip", &["x", &lo, &hi], &[]);
        // Away from the kinks at the bounds.
        grad_check(
            c.finish_with_input(&y, |v| if (v + 0.5).abs() < 0.05 || (v - 0.7).abs() < 0.05 { v + 0.1 } else { v }),
        );
        let mut c = Case::new(&[3, 3]).opset(6);
        let y = c.node("Clip", &["x"], &[Attr::Float("min", 0.0), Attr::Float("max", 6.0)]);
        grad_check(c.finish_with_input(&y, |v| 3.0 * v + if v.abs() < 0.05 { 0.2 } else { 0.0 }));
    }
}
