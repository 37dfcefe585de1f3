//! One materialise or refit per model set at a time.
//!
//! The procedures COMMIT between batches, so a transaction-level lock cannot cover them; a
//! session-level advisory lock can, but PostgreSQL keeps session-level locks across errors, and
//! a PL/pgSQL block with an exception handler cannot COMMIT, so the procedure cannot release
//! the lock on every error path itself. Here the locks this module took are remembered in the
//! backend with the subtransaction that took them, and released by transaction callbacks: an
//! abort of the transaction, or of the savepoint the lock was taken in (a CALL inside a
//! savepoint that psql's ON_ERROR_ROLLBACK or a driver rolls back), ends the lock with it. A
//! killed backend loses its locks anyway (session end, or the crash restart).
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

/// The top-level "subtransaction" (TopSubTransactionId): a lock that outlived the transaction
/// that took it belongs to the session, released only by `_job_unlock` or an abort.
const TOP: pg_sys::SubTransactionId = 1;

thread_local! {
    /// The job locks this backend holds: (second key, subtransaction that owns it); at most one
    /// entry per key.
    static HELD: RefCell<Vec<(i32, pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
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
    if HELD.with(|h| h.borrow().iter().any(|&(k, _)| k == key)) {
        return true;
    }
    let t = tag(key);
    let res = unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as i32, true, !wait) };
    if res == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return false;
    }
    let subid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    HELD.with(|h| h.borrow_mut().push((key, subid)));
    true
}

/// Releases the job lock `key` if this backend holds it; true if it did.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn _job_unlock(key: i32) -> bool {
    let held = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let before = h.len();
        h.retain(|&(k, _)| k != key);
        before != h.len()
    });
    if held {
        let t = tag(key);
        unsafe { pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as i32, true) };
    }
    held
}

fn release(keys: impl IntoIterator<Item = i32>) {
    for key in keys {
        let t = tag(key);
        // LockRelease only WARNs (never ERRORs) on a lock that is not held.
        unsafe { pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as i32, true) };
    }
}

/// Transaction callback. Abort: release every job lock of this backend (the callbacks run before
/// the lock manager's own abort processing, with the lock manager intact). Commit: the locks now
/// belong to the session (the procedures hold them across their COMMITs).
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut core::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_ABORT => {
            let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
            release(held.into_iter().map(|(k, _)| k));
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            HELD.with(|h| h.borrow_mut().iter_mut().for_each(|e| e.1 = TOP));
        }
        _ => {}
    }
}

/// Subtransaction callback. Abort of a savepoint: release the locks taken inside it (or inside
/// its children, whose ids are larger). Commit: its locks pass to the parent.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut core::ffi::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            let gone: Vec<i32> = HELD.with(|h| {
                let mut h = h.borrow_mut();
                let gone = h.iter().filter(|&&(_, s)| s != TOP && s >= my_subid).map(|&(k, _)| k).collect();
                h.retain(|&(_, s)| s == TOP || s < my_subid);
                gone
            });
            release(gone);
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            HELD.with(|h| {
                h.borrow_mut().iter_mut().filter(|e| e.1 == my_subid).for_each(|e| e.1 = parent_subid)
            });
        }
        _ => {}
    }
}

/// Called once from `_PG_init`.
pub fn register_abort_release() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), core::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), core::ptr::null_mut());
    }
}
