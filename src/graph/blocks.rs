//! Block boundaries of a backbone: the tensors where fine-tuning can start (`backbone.unfreeze = N`
//! starts at boundary `N`, numbered from the end).
//!
//! A boundary is a tensor that, when it is computed, is the only value the rest of the network
//! needs besides side tensors (those that do not depend on every graph input it depends on, such
//! as MiniLM's attention mask). Among those:
//! - transformers (graphs with `LayerNormalization` and `Softmax`): the output of a
//!   `LayerNormalization` that an attention block (a `Softmax`) follows before the next such
//!   normalisation: the embeddings' normalisation and the one that ends each layer;
//! - CNNs: where a residual `Add` joins (two computed inputs), or a block's output: a `Conv` that no
//!   activation follows (a linear bottleneck, read by the next block).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::Tail;
use crate::config::Unfreeze;
use crate::onnx::pb;

/// Why a tensor is a block boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryKind {
    /// A residual `Add` joins the skip connection.
    ResidualAdd,
    /// A block's output: a `Conv` read by the next block without an activation.
    BlockOutput,
    /// The `LayerNormalization` that ends a transformer layer (or the embeddings).
    LayerEnd,
}

impl BoundaryKind {
    /// Words for `graft inspect`.
    pub fn describe(self) -> &'static str {
        match self {
            BoundaryKind::ResidualAdd => "residual Add",
            BoundaryKind::BlockOutput => "block output",
            BoundaryKind::LayerEnd => "layer end",
        }
    }
}

/// A place where the backbone can be unfrozen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Boundary {
    /// 1 for the last boundary, counting up towards the input: `unfreeze = N` trains what
    /// follows boundary `N`.
    pub number: usize,
    /// The tensor (the tail's start).
    pub tensor: String,
    /// The node that computes it.
    pub node: String,
    /// What kind of boundary it is.
    pub kind: BoundaryKind,
    /// Trainable scalars after the boundary, when everything after it is trainable
    /// ([`Tail::new`] accepts it up to the graph's first output); `None` otherwise.
    pub parameters: Option<usize>,
    /// Why the rest is not trainable (the error of [`Tail::new`]), when it is not.
    pub not_trainable: Option<String>,
}

/// Ops that make a `Conv`'s output a block's interior rather than its output.
const ACTIVATIONS: &[&str] = &[
    "Relu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Mul",
    "Tanh",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "BatchNormalization",
];

/// The block boundaries of `model` before tensor `end` (default: the graph's first output), last
/// (number 1) first. Each is checked by building the tail after it up to `end`.
pub fn blocks(model: &pb::ModelProto, end: Option<&str>) -> Vec<Boundary> {
    let Some(graph) = model.graph.as_ref() else { return Vec::new() };
    let end_node = end.and_then(|e| graph.node.iter().position(|n| n.output.iter().any(|o| o == e)));
    let nodes = &graph.node[..end_node.map_or(graph.node.len(), |i| i + 1)];
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).filter(|n| !inits.contains(n)).collect();

    // The graph inputs each tensor depends on, and where each computed tensor is made and last read.
    let mut deps: HashMap<&str, HashSet<usize>> =
        inputs.iter().enumerate().map(|(k, n)| (*n, HashSet::from([k]))).collect();
    let mut made: HashMap<&str, usize> = HashMap::new();
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut d = HashSet::new();
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            d.extend(deps.get(x.as_str()).into_iter().flatten().copied());
            last.insert(x, i);
            readers.entry(x).or_default().push(i);
        }
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            deps.insert(o, d.clone());
            made.insert(o, i);
        }
    }
    for o in &graph.output {
        last.insert(&o.name, nodes.len());
    }
    if let Some(e) = end {
        last.insert(e, nodes.len());
    }

    // Tensors that are, when made, the only non-side value still needed.
    let is_cut = |i: usize, t: &str| -> bool {
        let Some(dt) = deps.get(t).filter(|d| !d.is_empty()) else { return false };
        if last.get(t).is_none_or(|&l| l >= nodes.len()) {
            return false;
        }
        let live = inputs.iter().copied().chain(made.iter().filter(|(_, &m)| m <= i).map(|(t, _)| *t));
        live.filter(|s| *s != t && last.get(s).is_some_and(|&l| l > i))
            .all(|s| !deps.get(s).is_some_and(|ds| ds.is_superset(dt)))
    };
    let computed = |x: &str| !x.is_empty() && !inits.contains(x) && deps.get(x).is_some_and(|d| !d.is_empty());

    let has = |op: &str| nodes.iter().any(|n| n.op_type == op);
    let mut found: Vec<(usize, BoundaryKind)> = Vec::new();
    if has("LayerNormalization") && has("Softmax") {
        let norms: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].op_type == "LayerNormalization" && is_cut(i, &nodes[i].output[0]))
            .collect();
        for (k, &i) in norms.iter().enumerate() {
            let next = norms.get(k + 1).copied().unwrap_or(nodes.len());
            if nodes[i + 1..next].iter().any(|n| n.op_type == "Softmax") {
                found.push((i, BoundaryKind::LayerEnd));
            }
        }
    } else {
        for (i, n) in nodes.iter().enumerate() {
            let Some(t) = n.output.first() else { continue };
            let kind = match n.op_type.as_str() {
                "Add" if n.input.iter().filter(|x| computed(x)).count() >= 2 => BoundaryKind::ResidualAdd,
                "Conv"
                    if readers
                        .get(t.as_str())
                        .is_some_and(|r| r.iter().all(|&j| !ACTIVATIONS.contains(&nodes[j].op_type.as_str()))) =>
                {
                    BoundaryKind::BlockOutput
                }
                _ => continue,
            };
            if is_cut(i, t) {
                found.push((i, kind));
            }
        }
    }

    let total = found.len();
    found
        .into_iter()
        .enumerate()
        .rev()
        .map(|(k, (i, kind))| {
            let tensor = nodes[i].output[0].clone();
            let (parameters, not_trainable) = match Tail::new(model, &tensor, end) {
                Ok(tail) => (Some(tail.param_count()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Boundary { number: total - k, tensor, node: nodes[i].name.clone(), kind, parameters, not_trainable }
        })
        .collect()
}

/// The tensor where `unfreeze = n` starts (boundary `n` of [`blocks`] before `end`; for
/// `"all"` the first boundary, the highest number), for the backbone named `what` in errors.
///
/// Errors: `n` is 0 (nothing to unfreeze: the frozen route), the backbone has no boundaries or
/// fewer than `n`, or what follows boundary `n` is not trainable (the reason is given).
pub fn unfreeze_point(model: &pb::ModelProto, end: Option<&str>, n: Unfreeze, what: &str) -> crate::Result<Boundary> {
    let bad = |m: String| crate::Error::config("backbone.unfreeze", m);
    if n == Unfreeze::Blocks(0) {
        return Err(bad("0 unfreezes nothing (the frozen backbone); give 1 or more, or \"all\"".into()));
    }
    let all = blocks(model, end);
    let n = match n {
        Unfreeze::Blocks(n) => n,
        Unfreeze::All(_) => all.iter().map(|b| b.number).max().unwrap_or(0),
    };
    if all.is_empty() {
        return Err(bad(format!(
            "{what} has no block boundaries graft recognises; name a tensor with backbone.unfreeze_from"
        )));
    }
    let count = all.len();
    let b = all.into_iter().find(|b| b.number == n).ok_or_else(|| {
        bad(format!("{n} blocks asked, but {what} has {count} block boundaries (see `graft inspect`)"))
    })?;
    match &b.not_trainable {
        Some(why) => Err(bad(format!("what follows boundary {n} (`{}`) of {what} cannot be trained: {why}", b.tensor))),
        None => Ok(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::check::{param, Case};
    use crate::onnx::Attr;
    use std::path::Path;

    fn shared(name: &str) -> pb::ModelProto {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models").join(name).join("model.onnx");
        crate::onnx::load(&path).unwrap()
    }

    #[test]
    fn efficientnet_lite0_boundaries() {
        let b = blocks(&shared("efficientnet-lite0"), None);
        let first: Vec<(usize, &str, BoundaryKind)> =
            b.iter().take(4).map(|b| (b.number, b.tensor.as_str(), b.kind)).collect();
        assert_eq!(
            first,
            [
                (1, "conv_57_out", BoundaryKind::BlockOutput),
                (2, "add_54", BoundaryKind::ResidualAdd),
                (3, "add_50", BoundaryKind::ResidualAdd),
                (4, "add_46", BoundaryKind::ResidualAdd),
            ],
            "the last block's output feeds the 1x1 head conv; the residual joins before it"
        );
        assert!(b.iter().any(|b| b.tensor == "conv_42_out" && b.kind == BoundaryKind::BlockOutput));
        assert!(b.iter().all(|b| b.tensor != "conv_53_out"), "inside a residual block: the skip is live");
        assert!(b.iter().all(|b| b.not_trainable.is_none()), "{b:?}");
        assert!(b.windows(2).all(|w| w[0].number + 1 == w[1].number));
        assert!(b[0].parameters < b[1].parameters, "{:?} {:?}", b[0].parameters, b[1].parameters);
    }

    /// Up to the backbone's cut tensor: the classifier after it is not counted, and boundaries
    /// at or after it are not listed.
    #[test]
    fn boundaries_before_a_cut_tensor() {
        let model = shared("efficientnet-lite0");
        let b = blocks(&model, Some("features"));
        assert_eq!(b[0].tensor, "conv_57_out");
        assert_eq!(b[0].parameters, Some(410_880), "conv_58 only (320 * 1280 + 1280), not the classifier");
        let b = blocks(&model, Some("add_50"));
        let first: Vec<&str> = b.iter().take(2).map(|b| b.tensor.as_str()).collect();
        assert_eq!(first, ["add_46", "conv_42_out"]);
        assert!(b.iter().all(|b| b.not_trainable.is_none()), "{b:?}");
    }

    #[test]
    fn unfreeze_counts_blocks_from_the_end_with_clear_errors() {
        let model = shared("all-minilm-l6-v2");
        let b = unfreeze_point(&model, None, Unfreeze::Blocks(2), "MiniLM").unwrap();
        assert_eq!(b.tensor, "layernormalization_152");
        let e = unfreeze_point(&model, None, Unfreeze::Blocks(7), "MiniLM").unwrap_err().to_string();
        assert!(e.contains("backbone.unfreeze") && e.contains("7 blocks asked") && e.contains("has 6"), "{e}");
        let e = unfreeze_point(&model, None, Unfreeze::Blocks(0), "MiniLM").unwrap_err().to_string();
        assert!(e.contains("0 unfreezes nothing"), "{e}");
        let all = unfreeze_point(&model, None, Unfreeze::All(crate::config::AllBlocks::All), "MiniLM").unwrap();
        assert_eq!((all.number, all.tensor.as_str()), (6, "layernormalization_8"), "all = after the embeddings");

        let mut c = Case::new(&[2, 3]);
        let y = c.node("Relu", &["x"], &[]);
        let (plain, _) = c.model(&y);
        let e = unfreeze_point(&plain, None, Unfreeze::Blocks(1), "plain.onnx").unwrap_err().to_string();
        assert!(e.contains("plain.onnx has no block boundaries") && e.contains("unfreeze_from"), "{e}");

        let mut c = Case::new(&[2, 4, 3, 3]);
        let w = c.init(&param(&[4, 4, 1, 1], 1));
        let a = c.node("Conv", &["x", &w], &[Attr::Ints("kernel_shape", vec![1, 1])]);
        let r = c.node("Add", &[&a, "x"], &[]);
        let y = c.node("Cos", &[&r], &[]);
        let (model, _) = c.model(&y);
        let e = unfreeze_point(&model, None, Unfreeze::Blocks(1), "cos.onnx").unwrap_err().to_string();
        assert!(e.contains("cannot be trained") && e.contains("Cos"), "{e}");
    }

    #[test]
    fn minilm_has_six_layer_boundaries() {
        let b = blocks(&shared("all-minilm-l6-v2"), None);
        let tensors: Vec<&str> = b.iter().map(|b| b.tensor.as_str()).collect();
        assert_eq!(
            tensors,
            [
                "layernormalization_187",
                "layernormalization_152",
                "layernormalization_117",
                "layernormalization_82",
                "layernormalization_47",
                "layernormalization_8",
            ],
            "the ends of layers 4..0, then the embeddings' normalisation"
        );
        assert!(b.iter().all(|b| b.kind == BoundaryKind::LayerEnd));
        assert_eq!(b[1].parameters, Some(2 * 1_774_464), "unfreeze = 2: layers 4 and 5");
    }

    #[test]
    fn boundary_with_an_unsupported_op_after_it_says_why() {
        let mut c = Case::new(&[2, 4, 3, 3]);
        let w = c.init(&param(&[4, 4, 1, 1], 1));
        let a = c.node("Conv", &["x", &w], &[Attr::Ints("kernel_shape", vec![1, 1])]);
        let r = c.node("Add", &[&a, "x"], &[]);
        let y = c.node("Cos", &[&r], &[]);
        let (model, _) = c.model(&y);
        let b = blocks(&model, None);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!((b[0].tensor.as_str(), b[0].kind), (r.as_str(), BoundaryKind::ResidualAdd));
        assert!(b[0].parameters.is_none());
        assert!(b[0].not_trainable.as_deref().is_some_and(|m| m.contains("Cos")), "{b:?}");
    }
}
