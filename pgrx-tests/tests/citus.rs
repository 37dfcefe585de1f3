//! The Citus layer (docs/design.md §8, sql/citus.sql): model sets whose source is a
//! hash-distributed table, on the local Citus cluster of `scripts/citus-cluster.sh` (a
//! coordinator on 127.0.0.1:`$ES_CITUS_PORT`, default 9700, and two workers on the next two
//! ports). Every test is `#[ignore]`d so that `make test-client` skips them; `make test-citus`
//! runs them with `--ignored`.
//!
//! Each test has a database of its own, created on all three nodes (Citus does not propagate
//! CREATE DATABASE) with `CREATE EXTENSION citus` on each node, the coordinator and both workers
//! registered, and `CREATE EXTENSION embedstack CASCADE` on the coordinator; it is dropped on
//! every node at the end (`ES_CITUS_KEEP=1` keeps it, to look at a failure).
//!
//! 1. WordSim-353 (a distributed copy, 8 shards on the key, next to the plain one): `fit` (pairs
//!    distributed and co-located, or a reference table) and the held-out `evaluate` equal the
//!    plain table's (and scikit-learn's reference weights); `fit` and `refit` over plain pairs too.
//! 2. 50,000 synthetic rows over 8 shards, three models (`vector(32)`, `vector(16)`, `real[]` of
//!    8, clustered, some NULL or zero): `fit` equals the plain copy's; the generation is a distributed table
//!    co-located with the source, a valid HNSW index on every shard, every served row equals the
//!    kernel `_combine_vector` of the plain copy; recall@10 of the distributed top-k query against
//!    exact search.
//! 3. Readers during `refit(cutover => 'always')`: every top-10 answer is scored entirely under
//!    the old fit or entirely under the new one, never a mix.
//! 4. A worker restarted in the middle of a materialisation: re-running it resumes the same
//!    generation and serves a complete, correct one.
//! 5. Freshness on Citus: no triggers on the source or its shards; INSERT / COPY / UPDATE /
//!    DELETE are served after `CALL embedstack.refresh(set)`, not before.
//! 6. Sources that cannot be served: distributed on a non-key column, reference tables, Citus
//!    local tables (0A000 from create_model_set, and from materialize and fit when the table was
//!    distributed afterwards).
//!
//! Expected values come from the plain copy of the same rows in the same database: fits from
//! `embedstack.fit` over the plain table (the path without Citus), vectors from the row kernel
//! `embedstack._combine_vector` with the multipliers recomputed here from the fit's weights
//! (`sqrt(w_k / w_max)`), scores and exact top-k computed here from those vectors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use embedstack_client_tests::check::close;
use embedstack_client_tests::data::Rng;
use embedstack_client_tests::fixtures::{load_wordsim, reference, MODELS};
use embedstack_client_tests::pg_bin;
use embedstack_client_tests::reference::symmetric_multipliers;
use embedstack_client_tests::sql::{all_text, expect_code, sqlstate};
use embedstack_client_tests::wait::wait_for;
use postgres::{Client, Config, NoTls};

// ---------------------------------------------------------------------------------------
// The cluster and the test databases
// ---------------------------------------------------------------------------------------

/// The coordinator's port: `$ES_CITUS_PORT`, else 9700 (scripts/citus-cluster.sh); the workers
/// listen on the next two ports.
fn citus_port() -> u16 {
    std::env::var("ES_CITUS_PORT").ok().map(|p| p.parse().expect("ES_CITUS_PORT is a port")).unwrap_or(9700)
}

fn node_config(port: u16, db: &str) -> Config {
    format!("host=127.0.0.1 port={port} user=postgres dbname={db}").parse().unwrap()
}

/// A session on database `db` of the node listening on `port`.
fn node(port: u16, db: &str) -> Client {
    node_config(port, db).connect(NoTls).unwrap_or_else(|e| {
        panic!(
            "cannot reach the Citus node on port {port} ({e}); start it: bash scripts/citus-cluster.sh start"
        )
    })
}

/// The data directories of the Citus cluster: `$ES_STATE/.citus` (scripts/env.sh), the
/// repository's `.citus` when `ES_STATE` is not set.
fn citus_dir() -> PathBuf {
    let state = std::env::var("ES_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    state.join(".citus")
}

/// Restarts worker `w` (1 or 2) with a fast shutdown, waiting until it accepts connections again.
fn restart_worker(w: u8) {
    let dir = citus_dir();
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE", "-u", "RUST_LIB_BACKTRACE"])
        .arg(pg_bin().join("pg_ctl"))
        .arg("-D")
        .arg(dir.join(format!("w{w}")))
        .arg("-l")
        .arg(dir.join("run").join(format!("w{w}.log")))
        .args(["-m", "fast", "-w", "-t", "120", "restart"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runuser pg_ctl restart");
    assert!(status.success(), "pg_ctl restart of worker w{w}: {status}");
}

/// A database of a test's own on the three nodes, Citus set up, embedstack on the coordinator;
/// dropped on every node when the test ends (also when it fails, unless `ES_CITUS_KEEP` is set).
struct CitusDb {
    name: String,
    port: u16,
    started: Instant,
}

impl CitusDb {
    fn new(tag: &str) -> CitusDb {
        let started = Instant::now();
        let port = citus_port();
        let name = format!("es_citus_{tag}");
        let nodes = [port, port + 1, port + 2];
        for p in nodes {
            let mut a = node(p, "postgres");
            // Two statements: a multi-statement string would run as one implicit transaction.
            a.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
            a.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        }
        for p in nodes {
            node(p, &name).batch_execute("CREATE EXTENSION citus").unwrap();
        }
        let mut c = node(port, &name);
        c.execute("SELECT citus_set_coordinator_host('localhost', $1)", &[&(port as i32)]).unwrap();
        for w in [port + 1, port + 2] {
            c.execute("SELECT citus_add_node('localhost', $1)", &[&(w as i32)]).unwrap();
        }
        c.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
        let workers: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_dist_node WHERE nodeport <> $1 AND isactive",
                &[&(port as i32)],
            )
            .unwrap()
            .get(0);
        assert_eq!(workers, 2, "both workers registered");
        CitusDb { name, port, started }
    }

    /// A session on the coordinator.
    fn client(&self) -> Client {
        node(self.port, &self.name)
    }

    /// A session on the coordinator that records the NOTICEs / WARNINGs it receives.
    fn client_with_notices(&self) -> (Client, Arc<Mutex<Vec<String>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        let mut cfg = node_config(self.port, &self.name);
        cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
        (cfg.connect(NoTls).unwrap(), notices)
    }
}

impl Drop for CitusDb {
    fn drop(&mut self) {
        eprintln!("[citus] {}: {:.1} s", self.name, self.started.elapsed().as_secs_f64());
        if std::env::var_os("ES_CITUS_KEEP").is_some() {
            return;
        }
        for p in [self.port, self.port + 1, self.port + 2] {
            if let Ok(mut a) = node_config(p, "postgres").connect(NoTls) {
                let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

/// The synthetic models: `m1 vector(32)`, `m2 vector(16)`, `m3 real[]` of 8.
const COLS: [&str; 3] = ["m1", "m2", "m3"];
const DIMS: [i32; 3] = [32, 16, 8];
/// The threshold of every model set here (the default).
const THRESHOLD: f64 = 0.05;

/// Creates the plain table `table (id bigint PRIMARY KEY, m1 vector(32), m2 vector(16), m3 real[],
/// label text)` with the rows `1..=n`, generated on the server after `setseed(seed)`, clustered
/// as embeddings are: row `i` belongs to cluster `i % 500`, whose centre has every element
/// uniform in [-1, 1), and each element of the row is its centre's plus uniform noise in
/// [-0.35, 0.35) (per model). `m1` is NULL on every 211th id, `m3` NULL on every 97th and all
/// zeros on every 101st.
fn gen_items(c: &mut Client, table: &str, n: i64, seed: f64) {
    let centre =
        |d: i32| format!("(SELECT array_agg(random() * 2 - 1) FROM generate_series(1, {d}) WHERE k >= 0)");
    let row = |m: &str| {
        format!(
            "(SELECT array_agg(x + 0.35 * (random() * 2 - 1) ORDER BY o) FROM unnest(ce.{m}) WITH ORDINALITY u(x, o)
               WHERE i > 0)::real[]"
        )
    };
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, m1 vector(32), m2 vector(16), m3 real[], label text);
         SELECT setseed({seed});
         CREATE TEMP TABLE centres AS SELECT k, {} AS m1, {} AS m2, {} AS m3 FROM generate_series(0, 499) k;
         INSERT INTO {table}
         SELECT i, CASE WHEN i % 211 = 0 THEN NULL ELSE {}::vector(32) END, {}::vector(16),
                CASE WHEN i % 97 = 0 THEN NULL WHEN i % 101 = 0 THEN array_fill(0::real, ARRAY[8]) ELSE {} END,
                'item ' || i
           FROM generate_series(1, {n}) i JOIN centres ce ON ce.k = i % 500;
         DROP TABLE centres;
         ANALYZE {table}",
        centre(32),
        centre(16),
        centre(8),
        row("m1"),
        row("m2"),
        row("m3"),
    ))
    .unwrap();
}

/// pgvector's cosine of two model values, 0 when either is NULL or a zero vector.
fn cos_sql(a: &str, b: &str) -> String {
    format!("coalesce(nullif(1 - ({a} <=> {b}), 'NaN'), 0)")
}

/// Creates the plain table `table (l bigint, r bigint, y float8)`: `n` pairs of distinct random
/// keys of `items` (`1..=items_n`), `y = Σ w_k cos_k + noise` (uniform, ±0.01), generated on
/// the server after `setseed(seed)`.
fn gen_pairs(c: &mut Client, table: &str, items: &str, items_n: i64, n: i64, w: [f64; 3], seed: f64) {
    c.batch_execute(&format!(
        "CREATE TABLE {table} (l bigint NOT NULL, r bigint NOT NULL, y float8 NOT NULL);
         SELECT setseed({seed});
         INSERT INTO {table}
         SELECT p.l, p.r, {} * {} + {} * {} + {} * {} + 0.02 * (random() - 0.5)
           FROM (SELECT 1 + floor(random() * {items_n})::bigint AS l, 1 + floor(random() * {items_n})::bigint AS r
                   FROM generate_series(1, {n})) p
           JOIN {items} a ON a.id = p.l JOIN {items} b ON b.id = p.r
          WHERE p.l <> p.r;
         ANALYZE {table}",
        w[0],
        cos_sql("a.m1", "b.m1"),
        w[1],
        cos_sql("a.m2", "b.m2"),
        w[2],
        cos_sql("a.m3::vector", "b.m3::vector"),
    ))
    .unwrap();
}

/// `dist`: a copy of the plain table `local` (same columns and indexes, same rows), hash-
/// distributed on `column`, 8 shards, or co-located with `colocate_with`.
fn distributed_copy(c: &mut Client, local: &str, dist: &str, column: &str, colocate_with: Option<&str>) {
    c.batch_execute(&format!("CREATE TABLE {dist} (LIKE {local} INCLUDING ALL)")).unwrap();
    match colocate_with {
        None => c.execute(
            "SELECT create_distributed_table($1::text::regclass, $2, shard_count => 8)",
            &[&dist, &column],
        ),
        Some(w) => c.execute(
            "SELECT create_distributed_table($1::text::regclass, $2, colocate_with => $3)",
            &[&dist, &column, &w],
        ),
    }
    .unwrap();
    c.batch_execute(&format!("INSERT INTO {dist} SELECT * FROM {local}; ANALYZE {dist}")).unwrap();
    let (n_dist, n_local): (i64, i64) = {
        let r = c
            .query_one(&format!("SELECT (SELECT count(*) FROM {dist}), (SELECT count(*) FROM {local})"), &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(n_dist, n_local, "{dist} holds the rows of {local}");
}

/// The shards of a distributed table.
fn shard_count(c: &mut Client, table: &str) -> i64 {
    c.query_one("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = $1::text::regclass", &[&table])
        .unwrap()
        .get(0)
}

/// `run_command_on_shards(table, command)`: `(shard id, success, result)` per shard.
fn on_shards(c: &mut Client, table: &str, command: &str) -> Vec<(i64, bool, String)> {
    c.query(
        "SELECT shardid, success, result FROM run_command_on_shards($1::text::regclass, $2) ORDER BY 1",
        &[&table, &command],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Fits, layouts and vectors
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Fit {
    id: i64,
    weights: Vec<f64>,
    intercept: f64,
    n_used: i64,
    n_skipped: i64,
}

fn fit(c: &mut Client, set: &str, pairs: &str, l: &str, r: &str, y: &str) -> Fit {
    let row = c
        .query_one(
            "SELECT id, weights, intercept, (diagnostics->>'n_used')::int8, (diagnostics->>'n_skipped')::int8
               FROM embedstack.fit($1, $2::text::regclass, $3, $4, $5)",
            &[&set, &pairs, &l, &r, &y],
        )
        .unwrap_or_else(|e| panic!("fit {set} on {pairs}: {} {}", sqlstate(&e), all_text(&e)));
    Fit {
        id: row.get(0),
        weights: row.get(1),
        intercept: row.get(2),
        n_used: row.get(3),
        n_skipped: row.get(4),
    }
}

/// The two fits are the same regression: pairs used and skipped, weights and intercept to a
/// relative 1e-9.
fn assert_same_fit(got: &Fit, want: &Fit, what: &str) {
    assert_eq!((got.n_used, got.n_skipped), (want.n_used, want.n_skipped), "{what}: pairs used / skipped");
    assert_eq!(got.weights.len(), want.weights.len(), "{what}: weights");
    for (k, (g, w)) in got.weights.iter().zip(&want.weights).enumerate() {
        assert!(
            close(*g, *w, 1e-9),
            "{what}: weight {k}: {g} vs {w} (all: {:?} vs {:?})",
            got.weights,
            want.weights
        );
    }
    assert!(
        close(got.intercept, want.intercept, 1e-9),
        "{what}: intercept {} vs {}",
        got.intercept,
        want.intercept
    );
}

/// The generation a model set serves: `(id, relation::text, index name, fit id, multipliers)`.
fn served(c: &mut Client, set: &str) -> (i64, String, String, i64, Vec<f64>) {
    let r = c
        .query_one(
            "SELECT g.id, g.relation::text, g.index_name::text, g.fit_id, g.multipliers
               FROM embedstack.model_sets m JOIN embedstack.generations g ON g.id = m.served_generation
              WHERE m.name = $1 AND g.state = 'served' AND m.active_fit = g.fit_id",
            &[&set],
        )
        .unwrap_or_else(|e| panic!("{set} serves no generation: {e}"));
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// The multipliers by the documented rule for a fit's weights (symmetric mode), checked against
/// the ones the generation was written with; the generation's own are returned (the same f64
/// values the kernel is then given).
fn checked_multipliers(f: &Fit, generation: &[f64]) -> Vec<f64> {
    let want = symmetric_multipliers(&f.weights, THRESHOLD);
    assert_eq!(generation.len(), want.len());
    for (g, w) in generation.iter().zip(&want) {
        assert!(close(*g, *w, 1e-12), "multipliers {generation:?} vs {want:?} (weights {:?})", f.weights);
    }
    generation.to_vec()
}

type Vectors = BTreeMap<i64, Vec<f32>>;

/// `id -> _combine_vector(multipliers, dims, columns, id, m1, m2, m3)` over the plain table
/// `table`: the expected served vectors.
fn expected_vectors(c: &mut Client, table: &str, mult: &[f64]) -> Vectors {
    let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
    c.query(
        &format!(
            "SELECT id, embedstack._combine_vector($1::float8[], $2::int4[], $3::text[], id, m1, m2, m3)::real[]
               FROM {table}"
        ),
        &[&mult, &DIMS.to_vec(), &cols],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `id -> c::real[]` read through the served view `view`.
fn view_vectors(c: &mut Client, view: &str) -> Vectors {
    c.query(&format!("SELECT id, c::real[] FROM {view}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Asserts the view serves exactly the expected rows (same keys, same float32 values).
fn assert_vectors_equal(got: &Vectors, want: &Vectors, what: &str) {
    let (gk, wk): (BTreeSet<_>, BTreeSet<_>) = (got.keys().collect(), want.keys().collect());
    let missing: Vec<_> = wk.difference(&gk).take(10).collect();
    let extra: Vec<_> = gk.difference(&wk).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: keys missing {missing:?}, extra {extra:?}");
    let differ: Vec<_> = want.iter().filter(|(k, v)| got[*k] != **v).map(|(k, _)| *k).take(10).collect();
    assert!(differ.is_empty(), "{what}: vectors differ for keys {differ:?}");
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The generation is a hash-distributed table co-located with the source (same colocation id,
/// as many shards), and every shard has exactly one HNSW index, valid.
fn assert_colocated_with_hnsw(c: &mut Client, generation: &str, source: &str) {
    let r = c
        .query_one(
            "SELECT g.partmethod::text, g.colocationid = s.colocationid
               FROM pg_dist_partition g, pg_dist_partition s
              WHERE g.logicalrelid = $1::text::regclass AND s.logicalrelid = $2::text::regclass",
            &[&generation, &source],
        )
        .unwrap_or_else(|e| panic!("{generation} is not a distributed table: {e}"));
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, bool>(1)),
        ("h".into(), true),
        "{generation} co-located with {source}"
    );
    let n = shard_count(c, source);
    assert_eq!(shard_count(c, generation), n, "{generation}: shards");
    let shards = on_shards(
        c,
        generation,
        "SELECT count(*) FILTER (WHERE i.indisvalid AND i.indisready) || '/' || count(*)
           FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am a ON a.oid = x.relam
          WHERE i.indrelid = '%s'::regclass AND a.amname = 'hnsw'",
    );
    assert_eq!(shards.len() as i64, n, "{generation}: run_command_on_shards");
    for (shard, ok, result) in &shards {
        assert!(*ok && result == "1/1", "{generation}: shard {shard}: valid / HNSW indexes = {result}");
    }
}

/// The README's top-k query on Citus (the query vector as a scalar subquery, computed once on
/// the coordinator): `(id, score)` of the `k` best rows for item `q`.
fn top_k(
    c: &mut Client,
    source: &str,
    view: &str,
    set: &str,
    q: i64,
    k: i64,
) -> Result<Vec<(i64, f64)>, postgres::Error> {
    let rows = c.query(
        &format!(
            "SELECT s.id, v.c <#> (SELECT embedstack.query_vector('{set}', {q}::bigint)) AS score
               FROM {source} s JOIN {view} v USING (id)
              ORDER BY v.c <#> (SELECT embedstack.query_vector('{set}', {q}::bigint)) LIMIT {k}"
        ),
        &[],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Triggers on the source: none of the extension's (on the coordinator's table), none at all but
/// Citus's internal ones, and none on any of its shards (on the workers).
fn assert_no_triggers(c: &mut Client, source: &str) {
    let found: Vec<String> = c
        .query(
            "SELECT t.tgname || ' (' || p.pronamespace::regnamespace || '.' || p.proname || ')'
               FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
              WHERE t.tgrelid = $1::text::regclass
                AND (NOT t.tgisinternal OR p.pronamespace = 'embedstack'::regnamespace)",
            &[&source],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(found.is_empty(), "triggers on {source}: {found:?}");
    let shards = on_shards(c, source, "SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass");
    assert_eq!(shards.len() as i64, shard_count(c, source));
    for (shard, ok, result) in &shards {
        assert!(*ok && result == "0", "{source}: shard {shard}: {result} triggers");
    }
}

/// The model set served through `view`, created on the 50,000-row-style synthetic data.
fn create_set(c: &mut Client, set: &str, source: &str) {
    let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
    c.execute("SELECT embedstack.create_model_set($1, $2::text::regclass, 'id', $3::name[], combined_column => 'c')", &[
        &set, &source, &cols,
    ])
    .unwrap_or_else(|e| panic!("create_model_set {set}: {}", all_text(&e)));
}

// ---------------------------------------------------------------------------------------
// 1. WordSim-353: fit and evaluate on a distributed copy
// ---------------------------------------------------------------------------------------

/// Creates the WordSim fixture (plain tables, fixtures.rs) and `words_dist` (8 shards on
/// `word`), `pairs_train_dist` / `pairs_test_dist` (on `a`, co-located), and the model sets
/// `wd` (distributed) and `wl` (plain).
fn wordsim(db: &CitusDb) -> Client {
    let mut c = db.client();
    load_wordsim(&mut c);
    distributed_copy(&mut c, "words", "words_dist", "word", None);
    distributed_copy(&mut c, "pairs_train", "pairs_train_dist", "a", Some("words_dist"));
    distributed_copy(&mut c, "pairs_test", "pairs_test_dist", "a", Some("words_dist"));
    let models: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
    for (set, table) in [("wd", "words_dist"), ("wl", "words")] {
        c.execute(
            "SELECT embedstack.create_model_set($1, $2::text::regclass, 'word', $3::name[])",
            &[&set, &table, &models],
        )
        .unwrap();
    }
    c
}

type Evaluation = BTreeMap<String, (i64, f64, f64)>;

fn evaluate(c: &mut Client, set: &str, pairs: &str, fit_id: i64) -> Evaluation {
    c.query("SELECT model, n, pearson, spearman FROM embedstack.evaluate($1, $2::text::regclass, 'a', 'b', 'y', $3)", &[
        &set, &pairs, &fit_id,
    ])
    .unwrap_or_else(|e| panic!("evaluate {set} on {pairs}: {}", all_text(&e)))
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
    .collect()
}

fn assert_same_evaluation(got: &Evaluation, want: &Evaluation, what: &str) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: models");
    for (m, (n, p, s)) in want {
        let (gn, gp, gs) = got[m];
        assert_eq!(gn, *n, "{what}: {m}: n");
        assert!(close(gp, *p, 1e-9), "{what}: {m}: Pearson {gp} vs {p}");
        assert!(close(gs, *s, 1e-9), "{what}: {m}: Spearman {gs} vs {s}");
    }
}

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn wordsim_fit_and_evaluate_on_a_distributed_source_equal_the_plain_table() {
    let db = CitusDb::new("wordsim");
    let mut c = wordsim(&db);
    let reference = reference();

    let local = fit(&mut c, "wl", "pairs_train", "a", "b", "y");
    // The plain fit is scikit-learn's (as model_sets_wordsim checks), so the comparison is with
    // the right numbers.
    for (k, m) in MODELS.iter().enumerate() {
        let want = reference["fits"]["ols"]["coef"][m].as_f64().unwrap();
        assert!(close(local.weights[k], want, 1e-9), "plain fit, {m}: {} vs {want}", local.weights[k]);
    }
    assert_eq!(local.n_used, reference["n_train"].as_i64().unwrap());

    let t = Instant::now();
    let dist = fit(&mut c, "wd", "pairs_train_dist", "a", "b", "y");
    eprintln!("[citus] wordsim: distributed fit {:.2} s", t.elapsed().as_secs_f64());
    assert_same_fit(&dist, &local, "fit over words_dist / pairs_train_dist");
    // Pairs in a reference table (a copy on every node) too.
    c.batch_execute("CREATE TABLE pairs_train_ref AS SELECT * FROM pairs_train").unwrap();
    c.execute("SELECT create_reference_table('pairs_train_ref')", &[]).unwrap();
    let by_ref = fit(&mut c, "wd", "pairs_train_ref", "a", "b", "y");
    assert_same_fit(&by_ref, &local, "fit over words_dist / reference pairs_train_ref");

    // Held-out evaluation (each model alone, the stack, the fit) over the distributed pairs and
    // over the plain ones: the plain table's numbers.
    let want = evaluate(&mut c, "wl", "pairs_test", local.id);
    assert_eq!(want.len(), MODELS.len() + 2, "{want:?}");
    let got = evaluate(&mut c, "wd", "pairs_test_dist", dist.id);
    assert_same_evaluation(&got, &want, "evaluate over words_dist / pairs_test_dist");
    let got = evaluate(&mut c, "wd", "pairs_test", dist.id);
    assert_same_evaluation(&got, &want, "evaluate over words_dist / plain pairs_test");
    let s = want["(fit)"].2;
    let r = reference["test"]["ols_weighted_sum"]["spearman"].as_f64().unwrap();
    assert!(close(s, r, 1e-9), "held-out Spearman of the fit {s} vs the reference {r}");
    eprintln!("[citus] wordsim: held-out Spearman (fit) {s:.6}, (stack) {:.6}", want["(stack)"].2);
}

/// The pairs may be a plain table while the source is distributed (e.g. labels collected on
/// the coordinator): fit must give the plain table's fit, as `pair_statistics` does.
#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn fit_with_plain_pairs_over_a_distributed_source_equals_the_plain_table() {
    let db = CitusDb::new("wordsim_plain_pairs");
    let mut c = wordsim(&db);
    let local = fit(&mut c, "wl", "pairs_train", "a", "b", "y");
    let dist = fit(&mut c, "wd", "pairs_train", "a", "b", "y");
    assert_same_fit(&dist, &local, "fit over words_dist / plain pairs_train");
    // refit fits the same way (over its held-out split of the pairs).
    c.batch_execute("CALL embedstack.refit('wd', 'pairs_train', 'a', 'b', 'y', cutover => 'never')")
        .unwrap_or_else(|e| panic!("refit over plain pairs: {} {}", sqlstate(&e), all_text(&e)));
}

// ---------------------------------------------------------------------------------------
// 2. 50,000 rows: fit, co-located generation, HNSW per shard, recall
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn fifty_thousand_rows_fit_materialise_and_recall_on_eight_shards() {
    const N: i64 = 50_000;
    let db = CitusDb::new("recall");
    let (mut c, notices) = db.client_with_notices();
    gen_items(&mut c, "items_local", N, 0.125);
    gen_pairs(&mut c, "pairs_local", "items_local", N, 10_000, [0.6, 0.3, 0.1], 0.25);
    distributed_copy(&mut c, "items_local", "items", "id", None);
    distributed_copy(&mut c, "pairs_local", "pairs", "l", Some("items"));
    assert_eq!(shard_count(&mut c, "items"), 8);
    create_set(&mut c, "bs", "items");
    create_set(&mut c, "bl", "items_local");

    let local = fit(&mut c, "bl", "pairs_local", "l", "r", "y");
    let t = Instant::now();
    let dist = fit(&mut c, "bs", "pairs", "l", "r", "y");
    eprintln!(
        "[citus] recall: distributed fit of {} pairs {:.2} s",
        dist.n_used + dist.n_skipped,
        t.elapsed().as_secs_f64()
    );
    assert!(
        local.n_skipped > 0 && local.n_used > 9_000,
        "{local:?}: pairs with a NULL or zero vector are skipped"
    );
    assert_same_fit(&dist, &local, "fit over items / pairs");

    let t = Instant::now();
    c.batch_execute("CALL embedstack.materialize('bs')")
        .unwrap_or_else(|e| panic!("materialize: {}", all_text(&e)));
    eprintln!("[citus] recall: materialize of {N} rows {:.2} s", t.elapsed().as_secs_f64());
    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("CALL embedstack.refresh('bs')")),
        "materialize says how changes to a distributed source are served: {:?}",
        notices.lock().unwrap()
    );
    let (_gid, generation, index, fit_id, gmult) = served(&mut c, "bs");
    assert_eq!(fit_id, dist.id);
    assert_colocated_with_hnsw(&mut c, &generation, "items");

    // Every served row is the kernel's vector of the plain copy's row.
    let mult = checked_multipliers(&dist, &gmult);
    let want = expected_vectors(&mut c, "items_local", &mult);
    assert_eq!(want.len() as i64, N);
    let got = view_vectors(&mut c, "items_bs");
    assert_vectors_equal(&got, &want, "items_bs");

    // The query runs on every shard over its HNSW index.
    let plan: Vec<String> = c
        .query(
            "EXPLAIN (COSTS OFF) SELECT s.id FROM items s JOIN items_bs v USING (id)
              ORDER BY v.c <#> (SELECT embedstack.query_vector('bs', 7::bigint)) LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Custom Scan (Citus Adaptive)") && plan.contains(&format!("Index Scan using {index}_")),
        "{plan}"
    );

    // Recall@10 against exact search over the expected vectors (inner product, every row).
    let mut rng = Rng(0x5EED);
    let queries: Vec<i64> = (0..60).map(|_| 1 + (rng.next_u64() % N as u64) as i64).collect();
    let t = Instant::now();
    let mut hits = 0usize;
    let mut worst = 10usize;
    for &q in &queries {
        let qv = &want[&q];
        let qvec: Vec<f32> = c
            .query_one(&format!("SELECT embedstack.query_vector('bs', {q}::bigint)::real[]"), &[])
            .unwrap()
            .get(0);
        assert_eq!(&qvec, qv, "query_vector('bs', {q}) is the row's combined vector (symmetric)");
        let mut exact: Vec<(f64, i64)> = want.iter().map(|(id, v)| (-dot(v, qv), *id)).collect();
        exact.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
        let exact: BTreeSet<i64> = exact[..10].iter().map(|e| e.1).collect();
        let answer = top_k(&mut c, "items", "items_bs", "bs", q, 10).unwrap();
        assert_eq!(answer.len(), 10, "query {q}");
        for (id, score) in &answer {
            let s = -dot(&want[id], qv);
            assert!(
                (score - s).abs() <= 1e-5 * (1.0 + s.abs()),
                "query {q}: id {id} scored {score}, expected {s}"
            );
        }
        let h = answer.iter().filter(|(id, _)| exact.contains(id)).count();
        hits += h;
        worst = worst.min(h);
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    eprintln!(
        "[citus] recall: recall@10 {recall:.4} over {} queries (worst {worst}/10), {:.1} ms per query",
        queries.len(),
        t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64
    );
    assert!(recall >= 0.95, "recall@10 {recall}");
}

// ---------------------------------------------------------------------------------------
// 3. Readers during a refit see one fit per answer
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn readers_during_a_refit_get_answers_under_exactly_one_fit() {
    const N: i64 = 8_000;
    let db = CitusDb::new("refit_readers");
    let mut c = db.client();
    gen_items(&mut c, "items_local", N, 0.375);
    gen_pairs(&mut c, "pairs_old_local", "items_local", N, 4_000, [0.6, 0.3, 0.1], 0.5);
    gen_pairs(&mut c, "pairs_new_local", "items_local", N, 4_000, [0.1, 0.3, 0.9], 0.625);
    distributed_copy(&mut c, "items_local", "items", "id", None);
    distributed_copy(&mut c, "pairs_old_local", "pairs_old", "l", Some("items"));
    distributed_copy(&mut c, "pairs_new_local", "pairs_new", "l", Some("items"));
    create_set(&mut c, "cs", "items");

    let old_fit = fit(&mut c, "cs", "pairs_old", "l", "r", "y");
    c.batch_execute("CALL embedstack.materialize('cs')").unwrap();
    let (old_gen, _, _, fid, gmult) = served(&mut c, "cs");
    assert_eq!(fid, old_fit.id);
    let old = expected_vectors(&mut c, "items_local", &checked_multipliers(&old_fit, &gmult));
    assert_vectors_equal(&view_vectors(&mut c, "items_cs"), &old, "items_cs before the refit");

    // Two readers run the top-10 query until the refit is over, then a few more times.
    let refit_done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    type Answer = (i64, Vec<(i64, f64)>);
    let readers: Vec<thread::JoinHandle<(Vec<Answer>, Vec<String>)>> = (0..2u64)
        .map(|r| {
            let (mut rc, done, ready) = (db.client(), refit_done.clone(), ready.clone());
            thread::spawn(move || {
                let mut rng = Rng(0xC0FFEE + r);
                let (mut answers, mut errors, mut after) = (Vec::new(), Vec::new(), 0);
                while after < 3 {
                    if done.load(Ordering::SeqCst) {
                        after += 1;
                    }
                    let q = 1 + (rng.next_u64() % N as u64) as i64;
                    match top_k(&mut rc, "items", "items_cs", "cs", q, 10) {
                        Ok(a) => {
                            answers.push((q, a));
                            if answers.len() == 1 {
                                ready.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) => errors.push(all_text(&e)),
                    }
                }
                (answers, errors)
            })
        })
        .collect();
    wait_for("both readers answering", Duration::from_secs(120), || {
        (ready.load(Ordering::SeqCst) >= 2).then_some(())
    });
    let t = Instant::now();
    let refit =
        c.batch_execute("CALL embedstack.refit('cs', 'pairs_new', 'l', 'r', 'y', cutover => 'always')");
    let refit_secs = t.elapsed().as_secs_f64();
    refit_done.store(true, Ordering::SeqCst);
    let results: Vec<_> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    refit.unwrap_or_else(|e| panic!("refit: {}", all_text(&e)));

    let (new_gen, _, _, new_fit_id, gmult) = served(&mut c, "cs");
    assert!(
        new_fit_id != old_fit.id && new_gen != old_gen,
        "the refit serves a new fit from a new generation"
    );
    let new_fit = {
        let r = c
            .query_one("SELECT weights, intercept FROM embedstack.fits WHERE id = $1", &[&new_fit_id])
            .unwrap();
        Fit { id: new_fit_id, weights: r.get(0), intercept: r.get(1), n_used: 0, n_skipped: 0 }
    };
    let new = expected_vectors(&mut c, "items_local", &checked_multipliers(&new_fit, &gmult));
    assert_vectors_equal(&view_vectors(&mut c, "items_cs"), &new, "items_cs after the refit");

    let score_ok = |vs: &Vectors, q: i64, a: &[(i64, f64)]| {
        a.iter().all(|(id, s)| {
            let want = -dot(&vs[id], &vs[&q]);
            (s - want).abs() <= 1e-5 * (1.0 + want.abs())
        })
    };
    let (mut n_old, mut n_new) = (0, 0);
    for (r, (answers, errors)) in results.iter().enumerate() {
        assert!(errors.is_empty(), "reader {r}: errors {errors:?}");
        let mut seen_new = false;
        for (q, a) in answers {
            assert_eq!(a.len(), 10, "reader {r}, query {q}");
            let (o, n) = (score_ok(&old, *q, a), score_ok(&new, *q, a));
            assert!(
                o != n,
                "reader {r}, query {q}: answer {a:?} scores under the old fit: {o}, under the new fit: {n}"
            );
            assert!(!(seen_new && o), "reader {r}, query {q}: an old answer after a new one");
            seen_new |= n;
            if o {
                n_old += 1;
            } else {
                n_new += 1;
            }
        }
    }
    eprintln!("[citus] refit_readers: refit {refit_secs:.2} s; answers under the old fit {n_old}, under the new fit {n_new}");
    assert!(n_old >= 2 && n_new >= 2, "answers before and after the cut-over: {n_old} old, {n_new} new");
}

// ---------------------------------------------------------------------------------------
// 4. A worker restarted in the middle of a materialisation
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn a_worker_restarted_mid_materialise_then_resumed_serves_a_complete_generation() {
    const N: i64 = 20_000;
    let db = CitusDb::new("worker_restart");
    let mut c = db.client();
    gen_items(&mut c, "items_local", N, 0.75);
    gen_pairs(&mut c, "pairs_local", "items_local", N, 3_000, [0.6, 0.3, 0.1], 0.875);
    distributed_copy(&mut c, "items_local", "items", "id", None);
    distributed_copy(&mut c, "pairs_local", "pairs", "l", Some("items"));
    create_set(&mut c, "ds", "items");
    let f = fit(&mut c, "ds", "pairs", "l", "r", "y");

    let mut job_client = db.client();
    let job = thread::spawn(move || {
        let r = job_client.batch_execute("CALL embedstack.materialize('ds', batch_size => 250)");
        (job_client, r)
    });
    let done_before = wait_for("the materialisation writing its batches", Duration::from_secs(300), || {
        let r = c
            .query_opt("SELECT phase, rows_done FROM embedstack.status WHERE model_set = 'ds' AND job_state = 'running'", &[])
            .unwrap()?;
        let (phase, done): (String, i64) = (r.get(0), r.get(1));
        (phase == "write" && done > 0).then_some(done)
    });
    restart_worker(1);
    let (mut job_client, first) = job.join().unwrap();
    let first_error = first
        .as_ref()
        .err()
        .map(|e| format!("{}: {}", e.code().map(|s| s.code()).unwrap_or("-"), all_text(e).trim()));
    eprintln!(
        "[citus] worker_restart: restarted w1 after {done_before} rows; first CALL: {}",
        first_error.as_deref().unwrap_or("succeeded")
    );

    let mut c = db.client();
    let building: Option<(i64, i64)> = c
        .query_opt("SELECT id, rows_written FROM embedstack.generations WHERE model_set = 'ds' AND state = 'building'", &[])
        .unwrap()
        .map(|r| (r.get(0), r.get(1)));
    if first.is_err() {
        let (_, written) = building.expect("the interrupted generation is kept, state building");
        assert!(written > 0 && written < N, "rows written before the restart: {written}");
    }

    // Re-run, in the same session when it survived (a DBA re-running the CALL).
    let rc = if job_client.is_closed() { &mut c } else { &mut job_client };
    rc.batch_execute("CALL embedstack.materialize('ds')")
        .unwrap_or_else(|e| panic!("the re-run: {}", all_text(&e)));

    let (gid, generation, _, fit_id, gmult) = served(&mut c, "ds");
    assert_eq!(fit_id, f.id);
    if let Some((building_id, written)) = building {
        assert_eq!(gid, building_id, "the re-run finished the interrupted generation");
        let resumed: i64 = c
            .query_one(
                "SELECT (details->>'resumed_rows')::int8 FROM embedstack.jobs WHERE model_set = 'ds' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(resumed, written, "the re-run continued after the rows written before the restart");
        eprintln!("[citus] worker_restart: resumed generation {gid} after {resumed} rows");
    }
    let (rows_written, n_gens): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT rows_written FROM embedstack.generations WHERE id = $1),
                        (SELECT count(*) FROM embedstack.generations WHERE model_set = 'ds')",
                &[&gid],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((rows_written, n_gens), (N, 1), "one generation, every row written once");
    assert_colocated_with_hnsw(&mut c, &generation, "items");
    let count: i64 = c.query_one(&format!("SELECT count(*) FROM {generation}"), &[]).unwrap().get(0);
    assert_eq!(count, N, "{generation}: rows");
    let want = expected_vectors(&mut c, "items_local", &checked_multipliers(&f, &gmult));
    assert_vectors_equal(
        &view_vectors(&mut c, "items_ds"),
        &want,
        "items_ds after the resumed materialisation",
    );
    let answer = top_k(&mut c, "items", "items_ds", "ds", 42, 5).unwrap();
    assert_eq!(answer.first().map(|a| a.0), Some(42), "item 42 is its own nearest neighbour: {answer:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Freshness: no triggers, changes served after refresh
// ---------------------------------------------------------------------------------------

/// The same changes, applied to `table`: 20 new rows (INSERT ... SELECT of generated values), 5
/// by COPY, the models of every 50th row changed (`m2` NULL, `m3` constant), the label of
/// every 7th (no model column), every 40th row deleted.
fn apply_changes(c: &mut Client, table: &str, n: i64) {
    c.batch_execute(&format!(
        "INSERT INTO {table}
         SELECT i, array_fill((i % 5)::real - 2, ARRAY[32])::vector(32), array_fill(0.5::real, ARRAY[16])::vector(16),
                ARRAY[1, 2, 3, 4, 5, 6, 7, (i % 9)]::real[], 'new ' || i
           FROM generate_series({} , {}) i;
         UPDATE {table} SET m2 = NULL, m3 = array_fill(((id % 3) + 1)::real, ARRAY[8]) WHERE id % 50 = 3;
         UPDATE {table} SET label = 'relabelled' WHERE id % 7 = 0;
         DELETE FROM {table} WHERE id % 40 = 7;",
        n + 1,
        n + 20
    ))
    .unwrap();
    let mut w = c.copy_in(&format!("COPY {table} (id, m1, m2, m3, label) FROM STDIN")).unwrap();
    for i in n + 101..=n + 105 {
        let m1: Vec<String> = (0..32).map(|k| format!("{}", ((i + k) % 11) as f32 / 4.0 - 1.0)).collect();
        let m2: Vec<String> = (0..16).map(|k| format!("{}", ((i * k) % 7) as f32 / 3.0 - 1.0)).collect();
        writeln!(w, "{i}\t[{}]\t[{}]\t\\N\tcopied {i}", m1.join(","), m2.join(",")).unwrap();
    }
    w.finish().unwrap();
}

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn changes_to_a_distributed_source_are_served_after_refresh_without_triggers() {
    const N: i64 = 2_000;
    let db = CitusDb::new("freshness");
    let mut c = db.client();
    gen_items(&mut c, "items_local", N, 0.0625);
    gen_pairs(&mut c, "pairs_local", "items_local", N, 2_000, [0.6, 0.3, 0.1], 0.1875);
    distributed_copy(&mut c, "items_local", "items", "id", None);
    distributed_copy(&mut c, "pairs_local", "pairs", "l", Some("items"));
    create_set(&mut c, "es", "items");
    let f = fit(&mut c, "es", "pairs", "l", "r", "y");
    c.batch_execute("CALL embedstack.materialize('es')").unwrap();
    assert_no_triggers(&mut c, "items");
    let (gen0, generation0, _, _, gmult) = served(&mut c, "es");
    let mult = checked_multipliers(&f, &gmult);
    let before = expected_vectors(&mut c, "items_local", &mult);
    assert_vectors_equal(&view_vectors(&mut c, "items_es"), &before, "items_es after materialize");

    apply_changes(&mut c, "items", N);
    apply_changes(&mut c, "items_local", N);
    let changed: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT id, m1, m2, m3, label FROM items EXCEPT SELECT id, m1, m2, m3, label FROM items_local) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(changed, 0, "the source and the plain copy hold the same rows");
    // Not served yet: the view still serves the rows as they were.
    assert_vectors_equal(&view_vectors(&mut c, "items_es"), &before, "items_es before refresh");
    assert_no_triggers(&mut c, "items");

    let t = Instant::now();
    c.batch_execute("CALL embedstack.refresh('es')").unwrap_or_else(|e| panic!("refresh: {}", all_text(&e)));
    eprintln!("[citus] freshness: refresh {:.2} s", t.elapsed().as_secs_f64());
    let (gen1, generation1, _, fid, gmult1) = served(&mut c, "es");
    assert!(gen1 != gen0 && fid == f.id, "refresh writes a new generation of the active fit");
    assert_eq!(gmult1, gmult);
    assert_colocated_with_hnsw(&mut c, &generation1, "items");
    let after = expected_vectors(&mut c, "items_local", &mult);
    // What the changes did (a check of this test's statements): 19 + 5 rows added (2007 was
    // deleted again), 50 deleted, the models of 40 changed.
    let added = after.keys().filter(|k| !before.contains_key(k)).count();
    let removed = before.keys().filter(|k| !after.contains_key(k)).count();
    let changed = after.iter().filter(|(k, v)| before.get(k).is_some_and(|b| b != *v)).count();
    assert_eq!((added, removed, changed), (24, 50, 40), "rows added, deleted, changed");
    assert_vectors_equal(&view_vectors(&mut c, "items_es"), &after, "items_es after refresh");
    assert_no_triggers(&mut c, "items");
    assert_no_triggers(&mut c, &generation1);
    // The generation refresh replaced holds the served layout (same fit), so rollback could not
    // reach anything different through it: since 0.4.0 it is dropped, row and table (README,
    // "A kept generation with the served one's layout ... is dropped"); the rollback point, if
    // there were an earlier fit, would stay.
    let rows: i64 =
        c.query_one("SELECT count(*) FROM embedstack.generations WHERE id = $1", &[&gen0]).unwrap().get(0);
    assert_eq!(rows, 0, "{generation0}: the replaced generation of the same fit is not kept");
    let table: Option<String> = c.query_one("SELECT to_regclass($1)::text", &[&generation0]).unwrap().get(0);
    assert_eq!(table, None, "{generation0} is dropped");
}

// ---------------------------------------------------------------------------------------
// 6. Sources that cannot be served
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn sources_not_distributed_on_their_key_are_refused() {
    let db = CitusDb::new("refused");
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE by_group (id bigint NOT NULL, grp int NOT NULL, m vector(3), PRIMARY KEY (id, grp));
         SELECT create_distributed_table('by_group', 'grp', shard_count => 4);
         CREATE TABLE ref (id bigint PRIMARY KEY, m vector(3));
         SELECT create_reference_table('ref');
         CREATE TABLE citus_local (id bigint PRIMARY KEY, m vector(3));
         SELECT citus_add_local_table_to_metadata('citus_local');",
    )
    .unwrap();
    for (table, set) in [("by_group", "g"), ("ref", "r"), ("citus_local", "l")] {
        let e = expect_code(
            &mut c,
            &format!("SELECT embedstack.create_model_set('{set}', '{table}', 'id', ARRAY['m'])"),
            "0A000",
        );
        eprintln!("[citus] refused: {table}: {}", all_text(&e).lines().next().unwrap_or(""));
    }
    let n: i64 = c.query_one("SELECT count(*) FROM embedstack.model_sets", &[]).unwrap().get(0);
    assert_eq!(n, 0, "no model set was created");

    // A model set made on a plain table that is then distributed on another column (its key's
    // unique index replaced): materialize refuses before writing anything.
    c.batch_execute(
        "CREATE TABLE later (id bigint PRIMARY KEY, grp int NOT NULL, m vector(3), m2 vector(2));
         INSERT INTO later SELECT i, i % 3, ARRAY[1 + i % 5, 2, i % 7]::real[]::vector, ARRAY[i % 4, 1]::real[]::vector
           FROM generate_series(1, 60) i;
         CREATE TABLE later_pairs AS
           SELECT a.id AS a, b.id AS b, 0.8 * (1 - (a.m <=> b.m)) + 0.2 * (1 - (a.m2 <=> b.m2)) AS y
             FROM later a JOIN later b ON b.id = a.id + 1;
         SELECT embedstack.create_model_set('later', 'later', 'id', ARRAY['m', 'm2']);",
    )
    .unwrap();
    c.execute("SELECT embedstack.fit('later', 'later_pairs', 'a', 'b', 'y', nonnegative => true)", &[])
        .unwrap_or_else(|e| panic!("fit while plain: {}", all_text(&e)));
    c.batch_execute(
        "ALTER TABLE later DROP CONSTRAINT later_pkey, ADD PRIMARY KEY (id, grp);
         SELECT create_distributed_table('later', 'grp', shard_count => 4);",
    )
    .unwrap();
    expect_code(&mut c, "CALL embedstack.materialize('later')", "0A000");
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM embedstack.generations WHERE model_set = 'later'),
                    (SELECT active_fit FROM embedstack.model_sets WHERE name = 'later') IS NULL,
                    to_regclass('later_later') IS NULL",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, bool>(1), r.get::<_, bool>(2)),
        (0, true, true),
        "nothing served"
    );
}

/// `fit` over a source distributed on a column other than the model set's key (possible when the
/// table was distributed after create_model_set): refused like materialize (0A000), not a
/// statement the extension failed to build.
#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn fit_over_a_source_distributed_on_another_column_is_refused() {
    let db = CitusDb::new("refused_fit");
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE later (id bigint PRIMARY KEY, grp int NOT NULL, m vector(3), m2 vector(2));
         INSERT INTO later SELECT i, i % 3, ARRAY[1 + i % 5, 2, i % 7]::real[]::vector, ARRAY[i % 4, 1]::real[]::vector
           FROM generate_series(1, 60) i;
         CREATE TABLE later_pairs AS
           SELECT a.id AS a, b.id AS b, 0.8 * (1 - (a.m <=> b.m)) + 0.2 * (1 - (a.m2 <=> b.m2)) AS y
             FROM later a JOIN later b ON b.id = a.id + 1;
         SELECT embedstack.create_model_set('later', 'later', 'id', ARRAY['m', 'm2']);
         ALTER TABLE later DROP CONSTRAINT later_pkey, ADD PRIMARY KEY (id, grp);
         SELECT create_distributed_table('later', 'grp', shard_count => 4);",
    )
    .unwrap();
    let e = expect_code(&mut c, "SELECT embedstack.fit('later', 'later_pairs', 'a', 'b', 'y')", "0A000");
    assert!(sqlstate(&e) == "0A000" && all_text(&e).contains("grp"), "{}", all_text(&e));
}

// ---------------------------------------------------------------------------------------
// 6. Learned projections (dims) on a distributed source
// ---------------------------------------------------------------------------------------

/// The served generation's projection of model set `set`: `(id, multipliers, basis rows)`.
fn served_basis(c: &mut Client, set: &str) -> (i64, Vec<f64>, Vec<Vec<f64>>) {
    let r = c
        .query_one(
            "SELECT p.id, p.multipliers, p.dims, p.input_width, p.basis::float8[] FROM embedstack.model_sets m
               JOIN embedstack.generations g ON g.id = m.served_generation JOIN embedstack.projections p ON p.id = g.projection
              WHERE m.name = $1",
            &[&set],
        )
        .unwrap_or_else(|e| panic!("{set}: no served projection: {e}"));
    let (dims, input): (i32, i32) = (r.get(2), r.get(3));
    let flat: Vec<f64> = r.get(4);
    assert_eq!(flat.len(), (dims * input) as usize, "{set}: basis size");
    (r.get(0), r.get(1), flat.chunks(input as usize).map(<[f64]>::to_vec).collect())
}

/// `id -> basis · [m_k u_k]` of every row of the plain table `table`, in f64: the raw vectors
/// unit-normalised and scaled by the multipliers here (a NULL or zero vector is a zero block;
/// a model with multiplier 0 has no block), then projected onto the basis rows.
fn projected_vectors(
    c: &mut Client,
    table: &str,
    mult: &[f64],
    basis: &[Vec<f64>],
) -> BTreeMap<i64, Vec<f64>> {
    let rows = c.query(&format!("SELECT id, m1::real[], m2::real[], m3 FROM {table}"), &[]).unwrap();
    rows.iter()
        .map(|r| {
            let mut x = Vec::new();
            for (k, &m) in mult.iter().enumerate() {
                if m == 0.0 {
                    continue;
                }
                let v: Option<Vec<f32>> = r.get(k + 1);
                let v: Vec<f64> = v.unwrap_or_default().iter().map(|&e| e as f64).collect();
                let n = v.iter().map(|e| e * e).sum::<f64>().sqrt();
                if n == 0.0 {
                    x.extend(std::iter::repeat_n(0.0, DIMS[k] as usize));
                } else {
                    x.extend(v.iter().map(|e| m * e / n));
                }
            }
            let p = basis.iter().map(|b| b.iter().zip(&x).map(|(a, y)| a * y).sum()).collect();
            (r.get(0), p)
        })
        .collect()
}

/// Every served vector of `view` is the projection of its plain copy's row, to float32 rounding.
fn assert_projected(got: &Vectors, want: &BTreeMap<i64, Vec<f64>>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows served");
    for (id, w) in want {
        let g = got.get(id).unwrap_or_else(|| panic!("{what}: row {id} is not served"));
        assert_eq!(g.len(), w.len(), "{what}: width");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((*a as f64 - b).abs() < 2e-5, "{what}: row {id} coordinate {j}: {a} vs {b}");
        }
    }
}

/// A model set created with `dims` over a distributed source: the basis is learned from the
/// shards' rows (12,000 rows: a TABLESAMPLE of the distributed table), the batches project on
/// the coordinator into a co-located generation with an HNSW index per shard, query_vector and
/// the served check use the same basis; a refit with other weights serves a new projection in a
/// new generation, and rollback serves the old pair again.
#[test]
#[ignore = "needs the Citus cluster: make test-citus"]
fn a_projected_model_set_is_served_from_a_distributed_source() {
    const N: i64 = 12_000;
    let db = CitusDb::new("projection");
    let (mut c, notices) = db.client_with_notices();
    gen_items(&mut c, "items_local", N, 0.3125);
    gen_pairs(&mut c, "pairs_old_local", "items_local", N, 4_000, [0.6, 0.3, 0.1], 0.4375);
    gen_pairs(&mut c, "pairs_new_local", "items_local", N, 4_000, [0.1, 0.3, 0.9], 0.5625);
    distributed_copy(&mut c, "items_local", "items", "id", None);
    distributed_copy(&mut c, "pairs_old_local", "pairs_old", "l", Some("items"));
    distributed_copy(&mut c, "pairs_new_local", "pairs_new", "l", Some("items"));
    let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
    c.execute(
        "SELECT embedstack.create_model_set('pd', 'items', 'id', $1::name[], combined_column => 'c', dims => 16)",
        &[&cols],
    )
    .unwrap_or_else(|e| panic!("create_model_set pd: {}", all_text(&e)));

    let old_fit = fit(&mut c, "pd", "pairs_old", "l", "r", "y");
    let t = Instant::now();
    c.batch_execute("CALL embedstack.materialize('pd')")
        .unwrap_or_else(|e| panic!("materialize: {}", all_text(&e)));
    eprintln!("[citus] projection: materialize of {N} rows at dims 16 {:.2} s", t.elapsed().as_secs_f64());
    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("16 of 56 dimensions keep")),
        "materialize reports the projection: {:?}",
        notices.lock().unwrap()
    );
    let (old_gen, generation, _, fid, gmult) = served(&mut c, "pd");
    assert_eq!(fid, old_fit.id);
    assert_colocated_with_hnsw(&mut c, &generation, "items");
    let (old_proj, pmult, old_basis) = served_basis(&mut c, "pd");
    assert_eq!(pmult, gmult, "the projection maps the generation's layout");
    let mult = checked_multipliers(&old_fit, &gmult);
    let (sample, source): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT sample_rows, source_rows FROM embedstack.projections WHERE id = $1",
                &[&old_proj],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(source == N && sample > 8_000 && sample < N, "a sample of the {N} rows: {sample} of {source}");
    let old = projected_vectors(&mut c, "items_local", &mult, &old_basis);
    let old_served = view_vectors(&mut c, "items_pd");
    assert_projected(&old_served, &old, "items_pd");

    // The cut-over's served check and the status view.
    let r = c
        .query_one(
            "SELECT (j.details->>'pairs_checked')::int8, (j.details->>'served_spearman')::float8, s.dims,
                    s.served_projection, s.unprojected_width
               FROM embedstack.jobs j, embedstack.status s
              WHERE s.model_set = 'pd' AND j.id = (SELECT max(id) FROM embedstack.jobs WHERE model_set = 'pd')",
            &[],
        )
        .unwrap();
    let (checked, rho, dims, sp, uw): (i64, f64, i32, i64, i32) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert!(checked > 1_500 && rho > 0.5 && rho <= 1.0, "served check: {checked} pairs, Spearman {rho}");
    assert_eq!((dims, sp, uw), (16, old_proj, 56), "status");

    // query_vector projects with the served basis (symmetric: a row's own served vector), and
    // the top-k over the per-shard HNSW indexes matches exact search in the served space.
    let mut rng = Rng(0xD15C);
    let queries: Vec<i64> = (0..30).map(|_| 1 + (rng.next_u64() % N as u64) as i64).collect();
    let mut hits = 0usize;
    for &q in &queries {
        let qv: Option<Vec<f32>> = c
            .query_one(&format!("SELECT embedstack.query_vector('pd', {q}::bigint)::real[]"), &[])
            .unwrap()
            .get(0);
        let Some(qv) = qv else { continue };
        assert_eq!(&qv, &old_served[&q], "query_vector('pd', {q})");
        let mut exact: Vec<(f64, i64)> = old_served.iter().map(|(id, v)| (-dot(v, &qv), *id)).collect();
        exact.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
        let exact: BTreeSet<i64> = exact[..10].iter().map(|e| e.1).collect();
        let answer = top_k(&mut c, "items", "items_pd", "pd", q, 10).unwrap();
        hits += answer.iter().filter(|(id, _)| exact.contains(id)).count();
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.9, "recall@10 in the served space {recall}");

    // A refit with other weights: other multipliers, a new projection, a new generation.
    c.batch_execute("CALL embedstack.refit('pd', 'pairs_new', 'l', 'r', 'y', cutover => 'always')")
        .unwrap_or_else(|e| panic!("refit: {}", all_text(&e)));
    let (new_gen, _, _, new_fit_id, nmult) = served(&mut c, "pd");
    let (new_proj, _, new_basis) = served_basis(&mut c, "pd");
    assert!(new_gen != old_gen && new_proj != old_proj && new_fit_id != old_fit.id, "refit: a new pair");
    assert!(nmult != gmult, "other multipliers: {nmult:?} vs {gmult:?}");
    let new = projected_vectors(&mut c, "items_local", &nmult, &new_basis);
    assert_projected(&view_vectors(&mut c, "items_pd"), &new, "items_pd after the refit");

    // Rollback serves the old generation with its old projection; query_vector follows.
    c.batch_execute("CALL embedstack.rollback('pd')")
        .unwrap_or_else(|e| panic!("rollback: {}", all_text(&e)));
    let (g, _, _, f, _) = served(&mut c, "pd");
    assert_eq!((g, f), (old_gen, old_fit.id), "rollback serves the old generation and fit");
    assert_eq!(served_basis(&mut c, "pd").0, old_proj, "with its projection");
    assert_projected(&view_vectors(&mut c, "items_pd"), &old, "items_pd after the rollback");
    let q = queries[0];
    let qv: Vec<f32> = c
        .query_one(&format!("SELECT embedstack.query_vector('pd', {q}::bigint)::real[]"), &[])
        .unwrap()
        .get(0);
    assert_eq!(&qv, &old_served[&q], "query_vector after the rollback uses the old basis");
}
