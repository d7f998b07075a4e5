//! Preprocessing: turning raw files into the tensors a backbone expects.

pub mod image;
pub mod jpeg;
pub mod text;

pub use self::image::{ImagePreprocess, Skip};
pub use self::text::{Encoded, TextEncoder};
