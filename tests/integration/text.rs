//! "Who said it" on a slice of `../shared/data/spooky-authors/train.csv`: both routes trained,
//! exported, verified, predicted, and run in plain Python onnxruntime with the saved tokenizer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The first `n` rows of the shared CSV (a valid CSV: rows there hold no line breaks).
fn slice(dir: &Path, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(shared("data/spooky-authors/train.csv")).unwrap();
    let path = dir.join("spooky.csv");
    std::fs::write(&path, text.lines().take(n + 1).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    path
}

fn python_check(model: &Path, texts: &[&str]) -> Vec<String> {
    let python = root().join(".venv-test/bin/python");
    assert!(python.exists(), "run scripts/setup-test.sh first (it makes .venv-test)");
    let tokenizer = model.with_file_name("tokenizer.json");
    let out = Command::new(&python)
        .args(["scripts/check_onnx_python.py", "--model", s(model), "--tokenizer", s(&tokenizer), "--texts"])
        .args(texts)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_str().unwrap().to_string())
        .collect()
}

const SAMPLES: [&str; 4] = [
    "It was a dark and stormy night, and the raven sat upon the bust of Pallas.",
    "",
    "Ça ne fait rien — the shoggoth gibbered in the non-Euclidean crypt 🙂",
    "I beheld the wretch, the miserable monster whom I had created; his jaws opened, and he muttered some inarticulate sounds, while a grin wrinkled his cheeks. He might have spoken, but I did not hear; one hand was stretched out, seemingly to detain me, but I escaped and rushed down stairs, again and again and again and again and again and again and again and again.",
];

#[test]
fn lstm_route_trains_exports_and_runs_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = slice(tmp.path(), 900);
    let run = tmp.path().join("lstm");
    let r = fit_pipeline(
        "pipelines/who-said-it-lstm.toml",
        &run,
        &csv,
        &tmp.path().join("cache"),
        // Batches of 32 give 3 epochs on 720 rows enough steps to learn something.
        &["--set", "train.epochs=3", "--set", "train.batch_size=32"],
    );
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    assert_eq!(r["verification"]["engines"].as_array().unwrap().len(), 2, "tract and ort");
    assert!(r["validation"]["metrics"]["accuracy"].as_f64().unwrap() > 0.45, "{}", r["validation"]["metrics"]);
    assert!(r["text"]["vocab_size"].as_u64().unwrap() > 100);
    let meta = graft::export::ModelMeta::read(&run.join("model.onnx")).unwrap();
    assert_eq!(meta.labels.0, ["EAP", "HPL", "MWS"]);
    let sha = graft::io::sha256_hex(&std::fs::read(run.join("tokenizer.json")).unwrap());
    assert_eq!(meta.tokenizer_sha256.as_deref(), Some(sha.as_str()));
    let g = graft::onnx::load(&run.join("model.onnx")).unwrap().graph.unwrap();
    assert!(g.node.iter().any(|n| n.op_type == "LSTM") && g.node.iter().any(|n| n.op_type == "Gather"));

    // predict --text: the empty string, a text over max_length and non-ASCII text all work.
    let model = run.join("model.onnx");
    let mut args = vec!["predict", s(&model), "--json", "--device", "cpu"];
    for t in SAMPLES {
        args.extend(["--text", t]);
    }
    let out = ok(&args);
    let rust: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rust.len(), 4);
    // The same file in plain Python onnxruntime, ids from the saved tokenizer via Python `tokenizers`.
    assert_eq!(python_check(&run.join("model.onnx"), &SAMPLES), rust);

    // verify and predict from a CSV without labels.
    let v = ok(&["verify", s(&run.join("model.onnx")), "--data", s(&csv)]);
    assert!(v.contains("verification passed"), "{v}");
    let out = ok(&["predict", s(&run.join("model.onnx")), s(&csv), "--device", "cpu"]);
    assert_eq!(out.lines().count(), 900);
    assert!(out.starts_with("line 2\t"), "{}", &out[..40]);
}

/// Runs `model` on `engine` for `enc`, optionally right-padded with zeros to `pad_to` columns.
fn probabilities(
    engine: &mut dyn graft::backend::Backend,
    enc: &graft::preprocess::Encoded,
    pad_to: Option<usize>,
) -> ndarray::Array2<f32> {
    let pad = |a: &ndarray::Array2<i64>| {
        let (b, s) = a.dim();
        let mut out = ndarray::Array2::<i64>::zeros((b, pad_to.unwrap_or(s).max(s)));
        out.slice_mut(ndarray::s![.., ..s]).assign(a);
        graft::backend::Value::I64(out.into_dyn())
    };
    let inputs = vec![("input_ids".to_string(), pad(&enc.ids)), ("attention_mask".to_string(), pad(&enc.mask))];
    engine.run_output(inputs, "probabilities").unwrap().into_dimensionality().unwrap()
}

/// A one-epoch LSTM run on 200 sentences, in `DIR/lstm`.
fn one_epoch_lstm(dir: &Path) -> PathBuf {
    let csv = slice(dir, 200);
    let run = dir.join("lstm");
    let extra = ["--set", "train.epochs=1", "--set", "validation.method=none"];
    fit_pipeline("pipelines/who-said-it-lstm.toml", &run, &csv, &dir.join("cache"), &extra);
    run
}

/// The bidirectional LSTM's reverse direction reads each row's own words only: a sentence gives the
/// same probabilities alone (no padding), in a batch padded to its longest member and padded to
/// 128, on tract and on ONNX Runtime.
#[test]
fn lstm_export_is_padding_invariant_on_tract_and_ort() {
    let tmp = tempfile::tempdir().unwrap();
    let run = one_epoch_lstm(tmp.path());
    let model = run.join("model.onnx");
    let encoder = graft::preprocess::TextEncoder::from_file(&run.join("tokenizer.json"), 64).unwrap();
    let texts = [SAMPLES[0], "The raven croaked.", SAMPLES[3], SAMPLES[1]];
    let ort = graft::backend::OrtOptions {
        device: graft::backend::DeviceRequest::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let engines: Vec<Box<dyn graft::backend::Backend>> =
        vec![graft::backend::tract(&model).unwrap(), Box::new(graft::backend::OrtBackend::load(&model, &ort).unwrap())];
    for mut engine in engines {
        let batch = encoder.encode(&texts).unwrap();
        assert!(batch.mask.sum_axis(ndarray::Axis(1)).iter().collect::<std::collections::HashSet<_>>().len() > 2);
        let padded = probabilities(engine.as_mut(), &batch, None);
        let padded_128 = probabilities(engine.as_mut(), &batch, Some(128));
        for (i, text) in texts.iter().enumerate() {
            let alone = probabilities(engine.as_mut(), &encoder.encode(&[text]).unwrap(), None);
            for (how, p) in [("padded to the longest", &padded), ("padded to 128", &padded_128)] {
                let diff = alone.row(0).iter().zip(p.row(i)).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(diff <= 1e-5, "{}: text {i} alone vs {how}: {diff}", engine.name());
            }
        }
    }
}

#[test]
fn lstm_tokenizer_must_match_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = one_epoch_lstm(tmp.path());
    std::fs::write(
        run.join("tokenizer.json"),
        std::fs::read_to_string(run.join("tokenizer.json")).unwrap().replace("[UNK]", "[UNKNOWN]"),
    )
    .unwrap();
    let err = fails(&["predict", s(&run.join("model.onnx")), "--text", "hello"]);
    assert!(err.contains("tokenizer.json") && err.contains("does not match"), "{err}");
}

#[test]
fn encoder_route_exports_encoder_pooling_and_head_as_one_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = slice(tmp.path(), 160);
    let cache = tmp.path().join("cache");
    let run = tmp.path().join("bert");
    let r = fit_pipeline(
        "pipelines/who-said-it-bert.toml",
        &run,
        &csv,
        &cache,
        &["--set", "train.epochs=5", "--set", "backbone.device=cpu"],
    );
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    assert_eq!(r["text"]["embedded_now"], 160);
    let g = graft::onnx::load(&run.join("model.onnx")).unwrap().graph.unwrap();
    let inputs: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(g.output[0].name, "probabilities");
    let out = ok(&[
        "predict",
        s(&run.join("model.onnx")),
        "--json",
        "--device",
        "cpu",
        "--text",
        SAMPLES[0],
        "--text",
        SAMPLES[3],
    ]);
    let rust: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(python_check(&run.join("model.onnx"), &[SAMPLES[0], SAMPLES[3]]), rust);
    // Cached: a second run embeds nothing.
    let r2 = fit_pipeline(
        "pipelines/who-said-it-bert.toml",
        &tmp.path().join("bert2"),
        &csv,
        &cache,
        &["--set", "train.epochs=2", "--set", "backbone.device=cpu"],
    );
    assert_eq!(r2["text"]["embedded_now"], 0);
}
