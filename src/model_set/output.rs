//! Building combined vectors for a row: reading the model values of a row, combining them
//! with a layout's multipliers, and producing a `vector` or `halfvec` datum.

use embedstack_math::combine::{combine_into, layout_width, Block, CombineError};
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;

use super::catalog::Storage;
use super::projection::Basis;
use crate::datatype::halfvec::{HalfvecOutput, HALFVEC_MAX_DIM};
use crate::datatype::model_value::{ModelKind, ModelValue, ValueError};
use crate::datatype::vector::VectorOutput;
use crate::errors::{raise_corrupt_value, raise_null_element, raise_with_message, shown_key_of};

/// Reads one model value (`None` for SQL NULL), raising 22004 for a NULL element.
///
/// # Safety
/// `datum` must be of the type `kind` describes when `is_null` is false.
pub unsafe fn read_model(
    datum: pg_sys::Datum,
    is_null: bool,
    kind: ModelKind,
    key: &dyn Fn() -> String,
    column: &dyn Fn() -> String,
) -> Option<ModelValue> {
    if is_null {
        return None;
    }
    match unsafe { ModelValue::read(datum, kind) } {
        Ok(v) => Some(v),
        Err(ValueError::NullElement(p)) => raise_null_element(&shown_key_of(key), &column(), p),
        Err(ValueError::Corrupt(what)) => raise_corrupt_value(&shown_key_of(key), &column(), &what),
    }
}

/// The combined vector of one row as a datum of `storage`, allocated in the current memory
/// context. Errors name the row's key and the column.
pub fn combined_datum(
    values: &[Option<ModelValue>],
    dims: &[usize],
    multipliers: &[f64],
    storage: Storage,
    key: &dyn Fn() -> String,
    columns: &dyn Fn(usize) -> String,
) -> pg_sys::Datum {
    projected_datum(values, dims, multipliers, storage, key, columns, None)
}

/// [`combined_datum`], then projected onto `projection`'s basis when there is one (a
/// generation of a model set with `dims`): the stored vector is `B x`, `x` the combined vector
/// of the layout, whose width the basis must take.
pub fn projected_datum(
    values: &[Option<ModelValue>],
    dims: &[usize],
    multipliers: &[f64],
    storage: Storage,
    key: &dyn Fn() -> String,
    columns: &dyn Fn(usize) -> String,
    projection: Option<&Basis>,
) -> pg_sys::Datum {
    let blocks: Vec<Option<Block<'_>>> = values.iter().map(|v| v.as_ref().map(ModelValue::block)).collect();
    if let Some(b) = projection {
        // The unprojected width may pass the storage type's limit: only the output is stored.
        check_layout(dims, multipliers, Storage::Vector);
        check_projection(b, dims, multipliers, storage);
        let mut x = vec![0f32; layout_width(dims, multipliers)];
        combine_or_raise(&blocks, dims, multipliers, &mut x, key, columns);
        let mut z = vec![0f32; b.dims];
        b.apply(&x, &mut z);
        return match storage {
            Storage::Vector => {
                let mut out = VectorOutput::zeroed(z.len());
                out.as_mut_slice().copy_from_slice(&z);
                out.into_datum().expect("non-null")
            }
            Storage::Halfvec => HalfvecOutput::from_f32(&z).into_datum(),
        };
    }
    check_layout(dims, multipliers, storage);
    let width = layout_width(dims, multipliers);
    match storage {
        Storage::Vector => {
            let mut out = VectorOutput::zeroed(width);
            combine_or_raise(&blocks, dims, multipliers, out.as_mut_slice(), key, columns);
            out.into_datum().expect("non-null")
        }
        Storage::Halfvec => {
            let mut tmp = vec![0f32; width];
            combine_or_raise(&blocks, dims, multipliers, &mut tmp, key, columns);
            HalfvecOutput::from_f32(&tmp).into_datum()
        }
    }
}

/// A layout the kernels can use: one dimension in 1..=16000 and one finite, non-negative
/// multiplier per model, small enough that no element can overflow the storage type (a block
/// is a unit vector, so every element is at most its multiplier: checked once here instead of
/// scanning every output), and a width the storage type holds. The catalog and the materialise
/// steps only ever pass such layouts; a direct call of the internal row kernels with others is
/// refused here.
pub fn check_layout(dims: &[usize], multipliers: &[f64], storage: Storage) {
    if dims.len() != multipliers.len() {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{} dimensions but {} multipliers", dims.len(), multipliers.len())
        );
    }
    if let Some(d) = dims.iter().find(|&&d| d == 0 || d > crate::datatype::vector::VECTOR_MAX_DIM) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a model has 1 to 16000 dimensions, got {d}")
        );
    }
    if let Some(m) = multipliers.iter().find(|m| !m.is_finite() || **m < 0.0) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("multipliers must be finite and non-negative, got {m}")
        );
    }
    // The largest finite element of each type (binary16 overflows above 65504).
    let (name, largest) = match storage {
        Storage::Vector => ("vector", f32::MAX as f64),
        Storage::Halfvec => ("halfvec", 65504.0),
    };
    if let Some(m) = multipliers.iter().find(|&&m| m > largest) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("multiplier {m} is out of range for {name}: combined elements could exceed {largest}")
        );
    }
    let width = layout_width(dims, multipliers);
    if storage == Storage::Halfvec && width > HALFVEC_MAX_DIM {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("halfvec cannot have more than {HALFVEC_MAX_DIM} dimensions, got {width}")
        );
    }
}

/// A projection applies to exactly the layout it was fitted for (the same multipliers, so the
/// same width), and its output fits the storage type.
pub fn check_projection(b: &Basis, dims: &[usize], multipliers: &[f64], storage: Storage) {
    if b.multipliers != multipliers || b.input() != layout_width(dims, multipliers) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "projection {} maps {} dimensions of another layout, not this one ({} dimensions)",
                b.id,
                b.input(),
                layout_width(dims, multipliers)
            )
        );
    }
    let limit = match storage {
        Storage::Vector => crate::datatype::vector::VECTOR_MAX_DIM,
        Storage::Halfvec => HALFVEC_MAX_DIM,
    };
    if b.dims > limit {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "projection {} has {} dimensions, more than the storage type holds ({limit})",
                b.id, b.dims
            )
        );
    }
}

fn combine_or_raise(
    blocks: &[Option<Block<'_>>],
    dims: &[usize],
    multipliers: &[f64],
    out: &mut [f32],
    key: &dyn Fn() -> String,
    columns: &dyn Fn(usize) -> String,
) {
    if let Err(e) = combine_into(blocks, dims, multipliers, out) {
        // The key as the role may see it (hidden while the freshness trigger runs for a role
        // without SELECT on it).
        let key = shown_key_of(key);
        let msg = match &e {
            CombineError::Dimension { model, expected, found } => format!(
                "row with key {key}: column {} has {found} dimensions, the model set expects {expected}",
                columns(model - 1)
            ),
            CombineError::NonFinite { model, source } => {
                format!("row with key {key}: column {}: {source}", columns(model - 1))
            }
        };
        raise_with_message(&e, msg);
    }
}
