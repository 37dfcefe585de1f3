//! A model column's value as stored in a row: pgvector `vector`, `real[]` or `float8[]`,
//! read by layout into a [`Block`] for the core. Detoasted copies are freed on drop, because
//! these are read for every entity of a table inside one call (a fit or a materialise batch)
//! and must not pile up in the calling memory context.

use embedstack_math::combine::Block;
use embedstack_math::entity_cache::ElemKind;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::vector::VectorInput;

/// The column types a model set accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Vector,
    Real,
    Float8,
}

impl ModelKind {
    /// From `pg_type.typname`: `vector`, `_float4` (real[]), `_float8` (float8[]).
    pub fn from_typname(name: &str) -> Option<Self> {
        match name {
            "vector" => Some(ModelKind::Vector),
            "_float4" => Some(ModelKind::Real),
            "_float8" => Some(ModelKind::Float8),
            _ => None,
        }
    }

    /// From a type OID (array types are fixed OIDs; `vector` is looked up by name).
    pub fn from_type_oid(oid: pg_sys::Oid) -> Option<Self> {
        if oid == pg_sys::FLOAT4ARRAYOID {
            return Some(ModelKind::Real);
        }
        if oid == pg_sys::FLOAT8ARRAYOID {
            return Some(ModelKind::Float8);
        }
        (type_name(oid).as_deref() == Some("vector")).then_some(ModelKind::Vector)
    }

    pub fn elem(self) -> ElemKind {
        match self {
            ModelKind::Vector | ModelKind::Real => ElemKind::F32,
            ModelKind::Float8 => ElemKind::F64,
        }
    }
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

/// A detoasted model value.
pub struct ModelValue {
    plain: *mut pg_sys::varlena,
    copied: bool,
    data: *const u8,
    len: usize,
    kind: ModelKind,
}

/// Why a stored model value cannot be used.
pub enum ValueError {
    /// NULL element at this 1-based position.
    NullElement(usize),
}

impl ModelValue {
    /// # Safety
    /// `datum` must be a non-null datum of the type `kind` describes.
    pub unsafe fn read(datum: pg_sys::Datum, kind: ModelKind) -> Result<Self, ValueError> {
        unsafe {
            let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
            let plain = pg_sys::pg_detoast_datum(raw);
            let copied = plain != raw;
            let mut v = ModelValue { plain, copied, data: std::ptr::null(), len: 0, kind };
            match kind {
                ModelKind::Vector => {
                    let x = VectorInput::from_raw_datum(pg_sys::Datum::from(plain));
                    let s = x.as_slice();
                    v.data = s.as_ptr().cast();
                    v.len = s.len();
                }
                ModelKind::Real | ModelKind::Float8 => {
                    let h = plain.cast::<i32>();
                    let ndim = *h.add(1);
                    let dataoffset = *h.add(2) as usize;
                    let n: usize = (0..ndim as usize).map(|i| *h.add(4 + i) as usize).product();
                    let n = if ndim == 0 { 0 } else { n };
                    if dataoffset != 0 {
                        let bitmap = plain.cast::<u8>().add(16 + 8 * ndim as usize);
                        if let Some(i) = (0..n).find(|&i| *bitmap.add(i / 8) & (1 << (i % 8)) == 0) {
                            return Err(ValueError::NullElement(i + 1));
                        }
                    }
                    let overhead =
                        if dataoffset != 0 { dataoffset } else { maxalign(16 + 8 * ndim as usize) };
                    v.data = plain.cast::<u8>().add(overhead);
                    v.len = n;
                }
            }
            Ok(v)
        }
    }

    pub fn block(&self) -> Block<'_> {
        // SAFETY: `data` points at `len` elements of the kind's type inside `plain`, which
        // lives until drop; array and vector data are at least 4-byte (f32) / 8-byte
        // (float8 arrays are MAXALIGNed after the header) aligned.
        unsafe {
            match self.kind {
                ModelKind::Vector | ModelKind::Real => {
                    Block::F32(std::slice::from_raw_parts(self.data.cast::<f32>(), self.len))
                }
                ModelKind::Float8 => {
                    Block::F64(std::slice::from_raw_parts(self.data.cast::<f64>(), self.len))
                }
            }
        }
    }
}

fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

impl Drop for ModelValue {
    fn drop(&mut self) {
        if self.copied {
            unsafe { pg_sys::pfree(self.plain.cast()) };
        }
    }
}

/// Raises 22004 for a NULL element inside a stored model vector.
#[cold]
pub fn raise_null_element(key: &str, column: &str, position: usize) -> ! {
    crate::ereport_hint!(
        ERROR,
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("row with key {key}: column {column} contains a NULL element at position {position}"),
        "use a NULL array for a missing vector; a NULL element is not a value"
    );
}
