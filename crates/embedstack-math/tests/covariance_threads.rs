//! A threaded covariance flush ([`CovStats::set_threads`]) starts its threads through the
//! embedder's guard, calls the interrupt hook only on the calling thread (under PostgreSQL the
//! hook may raise an ERROR, which must happen on the backend's own thread), gives the same
//! state as one thread, and stops cleanly when the hook raises.
//!
//! Its own test binary: the hook is process-wide.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use embedstack_math::covariance::{CovStats, BATCH_ROWS};
use embedstack_math::interrupt::set_interrupt_hook;
use embedstack_math::subspace::gaussian_matrix;

thread_local! {
    /// Set on the test's thread: the only one the hook may run on.
    static CALLER: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static RAISE_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

static OFF_THREAD: AtomicBool = AtomicBool::new(false);
static GUARDS: AtomicU64 = AtomicU64::new(0);

fn hook() {
    if !CALLER.get() {
        OFF_THREAD.store(true, Ordering::SeqCst);
        return;
    }
    let n = CALLS.get() + 1;
    CALLS.set(n);
    if RAISE_AT.get() == Some(n) {
        panic!("canceling statement due to user request");
    }
}

/// Stands for the embedder's guard (block signals, spawn, restore).
fn guard(spawn: &mut dyn FnMut()) {
    GUARDS.fetch_add(1, Ordering::SeqCst);
    spawn();
}

const DIMS: [usize; 2] = [400, 300];

fn accumulate(st: &mut CovStats, g: &nalgebra::DMatrix<f64>) {
    for r in 0..g.ncols() {
        let v: Vec<f32> = g.column(r).iter().map(|&x| x as f32 + 0.5).collect();
        st.accumulate_f32(&[Some(&v[..400]), Some(&v[400..])]).unwrap();
    }
}

#[test]
fn threaded_flushes_check_on_the_calling_thread_only_and_stop_when_the_hook_raises() {
    set_interrupt_hook(hook);
    CALLER.set(true);
    let g = gaussian_matrix(700, 2 * BATCH_ROWS + 30, 3);

    let mut one = CovStats::new(&DIMS).unwrap();
    accumulate(&mut one, &g);
    let want = one.to_vec();

    CALLS.set(0);
    let mut two = CovStats::new(&DIMS).unwrap();
    two.set_threads(2, guard);
    accumulate(&mut two, &g);
    assert_eq!(two.to_vec(), want, "a threaded flush gives the same state bit for bit");
    assert!(GUARDS.load(Ordering::SeqCst) >= 2, "two full batches, each started through the guard");
    // 3 tiles per flush, one check per tile taken by this thread: at least one per flush.
    assert!(CALLS.get() >= 3, "the hook was called {} times", CALLS.get());
    assert!(!OFF_THREAD.load(Ordering::SeqCst), "the hook ran on a flush thread");

    // A cancel at the second check, in the middle of the first flush: the panic reaches the
    // caller, the other thread stops and is joined (no hang), and the process carries on.
    CALLS.set(0);
    RAISE_AT.set(Some(2));
    let mut st = CovStats::new(&DIMS).unwrap();
    st.set_threads(2, guard);
    let out = catch_unwind(AssertUnwindSafe(|| accumulate(&mut st, &g)));
    RAISE_AT.set(None);
    assert!(out.is_err(), "the accumulation ran to completion despite the cancel");
    assert!(!OFF_THREAD.load(Ordering::SeqCst), "the hook ran on a flush thread");
    let mut again = CovStats::new(&DIMS).unwrap();
    again.set_threads(2, guard);
    accumulate(&mut again, &g);
    assert_eq!(again.to_vec(), want);
}
