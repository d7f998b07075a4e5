use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, Axis, Ix2, Ix3, IxDyn};

use super::{Ctx, Init, Layer, LayerSpec, Param};
use crate::onnx::{Attr, GraphBuilder};
use crate::rng::Rng;
use crate::Result;

/// A long short-term memory layer with ONNX semantics (gate order i, o, f, c; no peepholes), one
/// or two directions, returning every time step. The reverse direction runs over the whole given
/// sequence (padding included), exactly as ONNX `LSTM` without `sequence_lens`; the forward
/// direction's outputs at valid steps never depend on right padding.
///
/// Fast by construction: one GEMM for all time steps' input projections, one batched recurrent GEMM
/// per step.
///
/// # Shapes
/// input `[B, S, E]`, output `[B, S, dirs * H]` (forward then reverse)
/// per direction: `w` `[E, 4H]`, `r` `[H, 4H]`, `b` `[4H]`
pub struct Lstm {
    hidden: usize,
    params: Vec<[ArrayD<f32>; 3]>,
    grads: Vec<[ArrayD<f32>; 3]>,
    cache: Option<Cache>,
}

struct DirCache {
    /// Gate activations `[S, B, 4H]` (i, o, f, c~) in time order.
    acts: Array3<f32>,
    /// Cell states after each step `[S, B, H]`, in time order.
    cells: Array3<f32>,
    /// Hidden states after each step `[S, B, H]`, in time order.
    hiddens: Array3<f32>,
}

struct Cache {
    input: Array2<f32>,
    dims: (usize, usize, usize),
    dirs: Vec<DirCache>,
}

/// tanh by a clamped rational approximation (Eigen's float kernel, within a few ULP of libm),
/// branch-free so that the gate loops vectorise: libm's tanh/exp were a third of training time.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    const A: [f32; 7] =
        [4.893_524_6e-3, 6.372_619_3e-4, 1.485_722_4e-5, 5.122_297e-8, -8.604_672e-11, 2.000_188e-13, -2.760_768_5e-16];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-7.998_811_7, 7.998_811_7);
    let x2 = x * x;
    let mut p = A[6];
    for a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    x * p / q
}

/// The logistic function through [`tanh`]: `0.5 + 0.5 tanh(x / 2)`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

impl Lstm {
    /// Glorot-initialised weights, forget-gate bias 1 (as Keras).
    pub fn new(inputs: usize, hidden: usize, bidirectional: bool, rng: &mut Rng) -> Self {
        let dirs = if bidirectional { 2 } else { 1 };
        let params: Vec<[ArrayD<f32>; 3]> = (0..dirs)
            .map(|_| {
                let w = Init::Glorot.matrix(inputs, 4 * hidden, rng);
                let r = Init::Glorot.matrix(hidden, 4 * hidden, rng);
                let mut b = ArrayD::zeros(IxDyn(&[4 * hidden]));
                b.slice_mut(s![2 * hidden..3 * hidden]).fill(1.0);
                [w, r, b]
            })
            .collect();
        let grads = params.iter().map(|p| p.clone().map(|a| ArrayD::zeros(a.raw_dim()))).collect();
        Lstm { hidden, params, grads, cache: None }
    }

    fn view2(a: &ArrayD<f32>) -> ArrayView2<'_, f32> {
        a.view().into_dimensionality::<Ix2>().expect("2-D")
    }

    /// One direction over `xw` (`[B, S, 4H]`, input projections with bias).
    fn run_direction(&self, d: usize, xw: &Array3<f32>, reverse: bool) -> DirCache {
        let (b, s, _) = xw.dim();
        let h = self.hidden;
        let r = Self::view2(&self.params[d][1]);
        let mut acts = Array3::<f32>::zeros((s, b, 4 * h));
        let mut cells = Array3::<f32>::zeros((s, b, h));
        let mut hiddens = Array3::<f32>::zeros((s, b, h));
        let mut gates = Array2::<f32>::zeros((b, 4 * h));
        let zeros = Array2::<f32>::zeros((b, h));
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            let prev = if reverse { t + 1 } else { t.wrapping_sub(1) };
            {
                let hp = if step == 0 { zeros.view() } else { hiddens.slice(s![prev, .., ..]) };
                gates.assign(&xw.slice(s![.., t, ..]));
                ndarray::linalg::general_mat_mul(1.0, &hp, &r, 1.0, &mut gates);
            }
            let g = gates.as_slice().expect("contiguous");
            let a = acts.slice_mut(s![t, .., ..]).into_slice().expect("contiguous");
            for (ga, aa) in g.chunks_exact(4 * h).zip(a.chunks_exact_mut(4 * h)) {
                let (gs, gc) = ga.split_at(3 * h);
                let (as_, ac) = aa.split_at_mut(3 * h);
                for (a, &g) in as_.iter_mut().zip(gs) {
                    *a = sigmoid(g);
                }
                for (a, &g) in ac.iter_mut().zip(gc) {
                    *a = tanh(g);
                }
            }
            let c_prev = if step == 0 { zeros.clone() } else { cells.slice(s![prev, .., ..]).to_owned() };
            let a = acts.slice(s![t, .., ..]);
            let a = a.as_slice().expect("contiguous");
            let c_out = cells.slice_mut(s![t, .., ..]).into_slice().expect("contiguous");
            let h_out = hiddens.slice_mut(s![t, .., ..]).into_slice().expect("contiguous");
            let cp = c_prev.as_slice().expect("contiguous");
            for row in 0..b {
                let ar = &a[row * 4 * h..(row + 1) * 4 * h];
                for k in 0..h {
                    let (i, o, f, cc) = (ar[k], ar[h + k], ar[2 * h + k], ar[3 * h + k]);
                    let c = f * cp[row * h + k] + i * cc;
                    c_out[row * h + k] = c;
                    h_out[row * h + k] = o * tanh(c);
                }
            }
        }
        DirCache { acts, cells, hiddens }
    }
}

impl Layer for Lstm {
    fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        let x = x.into_dimensionality::<Ix3>().expect("[B, S, E]");
        let (b, s, e) = x.dim();
        let h = self.hidden;
        let x2 = x.into_shape_with_order((b * s, e)).expect("contiguous input");
        let mut out = Array3::<f32>::zeros((b, s, h * self.params.len()));
        let mut dirs = Vec::new();
        for d in 0..self.params.len() {
            let xw = x2.dot(&Self::view2(&self.params[d][0])) + &self.params[d][2];
            let xw = xw.into_shape_with_order((b, s, 4 * h)).expect("rows are b * s");
            let dc = self.run_direction(d, &xw, d == 1);
            for t in 0..s {
                out.slice_mut(s![.., t, d * h..(d + 1) * h]).assign(&dc.hiddens.slice(s![t, .., ..]));
            }
            dirs.push(dc);
        }
        if ctx.train {
            self.cache = Some(Cache { input: x2, dims: (b, s, e), dirs });
        }
        out.into_dyn()
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let cache = self.cache.take().expect("backward after a training forward");
        let (b, s, e) = cache.dims;
        let h = self.hidden;
        let grad = grad.into_dimensionality::<Ix3>().expect("[B, S, dirs * H]");
        let mut dx = Array2::<f32>::zeros((b * s, e));
        for (d, dc) in cache.dirs.iter().enumerate() {
            let reverse = d == 1;
            let r = Self::view2(&self.params[d][1]);
            // Time-major: each step's gate gradients are one contiguous [B, 4H] block.
            let mut dgates = Array3::<f32>::zeros((s, b, 4 * h));
            let mut hprev = Array3::<f32>::zeros((s, b, h));
            let mut dh_next = Array2::<f32>::zeros((b, h));
            let mut dc_next = Array2::<f32>::zeros((b, h));
            let zeros = Array2::<f32>::zeros((b, h));
            for step in (0..s).rev() {
                let t = if reverse { s - 1 - step } else { step };
                let prev = if reverse { t + 1 } else { t.wrapping_sub(1) };
                let (c_prev, h_prev) = if step == 0 {
                    (zeros.view(), zeros.view())
                } else {
                    (dc.cells.slice(s![prev, .., ..]), dc.hiddens.slice(s![prev, .., ..]))
                };
                hprev.slice_mut(s![t, .., ..]).assign(&h_prev);
                let a = dc.acts.slice(s![t, .., ..]);
                let (a, c, cp) =
                    (a.as_slice().expect("contiguous"), dc.cells.slice(s![t, .., ..]), c_prev.as_standard_layout());
                let (c, cp) = (c.as_slice().expect("contiguous"), cp.as_slice().expect("contiguous"));
                let dg = dgates.slice_mut(s![t, .., ..]).into_slice().expect("contiguous");
                let (dhn, dcn) = (dh_next.as_slice().expect("contiguous"), dc_next.as_slice_mut().expect("contiguous"));
                for row in 0..b {
                    let dout = grad.slice(s![row, t, d * h..(d + 1) * h]);
                    let dout = dout.as_slice().expect("last axis is contiguous");
                    let (ar, dgr) = (&a[row * 4 * h..(row + 1) * 4 * h], &mut dg[row * 4 * h..(row + 1) * 4 * h]);
                    for k in 0..h {
                        let j = row * h + k;
                        let (i, o, f, cc) = (ar[k], ar[h + k], ar[2 * h + k], ar[3 * h + k]);
                        let tc = tanh(c[j]);
                        let dh = dout[k] + dhn[j];
                        let dcell = dh * o * (1.0 - tc * tc) + dcn[j];
                        dgr[k] = dcell * cc * i * (1.0 - i);
                        dgr[h + k] = dh * tc * o * (1.0 - o);
                        dgr[2 * h + k] = dcell * cp[j] * f * (1.0 - f);
                        dgr[3 * h + k] = dcell * i * (1.0 - cc * cc);
                        dcn[j] = dcell * f;
                    }
                }
                ndarray::linalg::general_mat_mul(1.0, &dgates.slice(s![t, .., ..]), &r.t(), 0.0, &mut dh_next);
            }
            // One GEMM each for dR (all steps at once) and, back in batch-major order, dW and dx.
            let dg_time = dgates.view().into_shape_with_order((s * b, 4 * h)).expect("contiguous");
            let hp = hprev.view().into_shape_with_order((s * b, h)).expect("contiguous");
            self.grads[d][1] = hp.t().dot(&dg_time).into_dyn();
            self.grads[d][2] = dg_time.sum_axis(Axis(0)).into_dyn();
            let dg2 = dgates.permuted_axes([1, 0, 2]).as_standard_layout().into_owned();
            let dg2 = dg2.into_shape_with_order((b * s, 4 * h)).expect("contiguous");
            self.grads[d][0] = cache.input.t().dot(&dg2).into_dyn();
            dx += &dg2.dot(&Self::view2(&self.params[d][0]).t());
        }
        dx.into_shape_with_order((b, s, e)).expect("rows are b * s").into_dyn()
    }

    fn params(&mut self) -> Vec<Param<'_>> {
        let mut out = Vec::new();
        for (p, g) in self.params.iter_mut().zip(self.grads.iter_mut()) {
            let [w, r, b] = p;
            let [dw, dr, db] = g;
            out.push(Param { name: "w", value: w, grad: dw, decay: true });
            out.push(Param { name: "r", value: r, grad: dr, decay: true });
            out.push(Param { name: "b", value: b, grad: db, decay: false });
        }
        // Names must be unique per layer: the second direction's get a suffix.
        for (k, p) in out.iter_mut().enumerate().skip(3) {
            p.name = ["w_reverse", "r_reverse", "b_reverse"][k - 3];
        }
        out
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Lstm {
            inputs: self.params[0][0].shape()[0],
            hidden: self.hidden,
            bidirectional: self.params.len() == 2,
        }
    }

    /// ONNX `LSTM` (layout 0, so the input is transposed to `[S, B, E]` and the output back).
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let h = self.hidden;
        let dirs = self.params.len();
        let e = self.params[0][0].shape()[0];
        let stack = |f: &dyn Fn(&[ArrayD<f32>; 3]) -> Vec<f32>, shape: Vec<usize>| {
            ArrayD::from_shape_vec(shape, self.params.iter().flat_map(f).collect()).expect("sizes")
        };
        let w = stack(&|p| Self::view2(&p[0]).t().iter().copied().collect(), vec![dirs, 4 * h, e]);
        let r = stack(&|p| Self::view2(&p[1]).t().iter().copied().collect(), vec![dirs, 4 * h, h]);
        let bias = stack(&|p| p[2].iter().copied().chain(std::iter::repeat_n(0.0, 4 * h)).collect(), vec![dirs, 8 * h]);
        let (w, r, bias) = (g.initializer("lstm_w", &w), g.initializer("lstm_r", &r), g.initializer("lstm_b", &bias));
        let x = g.node("Transpose", &[input], &[Attr::Ints("perm", vec![1, 0, 2])]);
        let y = g.fresh("lstm_y");
        let direction = if dirs == 2 { "bidirectional" } else { "forward" };
        g.node_to(
            "LSTM",
            &[&x, &w, &r, &bias],
            &[Attr::Int("hidden_size", h as i64), Attr::String("direction", direction.into())],
            &[&y],
        );
        let y = g.node("Transpose", &[&y], &[Attr::Ints("perm", vec![2, 0, 1, 3])]);
        let shape = g.initializer_i64("lstm_shape", &[0, 0, (dirs * h) as i64], &[3]);
        Ok(g.node("Reshape", &[&y, &shape], &[]))
    }
}
