//! `ReduceMean` and `GlobalAveragePool`.

use ndarray::{ArrayD, Axis, IxDyn};

use super::{axis, input, Attrs, Grads, Op};
use crate::graph::value::{as_f32, i64_list, OpResult, Value};

/// Mean over `axes` (all axes when none are given), keeping them as 1s with `keepdims`.
///
/// # Shapes
/// `x`: any; output: `x`'s shape with the reduced axes set to 1 (`keepdims`) or removed.
pub struct ReduceMean {
    /// From the attribute (opset < 18); from input 1 otherwise.
    axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

impl ReduceMean {
    /// Reads `axes` (before opset 18), `keepdims`, `noop_with_empty_axes`.
    pub fn new(a: &Attrs, opset: i64) -> Self {
        ReduceMean {
            axes: if opset < 18 { a.ints("axes") } else { None },
            keepdims: a.int("keepdims", 1) != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0) != 0,
        }
    }

    /// The reduced axes, sorted; `None` for the identity (`noop_with_empty_axes`).
    fn axes(&self, x: &[Option<&Value>], rank: usize) -> OpResult<Option<Vec<usize>>> {
        let given = match (&self.axes, x.get(1).copied().flatten()) {
            (Some(a), _) => a.clone(),
            (None, Some(v)) => i64_list(v, "axes")?,
            (None, None) => Vec::new(),
        };
        if given.is_empty() {
            return Ok(if self.noop_with_empty_axes { None } else { Some((0..rank).collect()) });
        }
        let mut axes = given.iter().map(|&a| axis(a, rank)).collect::<OpResult<Vec<_>>>()?;
        axes.sort_unstable();
        axes.dedup();
        Ok(Some(axes))
    }
}

/// `shape` with `axes` set to 1.
fn kept(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
}

impl Op for ReduceMean {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = as_f32(input(x, 0)?, "data")?;
        let Some(axes) = self.axes(x, a.ndim())? else { return Ok(Value::F32(a.clone())) };
        let mut y = a.clone();
        for &ax in axes.iter().rev() {
            y = y.mean_axis(Axis(ax)).ok_or_else(|| format!("axis {ax} is empty"))?;
        }
        let shape: Vec<usize> = if self.keepdims { kept(a.shape(), &axes) } else { y.shape().to_vec() };
        Ok(Value::F32(y.into_shape_with_order(IxDyn(&shape)).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let a = as_f32(input(x, 0)?, "data")?;
        let Some(axes) = self.axes(x, a.ndim())? else { return Ok(vec![Some(dy.clone()), None]) };
        let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
        let g = super::reshape(dy.clone(), &kept(a.shape(), &axes));
        let dx = g.broadcast(a.raw_dim()).unwrap().mapv(|v| v / count as f32);
        Ok(vec![Some(dx), None])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }
}

/// Mean over every spatial axis.
///
/// # Shapes
/// `x`: `[N, C, ...]`; output `[N, C, 1, ...]`.
pub struct GlobalAveragePool;

impl Op for GlobalAveragePool {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = as_f32(input(x, 0)?, "X")?;
        if a.ndim() < 3 {
            return Err(format!("X must be [N, C, ...], got {:?}", a.shape()));
        }
        let (n, c) = (a.shape()[0], a.shape()[1]);
        let rest = a.len() / (n * c).max(1);
        let m = a.as_standard_layout().into_owned().into_shape_with_order((n, c, rest)).unwrap();
        let y = m.mean_axis(Axis(2)).unwrap();
        let mut shape = vec![1; a.ndim()];
        shape[..2].copy_from_slice(&[n, c]);
        Ok(Value::F32(y.into_shape_with_order(IxDyn(&shape)).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let a = as_f32(input(x, 0)?, "X")?;
        let rest = a.len() / (a.shape()[0] * a.shape()[1]).max(1);
        let means = dy.as_standard_layout();
        let means = means.as_slice().expect("standard layout");
        if means.len() * rest != a.len() {
            return Err(format!("dY {:?} does not fit X {:?}", dy.shape(), a.shape()));
        }
        // Each [N, C] value spread evenly over its H x W positions, one row per channel.
        let mut dx = vec![0.0f32; a.len()];
        super::par::rows_mut(&mut dx, rest, |row, i| row.fill(means[i] / rest as f32));
        Ok(vec![Some(ArrayD::from_shape_vec(a.raw_dim(), dx).expect("X's element count"))])
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, Case};
    use crate::onnx::Attr;

    #[test]
    fn reduce_mean_gradients() {
        let mut c = Case::new(&[2, 3, 4]);
        let y = c.node("ReduceMean", &["x"], &[Attr::Ints("axes", vec![-1]), Attr::Int("keepdims", 1)]);
        grad_check(c.finish(&y));
        let mut c = Case::new(&[2, 3, 4]);
        let y = c.node("ReduceMean", &["x"], &[Attr::Ints("axes", vec![0, 2]), Attr::Int("keepdims", 0)]);
        grad_check(c.finish(&y));
        let mut c = Case::new(&[2, 3, 4]).opset(18);
        let axes = c.ints(&[1]);
        let y = c.node("ReduceMean", &["x", &axes], &[]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn global_average_pool_gradient() {
        let mut c = Case::new(&[2, 3, 2, 3]);
        let y = c.node("GlobalAveragePool", &["x"], &[]);
        grad_check(c.finish(&y));
    }
}
