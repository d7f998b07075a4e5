//! Matrix products split across the rayon pool (ndarray's own `dot` runs on one thread), written
//! into fresh memory without zeroing it first.

use std::mem::MaybeUninit;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Below this many multiply-adds one thread is faster than splitting.
const PARALLEL_FROM: usize = 1 << 21;

/// From this many multiply-adds the AVX-512 kernel of [`super::sgemm`] runs the product (the
/// per-head attention products, about 40 x 32 x 40, stay with `matrixmultiply`).
const OWN_FROM: usize = 1 << 18;

/// A pointer handed to the rayon pool; every job writes a disjoint block through it.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the jobs that share an `Out` write disjoint elements, and the caller waits for them all.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `offset` elements on (taking `self` whole, so closures capture the `Out`).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `c = a · b`, `c` row-major with row stride `ldc`; `c` is written, never read, so it may be
/// uninitialised.
///
/// # Safety
/// `c` must be valid for writes of `a.nrows()` rows of `b.ncols()` elements, `ldc` apart.
///
/// # Shapes
/// `a`: `[M, K]`, `b`: `[K, N]`.
unsafe fn product_into(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: *mut f32, ldc: usize) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let (sa, sb) = (a.strides(), b.strides());
    #[cfg(target_arch = "x86_64")]
    if m * k * n >= OWN_FROM && super::sgemm::available() {
        // SAFETY: the views' pointers and strides describe their elements; the CPU has AVX-512.
        unsafe { super::sgemm::sgemm(m, k, n, a.as_ptr(), sa[0], sa[1], b.as_ptr(), sb[0], sb[1], c, ldc) };
        return;
    }
    // SAFETY: the views' pointers and strides describe their elements; matrixmultiply does not
    // read C when beta is 0.
    unsafe {
        matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), sa[0], sa[1], b.as_ptr(), sb[0], sb[1], 0.0, c, ldc as isize, 1)
    }
}

/// `a · b` into `out`, uninitialised row-major `[M, N]` memory, in row or column blocks on every
/// rayon thread when it is large.
///
/// # Shapes
/// `a`: `[M, K]`, `b`: `[K, N]`, `out`: `M * N` elements.
pub fn dot_into(a: &ArrayView2<f32>, b: &ArrayView2<f32>, out: &mut [MaybeUninit<f32>]) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(out.len(), m * n, "the output holds M * N elements");
    let c = Out(out.as_mut_ptr().cast::<f32>());
    let threads = rayon::current_num_threads();
    if m * k * n < PARALLEL_FROM || threads < 2 {
        // SAFETY: `out` holds the M x N result.
        unsafe { product_into(a, b, c.at(0), n) };
    } else if m >= n {
        let rows = m.div_ceil(threads);
        (0..m.div_ceil(rows)).into_par_iter().for_each(|j| {
            let r = j * rows..((j + 1) * rows).min(m);
            let block = a.slice(ndarray::s![r.clone(), ..]);
            // SAFETY: rows `r` of the output, disjoint across jobs.
            unsafe { product_into(&block, b, c.at(r.start * n), n) };
        });
    } else {
        let cols = n.div_ceil(threads);
        (0..n.div_ceil(cols)).into_par_iter().for_each(|j| {
            let r = j * cols..((j + 1) * cols).min(n);
            let block = b.slice(ndarray::s![.., r.clone()]);
            // SAFETY: columns `r` of the output, disjoint across jobs.
            unsafe { product_into(a, &block, c.at(r.start), n) };
        });
    }
}

/// `a · b`, computed in row or column blocks on every rayon thread when it is large.
///
/// # Shapes
/// `a`: `[M, K]`, `b`: `[K, N]`; returns `[M, N]` in row-major layout.
pub fn dot(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::<f32>::uninit((a.nrows(), b.ncols()));
    dot_into(a, b, c.as_slice_mut().expect("a fresh array is row-major"));
    // SAFETY: `dot_into` wrote every element.
    unsafe { c.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::check::param;

    /// Every layout and edge of the AVX-512 product: partial tiles, several depth and width
    /// blocks, A and B transposed, and strides that are not 1 on either axis (packed).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_product_equals_ndarray_dot() {
        if !crate::graph::ops::sgemm::available() {
            return;
        }
        for (m, k, n) in [(1, 1, 1), (13, 7, 33), (300, 200, 100), (25, 600, 1100), (36, 257, 64)] {
            let a: Array2<f32> = param(&[m, 2 * k], 3).into_dimensionality().unwrap();
            let b: Array2<f32> = param(&[k, n], 4).into_dimensionality().unwrap();
            let a_t = a.t().as_standard_layout().into_owned();
            let b_t = b.t().as_standard_layout().into_owned();
            let views = [
                (a.slice(ndarray::s![.., ..k]), b.view()),
                (a_t.t().slice_move(ndarray::s![.., ..k]), b_t.t()),
                (a.slice(ndarray::s![.., ..;2]), b.view()),
            ];
            for (i, (av, bv)) in views.iter().enumerate() {
                let want = av.dot(bv);
                let mut got = vec![f32::NAN; m * n];
                let (sa, sb) = (av.strides(), bv.strides());
                // SAFETY: the views describe their elements; `got` holds m x n.
                unsafe {
                    super::super::sgemm::sgemm(
                        m,
                        k,
                        n,
                        av.as_ptr(),
                        sa[0],
                        sa[1],
                        bv.as_ptr(),
                        sb[0],
                        sb[1],
                        got.as_mut_ptr(),
                        n,
                    )
                };
                for (g, w) in got.iter().zip(want.iter()) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}x{k}x{n} layout {i}: {g} vs {w}");
                }
            }
        }
    }

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
