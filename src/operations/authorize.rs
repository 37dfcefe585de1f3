//! Who may change a model set, and the one door to the catalog.
//!
//! A model set belongs to the owner of its source table. The catalog tables are writable only
//! by their owner (the extension's owner); the writer functions `_w_*` (sql/catalog_writers.sql)
//! hold the DML and are not executable by PUBLIC. Everything else in the extension runs as the
//! caller (SECURITY INVOKER), so reading vectors, ALTER TABLE on the source and the batch
//! UPDATEs are checked by PostgreSQL against the caller's own privileges.
//!
//! The public functions reach a writer only through `embedstack._write(writer, VARIADIC args)`,
//! a SECURITY INVOKER function: it sees the identity that really called it — `GetUserId()`,
//! which inside a user's SECURITY DEFINER function is that function's owner — and requires it
//! *and* the outer user (`GetOuterUserId()`: the session's role or the role chosen with SET
//! ROLE) to be members of the source table's owner. Only then does it switch to the catalog's
//! owner, run the one allowlisted writer statement, and switch back. A SECURITY DEFINER writer
//! could not do this check: inside it the calling identity is already replaced by the
//! definer, which is how a user's SECURITY DEFINER function could drive the 0.2.0 writers with
//! its caller's ownership (the confused deputy of issue 11).

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys};

use crate::datatype::regclass::RegClass;
use crate::errors::OrInternal;

/// Does relation `relid` exist?
fn relation_exists(relid: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

/// Is `role` a member of the owner of the existing relation `relid`?
fn owns(relid: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::pg_class_ownercheck(relid, role) }
}

fn rel_name(relid: pg_sys::Oid) -> String {
    unsafe {
        let p = pg_sys::get_rel_name(relid);
        if p.is_null() {
            format!("with OID {}", relid.to_u32())
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// ERROR 42501 unless both the current user and the outer user are members of the owner of
/// `relid` (a superuser is a member of every role). A source that no longer exists
/// (dropped while the event trigger could not clean up) may be cleaned up by a superuser only.
pub fn require_owner(relid: pg_sys::Oid) {
    let current = unsafe { pg_sys::GetUserId() };
    let outer = unsafe { pg_sys::GetOuterUserId() };
    if !relation_exists(relid) {
        if unsafe { pg_sys::superuser_arg(current) && pg_sys::superuser_arg(outer) } {
            return;
        }
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("the source table (OID {}) of this model set no longer exists", relid.to_u32()),
            "a superuser can drop the model set (embedstack.drop_model_set)"
        );
    }
    if owns(relid, current) && owns(relid, outer) {
        return;
    }
    crate::ereport_hint!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("must be owner of table {} to change its model sets", rel_name(relid)),
        "model sets are created, fitted, materialised and dropped by the owner of their source table \
         (or a member of the owning role), called directly or from code running as such a member; \
         reading functions need SELECT only"
    );
}

/// ERROR 42501 unless the calling role (and the outer role) own `source`; 42P01 if it is gone.
#[pg_extern(stable, strict, parallel_safe)]
fn _check_owner(source: RegClass) {
    let relid = source.0;
    if !relation_exists(relid) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", relid.to_u32())
        );
    }
    require_owner(relid);
}

/// May the current role read `source` (SELECT on the table or on any of its columns, or
/// membership in its owner)? The row security policies of the catalog tables show a model
/// set, its fits and its jobs to such roles only. False for a relation that no longer exists.
#[pg_extern(stable, strict, parallel_safe)]
pub fn _may_read(source: RegClass) -> bool {
    let relid = source.0;
    let role = unsafe { pg_sys::GetUserId() };
    if !relation_exists(relid) {
        return false;
    }
    let select = pg_sys::ACL_SELECT as pg_sys::AclMode;
    owns(relid, role)
        || unsafe {
            pg_sys::pg_class_aclcheck(relid, role, select) == pg_sys::AclResult::ACLCHECK_OK
                || pg_sys::pg_attribute_aclcheck_all(relid, role, select, pg_sys::AclMaskHow::ACLMASK_ANY)
                    == pg_sys::AclResult::ACLCHECK_OK
        }
}

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

/// The owner of the catalog tables: the role the writers run as.
fn catalog_owner() -> pg_sys::Oid {
    let owner: Option<pg_sys::Oid> = Spi::get_one(
        "SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'embedstack.model_sets'::pg_catalog.regclass",
    )
    .or_internal();
    owner.unwrap_or_else(|| error!("the embedstack catalog tables are missing"))
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_write() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `embedstack._write(writer text, VARIADIC "any") RETURNS bigint`: the checked door to the
/// catalog writers (see the module documentation).
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

        // The identities check: as the caller, before any privilege is raised.
        let source = subject_source(subject, &args);
        require_owner(source);

        // Run the writer as the catalog's owner; a restricted operation, as in a maintenance
        // command run on behalf of another role. An error rolls the (sub)transaction back,
        // which restores the user id as well; the normal path restores it below.
        let owner = catalog_owner();
        let (mut saved_user, mut saved_ctx) = (pg_sys::InvalidOid, 0i32);
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_ctx
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let result: Option<i64> = PgTryBuilder::new(|| {
            Spi::connect_mut(|c| c.update(*sql, Some(1), &args).and_then(|t| t.first().get_one::<i64>()))
                .or_internal()
        })
        .finally(|| pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx))
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
