//! Which type OIDs are pgvector's `vector` and `halfvec`.
//!
//! A type is pgvector's when it is a member of the `vector` extension (pg_depend), not when it
//! merely has the name: any role that may create a type can create a `vector` in its own
//! schema, and reading such a value with pgvector's layout would read arbitrary memory. The
//! answer is cached per backend for the OIDs found to be pgvector's; an OID is only reused
//! after the type is dropped and the OID counter wraps around, so a positive answer stays
//! true for the life of the backend in practice, and a negative one is looked up again.

use std::cell::RefCell;

use pgrx::pg_sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgvectorType {
    Vector,
    Halfvec,
}

thread_local! {
    static KNOWN: RefCell<Vec<(pg_sys::Oid, PgvectorType)>> = const { RefCell::new(Vec::new()) };
}

/// `Some(kind)` when `oid` is pgvector's `vector` or `halfvec` type.
pub fn pgvector_type(oid: pg_sys::Oid) -> Option<PgvectorType> {
    if oid == pg_sys::InvalidOid {
        return None;
    }
    if let Some(k) = KNOWN.with(|c| c.borrow().iter().find(|(o, _)| *o == oid).map(|(_, k)| *k)) {
        return Some(k);
    }
    let name = type_name(oid)?;
    let kind = match name.as_str() {
        "vector" => PgvectorType::Vector,
        "halfvec" => PgvectorType::Halfvec,
        _ => return None,
    };
    // SAFETY: catalog lookups of an existing type (type_name found it).
    let owned_by_pgvector = unsafe {
        let ext = pg_sys::getExtensionOfObject(pg_sys::TypeRelationId, oid);
        if ext == pg_sys::InvalidOid {
            false
        } else {
            let n = pg_sys::get_extension_name(ext);
            !n.is_null() && std::ffi::CStr::from_ptr(n).to_bytes() == b"vector"
        }
    };
    if !owned_by_pgvector {
        return None;
    }
    KNOWN.with(|c| c.borrow_mut().push((oid, kind)));
    Some(kind)
}

/// `pg_type.typname` of `oid` from the syscache.
fn type_name(oid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let tup =
            pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::TYPEOID as i32, pg_sys::Datum::from(oid));
        if tup.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_type>(tup);
        let name = std::ffi::CStr::from_ptr((*form).typname.data.as_ptr()).to_string_lossy().into_owned();
        pg_sys::ReleaseSysCache(tup);
        Some(name)
    }
}
