//! Building combined vectors for a row: reading the model values of a row, combining them
//! with a layout's multipliers, and producing a `vector` or `halfvec` datum.

use embedstack_math::combine::{combine_into, layout_width, Block, CombineError};
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;

use super::catalog::Storage;
use crate::datatype::halfvec::HalfvecOutput;
use crate::datatype::model_value::{raise_null_element, ModelKind, ModelValue, ValueError};
use crate::datatype::vector::VectorOutput;

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
        Err(ValueError::NullElement(p)) => raise_null_element(&key(), &column(), p),
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
    let blocks: Vec<Option<Block<'_>>> = values.iter().map(|v| v.as_ref().map(ModelValue::block)).collect();
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

fn combine_or_raise(
    blocks: &[Option<Block<'_>>],
    dims: &[usize],
    multipliers: &[f64],
    out: &mut [f32],
    key: &dyn Fn() -> String,
    columns: &dyn Fn(usize) -> String,
) {
    match combine_into(blocks, dims, multipliers, out) {
        Ok(()) => {}
        Err(CombineError::Dimension { model, expected, found }) => {
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!(
                    "row with key {}: column {} has {found} dimensions, the model set expects {expected}",
                    key(),
                    columns(model - 1)
                ),
                "fix or NULL the row's vector; every row of a model column must have the model's dimension"
            );
        }
        Err(CombineError::NonFinite { model, source }) => {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("row with key {}: column {}: {source}", key(), columns(model - 1))
            );
        }
    }
}
