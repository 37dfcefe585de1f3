//! The fit's worker threads: pure-Rust computation on slices of the pairs, with every signal
//! blocked (PostgreSQL's signal handlers must run on the backend's own thread), joined before
//! returning. A thread never calls into PostgreSQL.

use pgrx::prelude::*;

/// Runs `f` on up to `threads` contiguous slices of `items` (the first on this thread) and
/// returns the results in slice order.
pub fn run_threads<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let slices: Vec<&[T]> = items.chunks(per).collect();
    if slices.len() <= 1 {
        return slices.into_iter().map(&f).collect();
    }
    std::thread::scope(|scope| {
        // Spawned threads inherit the signal mask: block everything while spawning.
        let old = block_signals();
        let handles: Vec<_> = slices[1..].iter().map(|s| scope.spawn(|| f(s))).collect();
        restore_signals(&old);
        let mut out = vec![f(slices[0])];
        out.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|_| error!("a fit thread panicked"))));
        out
    })
}

/// The covariance core's spawn guard (`CovStats::set_threads`): its threads are created with
/// every signal blocked, as the fit's are.
pub fn spawn_guarded(spawn: &mut dyn FnMut()) {
    let old = block_signals();
    spawn();
    restore_signals(&old);
}

fn block_signals() -> libc::sigset_t {
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signals(old: &libc::sigset_t) {
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}
