//! One deployable graph: a cut backbone with the trained head appended at its cut tensor.

use super::append_head;
use crate::config::manifest::Layout;
use crate::nn::Sequential;
use crate::onnx::{inspect::opset, pb, Attr, Dim, GraphBuilder};
use crate::preprocess::ImagePreprocess;
use crate::{Error, Result};

use pb::tensor_proto::DataType;

/// The lowest opset the appended head needs.
const HEAD_OPSET: i64 = 13;

/// The input of exported image models.
pub const IMAGE_INPUT: &str = "image";

/// Appends `head` to the cut backbone `backbone` (whose single output is the cut tensor) and
/// renames its image input to [`IMAGE_INPUT`]. With `u8`, the input becomes raw RGB uint8
/// `[N, size, size, 3]` and the cast, transpose and normalisation of `pre` run inside the graph.
///
/// # Shapes
/// `image` `[N, 3, size, size]` f32 (or `[N, size, size, 3]` u8) -> `probabilities` `[N, classes]`
pub fn image_model(
    backbone: &pb::ModelProto,
    backbone_input: &str,
    head: &Sequential,
    classes: usize,
    pre: &ImagePreprocess,
    u8_input: bool,
    metadata: &[(String, String)],
) -> Result<pb::ModelProto> {
    let graph = backbone.graph.clone().ok_or_else(|| Error::onnx("backbone", "no graph"))?;
    let cut = graph.output.first().map(|o| o.name.clone()).ok_or_else(|| Error::onnx("backbone", "no output"))?;
    let mut g = GraphBuilder::from_graph(graph, "head/");
    if g.is_used(IMAGE_INPUT) && backbone_input != IMAGE_INPUT {
        return Err(Error::onnx("backbone", format!("it already uses the name `{IMAGE_INPUT}`")));
    }
    let size = pre.size as i64;
    if u8_input {
        g.remove_input(backbone_input);
        let batch = Dim::Symbol("N".into());
        g.input_first(IMAGE_INPUT, DataType::Uint8, &[batch, Dim::Fixed(size), Dim::Fixed(size), Dim::Fixed(3)]);
        let mark = g.mark();
        let x = g.node("Cast", &[IMAGE_INPUT], &[Attr::Int("to", DataType::Float as i64)]);
        let (x, shape) = match pre.layout {
            Layout::Nchw => (g.node("Transpose", &[&x], &[Attr::Ints("perm", vec![0, 3, 1, 2])]), [1, 3, 1, 1]),
            Layout::Nhwc => (x, [1, 1, 1, 3]),
        };
        let mean = ndarray::ArrayD::from_shape_vec(shape.to_vec(), pre.mean.to_vec()).expect("3 values");
        let std = ndarray::ArrayD::from_shape_vec(shape.to_vec(), pre.std.to_vec()).expect("3 values");
        let (mean, std) = (g.initializer("preprocess_mean", &mean), g.initializer("preprocess_std", &std));
        let centred = g.node("Sub", &[&x, &mean], &[]);
        g.node_to("Div", &[&centred, &std], &[], &[backbone_input]);
        g.move_to_front(mark);
    } else {
        g.rename_input(backbone_input, IMAGE_INPUT);
    }
    append_head(&mut g, head, &cut, classes)?;
    // The head's ops (Gemm, Relu, Softmax over the last axis, Sub/Div, Cast, Transpose) all exist in
    // opset 13; the backbone's own opset is kept when newer.
    Ok(g.into_model(opset(backbone).max(HEAD_OPSET), metadata))
}
