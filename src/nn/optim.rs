//! Optimizers: SGD (momentum, Nesterov) and Adam, with coupled L2, decoupled weight decay (AdamW
//! when combined with Adam) and global-norm gradient clipping.

use ndarray::ArrayD;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Param;
use crate::graph::ops::par::{CHUNK, PARALLEL_FROM};
use crate::graph::ops::simd;
use crate::{Error, Result};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay (default decay 0.01).
    Adamw,
}

/// Optimizer settings; [`OptimizerConfig::build`] validates them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// SGD, Adam or AdamW.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Adam's first-moment decay.
    pub beta1: f32,
    /// Adam's second-moment decay.
    pub beta2: f32,
    /// Adam's denominator epsilon.
    pub eps: f32,
    /// Coupled L2 penalty: `l2 * w` is added to the gradient of every weight.
    pub l2: f32,
    /// Decoupled weight decay: `w -= lr * weight_decay * w` each step (`None`: 0.01 for AdamW, else 0).
    pub weight_decay: Option<f32>,
    /// Clip gradients to this global L2 norm.
    pub clip_norm: Option<f32>,
    /// Parameter groups with their own learning rate: a parameter whose model name (e.g.
    /// `layers.0.conv_55_w`) starts with a group's prefix uses the first such group's `lr`, scaled
    /// as the base `lr` is (plateau reduction); the others use `lr`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<LrGroup>,
}

/// A parameter group of [`OptimizerConfig::groups`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrGroup {
    /// Model parameter names starting with this belong to the group.
    pub prefix: String,
    /// The group's learning rate.
    pub lr: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.0,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            l2: 0.0,
            weight_decay: None,
            clip_norm: None,
            groups: Vec::new(),
        }
    }
}

impl OptimizerConfig {
    /// Checks the values and makes the optimizer.
    pub fn build(&self) -> Result<Optimizer> {
        let bad = |m: &str| Err(Error::config("optimizer", m.to_string()));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum must be in [0, 1)");
        }
        if self.nesterov && (self.kind != OptimizerKind::Sgd || self.momentum == 0.0) {
            return bad("nesterov needs kind = \"sgd\" and momentum > 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)");
        }
        if self.l2 < 0.0 || self.weight_decay.is_some_and(|w| w < 0.0) {
            return bad("l2 and weight_decay must be >= 0");
        }
        if self.clip_norm.is_some_and(|c| c <= 0.0) {
            return bad("clip_norm must be > 0");
        }
        if self.groups.iter().any(|g| !(g.lr > 0.0 && g.lr.is_finite())) {
            return bad("every group's lr must be a positive number");
        }
        let weight_decay = self.weight_decay.unwrap_or(if self.kind == OptimizerKind::Adamw { 0.01 } else { 0.0 });
        let (m, v, scales) = (Vec::new(), Vec::new(), Vec::new());
        Ok(Optimizer { cfg: self.clone(), weight_decay, lr: self.lr, t: 0, m, v, scales })
    }
}

/// A stateful optimizer over a fixed, ordered list of parameters.
pub struct Optimizer {
    cfg: OptimizerConfig,
    weight_decay: f32,
    lr: f32,
    t: u64,
    m: Vec<ArrayD<f32>>,
    v: Vec<ArrayD<f32>>,
    /// Learning-rate factor of each parameter (its group's `lr / lr`; empty: all 1).
    scales: Vec<f32>,
}

/// Everything an optimizer needs to continue exactly where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The current learning rate (after plateau reductions).
    pub lr: f32,
    /// Steps taken.
    pub t: u64,
}

impl Optimizer {
    /// The current learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Sets the learning rate (schedules, plateau reduction).
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// Assigns the parameters, named as the model names them and in the order [`Optimizer::step`]
    /// gets them, to the configured [`OptimizerConfig::groups`].
    pub fn set_param_names(&mut self, names: &[String]) {
        let base = self.cfg.lr;
        self.scales = names
            .iter()
            .map(|n| self.cfg.groups.iter().find(|g| n.starts_with(&g.prefix)).map_or(1.0, |g| g.lr / base))
            .collect();
    }

    /// Applies one update to `params` from their gradients.
    pub fn step(&mut self, params: &mut [Param]) {
        if self.m.len() != params.len() {
            self.m = params.iter().map(|p| ArrayD::zeros(p.value.raw_dim())).collect();
            self.v = params.iter().map(|p| ArrayD::zeros(p.value.raw_dim())).collect();
        }
        if self.cfg.l2 > 0.0 {
            for p in params.iter_mut().filter(|p| p.decay) {
                p.grad.scaled_add(self.cfg.l2, p.value);
            }
        }
        let mut gscale = 1.0;
        if let Some(max) = self.cfg.clip_norm {
            let norm = params.iter().map(|p| squares(p.grad)).sum::<f32>().sqrt();
            if norm > max {
                gscale = max / norm;
            }
        }
        self.t += 1;
        let lr = self.lr;
        for (i, p) in params.iter_mut().enumerate() {
            let lr = lr * self.scales.get(i).copied().unwrap_or(1.0);
            let keep = if self.weight_decay > 0.0 && p.decay { 1.0 - lr * self.weight_decay } else { 1.0 };
            match self.cfg.kind {
                OptimizerKind::Sgd => {
                    if gscale != 1.0 {
                        p.grad.mapv_inplace(|g| g * gscale);
                    }
                    if keep != 1.0 {
                        p.value.mapv_inplace(|w| w * keep);
                    }
                    self.sgd(i, p, lr)
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => self.adam(i, p, lr, keep, gscale),
            }
        }
    }

    fn sgd(&mut self, i: usize, p: &mut Param, lr: f32) {
        let mu = self.cfg.momentum;
        if mu == 0.0 {
            p.value.scaled_add(-lr, p.grad);
            return;
        }
        let m = &mut self.m[i];
        m.zip_mut_with(p.grad, |m, &g| *m = mu * *m + g);
        if self.cfg.nesterov {
            ndarray::Zip::from(&mut *p.value).and(&*m).and(&*p.grad).for_each(|w, &m, &g| *w -= lr * (g + mu * m));
        } else {
            p.value.scaled_add(-lr, m);
        }
    }

    fn adam(&mut self, i: usize, p: &mut Param, lr: f32, keep: f32, gscale: f32) {
        let (b1, b2, eps) = (self.cfg.beta1, self.cfg.beta2, self.cfg.eps);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        let k = AdamStep { b1, b2, eps, step: lr * c2.sqrt() / c1, keep, gscale };
        let (m, v) = (&mut self.m[i], &mut self.v[i]);
        let same =
            p.value.strides() == p.grad.strides() && m.strides() == p.value.strides() && v.strides() == m.strides();
        if let (true, Some(w), Some(g), Some(m), Some(v)) = (
            same,
            p.value.as_slice_memory_order_mut(),
            p.grad.as_slice_memory_order(),
            m.as_slice_memory_order_mut(),
            v.as_slice_memory_order_mut(),
        ) {
            if w.len() >= PARALLEL_FROM {
                w.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                    .for_each(|((w, g), (m, v))| simd::fast(|| k.apply(w, g, m, v)));
            } else {
                simd::fast(|| k.apply(w, g, m, v));
            }
            return;
        }
        ndarray::Zip::from(&mut *p.value).and(m).and(v).and(&*p.grad).for_each(|w, m, v, &g| k.one(w, g, m, v));
    }

    /// Scalar state for checkpoints.
    pub fn state(&self) -> OptimizerState {
        OptimizerState { lr: self.lr, t: self.t }
    }

    /// Moment tensors for checkpoints, named `m.{i}` / `v.{i}`.
    pub fn moments(&self) -> Vec<(String, ArrayD<f32>)> {
        let m = self.m.iter().enumerate().map(|(i, a)| (format!("m.{i}"), a.clone()));
        m.chain(self.v.iter().enumerate().map(|(i, a)| (format!("v.{i}"), a.clone()))).collect()
    }

    /// Restores what [`Optimizer::state`] and [`Optimizer::moments`] saved.
    pub fn restore(&mut self, state: &OptimizerState, mut moments: std::collections::HashMap<String, ArrayD<f32>>) {
        self.lr = state.lr;
        self.t = state.t;
        let count = moments.len() / 2;
        let mut take = |k: &str| (0..count).filter_map(|i| moments.remove(&format!("{k}.{i}"))).collect::<Vec<_>>();
        self.m = take("m");
        self.v = take("v");
    }
}

/// The sum of the squares of `g`, over every rayon thread when it is large.
fn squares(g: &ArrayD<f32>) -> f32 {
    match g.as_slice_memory_order() {
        Some(s) if s.len() >= PARALLEL_FROM => s.par_chunks(CHUNK).map(|c| simd::fast(|| simd::dot(c, c))).sum(),
        Some(s) => simd::fast(|| simd::dot(s, s)),
        None => g.iter().map(|g| g * g).sum(),
    }
}

/// One Adam step's constants: the gradient is scaled by `gscale` (clipping), the weight by `keep`
/// (decoupled decay), then `w -= step * m / (sqrt(v) + eps)` with the moments updated.
struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    step: f32,
    keep: f32,
    gscale: f32,
}

impl AdamStep {
    #[inline(always)]
    fn one(&self, w: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g = g * self.gscale;
        *m = self.b1 * *m + (1.0 - self.b1) * g;
        *v = self.b2 * *v + (1.0 - self.b2) * g * g;
        *w = *w * self.keep - self.step * *m / (v.sqrt() + self.eps);
    }

    /// [`AdamStep::one`] over equal-length slices (vectorised under [`simd::fast`]).
    #[inline(always)]
    fn apply(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let n = w.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for j in 0..n {
            self.one(&mut w[j], g[j], &mut m[j], &mut v[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn minimise(cfg: OptimizerConfig) -> f32 {
        let mut opt = cfg.build().unwrap();
        let mut w = ArrayD::from_shape_vec(IxDyn(&[2]), vec![3.0f32, -2.0]).unwrap();
        let mut g = ArrayD::zeros(IxDyn(&[2]));
        for _ in 0..500 {
            g = w.mapv(|x| 2.0 * x);
            opt.step(&mut [Param { name: "w", value: &mut w, grad: &mut g, decay: true }]);
        }
        let _ = g;
        w.iter().map(|x| x * x).sum()
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        let base = OptimizerConfig { lr: 0.05, ..Default::default() };
        for cfg in [
            OptimizerConfig { kind: OptimizerKind::Sgd, ..base.clone() },
            OptimizerConfig { kind: OptimizerKind::Sgd, momentum: 0.9, ..base.clone() },
            OptimizerConfig { kind: OptimizerKind::Sgd, momentum: 0.9, nesterov: true, ..base.clone() },
            OptimizerConfig { kind: OptimizerKind::Adam, ..base.clone() },
            OptimizerConfig { kind: OptimizerKind::Adamw, ..base.clone() },
            OptimizerConfig { l2: 0.1, clip_norm: Some(1.0), ..base.clone() },
        ] {
            let loss = minimise(cfg.clone());
            assert!(loss < 1e-3, "{cfg:?}: {loss}");
        }
    }

    /// Each group moves at its own rate: with plain SGD the step is exactly `lr * grad`.
    #[test]
    fn groups_have_their_own_learning_rates() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            groups: vec![LrGroup { prefix: "layers.0.".into(), lr: 0.001 }],
            ..Default::default()
        };
        let mut opt = cfg.build().unwrap();
        opt.set_param_names(&["layers.0.w".into(), "layers.1.w".into()]);
        let (mut a, mut b) = (ArrayD::ones(IxDyn(&[1])), ArrayD::ones(IxDyn(&[1])));
        let (mut ga, mut gb) = (ArrayD::ones(IxDyn(&[1])), ArrayD::ones(IxDyn(&[1])));
        opt.step(&mut [
            Param { name: "w", value: &mut a, grad: &mut ga, decay: true },
            Param { name: "w", value: &mut b, grad: &mut gb, decay: true },
        ]);
        assert!((1.0 - a[[0]] - 0.001).abs() < 1e-7, "{}", a[[0]]);
        assert!((1.0 - b[[0]] - 0.1).abs() < 1e-7, "{}", b[[0]]);
        let bad = OptimizerConfig { groups: vec![LrGroup { prefix: "x".into(), lr: 0.0 }], ..Default::default() };
        assert!(bad.build().is_err());
    }

    /// The fused, parallel AdamW step equals the textbook one (decay, clipping, bias correction)
    /// on a parameter large enough to be split across threads.
    #[test]
    fn fused_adamw_matches_the_formula() {
        let cfg = OptimizerConfig { kind: OptimizerKind::Adamw, lr: 0.01, clip_norm: Some(1.0), ..Default::default() };
        let mut opt = cfg.build().unwrap();
        let n = 100_003;
        let mut w = ArrayD::from_shape_fn(IxDyn(&[n]), |i| ((i[0] * 7919) % 1000) as f32 / 500.0 - 1.0);
        let (mut w_ref, mut m_ref, mut v_ref) = (w.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        for t in 1..=3 {
            let mut g = w.mapv(|x| 2.0 * x + 0.1 * t as f32);
            let g_ref = g.clone();
            opt.step(&mut [Param { name: "w", value: &mut w, grad: &mut g, decay: true }]);
            let norm = g_ref.iter().map(|g| (g * g) as f64).sum::<f64>().sqrt() as f32;
            let scale = if norm > 1.0 { 1.0 / norm } else { 1.0 };
            let step = 0.01 * (1.0 - 0.999f32.powi(t)).sqrt() / (1.0 - 0.9f32.powi(t));
            for j in 0..n {
                let g = g_ref[j] * scale;
                m_ref[j] = 0.9 * m_ref[j] + 0.1 * g;
                v_ref[j] = 0.999 * v_ref[j] + 0.001 * g * g;
                w_ref[j] = w_ref[j] * (1.0 - 0.01 * 0.01) - step * m_ref[j] / (v_ref[j].sqrt() + 1e-7);
            }
        }
        let worst = w.iter().zip(&w_ref).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
    }

    #[test]
    fn build_rejects_bad_values() {
        assert!(OptimizerConfig { lr: 0.0, ..Default::default() }.build().is_err());
        assert!(OptimizerConfig { nesterov: true, ..Default::default() }.build().is_err());
        assert!(OptimizerConfig { clip_norm: Some(-1.0), ..Default::default() }.build().is_err());
    }
}
