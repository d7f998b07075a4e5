//! Native layers, losses and optimizers: the trainable part of every graft model.
//!
//! A [`Layer`] knows its forward pass, its backward pass, its parameters and how to write itself as
//! ONNX nodes ([`Layer::to_onnx`]). Export walks the same [`Sequential`] that was trained, so the
//! deployed graph cannot drift from the trained model.

mod activation;
mod dense;
mod dropout;
mod embedding;
mod init;
pub mod loss;
mod lstm;
pub mod optim;
mod pool;
pub mod sequential;
mod standardize;

pub use activation::Relu;
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::{lengths, Embedding};
pub use init::Init;
pub use lstm::Lstm;
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use pool::MaskedMean;
pub use sequential::Sequential;
pub use standardize::Standardize;

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::onnx::GraphBuilder;
use crate::rng::Rng;
use crate::Result;

/// Per-call context of a forward pass.
pub struct Ctx<'a> {
    /// Training mode (dropout on) or inference mode.
    pub train: bool,
    /// The run's random stream (dropout masks).
    pub rng: &'a mut Rng,
    /// Valid length of each row of a padded batch, set by [`Embedding`] for the masked layers after it.
    pub lengths: Option<Vec<usize>>,
    /// Tensors a fine-tuned backbone tail reads besides its input, by name (e.g. the additive
    /// attention mask `[N, 1, 1, S]`); set by the caller for each batch.
    pub side: Vec<(String, crate::backend::Value)>,
}

impl<'a> Ctx<'a> {
    /// A context for one forward pass.
    pub fn new(train: bool, rng: &'a mut Rng) -> Self {
        Ctx { train, rng, lengths: None, side: Vec::new() }
    }
}

/// A trainable tensor and its gradient, as seen by an optimizer.
pub struct Param<'a> {
    /// Name within its layer (`weight`, `bias`, ...; a tail's initializer name).
    pub name: &'a str,
    /// The parameter.
    pub value: &'a mut ArrayD<f32>,
    /// Its gradient, accumulated by `backward`.
    pub grad: &'a mut ArrayD<f32>,
    /// Whether L2 / weight decay applies (weights yes, biases no).
    pub decay: bool,
}

/// One native layer.
pub trait Layer: Send {
    /// Forward pass; caches what [`Layer::backward`] needs when `ctx.train`.
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32>;
    /// Backward pass: takes dL/dy, stores parameter gradients, returns dL/dx.
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32>;
    /// Backward pass of the first layer that has parameters: only the parameter gradients are
    /// needed (nothing before it learns), so layers may skip dL/dx.
    fn backward_params(&mut self, grad: ArrayD<f32>) {
        self.backward(grad);
    }
    /// The trainable parameters, in a fixed order.
    fn params(&mut self) -> Vec<Param<'_>> {
        Vec::new()
    }
    /// The serialisable description that rebuilds this layer (weights excluded).
    fn spec(&self) -> LayerSpec;
    /// Appends this layer's inference graph after tensor `input`; returns the output tensor name.
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String>;
}

/// Serialisable description of a layer; [`LayerSpec::build`] makes the layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    /// Fixed `(x - mean) / std`, fitted on the training split.
    Standardize {
        /// Per-feature mean.
        mean: Vec<f32>,
        /// Per-feature standard deviation.
        std: Vec<f32>,
    },
    /// Fully connected layer, `y = x W + b`.
    Dense {
        /// Input features.
        inputs: usize,
        /// Output features.
        units: usize,
        /// Weight initialisation.
        init: Init,
    },
    /// Rectified linear unit.
    Relu,
    /// Inverted dropout, identity at inference.
    Dropout {
        /// Share of inputs zeroed in training.
        rate: f32,
    },
    /// Token ids to vectors.
    Embedding {
        /// Vocabulary size.
        vocab: usize,
        /// Vector size.
        dim: usize,
    },
    /// LSTM returning every step.
    Lstm {
        /// Input features per step.
        inputs: usize,
        /// Units per direction.
        hidden: usize,
        /// Also run over each sequence backwards (outputs concatenated).
        bidirectional: bool,
    },
    /// Mean over valid time steps.
    MaskedMean,
    /// The trainable tail of an ONNX backbone, from tensor `start` to `end` (the graph's first
    /// output when absent); its initial weights are the backbone's (checked by `sha256`).
    Tail {
        /// The backbone's ONNX file.
        backbone: String,
        /// Its sha256.
        sha256: String,
        /// The tensor the tail starts from.
        start: String,
        /// The tensor it ends at.
        end: Option<String>,
    },
}

impl LayerSpec {
    /// Builds the layer with freshly initialised parameters drawn from `rng`.
    pub fn build(&self, rng: &mut Rng) -> Box<dyn Layer> {
        match self {
            LayerSpec::Standardize { mean, std } => Box::new(Standardize::new(mean.clone(), std.clone())),
            LayerSpec::Dense { inputs, units, init } => Box::new(Dense::new(*inputs, *units, *init, rng)),
            LayerSpec::Relu => Box::new(Relu::default()),
            LayerSpec::Dropout { rate } => Box::new(Dropout::new(*rate)),
            LayerSpec::Embedding { vocab, dim } => Box::new(Embedding::new(*vocab, *dim, rng)),
            LayerSpec::Lstm { inputs, hidden, bidirectional } => {
                Box::new(Lstm::new(*inputs, *hidden, *bidirectional, rng))
            }
            LayerSpec::MaskedMean => Box::new(MaskedMean::default()),
            LayerSpec::Tail { .. } => self.try_build(rng).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Like [`LayerSpec::build`], with an error where the layer depends on a file: a
    /// [`LayerSpec::Tail`] whose backbone is missing, changed (sha256) or has no such tail.
    /// [`LayerSpec::build`] panics with that error; check specs with this first.
    pub fn try_build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        match self {
            LayerSpec::Tail { backbone, sha256, start, end } => Ok(Box::new(crate::graph::TailLayer::open(
                std::path::Path::new(backbone),
                start,
                end.as_deref(),
                Some(sha256),
            )?)),
            other => Ok(other.build(rng)),
        }
    }
}

#[cfg(test)]
pub(crate) mod gradcheck;
#[cfg(test)]
mod onnx_tests;
