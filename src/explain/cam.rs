//! Grad-CAM on a feature map, with the gradients from the native tail.

use ndarray::{s, Array2, ArrayD, Axis, Ix4};

use crate::graph::Tail;
use crate::{Error, Result};

/// One image's class activation map.
#[derive(Clone, Debug, PartialEq)]
pub struct Cam {
    /// The class explained (the predicted one unless asked otherwise).
    pub class: usize,
    /// Every class's probability.
    pub probabilities: Vec<f32>,
    /// `relu(sum_c w_c A_c)` divided by its maximum (all zeros when nothing is positive).
    ///
    /// # Shapes
    /// `[h, w]`, the feature map's spatial size
    pub map: Array2<f32>,
}

/// Grad-CAM of each row of `features` (the feature map `A`) through `tail`, which runs from `A` to
/// the class scores. For each row, the class is `class` or the most probable one; the channel
/// weights are the spatial means of d score / d `A`; the map is `relu(sum_c w_c A_c)` normalised
/// to `[0, 1]` by its maximum. With `softmax`, the tail's output is the logits and the
/// probabilities are their softmax; otherwise the output is the probabilities (and the score).
///
/// Errors: `features` is not 4-D, the tail needs side inputs, its output is not `[N, K]`, or
/// `class` is not below `K`.
///
/// # Shapes
/// `features` `[N, C, h, w]` -> `N` maps `[h, w]`
pub fn grad_cam(tail: &mut Tail, features: ArrayD<f32>, class: Option<usize>, softmax: bool) -> Result<Vec<Cam>> {
    let a = features.into_dimensionality::<Ix4>().map_err(|_| Error::Tensor {
        name: tail.start().into(),
        msg: "is not a 4-D [N, C, h, w] feature map".into(),
    })?;
    if !tail.side_inputs().is_empty() {
        return Err(Error::Tensor {
            name: tail.start().into(),
            msg: format!("what follows it also reads {}: no class score from it alone", tail.side_inputs().join(", ")),
        });
    }
    let scores = tail.forward(a.clone().into_dyn(), Vec::new(), true)?;
    let end = tail.end().to_string();
    let scores = scores
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|_| Error::Tensor { name: end.clone(), msg: "is not [N, classes]".into() })?;
    let k = scores.ncols();
    if let Some(c) = class.filter(|&c| c >= k) {
        return Err(Error::Invalid(format!("class {c} does not exist: the model has {k} classes")));
    }
    let probabilities: Vec<Vec<f32>> =
        scores.rows().into_iter().map(|r| if softmax { softmax_row(&r.to_vec()) } else { r.to_vec() }).collect();
    let classes: Vec<usize> = probabilities.iter().map(|p| class.unwrap_or_else(|| argmax(p))).collect();
    let mut dy = Array2::<f32>::zeros(scores.raw_dim());
    for (i, &c) in classes.iter().enumerate() {
        dy[[i, c]] = 1.0;
    }
    let grad = tail
        .backward(dy.into_dyn(), true)?
        .ok_or_else(|| Error::Tensor { name: tail.start().into(), msg: "no gradient reached it".into() })?
        .into_dimensionality::<Ix4>()
        .map_err(|_| Error::Tensor { name: tail.start().into(), msg: "its gradient is not 4-D".into() })?;
    Ok((0..a.shape()[0])
        .map(|i| {
            let weights = grad.slice(s![i, .., .., ..]).mean_axis(Axis(2)).and_then(|m| m.mean_axis(Axis(1)));
            let weights = weights.expect("a feature map has spatial dimensions");
            let mut map = Array2::<f32>::zeros((a.shape()[2], a.shape()[3]));
            for (c, &w) in weights.iter().enumerate() {
                map.scaled_add(w, &a.slice(s![i, c, .., ..]));
            }
            Cam { class: classes[i], probabilities: probabilities[i].clone(), map: normalise(map) }
        })
        .collect())
}

/// `relu(map)` divided by its maximum; all zeros when no value is positive.
pub fn normalise(map: Array2<f32>) -> Array2<f32> {
    let map = map.mapv(|v| v.max(0.0));
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        map / max
    } else {
        map
    }
}

fn softmax_row(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, v)| if *v > p[best] { i } else { best })
}
