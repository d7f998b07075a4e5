//! `graft explain` (Grad-CAM) and `mistakes.png`, on a cats-vs-dogs head trained on a small subset
//! of `../shared/data/cats-vs-dogs/train`, and on the `tiny_cam.onnx` fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn map_of(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v["map"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

/// `n` cats and `n` dogs of the shared photos, centre-cropped and resized to 224x224 PNGs, so that
/// graft and Python feed the model the same pixels (their resizers differ).
fn square_photos(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let src = shared("data/cats-vs-dogs/train");
    let mut out = Vec::new();
    for class in ["cat", "dog"] {
        for i in 101..101 + n {
            let img = image::open(src.join(class).join(format!("{class}.{i}.jpg"))).unwrap();
            let img = img.resize_to_fill(224, 224, image::imageops::FilterType::Triangle).to_rgb8();
            let path = dir.join(format!("{class}.{i}.png"));
            img.save(&path).unwrap();
            out.push(path);
        }
    }
    out
}

fn python_cam(model: &Path, images: &[PathBuf], class: Option<&str>) -> Vec<serde_json::Value> {
    let python = root().join(".venv-test/bin/python");
    assert!(python.exists(), "run scripts/setup-test.sh first (it makes .venv-test)");
    let mut cmd = Command::new(&python);
    cmd.args(["scripts/cam_python.py", "--model", s(model), "--images"]).args(images).current_dir(root());
    if let Some(c) = class {
        cmd.args(["--class", c]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json_lines(&String::from_utf8_lossy(&out.stdout))
}

/// On a frozen EfficientNet-Lite0 + linear head, `graft explain --json` (Grad-CAM through the
/// native tail) matches the classic CAM computed in Python from the exported graph's feature map
/// and the head's weights, within 1e-4 after normalisation; the run folder has `mistakes.png`.
#[test]
fn explain_json_matches_a_cam_computed_in_python() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache, run) = (tmp.path().join("data"), tmp.path().join("cache"), tmp.path().join("run"));
    crate::images::subset(&data, 20);
    let args = ["--set", "backbone.device=cpu", "--set", "train.epochs=5"];
    let r = fit_pipeline("pipelines/cats-vs-dogs.toml", &run, &data, &cache, &args);
    assert!(r["outputs"].as_array().unwrap().iter().any(|o| o == "mistakes.png"), "{}", r["outputs"]);
    let gallery = image::open(run.join("mistakes.png")).unwrap();
    assert!(gallery.width() >= 400, "{}", gallery.width());

    let model = run.join("model.onnx");
    let photos = square_photos(&tmp.path().join("photos"), 3);
    let heat = tmp.path().join("heat");
    for class in [None, Some("dog")] {
        let mut args = vec!["explain", s(&model), "--json", "--out", s(&heat), "--device", "cpu"];
        args.extend(photos.iter().map(|p| s(p)));
        if let Some(c) = class {
            args.extend(["--class", c]);
        }
        let graft = json_lines(&ok(&args));
        let python = python_cam(&model, &photos, class);
        assert_eq!(graft.len(), photos.len());
        let mut worst = 0.0f64;
        for (g, p) in graft.iter().zip(&python) {
            assert_eq!(g["image"], p["image"]);
            assert_eq!(g["class"], p["class"], "{}", g["image"]);
            let dp = (g["probability"].as_f64().unwrap() - p["probability"].as_f64().unwrap()).abs();
            assert!(dp < 1e-4, "{}: probability differs by {dp}", g["image"]);
            let (gm, pm) = (map_of(g), map_of(p));
            assert_eq!((gm.len(), gm[0].len()), (7, 7), "EfficientNet-Lite0's last feature map is 7x7");
            for (gr, pr) in gm.iter().zip(&pm) {
                for (a, b) in gr.iter().zip(pr) {
                    worst = worst.max((a - b).abs());
                }
            }
            assert!(gm.iter().flatten().any(|v| *v == 1.0), "normalised to a maximum of 1");
            let png = image::open(g["output"].as_str().unwrap()).unwrap();
            assert_eq!((png.width(), png.height()), (224, 224));
        }
        assert!(worst < 1e-4, "class {class:?}: max |graft - python| = {worst}");
        if let Some(c) = class {
            assert!(graft.iter().all(|g| g["class"] == c));
        }
    }
}

/// The CLI on the fine-tuned-style fixture: one PNG per image and a map per line; a class the model
/// does not have and a model that is not an image model are refused by name.
#[test]
fn explain_writes_heatmaps_and_refuses_what_it_cannot_explain() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = root().join("tests/fixtures/tiny_cam.onnx");
    let photos: Vec<PathBuf> = (0..2)
        .map(|k| {
            let p = tmp.path().join(format!("p{k}.png"));
            image::RgbImage::from_fn(20, 12, |x, y| image::Rgb([(x * 12) as u8, (y * 20 + k * 60) as u8, 90]))
                .save(&p)
                .unwrap();
            p
        })
        .collect();
    let out = tmp.path().join("heat");
    let stdout =
        ok(&["explain", s(&fixture), s(&photos[0]), s(&photos[1]), "--out", s(&out), "--json", "--backend", "tract"]);
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2);
    for (l, p) in lines.iter().zip(&photos) {
        assert_eq!(l["image"], s(p));
        assert_eq!(map_of(l).len(), 8);
        assert!(Path::new(l["output"].as_str().unwrap()).is_file());
    }
    let e = fails(&["explain", s(&fixture), s(&photos[0]), "--json", "--class", "wasp", "--backend", "tract"]);
    assert!(e.contains("no class `wasp`") && e.contains("ant, bee, cat"), "{e}");
    let e = fails(&["explain", "tests/fixtures/tiny_text.onnx", s(&photos[0]), "--json"]);
    assert!(e.contains("tiny_text.onnx"), "{e}");
}
