//! Depthwise convolution (one filter per channel) as direct loops, parallel over the batch.
//!
//! At stride 1 each channel's plane is copied into a zero-padded plane of width `Wp`; an output
//! row of width `Wp` (its last `Wp - Wo` values unused) then reads, for each kernel tap, one
//! contiguous run of the padded plane shifted by the tap's offset, so the whole plane is one
//! vectorised multiply-add per tap, however small the plane (EfficientNet's last blocks are 7x7).
//! At other strides, for each tap the range of outputs whose input lies inside the image is
//! computed once and each row is a multiply-add with no bounds tests.

use std::ops::Range;

use rayon::prelude::*;

use super::simd;

/// The geometry of one depthwise call.
pub(super) struct Plan {
    /// Input height and width.
    pub hw: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
    /// Kernel height and width.
    pub k: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Top and left padding.
    pub pads: [usize; 2],
}

impl Plan {
    /// The outputs along `axis` whose input at tap `t` lies inside the image.
    fn valid(&self, axis: usize, t: usize) -> Range<usize> {
        let (s, off, pad, size) = (self.strides[axis], t * self.dilations[axis], self.pads[axis], self.hw[axis]);
        let lo = pad.saturating_sub(off).div_ceil(s);
        let hi = (size + pad).saturating_sub(off).div_ceil(s).min(self.out[axis]);
        lo..hi.max(lo)
    }

    /// The input index along `axis` read by output `o` at tap `t` (inside [`Plan::valid`]).
    #[inline]
    fn src(&self, axis: usize, o: usize, t: usize) -> usize {
        o * self.strides[axis] + t * self.dilations[axis] - self.pads[axis]
    }

    /// Calls `f(tap, oy, iy, xs, ix0)` for every tap and valid output row: outputs `xs` of that row
    /// read input row `iy`, output `ox` reading column `ix0 + (ox - xs.start) * stride`.
    fn each_row(&self, mut f: impl FnMut(usize, usize, usize, Range<usize>, usize)) {
        for ky in 0..self.k[0] {
            for kx in 0..self.k[1] {
                let xs = self.valid(1, kx);
                if xs.is_empty() {
                    continue;
                }
                let ix0 = self.src(1, xs.start, kx);
                for oy in self.valid(0, ky) {
                    f(ky * self.k[1] + kx, oy, self.src(0, oy, ky), xs.clone(), ix0);
                }
            }
        }
    }
}

/// The zero-padded planes of a stride-1 [`Plan`]: the input sits at `(pads[0], pads[1])` of an
/// `hp x wp` plane followed by `tail` zeros, so that output `(oy, ox)` of tap `t` reads padded
/// index `oy * wp + ox + offsets[t]` for every `ox < wp`.
struct Wide {
    hp: usize,
    wp: usize,
    tail: usize,
    offsets: Vec<usize>,
}

impl Wide {
    /// The padded geometry, or `None` when the plan's stride is not 1.
    fn of(p: &Plan) -> Option<Wide> {
        if p.strides != [1, 1] {
            return None;
        }
        let span = |a: usize| (p.k[a] - 1) * p.dilations[a];
        let (hp, wp) = (p.out[0] + span(0), p.out[1] + span(1));
        let offsets = (0..p.k[0])
            .flat_map(|ky| (0..p.k[1]).map(move |kx| ky * p.dilations[0] * wp + kx * p.dilations[1]))
            .collect();
        Some(Wide { hp, wp, tail: span(1), offsets })
    }

    /// Length of a padded plane.
    fn padded(&self) -> usize {
        self.hp * self.wp + self.tail
    }

    /// Length of a wide output plane (`Ho` rows of `wp`).
    fn wide(&self, p: &Plan) -> usize {
        p.out[0] * self.wp
    }

    /// `x` (`[H, W]`) into the padded plane `xp` (its padding already zero).
    #[inline(always)]
    fn pad(&self, p: &Plan, x: &[f32], xp: &mut [f32]) {
        let [h, w] = p.hw;
        let [top, left] = p.pads;
        let cols = w.min(self.wp.saturating_sub(left));
        for iy in 0..h.min(self.hp.saturating_sub(top)) {
            let at = (top + iy) * self.wp + left;
            xp[at..at + cols].copy_from_slice(&x[iy * w..iy * w + cols]);
        }
    }

    /// Forward of one channel: `y` (`[Ho, Wo]`) from the padded input `xp`, through the wide
    /// scratch plane `acc`.
    #[inline(always)]
    fn forward(&self, p: &Plan, xp: &[f32], w: &[f32], acc: &mut [f32], y: &mut [f32]) {
        acc.fill(0.0);
        let n = acc.len();
        for (&off, &wv) in self.offsets.iter().zip(w) {
            acc.iter_mut().zip(&xp[off..off + n]).for_each(|(a, &v)| *a += wv * v);
        }
        let wo = p.out[1];
        for (row, src) in y.chunks_mut(wo.max(1)).zip(acc.chunks(self.wp)) {
            row.copy_from_slice(&src[..wo]);
        }
    }

    /// Backward of one channel: `g` (`[Ho, Wo]`) widened into `gw` (zeros in the unused
    /// columns), the filter gradient added into `dw`, and when wanted the padded input gradient
    /// into `dxp` (zeroed here) and cropped into `dx` (`[H, W]`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &Plan,
        xp: &[f32],
        w: &[f32],
        g: &[f32],
        gw: &mut [f32],
        dxp: &mut [f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
    ) {
        let wo = p.out[1];
        for (dst, src) in gw.chunks_mut(self.wp).zip(g.chunks(wo.max(1))) {
            dst[..wo].copy_from_slice(src);
        }
        let n = gw.len();
        for (d, &off) in dw.iter_mut().zip(&self.offsets) {
            *d += simd::dot(gw, &xp[off..off + n]);
        }
        let Some(dx) = dx else { return };
        dxp.fill(0.0);
        for (&off, &wv) in self.offsets.iter().zip(w) {
            dxp[off..off + n].iter_mut().zip(&*gw).for_each(|(d, &gv)| *d += wv * gv);
        }
        let [h, wi] = p.hw;
        let [top, left] = p.pads;
        let cols = wi.min(self.wp.saturating_sub(left));
        for iy in 0..h.min(self.hp.saturating_sub(top)) {
            let at = (top + iy) * self.wp + left;
            dx[iy * wi..iy * wi + cols].copy_from_slice(&dxp[at..at + cols]);
        }
    }
}

/// One channel's output plane, added into `y` (zeros).
fn plane_forward(p: &Plan, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (iw, ow, sx) = (p.hw[1], p.out[1], p.strides[1]);
    p.each_row(|tap, oy, iy, xs, ix0| {
        let (wv, src) = (w[tap], &x[iy * iw..(iy + 1) * iw]);
        let dst = &mut y[oy * ow + xs.start..oy * ow + xs.end];
        if sx == 1 {
            let len = dst.len();
            dst.iter_mut().zip(&src[ix0..ix0 + len]).for_each(|(d, &v)| *d += wv * v);
        } else {
            dst.iter_mut().zip(src[ix0..].iter().step_by(sx)).for_each(|(d, &v)| *d += wv * v);
        }
    });
}

/// One channel's input gradient (added into `dx`) and filter gradient (added into `dw`).
fn plane_backward(p: &Plan, x: &[f32], w: &[f32], g: &[f32], mut dx: Option<&mut [f32]>, dw: &mut [f32]) {
    let (iw, ow, sx) = (p.hw[1], p.out[1], p.strides[1]);
    p.each_row(|tap, oy, iy, xs, ix0| {
        let grow = &g[oy * ow + xs.start..oy * ow + xs.end];
        let src = &x[iy * iw..(iy + 1) * iw];
        dw[tap] += grow.iter().zip(src[ix0..].iter().step_by(sx)).map(|(&a, &b)| a * b).sum::<f32>();
        if let Some(dx) = dx.as_deref_mut() {
            let wv = w[tap];
            let drow = &mut dx[iy * iw..(iy + 1) * iw];
            drow[ix0..].iter_mut().step_by(sx).zip(grow).for_each(|(d, &gv)| *d += wv * gv);
        }
    });
}

/// Depthwise forward.
///
/// # Shapes
/// `x`: `[N, C, H, W]` row-major, `w`: `[C, kh, kw]`; returns `[N, C, Ho, Wo]` row-major.
pub(super) fn forward(p: &Plan, x: &[f32], w: &[f32], c: usize) -> Vec<f32> {
    match Wide::of(p) {
        Some(wide) => forward_wide(p, &wide, x, w, c),
        None => forward_rows(p, x, w, c),
    }
}

/// [`forward`] at stride 1 through [`Wide`] planes.
fn forward_wide(p: &Plan, wide: &Wide, x: &[f32], w: &[f32], c: usize) -> Vec<f32> {
    let scratch = || (vec![0.0f32; wide.padded()], vec![0.0f32; wide.wide(p)]);
    forward_images(p, x, w, c, scratch, |(xp, acc), xc, wc, yc| {
        wide.pad(p, xc, xp);
        wide.forward(p, xp, wc, acc, yc);
    })
}

/// [`forward`] row by row (any stride).
fn forward_rows(p: &Plan, x: &[f32], w: &[f32], c: usize) -> Vec<f32> {
    forward_images(p, x, w, c, || (), |_, xc, wc, yc| plane_forward(p, xc, wc, yc))
}

/// The forward driver: for each image in parallel, `plane(scratch, x, w, y)` on each channel's
/// input plane, filter and (zeroed) output plane, with one `scratch()` per image.
fn forward_images<S>(
    p: &Plan,
    x: &[f32],
    w: &[f32],
    c: usize,
    scratch: impl Fn() -> S + Sync,
    plane: impl Fn(&mut S, &[f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let (ip, op, kk) = (p.hw[0] * p.hw[1], p.out[0] * p.out[1], p.k[0] * p.k[1]);
    let n = x.len() / (c * ip).max(1);
    let mut y = vec![0.0; n * c * op];
    y.par_chunks_mut((c * op).max(1)).zip(x.par_chunks((c * ip).max(1))).for_each(|(yi, xi)| {
        let mut s = scratch();
        simd::fast(|| {
            for ch in 0..c {
                let (xc, wc) = (&xi[ch * ip..(ch + 1) * ip], &w[ch * kk..(ch + 1) * kk]);
                plane(&mut s, xc, wc, &mut yi[ch * op..(ch + 1) * op]);
            }
        })
    });
    y
}

/// Depthwise backward: `(dx when wanted, dw)`.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `w`: `[C, kh, kw]`, `g`: `[N, C, Ho, Wo]`, all row-major; returns dx
/// `[N, C, H, W]` and dw `[C, kh, kw]`.
pub(super) fn backward(
    p: &Plan,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    c: usize,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    match Wide::of(p) {
        Some(wide) => backward_wide(p, &wide, x, w, g, c, want_dx),
        None => backward_rows(p, x, w, g, c, want_dx),
    }
}

/// [`backward`] at stride 1 through [`Wide`] planes.
fn backward_wide(
    p: &Plan,
    wide: &Wide,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    c: usize,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let scratch = || (vec![0.0f32; wide.padded()], vec![0.0f32; wide.padded()], vec![0.0f32; wide.wide(p)]);
    backward_images(p, (x, w, g), c, want_dx, scratch, |(xp, dxp, gw), [xc, wc, gc], dx, dw| {
        wide.pad(p, xc, xp);
        wide.backward(p, xp, wc, gc, gw, dxp, dx, dw);
    })
}

/// [`backward`] row by row (any stride).
fn backward_rows(p: &Plan, x: &[f32], w: &[f32], g: &[f32], c: usize, want_dx: bool) -> (Option<Vec<f32>>, Vec<f32>) {
    backward_images(p, (x, w, g), c, want_dx, || (), |_, [xc, wc, gc], dx, dw| plane_backward(p, xc, wc, gc, dx, dw))
}

/// The backward driver: for each image in parallel, `plane(scratch, [x, w, g], dx, dw)` on each
/// channel's input plane, filter and output-gradient plane, with its slice of dx when wanted
/// (zeros) and of the image's own dw (zeros); one `scratch()` per image. The images' dw are added
/// up. Returns `(dx, dw)`.
fn backward_images<S>(
    p: &Plan,
    (x, w, g): (&[f32], &[f32], &[f32]),
    c: usize,
    want_dx: bool,
    scratch: impl Fn() -> S + Sync,
    plane: impl Fn(&mut S, [&[f32]; 3], Option<&mut [f32]>, &mut [f32]) + Sync,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (ip, op, kk) = (p.hw[0] * p.hw[1], p.out[0] * p.out[1], p.k[0] * p.k[1]);
    let n = x.len() / (c * ip).max(1);
    let image = |i: usize, mut dxi: Option<&mut [f32]>| {
        let (mut s, mut dw) = (scratch(), vec![0.0; c * kk]);
        simd::fast(|| {
            for ch in 0..c {
                let (at, go) = ((i * c + ch) * ip, (i * c + ch) * op);
                let planes = [&x[at..at + ip], &w[ch * kk..(ch + 1) * kk], &g[go..go + op]];
                let dx = dxi.as_deref_mut().map(|d| &mut d[ch * ip..(ch + 1) * ip]);
                plane(&mut s, planes, dx, &mut dw[ch * kk..(ch + 1) * kk]);
            }
        });
        dw
    };
    let mut dx = want_dx.then(|| vec![0.0; n * c * ip]);
    let parts: Vec<Vec<f32>> = match dx.as_mut() {
        Some(dx) => dx.par_chunks_mut((c * ip).max(1)).enumerate().map(|(i, d)| image(i, Some(d))).collect(),
        None => (0..n).into_par_iter().map(|i| image(i, None)).collect(),
    };
    let mut dw = vec![0.0; c * kk];
    for part in parts {
        dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::check::param;

    /// The padded-plane path gives the row path's values and gradients at stride 1, for small
    /// and odd planes, dilations and asymmetric pads.
    #[test]
    fn wide_planes_match_the_row_path() {
        let plans = [
            ([7, 7], [3, 3], [1, 1], [1, 1], [1, 1]),
            ([7, 7], [5, 5], [1, 1], [2, 2], [2, 2]),
            ([6, 5], [3, 2], [2, 1], [1, 0], [2, 1]),
            ([4, 9], [1, 3], [1, 3], [0, 3], [0, 2]),
        ];
        for (hw, k, dilations, pads, end) in plans {
            let out = [0, 1].map(|a| hw[a] + pads[a] + end[a] - (k[a] - 1) * dilations[a]);
            let p = Plan { hw, out, k, strides: [1, 1], dilations, pads };
            let wide = Wide::of(&p).unwrap();
            let (n, c) = (3, 4);
            let x = param(&[n * c * hw[0] * hw[1]], 1).into_raw_vec_and_offset().0;
            let w = param(&[c * k[0] * k[1]], 2).into_raw_vec_and_offset().0;
            let g = param(&[n * c * out[0] * out[1]], 3).into_raw_vec_and_offset().0;
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()));
            assert!(close(&forward_wide(&p, &wide, &x, &w, c), &forward_rows(&p, &x, &w, c)), "{hw:?} {k:?}");
            for want in [true, false] {
                let (dx, dw) = backward_wide(&p, &wide, &x, &w, &g, c, want);
                let (dx_rows, dw_rows) = backward_rows(&p, &x, &w, &g, c, want);
                assert!(close(&dw, &dw_rows), "dw {hw:?} {k:?}");
                assert_eq!(dx.is_some(), want);
                if let (Some(a), Some(b)) = (dx, dx_rows) {
                    assert!(close(&a, &b), "dx {hw:?} {k:?}");
                }
            }
        }
    }
}
