//! `curves.png` (loss and accuracy per epoch) and `confusion.png`, drawn with plotters into an RGB
//! buffer and encoded as PNG with `image`, written atomically.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::{io, Error, Result};

const FONT: &str = "sans-serif";

fn register_font() {
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
    pub name: String,
    pub points: Vec<(f32, f32)>,
    pub dashed: bool,
}

fn save_png(path: &Path, w: u32, h: u32, buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer is w*h*3");
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(plot_err)?;
    io::write_atomic(path, &bytes)
}

/// Draws two panels (loss, accuracy) of learning curves to `path`.
pub fn curves(path: &Path, title: &str, loss: &[Series], accuracy: &[Series]) -> Result<()> {
    register_font();
    let (w, h) = (1100u32, 440u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 22)).map_err(plot_err)?;
        let panels = root.split_evenly((1, 2));
        for (area, (name, series)) in panels.iter().zip([("loss", loss), ("accuracy", accuracy)]) {
            let max_x = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f32, f32::max);
            let ys = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
            let (lo, hi) = (ys().fold(f32::INFINITY, f32::min), ys().fold(f32::NEG_INFINITY, f32::max));
            let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
            let pad = (hi - lo) * 0.05;
            let mut chart = ChartBuilder::on(area)
                .caption(name, (FONT, 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(1f32..max_x.max(2.0), (lo - pad)..(hi + pad))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FONT, 13))
                .draw()
                .map_err(plot_err)?;
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let style = ShapeStyle { color, filled: false, stroke_width: 2 };
                let anno = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style)).map_err(plot_err)?
                } else {
                    chart.draw_series(LineSeries::new(s.points.iter().copied(), style)).map_err(plot_err)?
                };
                anno.label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(path, w, h, buf)
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
