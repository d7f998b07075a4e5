//! Finite-difference gradient checks shared by the layers' tests.

use ndarray::{ArrayD, IxDyn};

use super::{Ctx, Layer};
use crate::rng::Rng;

/// Checks `layer`'s backward pass against central differences of `L = sum(y * r)` for a fixed random
/// `r`, for the input gradient and every parameter. Uses f64-ish tolerances suitable for f32.
pub fn check(layer: &mut dyn Layer, input: ArrayD<f32>) {
    check_with(layer, input, None, true)
}

/// Like [`check`], with row lengths in the context (masked layers) and optionally without the input
/// gradient (integer inputs such as token ids).
pub fn check_with(layer: &mut dyn Layer, input: ArrayD<f32>, lengths: Option<Vec<usize>>, input_grad: bool) {
    let mut rng = Rng::new(99);
    let fwd = |layer: &mut dyn Layer, x: ArrayD<f32>| {
        // Re-seeding keeps stochastic layers (dropout) on the same mask for every evaluation.
        let mut r = Rng::new(5);
        let mut ctx = Ctx::new(true, &mut r);
        ctx.lengths = lengths.clone();
        layer.forward(x, &mut ctx)
    };
    let y = fwd(layer, input.clone());
    let r = y.mapv(|_| rng.normal());
    let loss = |layer: &mut dyn Layer, x: ArrayD<f32>| -> f64 {
        let y = fwd(layer, x);
        y.iter().zip(r.iter()).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
    };
    let dx = layer.backward(r.clone());
    let analytic_params: Vec<ArrayD<f32>> = layer.params().iter().map(|p| p.grad.clone()).collect();
    let eps = 1e-2f32;
    let close = |num: f64, ana: f32, what: &str| {
        let tol = 2e-2 * (1.0 + num.abs().max(ana.abs() as f64));
        assert!((num - ana as f64).abs() < tol, "{what}: numeric {num} vs analytic {ana}");
    };
    for i in (0..input.len()).filter(|_| input_grad) {
        let (mut hi, mut lo) = (input.clone(), input.clone());
        hi.as_slice_mut().unwrap()[i] += eps;
        lo.as_slice_mut().unwrap()[i] -= eps;
        let num = (loss(layer, hi) - loss(layer, lo)) / (2.0 * eps as f64);
        close(num, dx.as_slice().unwrap()[i], &format!("input[{i}]"));
    }
    let n_params = analytic_params.len();
    for (k, analytic) in analytic_params.into_iter().enumerate().take(n_params) {
        for i in 0..analytic.len() {
            let nudge = |layer: &mut dyn Layer, d: f32| {
                let mut ps = layer.params();
                ps[k].value.as_slice_mut().unwrap()[i] += d;
            };
            nudge(layer, eps);
            let hi = loss(layer, input.clone());
            nudge(layer, -2.0 * eps);
            let lo = loss(layer, input.clone());
            nudge(layer, eps);
            close((hi - lo) / (2.0 * eps as f64), analytic.as_slice().unwrap()[i], &format!("param {k}[{i}]"));
        }
    }
}

/// A reproducible random input of the given shape.
pub fn input(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = Rng::new(seed);
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.normal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Dense, Dropout, Embedding, Init, Lstm, MaskedMean, Relu, Standardize};

    #[test]
    fn dense() {
        check(&mut Dense::new(4, 3, Init::Glorot, &mut Rng::new(1)), input(&[5, 4], 2));
        check(&mut Dense::new(3, 2, Init::He, &mut Rng::new(3)), input(&[2, 3], 4));
    }

    #[test]
    fn relu() {
        // Inputs kept away from the kink at 0, where the derivative is undefined.
        let x = input(&[4, 5], 6).mapv(|v| if v.abs() < 0.1 { v + 0.3 } else { v });
        check(&mut Relu::default(), x);
    }

    #[test]
    fn dropout() {
        check(&mut Dropout::new(0.4), input(&[6, 5], 7));
    }

    #[test]
    fn standardize() {
        check(&mut Standardize::new(vec![0.5, -1.0, 2.0], vec![2.0, 0.5, 1.0]), input(&[3, 3], 8));
    }

    #[test]
    fn embedding() {
        let ids = ArrayD::from_shape_vec(vec![2, 4], vec![3.0, 1.0, 3.0, 0.0, 2.0, 4.0, 0.0, 0.0]).unwrap();
        check_with(&mut Embedding::new(5, 3, &mut Rng::new(9)), ids, None, false);
    }

    #[test]
    fn lstm_forward_direction() {
        check(&mut Lstm::new(3, 4, false, &mut Rng::new(10)), input(&[2, 5, 3], 11));
    }

    #[test]
    fn lstm_both_directions() {
        check(&mut Lstm::new(3, 2, true, &mut Rng::new(12)), input(&[3, 4, 3], 13));
    }

    /// Rows of different lengths (one empty) whose padding steps hold arbitrary values: the reverse
    /// direction runs over each row's valid steps only, and its gradients follow.
    #[test]
    fn lstm_both_directions_with_lengths() {
        let lengths = vec![4, 1, 0, 3];
        for seed in [15, 16] {
            let layer = &mut Lstm::new(3, 2, true, &mut Rng::new(14));
            check_with(layer, input(&[4, 4, 3], seed), Some(lengths.clone()), true);
        }
    }

    #[test]
    fn masked_mean() {
        check_with(&mut MaskedMean::default(), input(&[3, 4, 2], 14), Some(vec![4, 2, 0]), true);
    }
}
