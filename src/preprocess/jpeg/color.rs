//! Chroma upsampling to the 1/8-scale luma grid and YCbCr to RGB.

use image::RgbImage;

use super::{Component, ScanComp};

/// Upsamples chroma to the output grid (triangle filter for factor 2, replication otherwise) and converts
/// to RGB with libjpeg's fixed-point JFIF equations.
pub(super) fn to_rgb(
    comps: &[ScanComp],
    frame: &[Component],
    width: usize,
    height: usize,
    rgb_space: bool,
) -> RgbImage {
    let (ow, oh) = (width.div_ceil(8), height.div_ceil(8));
    let mut rgb = vec![0u8; ow * oh * 3];
    if comps.len() == 1 {
        for (y, out) in rgb.chunks_exact_mut(ow * 3).enumerate() {
            let row = &comps[0].plane[y * comps[0].stride..];
            for (px, &v) in out.chunks_exact_mut(3).zip(row) {
                px.fill(v);
            }
        }
    } else {
        let hmax = frame.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = frame.iter().map(|c| c.v).max().unwrap_or(1);
        let planes: Vec<Vec<u8>> = comps
            .iter()
            .zip(frame)
            .map(|(c, f)| {
                let (cw, ch) = ((width * f.h).div_ceil(8 * hmax), (height * f.v).div_ceil(8 * vmax));
                upsample(c, (cw, ch), (hmax / f.h, vmax / f.v), ow, oh)
            })
            .collect();
        for (((px, &y), &cb), &cr) in rgb.chunks_exact_mut(3).zip(&planes[0]).zip(&planes[1]).zip(&planes[2]) {
            px.copy_from_slice(&if rgb_space { [y, cb, cr] } else { ycc_to_rgb(y, cb, cr) });
        }
    }
    RgbImage::from_raw(ow as u32, oh as u32, rgb).expect("ow * oh * 3 bytes")
}

/// JFIF YCbCr to RGB with libjpeg's 16-bit fixed-point constants and rounding.
#[inline]
pub(super) fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    let r = y + ((91881 * cr + 32768) >> 16);
    let g = y + ((-22554 * cb - 46802 * cr + 32768) >> 16);
    let b = y + ((116130 * cb + 32768) >> 16);
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

/// Resamples the `cw` x `ch` samples of a plane by factors `fx`, `fy` to `ow` x `oh`: a 3:1 triangle filter
/// (as libjpeg's "fancy" upsampling) for factor 2, replication for larger factors; edges are replicated.
pub(super) fn upsample(
    c: &ScanComp,
    (cw, ch): (usize, usize),
    (fx, fy): (usize, usize),
    ow: usize,
    oh: usize,
) -> Vec<u8> {
    let row = |y: usize| &c.plane[y.min(ch - 1) * c.stride..][..cw];
    let mut out = vec![0u8; ow * oh];
    let (mut sums, mut wide) = (vec![0u32; cw], vec![0u8; 2 * cw]);
    for (y, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let near = row(y / fy);
        if fx > 2 || fy > 2 {
            out_row.iter_mut().enumerate().for_each(|(x, o)| *o = near[x / fx]);
            continue;
        }
        let far = if fy == 1 {
            near
        } else if y % 2 == 0 {
            row((y / 2).saturating_sub(1))
        } else {
            row(y / 2 + 1)
        };
        for ((s, &a), &b) in sums.iter_mut().zip(near).zip(far) {
            *s = 3 * a as u32 + b as u32;
        }
        if fx == 1 {
            out_row.iter_mut().zip(&sums).for_each(|(o, &s)| *o = ((s + 2) >> 2) as u8);
            continue;
        }
        for (i, pair) in wide.chunks_exact_mut(2).enumerate() {
            let (l, m, r) = (sums[i.saturating_sub(1)], sums[i], sums[(i + 1).min(cw - 1)]);
            pair.copy_from_slice(&[((3 * m + l + 8) >> 4) as u8, ((3 * m + r + 8) >> 4) as u8]);
        }
        out_row.copy_from_slice(&wide[..ow]);
    }
    out
}
