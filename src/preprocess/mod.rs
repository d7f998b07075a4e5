//! Preprocessing: turning raw files into the tensors a backbone expects.

pub mod image;

pub use self::image::{ImagePreprocess, Skip};
