//! Evaluation statistics for held-out pairs: Pearson and Spearman correlation.
//!
//! Spearman is the Pearson correlation of average ranks (ties share the mean of the ranks
//! they span), the definition `scipy.stats.spearmanr` uses, which the reference results of
//! the test fixtures were computed with.

use crate::fpscale::{exponent, ldexp};

/// Input that has no correlation: a NaN or infinite value (Pearson), a NaN (Spearman, for
/// which ±∞ simply rank first or last).
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// `argument` is 1 (`x`) or 2 (`y`); `position` is 1-based.
    NonFinite { argument: usize, position: usize, value: f64 },
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::NonFinite { argument, position, value } => {
                let which = if *argument == 1 { "prediction" } else { "label" };
                write!(f, "cannot correlate: {which} {position} is {value}")
            }
        }
    }
}

impl std::error::Error for EvalError {}

fn check(argument: usize, v: &[f64], bad: impl Fn(f64) -> bool) -> Result<(), EvalError> {
    match v.iter().position(|&a| bad(a)) {
        Some(i) => Err(EvalError::NonFinite { argument, position: i + 1, value: v[i] }),
        None => Ok(()),
    }
}

/// `v` scaled by the power of two that brings its largest magnitude into `[1/2, 1)`: exact, and
/// Pearson's r is invariant under it, but squared deviations of values near 1e200 no longer
/// overflow (they made r 0 or NaN).
fn rescaled(v: &[f64]) -> Vec<f64> {
    let e = exponent(v.iter().fold(0.0f64, |a, x| a.max(x.abs())));
    v.iter().map(|&x| ldexp(x, -e)).collect()
}

/// Pearson correlation; `Ok(None)` with fewer than two points or when either side is constant,
/// `Err` when a value is NaN or infinite. Finite inputs of any magnitude give a finite result.
pub fn pearson_checked(x: &[f64], y: &[f64]) -> Result<Option<f64>, EvalError> {
    assert_eq!(x.len(), y.len());
    check(1, x, |a| !a.is_finite())?;
    check(2, y, |a| !a.is_finite())?;
    let n = x.len();
    if n < 2 {
        return Ok(None);
    }
    let (x, y) = (rescaled(x), rescaled(y));
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(&y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(None);
    }
    Ok(Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)))
}

/// Pearson correlation; `None` with fewer than two points, when either side is constant, or
/// when a value is NaN or infinite (no correlation is defined: never a NaN). Use
/// [`pearson_checked`] to tell the last case apart and report it.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson_checked(x, y).unwrap_or(None)
}

/// 1-based average ranks.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation (average ranks for ties); `Err` when a value is NaN (it has no
/// rank; ±∞ rank first or last).
pub fn spearman_checked(x: &[f64], y: &[f64]) -> Result<Option<f64>, EvalError> {
    assert_eq!(x.len(), y.len());
    check(1, x, f64::is_nan)?;
    check(2, y, f64::is_nan)?;
    pearson_checked(&average_ranks(x), &average_ranks(y))
}

/// Spearman rank correlation (average ranks for ties); `None` as [`pearson`], and when a value
/// is NaN. Use [`spearman_checked`] to report NaNs.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    spearman_checked(x, y).unwrap_or(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn ties_share_the_mean_rank() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn a_hand_computed_example() {
        // x ranks 1,2,3,4,5; y ranks 2,1,4,3,5: d² = 1+1+1+1+0 = 4, rho = 1 - 6·4/(5·24) = 0.8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [20.0, 10.0, 40.0, 30.0, 50.0];
        assert_relative_eq!(spearman(&x, &y).unwrap(), 0.8, epsilon = 1e-15);
        // Pearson of an exact line is 1 (-1 when decreasing).
        assert_relative_eq!(pearson(&x, &[3.0, 5.0, 7.0, 9.0, 11.0]).unwrap(), 1.0, epsilon = 1e-15);
        assert_relative_eq!(pearson(&x, &[-1.0, -2.0, -3.0, -4.0, -5.0]).unwrap(), -1.0, epsilon = 1e-15);
        assert_eq!(pearson(&x, &[1.0; 5]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    #[test]
    fn extreme_magnitudes_are_rescaled_not_lost() {
        // Labels ×1e200: squared deviations of 1e400 used to make r NaN (both sides huge) or
        // 0 (one side huge). r is scale-invariant: the same value as unscaled.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 6.0];
        let r = pearson(&x, &y).unwrap();
        let big: Vec<f64> = y.iter().map(|v| v * 1e200).collect();
        let tiny: Vec<f64> = x.iter().map(|v| v * 1e-200).collect();
        assert_relative_eq!(pearson(&x, &big).unwrap(), r, epsilon = 1e-14);
        assert_relative_eq!(pearson(&big, &big).unwrap(), 1.0, epsilon = 1e-15);
        assert_relative_eq!(pearson(&tiny, &big).unwrap(), r, epsilon = 1e-14);
        let max: Vec<f64> = [1.0, -1.0, 0.5, -0.5, 1.0].iter().map(|v| v * f64::MAX).collect();
        assert!(pearson(&max, &y).unwrap().is_finite());
        assert_relative_eq!(spearman(&x, &big).unwrap(), spearman(&x, &y).unwrap(), epsilon = 1e-15);
    }

    #[test]
    fn non_finite_input_is_reported_not_a_nan() {
        let x = [1.0, 2.0, 3.0];
        assert!(matches!(
            pearson_checked(&x, &[1.0, f64::NAN, 2.0]),
            Err(EvalError::NonFinite { argument: 2, position: 2, value }) if value.is_nan()
        ));
        assert!(matches!(
            pearson_checked(&[f64::INFINITY, 1.0, 2.0], &x),
            Err(EvalError::NonFinite { argument: 1, position: 1, .. })
        ));
        assert_eq!(pearson(&x, &[1.0, f64::INFINITY, 2.0]), None);
        // Spearman: infinities have ranks, NaN has none.
        assert_relative_eq!(spearman(&x, &[1.0, 2.0, f64::INFINITY]).unwrap(), 1.0, epsilon = 1e-15);
        assert!(matches!(
            spearman_checked(&x, &[1.0, f64::NAN, 2.0]),
            Err(EvalError::NonFinite { argument: 2, position: 2, .. })
        ));
        assert_eq!(spearman(&x, &[1.0, f64::NAN, 2.0]), None);
    }

    proptest! {
        #[test]
        fn spearman_ignores_monotone_transforms(v in prop::collection::vec((-1e3f64..1e3, -1e3f64..1e3), 3..40)) {
            let (x, y): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
            let tx: Vec<f64> = x.iter().map(|a| (a / 100.0).exp()).collect();
            match (spearman(&x, &y), spearman(&tx, &y)) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }
}
