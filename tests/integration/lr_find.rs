//! `graft lr-find`: the learning-rate range test on the pipelines' real data.

use crate::common::*;

/// On the full cats-vs-dogs photos (their EfficientNet-Lite0 features come from the default
/// feature cache after the first run), the steepest-descent suggestion is within 10x of the
/// pipeline's own learning rate, and the plot is written.
#[test]
fn lr_find_on_cats_vs_dogs_suggests_a_rate_near_the_pipelines() {
    shared("data/cats-vs-dogs/train");
    let tmp = tempfile::tempdir().unwrap();
    let plot = tmp.path().join("lr-find.png");
    let out = ok(&[
        "lr-find",
        "pipelines/cats-vs-dogs.toml",
        "--set",
        "backbone.device=\"cpu\"",
        "--plot",
        s(&plot),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pipeline_lr = v["pipeline_lr"].as_f64().unwrap();
    assert_eq!(pipeline_lr as f32, 1e-3);
    let suggested = v["found"]["suggested"].as_f64().unwrap_or_else(|| panic!("no suggestion: {out}"));
    assert!(
        suggested >= pipeline_lr / 10.0 && suggested <= pipeline_lr * 10.0,
        "suggested {suggested:.2e}, the pipeline uses {pipeline_lr:.0e}"
    );
    assert_eq!(v["rows"].as_u64(), Some(1600), "the holdout split's training rows");
    assert!(v["found"]["exploded"].as_bool().unwrap(), "the test ran until the loss exploded");
    let img = image::open(&plot).unwrap();
    assert_eq!((img.width(), img.height()), (800, 500));
}

/// The sentence form names the suggestion and the plot; text pipelines are refused clearly.
#[test]
fn lr_find_prints_a_suggestion_and_refuses_text_pipelines() {
    let tmp = tempfile::tempdir().unwrap();
    let plot = tmp.path().join("iris-lr.png");
    let out = ok(&["lr-find", "pipelines/iris.toml", "--set", "train.batch_size=4", "--plot", s(&plot), "-q"]);
    assert!(out.contains("suggested learning rate: ") && out.contains("the pipeline uses 1.00e-2"), "{out}");
    assert!(plot.is_file());
    let e = fails(&["lr-find", "pipelines/who-said-it-lstm.toml", "--plot", s(&tmp.path().join("x.png"))]);
    assert!(e.contains("lr-find runs tabular and image pipelines"), "{e}");
}
