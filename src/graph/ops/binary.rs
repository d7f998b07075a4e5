//! `Add`, `Sub`, `Mul`, `Div`, `Pow` with numpy broadcasting (f32; i64 for shape arithmetic).

use ndarray::{ArrayD, IxDyn, Zip};

use super::{broadcast_shape, input, par, unbroadcast, unbroadcast_ref, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

/// An elementwise binary op.
///
/// # Shapes
/// `a`, `b`: any shapes that broadcast; output: the broadcast shape.
pub struct Binary(Kind);

impl Binary {
    /// The op named `op_type` (one of the five).
    pub fn new(op_type: &str) -> Self {
        Binary(match op_type {
            "Add" => Kind::Add,
            "Sub" => Kind::Sub,
            "Mul" => Kind::Mul,
            "Div" => Kind::Div,
            _ => Kind::Pow,
        })
    }
}

/// `f` over `a` and `b` broadcast, in parallel when one is a scalar or both have one shape.
fn apply(a: &ArrayD<f32>, b: &ArrayD<f32>, f: impl Fn(f32, f32) -> f32 + Sync + Send) -> OpResult<ArrayD<f32>> {
    if a.shape() == b.shape() {
        Ok(par::zip(a, b, f))
    } else if b.len() == 1 && b.ndim() <= a.ndim() {
        let q = *b.iter().next().unwrap();
        Ok(par::map(a, |p| f(p, q)).into_shape_with_order(IxDyn(&broadcast_shape(a.shape(), b.shape())?)).unwrap())
    } else if a.len() == 1 && a.ndim() <= b.ndim() {
        let p = *a.iter().next().unwrap();
        Ok(par::map(b, |q| f(p, q)).into_shape_with_order(IxDyn(&broadcast_shape(a.shape(), b.shape())?)).unwrap())
    } else {
        let shape = broadcast_shape(a.shape(), b.shape())?;
        let (va, vb) = (a.broadcast(IxDyn(&shape)).unwrap(), b.broadcast(IxDyn(&shape)).unwrap());
        let both = Zip::from(&va).and(&vb);
        Ok(if va.len() >= par::PARALLEL_FROM {
            both.par_map_collect(|&x, &y| f(x, y))
        } else {
            both.map_collect(|&x, &y| f(x, y))
        })
    }
}

fn zip_with<T: Copy, U>(a: &ArrayD<T>, b: &ArrayD<T>, f: impl Fn(T, T) -> U) -> OpResult<ArrayD<U>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let (va, vb) = (a.broadcast(IxDyn(&shape)).unwrap(), b.broadcast(IxDyn(&shape)).unwrap());
    Ok(Zip::from(&va).and(&vb).map_collect(|&x, &y| f(x, y)))
}

impl Op for Binary {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        match (input(x, 0)?, input(x, 1)?) {
            (Value::F32(a), Value::F32(b)) => Ok(Value::F32(match self.0 {
                Kind::Add => apply(a, b, |p, q| p + q)?,
                Kind::Sub => apply(a, b, |p, q| p - q)?,
                Kind::Mul => apply(a, b, |p, q| p * q)?,
                Kind::Div => apply(a, b, |p, q| p / q)?,
                Kind::Pow => apply(a, b, pow)?,
            })),
            (Value::I64(a), Value::I64(b)) => Ok(Value::I64(match self.0 {
                Kind::Add => zip_with(a, b, |p, q| p + q)?,
                Kind::Sub => zip_with(a, b, |p, q| p - q)?,
                Kind::Mul => zip_with(a, b, |p, q| p * q)?,
                // Truncating, as ONNX (and C) integer division.
                Kind::Div => zip_with(a, b, |p, q| if q == 0 { 0 } else { p / q })?,
                Kind::Pow => zip_with(a, b, |p, q| p.pow(q.max(0) as u32))?,
            })),
            (Value::F32(a), Value::I64(b)) if self.0 == Kind::Pow => {
                Ok(Value::F32(zip_with(a, &b.mapv(|v| v as f32), pow)?))
            }
            (a, b) => Err(format!("operands are {} and {}; both must be f32 or both i64", a.dtype(), b.dtype())),
        }
    }

    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let a = as_f32(input(x, 0)?, "input 0")?;
        let b_val = input(x, 1)?;
        let b_owned;
        let b = match b_val {
            Value::I64(b) => {
                b_owned = b.mapv(|v| v as f32);
                &b_owned
            }
            other => as_f32(other, "input 1")?,
        };
        let grad = |i: usize, f: &dyn Fn() -> OpResult<ArrayD<f32>>| -> OpResult<Option<ArrayD<f32>>> {
            if !want.get(i).copied().unwrap_or(false) {
                return Ok(None);
            }
            let shape = if i == 0 { a.shape() } else { b.shape() };
            Ok(Some(unbroadcast(f()?, shape)))
        };
        let shape = dy.shape().to_vec();
        let bc = |t: &ArrayD<f32>| t.broadcast(IxDyn(&shape)).unwrap().to_owned();
        let ga = grad(0, &|| {
            Ok(match self.0 {
                Kind::Add | Kind::Sub => dy.clone(),
                Kind::Mul => apply(dy, b, |g, q| g * q)?,
                Kind::Div => apply(dy, b, |g, q| g / q)?,
                Kind::Pow => {
                    let (ab, bb) = (bc(a), bc(b));
                    Zip::from(dy).and(&ab).and(&bb).map_collect(|&g, &p, &q| g * q * pow(p, q - 1.0))
                }
            })
        })?;
        let gb = grad(1, &|| {
            Ok(match self.0 {
                Kind::Add => dy.clone(),
                Kind::Sub => -dy,
                Kind::Mul => apply(dy, a, |g, p| g * p)?,
                Kind::Div => {
                    let (ab, bb) = (bc(a), bc(b));
                    Zip::from(dy).and(&ab).and(&bb).map_collect(|&g, &p, &q| -g * p / (q * q))
                }
                Kind::Pow => {
                    let (ab, y) = (bc(a), as_f32(y, "output")?);
                    Zip::from(dy).and(&ab).and(y).map_collect(|&g, &p, &r| g * r * p.ln())
                }
            })
        })?;
        Ok(vec![ga, gb])
    }

    fn vjp_owned(&self, x: &[Option<&Value>], y: &Value, dy: ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        if !matches!(self.0, Kind::Add | Kind::Sub) {
            return self.vjp(x, y, &dy, want);
        }
        let (sa, sb) = (input(x, 0)?.shape().to_vec(), input(x, 1)?.shape().to_vec());
        let wanted = |i: usize| want.get(i).copied().unwrap_or(false);
        let sign = |g: ArrayD<f32>| if self.0 == Kind::Sub { -g } else { g };
        // dy goes to one operand as it is; the other gets a copy or its sums.
        Ok(match (wanted(0), wanted(1)) {
            (true, true) => {
                let gb = sign(unbroadcast_ref(&dy, &sb));
                vec![Some(unbroadcast(dy, &sa)), Some(gb)]
            }
            (true, false) => vec![Some(unbroadcast(dy, &sa)), None],
            (false, true) => vec![None, Some(sign(unbroadcast(dy, &sb)))],
            (false, false) => vec![None, None],
        })
    }
}

/// `p^q`, exact for small integer exponents (negative bases included).
fn pow(p: f32, q: f32) -> f32 {
    if q == 2.0 {
        p * p
    } else if q.fract() == 0.0 && q.abs() < 64.0 {
        p.powi(q as i32)
    } else {
        p.powf(q)
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, Case};

    #[test]
    fn add_sub_mul_div_broadcast_gradients() {
        for op in ["Add", "Sub", "Mul", "Div"] {
            let mut c = Case::new(&[2, 3, 4]);
            let p = c.init(&param(&[3, 1], 1).mapv(|v| v.abs() + 0.5));
            let y = c.node(op, &["x", &p], &[]);
            grad_check(c.finish(&y));
            // The parameter first, the input stretched along its leading axis.
            let mut c = Case::new(&[3, 4]);
            let p = c.init(&param(&[2, 3, 4], 2));
            let x2 = c.node("Mul", &["x", "x"], &[]);
            let y = c.node(op, &[&p, &x2], &[]);
            let z = c.node("Add", &[&y, "x"], &[]);
            grad_check(c.finish_with_input(&z, |v| v.abs() + 0.5));
        }
    }

    #[test]
    fn integer_arithmetic_for_shapes_truncates_like_onnx() {
        use crate::graph::ops::Op;
        use crate::graph::Value;
        let a = Value::I64(ndarray::arr1(&[-7i64, 7, 12]).into_dyn());
        let b = Value::I64(ndarray::arr1(&[2i64]).into_dyn());
        let y = super::Binary::new("Div").forward(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y, Value::I64(ndarray::arr1(&[-3i64, 3, 6]).into_dyn()));
        let y = super::Binary::new("Mul").forward(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y, Value::I64(ndarray::arr1(&[-14i64, 14, 24]).into_dyn()));
    }

    #[test]
    fn pow_gradients_for_base_and_exponent() {
        let mut c = Case::new(&[2, 3]);
        let e = c.init(&param(&[3], 3).mapv(|v| v.abs() + 1.0));
        let y = c.node("Pow", &["x", &e], &[]);
        grad_check(c.finish_with_input(&y, |v| v.abs() + 0.5));
        let mut c = Case::new(&[2, 3]);
        let two = c.scalar(2.0);
        let y = c.node("Pow", &["x", &two], &[]);
        grad_check(c.finish(&y));
    }
}
