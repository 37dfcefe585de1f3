//! Polling another session's progress. The deadlines only guard against a hang: nothing
//! asserts a duration.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` every `every` until it returns `Some`, or panics after `timeout`.
fn poll<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(every);
    }
}

/// Polls `f` every 2 ms (to catch a job at a given point) until it returns `Some`, or panics
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(what, timeout, Duration::from_millis(2), f)
}

/// Polls `f` every 20 ms until it holds, or panics after 180 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    poll(what, Duration::from_secs(180), Duration::from_millis(20), || f().then_some(()))
}
