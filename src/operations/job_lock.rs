//! One materialise or refit per model set at a time.
//!
//! The procedures COMMIT between batches, so a transaction-level lock cannot cover them; a
//! session-level advisory lock can, but PostgreSQL keeps session-level locks across errors, and
//! a PL/pgSQL block with an exception handler cannot COMMIT, so the procedure cannot release
//! the lock on every error path itself. Here the locks this module took are remembered in the
//! backend and released by a transaction-abort callback: an error that ends the call ends the
//! lock with it. A killed backend loses its locks anyway (session end, or the crash restart).
//!
//! The lock is an ordinary advisory lock, key (`JOB_LOCK_CLASS`, hashtext(model set name)), so
//! `pg_locks` shows it (classid = 1701667443, objid = the hash, objsubid = 2) and
//! `embedstack.status` uses it to tell a running job from an interrupted one.

use pgrx::prelude::*;
use std::cell::RefCell;

/// First key of the job locks ('embs'): keeps them apart from the application's own
/// two-key advisory locks in practice. The second key is hashtext(model set name); two names
/// with the same hash only serialise each other's jobs.
const JOB_LOCK_CLASS: i32 = 0x656d_6273;

thread_local! {
    /// Second keys of the job locks this backend holds (at most one entry per key).
    static HELD: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

fn tag(key: i32) -> pg_sys::LOCKTAG {
    // SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, key1, key2, 2): the two-int4-key form, the
    // same tag pg_advisory_lock(int4, int4) uses.
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: JOB_LOCK_CLASS as u32,
        locktag_field3: key as u32,
        locktag_field4: 2,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: 2, // USER_LOCKMETHOD
    }
}

/// Takes the job lock `key` for the session. `wait = false` returns false at once when another
/// session holds it; `wait = true` waits (cancellable; `lock_timeout` applies). Re-taking a lock
/// this backend already holds (left by a call that was interrupted inside a subtransaction)
/// succeeds without counting twice.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _job_lock(key: i32, wait: bool) -> bool {
    if HELD.with(|h| h.borrow().contains(&key)) {
        return true;
    }
    let t = tag(key);
    let res = unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as i32, true, !wait) };
    if res == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return false;
    }
    HELD.with(|h| h.borrow_mut().push(key));
    true
}

/// Releases the job lock `key` if this backend holds it; true if it did.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _job_unlock(key: i32) -> bool {
    let held = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let before = h.len();
        h.retain(|&k| k != key);
        before != h.len()
    });
    if held {
        let t = tag(key);
        unsafe { pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as i32, true) };
    }
    held
}

/// Transaction-abort callback: releases every job lock of this backend. Runs before the
/// lock manager's own abort processing, with the lock manager intact; LockRelease only
/// WARNs (never ERRORs) on a lock that is not held.
#[pg_guard]
unsafe extern "C-unwind" fn release_on_abort(event: pg_sys::XactEvent::Type, _arg: *mut core::ffi::c_void) {
    if event != pg_sys::XactEvent::XACT_EVENT_ABORT {
        return;
    }
    let keys = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    for key in keys {
        let t = tag(key);
        unsafe { pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as i32, true) };
    }
}

/// Called once from `_PG_init`.
pub fn register_abort_release() {
    unsafe { pg_sys::RegisterXactCallback(Some(release_on_abort), core::ptr::null_mut()) };
}
