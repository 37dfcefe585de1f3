//! A model set's definition read from `embedstack.model_sets` through SPI.

use embedstack_math::combine::Mode;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::datatype::model_value::ModelKind;
use crate::errors::{raise_corrupt_catalog, OrInternal};

/// Output type of a combined column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Vector,
    Halfvec,
}

impl Storage {
    pub fn parse(s: &str) -> Storage {
        match s {
            "vector" => Storage::Vector,
            "halfvec" => Storage::Halfvec,
            other => {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    format!("inconsistent catalog row: storage {other:?}")
                );
                unreachable!()
            }
        }
    }
}

/// The stored layout of the served vectors (or of a 0.2.x staging column).
#[derive(Debug, Clone)]
pub struct Layout {
    pub column: String,
    pub multipliers: Vec<f64>,
    pub storage: Storage,
}

#[derive(Debug, Clone)]
pub struct ModelSetDef {
    pub name: String,
    /// The source table's OID (the catalog's regclass).
    pub source_oid: pg_sys::Oid,
    /// The source table as SQL text (regclass output: quoted, qualified when needed).
    pub source_sql: String,
    pub key_column: String,
    pub model_columns: Vec<String>,
    pub dims: Vec<usize>,
    pub kinds: Vec<ModelKind>,
    pub mode: Mode,
    pub threshold: f64,
    pub active_fit: Option<i64>,
    pub served: Option<Layout>,
    pub staging: Option<Layout>,
    /// The served generation (0.3.0 on; read through to_jsonb, NULL in older catalogs).
    pub served_generation: Option<i64>,
    /// create_model_set's `dims` (0.5.0; NULL: never projected, and in older catalogs).
    pub projection_dims: Option<i32>,
}

/// Every type, function and operator schema-qualified (the callers pin the search path too):
/// `m.source::pg_catalog.text` is the regclass output under the pinned path, so the source is
/// named with its schema unless it is the session's own temporary table.
const QUERY: &str = "
SELECT m.source::pg_catalog.oid AS source_oid, m.source::pg_catalog.text AS source_sql,
       m.key_column::pg_catalog.text AS key_column, m.model_columns::pg_catalog.text[] AS model_columns,
       m.model_dims,
       ARRAY(SELECT t.typname::pg_catalog.text
               FROM pg_catalog.unnest(m.model_types) WITH ORDINALITY u(t, o)
               JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) u.t::pg_catalog.oid
              ORDER BY u.o) AS model_typnames,
       m.mode, m.active_fit, m.combined_column::pg_catalog.text AS combined_column, m.served_multipliers,
       m.served_storage, NULL::pg_catalog.text AS staging_column,
       NULL::pg_catalog.float8[] AS staging_multipliers, NULL::pg_catalog.text AS staging_storage, m.threshold,
       (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.->>) 'served_generation')::pg_catalog.int8 AS served_generation,
       (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.->>) 'projection_dims')::pg_catalog.int4 AS projection_dims
  FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) $1::pg_catalog.text";

/// The catalog of releases 0.1.0-0.2.x (a staging column in the source), read only by the row
/// trigger those releases installed (src/model_set/legacy_row_trigger.rs), which runs with this
/// library until ALTER EXTENSION UPDATE replaces it.
const LEGACY_QUERY: &str = "
SELECT m.source::pg_catalog.oid AS source_oid, m.source::pg_catalog.text AS source_sql,
       m.key_column::pg_catalog.text AS key_column, m.model_columns::pg_catalog.text[] AS model_columns,
       m.model_dims,
       ARRAY(SELECT t.typname::pg_catalog.text
               FROM pg_catalog.unnest(m.model_types) WITH ORDINALITY u(t, o)
               JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) u.t::pg_catalog.oid
              ORDER BY u.o) AS model_typnames,
       m.mode, m.active_fit, m.combined_column::pg_catalog.text AS combined_column, m.served_multipliers,
       m.served_storage, m.staging_column::pg_catalog.text AS staging_column, m.staging_multipliers,
       m.staging_storage, m.threshold, NULL::pg_catalog.int8 AS served_generation,
       NULL::pg_catalog.int4 AS projection_dims
  FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) $1::pg_catalog.text";

/// Loads model set `name`, or raises 42704. Every field is checked for consistency (the
/// lengths of the per-model arrays, dimensions, multipliers), so that no code downstream
/// indexes or allocates from a row it cannot trust.
pub fn load(client: &SpiClient<'_>, name: &str) -> ModelSetDef {
    load_with(client, name, QUERY)
}

/// As `load`, from a catalog of release 0.1.0-0.2.x (with its staging column).
pub fn load_legacy(client: &SpiClient<'_>, name: &str) -> ModelSetDef {
    load_with(client, name, LEGACY_QUERY)
}

fn load_with(client: &SpiClient<'_>, name: &str, query: &str) -> ModelSetDef {
    let table = client.select(query, Some(1), &[name.into()]).or_internal();
    let Some(row) = table.into_iter().next() else {
        // Row security hides the model sets of tables the caller may not read.
        let hidden = client
            .select("SELECT embedstack._model_set_exists($1::pg_catalog.text)", Some(1), &[name.into()])
            .and_then(|t| t.first().get_one::<bool>())
            .or_internal()
            .unwrap_or(false);
        if hidden {
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied for model set \"{name}\""),
                "a model set is visible to the roles that may read its source table"
            );
        }
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("model set \"{name}\" does not exist"),
            "SELECT name FROM embedstack.model_sets lists them; embedstack.create_model_set creates one"
        );
    };
    let text = |col: &str| -> Option<String> {
        row.get_by_name::<String, _>(col)
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &format!("{col}: {e}")))
    };
    let required =
        |col: &str| text(col).unwrap_or_else(|| raise_corrupt_catalog(name, &format!("{col} is NULL")));
    // Multipliers: NULL elements are not 0, they are a broken row.
    let floats = |col: &str| -> Option<Vec<f64>> {
        row.get_by_name::<Vec<Option<f64>>, _>(col)
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &format!("{col}: {e}")))
            .map(|v| {
                v.into_iter()
                    .map(|x| {
                        x.unwrap_or_else(|| raise_corrupt_catalog(name, &format!("{col} contains NULL")))
                    })
                    .collect()
            })
    };
    let layout = |col: &str, mult: &str, storage: &str| match (text(col), floats(mult), text(storage)) {
        (Some(column), Some(multipliers), Some(s)) => {
            Some(Layout { column, multipliers, storage: Storage::parse(&s) })
        }
        _ => None,
    };
    let source_oid = row
        .get_by_name::<pg_sys::Oid, _>("source_oid")
        .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string()))
        .unwrap_or_else(|| raise_corrupt_catalog(name, "source is NULL"));
    let model_columns: Vec<String> = row
        .get_by_name::<Vec<String>, _>("model_columns")
        .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string()))
        .unwrap_or_default();
    let typnames: Vec<String> = row
        .get_by_name::<Vec<String>, _>("model_typnames")
        .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string()))
        .unwrap_or_default();
    let dims: Vec<i32> = row
        .get_by_name::<Vec<i32>, _>("model_dims")
        .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string()))
        .unwrap_or_default();
    let mode = required("mode");
    let def = ModelSetDef {
        name: name.to_string(),
        source_oid,
        source_sql: required("source_sql"),
        key_column: required("key_column"),
        dims: dims
            .iter()
            .map(|&d| {
                if !(1..=crate::datatype::vector::VECTOR_MAX_DIM as i32).contains(&d) {
                    raise_corrupt_catalog(name, &format!("model dimension {d}"))
                }
                d as usize
            })
            .collect(),
        kinds: typnames
            .iter()
            .map(|k| {
                ModelKind::from_typname(k)
                    .unwrap_or_else(|| raise_corrupt_catalog(name, &format!("model type {k}")))
            })
            .collect(),
        model_columns,
        mode: Mode::parse(&mode).unwrap_or_else(|| raise_corrupt_catalog(name, &format!("mode {mode:?}"))),
        threshold: row
            .get_by_name::<f64, _>("threshold")
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string()))
            .unwrap_or(0.05),
        active_fit: row
            .get_by_name::<i64, _>("active_fit")
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string())),
        served: layout("combined_column", "served_multipliers", "served_storage"),
        staging: layout("staging_column", "staging_multipliers", "staging_storage"),
        served_generation: row
            .get_by_name::<i64, _>("served_generation")
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string())),
        projection_dims: row
            .get_by_name::<i32, _>("projection_dims")
            .unwrap_or_else(|e| raise_corrupt_catalog(name, &e.to_string())),
    };
    let k = def.model_columns.len();
    if k == 0 || def.dims.len() != k || def.kinds.len() != k {
        raise_corrupt_catalog(
            name,
            &format!("{k} model columns, {} dimensions, {} types", def.dims.len(), def.kinds.len()),
        );
    }
    for l in [&def.served, &def.staging].into_iter().flatten() {
        if l.multipliers.len() != k || l.multipliers.iter().any(|m| !m.is_finite() || *m < 0.0) {
            raise_corrupt_catalog(name, &format!("multipliers of {} do not fit {k} models", l.column));
        }
    }
    def
}

/// Weights and intercept of fit `id` of model set `name`, or raises 42704.
pub fn fit_weights(client: &SpiClient<'_>, name: &str, id: i64) -> (Vec<f64>, f64) {
    let row = client
        .select(
            "SELECT f.weights, f.intercept FROM embedstack.fits f
              WHERE f.id OPERATOR(pg_catalog.=) $1::pg_catalog.int8
                AND f.model_set OPERATOR(pg_catalog.=) $2::pg_catalog.text",
            Some(1),
            &[id.into(), name.into()],
        )
        .or_internal()
        .next()
        .map(|r| {
            let w = r.get::<Vec<f64>>(1).or_internal().expect("weights NOT NULL");
            let b = r.get::<f64>(2).or_internal().expect("intercept NOT NULL");
            (w, b)
        });
    row.unwrap_or_else(|| {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("fit {id} of model set \"{name}\" does not exist")
        );
        unreachable!()
    })
}

/// `identifier` quoted for SQL.
pub fn ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}

/// The attribute number of user column `column` of relation `relid`, or 0 when there is none
/// (dropped and system columns included).
pub fn attnum(relid: pg_sys::Oid, column: &str) -> i16 {
    let Ok(c) = std::ffi::CString::new(column) else { return 0 };
    // SAFETY: a syscache lookup by relation OID and name.
    let n = unsafe { pg_sys::get_attnum(relid, c.as_ptr()) };
    n.max(0)
}

/// Raises 42703 for the first of `columns` that relation `relid` (named `relation` in the
/// message) lacks, so that queries built from them fail with a clear message instead of deep
/// inside SPI. Looked up by OID: no name is resolved.
pub fn require_columns(relid: pg_sys::Oid, relation: &str, columns: &[&str]) {
    if let Some(c) = columns.iter().find(|c| attnum(relid, c) <= 0) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{c}\" of relation {relation} does not exist")
        );
    }
}

/// The key and model columns of a model set must still exist in its source: a column renamed or
/// dropped since `create_model_set` is 42703 naming the model set and the way back (0.3.0 said
/// only that the column does not exist, P8).
pub fn require_model_set_columns(def: &ModelSetDef, columns: &[&str]) {
    if let Some(c) = columns.iter().find(|c| attnum(def.source_oid, c) <= 0) {
        crate::errors::fail_hint(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "column \"{c}\" of relation {} does not exist: model set \"{}\" reads it",
                def.source_sql, def.name
            ),
            "a column of the model set was renamed or dropped since it was created: rename it back (ALTER TABLE \
             ... RENAME COLUMN), or drop the model set and create it again",
        );
    }
}

/// The learned projection of the served generation (0.5.0, `dims`), if any: read from the
/// generation's row alone (the model set's row was read by [`load`]), through to_jsonb, since a
/// catalog of 0.3.0-0.4.1 (this library runs with it until ALTER EXTENSION UPDATE) has no such
/// column; a model set without `dims` (every one of an older catalog) needs no query.
pub fn served_projection(client: &SpiClient<'_>, def: &ModelSetDef) -> Option<i64> {
    def.projection_dims?;
    let generation = def.served_generation?;
    client
        .select(
            "SELECT (pg_catalog.to_jsonb(g) OPERATOR(pg_catalog.->>) 'projection')::pg_catalog.int8
               FROM embedstack.generations g WHERE g.id OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
            Some(1),
            &[generation.into()],
        )
        .and_then(|t| if t.is_empty() { Ok(None) } else { t.first().get_one::<i64>() })
        .or_internal()
}
