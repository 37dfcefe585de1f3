//! A model column's value as stored in a row: pgvector `vector`, `real[]` or `float8[]`,
//! read by layout into a [`Block`] for the core. Detoasted copies are freed on drop, because
//! these are read for every entity of a table inside one call (a fit or a materialise batch)
//! and must not pile up in the calling memory context.

use embedstack_math::combine::Block;
use embedstack_math::entity_cache::ElemKind;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::pgvector_types::{pgvector_type, PgvectorType};
use super::raw_array::{ArrayError, RawArray};
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

    /// From a type OID: `real[]`, `float8[]` (fixed OIDs) or pgvector's `vector` (checked to
    /// be the `vector` extension's type, not merely a type of that name).
    pub fn from_type_oid(oid: pg_sys::Oid) -> Option<Self> {
        if oid == pg_sys::FLOAT4ARRAYOID {
            return Some(ModelKind::Real);
        }
        if oid == pg_sys::FLOAT8ARRAYOID {
            return Some(ModelKind::Float8);
        }
        (pgvector_type(oid) == Some(PgvectorType::Vector)).then_some(ModelKind::Vector)
    }

    /// The SQL spelling, for messages.
    pub fn sql_name(self) -> &'static str {
        match self {
            ModelKind::Vector => "vector",
            ModelKind::Real => "real[]",
            ModelKind::Float8 => "double precision[]",
        }
    }

    pub fn elem(self) -> ElemKind {
        match self {
            ModelKind::Vector | ModelKind::Real => ElemKind::F32,
            ModelKind::Float8 => ElemKind::F64,
        }
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
    /// The value is not a well-formed value of the expected type.
    Corrupt(String),
}

impl ModelValue {
    /// Reads a stored model value. The caller has checked, at the point of use, that the
    /// datum's column really has the type `kind` describes ([`check_model_attribute`]); the
    /// value's own header is checked here too (element type, sizes), so a datum of another
    /// type is an error, not a wild read.
    ///
    /// # Safety
    /// `datum` must be a non-null varlena datum.
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
                    let (oid, size) =
                        if kind == ModelKind::Real { (pg_sys::FLOAT4OID, 4) } else { (pg_sys::FLOAT8OID, 8) };
                    let arr = match RawArray::parse(plain, oid, size) {
                        Ok(a) => a,
                        Err(ArrayError::ElementType { found }) => {
                            return Err(ValueError::Corrupt(format!(
                                "array of type {} where {} was expected",
                                format_type(found, -1),
                                kind.sql_name()
                            )))
                        }
                        Err(ArrayError::Corrupt(what)) => return Err(ValueError::Corrupt(what)),
                    };
                    if let Some(i) = arr.first_null() {
                        return Err(ValueError::NullElement(i));
                    }
                    v.data = arr.data();
                    v.len = arr.len;
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

impl Drop for ModelValue {
    fn drop(&mut self) {
        if self.copied {
            unsafe { pg_sys::pfree(self.plain.cast()) };
        }
    }
}

/// `format_type_with_typemod` as a Rust string.
pub fn format_type(typid: pg_sys::Oid, typmod: i32) -> String {
    unsafe {
        let p = pg_sys::format_type_with_typemod(typid, typmod);
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Checks, where the values are about to be read, that a model column has the type (and,
/// for `vector(n)`, the dimension) the model set was created with. The catalog records the
/// types at creation; `ALTER TABLE … ALTER COLUMN … TYPE` can change them since, and reading a
/// value with the layout of another type would read arbitrary memory. `relation` and `column`
/// only name things in the error.
pub fn check_model_attribute(
    typid: pg_sys::Oid,
    typmod: i32,
    expected: ModelKind,
    dim: usize,
    model_set: &str,
    relation: &str,
    column: &str,
) {
    let found = ModelKind::from_type_oid(typid);
    let dim_ok = expected != ModelKind::Vector || typmod <= 0 || typmod as usize == dim;
    if found == Some(expected) && dim_ok {
        return;
    }
    let wanted = match expected {
        ModelKind::Vector => format!("vector({dim})"),
        k => k.sql_name().to_string(),
    };
    crate::ereport_hint!(
        ERROR,
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!(
            "column \"{column}\" of {relation} has type {}, but model set \"{model_set}\" was created for {wanted}",
            format_type(typid, typmod)
        ),
        "the column was altered after the model set was created: change it back, or drop the model set \
         (embedstack.drop_model_set) and create it again"
    );
}

/// [`check_model_attribute`] for every model column of a tuple descriptor, at the 1-based
/// attribute numbers `attnums` (one per model, in model order).
///
/// # Safety
/// `desc` must be a valid tuple descriptor and every attnum within it.
pub unsafe fn check_model_attributes(
    desc: pg_sys::TupleDesc,
    attnums: &[i32],
    kinds: &[ModelKind],
    dims: &[usize],
    model_set: &str,
    relation: &str,
    columns: &[String],
) {
    for (m, &att) in attnums.iter().enumerate() {
        let (typid, typmod) = unsafe { attribute_type(desc, att) };
        check_model_attribute(typid, typmod, kinds[m], dims[m], model_set, relation, &columns[m]);
    }
}

/// Type and typmod of 1-based attribute `att` of `desc`.
///
/// # Safety
/// `desc` must be a valid tuple descriptor with at least `att` attributes.
pub unsafe fn attribute_type(desc: pg_sys::TupleDesc, att: i32) -> (pg_sys::Oid, i32) {
    unsafe {
        // pgrx's accessor: PostgreSQL 18 moved the attribute array behind `compact_attrs`.
        let td = pgrx::PgTupleDesc::from_pg_unchecked(desc);
        assert!(att >= 1 && att as usize <= td.len(), "attribute number within the descriptor");
        let a = td.get(att as usize - 1).expect("attribute within the descriptor");
        (a.atttypid, a.atttypmod)
    }
}
