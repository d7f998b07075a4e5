//! The learning-rate range test (Smith 2015, fastai's `lr_find`): one pass of mini-batches with the
//! learning rate raised exponentially from batch to batch, each batch one `train_step` of the
//! trainer (same model, optimizer, loss and batching as [`fit`](super::fit)); the test stops when
//! the running (exponentially smoothed) loss explodes. The suggestion is the learning rate where the
//! smoothed loss falls fastest (fastai's steepest-descent rule), and `lr-find.png` draws the curve.
//!
//! The curve that is drawn and searched is smoothed without lag (the moving average run forwards,
//! then backwards): fastai's running average trails the loss by `beta / (1 - beta)` batches, which
//! over a pass of a few dozen batches moves the steepest point by most of a decade.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::plot::{register_font, FONT};
use super::{batch_rows, batches, sequence_lengths, train_step, Job, Session};
use crate::nn::Sequential;
use crate::rng::Rng;
use crate::{io, Error, Result};

/// How the range test runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LrFindOptions {
    /// Learning rate of the first batch.
    pub start_lr: f32,
    /// Learning rate of the last batch of the pass.
    pub end_lr: f32,
    /// Weight of the past in the loss's exponential moving average (bias-corrected, as fastai).
    pub beta: f32,
    /// Stop once the smoothed loss exceeds this many times its lowest value.
    pub diverge_factor: f32,
}

impl Default for LrFindOptions {
    /// fastai's: 1e-7 to 10, stop at 4 times the best smoothed loss; the smoothing weight is
    /// [`LrFindOptions::beta_for`] the pass's length.
    fn default() -> Self {
        LrFindOptions { start_lr: 1e-7, end_lr: 10.0, beta: 0.98, diverge_factor: 4.0 }
    }
}

impl LrFindOptions {
    /// A smoothing weight whose averaging window (`1 / (1 - beta)`) is a tenth of `batches`,
    /// between fastai's 0.98 (a window of 50 steps, for its 100-step default at 500 batches and
    /// more) and 0.5: over a short pass, fastai's window would lag the curve by most of its length.
    pub fn beta_for(batches: usize) -> f32 {
        (1.0 - 10.0 / batches.max(1) as f32).clamp(0.5, 0.98)
    }
}

/// The range test's curve and suggestion.
#[derive(Clone, Debug, Serialize)]
pub struct LrFind {
    /// The learning rate of each batch run.
    pub lrs: Vec<f32>,
    /// Each batch's mean loss.
    pub losses: Vec<f32>,
    /// Their bias-corrected exponential moving average, as the test saw it (it stops on this).
    pub running: Vec<f32>,
    /// The same average run forwards then backwards over the whole curve: smoothed without lag
    /// (drawn, and searched for the suggestion).
    pub smoothed: Vec<f32>,
    /// Batches in the pass (`lrs.len()` is smaller when the loss exploded).
    pub planned: usize,
    /// Whether the test stopped because the smoothed loss exploded.
    pub exploded: bool,
    /// The steepest-descent learning rate ([`steepest`]); `None` when too few batches ran.
    pub suggested: Option<f32>,
}

/// Runs the range test on `job.train` (its validation data is not used) from `model`'s current
/// weights with `job.cfg`'s optimizer and batch size, batches drawn from `rng`. `model` is left
/// trained by the test: rebuild it before real training.
///
/// Errors when `job.train` has fewer than 2 batches, or a learning rate range that is not
/// `0 < start_lr < end_lr`.
pub fn lr_find(
    model: &mut Sequential,
    job: &Job,
    mut rng: Rng,
    session: &Session,
    opts: &LrFindOptions,
) -> Result<LrFind> {
    let Job { train, cfg, class_weights, bucket_by_length, .. } = *job;
    if !(opts.start_lr > 0.0 && opts.start_lr < opts.end_lr && opts.end_lr.is_finite()) {
        return Err(Error::Invalid(format!(
            "lr-find: the learning rates must rise from above 0: {} to {}",
            opts.start_lr, opts.end_lr
        )));
    }
    let mut optimizer = cfg.optimizer.build()?;
    optimizer.set_param_names(&model.params().into_iter().map(|(n, _)| n).collect::<Vec<_>>());
    let lengths = bucket_by_length.then(|| sequence_lengths(&train.x));
    let mut order: Vec<usize> = (0..train.len()).collect();
    rng.shuffle(&mut order);
    let batches = batches(&order, cfg.batch_size, lengths.as_deref(), &mut rng);
    let n = batches.len();
    if n < 2 {
        return Err(Error::Invalid(format!(
            "lr-find: {} training rows make {n} batch of {}; the range test needs at least 2 (lower train.batch_size)",
            train.len(),
            cfg.batch_size
        )));
    }
    let ratio = (opts.end_lr / opts.start_lr) as f64;
    let mut out = LrFind {
        lrs: Vec::new(),
        losses: Vec::new(),
        running: Vec::new(),
        smoothed: Vec::new(),
        planned: n,
        exploded: false,
        suggested: None,
    };
    let (mut avg, mut best) = (0.0f64, f64::INFINITY);
    for (i, idx) in batches.iter().enumerate() {
        let lr = (opts.start_lr as f64 * ratio.powf(i as f64 / (n - 1) as f64)) as f32;
        optimizer.set_lr(lr);
        let x = batch_rows(&train.x, idx, lengths.as_deref());
        let y: Vec<usize> = idx.iter().map(|&r| train.y[r]).collect();
        let step = train_step(model, &mut optimizer, (x, &y), class_weights, session.sequence_mask.as_ref(), &mut rng);
        let beta = opts.beta as f64;
        avg = beta * avg + (1.0 - beta) * step.loss as f64;
        let smooth = avg / (1.0 - beta.powi(i as i32 + 1));
        out.lrs.push(lr);
        out.losses.push(step.loss);
        out.running.push(smooth as f32);
        best = best.min(smooth);
        if !smooth.is_finite() || smooth > opts.diverge_factor as f64 * best {
            out.exploded = true;
            break;
        }
    }
    let forwards = ema(&out.losses, opts.beta);
    let mut backwards = ema(&forwards.into_iter().rev().collect::<Vec<_>>(), opts.beta);
    backwards.reverse();
    out.smoothed = backwards;
    out.suggested = steepest(&out.lrs, &out.smoothed, n);
    Ok(out)
}

/// The bias-corrected exponential moving average of `xs` with weight `beta` on the past.
fn ema(xs: &[f32], beta: f32) -> Vec<f32> {
    let beta = beta as f64;
    let mut avg = 0.0f64;
    let mut power = 1.0f64;
    xs.iter()
        .map(|&x| {
            avg = beta * avg + (1.0 - beta) * x as f64;
            power *= beta;
            (avg / (1.0 - power)) as f32
        })
        .collect()
}

/// fastai's steepest-descent suggestion: leaving out the first tenth of the `planned` batches and
/// the last 5 run, the learning rate at which the smoothed loss falls fastest against `ln(lr)`
/// (the most negative forward difference). `None` when fewer than 2 points are left.
pub fn steepest(lrs: &[f32], smoothed: &[f32], planned: usize) -> Option<f32> {
    let start = planned / 10;
    let end = lrs.len().saturating_sub(5);
    if end < start + 2 {
        return None;
    }
    let (lrs, losses) = (&lrs[start..end], &smoothed[start..end]);
    (0..lrs.len() - 1)
        .map(|i| (i, (losses[i + 1] - losses[i]) / (lrs[i + 1].ln() - lrs[i].ln())))
        .filter(|(_, g)| g.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| lrs[i])
}

/// The x-axis label of `lr-find.png`.
pub const X_LABEL: &str = "learning rate (log scale)";
/// The y-axis label of `lr-find.png`.
pub const Y_LABEL: &str = "smoothed training loss";

/// Draws the smoothed loss against the learning rate (log-scale x axis, labelled axes), with the
/// suggestion marked, as a PNG at `path` (written atomically).
pub fn plot(path: &Path, title: &str, found: &LrFind) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| Error::Invalid(format!("plotting {}: {e}", path.display()));
    let points: Vec<(f32, f32)> = found
        .lrs
        .iter()
        .zip(&found.smoothed)
        .filter(|(l, s)| s.is_finite() && **l > 0.0)
        .map(|(&l, &s)| (l, s))
        .collect();
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let x_lo = points.first().map_or(1e-7, |p| p.0);
        let x_hi = points.last().map_or(10.0, |p| p.0).max(x_lo * 10.0);
        // The y range leaves out the explosion's last points, which would flatten the curve.
        let shown = &points[..points.len().saturating_sub(if found.exploded { 1 } else { 0 }).max(1).min(points.len())];
        let lo = shown.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
        let hi = shown.iter().map(|p| p.1).fold(f32::NEG_INFINITY, f32::max);
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(X_LABEL)
            .y_desc(Y_LABEL)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| err(&e))?;
        let line = RGBColor(31, 119, 180).stroke_width(2);
        let clipped = points.iter().map(|&(x, y)| (x, y.min(hi + pad)));
        chart.draw_series(LineSeries::new(clipped, line)).map_err(|e| err(&e))?;
        if let Some(lr) = found.suggested {
            let at = points.iter().find(|p| p.0 == lr).map_or(lo, |p| p.1);
            let red = RGBColor(214, 39, 40);
            chart.draw_series([Circle::new((lr, at), 6, red.filled())]).map_err(|e| err(&e))?;
            let label = TextStyle::from((FONT, 14).into_font()).color(&red);
            chart
                .draw_series([Text::new(format!("suggested {lr:.1e}"), (lr, at + (hi - lo) * 0.06), label)])
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer is w*h*3");
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| err(&e))?;
    io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::data::Dataset;
    use crate::nn::{Init, LayerSpec, OptimizerConfig};
    use crate::train::ProgressMode;

    /// Two overlapping blobs in 8 dimensions, every tenth label flipped: no linear model fits
    /// them, so huge steps make the loss explode.
    fn blobs(n: usize) -> Dataset {
        let mut rng = Rng::new(7);
        let class: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let x = ndarray::Array2::from_shape_fn((n, 8), |(i, j)| {
            let centre = if j < 2 { class[i] as f32 * 4.0 - 2.0 } else { 0.0 };
            centre + 1.5 * (rng.uniform() * 2.0 - 1.0)
        });
        let y = class.iter().enumerate().map(|(i, &c)| if i % 10 == 0 { 1 - c } else { c }).collect();
        Dataset { x: x.into_dyn(), y }
    }

    fn run(data: &Dataset, cfg: &TrainConfig, end_lr: f32) -> LrFind {
        let mut rng = Rng::new(1);
        let mut model = Sequential::new(&[LayerSpec::Dense { inputs: 8, units: 2, init: Init::Glorot }], &mut rng);
        let job = Job { train: data, val: None, cfg, class_weights: None, run: "lr", bucket_by_length: false };
        let session = Session::new(None, false, ProgressMode::Quiet);
        let beta = LrFindOptions::beta_for(data.len() / cfg.batch_size);
        let opts = LrFindOptions { beta, end_lr, ..Default::default() };
        lr_find(&mut model, &job, rng.fork(1), &session, &opts).unwrap()
    }

    #[test]
    fn the_rate_rises_exponentially_and_the_test_stops_when_the_loss_explodes() {
        let data = blobs(12000);
        let cfg = TrainConfig {
            batch_size: 60,
            optimizer: OptimizerConfig { lr: 0.01, ..Default::default() },
            ..Default::default()
        };
        let f = run(&data, &cfg, 1000.0);
        assert_eq!(f.planned, 200);
        assert!((f.lrs[0] - 1e-7).abs() < 1e-12);
        let ratios: Vec<f32> = f.lrs.windows(2).map(|w| w[1] / w[0]).collect();
        assert!(ratios.iter().all(|r| (r - ratios[0]).abs() < 1e-3), "a constant ratio: {ratios:?}");
        assert!(f.exploded, "Adam at up to 1000 blows up a linear model: {:?}", f.smoothed);
        assert!(f.lrs.len() < f.planned);
        let best = f.running.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(*f.running.last().unwrap() > 4.0 * best);
        let lowest = f.smoothed.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let running_lowest = f.running.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!(lowest <= running_lowest, "the lag-free curve bottoms out no later than the running average");
        let s = f.suggested.unwrap();
        let curve: Vec<_> = f.lrs.iter().zip(&f.smoothed).map(|(l, s)| format!("{l:.1e}:{s:.3}")).collect();
        assert!((1e-4..=1.0).contains(&s), "a rate where this problem learns fast, not the flat start: {s} {curve:?}");
    }

    #[test]
    fn steepest_picks_the_fastest_fall_past_the_first_tenth() {
        let lrs: Vec<f32> = (0..30).map(|i| 10f32.powf(-6.0 + i as f32 * 0.25)).collect();
        let mut losses = vec![1.0f32; 30];
        losses[1] = 0.0; // inside the skipped first tenth
        for (i, l) in losses.iter_mut().enumerate().skip(10) {
            *l = 1.0 - 0.05 * (i - 9) as f32;
        }
        losses[15] -= 0.3; // the steepest step is 14 -> 15
        assert_eq!(steepest(&lrs, &losses, 30), Some(lrs[14]));
        assert_eq!(steepest(&lrs[..7], &losses[..7], 30), None, "too few points");
    }

    #[test]
    fn too_small_a_pass_is_refused() {
        let data = blobs(10);
        let mut rng = Rng::new(1);
        let mut model = Sequential::new(&[LayerSpec::Dense { inputs: 8, units: 2, init: Init::Glorot }], &mut rng);
        let cfg = TrainConfig { batch_size: 32, ..Default::default() };
        let job = Job { train: &data, val: None, cfg: &cfg, class_weights: None, run: "lr", bucket_by_length: false };
        let session = Session::new(None, false, ProgressMode::Quiet);
        let e = lr_find(&mut model, &job, rng, &session, &LrFindOptions::default()).unwrap_err().to_string();
        assert!(e.contains("at least 2") && e.contains("train.batch_size"), "{e}");
    }

    /// Whether the band of `img` (`x0..x1`, `y0..y1`) holds dark (text) pixels.
    fn inked(img: &image::RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> bool {
        (x0..x1).any(|x| (y0..y1).any(|y| img.get_pixel(x, y).0.iter().all(|&c| c < 100)))
    }

    #[test]
    fn the_plot_has_labelled_axes() {
        let data = blobs(2000);
        let f = run(&data, &TrainConfig { batch_size: 20, ..Default::default() }, 10.0);
        let dir = tempfile::tempdir().unwrap();
        let draw = |name: &str, found: &LrFind| {
            let p = dir.path().join(name);
            plot(&p, "lr-find", found).unwrap();
            image::open(p).unwrap().to_rgb8()
        };
        let img = draw("lr.png", &f);
        assert_eq!(img.dimensions(), (800, 500));
        // The axis descriptions sit in the outer margins: x's centred along the bottom, y's
        // (rotated) along the left edge; the tick labels are nearer the plot.
        assert!(inked(&img, (300, 500), (470, 484)), "x-axis label");
        assert!(inked(&img, (16, 36), (180, 320)), "y-axis label");
        let mut unlabelled = image::RgbImage::new(800, 500);
        unlabelled.fill(255);
        assert!(!inked(&unlabelled, (300, 500), (470, 484)), "the check sees ink only where there is some");
    }
}
