//! The tail as a layer: trained by the one trainer with a head after it, saved and loaded with
//! its weights, fed side inputs through [`Ctx`].

use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use super::TailLayer;
use crate::config::{EarlyStoppingConfig, TrainConfig};
use crate::data::Dataset;
use crate::graph::ops::check::{param, Case};
use crate::graph::Value;
use crate::nn::{Ctx, Init, Layer, LayerSpec, OptimizerConfig, Sequential};
use crate::rng::Rng;
use crate::train::{fit, Job, ProgressMode, Session};

/// A backbone `x [N,4] -> front = Relu(x W0) [N,6] -> Tanh(front W1 + b1) [N,6]`, written to
/// `dir`; returns its path and the tail's start tensor (`front`).
fn tiny_backbone(dir: &Path) -> (std::path::PathBuf, String) {
    let mut c = Case::new(&[8, 4]);
    let w0 = c.init(&param(&[4, 6], 1));
    let w1 = c.init(&param(&[6, 6], 2).mapv(|v| v * 0.4));
    let b1 = c.init(&param(&[6], 3).mapv(|v| v * 0.1));
    let m0 = c.node("MatMul", &["x", &w0], &[]);
    let front = c.node("Relu", &[&m0], &[]);
    let m1 = c.node("MatMul", &[&front, &w1], &[]);
    let a1 = c.node("Add", &[&m1, &b1], &[]);
    let y = c.node("Tanh", &[&a1], &[]);
    let (model, _) = c.model(&y);
    let path = dir.join("backbone.onnx");
    crate::onnx::save(&path, &model).unwrap();
    (path, front)
}

/// Cached features at the unfreeze point (non-negative, as after the Relu) and a label that needs
/// the tail to move: the sign of a fixed random projection.
fn features(n: usize, seed: u64) -> Dataset {
    let x = param(&[n, 6], seed).mapv(f32::abs);
    let dir = param(&[6], 99);
    let y = (0..n).map(|i| usize::from((0..6).map(|j| x[[i, j]] * dir[[j]]).sum::<f32>() > 0.0)).collect();
    Dataset { x, y }
}

#[test]
fn the_trainer_trains_tail_and_head_and_checkpoints_cover_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, front) = tiny_backbone(dir.path());
    let tail = TailLayer::open(&path, &front, None, None).unwrap();
    let spec = tail.spec();
    let specs = vec![spec.clone(), LayerSpec::Dense { inputs: 6, units: 2, init: Init::Glorot }];
    let mut rng = Rng::new(7);
    let mut model = Sequential::new(&specs, &mut rng);
    let before = model.state();
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "two tail initializers and the head's weight and bias: {names:?}");
    assert!(names[0].starts_with("layers.0.") && names[1].starts_with("layers.0.") && names[0] != names[1]);

    let data = features(96, 5);
    let cfg = TrainConfig {
        epochs: 12,
        batch_size: 16,
        optimizer: OptimizerConfig { lr: 0.02, ..Default::default() },
        early_stopping: EarlyStoppingConfig { patience: 0, min_delta: 0.0 },
        ..Default::default()
    };
    let job = Job { train: &data, val: None, cfg: &cfg, class_weights: None, run: "tail", bucket_by_length: false };
    let mut session = Session::new(Some(dir.path().join("ck")), false, ProgressMode::Quiet);
    let out = fit(&mut model, &job, rng, &mut session).unwrap();
    let (first, last) = (out.history[0].loss, out.history.last().unwrap().loss);
    assert!(last < 0.7 * first, "the loss goes down: {first} -> {last}");
    let after = model.state();
    for ((name, a), (_, b)) in before.iter().zip(&after).take(2) {
        assert!(a.iter().zip(b.iter()).any(|(x, y)| x != y), "tail weight {name} was trained");
    }

    // Saved and loaded: the architecture names the backbone, the weights are the trained ones.
    let saved = dir.path().join("model.safetensors");
    model.save(&saved, Default::default()).unwrap();
    let (mut loaded, _) = Sequential::load(&saved).unwrap();
    assert_eq!(loaded.specs()[0], spec);
    assert_eq!(loaded.state(), after);
    let x = features(5, 6).x;
    assert_eq!(loaded.predict_proba(x.clone()), model.predict_proba(x));
}

#[test]
fn a_changed_backbone_is_refused_by_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let (path, front) = tiny_backbone(dir.path());
    let LayerSpec::Tail { backbone, start, end, .. } = TailLayer::open(&path, &front, None, None).unwrap().spec()
    else {
        panic!("a tail spec")
    };
    let spec = LayerSpec::Tail { backbone, sha256: "0".repeat(64), start, end };
    let e = spec.try_build(&mut Rng::new(0)).err().expect("sha256 differs").to_string();
    assert!(e.contains("backbone.onnx") && e.contains("sha256"), "{e}");
}

/// MiniLM-style: the tail reads a tensor of the frozen part (an additive mask) that comes with
/// each batch in [`Ctx::side`]; the gradient reaches the tail's input.
#[test]
fn side_inputs_come_from_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Case::new(&[2, 3]);
    let w = c.init(&param(&[3, 3], 1));
    let front = c.node("Relu", &["x"], &[]);
    let mask = c.node("Sigmoid", &["x"], &[]);
    let m = c.node("MatMul", &[&front, &w], &[]);
    let y = c.node("Add", &[&m, &mask], &[]);
    let (model, _) = c.model(&y);
    let path = dir.path().join("b.onnx");
    crate::onnx::save(&path, &model).unwrap();
    let mut layer = TailLayer::open(&path, &front, None, None).unwrap();
    assert_eq!(layer.tail().side_inputs(), vec![mask.as_str()]);
    let x = param(&[2, 3], 4).mapv(f32::abs);
    let mut rng = Rng::new(0);
    let mut ctx = Ctx::new(true, &mut rng);
    ctx.side = vec![
        ("unrelated".into(), Value::F32(ArrayD::zeros(IxDyn(&[1])))),
        (mask.clone(), Value::F32(ArrayD::from_elem(IxDyn(&[2, 3]), 10.0))),
    ];
    let out = layer.forward(x.clone(), &mut ctx);
    let plain = x
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
        .dot(&param(&[3, 3], 1).into_dimensionality::<ndarray::Ix2>().unwrap());
    assert!((out[[1, 2]] - plain[[1, 2]] - 10.0).abs() < 1e-5);
    let dx = layer.backward(ArrayD::ones(IxDyn(&[2, 3])));
    assert_eq!(dx.shape(), &[2, 3]);
    assert!(layer.params()[0].grad.iter().any(|g| *g != 0.0));
}

/// A run interrupted after 4 epochs and resumed from its checkpoint ends with the same tail and
/// head weights as the uninterrupted run; with early stopping, the best epoch's tail comes back.
#[test]
fn resume_and_early_stopping_cover_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, front) = tiny_backbone(dir.path());
    let spec = TailLayer::open(&path, &front, None, None).unwrap().spec();
    let specs = vec![spec, LayerSpec::Dense { inputs: 6, units: 2, init: Init::Glorot }];
    let (data, val) = (features(64, 5), features(48, 8));
    let mut cfg = TrainConfig {
        epochs: 10,
        batch_size: 16,
        optimizer: OptimizerConfig { lr: 0.05, ..Default::default() },
        early_stopping: EarlyStoppingConfig { patience: 0, min_delta: 0.0 },
        ..Default::default()
    };
    let run = |cfg: &TrainConfig, session: &mut Session| {
        let mut rng = Rng::new(3);
        let mut model = Sequential::new(&specs, &mut rng);
        let job = Job { train: &data, val: Some(&val), cfg, class_weights: None, run: "t", bucket_by_length: false };
        fit(&mut model, &job, rng, session).map(|out| (model.state(), out, model))
    };
    let (full, _, _) = run(&cfg, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    let ck = dir.path().join("ck");
    let mut first = Session::new(Some(ck.clone()), false, ProgressMode::Quiet);
    first.halt_after_epochs = Some(4);
    assert!(matches!(run(&cfg, &mut first), Err(crate::Error::Interrupted { epoch: 4 })));
    let (resumed, _, _) = run(&cfg, &mut Session::new(Some(ck), true, ProgressMode::Quiet)).unwrap();
    assert!(resumed.iter().any(|(n, _)| n.starts_with("layers.0.")));
    assert_eq!(resumed, full);

    cfg.epochs = 60;
    cfg.optimizer.lr = 0.3;
    cfg.early_stopping.patience = 2;
    let (_, out, mut model) = run(&cfg, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    assert!(out.stopped_early && out.best_epoch < out.history.len(), "{:?}", out.history.len());
    let best = out.history.iter().find(|r| r.epoch == out.best_epoch).unwrap().val_loss.unwrap();
    let p = crate::train::predict(&mut model, &val.x, 64);
    let now = crate::train::metrics::log_loss(p.view(), &val.y);
    assert!((now - best).abs() < 1e-5, "restored weights give the best epoch's loss: {now} vs {best}");
}
