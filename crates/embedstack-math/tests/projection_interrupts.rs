//! Issue 21: the covariance flush, the covariance operator and the eigen-solvers call the
//! embedder's interrupt hook, and a hook that raises (a Postgres ERROR under pgrx) stops a fit.
//!
//! Its own test binary: the hook is process-wide (see tests/interrupts.rs).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use embedstack_math::covariance::{CovStats, BATCH_ROWS};
use embedstack_math::interrupt::set_interrupt_hook;
use embedstack_math::projection::fit;
use embedstack_math::subspace::{gaussian_matrix, SubspaceOptions};

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static RAISE_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn hook() {
    let n = CALLS.get() + 1;
    CALLS.set(n);
    if RAISE_AT.get() == Some(n) {
        panic!("canceling statement due to user request");
    }
}

fn state(rows: usize) -> CovStats {
    let dims = [300usize, 20];
    let g = gaussian_matrix(320, rows, 1);
    let mut st = CovStats::new(&dims).unwrap();
    for r in 0..rows {
        let v: Vec<f32> = g.column(r).iter().map(|&x| x as f32 + 1.0).collect();
        st.accumulate_f32(&[Some(&v[..300]), Some(&v[300..])]).unwrap();
    }
    st
}

#[test]
fn accumulating_and_fitting_call_the_hook_and_a_raising_hook_stops_the_fit() {
    set_interrupt_hook(hook);
    CALLS.set(0);
    let mut st = state(BATCH_ROWS + 1);
    assert!(CALLS.get() >= 2, "a flush of two tile rows checks twice, got {}", CALLS.get());

    CALLS.set(0);
    let opts = SubspaceOptions::default();
    let p = fit(&mut st, &[1.0, 1.0], 10, &opts).unwrap();
    let calls = CALLS.get();
    assert!(calls > 10, "the hook was called {calls} times");

    CALLS.set(0);
    RAISE_AT.set(Some(calls / 2));
    let out = catch_unwind(AssertUnwindSafe(|| fit(&mut st, &[1.0, 1.0], 10, &opts)));
    RAISE_AT.set(None);
    assert!(out.is_err(), "the fit ran to completion despite the cancel");
    // The state is intact: the same fit again gives the same projection.
    assert_eq!(fit(&mut st, &[1.0, 1.0], 10, &opts).unwrap(), p);
}
