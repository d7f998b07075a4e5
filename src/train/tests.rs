use super::*;
use crate::config::EarlyStoppingConfig;
use crate::nn::{Init, LayerSpec, OptimizerConfig};

/// Two noisy, interleaved half-moons-like blobs: learnable only with a hidden layer.
fn toy(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = i % 2;
        let (a, b) = (rng.normal(), rng.normal());
        let (cx, cy) =
            if c == 0 { (a.signum() * 2.0, b.signum() * 2.0) } else { (a.signum() * 2.0, -b.signum() * 2.0) };
        x.extend([cx + 0.4 * rng.normal(), cy + 0.4 * rng.normal()]);
        y.push(if (cx > 0.0) == (cy > 0.0) { 0 } else { 1 });
    }
    Dataset { x: ArrayD::from_shape_vec(vec![n, 2], x).unwrap(), y }
}

fn specs() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Dense { inputs: 2, units: 8, init: Init::He },
        LayerSpec::Relu,
        LayerSpec::Dropout { rate: 0.1 },
        LayerSpec::Dense { inputs: 8, units: 2, init: Init::Glorot },
    ]
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        optimizer: OptimizerConfig { lr: 0.02, ..Default::default() },
        early_stopping: EarlyStoppingConfig { patience: 0, min_delta: 0.0 },
        ..Default::default()
    }
}

type Weights = Vec<(String, ArrayD<f32>)>;

fn train_once(epochs: usize, session: &mut Session) -> Result<(Weights, FitOutcome)> {
    let data = toy(200, 1);
    let mut rng = Rng::new(42);
    let mut model = Sequential::new(&specs(), &mut rng);
    let c = cfg(epochs);
    let out = fit(
        &mut model,
        &Job { train: &data, val: None, cfg: &c, class_weights: None, run: "toy", bucket_by_length: false },
        rng,
        session,
    )?;
    Ok((model.state(), out))
}

#[test]
fn learns_a_nonlinear_problem() {
    let (_, out) = train_once(60, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    assert!(out.history.last().unwrap().accuracy > 0.95, "{:?}", out.history.last());
}

#[test]
fn same_seed_gives_same_weights() {
    let q = || Session::new(None, false, ProgressMode::Quiet);
    let (a, _) = train_once(10, &mut q()).unwrap();
    let (b, _) = train_once(10, &mut q()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn interrupted_run_resumes_to_the_same_result() {
    let (uninterrupted, full) = train_once(12, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Session::new(Some(dir.path().to_path_buf()), false, ProgressMode::Quiet);
    first.halt_after_epochs = Some(5);
    assert!(matches!(train_once(12, &mut first), Err(Error::Interrupted { epoch: 5 })));
    let mut second = Session::new(Some(dir.path().to_path_buf()), true, ProgressMode::Quiet);
    let (resumed, out) = train_once(12, &mut second).unwrap();
    assert_eq!(resumed, uninterrupted);
    let without_time =
        |h: &[EpochRecord]| h.iter().map(|r| EpochRecord { seconds: 0.0, ..r.clone() }).collect::<Vec<_>>();
    assert_eq!(without_time(&out.history), without_time(&full.history));
    // A finished run resumes to itself without training again.
    let (again, _) =
        train_once(12, &mut Session::new(Some(dir.path().to_path_buf()), true, ProgressMode::Quiet)).unwrap();
    assert_eq!(again, uninterrupted);
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let data = toy(200, 3);
    let val = toy(100, 4);
    let mut rng = Rng::new(7);
    let mut model = Sequential::new(&specs(), &mut rng);
    let mut c = cfg(200);
    c.early_stopping.patience = 3;
    c.optimizer.lr = 0.05;
    let job = Job { train: &data, val: Some(&val), cfg: &c, class_weights: None, run: "es", bucket_by_length: false };
    let out = fit(&mut model, &job, rng, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    assert!(out.stopped_early, "should stop before 200 epochs");
    let best = out.history.iter().find(|r| r.epoch == out.best_epoch).unwrap();
    let p = predict(&mut model, &val.x, 64);
    assert!((metrics::log_loss(p.view(), &val.y) - best.val_loss.unwrap()).abs() < 1e-5);
    let min = out.history.iter().map(|r| r.val_loss.unwrap()).fold(f32::INFINITY, f32::min);
    assert_eq!(best.val_loss.unwrap(), min);
}

#[test]
fn balanced_class_weights() {
    let w = class_weights(&ClassWeight::Named(ClassWeightMode::Balanced), &[0, 0, 0, 1], 2).unwrap().unwrap();
    assert_eq!(w, vec![4.0 / 6.0, 2.0]);
    assert!(class_weights(&ClassWeight::Explicit(vec![1.0]), &[0, 1], 2).is_err());
}

fn toy_job<'a>(data: &'a Dataset, c: &'a TrainConfig) -> Job<'a> {
    Job { train: data, val: None, cfg: c, class_weights: None, run: "toy", bucket_by_length: false }
}

#[test]
fn resume_refuses_a_checkpoint_of_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(12);
    let data = toy(200, 1);
    let run = |data: &Dataset, resume: bool, halt: Option<usize>| {
        let mut session = Session::new(Some(dir.path().to_path_buf()), resume, ProgressMode::Quiet);
        session.halt_after_epochs = halt;
        let mut rng = Rng::new(42);
        let mut model = Sequential::new(&specs(), &mut rng);
        fit(&mut model, &toy_job(data, &c), rng, &mut session)
    };
    assert!(matches!(run(&data, false, Some(3)), Err(Error::Interrupted { epoch: 3 })));
    let mut relabelled = data.clone();
    relabelled.y.iter_mut().for_each(|y| *y = 1 - *y);
    let err = run(&relabelled, true, None).unwrap_err().to_string();
    assert!(err.contains("cannot resume") && err.contains("the training labels changed"), "{err}");
    let mut moved = data.clone();
    moved.x[[0, 0]] += 1.0;
    let err = run(&moved, true, None).unwrap_err().to_string();
    assert!(err.contains("the training inputs changed"), "{err}");
    let err = run(&data.subset(&(0..150).collect::<Vec<_>>()), true, None).unwrap_err().to_string();
    assert!(err.contains("150 training rows now, 200"), "{err}");
    assert_eq!(run(&data, true, None).unwrap().history.len(), 12);
}

#[test]
fn a_stop_request_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(12);
    let data = toy(200, 1);
    let session = Session::new(Some(dir.path().to_path_buf()), false, ProgressMode::Quiet);
    session.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut rng = Rng::new(42);
    let mut model = Sequential::new(&specs(), &mut rng);
    let got = fit(&mut model, &toy_job(&data, &c), rng, &mut session.clone());
    assert!(matches!(got, Err(Error::Interrupted { epoch: 0 })), "stopped before the first epoch");
    let (uninterrupted, _) = train_once(12, &mut Session::new(None, false, ProgressMode::Quiet)).unwrap();
    // Interrupted after 4 epochs, then stopped (from another thread) before the resumed run trains:
    // the checkpoint still continues to the uninterrupted result.
    let mut first = Session::new(Some(dir.path().to_path_buf()), false, ProgressMode::Quiet);
    first.halt_after_epochs = Some(4);
    assert!(matches!(train_once(12, &mut first), Err(Error::Interrupted { epoch: 4 })));
    let mut second = Session::new(Some(dir.path().to_path_buf()), true, ProgressMode::Quiet);
    let stop = second.stop.clone();
    std::thread::spawn(move || stop.store(true, std::sync::atomic::Ordering::SeqCst)).join().unwrap();
    assert!(matches!(train_once(12, &mut second), Err(Error::Interrupted { epoch: 4 })));
    let mut third = Session::new(Some(dir.path().to_path_buf()), true, ProgressMode::Quiet);
    let (resumed, out) = train_once(12, &mut third).unwrap();
    assert_eq!(resumed, uninterrupted);
    assert!(out.earlier_seconds > 0.0 && out.seconds >= 0.0);
}

#[test]
fn an_exploding_loss_is_an_error() {
    let data = toy(200, 1);
    let mut c = cfg(20);
    c.optimizer = OptimizerConfig { kind: crate::nn::OptimizerKind::Adam, lr: 1e4, ..Default::default() };
    let mut rng = Rng::new(42);
    let mut model = Sequential::new(&specs(), &mut rng);
    let err = fit(&mut model, &toy_job(&data, &c), rng, &mut Session::new(None, false, ProgressMode::Quiet))
        .unwrap_err()
        .to_string();
    assert!(err.contains("toy: training diverged at epoch") && err.contains("lower train.optimizer.lr"), "{err}");
}

#[test]
fn divergence_thresholds() {
    assert!(diverged(f32::NAN, 1.0, 3, 1.0).is_some());
    assert!(diverged(120.0, 1.0, 3, 1.0).is_some(), "100 x ln 3");
    assert!(diverged(120.0, 1.0, 3, 2.0).is_none(), "scaled by the largest class weight");
    assert!(diverged(60.0, 0.05, 2, 1.0).is_some(), "1000 x the first epoch's loss");
    assert!(diverged(2.0, 0.05, 2, 1.0).is_none());
}

#[test]
fn a_sequence_mask_gives_each_batch_its_lengths_and_additive_mask() {
    // Row 0 has 3 valid steps (its middle one happens to be zero in one feature only), row 1 has 1.
    let mut x = ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 4, 2]));
    x[[0, 0, 0]] = 1.0;
    x[[0, 1, 1]] = 2.0;
    x[[0, 2, 0]] = 3.0;
    x[[1, 0, 1]] = 4.0;
    assert_eq!(sequence_lengths(&x), vec![3, 1]);
    let trimmed = batch_rows(&x, &[0, 1], Some(&sequence_lengths(&x)));
    assert_eq!(trimmed.shape(), &[2, 3, 2], "states are cut to the longest row");
    assert_eq!(trimmed, x.slice(ndarray::s![.., ..3, ..]).into_dyn());
    let second = batch_rows(&x, &[1], Some(&[3, 1]));
    assert_eq!(second, x.slice(ndarray::s![1..2, ..1, ..]).into_dyn(), "one row, cut to its own length");
    assert_eq!(batch_rows(&x, &[1, 0], None), x.select(Axis(0), &[1, 0]), "no lengths: whole rows");
    let m = SequenceMask { name: "mask".into(), pad: -1e4 };
    let mut rng = Rng::new(0);
    let mut ctx = Ctx::new(false, &mut rng);
    m.apply(&trimmed, &mut ctx);
    assert_eq!(ctx.lengths, Some(vec![3, 1]));
    let (name, value) = &ctx.side[0];
    let crate::backend::Value::F32(mask) = value else { panic!("an f32 mask") };
    assert_eq!(name, "mask");
    assert_eq!(mask.shape(), &[2, 1, 1, 3]);
    assert_eq!(mask.iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 0.0, 0.0, -1e4, -1e4]);
}
