//! Elementwise maps over large tensors, split across the rayon pool.

use ndarray::{ArrayD, Zip};
use rayon::prelude::*;

/// Below this many elements one thread is faster than splitting.
const PARALLEL_FROM: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

/// `f` applied to every element of `a`.
///
/// # Shapes
/// Any shape; returns `a`'s shape.
pub fn map(a: &ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync) -> ArrayD<f32> {
    match a.as_slice() {
        Some(src) if src.len() >= PARALLEL_FROM => {
            let mut out = vec![0.0f32; src.len()];
            out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
                o.iter_mut().zip(s).for_each(|(o, &s)| *o = f(s));
            });
            ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
        }
        _ => a.mapv(f),
    }
}

/// `f` applied to the elements of `a` and `b` pairwise.
///
/// # Shapes
/// `a`, `b`: the same shape; returns it.
pub fn zip(a: &ArrayD<f32>, b: &ArrayD<f32>, f: impl Fn(f32, f32) -> f32 + Sync) -> ArrayD<f32> {
    debug_assert_eq!(a.shape(), b.shape());
    match (a.as_slice(), b.as_slice()) {
        (Some(x), Some(y)) if x.len() >= PARALLEL_FROM => {
            let mut out = vec![0.0f32; x.len()];
            out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(y.par_chunks(CHUNK)).for_each(|((o, x), y)| {
                o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| *o = f(x, y));
            });
            ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
        }
        _ => Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::check::param;

    #[test]
    fn parallel_maps_equal_sequential_ones() {
        for n in [10, 100_000] {
            let (a, b) = (param(&[n], 1), param(&[n], 2));
            assert_eq!(map(&a, |v| v * 2.0 + 1.0), a.mapv(|v| v * 2.0 + 1.0));
            assert_eq!(zip(&a, &b, |x, y| x * y - 1.0), Zip::from(&a).and(&b).map_collect(|&x, &y| x * y - 1.0));
        }
    }
}
