//! The served vectors of 0.3.0 (docs/design.md §7): generation tables of the extension's making
//! and the served view, against the running project cluster.
//!
//! 1. 2,000 refits (fit + materialise) leave the source table untouched (attributes, every row's
//!    version), retention keeps `1 + embedstack.keep_generations` generations, and the view
//!    serves the active fit's vectors exactly.
//! 2. Rollback serves the previous fit from the retained generation at once (no table, no
//!    index), toggles, and has nothing to serve with `keep_generations = 0`; query-weighted
//!    refits write nothing and roll back to the previous active fit.
//! 3. Freshness of every live generation (served, retained, building) through INSERT,
//!    INSERT ... SELECT, UPDATE (model column, other column, key), DELETE, COPY, TRUNCATE, also
//!    while a job writes (on both sides of its cursor).
//! 4. Privileges: reading the view follows SELECT on the source (later GRANT / REVOKE included,
//!    column grants too); writers without any SELECT keep the generations fresh.
//! 5. DROP TABLE of the source drops the model set, its view and generations (the name can be
//!    used again), or leaves the served view and generation with a WARNING when a user's view
//!    depends on it.
//! 6. `pg_dump -Fd` / `pg_restore` (serial and `-j 2`) of a database with a served and a
//!    retained generation.
//!
//! Expected vectors are never read back from what the extension serves: they come from the
//! pure row kernel `embedstack._combine_vector` applied to the source's current rows, with the
//! multipliers computed here from the fit's weights by the documented rule (symmetric:
//! `sqrt(w_k / w_max)` when `w_k > threshold · w_max`, else 0; query-weighted: all 1), and are
//! compared exactly (same float32 values).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use embedstack_client_tests::exact::{assert_same_but_recorded, pending_keys};
use embedstack_client_tests::sql::sqlstate;
use embedstack_client_tests::{admin, config, connect_as, create_db, drop_db, fresh_db, pg_bin, port};
use postgres::{Client, NoTls};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Threshold of every model set here (the default).
const THRESHOLD: f64 = 0.05;

/// `key -> combined::real[]` (NULL -> None).
type Vectors = BTreeMap<i32, Option<Vec<f32>>>;

/// `(key, ctid, xmin)` of rows.
type RowVersions = Vec<(i32, String, String)>;

/// SQL of rows `(id, m1 vector(3), m2 real[4], note)` for ids `lo..=hi`: deterministic, no zero
/// vector, `m2` NULL on every 17th id; `salt` changes the values.
fn rows_sql(lo: i32, hi: i32, salt: f64) -> String {
    format!(
        "SELECT g, ARRAY[sin(g * 1.1 + {salt}) + 1.5, cos(g * 0.7 + {salt}), sin(g * 0.3 + 1)]::real[]::vector(3),
                CASE WHEN g % 17 = 0 THEN NULL
                     ELSE ARRAY[cos(g * 1.9 + {salt}), sin(g * 2.3) + 1.2, 0.25, cos(g * 0.5 - {salt})]::real[] END,
                'row ' || g
           FROM generate_series({lo}, {hi}) g"
    )
}

/// `table (id int PRIMARY KEY, m1 vector(3), m2 real[], note text)` with the rows `1..=n`.
fn create_source(c: &mut Client, table: &str, n: i32) {
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, m1 vector(3), m2 real[], note text);
         INSERT INTO {table} {}",
        rows_sql(1, n, 0.0)
    ))
    .unwrap();
}

/// `pairs (a, b, x1, x2, y)` over `table`: pairs of nearby ids with both models present, their
/// cosines (pgvector's `<=>`), and `y` set by [`label`].
fn create_pairs(c: &mut Client, table: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE pairs AS
           SELECT a.id AS a, b.id AS b, 1 - (a.m1 <=> b.m1) AS x1, 1 - (a.m2::vector <=> b.m2::vector) AS x2,
                  0::float8 AS y
             FROM {table} a JOIN {table} b ON b.id > a.id AND b.id <= a.id + 4
            WHERE a.m2 IS NOT NULL AND b.m2 IS NOT NULL"
    ))
    .unwrap();
}

/// Labels `y = 1 + w1·x1 + w2·x2`: a fit then finds weights close to `(w1, w2)`.
fn label_sql(w1: f64, w2: f64) -> String {
    format!("UPDATE pairs SET y = 1 + {w1:?} * x1 + {w2:?} * x2")
}

fn label(c: &mut Client, w1: f64, w2: f64) {
    c.batch_execute(&label_sql(w1, w2)).unwrap();
}

/// A new fit of `set` on `pairs`: `(id, weights)`.
fn fit(c: &mut Client, set: &str) -> (i64, Vec<f64>) {
    let r =
        c.query_one("SELECT id, weights FROM embedstack.fit($1, 'pairs', 'a', 'b', 'y')", &[&set]).unwrap();
    (r.get(0), r.get(1))
}

fn materialize(c: &mut Client, set: &str) {
    c.batch_execute(&format!("CALL embedstack.materialize('{set}')")).unwrap();
}

/// The multipliers of the stored blocks, by the documented rule (computed here).
fn stored_multipliers(mode: &str, w: &[f64]) -> Vec<f64> {
    match mode {
        "symmetric" => {
            let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!(max > 0.0, "test precondition: a positive weight, {w:?}");
            w.iter().map(|&x| if x > THRESHOLD * max { (x / max).sqrt() } else { 0.0 }).collect()
        }
        "query_weighted" => vec![1.0; w.len()],
        m => panic!("mode {m}"),
    }
}

/// `(mode, view, combined column)` of a model set.
fn set_info(c: &mut Client, set: &str) -> (String, String, String) {
    let r = c
        .query_one(
            "SELECT mode, view_name::text, combined_column::text FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Weights of a fit.
fn weights(c: &mut Client, fit_id: i64) -> Vec<f64> {
    c.query_one("SELECT weights FROM embedstack.fits WHERE id = $1", &[&fit_id]).unwrap().get(0)
}

/// The multipliers of fit `fit_id` of `set`, computed here.
fn multipliers_of(c: &mut Client, set: &str, fit_id: i64) -> Vec<f64> {
    let (mode, _, _) = set_info(c, set);
    stored_multipliers(&mode, &weights(c, fit_id))
}

/// What a generation with multipliers `mult` must hold: the row kernel over `table`'s rows now.
fn expected(c: &mut Client, table: &str, mult: &[f64]) -> Vectors {
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

/// `key -> vector::real[]` of a relation (the view or a generation table).
fn read_vectors(c: &mut Client, rel: &str, column: &str) -> Vectors {
    c.query(&format!("SELECT id, {column}::real[] FROM {rel}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Asserts two key -> vector maps are equal (exactly), naming the first difference.
fn assert_same(got: &Vectors, want: &Vectors, what: &str) {
    if got == want {
        return;
    }
    for (k, w) in want {
        match got.get(k) {
            None => panic!("{what}: key {k} missing ({} rows, {} expected)", got.len(), want.len()),
            Some(g) if g != w => panic!("{what}: key {k}: got {g:?}, want {w:?}"),
            _ => {}
        }
    }
    let extra: Vec<&i32> = got.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    panic!("{what}: unexpected keys {extra:?} ({} rows, {} expected)", got.len(), want.len());
}

/// Asserts the view of `set` serves its active fit over the rows of `table` now; returns the
/// active fit.
fn assert_view_serves_active(c: &mut Client, table: &str, set: &str, what: &str) -> i64 {
    let r = c
        .query_one(
            "SELECT active_fit, served_multipliers FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    let (active, served): (i64, Vec<f64>) = (r.get(0), r.get(1));
    let mult = multipliers_of(c, set, active);
    assert_eq!(served, mult, "{what}: served_multipliers of fit {active}");
    assert_view_is(c, table, set, &mult, what);
    active
}

/// Asserts the view of `set` holds the layout `mult` over the rows of `table` now.
fn assert_view_is(c: &mut Client, table: &str, set: &str, mult: &[f64], what: &str) {
    let (_, view, combined) = set_info(c, set);
    let want = expected(c, table, mult);
    let got = read_vectors(c, &view, &combined);
    assert_same(&got, &want, &format!("{what}: view {view}"));
}

/// One row of `embedstack.generations`.
#[derive(Debug, Clone, PartialEq)]
struct Generation {
    id: i64,
    relation: Option<String>,
    relid: Option<u32>,
    fit_id: i64,
    multipliers: Vec<f64>,
    state: String,
}

fn generations(c: &mut Client, set: &str) -> Vec<Generation> {
    c.query(
        "SELECT id, relation::text, relation::oid, fit_id, multipliers, state FROM embedstack.generations
          WHERE model_set = $1 ORDER BY id",
        &[&set],
    )
    .unwrap()
    .iter()
    .map(|r| Generation {
        id: r.get(0),
        relation: r.get(1),
        relid: r.get(2),
        fit_id: r.get(3),
        multipliers: r.get(4),
        state: r.get(5),
    })
    .collect()
}

/// Asserts every generation of `set` (served, retained, building) has its table, holds the
/// multipliers of its fit (computed here) and exactly the rows the kernel gives over `table`
/// now -- a retained one but for the keys it recorded since it stopped being served, which the
/// rollback that serves it again writes first (0.4.0); returns how many there are.
fn assert_generations_fresh(c: &mut Client, table: &str, set: &str, what: &str) -> usize {
    let (_, _, combined) = set_info(c, set);
    let gens = generations(c, set);
    for g in &gens {
        let rel = g.relation.clone().unwrap_or_else(|| panic!("{what}: generation {} has no table", g.id));
        let mult = multipliers_of(c, set, g.fit_id);
        assert_eq!(g.multipliers, mult, "{what}: multipliers of generation {} (fit {})", g.id, g.fit_id);
        let want = expected(c, table, &mult);
        let got = read_vectors(c, &rel, &combined);
        let label = format!("{what}: generation {} ({rel}, {})", g.id, g.state);
        if g.state == "retained" {
            let recorded = pending_keys(c, g.id);
            assert_same_but_recorded(&got, &want, &recorded, &label);
        } else {
            assert_same(&got, &want, &label);
        }
    }
    gens.len()
}

/// The view and every generation of `set` agree with the rows of `table` now.
fn assert_fresh(c: &mut Client, table: &str, set: &str, what: &str) {
    assert_view_serves_active(c, table, set, what);
    let n = assert_generations_fresh(c, table, set, what);
    assert!(n >= 1, "{what}: no generation");
}

/// `(model_set, active_fit, served_generation, previous_fit, previous_generation)`.
fn serving(c: &mut Client, set: &str) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
    let r = c
        .query_one(
            "SELECT active_fit, served_generation, previous_fit, previous_generation FROM embedstack.model_sets
              WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// `(oid, name)` of every index in schema public.
fn indexes(c: &mut Client) -> Vec<(u32, String)> {
    c.query(
        "SELECT oid, relname::text FROM pg_class WHERE relkind = 'i' AND relnamespace = 'public'::regnamespace ORDER BY oid",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `(key, ctid, xmin)` of every row of a relation.
fn row_versions(c: &mut Client, rel: &str) -> RowVersions {
    c.query(&format!("SELECT id, ctid::text, xmin::text FROM {rel} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The ordinary tables of schema public whose name starts with `prefix` (generation tables).
fn tables_like(c: &mut Client, prefix: &str) -> Vec<String> {
    c.query(
        "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
            AND starts_with(relname::text, $1) ORDER BY relname",
        &[&prefix],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs `sql` expecting an error with SQLSTATE `code`.
fn expect_code(c: &mut Client, sql: &str, code: &str) {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected {code} from: {sql}"),
        Err(e) => assert_eq!(sqlstate(&e), code, "{sql}: {e:?}"),
    }
}

/// Polls `f` every 2 ms until it returns `Some`, or panics after 3 minutes (a hang guard only).
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(180), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------
// 1. Two thousand refits
// ---------------------------------------------------------------------------------------

/// `pg_attribute` rows `(attnum, attname, atttypid, attisdropped)` of a table.
fn attributes(c: &mut Client, table: &str) -> Vec<(i16, String, u32, bool)> {
    c.query(
        "SELECT attnum, attname::text, atttypid, attisdropped FROM pg_attribute WHERE attrelid = $1::text::regclass
          ORDER BY attnum",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// 2,000 iterations of (new labels, fit, `CALL materialize`) on a 6-row table in symmetric
/// mode, each fit with other weights (so each materialisation writes a generation):
/// * every call succeeds and each writes a new generation (the served generation's id moved
///   by exactly 1,999 from the first);
/// * the source's `pg_attribute` rows and every row's `(ctid, xmin)` are what they were;
/// * `1 + embedstack.keep_generations` (1 by default) generations are left: in the catalog, as
///   tables (`src_s_g*`) and as HNSW indexes, the served one and the previous fit's;
/// * the view serves the last fit's vectors exactly, the retained generation the previous fit's.
#[test]
fn two_thousand_refits_leave_the_source_untouched() {
    const N: usize = 2000;
    let t0 = Instant::now();
    let mut c = fresh_db("st_refits");
    // Durability is not under test here: spare the ~10 WAL flushes of each iteration.
    c.batch_execute("SET synchronous_commit = off").unwrap();
    create_source(&mut c, "src", 6);
    create_pairs(&mut c, "src");
    c.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    let attrs = attributes(&mut c, "src");
    let versions = row_versions(&mut c, "src");
    assert_eq!(versions.len(), 6);
    let keep: i32 =
        c.query_one("SELECT current_setting('embedstack.keep_generations')::int", &[]).unwrap().get(0);
    assert_eq!(keep, 1, "the default of embedstack.keep_generations");

    let mut first_generation = None;
    let mut last_fit = 0;
    for i in 0..N {
        // Labels nudged every iteration: w2 / w1 moves by 2e-4 each time.
        let w2 = 1.0 + 0.0004 * i as f64;
        let r = c
            .simple_query(&format!(
                "{}; SELECT id FROM embedstack.fit('s', 'pairs', 'a', 'b', 'y')",
                label_sql(2.0, w2)
            ))
            .unwrap();
        last_fit = r
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(|s| s.parse::<i64>().unwrap()),
                _ => None,
            })
            .expect("the fit's id");
        c.batch_execute("CALL embedstack.materialize('s')")
            .unwrap_or_else(|e| panic!("iteration {i}: materialize failed: {e:?}"));
        if first_generation.is_none() {
            first_generation = serving(&mut c, "s").1;
        }
        if i % 250 == 249 {
            // Retention holds all along, not only at the end.
            let n = tables_like(&mut c, "src_s_g").iter().filter(|t| !t.contains("_pending")).count();
            assert_eq!(n, 1 + keep as usize, "iteration {i}: generation tables");
        }
    }
    let elapsed = t0.elapsed();

    let (active, served, previous_fit, previous_generation) = serving(&mut c, "s");
    assert_eq!(active, Some(last_fit), "the last fit is active");
    assert_eq!(
        served.unwrap() - first_generation.unwrap(),
        N as i64 - 1,
        "every materialisation wrote a generation of its own"
    );
    assert_eq!(attributes(&mut c, "src"), attrs, "pg_attribute of the source");
    assert_eq!(row_versions(&mut c, "src"), versions, "(ctid, xmin) of the source's rows");
    let triggers: Vec<String> = c
        .query("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'src'::regclass ORDER BY tgname", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(triggers, ["embedstack_s_del", "embedstack_s_ins", "embedstack_s_trunc", "embedstack_s_upd"]);

    // Retention: the served generation and the previous one, nothing else.
    let gens = generations(&mut c, "s");
    assert_eq!(gens.len(), 1 + keep as usize, "generations left: {gens:?}");
    assert_eq!(gens[1].id, served.unwrap());
    assert_eq!((gens[1].state.as_str(), gens[1].fit_id), ("served", last_fit));
    assert_eq!(Some(gens[0].id), previous_generation);
    assert_eq!((gens[0].state.as_str(), Some(gens[0].fit_id)), ("retained", previous_fit));
    let mut names: Vec<String> = gens.iter().map(|g| g.relation.clone().unwrap()).collect();
    names.sort();
    let tables: Vec<String> =
        tables_like(&mut c, "src_s_g").into_iter().filter(|t| !t.ends_with("_pending")).collect();
    assert_eq!(
        tables, names,
        "generation tables in pg_class (besides the retained one's pending-keys table)"
    );
    let hnsw: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
              WHERE a.amname = 'hnsw'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(hnsw, 1 + keep as i64, "HNSW indexes left");

    // What is served: the last fit's layout, exactly; the retained one: the previous fit's.
    assert_view_serves_active(&mut c, "src", "s", "after 2,000 refits");
    assert_eq!(assert_generations_fresh(&mut c, "src", "s", "after 2,000 refits"), 2);
    drop(c);
    drop_db("es_st_refits");
    eprintln!(
        "{N} refits: {:.1}s ({:.0} ms each)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / N as f64
    );
}

// ---------------------------------------------------------------------------------------
// 2. Rollback
// ---------------------------------------------------------------------------------------

/// `(id, relation oid)` of the generations of a model set.
fn generation_oids(c: &mut Client, set: &str) -> Vec<(i64, Option<u32>)> {
    generations(c, set).iter().map(|g| (g.id, g.relid)).collect()
}

/// Fit A then fit B materialised (two layouts: multipliers (1, 1/2) and (1/2, 1)); then:
/// * rollback: A active, A's generation served, B's retained, the view holds A's layout
///   exactly, the generations (ids, tables) and every index (pg_class) as they were;
/// * rollback again: B again, the same way;
/// * `SET embedstack.keep_generations = 0`, materialise C: one generation left, and rollback
///   has nothing to serve (55000), what is served unchanged;
/// * query-weighted model set on the same table: a refit (`cutover => 'always'`) moves the
///   active fit and writes nothing (generations, the generation's rows and their versions, the
///   view unchanged), rollback gives back the previous active fit (same query vector as before).
#[test]
fn rollback_serves_the_previous_fit_instantly() {
    let mut c = fresh_db("st_rollback");
    create_source(&mut c, "src", 200);
    create_pairs(&mut c, "src");
    c.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    label(&mut c, 2.0, 0.5);
    let (fa, _) = fit(&mut c, "s");
    materialize(&mut c, "s");
    label(&mut c, 0.5, 2.0);
    let (fb, _) = fit(&mut c, "s");
    materialize(&mut c, "s");
    let (ma, mb) = (multipliers_of(&mut c, "s", fa), multipliers_of(&mut c, "s", fb));
    assert!((ma[1] - 0.5).abs() < 1e-3 && (mb[0] - 0.5).abs() < 1e-3, "two layouts: {ma:?} {mb:?}");
    let gens = generations(&mut c, "s");
    assert_eq!(gens.len(), 2);
    let (ga, gb) = (gens[0].id, gens[1].id);
    assert_eq!((gens[0].fit_id, gens[1].fit_id), (fa, fb));
    assert_eq!(serving(&mut c, "s"), (Some(fb), Some(gb), Some(fa), Some(ga)));
    assert_view_is(&mut c, "src", "s", &mb, "B served");
    let oids = generation_oids(&mut c, "s");
    let idx = indexes(&mut c);
    let states =
        |c: &mut Client| -> Vec<String> { generations(c, "s").into_iter().map(|g| g.state).collect() };

    c.batch_execute("CALL embedstack.rollback('s')").unwrap();
    assert_eq!(serving(&mut c, "s"), (Some(fa), Some(ga), Some(fb), Some(gb)), "rollback serves A");
    assert_eq!(states(&mut c), ["served", "retained"]);
    assert_view_is(&mut c, "src", "s", &ma, "rolled back to A");
    assert_view_serves_active(&mut c, "src", "s", "rolled back to A");
    assert_eq!(generation_oids(&mut c, "s"), oids, "rollback creates no generation");
    assert_eq!(indexes(&mut c), idx, "rollback builds no index");

    c.batch_execute("CALL embedstack.rollback('s')").unwrap();
    assert_eq!(serving(&mut c, "s"), (Some(fb), Some(gb), Some(fa), Some(ga)), "second rollback serves B");
    assert_eq!(states(&mut c), ["retained", "served"]);
    assert_view_is(&mut c, "src", "s", &mb, "rolled back to B");
    assert_eq!(generation_oids(&mut c, "s"), oids);
    assert_eq!(indexes(&mut c), idx);
    // The served generation is written, the retained one records the keys (0.4.0).
    c.batch_execute(&format!("INSERT INTO src {}", rows_sql(1001, 1010, 0.3))).unwrap();
    assert_fresh(&mut c, "src", "s", "insert after the rollbacks");
    // A rollback holds the model set: a plain materialize refuses until release.
    expect_code(&mut c, "CALL embedstack.materialize('s')", "55000");
    c.batch_execute("SELECT embedstack.release('s')").unwrap();

    // keep_generations = 0: nothing retained, nothing to roll back to.
    c.batch_execute("SET embedstack.keep_generations = 0").unwrap();
    label(&mut c, 1.0, 1.0);
    let (fc, _) = fit(&mut c, "s");
    materialize(&mut c, "s");
    let gens = generations(&mut c, "s");
    assert_eq!(gens.len(), 1, "keep_generations = 0 keeps only the served generation: {gens:?}");
    assert_eq!((gens[0].fit_id, gens[0].state.as_str()), (fc, "served"));
    assert_eq!(tables_like(&mut c, "src_s_g"), [gens[0].relation.clone().unwrap()]);
    let before = serving(&mut c, "s");
    expect_code(&mut c, "CALL embedstack.rollback('s')", "55000");
    assert_eq!(serving(&mut c, "s"), before, "a refused rollback changes nothing");
    assert_eq!(before.0, Some(fc));
    assert_view_serves_active(&mut c, "src", "s", "after the refused rollback");
    c.batch_execute("RESET embedstack.keep_generations").unwrap();

    // Query-weighted: a refit is a catalog switch, and so is its rollback.
    c.batch_execute(
        "SELECT embedstack.create_model_set('q', 'src', 'id', ARRAY['m1', 'm2'], mode => 'query_weighted')",
    )
    .unwrap();
    label(&mut c, 1.5, -0.7);
    let (q1, _) = fit(&mut c, "q");
    materialize(&mut c, "q");
    assert_view_serves_active(&mut c, "src", "q", "q: fit 1");
    let gens = generations(&mut c, "q");
    assert_eq!(gens.len(), 1);
    let qrel = gens[0].relation.clone().unwrap();
    let rows = row_versions(&mut c, &qrel);
    let (_, qview, qcomb) = set_info(&mut c, "q");
    let view_before = read_vectors(&mut c, &qview, &qcomb);
    let qv = |c: &mut Client| -> String {
        c.query_one("SELECT embedstack.query_vector('q', 5)::text", &[]).unwrap().get(0)
    };
    let qv1 = qv(&mut c);
    let idx = indexes(&mut c);
    label(&mut c, -0.4, 1.8);
    c.batch_execute("CALL embedstack.refit('q', 'pairs', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let q2: i64 =
        c.query_one("SELECT max(id) FROM embedstack.fits WHERE model_set = 'q'", &[]).unwrap().get(0);
    assert!(q2 > q1);
    assert_eq!(serving(&mut c, "q"), (Some(q2), Some(gens[0].id), Some(q1), Some(gens[0].id)));
    assert_eq!(generations(&mut c, "q").len(), 1, "a query-weighted refit writes no generation");
    assert_eq!(generations(&mut c, "q")[0].relid, gens[0].relid);
    assert_eq!(row_versions(&mut c, &qrel), rows, "a query-weighted refit rewrites no row");
    assert_eq!(read_vectors(&mut c, &qview, &qcomb), view_before, "q: the view is unchanged");
    assert_eq!(indexes(&mut c), idx, "a query-weighted refit builds no index");
    let qv2 = qv(&mut c);
    assert_ne!(qv2, qv1, "the query side follows the new fit");
    c.batch_execute("CALL embedstack.rollback('q')").unwrap();
    assert_eq!(
        serving(&mut c, "q"),
        (Some(q1), Some(gens[0].id), Some(q2), Some(gens[0].id)),
        "q: rolled back"
    );
    assert_eq!(qv(&mut c), qv1, "q: the query side of fit 1 again");
    assert_eq!(row_versions(&mut c, &qrel), rows);
    assert_eq!(indexes(&mut c), idx);
    assert_view_serves_active(&mut c, "src", "q", "q: rolled back");
    drop(c);
    drop_db("es_st_rollback");
}

// ---------------------------------------------------------------------------------------
// 3. Freshness
// ---------------------------------------------------------------------------------------

/// `(key, ctid, xmin)` of the given keys in every generation table of `set`.
/// (Of the generations the freshness triggers write: not the retained ones, which record the keys
/// instead since 0.4.0.)
fn generation_row_versions(c: &mut Client, set: &str, keys: &[i32]) -> Vec<(i64, RowVersions)> {
    let gens = generations(c, set);
    gens.iter()
        .filter(|g| g.state != "retained")
        .map(|g| {
            let rel = g.relation.clone().unwrap();
            let rows = c
                .query(
                    &format!("SELECT id, ctid::text, xmin::text FROM {rel} WHERE id = ANY($1) ORDER BY id"),
                    &[&keys],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            (g.id, rows)
        })
        .collect()
}

/// Fit A then B materialised (B served, A retained); then, each followed by the check that
/// the view and both generations hold exactly the kernel's vectors of the source's current
/// rows, each for its own fit: INSERT of one row, INSERT ... SELECT of 1,000, UPDATE of a model
/// column, UPDATE of the note only (and `m1 = m1`: the generations' rows keep their ctid and
/// xmin), UPDATE of the key, DELETE, COPY FROM STDIN, TRUNCATE, INSERT again.
/// Then during a job (fit C, `batch_size => 10`, another session): while it is in its write
/// phase (status.phase), holding the job's next batch back (ROW EXCLUSIVE on the generation it
/// writes), inserts, model updates, note updates, deletes and key moves below and above its
/// cursor; once it completes, C's generation (served), B's (retained) and the view are exact.
#[test]
fn freshness_insert_update_delete_truncate_copy() {
    let db = "es_st_fresh";
    let mut c = fresh_db("st_fresh");
    create_source(&mut c, "src", 300);
    create_pairs(&mut c, "src");
    c.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    label(&mut c, 2.0, 0.7);
    fit(&mut c, "s");
    materialize(&mut c, "s");
    label(&mut c, 0.6, 2.0);
    fit(&mut c, "s");
    materialize(&mut c, "s");
    assert_eq!(generations(&mut c, "s").len(), 2, "served and retained");
    assert_fresh(&mut c, "src", "s", "materialised");

    c.batch_execute("INSERT INTO src VALUES (5000, '[0.5,-1,2]', '{1,2,3,4}', 'single')").unwrap();
    assert_fresh(&mut c, "src", "s", "INSERT of one row");
    c.batch_execute(&format!("INSERT INTO src {}", rows_sql(10_001, 11_000, 0.9))).unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM src", &[]).unwrap().get(0);
    assert_eq!(n, 1301);
    assert_fresh(&mut c, "src", "s", "INSERT ... SELECT of 1,000 rows");
    c.batch_execute("UPDATE src SET m1 = m1 + '[0.25,-0.5,0.125]' WHERE id % 7 = 0").unwrap();
    assert_fresh(&mut c, "src", "s", "UPDATE of a vector model column");
    c.batch_execute("UPDATE src SET m2 = ARRAY[1, 0.5, id % 3, 2]::real[] WHERE id % 11 = 3").unwrap();
    c.batch_execute("UPDATE src SET m2 = NULL WHERE id IN (12, 13)").unwrap();
    c.batch_execute("UPDATE src SET m2 = '{3,1,4,1}' WHERE id = 34").unwrap(); // was NULL (17 | 34)
    assert_fresh(&mut c, "src", "s", "UPDATE of the real[] model column");

    let keys = [20, 21, 22, 10_500];
    let versions = generation_row_versions(&mut c, "s", &keys);
    assert!(versions.iter().all(|(_, rows)| rows.len() == keys.len()));
    c.batch_execute("UPDATE src SET note = note || ' (edited)' WHERE id = ANY('{20,21,22,10500}')").unwrap();
    c.batch_execute("UPDATE src SET m1 = m1, m2 = m2, note = 'same vectors' WHERE id IN (20, 21)").unwrap();
    assert_eq!(
        generation_row_versions(&mut c, "s", &keys),
        versions,
        "an UPDATE that changes no model value rewrites no generation row"
    );
    assert_fresh(&mut c, "src", "s", "UPDATE of the note");

    c.batch_execute("UPDATE src SET id = id + 100000 WHERE id IN (3, 4, 10700)").unwrap();
    c.batch_execute("UPDATE src SET id = -id WHERE id = 5").unwrap();
    for g in generations(&mut c, "s").into_iter().filter(|g| g.state != "retained") {
        // (The retained generation records the keys instead: assert_fresh checks it.)
        let rel = g.relation.unwrap();
        let keys: Vec<i32> = c
            .query(&format!("SELECT id FROM {rel} WHERE id IN (3, 4, 5, 10700, 100003, 100004, 110700, -5) ORDER BY id"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(keys, [-5, 100003, 100004, 110700], "old keys replaced by the new ones in {rel}");
    }
    assert_fresh(&mut c, "src", "s", "UPDATE of the key");

    c.batch_execute("DELETE FROM src WHERE id % 5 = 0 OR id = 100003").unwrap();
    assert_fresh(&mut c, "src", "s", "DELETE");

    // One statement that deletes and inserts the same key (a DELETE and an INSERT trigger after
    // the same statement), an upsert (INSERT and UPDATE triggers), MERGE.
    c.batch_execute(
        "WITH d AS (DELETE FROM src WHERE id IN (7, 8) RETURNING *)
         INSERT INTO src SELECT id, m1 + '[1,1,1]', m2, note FROM d",
    )
    .unwrap();
    assert_fresh(&mut c, "src", "s", "DELETE and INSERT of the same keys in one statement");
    c.batch_execute(
        "INSERT INTO src VALUES (9, '[5,5,1]', '{1,1,1,1}', 'upsert'), (6000, '[1,2,2]', '{1,0,0,0}', 'new')
             ON CONFLICT (id) DO UPDATE SET m1 = EXCLUDED.m1, note = EXCLUDED.note",
    )
    .unwrap();
    assert_fresh(&mut c, "src", "s", "INSERT ... ON CONFLICT DO UPDATE");
    c.batch_execute(
        "MERGE INTO src s USING (VALUES (11, '[7,7,7]'::vector), (6001, '[1,0,1]'::vector), (12, NULL)) v(id, m)
            ON s.id = v.id
          WHEN MATCHED AND v.m IS NULL THEN DELETE
          WHEN MATCHED THEN UPDATE SET m1 = v.m
          WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.m, '{1,2,3,4}', 'merged')",
    )
    .unwrap();
    assert_fresh(&mut c, "src", "s", "MERGE");

    {
        let mut w = c.copy_in("COPY src (id, m1, m2, note) FROM STDIN").unwrap();
        for i in 0..200 {
            let id = 20_000 + i;
            let m2 = if i % 9 == 0 {
                "\\N".to_string()
            } else {
                format!("{{{},{},0.5,{}}}", i % 4, 1 + i % 3, -(i % 5))
            };
            writeln!(w, "{id}\t[{},{},1.5]\t{m2}\tcopied", 1 + i % 6, -(i % 7)).unwrap();
        }
        w.finish().unwrap();
    }
    assert_fresh(&mut c, "src", "s", "COPY FROM STDIN");

    c.batch_execute("TRUNCATE src").unwrap();
    for g in generations(&mut c, "s") {
        let n: i64 =
            c.query_one(&format!("SELECT count(*) FROM {}", g.relation.unwrap()), &[]).unwrap().get(0);
        assert_eq!(n, 0, "TRUNCATE empties generation {}", g.id);
    }
    assert_fresh(&mut c, "src", "s", "TRUNCATE");
    c.batch_execute(&format!("INSERT INTO src {}", rows_sql(1, 3000, 1.7))).unwrap();
    assert_fresh(&mut c, "src", "s", "INSERT after TRUNCATE");

    // During a job: fit C (on pairs of the current rows) materialised 10 rows per batch by
    // another session.
    c.batch_execute("DROP TABLE pairs").unwrap();
    create_pairs(&mut c, "src");
    label(&mut c, 1.0, 1.3);
    let (fc, _) = fit(&mut c, "s");
    let last_job: i64 = c.query_one("SELECT coalesce(max(id), 0) FROM embedstack.jobs", &[]).unwrap().get(0);
    let job = thread::spawn(move || {
        let mut j = connect_as(db, "postgres");
        j.batch_execute(&format!("CALL embedstack.materialize('s', {fc}, 10)")).map_err(|e| format!("{e:?}"))
    });
    poll("the job in its write phase with rows written", || {
        let r = c
            .query_opt(
                "SELECT job_id, phase, rows_done, job_state FROM embedstack.status WHERE model_set = 's'",
                &[],
            )
            .unwrap()?;
        let (id, phase, done, state): (Option<i64>, Option<String>, Option<i64>, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if id? <= last_job {
            return None;
        }
        assert!(
            state.as_deref() == Some("running") && matches!(phase.as_deref(), Some("prepare" | "write")),
            "the job went past its write phase before the test could act: {phase:?} {state:?}"
        );
        (phase.as_deref() == Some("write") && done? >= 50).then_some(())
    });
    let mut tx = c.transaction().unwrap();
    let building: String = tx
        .query_one(
            "SELECT relation::text FROM embedstack.generations WHERE model_set = 's' AND state = 'building'",
            &[],
        )
        .unwrap()
        .get(0);
    // The next batch waits for this transaction: the cursor stays where it is until COMMIT.
    tx.batch_execute(&format!("LOCK TABLE {building} IN ROW EXCLUSIVE MODE")).unwrap();
    let cursor: i32 = tx
        .query_one(
            "SELECT cursor_key::int FROM embedstack.generations WHERE model_set = 's' AND state = 'building'",
            &[],
        )
        .unwrap()
        .get(0);
    let phase: String =
        tx.query_one("SELECT phase FROM embedstack.status WHERE model_set = 's'", &[]).unwrap().get(0);
    assert_eq!(phase, "write");
    assert!((50..2900).contains(&cursor), "cursor {cursor}: rows on both sides");
    let below: Vec<i32> = tx
        .query("SELECT id FROM src WHERE id <= $1 AND m2 IS NOT NULL ORDER BY id DESC LIMIT 5", &[&cursor])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let above: Vec<i32> = tx
        .query("SELECT id FROM src WHERE id > $1 AND m2 IS NOT NULL ORDER BY id LIMIT 5", &[&cursor])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!((below.len(), above.len()), (5, 5));
    let in_building = |tx: &mut postgres::Transaction, k: i32| -> bool {
        tx.query_one(&format!("SELECT count(*) FROM {building} WHERE id = $1"), &[&k])
            .unwrap()
            .get::<_, i64>(0)
            == 1
    };
    assert!(in_building(&mut tx, below[0]) && !in_building(&mut tx, above[0]), "the cursor splits the rows");
    tx.execute(
        "UPDATE src SET m1 = '[9,-8,7]', m2 = '{0.5,0.25,0,1}' WHERE id IN ($1, $2)",
        &[&below[0], &above[0]],
    )
    .unwrap();
    tx.execute("UPDATE src SET note = 'note only' WHERE id IN ($1, $2)", &[&below[1], &above[1]]).unwrap();
    tx.execute("DELETE FROM src WHERE id IN ($1, $2)", &[&below[2], &above[2]]).unwrap();
    // Key moves across the cursor: below -> above, above -> below.
    tx.execute("UPDATE src SET id = id + 2000000 WHERE id = $1", &[&below[3]]).unwrap();
    tx.execute("UPDATE src SET id = -id WHERE id = $1", &[&above[3]]).unwrap();
    tx.batch_execute(
        "INSERT INTO src VALUES (-7, '[1,1,1]', '{1,0,0,1}', 'new below'), (3000001, '[2,0,1]', NULL, 'new above')",
    )
    .unwrap();
    tx.batch_execute(&format!("INSERT INTO src {}", rows_sql(4001, 4030, 2.2))).unwrap();
    tx.commit().unwrap();
    // More writes while the job goes on (wherever its cursor is by then).
    c.batch_execute(&format!(
        "UPDATE src SET m1 = m1 + m1 WHERE id % 97 = 1; DELETE FROM src WHERE id % 89 = 2; INSERT INTO src {}",
        rows_sql(5001, 5005, 3.1)
    ))
    .unwrap();
    job.join().unwrap().unwrap_or_else(|e| panic!("the materialise during writes failed: {e}"));

    let gens = generations(&mut c, "s");
    assert_eq!(gens.len(), 2, "C served, B retained, A dropped: {gens:?}");
    assert_eq!((gens[1].fit_id, gens[1].state.as_str()), (fc, "served"));
    assert_eq!(gens[1].relation.as_deref(), Some(building.as_str()));
    assert_eq!(gens[0].state, "retained");
    assert_fresh(&mut c, "src", "s", "after the job written to during its write phase");
    drop(c);
    drop_db(db);
}

// ---------------------------------------------------------------------------------------
// 4. Privileges
// ---------------------------------------------------------------------------------------

/// Roles of a test (created fresh, with LOGIN), dropped with the test's database on drop.
struct Roles {
    db: String,
    names: Vec<String>,
}

impl Roles {
    fn create(db: &str, names: &[&str]) -> Roles {
        let mut a = admin();
        for n in names {
            a.batch_execute(&format!("DROP ROLE IF EXISTS {n}")).unwrap();
            a.batch_execute(&format!("CREATE ROLE {n} LOGIN")).unwrap();
        }
        Roles { db: db.into(), names: names.iter().map(|s| s.to_string()).collect() }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        if let Ok(mut a) =
            Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", port()), NoTls)
        {
            let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
            for n in &self.names {
                let _ = a.batch_execute(&format!("DROP ROLE IF EXISTS {n}"));
            }
        }
    }
}

/// alice owns the source and the model set (fits A and B materialised: a served and a retained
/// generation):
/// * bob (SELECT on the source) reads the view, exactly; not a generation table (42501);
/// * carol (nothing) gets 42501 from the view; after alice's GRANT SELECT, the same session
///   reads it (no materialise in between); after REVOKE, 42501 again;
/// * dave (INSERT, UPDATE, DELETE on the source, no SELECT anywhere, nothing on the
///   generations): his INSERT, UPDATE and DELETE statements keep both generations and the view
///   exact (checked as alice); he cannot read the view (42501);
/// * erin (SELECT on the key and model columns only) reads the view; frank (SELECT on the key
///   and one model column) does not (42501).
#[test]
fn privileges_of_the_served_view() {
    let db = "es_st_priv";
    let [alice, bob, carol, dave, erin, frank] = [
        "es_st_priv_alice",
        "es_st_priv_bob",
        "es_st_priv_carol",
        "es_st_priv_dave",
        "es_st_priv_erin",
        "es_st_priv_frank",
    ];
    let mut pg = fresh_db("st_priv");
    let _roles = Roles::create(db, &[alice, bob, carol, dave, erin, frank]);
    pg.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {alice}")).unwrap();
    let mut a = connect_as(db, alice);
    create_source(&mut a, "src", 120);
    create_pairs(&mut a, "src");
    a.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    label(&mut a, 2.0, 0.8);
    fit(&mut a, "s");
    materialize(&mut a, "s");
    label(&mut a, 0.9, 2.0);
    fit(&mut a, "s");
    materialize(&mut a, "s");
    assert_fresh(&mut a, "src", "s", "as alice");
    let gens = generations(&mut a, "s");
    assert_eq!(gens.len(), 2);
    let owners: Vec<String> = a
        .query(
            "SELECT pg_get_userbyid(c.relowner)::text FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation
             UNION ALL SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'src_s'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, [alice, alice, alice], "generations and view owned by the source's owner");
    let served_rel = gens[1].relation.clone().unwrap();
    let want = |a: &mut Client| -> Vectors {
        let active = serving(a, "s").0.unwrap();
        let m = multipliers_of(a, "s", active);
        expected(a, "src", &m)
    };

    a.batch_execute(&format!(
        "GRANT SELECT ON src TO {bob};
         GRANT INSERT, UPDATE, DELETE ON src TO {dave};
         GRANT SELECT (id, m1, m2) ON src TO {erin};
         GRANT SELECT (id, m1, note) ON src TO {frank}"
    ))
    .unwrap();
    let w = want(&mut a);
    assert_eq!(w.len(), 120);

    let mut b = connect_as(db, bob);
    assert_same(&read_vectors(&mut b, "src_s", "s_combined"), &w, "bob reads the view");
    expect_code(&mut b, &format!("SELECT * FROM {served_rel}"), "42501");

    let mut ca = connect_as(db, carol);
    expect_code(&mut ca, "SELECT * FROM src_s", "42501");
    a.batch_execute(&format!("GRANT SELECT ON src TO {carol}")).unwrap();
    assert_same(&read_vectors(&mut ca, "src_s", "s_combined"), &w, "carol after the GRANT");
    a.batch_execute(&format!("REVOKE SELECT ON src FROM {carol}")).unwrap();
    expect_code(&mut ca, "SELECT * FROM src_s", "42501");
    expect_code(&mut ca, "SELECT count(*) FROM src_s", "42501");

    let mut e = connect_as(db, erin);
    assert_same(&read_vectors(&mut e, "src_s", "s_combined"), &w, "erin (column grants)");
    let mut f = connect_as(db, frank);
    expect_code(&mut f, "SELECT * FROM src_s", "42501");

    let mut d = connect_as(db, dave);
    expect_code(&mut d, "SELECT * FROM src_s", "42501");
    expect_code(&mut d, "SELECT id FROM src", "42501");
    expect_code(&mut d, &format!("SELECT * FROM {served_rel}"), "42501");
    d.batch_execute(
        "INSERT INTO src VALUES (1001, '[1,2,3]', '{0.5,0.5,1,0}', 'dave'), (1002, '[-1,0.5,0.25]', NULL, 'dave');
         INSERT INTO src (id, m1, m2) VALUES (1003, '[0,0,2]', '{1,1,1,1}')",
    )
    .unwrap();
    assert_fresh(&mut a, "src", "s", "after dave's INSERTs");
    assert_eq!(want(&mut a).len(), 123);
    // Without SELECT, dave's UPDATE and DELETE can have no WHERE on columns: every row.
    d.batch_execute("UPDATE src SET m1 = '[0.3,0.2,0.1]'").unwrap();
    assert_fresh(&mut a, "src", "s", "after dave's UPDATE of m1");
    d.batch_execute("UPDATE src SET note = 'dave was here'").unwrap();
    assert_fresh(&mut a, "src", "s", "after dave's UPDATE of the note");
    d.batch_execute("DELETE FROM src").unwrap();
    for g in generations(&mut a, "s") {
        let rel = g.relation.unwrap();
        let left: Vec<i32> =
            a.query(&format!("SELECT id FROM {rel}"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
        if g.state == "retained" {
            // Not written: every key it still holds is recorded for the rollback that serves it.
            let recorded = pending_keys(&mut a, g.id);
            assert!(
                left.iter().all(|k| recorded.contains(k)),
                "dave's DELETE was not recorded for generation {}",
                g.id
            );
        } else {
            assert_eq!(left.len(), 0, "dave's DELETE reached generation {}", g.id);
        }
    }
    assert_fresh(&mut a, "src", "s", "after dave's DELETE");
    d.batch_execute(&format!("INSERT INTO src {}", rows_sql(1, 40, 0.4))).unwrap();
    assert_fresh(&mut a, "src", "s", "after dave's INSERT ... SELECT");
    assert_same(&read_vectors(&mut b, "src_s", "s_combined"), &want(&mut a), "bob after dave's writes");
    drop((a, b, ca, d, e, f, pg));
}

// ---------------------------------------------------------------------------------------
// 5. DROP TABLE of the source
// ---------------------------------------------------------------------------------------

/// Catalog rows of a model set: (model_sets, generations, fits).
fn catalog_counts(c: &mut Client, set: &str) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM embedstack.model_sets WHERE name = $1),
                    (SELECT count(*) FROM embedstack.generations WHERE model_set = $1),
                    (SELECT count(*) FROM embedstack.fits WHERE model_set = $1)",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// How many of these relation OIDs still exist.
fn existing(c: &mut Client, oids: &[u32]) -> i64 {
    c.query_one("SELECT count(*) FROM pg_class WHERE oid = ANY($1)", &[&oids]).unwrap().get(0)
}

/// A served and a retained generation on `src`: `(view oid, served gen oid, retained gen oid,
/// index oids)`.
fn two_generations(c: &mut Client) -> (u32, u32, u32, Vec<u32>) {
    c.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    label(c, 2.0, 0.5);
    fit(c, "s");
    materialize(c, "s");
    label(c, 0.5, 2.0);
    fit(c, "s");
    materialize(c, "s");
    assert_fresh(c, "src", "s", "two generations");
    let gens = generations(c, "s");
    assert_eq!(gens.len(), 2);
    let view: u32 = c.query_one("SELECT 'src_s'::regclass::oid", &[]).unwrap().get(0);
    let idx: Vec<u32> = c
        .query(
            "SELECT i.indexrelid FROM pg_index i JOIN embedstack.generations g ON g.relation = i.indrelid::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(idx.len(), 4, "primary key and HNSW index of each generation");
    (view, gens[1].relid.unwrap(), gens[0].relid.unwrap(), idx)
}

/// DROP TABLE of a source:
/// * without dependents: the model set, its fits and generations leave the catalog, and the
///   view, the generation tables and their indexes leave pg_class; a new table of the same
///   name gets a model set of the same name, materialised and served exactly, with the same
///   view name;
/// * with a user's view on the served view: DROP TABLE succeeds with a WARNING; the served view
///   and the served generation stay (the user's view still depends on them), the retained
///   generation goes, and the catalog rows go.
#[test]
fn drop_of_the_source() {
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    drop(fresh_db("st_drop"));
    let mut c = {
        let sink = warnings.clone();
        let mut cfg = config("es_st_drop", "postgres");
        cfg.notice_callback(move |n| {
            if n.severity() == "WARNING" {
                sink.lock().unwrap().push(n.message().to_string());
            }
        });
        cfg.connect(NoTls).unwrap()
    };
    create_source(&mut c, "src", 150);
    create_pairs(&mut c, "src");
    let (view, served, retained, idx) = two_generations(&mut c);
    assert_eq!(catalog_counts(&mut c, "s"), (1, 2, 2));
    c.batch_execute("DROP TABLE src").unwrap();
    assert_eq!(catalog_counts(&mut c, "s"), (0, 0, 0), "catalog rows of the dropped source's model set");
    assert_eq!(existing(&mut c, &[view, served, retained]), 0, "view and generation tables dropped");
    assert_eq!(existing(&mut c, &idx), 0, "generation indexes dropped");
    assert!(tables_like(&mut c, "src_s").is_empty());
    let n: i64 =
        c.query_one("SELECT count(*) FROM pg_class WHERE relname::text LIKE 'src\\_s%'", &[]).unwrap().get(0);
    assert_eq!(n, 0, "nothing named src_s* is left");
    assert!(warnings.lock().unwrap().is_empty(), "no warning: {:?}", warnings.lock().unwrap());

    // The names are free: same table name, same model set name.
    create_source(&mut c, "src", 150);
    let (view2, served2, retained2, _) = two_generations(&mut c);
    assert!(![view, served, retained].contains(&view2));
    let (_, vname, _) = set_info(&mut c, "s");
    assert_eq!(vname, "src_s");
    c.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let top: Vec<i32> = c
        .query(
            "SELECT s.id FROM src s JOIN src_s v USING (id) ORDER BY v.s_combined <#> embedstack.query_vector('s', 10) LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(top.len(), 10);
    assert_eq!(top[0], 10, "a row is its own nearest neighbour under the symmetric inner product");

    // A user's view on the served view: the table goes, the served view and generation stay.
    c.batch_execute("CREATE VIEW my_neighbours AS SELECT id, s_combined FROM src_s").unwrap();
    let served_rows: i64 = c.query_one("SELECT count(*) FROM src", &[]).unwrap().get(0);
    c.batch_execute("DROP TABLE src").unwrap();
    let w = warnings.lock().unwrap().clone();
    assert!(!w.is_empty() && w.iter().any(|m| m.contains("src_s")), "a WARNING naming what is left: {w:?}");
    assert_eq!(catalog_counts(&mut c, "s"), (0, 0, 0), "the model set is gone");
    assert_eq!(existing(&mut c, &[view2, served2]), 2, "the served view and its generation stay");
    assert_eq!(existing(&mut c, &[retained2]), 0, "the retained generation goes");
    let served_name: String = c.query_one("SELECT $1::oid::regclass::text", &[&served2]).unwrap().get(0);
    let left: i64 = c.query_one(&format!("SELECT count(*) FROM {served_name}"), &[]).unwrap().get(0);
    assert_eq!(left, served_rows, "the generation left in place keeps its rows");
    let deps: i64 =
        c.query_one("SELECT count(*) FROM pg_class WHERE relname = 'my_neighbours'", &[]).unwrap().get(0);
    assert_eq!(deps, 1);
    drop(c);
    drop_db("es_st_drop");
}

// ---------------------------------------------------------------------------------------
// 6. pg_dump / pg_restore
// ---------------------------------------------------------------------------------------

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL client program (as the postgres OS user when we are root) against the
/// project cluster; asserts exit code 0 and nothing on stderr.
fn run_pg_tool(tool: &str, args: &[&str]) {
    let exe = pg_bin().join(tool);
    let p = port();
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool} {args:?} failed ({}):\n{stderr}", out.status);
    assert!(stderr.trim().is_empty(), "{tool} {args:?} reported:\n{stderr}");
}

/// The catalog as text: model_sets, generations (relation names) and fits rows.
fn catalog_rows(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in [("model_sets", "name"), ("generations", "id"), ("fits", "id")] {
        for r in c
            .query(&format!("SELECT row_to_json(x)::text FROM embedstack.{t} x ORDER BY {order}"), &[])
            .unwrap()
        {
            out.push(format!("{t}: {}", r.get::<_, String>(0)));
        }
    }
    out
}

/// Top 10 by the served view for key `k` (ids and inner products), through the README query.
fn top10(c: &mut Client, k: i32) -> Vec<(i32, f64)> {
    c.query(
        "SELECT s.id, (v.s_combined <#> embedstack.query_vector('s', $1::int4))::float8 FROM src s JOIN src_s v USING (id)
          ORDER BY v.s_combined <#> embedstack.query_vector('s', $1::int4) LIMIT 10",
        &[&k],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Contents of every generation table, by generation id.
fn generation_contents(c: &mut Client) -> Vec<(i64, Vectors)> {
    generations(c, "s")
        .into_iter()
        .map(|g| (g.id, read_vectors(c, &g.relation.unwrap(), "s_combined")))
        .collect()
}

/// A database with model set `s` serving fit B from one generation and retaining fit A's;
/// `pg_dump -Fd` (as the postgres OS user), `pg_restore` into a new database, serially and
/// with `-j 2` into another. In each restored database:
/// * the rows of model_sets, generations (relation names included) and fits are identical,
///   every generation table holds the same vectors and has its HNSW index;
/// * the view answers the same top 10 (ids and inner products) for 3 keys;
/// * the freshness triggers work (an INSERT reaches both generations);
/// * rollback serves A from its generation; a refit writes a new generation (the next id),
///   served exactly.
#[test]
fn dump_and_restore_with_two_generations() {
    let src_db = "es_st_dump";
    let mut c = fresh_db("st_dump");
    create_source(&mut c, "src", 400);
    create_pairs(&mut c, "src");
    c.batch_execute("SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'])").unwrap();
    label(&mut c, 2.0, 0.6);
    let (fa, _) = fit(&mut c, "s");
    materialize(&mut c, "s");
    label(&mut c, 0.7, 2.0);
    let (fb, _) = fit(&mut c, "s");
    materialize(&mut c, "s");
    let gens = generations(&mut c, "s");
    assert_eq!(gens.len(), 2);
    assert_fresh(&mut c, "src", "s", "original");
    let keys = [7, 123, 350];
    c.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let orig_catalog = catalog_rows(&mut c);
    let orig_top: Vec<Vec<(i32, f64)>> = keys.iter().map(|&k| top10(&mut c, k)).collect();
    let orig_contents = generation_contents(&mut c);
    let ma = multipliers_of(&mut c, "s", fa);

    let dir = PathBuf::from(format!("/tmp/es_st_dump_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_pg_tool("pg_dump", &["-Fd", "-f", dir.to_str().unwrap(), "-d", src_db]);

    for (dst, jobs) in [("es_st_dump_serial", None), ("es_st_dump_j2", Some("2"))] {
        drop(create_db(dst));
        let mut args = vec!["--exit-on-error", "-d", dst];
        if let Some(j) = jobs {
            args.extend(["-j", j]);
        }
        args.push(dir.to_str().unwrap());
        run_pg_tool("pg_restore", &args);
        let mut r = connect_as(dst, "postgres");
        let what = format!("restored into {dst}");
        r.batch_execute("SET hnsw.ef_search = 1000").unwrap();
        assert_eq!(catalog_rows(&mut r), orig_catalog, "{what}: catalog rows");
        assert_eq!(generation_contents(&mut r), orig_contents, "{what}: generation tables");
        let valid: i64 = r
            .query_one(
                "SELECT count(*) FROM embedstack.generations g JOIN pg_class c ON c.relname = g.index_name
                   JOIN pg_index i ON i.indexrelid = c.oid AND i.indrelid = g.relation AND i.indisvalid
                   JOIN pg_am a ON a.oid = c.relam AND a.amname = 'hnsw'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(valid, 2, "{what}: each generation has its HNSW index");
        for (k, want) in keys.iter().zip(&orig_top) {
            assert_eq!(&top10(&mut r, *k), want, "{what}: top 10 of key {k}");
        }
        assert_fresh(&mut r, "src", "s", &what);
        r.batch_execute(&format!("INSERT INTO src {}", rows_sql(900, 905, 0.8))).unwrap();
        assert_fresh(&mut r, "src", "s", &format!("{what}, then an INSERT"));

        r.batch_execute("CALL embedstack.rollback('s')").unwrap();
        assert_eq!(
            serving(&mut r, "s"),
            (Some(fa), Some(gens[0].id), Some(fb), Some(gens[1].id)),
            "{what}: rollback"
        );
        assert_view_is(&mut r, "src", "s", &ma, &format!("{what}: rolled back"));
        r.batch_execute("SELECT embedstack.release('s')").unwrap();

        label(&mut r, 1.0, 1.0);
        r.batch_execute("CALL embedstack.refit('s', 'pairs', 'a', 'b', 'y', cutover => 'always')").unwrap();
        let after = generations(&mut r, "s");
        let newest = after.last().unwrap();
        assert_eq!(newest.id, gens[1].id + 1, "{what}: the refit's generation takes the next id");
        assert_eq!(newest.state, "served");
        assert!(newest.relid.is_some());
        assert_eq!(serving(&mut r, "s").1, Some(newest.id));
        assert_eq!(after.len(), 2, "{what}: served and retained after the refit");
        assert_fresh(&mut r, "src", "s", &format!("{what}: refit"));
        drop(r);
        drop_db(dst);
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(c);
    drop_db(src_db);
}
