//! L2 normalisation and cosine similarity with the exact semantics of docs/design.md §2 and §4.
//!
//! * Accumulation is in f64 whatever the element type.
//! * A zero vector has no direction: [`normalize_f32`] returns it unchanged (pgvector's
//!   convention for `l2_normalize`) and the cosines return `None` (SQL NULL).
//! * Non-finite elements are an error naming the 1-based position; so is a dimension mismatch.
//! * Cosines are clamped to `[-1, 1]` (rounding can step just outside, as pgvector also guards).
//!
//! Non-finite detection costs nothing on the hot path: for f32 data squared in f64 the norm
//! cannot overflow (16,000 × (3.4e38)² ≈ 1.8e81), so `‖x‖²` is finite exactly when every
//! element is; only then do we scan for the offending position, to report it.

use crate::kernels;

/// Which argument of a binary function an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Only,
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VectorError {
    /// The two vectors differ in length.
    DimensionMismatch { left: usize, right: usize },
    /// Element at `position` (1-based) is NaN or infinite.
    NonFinite { operand: Operand, position: usize, value: f64 },
}

impl std::fmt::Display for VectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VectorError::DimensionMismatch { left, right } => {
                write!(f, "different vector dimensions {left} and {right}")
            }
            VectorError::NonFinite { operand, position, value } => {
                let which = match operand {
                    Operand::Only => "",
                    Operand::Left => " of the first vector",
                    Operand::Right => " of the second vector",
                };
                write!(f, "element {position}{which} is {value}: NaN and infinity are not allowed")
            }
        }
    }
}

impl std::error::Error for VectorError {}

/// First non-finite element, as `(1-based position, value)`.
pub fn first_non_finite_f32(x: &[f32]) -> Option<(usize, f64)> {
    x.iter().position(|v| !v.is_finite()).map(|i| (i + 1, x[i] as f64))
}

/// First non-finite element, as `(1-based position, value)`.
pub fn first_non_finite_f64(x: &[f64]) -> Option<(usize, f64)> {
    x.iter().position(|v| !v.is_finite()).map(|i| (i + 1, x[i]))
}

fn non_finite(operand: Operand, found: Option<(usize, f64)>) -> VectorError {
    // Callers only get here when a norm was not finite, which for f32 data implies a
    // non-finite element; the fallback keeps this total anyway.
    let (position, value) = found.unwrap_or((0, f64::NAN));
    VectorError::NonFinite { operand, position, value }
}

#[inline]
fn clamp_cosine(c: f64) -> f64 {
    c.clamp(-1.0, 1.0)
}

/// Cosine of two f32 vectors, accumulated in f64. `Ok(None)` when either is a zero vector.
#[inline]
pub fn cosine_f32(a: &[f32], b: &[f32]) -> Result<Option<f64>, VectorError> {
    if a.len() != b.len() {
        return Err(VectorError::DimensionMismatch { left: a.len(), right: b.len() });
    }
    let (dot, na, nb) = kernels::dot_norms(a, b);
    if !na.is_finite() {
        return Err(non_finite(Operand::Left, first_non_finite_f32(a)));
    }
    if !nb.is_finite() {
        return Err(non_finite(Operand::Right, first_non_finite_f32(b)));
    }
    if na == 0.0 || nb == 0.0 {
        return Ok(None);
    }
    Ok(Some(clamp_cosine(dot / (na * nb).sqrt())))
}

/// Squared norms outside this range may have lost precision to underflow or overflowed.
const SAFE_SQ_MIN: f64 = 1e-280;
const SAFE_SQ_MAX: f64 = 1e280;

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Cosine of two f64 vectors. Values whose squares under- or overflow f64 are rescaled by
/// their largest magnitude first (a slow path that ordinary embeddings never take).
pub fn cosine_f64(a: &[f64], b: &[f64]) -> Result<Option<f64>, VectorError> {
    if a.len() != b.len() {
        return Err(VectorError::DimensionMismatch { left: a.len(), right: b.len() });
    }
    if let Some(found) = first_non_finite_f64(a) {
        return Err(non_finite(Operand::Left, Some(found)));
    }
    if let Some(found) = first_non_finite_f64(b) {
        return Err(non_finite(Operand::Right, Some(found)));
    }
    let (dot, na, nb) = kernels::dot_norms_f64(a, b);
    let in_range = |s: f64| (SAFE_SQ_MIN..=SAFE_SQ_MAX).contains(&s);
    if in_range(na) && in_range(nb) && dot.is_finite() {
        return Ok(Some(clamp_cosine(dot / (na * nb).sqrt())));
    }
    let (ma, mb) = (max_abs(a), max_abs(b));
    if ma == 0.0 || mb == 0.0 {
        return Ok(None);
    }
    let sa: Vec<f64> = a.iter().map(|v| v / ma).collect();
    let sb: Vec<f64> = b.iter().map(|v| v / mb).collect();
    let (dot, na, nb) = kernels::dot_norms_f64(&sa, &sb);
    Ok(Some(clamp_cosine(dot / (na * nb).sqrt())))
}

/// Writes `x / ‖x‖` into `out` (same length). A zero vector is copied unchanged.
pub fn normalize_f32(x: &[f32], out: &mut [f32]) -> Result<(), VectorError> {
    assert_eq!(x.len(), out.len(), "output buffer must match the input length");
    let na = kernels::norm_sq(x);
    if !na.is_finite() {
        return Err(non_finite(Operand::Only, first_non_finite_f32(x)));
    }
    if na == 0.0 {
        out.copy_from_slice(x);
        return Ok(());
    }
    let norm = na.sqrt();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v as f64 / norm) as f32;
    }
    Ok(())
}

/// Writes `x / ‖x‖` into `out` (same length). A zero vector is copied unchanged.
pub fn normalize_f64(x: &[f64], out: &mut [f64]) -> Result<(), VectorError> {
    assert_eq!(x.len(), out.len(), "output buffer must match the input length");
    if let Some(found) = first_non_finite_f64(x) {
        return Err(non_finite(Operand::Only, Some(found)));
    }
    let na = kernels::norm_sq_f64(x);
    if (SAFE_SQ_MIN..=SAFE_SQ_MAX).contains(&na) {
        let norm = na.sqrt();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v / norm;
        }
        return Ok(());
    }
    let m = max_abs(x);
    if m == 0.0 {
        out.copy_from_slice(x);
        return Ok(());
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v / m;
    }
    let norm = kernels::norm_sq_f64(out).sqrt();
    for o in out.iter_mut() {
        *o /= norm;
    }
    Ok(())
}

/// `‖x‖²` in f64, or the non-finite element. Used where a caller needs the norm itself
/// (e.g. to normalise into a larger output buffer with a scale).
pub fn norm_sq_checked_f32(x: &[f32]) -> Result<f64, VectorError> {
    let na = kernels::norm_sq(x);
    if na.is_finite() {
        Ok(na)
    } else {
        Err(non_finite(Operand::Only, first_non_finite_f32(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    fn naive_cos(a: &[f64], b: &[f64]) -> Option<f64> {
        let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f64 = a.iter().map(|x| x * x).sum();
        let nb: f64 = b.iter().map(|x| x * x).sum();
        if na == 0.0 || nb == 0.0 {
            None
        } else {
            Some(d / (na.sqrt() * nb.sqrt()))
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(cosine_f32(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), Some(0.0));
        assert_eq!(cosine_f32(&[1.0, 2.0], &[2.0, 4.0]).unwrap(), Some(1.0));
        assert_eq!(cosine_f32(&[1.0, 2.0], &[-1.0, -2.0]).unwrap(), Some(-1.0));
        assert_relative_eq!(
            cosine_f32(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap().unwrap(),
            32.0 / (14.0f64.sqrt() * 77.0f64.sqrt()),
            max_relative = 1e-15
        );
        let mut out = [0.0f32; 2];
        normalize_f32(&[3.0, 4.0], &mut out).unwrap();
        assert_eq!(out, [0.6, 0.8]);
    }

    #[test]
    fn zero_vector_policy() {
        assert_eq!(cosine_f32(&[0.0, 0.0], &[1.0, 2.0]).unwrap(), None);
        assert_eq!(cosine_f32(&[1.0, 2.0], &[0.0, -0.0]).unwrap(), None);
        assert_eq!(cosine_f64(&[0.0, 0.0], &[1.0, 2.0]).unwrap(), None);
        let mut out = [9.0f32; 3];
        normalize_f32(&[0.0, -0.0, 0.0], &mut out).unwrap();
        assert_eq!(out.map(f32::to_bits), [0.0f32, -0.0, 0.0].map(f32::to_bits));
        let mut out = [9.0f64; 2];
        normalize_f64(&[0.0, 0.0], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
        // An empty vector is a zero vector.
        assert_eq!(cosine_f32(&[], &[]).unwrap(), None);
    }

    #[test]
    fn errors_name_dimensions_and_positions() {
        assert_eq!(
            cosine_f32(&[1.0, 2.0], &[1.0, 2.0, 3.0]),
            Err(VectorError::DimensionMismatch { left: 2, right: 3 })
        );
        match cosine_f32(&[1.0, 2.0, f32::NAN], &[1.0, 2.0, 3.0]) {
            Err(VectorError::NonFinite { operand: Operand::Left, position: 3, value }) => {
                assert!(value.is_nan())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cosine_f32(&[1.0, 2.0], &[f32::INFINITY, 1.0]),
            Err(VectorError::NonFinite { operand: Operand::Right, position: 1, .. })
        ));
        assert!(matches!(
            cosine_f64(&[1.0, f64::NEG_INFINITY], &[1.0, 1.0]),
            Err(VectorError::NonFinite { operand: Operand::Left, position: 2, .. })
        ));
        let mut out = [0.0f32; 2];
        assert!(matches!(
            normalize_f32(&[1.0, f32::NAN], &mut out),
            Err(VectorError::NonFinite { operand: Operand::Only, position: 2, .. })
        ));
        let msg = VectorError::DimensionMismatch { left: 3, right: 4 }.to_string();
        assert_eq!(msg, "different vector dimensions 3 and 4");
    }

    #[test]
    fn f64_extremes_are_rescaled_not_lost() {
        let a = [1e200, 2e200];
        let b = [2e200, 4e200];
        assert_eq!(cosine_f64(&a, &b).unwrap(), Some(1.0));
        let a = [1e-200, 0.0];
        let b = [1e-200, 1e-200];
        assert_relative_eq!(cosine_f64(&a, &b).unwrap().unwrap(), 1.0 / 2f64.sqrt(), max_relative = 1e-15);
        let mut out = [0.0; 2];
        normalize_f64(&[3e-200, 4e-200], &mut out).unwrap();
        assert_relative_eq!(out[0], 0.6, max_relative = 1e-15);
        normalize_f64(&[3e300, 4e300], &mut out).unwrap();
        assert_relative_eq!(out[1], 0.8, max_relative = 1e-15);
    }

    fn vec_f32(n: usize) -> impl Strategy<Value = Vec<f32>> {
        proptest::collection::vec(-1000.0f32..1000.0, n)
    }

    fn pair_f32() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (1usize..300).prop_flat_map(|n| (vec_f32(n), vec_f32(n)))
    }

    proptest! {
        #[test]
        fn cosine_matches_naive_f64(ab in pair_f32()) {
            let (a, b) = ab;
            let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let got = cosine_f32(&a, &b).unwrap();
            let want = naive_cos(&a64, &b64);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => prop_assert!((g - w).abs() <= 1e-12, "{} vs {}", g, w),
                other => prop_assert!(false, "{:?}", other),
            }
            let got64 = cosine_f64(&a64, &b64).unwrap();
            prop_assert_eq!(got.is_some(), got64.is_some());
            if let (Some(g), Some(h)) = (got, got64) {
                prop_assert!((g - h).abs() <= 1e-12);
            }
        }

        #[test]
        fn cosine_is_symmetric_and_bounded(ab in pair_f32()) {
            let (a, b) = ab;
            let x = cosine_f32(&a, &b).unwrap();
            let y = cosine_f32(&b, &a).unwrap();
            prop_assert_eq!(x, y);
            if let Some(c) = x {
                prop_assert!((-1.0..=1.0).contains(&c));
            }
        }

        #[test]
        fn cosine_is_scale_invariant(a in vec_f32(64), s in 0.001f32..1000.0) {
            let b: Vec<f32> = a.iter().map(|v| v * s).collect();
            if let Some(c) = cosine_f32(&a, &b).unwrap() {
                prop_assert!((c - 1.0).abs() < 1e-6, "{}", c);
            }
        }

        #[test]
        fn normalised_vectors_have_unit_norm_and_cosine_is_their_dot(ab in pair_f32()) {
            let (a, b) = ab;
            let mut ua = vec![0.0f32; a.len()];
            let mut ub = vec![0.0f32; b.len()];
            normalize_f32(&a, &mut ua).unwrap();
            normalize_f32(&b, &mut ub).unwrap();
            let na = kernels::norm_sq(&ua);
            if kernels::norm_sq(&a) > 0.0 {
                prop_assert!((na - 1.0).abs() < 1e-6, "{}", na);
            }
            if let Some(c) = cosine_f32(&a, &b).unwrap() {
                let (d, _, _) = kernels::dot_norms(&ua, &ub);
                prop_assert!((c - d).abs() < 1e-6);
            }
        }

        #[test]
        fn normalize_f64_has_unit_norm(a in proptest::collection::vec(-1e6f64..1e6, 1..200)) {
            let mut out = vec![0.0; a.len()];
            normalize_f64(&a, &mut out).unwrap();
            if a.iter().any(|&v| v != 0.0) {
                let n = kernels::norm_sq_f64(&out);
                prop_assert!((n - 1.0).abs() < 1e-12);
            }
        }
    }
}
