//! The regression aggregate's transition and combine functions over a `float8[]` state
//! (the layout of `embedstack_math::regstats`), like pgvector's `avg(vector)`: a concrete
//! state type that parallel query and Citus can pass between processes, and that users can
//! store, merge and solve later.
//!
//! The transition function is a raw V1 function because it updates the state array in place
//! when called by an aggregate (as core's `float8_accum`): allocating a new state per row
//! would dominate the cost. Outside an aggregate it never modifies its input.
//!
//! Before the first usable row the state has `k = 0` and only counts skipped rows; the first
//! row with features fixes `k`.

use embedstack_math::regstats::{
    accumulate_raw, check_feature_count, check_row, merge_states, serialized_len, validate_header,
    validate_slice, RegStats, StatsError, HEADER_LEN, MAX_COUNT,
};
use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

use crate::datatype::raw_array::{flat_f64_mut, is_flat_f64, new_flat_f64, RawArray};
use crate::errors::{raise, OrInternal, OrRaise};

/// Borrows a stored state (any float8[] datum): detoasted, validated, parsed.
pub fn parse_state(arr: &Array<'_, f64>) -> RegStats {
    if arr.contains_nulls() {
        raise(StatsError::Corrupt("the state contains NULL elements".into()), "");
    }
    let s = arr.as_slice().map_err(|e| format!("cannot read the state: {e:?}")).or_internal();
    RegStats::from_slice(s).or_raise()
}

/// Reads the features argument: `None` when the row must be skipped (NULL array or element).
unsafe fn features_arg<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a [f64]> {
    unsafe {
        if fcinfo::pg_arg_is_null(fcinfo, 1) {
            return None;
        }
        let raw = pg_sys::pg_detoast_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 1).cast_mut_ptr());
        let arr = RawArray::parse(raw, pg_sys::FLOAT8OID, 8)
            .unwrap_or_else(|e| raise(StatsError::Corrupt(format!("features: {e:?}")), ""));
        if arr.ndim == 0 {
            return Some(&[]);
        }
        if arr.ndim != 1 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("features must be a one-dimensional array, got {} dimensions", arr.ndim)
            );
        }
        // Any NULL feature skips (and counts) the row.
        if arr.first_null().is_some() {
            return None;
        }
        Some(arr.as_f64())
    }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_regstats_accum() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `regression_stats_accum(state float8[], features float8[], y float8 [, sample_weight float8])`
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_regstats_accum(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let nargs = (*fcinfo).nargs as usize;
        let mut aggcontext: pg_sys::MemoryContext = std::ptr::null_mut();
        let in_agg = pg_sys::AggCheckCallContext(fcinfo, &mut aggcontext) != 0;

        // The incoming state: detoasted; copied unless we own it as the aggregate's state.
        let mut state: *mut pg_sys::ArrayType = std::ptr::null_mut();
        if !fcinfo::pg_arg_is_null(fcinfo, 0) {
            let raw = fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::varlena>();
            let plain = pg_sys::pg_detoast_datum(raw).cast::<pg_sys::ArrayType>();
            if !is_flat_f64(plain) {
                raise(StatsError::Corrupt("not a one-dimensional float8[] without NULLs".into()), "");
            }
            let own = in_agg && plain.cast::<pg_sys::varlena>() == raw;
            // The aggregate's own state, updated in place row after row, only needs its O(1)
            // header checked; a state from anywhere else (a direct call, a stored state) is
            // checked in full, as every other function taking a state does.
            let checked =
                if own { validate_header(flat_f64_mut(plain)) } else { validate_slice(flat_f64_mut(plain)) };
            if let Err(e) = checked {
                raise(e, "");
            }
            state = if own {
                plain
            } else {
                let len = flat_f64_mut(plain).len();
                let ctx = if in_agg { aggcontext } else { pg_sys::CurrentMemoryContext };
                let old = pg_sys::MemoryContextSwitchTo(ctx);
                let copy = new_flat_f64(len);
                pg_sys::MemoryContextSwitchTo(old);
                flat_f64_mut(copy).copy_from_slice(flat_f64_mut(plain));
                copy
            };
        }
        let alloc = |len: usize| {
            let ctx = if in_agg { aggcontext } else { pg_sys::CurrentMemoryContext };
            let old = pg_sys::MemoryContextSwitchTo(ctx);
            let a = new_flat_f64(len);
            pg_sys::MemoryContextSwitchTo(old);
            a
        };
        if state.is_null() {
            state = alloc(serialized_len(0));
            flat_f64_mut(state).copy_from_slice(&RegStats::new(0).to_vec());
        }

        let y = (!fcinfo::pg_arg_is_null(fcinfo, 2))
            .then(|| f64::from_bits(fcinfo::pg_getarg_datum_raw(fcinfo, 2).value() as u64));
        let w = if nargs > 3 {
            (!fcinfo::pg_arg_is_null(fcinfo, 3))
                .then(|| f64::from_bits(fcinfo::pg_getarg_datum_raw(fcinfo, 3).value() as u64))
        } else {
            Some(1.0)
        };
        let features = features_arg(fcinfo);

        match (features, y, w) {
            (Some(x), Some(y), Some(w)) => {
                let mut s = flat_f64_mut(state);
                let k = s[2] as usize;
                if k != x.len() {
                    if s[3] == 0.0 && k == 0 {
                        // First usable row fixes k; carry the skipped count over. Its length is
                        // input: checked against the limit before the state is allocated.
                        if let Err(e) = check_feature_count(x.len()) {
                            raise(e, "");
                        }
                        let skipped = s[4];
                        state = alloc(serialized_len(x.len()));
                        s = flat_f64_mut(state);
                        s.copy_from_slice(&RegStats::new(x.len()).to_vec());
                        s[4] = skipped;
                    } else {
                        raise(StatsError::FeatureCount { expected: k, got: x.len() }, "");
                    }
                }
                let k = x.len();
                if k == 0 {
                    raise(StatsError::FeatureCount { expected: 1, got: 0 }, "");
                }
                // Validate before touching the state, so a rejected row changes nothing.
                if let Err(e) = check_row(k, x, y, w) {
                    raise(e, "");
                }
                if w == 0.0 {
                    count_row(&mut s[4]);
                } else {
                    let p = k + 1;
                    let (head, rest) = s.split_at_mut(HEADER_LEN);
                    let (mean, comoment) = rest.split_at_mut(p);
                    // Checks that the row keeps every statistic finite before writing any.
                    if let Err(e) = accumulate_raw(k, &mut head[5], mean, comoment, x, y, w) {
                        raise(e, "");
                    }
                    count_row(&mut head[3]);
                }
            }
            _ => count_row(&mut flat_f64_mut(state)[4]),
        }
        pg_sys::Datum::from(state)
    }
}

/// Adds one row to a serialised count, which stays exact up to `MAX_COUNT` (2^53) rows.
fn count_row(count: &mut f64) {
    if *count >= MAX_COUNT as f64 {
        raise(StatsError::Overflow(format!("a row count above {MAX_COUNT}")), "");
    }
    *count += 1.0;
}

/// Merges two states (the aggregate's combine function; also callable on stored states).
/// A state with no usable rows merges with any other, and NULL is the empty state (what the
/// aggregate returns over no rows): `merge(s, NULL) = merge(NULL, s) = s` (checked), so one empty
/// fold does not wipe a chain of merges; `merge(NULL, NULL)` is NULL. Not STRICT for that reason
/// (since 0.3.1; as the combine function it then also sees the executor's NULL partial states).
/// Overflowing statistics are an error (22003), never an Infinity in the state.
#[pg_extern(immutable, parallel_safe)]
fn merge(a: Option<Array<'_, f64>>, b: Option<Array<'_, f64>>) -> Option<Vec<f64>> {
    match (a, b) {
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => Some(parse_state(&s).to_vec()),
        (Some(a), Some(b)) => Some(merge_states(&parse_state(&a), &parse_state(&b)).or_raise().to_vec()),
    }
}
