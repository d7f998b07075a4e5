//! The one training loop every pipeline uses: mini-batches over a [`Dataset`], the fused softmax
//! cross-entropy, an [`Optimizer`](crate::nn::Optimizer), early stopping with best-weight
//! restoration, reduce-LR-on-plateau, checkpoints (after an epoch, at most every 2 s, and always on
//! stopping or interruption), `--resume`, and a stop when the loss diverges.

pub mod callbacks;
mod checkpoint;
pub mod lr_find;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod tensorboard;

pub use progress::{Progress, ProgressMode};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::{ArrayD, Axis, Ix2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use self::callbacks::{EarlyStopping, EpochObserver, Plateau, Verdict};
use self::checkpoint::{DataPrint, LoopState};
use crate::config::{ClassWeight, ClassWeightMode, TrainConfig};
use crate::data::{class_counts, Dataset};
use crate::nn::{loss, Ctx, Sequential};
use crate::rng::Rng;
use crate::{Error, Result};

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f32,
    /// Training accuracy.
    pub accuracy: f32,
    /// Validation loss, when there is a validation set.
    pub val_loss: Option<f32>,
    /// Validation accuracy, when there is a validation set.
    pub val_accuracy: Option<f32>,
    /// The learning rate of the epoch.
    pub lr: f32,
    /// Wall-clock seconds of the epoch (training and validation).
    #[serde(default)]
    pub seconds: f64,
}

/// The result of one [`fit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOutcome {
    /// One record per epoch run.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights the model holds at the end (the best one under early stopping).
    pub best_epoch: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// Seconds spent in the loop by this process.
    pub seconds: f64,
    /// Seconds spent in the loop by the interrupted processes this run resumed from.
    pub earlier_seconds: f64,
}

/// Run-wide control shared by every fit of one command: checkpoints, resumption, progress, a stop
/// request (a signal handler sets [`Session::stop`]), and a deliberate stop after a number of epochs
/// (to exercise `--resume`).
#[derive(Clone, Debug)]
pub struct Session {
    /// Where checkpoints are written (none without it).
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoints found there.
    pub resume: bool,
    /// Stop as if interrupted after this many epochs (for testing `--resume`).
    pub halt_after_epochs: Option<usize>,
    /// Least time between two checkpoints (one is always written on stopping and at the end).
    pub checkpoint_every: std::time::Duration,
    /// How progress is reported.
    pub progress: ProgressMode,
    /// When set (from any thread), the loop stops at the end of the current epoch, writes a
    /// checkpoint and returns [`Error::Interrupted`].
    pub stop: Arc<AtomicBool>,
    /// Set when the inputs are padded sequences of states for a model that reads an additive
    /// attention mask (a fine-tuned text encoder's tail); see [`SequenceMask`].
    pub sequence_mask: Option<SequenceMask>,
    /// Told of every finished epoch of every fit (e.g. a TensorBoard log).
    pub observers: Vec<Arc<Mutex<dyn EpochObserver>>>,
    epochs_run: usize,
}

/// Inputs `[N, S, H]` are right-padded sequences of states (all-zero steps after each row's valid
/// ones): for each batch the loop sets [`Ctx::lengths`] and the side input `name`
/// `[B, 1, 1, S]`, 0 at valid steps and `pad` at padding (e.g. MiniLM's `unsqueeze_12`).
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceMask {
    /// The graph input that takes the mask.
    pub name: String,
    /// The mask's value at padding (a large negative number).
    pub pad: f32,
}

impl SequenceMask {
    /// Sets the batch's lengths and additive mask in `ctx`.
    ///
    /// # Shapes
    /// `x` `[B, S, H]`
    pub fn apply(&self, x: &ArrayD<f32>, ctx: &mut Ctx) {
        let lengths = sequence_lengths(x);
        let s = x.shape().get(1).copied().unwrap_or(0);
        let mask = ArrayD::from_shape_fn(ndarray::IxDyn(&[lengths.len(), 1, 1, s]), |ix| {
            if ix[3] < lengths[ix[0]] {
                0.0
            } else {
                self.pad
            }
        });
        ctx.side = vec![(self.name.clone(), crate::backend::Value::F32(mask))];
        ctx.lengths = Some(lengths);
    }
}

/// Valid length of each row of a right-padded batch: token ids `[B, S]` (non-zero ids) or states
/// `[B, S, H]` (steps not all zero).
pub fn sequence_lengths(x: &ArrayD<f32>) -> Vec<usize> {
    if x.ndim() < 3 {
        return crate::nn::lengths(x);
    }
    x.axis_iter(Axis(0))
        .map(|row| {
            let steps: Vec<bool> = row.axis_iter(Axis(0)).map(|t| t.iter().any(|&v| v != 0.0)).collect();
            steps.iter().rposition(|&v| v).map_or(0, |p| p + 1)
        })
        .collect()
}

impl Session {
    /// A session; checkpoints go to `checkpoint_dir` when given.
    pub fn new(checkpoint_dir: Option<PathBuf>, resume: bool, progress: ProgressMode) -> Self {
        Session {
            checkpoint_dir,
            resume,
            halt_after_epochs: None,
            checkpoint_every: std::time::Duration::from_secs(2),
            progress,
            stop: Arc::new(AtomicBool::new(false)),
            sequence_mask: None,
            observers: Vec::new(),
            epochs_run: 0,
        }
    }
}

/// Per-class loss weights for `cfg` on labels `y` of `n_classes` classes.
pub fn class_weights(cfg: &ClassWeight, y: &[usize], n_classes: usize) -> Result<Option<Vec<f32>>> {
    match cfg {
        ClassWeight::Named(ClassWeightMode::None) => Ok(None),
        ClassWeight::Named(ClassWeightMode::Balanced) => {
            let counts = class_counts(y, n_classes);
            let n = y.len() as f32;
            Ok(Some(counts.iter().map(|&c| if c == 0 { 0.0 } else { n / (n_classes as f32 * c as f32) }).collect()))
        }
        ClassWeight::Explicit(w) if w.len() == n_classes => Ok(Some(w.clone())),
        ClassWeight::Explicit(w) => {
            Err(Error::config("train.class_weight", format!("{} weights given for {n_classes} classes", w.len())))
        }
    }
}

/// What one [`fit`] trains on and how.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// The training examples.
    pub train: &'a Dataset,
    /// Watched by early stopping and plateau when given (else the training loss is).
    pub val: Option<&'a Dataset>,
    /// Epochs, batch size, optimizer, callbacks.
    pub cfg: &'a TrainConfig,
    /// Per-class loss weights ([`class_weights`]).
    pub class_weights: Option<&'a [f32]>,
    /// Names the checkpoint and the progress line.
    pub run: &'a str,
    /// Inputs are right-padded token ids: batch rows of similar length together and cut each
    /// batch's padding columns (exact for models whose outputs at valid steps ignore right padding).
    pub bucket_by_length: bool,
}

/// Trains `model` on `train`, watching `val` when given (else the training loss), and leaves the
/// final weights in `model`: the best epoch's when early stopping is on.
///
/// `run` names the checkpoint and the progress line. With a checkpoint folder, state is saved after
/// epochs (see [`Session::checkpoint_every`]); with `session.resume`, a saved run continues where it
/// stopped (or returns at once when it had finished), drawing exactly the random numbers the
/// uninterrupted run would have. A checkpoint of other data (rows, labels, inputs or validation
/// rows differ) is refused.
///
/// Fails with [`Error::Interrupted`] (after writing a checkpoint) when [`Session::stop`] is set or
/// `halt_after_epochs` is reached, and with [`Error::Invalid`] when the training loss diverges: not
/// finite, above 1000 times the first epoch's, or above 100 times a uniform guess's (`ln C`, at
/// least 1, times the largest class weight).
pub fn fit(model: &mut Sequential, job: &Job, mut rng: Rng, session: &mut Session) -> Result<FitOutcome> {
    let Job { train, val, cfg, class_weights: weights, run, bucket_by_length } = *job;
    let lengths = bucket_by_length.then(|| sequence_lengths(&train.x));
    let mut optimizer = cfg.optimizer.build()?;
    optimizer.set_param_names(&model.params().into_iter().map(|(n, _)| n).collect::<Vec<_>>());
    let ck_path = session.checkpoint_dir.as_ref().map(|d| checkpoint::path(d, run));
    let mut state = LoopState {
        epoch: 0,
        history: Vec::new(),
        early: EarlyStopping::default(),
        plateau: Plateau::default(),
        rng: rng.clone(),
        optimizer: optimizer.state(),
        seconds: 0.0,
        done: false,
        stopped_early: false,
        data: None,
    };
    let print = DataPrint::of(train, val);
    let mut best = model.state();
    if let (true, Some(path)) = (session.resume, &ck_path) {
        if let Some(ck) = checkpoint::load(path)? {
            if let Some(why) = ck.state.data.as_ref().and_then(|saved| print.differs_from(saved)) {
                return Err(Error::Invalid(format!(
                    "{}: cannot resume: the data changed since this checkpoint was written ({why}); \
                     restore the data, or start over with --force",
                    path.display()
                )));
            }
            model.load_state(&ck.model).map_err(|e| Error::data(path, None, e.to_string()))?;
            optimizer.restore(&ck.state.optimizer, ck.optimizer);
            best = best.into_iter().map(|(n, a)| (n.clone(), ck.best.get(&n).cloned().unwrap_or(a))).collect();
            state = ck.state;
            rng = state.rng.clone();
        }
    }
    state.data = Some(print);
    let earlier_seconds = state.seconds;
    let outcome = |s: &LoopState| FitOutcome {
        history: s.history.clone(),
        best_epoch: if cfg.early_stopping.patience > 0 { s.early.best_epoch } else { s.epoch },
        stopped_early: s.stopped_early,
        seconds: s.seconds - earlier_seconds,
        earlier_seconds,
    };
    if state.done {
        return Ok(outcome(&state));
    }
    if session.stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted { epoch: state.epoch });
    }
    let largest_weight = weights.map_or(1.0, |w| w.iter().copied().fold(1.0, f32::max));
    let mut classes = 2;

    let mut progress = Progress::new(session.progress, run, cfg.epochs as u64, "epochs");
    progress.resumed(state.epoch as u64);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut last_save = Instant::now();
    // Validation in batches of at least 256 rows, but a fine-tuned backbone tail's activations for
    // 256 rows outgrow the heap (over 32 MB each) and would be mapped and faulted in afresh every
    // batch: a model with a tail validates in training-sized batches.
    let has_tail = model.specs().iter().any(|s| matches!(s, crate::nn::LayerSpec::Tail { .. }));
    let val_batch = if has_tail { cfg.batch_size } else { cfg.batch_size.max(256) };
    while state.epoch < cfg.epochs {
        let started = Instant::now();
        let epoch = state.epoch + 1;
        order.sort_unstable();
        rng.shuffle(&mut order);
        let batches = batches(&order, cfg.batch_size, lengths.as_deref(), &mut rng);
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        for (b, idx) in batches.iter().enumerate() {
            let x = batch_rows(&train.x, idx, lengths.as_deref());
            let y: Vec<usize> = idx.iter().map(|&i| train.y[i]).collect();
            let step = train_step(model, &mut optimizer, (x, &y), weights, session.sequence_mask.as_ref(), &mut rng);
            classes = step.classes;
            loss_sum += step.loss as f64 * idx.len() as f64;
            hits += step.hits;
            progress.within(b as u64 + 1, batches.len() as u64);
        }
        let mut record = EpochRecord {
            epoch,
            loss: (loss_sum / train.len() as f64) as f32,
            accuracy: hits as f32 / train.len() as f32,
            val_loss: None,
            val_accuracy: None,
            lr: optimizer.lr(),
            seconds: 0.0,
        };
        if let Some(val) = val {
            let p = match &session.sequence_mask {
                Some(m) => predict_masked(model, &val.x, val_batch, m),
                None => predict_with(model, &val.x, val_batch, bucket_by_length),
            };
            record.val_loss = Some(metrics::log_loss(p.view(), &val.y));
            record.val_accuracy = Some(metrics::accuracy(p.view(), &val.y));
        }
        let first_loss = state.history.first().map_or(record.loss, |r| r.loss);
        if let Some(why) = diverged(record.loss, first_loss, classes, largest_weight) {
            progress.finish("diverged");
            return Err(Error::Invalid(format!(
                "{run}: training diverged at epoch {epoch}: {why}; lower train.optimizer.lr (it is {})",
                optimizer.lr()
            )));
        }
        let monitored = record.val_loss.unwrap_or(record.loss);
        if !monitored.is_finite() {
            return Err(Error::Invalid(format!(
                "{run}: the validation loss became {monitored} at epoch {epoch}; lower train.optimizer.lr"
            )));
        }
        let verdict = state.early.update(&cfg.early_stopping, epoch, monitored);
        if verdict == Verdict::Improved {
            best = model.state();
        }
        if let Some(lr) = state.plateau.update(&cfg.reduce_lr, monitored, optimizer.lr()) {
            optimizer.set_lr(lr);
        }
        state.epoch = epoch;
        record.seconds = started.elapsed().as_secs_f64();
        state.seconds += record.seconds;
        progress.advance(1, || describe(&record));
        for o in &session.observers {
            o.lock().unwrap_or_else(std::sync::PoisonError::into_inner).epoch_end(run, &record)?;
        }
        state.history.push(record);
        if verdict == Verdict::Stop {
            state.stopped_early = true;
            break;
        }
        session.epochs_run += 1;
        let halt =
            session.halt_after_epochs.is_some_and(|h| session.epochs_run >= h) || session.stop.load(Ordering::Relaxed);
        if halt || last_save.elapsed() >= session.checkpoint_every {
            save_checkpoint(&ck_path, &mut state, &rng, &optimizer, model, &best)?;
            last_save = Instant::now();
        }
        if halt {
            progress.finish("interrupted");
            return Err(Error::Interrupted { epoch });
        }
    }
    if cfg.early_stopping.patience > 0 {
        let named = best.into_iter().collect();
        model.load_state(&named)?;
        best = model.state();
    }
    state.done = true;
    save_checkpoint(&ck_path, &mut state, &rng, &optimizer, model, &best)?;
    let out = outcome(&state);
    progress.finish(&format!("done, best epoch {} ({:.2}s)", out.best_epoch, out.seconds));
    Ok(out)
}

/// What one [`train_step`] saw.
pub(crate) struct Step {
    /// The batch's mean loss, before the update.
    pub loss: f32,
    /// Rows whose arg-max logit is their label.
    pub hits: usize,
    pub classes: usize,
}

/// One optimisation step on the mini-batch `(x, y)`: forward in training mode (with `mask` set),
/// the (class-weighted) softmax cross-entropy, backward, and `optimizer`'s update of `model`.
///
/// # Shapes
/// `x` `[B, ...]`, `y` `[B]`; the model outputs `[B, C]` logits
pub(crate) fn train_step(
    model: &mut Sequential,
    optimizer: &mut crate::nn::Optimizer,
    (x, y): (ArrayD<f32>, &[usize]),
    weights: Option<&[f32]>,
    mask: Option<&SequenceMask>,
    rng: &mut Rng,
) -> Step {
    let mut ctx = Ctx::new(true, rng);
    if let Some(m) = mask {
        m.apply(&x, &mut ctx);
    }
    let logits = model.forward(x, &mut ctx);
    let logits = logits.into_dimensionality::<Ix2>().expect("models output [N, C] logits");
    let (loss, grad) = loss::softmax_cross_entropy(logits.view(), y, weights);
    let hits = metrics::argmax_rows(logits.view()).iter().zip(y).filter(|(p, t)| p == t).count();
    let classes = logits.ncols();
    model.backward(grad.into_dyn());
    let mut params: Vec<_> = model.params().into_iter().map(|(_, p)| p).collect();
    optimizer.step(&mut params);
    Step { loss, hits, classes }
}

/// Why a training loss of `loss` means the run diverged (`None` when it did not): not finite, above
/// 100 times `max(ln classes, 1)` (a uniform guess scores `ln classes`) times the largest class
/// weight, or above 1000 times the first epoch's loss `first`.
fn diverged(loss: f32, first: f32, classes: usize, largest_weight: f32) -> Option<String> {
    let uniform = (classes as f32).ln();
    if !loss.is_finite() {
        Some(format!("the loss became {loss}"))
    } else if loss > 100.0 * uniform.max(1.0) * largest_weight {
        Some(format!("the loss rose to {loss:.3e} (a uniform guess scores {uniform:.3})"))
    } else if loss > 1000.0 * first {
        Some(format!("the loss rose to {loss:.3e} from {first:.3e} at the first epoch"))
    } else {
        None
    }
}

fn save_checkpoint(
    path: &Option<PathBuf>,
    state: &mut LoopState,
    rng: &Rng,
    optimizer: &crate::nn::Optimizer,
    model: &mut Sequential,
    best: &[(String, ArrayD<f32>)],
) -> Result<()> {
    state.rng = rng.clone();
    state.optimizer = optimizer.state();
    match path {
        Some(p) => checkpoint::save(p, state, model.state(), best, optimizer.moments()),
        None => Ok(()),
    }
}

fn describe(r: &EpochRecord) -> String {
    let mut s = format!("loss {:.4} acc {:.4}", r.loss, r.accuracy);
    if let (Some(l), Some(a)) = (r.val_loss, r.val_accuracy) {
        s.push_str(&format!(" val_loss {l:.4} val_acc {a:.4}"));
    }
    s
}

/// The per-epoch mean of several runs' histories (each epoch over the runs that reached it), for
/// plotting cross-validation curves.
pub fn mean_history(runs: &[Vec<EpochRecord>]) -> Vec<EpochRecord> {
    let longest = runs.iter().map(Vec::len).max().unwrap_or(0);
    let mean = |v: Vec<f32>| if v.is_empty() { None } else { Some(v.iter().sum::<f32>() / v.len() as f32) };
    (0..longest)
        .map(|e| {
            let at: Vec<&EpochRecord> = runs.iter().filter_map(|h| h.get(e)).collect();
            let field = |f: &dyn Fn(&EpochRecord) -> Option<f32>| mean(at.iter().filter_map(|r| f(r)).collect());
            EpochRecord {
                epoch: e + 1,
                loss: field(&|r| Some(r.loss)).unwrap_or(f32::NAN),
                accuracy: field(&|r| Some(r.accuracy)).unwrap_or(f32::NAN),
                val_loss: field(&|r| r.val_loss),
                val_accuracy: field(&|r| r.val_accuracy),
                lr: field(&|r| Some(r.lr)).unwrap_or(f32::NAN),
                seconds: at.iter().map(|r| r.seconds).sum::<f64>() / at.len().max(1) as f64,
            }
        })
        .collect()
}

/// Class probabilities of `model` on `x`, in inference mode, `batch` rows at a time.
///
/// # Shapes
/// `x` `[N, ...]` -> `[N, C]`
pub fn predict(model: &mut Sequential, x: &ArrayD<f32>, batch: usize) -> ndarray::Array2<f32> {
    predict_with(model, x, batch, false)
}

/// Mini-batches of `order`; with `lengths`, rows of similar length are batched together (sorted
/// within pools of 32 batches, then the batch order shuffled), so padding costs little.
pub(crate) fn batches(order: &[usize], size: usize, lengths: Option<&[usize]>, rng: &mut Rng) -> Vec<Vec<usize>> {
    let Some(lengths) = lengths else { return order.chunks(size).map(<[usize]>::to_vec).collect() };
    let mut out: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(size * 32) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]);
        out.extend(pool.chunks(size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut out);
    out
}

/// The rows `idx` of `x`, cut after the longest of their `lengths` (at least one step) when
/// lengths are given: the batch holds no all-padding columns at its end. Rows are copied in
/// parallel.
///
/// # Shapes
/// `x` `[N, S, ...]` (ids `[N, S]` or states `[N, S, H]`); returns `[B, S', ...]`, `S' <= S`.
pub(crate) fn batch_rows(x: &ArrayD<f32>, idx: &[usize], lengths: Option<&[usize]>) -> ArrayD<f32> {
    let Some(lengths) = lengths else { return x.select(Axis(0), idx) };
    let longest = idx.iter().map(|&i| lengths[i]).max().unwrap_or(0).clamp(1, x.shape()[1]);
    let mut shape = x.shape().to_vec();
    let step: usize = shape[2..].iter().product();
    let Some(src) = x.as_slice() else {
        return x.select(Axis(0), idx).slice_axis(Axis(1), (..longest).into()).to_owned();
    };
    let (row, take) = (shape[1] * step, longest * step);
    let mut out = vec![0.0f32; idx.len() * take];
    out.par_chunks_mut(take.max(1)).zip(idx).for_each(|(dst, &i)| dst.copy_from_slice(&src[i * row..i * row + take]));
    shape[0] = idx.len();
    shape[1] = longest;
    ArrayD::from_shape_vec(shape, out).expect("one block per row")
}

/// `run` over batches of at most `batch` rows of `x`, rows of similar length together when `trim`
/// (each batch cut to its longest row, so little padding is computed), outputs in the order of `x`.
///
/// # Shapes
/// `x` `[N, S, ...]`; `run` maps `[B, S', ...]` to `[B, C]`; returns `[N, C]`.
fn by_length(
    x: &ArrayD<f32>,
    batch: usize,
    trim: bool,
    mut run: impl FnMut(ArrayD<f32>) -> ndarray::Array2<f32>,
) -> ndarray::Array2<f32> {
    let n = x.shape()[0];
    let mut order: Vec<usize> = (0..n).collect();
    let lengths = trim.then(|| sequence_lengths(x));
    if let Some(lengths) = &lengths {
        order.sort_by_key(|&i| lengths[i]);
    }
    let mut out: Option<ndarray::Array2<f32>> = None;
    for idx in order.chunks(batch.max(1)) {
        let y = run(batch_rows(x, idx, lengths.as_deref()));
        let out = out.get_or_insert_with(|| ndarray::Array2::zeros((n, y.ncols())));
        for (k, &i) in idx.iter().enumerate() {
            out.row_mut(i).assign(&y.row(k));
        }
    }
    out.unwrap_or_else(|| ndarray::Array2::zeros((0, 0)))
}

/// The outputs of `model` on right-padded sequences of states with an additive attention mask
/// (see [`SequenceMask`]), batched by length (see [`predict_masked`]).
///
/// # Shapes
/// `x` `[N, S, H]` -> `[N, C]` (whatever `model` ends with, e.g. pooled states)
pub fn forward_masked(
    model: &mut Sequential,
    x: &ArrayD<f32>,
    batch: usize,
    mask: &SequenceMask,
) -> ndarray::Array2<f32> {
    let mut rng = Rng::new(0);
    by_length(x, batch, true, |x| {
        let mut ctx = Ctx::new(false, &mut rng);
        mask.apply(&x, &mut ctx);
        model.forward(x, &mut ctx).into_dimensionality::<Ix2>().expect("outputs are [N, C]")
    })
}

/// [`predict`] for right-padded sequences of states with an additive attention mask (see
/// [`SequenceMask`]): rows of similar length are batched together, each batch cut to its
/// longest row; probabilities in the order of `x`.
///
/// # Shapes
/// `x` `[N, S, H]` -> `[N, C]`
pub fn predict_masked(
    model: &mut Sequential,
    x: &ArrayD<f32>,
    batch: usize,
    mask: &SequenceMask,
) -> ndarray::Array2<f32> {
    let logits = forward_masked(model, x, batch, mask);
    loss::softmax(logits.view())
}

/// [`predict`] for right-padded id inputs, optionally (`trim`) batching rows of similar length
/// together, each batch cut to its longest row; probabilities in the order of `x`.
pub fn predict_with(model: &mut Sequential, x: &ArrayD<f32>, batch: usize, trim: bool) -> ndarray::Array2<f32> {
    by_length(x, batch, trim, |x| model.predict_proba(x))
}

#[cfg(test)]
mod tests;
