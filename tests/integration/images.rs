//! The image pipeline end to end on a small subset of `../shared/data/cats-vs-dogs/train` (copied
//! into a temporary folder with a few broken files added), with the real EfficientNet-Lite0.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// CRC-32 (PNG chunks).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG whose header claims 100000 x 100000 pixels (a decompression bomb).
fn oversized_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

/// `n` cats and `n` dogs from the shared photos, plus four broken files in `cat/`.
pub fn subset(dir: &Path, n: usize) -> Vec<PathBuf> {
    let src = shared("data/cats-vs-dogs/train");
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 1..=n {
            let name = format!("{class}.{i}.jpg");
            std::fs::copy(src.join(class).join(&name), dir.join(class).join(&name)).unwrap();
        }
    }
    let jpeg = std::fs::read(src.join("cat/cat.1.jpg")).unwrap();
    let bad = vec![
        (dir.join("cat/truncated.jpg"), jpeg[..jpeg.len() / 3].to_vec()),
        (dir.join("cat/empty.jpg"), Vec::new()),
        (dir.join("cat/notes.jpg"), b"this is text, not a photo\n".to_vec()),
        (dir.join("cat/bomb.png"), oversized_png()),
    ];
    for (p, bytes) in &bad {
        std::fs::write(p, bytes).unwrap();
    }
    bad.into_iter().map(|(p, _)| p).collect()
}

fn fit(run: &Path, data: &Path, cache: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--set", "backbone.device=cpu", "--set", "train.epochs=15"];
    args.extend(extra);
    fit_pipeline("pipelines/cats-vs-dogs.toml", run, data, cache, &args)
}

#[test]
fn cats_vs_dogs_head_exports_one_verified_graph_and_skips_bad_images() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    let bad = subset(&data, 20);
    let run = tmp.path().join("run");
    let r = fit(&run, &data, &cache, &["--with-preprocessing"]);

    let images = &r["images"];
    assert_eq!(images["found"], 44);
    assert_eq!(images["embedded"], 40);
    let skipped: Vec<&str> =
        images["skipped"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    for b in &bad {
        assert!(skipped.contains(&s(b)), "{} not reported as skipped: {skipped:?}", b.display());
    }
    assert!(images["skipped"].as_array().unwrap().iter().all(|s| !s["reason"].as_str().unwrap().is_empty()));
    assert!(images["most_confidently_wrong"].is_array());
    assert_eq!(images["backbone"]["sha256"], "93a10716acf1f81a4dc514ccbf7b2e298920fffa0974b8cd77a31a924b64283d");
    assert!(r["validation"]["metrics"]["accuracy"].as_f64().unwrap() >= 0.85, "{}", r["validation"]);
    assert_eq!(r["verification"]["passed"], true);
    let engines: Vec<&str> =
        r["verification"]["engines"].as_array().unwrap().iter().map(|e| e["engine"].as_str().unwrap()).collect();
    assert_eq!(engines, ["tract", "ort", "tract (u8 input)", "ort (u8 input)"]);
    for f in ["model.onnx", "model-u8.onnx", "head.safetensors", "curves.png", "confusion.png"] {
        assert!(run.join(f).is_file(), "{f}");
    }

    // One graph: image in, probabilities out, the classifier's Gemm replaced by the head's.
    let m = graft::onnx::load(&run.join("model.onnx")).unwrap();
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.input.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["image"]);
    assert_eq!(g.output[0].name, "probabilities");
    assert!(g.node.iter().any(|n| n.op_type == "Conv"));
    let meta = graft::export::ModelMeta::read(&run.join("model.onnx")).unwrap();
    assert_eq!(meta.labels.0, ["cat", "dog"]);
    assert_eq!(meta.preprocess.unwrap().size, 224);

    // A second identical run embeds nothing.
    let r2 = fit(&tmp.path().join("run2"), &data, &cache, &[]);
    assert_eq!(r2["images"]["embedded_now"], 0);
    assert_eq!(r2["images"]["embedded"], 40);

    // predict: one JSON line per readable image, the broken ones reported on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["predict", s(&run.join("model.onnx")), s(&data.join("cat")), "--json", "--device", "cpu"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().filter(|l| l["label"] == "cat").count() >= 17);
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches("skipped").count(), 4);
    let u8_out = ok(&["predict", s(&run.join("model-u8.onnx")), s(&data.join("cat/cat.1.jpg")), "--device", "cpu"]);
    let f32_out = ok(&["predict", s(&run.join("model.onnx")), s(&data.join("cat/cat.1.jpg")), "--device", "cpu"]);
    assert_eq!(u8_out.split('\t').nth(1), f32_out.split('\t').nth(1));

    // The exported file runs in a plain Python onnxruntime session with no graft code.
    let python = root().join(".venv-test/bin/python");
    assert!(python.exists(), "run scripts/setup-test.sh first (it makes .venv-test)");
    for model in ["model.onnx", "model-u8.onnx"] {
        let out = Command::new(&python)
            .args(["scripts/check_onnx_python.py", "--model", s(&run.join(model)), "--images"])
            .args((1..=5).map(|i| data.join(format!("dog/dog.{i}.jpg"))))
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{model}: {}", String::from_utf8_lossy(&out.stderr));
        let labels: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(labels.len(), 5);
        assert!(labels.iter().filter(|l| *l == "dog").count() >= 4, "{model}: {labels:?}");
    }
}

#[test]
fn embed_writes_features_and_resumes_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    subset(&data, 3);
    let cache = tmp.path().join("cache");
    let run = |out: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_graft"))
            .args([
                "embed",
                "efficientnet-lite0",
                s(&data),
                "--out",
                out,
                "--device",
                "cpu",
                "-q",
                "--cache",
                s(&cache),
            ])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().last().unwrap().to_string()
    };
    let f = tmp.path().join("f.safetensors");
    let last = run(s(&f));
    assert!(last.starts_with("embedded 6 items in "), "{last}");
    let file = graft::features::FeatureFile::load(&f).unwrap();
    assert_eq!(file.features.shape(), [6, 1280]);
    assert_eq!(file.labels, Some(vec![0, 0, 0, 1, 1, 1]));
    assert!(file.metadata["skipped"].contains("notes.jpg"));
    // Everything cached now: the same features again, with no engine run.
    let g = tmp.path().join("g.safetensors");
    run(s(&g));
    assert_eq!(graft::features::FeatureFile::load(&g).unwrap().features, file.features);
}

/// A class folder whose every file is unreadable is an error naming the class (it used to become a
/// class with no examples, and the run reported accuracy 1.0).
#[test]
fn a_class_of_only_unreadable_files_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = shared("data/cats-vs-dogs/train/cat");
    std::fs::create_dir_all(data.join("cat")).unwrap();
    std::fs::create_dir_all(data.join("dog")).unwrap();
    for i in 1..=4 {
        std::fs::copy(src.join(format!("cat.{i}.jpg")), data.join(format!("cat/cat.{i}.jpg"))).unwrap();
    }
    std::fs::write(data.join("dog/a.jpg"), b"").unwrap();
    std::fs::write(data.join("dog/b.jpg"), b"not a photo\n").unwrap();
    let set_data = format!("data.path={}", s(&data));
    let run = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["fit", "pipelines/cats-vs-dogs.toml", "--out", s(&run), "-q", "--set", &set_data])
        .args(["--set", "backbone.device=cpu", "--set", "train.epochs=2"])
        .env("GRAFT_CACHE", tmp.path().join("cache"))
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("class `dog` has no usable images: all 2"), "{err}");
    assert!(!run.join("model.onnx").exists());
}

/// A feature-cache shard overwritten with same-size garbage, or cut short, is dropped with one
/// warning and its images embedded again: same features as before, never NaN, never a crash.
#[test]
fn a_damaged_feature_cache_is_dropped_with_one_warning_and_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    subset(&data, 2);
    let cache = tmp.path().join("cache");
    let embed = |out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(["embed", "efficientnet-lite0", s(&data), "--out", s(out), "--device", "cpu", "-q"])
            .args(["--cache", s(&cache)])
            .current_dir(root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        (graft::features::FeatureFile::load(out).unwrap().features, err.matches("damaged shard").count())
    };
    let shards = || -> Vec<PathBuf> {
        let mut v = Vec::new();
        for dir in std::fs::read_dir(cache.join("features")).unwrap() {
            for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "safetensors") {
                    v.push(p);
                }
            }
        }
        v
    };
    let f = tmp.path().join("f.safetensors");
    let (clean, warnings) = embed(&f);
    assert_eq!((clean.nrows(), warnings), (4, 0));
    // Same-size garbage over the end (feature bytes), then a shard cut short.
    fn garbage(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len();
        b[n - 64..].fill(0xFF);
        b
    }
    fn truncate(mut b: Vec<u8>) -> Vec<u8> {
        b.truncate(b.len() - 100);
        b
    }
    for hurt in [garbage, truncate] {
        let files = shards();
        assert_eq!(files.len(), 1, "{files:?}");
        let bytes = hurt(std::fs::read(&files[0]).unwrap());
        std::fs::write(&files[0], bytes).unwrap();
        let (again, warnings) = embed(&f);
        assert_eq!(warnings, 1, "one warning for the damaged shard");
        assert_eq!(again, clean, "recomputed features equal the first ones");
    }
    assert_eq!(embed(&f).1, 0, "the damaged shard is gone: no warning the next time");
}
