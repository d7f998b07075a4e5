//! [`Tail::new`]: finds the tail's nodes, parameters, constants and side inputs, folds what is
//! constant, and builds every op before any work starts.

use std::collections::{HashMap, HashSet};

use super::ops::{self, Op};
use super::value::{from_proto, Value};
use super::{Step, Tail};
use crate::onnx::{inspect::opset, pb};
use crate::{Error, Result};

fn node_what(n: &pb::NodeProto) -> String {
    format!("node `{}` ({})", n.name, n.op_type)
}

impl Tail {
    /// The tail of `model` from tensor `start` (the unfreeze point) to tensor `end` (default: the
    /// graph's first output).
    ///
    /// Errors, each naming what is wrong: `start` or `end` is not a tensor of the graph, `end`
    /// does not depend on `start` (nothing left to train), a node's op or attribute is not
    /// supported, or a constant cannot be decoded or folded.
    pub fn new(model: &pb::ModelProto, start: &str, end: Option<&str>) -> Result<Tail> {
        let graph = model.graph.as_ref().ok_or_else(|| Error::onnx("model", "no graph"))?;
        let opset = opset(model);
        let end = match end {
            Some(e) => e.to_string(),
            None => graph.output.first().map(|o| o.name.clone()).ok_or_else(|| Error::onnx("model", "no output"))?,
        };
        let producer: HashMap<&str, usize> =
            graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
        let inits: HashMap<&str, &pb::TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let is_input = graph.input.iter().any(|i| i.name == start) && !inits.contains_key(start);
        if !producer.contains_key(start) && !is_input {
            return Err(Error::onnx(
                format!("unfreeze point `{start}`"),
                "no node produces this tensor and it is not a graph input",
            ));
        }
        if !producer.contains_key(end.as_str()) {
            return Err(Error::onnx(format!("tail end `{end}`"), "no node produces this tensor"));
        }
        if start == end {
            return Err(Error::onnx(format!("unfreeze point `{start}`"), "it is the output itself: no tail is left"));
        }

        // Every node the end needs, walking back and stopping at the start tensor.
        let mut wanted = vec![false; graph.node.len()];
        let mut stack = vec![end.as_str()];
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(t) = stack.pop() {
            if t == start || !seen.insert(t) {
                continue;
            }
            if let Some(&p) = producer.get(t) {
                wanted[p] = true;
                stack.extend(graph.node[p].input.iter().filter(|s| !s.is_empty()).map(String::as_str));
            }
        }
        // Keep those that depend on the start, or that are computed from constants alone.
        let mut dep: HashSet<&str> = HashSet::from([start]);
        let mut constant: HashSet<&str> = inits.keys().copied().collect();
        let mut in_tail = vec![false; graph.node.len()];
        for (i, n) in graph.node.iter().enumerate().filter(|(i, _)| wanted[*i]) {
            let ins = || n.input.iter().filter(|s| !s.is_empty());
            if ins().any(|s| dep.contains(s.as_str())) {
                dep.extend(n.output.iter().map(String::as_str));
                in_tail[i] = true;
            } else if ins().all(|s| constant.contains(s.as_str())) {
                constant.extend(n.output.iter().map(String::as_str));
                in_tail[i] = true;
            }
        }
        if !dep.contains(end.as_str()) {
            return Err(Error::onnx(
                format!("unfreeze point `{start}`"),
                format!("the output `{end}` does not depend on it: no tail is left to train"),
            ));
        }
        let tail_nodes: Vec<&pb::NodeProto> =
            graph.node.iter().zip(&in_tail).filter(|(_, t)| **t).map(|(n, _)| n).collect();
        let built: Vec<Box<dyn Op>> = tail_nodes
            .iter()
            .map(|n| ops::build(n, opset).map_err(|m| Error::onnx(node_what(n), m)))
            .collect::<Result<_>>()?;
        for n in &tail_nodes {
            if let Some(o) = n.output.iter().skip(1).find(|o| !o.is_empty() && tail_reads(&tail_nodes, o)) {
                return Err(Error::onnx(node_what(n), format!("its extra output `{o}` is not supported")));
            }
        }

        // Parameters: f32, more than one element, read only by tail nodes through differentiable inputs.
        let frozen_reads: HashSet<&str> = graph
            .node
            .iter()
            .zip(&in_tail)
            .filter(|(_, t)| !**t)
            .flat_map(|(n, _)| n.input.iter().map(String::as_str))
            .collect();
        let mut trainable: HashMap<&str, bool> = HashMap::new();
        for (n, op) in tail_nodes.iter().zip(&built) {
            for (i, s) in n.input.iter().enumerate() {
                if let Some(t) = inits.get(s.as_str()) {
                    let ok = t.data_type == pb::tensor_proto::DataType::Float as i32
                        && t.dims.iter().product::<i64>() > 1
                        && !frozen_reads.contains(s.as_str())
                        && op.differentiable(i);
                    *trainable.entry(s.as_str()).or_insert(true) &= ok;
                }
            }
        }

        let mut tail = Tail {
            steps: Vec::new(),
            names: Vec::new(),
            start: 0,
            end: 0,
            side: Vec::new(),
            fixed: Vec::new(),
            live: Vec::new(),
            moved: Vec::new(),
            params: Vec::new(),
            grads: Vec::new(),
        };
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut slot = |tail: &mut Tail, name: &str| -> usize {
            *slots.entry(name.to_string()).or_insert_with(|| {
                tail.names.push(name.to_string());
                tail.fixed.push(None);
                tail.names.len() - 1
            })
        };
        tail.start = slot(&mut tail, start);
        // Initializers in file order, so the parameters keep the model's order.
        for t in &graph.initializer {
            if trainable.contains_key(t.name.as_str()) {
                let s = slot(&mut tail, &t.name);
                tail.fixed[s] = Some(from_proto(t).map_err(|m| Error::onnx(format!("initializer `{}`", t.name), m))?);
                if trainable[t.name.as_str()] {
                    tail.params.push(s);
                }
            }
        }
        let mut live_slot: Vec<bool> = Vec::new();
        let mut grad_slot: Vec<bool> = Vec::new();
        let grow = |v: &mut Vec<bool>, n: usize| v.resize(n.max(v.len()), false);
        grow(&mut live_slot, tail.names.len());
        live_slot[tail.start] = true;
        grow(&mut grad_slot, tail.names.len());
        grad_slot[tail.start] = true;
        for &p in &tail.params {
            live_slot[p] = true;
            grad_slot[p] = true;
        }
        let mut produced: HashSet<&str> = HashSet::new();
        for (n, op) in tail_nodes.into_iter().zip(built) {
            let inputs: Vec<Option<usize>> =
                n.input.iter().map(|s| (!s.is_empty()).then(|| slot(&mut tail, s))).collect();
            let output = slot(&mut tail, &n.output[0]);
            grow(&mut live_slot, tail.names.len());
            grow(&mut grad_slot, tail.names.len());
            let is_live = inputs.iter().flatten().any(|&s| live_slot[s]);
            for (s, name) in inputs.iter().zip(&n.input) {
                let Some(s) = *s else { continue };
                let known = tail.fixed[s].is_some() || live_slot[s] || produced.contains(name.as_str());
                if !known {
                    // Read from the frozen part (or a graph input): fed with each batch.
                    tail.side.push(s);
                    live_slot[s] = true;
                }
            }
            produced.insert(n.output[0].as_str());
            if !is_live && inputs.iter().flatten().all(|&s| tail.fixed[s].is_some()) {
                let xs: Vec<Option<&Value>> = inputs.iter().map(|s| s.and_then(|s| tail.fixed[s].as_ref())).collect();
                let v = op.forward(&xs).map_err(|m| Error::onnx(node_what(n), format!("folding a constant: {m}")))?;
                tail.fixed[output] = Some(v);
                continue;
            }
            let want: Vec<bool> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| s.is_some_and(|s| grad_slot[s]) && op.differentiable(i))
                .collect();
            live_slot[output] = true;
            grad_slot[output] = want.iter().any(|w| *w);
            let (name, op_type) = (n.name.clone(), n.op_type.clone());
            tail.steps.push(Step { name, op_type, op, inputs, want, output, moves: false });
        }
        tail.end = slot(&mut tail, &end);
        super::fuse::bias(&mut tail);
        super::fuse::gelu(&mut tail);
        super::fuse::moves(&mut tail);
        tail.live = vec![None; tail.names.len()];
        tail.moved = vec![None; tail.names.len()];
        tail.grads = tail
            .params
            .iter()
            .map(|&s| match &tail.fixed[s] {
                Some(Value::F32(a)) => ndarray::ArrayD::zeros(a.raw_dim()),
                _ => ndarray::ArrayD::zeros(ndarray::IxDyn(&[0])),
            })
            .collect();
        Ok(tail)
    }
}

fn tail_reads(nodes: &[&pb::NodeProto], tensor: &str) -> bool {
    nodes.iter().any(|n| n.input.iter().any(|i| i == tensor))
}
