//! Differences between PostgreSQL majors, each behind `cfg` here and only here (the Cargo
//! features `pg15`, `pg17`, `pg18` pick one; pgrx generates the bindings of that major). Each
//! difference has the old major's arm and a `not(...)` arm for every later one, so a new major
//! whose API matches the latest needs nothing here.

use pgrx::pg_sys;

/// Is `role` the owner of relation `relid`, or a member of its owner (or a superuser)?
/// PostgreSQL 16 replaced `pg_class_ownercheck(relid, role)` by the generic
/// `object_ownercheck(classid, objectid, role)`.
pub(crate) fn relation_owner_check(relid: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    #[cfg(feature = "pg15")]
    unsafe {
        pg_sys::pg_class_ownercheck(relid, role)
    }
    #[cfg(not(feature = "pg15"))]
    unsafe {
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, role)
    }
}
