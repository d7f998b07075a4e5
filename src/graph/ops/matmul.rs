//! `MatMul` (batched, numpy broadcasting of the batch dimensions) and `Gemm`.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Dimension, Ix2, IxDyn};
use rayon::prelude::*;

use super::{broadcast_shape, gemm, input, par, reshape, unbroadcast, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

/// `MatMul`: `y[..., m, n] = sum_k a[..., m, k] b[..., k, n]`; 1-D operands are promoted as in
/// numpy (a vector `a` gains a leading 1, a vector `b` a trailing 1, both removed afterwards).
///
/// # Shapes
/// `a`: `[..., M, K]`, `b`: `[..., K, N]` (batch dimensions broadcast); output `[..., M, N]`.
pub struct MatMul;

/// Both operands as rank >= 2 views, and the output shape without the promoted axes.
fn promote<'a>(
    a: &'a ArrayD<f32>,
    b: &'a ArrayD<f32>,
) -> OpResult<(ArrayViewD<'a, f32>, ArrayViewD<'a, f32>, Vec<usize>)> {
    let a2 = if a.ndim() == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if b.ndim() == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (ra, rb) = (a2.ndim(), b2.ndim());
    let (m, k) = (a2.shape()[ra - 2], a2.shape()[ra - 1]);
    let (k2, n) = (b2.shape()[rb - 2], b2.shape()[rb - 1]);
    if k != k2 {
        return Err(format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()));
    }
    let mut shape = broadcast_shape(&a2.shape()[..ra - 2], &b2.shape()[..rb - 2])?;
    if a.ndim() > 1 {
        shape.push(m);
    }
    if b.ndim() > 1 {
        shape.push(n);
    }
    Ok((a2, b2, shape))
}

/// Batched product of rank >= 2 arrays with broadcast batch dimensions; the result has the
/// broadcast batch shape followed by `[M, N]`. Operands of any strides (transposed or broadcast
/// views) are read in place, never copied.
///
/// # Shapes
/// `a`: `[..., M, K]`, `b`: `[..., K, N]`; returns `[batch..., M, N]`.
pub fn batched(a: &ArrayViewD<f32>, b: &ArrayViewD<f32>) -> OpResult<ArrayD<f32>> {
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    if rb == 2 {
        // One GEMM: the batch of `a` folds into its rows.
        let count: usize = batch.iter().product();
        let a_std = par::standard_cow(a.view());
        let a2 = a_std.view().into_shape_with_order((count * m, k)).unwrap();
        let b2 = b.view().into_dimensionality::<Ix2>().unwrap();
        return Ok(reshape(gemm::dot(&a2, &b2), &out_shape));
    }
    let shape = |r: usize, c: usize| IxDyn(&batch.iter().copied().chain([r, c]).collect::<Vec<_>>());
    let (ab, bb) = (a.broadcast(shape(m, k)).unwrap(), b.broadcast(shape(k, n)).unwrap());
    let indices: Vec<IxDyn> = ndarray::indices(IxDyn(&batch)).into_iter().collect();
    let mut out = ArrayD::<f32>::uninit(IxDyn(&out_shape));
    let slots = out.as_slice_mut().expect("a fresh array is row-major");
    slots.par_chunks_mut((m * n).max(1)).zip(indices.par_iter()).for_each(|(chunk, idx)| {
        gemm::dot_into(&matrix_at(&ab, idx), &matrix_at(&bb, idx), chunk);
    });
    // SAFETY: every [M, N] block was written by `dot_into` (an empty batch has no elements).
    Ok(unsafe { out.assume_init() })
}

/// The matrix of `v` at batch index `idx` (a view).
fn matrix_at<'a>(v: &ArrayViewD<'a, f32>, idx: &IxDyn) -> ArrayView2<'a, f32> {
    let mut v = v.clone();
    for &j in idx.slice() {
        v = v.index_axis_move(Axis(0), j);
    }
    v.into_dimensionality().unwrap()
}

/// The last two axes swapped (a view).
fn t<'a>(x: &ArrayViewD<'a, f32>) -> ArrayViewD<'a, f32> {
    let r = x.ndim();
    let mut v = x.clone();
    v.swap_axes(r - 2, r - 1);
    v
}

impl Op for MatMul {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let (a, b) = (as_f32(input(x, 0)?, "A")?, as_f32(input(x, 1)?, "B")?);
        let (a2, b2, shape) = promote(a, b)?;
        let y = batched(&a2, &b2)?;
        Ok(Value::F32(reshape(y, &shape)))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let (a, b) = (as_f32(input(x, 0)?, "A")?, as_f32(input(x, 1)?, "B")?);
        let (a2, b2, _) = promote(a, b)?;
        let ra = a2.ndim().max(b2.ndim());
        let (m, n) = (a2.shape()[a2.ndim() - 2], b2.shape()[b2.ndim() - 1]);
        let batch = broadcast_shape(&a2.shape()[..a2.ndim() - 2], &b2.shape()[..b2.ndim() - 2])?;
        let mut full = batch.clone();
        full.extend([m, n]);
        debug_assert_eq!(full.len(), ra);
        let g_std = par::standard_cow(dy.view());
        let g = g_std.view().into_shape_with_order(IxDyn(&full)).map_err(|e| e.to_string())?;
        let da = if want[0] {
            let d = batched(&g, &t(&b2))?;
            Some(reshape(unbroadcast(d, a2.shape()), a.shape()))
        } else {
            None
        };
        let db = if want.get(1).copied().unwrap_or(false) {
            let d = if b2.ndim() == 2 {
                // Sum over every batch row at once: [rows, K]^T x [rows, N].
                let rows: usize = batch.iter().product::<usize>() * m;
                let ab = a2.broadcast(IxDyn(&[&batch[..], &a2.shape()[a2.ndim() - 2..]].concat())).unwrap();
                let a_std = par::standard_cow(ab.view());
                let a_rows = a_std.view().into_shape_with_order((rows, a2.shape()[a2.ndim() - 1])).unwrap();
                let g_rows = g.view().into_shape_with_order((rows, n)).unwrap();
                gemm::dot(&a_rows.t(), &g_rows).into_dyn()
            } else {
                unbroadcast(batched(&t(&a2), &g)?, b2.shape())
            };
            Some(reshape(d, b.shape()))
        } else {
            None
        };
        Ok(vec![da, db])
    }

    fn needs_output(&self) -> bool {
        false
    }
}

/// A `MatMul` whose output only feeds an `Add` of a constant row vector (a linear layer's bias),
/// fused: the bias is added in place to the product, and its gradient is the column sums of `dy`.
///
/// # Shapes
/// `a`: `[..., M, K]`, `b`: `[..., K, N]`, `bias`: `[N]` (or leading ones then `N`); output
/// `[..., M, N]`.
pub struct MatMulBias;

impl Op for MatMulBias {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let Value::F32(mut y) = MatMul.forward(&x[..2])? else { unreachable!("MatMul returns f32") };
        let bias = as_f32(input(x, 2)?, "bias")?;
        let n = *y.shape().last().unwrap_or(&1);
        let (Some(bias), Some(rows)) = (bias.as_slice(), y.as_slice_mut()) else {
            return Err("the bias and the product must be row-major".into());
        };
        if bias.len() != n {
            return Err(format!("bias of {} values for rows of {n}", bias.len()));
        }
        par::rows_mut(rows, n, |row, _| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
        Ok(Value::F32(y))
    }

    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let mut grads = MatMul.vjp(&x[..2], y, dy, &want[..2])?;
        let bias = as_f32(input(x, 2)?, "bias")?;
        grads.push(want[2].then(|| {
            let g = par::standard_cow(dy.view());
            let sums = par::column_sums(g.as_slice().expect("standard layout"), None, bias.len());
            ArrayD::from_shape_vec(bias.raw_dim(), sums).expect("one sum per bias value")
        }));
        Ok(grads)
    }

    fn needs_output(&self) -> bool {
        false
    }
}

/// `Gemm`: `y = alpha * A' B' + beta * C`, with `A' = A` or `Aᵀ` (`transA`), likewise `B'`.
///
/// # Shapes
/// `A'`: `[M, K]`, `B'`: `[K, N]`, `C`: broadcastable to `[M, N]`; output `[M, N]`.
pub struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    /// Reads `alpha`, `beta`, `transA`, `transB`.
    pub fn new(a: &Attrs) -> Self {
        Gemm {
            alpha: a.float("alpha", 1.0),
            beta: a.float("beta", 1.0),
            trans_a: a.int("transA", 0) != 0,
            trans_b: a.int("transB", 0) != 0,
        }
    }
}

fn matrix<'a>(v: &'a Value, what: &str, trans: bool) -> OpResult<ArrayView2<'a, f32>> {
    let m = as_f32(v, what)?.view().into_dimensionality::<Ix2>().map_err(|_| format!("{what} must be 2-D"))?;
    Ok(if trans { m.reversed_axes() } else { m })
}

impl Op for Gemm {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = matrix(input(x, 0)?, "A", self.trans_a)?;
        let b = matrix(input(x, 1)?, "B", self.trans_b)?;
        if a.ncols() != b.nrows() {
            return Err(format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()));
        }
        let mut y: Array2<f32> = gemm::dot(&a, &b) * self.alpha;
        if let Some(c) = x.get(2).copied().flatten() {
            let c = as_f32(c, "C")?;
            let cb = c.broadcast(IxDyn(y.shape())).ok_or_else(|| format!("C {:?} does not broadcast", c.shape()))?;
            y.zip_mut_with(&cb.into_dimensionality::<Ix2>().unwrap(), |v, &c| *v += self.beta * c);
        }
        Ok(Value::F32(y.into_dyn()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let a = matrix(input(x, 0)?, "A", self.trans_a)?;
        let b = matrix(input(x, 1)?, "B", self.trans_b)?;
        let g = dy.view().into_dimensionality::<Ix2>().unwrap();
        let da = want[0].then(|| {
            let d = gemm::dot(&g, &b.t()) * self.alpha;
            (if self.trans_a { d.reversed_axes().as_standard_layout().into_owned() } else { d }).into_dyn()
        });
        let db = want[1].then(|| {
            let d = gemm::dot(&a.t(), &g) * self.alpha;
            (if self.trans_b { d.reversed_axes().as_standard_layout().into_owned() } else { d }).into_dyn()
        });
        let dc = match (want.get(2).copied().unwrap_or(false), x.get(2).copied().flatten()) {
            (true, Some(c)) => Some(unbroadcast(dy * self.beta, as_f32(c, "C")?.shape())),
            _ => None,
        };
        Ok(vec![da, db, dc])
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, Case};
    use crate::onnx::Attr;

    #[test]
    fn matmul_with_a_weight_matrix() {
        let mut c = Case::new(&[2, 3, 4]);
        let w = c.init(&param(&[4, 5], 1));
        let y = c.node("MatMul", &["x", &w], &[]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn matmul_batched_with_broadcast_batch() {
        // A batch of 1 broadcasts against 2; then x @ xᵀ exercises both operand gradients.
        let mut c = Case::new(&[2, 3, 4]);
        let w = c.init(&param(&[1, 4, 2], 2));
        let y = c.node("MatMul", &["x", &w], &[]);
        grad_check(c.finish(&y));
        let mut c = Case::new(&[2, 2, 3, 4]);
        let xt = c.node("Transpose", &["x"], &[Attr::Ints("perm", vec![0, 1, 3, 2])]);
        let y = c.node("MatMul", &["x", &xt], &[]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn matmul_vectors() {
        let mut c = Case::new(&[4]);
        let w = c.init(&param(&[2, 4, 3], 3));
        let y = c.node("MatMul", &["x", &w], &[]);
        grad_check(c.finish(&y));
        let mut c = Case::new(&[2, 3, 4]);
        let v = c.init(&param(&[4], 4));
        let y = c.node("MatMul", &["x", &v], &[]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn gemm_with_transposes_and_bias() {
        for (ta, tb) in [(0, 0), (1, 1), (0, 1)] {
            let mut c = Case::new(if ta == 1 { &[4, 3] } else { &[3, 4] });
            let w = c.init(&param(if tb == 1 { &[5, 4] } else { &[4, 5] }, 5));
            let bias = c.init(&param(&[5], 6));
            let attrs =
                [Attr::Int("transA", ta), Attr::Int("transB", tb), Attr::Float("alpha", 0.7), Attr::Float("beta", 1.3)];
            let y = c.node("Gemm", &["x", &w, &bias], &attrs);
            grad_check(c.finish(&y));
        }
    }
}
