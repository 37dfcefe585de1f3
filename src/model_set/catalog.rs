//! A model set's definition read from `embedstack.model_sets` through SPI.

use embedstack_math::combine::Mode;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::datatype::model_value::ModelKind;

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
            other => error!("corrupt catalog: storage {other:?}"),
        }
    }
}

/// The stored layout of a combined (or staging) column.
#[derive(Debug, Clone)]
pub struct Layout {
    pub column: String,
    pub multipliers: Vec<f64>,
    pub storage: Storage,
}

#[derive(Debug, Clone)]
pub struct ModelSetDef {
    pub name: String,
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
}

const QUERY: &str = "
SELECT m.source::oid, m.source::text, m.key_column::text, m.model_columns::text[], m.model_dims,
       ARRAY(SELECT t.typname::text FROM unnest(m.model_types) WITH ORDINALITY u(t, o)
               JOIN pg_catalog.pg_type t ON t.oid = u.t ORDER BY u.o),
       m.mode, m.active_fit, m.combined_column::text, m.served_multipliers, m.served_storage,
       m.staging_column::text, m.staging_multipliers, m.staging_storage, m.threshold
  FROM embedstack.model_sets m WHERE m.name = $1";

/// Loads model set `name`, or raises 42704.
pub fn load(client: &SpiClient<'_>, name: &str) -> ModelSetDef {
    let table = client.select(QUERY, Some(1), &[name.into()]).unwrap_or_else(|e| error!("{e}"));
    let Some(row) = table.into_iter().next() else {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("model set \"{name}\" does not exist"),
            "SELECT name FROM embedstack.model_sets lists them; embedstack.create_model_set creates one"
        );
    };
    let get = |i: usize| -> Option<String> { row.get::<String>(i).unwrap_or_else(|e| error!("{e}")) };
    let floats = |i: usize| -> Option<Vec<f64>> {
        row.get::<Vec<Option<f64>>>(i)
            .unwrap_or_else(|e| error!("{e}"))
            .map(|v| v.into_iter().map(|x| x.unwrap_or(0.0)).collect())
    };
    let layout =
        |col: Option<String>, mult: Option<Vec<f64>>, storage: Option<String>| match (col, mult, storage) {
            (Some(column), Some(multipliers), Some(s)) => {
                Some(Layout { column, multipliers, storage: Storage::parse(&s) })
            }
            _ => None,
        };
    let kinds: Vec<String> = row.get(6).unwrap_or_else(|e| error!("{e}")).unwrap_or_default();
    let dims: Vec<i32> = row.get(5).unwrap_or_else(|e| error!("{e}")).unwrap_or_default();
    let mode = get(7).unwrap_or_default();
    ModelSetDef {
        name: name.to_string(),
        source_sql: get(2).expect("source"),
        key_column: get(3).expect("key_column"),
        model_columns: row.get(4).unwrap_or_else(|e| error!("{e}")).unwrap_or_default(),
        dims: dims.into_iter().map(|d| d as usize).collect(),
        kinds: kinds
            .iter()
            .map(|k| ModelKind::from_typname(k).unwrap_or_else(|| error!("corrupt catalog: model type {k}")))
            .collect(),
        mode: Mode::parse(&mode).unwrap_or_else(|| error!("corrupt catalog: mode {mode:?}")),
        threshold: row.get::<f64>(15).unwrap_or_else(|e| error!("{e}")).unwrap_or(0.05),
        active_fit: row.get::<i64>(8).unwrap_or_else(|e| error!("{e}")),
        served: layout(get(9), floats(10), get(11)),
        staging: layout(get(12), floats(13), get(14)),
    }
}

/// Weights and intercept of fit `id` of model set `name`, or raises 42704.
pub fn fit_weights(client: &SpiClient<'_>, name: &str, id: i64) -> (Vec<f64>, f64) {
    let row = client
        .select(
            "SELECT weights, intercept FROM embedstack.fits WHERE id = $1 AND model_set = $2",
            Some(1),
            &[id.into(), name.into()],
        )
        .unwrap_or_else(|e| error!("{e}"))
        .into_iter()
        .next()
        .map(|r| {
            let w = r.get::<Vec<f64>>(1).unwrap_or_else(|e| error!("{e}")).expect("weights NOT NULL");
            let b = r.get::<f64>(2).unwrap_or_else(|e| error!("{e}")).expect("intercept NOT NULL");
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

/// Raises 42703 for the first of `columns` that `relation` (SQL text of a regclass) lacks, so
/// that queries built from them fail with a clear message instead of deep inside SPI.
pub fn require_columns(client: &SpiClient<'_>, relation: &str, columns: &[&str]) {
    let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let missing: Option<String> = client
        .select(
            "SELECT c FROM unnest($2::text[]) WITH ORDINALITY u(c, o)
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = $1::pg_catalog.regclass AND a.attname = u.c
                                   AND a.attnum > 0 AND NOT a.attisdropped)
              ORDER BY o LIMIT 1",
            Some(1),
            &[relation.into(), cols.into()],
        )
        .and_then(|t| if t.is_empty() { Ok(None) } else { t.first().get_one::<String>() })
        .unwrap_or_else(|e| error!("{e}"));
    if let Some(c) = missing {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{c}\" of relation {relation} does not exist")
        );
    }
}
