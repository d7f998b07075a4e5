//! `MaxPool` and `AveragePool` (1-D and 2-D windows, strides, pads, `ceil_mode`,
//! `count_include_pad`).

use ndarray::{Array3, ArrayD, IxDyn};

use super::window::Window;
use super::{input, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

/// A pooling op.
///
/// # Shapes
/// `x`: `[N, C, H, W]` (or `[N, C, L]`); output `[N, C, Ho, Wo]`.
pub struct Pool {
    max: bool,
    window: Window,
    count_include_pad: bool,
}

impl Pool {
    /// `MaxPool` or `AveragePool`.
    pub fn new(op_type: &str, a: &Attrs) -> OpResult<Self> {
        let window = Window::new(a)?;
        if window.kernel.is_none() {
            return Err("kernel_shape is required".into());
        }
        if op_type == "AveragePool" && window.dilations != [1, 1] {
            return Err("dilations are not supported for AveragePool".into());
        }
        Ok(Pool { max: op_type == "MaxPool", window, count_include_pad: a.int("count_include_pad", 0) != 0 })
    }

    /// Visits every output position with the input positions of its window (flat `[H * W]`
    /// indices), and the divisor of an average.
    fn each(&self, shape: &[usize], mut f: impl FnMut(usize, &[usize], usize)) -> OpResult<[usize; 2]> {
        let one_d = shape.len() == 3;
        if !(shape.len() == 4 || one_d) {
            return Err(format!("only 1-D and 2-D pools: x {shape:?}"));
        }
        let hw = if one_d { [1, shape[2]] } else { [shape[2], shape[3]] };
        let k = self.window.kernel.unwrap();
        let (pads, out) = self.window.plan(hw, k)?;
        let w = &self.window;
        let mut taps = Vec::with_capacity(k[0] * k[1]);
        for oy in 0..out[0] {
            for ox in 0..out[1] {
                taps.clear();
                let mut padded = 0;
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * w.strides[0] + ky * w.dilations[0]) as isize - pads[0] as isize;
                        let ix = (ox * w.strides[1] + kx * w.dilations[1]) as isize - pads[1] as isize;
                        // Taps in the padding count for `count_include_pad`, not beyond it (ceil_mode).
                        if iy < (hw[0] + pads[2]) as isize && ix < (hw[1] + pads[3]) as isize {
                            padded += 1;
                        }
                        if iy >= 0 && ix >= 0 && (iy as usize) < hw[0] && (ix as usize) < hw[1] {
                            taps.push(iy as usize * hw[1] + ix as usize);
                        }
                    }
                }
                let div = if self.count_include_pad { padded } else { taps.len() };
                f(oy * out[1] + ox, &taps, div.max(1));
            }
        }
        Ok(out)
    }
}

fn planes(a: &ArrayD<f32>) -> Array3<f32> {
    let (n, c) = (a.shape()[0], a.shape()[1]);
    a.as_standard_layout().into_owned().into_shape_with_order((n * c, 1, a.len() / (n * c).max(1))).unwrap()
}

impl Op for Pool {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let a = as_f32(input(x, 0)?, "X")?;
        let p = planes(a);
        let mut windows = Vec::new();
        let out = self.each(a.shape(), |o, taps, div| windows.push((o, taps.to_vec(), div)))?;
        let per = out[0] * out[1];
        let mut y = vec![0.0f32; p.shape()[0] * per];
        for (plane, dst) in p.outer_iter().zip(y.chunks_mut(per)) {
            let src = plane.as_slice().unwrap();
            for (o, taps, div) in &windows {
                dst[*o] = if self.max {
                    taps.iter().map(|&t| src[t]).fold(f32::NEG_INFINITY, f32::max)
                } else {
                    taps.iter().map(|&t| src[t]).sum::<f32>() / *div as f32
                };
            }
        }
        let mut shape = a.shape()[..2].to_vec();
        if a.ndim() == 4 {
            shape.push(out[0]);
        }
        shape.push(out[1]);
        Ok(Value::F32(ArrayD::from_shape_vec(IxDyn(&shape), y).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let a = as_f32(input(x, 0)?, "X")?;
        let p = planes(a);
        let mut windows = Vec::new();
        let out = self.each(a.shape(), |o, taps, div| windows.push((o, taps.to_vec(), div)))?;
        let per = out[0] * out[1];
        let g = dy.as_standard_layout();
        let g = g.as_slice().unwrap();
        let hw = p.shape()[2];
        let mut dx = vec![0.0f32; a.len()];
        for (k, plane) in p.outer_iter().enumerate() {
            let src = plane.as_slice().unwrap();
            let d = &mut dx[k * hw..(k + 1) * hw];
            for (o, taps, div) in &windows {
                let gv = g[k * per + o];
                if self.max {
                    // The gradient goes to the first maximum, as in ONNX Runtime.
                    if let Some(&t) = taps.iter().reduce(|b, t| if src[*t] > src[*b] { t } else { b }) {
                        d[t] += gv;
                    }
                } else {
                    taps.iter().for_each(|&t| d[t] += gv / *div as f32);
                }
            }
        }
        Ok(vec![Some(ArrayD::from_shape_vec(IxDyn(a.shape()), dx).unwrap())])
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use crate::graph::ops::check::{grad_check, Case};
    use crate::onnx::Attr;
    use crate::rng::Rng;

    #[test]
    fn max_pool_gradient() {
        let mut c = Case::new(&[2, 2, 5, 5]);
        let attrs = [
            Attr::Ints("kernel_shape", vec![3, 3]),
            Attr::Ints("strides", vec![2, 2]),
            Attr::Ints("pads", vec![1, 1, 1, 1]),
        ];
        let y = c.node("MaxPool", &["x"], &attrs);
        let (tail, _) = c.finish(&y);
        // Distinct values 0.1 apart, shuffled: no window has two maxima within the finite difference.
        let mut order: Vec<usize> = (0..100).collect();
        Rng::new(3).shuffle(&mut order);
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2, 5, 5]), order.iter().map(|&v| v as f32 * 0.1).collect()).unwrap();
        grad_check((tail, x));
    }

    #[test]
    fn average_pool_gradients_with_and_without_padding_counted() {
        for include in [0, 1] {
            let mut c = Case::new(&[1, 2, 5, 4]);
            let attrs = [
                Attr::Ints("kernel_shape", vec![2, 3]),
                Attr::Ints("pads", vec![1, 0, 1, 1]),
                Attr::Int("count_include_pad", include),
                Attr::Int("ceil_mode", 1),
            ];
            let y = c.node("AveragePool", &["x"], &attrs);
            grad_check(c.finish(&y));
        }
    }
}
