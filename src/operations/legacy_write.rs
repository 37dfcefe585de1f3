//! `embedstack._write(writer, VARIADIC "any")`: the catalog door of releases 0.2.1 and 0.3.0.
//!
//! 0.3.0 ran the writer statement as the catalog's owner, parsed with the caller's search_path
//! and casting the caller's arguments: any role could become superuser through it. 0.3.1 has no
//! such function (its SQL drops it; the catalog is written as the caller under row security),
//! but the install scripts of the earlier releases, kept for `CREATE EXTENSION ... VERSION` and
//! the upgrade path, create it against this library. So the symbol stays, without the switch:
//! the statement runs as the caller, with `search_path` pinned. A database whose extension is
//! not updated yet keeps working for the roles that may write its catalog themselves (the
//! extension's owner) until `ALTER EXTENSION embedstack UPDATE`; nobody gains anything through it.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

use super::authorize::require_owner;
use super::pinned_path::with_pinned_search_path;
use crate::errors::OrInternal;

/// What a writer changes: how the gate finds the source table whose owner must be calling.
enum Subject {
    /// The argument at this 0-based position (after the writer's name) is the source regclass.
    Source(usize),
    /// The argument at this position is a model set's name.
    ModelSet(usize),
    /// The argument at this position is a job id.
    Job(usize),
}

/// The allowlist: writer, its statement (explicit casts, so NULLs typed as anything work), the
/// subject. Every statement returns one bigint (or NULL).
const WRITERS: &[(&str, &str, Subject)] = &[
    (
        "insert_model_set",
        "SELECT NULL::bigint FROM embedstack._w_insert_model_set($1::text, $2::pg_catalog.regclass, $3::name, \
         $4::name[], $5::integer[], $6::pg_catalog.regtype[], $7::text, $8::float8, $9::name, $10::text, $11::name)",
        Subject::Source(1),
    ),
    ("delete_model_set", "SELECT NULL::bigint FROM embedstack._w_delete_model_set($1::text)", Subject::ModelSet(0)),
    (
        "insert_fit",
        "SELECT (embedstack._w_insert_fit($1::text, $2::jsonb, $3::float8[], $4::float8, $5::jsonb, \
         $6::float8[], $7::jsonb)).id",
        Subject::ModelSet(0),
    ),
    (
        "insert_generation",
        "SELECT embedstack._w_insert_generation($1::text, $2::bigint, $3::float8[], $4::text, $5::integer)",
        Subject::ModelSet(0),
    ),
    (
        "generation_set",
        "SELECT NULL::bigint FROM embedstack._w_generation_set($1::text, $2::bigint, $3::pg_catalog.regclass, \
         $4::name, $5::text, $6::bigint)",
        Subject::ModelSet(0),
    ),
    (
        "delete_generation",
        "SELECT NULL::bigint FROM embedstack._w_delete_generation($1::text, $2::bigint)",
        Subject::ModelSet(0),
    ),
    (
        "generation_pending",
        "SELECT NULL::bigint FROM embedstack._w_generation_pending($1::text, $2::bigint, $3::pg_catalog.regclass, \
         $4::boolean)",
        Subject::ModelSet(0),
    ),
    (
        "serve",
        "SELECT NULL::bigint FROM embedstack._w_serve($1::text, $2::bigint, $3::bigint)",
        Subject::ModelSet(0),
    ),
    (
        "job_start",
        "SELECT embedstack._w_job_start($1::text, $2::text, $3::jsonb, $4::text, $5::bigint)",
        Subject::ModelSet(0),
    ),
    (
        "job_update",
        "SELECT NULL::bigint FROM embedstack._w_job_update($1::bigint, $2::text, $3::bigint, $4::bigint, \
         $5::text, $6::bigint, $7::name, $8::jsonb, $9::bigint)",
        Subject::Job(0),
    ),
    (
        "job_finish",
        "SELECT NULL::bigint FROM embedstack._w_job_finish($1::bigint, $2::text, $3::text, $4::jsonb)",
        Subject::Job(0),
    ),
];

/// The source table a writer call is about, looked up as the caller (who, as a member of the
/// owner, can see the catalog rows of its own model sets).
fn subject_source(subject: &Subject, args: &[DatumWithOid<'_>]) -> pg_sys::Oid {
    let (sql, i) = match subject {
        Subject::Source(i) => ("SELECT $1::pg_catalog.regclass::oid", *i),
        Subject::ModelSet(i) => ("SELECT m.source::oid FROM embedstack.model_sets m WHERE m.name = $1::text", *i),
        Subject::Job(i) => (
            "SELECT m.source::oid FROM embedstack.jobs j JOIN embedstack.model_sets m ON m.name = j.model_set \
              WHERE j.id = $1::bigint",
            *i,
        ),
    };
    let arg = match args.get(i) {
        Some(a) => unsafe { DatumWithOid::new_from_datum(a.datum(), a.oid()) },
        None => DatumWithOid::null_oid(pg_sys::TEXTOID),
    };
    let found: Option<pg_sys::Oid> = Spi::connect(|c| {
        let t = c.select(sql, Some(1), &[arg])?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<pg_sys::Oid>()
        }
    })
    .or_internal();
    // Not visible to the caller: the catalog shows a model set to the roles that may read its
    // source, so whoever cannot see it does not own it either.
    found.unwrap_or_else(|| {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied: the model set (or job) this catalog write names is not one the calling role may change"
        );
        unreachable!()
    })
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_write() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `embedstack._write(writer text, VARIADIC "any") RETURNS bigint` of the SQL of 0.2.1 / 0.3.0
/// (see the module documentation).
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_write(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let nargs = (*fcinfo).nargs as usize;
        if nargs < 1 || fcinfo::pg_arg_is_null(fcinfo, 0) {
            error!("embedstack._write: the writer's name is required");
        }
        if pg_sys::get_fn_expr_variadic((*fcinfo).flinfo) {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "embedstack._write takes its arguments one by one, not as a VARIADIC array"
            );
        }
        let writer = String::from_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 0), false).unwrap_or_default();
        let Some((_, sql, subject)) = WRITERS.iter().find(|(w, _, _)| *w == writer) else {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown catalog writer \"{writer}\"")
            );
            unreachable!()
        };
        let arity = (1..=16).rev().find(|n| sql.contains(&format!("${n}:"))).unwrap_or(0);
        if nargs - 1 > arity {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("catalog writer \"{writer}\" takes {arity} arguments, got {}", nargs - 1)
            );
        }
        let flinfo = (*fcinfo).flinfo;
        let mut args: Vec<DatumWithOid<'_>> = (1..nargs)
            .map(|i| {
                let typ = pg_sys::get_fn_expr_argtype(flinfo, i as i32);
                if typ == pg_sys::InvalidOid {
                    error!("embedstack._write: cannot determine the type of argument {i}");
                }
                // UNKNOWN literals are C strings: pass them as text (the statement casts).
                let unknown = typ == pg_sys::UNKNOWNOID;
                let typ = if unknown { pg_sys::TEXTOID } else { typ };
                if fcinfo::pg_arg_is_null(fcinfo, i) {
                    DatumWithOid::null_oid(typ)
                } else {
                    let d = fcinfo::pg_getarg_datum_raw(fcinfo, i);
                    let d = if unknown {
                        pg_sys::Datum::from(pg_sys::cstring_to_text(d.cast_mut_ptr()))
                    } else {
                        d
                    };
                    DatumWithOid::new(d, typ)
                }
            })
            .collect();
        // Trailing arguments left out are NULL (the writers' optional arguments).
        while args.len() < arity {
            args.push(DatumWithOid::null_oid(pg_sys::TEXTOID));
        }

        let source = with_pinned_search_path(|| subject_source(subject, &args));
        require_owner(source);

        // As the caller: no role switch (0.3.0 switched to the catalog's owner here). With the
        // SQL of 0.2.1 / 0.3.0, whose catalog tables and writers only their owner may use, this
        // lets a superuser (the owner of the extension) work until the update, and nobody else.
        // The statements are 0.3.0's: with 0.2.1's SQL, whose writers have other signatures,
        // they name functions that do not exist; say what to do instead of "add explicit casts".
        let result: Option<i64> = PgTryBuilder::new(|| {
            with_pinned_search_path(|| {
                Spi::connect_mut(|c| c.update(*sql, Some(1), &args).and_then(|t| t.first().get_one::<i64>()))
                    .or_internal()
            })
        })
        .catch_when(PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION, |_| {
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
                "this database still has the SQL of an earlier embedstack release, whose catalog writers this \
                 library does not call"
                    .to_string(),
                "run ALTER EXTENSION embedstack UPDATE (as the extension's owner)"
            )
        })
        .execute();
        match result {
            Some(v) => pg_sys::Datum::from(v),
            None => {
                (*fcinfo).isnull = true;
                pg_sys::Datum::from(0)
            }
        }
    }
}
