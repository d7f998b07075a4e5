//! `Gather` (any data type, i64 indices, negative indices allowed; scatter-add gradient) and
//! `Where`.

use ndarray::{ArrayD, IxDyn, Zip};

use super::{axis, broadcast_shape, input, unbroadcast, Grads, Op};
use crate::graph::value::{as_f32, as_i64, OpResult, Value};

/// `Gather` along `axis`: `y[i.., j.., k..] = data[i.., idx[j..], k..]`.
///
/// # Shapes
/// `data`: `[A.., n, B..]`, `indices`: `[J..]`; output `[A.., J.., B..]`.
pub struct Gather {
    pub axis: i64,
}

/// `(outer, n, inner)` of `data` around `ax`, and the resolved indices.
fn plan(shape: &[usize], ax: usize, idx: &ArrayD<i64>) -> OpResult<(usize, usize, usize, Vec<usize>)> {
    let n = shape[ax];
    let flat = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if j < 0 || j >= n as i64 {
                Err(format!("index {i} is out of range for a dimension of {n}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<OpResult<Vec<_>>>()?;
    Ok((shape[..ax].iter().product(), n, shape[ax + 1..].iter().product(), flat))
}

fn gather<T: Copy>(a: &ArrayD<T>, ax: usize, idx: &ArrayD<i64>) -> OpResult<ArrayD<T>> {
    let (outer, n, inner, flat) = plan(a.shape(), ax, idx)?;
    let data = a.as_standard_layout();
    let src = data.as_slice().unwrap();
    let mut out = Vec::with_capacity(outer * flat.len() * inner);
    for o in 0..outer {
        for &j in &flat {
            let at = (o * n + j) * inner;
            out.extend_from_slice(&src[at..at + inner]);
        }
    }
    let mut shape = a.shape()[..ax].to_vec();
    shape.extend(idx.shape());
    shape.extend(&a.shape()[ax + 1..]);
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), out).unwrap())
}

impl Op for Gather {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let (data, idx) = (input(x, 0)?, as_i64(input(x, 1)?, "indices")?);
        let ax = axis(self.axis, data.shape().len())?;
        Ok(match data {
            Value::F32(a) => Value::F32(gather(a, ax, idx)?),
            Value::I64(a) => Value::I64(gather(a, ax, idx)?),
            Value::U8(a) => Value::U8(gather(a, ax, idx)?),
        })
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let (data, idx) = (input(x, 0)?, as_i64(input(x, 1)?, "indices")?);
        let ax = axis(self.axis, data.shape().len())?;
        let (outer, n, inner, flat) = plan(data.shape(), ax, idx)?;
        let g = dy.as_standard_layout();
        let src = g.as_slice().unwrap();
        let mut dx = vec![0.0f32; outer * n * inner];
        for o in 0..outer {
            for (k, &j) in flat.iter().enumerate() {
                let (to, from) = ((o * n + j) * inner, (o * flat.len() + k) * inner);
                dx[to..to + inner].iter_mut().zip(&src[from..from + inner]).for_each(|(d, s)| *d += s);
            }
        }
        Ok(vec![Some(ArrayD::from_shape_vec(IxDyn(data.shape()), dx).unwrap()), None])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }
}

/// `Where(cond, a, b)`: `a` where `cond` is nonzero, else `b`, all three broadcast.
///
/// # Shapes
/// `cond` (i64/bool), `a`, `b`: broadcastable; output: the broadcast shape.
pub struct Where;

fn condition(x: &[Option<&Value>], shape: &[usize]) -> OpResult<ArrayD<bool>> {
    let c = match input(x, 0)? {
        Value::I64(c) => c.mapv(|v| v != 0),
        Value::U8(c) => c.mapv(|v| v != 0),
        Value::F32(c) => c.mapv(|v| v != 0.0),
    };
    Ok(c.broadcast(IxDyn(shape)).ok_or("condition does not broadcast")?.to_owned())
}

impl Op for Where {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let (a, b) = (input(x, 1)?, input(x, 2)?);
        let shape = broadcast_shape(&broadcast_shape(input(x, 0)?.shape(), a.shape())?, b.shape())?;
        let c = condition(x, &shape)?;
        macro_rules! pick {
            ($variant:ident, $p:expr, $q:expr) => {{
                let (p, q) = ($p.broadcast(IxDyn(&shape)).unwrap(), $q.broadcast(IxDyn(&shape)).unwrap());
                Value::$variant(Zip::from(&c).and(&p).and(&q).map_collect(|&c, &p, &q| if c { p } else { q }))
            }};
        }
        Ok(match (a, b) {
            (Value::F32(p), Value::F32(q)) => pick!(F32, p, q),
            (Value::I64(p), Value::I64(q)) => pick!(I64, p, q),
            _ => return Err(format!("branches are {} and {}", a.dtype(), b.dtype())),
        })
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let c = condition(x, dy.shape())?;
        let branch = |i: usize, keep: bool| -> OpResult<Option<ArrayD<f32>>> {
            if !want[i] {
                return Ok(None);
            }
            let g = Zip::from(dy).and(&c).map_collect(|&g, &c| if c == keep { g } else { 0.0 });
            Ok(Some(unbroadcast(g, as_f32(input(x, i)?, "branch")?.shape())))
        };
        Ok(vec![None, branch(1, true)?, branch(2, false)?])
    }

    fn differentiable(&self, i: usize) -> bool {
        i > 0
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, Case};
    use crate::onnx::Attr;

    #[test]
    fn gather_gradient_scatters_and_adds_repeats() {
        let mut c = Case::new(&[4, 3]);
        let idx = c.ints(&[2, 0, 2, -1]);
        let y = c.node("Gather", &["x", &idx], &[Attr::Int("axis", 0)]);
        grad_check(c.finish(&y));
        let mut c = Case::new(&[2, 4, 3]);
        let idx = c.ints(&[1, 1]);
        let y = c.node("Gather", &["x", &idx], &[Attr::Int("axis", 1)]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn where_routes_gradients_to_the_chosen_branch() {
        let mut c = Case::new(&[3, 4]);
        let cond = c.ints(&[1, 0, 0, 1]);
        let w = c.init(&param(&[3, 1], 1));
        let y = c.node("Where", &[&cond, "x", &w], &[]);
        grad_check(c.finish(&y));
    }
}
