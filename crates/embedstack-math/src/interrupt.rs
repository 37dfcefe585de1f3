//! Cooperative cancellation of the core's long loops (NNLS iterations, cross-validation folds,
//! eigen-decompositions of large Gram matrices).
//!
//! The core knows nothing about Postgres, so it cannot honour `statement_timeout` or a cancel
//! request by itself: the embedding process installs a hook with [`set_interrupt_hook`] and the
//! loops call [`check`] between units of work that are short (at most one eigen-decomposition
//! of a `MAX_FEATURES`-sized matrix, tens of milliseconds). The hook may unwind (a Postgres
//! ERROR becomes a Rust panic under pgrx): everything the core holds at a check point is plain
//! owned memory, so unwinding through it is sound.
//!
//! The hook is process-wide; it is also called from whatever thread runs the core, so a hook
//! that must only act on one thread (Postgres' backend thread) filters by thread itself.

use std::sync::RwLock;

static HOOK: RwLock<Option<fn()>> = RwLock::new(None);

/// Installs `hook`, replacing any previous one. Called once at load time by the embedder.
pub fn set_interrupt_hook(hook: fn()) {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
}

/// Removes the hook (tests; an embedder normally keeps its hook for the life of the process).
pub fn clear_interrupt_hook() {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Calls the hook if one is installed. Cheap (an uncontended read lock): call it once per unit
/// of long-running work, not per row.
#[inline]
pub fn check() {
    // Copy the function pointer out so that the lock is released before the hook runs: a hook
    // that unwinds must not do so while holding the guard.
    let hook = *HOOK.read().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = hook {
        h();
    }
}
