//! Shape ops: `Reshape`, `Flatten`, `Transpose`, `Squeeze`, `Unsqueeze`, `Expand` (their VJPs
//! reshape, transpose back or sum the gradient), and the non-differentiable `Shape`, `Cast`,
//! `Constant`, `ConstantOfShape`.

use ndarray::{ArrayD, IxDyn};

use super::{axis, broadcast_shape, input, unbroadcast, Attrs, Grads, Op};
use crate::graph::value::{i64_list, is_float_type, OpResult, Value};

/// Applies a type-generic array expression to whichever element type `v` holds.
macro_rules! each_type {
    ($v:expr, $a:ident => $e:expr) => {
        match $v {
            Value::F32($a) => Value::F32($e),
            Value::I64($a) => Value::I64($e),
            Value::U8($a) => Value::U8($e),
        }
    };
}
pub(crate) use each_type;

fn reshaped<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> OpResult<ArrayD<T>> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|_| format!("cannot reshape {:?} to {shape:?}", a.shape()))
}

/// The gradient of a shape-only op: `dy` back in the input's shape (no copy when `dy` is
/// row-major).
fn back(x: &[Option<&Value>], dy: ArrayD<f32>) -> OpResult<Grads> {
    Ok(vec![Some(reshaped_owned(dy, input(x, 0)?.shape())?)])
}

/// `a` given away, in `shape`: no copy when it is row-major.
fn reshaped_owned(a: ArrayD<f32>, shape: &[usize]) -> OpResult<ArrayD<f32>> {
    if a.len() != shape.iter().product::<usize>() {
        return Err(format!("cannot reshape {:?} to {shape:?}", a.shape()));
    }
    Ok(super::reshape(a, shape))
}

/// The `Op` methods of a shape-only op whose `out_shape(in_shape, x)` gives its output shape:
/// the forward pass, the gradient (`dy` back in the input's shape), and the re-view without a copy.
macro_rules! shape_only_op {
    () => {
        fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
            let v = input(x, 0)?;
            let shape = self.out_shape(v.shape(), x)?;
            Ok(each_type!(v, a => reshaped(a, &shape)?))
        }

        fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
            back(x, dy.clone())
        }

        fn vjp_owned(&self, x: &[Option<&Value>], _y: &Value, dy: ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
            back(x, dy)
        }

        fn differentiable(&self, i: usize) -> bool {
            i == 0
        }

        fn needs_output(&self) -> bool {
            false
        }

        fn re_views(&self) -> bool {
            true
        }

        fn forward_owned(&self, x0: ArrayD<f32>, x: &[Option<&Value>]) -> OpResult<ArrayD<f32>> {
            let shape = self.out_shape(x0.shape(), x)?;
            reshaped_owned(x0, &shape)
        }

        fn vjp_view(&self, x0_shape: &[usize], dy: ArrayD<f32>) -> OpResult<ArrayD<f32>> {
            reshaped_owned(dy, x0_shape)
        }
    };
}

/// `Reshape` to the shape in input 1 (`0` copies the input's dimension unless `allowzero`, `-1`
/// is inferred).
///
/// # Shapes
/// `x`: any; `shape`: i64 `[R]`; output: rank R, same element count.
pub struct Reshape {
    pub allowzero: bool,
}

impl Reshape {
    /// The output shape for an input of `in_shape` and the shape input `x[1]`.
    fn out_shape(&self, in_shape: &[usize], x: &[Option<&Value>]) -> OpResult<Vec<usize>> {
        let spec = i64_list(input(x, 1)?, "shape")?;
        let total: usize = in_shape.iter().product();
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    shape.push(1);
                }
                0 if !self.allowzero => {
                    shape.push(*in_shape.get(i).ok_or_else(|| format!("shape {spec:?}: no dimension {i} to copy"))?)
                }
                d if d >= 0 => shape.push(d as usize),
                _ => return Err(format!("invalid shape {spec:?}")),
            }
        }
        if let Some(i) = infer {
            let known: usize = shape.iter().product();
            if known == 0 || !total.is_multiple_of(known) {
                return Err(format!("cannot reshape {in_shape:?} to {spec:?}"));
            }
            shape[i] = total / known;
        }
        Ok(shape)
    }
}

impl Op for Reshape {
    shape_only_op!();
}

/// `Flatten` to `[prod(shape[..axis]), prod(shape[axis..])]`.
///
/// # Shapes
/// `x`: any; output: 2-D.
pub struct Flatten {
    pub axis: i64,
}

impl Flatten {
    fn out_shape(&self, in_shape: &[usize], _x: &[Option<&Value>]) -> OpResult<Vec<usize>> {
        let r = in_shape.len();
        let ax = if self.axis == r as i64 { r } else { axis(self.axis, r)? };
        Ok(vec![in_shape[..ax].iter().product(), in_shape[ax..].iter().product()])
    }
}

impl Op for Flatten {
    shape_only_op!();
}

/// `Transpose` by `perm` (default: reverse the axes).
///
/// # Shapes
/// `x`: any; output: `x.shape[perm[i]]`.
pub struct Transpose {
    pub perm: Option<Vec<i64>>,
}

impl Transpose {
    fn perm(&self, rank: usize) -> OpResult<Vec<usize>> {
        let p: Vec<usize> = match &self.perm {
            Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<OpResult<_>>()?,
            None => (0..rank).rev().collect(),
        };
        if p.len() != rank {
            return Err(format!("perm {p:?} does not fit rank {rank}"));
        }
        Ok(p)
    }
}

impl Op for Transpose {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let v = input(x, 0)?;
        let p = self.perm(v.shape().len())?;
        // f32 tensors keep the permuted strides (a copy in memory order, no gather): MatMul reads
        // strided operands in place, and other ops make their input row-major when they need it.
        Ok(match v {
            Value::F32(a) => Value::F32(a.view().permuted_axes(IxDyn(&p)).to_owned()),
            other => each_type!(other, a => a.view().permuted_axes(IxDyn(&p)).as_standard_layout().into_owned()),
        })
    }

    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        self.vjp_owned(x, y, dy.clone(), want)
    }

    /// `dy` with its axes permuted back (strides only, no copy).
    fn vjp_owned(&self, _x: &[Option<&Value>], _y: &Value, dy: ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let p = self.perm(dy.ndim())?;
        let mut inv = vec![0; p.len()];
        for (i, &a) in p.iter().enumerate() {
            inv[a] = i;
        }
        Ok(vec![Some(dy.permuted_axes(IxDyn(&inv)))])
    }

    fn needs_output(&self) -> bool {
        false
    }

    fn re_views(&self) -> bool {
        true
    }

    /// The axes permuted in place: strides only.
    fn forward_owned(&self, x0: ArrayD<f32>, _x: &[Option<&Value>]) -> OpResult<ArrayD<f32>> {
        let p = self.perm(x0.ndim())?;
        Ok(x0.permuted_axes(IxDyn(&p)))
    }

    fn vjp_view(&self, x0_shape: &[usize], dy: ArrayD<f32>) -> OpResult<ArrayD<f32>> {
        let dx = self.vjp_owned(&[], &Value::F32(ArrayD::zeros(IxDyn(&[0]))), dy, &[true])?;
        let dx = dx.into_iter().next().flatten().expect("one gradient");
        if dx.shape() != x0_shape {
            return Err(format!("gradient {:?} does not fit the input {x0_shape:?}", dx.shape()));
        }
        Ok(dx)
    }
}

/// `Squeeze` (remove size-1 axes, all of them when none are given) and `Unsqueeze` (insert
/// size-1 axes); the axes come from an attribute (opset < 13) or input 1.
///
/// # Shapes
/// `x`: any; output: the same elements with axes removed or inserted.
pub struct Axes {
    unsqueeze: bool,
    attr: Option<Vec<i64>>,
}

impl Axes {
    /// `Squeeze` or `Unsqueeze` for `opset`.
    pub fn new(op_type: &str, a: &Attrs, opset: i64) -> Self {
        Axes { unsqueeze: op_type == "Unsqueeze", attr: if opset < 13 { a.ints("axes") } else { None } }
    }

    fn out_shape(&self, shape: &[usize], x: &[Option<&Value>]) -> OpResult<Vec<usize>> {
        let given = match (&self.attr, x.get(1).copied().flatten()) {
            (Some(a), _) => a.clone(),
            (None, Some(v)) => i64_list(v, "axes")?,
            (None, None) => Vec::new(),
        };
        if self.unsqueeze {
            let rank = shape.len() + given.len();
            let mut axes = given.iter().map(|&a| axis(a, rank)).collect::<OpResult<Vec<_>>>()?;
            axes.sort_unstable();
            let mut out = shape.to_vec();
            for a in axes {
                out.insert(a, 1);
            }
            return Ok(out);
        }
        let axes = given.iter().map(|&a| axis(a, shape.len())).collect::<OpResult<Vec<_>>>()?;
        if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
            return Err(format!("cannot squeeze axis {a} of size {}", shape[a]));
        }
        Ok(shape
            .iter()
            .enumerate()
            .filter(|(i, &d)| if axes.is_empty() { d != 1 } else { !axes.contains(i) })
            .map(|(_, &d)| d)
            .collect())
    }
}

impl Op for Axes {
    shape_only_op!();
}

/// `Expand`: broadcasts `x` to `broadcast(x.shape, shape)`.
///
/// # Shapes
/// `x`: any; `shape`: i64 `[R]`; output: the broadcast shape.
pub struct Expand;

impl Op for Expand {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let v = input(x, 0)?;
        let target: Vec<usize> = i64_list(input(x, 1)?, "shape")?.iter().map(|&d| d.max(0) as usize).collect();
        let shape = broadcast_shape(v.shape(), &target)?;
        Ok(each_type!(v, a => a.broadcast(IxDyn(&shape)).unwrap().to_owned()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        Ok(vec![Some(unbroadcast(dy.clone(), input(x, 0)?.shape())), None])
    }

    fn differentiable(&self, i: usize) -> bool {
        i == 0
    }
}

/// `Shape`: the input's dimensions `[start, end)` as i64.
///
/// # Shapes
/// `x`: any; output: i64 `[end - start]`.
pub struct ShapeOf {
    pub start: i64,
    pub end: Option<i64>,
}

impl Op for ShapeOf {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let shape = input(x, 0)?.shape();
        let r = shape.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        let dims: Vec<i64> = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
        Ok(Value::I64(ArrayD::from_shape_vec(IxDyn(&[dims.len()]), dims).unwrap()))
    }

    fn vjp(&self, _x: &[Option<&Value>], _y: &Value, _dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        Ok(vec![None])
    }

    fn differentiable(&self, _i: usize) -> bool {
        false
    }
}

/// `Cast` between f32 and integer types (integers and booleans are held as i64); f32 to f32
/// passes the gradient through.
///
/// # Shapes
/// Any shape; the output has the input's shape.
pub struct Cast {
    to_float: bool,
    to_bool: bool,
}

impl Cast {
    /// Reads `to`.
    pub fn new(a: &Attrs) -> OpResult<Self> {
        let to = a.int("to", 1);
        Ok(Cast { to_float: is_float_type(to)?, to_bool: to == crate::onnx::pb::tensor_proto::DataType::Bool as i64 })
    }
}

impl Op for Cast {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        Ok(match (input(x, 0)?, self.to_float) {
            (Value::F32(a), true) => Value::F32(a.clone()),
            (Value::F32(a), false) if self.to_bool => Value::I64(a.mapv(|v| (v != 0.0) as i64)),
            (Value::F32(a), false) => Value::I64(a.mapv(|v| v as i64)),
            (Value::I64(a), true) => Value::F32(a.mapv(|v| v as f32)),
            (Value::I64(a), false) if self.to_bool => Value::I64(a.mapv(|v| (v != 0) as i64)),
            (Value::I64(a), false) => Value::I64(a.clone()),
            (Value::U8(a), true) => Value::F32(a.mapv(|v| v as f32)),
            (Value::U8(a), false) => Value::I64(a.mapv(|v| v as i64)),
        })
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        let passes = self.to_float && matches!(input(x, 0)?, Value::F32(_));
        Ok(vec![passes.then(|| dy.clone())])
    }
}

/// `Constant`: the tensor of its `value` (or `value_float(s)`, `value_int(s)`) attribute.
///
/// # Shapes
/// No input; output: the attribute's shape.
pub struct Constant(Value);

impl Constant {
    /// Decodes the value attribute.
    pub fn new(a: &Attrs) -> OpResult<Self> {
        let node = a.0;
        let attr = node.attribute.first().ok_or("no value attribute")?;
        let v = match attr.name.as_str() {
            "value" => a.tensor("value")?.ok_or("empty value")?,
            "value_float" => Value::F32(ArrayD::from_elem(IxDyn(&[]), attr.f)),
            "value_floats" => {
                Value::F32(ArrayD::from_shape_vec(IxDyn(&[attr.floats.len()]), attr.floats.clone()).unwrap())
            }
            "value_int" => Value::I64(ArrayD::from_elem(IxDyn(&[]), attr.i)),
            "value_ints" => Value::I64(ArrayD::from_shape_vec(IxDyn(&[attr.ints.len()]), attr.ints.clone()).unwrap()),
            other => return Err(format!("attribute `{other}` is not supported")),
        };
        Ok(Constant(v))
    }
}

impl Op for Constant {
    fn forward(&self, _x: &[Option<&Value>]) -> OpResult<Value> {
        Ok(self.0.clone())
    }

    fn vjp(&self, _x: &[Option<&Value>], _y: &Value, _dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        Ok(Vec::new())
    }
}

/// `ConstantOfShape`: a tensor of the shape in input 0 filled with the `value` attribute's one
/// element (default f32 0).
///
/// # Shapes
/// `shape`: i64 `[R]`; output: that shape.
pub struct ConstantOfShape(Value);

impl ConstantOfShape {
    /// Decodes `value`.
    pub fn new(a: &Attrs) -> OpResult<Self> {
        Ok(ConstantOfShape(a.tensor("value")?.unwrap_or_else(|| Value::F32(ArrayD::zeros(IxDyn(&[1]))))))
    }
}

impl Op for ConstantOfShape {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let shape: Vec<usize> = i64_list(input(x, 0)?, "shape")?.iter().map(|&d| d.max(0) as usize).collect();
        Ok(match &self.0 {
            Value::F32(v) => Value::F32(ArrayD::from_elem(IxDyn(&shape), v.iter().next().copied().unwrap_or(0.0))),
            Value::I64(v) => Value::I64(ArrayD::from_elem(IxDyn(&shape), v.iter().next().copied().unwrap_or(0))),
            Value::U8(v) => Value::U8(ArrayD::from_elem(IxDyn(&shape), v.iter().next().copied().unwrap_or(0))),
        })
    }

    fn vjp(&self, _x: &[Option<&Value>], _y: &Value, _dy: &ArrayD<f32>, _want: &[bool]) -> OpResult<Grads> {
        Ok(vec![None])
    }

    fn differentiable(&self, _i: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, run, Case};
    use crate::onnx::Attr;

    #[test]
    fn reshape_transpose_flatten_gradients() {
        let mut c = Case::new(&[2, 3, 4]);
        let s = c.ints(&[0, 0, 2, 2]);
        let r = c.node("Reshape", &["x", &s], &[]);
        let t = c.node("Transpose", &[&r], &[Attr::Ints("perm", vec![0, 2, 1, 3])]);
        let w = c.init(&param(&[2, 3, 2], 1));
        let m = c.node("Mul", &[&t, &w], &[]);
        let f = c.node("Flatten", &[&m], &[Attr::Int("axis", 2)]);
        grad_check(c.finish(&f));
    }

    #[test]
    fn squeeze_unsqueeze_expand_gradients() {
        let mut c = Case::new(&[3, 1, 4]);
        let ax = c.ints(&[1]);
        let s = c.node("Squeeze", &["x", &ax], &[]);
        let ax0 = c.ints(&[0, -1]);
        let u = c.node("Unsqueeze", &[&s, &ax0], &[]);
        let shape = c.ints(&[2, 3, 4, 5]);
        let e = c.node("Expand", &[&u, &shape], &[]);
        let w = c.init(&param(&[2, 3, 4, 5], 2));
        let y = c.node("Mul", &[&e, &w], &[]);
        grad_check(c.finish(&y));
    }

    #[test]
    fn shape_arithmetic_runs_on_i64_at_run_time() {
        // y = Reshape(x, Concat(Shape(x)[0:1], [-1])): the batch size is only known at run time.
        let mut c = Case::new(&[2, 3, 4]);
        let shape = c.node("Shape", &["x"], &[Attr::Int("end", 1)]);
        let minus1 = c.ints(&[-1]);
        let target = c.node("Concat", &[&shape, &minus1], &[Attr::Int("axis", 0)]);
        let y = c.node("Reshape", &["x", &target], &[]);
        let (mut tail, x) = c.finish(&y);
        assert_eq!(run(&mut tail, x.clone()).shape(), &[2, 12]);
        let x5 = ndarray::ArrayD::zeros(ndarray::IxDyn(&[5, 3, 4]));
        assert_eq!(run(&mut tail, x5).shape(), &[5, 12]);
        grad_check((tail, x));
    }

    #[test]
    fn constants_fold_when_the_tail_is_built() {
        let mut c = Case::new(&[2, 3]);
        let shape = c.ints(&[2, 3]);
        let k = c.node("ConstantOfShape", &[&shape], &[]);
        let one = c.node("Constant", &[], &[Attr::Floats("value_floats", vec![1.5])]);
        let k1 = c.node("Add", &[&k, &one], &[]);
        let f = c.node("Cast", &[&k1], &[Attr::Int("to", 1)]);
        let y = c.node("Mul", &["x", &f], &[]);
        let (mut tail, x) = c.finish(&y);
        assert_eq!(tail.nodes().len(), 1, "only the Mul runs: {:?}", tail.nodes());
        let y = run(&mut tail, x.clone());
        assert!((y[[1, 2]] - 1.5 * x[[1, 2]]).abs() < 1e-6);
    }
}
