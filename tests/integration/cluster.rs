//! Many workers on one cache folder, as a Kubernetes Indexed Job or a Slurm array runs them:
//! separate `graft embed --shard` processes, one killed mid-run and retried, concurrent
//! compaction; then the whole dataset is served from the cache, bit for bit what one process
//! computes without it. Backbone: `tests/fixtures/tiny_cnn.onnx` cut at its pooled features.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use graft::features::FeatureFile;

use crate::common::*;

/// `n` small distinct PNGs in `dir/a` and `dir/b` (labels alternate).
fn images(dir: &Path, n: usize) {
    let mut state = 7u64;
    for i in 0..n {
        let class = if i % 2 == 0 { "a" } else { "b" };
        std::fs::create_dir_all(dir.join(class)).unwrap();
        let img = image::RgbImage::from_fn(12, 10, |x, y| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (state >> 56) as u8 / 4;
            let base = if class == "a" { 40 } else { 170 };
            image::Rgb([base + noise, (x * 20) as u8 + noise, (y * 20) as u8])
        });
        img.save(dir.join(class).join(format!("{i:04}.png"))).unwrap();
    }
}

/// A manifest for the tiny fixture CNN, cut at the tensor that feeds its classifier (4 floats).
fn manifest(dir: &Path) -> PathBuf {
    let model = root().join("tests/fixtures/tiny_cnn.onnx");
    let text = format!(
        "name = \"tiny\"\nkind = \"image\"\nsource = \"{}\"\ncut = \"auto\"\n\n[input]\nname = \"image\"\nsize = 8\n\
         layout = \"NCHW\"\nresize = \"stretch\"\nmean = [127.0, 127.0, 127.0]\nstd = [128.0, 128.0, 128.0]\n",
        s(&model)
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `graft embed` process: MANIFEST DATA --cache CACHE --out OUT -q EXTRA, with `env`.
fn embed(manifest: &Path, data: &Path, cache: &Path, out: &Path, extra: &[&str], env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.args(["embed", s(manifest), s(data), "--cache", s(cache), "--out", s(out), "-q", "--backend", "tract"])
        .args(extra)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in ["JOB_COMPLETION_INDEX", "GRAFT_SHARDS", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for `child`, asserts success; returns stdout.
fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "graft embed failed ({:?}):\n{stdout}\n{stderr}", out.status);
    stdout.to_string()
}

/// (items in this worker's part, items embedded now) from `graft embed`'s output.
fn counts(stdout: &str) -> (usize, usize) {
    let line = stdout.lines().find(|l| l.starts_with("embedded ")).unwrap_or_else(|| panic!("{stdout}"));
    let items: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
    let computed = if line.contains(" cached)") && !line.contains(" new at ") {
        0
    } else if let Some(at) = line.find(" new at ") {
        line[..at].rsplit('(').next().unwrap().parse().unwrap()
    } else {
        items
    };
    (items, computed)
}

/// Items and shards in the cache (`graft cache stats --json`).
fn stats(cache: &Path) -> (u64, u64) {
    let out = ok(&["cache", "stats", s(cache), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all = v.as_array().unwrap();
    (all.iter().map(|f| f["items"].as_u64().unwrap()).sum(), all.iter().map(|f| f["shards"].as_u64().unwrap()).sum())
}

/// `out`'s ids and features, as bits.
fn features(out: &Path) -> (Vec<String>, Vec<u32>) {
    let f = FeatureFile::load(out).unwrap();
    let ids: Vec<String> = serde_json::from_str(&f.metadata["ids"]).unwrap();
    (ids, f.features.iter().map(|v| v.to_bits()).collect())
}

fn job(i: usize) -> Vec<(&'static str, String)> {
    vec![("JOB_COMPLETION_INDEX", i.to_string()), ("GRAFT_SHARDS", "3".to_string())]
}

#[test]
fn indexed_job_with_a_killed_worker_then_embed_and_fit_compute_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    let n = 240;
    images(&data, n);
    let m = manifest(tmp.path());
    let out = |name: &str| tmp.path().join(name);

    // Worker 1 starts alone and is killed (SIGKILL) once it has written its first shards.
    let mut doomed = embed(&m, &data, &cache, &out("w1.safetensors"), &["--shard", "auto", "--batch", "1"], &job(1));
    let started = Instant::now();
    loop {
        let written = std::fs::read_dir(cache.join("features"))
            .map(|d| {
                d.flatten()
                    .map(|f| {
                        std::fs::read_dir(f.path()).map_or(0, |s| {
                            s.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "safetensors")).count()
                        })
                    })
                    .sum::<usize>()
            })
            .unwrap_or(0);
        // At least three shards (temporary files do not count).
        if written >= 3 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    doomed.kill().unwrap();
    let status = doomed.wait().unwrap();
    assert!(!status.success(), "worker 1 was killed mid-run, not after it finished");
    assert!(!out("w1.safetensors").exists());
    let (partial, _) = stats(&cache);
    assert!(partial >= 3, "the killed worker left its finished batches: {partial}");

    // The three workers of the Job, as separate processes at once; index 1 is the retry.
    let workers: Vec<Child> = (0..3)
        .map(|i| {
            embed(&m, &data, &cache, &out(&format!("w{i}.safetensors")), &["--shard", "auto", "--batch", "4"], &job(i))
        })
        .collect();
    let runs: Vec<(usize, usize)> = workers.into_iter().map(|w| counts(&finish(w))).collect();
    let parts: usize = runs.iter().map(|r| r.0).sum();
    assert_eq!(parts, n, "every image is in exactly one part: {runs:?}");
    assert_eq!((runs[0].1, runs[2].1), (runs[0].0, runs[2].0), "fresh workers embed their whole part");
    assert_eq!(runs[1].1 as u64, runs[1].0 as u64 - partial, "the retry embeds only what the killed worker had not");
    assert_eq!(stats(&cache).0, n as u64);

    // One process over everything: nothing new, bit for bit what a cache-less run computes.
    let all = counts(&finish(embed(&m, &data, &cache, &out("all.safetensors"), &[], &[])));
    assert_eq!(all, (n, 0), "served from the workers' cache");
    let fresh = tmp.path().join("unused-cache");
    let reference = counts(&finish(embed(&m, &data, &fresh, &out("ref.safetensors"), &["--no-cache"], &[])));
    assert_eq!(reference, (n, n));
    let (got, want) = (features(&out("all.safetensors")), features(&out("ref.safetensors")));
    assert_eq!(got.0, want.0, "same images in the same order");
    assert!(got.1 == want.1, "cached features are bit-identical to a single-process --no-cache run");

    // And `graft fit` on the same cache trains without embedding anything.
    let pipeline = tmp.path().join("pipeline.toml");
    let text = format!(
        "name = \"tiny\"\ntask = \"image\"\n\n[data]\npath = \"{}\"\n\n[backbone]\nmanifest = \"{}\"\ndevice = \"cpu\"\n\
         backend = \"tract\"\n\n[model]\nhidden = []\n\n[train]\nepochs = 2\n\n[validation]\nmethod = \"holdout\"\nfraction = 0.2\n",
        s(&data),
        s(&m)
    );
    std::fs::write(&pipeline, text).unwrap();
    let r = fit_pipeline(s(&pipeline), &tmp.path().join("run"), &data, &cache, &[]);
    assert_eq!((r["images"]["embedded"].as_u64(), r["images"]["embedded_now"].as_u64()), (Some(n as u64), Some(0)));
}

#[test]
fn two_concurrent_workers_and_compactions_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    let n = 120;
    images(&data, n);
    let m = manifest(tmp.path());
    let workers: Vec<Child> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2");
            embed(
                &m,
                &data,
                &cache,
                &tmp.path().join(format!("w{i}.safetensors")),
                &["--shard", &shard, "--batch", "1"],
                &[],
            )
        })
        .collect();
    // Compactions race the writers until both are done.
    let mut compactions = 0;
    while !cache.join("features").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut workers: Vec<Option<Child>> = workers.into_iter().map(Some).collect();
    let mut runs = Vec::new();
    while workers.iter().any(Option::is_some) {
        ok(&["cache", "compact", s(&cache)]);
        compactions += 1;
        for w in workers.iter_mut() {
            if w.as_mut().is_some_and(|c| c.try_wait().unwrap().is_some()) {
                runs.push(counts(&finish(w.take().unwrap())));
            }
        }
    }
    assert!(compactions >= 2, "compactions ran while the workers wrote");
    assert_eq!(runs.iter().map(|r| r.0).sum::<usize>(), n);
    assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), n, "each image embedded once: {runs:?}");
    assert_eq!(stats(&cache).0, n as u64, "nothing lost");
    let verified = ok(&["cache", "verify", s(&cache)]);
    assert!(verified.contains(" 0 damaged"), "{verified}");
    ok(&["cache", "compact", s(&cache)]);
    assert_eq!(stats(&cache), (n as u64, 1));
    let all = counts(&finish(embed(&m, &data, &cache, &tmp.path().join("all.safetensors"), &[], &[])));
    assert_eq!(all, (n, 0));
}

#[test]
fn cache_gc_keeps_what_a_listed_dataset_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    images(&data, 20);
    let m = manifest(tmp.path());
    finish(embed(&m, &data, &cache, &tmp.path().join("f.safetensors"), &[], &[]));
    // Half the dataset goes away; gc keeps the rest.
    let kept = tmp.path().join("kept");
    std::fs::create_dir_all(kept.join("a")).unwrap();
    for e in std::fs::read_dir(data.join("a")).unwrap().flatten() {
        std::fs::copy(e.path(), kept.join("a").join(e.file_name())).unwrap();
    }
    let out = ok(&["cache", "gc", s(&cache), "--keep", s(&kept), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"], 10, "{out}");
    assert_eq!(stats(&cache).0, 10);
    let (items, computed) = counts(&finish(embed(&m, &data, &cache, &tmp.path().join("g.safetensors"), &[], &[])));
    assert_eq!((items, computed), (20, 10), "only the collected half is embedded again");
    let err = fails(&["cache", "gc", s(&cache)]);
    assert!(err.contains("--keep"), "{err}");
}

#[test]
fn shard_auto_without_a_job_engine_says_what_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(tmp.path());
    let child = embed(&m, tmp.path(), tmp.path(), &tmp.path().join("x.safetensors"), &["--shard", "auto"], &[]);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JOB_COMPLETION_INDEX") && err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
}

/// One `graft embed ARGS --unfreeze 2 --shard I/2 --cache CACHE -q` worker; returns (items in its
/// part, items computed now).
fn front_worker(args: &[&str], i: usize, cache: &Path) -> (usize, usize) {
    let shard = format!("{i}/2");
    let mut all = vec!["embed"];
    all.extend(args);
    all.extend(["--unfreeze", "2", "--shard", &shard, "--cache", s(cache), "-q"]);
    counts(&ok(&all))
}

/// The fine-tuning front shards as the backbone's output does: two `graft embed --unfreeze 2
/// --shard I/2` workers fill one cache with the states at the unfreeze point (per image for
/// EfficientNet-Lite0, per valid token for MiniLM), a rerun computes nothing, and `graft fit` of
/// the shipped fine-tuning pipelines on that cache computes none of them.
#[test]
fn sharded_unfreeze_point_states_leave_fit_nothing_to_compute() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let photos = tmp.path().join("photos");
    crate::images::subset(&photos, 10);
    let text = std::fs::read_to_string(shared("data/spooky-authors/train.csv")).unwrap();
    let csv = tmp.path().join("spooky.csv");
    std::fs::write(&csv, text.lines().take(41).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let effnet_model = shared("models/efficientnet-lite0/model.onnx");
    let minilm_model = shared("models/all-minilm-l6-v2/model.onnx");
    let effnet = ["models/efficientnet-lite0.toml", s(&photos), "--model", s(&effnet_model)];
    let minilm = ["models/all-minilm-l6-v2.toml", s(&csv), "--model", s(&minilm_model)];
    let set = ["--set", "backbone.device=cpu", "--set", "train.epochs=1", "--set", "train.fine_tune.epochs=1"];
    for (args, items, pipeline, what) in [
        (&effnet, 20, "pipelines/cats-vs-dogs-finetune.toml", "images"),
        (&minilm, 40, "pipelines/who-said-it-bert-finetune.toml", "text"),
    ] {
        let parts: Vec<(usize, usize)> = (0..2).map(|i| front_worker(args, i, &cache)).collect();
        assert_eq!(parts[0].0 + parts[1].0, items, "{what}: the two parts cover every item once");
        assert!(parts.iter().all(|&(n, computed)| n > 0 && computed == n), "{what}: {parts:?}");
        assert_eq!(front_worker(args, 1, &cache).1, 0, "{what}: a retried worker computes nothing");
        let r = fit_pipeline(pipeline, &tmp.path().join(what), Path::new(args[1]), &cache, &set);
        assert_eq!(r[what]["embedded_now"], 0, "{what}: {}", r[what]);
        assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    }
    let no_cache = fails(&["embed", effnet[0], effnet[1], "--model", effnet[3], "--unfreeze", "2", "--no-cache"]);
    assert!(no_cache.contains("nothing to write"), "{no_cache}");
    let out = tmp.path().join("x.safetensors");
    let text_out = fails(&["embed", minilm[0], minilm[1], "--model", minilm[3], "--unfreeze", "2", "--out", s(&out)]);
    assert!(text_out.contains("go to the cache only"), "{text_out}");
}
