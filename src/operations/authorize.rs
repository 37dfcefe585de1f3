//! Who may change a model set, and who may read its catalog rows.
//!
//! A model set belongs to the owner of its source table. Since 0.3.1 nothing in the extension
//! switches to another role to write the catalog: the catalog tables grant INSERT, UPDATE and
//! DELETE to PUBLIC under row-security policies (sql/catalog_access.sql) that call
//! `_may_write` below, and the writers `_w_*` (sql/catalog_writers.sql) are SECURITY INVOKER and
//! call `_check_owner` first. Everything runs as the caller, so reading vectors, the DDL on the
//! generation tables and the catalog writes are checked by PostgreSQL against the caller's own
//! privileges, and nothing a caller controls (its search_path, its types, casts and operators)
//! can run with anyone else's. (0.3.0's `_write` ran its statement as the catalog's owner, and
//! that statement was parsed with the caller's search_path and cast the caller's arguments: any
//! role could become superuser through it.)
//!
//! The ownership rule checks two identities: `GetUserId()` -- which inside a user's SECURITY
//! DEFINER function is that function's owner -- and the outer user (`GetOuterUserId()`: the
//! session's role or the role chosen with SET ROLE) must both be members of the source table's
//! owner, so that a user's SECURITY DEFINER function cannot lend its caller's ownership to
//! code of its own, nor the other way round (the confused deputy of issue 11).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::datatype::regclass::RegClass;

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
    crate::pg_version::relation_owner_check(relid, role)
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

/// ERROR 42501 unless the calling role (and the outer role) own `source`; 42P01 if it is gone,
/// except for a superuser (who may clean up the catalog rows of a model set whose source went
/// while the event trigger was disabled).
#[pg_extern(stable, strict, parallel_safe)]
fn _check_owner(source: RegClass) {
    require_owner(source.0);
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
    if owns(relid, role) {
        return true;
    }
    let may_select = unsafe {
        pg_sys::pg_class_aclcheck(relid, role, select) == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::pg_attribute_aclcheck_all(relid, role, select, pg_sys::AclMaskHow::ACLMASK_ANY)
                == pg_sys::AclResult::ACLCHECK_OK
    };
    // A role subject to row security on the source may read some of its rows only; the catalog
    // rows (key values in a job's cursor and errors, statistics of the training pairs) and the
    // served view (whose gate refuses such roles) are not filtered by the source's policies, so
    // they are hidden from it altogether.
    may_select && !row_security_applies(relid)
}

/// Does row-level security apply to the current role on `relid` (as `row_security_active`)?
fn row_security_applies(relid: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// May the calling role change the model sets of `source`: both the current and the outer role
/// members of its owner (`require_owner` without the error)? The catalog's row-security
/// policies for INSERT, UPDATE and DELETE use it. False for a relation that no longer exists
/// (superusers, who bypass row security, clean those up), and for a temporary table: a model
/// set outlives the session, and nothing would drop its catalog rows when the session ends.
#[pg_extern(stable, strict, parallel_safe)]
pub fn _may_write(source: RegClass) -> bool {
    let relid = source.0;
    if !relation_exists(relid)
        || unsafe { pg_sys::get_rel_persistence(relid) } == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char
    {
        return false;
    }
    let (current, outer) = unsafe { (pg_sys::GetUserId(), pg_sys::GetOuterUserId()) };
    owns(relid, current) && owns(relid, outer)
}
