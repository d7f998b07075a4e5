//! Depthwise convolution (one filter per channel) as direct loops: for each kernel tap, the range
//! of outputs whose input lies inside the image is computed once, so the inner loop is a plain
//! multiply-add over a row (contiguous at stride 1, which the compiler vectorises) with no bounds
//! tests. Parallel over the batch.

use std::ops::Range;

use rayon::prelude::*;

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
    let (ip, op, kk) = (p.hw[0] * p.hw[1], p.out[0] * p.out[1], p.k[0] * p.k[1]);
    let n = x.len() / (c * ip).max(1);
    let mut y = vec![0.0; n * c * op];
    y.par_chunks_mut((c * op).max(1)).zip(x.par_chunks(c * ip)).for_each(|(yi, xi)| {
        for ch in 0..c {
            plane_forward(p, &xi[ch * ip..(ch + 1) * ip], &w[ch * kk..(ch + 1) * kk], &mut yi[ch * op..(ch + 1) * op]);
        }
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
    let (ip, op, kk) = (p.hw[0] * p.hw[1], p.out[0] * p.out[1], p.k[0] * p.k[1]);
    let n = x.len() / (c * ip).max(1);
    let mut dx = want_dx.then(|| vec![0.0; n * c * ip]);
    let image = |i: usize, mut dxi: Option<&mut [f32]>| {
        let mut dw = vec![0.0; c * kk];
        for ch in 0..c {
            let at = (i * c + ch) * ip;
            plane_backward(
                p,
                &x[at..at + ip],
                &w[ch * kk..(ch + 1) * kk],
                &g[(i * c + ch) * op..(i * c + ch + 1) * op],
                dxi.as_deref_mut().map(|d| &mut d[ch * ip..(ch + 1) * ip]),
                &mut dw[ch * kk..(ch + 1) * kk],
            );
        }
        dw
    };
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
