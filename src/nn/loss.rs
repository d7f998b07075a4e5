//! Losses. Only the fused softmax cross-entropy is needed: models output logits, and export appends
//! the `Softmax` node.

use ndarray::{Array2, ArrayView2, Axis};

/// Row-wise softmax, stable (max subtracted).
///
/// # Shapes
/// `logits` `[N, C]` -> `[N, C]`
pub fn softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut out = logits.to_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Fused, numerically stable softmax cross-entropy with optional class weights.
///
/// Returns the mean over rows of `w[y] * -log softmax(logits)[y]` (Keras semantics: weighted sum
/// divided by the number of rows) and its gradient with respect to the logits.
///
/// # Shapes
/// `logits` `[N, C]`, `labels` `[N]` with values `< C`, `class_weights` `[C]` -> `(scalar, [N, C])`
pub fn softmax_cross_entropy(
    logits: ArrayView2<f32>,
    labels: &[usize],
    class_weights: Option<&[f32]>,
) -> (f32, Array2<f32>) {
    let n = logits.nrows();
    assert_eq!(n, labels.len(), "one label per row");
    let mut grad = Array2::zeros(logits.raw_dim());
    let mut total = 0.0f64;
    for (i, (row, &y)) in logits.axis_iter(Axis(0)).zip(labels).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln() + max;
        let w = class_weights.map_or(1.0, |cw| cw[y]);
        total += (w * (log_sum - row[y])) as f64;
        for (c, &v) in row.iter().enumerate() {
            let p = (v - log_sum).exp();
            grad[[i, c]] = w * (p - if c == y { 1.0 } else { 0.0 }) / n as f32;
        }
    }
    ((total / n as f64) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax(array![[1000.0f32, 1000.0], [0.0, f32::ln(3.0)]].view());
        assert!((p[[0, 0]] - 0.5).abs() < 1e-6);
        assert!((p[[1, 1]] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let logits = array![[0.3f32, -1.2, 2.0], [0.5, 0.1, -0.4]];
        let labels = [2, 0];
        for weights in [None, Some(&[1.0f32, 2.5, 0.5][..])] {
            let (_, g) = softmax_cross_entropy(logits.view(), &labels, weights);
            let eps = 1e-2;
            for idx in [[0, 0], [0, 2], [1, 1]] {
                let (mut hi, mut lo) = (logits.clone(), logits.clone());
                hi[idx] += eps;
                lo[idx] -= eps;
                let num = (softmax_cross_entropy(hi.view(), &labels, weights).0
                    - softmax_cross_entropy(lo.view(), &labels, weights).0)
                    / (2.0 * eps);
                assert!((num - g[idx]).abs() < 1e-3, "{idx:?}: {num} vs {}", g[idx]);
            }
        }
    }
}
