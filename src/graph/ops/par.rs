//! Elementwise maps over large tensors, split across the rayon pool.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMut, Axis, CowArray, IxDyn, Zip};
use rayon::prelude::*;

use super::simd;

/// Below this many elements one thread is faster than splitting.
pub const PARALLEL_FROM: usize = 1 << 15;
/// Elements per parallel piece.
pub const CHUNK: usize = 1 << 13;

/// `f` applied to every element of `a`, vectorised (see [`simd::fast`]).
///
/// # Shapes
/// Any shape; returns `a`'s shape.
pub fn map(a: &ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync) -> ArrayD<f32> {
    let Some(src) = a.as_slice() else { return a.mapv(f) };
    let out = filled(src, |d, s| simd::fast(|| d.iter_mut().zip(s).for_each(|(d, &s)| *d = MaybeUninit::new(f(s)))));
    ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
}

/// A new vector as long as `src`, `body(dst, src)` writing every value of each `CHUNK`-long
/// piece (the pieces in parallel when `src` is large).
fn filled(src: &[f32], body: impl Fn(&mut [MaybeUninit<f32>], &[f32]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(src.len());
    let spare = &mut out.spare_capacity_mut()[..src.len()];
    if src.len() >= PARALLEL_FROM {
        spare.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| body(d, s));
    } else {
        body(spare, src);
    }
    // SAFETY: `body` wrote every element up to `src.len()`.
    unsafe { out.set_len(src.len()) };
    out
}

/// `f` applied to the elements of `a` and `b` pairwise, vectorised.
///
/// # Shapes
/// `a`, `b`: the same shape; returns it.
pub fn zip(a: &ArrayD<f32>, b: &ArrayD<f32>, f: impl Fn(f32, f32) -> f32 + Sync) -> ArrayD<f32> {
    debug_assert_eq!(a.shape(), b.shape());
    let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) else {
        return Zip::from(a).and(b).map_collect(|&x, &y| f(x, y));
    };
    let mut out = Vec::with_capacity(x.len());
    let body = |d: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32]| {
        simd::fast(|| d.iter_mut().zip(x.iter().zip(y)).for_each(|(d, (&x, &y))| *d = MaybeUninit::new(f(x, y))))
    };
    let spare = &mut out.spare_capacity_mut()[..x.len()];
    if x.len() >= PARALLEL_FROM {
        spare
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(d, (x, y))| body(d, x, y));
    } else {
        body(spare, x, y);
    }
    // SAFETY: every element up to `x.len()` was written above.
    unsafe { out.set_len(x.len()) };
    ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
}

/// `a = f(a, b)` elementwise, in place, vectorised; `a` keeps its memory.
///
/// # Shapes
/// `a`, `b`: the same shape.
pub fn zip_in_place(a: &mut ArrayD<f32>, b: &ArrayD<f32>, f: impl Fn(f32, f32) -> f32 + Sync) {
    debug_assert_eq!(a.shape(), b.shape());
    let same_order = a.strides() == b.strides();
    let (Some(x), Some(y), true) = (a.as_slice_memory_order_mut(), b.as_slice_memory_order(), same_order) else {
        Zip::from(a).and(b).for_each(|x, &y| *x = f(*x, y));
        return;
    };
    let body = |x: &mut [f32], y: &[f32]| simd::fast(|| x.iter_mut().zip(y).for_each(|(x, &y)| *x = f(*x, y)));
    if x.len() >= PARALLEL_FROM {
        x.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(x, y)| body(x, y));
    } else {
        body(x, y);
    }
}

/// `f(row, i)` on every `width`-long row of `data`, rows split across the rayon pool when the
/// data is large.
///
/// # Shapes
/// `data`: `[rows * width]`.
pub fn rows_mut(data: &mut [f32], width: usize, f: impl Fn(&mut [f32], usize) + Sync) {
    let width = width.max(1);
    if data.len() >= PARALLEL_FROM {
        let rows = (CHUNK / width).max(1);
        data.par_chunks_mut(rows * width).enumerate().for_each(|(j, block)| {
            simd::fast(|| block.chunks_mut(width).enumerate().for_each(|(i, r)| f(r, j * rows + i)))
        });
    } else {
        simd::fast(|| data.chunks_mut(width).enumerate().for_each(|(i, r)| f(r, i)));
    }
}

/// `a` in row-major layout: given back as it is when it already is, else [`standard`].
///
/// # Shapes
/// Any shape; returns `a`'s shape.
pub fn into_standard(a: ArrayD<f32>) -> ArrayD<f32> {
    if a.is_standard_layout() {
        a
    } else {
        standard(a.view())
    }
}

/// `a` in row-major layout: a view of it when it already is, else [`standard`].
///
/// # Shapes
/// Any shape; returns `a`'s shape.
pub fn standard_cow<'a>(a: ArrayViewD<'a, f32>) -> CowArray<'a, f32, IxDyn> {
    if a.is_standard_layout() {
        CowArray::from(a)
    } else {
        CowArray::from(standard(a))
    }
}

/// A row-major copy of `a` (any strides), written by every rayon thread when it is large. When
/// `a`'s innermost axes are contiguous (a transposed or permuted array whose last axis stayed in
/// place), those runs are copied whole.
///
/// # Shapes
/// Any shape; returns `a`'s shape.
pub fn standard(a: ArrayViewD<'_, f32>) -> ArrayD<f32> {
    let len = a.len();
    let positive = a.strides().iter().all(|&s| s >= 0);
    let (true, Some(src)) = (len >= PARALLEL_FROM && positive, a.as_slice_memory_order()) else {
        return standard_by_outer_axis(a);
    };
    if a.is_standard_layout() {
        let out = filled(src, |d, s| d.iter_mut().zip(s).for_each(|(d, &s)| *d = MaybeUninit::new(s)));
        return ArrayD::from_shape_vec(a.raw_dim(), out).unwrap();
    }
    let (shape, strides) = (a.shape(), a.strides());
    let (mut run, mut outer) = (1usize, shape.len());
    while outer > 0 && (shape[outer - 1] == 1 || strides[outer - 1] == run as isize) {
        run *= shape[outer - 1];
        outer -= 1;
    }
    if run < 16 {
        return standard_by_outer_axis(a);
    }
    let (dims, steps) = (&shape[..outer], &strides[..outer]);
    let rows = (CHUNK / run).max(1);
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(rows * run).enumerate().for_each(|(j, block)| {
        let mut index = vec![0usize; dims.len()];
        let mut first = j * rows;
        for (i, &d) in index.iter_mut().zip(dims).rev() {
            *i = first % d;
            first /= d;
        }
        for dst in block.chunks_mut(run) {
            let at: isize = index.iter().zip(steps).map(|(&i, &s)| i as isize * s).sum();
            let at = at as usize;
            dst.iter_mut().zip(&src[at..at + run]).for_each(|(d, &s)| *d = MaybeUninit::new(s));
            for (i, &d) in index.iter_mut().zip(dims).rev() {
                *i += 1;
                if *i < d {
                    break;
                }
                *i = 0;
            }
        }
    });
    // SAFETY: the blocks cover all `len` elements, each written above.
    unsafe { out.set_len(len) };
    ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
}

/// [`standard`] for any strides: the sub-arrays along the first axis in parallel.
fn standard_by_outer_axis(a: ArrayViewD<'_, f32>) -> ArrayD<f32> {
    let len = a.len();
    if len < PARALLEL_FROM || a.ndim() == 0 || a.shape()[0] < 2 {
        return a.as_standard_layout().into_owned();
    }
    let inner = IxDyn(&a.shape()[1..]);
    let per = len / a.shape()[0];
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(per.max(1)).enumerate().for_each(|(i, dst)| {
        let dst = ArrayViewMut::from_shape(inner.clone(), dst).expect("chunk of the sub-array's size");
        a.index_axis(Axis(0), i).assign_to(dst);
    });
    // SAFETY: one chunk per index of the first axis, each assigned above.
    unsafe { out.set_len(len) };
    ArrayD::from_shape_vec(a.raw_dim(), out).unwrap()
}

/// The sum of the rows of `a`, or of `a * b` elementwise when `b` is given: partial sums of row
/// blocks on every rayon thread, then added.
///
/// # Shapes
/// `a`, `b`: `[rows, cols]` (row-major); returns `[cols]`.
pub fn column_sums(a: &[f32], b: Option<&[f32]>, cols: usize) -> Vec<f32> {
    let cols = cols.max(1);
    let block = (CHUNK / cols).max(1) * cols;
    let partial = |start: usize, a: &[f32]| {
        let mut acc = vec![0.0f32; cols];
        for (r, row) in a.chunks(cols).enumerate() {
            match b {
                Some(b) => {
                    let other = &b[start + r * cols..start + (r + 1) * cols];
                    acc.iter_mut().zip(row).zip(other).for_each(|((s, &x), &y)| *s += x * y);
                }
                None => acc.iter_mut().zip(row).for_each(|(s, &x)| *s += x),
            }
        }
        acc
    };
    let add = |mut x: Vec<f32>, y: Vec<f32>| {
        x.iter_mut().zip(&y).for_each(|(s, v)| *s += v);
        x
    };
    if a.len() < PARALLEL_FROM {
        return simd::fast(|| partial(0, a));
    }
    a.par_chunks(block)
        .enumerate()
        .map(|(i, blk)| simd::fast(|| partial(i * block, blk)))
        .reduce(|| vec![0.0; cols], add)
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

    #[test]
    fn column_sums_and_row_maps_match_serial_ones() {
        for rows in [3, 20_000] {
            let a = param(&[rows, 7], 3).into_dimensionality::<ndarray::Ix2>().unwrap();
            let want = a.sum_axis(ndarray::Axis(0));
            let got = column_sums(a.as_slice().unwrap(), None, 7);
            let squares = column_sums(a.as_slice().unwrap(), a.as_slice(), 7);
            let want_squares = a.mapv(|v| v * v).sum_axis(ndarray::Axis(0));
            for ((w, g), (ws, gs)) in want.iter().zip(&got).zip(want_squares.iter().zip(&squares)) {
                assert!((w - g).abs() <= 1e-3 * w.abs().max(1.0), "{w} vs {g}");
                assert!((ws - gs).abs() <= 1e-3 * ws.abs().max(1.0), "{ws} vs {gs}");
            }
            let mut b = a.clone();
            rows_mut(b.as_slice_mut().unwrap(), 7, |r, i| r.iter_mut().for_each(|v| *v += i as f32));
            assert_eq!(b[[rows - 1, 2]], a[[rows - 1, 2]] + (rows - 1) as f32);
        }
    }

    #[test]
    fn standard_copies_equal_ndarrays_for_every_layout() {
        let a = param(&[6, 40, 12, 32], 4);
        let views = [
            a.view(),
            a.view().permuted_axes(IxDyn(&[0, 2, 1, 3])),
            a.view().permuted_axes(IxDyn(&[3, 1, 0, 2])),
            a.view().reversed_axes(),
            a.slice(ndarray::s![.., 1..39;2, .., ..]).into_dyn(),
            a.slice(ndarray::s![..;-1, .., .., ..]).into_dyn(),
        ];
        for v in views {
            let got = standard(v.clone());
            assert!(got.is_standard_layout());
            assert_eq!(got, v.as_standard_layout().into_owned(), "strides {:?}", v.strides());
        }
        let small = param(&[3, 4], 5);
        assert_eq!(standard(small.t().into_dyn()), small.t().as_standard_layout().into_owned().into_dyn());
        let b = a.clone();
        let ptr = b.as_ptr();
        let moved = into_standard(b);
        assert_eq!(moved.as_ptr(), ptr, "a row-major array is given back, not copied");
        assert_eq!(moved, a);
    }
}
