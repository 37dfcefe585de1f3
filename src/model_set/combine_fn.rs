//! `_combine_vector` / `_combine_halfvec(multipliers float8[], dims int[], columns text[],
//! VARIADIC "any")`:
//! the per-row kernel of `materialize`. The variadic arguments are the row's key (only used
//! in error messages) and its model columns, each of its own type (`vector`, `real[]`,
//! `float8[]`) — hence raw V1 functions over `"any"`, which also avoids building an
//! `ARRAY[...]` of the row's vectors (a copy of each) per row.

use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

use super::catalog::Storage;
use super::output::{projected_datum, read_model};
use super::projection;
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

/// `projected`: the first argument is a projection's id (`_project_vector` /
/// `_project_halfvec`), the others follow it.
unsafe fn combine(fcinfo: pg_sys::FunctionCallInfo, storage: Storage, projected: bool) -> pg_sys::Datum {
    unsafe {
        let base = projected as usize;
        let nargs = (*fcinfo).nargs as usize - base;
        if (0..=base + 1).any(|i| fcinfo::pg_arg_is_null(fcinfo, i)) || nargs < 5 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "multipliers, dims, a key and at least one model value are required"
            );
        }
        let multipliers = small_array(fcinfo::pg_getarg_datum_raw(fcinfo, base), "multipliers", false);
        // A negative dimension becomes 0, which check_layout refuses.
        let dims: Vec<usize> = small_array(fcinfo::pg_getarg_datum_raw(fcinfo, base + 1), "dims", true)
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
            if fcinfo::pg_arg_is_null(fcinfo, base + 3) {
                return "NULL".to_string();
            }
            let typ = pg_sys::get_fn_expr_argtype(flinfo, (base + 3) as i32);
            let (mut out, mut varlena) = (pg_sys::Oid::INVALID, false);
            pg_sys::getTypeOutputInfo(typ, &mut out, &mut varlena);
            let p = pg_sys::OidOutputFunctionCall(out, fcinfo::pg_getarg_datum_raw(fcinfo, base + 3));
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        // Column names, only read for an error message.
        let column = |m: usize| -> String {
            if fcinfo::pg_arg_is_null(fcinfo, base + 2) {
                return format!("{}", m + 1);
            }
            let arr = Array::<&str>::from_datum(fcinfo::pg_getarg_datum_raw(fcinfo, base + 2), false);
            arr.and_then(|a| a.get(m).flatten().map(str::to_string)).unwrap_or_else(|| format!("{}", m + 1))
        };
        let values: Vec<_> = (0..k)
            .map(|m| {
                let i = base + 4 + m;
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
        let projection = projected.then(|| {
            let id = fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as i64;
            projection::for_call(fcinfo, id)
        });
        projected_datum(&values, &dims, &multipliers, storage, &key, &column, projection)
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
    unsafe { combine(fcinfo, Storage::Vector, false) }
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
    unsafe { combine(fcinfo, Storage::Halfvec, false) }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_project_vector() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `_project_vector(projection bigint, multipliers, dims, columns, VARIADIC "any")`: the row's
/// combined vector projected onto a generation's learned basis (model sets with `dims`).
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_project_vector(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { combine(fcinfo, Storage::Vector, true) }
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_project_halfvec() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// As `_project_vector`, as halfvec.
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_project_halfvec(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe { combine(fcinfo, Storage::Halfvec, true) }
}
