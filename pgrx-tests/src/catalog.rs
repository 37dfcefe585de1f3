//! What the extension records and serves, read back through SQL: fits, the active fit, a
//! table's live columns, its combined vectors, and its rows' versions.

use std::collections::BTreeMap;

use postgres::Client;

/// `(id, weights)` of a new fit.
pub fn fit(c: &mut Client, set: &str, pairs: &str) -> (i64, Vec<f64>) {
    let r = c
        .query_one(
            "SELECT id, weights FROM embedstack.fit($1, $2::text::regclass, 'a', 'b', 'y')",
            &[&set, &pairs],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// The catalog's `active_fit` of a model set.
pub fn active_fit(c: &mut Client, set: &str) -> Option<i64> {
    c.query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = $1", &[&set]).unwrap().get(0)
}

/// Live column names of a table.
pub fn columns(c: &mut Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0
           AND NOT attisdropped ORDER BY attnum",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `id -> combined::real[]` (NULL -> None).
pub fn combined_by_id(c: &mut Client, table: &str, column: &str) -> BTreeMap<i32, Option<Vec<f32>>> {
    c.query(&format!("SELECT id, {column}::real[] FROM {table} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `(id, ctid, xmin)` of every row: unchanged iff no row was rewritten.
pub fn row_versions(c: &mut Client, table: &str) -> Vec<(i32, String, String)> {
    c.query(&format!("SELECT id, ctid::text, xmin::text FROM {table} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}
