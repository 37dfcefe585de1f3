//! `query_vector(model_set, vector[])` and `query_vector(model_set, key)`: the query side of
//! the active fit, to rank a model set's combined column with `<#>`.

use embedstack_math::combine::{scales, Block, Mode};
use pgrx::datum::{AnyElement, DatumWithOid};
use pgrx::prelude::*;

use super::call_cache;
use super::catalog::{self, ident, ModelSetDef};
use super::key_compare::KeyColumn;
use super::output::read_model;
use crate::datatype::model_value::{check_model_attributes, ModelValue};
use crate::datatype::vector::VectorOutput;
use crate::datatype::vector_array::VectorArray;
use crate::errors::{OrInternal, OrRaise};
use crate::operations::pinned_path::with_pinned_search_path;

/// The served layout and the query multipliers over it, and the served generation's learned
/// projection (if any).
fn query_layout(client: &pgrx::spi::SpiClient<'_>, def: &ModelSetDef) -> (Vec<f64>, Option<i64>) {
    (query_multipliers(client, def), catalog::served_projection(client, def))
}

fn query_multipliers(client: &pgrx::spi::SpiClient<'_>, def: &ModelSetDef) -> Vec<f64> {
    let (Some(served), Some(fit)) = (&def.served, def.active_fit) else {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("model set \"{}\" has not been materialised", def.name),
            "CALL embedstack.materialize(model_set) first"
        );
    };
    match def.mode {
        // The query is built like the stored vectors.
        Mode::Symmetric => served.multipliers.clone(),
        Mode::QueryWeighted => {
            let (w, _) = catalog::fit_weights(client, &def.name, fit);
            let s = scales(&w, Mode::QueryWeighted, 0.0).or_raise();
            s.query
        }
    }
}

/// Builds the query `vector` over the stored layout with the query multipliers.
fn build(
    def: &ModelSetDef,
    stored: &[f64],
    (query, projection): &(Vec<f64>, Option<i64>),
    blocks: &[Option<Block<'_>>],
    key: &dyn Fn() -> String,
) -> VectorOutput {
    use embedstack_math::combine::{combine_over_layout, layout_width};
    let mut out = VectorOutput::zeroed(layout_width(&def.dims, stored));
    combine_over_layout(blocks, &def.dims, stored, query, out.as_mut_slice()).or_raise_in(&key());
    // A learned projection (dims): the same basis as the stored vectors, so the inner product
    // of the projected query and a stored vector approximates the unprojected score.
    let Some(id) = *projection else { return out };
    let basis = super::projection::load(id);
    super::output::check_projection(&basis, &def.dims, stored, super::catalog::Storage::Vector);
    let mut z = VectorOutput::zeroed(basis.dims);
    basis.apply(out.as_mut_slice(), z.as_mut_slice());
    z
}

/// The query-side vector of the active fit for one vector per model (NULL = missing model).
#[pg_extern(stable, strict, parallel_safe, name = "query_vector")]
fn query_vector_from_vectors(
    model_set: &str,
    models: VectorArray<'_>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> VectorOutput {
    let mut args = model_set.as_bytes().to_vec();
    args.push(0);
    args.extend_from_slice(models.bytes());
    // Pinned only when the vector is built (a cached result reads nothing).
    call_cache::vector_once(fcinfo, args, || {
        with_pinned_search_path(|| build_from_vectors(model_set, &models))
    })
}

fn build_from_vectors(model_set: &str, models: &VectorArray<'_>) -> VectorOutput {
    let (def, query) = Spi::connect(|client| {
        let def = catalog::load(client, model_set);
        let q = query_layout(client, &def);
        (def, q)
    });
    if models.len() != def.dims.len() {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("model set \"{}\" has {} models, got {} vectors", def.name, def.dims.len(), models.len()),
            "pass one vector per model column, in the model set's order (NULL for a missing one)"
        );
    }
    let stored = def.served.as_ref().expect("checked").multipliers.clone();
    let inputs: Vec<_> = models.iter().collect();
    let blocks: Vec<Option<Block<'_>>> =
        inputs.iter().map(|v| v.as_ref().map(|v| Block::F32(v.as_slice()))).collect();
    build(&def, &stored, &query, &blocks, &|| String::new())
}

/// The query-side vector of the active fit for the stored row with this key (item-to-item).
#[pg_extern(stable, strict, parallel_safe, name = "query_vector")]
fn query_vector_from_key(model_set: &str, key: AnyElement, fcinfo: pg_sys::FunctionCallInfo) -> VectorOutput {
    let mut args = model_set.as_bytes().to_vec();
    args.push(0);
    // SAFETY: a non-null argument (the function is strict) of the type pgrx reports.
    unsafe { call_cache::datum_bytes(key.oid(), key.datum(), &mut args) };
    call_cache::vector_once(fcinfo, args, || {
        with_pinned_search_path(|| build_from_key(model_set, key.datum(), key.oid()))
    })
}

/// The same for a key given as text (a quoted literal: `query_vector('set', '42')` was ambiguous
/// in 0.3.0, and `'42'::text` failed for an integer key): read with the key type's input function,
/// as the literal would be in a comparison with the key column.
#[pg_extern(stable, strict, parallel_safe, name = "query_vector")]
fn query_vector_from_text_key(model_set: &str, key: &str, fcinfo: pg_sys::FunctionCallInfo) -> VectorOutput {
    let mut args = model_set.as_bytes().to_vec();
    args.push(0);
    args.extend_from_slice(&pg_sys::TEXTOID.to_u32().to_le_bytes());
    args.extend_from_slice(key.as_bytes());
    call_cache::vector_once(fcinfo, args, || {
        with_pinned_search_path(|| {
            let datum = key.into_datum().expect("text datum");
            build_from_key(model_set, datum, pg_sys::TEXTOID)
        })
    })
}

fn build_from_key(model_set: &str, key_datum: pg_sys::Datum, key_oid: pg_sys::Oid) -> VectorOutput {
    // Read the row inside SPI, but build the vector outside it: SPI's memory is freed at
    // disconnect, and the result must outlive it.
    let (def, query, raw) = Spi::connect(|client| {
        let def = catalog::load(client, model_set);
        let q = query_layout(client, &def);
        // The key compared with the argument as key_compare.rs chooses (the key's btree
        // equality, schema-qualified, both sides cast to its input types), never by an
        // operator name the parser resolves through the search path.
        super::catalog::require_model_set_columns(&def, &[&def.key_column]);
        let key_column = KeyColumn::load(client, def.source_oid, &def.source_sql, &def.key_column);
        let (key_datum, key_oid) = key_column.resolve_argument(
            &def.name,
            &def.source_sql,
            &def.key_column,
            "a key",
            key_datum,
            key_oid,
        );
        let cmp = key_column.compare_with(key_oid).expect("checked by resolve_argument");
        let cols: Vec<String> = def.model_columns.iter().map(|c| format!("s.{}", ident(c))).collect();
        let sql = format!(
            "SELECT {} FROM {} s WHERE {}",
            cols.join(", "),
            def.source_sql,
            cmp.sql(&format!("s.{}", ident(&def.key_column)), "$1")
        );
        let arg = unsafe { DatumWithOid::new(key_datum, key_oid) };
        let table = client.select(sql.as_str(), Some(2), &[arg]).or_internal();
        let rows = table.len();
        if rows == 0 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
                format!("model set \"{}\": no row of {} has this key", def.name, def.source_sql)
            );
        }
        if rows > 1 {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION,
                format!("model set \"{}\": more than one row of {} has this key", def.name, def.source_sql)
            );
        }
        // The columns' types as the query returned them, before reading any value.
        unsafe {
            let tt = pg_sys::SPI_tuptable;
            let atts: Vec<i32> = (1..=def.model_columns.len() as i32).collect();
            check_model_attributes(
                (*tt).tupdesc,
                &atts,
                &def.kinds,
                &def.dims,
                &def.name,
                &def.source_sql,
                &def.model_columns,
            );
        }
        // Copy the values out of SPI memory as plain f32/f64 vectors.
        let row = table.first();
        let mut raw: Vec<Option<RawBlock>> = Vec::with_capacity(def.dims.len());
        for (m, kind) in def.kinds.iter().enumerate() {
            let d = row.get_datum_by_ordinal(m + 1).or_internal();
            let v: Option<ModelValue> = unsafe {
                read_model(
                    d.unwrap_or(pg_sys::Datum::from(0usize)),
                    d.is_none(),
                    *kind,
                    &|| "given".into(),
                    &|| def.model_columns[m].clone(),
                )
            };
            raw.push(v.map(|v| match v.block() {
                Block::F32(x) => RawBlock::F32(x.to_vec()),
                Block::F64(x) => RawBlock::F64(x.to_vec()),
            }));
        }
        if raw.iter().all(Option::is_none) {
            // Served as a zero vector, which scores 0 with every row: "similar items" would be
            // arbitrary rows (P8 of the 0.3.0 trial).
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!("model set \"{}\": the row with this key has no model vector (every model column is NULL)", def.name),
                "it has nothing to be similar by: give it a vector of at least one model"
            );
        }
        (def, q, raw)
    });
    let stored = def.served.as_ref().expect("checked").multipliers.clone();
    let blocks: Vec<Option<Block<'_>>> = raw
        .iter()
        .map(|b| {
            b.as_ref().map(|b| match b {
                RawBlock::F32(x) => Block::F32(x),
                RawBlock::F64(x) => Block::F64(x),
            })
        })
        .collect();
    build(&def, &stored, &query, &blocks, &|| "row with the given key: ".into())
}

enum RawBlock {
    F32(Vec<f32>),
    F64(Vec<f64>),
}
