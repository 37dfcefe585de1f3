//! Pair features from a model set's stored columns, through the bounded per-entity cache of
//! `embedstack_math::entity_cache`: each referenced entity is read (detoasted) once per chunk
//! load instead of once per pair it appears in.
//!
//! The key matching is done by Postgres, whatever the key type: a temporary table numbers the
//! referenced entities that exist in the source (`embedstack_pair_keys(k, idx)`), the pairs
//! are read as `(idx_left, idx_right, target, weight)` and the entities by `idx` ranges.

use embedstack_math::entity_cache::{
    accumulate_pairs, bytes_per_entity, chunk_len, chunk_pair, pair_features, schedule, EntityChunk,
    LabelledPair,
};
use embedstack_math::regstats::RegStats;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::catalog::{ident, ModelSetDef};
use super::fit_threads::run_threads;
use super::key_compare::{KeyColumn, KeyCompare};
use super::spi_scan::{fetch_raw, key_text, run};
use crate::datatype::model_value::format_type;
use crate::datatype::model_value::{check_model_attributes, ModelValue, ValueError};
use crate::errors::{
    fail_hint, raise_corrupt_value, raise_null_element, raise_row_error, OrInternal, OrRaise,
};
use crate::settings::entity_cache_bytes;

/// Where the labelled pairs come from.
pub struct PairSource {
    /// The pairs table's OID.
    pub oid: pg_sys::Oid,
    /// The pairs table as SQL text (regclass output under the pinned search path).
    pub table_sql: String,
    pub left: String,
    pub right: String,
    pub target: String,
    pub weight: Option<String>,
}

impl PairSource {
    pub fn new(
        client: &SpiClient<'_>,
        pairs: pg_sys::Oid,
        left: &str,
        right: &str,
        target: &str,
        weight: Option<&str>,
    ) -> Self {
        let table_sql: String = client
            .select("SELECT $1::pg_catalog.regclass::pg_catalog.text", Some(1), &[pairs.into()])
            .and_then(|t| t.first().get_one::<String>())
            .or_internal()
            .unwrap_or_else(|| error!("relation with OID {pairs:?} does not exist"));
        let mut cols = vec![left, right, target];
        cols.extend(weight);
        super::catalog::require_columns(pairs, &table_sql, &cols);
        PairSource {
            oid: pairs,
            table_sql,
            left: left.to_string(),
            right: right.to_string(),
            target: target.to_string(),
            weight: weight.map(str::to_string),
        }
    }
}

/// One labelled pair as read: entity indices (`None` when the key is not in the source),
/// target and weight (`None` when NULL).
struct PairRow {
    a: Option<u32>,
    b: Option<u32>,
    y: Option<f64>,
    w: Option<f64>,
}

/// What the consumer sees for each pair.
pub struct PairView<'a> {
    /// Both keys exist in the source table.
    pub found: bool,
    /// One cosine per model, `None` for a missing or zero vector on either side.
    pub features: &'a [Option<f64>],
    pub y: Option<f64>,
}

/// How the scan's statements compare keys (see key_compare.rs): the source's key with the
/// left and the right pair column, and with itself (the numbered keys with the source).
struct KeyJoins {
    left: KeyCompare,
    right: KeyCompare,
    same: KeyCompare,
}

/// Checks the columns and numbers the source rows the pairs reference, in a temporary table.
fn prepare(client: &mut SpiClient<'_>, def: &ModelSetDef, pairs: &PairSource) -> KeyJoins {
    let mut cols: Vec<&str> = vec![&def.key_column];
    cols.extend(def.model_columns.iter().map(String::as_str));
    super::catalog::require_model_set_columns(def, &cols);
    let joins = key_joins(client, def, pairs);
    let key = ident(&def.key_column);
    let (l, r) = (ident(&pairs.left), ident(&pairs.right));
    let exists = client
        .select("SELECT pg_catalog.to_regclass('pg_temp.embedstack_pair_keys') IS NOT NULL", None, &[])
        .and_then(|t| t.first().get_one::<bool>())
        .or_internal()
        .unwrap_or(false);
    if exists {
        run(client, "DROP TABLE pg_temp.embedstack_pair_keys");
    }
    let sk = format!("s.{key}");
    // `= ANY (… UNION …)`, which the planner turns into a semi-join, when both pair columns
    // compare alike (the same type: always in practice); else one `= ANY` per column.
    let referenced = if joins.left == joins.right {
        let c = &joins.left;
        format!(
            "{sk}{kc} {op} ANY (SELECT p.{l}{oc} FROM {pt} p UNION SELECT p.{r}{oc} FROM {pt} p)",
            kc = c.key_cast,
            op = c.op,
            oc = c.other_cast,
            pt = pairs.table_sql
        )
    } else {
        let any = |c: &KeyCompare, col: &str| {
            format!(
                "{sk}{} {} ANY (SELECT p.{col}{} FROM {} p)",
                c.key_cast, c.op, c.other_cast, pairs.table_sql
            )
        };
        format!("({} OR {})", any(&joins.left, &l), any(&joins.right, &r))
    };
    // Entities are numbered in key order, not scan order, so the features reach the
    // statistics in the same order after the table's rows move (UPDATE, VACUUM FULL, restore).
    // (ORDER BY uses the key type's default btree ordering, found by type, not by name.)
    run(
        client,
        &format!(
            "CREATE TEMP TABLE embedstack_pair_keys AS \
             SELECT {sk} AS k, \
                    (pg_catalog.row_number() OVER (ORDER BY {sk}) OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 AS idx \
               FROM {src} s WHERE {referenced}",
            src = def.source_sql,
        ),
    );
    run(client, "ANALYZE pg_temp.embedstack_pair_keys");
    joins
}

/// The pair keys must compare with the source's key: checked up front, so that a mismatch is
/// 42804 naming both types instead of an error from deep inside the scan. The comparisons are
/// chosen from the key's btree family and the pg_cast rules (key_compare.rs), never by operator
/// name through the search path.
fn key_joins(client: &SpiClient<'_>, def: &ModelSetDef, pairs: &PairSource) -> KeyJoins {
    let key = KeyColumn::load(client, def.source_oid, &def.source_sql, &def.key_column);
    let compare = |col: &str| -> KeyCompare {
        // SAFETY: a column require_columns found.
        let t = unsafe { pg_sys::get_atttype(pairs.oid, super::catalog::attnum(pairs.oid, col)) };
        key.compare_with(t).unwrap_or_else(|| {
            fail_hint(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "column \"{col}\" of {} has type {}, which cannot be compared with the key \"{}\" of {} ({})",
                    pairs.table_sql,
                    format_type(t, -1),
                    def.key_column,
                    def.source_sql,
                    format_type(key.typid, -1)
                ),
                "the pair columns hold keys of the source table: give them the key's type (or pass a view that casts them)",
            )
        })
    };
    let same = key.compare_with(key.typid).unwrap_or_else(|| {
        crate::errors::fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
            format!("the key \"{}\" of {} cannot be compared with itself", def.key_column, def.source_sql),
        )
    });
    KeyJoins { left: compare(&pairs.left), right: compare(&pairs.right), same }
}

/// Reads the pairs, calls `missing` for those with a key not in the source, and
/// `bucket(chunk_i, chunk_j, pairs)` once per scheduled chunk pair with its pairs (sorted by
/// left then right entity, so consecutive pairs share cached vectors).
fn visit_buckets(
    client: &mut SpiClient<'_>,
    def: &ModelSetDef,
    pairs: &PairSource,
    joins: &KeyJoins,
    mut missing: impl FnMut(&PairRow),
    mut bucket: impl FnMut(&EntityChunk, &EntityChunk, &[LabelledPair]),
) {
    let n_entities: i64 = client
        .select("SELECT pg_catalog.count(*) FROM pg_temp.embedstack_pair_keys", None, &[])
        .and_then(|t| t.first().get_one::<i64>())
        .or_internal()
        .unwrap_or(0);
    let n_entities = n_entities as usize;

    let layout: Vec<_> = def.dims.iter().zip(&def.kinds).map(|(&d, k)| (d, k.elem())).collect();
    let per_entity = bytes_per_entity(&layout);
    let len = chunk_len(n_entities, per_entity, entity_cache_bytes());
    let n_chunks = n_entities.div_ceil(len).max(1);
    if n_chunks > 1 {
        run(client, "CREATE INDEX ON pg_temp.embedstack_pair_keys (idx)");
        crate::ereport_hint!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!(
                "{n_entities} entities need {} MB, more than embedstack.entity_cache_size: processing {n_chunks} chunks",
                (n_entities * per_entity) >> 20
            ),
            "raise embedstack.entity_cache_size to read every entity only once"
        );
    }

    let rows = read_pairs(client, pairs, joins);
    let mut known: Vec<LabelledPair> = Vec::with_capacity(rows.len());
    for row in &rows {
        match (row.a, row.b) {
            (Some(a), Some(b)) => known.push(LabelledPair { a, b, y: row.y, w: row.w }),
            _ => missing(row),
        }
    }
    drop(rows);
    // Position of chunk pair (i, j), i ≤ j, in `schedule`.
    let slot = |p: &LabelledPair| {
        let (i, j) = chunk_pair(p.a as usize, p.b as usize, len);
        i * n_chunks - i * (i + 1) / 2 + j
    };
    // A total order (ties broken on the target and weight bits): the statistics are summed in
    // this order, so the same pairs give bitwise the same state whatever order the scan and the
    // join returned them in (refit compares fits with tolerance 0 by default).
    let bits = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
    known.sort_unstable_by_key(|p| (slot(p), p.a, p.b, bits(p.y), bits(p.w)));

    let chunk_range = |c: usize| (c * len, ((c + 1) * len).min(n_entities));
    let mut held: Option<(usize, EntityChunk)> = None;
    let mut start = 0;
    for (s, &(i, j)) in schedule(n_chunks).iter().enumerate() {
        let end = start + known[start..].iter().take_while(|p| slot(p) == s).count();
        if start == end {
            continue;
        }
        if held.as_ref().map(|h| h.0) != Some(i) {
            drop(held.take()); // free before loading the next one
            let (lo, hi) = chunk_range(i);
            held = Some((i, load_chunk(client, def, &joins.same, lo, hi, &layout)));
        }
        let ci = &held.as_ref().unwrap().1;
        let other = (j != i).then(|| {
            let (lo, hi) = chunk_range(j);
            load_chunk(client, def, &joins.same, lo, hi, &layout)
        });
        bucket(ci, other.as_ref().unwrap_or(ci), &known[start..end]);
        start = end;
    }
}

/// Calls `f` once per pair of `pairs` (in no particular order).
pub fn for_each_pair(
    client: &mut SpiClient<'_>,
    def: &ModelSetDef,
    pairs: &PairSource,
    mut f: impl FnMut(PairView<'_>),
) {
    let joins = prepare(client, def, pairs);
    let none = vec![None; def.dims.len()];
    let f = std::cell::RefCell::new(&mut f);
    let mut features = vec![None; def.dims.len()];
    visit_buckets(
        client,
        def,
        pairs,
        &joins,
        |row| (f.borrow_mut())(PairView { found: false, features: &none, y: row.y }),
        |ci, cj, known| {
            let chunk_of = |e: usize| if ci.range().contains(&e) { ci } else { cj };
            for p in known {
                let (a, b) = (p.a as usize, p.b as usize);
                pair_features(chunk_of(a), a, chunk_of(b), b, &mut features);
                (f.borrow_mut())(PairView { found: true, features: &features, y: p.y });
            }
        },
    );
    run(client, "DROP TABLE pg_temp.embedstack_pair_keys");
}

/// Pairs per kernel call between interrupt checks.
const SEGMENT: usize = 1 << 17;

/// The regression statistics of the pairs' features, the per-pair kernel running on
/// `embedstack.fit_threads` threads. The threads only read the Rust-owned cache and write
/// their own statistics; they never call into Postgres, are spawned with every signal
/// blocked (Postgres' handlers must run on the backend's thread), and are joined before
/// this returns or raises.
pub fn pair_statistics(client: &mut SpiClient<'_>, def: &ModelSetDef, pairs: &PairSource) -> RegStats {
    let joins = prepare(client, def, pairs);
    let threads = crate::settings::fit_threads();
    let total = std::cell::RefCell::new(RegStats::new(def.dims.len()));
    let missing = std::cell::Cell::new(0u64);
    visit_buckets(
        client,
        def,
        pairs,
        &joins,
        |_| {
            missing.set(missing.get() + 1);
            total.borrow_mut().skip()
        },
        |ci, cj, known| {
            for segment in known.chunks(SEGMENT) {
                pgrx::check_for_interrupts!();
                let parts = run_threads(threads, segment, |slice| accumulate_pairs(ci, cj, slice));
                for part in parts {
                    let st = part.or_raise();
                    total.borrow_mut().merge(&st).or_raise();
                }
            }
        },
    );
    run(client, "DROP TABLE pg_temp.embedstack_pair_keys");
    let st = total.into_inner();
    report_skipped(def, pairs, &st, missing.get());
    st
}

/// Says how many pairs were skipped and why: a WARNING when a pair names a key the source does
/// not have or more than a tenth were skipped (drivers and pg_cron show no NOTICE: 0.3.0 reported
/// 30% of pairs with unknown keys as a NOTICE), else a NOTICE.
fn report_skipped(def: &ModelSetDef, pairs: &PairSource, st: &RegStats, missing: u64) {
    if st.skipped == 0 {
        return;
    }
    let all = st.n + st.skipped;
    let other = if pairs.weight.is_some() {
        "a NULL or zero vector, a NULL target or a NULL or zero weight"
    } else {
        "a NULL or zero vector or a NULL target"
    };
    let msg = format!(
        "model set \"{}\": {} of {all} pairs of {} skipped ({missing} with a key not in {}, {} with {other})",
        def.name,
        st.skipped,
        pairs.table_sql,
        def.source_sql,
        st.skipped - missing
    );
    let hint = format!(
        "a pair is used when both keys exist in the source table, every model vector of both is present and \
         non-zero, and the target{} not NULL; SELECT * FROM embedstack.check('{}', '{}', '{}', '{}', '{}') counts \
         them with the queries that list them",
        if pairs.weight.is_some() { " and weight are" } else { " is" },
        def.name.replace('\'', "''"),
        pairs.table_sql.replace('\'', "''"),
        pairs.left.replace('\'', "''"),
        pairs.right.replace('\'', "''"),
        pairs.target.replace('\'', "''")
    );
    if missing > 0 || st.skipped * 10 > all {
        crate::ereport_hint!(WARNING, PgSqlErrorCode::ERRCODE_WARNING, msg, hint);
    } else {
        crate::ereport_hint!(NOTICE, PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, msg, hint);
    }
}

fn read_pairs(client: &mut SpiClient<'_>, pairs: &PairSource, joins: &KeyJoins) -> Vec<PairRow> {
    let weight = match &pairs.weight {
        Some(w) => format!("p.{}::pg_catalog.float8", ident(w)),
        None => "1.0::pg_catalog.float8".to_string(),
    };
    let sql = format!(
        "SELECT kl.idx, kr.idx, p.{t}::pg_catalog.float8, {weight} FROM {pt} p \
           LEFT JOIN pg_temp.embedstack_pair_keys kl ON {on_l} \
           LEFT JOIN pg_temp.embedstack_pair_keys kr ON {on_r}",
        t = ident(&pairs.target),
        pt = pairs.table_sql,
        on_l = joins.left.sql("kl.k", &format!("p.{}", ident(&pairs.left))),
        on_r = joins.right.sql("kr.k", &format!("p.{}", ident(&pairs.right))),
    );
    let mut rows = Vec::new();
    let mut cursor = client.open_cursor(sql.as_str(), &[]);
    loop {
        let n = fetch_raw(&mut cursor, |tup, desc| unsafe {
            let int = |c: i32| {
                let mut null = false;
                let d = pg_sys::SPI_getbinval(tup, desc, c, &mut null);
                (!null).then(|| d.value() as i32 as u32)
            };
            let float = |c: i32| {
                let mut null = false;
                let d = pg_sys::SPI_getbinval(tup, desc, c, &mut null);
                (!null).then(|| f64::from_bits(d.value() as u64))
            };
            rows.push(PairRow { a: int(1), b: int(2), y: float(3), w: float(4) });
        });
        if n == 0 {
            break;
        }
    }
    rows
}

/// Reads entities `lo..hi` into a chunk, checking each stored vector.
fn load_chunk(
    client: &SpiClient<'_>,
    def: &ModelSetDef,
    same: &KeyCompare,
    lo: usize,
    hi: usize,
    layout: &[(usize, embedstack_math::entity_cache::ElemKind)],
) -> EntityChunk {
    let cols: Vec<String> = def.model_columns.iter().map(|c| format!("s.{}", ident(c))).collect();
    let key = format!("s.{}", ident(&def.key_column));
    let sql = format!(
        "SELECT k.idx, {key}, {cols} FROM pg_temp.embedstack_pair_keys k JOIN {src} s ON {on} \
          WHERE k.idx OPERATOR(pg_catalog.>=) $1::pg_catalog.int4 AND k.idx OPERATOR(pg_catalog.<) $2::pg_catalog.int4",
        cols = cols.join(", "),
        src = def.source_sql,
        on = same.sql(&key, "k.k"),
    );
    let mut chunk = EntityChunk::new(lo, hi - lo, layout);
    let mut cursor = client.open_cursor(sql.as_str(), &[(lo as i32).into(), (hi as i32).into()]);
    let model_atts: Vec<i32> = (0..def.model_columns.len() as i32).map(|m| 3 + m).collect();
    let mut checked = false;
    loop {
        let n = fetch_raw(&mut cursor, |tup, desc| unsafe {
            // The columns' types as the query returned them, before any value is read with
            // the layout the catalog recorded (ALTER TABLE may have changed a type since).
            if !checked {
                check_model_attributes(
                    desc,
                    &model_atts,
                    &def.kinds,
                    &def.dims,
                    &def.name,
                    &def.source_sql,
                    &def.model_columns,
                );
                checked = true;
            }
            let mut null = false;
            let idx = pg_sys::SPI_getbinval(tup, desc, 1, &mut null).value() as i32 as usize;
            for (m, kind) in def.kinds.iter().enumerate() {
                let d = pg_sys::SPI_getbinval(tup, desc, 3 + m as i32, &mut null);
                if null {
                    continue;
                }
                let key = || key_text(tup, desc, 2);
                let value = match ModelValue::read(d, *kind) {
                    Ok(v) => v,
                    Err(ValueError::NullElement(p)) => raise_null_element(&key(), &def.model_columns[m], p),
                    Err(ValueError::Corrupt(what)) => {
                        raise_corrupt_value(&key(), &def.model_columns[m], &what)
                    }
                };
                let block = value.block();
                match block.norm_sq() {
                    Err(e) => raise_row_error(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        &key(),
                        &def.model_columns[m],
                        &format!("contains an invalid element: {e}"),
                    ),
                    Ok(0.0) => continue, // a zero vector has no direction: no feature
                    Ok(_) => {}
                }
                if let Err(e) = chunk.set(idx, m, block) {
                    crate::errors::raise_dimension_error(
                        &def.name,
                        &key(),
                        &def.model_columns[m],
                        e.found,
                        e.expected,
                    );
                }
            }
        });
        if n == 0 {
            break;
        }
    }
    chunk
}
