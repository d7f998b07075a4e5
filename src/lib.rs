//! graft: transfer learning centred on ONNX.
//!
//! Every pipeline is the same moves:
//!
//! ```text
//! data ─► preprocess ─► [frozen backbone on a Backend] ─► features ─► trainable head ─► export ─► verify
//! ```
//!
//! - [`data`] reads examples (a numeric CSV today) and splits them (stratified holdout, k-fold);
//! - [`nn`] holds the native layers, each able to write itself as ONNX ([`nn::Layer::to_onnx`]);
//! - [`train`] is the one training loop (early stopping, plateau, checkpoints, metrics, plots);
//! - [`export`] writes the trained [`nn::Sequential`] as one ONNX graph with graft's metadata;
//! - [`verify`] runs that graph on another engine ([`backend`]) and compares with the native model;
//! - [`predict`] runs an exported model from its file alone;
//! - [`hub`] pulls pretrained models (`hf://ORG/NAME/FILE`) into the standard cache;
//! - [`onnx`] reads, writes, inspects and cuts graphs;
//! - [`pipeline`] composes the stages for each task, driven by a [`config::PipelineConfig`].

pub mod backend;
pub mod config;
pub mod data;
mod error;
pub mod export;
pub mod features;
pub mod graph;
pub mod hub;
pub mod io;
pub mod nn;
pub mod onnx;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod rng;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
