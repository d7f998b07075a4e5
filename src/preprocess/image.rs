//! Image decoding and preprocessing: decode (JPEG, PNG, WebP) under size limits, apply EXIF
//! orientation, convert grey / alpha / CMYK to RGB, resize with a SIMD bilinear filter
//! (`fast_image_resize`), normalise into an NCHW tensor. The recipe is serialisable: it goes into
//! the exported model's `graft.preprocess` metadata and into the feature cache key.

use std::io::BufReader;
use std::path::Path;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use ndarray::{Array4, ArrayView3};
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

    /// Decodes `path` and resizes it to `size x size` RGB; a file that cannot be used is a [`Skip`]
    /// naming it and the reason.
    pub fn load(&self, path: &Path) -> std::result::Result<RgbImage, Skip> {
        let skip = |reason: String| Skip { path: path.display().to_string(), reason };
        let img = decode(path).map_err(skip)?;
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
        for (i, img) in images.iter().enumerate() {
            let px = ArrayView3::from_shape((s, s, 3), img.as_raw()).expect("resized to size x size");
            for (c, (&mean, &scale)) in self.mean.iter().zip(&scale).enumerate() {
                let plane = px.index_axis(ndarray::Axis(2), c);
                let mut dst = match self.layout {
                    Layout::Nchw => out.slice_mut(ndarray::s![i, c, .., ..]),
                    Layout::Nhwc => out.slice_mut(ndarray::s![i, .., .., c]),
                };
                ndarray::Zip::from(&mut dst).and(&plane).for_each(|d, &p| *d = (p as f32 - mean) * scale);
            }
        }
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

/// Decodes an image file to RGB8 with EXIF orientation applied, refusing oversized images before
/// they are decoded.
pub fn decode(path: &Path) -> std::result::Result<RgbImage, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".into());
    }
    if let Some(reason) = truncated_jpeg(path) {
        return Err(reason);
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image (unknown format)".into());
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

/// JPEG decoders fill a truncated file's missing rows with grey instead of failing; a JPEG must end
/// with its end-of-image marker (trailing padding aside).
fn truncated_jpeg(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 2];
    f.read_exact(&mut head).ok()?;
    if head != [0xFF, 0xD8] {
        return None;
    }
    let len = f.metadata().ok()?.len();
    let tail_len = len.min(4096);
    f.seek(SeekFrom::Start(len - tail_len)).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
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
