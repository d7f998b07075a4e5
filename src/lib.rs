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
//!
//! # As a library
//!
//! The `graft` command is a thin layer over this crate. The main entry points:
//!
//! - [`pipeline::Pipeline::from_toml`] or [`pipeline::Pipeline::builder`], then
//!   [`pipeline::Pipeline::fit`], which returns a [`pipeline::Run`] (its folder, report and model);
//! - [`predict::Model::load`] once, then [`predict::Model::predict_images`],
//!   [`predict::Model::predict_texts`] or [`predict::Model::predict_rows`] (typed
//!   [`predict::Prediction`]s; a `Model` is `Send + Sync`);
//! - [`features::embed_dataset`] for the features of an image folder or a CSV of texts;
//! - the [`nn`] layers, the trainer ([`train::fit`]) and [`export`] for heads of your own.
//!
//! The library never prints: warnings come back in results or through the `log` facade.
//! `examples/` holds three complete programs (own features to a verified ONNX file; a model
//! shared by several threads; the cats-vs-dogs pipeline built in code).
//!
//! ```
//! # fn main() -> graft::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("model.onnx");
//! # graft::predict::doc_model(&path)?;
//! let model = graft::predict::Model::load(&path)?;
//! let best = model.predict_rows(ndarray::array![[0.5f32, -1.0]].view())?;
//! assert!(model.labels().contains(&best[0].label));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod data;
mod error;
pub mod explain;
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
