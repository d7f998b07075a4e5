//! Elementwise kernels compiled for the widest vector unit the CPU has (AVX-512 or AVX2 with FMA,
//! chosen at run time; the binary itself targets baseline x86-64), and an `exp` the compiler can
//! vectorise (libm's is a call per element).

/// Runs `f` in a function compiled for AVX-512 or AVX2 + FMA when the CPU has them, so the loops
/// that `f` inlines are vectorised for it; elsewhere just runs `f`.
#[inline(always)]
pub fn fast<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `e^x` in f32 to within 3e-7 relative (0 below -87, `e^88` above 88): `2^n p(r)` with
/// `x = n ln 2 + r`, a degree-6 Taylor polynomial on `|r| <= ln 2 / 2`, and `2^n` built from its
/// bits. Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    if x <= -87.0 {
        return 0.0;
    }
    p * f32::from_bits(bits.wrapping_add(127) << 23)
}

/// The sum of `a`, in 16 interleaved partial sums (so it vectorises).
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = a.chunks_exact(16);
    for c in &mut chunks {
        acc.iter_mut().zip(c).for_each(|(s, v)| *s += v);
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `sum(a * b)`, in 16 interleaved partial sums.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc.iter_mut().zip(x.iter().zip(y)).for_each(|(s, (x, y))| *s += x * y);
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// The largest element of `a` (`-inf` when empty).
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = a.chunks_exact(16);
    for c in &mut chunks {
        acc.iter_mut().zip(c).for_each(|(m, &v)| *m = m.max(v));
    }
    acc.iter().chain(chunks.remainder()).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f32;
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.3e-4; // [-86, 86]
            let want = x.exp();
            worst = worst.max(((fast(|| exp(x)) - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_finite() && exp(100.0) > 1e38);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn reductions_match_serial_ones() {
        let a: Vec<f32> = (0..103).map(|i| ((i * 37) % 17) as f32 - 8.0).collect();
        let b: Vec<f32> = (0..103).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
        assert_eq!(fast(|| sum(&a)), a.iter().sum::<f32>());
        assert_eq!(fast(|| dot(&a, &b)), a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>());
        assert_eq!(max(&a), 8.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
