//! The tail's forward pass against ONNX Runtime on the shipped backbones: the frozen front runs on
//! ORT up to the unfreeze point (and the side inputs), the tail natively from there, and the
//! result must match ORT's own value of the end tensor. Their backward passes are checked along
//! random directions.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use super::ops::check::directional_check;
use super::{Tail, Value};
use crate::backend::{Backend, OrtBackend, OrtOptions};
use crate::onnx::{self, cut::cut, pb};
use crate::rng::Rng;

fn shared_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models").join(name).join("model.onnx")
}

/// Runs `model` cut at `tensor` on ORT with whichever of `feeds` it takes.
fn ort_value(model: &pb::ModelProto, tensor: &str, feeds: &[(String, Value)], what: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("front.onnx");
    onnx::save(&path, &cut(model, tensor, what).unwrap()).unwrap();
    let mut ort =
        OrtBackend::load(&path, &OrtOptions::default()).expect("ONNX Runtime: run scripts/setup-ort.sh first");
    let names: Vec<String> = ort.inputs().iter().map(|i| i.name.clone()).collect();
    let feed = feeds.iter().filter(|(n, _)| names.contains(n)).cloned().collect();
    let mut out = ort.run(feed).unwrap();
    out.remove(0).1
}

/// Feeds the tail what ORT computes for its start tensor and side inputs; returns the largest
/// absolute difference from ORT's end tensor, and the tail.
fn compare(path: &Path, start: &str, end: &str, feeds: &[(String, Value)]) -> (f32, Tail) {
    let model = onnx::load(path).unwrap();
    let mut tail = Tail::new(&model, start, Some(end)).unwrap();
    let x = match feeds.iter().find(|(n, _)| n == start) {
        Some((_, v)) => v.clone(),
        None => ort_value(&model, start, feeds, path),
    };
    let x = x.into_f32(start).unwrap();
    let side: Vec<(String, Value)> =
        tail.side_inputs().iter().map(|s| (s.to_string(), ort_value(&model, s, feeds, path))).collect();
    let want = ort_value(&model, end, feeds, path).into_f32(end).unwrap();
    let got = tail.forward(x, side, false).unwrap();
    assert_eq!(got.shape(), want.shape());
    let diff = got.iter().zip(want.iter()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    (diff, tail)
}

#[test]
fn minilm_last_two_layers_match_ort() {
    let (n, s) = (3, 9);
    let mut rng = Rng::new(4);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n, s]), |_| 1000 + rng.below(20000) as i64);
    // Row 1 has four padding tokens: the additive mask matters.
    let mask = ArrayD::from_shape_fn(IxDyn(&[n, s]), |ix| i64::from(!(ix[0] == 1 && ix[1] >= 5)));
    let feeds = vec![
        ("input_ids".to_string(), Value::I64(ids)),
        ("attention_mask".to_string(), Value::I64(mask)),
        ("token_type_ids".to_string(), Value::I64(ArrayD::zeros(IxDyn(&[n, s])))),
    ];
    // layernormalization_152 ends layer 3: the tail is layers 4 and 5.
    let (diff, tail) =
        compare(&shared_model("all-minilm-l6-v2"), "layernormalization_152", "last_hidden_state", &feeds);
    assert!(diff <= 1e-4, "tail vs ORT: max |diff| {diff}");
    assert_eq!(tail.side_inputs(), vec!["unsqueeze_12"], "the additive attention mask [N,1,1,S]");
    let names = tail.param_names();
    assert_eq!(names.len(), 32, "16 tensors per layer: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("encoder.layer.4.") || n.starts_with("encoder.layer.5.")), "{names:?}");
    assert_eq!(tail.param_count(), 2 * 1_774_464);
}

#[test]
fn efficientnet_last_block_matches_ort() {
    let mut rng = Rng::new(5);
    let image = ArrayD::from_shape_fn(IxDyn(&[2, 3, 224, 224]), |_| rng.normal());
    let feeds = vec![("input".to_string(), Value::F32(image))];
    // add_54 is the input of the last block (conv_55..conv_57), then the 1x1 head conv and the pool.
    let (diff, tail) = compare(&shared_model("efficientnet-lite0"), "add_54", "features", &feeds);
    assert!(diff <= 1e-4, "tail vs ORT: max |diff| {diff}");
    assert!(tail.side_inputs().is_empty());
    let ops: Vec<&str> = tail.nodes().iter().map(|(_, op)| *op).collect();
    assert_eq!(ops, ["Conv", "Clip", "Conv", "Clip", "Conv", "Conv", "Clip", "GlobalAveragePool", "Flatten"]);
    assert_eq!(
        tail.param_names(),
        ["conv_55_W", "conv_55_B", "conv_56_W", "conv_56_B", "conv_57_W", "conv_57_B", "conv_58_W", "conv_58_B"]
    );
}

/// "Unfreeze all": every encoder layer after the embeddings' LayerNormalization.
#[test]
fn minilm_all_six_layers_match_ort() {
    let (n, s) = (2, 7);
    let ids = ArrayD::from_shape_fn(IxDyn(&[n, s]), |ix| 2000 + (ix[0] * 31 + ix[1] * 7) as i64);
    let mask = ArrayD::from_shape_fn(IxDyn(&[n, s]), |ix| i64::from(ix[0] == 0 || ix[1] < 3));
    let feeds = vec![
        ("input_ids".to_string(), Value::I64(ids)),
        ("attention_mask".to_string(), Value::I64(mask)),
        ("token_type_ids".to_string(), Value::I64(ArrayD::zeros(IxDyn(&[n, s])))),
    ];
    let (diff, tail) = compare(&shared_model("all-minilm-l6-v2"), "layernormalization_8", "last_hidden_state", &feeds);
    assert!(diff <= 1e-4, "tail vs ORT: max |diff| {diff}");
    assert_eq!(tail.param_names().len(), 6 * 16);
}

/// The whole network from the image, including strided depthwise convolutions with asymmetric
/// pads and the classifier's Gemm.
#[test]
fn efficientnet_whole_network_matches_ort() {
    let mut rng = Rng::new(7);
    let image = ArrayD::from_shape_fn(IxDyn(&[1, 3, 224, 224]), |_| rng.normal());
    let feeds = vec![("input".to_string(), Value::F32(image))];
    let (diff, tail) = compare(&shared_model("efficientnet-lite0"), "input", "logits", &feeds);
    assert!(diff <= 1e-4, "tail vs ORT on 1000 logits: max |diff| {diff}");
    assert_eq!(tail.nodes().len(), 49 + 33 + 9 + 3);
}

/// The backward pass of the shipped tails, along random directions (input and all parameters).
#[test]
fn minilm_last_two_layers_gradients() {
    let model = onnx::load(&shared_model("all-minilm-l6-v2")).unwrap();
    let mut tail = Tail::new(&model, "layernormalization_152", None).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 5, 384]), |ix| ((ix[1] * 384 + ix[2]) as f32 * 0.37).sin());
    let mask = ArrayD::from_shape_fn(IxDyn(&[2, 1, 1, 5]), |ix| if ix[0] == 1 && ix[3] > 2 { -1e4 } else { 0.0 });
    let side = vec![("unsqueeze_12".to_string(), Value::F32(mask))];
    let (ex, ep) = directional_check(&mut tail, x, side, 1e-3);
    assert!(ex < 1e-2 && ep < 1e-2, "relative errors: input {ex}, parameters {ep}");
}

/// With ReLU6 as identity (its kinks make finite differences of a whole network noisy; `Clip`
/// has its own check), the rest of the block's backward pass is smooth enough to compare.
#[test]
fn efficientnet_last_block_gradients() {
    let mut model = onnx::load(&shared_model("efficientnet-lite0")).unwrap();
    for n in model.graph.as_mut().unwrap().node.iter_mut().filter(|n| n.op_type == "Clip") {
        n.op_type = "Identity".into();
        n.input.truncate(1);
    }
    let mut tail = Tail::new(&model, "add_54", Some("features")).unwrap();
    let x = crate::graph::ops::check::param(&[2, 192, 7, 7], 8);
    let (ex, ep) = directional_check(&mut tail, x, Vec::new(), 1e-2);
    assert!(ex < 1e-2 && ep < 1e-2, "relative errors: input {ex}, parameters {ep}");
}

/// Seconds per training step (forward + backward) of the shipped tails, on random inputs:
/// `REPS=20 cargo test --release --lib graph::ort_tests::bench -- --ignored --nocapture` (3
/// steps each unless `REPS` says; `ONLY=minilm` or `ONLY=effnet` runs one).
#[test]
#[ignore]
fn bench_training_steps() {
    let time = |tail: &mut Tail, x: ArrayD<f32>, side: Vec<(String, Value)>| {
        let t = std::time::Instant::now();
        let reps: usize = std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        for _ in 0..reps {
            let y = tail.forward(x.clone(), side.clone(), true).unwrap();
            tail.backward(ArrayD::ones(y.raw_dim()), false).unwrap();
        }
        t.elapsed().as_secs_f64() / reps as f64
    };
    let mut rng = Rng::new(6);
    let only = std::env::var("ONLY").unwrap_or_default();
    if only != "effnet" {
        let model = onnx::load(&shared_model("all-minilm-l6-v2")).unwrap();
        let mut tail = Tail::new(&model, "layernormalization_152", None).unwrap();
        let (n, s) = (32, 40);
        let x = ArrayD::from_shape_fn(IxDyn(&[n, s, 384]), |_| rng.normal());
        let mask = vec![("unsqueeze_12".to_string(), Value::F32(ArrayD::zeros(IxDyn(&[n, 1, 1, s]))))];
        eprintln!("MiniLM layers 4-5, batch {n} x {s} tokens: {:.3} s/step", time(&mut tail, x, mask));
    }
    if only == "minilm" {
        return;
    }
    let model = onnx::load(&shared_model("efficientnet-lite0")).unwrap();
    let mut tail = Tail::new(&model, "add_54", Some("features")).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[32, 192, 7, 7]), |_| rng.normal());
    eprintln!("EfficientNet-Lite0 last block + head conv, batch 32: {:.3} s/step", time(&mut tail, x, Vec::new()));
}
