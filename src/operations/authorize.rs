//! Who may change a model set: a member of the role that owns its source table.
//!
//! The catalog tables are writable only by the extension's owner; the few functions that write
//! them are SECURITY DEFINER (sql/operations.sql) and call `_check_owner` first. Inside a
//! SECURITY DEFINER function `current_user` is the definer, so the check uses the *outer* user
//! (`GetOuterUserId`: the session user or the role chosen with SET ROLE), i.e. the role that
//! called into the extension. Everything else (reading vectors, ALTER TABLE, the batch
//! UPDATEs) runs as the caller and gets the caller's privileges checked by PostgreSQL itself.

use pgrx::prelude::*;

/// ERROR 42501 unless the calling role is a member of the owner of `source`.
#[pg_extern(stable, strict, parallel_safe)]
fn _check_owner(source: crate::datatype::regclass::RegClass) {
    let relid = source.0;
    let exists = unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    };
    if !exists {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", relid.to_u32())
        );
    }
    let caller = unsafe { pg_sys::GetOuterUserId() };
    if !unsafe { pg_sys::pg_class_ownercheck(relid, caller) } {
        let name =
            unsafe { std::ffi::CStr::from_ptr(pg_sys::get_rel_name(relid)) }.to_string_lossy().into_owned();
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {name} to change its model sets"),
            "model sets are created, fitted, materialised and dropped by the owner of their source table \
             (or a member of the owning role); reading functions need SELECT only"
        );
    }
}
