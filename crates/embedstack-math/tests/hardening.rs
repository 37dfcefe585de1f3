//! Issue 11 item 9, as a property: whatever state arrives — forged field by field, a valid
//! state with one field tampered with, a struct built by hand with inconsistent lengths, or a
//! legitimate state of extreme magnitudes — `solve`, `merge`, `cross_validate` and
//! `prediction_mse` return an error or a result whose every number is finite (the condition
//! number may be +∞, the documented value for a singular design). Never a NaN, never an
//! infinity, never a panic, never a count that reads back as negative.

use embedstack_math::regstats::{
    merge_states, serialized_len, split_states, RegStats, HEADER_LEN, MAX_COUNT, STATE_MAGIC, STATE_VERSION,
};
use embedstack_math::solve::{
    cross_validate, heldout_sse, prediction_mse, solve, Fit, SolveError, SolveOptions,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Any float, weighted towards the troublesome: huge, tiny, subnormal, ±MAX, NaN, ±∞.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -10.0f64..10.0,
        1 => Just(0.0),
        1 => (-1.0f64..1.0).prop_map(|m| m * 1e300),
        1 => (-1.0f64..1.0).prop_map(|m| m * f64::MAX),
        1 => (-1.0f64..1.0).prop_map(|m| m * 1e-300),
        2 => (-1.0f64..1.0, -308i32..308).prop_map(|(m, e)| m * 10f64.powi(e)),
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(-f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
        ],
    ]
}

/// A count field of a serialised header: mostly plausible, else negative, fractional, NaN,
/// ±∞, huge, or just past the exact range of a float8.
fn count() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u32..50).prop_map(f64::from),
        1 => value(),
        1 => Just(MAX_COUNT as f64),
        1 => Just(MAX_COUNT as f64 + 2.0),
        1 => Just(-1.0),
        1 => Just(0.5),
    ]
}

/// The feature count of a header: mostly small, else over the limit or not a count at all.
fn header_k() -> impl Strategy<Value = f64> {
    prop_oneof![
        10 => (0u32..5).prop_map(f64::from),
        1 => Just(257.0),
        1 => Just(16_400.0),
        1 => value(),
    ]
}

/// A serialised state forged field by field (magic and version mostly right, so the checks
/// past the header are reached), of the right length or a few elements off.
fn forged_slice() -> impl Strategy<Value = Vec<f64>> {
    (
        header_k(),
        count(),
        count(),
        prop_oneof![3 => 0.0f64..100.0, 1 => value()],
        -2i32..3,
        0u8..20,
        vec(value(), 1..40),
    )
        .prop_map(|(k, n, skipped, wsum, delta, tag, body)| {
            let kk = if (0.0..=5.0).contains(&k) && k.fract() == 0.0 { k as usize } else { 2 };
            let len = (serialized_len(kk) as i32 + if tag < 15 { 0 } else { delta }).max(0) as usize;
            let magic = if tag == 0 { 1.0 } else { STATE_MAGIC };
            let version = if tag == 1 { 2.0 } else { STATE_VERSION };
            let mut s = vec![magic, version, k, n, skipped, wsum];
            s.extend(body.iter().cycle().take(len.saturating_sub(HEADER_LEN)));
            s.truncate(len);
            s
        })
}

/// A legitimate state: rows accumulated with a per-variable scale of 10^-300 … 10^300 and
/// weights up to 1e300 (rows whose statistics would overflow are refused and skipped).
fn extreme_state() -> impl Strategy<Value = RegStats> {
    (
        0usize..5,
        vec(-300i32..300, 6),
        vec((vec(-1.0f64..1.0, 6), prop_oneof![3 => 0.01f64..10.0, 1 => value()]), 1..10),
    )
        .prop_map(|(k, exps, rows)| {
            let mut st = RegStats::new(k);
            for (z, w) in rows {
                let x: Vec<f64> = (0..k).map(|i| z[i] * 10f64.powi(exps[i])).collect();
                // Non-finite or negative weights, and overflowing rows, are errors: skip them.
                let _ = st.accumulate(&x, z[5] * 10f64.powi(exps[5]), w);
            }
            st
        })
}

/// A valid state with one element of its serialised form replaced (or none).
fn tampered_slice() -> impl Strategy<Value = Vec<f64>> {
    (extreme_state(), any::<prop::sample::Index>(), value(), any::<bool>()).prop_map(|(st, i, v, tamper)| {
        let mut s = st.to_vec();
        if tamper {
            // Header fields 0 and 1 (magic, version) are dull to tamper with: aim past them.
            let j = 2 + i.index(s.len() - 2);
            s[j] = v;
        }
        s
    })
}

/// A state as a struct, bypassing the parser: random `k`, counts, lengths and contents.
fn forged_struct() -> impl Strategy<Value = RegStats> {
    (
        prop_oneof![8 => 0usize..5, 1 => Just(257usize), 1 => Just(1usize << 40)],
        prop_oneof![4 => 0u64..50, 1 => Just(MAX_COUNT), 1 => Just(MAX_COUNT + 1), 1 => Just(u64::MAX)],
        prop_oneof![4 => 0u64..50, 1 => Just(u64::MAX)],
        prop_oneof![3 => 0.0f64..100.0, 1 => value()],
        any::<bool>(),
        vec(value(), 0..30),
    )
        .prop_map(|(k, n, skipped, wsum, fit_lengths, body)| {
            let (pm, pc) = if fit_lengths && k < 100 {
                (k + 1, (k + 1) * (k + 2) / 2)
            } else {
                (body.len() / 3, body.len() - body.len() / 3)
            };
            let mut it = body.iter().cycle().copied();
            let mean = if body.is_empty() { vec![] } else { it.by_ref().take(pm).collect() };
            let comoment = if body.is_empty() { vec![] } else { it.take(pc).collect() };
            RegStats { k, n, skipped, wsum, mean, comoment }
        })
}

/// Any state a caller may hand over: parsed (when it parses) or built directly.
fn any_state() -> impl Strategy<Value = RegStats> {
    prop_oneof![
        3 => extreme_state(),
        3 => tampered_slice().prop_filter_map("does not parse", |s| RegStats::from_slice(&s).ok()),
        2 => forged_struct(),
    ]
}

fn options() -> impl Strategy<Value = SolveOptions> {
    (prop_oneof![3 => Just(0.0), 2 => 0.0f64..10.0, 1 => value()], any::<bool>(), any::<bool>())
        .prop_map(|(ridge, nonnegative, fit_intercept)| SolveOptions { ridge, nonnegative, fit_intercept })
}

fn fit_is_finite(fit: &Fit) -> Result<(), TestCaseError> {
    for (name, v) in [("intercept", fit.intercept), ("r2", fit.r2), ("rmse", fit.rmse)] {
        prop_assert!(v.is_finite(), "{} = {} in {:?}", name, v, fit);
    }
    prop_assert!(fit.weights.iter().all(|w| w.is_finite()), "{:?}", fit);
    prop_assert!(fit.std_errors.iter().all(|s| s.is_none_or(|v| v.is_finite() && v >= 0.0)), "{:?}", fit);
    prop_assert!(fit.condition_number.is_finite() || fit.condition_number == f64::INFINITY, "{:?}", fit);
    prop_assert!(fit.rmse >= 0.0 && fit.r2 <= 1.0, "{:?}", fit);
    // Counts that fit a bigint exactly (a saturated u64 read back as -1).
    prop_assert!(fit.n_used <= MAX_COUNT && fit.n_skipped <= MAX_COUNT, "{:?}", fit);
    Ok(())
}

/// A state that leaves a function: every number finite, counts exact, and it parses again.
fn state_is_finite(st: &RegStats) -> Result<(), TestCaseError> {
    let v = st.to_vec();
    prop_assert!(v.iter().all(|x| x.is_finite()), "{:?}", st);
    prop_assert!(st.n <= MAX_COUNT && st.skipped <= MAX_COUNT, "{:?}", st);
    Ok(())
}

fn bits(st: &RegStats) -> (usize, u64, u64, Vec<u64>) {
    let v = st.wsum.to_bits();
    (
        st.k,
        st.n,
        st.skipped,
        std::iter::once(v).chain(st.mean.iter().chain(&st.comoment).map(|x| x.to_bits())).collect(),
    )
}

fn solve_is_finite(st: &RegStats, opts: SolveOptions) -> Result<(), TestCaseError> {
    if let Ok(Some(fit)) = solve(st, opts) {
        fit_is_finite(&fit)?;
        prop_assert_eq!(fit.weights.len(), st.k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Serialised states forged field by field: parsing refuses them, or they are consistent
    /// and every function on them stays finite.
    #[test]
    fn forged_serialised_states(s in forged_slice(), opts in options()) {
        if let Ok(st) = RegStats::from_slice(&s) {
            prop_assert!(st.check().is_ok());
            state_is_finite(&st)?;
            solve_is_finite(&st, opts)?;
        }
        // A flat array of states, as cross_validate receives them.
        if let Ok(folds) = split_states(&[s.clone(), s].concat()) {
            prop_assert!(folds.iter().all(|f| f.check().is_ok()));
        }
    }

    #[test]
    fn solve_is_finite_or_an_error(st in any_state(), opts in options()) {
        solve_is_finite(&st, opts)?;
    }

    #[test]
    fn merge_is_finite_or_an_error(a in any_state(), b in any_state()) {
        if let Ok(m) = merge_states(&a, &b) {
            state_is_finite(&m)?;
        }
        let mut m = a.clone();
        match m.merge(&b) {
            Ok(()) => state_is_finite(&m)?,
            // Bit patterns: forged states may hold NaNs, which never compare equal.
            Err(_) => prop_assert_eq!(bits(&m), bits(&a), "a failed merge changed the state"),
        }
    }

    #[test]
    fn cross_validate_is_finite_or_an_error(
        folds in vec(any_state(), 0..4),
        ridges in vec(prop_oneof![3 => 0.0f64..10.0, 1 => value()], 1..3),
        opts in options(),
    ) {
        if let Ok(cv) = cross_validate(&folds, &ridges, opts) {
            prop_assert_eq!(cv.len(), ridges.len());
            for r in &cv {
                prop_assert!(r.mse.is_none_or(|v| v.is_finite() && v >= 0.0), "{:?}", r);
                prop_assert!(r.r2.is_none_or(|v| v.is_finite() && v <= 1.0), "{:?}", r);
            }
        }
    }

    /// Folds that are consistent among themselves (the same k, legitimately accumulated) reach
    /// the solves and the held-out scoring rather than stopping at validation.
    #[test]
    fn cross_validate_of_extreme_folds(
        k in 1usize..4,
        scales in vec(-150i32..150, 4),
        rows in vec((vec(-1.0f64..1.0, 4), 0.1f64..10.0, 0usize..3), 3..24),
        ridge in prop_oneof![Just(0.0), 0.0f64..10.0, value()],
        nonnegative in any::<bool>(),
        fit_intercept in any::<bool>(),
    ) {
        let mut folds = vec![RegStats::new(k); 3];
        for (z, w, f) in rows {
            let x: Vec<f64> = (0..k).map(|i| z[i] * 10f64.powi(scales[i])).collect();
            let _ = folds[f].accumulate(&x, z[3] * 10f64.powi(scales[3]), w);
        }
        let opts = SolveOptions { ridge: 0.0, nonnegative, fit_intercept };
        match cross_validate(&folds, &[ridge], opts) {
            Ok(cv) => {
                prop_assert!(cv[0].mse.is_none_or(f64::is_finite), "{:?}", cv);
                prop_assert!(cv[0].r2.is_none_or(f64::is_finite), "{:?}", cv);
            }
            Err(e) => prop_assert!(
                matches!(e, SolveError::Overflow(_) | SolveError::State(_) | SolveError::InvalidOption(_)),
                "{:?}", e
            ),
        }
        for f in &folds {
            solve_is_finite(f, SolveOptions { ridge: ridge.abs().min(1e300), nonnegative, fit_intercept })?;
        }
    }

    #[test]
    fn prediction_mse_is_finite_or_an_error(st in any_state(), weights in vec(value(), 0..6), intercept in value()) {
        match prediction_mse(&st, &weights, intercept) {
            Ok(Some(v)) => prop_assert!(v.is_finite() && v >= 0.0, "{}", v),
            Ok(None) => prop_assert_eq!(st.n, 0),
            Err(_) => {}
        }
        if let Ok(v) = heldout_sse(&st, &weights, intercept) {
            prop_assert!(v.is_finite() && v >= 0.0, "{}", v);
        }
    }

    /// The same with models that match the state's feature count, so that the scoring itself
    /// (not the length check) is exercised.
    #[test]
    fn prediction_mse_of_matching_models(st in extreme_state(), weights in vec(value(), 5), intercept in value()) {
        let w = &weights[..st.k];
        match prediction_mse(&st, w, intercept) {
            Ok(Some(v)) => prop_assert!(v.is_finite() && v >= 0.0, "{}", v),
            Ok(None) => prop_assert_eq!(st.n, 0),
            Err(e) => prop_assert!(
                matches!(e, SolveError::Overflow(_) | SolveError::InvalidOption(_)),
                "{:?}", e
            ),
        }
    }
}
