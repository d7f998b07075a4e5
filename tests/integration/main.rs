//! The one integration-test binary: drives the real `graft` CLI in temporary folders.
//!
//! Shared data and models come from `../shared` beside the repository (see its README); tests that
//! need them fail with a clear message when it is missing.

mod backends;
mod cli;
mod cluster;
mod common;
mod explain;
mod finetune;
mod hub;
mod images;
mod library;
mod lr_find;
mod paths;
mod report_html;
mod runs;
mod tabular;
mod tensorboard;
mod text;
