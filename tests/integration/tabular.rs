use crate::common::*;

#[test]
fn help_shows_examples() {
    for cmd in [&["--help"][..], &["fit", "--help"], &["predict", "--help"], &["verify", "--help"]] {
        let out = ok(cmd);
        assert!(out.contains("Example"), "{cmd:?}: {out}");
    }
}

/// The README's main job: 5-fold cross-validated iris, exported and verified.
#[test]
fn iris_cross_validated_exported_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("iris");
    let iris = shared("data/iris/iris.csv");
    let out = ok(&["fit", "pipelines/iris.toml", "--out", s(&run), "-q"]);
    assert!(out.contains("verification passed"), "{out}");
    for f in ["model.onnx", "head.safetensors", "report.json", "curves.png", "confusion.png"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(!run.join("checkpoints").exists(), "checkpoints are removed after a finished run");
    let r = report(&run);
    assert_eq!(r["validation"]["evaluated_on"], "out-of-fold");
    assert_eq!(r["validation"]["folds"].as_array().unwrap().len(), 5);
    let acc = r["validation"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.96, "5-fold accuracy {acc}");
    assert_eq!(r["verification"]["passed"], true);
    assert_eq!(r["validation"]["metrics"]["confusion"].as_array().unwrap().len(), 3);
    assert!(r["history"].as_array().unwrap().len() > 1);

    let v = ok(&["verify", s(&run.join("model.onnx")), "--data", s(&iris)]);
    assert!(v.contains("verification passed"), "{v}");

    let lines = ok(&["predict", s(&run.join("model.onnx")), s(&iris), "--json"]);
    let lines: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[0]["label"], "setosa");
    let p: f64 = lines[0]["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-5);
}

/// The same pipeline on other CSVs: other column names, more features, two or many classes, string
/// or integer labels; then prediction on a CSV without the label column.
#[test]
fn any_numeric_csv_through_set_overrides() {
    let dir = tempfile::tempdir().unwrap();
    for (name, features, labels) in [("binary", 5, &["no", "yes"][..]), ("many", 7, &["3", "10", "7", "1", "5"][..])] {
        let csv = dir.path().join(format!("{name}.csv"));
        synthetic_csv(&csv, 200, features, labels, true);
        let run = dir.path().join(name);
        let set_path = format!("data.path={}", s(&csv));
        ok(&[
            "fit",
            "pipelines/iris.toml",
            "--out",
            s(&run),
            "-q",
            "--set",
            &set_path,
            "--set",
            "data.label=target",
            "--set",
            "validation.method=holdout",
        ]);
        let r = report(&run);
        let got: Vec<String> =
            r["data"]["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
        let mut want: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        want.sort_by_key(|l| l.parse::<i64>().unwrap_or(0));
        if name == "binary" {
            want.sort();
        }
        assert_eq!(got, want, "integer labels sort numerically");
        assert_eq!(r["data"]["features"].as_array().unwrap().len(), features);
        assert!(r["validation"]["metrics"]["accuracy"].as_f64().unwrap() > 0.8, "{name}: {}", r["validation"]);
        assert_eq!(r["verification"]["passed"], true);

        let unlabelled = dir.path().join(format!("{name}-new.csv"));
        synthetic_csv(&unlabelled, 10, features, labels, false);
        let out = ok(&["predict", s(&run.join("model.onnx")), s(&unlabelled), "--top-k", "1"]);
        assert_eq!(out.lines().count(), 10);
        assert!(out.lines().all(|l| l.split('\t').count() == 3), "{out}");
    }
}

/// An interrupted run continued with --resume ends with exactly the uninterrupted run's model.
#[test]
fn interrupted_fit_resumes_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let quick = ["--set", "train.epochs=30", "-q"];
    ok(&[&["fit", "pipelines/iris.toml", "--out", s(&a)][..], &quick].concat());
    let err =
        fails(&[&["fit", "pipelines/iris.toml", "--out", s(&b), "--halt-after-epochs", "40"][..], &quick].concat());
    assert!(err.contains("--resume"), "{err}");
    assert!(!b.join("model.onnx").exists(), "nothing exported before the run finishes");
    ok(&[&["fit", "pipelines/iris.toml", "--out", s(&b), "--resume"][..], &quick].concat());
    assert_eq!(std::fs::read(a.join("model.onnx")).unwrap(), std::fs::read(b.join("model.onnx")).unwrap());
    let without_time = |r: serde_json::Value| {
        let mut h = r["history"].as_array().unwrap().clone();
        h.iter_mut().for_each(|e| e.as_object_mut().unwrap().remove("seconds").map(|_| ()).unwrap());
        h
    };
    assert_eq!(without_time(report(&a)), without_time(report(&b)));
    // A resumed run refuses checkpoints of a different pipeline.
    fails(&[&["fit", "pipelines/iris.toml", "--out", s(&b), "--halt-after-epochs", "3"][..], &quick].concat());
    let err = fails(&["fit", "pipelines/iris.toml", "--out", s(&b), "--resume", "--set", "train.epochs=31", "-q"]);
    assert!(err.contains("pipeline changed"), "{err}");
}

#[test]
fn bad_csv_is_one_clear_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "a,b,target\n1,2,x\n3,oops,y\n").unwrap();
    let run = dir.path().join("run");
    let set_path = format!("data.path={}", s(&csv));
    let err =
        fails(&["fit", "pipelines/iris.toml", "--out", s(&run), "--set", &set_path, "--set", "data.label=target"]);
    assert!(err.contains("bad.csv:3: column `b`: `oops` is not a number"), "{err}");
    assert_eq!(err.matches("oops").count(), 1, "the error is printed once: {err}");
    assert!(!run.join("model.onnx").exists());
}

#[test]
fn pipeline_errors_name_the_line_or_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("p.toml");
    let text = std::fs::read_to_string(root().join("pipelines/iris.toml"))
        .unwrap()
        .replace("epochs = 150", "epochs = 150\nepoch = 3");
    std::fs::write(&toml, &text).unwrap();
    let line = text.lines().position(|l| l == "epoch = 3").unwrap() + 1;
    let err = fails(&["fit", s(&toml)]);
    assert!(err.contains(&format!("p.toml:{line}:")), "{err}");
    let err = fails(&["fit", "pipelines/iris.toml", "--set", "model.hiden=[3]"]);
    assert!(err.contains("--set model.hiden=[3]"), "{err}");
}

#[test]
fn verify_fails_when_the_graph_and_the_native_model_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let iris = shared("data/iris/iris.csv");
    for (run, seed) in [(&a, "train.seed=1"), (&b, "train.seed=2")] {
        ok(&[
            "fit",
            "pipelines/iris.toml",
            "--out",
            s(run),
            "-q",
            "--set",
            seed,
            "--set",
            "validation.method=none",
            "--set",
            "train.epochs=5",
        ]);
    }
    std::fs::copy(b.join("head.safetensors"), a.join("head.safetensors")).unwrap();
    let out = graft(&["verify", s(&a.join("model.onnx")), "--data", s(&iris)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
}
