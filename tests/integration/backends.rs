//! Backend conformance (tract vs ONNX Runtime), inspect and cut.
//!
//! Fixtures: `tests/fixtures/tiny_cnn.onnx` and `tests/fixtures/tiny_text.onnx`, written by
//! `scripts/make-fixtures.py`; plus `../shared/models/efficientnet-lite0/model.onnx`.

use std::path::Path;

use graft::backend::{Backend, DeviceRequest, OrtBackend, OrtOptions, TractBackend, Value};
use graft::onnx::{self, pb};
use graft::rng::Rng;
use ndarray::ArrayD;

use crate::common::*;

fn random_f32(shape: &[usize], seed: u64) -> Value {
    let mut rng = Rng::new(seed);
    Value::F32(ArrayD::from_shape_fn(shape, |_| rng.normal()))
}

fn cpu() -> OrtOptions {
    OrtOptions { device: DeviceRequest::Cpu, threads: Some(2), ..Default::default() }
}

/// Runs `model` on both engines and returns (tract, ort) outputs named `output`.
fn both(model: &Path, inputs: Vec<(String, Value)>, output: &str) -> (ArrayD<f32>, ArrayD<f32>) {
    let mut tract = TractBackend::load(model).unwrap();
    let mut ort = OrtBackend::load(model, &cpu()).expect("ONNX Runtime: run scripts/setup-ort.sh first");
    assert_eq!(
        tract.inputs().iter().map(|i| &i.name).collect::<Vec<_>>(),
        ort.inputs().iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    (tract.run_output(inputs.clone(), output).unwrap(), ort.run_output(inputs, output).unwrap())
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tract_and_ort_agree_on_the_fixtures_and_efficientnet() {
    let fixtures = root().join("tests/fixtures");
    let (t, o) = both(&fixtures.join("tiny_cnn.onnx"), vec![("image".into(), random_f32(&[3, 3, 8, 8], 1))], "probs");
    assert_eq!(t.shape(), [3, 3]);
    assert!(max_diff(&t, &o) < 1e-4);

    let ids = ArrayD::from_shape_vec(vec![2, 5], vec![1i64, 2, 3, 4, 5, 9, 8, 7, 0, 0]).unwrap();
    let (t, o) = both(&fixtures.join("tiny_text.onnx"), vec![("input_ids".into(), Value::I64(ids))], "logits");
    assert_eq!(t.shape(), [2, 2]);
    assert!(max_diff(&t, &o) < 1e-4);

    let effnet = shared("models/efficientnet-lite0/model.onnx");
    let (t, o) = both(&effnet, vec![("input".into(), random_f32(&[2, 3, 224, 224], 2))], "logits");
    assert_eq!(t.shape(), [2, 1000]);
    let d = max_diff(&t, &o);
    assert!(d < 1e-4, "efficientnet logits differ by {d}");
}

#[test]
fn inspect_names_the_pooled_1280_tensor() {
    let effnet = shared("models/efficientnet-lite0/model.onnx");
    let out = ok(&["inspect", s(&effnet)]);
    let auto = out.lines().find(|l| l.contains("<- --at auto")).unwrap_or_else(|| panic!("{out}"));
    assert!(auto.contains("1280]") && auto.contains("final classifier Gemm"), "{auto}");
    assert!(out.contains("opset 13"), "{out}");
    assert!(out.contains("GlobalAveragePool output"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&effnet), "--json"])).unwrap();
    assert_eq!(json["outputs"][0]["shape"][1], "1000");
    assert!(json["parameters"].as_u64().unwrap() > 4_000_000);
}

/// The original graph with `tensor` added as an extra output.
fn expose(model: &Path, tensor: &str, dims: &[onnx::Dim], dir: &Path) -> std::path::PathBuf {
    let mut m = onnx::load(model).unwrap();
    let vi = onnx::value_info(tensor, pb::tensor_proto::DataType::Float, dims);
    m.graph.as_mut().unwrap().output.push(vi);
    let path = dir.join("exposed.onnx");
    onnx::save(&path, &m).unwrap();
    path
}

#[test]
fn cut_at_auto_equals_the_inner_tensor_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for (model, input, shape, width) in [
        (root().join("tests/fixtures/tiny_cnn.onnx"), "image", vec![2, 3, 8, 8], 4),
        (shared("models/efficientnet-lite0/model.onnx"), "input", vec![2, 3, 224, 224], 1280),
    ] {
        let cut_path = dir.path().join("cut.onnx");
        let out = ok(&["cut", s(&model), "--at", "auto", "-o", s(&cut_path)]);
        let cut = onnx::load(&cut_path).unwrap();
        let g = cut.graph.as_ref().unwrap();
        let at = g.output[0].name.clone();
        assert!(out.contains(&at));
        assert!(!g.node.iter().any(|n| n.op_type == "Gemm"), "the classifier is pruned");
        let original = onnx::load(&model).unwrap();
        assert_eq!(onnx::inspect::opset(&cut), onnx::inspect::opset(&original));
        assert!(g.initializer.len() < original.graph.as_ref().unwrap().initializer.len());

        let exposed = expose(&model, &at, &[onnx::Dim::Symbol("N".into()), onnx::Dim::Fixed(width)], dir.path());
        let x = random_f32(&shape, 3);
        let (inner_t, inner_o) = both(&exposed, vec![(input.into(), x.clone())], &at);
        let (cut_t, cut_o) = both(&cut_path, vec![(input.into(), x)], &at);
        assert_eq!(cut_t.shape(), [2, width as usize]);
        assert!(max_diff(&inner_t, &cut_t) < 1e-5, "tract: cut differs from the inner tensor");
        assert!(max_diff(&inner_o, &cut_o) < 1e-5, "ort: cut differs from the inner tensor");
        assert!(max_diff(&cut_t, &cut_o) < 1e-4);
    }
}

#[test]
fn cut_at_an_unknown_tensor_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&["cut", "tests/fixtures/tiny_cnn.onnx", "--at", "nope", "-o", s(&dir.path().join("x.onnx"))]);
    assert!(err.contains("`nope`"), "{err}");
    assert!(!dir.path().join("x.onnx").exists());
}

#[test]
fn without_ort_tract_still_works_and_the_error_says_how_to_install() {
    let run = |backend: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(["bench", "tests/fixtures/tiny_cnn.onnx", "--iters", "1", "--warmup", "0", "--backend", backend])
            .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
            .current_dir(root())
            .output()
            .unwrap()
    };
    let out = run("tract");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tract on cpu"));
    let out = run("ort");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scripts/setup-ort.sh"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("auto");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("using tract"));
}

#[test]
fn bench_reports_throughput_on_ort() {
    let out = ok(&["bench", "tests/fixtures/tiny_cnn.onnx", "--backend", "ort", "--device", "cpu", "--iters", "3"]);
    assert!(out.contains("ort on cpu: batch 32"), "{out}");
}
