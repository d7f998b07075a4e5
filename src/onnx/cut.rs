//! `graft cut`: a new graph whose output is one inner tensor, with every node and initializer that
//! no longer contributes pruned, and the opset and metadata kept.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::inspect::{cut_points, tensor_facts, TensorSummary};
use super::{pb, Dim};
use crate::{Error, Result};

/// The tensor `at` names, or the classifier input when it is `auto`.
pub fn resolve_cut(
    model: &pb::ModelProto,
    at: &str,
    facts: &HashMap<String, TensorSummary>,
    what: &Path,
) -> Result<String> {
    if at != "auto" {
        return Ok(at.to_string());
    }
    cut_points(model, facts).into_iter().next().map(|c| c.tensor.name).ok_or_else(|| {
        Error::onnx(what.display().to_string(), "no classifier (Gemm/MatMul) or global pool found: pass --at TENSOR")
    })
}

/// Cuts `model` at tensor `at` (or `auto`). `what` names the model in errors.
pub fn cut(model: &pb::ModelProto, at: &str, what: &Path) -> Result<pb::ModelProto> {
    let facts = tensor_facts(model, what)?;
    let at = resolve_cut(model, at, &facts, what)?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::onnx(what.display().to_string(), "no graph"))?;
    if !graph.node.iter().any(|n| n.output.contains(&at)) {
        let hint = if graph.input.iter().any(|i| i.name == at) { " (it is a graph input)" } else { "" };
        return Err(Error::onnx(what.display().to_string(), format!("no node produces tensor `{at}`{hint}")));
    }
    let mut needed: HashSet<&str> = HashSet::from([at.as_str()]);
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o.as_str())) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|s| !s.is_empty()).map(String::as_str));
            // Subgraph attributes (If/Loop) may read outer tensors: keep what they name too.
            for a in &node.attribute {
                for g in a.g.iter().chain(a.graphs.iter()) {
                    needed.extend(g.node.iter().flat_map(|n| n.input.iter()).map(String::as_str));
                }
            }
        }
    }
    let fact =
        facts.get(&at).ok_or_else(|| Error::Tensor { name: at.clone(), msg: "shape could not be inferred".into() })?;
    let output = super::builder::value_info(&at, elem_type(&fact.dtype)?, &dims(&fact.shape));
    let new_graph = pb::GraphProto {
        name: graph.name.clone(),
        node: graph.node.iter().zip(&keep).filter(|(_, k)| **k).map(|(n, _)| n.clone()).collect(),
        initializer: graph.initializer.iter().filter(|t| needed.contains(t.name.as_str())).cloned().collect(),
        input: graph.input.iter().filter(|i| needed.contains(i.name.as_str())).cloned().collect(),
        output: vec![output],
        value_info: graph
            .value_info
            .iter()
            .filter(|v| needed.contains(v.name.as_str()) && v.name != at)
            .cloned()
            .collect(),
        doc_string: graph.doc_string.clone(),
        ..Default::default()
    };
    let mut out = model.clone();
    out.graph = Some(new_graph);
    out.metadata_props.retain(|p| p.key != "graft.cut");
    out.metadata_props.push(pb::StringStringEntryProto { key: "graft.cut".into(), value: at });
    Ok(out)
}

fn dims(shape: &[String]) -> Vec<Dim> {
    shape.iter().map(|d| d.parse::<i64>().map(Dim::Fixed).unwrap_or_else(|_| Dim::Symbol(d.clone()))).collect()
}

fn elem_type(dtype: &str) -> Result<pb::tensor_proto::DataType> {
    use pb::tensor_proto::DataType as T;
    Ok(match dtype {
        "f32" => T::Float,
        "f16" => T::Float16,
        "f64" => T::Double,
        "i64" => T::Int64,
        "i32" => T::Int32,
        "u8" => T::Uint8,
        "i8" => T::Int8,
        "bool" => T::Bool,
        other => return Err(Error::Tensor { name: "cut output".into(), msg: format!("unsupported type {other}") }),
    })
}
