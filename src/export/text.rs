//! Text graphs: token ids and attention mask in, `probabilities` out.

use super::append_head;
use crate::config::manifest::Pooling;
use crate::nn::{Layer, LayerSpec, MaskedMean, Sequential};
use crate::onnx::{inspect::opset, pb, Attr, Dim, GraphBuilder, OPSET};
use crate::{Error, Result};

use pb::tensor_proto::DataType;

/// Token ids input, i64 `[N, S]`.
pub const INPUT_IDS: &str = "input_ids";
/// Attention mask input, i64 `[N, S]` (1 = token, 0 = padding).
pub const ATTENTION_MASK: &str = "attention_mask";

fn mask_context(g: &mut GraphBuilder) -> String {
    let mask = g.node("Cast", &[ATTENTION_MASK], &[Attr::Int("to", DataType::Float as i64)]);
    g.set_context("mask", &mask);
    mask
}

/// A native text model (Embedding first) as one graph.
///
/// # Shapes
/// `input_ids`, `attention_mask` `[N, S]` -> `probabilities` `[N, classes]`
pub fn native_text_model(model: &Sequential, classes: usize, metadata: &[(String, String)]) -> Result<pb::ModelProto> {
    let mut g = GraphBuilder::new("");
    let dims = [Dim::Symbol("N".into()), Dim::Symbol("S".into())];
    g.input(INPUT_IDS, DataType::Int64, &dims);
    g.input(ATTENTION_MASK, DataType::Int64, &dims);
    mask_context(&mut g);
    append_head(&mut g, model, INPUT_IDS, classes)?;
    Ok(g.into_model(OPSET, metadata))
}

/// A frozen sentence encoder (its output `hidden` `[N, S, D]`), pooling as `pooling` says (masked
/// mean, or the first token's state), then `head`.
///
/// # Shapes
/// the encoder's inputs (`input_ids`, `attention_mask`, ...) -> `probabilities` `[N, classes]`
pub fn encoder_model(
    encoder: &pb::ModelProto,
    hidden: &str,
    pooling: Pooling,
    head: &Sequential,
    classes: usize,
    metadata: &[(String, String)],
) -> Result<pb::ModelProto> {
    let graph = encoder.graph.clone().ok_or_else(|| Error::onnx("encoder", "no graph"))?;
    if !graph.input.iter().any(|i| i.name == ATTENTION_MASK) {
        return Err(Error::onnx("encoder", "it has no `attention_mask` input"));
    }
    let mut g = GraphBuilder::from_graph(graph, "head/");
    mask_context(&mut g);
    let pooled = match pooling {
        Pooling::Mean => MaskedMean::default().to_onnx(&mut g, hidden)?,
        Pooling::Cls => {
            let first = g.initializer_i64("cls_index", &[0], &[]);
            g.node("Gather", &[hidden, &first], &[Attr::Int("axis", 1)])
        }
    };
    append_head(&mut g, head, &pooled, classes)?;
    Ok(g.into_model(opset(encoder).max(OPSET), metadata))
}

/// A fine-tuned encoder: `model` starts with the backbone's tail (a [`LayerSpec::Tail`]) and pools
/// itself after it (e.g. [`MaskedMean`]). `encoder` is the original backbone (cut at the tail's
/// end when that is not its output): its nodes are kept as they are, the tail's initializers get
/// the trained values, and the rest of `model` follows the tail's end.
///
/// # Shapes
/// the encoder's inputs (`input_ids`, `attention_mask`, ...) -> `probabilities` `[N, classes]`
pub fn finetuned_encoder_model(
    encoder: &pb::ModelProto,
    model: &Sequential,
    classes: usize,
    metadata: &[(String, String)],
) -> Result<pb::ModelProto> {
    let graph = encoder.graph.clone().ok_or_else(|| Error::onnx("encoder", "no graph"))?;
    if !graph.input.iter().any(|i| i.name == ATTENTION_MASK) {
        return Err(Error::onnx("encoder", "it has no `attention_mask` input"));
    }
    let end = match model.layers().first().map(|l| l.spec()) {
        Some(LayerSpec::Tail { end: Some(end), .. }) => end,
        Some(LayerSpec::Tail { end: None, .. }) => {
            graph.output.first().map(|o| o.name.clone()).ok_or_else(|| Error::onnx("encoder", "no output"))?
        }
        _ => return Err(Error::Invalid("a fine-tuned encoder model starts with the backbone's tail".into())),
    };
    let mut g = GraphBuilder::from_graph(graph, "head/");
    mask_context(&mut g);
    append_head(&mut g, model, &end, classes)?;
    Ok(g.into_model(opset(encoder).max(OPSET), metadata))
}
