//! Classification metrics: accuracy, log loss, per-class precision/recall/F1, confusion matrix.

use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class.
    pub label: String,
    /// Of the examples predicted as the class, the share that are.
    pub precision: f32,
    /// Of the examples of the class, the share predicted as it.
    pub recall: f32,
    /// Harmonic mean of precision and recall.
    pub f1: f32,
    /// Examples of the class.
    pub support: usize,
}

/// Everything graft reports about a set of predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Share of examples whose most likely class is right.
    pub accuracy: f32,
    /// Mean negative log-probability of the right class.
    pub log_loss: f32,
    /// Per-class precision, recall and F1, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Index of the largest value in each row.
///
/// # Shapes
/// `[N, C]` -> `[N]`
pub fn argmax_rows(p: ArrayView2<f32>) -> Vec<usize> {
    p.axis_iter(Axis(0))
        .map(|r| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect()
}

/// Accuracy of predicted probabilities.
///
/// # Shapes
/// `proba` `[N, C]`, `y` `[N]`
pub fn accuracy(proba: ArrayView2<f32>, y: &[usize]) -> f32 {
    let hits = argmax_rows(proba).iter().zip(y).filter(|(p, t)| p == t).count();
    hits as f32 / y.len().max(1) as f32
}

/// Mean negative log-likelihood of the true classes (probabilities clipped at 1e-7).
///
/// # Shapes
/// `proba` `[N, C]`, `y` `[N]`
pub fn log_loss(proba: ArrayView2<f32>, y: &[usize]) -> f32 {
    let total: f64 = y.iter().enumerate().map(|(i, &c)| -(proba[[i, c]].clamp(1e-7, 1.0) as f64).ln()).sum();
    (total / y.len().max(1) as f64) as f32
}

/// All metrics of `proba` against `y`, with class names `labels`.
///
/// # Shapes
/// `proba` `[N, C]`, `y` `[N]`, `labels` `[C]`
pub fn evaluate(proba: ArrayView2<f32>, y: &[usize], labels: &[String]) -> Metrics {
    let c = labels.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&p, &t) in argmax_rows(proba).iter().zip(y) {
        confusion[t][p] += 1;
    }
    let per_class = (0..c)
        .map(|k| {
            let tp = confusion[k][k] as f32;
            let predicted: usize = (0..c).map(|t| confusion[t][k]).sum();
            let support: usize = confusion[k].iter().sum();
            let precision = if predicted > 0 { tp / predicted as f32 } else { 0.0 };
            let recall = if support > 0 { tp / support as f32 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { label: labels[k].clone(), precision, recall, f1, support }
        })
        .collect();
    Metrics { accuracy: accuracy(proba, y), log_loss: log_loss(proba, y), per_class, confusion }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn metrics_of_a_small_example() {
        let p = array![[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]];
        let m = evaluate(p.view(), &[0, 1, 1, 1], &["a".into(), "b".into()]);
        assert_eq!(m.confusion, vec![vec![1, 0], vec![1, 2]]);
        assert_eq!(m.accuracy, 0.75);
        assert!((m.per_class[0].precision - 0.5).abs() < 1e-6);
        assert!((m.per_class[1].recall - 2.0 / 3.0).abs() < 1e-6);
        assert!((m.per_class[1].f1 - 0.8).abs() < 1e-6);
        let expected = -(0.9f32.ln() + 0.8f32.ln() + 0.4f32.ln() + 0.7f32.ln()) / 4.0;
        assert!((m.log_loss - expected).abs() < 1e-5);
    }
}
