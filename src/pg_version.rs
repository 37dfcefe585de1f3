//! Differences between PostgreSQL majors, each behind `cfg` here and only here (the Cargo
//! features `pg15`, `pg17`, `pg18` pick one; pgrx generates the bindings of that major). A new
//! major whose API matches an existing arm is one more feature name in the `cfg` lists below.

use pgrx::pg_sys;

/// Is `role` the owner of relation `relid`, or a member of its owner (or a superuser)?
/// PostgreSQL 16 replaced `pg_class_ownercheck(relid, role)` by the generic
/// `object_ownercheck(classid, objectid, role)`.
pub(crate) fn relation_owner_check(relid: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    #[cfg(feature = "pg15")]
    unsafe {
        pg_sys::pg_class_ownercheck(relid, role)
    }
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    unsafe {
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, role)
    }
}
