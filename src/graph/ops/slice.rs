//! `Concat` and `Slice` (any element type; gradients for f32).

use ndarray::{ArrayD, Axis, IxDyn, Slice as Range};

use super::shape::each_type;
use super::{axis, input, Attrs, Grads, Op};
use crate::graph::value::{i64_list, OpResult, Value};

/// `Concat` along `axis`.
///
/// # Shapes
/// inputs: equal shapes except along `axis`; output: their sizes along `axis` summed.
pub struct Concat {
    pub axis: i64,
}

fn concat<T: Clone>(parts: &[&ArrayD<T>], ax: usize) -> OpResult<ArrayD<T>> {
    let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(ax), &views).map_err(|_| "inputs do not fit together".to_string())
}

impl Op for Concat {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let vs: Vec<&Value> = x.iter().flatten().copied().collect();
        let first = vs.first().ok_or("no inputs")?;
        let ax = axis(self.axis, first.shape().len())?;
        macro_rules! gather_type {
            ($variant:ident) => {{
                let parts = vs
                    .iter()
                    .map(|v| match v {
                        Value::$variant(a) => Ok(a),
                        other => Err(format!("inputs mix {} and {}", first.dtype(), other.dtype())),
                    })
                    .collect::<OpResult<Vec<_>>>()?;
                Value::$variant(concat(&parts, ax)?)
            }};
        }
        Ok(match first {
            Value::F32(_) => gather_type!(F32),
            Value::I64(_) => gather_type!(I64),
            Value::U8(_) => gather_type!(U8),
        })
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let ax = axis(self.axis, dy.ndim())?;
        let mut at = 0;
        let mut out = Vec::with_capacity(x.len());
        for (v, w) in x.iter().zip(want) {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            let n = v.shape()[ax];
            out.push(w.then(|| dy.slice_axis(Axis(ax), Range::from(at..at + n)).to_owned()));
            at += n;
        }
        Ok(out)
    }
}

/// `Slice`: `starts`, `ends`, `axes`, `steps` from inputs 1-4 (opset 10+) or attributes.
///
/// # Shapes
/// `x`: any; output: `x` with the sliced axes shortened.
pub struct Slice {
    /// `starts`, `ends` and `axes` from the attributes before opset 10.
    attrs: Option<[Option<Vec<i64>>; 3]>,
}

impl Slice {
    /// Reads the attributes of opset < 10.
    pub fn new(a: &Attrs, opset: i64) -> Self {
        let attrs = (opset < 10).then(|| [a.ints("starts"), a.ints("ends"), a.ints("axes")]);
        Slice { attrs }
    }

    /// One ndarray range per axis of a tensor of `shape`.
    fn ranges(&self, x: &[Option<&Value>], shape: &[usize]) -> OpResult<Vec<Range>> {
        let opt = |i: usize, what: &str| x.get(i).copied().flatten().map(|v| i64_list(v, what)).transpose();
        let (starts, ends, axes, steps) = match &self.attrs {
            Some([s, e, a]) => (s.clone().unwrap_or_default(), e.clone().unwrap_or_default(), a.clone(), None),
            None => {
                (i64_list(input(x, 1)?, "starts")?, i64_list(input(x, 2)?, "ends")?, opt(3, "axes")?, opt(4, "steps")?)
            }
        };
        let rank = shape.len();
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&v| axis(v, rank)).collect::<OpResult<_>>()?,
            None => (0..starts.len()).collect(),
        };
        let n = starts.len();
        if ends.len() != n || axes.len() != n || steps.as_ref().is_some_and(|s| s.len() != n) {
            return Err(format!("starts, ends, axes and steps differ in length ({n}, {}, {})", ends.len(), axes.len()));
        }
        let mut ranges = vec![Range::from(..); rank];
        for (k, &ax) in axes.iter().enumerate() {
            let dim = shape[ax] as i64;
            let step = steps.as_ref().map_or(1, |s| s[k]);
            if step == 0 {
                return Err("step 0".into());
            }
            let resolve = |v: i64| if v < 0 { v + dim } else { v };
            let (s, e) = (resolve(starts[k]), resolve(ends[k]));
            ranges[ax] = if step > 0 {
                let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
                Range::new(s as isize, Some(e.max(s) as isize), step as isize)
            } else {
                // Backwards from `s` down to `e` (exclusive): the range (e, s] walked in reverse.
                let (s, e) = (s.clamp(-1, dim - 1), e.clamp(-1, dim - 1));
                Range::new((e + 1) as isize, Some((s + 1).max(e + 1) as isize), step as isize)
            };
        }
        Ok(ranges)
    }
}

impl Op for Slice {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let v = input(x, 0)?;
        let r = self.ranges(x, v.shape())?;
        Ok(each_type!(v, a => a.slice_each_axis(|d| r[d.axis.index()]).to_owned()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let v = input(x, 0)?;
        let r = self.ranges(x, v.shape())?;
        let mut dx = ArrayD::zeros(IxDyn(v.shape()));
        dx.slice_each_axis_mut(|d| r[d.axis.index()]).assign(dy);
        Ok(vec![Some(dx)])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, run, Case};
    use crate::onnx::Attr;

    #[test]
    fn concat_gradient_splits_back() {
        let mut c = Case::new(&[2, 3]);
        let w = c.init(&param(&[2, 2], 1));
        let sq = c.node("Mul", &["x", "x"], &[]);
        let y = c.node("Concat", &["x", &w, &sq], &[Attr::Int("axis", 1)]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn slice_forward_and_gradient_with_negative_steps() {
        let mut c = Case::new(&[4, 6]);
        let (s, e, a, st) = (c.ints(&[-1, 1]), c.ints(&[0, 100]), c.ints(&[0, 1]), c.ints(&[-2, 2]));
        let y = c.node("Slice", &["x", &s, &e, &a, &st], &[]);
        let (mut tail, x) = c.finish(&y);
        let out = run(&mut tail, x.clone());
        // Rows 3, 1 (down to 0 exclusive); columns 1, 3, 5.
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(out[[0, 0]], x[[3, 1]]);
        assert_eq!(out[[1, 2]], x[[1, 5]]);
        grad_check((tail, x));
    }
}
