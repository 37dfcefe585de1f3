//! The last result of one call site, kept for the rest of the query.
//!
//! `query_vector(…)` is STABLE: when no index scan evaluates it once (small tables, a filter the
//! planner prefers, the README's own example), PostgreSQL calls it for every row it sorts, and
//! each call reads the catalog and the key's row (~0.3-0.6 ms). A STABLE function may return the
//! same result for the same arguments within one statement, so the call site (its `FmgrInfo`,
//! which lives as long as the query's executor state) remembers its last arguments and result:
//! the vector is built once per query, not once per row. `score(set, a, b)` remembers, the same
//! way, what does not depend on b (the model set, the served fit, a's row).

use pgrx::pg_sys;
use pgrx::PgMemoryContexts;

use crate::datatype::vector::VectorOutput;

/// The last (arguments, result) of a call site, in its `fn_mcxt` (dropped with it).
struct LastCall {
    args: Vec<u8>,
    result: Vec<u8>,
}

/// Returns the result `compute` gives for `args` at this call site: computed on the first call
/// and whenever the arguments change, reused otherwise. `args` must identify the arguments
/// completely (see [`datum_bytes`]).
pub fn vector_once(
    fcinfo: pg_sys::FunctionCallInfo,
    args: Vec<u8>,
    compute: impl FnOnce() -> VectorOutput,
) -> VectorOutput {
    // SAFETY: fcinfo is the call's own; flinfo and its memory context outlive this call.
    unsafe {
        let flinfo = if fcinfo.is_null() { std::ptr::null_mut() } else { (*fcinfo).flinfo };
        if flinfo.is_null() {
            return compute();
        }
        let slot = (*flinfo).fn_extra.cast::<LastCall>();
        if !slot.is_null() && (*slot).args == args {
            return VectorOutput::from_bytes(&(*slot).result);
        }
        let out = compute();
        let result = out.as_bytes().to_vec();
        if slot.is_null() {
            let mut cx = PgMemoryContexts::For((*flinfo).fn_mcxt);
            (*flinfo).fn_extra = cx.leak_and_drop_on_delete(LastCall { args, result }).cast();
        } else {
            (*slot).args = args;
            (*slot).result = result;
        }
        out
    }
}

/// The bytes that identify a datum of type `typid`: its type, then the value (by-value datums
/// as their 8 bytes, varlenas detoasted, C strings, fixed-length values).
///
/// # Safety
/// `datum` must be a non-null datum of type `typid`.
pub unsafe fn datum_bytes(typid: pg_sys::Oid, datum: pg_sys::Datum, out: &mut Vec<u8>) {
    unsafe {
        out.extend_from_slice(&typid.to_u32().to_le_bytes());
        let (mut len, mut byval) = (0i16, false);
        pg_sys::get_typlenbyval(typid, &mut len, &mut byval);
        if byval {
            out.extend_from_slice(&datum.value().to_le_bytes());
        } else if len == -1 {
            let plain = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let n = pgrx::varlena::varsize_any_exhdr(plain);
            let data = pgrx::varlena::vardata_any(plain).cast::<u8>();
            out.extend_from_slice(std::slice::from_raw_parts(data, n));
        } else if len == -2 {
            out.extend_from_slice(std::ffi::CStr::from_ptr(datum.cast_mut_ptr()).to_bytes());
        } else {
            out.extend_from_slice(std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), len as usize));
        }
    }
}

/// What a call site built for its last arguments (score: the model set, the fit and a's row),
/// in its `fn_mcxt` (dropped with it).
struct Remembered<T> {
    args: Vec<u8>,
    value: std::rc::Rc<T>,
}

/// The value `build` gives for `args` at this call site: built on the first call and whenever
/// the arguments change, shared otherwise, for the rest of the query (as [`vector_once`]; the
/// callers are STABLE). `args` must identify everything `build` reads from its arguments.
///
/// # Safety
/// `fcinfo` is the call's own (or null); every call of one call site passes the same `T`.
pub unsafe fn remembered<T: 'static>(
    fcinfo: pg_sys::FunctionCallInfo,
    args: Vec<u8>,
    build: impl FnOnce() -> T,
) -> std::rc::Rc<T> {
    unsafe {
        let flinfo = if fcinfo.is_null() { std::ptr::null_mut() } else { (*fcinfo).flinfo };
        if flinfo.is_null() {
            return std::rc::Rc::new(build());
        }
        let slot = (*flinfo).fn_extra.cast::<Remembered<T>>();
        if !slot.is_null() && (*slot).args == args {
            return (*slot).value.clone();
        }
        let value = std::rc::Rc::new(build());
        if slot.is_null() {
            let mut cx = PgMemoryContexts::For((*flinfo).fn_mcxt);
            (*flinfo).fn_extra = cx.leak_and_drop_on_delete(Remembered { args, value: value.clone() }).cast();
        } else {
            (*slot).args = args;
            (*slot).value = value.clone();
        }
        value
    }
}
