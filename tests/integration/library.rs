//! graft as a library: `embed` decides labelled vs unlabelled image folders in the library (a
//! folder it cannot label is an error, not silently unlabelled), and a `Model` loaded once serves
//! several threads with the labels `graft predict` prints.

use std::path::Path;
use std::sync::Arc;

use graft::backend::{BackendKind, EngineOptions};
use graft::predict::Model;

use crate::common::*;

fn embed(data: &Path, out: &Path, cache: &Path) -> std::process::Output {
    graft(&["embed", "efficientnet-lite0", s(data), "--out", s(out), "--device", "cpu", "-q", "--cache", s(cache)])
}

#[test]
fn embed_labels_by_class_subfolders_and_refuses_a_folder_it_cannot_label() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let photo = shared("data/cats-vs-dogs/train/cat/cat.1.jpg");
    // One class subfolder: an error naming the folder (before, the error of the class-folder scan
    // was swallowed and the photos embedded without labels).
    let one = tmp.path().join("one");
    std::fs::create_dir_all(one.join("cat")).unwrap();
    std::fs::copy(&photo, one.join("cat/a.jpg")).unwrap();
    let out = embed(&one, &tmp.path().join("one.safetensors"), &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at least two classes") && err.contains("one"), "{err}");
    // A folder of images without subfolders: embedded, unlabelled.
    let flat = tmp.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::copy(&photo, flat.join("a.jpg")).unwrap();
    let f = tmp.path().join("flat.safetensors");
    let out = embed(&flat, &f, &cache);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = graft::features::FeatureFile::load(&f).unwrap();
    assert_eq!((file.features.nrows(), file.labels), (1, None));
}

#[test]
fn one_model_serves_several_threads_with_the_labels_graft_predict_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.onnx");
    graft::predict::doc_model(&path).unwrap();
    let csv = tmp.path().join("rows.csv");
    let mut text = String::from("a,b\n");
    for i in 0..40 {
        text.push_str(&format!("{},{}\n", (i % 7) as f32 - 3.0, (i % 5) as f32 * 0.7 - 1.5));
    }
    std::fs::write(&csv, text).unwrap();
    let cli: Vec<String> = ok(&["predict", s(&path), s(&csv), "--backend", "tract"])
        .lines()
        .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join("\t"))
        .collect();
    assert_eq!(cli.len(), 40);

    let opts = EngineOptions { backend: BackendKind::Tract, ..Default::default() };
    let model = Arc::new(Model::load_with(&path, &opts).unwrap().with_batch_size(3));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (model, csv) = (Arc::clone(&model), csv.clone());
            std::thread::spawn(move || model.predict_csv(&csv).unwrap())
        })
        .collect();
    for t in threads {
        let got: Vec<String> = t.join().unwrap().iter().map(|p| format!("{}\t{}", p.id, p.label)).collect();
        assert_eq!(got, cli);
    }
    let labels: std::collections::HashSet<&str> = cli.iter().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(labels.len(), 2, "rows of both classes, so the comparison can fail: {cli:?}");
}
