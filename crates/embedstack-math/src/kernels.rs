//! Hot loops: dot product and squared norms of `f32` data accumulated in `f64`.
//!
//! Floating-point addition is not associative, so the compiler will not vectorise a plain
//! `sum += a[i] * b[i]` loop by itself, and it did not vectorise the widening f32→f64 reduction
//! even when written over independent lanes (checked in the disassembly). On x86-64 CPUs with
//! AVX2+FMA (selected at run time, as pgvector does with its target clones) explicit intrinsics
//! run 8 floats per step; elsewhere a portable lane-split loop is used. The f64 kernels (for
//! `float8[]`, off the hot path) use the lane-split loop with an FMA clone.
//!
//! The accumulation order is fixed by the lane layout, so a result depends only on the input
//! and on whether FMA was used (FMA rounds once instead of twice; both are accurate to a few
//! ulps of the f64 result, far below the f32 input precision).

// The AVX2 kernels call target-feature functions and intrinsics: the one place of the core
// that needs unsafe code (each use says why it is sound).
#![allow(unsafe_code)]

/// Independent accumulators per quantity. 16 f64 = 4 AVX2 registers per accumulator set,
/// 12 registers for the three sets of [`dot_norms`]: enough chains to hide FMA latency.
const LANES: usize = 16;

#[inline(always)]
fn madd<const FMA: bool>(acc: f64, x: f64, y: f64) -> f64 {
    if FMA {
        x.mul_add(y, acc)
    } else {
        acc + x * y
    }
}

#[inline(always)]
fn fold(acc: [f64; LANES]) -> f64 {
    // Pairwise fold: fixed order, log-depth, slightly better rounding than a linear sum.
    let mut width = LANES;
    let mut a = acc;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            a[i] += a[i + width];
        }
    }
    a[0]
}

#[inline(always)]
fn dot_norms_impl<const FMA: bool>(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut dot = [0.0f64; LANES];
    let mut na = [0.0f64; LANES];
    let mut nb = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let (xi, yi) = (x[i] as f64, y[i] as f64);
            dot[i] = madd::<FMA>(dot[i], xi, yi);
            na[i] = madd::<FMA>(na[i], xi, xi);
            nb[i] = madd::<FMA>(nb[i], yi, yi);
        }
    }
    for (i, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        let (xi, yi) = (x as f64, y as f64);
        dot[i] = madd::<FMA>(dot[i], xi, yi);
        na[i] = madd::<FMA>(na[i], xi, xi);
        nb[i] = madd::<FMA>(nb[i], yi, yi);
    }
    (fold(dot), fold(na), fold(nb))
}

#[inline(always)]
fn dot_impl<const FMA: bool>(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = madd::<FMA>(acc[i], x[i] as f64, y[i] as f64);
        }
    }
    for (i, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[i] = madd::<FMA>(acc[i], x as f64, y as f64);
    }
    fold(acc)
}

#[inline(always)]
fn norm_sq_impl<const FMA: bool>(a: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let ra = ca.remainder();
    for x in ca {
        for i in 0..LANES {
            let xi = x[i] as f64;
            acc[i] = madd::<FMA>(acc[i], xi, xi);
        }
    }
    for (i, &x) in ra.iter().enumerate() {
        let xi = x as f64;
        acc[i] = madd::<FMA>(acc[i], xi, xi);
    }
    fold(acc)
}

#[inline(always)]
fn norm_sq_f64_impl<const FMA: bool>(a: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let ra = ca.remainder();
    for x in ca {
        for i in 0..LANES {
            acc[i] = madd::<FMA>(acc[i], x[i], x[i]);
        }
    }
    for (i, &x) in ra.iter().enumerate() {
        acc[i] = madd::<FMA>(acc[i], x, x);
    }
    fold(acc)
}

#[inline(always)]
fn dot_norms_f64_impl<const FMA: bool>(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut dot = [0.0f64; LANES];
    let mut na = [0.0f64; LANES];
    let mut nb = [0.0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            dot[i] = madd::<FMA>(dot[i], x[i], y[i]);
            na[i] = madd::<FMA>(na[i], x[i], x[i]);
            nb[i] = madd::<FMA>(nb[i], y[i], y[i]);
        }
    }
    for (i, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        dot[i] = madd::<FMA>(dot[i], x, y);
        na[i] = madd::<FMA>(na[i], x, x);
        nb[i] = madd::<FMA>(nb[i], y, y);
    }
    (fold(dot), fold(na), fold(nb))
}

/// Defines a public dispatching function over a generic `_impl::<FMA>` kernel: an AVX2+FMA
/// clone on x86-64 CPUs that have it, the portable clone elsewhere.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $imp:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $imp::<true>($($arg),*)
                }
                if has_avx2_fma() {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $imp::<false>($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    // std caches the CPUID result in an atomic: this is a load and a test.
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `(⟨a,b⟩, ‖a‖², ‖b‖²)` of two equally long `f32` slices, in one pass, accumulated in f64.
#[inline]
pub fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        return unsafe { avx2::dot_norms(a, b) };
    }
    dot_norms_impl::<false>(a, b)
}

/// `⟨a,b⟩` of two equally long `f32` slices accumulated in f64 (for callers that already
/// know the norms, e.g. the per-entity cache: a third of `dot_norms`' arithmetic).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        return unsafe { avx2::dot(a, b) };
    }
    dot_impl::<false>(a, b)
}

/// `‖a‖²` of an `f32` slice accumulated in f64.
#[inline]
pub fn norm_sq(a: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        return unsafe { avx2::norm_sq(a) };
    }
    norm_sq_impl::<false>(a)
}

/// Explicit AVX2+FMA kernels for f32 data: LLVM does not vectorise the widening f32→f64
/// reduction of the generic code (it stays scalar `vfmadd231sd`), so we spell it out:
/// 8 floats per step, each half widened to 4 doubles, two accumulator registers per quantity.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256d) -> f64 {
        let lo = _mm256_castpd256_pd128(v);
        let hi = _mm256_extractf128_pd(v, 1);
        let s = _mm_add_pd(lo, hi);
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut d0, mut d1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let (mut a0, mut a1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let (mut b0, mut b1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut i = 0;
        while i + 8 <= n {
            let xa = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i)));
            let xb = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 4)));
            let ya = _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i)));
            let yb = _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 4)));
            d0 = _mm256_fmadd_pd(xa, ya, d0);
            d1 = _mm256_fmadd_pd(xb, yb, d1);
            a0 = _mm256_fmadd_pd(xa, xa, a0);
            a1 = _mm256_fmadd_pd(xb, xb, a1);
            b0 = _mm256_fmadd_pd(ya, ya, b0);
            b1 = _mm256_fmadd_pd(yb, yb, b1);
            i += 8;
        }
        let mut dot = hsum(_mm256_add_pd(d0, d1));
        let mut na = hsum(_mm256_add_pd(a0, a1));
        let mut nb = hsum(_mm256_add_pd(b0, b1));
        while i < n {
            let (x, y) = (*pa.add(i) as f64, *pb.add(i) as f64);
            dot = x.mul_add(y, dot);
            na = x.mul_add(x, na);
            nb = y.mul_add(y, nb);
            i += 1;
        }
        (dot, na, nb)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut d0, mut d1, mut d2, mut d3) =
            (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
        let mut i = 0;
        while i + 16 <= n {
            d0 = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i))),
                _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i))),
                d0,
            );
            d1 = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 4))),
                _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 4))),
                d1,
            );
            d2 = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 8))),
                _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 8))),
                d2,
            );
            d3 = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 12))),
                _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 12))),
                d3,
            );
            i += 16;
        }
        let mut dot = hsum(_mm256_add_pd(_mm256_add_pd(d0, d1), _mm256_add_pd(d2, d3)));
        while i < n {
            dot = (*pa.add(i) as f64).mul_add(*pb.add(i) as f64, dot);
            i += 1;
        }
        dot
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn norm_sq(a: &[f32]) -> f64 {
        let n = a.len();
        let p = a.as_ptr();
        let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut i = 0;
        while i + 8 <= n {
            let x0 = _mm256_cvtps_pd(_mm_loadu_ps(p.add(i)));
            let x1 = _mm256_cvtps_pd(_mm_loadu_ps(p.add(i + 4)));
            s0 = _mm256_fmadd_pd(x0, x0, s0);
            s1 = _mm256_fmadd_pd(x1, x1, s1);
            i += 8;
        }
        let mut s = hsum(_mm256_add_pd(s0, s1));
        while i < n {
            let x = *p.add(i) as f64;
            s = x.mul_add(x, s);
            i += 1;
        }
        s
    }
}
dispatch!(
    /// `(⟨a,b⟩, ‖a‖², ‖b‖²)` of two equally long `f64` slices, in one pass.
    dot_norms_f64, dot_norms_f64_impl, (a: &[f64], b: &[f64]) -> (f64, f64, f64)
);
dispatch!(
    /// `‖a‖²` of an `f64` slice.
    norm_sq_f64, norm_sq_f64_impl, (a: &[f64]) -> f64
);

/// The portable (non-FMA) kernels, exposed so tests can check that both clones agree.
#[doc(hidden)]
pub mod portable {
    pub fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
        super::dot_norms_impl::<false>(a, b)
    }
    pub fn norm_sq(a: &[f32]) -> f64 {
        super::norm_sq_impl::<false>(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
        let mut r = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            r.0 += x as f64 * y as f64;
            r.1 += x as f64 * x as f64;
            r.2 += y as f64 * y as f64;
        }
        r
    }

    #[test]
    fn lengths_around_the_lane_width_agree_with_naive_sums() {
        for n in [0usize, 1, 2, 15, 16, 17, 31, 32, 33, 100, 384, 768, 1023] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 89) as f32 - 44.0) / 3.0).collect();
            let (d, na, nb) = dot_norms(&a, &b);
            let (d0, na0, nb0) = naive(&a, &b);
            let (d1, na1, nb1) = portable::dot_norms(&a, &b);
            for (x, y) in [(d, d0), (na, na0), (nb, nb0), (d1, d0), (na1, na0), (nb1, nb0)] {
                assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "n={n}: {x} vs {y}");
            }
            assert!((norm_sq(&a) - na0).abs() <= 1e-12 * (1.0 + na0));
            assert!((dot(&a, &b) - d0).abs() <= 1e-12 * (1.0 + d0.abs()), "n={n}: dot");
            assert!(
                (dot_impl::<false>(&a, &b) - d0).abs() <= 1e-12 * (1.0 + d0.abs()),
                "n={n}: portable dot"
            );
            assert!((portable::norm_sq(&a) - na0).abs() <= 1e-12 * (1.0 + na0));
        }
    }
}
