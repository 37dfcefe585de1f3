//! `explain(model_set, a_key, b_key, fit_id)`: why two stored rows score what they score — one
//! row per model (its cosine, the fit's weight, their product and its share), the intercept, and
//! a total with the fit's prediction and the score the served index ranks the pair by.

use embedstack_math::combine::{layout_width, scales, Mode};
use embedstack_math::entity_cache::{pair_features, ElemKind, EntityChunk};
use pgrx::datum::{AnyElement, DatumWithOid};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::catalog::{self, ident, ModelSetDef};
use super::key_compare::KeyColumn;
use super::output::read_model;
use crate::datatype::model_value::check_model_attributes;
use crate::errors::{fail, fail_hint, require, OrInternal};
use crate::operations::pinned_path::with_pinned_search_path;

// (The return type is written out in each #[pg_extern]: pgrx's SQL generation reads it there.)
type Row = (String, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<String>);

/// Explains the score of the pair (a, b) of stored rows, keys of the key column's type (or
/// comparable with it). Not STRICT (`fit_id` defaults to NULL): a NULL model set or key is 22004.
#[allow(clippy::type_complexity)] // the six output columns, spelled out for pgrx
#[pg_extern(stable, parallel_restricted, name = "explain")]
fn explain_keys(
    model_set: Option<&str>,
    a_key: Option<AnyElement>,
    b_key: Option<AnyElement>,
    fit_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(model, String),
        name!(cosine, Option<f64>),
        name!(weight, Option<f64>),
        name!(contribution, Option<f64>),
        name!(share, Option<f64>),
        name!(note, Option<String>),
    ),
> {
    let name = require(model_set, "model_set");
    let a = require_key(a_key.map(|k| (k.datum(), k.oid())), "a_key");
    let b = require_key(b_key.map(|k| (k.datum(), k.oid())), "b_key");
    TableIterator::new(with_pinned_search_path(|| explain(name, a, b, fit_id)))
}

/// The same for keys given as text (quoted literals), read with the key type's input function
/// as `query_vector(model_set, text)` reads them.
#[allow(clippy::type_complexity)] // the six output columns, spelled out for pgrx
#[pg_extern(stable, parallel_restricted, name = "explain")]
fn explain_text_keys(
    model_set: Option<&str>,
    a_key: Option<&str>,
    b_key: Option<&str>,
    fit_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(model, String),
        name!(cosine, Option<f64>),
        name!(weight, Option<f64>),
        name!(contribution, Option<f64>),
        name!(share, Option<f64>),
        name!(note, Option<String>),
    ),
> {
    let name = require(model_set, "model_set");
    let text = |k: Option<&str>| k.map(|k| (k.into_datum().expect("text datum"), pg_sys::TEXTOID));
    let a = require_key(text(a_key), "a_key");
    let b = require_key(text(b_key), "b_key");
    TableIterator::new(with_pinned_search_path(|| explain(name, a, b, fit_id)))
}

fn require_key(k: Option<(pg_sys::Datum, pg_sys::Oid)>, what: &str) -> (pg_sys::Datum, pg_sys::Oid) {
    k.unwrap_or_else(|| {
        fail_hint(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be NULL"),
            "explain compares two stored rows: pass the key of each (the key column's value)",
        )
    })
}

/// One key argument: which one (for messages), and its value with its type.
pub(super) struct Side<'a> {
    pub which: &'a str,
    pub datum: pg_sys::Datum,
    pub oid: pg_sys::Oid,
}

fn explain(
    name: &str,
    a: (pg_sys::Datum, pg_sys::Oid),
    b: (pg_sys::Datum, pg_sys::Oid),
    fit_id: Option<i64>,
) -> Vec<Row> {
    Spi::connect(|client| {
        let def: ModelSetDef = catalog::load(client, name);
        let fit = fit_id.or(def.active_fit).or_else(|| super::evaluate::latest_fit(client, name));
        let Some(fit) = fit else {
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("model set \"{name}\" has no fit"),
                "run embedstack.fit first"
            );
        };
        let (weights, intercept) = catalog::fit_weights(client, name, fit);
        let k = def.dims.len();
        if weights.len() != k {
            crate::errors::raise_corrupt_catalog(
                name,
                &format!("fit {fit} has {} weights for {k} models", weights.len()),
            );
        }
        let mut cols: Vec<&str> = vec![&def.key_column];
        cols.extend(def.model_columns.iter().map(String::as_str));
        catalog::require_model_set_columns(&def, &cols);
        let key = KeyColumn::load(client, def.source_oid, &def.source_sql, &def.key_column);
        let sides =
            [Side { which: "a_key", datum: a.0, oid: a.1 }, Side { which: "b_key", datum: b.0, oid: b.1 }]
                .map(|s| as_key_type(&def, &key, s));
        let layout = entity_layout(&def);
        let (ea, pa) = read_entity(client, &def, &key, &sides[0], &layout);
        let (eb, pb) = read_entity(client, &def, &key, &sides[1], &layout);
        let mut x = vec![None; k];
        pair_features(&ea, 0, &eb, 0, &mut x);
        let present = [pa, pb];

        let contributions: Vec<Option<f64>> = x.iter().zip(&weights).map(|(x, w)| x.map(|x| w * x)).collect();
        let abs_sum: f64 = contributions.iter().flatten().map(|c| c.abs()).sum();
        let prediction = contributions.iter().copied().sum::<Option<f64>>().map(|s| s + intercept);

        // Which models the explained fit's served vector leaves out (symmetric mode's threshold).
        let kept: Option<Vec<bool>> = match def.mode {
            Mode::Symmetric => {
                scales(&weights, def.mode, def.threshold).ok().map(|s| (0..k).map(|m| s.keeps(m)).collect())
            }
            Mode::QueryWeighted => Some(vec![true; k]),
        };
        let mut out: Vec<Row> = Vec::with_capacity(k + 2);
        for m in 0..k {
            let mut notes = Vec::new();
            if x[m].is_none() {
                let missing: Vec<&str> = (0..2).filter(|&i| !present[i][m]).map(|i| sides[i].which).collect();
                notes.push(format!(
                    "no cosine: the row given as {} has a NULL or zero vector; the fit has no prediction for such a \
                     pair (it was trained on pairs with every cosine), the served score counts this model 0",
                    missing.join(" and ")
                ));
            }
            if def.mode == Mode::Symmetric {
                match &kept {
                    Some(kept) if !kept[m] => notes.push(format!(
                        "left out of the served vector: weight {:.4} is not above threshold {} x the largest weight {:.4}",
                        weights[m],
                        def.threshold,
                        weights.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    )),
                    None => notes.push("symmetric mode cannot serve this fit (no positive weight)".into()),
                    _ => {}
                }
            }
            let share = contributions[m].filter(|_| abs_sum > 0.0).map(|c| c / abs_sum);
            let note = (!notes.is_empty()).then(|| notes.join("; "));
            out.push((def.model_columns[m].clone(), x[m], Some(weights[m]), contributions[m], share, note));
        }
        out.push((
            "(intercept)".into(),
            None,
            None,
            Some(intercept),
            None,
            Some(format!("the intercept of fit {fit}, added to the prediction")),
        ));
        let (served, served_note) = served_score(client, &def, &key, &sides, fit, &present[0]);
        let prediction_note = if prediction.is_none() {
            "contribution (the prediction) is NULL: a model has no cosine for this pair; "
        } else {
            ""
        };
        out.push((
            "(total)".into(),
            served,
            None,
            prediction,
            None,
            Some(format!("{prediction_note}{served_note}")),
        ));
        out
    })
}

/// Each model's block layout (dimensions, element type), as an `EntityChunk` holds an entity.
pub(super) fn entity_layout(def: &ModelSetDef) -> Vec<(usize, ElemKind)> {
    def.dims.iter().zip(&def.kinds).map(|(&d, k)| (d, k.elem())).collect()
}

/// The row of `side` as a one-entity chunk (its model vectors, exactly as fit and evaluate read
/// a pair's rows: pair_scan.rs), and which of its models have a non-zero vector. P0002 naming
/// the argument when there is no such row. The caller checked the model set's columns.
pub(super) fn read_entity(
    client: &SpiClient<'_>,
    def: &ModelSetDef,
    key: &KeyColumn,
    side: &Side<'_>,
    layout: &[(usize, ElemKind)],
) -> (EntityChunk, Vec<bool>) {
    let mut chunk = EntityChunk::new(0, 1, layout);
    let mut present = vec![false; def.dims.len()];
    read_row(client, def, key, side, &mut chunk, &mut present);
    (chunk, present)
}

/// The key argument as a value the key column compares with (key_compare.rs, as query_vector).
pub(super) fn as_key_type<'a>(def: &ModelSetDef, key: &KeyColumn, s: Side<'a>) -> Side<'a> {
    let (datum, oid) =
        key.resolve_argument(&def.name, &def.source_sql, &def.key_column, s.which, s.datum, s.oid);
    Side { datum, oid, which: s.which }
}

/// Reads the row of `side` (P0002 naming the argument, never the value, when there is none) into
/// the one entity of `chunk`, recording which models have a non-zero vector.
fn read_row(
    client: &SpiClient<'_>,
    def: &ModelSetDef,
    key: &KeyColumn,
    side: &Side<'_>,
    chunk: &mut EntityChunk,
    present: &mut [bool],
) {
    let cmp = key.compare_with(side.oid).expect("checked by as_key_type");
    let cols: Vec<String> = def.model_columns.iter().map(|c| format!("s.{}", ident(c))).collect();
    let sql = format!(
        "SELECT {} FROM {} s WHERE {}",
        cols.join(", "),
        def.source_sql,
        cmp.sql(&format!("s.{}", ident(&def.key_column)), "$1")
    );
    // SAFETY: a datum of the type `oid` names (the argument, or the input function's result).
    let arg = unsafe { DatumWithOid::new(side.datum, side.oid) };
    let table = client.select(sql.as_str(), Some(2), &[arg]).or_internal();
    match table.len() {
        0 => fail_hint(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!(
                "model set \"{}\": no row of {} has the key given as {}",
                def.name, def.source_sql, side.which
            ),
            format!(
                "{} must be a value of the key column \"{}\" of {}",
                side.which, def.key_column, def.source_sql
            ),
        ),
        1 => {}
        _ => fail(
            PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION,
            format!(
                "model set \"{}\": more than one row of {} has the key given as {}",
                def.name, def.source_sql, side.which
            ),
        ),
    }
    // SAFETY: the result of the query just run; its columns are checked before any value is read.
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
    let row = table.first();
    let shown = format!("given as {}", side.which);
    for (m, kind) in def.kinds.iter().enumerate() {
        let d = row.get_datum_by_ordinal(m + 1).or_internal();
        // SAFETY: a value of the column's checked type (or NULL).
        let v = unsafe {
            read_model(
                d.unwrap_or(pg_sys::Datum::from(0usize)),
                d.is_none(),
                *kind,
                &|| shown.clone(),
                &|| def.model_columns[m].clone(),
            )
        };
        let Some(v) = v else { continue };
        let block = v.block();
        match block.norm_sq() {
            Err(e) => fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "model set \"{}\": column {} of the row {shown} contains an invalid element: {e}",
                    def.name, def.model_columns[m]
                ),
            ),
            Ok(0.0) => continue, // a zero vector has no direction: no feature
            Ok(_) => {}
        }
        if let Err(e) = chunk.set(0, m, block) {
            fail_hint(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!(
                    "model set \"{}\": column {} of the row {shown} has {} dimensions, the model set expects {}",
                    def.name, def.model_columns[m], e.found, e.expected
                ),
                format!(
                    "SELECT * FROM embedstack.check('{}') counts the rows of every other dimension",
                    def.name.replace('\'', "''")
                ),
            );
        }
        present[m] = true;
    }
}

/// What the index ranks the pair by, `-(query_vector(model_set, a) <#> v_b)` with `v_b` b's
/// vector in the served view — computed by the served functions themselves, so it is right for
/// any serving layout — and a note saying what is served. NULL when nothing is served.
fn served_score(
    client: &SpiClient<'_>,
    def: &ModelSetDef,
    key: &KeyColumn,
    sides: &[Side<'_>; 2],
    fit: i64,
    a_present: &[bool],
) -> (Option<f64>, String) {
    let (Some(layout), Some(active)) = (&def.served, def.active_fit) else {
        return (
            None,
            "not materialised: nothing is served (CALL embedstack.materialize), cosine is NULL".into(),
        );
    };
    let info = client
        .select(
            "SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.view_name::pg_catalog.text))::pg_catalog.text,
                    embedstack._vector_schema()::pg_catalog.text, g.storage, g.width
               FROM embedstack.model_sets m
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.source::pg_catalog.oid
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
               LEFT JOIN embedstack.generations g ON g.id OPERATOR(pg_catalog.=) m.served_generation
              WHERE m.name OPERATOR(pg_catalog.=) $1::pg_catalog.text",
            Some(1),
            &[def.name.as_str().into()],
        )
        .or_internal()
        .next()
        .map(|r| {
            (
                r.get::<String>(1).or_internal(),
                r.get::<String>(2).or_internal(),
                r.get::<String>(3).or_internal(),
                r.get::<i32>(4).or_internal(),
            )
        });
    let storage = match layout.storage {
        catalog::Storage::Vector => "vector",
        catalog::Storage::Halfvec => "halfvec",
    };
    let (view, vschema, storage, width) = match info {
        Some((view, Some(vs), st, w)) => (
            view,
            vs,
            st.unwrap_or_else(|| storage.into()),
            w.map_or_else(|| layout_width(&def.dims, &layout.multipliers), |w| w as usize),
        ),
        _ => return (None, "the vector extension is not installed: nothing is served".into()),
    };
    let left_out: Vec<&str> = def
        .model_columns
        .iter()
        .zip(&layout.multipliers)
        .filter(|(_, &m)| m == 0.0)
        .map(|(c, _)| c.as_str())
        .collect();
    let mode = match def.mode {
        Mode::Symmetric => "symmetric",
        Mode::QueryWeighted => "query_weighted",
    };
    let mut note = format!(
        "served: {mode}, {storage}({width}) over {} of {} models",
        def.dims.len() - left_out.len(),
        def.dims.len()
    );
    if !left_out.is_empty() {
        note.push_str(&format!(" (left out: {})", left_out.join(", ")));
    }
    note.push_str(&format!(", fit {active}"));
    if active != fit {
        note.push_str(&format!(
            "; fit {fit} is explained but fit {active} is served: cosine is the served fit's score"
        ));
    }
    let Some(view) = view else {
        return (None, format!("{note}; the served view is missing: cosine is NULL"));
    };
    if a_present.iter().all(|p| !p) && !a_has_any_vector(client, def, key, &sides[0]) {
        return (
            None,
            format!("{note}; the row given as a_key has no model vector: no query vector, cosine is NULL"),
        );
    }
    // b's served vector, compared with the key as the source's key is; the query vector built
    // by query_vector itself (the key given with a's type: its own overloads resolve it).
    let cmp = key.compare_with(sides[1].oid).expect("checked by as_key_type");
    let vs = ident(&vschema);
    let sql = format!(
        "SELECT embedstack.query_vector($1::pg_catalog.text, $2)::{vs}.{st} OPERATOR({vs}.<#>) v.{col}
           FROM {view} v WHERE {on}",
        st = ident(&storage),
        col = ident(&layout.column),
        on = cmp.sql(&format!("v.{}", ident(&def.key_column)), "$3"),
    );
    // SAFETY: datums of the types their OIDs name (as_key_type).
    let args = unsafe {
        [
            def.name.as_str().into(),
            DatumWithOid::new(sides[0].datum, sides[0].oid),
            DatumWithOid::new(sides[1].datum, sides[1].oid),
        ]
    };
    let ip = client
        .select(sql.as_str(), Some(1), &args)
        .or_internal()
        .next()
        .map(|r| r.get::<f64>(1).or_internal());
    match ip {
        Some(Some(ip)) => {
            (Some(-ip), format!("{note}; cosine = -(query_vector(model_set, a_key) <#> b's served vector)"))
        }
        _ => (None, format!("{note}; the row given as b_key is not in the served view: cosine is NULL")),
    }
}

/// Whether a's row has any non-NULL model vector (zero vectors included: query_vector serves
/// them as zero blocks, and refuses only a row whose model vectors are all NULL).
fn a_has_any_vector(client: &SpiClient<'_>, def: &ModelSetDef, key: &KeyColumn, a: &Side<'_>) -> bool {
    let cmp = key.compare_with(a.oid).expect("checked by as_key_type");
    let any: Vec<String> = def.model_columns.iter().map(|c| format!("s.{} IS NOT NULL", ident(c))).collect();
    let sql = format!(
        "SELECT {} FROM {} s WHERE {}",
        any.join(" OR "),
        def.source_sql,
        cmp.sql(&format!("s.{}", ident(&def.key_column)), "$1")
    );
    // SAFETY: as in read_row.
    let arg = unsafe { DatumWithOid::new(a.datum, a.oid) };
    client
        .select(sql.as_str(), Some(1), &[arg])
        .or_internal()
        .next()
        .and_then(|r| r.get::<bool>(1).or_internal())
        .unwrap_or(false)
}
