//! Issue 11 item 6: the core's long loops call the embedder's interrupt hook, and a hook that
//! raises (a Postgres ERROR is a Rust panic under pgrx) stops them.
//!
//! Its own test binary: the hook is process-wide. The hook below counts calls, and raises when
//! asked, per thread, so the tests of this file can run in parallel.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use embedstack_math::interrupt::set_interrupt_hook;
use embedstack_math::regstats::RegStats;
use embedstack_math::solve::{cross_validate, solve, SolveOptions};

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    /// Raise on the n-th call of this thread (a cancel request arriving mid-solve).
    static RAISE_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn hook() {
    let n = CALLS.get() + 1;
    CALLS.set(n);
    if RAISE_AT.get() == Some(n) {
        panic!("canceling statement due to user request");
    }
}

/// A deterministic pseudo-random state of `k` features whose labels mix positive and negative
/// weights, so that NNLS has to move many variables in and out of its active set.
fn state(k: usize, n: usize, seed: u64) -> RegStats {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut st = RegStats::new(k);
    for _ in 0..n {
        let x: Vec<f64> = (0..k).map(|_| next() * 2.0 - 1.0).collect();
        let y =
            x.iter().enumerate().map(|(i, v)| v * if i % 3 == 0 { -1.0 } else { 0.5 }).sum::<f64>() + next();
        st.accumulate(&x, y, 1.0).unwrap();
    }
    st
}

const NNLS: SolveOptions = SolveOptions { ridge: 0.0, nonnegative: true, fit_intercept: true };

#[test]
fn the_hook_is_called_during_nnls_with_100_features() {
    set_interrupt_hook(hook);
    let st = state(100, 300, 1);
    CALLS.set(0);
    let fit = solve(&st, NNLS).unwrap().unwrap();
    let calls = CALLS.get();
    // One call per eigen-decomposition: at least one per NNLS inner iteration.
    assert!(calls > 10, "the hook was called {calls} times");
    assert!(fit.weights.iter().all(|&w| w >= 0.0 && w.is_finite()));
}

#[test]
fn a_raising_hook_stops_nnls() {
    set_interrupt_hook(hook);
    let st = state(100, 300, 2);
    CALLS.set(0);
    RAISE_AT.set(Some(5));
    let r = catch_unwind(AssertUnwindSafe(|| solve(&st, NNLS)));
    RAISE_AT.set(None);
    assert!(r.is_err(), "the solve ran to completion through a cancel request");
    assert_eq!(CALLS.get(), 5, "the solve stopped at the raising call");
}

#[test]
fn cross_validation_checks_between_folds() {
    set_interrupt_hook(hook);
    let folds: Vec<RegStats> = (0..6).map(|f| state(3, 20, 10 + f)).collect();
    CALLS.set(0);
    let cv = cross_validate(&folds, &[0.0, 1.0], SolveOptions::default()).unwrap();
    assert_eq!(cv.len(), 2);
    // Validation of each fold, each merge of the training sets, each decomposition.
    assert!(CALLS.get() >= 6 + 6 * 5 + 2 * 6, "the hook was called {} times", CALLS.get());
    CALLS.set(0);
    RAISE_AT.set(Some(20));
    let r = catch_unwind(AssertUnwindSafe(|| cross_validate(&folds, &[0.0, 1.0], SolveOptions::default())));
    RAISE_AT.set(None);
    assert!(r.is_err());
}
