use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, Axis, Ix2, Ix3, IxDyn};

use super::{Ctx, Init, Layer, LayerSpec, Param};
use crate::onnx::{pb::tensor_proto::DataType, Attr, GraphBuilder};
use crate::rng::Rng;
use crate::{Error, Result};

/// A long short-term memory layer with ONNX semantics (gate order i, o, f, c; no peepholes), one
/// or two directions, returning every time step.
///
/// Padding-invariant on right-padded batches: row `b` has `len_b` valid steps (the context's
/// lengths, set by [`super::Embedding`]; all steps when absent). The forward direction runs from
/// step 0; the reverse direction reads the row at `reverse_index`: its valid steps backwards,
/// then its padding in order, and writes each output back at the step it read. So the outputs at
/// valid steps are those of the row alone, unpadded, whatever the padding holds; the outputs at
/// padding steps are defined (the export computes the same) but meaningless.
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
    lengths: Vec<usize>,
    dirs: Vec<DirCache>,
}

/// The step the reverse direction reads at its step `t` in a row of `len` valid steps:
/// `t < len ? len - 1 - t : t`. Its own inverse.
#[inline]
fn reverse_index(t: usize, len: usize) -> usize {
    if t < len {
        len - 1 - t
    } else {
        t
    }
}

/// The step of row `row` that direction `d` reads at its step `t`.
#[inline]
fn step_of(d: usize, t: usize, len: usize) -> usize {
    if d == 1 {
        reverse_index(t, len)
    } else {
        t
    }
}

/// Reorders each row's steps by [`reverse_index`] (an involution, so it also undoes itself).
///
/// # Shapes
/// `a` `[B, S, K]` -> `[B, S, K]`
fn reverse_rows(a: &Array3<f32>, lengths: &[usize]) -> Array3<f32> {
    let s = a.dim().1;
    let mut out = Array3::<f32>::zeros(a.raw_dim());
    for (row, &len) in lengths.iter().enumerate() {
        for t in 0..s {
            out.slice_mut(s![row, t, ..]).assign(&a.slice(s![row, reverse_index(t, len), ..]));
        }
    }
    out
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

    /// One direction's recurrence, from step 0, over `xw` (`[B, S, 4H]`, input projections with
    /// bias, already in the direction's reading order).
    fn run_direction(&self, d: usize, xw: &Array3<f32>) -> DirCache {
        let (b, s, _) = xw.dim();
        let h = self.hidden;
        let r = Self::view2(&self.params[d][1]);
        let mut acts = Array3::<f32>::zeros((s, b, 4 * h));
        let mut cells = Array3::<f32>::zeros((s, b, h));
        let mut hiddens = Array3::<f32>::zeros((s, b, h));
        let mut gates = Array2::<f32>::zeros((b, 4 * h));
        let zeros = Array2::<f32>::zeros((b, h));
        for t in 0..s {
            let prev = t.wrapping_sub(1);
            {
                let hp = if t == 0 { zeros.view() } else { hiddens.slice(s![prev, .., ..]) };
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
            let c_prev = if t == 0 { zeros.clone() } else { cells.slice(s![prev, .., ..]).to_owned() };
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
        let lengths: Vec<usize> = match &ctx.lengths {
            Some(l) => l.iter().map(|&l| l.min(s)).collect(),
            None => vec![s; b],
        };
        let x2 = x.into_shape_with_order((b * s, e)).expect("contiguous input");
        let mut out = Array3::<f32>::zeros((b, s, h * self.params.len()));
        let mut dirs = Vec::new();
        for d in 0..self.params.len() {
            let xw = x2.dot(&Self::view2(&self.params[d][0])) + &self.params[d][2];
            let mut xw = xw.into_shape_with_order((b, s, 4 * h)).expect("rows are b * s");
            if d == 1 {
                xw = reverse_rows(&xw, &lengths);
            }
            let dc = self.run_direction(d, &xw);
            for (row, &len) in lengths.iter().enumerate() {
                for t in 0..s {
                    out.slice_mut(s![row, step_of(d, t, len), d * h..(d + 1) * h]).assign(&dc.hiddens.slice(s![
                        t,
                        row,
                        ..
                    ]));
                }
            }
            dirs.push(dc);
        }
        if ctx.train {
            self.cache = Some(Cache { input: x2, dims: (b, s, e), lengths, dirs });
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
            let r = Self::view2(&self.params[d][1]);
            // Time-major: each step's gate gradients are one contiguous [B, 4H] block.
            let mut dgates = Array3::<f32>::zeros((s, b, 4 * h));
            let mut hprev = Array3::<f32>::zeros((s, b, h));
            let mut dh_next = Array2::<f32>::zeros((b, h));
            let mut dc_next = Array2::<f32>::zeros((b, h));
            let zeros = Array2::<f32>::zeros((b, h));
            // In the direction's reading order: its step t read (and wrote) step `step_of(d, t, len)`.
            for t in (0..s).rev() {
                let prev = t.wrapping_sub(1);
                let (c_prev, h_prev) = if t == 0 {
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
                    let dout = grad.slice(s![row, step_of(d, t, cache.lengths[row]), d * h..(d + 1) * h]);
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
            let mut dg2 = dgates.permuted_axes([1, 0, 2]).as_standard_layout().into_owned();
            if d == 1 {
                dg2 = reverse_rows(&dg2, &cache.lengths);
            }
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

    /// One forward-direction ONNX `LSTM` per direction (layout 0, so each input is transposed to
    /// `[S, B, E]` and its output back). The reverse direction's input is reordered per row by
    /// `GatherElements` with the index `t < len ? len - 1 - t : t` (`len` the row's sum of the
    /// graph's `mask` context), and its output by the same index; the two are concatenated.
    /// (tract has no `ReverseSequence` and rejects non-uniform `sequence_lens`.)
    fn to_onnx(&self, g: &mut GraphBuilder, input: &str) -> Result<String> {
        let forward = self.onnx_direction(g, 0, input);
        if self.params.len() == 1 {
            return Ok(forward);
        }
        let mask = g
            .context("mask")
            .ok_or_else(|| Error::onnx("export", "a bidirectional LSTM needs an attention mask"))?
            .to_string();
        let index = reverse_index_onnx(g, &mask);
        let gather = |g: &mut GraphBuilder, x: &str, width: usize| {
            let width = g.initializer_i64("lstm_width", &[1, 1, width as i64], &[3]);
            let index = g.node("Expand", &[&index, &width], &[]);
            g.node("GatherElements", &[x, &index], &[Attr::Int("axis", 1)])
        };
        let reversed = gather(g, input, self.params[1][0].shape()[0]);
        let reverse = self.onnx_direction(g, 1, &reversed);
        let reverse = gather(g, &reverse, self.hidden);
        Ok(g.node("Concat", &[&forward, &reverse], &[Attr::Int("axis", 2)]))
    }
}

impl Lstm {
    /// Direction `d` as a forward ONNX `LSTM` from step 0 over `input` `[B, S, E]`; returns its
    /// output `[B, S, H]`.
    fn onnx_direction(&self, g: &mut GraphBuilder, d: usize, input: &str) -> String {
        let h = self.hidden;
        let [w, r, b] = &self.params[d];
        let e = w.shape()[0];
        let transposed = |a: &ArrayD<f32>, rows: usize, cols: usize| {
            ArrayD::from_shape_vec(vec![1, rows, cols], Self::view2(a).t().iter().copied().collect()).expect("sizes")
        };
        let bias =
            ArrayD::from_shape_vec(vec![1, 8 * h], b.iter().copied().chain(std::iter::repeat_n(0.0, 4 * h)).collect())
                .expect("sizes");
        let suffix = if d == 1 { "_reverse" } else { "" };
        let w = g.initializer(&format!("lstm_w{suffix}"), &transposed(w, 4 * h, e));
        let r = g.initializer(&format!("lstm_r{suffix}"), &transposed(r, 4 * h, h));
        let bias = g.initializer(&format!("lstm_b{suffix}"), &bias);
        let x = g.node("Transpose", &[input], &[Attr::Ints("perm", vec![1, 0, 2])]);
        let y = g.fresh("lstm_y");
        g.node_to(
            "LSTM",
            &[&x, &w, &r, &bias],
            &[Attr::Int("hidden_size", h as i64), Attr::String("direction", "forward".into())],
            &[&y],
        );
        let y = g.node("Transpose", &[&y], &[Attr::Ints("perm", vec![2, 0, 1, 3])]);
        let shape = g.initializer_i64("lstm_shape", &[0, 0, h as i64], &[3]);
        g.node("Reshape", &[&y, &shape], &[])
    }
}

/// The reverse direction's reading order as a graph: `t < len ? len - 1 - t : t` for every row,
/// `len` the row's sum of `mask`.
///
/// # Shapes
/// `mask` f32 `[B, S]` -> i64 `[B, S, 1]`
fn reverse_index_onnx(g: &mut GraphBuilder, mask: &str) -> String {
    let axis1 = g.initializer_i64("axes_1", &[1], &[1]);
    let len = g.node("ReduceSum", &[mask, &axis1], &[Attr::Int("keepdims", 1)]);
    let len = g.node("Cast", &[&len], &[Attr::Int("to", DataType::Int64 as i64)]);
    let shape = g.node("Shape", &[mask], &[]);
    let one = g.initializer_i64("one_i64", &[1], &[]);
    let zero = g.initializer_i64("zero_i64", &[0], &[]);
    let steps = g.node("Gather", &[&shape, &one], &[Attr::Int("axis", 0)]);
    let t = g.node("Range", &[&zero, &steps, &one], &[]);
    let axis0 = g.initializer_i64("axes_0", &[0], &[1]);
    let t = g.node("Unsqueeze", &[&t, &axis0], &[]);
    let valid = g.node("Less", &[&t, &len], &[]);
    let last = g.node("Sub", &[&len, &one], &[]);
    let backwards = g.node("Sub", &[&last, &t], &[]);
    let index = g.node("Where", &[&valid, &backwards, &t], &[]);
    let axis2 = g.initializer_i64("axes_2", &[2], &[1]);
    g.node("Unsqueeze", &[&index, &axis2], &[])
}

#[cfg(test)]
mod tests {
    use ndarray::{Axis, Slice};

    use super::*;
    use crate::nn::gradcheck::input;

    fn forward(lstm: &mut Lstm, x: &ArrayD<f32>, lengths: Vec<usize>) -> ArrayD<f32> {
        let mut rng = Rng::new(1);
        let mut ctx = Ctx::new(false, &mut rng);
        ctx.lengths = Some(lengths);
        lstm.forward(x.clone(), &mut ctx)
    }

    /// Both directions' outputs at a row's valid steps are those of the row alone, unpadded,
    /// whatever the amount and the contents of its padding.
    #[test]
    fn valid_steps_ignore_padding() {
        let mut lstm = Lstm::new(3, 4, true, &mut Rng::new(1));
        let lengths = vec![6, 2, 0, 4];
        let x = input(&[4, 6, 3], 2);
        let batch = forward(&mut lstm, &x, lengths.clone());
        for (row, &len) in lengths.iter().enumerate().filter(|(_, &l)| l > 0) {
            let steps = Slice::from(0..len);
            let alone = x.index_axis(Axis(0), row).slice_axis(Axis(0), steps).insert_axis(Axis(0)).to_owned();
            let alone = forward(&mut lstm, &alone, vec![len]);
            // The same row with constant padding, as wide as the batch.
            let mut wider = x.index_axis(Axis(0), row).to_owned().insert_axis(Axis(0));
            wider.slice_axis_mut(Axis(1), Slice::from(len..)).fill(7.0);
            let wider = forward(&mut lstm, &wider, vec![len]);
            for (how, out, r) in [("in the batch", &batch, row), ("with other padding", &wider, 0)] {
                let valid = out.index_axis(Axis(0), r);
                let diff = valid
                    .slice_axis(Axis(0), steps)
                    .iter()
                    .zip(alone.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(diff < 1e-6, "row {row} (length {len}), {how}: {diff}");
            }
        }
    }
}
