//! Export of a fine-tuned backbone: the original graph node for node, with only the tail's
//! initializer values changed, then the head; tract and ONNX Runtime agree with the native
//! tail + head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use crate::backend::{Backend, OrtBackend, OrtOptions, TractBackend, Value};
use crate::config::manifest::{Layout, ResizeMode};
use crate::graph::TailLayer;
use crate::nn::{Ctx, Init, Layer, LayerSpec, Sequential};
use crate::onnx::{self, cut::cut, pb, GraphBuilder};
use crate::preprocess::ImagePreprocess;
use crate::rng::Rng;

fn shared_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models").join(name).join("model.onnx")
}

/// Runs `model` cut at `tensor` on ONNX Runtime with whichever of `feeds` it takes.
fn ort_front(model: &pb::ModelProto, tensor: &str, feeds: &[(String, Value)], what: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("front.onnx");
    onnx::save(&path, &cut(model, tensor, what).unwrap()).unwrap();
    let mut ort = OrtBackend::load(&path, &OrtOptions::default()).expect("ONNX Runtime: run scripts/setup-ort.sh");
    let names: Vec<String> = ort.inputs().iter().map(|i| i.name.clone()).collect();
    ort.run(feeds.iter().filter(|(n, _)| names.contains(n)).cloned().collect()).unwrap().remove(0).1
}

/// `output` of the model file at `path` on ONNX Runtime and on tract.
fn both_engines(path: &Path, feeds: &[(String, Value)], output: &str) -> [ArrayD<f32>; 2] {
    let mut ort = OrtBackend::load(path, &OrtOptions::default()).unwrap();
    let mut tract = TractBackend::load(path).unwrap();
    [ort.run_output(feeds.to_vec(), output).unwrap(), tract.run_output(feeds.to_vec(), output).unwrap()]
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Moves every tail parameter (layer 0) away from the backbone's value, as training would.
fn perturb_tail(model: &mut Sequential) {
    let mut rng = Rng::new(9);
    for (name, p) in model.params() {
        if name.starts_with("layers.0.") {
            p.value.mapv_inplace(|v| v * (1.0 + 0.1 * rng.normal()) + 0.01 * rng.normal());
        }
    }
}

/// `exported` holds `original`'s nodes first, equal in everything but the renamed inputs, and
/// every initializer of `original` with the same name, type and shape; the values differ exactly
/// for `trained`, which hold the given values.
fn assert_node_for_node(
    original: &[pb::NodeProto],
    inits: &[pb::TensorProto],
    exported: &pb::ModelProto,
    renamed: (&str, &str),
    trained: &HashMap<String, ArrayD<f32>>,
) {
    let graph = exported.graph.as_ref().unwrap();
    assert!(graph.node.len() >= original.len());
    for (k, (a, b)) in original.iter().zip(&graph.node).enumerate() {
        let mut a = a.clone();
        a.input.iter_mut().filter(|i| **i == renamed.0).for_each(|i| *i = renamed.1.to_string());
        assert_eq!(&a, b, "node {k} `{}` ({}) differs", a.name, a.op_type);
    }
    let out: HashMap<&str, &pb::TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut changed = 0;
    for t in inits {
        let e = out.get(t.name.as_str()).unwrap_or_else(|| panic!("initializer `{}` is missing", t.name));
        assert_eq!((e.dims.clone(), e.data_type), (t.dims.clone(), t.data_type), "`{}`", t.name);
        match trained.get(&t.name) {
            None => assert_eq!(*e, t, "`{}` is frozen: it must be unchanged", t.name),
            Some(want) => {
                let got = crate::graph::value::from_proto(e).unwrap().into_f32(&t.name).unwrap();
                let before = crate::graph::value::from_proto(t).unwrap().into_f32(&t.name).unwrap();
                assert_eq!(&got, want, "`{}` holds the trained values", t.name);
                assert_ne!(got, before, "`{}` was trained", t.name);
                changed += 1;
            }
        }
    }
    assert_eq!(changed, trained.len(), "every trained tensor is an initializer of the backbone");
}

/// The trained tail values by initializer name (the first layer's parameters are named by them).
fn trained_values(model: &mut Sequential) -> HashMap<String, ArrayD<f32>> {
    model.state().into_iter().filter_map(|(n, a)| n.strip_prefix("layers.0.").map(|n| (n.to_string(), a))).collect()
}

#[test]
fn efficientnet_export_is_the_backbone_node_for_node_and_matches_native() {
    let path = shared_model("efficientnet-lite0");
    let original = onnx::load(&path).unwrap();
    let backbone = cut(&original, "features", &path).unwrap();
    let nodes = &original.graph.as_ref().unwrap().node;
    assert_eq!(nodes.last().unwrap().op_type, "Gemm", "the cut drops the classifier only");
    let kept = &nodes[..nodes.len() - 1];

    let spec = TailLayer::open(&path, "add_54", Some("features"), None).unwrap().spec();
    let specs = [spec, LayerSpec::Dense { inputs: 1280, units: 3, init: Init::Glorot }];
    let mut model = Sequential::new(&specs, &mut Rng::new(2));
    perturb_tail(&mut model);
    let pre = ImagePreprocess {
        size: 224,
        resize: ResizeMode::Stretch,
        mean: [0.5; 3],
        std: [0.5; 3],
        layout: Layout::Nchw,
        dtype: crate::backend::Dtype::F32,
    };
    let exported = super::image_model(&backbone, "input", &model, 3, &pre, false, &[]).unwrap();
    let trained = trained_values(&mut model);
    assert_eq!(trained.len(), 8, "conv_55..conv_58, weights and biases");
    let inits = &original.graph.as_ref().unwrap().initializer;
    let backbone_inits: Vec<pb::TensorProto> = inits.iter().filter(|t| !t.name.starts_with("fc_")).cloned().collect();
    assert_node_for_node(kept, &backbone_inits, &exported, ("input", super::IMAGE_INPUT), &trained);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.onnx");
    onnx::save(&file, &exported).unwrap();
    let mut rng = Rng::new(3);
    let image = ArrayD::from_shape_fn(IxDyn(&[2, 3, 224, 224]), |_| rng.normal());
    let front = ort_front(&original, "add_54", &[("input".into(), Value::F32(image.clone()))], &path);
    let native = model.predict_proba(front.into_f32("add_54").unwrap()).into_dyn();
    for (engine, got) in ["ORT", "tract"].iter().zip(both_engines(
        &file,
        &[(super::IMAGE_INPUT.into(), Value::F32(image))],
        super::OUTPUT,
    )) {
        let d = max_diff(&native, &got);
        assert!(d <= 1e-4, "{engine} vs native: {d}");
    }
}

#[test]
fn minilm_export_is_the_backbone_node_for_node_and_matches_native() {
    let path = shared_model("all-minilm-l6-v2");
    let original = onnx::load(&path).unwrap();
    let graph = original.graph.clone().unwrap();
    let spec = TailLayer::open(&path, "layernormalization_152", None, None).unwrap().spec();
    let specs = [spec, LayerSpec::MaskedMean, LayerSpec::Dense { inputs: 384, units: 3, init: Init::Glorot }];
    let mut model = Sequential::new(&specs, &mut Rng::new(2));
    perturb_tail(&mut model);
    let trained = trained_values(&mut model);
    assert_eq!(trained.len(), 32, "layers 4 and 5");
    let exported = super::finetuned_encoder_model(&original, &model, 3, &[]).unwrap();
    assert_node_for_node(&graph.node, &graph.initializer, &exported, ("", ""), &trained);
    let mut g = GraphBuilder::from_graph(graph, "head/");
    let e = model.layers()[0].to_onnx(&mut g, "layernormalization_187").err().unwrap().to_string();
    assert!(e.contains("ends at `last_hidden_state`"), "{e}");

    let (n, s) = (2, 7);
    let mut rng = Rng::new(4);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n, s]), |_| 1000 + rng.below(20000) as i64);
    // Row 1 has three padding tokens: the mask reaches the attention and the pooling.
    let mask = ArrayD::from_shape_fn(IxDyn(&[n, s]), |ix| i64::from(!(ix[0] == 1 && ix[1] >= 4)));
    let feeds = vec![
        ("input_ids".to_string(), Value::I64(ids)),
        ("attention_mask".to_string(), Value::I64(mask)),
        ("token_type_ids".to_string(), Value::I64(ArrayD::zeros(IxDyn(&[n, s])))),
    ];
    let x = ort_front(&original, "layernormalization_152", &feeds, &path).into_f32("x").unwrap();
    let side = ort_front(&original, "unsqueeze_12", &feeds, &path);
    let mut rng = Rng::new(0);
    let mut ctx = Ctx::new(false, &mut rng);
    ctx.side = vec![("unsqueeze_12".into(), side)];
    ctx.lengths = Some(vec![7, 4]);
    let logits = model.forward(x, &mut ctx).into_dimensionality::<ndarray::Ix2>().unwrap();
    let native = crate::nn::loss::softmax(logits.view()).into_dyn();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.onnx");
    onnx::save(&file, &exported).unwrap();
    for (engine, got) in ["ORT", "tract"].iter().zip(both_engines(&file, &feeds, super::OUTPUT)) {
        let d = max_diff(&native, &got);
        assert!(d <= 1e-4, "{engine} vs native: {d}");
    }
}
