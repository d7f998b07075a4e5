//! Numpy-style broadcasting, and its adjoint: summing a gradient back to an operand's shape.

use ndarray::{ArrayD, Axis};

use crate::graph::value::OpResult;

/// The shape two operands broadcast to (right-aligned; a dimension of 1 stretches).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Sums `grad` (of a broadcast result) over the axes along which an operand of `shape` was
/// stretched, giving the operand's gradient.
///
/// # Shapes
/// `grad`: the broadcast shape; returns `shape`.
pub fn unbroadcast(grad: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    if grad.shape() == shape {
        return grad;
    }
    unbroadcast_ref(&grad, shape)
}

/// [`unbroadcast`] of a borrowed gradient: a copy when the shapes match, else only the sums.
///
/// # Shapes
/// `grad`: the broadcast shape; returns `shape`.
pub fn unbroadcast_ref(grad: &ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    if grad.shape() == shape {
        return grad.clone();
    }
    // The usual case (a bias): the operand is the trailing axes, stretched along all leading ones.
    let lead = shape.iter().take_while(|&&d| d == 1).count();
    let kept = &shape[lead..];
    if grad.is_standard_layout() && grad.ndim() >= kept.len() && grad.shape()[grad.ndim() - kept.len()..] == *kept {
        let sums = super::par::column_sums(grad.as_slice().expect("standard layout"), None, kept.iter().product());
        return ArrayD::from_shape_vec(ndarray::IxDyn(shape), sums).expect("the operand's element count");
    }
    let extra = grad.ndim() - shape.len();
    // The leading axes the operand lacks are summed away first (a copy only when there are none).
    let mut g = if extra == 0 { grad.clone() } else { grad.sum_axis(Axis(0)) };
    for _ in 1..extra {
        g = g.sum_axis(Axis(0));
    }
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[i] != 1 {
            g = g.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    super::reshape(g, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_broadcast_right_aligned() {
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shape(&[2, 3], &[4]).unwrap_err().contains("do not broadcast"));
    }

    #[test]
    fn unbroadcast_sums_stretched_axes() {
        let g = ArrayD::from_elem(ndarray::IxDyn(&[2, 3, 4]), 1.0f32);
        let r = unbroadcast(g, &[3, 1]);
        assert_eq!(r.shape(), &[3, 1]);
        assert!(r.iter().all(|&v| v == 8.0));
    }
}
