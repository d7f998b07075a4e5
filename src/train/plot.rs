//! `curves.png` (loss and accuracy per epoch) and `confusion.png`, drawn with plotters into an RGB
//! buffer and encoded as PNG with `image`, written atomically.

use std::path::Path;
use std::sync::Once;

use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;

use super::EpochRecord;
use crate::{io, Error, Result};

/// The bundled font's family name (register it with [`register_font`] before drawing text).
pub(crate) const FONT: &str = "sans-serif";

/// Registers the bundled font under [`FONT`] (once per process).
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .unwrap_or_else(|_| panic!("the bundled font is valid"));
    });
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("plotting: {e}"))
}

/// One named line of a learning curve: `(epoch, value)` points.
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(epoch, value)` points.
    pub points: Vec<(f32, f32)>,
    /// Drawn dashed (validation curves).
    pub dashed: bool,
    /// Drawn thin and pale, without its own legend entry (one cross-validation fold).
    pub faint: bool,
}

/// One training run's history to plot (a fold, a fold mean, a final model).
pub struct Curve {
    /// Legend prefix.
    pub name: String,
    /// The run's epochs.
    pub history: Vec<EpochRecord>,
    /// See [`Series::faint`].
    pub faint: bool,
}

impl Curve {
    /// A run drawn in full colour.
    pub fn new(name: impl Into<String>, history: Vec<EpochRecord>) -> Self {
        Curve { name: name.into(), history, faint: false }
    }
}

/// Cross-validation curves: each fold faintly, and their mean over the epochs every fold ran (so the
/// mean never turns into whichever fold ran longest).
pub fn kfold_curves(histories: &[Vec<EpochRecord>]) -> Vec<Curve> {
    let shortest = histories.iter().map(Vec::len).min().unwrap_or(0);
    let common: Vec<Vec<EpochRecord>> = histories.iter().map(|h| h[..shortest].to_vec()).collect();
    let mut curves: Vec<Curve> = histories
        .iter()
        .enumerate()
        .map(|(i, h)| Curve { name: format!("fold {}", i + 1), history: h.clone(), faint: true })
        .collect();
    curves.push(Curve::new(format!("mean of {} folds", histories.len()), super::mean_history(&common)));
    curves
}

/// Draws `runs` as `curves.png`: loss and accuracy panels, training solid and validation dashed.
pub fn learning_curves(path: &Path, name: &str, runs: &[Curve]) -> Result<()> {
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f32>, suffix: &str, dashed: bool| {
        runs.iter()
            .filter(|c| c.history.iter().any(|r| f(r).is_some()))
            .map(|c| Series {
                name: format!("{} {suffix}", c.name),
                points: c.history.iter().filter_map(|r| f(r).map(|v| (r.epoch as f32, v))).collect(),
                dashed,
                faint: c.faint,
            })
            .collect::<Vec<_>>()
    };
    let mut loss = series(&|r| Some(r.loss), "train", false);
    loss.extend(series(&|r| r.val_loss, "val", true));
    let mut acc = series(&|r| Some(r.accuracy), "train", false);
    acc.extend(series(&|r| r.val_accuracy, "val", true));
    curves(path, &format!("{name}: learning curves"), &loss, &acc)
}

/// Integer epoch ticks for an axis from 1 to `last`: at most about `max_ticks`, on a step of 1, 2
/// or 5 times a power of ten, starting at 1.
pub fn epoch_ticks(last: u32, max_ticks: u32) -> Vec<u32> {
    let last = last.max(1);
    let max_ticks = max_ticks.max(2);
    let step = (0..)
        .flat_map(|p| [1u32, 2, 5].map(|m| m.saturating_mul(10u32.saturating_pow(p))))
        .find(|&step| last / step < max_ticks)
        .expect("a step of u32::MAX fits");
    let mut ticks: Vec<u32> = (1..=last / step).map(|k| k * step).collect();
    if step != 2 && ticks.first() != Some(&1) {
        ticks.insert(0, 1);
    }
    ticks
}

fn save_png(path: &Path, w: u32, h: u32, buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer is w*h*3");
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(plot_err)?;
    io::write_atomic(path, &bytes)
}

const FAINT: RGBColor = RGBColor(190, 190, 190);

/// Line colours (matplotlib's tab10), picked in turn.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn pick(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Draws two panels (loss, accuracy) of learning curves to `path`, each with its legend below the
/// plot so that it never hides a line.
pub fn curves(path: &Path, title: &str, loss: &[Series], accuracy: &[Series]) -> Result<()> {
    register_font();
    let (w, h) = (1100u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 22)).map_err(plot_err)?;
        let panels = root.split_evenly((1, 2));
        let legend_rows = [loss, accuracy].iter().map(|s| legend(s).len().div_ceil(3)).max().unwrap_or(1);
        for (area, (name, series)) in panels.iter().zip([("loss", loss), ("accuracy", accuracy)]) {
            let (plot_area, legend_area) = area.split_vertically(area.dim_in_pixel().1 - 8 - 20 * legend_rows as u32);
            let last = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f32, f32::max).round();
            let last = (last as u32).max(2);
            let ticks: Vec<i32> = epoch_ticks(last, 10).into_iter().map(|t| t as i32).collect();
            let ys = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
            let (lo, hi) = (ys().fold(f32::INFINITY, f32::min), ys().fold(f32::NEG_INFINITY, f32::max));
            let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
            let pad = (hi - lo) * 0.05;
            let mut chart = ChartBuilder::on(&plot_area)
                .caption(name, (FONT, 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d((1i32..last as i32).with_key_points(ticks), (lo - pad)..(hi + pad))
                .map_err(plot_err)?;
            chart.configure_mesh().x_desc("epoch").label_style((FONT, 13)).draw().map_err(plot_err)?;
            // Faint lines first, so that the coloured ones are drawn over them.
            for s in series.iter().filter(|s| s.faint) {
                let style = ShapeStyle { color: FAINT.to_rgba(), filled: false, stroke_width: 1 };
                draw_line(&mut chart, s, style)?;
            }
            for (i, s) in series.iter().filter(|s| !s.faint).enumerate() {
                let style = ShapeStyle { color: pick(i).to_rgba(), filled: false, stroke_width: 2 };
                draw_line(&mut chart, s, style)?;
            }
            draw_legend(&legend_area, &legend(series))?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(path, w, h, buf)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<WithKeyPoints<plotters::coord::types::RangedCoordi32>, plotters::coord::types::RangedCoordf32>,
>;

fn draw_line(chart: &mut Chart, s: &Series, style: ShapeStyle) -> Result<()> {
    let points = s.points.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| (x.round() as i32, y));
    if s.dashed {
        chart.draw_series(DashedLineSeries::new(points, 6, 4, style)).map_err(plot_err)?;
    } else {
        chart.draw_series(LineSeries::new(points, style)).map_err(plot_err)?;
    }
    Ok(())
}

/// Legend entries: `(label, style, dashed)`; faint series share one entry per line kind.
fn legend(series: &[Series]) -> Vec<(String, ShapeStyle, bool)> {
    let mut entries = Vec::new();
    for dashed in [false, true] {
        if series.iter().any(|s| s.faint && s.dashed == dashed) {
            let name = if dashed { "each fold val" } else { "each fold train" };
            entries.push((name.to_string(), ShapeStyle::from(FAINT).stroke_width(2), dashed));
        }
    }
    let coloured = series.iter().filter(|s| !s.faint).enumerate();
    let mut main: Vec<_> = coloured.map(|(i, s)| (s.name.clone(), pick(i).stroke_width(2), s.dashed)).collect();
    main.append(&mut entries);
    main
}

/// Draws legend entries left to right, three to a row.
fn draw_legend(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    entries: &[(String, ShapeStyle, bool)],
) -> Result<()> {
    let width = area.dim_in_pixel().0 as i32;
    let (left, col) = (64, (width - 64) / 3);
    for (k, (name, style, dashed)) in entries.iter().enumerate() {
        let (x, y) = (left + (k as i32 % 3) * col, 4 + (k as i32 / 3) * 20 + 8);
        if *dashed {
            for d in [0, 10, 20] {
                area.draw(&PathElement::new(vec![(x + d, y), (x + d + 6, y)], *style)).map_err(plot_err)?;
            }
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 26, y)], *style)).map_err(plot_err)?;
        }
        let text = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
        area.draw(&Text::new(name.clone(), (x + 34, y - 7), text)).map_err(plot_err)?;
    }
    Ok(())
}

/// Draws a confusion matrix (`confusion[true][predicted]`) as a heat map with counts.
pub fn confusion(path: &Path, title: &str, labels: &[String], confusion: &[Vec<usize>]) -> Result<()> {
    register_font();
    let n = labels.len();
    let cell = (480 / n.max(1)).clamp(24, 120) as i32;
    let (left, top) = (140i32, 80i32);
    let (w, h) = ((left + cell * n as i32 + 40) as u32, (top + cell * n as i32 + 60) as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let text = |size: i32| TextStyle::from((FONT, size).into_font()).color(&BLACK);
        root.draw(&Text::new(title.to_string(), (10, 10), text(20))).map_err(plot_err)?;
        root.draw(&Text::new("predicted".to_string(), (left, top - 44), text(14))).map_err(plot_err)?;
        root.draw(&Text::new("true".to_string(), (10, top - 24), text(14))).map_err(plot_err)?;
        for (i, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum::<usize>().max(1);
            for (j, &count) in row.iter().enumerate() {
                let share = count as f64 / total as f64;
                let shade = (255.0 * (1.0 - 0.8 * share)) as u8;
                let (x, y) = (left + j as i32 * cell, top + i as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(shade, shade, 255).filled()))
                    .map_err(plot_err)?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK.stroke_width(1))).map_err(plot_err)?;
                let color = if share > 0.6 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 15).into_font()).color(&color);
                root.draw(&Text::new(count.to_string(), (x + cell / 2 - 8, y + cell / 2 - 8), style))
                    .map_err(plot_err)?;
            }
        }
        for (k, label) in labels.iter().enumerate() {
            let short: String = label.chars().take(14).collect();
            root.draw(&Text::new(short.clone(), (10, top + k as i32 * cell + cell / 2 - 8), text(14)))
                .map_err(plot_err)?;
            root.draw(&Text::new(short, (left + k as i32 * cell + 2, top - 20), text(13))).map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(path, w, h, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(epochs: usize, offset: f32) -> Vec<EpochRecord> {
        (1..=epochs)
            .map(|e| EpochRecord {
                epoch: e,
                loss: offset + 1.0 / e as f32,
                accuracy: 0.5,
                val_loss: Some(offset + 2.0 / e as f32),
                val_accuracy: Some(0.4),
                lr: 0.01,
                seconds: 0.1,
            })
            .collect()
    }

    #[test]
    fn epoch_ticks_are_distinct_integers() {
        assert_eq!(epoch_ticks(4, 10), [1, 2, 3, 4]);
        assert_eq!(epoch_ticks(12, 10), [2, 4, 6, 8, 10, 12]);
        assert_eq!(epoch_ticks(150, 10), [1, 20, 40, 60, 80, 100, 120, 140]);
        assert_eq!(epoch_ticks(1, 10), [1]);
        for last in 1..500 {
            let ticks = epoch_ticks(last, 10);
            assert!(ticks.len() <= 11 && !ticks.is_empty(), "{last}: {ticks:?}");
            assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{last}: {ticks:?}");
            assert!(*ticks.last().unwrap() <= last, "{last}: {ticks:?}");
        }
    }

    #[test]
    fn the_fold_mean_stops_at_the_shortest_fold() {
        let curves = kfold_curves(&[history(10, 0.0), history(4, 1.0), history(10, 2.0)]);
        assert_eq!(curves.len(), 4);
        assert!(curves[..3].iter().all(|c| c.faint));
        assert_eq!(curves[1].history.len(), 4);
        let mean = &curves[3];
        assert!(!mean.faint);
        assert_eq!(mean.name, "mean of 3 folds");
        assert_eq!(mean.history.len(), 4, "not past the shortest fold");
        assert!((mean.history[1].loss - (1.0 + 0.5)).abs() < 1e-6, "epoch 2 over all three folds");
    }

    #[test]
    fn learning_curves_draw_folds_and_a_single_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = kfold_curves(&[history(30, 0.0), history(12, 0.1)]);
        runs.push(Curve::new("final", history(20, 0.0)));
        learning_curves(&dir.path().join("k.png"), "k", &runs).unwrap();
        learning_curves(&dir.path().join("one.png"), "one", &[Curve::new("holdout", history(1, 0.0))]).unwrap();
        for f in ["k.png", "one.png"] {
            let img = image::open(dir.path().join(f)).unwrap();
            assert_eq!((img.width(), img.height()), (1100, 480));
        }
    }
}
