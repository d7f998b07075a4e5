//! The CLI's contract with a user who gives it the wrong thing: inputs a model cannot take are
//! refused naming the model's task, nothing predicted is an error, error texts say what happened
//! once, and a CPU run with the default `--device auto` prints no CUDA warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::onnx::pb;

use crate::common::*;

/// `tests/fixtures/tiny_cnn.onnx` carrying graft's metadata for `task` (labels cat and dog, and an
/// image model's preprocessing): enough for `predict` to read what the model takes. These tests
/// never get as far as running its graph.
fn model_for(dir: &Path, task: &str) -> PathBuf {
    let mut model = graft::onnx::load(&root().join("tests/fixtures/tiny_cnn.onnx")).unwrap();
    let labels = graft::data::Labels(vec!["cat".into(), "dog".into()]);
    let mut extra = Vec::new();
    if task == "image" {
        let manifest = root().join("models/efficientnet-lite0.toml");
        let m = graft::config::manifest::Manifest::load(s(&manifest)).unwrap();
        let pre = graft::preprocess::ImagePreprocess::from_manifest(m.input.as_ref().unwrap());
        extra.push((graft::export::keys::PREPROCESS, pre.to_json()));
    }
    for (key, value) in graft::export::metadata(task.parse().unwrap(), &labels, &extra) {
        model.metadata_props.push(pb::StringStringEntryProto { key, value });
    }
    let path = dir.join(format!("{task}.onnx"));
    graft::onnx::save(&path, &model).unwrap();
    path
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn predict_refuses_inputs_the_model_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let image = model_for(dir.path(), "image");
    let text = model_for(dir.path(), "text");
    let tabular = model_for(dir.path(), "tabular");
    let photo = shared("data/cats-vs-dogs/train/cat/cat.1.jpg");
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "text\nhello\n").unwrap();

    // --text to an image model used to print nothing and exit 0.
    let err = fails(&["predict", s(&image), "--text", "a cat"]);
    assert!(err.contains("is an image model") && err.contains("not --text"), "{err}");
    let err = fails(&["predict", s(&image), s(&photo), "--text", "a cat"]);
    assert!(err.contains("not --text"), "{err}");
    let err = fails(&["predict", s(&tabular), s(&csv), "--text", "x"]);
    assert!(err.contains("is a tabular model") && err.contains("CSV of numeric features"), "{err}");

    // A text model given an image used to say "CSV parse error ... invalid utf-8".
    let err = fails(&["predict", s(&text), s(&photo)]);
    assert!(err.contains("is a text model") && err.contains("--text") && err.contains("(an image)"), "{err}");
    assert!(!err.contains("utf-8"), "{err}");
    let binary = dir.path().join("photo.bin");
    std::fs::copy(&photo, &binary).unwrap();
    let err = fails(&["predict", s(&text), s(&binary)]);
    assert!(err.contains("is a text model") && err.contains("--text") && err.contains("photo.bin"), "{err}");

    // No inputs at all: the message says what the model takes, --text included for text models.
    let err = fails(&["predict", s(&text)]);
    assert!(err.contains("nothing to predict") && err.contains("--text"), "{err}");
    let err = fails(&["predict", s(&image)]);
    assert!(err.contains("nothing to predict") && err.contains("image files"), "{err}");
}

#[test]
fn predict_fails_when_nothing_could_be_predicted() {
    let dir = tempfile::tempdir().unwrap();
    let image = model_for(dir.path(), "image");
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::write(photos.join("empty.jpg"), b"").unwrap();
    std::fs::write(photos.join("notes.jpg"), b"not a photo").unwrap();
    let (success, stdout, stderr) = run(&["predict", s(&image), s(&photos), "--device", "cpu"], &[]);
    assert!(!success, "every file skipped must not exit 0: {stdout}");
    assert!(stderr.contains("nothing was predicted") && stderr.contains("all 2 images were skipped"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("skipped ")).count(), 2, "each skip is listed: {stderr}");
    let empty = dir.path().join("empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    let err = fails(&["predict", s(&image), s(&empty), "--device", "cpu"]);
    assert!(err.contains("nothing was predicted"), "{err}");
}

#[test]
fn predict_help_covers_text_models() {
    let help = ok(&["predict", "--help"]);
    assert!(help.contains("--text") && help.contains("text models") && help.contains("tokenizer.json"), "{help}");
}

#[test]
fn error_texts_say_what_happened_once() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let err = fails(&["predict", s(&empty), "x.csv"]);
    assert!(err.contains("empty.onnx") && err.contains("empty (0 bytes)"), "{err}");
    assert!(!err.contains("exported by graft"), "{err}");

    let missing = dir.path().join("missing.onnx");
    for args in [vec!["predict", s(&missing), "x.csv"], vec!["inspect", s(&missing)]] {
        let err = fails(&args);
        assert!(err.contains(&format!("no such file: {}", s(&missing))), "{err}");
        assert!(!err.contains("entity not found"), "{err}");
    }

    // A cause is printed once: every stderr line differs from the others in what it says.
    let err = fails(&["fit", s(&dir.path().join("nope.toml")), "--out", s(&dir.path().join("run"))]);
    let said: Vec<&str> =
        err.lines().map(|l| l.trim_start_matches("error: ").trim_start_matches("  caused by: ")).collect();
    for (i, a) in said.iter().enumerate() {
        assert!(said[i + 1..].iter().all(|b| !b.contains(a) && !a.contains(b)), "repeated cause: {err}");
    }

    // ONNX Runtime that cannot be loaded is named once ("ort: ort:" before).
    let tabular = model_for(dir.path(), "tabular");
    let no_ort = [("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")];
    let (success, _, err) = run(&["predict", s(&tabular), "x.csv", "--backend", "ort"], &no_ort);
    assert!(!success && err.contains("ONNX Runtime") && !err.contains("ort: ort:"), "{err}");
    let (_, _, err) = run(&["predict", s(&tabular), s(&dir.path().join("none.csv")), "--backend", "auto"], &no_ort);
    assert!(err.contains("using tract") && !err.contains("ort: ort:"), "{err}");
}

#[test]
fn default_device_prints_no_cuda_warning_on_a_cpu_run() {
    let (success, _, err) = run(
        &["bench", s(&root().join("tests/fixtures/tiny_cnn.onnx")), "--batch", "1", "--iters", "1", "--warmup", "0"],
        &[],
    );
    assert!(success, "{err}");
    assert!(!err.contains("CUDA"), "--device auto falls back silently: {err}");
}

#[test]
fn verify_takes_backend() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.csv");
    synthetic_csv(&csv, 60, 3, &["a", "b"], true);
    let run_dir = dir.path().join("run");
    let set_path = format!("data.path={}", s(&csv));
    let quick = ["--set", "data.label=target", "--set", "train.epochs=3", "--set", "validation.method=none"];
    ok(&[&["fit", "pipelines/iris.toml", "--out", s(&run_dir), "-q", "--set", &set_path][..], &quick].concat());
    let model = run_dir.join("model.onnx");
    let tract = ok(&["verify", s(&model), "--data", s(&csv), "--backend", "tract"]);
    assert!(tract.contains("tract") && tract.contains("verification passed"), "{tract}");
    assert!(!tract.lines().any(|l| l.starts_with("ort ")), "--backend tract checks tract alone: {tract}");
    let both = ok(&["verify", s(&model), "--data", s(&csv)]);
    assert!(both.lines().any(|l| l.starts_with("ort ")), "auto checks ORT too: {both}");
    let err = fails(&["verify", s(&model), "--data", s(&csv), "--backend", "onnx"]);
    assert!(err.contains("expected auto, ort or tract"), "{err}");
}

#[test]
fn fit_takes_backend_for_its_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared("data/spooky-authors/train.csv")).unwrap();
    let csv = dir.path().join("spooky.csv");
    std::fs::write(&csv, text.lines().take(41).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let quick = ["--set", "train.epochs=2", "--set", "validation.method=none", "--device", "cpu"];
    let args = [&["--backend", "tract"][..], &quick].concat();
    let r =
        fit_pipeline("pipelines/who-said-it-bert.toml", &dir.path().join("run"), &csv, &dir.path().join("c"), &args);
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    assert_eq!(r["text"]["embedded_now"], 40);
    let err = fails(&["fit", "pipelines/who-said-it-bert.toml", "--backend", "onnx"]);
    assert!(err.contains("--backend") && err.contains("tract"), "{err}");
    let err = fails(&["fit", "pipelines/who-said-it-bert.toml", "--set", "backbone.backend=\"gpu\""]);
    assert!(err.contains("backbone.backend") && err.contains("expected auto, ort or tract"), "{err}");
}

#[test]
fn predict_takes_a_csv_and_text_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared("data/spooky-authors/train.csv")).unwrap();
    let csv = dir.path().join("spooky.csv");
    std::fs::write(&csv, text.lines().take(61).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let run = dir.path().join("run");
    let quick = ["--set", "train.epochs=1", "--set", "validation.method=none"];
    fit_pipeline("pipelines/who-said-it-lstm.toml", &run, &csv, &dir.path().join("c"), &quick);
    let out = ok(&["predict", s(&run.join("model.onnx")), s(&csv), "--text", "Nevermore.", "--device", "cpu"]);
    let ids: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(ids.len(), 61, "60 CSV rows, then the --text: {out}");
    assert_eq!((ids[0], ids[60]), ("line 2", "text 1"));
}
