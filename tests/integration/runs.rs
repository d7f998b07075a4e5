//! A run folder's life through `graft fit`: refusing to overwrite, resuming (and refusing to resume
//! from other data), interruption by a signal, failures that leave nothing behind, divergence, and
//! outputs that are identical byte for byte between identical runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A synthetic two-class CSV in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    csv: PathBuf,
}

impl Fixture {
    fn new(rows: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("data.csv");
        synthetic_csv(&csv, rows, 4, &["a", "b"], true);
        Fixture { dir, csv }
    }

    fn run(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `fit pipelines/iris.toml` on the CSV into `run`, without validation folds, `epochs` epochs.
    fn args(&self, run: &Path, epochs: usize, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["fit", "pipelines/iris.toml", "--out", s(run), "-q"].map(String::from).to_vec();
        for set in [
            format!("data.path={}", s(&self.csv)),
            "data.label=target".into(),
            "validation.method=none".into(),
            format!("train.epochs={epochs}"),
            "train.early_stopping.patience=0".into(),
        ] {
            args.extend(["--set".into(), set]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn partial(run: &Path) -> PathBuf {
    run.with_file_name(format!("{}.partial", run.file_name().unwrap().to_str().unwrap()))
}

/// Section 3: a fit into a finished run is refused unless --force; --resume on it has nothing to do.
#[test]
fn finished_run_is_kept_unless_forced_and_cannot_be_resumed() {
    let fx = Fixture::new(100);
    let run = fx.run("run");
    ok(&strs(&fx.args(&run, 3, &[])));
    let before = std::fs::read(run.join("report.json")).unwrap();

    let err = fails(&strs(&fx.args(&run, 3, &[])));
    assert!(err.contains("already holds a run") && err.contains("--force"), "{err}");
    let err = fails(&strs(&fx.args(&run, 3, &["--resume"])));
    assert!(err.contains("nothing to resume: it is a finished run"), "{err}");
    assert_eq!(std::fs::read(run.join("report.json")).unwrap(), before, "the finished run is untouched");
    assert!(!partial(&run).exists());

    ok(&strs(&fx.args(&run, 4, &["--force"])));
    assert_eq!(report(&run)["history"].as_array().unwrap().len(), 4, "replaced by the new run");
    assert!(!partial(&run).exists());

    let err = fails(&strs(&fx.args(&fx.run("never"), 3, &["--resume"])));
    assert!(err.contains("nothing to resume: no interrupted run"), "{err}");
}

/// 2.14: two identical runs write identical files.
#[test]
fn identical_runs_write_identical_files() {
    let fx = Fixture::new(100);
    let (a, b) = (fx.run("a"), fx.run("b"));
    ok(&strs(&fx.args(&a, 3, &[])));
    ok(&strs(&fx.args(&b, 3, &[])));
    for f in ["head.safetensors", "model.onnx"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
}

/// 2.12 and 2.14: an interrupted run stays in OUT.partial (OUT appears only when the run is
/// complete), and after --resume the report's times add up.
#[test]
fn interrupted_run_is_built_aside_and_resumed_times_add_up() {
    let fx = Fixture::new(1000);
    let run = fx.run("run");
    let wide = ["--set", "model.hidden=[128, 128]"];
    let err = fails(&strs(&fx.args(&run, 20, &[&wide[..], &["--halt-after-epochs", "19"]].concat())));
    assert!(err.contains("--resume"), "{err}");
    assert!(!run.exists(), "nothing at OUT before the run is complete");
    assert!(partial(&run).join("checkpoints/final.safetensors").is_file());

    let err = fails(&strs(&fx.args(&run, 20, &wide)));
    assert!(err.contains("interrupted run") && err.contains("--resume"), "{err}");

    ok(&strs(&fx.args(&run, 20, &[&wide[..], &["--resume"]].concat())));
    assert!(!partial(&run).exists());
    let t = &report(&run)["timing"];
    let (train, total) = (t["train_seconds"].as_f64().unwrap(), t["total_seconds"].as_f64().unwrap());
    assert!(train <= total, "train_seconds {train} > total_seconds {total}");
    assert!(t["earlier_train_seconds"].as_f64().unwrap() > 0.0, "{t}");
    assert_eq!(report(&run)["history"].as_array().unwrap().len(), 20);
}

/// 2.3: --resume refuses checkpoints when the data changed, and continues once it is restored.
#[test]
fn resume_refuses_changed_data() {
    let fx = Fixture::new(100);
    let run = fx.run("run");
    fails(&strs(&fx.args(&run, 6, &["--halt-after-epochs", "3"])));
    let original = std::fs::read_to_string(&fx.csv).unwrap();
    let shuffled: String = original
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ if l.ends_with(",a") => format!("{},b\n", &l[..l.len() - 2]),
            _ => format!("{},a\n", &l[..l.len() - 2]),
        })
        .collect();
    std::fs::write(&fx.csv, shuffled).unwrap();
    let err = fails(&strs(&fx.args(&run, 6, &["--resume"])));
    assert!(err.contains("cannot resume") && err.contains("data.csv changed"), "{err}");
    assert!(partial(&run).join("checkpoints/final.safetensors").is_file(), "the checkpoints are kept");

    std::fs::write(&fx.csv, original).unwrap();
    ok(&strs(&fx.args(&run, 6, &["--resume"])));
    assert_eq!(report(&run)["history"].as_array().unwrap().len(), 6);
}

/// 2.12: a data or config error, or a diverging run, leaves neither OUT nor OUT.partial.
#[test]
fn failed_runs_leave_nothing_behind() {
    let fx = Fixture::new(100);
    let run = fx.run("run");
    let bad = fx.dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b,target\n1,2,x\n3,oops,y\n").unwrap();
    let bad_data = format!("data.path={}", s(&bad));
    let err = fails(&strs(&fx.args(&run, 3, &["--set", &bad_data])));
    assert!(err.contains("oops"), "{err}");
    assert!(!run.exists() && !partial(&run).exists(), "a data error left files behind");

    let err = fails(&strs(&fx.args(&run, 3, &["--set", "train.class_weight=[1.0, 2.0, 3.0]"])));
    assert!(err.contains("class_weight"), "{err}");
    assert!(!run.exists() && !partial(&run).exists(), "a config error left files behind");

    let missing = format!("data.path={}", s(&fx.dir.path().join("missing.csv")));
    let err = fails(&strs(&fx.args(&run, 3, &["--set", &missing])));
    assert!(err.contains("missing.csv"), "{err}");
    assert!(!run.exists() && !partial(&run).exists(), "a missing file left files behind");
}

/// 2.13: Adam with an absurd learning rate is stopped with a clear error, not exported.
#[test]
fn exploding_loss_is_an_error() {
    let fx = Fixture::new(100);
    let run = fx.run("run");
    let err = fails(&strs(&fx.args(&run, 20, &["--set", "train.optimizer.lr=1e6"])));
    assert!(err.contains("diverged") && err.contains("lower train.optimizer.lr"), "{err}");
    assert!(!run.exists() && !partial(&run).exists());
    let err = fails(&["fit", "pipelines/iris.toml", "--out", s(&run), "-q", "--set", "train.optimizer.lr=1e6"]);
    assert!(err.contains("fold-1: training diverged at epoch 1"), "{err}");
}

/// Starts `graft ARGS` with stderr captured.
fn spawn(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `file` exists.
fn wait_for(file: &Path) {
    let started = Instant::now();
    while !file.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "{} was never written", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until process `pid` catches signal number `sig` (Linux: its `SigCgt` mask in /proc; elsewhere
/// half a second).
fn wait_for_handler(pid: u32, sig: u32) {
    let started = Instant::now();
    let caught = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
        Some(u64::from_str_radix(mask.trim(), 16).ok()? >> (sig - 1) & 1 == 1)
    };
    loop {
        match caught() {
            Some(true) => return,
            None if !Path::new("/proc/self/status").exists() => return std::thread::sleep(Duration::from_millis(500)),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(60), "graft never installed its signal handler");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends signal `name` (`INT`, `TERM`) to `child` and returns its exit code and stderr.
fn interrupt(child: std::process::Child, name: &str) -> (Option<i32>, String) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// 2.6: SIGINT (then SIGTERM on the resumed run) stops after the epoch with a checkpoint and a
/// non-zero exit that says how to resume; --resume then finishes the run.
#[test]
fn signals_stop_with_a_checkpoint_and_resume_finishes() {
    let fx = Fixture::new(1000);
    let run = fx.run("run");
    let args = |extra: &[&str]| fx.args(&run, 100, &[&["--set", "model.hidden=[128, 128]"][..], extra].concat());
    let checkpoint = partial(&run).join("checkpoints/final.safetensors");
    for (sig, code, extra) in [("INT", 130i32, &[][..]), ("TERM", 143, &["--resume"][..])] {
        let child = spawn(&args(extra));
        wait_for_handler(child.id(), code as u32 - 128);
        if sig == "INT" {
            // Let training start: the interruption then comes during an epoch.
            wait_for(&partial(&run).join("checkpoints/pipeline.json"));
            std::thread::sleep(Duration::from_millis(150));
        }
        let (status, err) = interrupt(child, sig);
        assert_eq!(status, Some(code), "SIG{sig}: {err}");
        assert!(err.contains("interrupted after epoch"), "{err}");
        assert!(err.contains(&format!("--out {} ", s(&run))) && err.contains("--resume"), "no resume command: {err}");
        assert!(checkpoint.is_file(), "SIG{sig}: no checkpoint");
        assert!(!run.exists());
    }
    let (_, meta) = graft::nn::sequential::load_tensors(&checkpoint).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["graft.loop_state"]).unwrap();
    assert!((1..100).contains(&state["epoch"].as_u64().unwrap()), "{}", state["epoch"]);
    ok(&strs(&args(&["--resume"])));
    assert_eq!(report(&run)["history"].as_array().unwrap().len(), 100);
    assert!(!partial(&run).exists());
}
