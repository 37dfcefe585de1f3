//! Raw SPI helpers of the pair scan: a statement without results, a cursor read in batches as
//! raw tuples (no per-value conversion: the scan reads millions of them), a column as text for
//! error messages.

use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiCursor};

use crate::errors::OrInternal;

/// Rows per cursor fetch.
pub const FETCH: i64 = 10_000;

/// Runs a statement whose result is not needed.
pub fn run(client: &mut SpiClient<'_>, sql: &str) {
    client.update(sql, None, &[]).or_internal();
}

/// Fetches up to `FETCH` rows and calls `f` on each raw tuple; frees the batch. Returns the
/// number of rows.
pub fn fetch_raw(
    cursor: &mut SpiCursor<'_>,
    mut f: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) -> usize {
    // Loading entities and pairs can take minutes: answer cancellation between batches.
    pgrx::check_for_interrupts!();
    // Only the row count is taken from the tuple table; the tuples are read raw below.
    let n = cursor.fetch(FETCH).or_internal().len();
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        if tt.is_null() {
            return 0;
        }
        for i in 0..n {
            f(*(*tt).vals.add(i), (*tt).tupdesc);
        }
        pg_sys::SPI_freetuptable(tt);
    }
    n
}

/// Text of column `col` of a tuple (for error messages).
pub unsafe fn key_text(tup: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, col: i32) -> String {
    unsafe {
        let p = pg_sys::SPI_getvalue(tup, desc, col);
        if p.is_null() {
            "NULL".into()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
