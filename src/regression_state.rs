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
    validate_slice, RegStats, StatsError, HEADER_LEN, MAX_COUNT, MAX_FEATURES,
};
use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

/// 1-D float8 array header: vl_len, ndim, dataoffset, elemtype, dim, lbound (24 bytes, which
/// is already MAXALIGNed, so the data follows directly).
const ARRAY_HEADER: usize = 24;

/// Raises a [`StatsError`] as an ERROR: the one mapping of its variants to SQLSTATEs.
///
/// * `FeatureCount` → 22000 `data_exception` (arrays of different lengths, DESIGN §4);
/// * `NonFinite`, `NegativeWeight` → 22023 `invalid_parameter_value`;
/// * `Corrupt` → 22023 `invalid_parameter_value`: a forged, truncated or inconsistent state is
///   an invalid argument value (22P02 `invalid_text_representation` is about parsing text, and
///   the state arrives as a float8[] that parsed fine);
/// * `TooManyFeatures` → 54000 `program_limit_exceeded`, with a HINT naming the limit;
/// * `Overflow` → 22003 `numeric_value_out_of_range`, with a HINT to rescale.
#[cold]
pub fn raise_stats_error(e: StatsError) -> ! {
    let msg = e.to_string();
    let (code, hint) = match e {
        StatsError::FeatureCount { .. } => (PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, None),
        // The message names what is wrong with the state; no HINT (the regression tests'
        // expected output shows these errors as they were).
        StatsError::NonFinite { .. } | StatsError::NegativeWeight(_) | StatsError::Corrupt(_) => {
            (PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, None)
        }
        StatsError::TooManyFeatures { got } => (
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Some(format!(
                "a regression state is limited to {MAX_FEATURES} features (its size and the solve time grow \
                 with the square and the cube of the count), got {got}: fit fewer models or features at once"
            )),
        ),
        StatsError::Overflow(_) => {
            (PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, Some(OVERFLOW_HINT.into()))
        }
    };
    match hint {
        Some(h) => crate::ereport_hint!(ERROR, code, msg, h),
        None => {
            ereport!(PgLogLevel::ERROR, code, msg);
            unreachable!()
        }
    }
}

/// HINT of every 22003 raised for statistics or results out of the float8 range.
pub const OVERFLOW_HINT: &str =
    "rescale the features or the labels (for example divide the labels by a constant) \
     so that their squares and cross-products fit in double precision";

/// Allocates a plain 1-D float8[] of `len` zeros in the current memory context.
unsafe fn new_state_array(len: usize) -> *mut pg_sys::ArrayType {
    unsafe {
        let size = ARRAY_HEADER + 8 * len;
        let p = pg_sys::palloc0(size).cast::<u8>();
        pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
        let h = p.cast::<i32>();
        *h.add(1) = 1; // ndim
        *h.add(2) = 0; // dataoffset: no null bitmap
        *h.add(3) = pg_sys::FLOAT8OID.to_u32() as i32;
        *h.add(4) = len as i32; // dims[0]
        *h.add(5) = 1; // lbound[0]
        p.cast()
    }
}

unsafe fn state_slice<'a>(arr: *mut pg_sys::ArrayType) -> &'a mut [f64] {
    unsafe {
        let len = *arr.cast::<i32>().add(4) as usize;
        std::slice::from_raw_parts_mut(arr.cast::<u8>().add(ARRAY_HEADER).cast::<f64>(), len)
    }
}

/// Checks that `arr` is a 1-D float8[] without NULLs in our flat layout.
unsafe fn is_flat_float8(arr: *const pg_sys::ArrayType) -> bool {
    unsafe {
        let h = arr.cast::<i32>();
        *h.add(1) == 1 && *h.add(2) == 0 && *h.add(3) as u32 == pg_sys::FLOAT8OID.to_u32()
    }
}

/// Borrows a stored state (any float8[] datum): detoasted, validated, parsed.
pub fn parse_state(arr: &Array<'_, f64>) -> RegStats {
    if arr.contains_nulls() {
        raise_stats_error(StatsError::Corrupt("the state contains NULL elements".into()));
    }
    let s = arr.as_slice().unwrap_or_else(|e| error!("cannot read the state: {e:?}"));
    RegStats::from_slice(s).unwrap_or_else(|e| raise_stats_error(e))
}

/// Reads the features argument: `None` when the row must be skipped (NULL array or element).
unsafe fn features_arg<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a [f64]> {
    unsafe {
        if fcinfo::pg_arg_is_null(fcinfo, 1) {
            return None;
        }
        let raw = pg_sys::pg_detoast_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 1).cast_mut_ptr());
        let arr = raw.cast::<pg_sys::ArrayType>();
        let h = arr.cast::<i32>();
        let ndim = *h.add(1);
        if ndim == 0 {
            return Some(&[]);
        }
        if ndim != 1 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("features must be a one-dimensional array, got {ndim} dimensions")
            );
        }
        let n = *h.add(4) as usize;
        let dataoffset = *h.add(2) as usize;
        if dataoffset != 0 {
            // A NULL bitmap follows dims and lbounds: any NULL feature skips (and counts) the row.
            let bitmap = arr.cast::<u8>().add(ARRAY_HEADER);
            if (0..n).any(|i| *bitmap.add(i / 8) & (1 << (i % 8)) == 0) {
                return None;
            }
        }
        let data = arr.cast::<u8>().add(if dataoffset != 0 { dataoffset } else { ARRAY_HEADER });
        Some(std::slice::from_raw_parts(data.cast::<f64>(), n))
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
            if !is_flat_float8(plain) {
                raise_stats_error(StatsError::Corrupt("not a one-dimensional float8[] without NULLs".into()));
            }
            let own = in_agg && plain.cast::<pg_sys::varlena>() == raw;
            // The aggregate's own state, updated in place row after row, only needs its O(1)
            // header checked; a state from anywhere else (a direct call, a stored state) is
            // checked in full, as every other function taking a state does.
            let checked =
                if own { validate_header(state_slice(plain)) } else { validate_slice(state_slice(plain)) };
            if let Err(e) = checked {
                raise_stats_error(e);
            }
            state = if own {
                plain
            } else {
                let len = state_slice(plain).len();
                let ctx = if in_agg { aggcontext } else { pg_sys::CurrentMemoryContext };
                let old = pg_sys::MemoryContextSwitchTo(ctx);
                let copy = new_state_array(len);
                pg_sys::MemoryContextSwitchTo(old);
                state_slice(copy).copy_from_slice(state_slice(plain));
                copy
            };
        }
        let alloc = |len: usize| {
            let ctx = if in_agg { aggcontext } else { pg_sys::CurrentMemoryContext };
            let old = pg_sys::MemoryContextSwitchTo(ctx);
            let a = new_state_array(len);
            pg_sys::MemoryContextSwitchTo(old);
            a
        };
        if state.is_null() {
            state = alloc(serialized_len(0));
            state_slice(state).copy_from_slice(&RegStats::new(0).to_vec());
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
                let mut s = state_slice(state);
                let k = s[2] as usize;
                if k != x.len() {
                    if s[3] == 0.0 && k == 0 {
                        // First usable row fixes k; carry the skipped count over. Its length is
                        // input: checked against the limit before the state is allocated.
                        if let Err(e) = check_feature_count(x.len()) {
                            raise_stats_error(e);
                        }
                        let skipped = s[4];
                        state = alloc(serialized_len(x.len()));
                        s = state_slice(state);
                        s.copy_from_slice(&RegStats::new(x.len()).to_vec());
                        s[4] = skipped;
                    } else {
                        raise_stats_error(StatsError::FeatureCount { expected: k, got: x.len() });
                    }
                }
                let k = x.len();
                if k == 0 {
                    raise_stats_error(StatsError::FeatureCount { expected: 1, got: 0 });
                }
                // Validate before touching the state, so a rejected row changes nothing.
                if let Err(e) = check_row(k, x, y, w) {
                    raise_stats_error(e);
                }
                if w == 0.0 {
                    count_row(&mut s[4]);
                } else {
                    let p = k + 1;
                    let (head, rest) = s.split_at_mut(HEADER_LEN);
                    let (mean, comoment) = rest.split_at_mut(p);
                    // Checks that the row keeps every statistic finite before writing any.
                    if let Err(e) = accumulate_raw(k, &mut head[5], mean, comoment, x, y, w) {
                        raise_stats_error(e);
                    }
                    count_row(&mut head[3]);
                }
            }
            _ => count_row(&mut state_slice(state)[4]),
        }
        pg_sys::Datum::from(state)
    }
}

/// Adds one row to a serialised count, which stays exact up to `MAX_COUNT` (2^53) rows.
fn count_row(count: &mut f64) {
    if *count >= MAX_COUNT as f64 {
        raise_stats_error(StatsError::Overflow(format!("a row count above {MAX_COUNT}")));
    }
    *count += 1.0;
}

/// Merges two states (the aggregate's combine function; also callable on stored states).
/// A state with no usable rows merges with any other. Overflowing statistics are an error
/// (22003), never an Infinity in the state.
#[pg_extern(immutable, strict, parallel_safe)]
fn merge(a: Array<'_, f64>, b: Array<'_, f64>) -> Vec<f64> {
    merge_states(&parse_state(&a), &parse_state(&b)).unwrap_or_else(|e| raise_stats_error(e)).to_vec()
}
