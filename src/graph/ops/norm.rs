//! `LayerNormalization`, and `BatchNormalization` in its inference form (running statistics
//! frozen, scale and bias trainable).

use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};

use rayon::prelude::*;

use super::{axis, input, par, simd, unbroadcast, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

/// Layer normalisation over the axes from `axis` on: `y = (x - mean) / sqrt(var + eps) * scale + bias`.
///
/// # Shapes
/// `x`: any; `scale`, `bias`: broadcastable to `x.shape[axis..]`; output: `x`'s shape.
pub struct LayerNorm {
    axis: i64,
    epsilon: f32,
}

impl LayerNorm {
    /// Reads `axis` (default -1) and `epsilon` (default 1e-5).
    pub fn new(a: &Attrs) -> Self {
        LayerNorm { axis: a.int("axis", -1), epsilon: a.float("epsilon", 1e-5) }
    }
}

/// `x` as `[outer, inner]` rows, normalised, with each row's `1 / sqrt(var + eps)`; then `f(row)`
/// on each normalised row, in the same pass.
fn normalise(x: &ArrayD<f32>, ax: usize, eps: f32, f: impl Fn(&mut [f32]) + Sync) -> (Array2<f32>, Array1<f32>) {
    let inner: usize = x.shape()[ax..].iter().product();
    let outer = x.len() / inner.max(1);
    let mut xhat = par::standard(x.view()).into_shape_with_order((outer, inner)).unwrap();
    let n = inner as f32;
    let mut inv = vec![0.0f32; outer];
    let one = |(row, r): (&mut [f32], &mut f32)| {
        simd::fast(|| {
            let mean = simd::sum(row) / n;
            row.iter_mut().for_each(|v| *v -= mean);
            *r = 1.0 / (simd::dot(row, row) / n + eps).sqrt();
            let k = *r;
            row.iter_mut().for_each(|v| *v *= k);
            f(row);
        })
    };
    let data = xhat.as_slice_mut().expect("standard layout");
    if data.len() >= par::PARALLEL_FROM {
        data.par_chunks_mut(inner.max(1)).zip(inv.par_iter_mut()).with_min_len(16).for_each(one);
    } else {
        data.chunks_mut(inner.max(1)).zip(inv.iter_mut()).for_each(one);
    }
    (xhat, Array1::from(inv))
}

/// A per-feature parameter broadcast to the `inner` normalised shape, flattened.
fn per_feature(v: &ArrayD<f32>, shape: &[usize], what: &str) -> OpResult<Array1<f32>> {
    let b =
        v.broadcast(IxDyn(shape)).ok_or_else(|| format!("{what} {:?} does not broadcast to {shape:?}", v.shape()))?;
    Ok(b.iter().copied().collect())
}

impl Op for LayerNorm {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = as_f32(input(x, 0)?, "X")?;
        let ax = axis(self.axis, a.ndim())?;
        let scale = per_feature(as_f32(input(x, 1)?, "Scale")?, &a.shape()[ax..], "Scale")?;
        let bias = match x.get(2).copied().flatten() {
            Some(b) => per_feature(as_f32(b, "B")?, &a.shape()[ax..], "B")?,
            None => Array1::zeros(scale.len()),
        };
        let (scale, bias) = (scale.as_slice().expect("owned"), bias.as_slice().expect("owned"));
        let (y, _) = normalise(a, ax, self.epsilon, |row| {
            row.iter_mut().zip(scale).zip(bias).for_each(|((v, &s), &b)| *v = *v * s + b);
        });
        Ok(Value::F32(y.into_shape_with_order(IxDyn(a.shape())).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        self.vjp_owned(x, y, dy.clone(), want)
    }

    /// The scale and bias gradients are summed from `dy` first; then `dy` becomes dL/dX in place.
    fn vjp_owned(&self, x: &[Option<&Value>], _y: &Value, dy: ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let a = as_f32(input(x, 0)?, "X")?;
        let ax = axis(self.axis, a.ndim())?;
        let inner_shape = &a.shape()[ax..];
        let scale_v = as_f32(input(x, 1)?, "Scale")?;
        let scale = per_feature(scale_v, inner_shape, "Scale")?;
        let (xhat, inv) = normalise(a, ax, self.epsilon, |_| {});
        let dy = par::into_standard(dy);
        let mut g = dy.into_shape_with_order(xhat.raw_dim()).unwrap();
        let reduce = |g_rows: &[f32], times: Option<&[f32]>, like: &ArrayD<f32>| {
            let sums = par::column_sums(g_rows, times, xhat.ncols());
            unbroadcast(ArrayD::from_shape_vec(IxDyn(inner_shape), sums).unwrap(), like.shape())
        };
        let g_rows = g.as_slice().expect("standard layout");
        let dscale = want[1].then(|| reduce(g_rows, xhat.as_slice(), scale_v));
        let dbias = match (want.get(2).copied().unwrap_or(false), x.get(2).copied().flatten()) {
            (true, Some(b)) => Some(reduce(g_rows, None, as_f32(b, "B")?)),
            _ => None,
        };
        let dx = want[0].then(|| {
            let width = xhat.ncols();
            let n = width as f32;
            let (h, sc) = (xhat.as_slice().expect("standard layout"), scale.as_slice().expect("owned"));
            par::rows_mut(g.as_slice_mut().expect("standard layout"), width, |d, i| {
                let (h, k) = (&h[i * width..(i + 1) * width], inv[i]);
                d.iter_mut().zip(sc).for_each(|(v, &s)| *v *= s);
                let mean_d = simd::sum(d) / n;
                let mean_dh = simd::dot(d, h) / n;
                d.iter_mut().zip(h).for_each(|(v, &hv)| *v = k * (*v - mean_d - hv * mean_dh));
            });
            g.into_shape_with_order(IxDyn(a.shape())).unwrap()
        });
        Ok(vec![dx, dscale, dbias])
    }
}

/// An input of [`BatchNorm`] as `[N, C, spatial]` with its per-channel `scale * inv`, `inv =
/// 1 / sqrt(var + eps)` and `mean`.
struct Prepared {
    x3: ndarray::Array3<f32>,
    k: Vec<f32>,
    inv: Vec<f32>,
    mean: Vec<f32>,
}

/// Batch normalisation with frozen statistics: `y = (x - mean) / sqrt(var + eps) * scale + B`
/// per channel (axis 1).
///
/// # Shapes
/// `x`: `[N, C, ...]`; `scale`, `B`, `mean`, `var`: `[C]`; output: `x`'s shape.
pub struct BatchNorm {
    epsilon: f32,
}

impl BatchNorm {
    /// Reads `epsilon` (default 1e-5).
    pub fn new(a: &Attrs) -> OpResult<Self> {
        if a.int("training_mode", 0) != 0 {
            return Err("training_mode=1 is not supported: the tail keeps the running statistics".into());
        }
        Ok(BatchNorm { epsilon: a.float("epsilon", 1e-5) })
    }

    /// `x` as `[N, C, spatial]` and the per-channel factors.
    fn prepare(&self, x: &[Option<&Value>]) -> OpResult<Prepared> {
        let a = as_f32(input(x, 0)?, "X")?;
        if a.ndim() < 2 {
            return Err(format!("X must be [N, C, ...], got {:?}", a.shape()));
        }
        let (n, c) = (a.shape()[0], a.shape()[1]);
        let rest = a.len() / (n * c).max(1);
        let col = |i: usize, what: &str| -> OpResult<Vec<f32>> {
            let v = as_f32(input(x, i)?, what)?;
            if v.len() != c {
                return Err(format!("{what} has {} values for {c} channels", v.len()));
            }
            Ok(v.iter().copied().collect())
        };
        let (scale, mean, var) = (col(1, "scale")?, col(3, "mean")?, col(4, "var")?);
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.epsilon).sqrt()).collect();
        let k: Vec<f32> = scale.iter().zip(&inv).map(|(s, i)| s * i).collect();
        let x3 = a.as_standard_layout().into_owned().into_shape_with_order((n, c, rest)).unwrap();
        Ok(Prepared { x3, k, inv, mean })
    }
}

impl Op for BatchNorm {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let Prepared { mut x3, k, mean, .. } = self.prepare(x)?;
        let b: Vec<f32> = as_f32(input(x, 2)?, "B")?.iter().copied().collect();
        for mut img in x3.outer_iter_mut() {
            for (ch, mut plane) in img.outer_iter_mut().enumerate() {
                plane.mapv_inplace(|v| (v - mean[ch]) * k[ch] + b[ch]);
            }
        }
        Ok(Value::F32(x3.into_shape_with_order(IxDyn(input(x, 0)?.shape())).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let Prepared { x3, k, inv, mean } = self.prepare(x)?;
        let g = dy.as_standard_layout().into_owned().into_shape_with_order(x3.raw_dim()).unwrap();
        let c = k.len();
        let dx = want[0].then(|| {
            let mut d = g.clone();
            for mut img in d.outer_iter_mut() {
                for (ch, mut plane) in img.outer_iter_mut().enumerate() {
                    plane.mapv_inplace(|v| v * k[ch]);
                }
            }
            d.into_shape_with_order(IxDyn(dy.shape())).unwrap()
        });
        let (mut dscale, mut dbias) = (vec![0.0f32; c], vec![0.0f32; c]);
        for (gi, xi) in g.outer_iter().zip(x3.outer_iter()) {
            for ch in 0..c {
                let (gp, xp) = (gi.index_axis(Axis(0), ch), xi.index_axis(Axis(0), ch));
                dbias[ch] += gp.sum();
                dscale[ch] += gp.iter().zip(xp.iter()).map(|(g, v)| g * (v - mean[ch]) * inv[ch]).sum::<f32>();
            }
        }
        let shaped = |v: Vec<f32>, i: usize| -> OpResult<ArrayD<f32>> {
            Ok(ArrayD::from_shape_vec(IxDyn(input(x, i)?.shape()), v).unwrap())
        };
        let ds = if want[1] { Some(shaped(dscale, 1)?) } else { None };
        let db = if want[2] { Some(shaped(dbias, 2)?) } else { None };
        Ok(vec![dx, ds, db, None, None])
    }

    fn differentiable(&self, i: usize) -> bool {
        i < 3
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, Case};
    use crate::onnx::Attr;

    #[test]
    fn layer_norm_gradients() {
        let mut c = Case::new(&[2, 3, 5]);
        let (s, b) = (c.init(&param(&[5], 1)), c.init(&param(&[5], 2)));
        let y = c.node("LayerNormalization", &["x", &s, &b], &[Attr::Float("epsilon", 1e-5)]);
        grad_check(c.finish(&y));
        // Over the last two axes, without a bias.
        let mut c = Case::new(&[2, 3, 4]);
        let s = c.init(&param(&[3, 4], 3));
        let y = c.node("LayerNormalization", &["x", &s], &[Attr::Int("axis", 1)]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn batch_norm_trains_scale_and_bias_only() {
        let mut c = Case::new(&[2, 3, 2, 2]);
        let (s, b) = (c.init(&param(&[3], 4)), c.init(&param(&[3], 5)));
        let (m, v) = (c.init(&param(&[3], 6)), c.init(&param(&[3], 7).mapv(|v| v.abs() + 0.5)));
        let y = c.node("BatchNormalization", &["x", &s, &b, &m, &v], &[Attr::Float("epsilon", 1e-3)]);
        let (tail, x) = c.finish(&y);
        assert_eq!(tail.param_names(), vec![s.as_str(), b.as_str()], "running statistics stay frozen");
        grad_check((tail, x));
    }
}
