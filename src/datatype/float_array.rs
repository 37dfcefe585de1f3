//! `real[]` / `float8[]` arguments borrowed as slices, with docs/design.md §4's NULL-element rule.
//!
//! Arrays are read in storage order; a multi-dimensional array is treated as its flattened
//! elements (as pgvector's `real[]::vector` cast does).

use pgrx::datum::UnboxDatum;
use pgrx::prelude::*;

/// Borrows the elements of a float array, raising 22004 if any element is NULL.
/// `what` names the argument in the error ("first argument", "features", …).
pub fn non_null_slice<'a, T>(arr: &'a Array<'_, T>, what: &str) -> &'a [T]
where
    T: UnboxDatum + pgrx::array::Scalar,
{
    if arr.contains_nulls() {
        let position = arr.iter().position(|e| e.is_none()).map_or(0, |i| i + 1);
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} contains a NULL element at position {position}"),
            "vectors must not contain NULL elements; use a NULL array for a missing vector"
        );
    }
    match arr.as_slice() {
        Ok(s) => s,
        // Only reachable for a non-contiguous layout, which float4/float8 arrays never have.
        Err(e) => error!("cannot borrow {what} as a slice: {e:?}"),
    }
}
