use std::collections::HashSet;

use ndarray::ArrayD;

use super::pb;
use pb::tensor_proto::DataType;

/// A dimension of a graph input or output: fixed, or a named symbol such as the batch size.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named size, such as `N`.
    Symbol(String),
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    /// An integer attribute.
    Int(&'static str, i64),
    /// A float attribute.
    Float(&'static str, f32),
    /// A list of integers.
    Ints(&'static str, Vec<i64>),
    /// A list of floats.
    Floats(&'static str, Vec<f32>),
    /// A string attribute.
    String(&'static str, String),
}

/// Builds an ONNX graph node by node, giving every tensor and node a unique name.
#[derive(Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    names: HashSet<String>,
    /// Prefix of every generated name (keeps a head's names apart from a backbone's).
    prefix: String,
    /// Named tensors layers may need besides their input (e.g. `mask`).
    context: std::collections::HashMap<String, String>,
}

impl GraphBuilder {
    /// An empty graph whose generated names start with `prefix`.
    pub fn new(prefix: &str) -> Self {
        GraphBuilder { prefix: prefix.to_string(), ..Default::default() }
    }

    /// Continues an existing graph (e.g. a cut backbone): its nodes, initializers and inputs are
    /// kept, its outputs dropped, and every name in it is reserved.
    pub fn from_graph(graph: pb::GraphProto, prefix: &str) -> Self {
        let mut names = HashSet::new();
        for n in &graph.node {
            names.insert(n.name.clone());
            names.extend(n.input.iter().chain(&n.output).cloned());
        }
        names.extend(graph.initializer.iter().map(|t| t.name.clone()));
        names.extend(graph.input.iter().chain(&graph.value_info).map(|v| v.name.clone()));
        let graph = pb::GraphProto { output: Vec::new(), ..graph };
        GraphBuilder { graph, names, prefix: prefix.to_string(), context: Default::default() }
    }

    /// Makes tensor `tensor` available to layers as `key` (e.g. the attention mask as `mask`).
    pub fn set_context(&mut self, key: &str, tensor: &str) {
        self.context.insert(key.to_string(), tensor.to_string());
    }

    /// The tensor registered as `key`.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context.get(key).map(String::as_str)
    }

    /// Whether `name` is already used.
    pub fn is_used(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Renames graph input `from` to `to` everywhere it is read.
    pub fn rename_input(&mut self, from: &str, to: &str) {
        for i in self.graph.input.iter_mut().filter(|i| i.name == from) {
            i.name = to.to_string();
        }
        for n in &mut self.graph.node {
            for i in n.input.iter_mut().filter(|i| *i == from) {
                *i = to.to_string();
            }
        }
        self.names.insert(to.to_string());
    }

    /// Removes graph input `name` (it is about to be computed by new nodes instead).
    pub fn remove_input(&mut self, name: &str) -> Option<pb::ValueInfoProto> {
        let pos = self.graph.input.iter().position(|i| i.name == name)?;
        Some(self.graph.input.remove(pos))
    }

    /// Inserts a graph input first (before the backbone's own).
    pub fn input_first(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) {
        self.names.insert(name.to_string());
        self.graph.input.insert(0, value_info(name, elem_type, dims));
    }

    /// Moves the nodes added since `mark` (see [`GraphBuilder::mark`]) to the front of the graph, so
    /// that preprocessing nodes precede the backbone's in topological order.
    pub fn move_to_front(&mut self, mark: usize) {
        let tail = self.graph.node.split_off(mark);
        let head = std::mem::take(&mut self.graph.node);
        self.graph.node = tail.into_iter().chain(head).collect();
    }

    /// The current number of nodes, for [`GraphBuilder::move_to_front`].
    pub fn mark(&self) -> usize {
        self.graph.node.len()
    }

    /// A name not yet used in this graph, derived from `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        let base = format!("{}{hint}", self.prefix);
        let mut name = base.clone();
        let mut i = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    }

    /// Reserves names already present (e.g. a backbone's tensors) so generated names avoid them.
    pub fn reserve<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.names.extend(names.into_iter().map(str::to_string));
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) {
        self.names.insert(name.to_string());
        self.graph.input.push(value_info(name, elem_type, dims));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem_type, dims));
    }

    /// Adds an f32 constant; returns its unique name.
    pub fn initializer(&mut self, hint: &str, value: &ArrayD<f32>) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: value.shape().iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: value.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Replaces the value of the existing f32 initializer `name`, keeping its name and shape (a
    /// fine-tuned backbone's trained weights). Returns false when there is no such f32
    /// initializer or its shape differs.
    pub fn set_initializer(&mut self, name: &str, value: &ArrayD<f32>) -> bool {
        let dims: Vec<i64> = value.shape().iter().map(|&d| d as i64).collect();
        let Some(t) = self.graph.initializer.iter_mut().find(|t| t.name == name) else { return false };
        if t.data_type != DataType::Float as i32 || t.dims != dims {
            return false;
        }
        t.float_data.clear();
        t.raw_data = value.iter().flat_map(|v| v.to_le_bytes()).collect();
        true
    }

    /// Adds an i64 constant of shape `dims`; returns its unique name.
    pub fn initializer_i64(&mut self, hint: &str, values: &[i64], dims: &[i64]) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a single-output node; returns the output's generated name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, attrs, &[&out]);
        out
    }

    /// Adds a node whose outputs have the given names ("" for an omitted optional output).
    pub fn node_to(&mut self, op: &str, inputs: &[&str], attrs: &[Attr], outputs: &[&str]) {
        let name = self.fresh(&format!("{op}_node"));
        self.names.extend(outputs.iter().filter(|o| !o.is_empty()).map(|o| o.to_string()));
        self.graph.node.push(pb::NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs.iter().map(attribute).collect(),
            ..Default::default()
        });
    }

    /// The graph built so far.
    pub fn into_graph(self, name: &str) -> pb::GraphProto {
        pb::GraphProto { name: name.to_string(), ..self.graph }
    }

    /// Wraps the graph into a model with the given opset and metadata.
    pub fn into_model(self, opset: i64, metadata: &[(String, String)]) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: 8,
            producer_name: "graft".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
            graph: Some(self.into_graph("graft")),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto { key: k.clone(), value: v.clone() })
                .collect(),
            ..Default::default()
        }
    }
}

/// A typed tensor value-info (graph input or output).
pub fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Symbol(s) => Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(a: &Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType as T;
    let mut p = pb::AttributeProto::default();
    let (name, ty) = match a {
        Attr::Int(n, v) => {
            p.i = *v;
            (n, T::Int)
        }
        Attr::Float(n, v) => {
            p.f = *v;
            (n, T::Float)
        }
        Attr::Ints(n, v) => {
            p.ints = v.clone();
            (n, T::Ints)
        }
        Attr::Floats(n, v) => {
            p.floats = v.clone();
            (n, T::Floats)
        }
        Attr::String(n, v) => {
            p.s = v.clone().into_bytes();
            (n, T::String)
        }
    };
    p.name = name.to_string();
    p.r#type = ty as i32;
    p
}
