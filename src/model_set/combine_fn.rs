//! `_combine_vector` / `_combine_halfvec(multipliers float8[], dims int[], columns text[],
//! VARIADIC "any")`:
//! the per-row kernel of `materialize`. The variadic arguments are the row's key (only used
//! in error messages) and its model columns, each of its own type (`vector`, `real[]`,
//! `float8[]`) — hence raw V1 functions over `"any"`, which also avoids building an
//! `ARRAY[...]` of the row's vectors (a copy of each) per row.

use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

use super::catalog::Storage;
use super::output::{combined_datum, read_model};
use crate::datatype::model_value::ModelKind;
use crate::datatype::raw_array::RawArray;

/// Elements of a small 1-D `float8[]` (`int4[]` when `int`) without NULLs, as f64.
unsafe fn small_array(datum: pg_sys::Datum, what: &str, int: bool) -> Vec<f64> {
    unsafe {
        let plain = pg_sys::pg_detoast_datum(datum.cast_mut_ptr());
        let (oid, size) = if int { (pg_sys::INT4OID, 4) } else { (pg_sys::FLOAT8OID, 8) };
        let arr = match RawArray::parse(plain, oid, size) {
            Ok(a) if a.ndim <= 1 && a.first_null().is_none() => a,
            _ => {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("{what} must be a one-dimensional array without NULLs")
                );
                unreachable!()
            }
        };
        if int {
            arr.as_i32().iter().map(|&v| v as f64).collect()
        } else {
            arr.as_f64().to_vec()
        }
    }
}

unsafe fn combine(fcinfo: pg_sys::FunctionCallInfo, storage: Storage) -> pg_sys::Datum {
    unsafe {
        let nargs = (*fcinfo).nargs as usize;
        if fcinfo::pg_arg_is_null(fcinfo, 0) || fcinfo::pg_arg_is_null(fcinfo, 1) || nargs < 5 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "multipliers, dims, a key and at least one model value are required"
            );
        }
        let multipliers = small_array(fcinfo::pg_getarg_datum_raw(fcinfo, 0), "multipliers", false);
        // A negative dimension becomes 0, which check_layout refuses.
        let dims: Vec<usize> = small_array(fcinfo::pg_getarg_datum_raw(fcinfo, 1), "dims", true)
            .into_iter()
            .map(|d| d.max(0.0) as usize)
            .collect();
        let k = nargs - 4;
        if multipliers.len() != k || dims.len() != k {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{k} model values but {} multipliers and {} dims", multipliers.len(), dims.len())
            );
        }
        let flinfo = (*fcinfo).flinfo;
        let key = || {
            if fcinfo::pg_arg_is_null(fcinfo, 3) {
                return "NULL".to_string();
            }
            let typ = pg_sys::get_fn_expr_argtype(flinfo, 3);
            let (mut out, mut varlena) = (pg_sys::Oid::INVALID, false);
            pg_sys::getTypeOutputInfo(typ, &mut out, &mut varlena);
            let p = pg_sys::OidOutputFunctionCall(out, fcinfo::pg_getarg_datum_raw(fcinfo, 3));
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        // Column names, only read for an error message.
        let column = |m: usize| -> String {
            if fcinfo::pg_arg_is_null(fcinfo, 2) {
                return format!("{}", m + 1);
            }
            let arr = Array::<&str>::from_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 2), false);
            arr.and_then(|a| a.get(m).flatten().map(str::to_string)).unwrap_or_else(|| format!("{}", m + 1))
        };
        let values: Vec<_> = (0..k)
            .map(|m| {
                let i = 4 + m;
                let typ = pg_sys::get_fn_expr_argtype(flinfo, i as i32);
                let kind = ModelKind::from_type_oid(typ).unwrap_or_else(|| {
                    crate::ereport_hint!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                        format!(
                            "column {} has type {}",
                            column(m),
                            crate::datatype::model_value::format_type(typ, -1)
                        ),
                        "model values must be vector, real[] or double precision[]"
                    );
                });
                read_model(
                    fcinfo::pg_getarg_datum_raw(fcinfo, i),
                    fcinfo::pg_arg_is_null(fcinfo, i),
                    kind,
                    &key,
                    &|| column(m),
                )
            })
            .collect();
        combined_datum(&values, &dims, &multipliers, storage, &key, &column)
    }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_combine_vector() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_combine_vector(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { combine(fcinfo, Storage::Vector) }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_combine_halfvec() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_combine_halfvec(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe { combine(fcinfo, Storage::Halfvec) }
}
