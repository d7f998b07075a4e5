use std::path::{Path, PathBuf};

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
    fails(
        &[&["fit", "pipelines/iris.toml", "--out", s(&b), "--force", "--halt-after-epochs", "3"][..], &quick].concat(),
    );
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

/// A copy of `../shared/data/iris/iris.csv` (CRLF line endings kept) with each line (1-based, the
/// header is line 1) passed through `edit`.
fn iris_variant(dir: &Path, name: &str, edit: impl Fn(usize, &str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(shared("data/iris/iris.csv")).unwrap();
    assert!(text.contains("\r\n"), "iris.csv is expected to be a CRLF file");
    let out: Vec<String> = text.split("\r\n").enumerate().map(|(i, l)| edit(i + 1, l)).collect();
    let path = dir.join(name);
    std::fs::write(&path, out.join("\r\n")).unwrap();
    path
}

/// The run folder [`fit_iris`] writes for `csv`: `dir/run-STEM`.
fn run_of(dir: &Path, csv: &Path) -> PathBuf {
    dir.join(format!("run-{}", csv.file_stem().unwrap().to_str().unwrap()))
}

/// `graft fit pipelines/iris.toml` on `csv` with extra `--set`s, quietly, into [`run_of`].
fn fit_iris(dir: &Path, csv: &Path, sets: &[&str]) -> std::process::Output {
    let set_path = format!("data.path={}", s(csv));
    let run = run_of(dir, csv);
    let mut args = vec!["fit", "pipelines/iris.toml", "--out", s(&run), "-q", "--set", &set_path];
    for set in sets {
        args.extend(["--set", set]);
    }
    graft(&args)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// iris.csv is CRLF: a bad value on line 40 is reported on line 40; a header with a column name
/// twice is refused, naming the column.
#[test]
fn csv_errors_name_the_right_line_and_duplicate_columns() {
    let dir = tempfile::tempdir().unwrap();
    let bad = iris_variant(dir.path(), "bad.csv", |n, l| if n == 40 { l.replacen("4.4", "oops", 1) } else { l.into() });
    let out = fit_iris(dir.path(), &bad, &[]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("bad.csv:40: column `sepal_length`: `oops` is not a number"), "{err}");
    assert!(err.contains("data.skip_bad_rows"), "the error points at the option: {err}");

    let dup =
        iris_variant(
            dir.path(),
            "dup.csv",
            |n, l| if n == 1 { l.replace("petal_width", "sepal_width") } else { l.into() },
        );
    let err = stderr_of(&fit_iris(dir.path(), &dup, &[]));
    assert!(err.contains("dup.csv:1: column `sepal_width` appears twice in the header"), "{err}");
    assert!(!run_of(dir.path(), &dup).join("model.onnx").exists());
}

/// `data.skip_bad_rows = true` leaves bad rows out of a tabular CSV, reports each with its line
/// in report.json and on stderr, and trains on the rest.
#[test]
fn skip_bad_rows_leaves_out_and_reports_bad_tabular_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = iris_variant(dir.path(), "some-bad.csv", |n, l| match n {
        40 => l.replacen("4.4", "oops", 1),
        100 => l.rsplit_once(',').unwrap().0.to_string(),
        _ => l.into(),
    });
    let out = fit_iris(dir.path(), &csv, &["data.skip_bad_rows=true", "validation.method=holdout"]);
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    let r = report(&run_of(dir.path(), &csv));
    assert_eq!(r["data"]["rows"], 148);
    let skipped = r["data"]["skipped_rows"].as_array().unwrap();
    let lines: Vec<u64> = skipped.iter().map(|b| b["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [40, 100]);
    assert!(skipped[1]["reason"].as_str().unwrap().contains("ragged row"), "{skipped:?}");
    assert!(err.contains("some-bad.csv:40:") && err.contains("some-bad.csv:100:"), "{err}");
}

/// Features around 1e19 are standardised correctly (f32 accumulation made their std overflow and
/// silently become 1); a column too wide for f32 arithmetic is an error naming it.
#[test]
fn huge_feature_values_are_standardised_or_refused_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let scaled = iris_variant(dir.path(), "scaled.csv", |n, l| match l.split_once(',') {
        Some((first, rest)) if n > 1 => format!("{:e},{rest}", first.parse::<f64>().unwrap() * 1e19),
        _ => l.into(),
    });
    let out = fit_iris(dir.path(), &scaled, &["validation.method=holdout"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let r = report(&run_of(dir.path(), &scaled));
    let acc = r["validation"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "holdout accuracy {acc} with sepal_length x 1e19");
    assert_eq!(r["verification"]["passed"], true);

    let wide = iris_variant(dir.path(), "wide.csv", |n, l| match (n, l.split_once(',')) {
        (2, Some((_, rest))) => format!("3e38,{rest}"),
        (3, Some((_, rest))) => format!("-3e38,{rest}"),
        _ => l.into(),
    });
    let err = stderr_of(&fit_iris(dir.path(), &wide, &[]));
    assert!(err.contains("column `sepal_length`") && err.contains("rescale"), "{err}");
}
