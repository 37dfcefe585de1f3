//! Pair features from a model set's stored columns, through the bounded per-entity cache of
//! `embedstack_math::entity_cache`: each referenced entity is read (detoasted) once per chunk
//! load instead of once per pair it appears in.
//!
//! The key matching is done by Postgres, whatever the key type: a temporary table numbers the
//! referenced entities that exist in the source (`embedstack_pair_keys(k, idx)`), the pairs
//! are read as `(idx_left, idx_right, target, weight)` and the entities by `idx` ranges.

use embedstack_math::entity_cache::{
    bytes_per_entity, chunk_len, chunk_pair, pair_features, schedule, EntityChunk,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::catalog::{ident, ModelSetDef};
use crate::datatype::model_value::{raise_null_element, ModelValue, ValueError};
use crate::settings::entity_cache_bytes;

const FETCH: i64 = 10_000;

/// Where the labelled pairs come from.
pub struct PairSource {
    /// The pairs table as SQL text.
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
            .select("SELECT $1::pg_catalog.regclass::text", Some(1), &[pairs.into()])
            .and_then(|t| t.first().get_one::<String>())
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or_else(|| error!("relation with OID {pairs:?} does not exist"));
        let mut cols = vec![left, right, target];
        cols.extend(weight);
        super::catalog::require_columns(client, &table_sql, &cols);
        PairSource {
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
    pub w: Option<f64>,
}

/// Calls `f` once per pair of `pairs` (in no particular order).
pub fn for_each_pair(
    client: &mut SpiClient<'_>,
    def: &ModelSetDef,
    pairs: &PairSource,
    f: impl FnMut(PairView<'_>),
) {
    number_entities(client, def, pairs);
    visit(client, def, pairs, f);
    run(client, "DROP TABLE pg_temp.embedstack_pair_keys");
}

/// Numbers the source rows the pairs reference, in a temporary table.
fn number_entities(client: &mut SpiClient<'_>, def: &ModelSetDef, pairs: &PairSource) {
    let key = ident(&def.key_column);
    let (l, r) = (ident(&pairs.left), ident(&pairs.right));
    let exists = client
        .select("SELECT pg_catalog.to_regclass('pg_temp.embedstack_pair_keys') IS NOT NULL", None, &[])
        .and_then(|t| t.first().get_one::<bool>())
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or(false);
    if exists {
        run(client, "DROP TABLE pg_temp.embedstack_pair_keys");
    }
    run(
        client,
        &format!(
            "CREATE TEMP TABLE embedstack_pair_keys AS \
             SELECT s.{key} AS k, (row_number() OVER () - 1)::int4 AS idx FROM {src} s \
              WHERE s.{key} IN (SELECT p.{l} FROM {pt} p UNION SELECT p.{r} FROM {pt} p)",
            src = def.source_sql,
            pt = pairs.table_sql
        ),
    );
    run(client, "ANALYZE pg_temp.embedstack_pair_keys");
}

fn visit(client: &mut SpiClient<'_>, def: &ModelSetDef, pairs: &PairSource, mut f: impl FnMut(PairView<'_>)) {
    let n_entities: i64 = client
        .select("SELECT count(*) FROM pg_temp.embedstack_pair_keys", None, &[])
        .and_then(|t| t.first().get_one::<i64>())
        .unwrap_or_else(|e| error!("{e}"))
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

    let rows = read_pairs(client, pairs);
    let mut features = vec![None; def.dims.len()];
    let mut emit = |row: &PairRow,
                    ca: Option<&EntityChunk>,
                    cb: Option<&EntityChunk>,
                    f: &mut dyn FnMut(PairView<'_>)| {
        match (row.a, row.b, ca, cb) {
            (Some(a), Some(b), Some(ca), Some(cb)) => {
                pair_features(ca, a as usize, cb, b as usize, &mut features);
                f(PairView { found: true, features: &features, y: row.y, w: row.w });
            }
            _ => {
                let none = vec![None; features.len()];
                f(PairView { found: false, features: &none, y: row.y, w: row.w });
            }
        }
    };

    if n_chunks == 1 {
        let chunk = load_chunk(client, def, 0, n_entities, &layout);
        for row in &rows {
            emit(row, Some(&chunk), Some(&chunk), &mut f);
        }
        return;
    }

    // Bucket the pairs by chunk pair (counting sort over the schedule).
    let sched = schedule(n_chunks);
    let slot = |i: usize, j: usize| i * n_chunks - i * (i + 1) / 2 + j; // position of (i, j) in `sched`
    let mut counts = vec![0usize; sched.len() + 1];
    for row in &rows {
        if let (Some(a), Some(b)) = (row.a, row.b) {
            let (i, j) = chunk_pair(a as usize, b as usize, len);
            counts[slot(i, j) + 1] += 1;
        } else {
            emit(row, None, None, &mut f);
        }
    }
    for s in 1..counts.len() {
        counts[s] += counts[s - 1];
    }
    let mut order = vec![0u32; counts[sched.len()]];
    let mut fill = counts.clone();
    for (n, row) in rows.iter().enumerate() {
        if let (Some(a), Some(b)) = (row.a, row.b) {
            let (i, j) = chunk_pair(a as usize, b as usize, len);
            let s = slot(i, j);
            order[fill[s]] = n as u32;
            fill[s] += 1;
        }
    }

    let chunk_range = |c: usize| (c * len, ((c + 1) * len).min(n_entities));
    let mut held: Option<(usize, EntityChunk)> = None;
    for (s, &(i, j)) in sched.iter().enumerate() {
        if counts[s] == counts[s + 1] {
            continue;
        }
        if held.as_ref().map(|h| h.0) != Some(i) {
            drop(held.take()); // free before loading the next one
            let (lo, hi) = chunk_range(i);
            held = Some((i, load_chunk(client, def, lo, hi, &layout)));
        }
        let ci = &held.as_ref().unwrap().1;
        let other = if j == i {
            None
        } else {
            let (lo, hi) = chunk_range(j);
            Some(load_chunk(client, def, lo, hi, &layout))
        };
        let cj = other.as_ref().unwrap_or(ci);
        for &n in &order[counts[s]..counts[s + 1]] {
            let row = &rows[n as usize];
            let (a, b) = (row.a.unwrap() as usize, row.b.unwrap() as usize);
            let chunk_of = |e: usize| if ci.range().contains(&e) { ci } else { cj };
            emit(row, Some(chunk_of(a)), Some(chunk_of(b)), &mut f);
        }
    }
}

fn run(client: &mut SpiClient<'_>, sql: &str) {
    client.update(sql, None, &[]).unwrap_or_else(|e| error!("{e}"));
}

fn read_pairs(client: &mut SpiClient<'_>, pairs: &PairSource) -> Vec<PairRow> {
    let weight = match &pairs.weight {
        Some(w) => format!("p.{}::float8", ident(w)),
        None => "1.0::float8".to_string(),
    };
    let sql = format!(
        "SELECT kl.idx, kr.idx, p.{t}::float8, {weight} FROM {pt} p \
           LEFT JOIN pg_temp.embedstack_pair_keys kl ON kl.k = p.{l} \
           LEFT JOIN pg_temp.embedstack_pair_keys kr ON kr.k = p.{r}",
        t = ident(&pairs.target),
        pt = pairs.table_sql,
        l = ident(&pairs.left),
        r = ident(&pairs.right)
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

/// Fetches up to `FETCH` rows and calls `f` on each raw tuple; frees the batch. Returns the
/// number of rows.
fn fetch_raw(
    cursor: &mut pgrx::spi::SpiCursor<'_>,
    mut f: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) -> usize {
    let table = cursor.fetch(FETCH).unwrap_or_else(|e| error!("{e}"));
    let n = table.len();
    drop(table);
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        if tt.is_null() {
            return 0;
        }
        for i in 0..n {
            f(*(*tt).vals.add(i), (*tt).tupdesc);
        }
        pg_sys::SPI_freetuptable(tt);
    }
    n
}

/// Reads entities `lo..hi` into a chunk, checking each stored vector.
fn load_chunk(
    client: &SpiClient<'_>,
    def: &ModelSetDef,
    lo: usize,
    hi: usize,
    layout: &[(usize, embedstack_math::entity_cache::ElemKind)],
) -> EntityChunk {
    let cols: Vec<String> = def.model_columns.iter().map(|c| format!("s.{}", ident(c))).collect();
    let sql = format!(
        "SELECT k.idx, s.{key}, {cols} FROM pg_temp.embedstack_pair_keys k JOIN {src} s ON s.{key} = k.k \
          WHERE k.idx >= $1 AND k.idx < $2",
        key = ident(&def.key_column),
        cols = cols.join(", "),
        src = def.source_sql
    );
    let mut chunk = EntityChunk::new(lo, hi - lo, layout);
    let mut cursor = client.open_cursor(sql.as_str(), &[(lo as i32).into(), (hi as i32).into()]);
    loop {
        let n = fetch_raw(&mut cursor, |tup, desc| unsafe {
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
                };
                let block = value.block();
                match block.norm_sq() {
                    Err(e) => raise_row_error(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        &key(),
                        &def.model_columns[m],
                        &format!("contains an invalid element: {e}"),
                    ),
                    Ok(n2) if n2 == 0.0 => continue, // a zero vector has no direction: no feature
                    Ok(_) => {}
                }
                if let Err(e) = chunk.set(idx, m, block) {
                    raise_row_error(
                        PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                        &key(),
                        &def.model_columns[m],
                        &format!("has {} dimensions, the model set expects {}", e.found, e.expected),
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

/// Text of column `col` of a tuple (for error messages).
pub unsafe fn key_text(tup: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, col: i32) -> String {
    unsafe {
        let p = pg_sys::SPI_getvalue(tup, desc, col);
        if p.is_null() {
            "NULL".into()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

#[cold]
pub fn raise_row_error(code: PgSqlErrorCode, key: &str, column: &str, what: &str) -> ! {
    ereport!(PgLogLevel::ERROR, code, format!("row with key {key}: column {column} {what}"));
    unreachable!()
}
