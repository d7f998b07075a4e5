//! `Softmax` along one axis (opset 13+), or over the flattened trailing axes (before 13).

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::{axis, input, par, simd, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

/// Softmax: `y = exp(x - max) / sum(exp(x - max))` over the softmax axis (or axes).
///
/// # Shapes
/// Any shape; the output has the input's shape.
pub struct Softmax {
    axis: i64,
    /// Opset < 13: the axes from `axis` on are flattened into one.
    flatten: bool,
}

impl Softmax {
    /// Reads `axis` (default -1 from opset 13, 1 before).
    pub fn new(a: &Attrs, opset: i64) -> Self {
        let flatten = opset < 13;
        Softmax { axis: a.int("axis", if flatten { 1 } else { -1 }), flatten }
    }

    /// The input viewed as `[outer, n, inner]` with the softmax over the middle axis.
    fn split(&self, shape: &[usize]) -> OpResult<[usize; 3]> {
        let ax = axis(self.axis, shape.len())?;
        let outer: usize = shape[..ax].iter().product();
        if self.flatten {
            return Ok([outer, shape[ax..].iter().product(), 1]);
        }
        Ok([outer, shape[ax], shape[ax + 1..].iter().product()])
    }
}

impl Op for Softmax {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = as_f32(input(x, 0)?, "input")?;
        let dims = self.split(a.shape())?;
        let mut y = par::standard(a.view()).into_shape_with_order(IxDyn(&dims)).unwrap();
        if dims[2] == 1 {
            // The usual case (the last axis): contiguous rows, in parallel.
            par::rows_mut(y.as_slice_mut().expect("standard layout"), dims[1], |row, _| {
                let max = simd::max(row);
                row.iter_mut().for_each(|v| *v = simd::exp(*v - max));
                let k = 1.0 / simd::sum(row);
                row.iter_mut().for_each(|v| *v *= k);
            });
        } else {
            for mut lane in y.lanes_mut(Axis(1)) {
                let max = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                lane.mapv_inplace(|v| simd::exp(v - max));
                let sum = lane.sum();
                lane.mapv_inplace(|v| v / sum);
            }
        }
        Ok(Value::F32(y.into_shape_with_order(IxDyn(a.shape())).unwrap()))
    }

    fn vjp(&self, _x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let y = as_f32(y, "output")?;
        let dims = self.split(y.shape())?;
        let mut g3 = par::standard(dy.view()).into_shape_with_order(IxDyn(&dims)).unwrap();
        if let (1, Some(p)) = (dims[2], y.as_slice()) {
            // dx = y * (dy - sum(dy * y)) along each contiguous row, in parallel.
            let n = dims[1];
            par::rows_mut(g3.as_slice_mut().expect("standard layout"), n, |g, i| {
                let p = &p[i * n..(i + 1) * n];
                let s = simd::dot(g, p);
                g.iter_mut().zip(p).for_each(|(g, &p)| *g = p * (*g - s));
            });
            return Ok(vec![Some(g3.into_shape_with_order(IxDyn(y.shape())).unwrap())]);
        }
        let y3 = y.view().into_shape_with_order(IxDyn(&dims)).unwrap();
        // dx = y * (dy - sum(dy * y)) along the softmax axis.
        let dot = (&g3 * &y3).sum_axis(Axis(1)).insert_axis(Axis(1));
        let dx = Zip::from(&g3).and(&y3).and_broadcast(&dot).map_collect(|&g, &p, &s| p * (g - s));
        Ok(vec![Some(dx.into_shape_with_order(IxDyn(y.shape())).unwrap())])
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, run, Case};
    use crate::onnx::Attr;

    #[test]
    fn softmax_gradients_on_each_axis() {
        for axis in [-1, 1, 0] {
            let mut c = Case::new(&[2, 3, 4]);
            let y = c.node("Softmax", &["x"], &[Attr::Int("axis", axis)]);
            grad_check(c.finish(&y));
        }
    }

    #[test]
    fn softmax_before_opset_13_flattens_the_trailing_axes() {
        let mut c = Case::new(&[2, 3, 4]).opset(11);
        let y = c.node("Softmax", &["x"], &[Attr::Int("axis", 1)]);
        let (mut tail, x) = c.finish(&y);
        let y = run(&mut tail, x);
        for row in y.outer_iter() {
            assert!((row.sum() - 1.0).abs() < 1e-5, "one distribution per row over 3 x 4 values");
        }
        let mut c = Case::new(&[2, 3, 4]).opset(11);
        let y = c.node("Softmax", &["x"], &[Attr::Int("axis", 1)]);
        grad_check(c.finish(&y));
    }
}
