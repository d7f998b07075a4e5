//! `graft inspect`: a `model.summary()` for ONNX files, including where a pretrained network can
//! be cut (the input of its final classifier, global-pool outputs).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::Serialize;
use tract_onnx::prelude::*;

use super::pb;
use crate::{io, Error, Result};

/// Type and shape of one tensor; symbolic dimensions keep their names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorSummary {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Dimensions (numbers or symbol names).
    pub shape: Vec<String>,
}

impl fmt::Display for TensorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} [{}]", self.name, self.dtype, self.shape.join(", "))
    }
}

/// A tensor where the network can be cut, and why it is a candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CutPoint {
    /// The tensor.
    pub tensor: TensorSummary,
    /// Why it is a candidate.
    pub reason: String,
}

/// What `graft inspect` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The file.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Default-domain opset.
    pub opset: i64,
    /// The producer that wrote it.
    pub producer: String,
    /// Graph inputs (initializers excluded).
    pub inputs: Vec<TensorSummary>,
    /// Graph outputs.
    pub outputs: Vec<TensorSummary>,
    /// Scalars in initializers.
    pub parameters: u64,
    /// Initializer tensors.
    pub initializers: usize,
    /// Graph nodes.
    pub nodes: usize,
    /// Op type and count, most frequent first.
    pub ops: Vec<(String, usize)>,
    /// The first one is what `--at auto` picks.
    pub cut_points: Vec<CutPoint>,
    /// Where fine-tuning can start, last (number 1) first; parameters counted up to the first output.
    pub blocks: Vec<crate::graph::Boundary>,
    /// `metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
}

/// The default-domain opset of a model.
pub fn opset(model: &pb::ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version)
}

fn dtype_name(dt: DatumType) -> String {
    format!("{dt:?}").to_lowercase()
}

/// Infers the type and shape of every named tensor with tract.
pub fn tensor_facts(model: &pb::ModelProto, what: &Path) -> Result<HashMap<String, TensorSummary>> {
    let fail = |e: TractError| Error::onnx(what.display().to_string(), format!("shape inference: {e:#}"));
    let parsed = tract_onnx::onnx().parse(model, None).map_err(fail)?;
    let typed = parsed.model.into_typed().map_err(fail)?;
    let mut out = HashMap::new();
    for node in typed.nodes() {
        for (slot, output) in node.outputs.iter().enumerate() {
            let outlet = OutletId::new(node.id, slot);
            let name = typed.outlet_label(outlet).map(str::to_string).unwrap_or_else(|| node.name.clone());
            let shape = output.fact.shape.iter().map(|d| d.to_string()).collect();
            out.insert(name.clone(), TensorSummary { name, dtype: dtype_name(output.fact.datum_type), shape });
        }
    }
    Ok(out)
}

/// Candidate cut points: the input of the last Gemm/MatMul (the classifier), then global-pool
/// outputs, latest first.
pub fn cut_points(model: &pb::ModelProto, facts: &HashMap<String, TensorSummary>) -> Vec<CutPoint> {
    let graph = model.graph.as_ref().map(|g| g.node.as_slice()).unwrap_or_default();
    let initializers: Vec<&str> =
        model.graph.iter().flat_map(|g| g.initializer.iter().map(|t| t.name.as_str())).collect();
    let summary = |name: &str| {
        facts.get(name).cloned().unwrap_or(TensorSummary { name: name.into(), dtype: "?".into(), shape: vec![] })
    };
    let mut points = Vec::new();
    if let Some(node) = graph.iter().rev().find(|n| n.op_type == "Gemm" || n.op_type == "MatMul") {
        if let Some(x) = node.input.iter().find(|i| !initializers.contains(&i.as_str())) {
            points.push(CutPoint {
                tensor: summary(x),
                reason: format!("input of the final classifier {} `{}`", node.op_type, node.name),
            });
        }
    }
    for node in graph.iter().rev().filter(|n| n.op_type == "GlobalAveragePool" || n.op_type == "GlobalMaxPool") {
        points.push(CutPoint { tensor: summary(&node.output[0]), reason: format!("{} output", node.op_type) });
    }
    points
}

/// Summarises the ONNX file at `path`.
pub fn summarize(path: &Path) -> Result<Summary> {
    let bytes = io::read(path)?;
    let model = super::load(path)?;
    let graph = model.graph.clone().unwrap_or_default();
    let facts = tensor_facts(&model, path)?;
    let init_names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let declared = |v: &pb::ValueInfoProto| facts.get(&v.name).cloned().unwrap_or_else(|| declared_summary(v));
    let mut ops = BTreeMap::<String, usize>::new();
    for n in &graph.node {
        *ops.entry(n.op_type.clone()).or_default() += 1;
    }
    let mut ops: Vec<(String, usize)> = ops.into_iter().collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Summary {
        path: path.display().to_string(),
        sha256: io::sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        ir_version: model.ir_version,
        opset: opset(&model),
        producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
        inputs: graph.input.iter().filter(|i| !init_names.contains(&i.name.as_str())).map(declared).collect(),
        outputs: graph.output.iter().map(declared).collect(),
        parameters: graph.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as u64).sum(),
        initializers: graph.initializer.len(),
        nodes: graph.node.len(),
        ops,
        cut_points: cut_points(&model, &facts),
        blocks: crate::graph::blocks(&model, None),
        metadata: model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
    })
}

/// The type and shape a graph input/output declares.
fn declared_summary(v: &pb::ValueInfoProto) -> TensorSummary {
    use pb::tensor_shape_proto::dimension::Value as D;
    let mut s = TensorSummary { name: v.name.clone(), dtype: "?".into(), shape: vec![] };
    if let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        s.dtype = pb::tensor_proto::DataType::try_from(t.elem_type)
            .map(|d| d.as_str_name().to_lowercase())
            .unwrap_or_else(|_| "?".into());
        s.shape = t
            .shape
            .iter()
            .flat_map(|sh| sh.dim.iter())
            .map(|d| match &d.value {
                Some(D::DimValue(n)) => n.to_string(),
                Some(D::DimParam(p)) => p.clone(),
                None => "?".into(),
            })
            .collect();
    }
    s
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model      {} ({:.1} MB, sha256 {})", self.path, self.bytes as f64 / 1e6, self.sha256)?;
        writeln!(f, "format     ONNX ir {}, opset {}, producer {}", self.ir_version, self.opset, self.producer)?;
        writeln!(f, "inputs")?;
        for t in &self.inputs {
            writeln!(f, "  {t}")?;
        }
        writeln!(f, "outputs")?;
        for t in &self.outputs {
            writeln!(f, "  {t}")?;
        }
        writeln!(f, "parameters {} in {} initializers", group_digits(self.parameters), self.initializers)?;
        let ops: Vec<String> = self.ops.iter().map(|(o, n)| format!("{o} {n}")).collect();
        writeln!(f, "ops        {} nodes: {}", self.nodes, ops.join(", "))?;
        writeln!(f, "cut points")?;
        if self.cut_points.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for (i, c) in self.cut_points.iter().enumerate() {
            let auto = if i == 0 { "  <- --at auto" } else { "" };
            writeln!(f, "  {}  ({}){auto}", c.tensor, c.reason)?;
        }
        let out = self.outputs.first().map_or("", |o| o.name.as_str());
        writeln!(f, "blocks     (unfreeze = N trains what follows boundary N, up to `{out}`)")?;
        if self.blocks.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for b in &self.blocks {
            let after = match (b.parameters, &b.not_trainable) {
                (Some(p), _) => format!("trainable, {} parameters after it", group_digits(p as u64)),
                (None, Some(why)) => format!("not trainable: {why}"),
                (None, None) => "not trainable".to_string(),
            };
            writeln!(f, "  {:>2}  {}  ({} `{}`): {after}", b.number, b.tensor, b.kind.describe(), b.node)?;
        }
        if !self.metadata.is_empty() {
            writeln!(f, "metadata")?;
            for (k, v) in &self.metadata {
                let v: String = v.chars().take(100).collect();
                writeln!(f, "  {k} = {v}")?;
            }
        }
        Ok(())
    }
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_block_boundaries_numbered_from_the_end() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/efficientnet-lite0/model.onnx");
        let summary = summarize(&path).unwrap();
        let text = summary.to_string();
        let line = text.lines().find(|l| l.contains("conv_57_out")).unwrap_or_else(|| panic!("{text}"));
        assert!(line.trim_start().starts_with("1  conv_57_out  (block output `conv_57`): trainable"), "{line}");
        assert!(text.contains(" 2  add_54  (residual Add `add_54`): trainable"), "{text}");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["blocks"][1]["tensor"], "add_54");
        assert_eq!(json["blocks"][1]["kind"], "residual_add");
    }
}
