use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run from there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `../shared`, which must exist.
pub fn shared(rel: &str) -> PathBuf {
    let p = root().join("..").join("shared").join(rel);
    assert!(p.exists(), "{} is missing: the tests need ../shared beside the repository", p.display());
    p
}

/// Runs `graft ARGS` from the repository root.
pub fn graft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft")).args(args).current_dir(root()).output().expect("graft runs")
}

/// Runs graft and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = graft(args);
    assert!(
        out.status.success(),
        "graft {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs graft and asserts failure; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = graft(args);
    assert!(!out.status.success(), "graft {args:?} should fail:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Reads a run's report.json.
pub fn report(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap()
}

/// Writes a synthetic classification CSV: `features` Gaussian columns named `f0..`, labels from
/// `label_names` by the sign pattern of the first two features (learnable), column `target`.
pub fn synthetic_csv(path: &Path, rows: usize, features: usize, label_names: &[&str], with_label: bool) {
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let mut text = (0..features).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
    if with_label {
        text.push_str(",target");
    }
    text.push('\n');
    for r in 0..rows {
        let class = r % label_names.len();
        let vals: Vec<String> = (0..features)
            .map(|f| {
                let centre = if f < 2 { (class as f64 + 1.0) * if f == 0 { 1.5 } else { -1.0 } } else { 0.0 };
                format!("{:.4}", centre + 0.5 * next())
            })
            .collect();
        text.push_str(&vals.join(","));
        if with_label {
            text.push(',');
            text.push_str(label_names[class]);
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Runs `graft fit PIPELINE --out RUN -q --set data.path=DATA EXTRA...` with `GRAFT_CACHE=cache`;
/// asserts success and returns the run's report.
pub fn fit_pipeline(pipeline: &str, run: &Path, data: &Path, cache: &Path, extra: &[&str]) -> serde_json::Value {
    let set_data = format!("data.path={}", s(data));
    let mut args = vec!["fit", pipeline, "--out", s(run), "-q", "--set", &set_data];
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(&args)
        .env("GRAFT_CACHE", cache)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    report(run)
}
