//! A matrix product split across the rayon pool (ndarray's own `dot` runs on one thread).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Below this many multiply-adds one thread is faster than splitting.
const PARALLEL_FROM: usize = 1 << 21;

/// `a · b`, computed in row or column blocks on every rayon thread when it is large.
///
/// # Shapes
/// `a`: `[M, K]`, `b`: `[K, N]`; returns `[M, N]` in row-major layout.
pub fn dot(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut c = Array2::<f32>::zeros((m, n));
    let threads = rayon::current_num_threads();
    if m * k * n < PARALLEL_FROM || threads < 2 {
        general_mat_mul(1.0, a, b, 0.0, &mut c);
        return c;
    }
    if m >= n {
        let rows = m.div_ceil(threads);
        let jobs: Vec<_> = c.axis_chunks_iter_mut(Axis(0), rows).zip(a.axis_chunks_iter(Axis(0), rows)).collect();
        jobs.into_par_iter().for_each(|(mut ci, ai)| general_mat_mul(1.0, &ai, b, 0.0, &mut ci));
    } else {
        let cols = n.div_ceil(threads);
        let jobs: Vec<_> = c.axis_chunks_iter_mut(Axis(1), cols).zip(b.axis_chunks_iter(Axis(1), cols)).collect();
        jobs.into_par_iter().for_each(|(mut ci, bi)| general_mat_mul(1.0, a, &bi, 0.0, &mut ci));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::check::param;

    #[test]
    fn blocked_product_equals_ndarray_dot() {
        for (m, k, n) in [(300, 200, 100), (64, 300, 400), (3, 4, 5)] {
            let a = param(&[m, k], 1).into_dimensionality().unwrap();
            let b = param(&[k, n], 2).into_dimensionality().unwrap();
            let a: Array2<f32> = a;
            let b: Array2<f32> = b;
            let want = a.dot(&b);
            let got = dot(&a.view(), &b.view());
            let got_t = dot(&a.t().as_standard_layout().t(), &b.view());
            for (g, w) in got.iter().chain(got_t.iter()).zip(want.iter().chain(want.iter())) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
    }
}
