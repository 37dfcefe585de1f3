//! One home for pinning `search_path` around C code that runs SQL.
//!
//! Every entry point of the library that runs SPI (pair_statistics, evaluate, query_vector, the
//! freshness trigger, the 0.2.x row trigger) runs it inside [`with_pinned_search_path`]: the
//! statements it builds, and the catalog lookups before them, resolve every unqualified type,
//! function, operator and relation in `pg_catalog` (then the session's own `pg_temp`, for
//! relations only), never through the caller's path, where another role may have created
//! look-alike operators, domains or functions (a victim with `public` on its path, or a
//! superuser's pg_cron job). The SQL we build qualifies everything anyway; the pin is what makes
//! the lookups PostgreSQL does for us (regclass output, the catalog queries, a name we forgot)
//! safe too.

use pgrx::pg_sys;

/// The path the library's own SQL runs with.
pub const PINNED_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` with `search_path = pg_catalog, pg_temp`, as a function with `SET search_path`
/// does: a new GUC nest level, the value set with `GUC_ACTION_SAVE`, and the previous value
/// restored when `f` returns. When `f` raises an ERROR, the abort of the (sub)transaction that
/// catches it restores the value (`AtEOXact_GUC` / `AtEOSubXact_GUC` pop every nest level above
/// its own), exactly as for a SECURITY DEFINER function with a SET clause; nothing here needs
/// to catch the error.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain GUC calls in a backend, inside a transaction (every caller is a SQL-callable
    // function or trigger); GUC_ACTION_SAVE is allowed in parallel mode (the change is popped by
    // the same process).
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    let result = f();
    // SAFETY: pops the nest level opened above (and any an inner call left behind).
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    result
}
