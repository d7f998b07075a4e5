//! The trainable tail of an ONNX backbone: the subgraph between an unfreeze point (a tensor) and
//! the backbone's output or cut tensor, run by a native reverse-mode interpreter.
//!
//! ```text
//! frozen front (a Backend) ─► start tensor ─► [tail nodes, in order] ─► end tensor
//!                             side inputs ───┘  (e.g. the attention mask [N,1,1,S])
//! ```
//!
//! - The tail's f32 initializers with more than one element that no frozen node reads, and that
//!   reach the ops only through differentiable inputs, are its **parameters**; every other
//!   initializer is a constant (scalars such as GELU's `0.5`, shapes, running statistics).
//! - Any other tensor a tail node reads from the frozen part (or a graph input) is a
//!   non-trainable **side input**, fed with each batch.
//! - Nodes that depend on neither the start tensor nor a parameter (shape arithmetic on
//!   constants, `Constant`) are **folded** once when the tail is built; shape computations on live
//!   tensors (`Shape` → `Gather` → `Concat` → `Reshape`) run on i64 tensors.
//! - An op the tail cannot run is an error naming the op and the node, given by [`Tail::new`]
//!   before any work starts.
//!
//! The forward pass keeps every intermediate tensor while training; the backward pass walks the
//! nodes in reverse, calling each op's vector-Jacobian product and accumulating gradients.

mod blocks;
mod build;
mod fuse;
mod layer;
pub mod ops;
mod run;
pub mod value;

pub use blocks::{blocks, unfreeze_point, Boundary, BoundaryKind};
pub use layer::TailLayer;
pub use value::Value;

use ndarray::ArrayD;

/// One tail node, ready to run.
struct Step {
    /// The ONNX node's name and op type, for errors.
    name: String,
    op_type: String,
    op: Box<dyn ops::Op>,
    /// Input slots (`None` for an omitted optional input).
    inputs: Vec<Option<usize>>,
    /// Which inputs receive a gradient.
    want: Vec<bool>,
    output: usize,
    /// Input 0 is given to the op, not copied: the op re-views it, nothing else reads it, and
    /// its producer's VJP does not read it (see [`ops::Op::re_views`]).
    moves: bool,
}

/// A trainable ONNX subgraph. Build it with [`Tail::new`]; run it with [`Tail::forward`] and
/// [`Tail::backward`]; train [`Tail::params`].
pub struct Tail {
    steps: Vec<Step>,
    /// Tensor name of each slot.
    names: Vec<String>,
    start: usize,
    end: usize,
    /// Slots fed with each batch besides the start tensor.
    side: Vec<usize>,
    /// Constants (folded or initializers) and parameters, by slot.
    fixed: Vec<Option<Value>>,
    /// Values computed by the last forward pass, by slot.
    live: Vec<Option<Value>>,
    /// The shapes of the values the last forward pass gave away to a re-viewing step, by slot.
    moved: Vec<Option<Vec<usize>>>,
    /// Parameter slots, in slot order.
    params: Vec<usize>,
    /// dL/dparam from the last backward pass, aligned with `params`.
    grads: Vec<ArrayD<f32>>,
}

impl Tail {
    /// The tensor the tail starts from (the unfreeze point).
    pub fn start(&self) -> &str {
        &self.names[self.start]
    }

    /// The tensor the tail ends at.
    pub fn end(&self) -> &str {
        &self.names[self.end]
    }

    /// The names of the side inputs that [`Tail::forward`] needs besides the start tensor.
    pub fn side_inputs(&self) -> Vec<&str> {
        self.side.iter().map(|&s| self.names[s].as_str()).collect()
    }

    /// The `(node name, op type)` of every node the tail runs, in order.
    pub fn nodes(&self) -> Vec<(&str, &str)> {
        self.steps.iter().map(|s| (s.name.as_str(), s.op_type.as_str())).collect()
    }

    /// The parameters' initializer names, in [`Tail::params`] order.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|&s| self.names[s].as_str()).collect()
    }

    /// The number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|&s| self.fixed[s].as_ref().map_or(0, |v| v.shape().iter().product())).sum()
    }

    /// The parameters with their gradients, for an optimizer. Weight decay applies to tensors of
    /// rank 2 or more (matrices, kernels), not to biases and normalisation scales.
    pub fn params(&mut self) -> Vec<crate::nn::Param<'_>> {
        let mut out = Vec::with_capacity(self.params.len());
        let mut grads = self.grads.iter_mut();
        let mut next = self.params.iter().peekable();
        for (slot, v) in self.fixed.iter_mut().enumerate() {
            if next.peek() != Some(&&slot) {
                continue;
            }
            next.next();
            if let (Some(Value::F32(value)), Some(grad)) = (v.as_mut(), grads.next()) {
                let decay = value.ndim() >= 2;
                out.push(crate::nn::Param { name: if decay { "weight" } else { "bias" }, value, grad, decay });
            }
        }
        out
    }

    /// The current value of every parameter, by initializer name (what export writes back).
    pub fn initializers(&self) -> Vec<(&str, &ArrayD<f32>)> {
        self.params
            .iter()
            .filter_map(|&s| match &self.fixed[s] {
                Some(Value::F32(a)) => Some((self.names[s].as_str(), a)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod ort_tests;
#[cfg(test)]
mod tests;
