//! The ops of the trainable tail: one small file per op or family, each with its forward pass and
//! its vector-Jacobian product (VJP), and a finite-difference gradient check in its tests.

mod binary;
mod broadcast;
mod conv;
mod depthwise;
mod gather;
mod gemm;
mod matmul;
mod norm;
pub(crate) mod par;
mod pool;
mod reduce;
#[cfg(target_arch = "x86_64")]
mod sgemm;
mod shape;
pub mod simd;
mod slice;
mod softmax;
mod unary;
mod window;

pub use broadcast::{broadcast_shape, unbroadcast, unbroadcast_ref};
pub use unary::erf;

use ndarray::ArrayD;

use super::value::{from_proto, OpResult, Value};
use crate::onnx::pb;

/// Gradients of an op's inputs, in input order (`None`: not wanted, or not differentiable).
pub type Grads = Vec<Option<ArrayD<f32>>>;

/// One ONNX op with its attributes parsed.
pub trait Op: Send + Sync {
    /// Computes the op's (first) output from its inputs (`None` for an omitted optional input).
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value>;

    /// The vector-Jacobian product: given the inputs, the output `y` and `dy` = dL/dy, returns
    /// dL/dx for every input `i` with `want[i]` (the others may be `None`).
    fn vjp(&self, x: &[Option<&Value>], y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads>;

    /// [`Op::vjp`] with `dy` given away: ops whose gradient is `dy` itself, reshaped, transposed
    /// or updated in place (additions, shape ops, layer norm) pass it on without copying it. The
    /// backward pass calls this one.
    fn vjp_owned(&self, x: &[Option<&Value>], y: &Value, dy: ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        self.vjp(x, y, &dy, want)
    }

    /// Whether the VJP reads the op's output `y` (softmax, sigmoid, ...). When it does not, the
    /// output may be given away to a re-viewing op after it (see [`Op::re_views`]).
    fn needs_output(&self) -> bool {
        true
    }

    /// Whether the output is input 0 re-viewed (reshapes, transposes, Identity): then
    /// [`Op::forward_owned`] and [`Op::vjp_view`] run it without copying.
    fn re_views(&self) -> bool {
        false
    }

    /// For an op that [`Op::re_views`]: the output made from input 0 given away (`x[0]` is
    /// `None`; the other inputs as in [`Op::forward`]), copied only when its layout needs it.
    fn forward_owned(&self, x0: ArrayD<f32>, x: &[Option<&Value>]) -> OpResult<ArrayD<f32>> {
        let _ = (x0, x);
        Err("this op does not re-view its input".into())
    }

    /// For an op that [`Op::re_views`]: dL/d(input 0) from `dy` and input 0's shape alone.
    fn vjp_view(&self, x0_shape: &[usize], dy: ArrayD<f32>) -> OpResult<ArrayD<f32>> {
        let _ = (x0_shape, dy);
        Err("this op does not re-view its input".into())
    }

    /// Whether input `i` can carry a gradient (an initializer read only through such inputs may be
    /// trained). Shapes, indices and running statistics cannot.
    fn differentiable(&self, i: usize) -> bool {
        let _ = i;
        true
    }
}

/// The ops the tail supports, as named in errors.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Erf",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "LayerNormalization",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pow",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Builds the op of `node` for the model's default-domain `opset`.
pub fn build(node: &pb::NodeProto, opset: i64) -> OpResult<Box<dyn Op>> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(format!(
            "op `{}` of domain `{}` is not supported by the trainable tail",
            node.op_type, node.domain
        ));
    }
    let a = Attrs(node);
    Ok(match node.op_type.as_str() {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => Box::new(binary::Binary::new(&node.op_type)),
        "Erf" | "Sqrt" | "Relu" | "Sigmoid" | "Tanh" | "Identity" | "Dropout" => {
            Box::new(unary::Unary::new(&node.op_type))
        }
        "Clip" => Box::new(unary::Clip::new(&a, opset)?),
        "MatMul" => Box::new(matmul::MatMul),
        "Gemm" => Box::new(matmul::Gemm::new(&a)),
        "Softmax" => Box::new(softmax::Softmax::new(&a, opset)),
        "LayerNormalization" => Box::new(norm::LayerNorm::new(&a)),
        "BatchNormalization" => Box::new(norm::BatchNorm::new(&a)?),
        "ReduceMean" => Box::new(reduce::ReduceMean::new(&a, opset)),
        "GlobalAveragePool" => Box::new(reduce::GlobalAveragePool),
        "Conv" => Box::new(conv::Conv::new(&a)?),
        "MaxPool" | "AveragePool" => Box::new(pool::Pool::new(&node.op_type, &a)?),
        "Reshape" => Box::new(shape::Reshape { allowzero: a.int("allowzero", 0) != 0 }),
        "Flatten" => Box::new(shape::Flatten { axis: a.int("axis", 1) }),
        "Transpose" => Box::new(shape::Transpose { perm: a.ints("perm") }),
        "Squeeze" | "Unsqueeze" => Box::new(shape::Axes::new(&node.op_type, &a, opset)),
        "Shape" => Box::new(shape::ShapeOf { start: a.int("start", 0), end: a.opt_int("end") }),
        "Cast" => Box::new(shape::Cast::new(&a)?),
        "Constant" => Box::new(shape::Constant::new(&a)?),
        "ConstantOfShape" => Box::new(shape::ConstantOfShape::new(&a)?),
        "Expand" => Box::new(shape::Expand),
        "Concat" => Box::new(slice::Concat { axis: a.int("axis", 0) }),
        "Slice" => Box::new(slice::Slice::new(&a, opset)),
        "Gather" => Box::new(gather::Gather { axis: a.int("axis", 0) }),
        "Where" => Box::new(gather::Where),
        other => {
            return Err(format!(
                "op `{other}` is not supported by the trainable tail (supported: {})",
                SUPPORTED.join(", ")
            ))
        }
    })
}

/// Typed access to a node's attributes.
pub struct Attrs<'a>(pub &'a pb::NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&pb::AttributeProto> {
        self.0.attribute.iter().find(|a| a.name == name)
    }

    /// Integer attribute `name`, or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.opt_int(name).unwrap_or(default)
    }

    /// Integer attribute `name`, if present.
    pub fn opt_int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    /// Float attribute `name`, or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    /// Float attribute `name`, if present.
    pub fn opt_float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }

    /// Integer-list attribute `name` (`None` when absent).
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    /// String attribute `name`, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// The tensor of attribute `name`, decoded.
    pub fn tensor(&self, name: &str) -> OpResult<Option<Value>> {
        self.get(name).and_then(|a| a.t.as_ref()).map(from_proto).transpose()
    }

    /// Whether attribute `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Input `i`, or an error naming it when it is missing.
pub fn input<'a>(x: &[Option<&'a Value>], i: usize) -> OpResult<&'a Value> {
    x.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing"))
}

/// Resolves a possibly negative `axis` against `rank`.
pub fn axis(axis: i64, rank: usize) -> OpResult<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank.max(1) as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

#[cfg(test)]
pub(crate) mod check;

/// `a` with a new shape of the same element count, whatever `a`'s memory layout (products and
/// transposes may return column-major or strided arrays).
pub fn reshape<D: ndarray::Dimension>(a: ndarray::Array<f32, D>, shape: &[usize]) -> ArrayD<f32> {
    par::into_standard(a.into_dyn())
        .into_shape_with_order(ndarray::IxDyn(shape))
        .expect("reshape keeps the element count")
}

/// `MatMul` then the addition of a bias row, as one op (inputs: A, B, bias).
pub fn matmul_bias() -> Box<dyn Op> {
    Box::new(matmul::MatMulBias)
}

/// The exact GELU as one op, for a fused chain of the nodes exporters write it as.
pub fn gelu() -> Box<dyn Op> {
    Box::new(unary::Unary::gelu())
}
