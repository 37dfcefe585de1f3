//! Exactness of served vectors for the tests of `items (id int key, m1 vector(3), m2 real[4], …)`
//! sources (partitions.rs, rollback.rs): what a generation of a fit must hold is computed
//! independently — the pure row kernel `embedstack._combine_vector` over the source's current
//! rows, with the multipliers computed here from the fit's weights by the documented rule
//! (reference.rs) — never read back from what the extension serves.

use std::collections::BTreeMap;

use postgres::Client;

use crate::reference::symmetric_multipliers;

/// `key -> combined::real[]` (NULL -> None).
pub type Vectors = BTreeMap<i32, Option<Vec<f32>>>;

/// Rows `(id, m1 vector(3), m2 real[4], note)` for ids `lo..=hi` (`salt` changes the values; `m2`
/// NULL on every 17th id).
pub fn rows(lo: i32, hi: i32, salt: f64) -> String {
    format!(
        "SELECT g, ARRAY[sin(g * 1.1 + {salt}) + 1.5, cos(g * 0.7 + {salt}), sin(g * 0.3 + 1)]::real[]::vector(3),
                CASE WHEN g % 17 = 0 THEN NULL
                     ELSE ARRAY[cos(g * 1.9 + {salt}), sin(g * 2.3) + 1.2, 0.25, cos(g * 0.5 - {salt})]::real[] END,
                'row ' || g
           FROM generate_series({lo}, {hi}) g"
    )
}

/// `pairs (a, b, x1, x2, y)` over `table`: nearby ids with both models, their cosines, `y = 0`
/// (label with [`label`]).
pub fn create_pairs(c: &mut Client, table: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE pairs AS
           SELECT a.id AS a, b.id AS b, 1 - (a.m1 <=> b.m1) AS x1, 1 - (a.m2::vector <=> b.m2::vector) AS x2, 0::float8 AS y
             FROM {table} a JOIN {table} b ON b.id > a.id AND b.id <= a.id + 4
            WHERE a.m2 IS NOT NULL AND b.m2 IS NOT NULL"
    ))
    .unwrap();
}

/// Labels `y = 1 + w1·x1 + w2·x2` (a fit then finds weights close to `(w1, w2)`).
pub fn label(c: &mut Client, w1: f64, w2: f64) {
    c.batch_execute(&format!("UPDATE pairs SET y = 1 + {w1:?} * x1 + {w2:?} * x2")).unwrap();
}

/// What a generation of fit `fit_id` (symmetric, threshold 0.05) must hold over `table` now.
pub fn expected(c: &mut Client, table: &str, fit_id: i64) -> Vectors {
    let w: Vec<f64> =
        c.query_one("SELECT weights FROM embedstack.fits WHERE id = $1", &[&fit_id]).unwrap().get(0);
    let mult = symmetric_multipliers(&w, 0.05);
    c.query(
        &format!(
            "SELECT id, embedstack._combine_vector($1::float8[], '{{3,4}}'::int4[], '{{m1,m2}}'::text[], id, m1, m2)::real[]
               FROM {table}"
        ),
        &[&mult],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `(id, vector::real[])` rows of a query.
pub fn read(c: &mut Client, sql: &str) -> Vectors {
    c.query(sql, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Asserts two key -> vector maps are equal (exactly), naming the differences.
pub fn assert_same(got: &Vectors, want: &Vectors, what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<&i32> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    let extra: Vec<&i32> = got.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    let wrong: Vec<&i32> =
        want.keys().filter(|k| got.get(k).is_some_and(|g| g != &want[k])).take(5).collect();
    panic!(
        "{what}: {} rows served, {} in the source; missing {missing:?}, extra {extra:?}, other vectors {wrong:?}",
        got.len(),
        want.len()
    );
}

/// Asserts the served view of `set` (over `table`, combined column `<set>_combined`) holds exactly
/// the active fit's vectors; returns the active fit.
pub fn assert_view_exact(c: &mut Client, table: &str, set: &str, view: &str, what: &str) -> i64 {
    let active: i64 =
        c.query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = $1", &[&set]).unwrap().get(0);
    let want = expected(c, table, active);
    assert_same(
        &read(c, &format!("SELECT id, {set}_combined::real[] FROM {view}")),
        &want,
        &format!("{what}: view"),
    );
    active
}

/// The distinct keys recorded in generation `generation`'s pending-keys table (empty without one):
/// the rows written since it stopped being served (0.4.0: a retained generation records them
/// instead of being written; the rollback that serves it again writes them first).
pub fn pending_keys(c: &mut Client, generation: i64) -> std::collections::BTreeSet<i32> {
    let rel: Option<String> = c
        .query_one("SELECT pending::text FROM embedstack.generations WHERE id = $1", &[&generation])
        .unwrap()
        .get(0);
    match rel {
        None => Default::default(),
        Some(rel) => c
            .query(&format!("SELECT DISTINCT id FROM {rel}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect(),
    }
}

/// Asserts a generation that records its changed keys is exact but for them: every key whose row
/// differs from `want` (missing, extra, other vector) is recorded in `pending` — so the rollback
/// that writes the recorded keys again serves exactly `want`.
pub fn assert_same_but_recorded(
    got: &Vectors,
    want: &Vectors,
    pending: &std::collections::BTreeSet<i32>,
    what: &str,
) {
    let unrecorded: Vec<&i32> = want
        .keys()
        .chain(got.keys())
        .filter(|k| got.get(k) != want.get(k) && !pending.contains(k))
        .take(5)
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{what}: keys {unrecorded:?} differ from the source and are not recorded ({} rows, {} in the source, {} recorded)",
        got.len(),
        want.len(),
        pending.len()
    );
}
