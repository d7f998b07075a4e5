//! ONNX protobuf I/O and graph building. graft writes ONNX itself, with the prost types that
//! `tract-onnx` generates from the official schema.

mod builder;
pub mod cut;
pub mod inspect;

pub use builder::{value_info, Attr, Dim, GraphBuilder};
pub use tract_onnx::pb;

use std::path::Path;

use prost::Message;

use crate::{io, Error, Result};

/// The default opset of graphs graft writes.
pub const OPSET: i64 = 17;

/// Reads and decodes an ONNX model file.
pub fn load(path: &Path) -> Result<pb::ModelProto> {
    let bytes = io::read(path)?;
    let what = || path.display().to_string();
    if bytes.is_empty() {
        return Err(Error::onnx(what(), "the file is empty (0 bytes), not an ONNX model"));
    }
    let model = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::onnx(what(), format!("not a valid ONNX model: {e}")))?;
    if model.graph.is_none() {
        return Err(Error::onnx(what(), format!("not an ONNX model: {} bytes that hold no graph", bytes.len())));
    }
    Ok(model)
}

/// Encodes and writes an ONNX model, atomically.
pub fn save(path: &Path, model: &pb::ModelProto) -> Result<()> {
    io::write_atomic(path, &model.encode_to_vec())
}

/// The value of metadata property `key`, if present.
pub fn metadata<'a>(model: &'a pb::ModelProto, key: &str) -> Option<&'a str> {
    model.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str())
}

/// Like [`metadata`], but an error naming the file when it is missing.
pub fn require_metadata<'a>(model: &'a pb::ModelProto, key: &str, path: &Path) -> Result<&'a str> {
    metadata(model, key).ok_or_else(|| {
        Error::onnx(path.display().to_string(), format!("metadata `{key}` is missing: was it exported by graft?"))
    })
}
