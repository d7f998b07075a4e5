//! Relative paths: those written in a pipeline or a manifest resolve against that file's folder, so
//! the shipped files work from any current folder; those given on the command line (`--set`, the
//! data argument) resolve against the current folder.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

/// Runs `graft ARGS` from `cwd` with the feature cache in `cache`.
fn graft_in(cwd: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .current_dir(cwd)
        .env("GRAFT_CACHE", cache)
        .output()
        .expect("graft runs")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_shipped_pipeline_runs_from_another_folder() {
    shared("data/iris/iris.csv");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = root().join("pipelines/iris.toml");
    let args =
        ["fit", s(&pipeline), "--out", "run", "-q", "--set", "validation.method=holdout", "--set", "train.epochs=5"];
    let out = graft_in(dir.path(), &dir.path().join("cache"), &args);
    assert_ok(&out, "graft fit <repo>/pipelines/iris.toml from a temporary folder");
    let report = report(&dir.path().join("run"));
    assert_eq!(report["data"]["rows"], 150, "{report}");
}

#[test]
fn a_path_given_with_set_is_relative_to_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_csv(&dir.path().join("mine.csv"), 60, 3, &["a", "b"], true);
    let pipeline = root().join("pipelines/iris.toml");
    let args = [
        "fit",
        s(&pipeline),
        "--out",
        "run",
        "-q",
        "--set",
        "data.path=mine.csv",
        "--set",
        "data.label=target",
        "--set",
        "validation.method=holdout",
        "--set",
        "train.epochs=3",
    ];
    let out = graft_in(dir.path(), &dir.path().join("cache"), &args);
    assert_ok(&out, "graft fit --set data.path=mine.csv");
    assert_eq!(report(&dir.path().join("run"))["data"]["rows"], 60);
}

#[test]
fn a_manifest_source_is_relative_to_the_manifest() {
    let photos = shared("data/cats-vs-dogs/train");
    let dir = tempfile::tempdir().unwrap();
    let manifest = root().join("models/efficientnet-lite0.toml");
    let cat = photos.join("cat");
    let args = ["embed", s(&manifest), s(&cat), "--out", "f.safetensors", "--limit", "2", "--device", "cpu", "-q"];
    let out = graft_in(dir.path(), &dir.path().join("cache"), &args);
    assert_ok(&out, "graft embed <repo>/models/efficientnet-lite0.toml from a temporary folder");
    assert!(dir.path().join("f.safetensors").is_file());
}
