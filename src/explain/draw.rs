//! Heatmaps blended over photos, and the gallery of mistakes (`mistakes.png`).

use std::path::Path;

use image::{Rgb, RgbImage};
use ndarray::ArrayView2;
use plotters::prelude::*;

use crate::train::plot::{register_font, FONT};
use crate::{io, Error, Result};

/// How much of the heatmap's colour covers the photo.
const ALPHA: f32 = 0.45;

/// The jet colour of `v` in `[0, 1]` (blue, cyan, yellow, red).
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// `map` resized to `width x height` bilinearly (pixel centres aligned, edges clamped).
///
/// # Shapes
/// `map` `[h, w]` -> `[height, width]`, row-major
pub fn upsample(map: ArrayView2<f32>, width: u32, height: u32) -> Vec<f32> {
    let (h, w) = map.dim();
    let coord = |x: u32, out: u32, n: usize| {
        let f = ((x as f32 + 0.5) * n as f32 / out as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let i = (f.floor() as usize).min(n - 1);
        (i, (i + 1).min(n - 1), f - i as f32)
    };
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        let (y0, y1, fy) = coord(y, height, h);
        for x in 0..width {
            let (x0, x1, fx) = coord(x, width, w);
            let top = map[[y0, x0]] * (1.0 - fx) + map[[y0, x1]] * fx;
            let bottom = map[[y1, x0]] * (1.0 - fx) + map[[y1, x1]] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// `photo` with `map` (values in `[0, 1]`) upsampled to its size, coloured (jet) and blended over it.
///
/// # Shapes
/// `map` `[h, w]`, any size; the result has `photo`'s size
pub fn overlay(photo: &RgbImage, map: ArrayView2<f32>) -> RgbImage {
    let (width, height) = photo.dimensions();
    let heat = upsample(map, width, height);
    let mut out = photo.clone();
    for (p, v) in out.pixels_mut().zip(heat) {
        let c = jet(v);
        for k in 0..3 {
            p[k] = ((1.0 - ALPHA) * p[k] as f32 + ALPHA * c[k] as f32).round() as u8;
        }
    }
    out
}

/// One wrongly predicted image in the gallery.
pub struct Tile {
    /// The photo with its heatmap.
    pub image: RgbImage,
    /// The true class.
    pub truth: String,
    /// The class predicted.
    pub predicted: String,
    /// The predicted class's probability.
    pub probability: f32,
}

/// Side of a tile's picture in the gallery, in pixels.
const TILE: u32 = 192;
const GAP: u32 = 10;
const CAPTION: u32 = 42;
const HEADER: u32 = 40;
const COLUMNS: u32 = 4;
/// The colour of a wrong prediction's caption.
const WRONG: RGBColor = RGBColor(200, 30, 30);

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing the mistakes: {e}"))
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    match text.chars().count() > max {
        true => format!("{}…", text.chars().take(max - 1).collect::<String>()),
        false => text.to_string(),
    }
}

/// Draws `tiles` in a grid of four columns under `title`, each picture captioned with its true
/// label and its predicted label with the probability, and writes it to `path` as PNG. No tiles
/// draws the title and "no mistakes".
pub fn gallery(path: &Path, title: &str, tiles: &[Tile]) -> Result<()> {
    register_font();
    let n = tiles.len() as u32;
    let columns = n.clamp(2, COLUMNS);
    let rows = n.div_ceil(COLUMNS).max(1);
    let width = GAP + columns * (TILE + GAP);
    let height = HEADER + rows * (TILE + CAPTION + GAP);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let place = |i: u32| (GAP + (i % COLUMNS) * (TILE + GAP), HEADER + (i / COLUMNS) * (TILE + CAPTION + GAP));
    for (i, t) in tiles.iter().enumerate() {
        let pic = image::imageops::resize(&t.image, TILE, TILE, image::imageops::FilterType::Triangle);
        let (x, y) = place(i as u32);
        image::imageops::replace(&mut canvas, &pic, x as i64, y as i64);
    }
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (width, height)).into_drawing_area();
        let style = |size: i32, color: &'static RGBColor| TextStyle::from((FONT, size).into_font()).color(color);
        let max = (TILE / 8) as usize;
        root.draw(&Text::new(clip(title, (width / 9) as usize), (GAP as i32, 10), style(18, &BLACK)))
            .map_err(draw_err)?;
        if tiles.is_empty() {
            root.draw(&Text::new("no mistakes", (GAP as i32, HEADER as i32 + 20), style(16, &BLACK)))
                .map_err(draw_err)?;
        }
        for (i, t) in tiles.iter().enumerate() {
            let (x, y) = place(i as u32);
            let (x, y) = (x as i32, (y + TILE) as i32);
            let truth = format!("true: {}", clip(&t.truth, max));
            let predicted = format!("predicted: {} ({:.2})", clip(&t.predicted, max), t.probability);
            root.draw(&Text::new(truth, (x, y + 4), style(14, &BLACK))).map_err(draw_err)?;
            root.draw(&Text::new(predicted, (x, y + 22), style(14, &WRONG))).map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    write_png(path, &canvas)
}

/// Encodes `img` as PNG and writes it to `path` atomically.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(draw_err)?;
    io::write_atomic(path, &bytes)
}
