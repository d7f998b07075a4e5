//! `Conv` (1-D and 2-D, groups including depthwise, strides, pads, dilations, bias): one GEMM per
//! group over the whole batch's im2col columns, a 1×1 convolution as one GEMM per image straight
//! into the output, and depthwise convolutions as direct loops (see `depthwise`).

use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, ArrayView3, Axis, CowArray, IxDyn};
use rayon::prelude::*;

use super::window::Window;
use super::{depthwise, gemm, input, par, Attrs, Grads, Op};
use crate::graph::value::{as_f32, OpResult, Value};

/// A convolution.
///
/// # Shapes
/// `x`: `[N, C, H, W]` (or `[N, C, L]`), `w`: `[M, C / group, kh, kw]`, `b`: `[M]`;
/// output `[N, M, Ho, Wo]`.
pub struct Conv {
    window: Window,
    group: usize,
}

/// Everything about one call that the passes share.
struct Geo {
    n: usize,
    c: usize,
    hw: [usize; 2],
    m: usize,
    k: [usize; 2],
    pads: [usize; 4],
    out: [usize; 2],
    group: usize,
    one_d: bool,
}

impl Conv {
    /// Reads the window attributes and `group`.
    pub fn new(a: &Attrs) -> OpResult<Self> {
        Ok(Conv { window: Window::new(a)?, group: a.int("group", 1).max(1) as usize })
    }

    fn geo(&self, x: &ArrayD<f32>, w: &ArrayD<f32>) -> OpResult<Geo> {
        let one_d = x.ndim() == 3;
        if !(x.ndim() == 4 || one_d) || w.ndim() != x.ndim() {
            return Err(format!("only 1-D and 2-D convolutions: x {:?}, w {:?}", x.shape(), w.shape()));
        }
        let s = x.shape();
        let (n, c) = (s[0], s[1]);
        let hw = if one_d { [1, s[2]] } else { [s[2], s[3]] };
        let k = if one_d { [1, w.shape()[2]] } else { [w.shape()[2], w.shape()[3]] };
        if self.window.kernel.is_some_and(|kk| kk != k) {
            return Err(format!("kernel_shape {:?} does not match the weights {:?}", self.window.kernel, w.shape()));
        }
        let m = w.shape()[0];
        if !c.is_multiple_of(self.group) || !m.is_multiple_of(self.group) || w.shape()[1] * self.group != c {
            return Err(format!("group {} does not fit x {:?} and w {:?}", self.group, x.shape(), w.shape()));
        }
        let (pads, out) = self.window.plan(hw, k)?;
        Ok(Geo { n, c, hw, m, k, pads, out, group: self.group, one_d })
    }
}

impl Geo {
    fn depthwise(&self) -> bool {
        self.group == self.c && self.m == self.c
    }

    fn depthwise_plan(&self, win: &Window) -> depthwise::Plan {
        depthwise::Plan {
            hw: self.hw,
            out: self.out,
            k: self.k,
            strides: win.strides,
            dilations: win.dilations,
            pads: [self.pads[0], self.pads[1]],
        }
    }

    fn pointwise(&self, win: &Window) -> bool {
        self.k == [1, 1] && win.strides == [1, 1] && self.pads == [0; 4]
    }

    /// The input row and column read by output `(oy, ox)` at kernel tap `(ky, kx)`.
    #[inline]
    fn src(&self, win: &Window, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * win.strides[0] + ky * win.dilations[0]) as isize - self.pads[0] as isize;
        let ix = (ox * win.strides[1] + kx * win.dilations[1]) as isize - self.pads[1] as isize;
        (iy >= 0 && ix >= 0 && (iy as usize) < self.hw[0] && (ix as usize) < self.hw[1])
            .then_some((iy as usize, ix as usize))
    }

    /// im2col of one image's channels `[cg, H, W]`: rows `(c, ky, kx)`, columns output positions.
    fn im2col(&self, win: &Window, x: ArrayView3<f32>) -> Array2<f32> {
        let (kh, kw) = (self.k[0], self.k[1]);
        let (oh, ow) = (self.out[0], self.out[1]);
        let mut cols = Array2::zeros((x.shape()[0] * kh * kw, oh * ow));
        for (c, plane) in x.outer_iter().enumerate() {
            for ky in 0..kh {
                for kx in 0..kw {
                    let mut row = cols.row_mut((c * kh + ky) * kw + kx);
                    for oy in 0..oh {
                        for ox in 0..ow {
                            if let Some((iy, ix)) = self.src(win, oy, ox, ky, kx) {
                                row[oy * ow + ox] = plane[[iy, ix]];
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// The adjoint of [`Geo::im2col`]: adds the columns back into `[cg, H, W]`.
    fn col2im(&self, win: &Window, cols: ArrayView2<f32>, cg: usize) -> Array3<f32> {
        let (kh, kw) = (self.k[0], self.k[1]);
        let (oh, ow) = (self.out[0], self.out[1]);
        let mut x = Array3::zeros((cg, self.hw[0], self.hw[1]));
        for c in 0..cg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = cols.row((c * kh + ky) * kw + kx);
                    for oy in 0..oh {
                        for ox in 0..ow {
                            if let Some((iy, ix)) = self.src(win, oy, ox, ky, kx) {
                                x[[c, iy, ix]] += row[oy * ow + ox];
                            }
                        }
                    }
                }
            }
        }
        x
    }
}

/// `x` as `[N, C, H, W]` and `w` as `[M, Cg, kh, kw]` (1-D gains a height of 1), row-major (a
/// view when it already is).
fn as4(a: &ArrayD<f32>, one_d: bool) -> CowArray<'_, f32, IxDyn> {
    let a = a.as_standard_layout();
    if one_d {
        a.insert_axis(Axis(2))
    } else {
        a
    }
}

/// The batch's columns for group `g`: `[cg * kh * kw, N * Ho * Wo]` (image-major columns). A
/// 1×1 unstrided, unpadded convolution reads `x` itself, transposed to channel-major.
fn batch_cols(geo: &Geo, win: &Window, x4: &CowArray<f32, IxDyn>, g: usize) -> Array2<f32> {
    let cg = geo.c / geo.group;
    let p = geo.out[0] * geo.out[1];
    let xg = x4.slice(s![.., g * cg..(g + 1) * cg, .., ..]);
    if geo.pointwise(win) {
        return swap01(xg.to_shape((geo.n, cg, p)).unwrap().view()).into_shape_with_order((cg, geo.n * p)).unwrap();
    }
    let per_image: Vec<Array2<f32>> = (0..geo.n)
        .into_par_iter()
        .map(|i| geo.im2col(win, xg.index_axis(Axis(0), i).into_dimensionality().unwrap()))
        .collect();
    let views: Vec<ArrayView2<f32>> = per_image.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(1), &views).unwrap()
}

/// `t` (`[rows, N * P]`, image-major columns) as `[N, rows, P]`.
fn per_image(t: Array2<f32>, n: usize) -> Array3<f32> {
    let (rows, np) = t.dim();
    swap01(t.into_shape_with_order((rows, n, np / n.max(1))).unwrap().view())
}

/// `a` with its first two axes swapped, in row-major memory (whole `P`-long rows copied in
/// parallel by [`par::standard`]).
///
/// # Shapes
/// `a`: `[A, B, P]`; returns `[B, A, P]`.
fn swap01(a: ArrayView3<f32>) -> Array3<f32> {
    par::standard(a.permuted_axes([1, 0, 2]).into_dyn()).into_dimensionality().expect("three axes")
}

/// A 1×1 convolution as one product per image, `W · X_i`, written straight into the output.
///
/// # Shapes
/// `x4`: `[N, C, H, W]`, `w4`: `[M, C, 1, 1]`; returns `[N, M, H * W]`.
fn pointwise_forward(geo: &Geo, x4: &CowArray<f32, IxDyn>, w4: &CowArray<f32, IxDyn>) -> Array3<f32> {
    let p = geo.out[0] * geo.out[1];
    let w2 = w4.view().into_shape_with_order((geo.m, geo.c)).expect("[M, C, 1, 1]");
    let x3 = x4.view().into_shape_with_order((geo.n, geo.c, p)).expect("[N, C, H, W]");
    let mut y = Array3::<f32>::uninit((geo.n, geo.m, p));
    for (yi, xi) in y.outer_iter_mut().zip(x3.outer_iter()) {
        gemm::dot_into(&w2, &xi, yi.into_slice().expect("a fresh array is row-major"));
    }
    // SAFETY: `dot_into` wrote every image's [M, P] block.
    unsafe { y.assume_init() }
}

impl Op for Conv {
    fn forward(&self, x: &[Option<&Value>]) -> OpResult<Value> {
        let (xa, wa) = (as_f32(input(x, 0)?, "X")?, as_f32(input(x, 1)?, "W")?);
        let geo = self.geo(xa, wa)?;
        let (x4, w4) = (as4(xa, geo.one_d), as4(wa, geo.one_d));
        let (oh, ow) = (geo.out[0], geo.out[1]);
        let mut y = if geo.depthwise() {
            let (xs, ws) = (x4.as_slice().expect("row-major"), w4.as_slice().expect("row-major"));
            let y = depthwise::forward(&geo.depthwise_plan(&self.window), xs, ws, geo.c);
            Array3::from_shape_vec((geo.n, geo.m, oh * ow), y).expect("[N, C, Ho * Wo]")
        } else if geo.group == 1 && geo.pointwise(&self.window) {
            pointwise_forward(&geo, &x4, &w4)
        } else {
            let (cg, mg) = (geo.c / geo.group, geo.m / geo.group);
            let mut y = Array3::<f32>::zeros((geo.n, geo.m, oh * ow));
            for g in 0..geo.group {
                let wg = w4.slice(s![g * mg..(g + 1) * mg, .., .., ..]);
                let wg = wg.to_shape((mg, cg * geo.k[0] * geo.k[1])).unwrap();
                let yg = gemm::dot(&wg.view(), &batch_cols(&geo, &self.window, &x4, g).view());
                y.slice_mut(s![.., g * mg..(g + 1) * mg, ..]).assign(&per_image(yg, geo.n));
            }
            y
        };
        if let Some(b) = x.get(2).copied().flatten() {
            let b = as_f32(b, "B")?;
            if b.len() != geo.m {
                return Err(format!("B has {} values for {} output channels", b.len(), geo.m));
            }
            for mut img in y.outer_iter_mut() {
                for (mut row, &bv) in img.outer_iter_mut().zip(b.iter()) {
                    row += bv;
                }
            }
        }
        let shape: Vec<usize> = if geo.one_d { vec![geo.n, geo.m, ow] } else { vec![geo.n, geo.m, oh, ow] };
        Ok(Value::F32(y.into_shape_with_order(IxDyn(&shape)).unwrap()))
    }

    fn vjp(&self, x: &[Option<&Value>], _y: &Value, dy: &ArrayD<f32>, want: &[bool]) -> OpResult<Grads> {
        let (xa, wa) = (as_f32(input(x, 0)?, "X")?, as_f32(input(x, 1)?, "W")?);
        let geo = self.geo(xa, wa)?;
        let (x4, w4) = (as4(xa, geo.one_d), as4(wa, geo.one_d));
        let p = geo.out[0] * geo.out[1];
        let g_std = dy.as_standard_layout();
        let g3 = g_std.view().into_shape_with_order((geo.n, geo.m, p)).unwrap();
        let win = &self.window;
        let (dx, dw) = if geo.depthwise() {
            let (xs, ws) = (x4.as_slice().expect("row-major"), w4.as_slice().expect("row-major"));
            let gs = g3.as_slice().expect("row-major");
            let (dx, dw) = depthwise::backward(&geo.depthwise_plan(win), xs, ws, gs, geo.c, want[0]);
            let dx =
                dx.map(|d| Array3::from_shape_vec((geo.n, geo.c, geo.hw[0] * geo.hw[1]), d).expect("[N, C, H * W]"));
            (dx, Array2::from_shape_vec((geo.c, geo.k[0] * geo.k[1]), dw).expect("[C, kh * kw]"))
        } else {
            let (cg, mg) = (geo.c / geo.group, geo.m / geo.group);
            let kk = geo.k[0] * geo.k[1];
            let mut dw = Array2::<f32>::zeros((geo.m, cg * kk));
            let mut dx = want[0].then(|| Array3::<f32>::zeros((geo.n, geo.c, geo.hw[0] * geo.hw[1])));
            for g in 0..geo.group {
                // [mg, N * P], image-major columns like the batch's im2col.
                let gg = swap01(g3.slice(s![.., g * mg..(g + 1) * mg, ..]));
                let gg = gg.into_shape_with_order((mg, geo.n * p)).unwrap();
                let cols = batch_cols(&geo, win, &x4, g);
                dw.slice_mut(s![g * mg..(g + 1) * mg, ..]).assign(&gemm::dot(&gg.view(), &cols.t()));
                if let Some(d) = dx.as_mut() {
                    let wg = w4.slice(s![g * mg..(g + 1) * mg, .., .., ..]);
                    let wg = wg.to_shape((mg, cg * kk)).unwrap();
                    let dcols = gemm::dot(&wg.t(), &gg.view());
                    let dxg = if geo.pointwise(win) {
                        per_image(dcols, geo.n)
                    } else {
                        let images: Vec<Array3<f32>> = (0..geo.n)
                            .into_par_iter()
                            .map(|i| geo.col2im(win, dcols.slice(s![.., i * p..(i + 1) * p]), cg))
                            .collect();
                        let views: Vec<_> = images.iter().map(|a| a.view()).collect();
                        let stacked = ndarray::stack(Axis(0), &views).unwrap();
                        stacked.into_shape_with_order((geo.n, cg, geo.hw[0] * geo.hw[1])).unwrap()
                    };
                    d.slice_mut(s![.., g * cg..(g + 1) * cg, ..]).assign(&dxg);
                }
            }
            (dx, dw)
        };
        let dx = dx.map(|d| d.into_shape_with_order(IxDyn(xa.shape())).unwrap());
        let dw = want[1].then(|| dw.into_shape_with_order(IxDyn(wa.shape())).unwrap());
        let db = want.get(2).copied().unwrap_or(false).then(|| g3.sum_axis(Axis(2)).sum_axis(Axis(0)).into_dyn());
        Ok(vec![dx, dw, db])
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, Case};
    use crate::onnx::Attr;

    fn conv(x: &[usize], w: &[usize], attrs: &[Attr]) {
        let mut c = Case::new(x);
        let (wn, bn) = (c.init(&param(w, 1)), c.init(&param(&[w[0]], 2)));
        let y = c.node("Conv", &["x", &wn, &bn], attrs);
        grad_check(c.finish(&y));
    }

    #[test]
    fn conv_dense_strided_padded_dilated() {
        conv(&[2, 3, 5, 5], &[4, 3, 3, 3], &[Attr::Ints("pads", vec![1, 1, 1, 1]), Attr::Ints("strides", vec![2, 2])]);
        conv(
            &[1, 2, 6, 5],
            &[3, 2, 2, 3],
            &[Attr::Ints("dilations", vec![2, 1]), Attr::Ints("pads", vec![0, 1, 1, 0])],
        );
    }

    #[test]
    fn conv_pointwise_and_grouped() {
        conv(&[2, 4, 3, 3], &[6, 4, 1, 1], &[]);
        conv(&[2, 4, 4, 4], &[6, 2, 3, 3], &[Attr::Int("group", 2), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    }

    #[test]
    fn conv_depthwise() {
        let pads = Attr::Ints("pads", vec![2, 2, 2, 2]);
        conv(&[2, 3, 5, 5], &[3, 1, 5, 5], &[Attr::Int("group", 3), pads]);
        conv(&[1, 2, 5, 4], &[2, 1, 3, 3], &[Attr::Int("group", 2), Attr::Ints("strides", vec![2, 2])]);
        let (dil, strides) = (Attr::Ints("dilations", vec![2, 1]), Attr::Ints("strides", vec![1, 2]));
        let pads = Attr::Ints("pads", vec![1, 0, 2, 1]);
        conv(&[2, 2, 6, 7], &[2, 1, 3, 2], &[Attr::Int("group", 2), dil, strides, pads]);
    }

    #[test]
    fn conv_1d_and_same_padding() {
        conv(&[2, 2, 7], &[3, 2, 3], &[Attr::String("auto_pad", "SAME_UPPER".into())]);
    }
}
