//! Image decoding and preprocessing: decode (JPEG, PNG, WebP) under size limits, apply EXIF
//! orientation, convert grey / alpha / CMYK to RGB, resize with a SIMD bilinear filter
//! (`fast_image_resize`), normalise into an NCHW tensor. The recipe is serialisable: it goes into
//! the exported model's `graft.preprocess` metadata and into the feature cache key.

use std::io::Cursor;
use std::path::Path;

use fast_image_resize as fr;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use ndarray::{Array4, ArrayView3, ArrayViewMut3};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::manifest::{ImageInput, Layout, ResizeMode};
use crate::{Error, Result};

/// Largest width or height accepted before decoding (decompression-bomb guard).
pub const MAX_SIDE: u32 = 12_000;
/// Largest allocation the decoder may make.
pub const MAX_ALLOC: u64 = 512 << 20;

/// How images become tensors; stored as JSON in `graft.preprocess`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagePreprocess {
    /// Side of the square input, in pixels.
    pub size: u32,
    /// How images are brought to `size x size`.
    pub resize: ResizeMode,
    /// Per-channel mean on 0..255 RGB values.
    pub mean: [f32; 3],
    /// Per-channel standard deviation on 0..255 RGB values.
    pub std: [f32; 3],
    /// Layout of the model's image input.
    pub layout: Layout,
    /// `f32` (normalised) or `u8` (raw RGB, normalised inside the graph).
    pub dtype: crate::backend::Dtype,
}

/// Why a file was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The file.
    pub path: String,
    /// Why it could not be used.
    pub reason: String,
}

impl ImagePreprocess {
    /// The recipe a backbone manifest describes (f32, NCHW).
    pub fn from_manifest(input: &ImageInput) -> Self {
        ImagePreprocess {
            size: input.size,
            resize: input.resize,
            mean: input.mean,
            std: input.std,
            layout: input.layout,
            dtype: crate::backend::Dtype::F32,
        }
    }

    /// Canonical JSON, for metadata and cache keys.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("preprocess serialises")
    }

    /// Parses `graft.preprocess` metadata.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::Invalid(format!("graft.preprocess: {e}")))
    }

    /// Decodes `path` and resizes it to `size x size` RGB, reading the file once; a file that
    /// cannot be used is a [`Skip`] naming it and the reason.
    pub fn load(&self, path: &Path) -> std::result::Result<RgbImage, Skip> {
        let bytes =
            std::fs::read(path).map_err(|e| Skip { path: path.display().to_string(), reason: e.to_string() })?;
        self.load_bytes(path, &bytes)
    }

    /// [`ImagePreprocess::load`] on a file's bytes already in memory (`path` names it in a
    /// [`Skip`]). Large JPEGs are decoded at a reduced DCT scale when the result still covers
    /// `size x size` (see [`decode_bytes`]).
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> std::result::Result<RgbImage, Skip> {
        let skip = |reason: String| Skip { path: path.display().to_string(), reason };
        let img = decode_bytes(bytes, Some(self.size)).map_err(skip)?;
        self.resize(&img).map_err(skip)
    }

    fn resize(&self, img: &RgbImage) -> std::result::Result<RgbImage, String> {
        let (w, h) = img.dimensions();
        let src = fr::images::ImageRef::new(w, h, img.as_raw(), fr::PixelType::U8x3).map_err(|e| e.to_string())?;
        let mut dst = fr::images::Image::new(self.size, self.size, fr::PixelType::U8x3);
        let mut options = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        if self.resize == ResizeMode::ShorterSideCrop {
            options = options.fit_into_destination(Some((0.5, 0.5)));
        }
        fr::Resizer::new().resize(&src, &mut dst, &options).map_err(|e| e.to_string())?;
        Ok(RgbImage::from_raw(self.size, self.size, dst.into_vec()).expect("size x size x 3"))
    }

    /// Stacks resized images into the model's input tensor: `(x - mean) / std`, NCHW or NHWC.
    ///
    /// # Shapes
    /// `images` each `[size, size, 3]` -> `[N, 3, size, size]` (NCHW) or `[N, size, size, 3]` (NHWC)
    pub fn tensor(&self, images: &[RgbImage]) -> Array4<f32> {
        let s = self.size as usize;
        let scale = self.std.map(|v| 1.0 / v);
        let mut out = match self.layout {
            Layout::Nchw => Array4::<f32>::zeros((images.len(), 3, s, s)),
            Layout::Nhwc => Array4::<f32>::zeros((images.len(), s, s, 3)),
        };
        let per_image = 3 * s * s;
        let flat = out.as_slice_mut().expect("a new array is contiguous");
        flat.par_chunks_mut(per_image.max(1)).zip(images.par_iter()).for_each(|(chunk, img)| {
            let px = ArrayView3::from_shape((s, s, 3), img.as_raw()).expect("resized to size x size");
            let mut dst = match self.layout {
                Layout::Nchw => ArrayViewMut3::from_shape((3, s, s), chunk).expect("3 x size x size"),
                Layout::Nhwc => {
                    let mut v = ArrayViewMut3::from_shape((s, s, 3), chunk).expect("size x size x 3");
                    v.swap_axes(0, 2);
                    v.swap_axes(1, 2);
                    v
                }
            };
            for (c, (&mean, &scale)) in self.mean.iter().zip(&scale).enumerate() {
                let plane = px.index_axis(ndarray::Axis(2), c);
                ndarray::Zip::from(dst.index_axis_mut(ndarray::Axis(0), c))
                    .and(&plane)
                    .for_each(|d, &p| *d = (p as f32 - mean) * scale);
            }
        });
        out
    }

    /// Raw RGB bytes, for models exported with preprocessing inside the graph.
    ///
    /// # Shapes
    /// `images` each `[size, size, 3]` -> `[N, size, size, 3]`
    pub fn tensor_u8(&self, images: &[RgbImage]) -> ndarray::Array4<u8> {
        let s = self.size as usize;
        let data: Vec<u8> = images.iter().flat_map(|i| i.as_raw().iter().copied()).collect();
        ndarray::Array4::from_shape_vec((images.len(), s, s, 3), data).expect("size x size x 3 each")
    }
}

/// Whether large JPEGs are decoded at a reduced DCT scale: yes unless `GRAFT_FULL_DECODE=1` (for
/// comparisons; read once per process).
pub fn scaled_jpeg_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("GRAFT_FULL_DECODE").map_or(true, |v| v.is_empty() || v == "0"))
}

/// Decodes an image file to RGB8 with EXIF orientation applied, refusing oversized images before
/// they are decoded; the file is read once.
pub fn decode(path: &Path) -> std::result::Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_bytes(&bytes, None)
}

/// Decodes an image file's bytes to RGB8 with EXIF orientation applied, refusing oversized images
/// before they are decoded. With `min_side`, a JPEG whose width and height are both at least twice
/// `min_side` is decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps both at least
/// `min_side` (as libjpeg-turbo's scaled decoding and Pillow's `draft()` do), unless
/// [`scaled_jpeg_enabled`] says no; the caller resizes the result.
pub fn decode_bytes(bytes: &[u8], min_side: Option<u32>) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    if let Some(reason) = truncated_jpeg(bytes) {
        return Err(reason);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    match reader.format() {
        None => return Err("not an image (unknown format)".into()),
        Some(image::ImageFormat::Jpeg) => {
            // A JPEG the scaled decoder refuses goes to the full decoder, whose verdict stands.
            if let Some(Ok(Some(img))) = min_side.filter(|_| scaled_jpeg_enabled()).map(|m| scaled_jpeg(bytes, m)) {
                return Ok(img);
            }
        }
        Some(_) => {}
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}x{h} is larger than the {MAX_SIDE}-pixel limit"));
    }
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// The DCT scale denominator (1, 2, 4 or 8) for a `w x h` JPEG that must keep both sides at least
/// `min_side`.
pub fn jpeg_scale(w: u32, h: u32, min_side: u32) -> u32 {
    [8, 4, 2].into_iter().find(|d| w.div_ceil(*d) >= min_side && h.div_ceil(*d) >= min_side).unwrap_or(1)
}

/// A JPEG decoded at a reduced DCT scale, or `None` when no reduction applies (small images) or
/// the pixel format is one the full decoder handles better (CMYK, 16-bit grey). At 1/8 the DC-only
/// decoder of [`super::jpeg`] runs when it handles the file (baseline, 1 or 3 components).
fn scaled_jpeg(bytes: &[u8], min_side: u32) -> std::result::Result<Option<RgbImage>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(MAX_ALLOC as usize);
    decoder.read_info().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no JPEG header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}x{h} is larger than the {MAX_SIDE}-pixel limit"));
    }
    let d = jpeg_scale(w, h, min_side);
    if d == 1 || !matches!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8) {
        return Ok(None);
    }
    let orientation = decoder.exif_data().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    if d == 8 {
        if let Some(dc) = super::jpeg::decode_dc(bytes)? {
            let mut img = DynamicImage::ImageRgb8(dc);
            img.apply_orientation(orientation);
            return Ok(Some(img.into_rgb8()));
        }
    }
    let (sw, sh) = decoder.scale(w.div_ceil(d) as u16, h.div_ceil(d) as u16).map_err(|e| e.to_string())?;
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let img = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(sw, sh, pixels).ok_or("decoded JPEG smaller than its header says")?,
        ),
        _ => DynamicImage::ImageRgb8(
            RgbImage::from_raw(sw, sh, pixels).ok_or("decoded JPEG smaller than its header says")?,
        ),
    };
    let mut img = img;
    img.apply_orientation(orientation);
    Ok(Some(img.into_rgb8()))
}

/// JPEG decoders fill a truncated file's missing rows with grey instead of failing; a JPEG must end
/// with its end-of-image marker (trailing padding aside).
fn truncated_jpeg(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let end = tail.iter().rposition(|&b| b != 0 && !b.is_ascii_whitespace())?;
    let ok = end >= 1 && tail[end - 1] == 0xFF && tail[end] == 0xD9;
    (!ok).then(|| "truncated JPEG (no end-of-image marker)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    fn write_png(path: &Path, img: &DynamicImage, exif: Option<Vec<u8>>) {
        let mut bytes = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
        if let Some(e) = exif {
            enc.set_exif_metadata(e).unwrap();
        }
        enc.write_image(img.as_bytes(), img.width(), img.height(), img.color().into()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn exif_orientation_grey_and_alpha_become_upright_rgb() {
        let dir = tempfile::tempdir().unwrap();
        // 4 x 2, left half red, right half blue; EXIF orientation 6 = rotate 90° clockwise.
        let img = RgbImage::from_fn(4, 2, |x, _| if x < 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let exif = vec![0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0];
        let p = dir.path().join("rotated.png");
        write_png(&p, &DynamicImage::ImageRgb8(img), Some(exif));
        let out = decode(&p).unwrap();
        assert_eq!(out.dimensions(), (2, 4), "orientation applied");
        assert_eq!(out.get_pixel(0, 0), &Rgb([255, 0, 0]), "top is the former left side");
        assert_eq!(out.get_pixel(0, 3), &Rgb([0, 0, 255]));

        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 3, image::Luma([200])));
        write_png(&dir.path().join("grey.png"), &grey, None);
        assert_eq!(decode(&dir.path().join("grey.png")).unwrap().get_pixel(1, 1), &Rgb([200, 200, 200]));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(3, 3, image::Rgba([10, 20, 30, 40])));
        write_png(&dir.path().join("alpha.png"), &rgba, None);
        assert_eq!(decode(&dir.path().join("alpha.png")).unwrap().get_pixel(2, 2), &Rgb([10, 20, 30]));
    }

    #[test]
    fn tensor_normalises_in_nchw_and_nhwc() {
        let img = RgbImage::from_fn(2, 2, |x, y| Rgb([(x * 100) as u8, (y * 100) as u8, 255]));
        let mut pre = ImagePreprocess {
            size: 2,
            resize: ResizeMode::Stretch,
            mean: [127.0, 127.0, 127.0],
            std: [128.0, 128.0, 128.0],
            layout: Layout::Nchw,
            dtype: crate::backend::Dtype::F32,
        };
        let t = pre.tensor(std::slice::from_ref(&img));
        assert_eq!(t.shape(), [1, 3, 2, 2]);
        assert_eq!(t[[0, 0, 0, 1]], (100.0 - 127.0) / 128.0, "channel 0, row 0, column 1");
        assert_eq!(t[[0, 1, 1, 0]], (100.0 - 127.0) / 128.0, "channel 1, row 1, column 0");
        assert_eq!(t[[0, 2, 0, 0]], 1.0);
        pre.layout = Layout::Nhwc;
        let t = pre.tensor(&[img]);
        assert_eq!(t.shape(), [1, 2, 2, 3]);
        assert_eq!(t[[0, 0, 1, 0]], (100.0 - 127.0) / 128.0);
    }

    #[test]
    fn resize_modes() {
        let wide =
            RgbImage::from_fn(
                40,
                20,
                |x, _| if !(10..30).contains(&x) { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) },
            );
        let mut pre = ImagePreprocess {
            size: 10,
            resize: ResizeMode::ShorterSideCrop,
            mean: [0.0; 3],
            std: [1.0; 3],
            layout: Layout::Nchw,
            dtype: crate::backend::Dtype::F32,
        };
        let cropped = pre.resize(&wide).unwrap();
        assert_eq!(cropped.dimensions(), (10, 10));
        assert!(cropped.pixels().all(|p| p[0] > 200), "the centre square is all white");
        pre.resize = ResizeMode::Stretch;
        let stretched = pre.resize(&wide).unwrap();
        assert!(stretched.get_pixel(0, 5)[0] < 50, "stretching keeps the black sides");
    }

    /// A `w x h` photo-like JPEG (smooth gradients, a disc, fine stripes), with EXIF `exif` if any.
    fn big_jpeg(w: u32, h: u32, exif: Option<Vec<u8>>) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let disc = (fx - 0.6).powi(2) + (fy - 0.4).powi(2) < 0.04;
            let stripe = ((x / 40 + y / 60) % 2) as f32 * 30.0;
            match disc {
                true => Rgb([230, 40 + (fy * 100.0) as u8, 30]),
                false => Rgb([(fx * 200.0 + stripe) as u8, (fy * 180.0) as u8, (100.0 + stripe) as u8]),
            }
        });
        let mut bytes = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        if let Some(e) = exif {
            enc.set_exif_metadata(e).unwrap();
        }
        enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8).unwrap();
        bytes
    }

    fn pre(size: u32) -> ImagePreprocess {
        ImagePreprocess {
            size,
            resize: ResizeMode::Stretch,
            mean: [127.0; 3],
            std: [128.0; 3],
            layout: Layout::Nchw,
            dtype: crate::backend::Dtype::F32,
        }
    }

    #[test]
    fn the_dct_scale_keeps_both_sides_at_least_the_target() {
        assert_eq!(jpeg_scale(4032, 3024, 224), 8, "12 MP: 504 x 378");
        assert_eq!(jpeg_scale(1200, 900, 224), 4, "300 x 225");
        assert_eq!(jpeg_scale(1200, 440, 224), 1, "440 / 2 is below 224");
        assert_eq!(jpeg_scale(500, 375, 224), 1);
        assert_eq!(jpeg_scale(3000, 1000, 224), 4, "the shorter side decides: 1000 / 4 = 250");
    }

    #[test]
    fn a_large_jpeg_decoded_at_a_reduced_scale_stays_close_to_full_decode_and_resize() {
        let bytes = big_jpeg(2400, 1800, None);
        let full = decode_bytes(&bytes, None).unwrap();
        assert_eq!(full.dimensions(), (2400, 1800));
        let scaled = decode_bytes(&bytes, Some(224)).unwrap();
        assert_eq!(scaled.dimensions(), (300, 225), "decoded at 1/8");
        let p224 = pre(224);
        let (a, b) = (p224.resize(&full).unwrap(), p224.load_bytes(Path::new("big.jpg"), &bytes).unwrap());
        let diffs: Vec<f32> = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f32 - y as f32).abs()).collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(mean < 2.5, "mean absolute difference {mean} (0..255)");
        assert!(mean > 0.0, "the scaled path was taken");

        // The same class from the tiny CNN fixture, at its 8 x 8 input.
        let pre8 = pre(8);
        let small = [pre8.resize(&full).unwrap(), pre8.load_bytes(Path::new("big.jpg"), &bytes).unwrap()];
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_cnn.onnx");
        let mut engine = crate::backend::tract(&fixture).unwrap();
        let x = crate::backend::Value::F32(pre8.tensor(&small).into_dyn());
        let probs = engine.run_output(vec![("image".into(), x)], "probs").unwrap();
        let class = |r: usize| (0..3).max_by(|&i, &j| probs[[r, i]].total_cmp(&probs[[r, j]])).unwrap();
        assert_eq!(class(0), class(1), "{probs:?}");
        for i in 0..3 {
            assert!((probs[[0, i]] - probs[[1, i]]).abs() < 0.02, "{probs:?}");
        }
    }

    #[test]
    fn the_scaled_decode_applies_exif_orientation() {
        let exif = vec![0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0];
        let bytes = big_jpeg(1600, 1200, Some(exif));
        let scaled = decode_bytes(&bytes, Some(224)).unwrap();
        assert_eq!(scaled.dimensions(), (300, 400), "1/4 scale, then turned upright");
        let full = decode_bytes(&bytes, None).unwrap();
        assert_eq!(full.dimensions(), (1200, 1600));
    }

    #[test]
    fn broken_files_are_skips_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("empty.jpg", Vec::new(), "empty file"),
            ("text.jpg", b"hello, not an image".to_vec(), "not an image"),
            ("half.png", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0".to_vec(), ""),
            ("cut.jpg", vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 2, 3], "truncated JPEG"),
        ];
        for (name, bytes, reason) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let err = decode(&p).unwrap_err();
            assert!(err.contains(reason), "{name}: {err}");
        }
    }
}
