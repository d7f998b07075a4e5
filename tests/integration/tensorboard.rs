//! `graft fit --tensorboard DIR`: event files that TensorBoard's own reader (the `tensorboard`
//! package's EventAccumulator, in .venv-test) reads, with every epoch's scalars of every fit.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// `{run folder: {tag: [[step, value], ...]}}` as TensorBoard reads `logdir`.
fn read_with_tensorboard(logdir: &Path) -> Value {
    let python = root().join(".venv-test/bin/python");
    assert!(python.exists(), "run scripts/setup-test.sh first (it makes .venv-test with tensorboard)");
    let out =
        Command::new(&python).args(["scripts/read_tensorboard.py", s(logdir)]).current_dir(root()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `(step, value)` pairs of `tag` in run folder `run`.
fn scalars(runs: &Value, run: &str, tag: &str) -> Vec<(u64, f64)> {
    let series = runs[run][tag].as_array().unwrap_or_else(|| panic!("no `{tag}` in `{run}`: {runs}"));
    series.iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn tensorboard_reads_every_epoch_of_every_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, logs) = (tmp.path().join("run"), tmp.path().join("logs"));
    let args = ["--set", "train.epochs=6", "--set", "validation.folds=3", "--tensorboard", s(&logs)];
    let mut all = vec!["fit", "pipelines/iris.toml", "--out", s(&run), "-q"];
    all.extend(args);
    ok(&all);
    let r = report(&run);
    let runs = read_with_tensorboard(&logs);
    let folds = r["validation"]["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3);
    for f in folds {
        let name = format!("fold-{}", f["fold"]);
        let epochs = f["epochs"].as_u64().unwrap();
        let steps: Vec<u64> = (1..=epochs).collect();
        for (side, tags) in [
            ("train", &["epoch_loss", "epoch_accuracy", "epoch_learning_rate"][..]),
            ("validation", &["epoch_loss", "epoch_accuracy"][..]),
        ] {
            for tag in tags {
                let got = scalars(&runs, &format!("{name}/{side}"), tag);
                assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), steps, "{name}/{side} {tag}");
            }
        }
        let lr = scalars(&runs, &format!("{name}/train"), "epoch_learning_rate");
        assert!(lr.iter().all(|p| close(p.1, 0.01)), "the pipeline's learning rate: {lr:?}");
    }
    // The final model (no validation rows): its train scalars are report.json's history.
    let history = r["history"].as_array().unwrap();
    let loss = scalars(&runs, "final/train", "epoch_loss");
    let acc = scalars(&runs, "final/train", "epoch_accuracy");
    assert_eq!(loss.len(), history.len());
    for ((h, l), a) in history.iter().zip(&loss).zip(&acc) {
        assert_eq!(h["epoch"].as_u64().unwrap(), l.0);
        assert!(close(l.1, h["loss"].as_f64().unwrap()) && close(a.1, h["accuracy"].as_f64().unwrap()), "{h} {l:?}");
    }
    assert!(runs.get("final/validation").is_none(), "no validation side without validation rows");
}

#[test]
fn tensorboard_from_the_pipeline_file_is_resolved_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("pipelines/iris.toml")).unwrap().replace(
        "path = \"../../shared/data/iris/iris.csv\"",
        &format!("path = \"{}\"", s(&shared("data/iris/iris.csv"))),
    );
    let text = text.replace("[train]\n", "[train]\ntensorboard = \"tb\"\n");
    let pipeline = tmp.path().join("iris.toml");
    std::fs::write(&pipeline, text).unwrap();
    let run = tmp.path().join("run");
    let args = ["--set", "train.epochs=3", "--set", "validation.method=\"holdout\""];
    let mut all = vec!["fit", s(&pipeline), "--out", s(&run), "-q"];
    all.extend(args);
    ok(&all);
    let runs = read_with_tensorboard(&tmp.path().join("tb"));
    for side in ["train", "validation"] {
        let loss = scalars(&runs, &format!("holdout/{side}"), "epoch_loss");
        assert_eq!(loss.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3], "{side}");
    }
    let val = report(&run)["history"].as_array().unwrap().clone();
    let got = scalars(&runs, "holdout/validation", "epoch_accuracy");
    for (h, g) in val.iter().zip(&got) {
        assert!(close(g.1, h["val_accuracy"].as_f64().unwrap()));
    }
}
