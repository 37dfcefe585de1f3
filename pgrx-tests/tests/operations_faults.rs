//! Faults and load against the 0.3.0 jobs (`CALL embedstack.materialize` / `embedstack.refit`
//! as committed steps prepare → write → index → wait → cutover, docs/design.md §7): the served
//! vectors live in generation tables read through the model set's view; nothing is written to,
//! added to or locked in the source table.
//!
//! Faults: a 20,000-row table `ft` with three models (`vector(32)`, `vector(48)`, `vector(16)`)
//! is served (model set `fa`, view `ft_fa`) with a first fit; a second fit with other weights
//! makes the job write a new generation. A twin table `tw` (same data, model set `tb`, view
//! `tw_tb`, bitwise-equal fits) is materialised without interruption as the reference. The
//! runner of `fa`'s job is killed (a) with pg_terminate_backend mid-batch, (b) during the HNSW
//! build, (c) in the `wait` phase before the cut-over, (d) with SIGKILL mid-batch (the
//! postmaster restarts every session). Each test runs on a throw-away cluster of its own
//! (`embedstack_client_tests::cluster`), so that no kill reaches the project cluster. After each
//! kill: the served k-NN answers through the view (ids and distances), the served catalog
//! state, the view's definition and the served index plan are those of before the job;
//! `embedstack.status` says `interrupted`; the building generation holds exactly the committed
//! batches (its `cursor_key` is its last key). The same CALL then resumes from `cursor_key`
//! (`resumed_from`, "resuming after N rows", the first batch after them; the rows already
//! written keep their ctid/xmin: not rewritten; the complete index reused in (c)), completes,
//! and the new generation equals the twin's bitwise on every key (`combined::real[]`) and the
//! closed form computed here on a sample. The source's pg_attribute rows and every row's
//! ctid/xmin are unchanged from before the first materialisation to the end.
//!
//! Load (project cluster): a 100,000-row table at the default fillfactor served with fit A is
//! refitted (fit B, `cutover => 'always'`) while 2 writer sessions insert / update / delete
//! their own rows and 2 reader sessions run k-NN queries through the view (joined to the
//! source, as the README queries). No statement may fail; every reader answer is under exactly
//! one fit (the distances of the returned untouched rows are all fit A's or all fit B's scores,
//! computed here from the raw vectors), each reader sees A then B, never back; afterwards the
//! view equals `_combine_vector` over the source for the served layout on every key (nothing
//! lost, nothing extra), the retained generation equals it for fit A's layout, the untouched
//! rows keep their ctid/xmin. A refit also completes while another session holds
//! `LOCK TABLE source IN SHARE MODE` all along, with readers seeing one fit per answer.
//!
//! The cut-over wait: it ignores a long transaction of another database, but waits for a
//! REPEATABLE READ transaction of the same database whose snapshot predates the end of the
//! writing; with `embedstack.cutover_wait_timeout = '1s'` it gives up with 55000, the old
//! generation still served, and a re-run after that transaction ended completes.
//!
//! The tests of this file run one at a time (a static lock): they load the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use embedstack_client_tests::catalog::{fit, row_versions};
use embedstack_client_tests::cluster::ThrowawayCluster;
use embedstack_client_tests::data::{lit, load_pairs, load_vectors, make_pairs, models_sql, Models, Rng};
use embedstack_client_tests::reference::{combined, score, symmetric_multipliers};
use embedstack_client_tests::sql::{backend_pid, sqlstate};
use embedstack_client_tests::wait::wait_for;
use embedstack_client_tests::{connect_as, create_db, drop_db, fresh_db, port};
use postgres::{Client, Config, NoTls};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One test at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn bits_eq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A database to open sessions on: the project cluster's or a throw-away cluster's.
#[derive(Clone, Debug)]
struct Db {
    port: u16,
    name: String,
}

type Notices = Arc<Mutex<Vec<String>>>;

impl Db {
    /// Connection settings as postgres, giving up connecting after 10 s (the server may be
    /// restarting after a SIGKILL).
    fn config(&self) -> Config {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1").port(self.port).user("postgres").dbname(&self.name);
        cfg.connect_timeout(Duration::from_secs(10));
        cfg
    }

    fn session(&self) -> Client {
        self.config().connect(NoTls).unwrap_or_else(|e| panic!("connect to {self:?}: {e}"))
    }

    /// A session whose NOTICEs are collected.
    fn with_notices(&self) -> (Client, Notices) {
        let notices: Notices = Arc::default();
        let sink = notices.clone();
        let mut cfg = self.config();
        cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
        (cfg.connect(NoTls).unwrap_or_else(|e| panic!("connect to {self:?}: {e}")), notices)
    }

    /// Connects again after a crash restart: retries for up to `timeout`.
    fn reconnect(&self, timeout: Duration) -> Client {
        let t = Instant::now();
        loop {
            let err = match self.config().connect(NoTls) {
                Ok(mut c) => match c.simple_query("SELECT 1") {
                    Ok(_) => return c,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            assert!(t.elapsed() < timeout, "the server did not accept connections within {timeout:?}: {err}");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `es_<name>` on the project cluster, with the extension.
fn project_db(name: &str) -> (Db, Client) {
    let c = fresh_db(name);
    (Db { port: port().parse().expect("a port number"), name: format!("es_{name}") }, c)
}

/// Database `f` with the extension on a throw-away cluster of the test's own on `port`.
fn throwaway_db(name: &str, port: u16) -> (ThrowawayCluster, Db, Client) {
    let cl = ThrowawayCluster::start(name, port, &[]);
    cl.connect("postgres", "postgres").batch_execute("CREATE DATABASE f").unwrap();
    let mut c = cl.connect("f", "postgres");
    c.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
    (cl, Db { port, name: "f".into() }, c)
}

fn fit_weights(c: &mut Client, fit: i64) -> Vec<f64> {
    c.query_one("SELECT weights FROM embedstack.fits WHERE id = $1", &[&fit]).unwrap().get(0)
}

/// What a model set serves: the catalog's served columns and the view's definition.
#[derive(Debug, Clone, PartialEq)]
struct Served {
    active_fit: Option<i64>,
    multipliers: Option<Vec<f64>>,
    storage: Option<String>,
    index: Option<String>,
    generation: Option<i64>,
    view: String,
    previous_fit: Option<i64>,
    previous_generation: Option<i64>,
    view_def: Option<String>,
}

fn served(c: &mut Client, set: &str) -> Served {
    let r = c
        .query_one(
            "SELECT m.active_fit, m.served_multipliers, m.served_storage, m.served_index::text, m.served_generation,
                    m.view_name::text, m.previous_fit, m.previous_generation,
                    pg_get_viewdef(to_regclass(format('%I.%I', n.nspname, m.view_name)))
               FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE m.name = $1",
            &[&set],
        )
        .unwrap();
    Served {
        active_fit: r.get(0),
        multipliers: r.get(1),
        storage: r.get(2),
        index: r.get(3),
        generation: r.get(4),
        view: r.get(5),
        previous_fit: r.get(6),
        previous_generation: r.get(7),
        view_def: r.get(8),
    }
}

/// One row of `embedstack.generations`.
#[derive(Debug, Clone, PartialEq)]
struct Gen {
    id: i64,
    relation: Option<String>,
    index_name: Option<String>,
    fit_id: i64,
    multipliers: Vec<f64>,
    storage: String,
    width: i32,
    state: String,
    cursor_key: Option<String>,
    rows_written: i64,
}

fn generations(c: &mut Client, set: &str) -> Vec<Gen> {
    c.query(
        "SELECT id, relation::text, index_name::text, fit_id, multipliers, storage, width, state, cursor_key, rows_written
           FROM embedstack.generations WHERE model_set = $1 ORDER BY id",
        &[&set],
    )
    .unwrap()
    .iter()
    .map(|r| Gen {
        id: r.get(0),
        relation: r.get(1),
        index_name: r.get(2),
        fit_id: r.get(3),
        multipliers: r.get(4),
        storage: r.get(5),
        width: r.get(6),
        state: r.get(7),
        cursor_key: r.get(8),
        rows_written: r.get(9),
    })
    .collect()
}

fn generation(c: &mut Client, set: &str, id: i64) -> Gen {
    generations(c, set)
        .into_iter()
        .find(|g| g.id == id)
        .unwrap_or_else(|| panic!("generation {id} of {set} not in the catalog"))
}

/// The documented names: generation table `<view>_g<id>`, its index `<table>_hnsw`.
fn gen_table(view: &str, id: i64) -> String {
    let t = format!("{view}_g{id}");
    assert!(t.len() + 5 <= 63, "short names only: {t}");
    t
}

fn gen_index(view: &str, id: i64) -> String {
    format!("{}_hnsw", gen_table(view, id))
}

/// Every pg_attribute row of a table (dropped and system columns included), as text.
fn attributes(c: &mut Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT a::text FROM pg_attribute a WHERE a.attrelid = $1::text::regclass ORDER BY a.attnum",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `id -> combined::real[]` of a relation with columns `id` and `column` (NULL -> None).
fn vectors(c: &mut Client, rel: &str, column: &str) -> BTreeMap<i32, Option<Vec<f32>>> {
    c.query(&format!("SELECT id, {column}::real[] FROM {rel} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // every field shows in the Debug output of a failure
struct JobRow {
    id: i64,
    kind: String,
    phase: String,
    state: String,
    rows_done: i64,
    rows_total: Option<i64>,
    fit_id: Option<i64>,
    resumed_from: Option<i64>,
    pid: i32,
    waiting: bool,
    outcome: Option<String>,
    generation: Option<i64>,
    horizon: Option<String>,
    error_sqlstate: Option<String>,
}

const JOB_ROW_COLS: &str = "id, kind, phase, state, rows_done, rows_total, fit_id, resumed_from, pid,
                        coalesce((details->>'waiting')::boolean, false), outcome, generation, details->>'horizon',
                        error->>'sqlstate'";

fn job_row_from(r: &postgres::Row) -> JobRow {
    JobRow {
        id: r.get(0),
        kind: r.get(1),
        phase: r.get(2),
        state: r.get(3),
        rows_done: r.get(4),
        rows_total: r.get(5),
        fit_id: r.get(6),
        resumed_from: r.get(7),
        pid: r.get(8),
        waiting: r.get(9),
        outcome: r.get(10),
        generation: r.get(11),
        horizon: r.get(12),
        error_sqlstate: r.get(13),
    }
}

fn latest_job_row(c: &mut Client, set: &str) -> Option<JobRow> {
    c.query_opt(
        &format!("SELECT {JOB_ROW_COLS} FROM embedstack.jobs WHERE model_set = $1 ORDER BY id DESC LIMIT 1"),
        &[&set],
    )
    .unwrap()
    .map(|r| job_row_from(&r))
}

fn job_row(c: &mut Client, id: i64) -> JobRow {
    job_row_from(
        &c.query_one(&format!("SELECT {JOB_ROW_COLS} FROM embedstack.jobs WHERE id = $1"), &[&id]).unwrap(),
    )
}

/// `(job_id, job_state, phase)` of `embedstack.status`.
fn job_status(c: &mut Client, set: &str) -> (Option<i64>, Option<String>, Option<String>) {
    let r = c
        .query_one("SELECT job_id, job_state, phase FROM embedstack.status WHERE model_set = $1", &[&set])
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// `Some(indisvalid)` of an index in schema public, `None` when it does not exist.
fn index_valid(c: &mut Client, index: &str) -> Option<bool> {
    c.query_opt(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(format('public.%I', $1::text))",
        &[&index],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// A served model set as a query sees it: source table, view, vector column.
#[derive(Clone, Copy)]
struct View<'a> {
    set: &'a str,
    source: &'a str,
    view: &'a str,
    col: &'a str,
}

const FA: View<'static> = View { set: "fa", source: "ft", view: "ft_fa", col: "fa_combined" };
const TB: View<'static> = View { set: "tb", source: "tw", view: "tw_tb", col: "tb_combined" };

/// The README query: the source joined to the view, ordered by `<#>` to the query vector.
fn knn_sql(v: View, q: &str) -> String {
    let qv = format!("embedstack.query_vector('{}', {q})", v.set);
    format!(
        "SELECT s.id, (v.{col} <#> {qv})::float8 FROM {src} s JOIN {view} v USING (id) ORDER BY v.{col} <#> {qv} LIMIT 10",
        col = v.col,
        src = v.source,
        view = v.view
    )
}

/// The served k-NN answers `(id, distance)` of each query (`hnsw.ef_search = 200`).
fn knn_answers(c: &mut Client, v: View, queries: &[String]) -> Vec<Vec<(i32, f64)>> {
    c.batch_execute("SET hnsw.ef_search = 200").unwrap();
    queries
        .iter()
        .map(|q| c.query(&knn_sql(v, q), &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect())
        .collect()
}

/// Asserts the served query plans as a scan of `index`.
fn assert_index_used(c: &mut Client, v: View, q: &str, index: &str, what: &str) {
    let plan: Vec<String> =
        c.query(&format!("EXPLAIN {}", knn_sql(v, q)), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {index} "))), "{what}: plan {plan:#?}");
}

/// The number in the NOTICE `... resuming after N rows`.
fn resumed_after(notice: &str) -> i64 {
    let rest = &notice[notice.rfind("resuming after ").unwrap() + "resuming after ".len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{notice}: {e}"))
}

/// The first number of a progress NOTICE `model set "x": N / M rows (...)`.
fn progress_done(notice: &str) -> i64 {
    let rest = &notice[notice.find("\": ").unwrap() + 3..];
    rest.split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{notice}: {e}"))
}

// ---------------------------------------------------------------------------------------
// 1. Faults
// ---------------------------------------------------------------------------------------

const FDIMS: [usize; 3] = [32, 48, 16];
const FROWS: i32 = 20_000;
/// Batch size of the interrupted jobs: 80 committed batches.
const FBATCH: i64 = 250;

/// A database with `ft` (model set `fa`) and its twin `tw` (model set `tb`): the same rows
/// (every 1000th misses model 2), pairs `p0` and `p1` with different target weights, both sets
/// served with a fit on `p0` (bitwise-equal weights), vacuumed and analysed.
struct FaultDb {
    db: Db,
    c: Client,
    rows: BTreeMap<i32, Models>,
    /// The fixed k-NN queries (`ARRAY[...]::vector[]`).
    queries: Vec<String>,
    /// pg_attribute rows and `(id, ctid, xmin)` of `ft` right after it was loaded.
    ft_attributes: Vec<String>,
    ft_rows: Vec<(i32, String, String)>,
}

fn fault_setup(db: Db, mut c: Client, seed: u64, n: i32) -> FaultDb {
    let t0 = Instant::now();
    let mut rng = Rng(seed);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=n {
        let mut m: Models = FDIMS.iter().map(|&d| Some(rng.vec(d))).collect();
        if id % 1000 == 7 {
            m[1] = None;
        }
        rows.insert(id, m);
    }
    for t in ["ft", "tw"] {
        load_vectors(&mut c, t, &FDIMS, &rows, "");
    }
    let ft_attributes = attributes(&mut c, "ft");
    let ft_rows = row_versions(&mut c, "ft");
    let p0 = make_pairs(&mut rng, &rows, (1, n), 3000, &|x, r| {
        1.0 * x[0] + 0.5 * x[1] + 0.2 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "p0", &p0);
    let p1 = make_pairs(&mut rng, &rows, (1, n), 3000, &|x, r| {
        0.3 * x[0] + 1.0 * x[1] + 0.6 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "p1", &p1);
    c.batch_execute(
        "SELECT embedstack.create_model_set('fa', 'ft', 'id', ARRAY['m1', 'm2', 'm3']);
         SELECT embedstack.create_model_set('tb', 'tw', 'id', ARRAY['m1', 'm2', 'm3'])",
    )
    .unwrap();
    let (_, wa) = fit(&mut c, "fa", "p0");
    let (_, wt) = fit(&mut c, "tb", "p0");
    assert!(
        bits_eq(&wa, &wt),
        "test precondition: twin fits on the same data are bitwise equal: {wa:?} vs {wt:?}"
    );
    c.batch_execute("CALL embedstack.materialize('fa')").unwrap();
    c.batch_execute("CALL embedstack.materialize('tb')").unwrap();
    c.batch_execute("VACUUM ANALYZE ft").unwrap();
    c.batch_execute("VACUUM ANALYZE tw").unwrap();
    for v in [FA, TB] {
        let s = served(&mut c, v.set);
        assert_eq!(s.view, v.view, "the documented view name <source>_<model set>");
        let g = s.generation.expect("a served generation");
        c.batch_execute(&format!("ANALYZE {}", gen_table(v.view, g))).unwrap();
    }

    // Query rows (n - 2993 misses model 2), a random query and one with a NULL model.
    let ids = [1, n / 5, n / 2, n - 2993, n - 2];
    let mut queries: Vec<String> = ids.iter().map(|id| models_sql(&rows[id])).collect();
    let r: Models = FDIMS.iter().map(|&d| Some(rng.vec(d))).collect();
    queries.push(models_sql(&r));
    queries.push(models_sql(&vec![Some(rng.vec(32)), None, Some(rng.vec(16))]));
    eprintln!("{}: setup (2 x {n} rows, 2 materialisations) {:.1}s", db.name, t0.elapsed().as_secs_f64());
    FaultDb { db, c, rows, queries, ft_attributes, ft_rows }
}

/// Checks the served generation of `fa` against the twin's (`combined::real[]` bitwise on
/// every key, and as text) and, on a sample of 300 rows, against the closed form for the
/// served multipliers; returns the number of keys compared.
fn assert_equals_twin(f: &mut FaultDb, mult: &[f64]) -> usize {
    let r =
        f.c.query_one(
            "SELECT count(*), count(f.fa_combined), count(t.tb_combined),
                    count(*) FILTER (WHERE f.fa_combined::text IS DISTINCT FROM t.tb_combined::text)
               FROM ft_fa f FULL JOIN tw_tb t USING (id)",
            &[],
        )
        .unwrap();
    let n_rows = f.rows.len() as i64;
    let got: (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        got,
        (n_rows, n_rows, n_rows, 0),
        "(keys, non-NULL here, non-NULL in the twin, differing from the twin as text)"
    );
    let mine = vectors(&mut f.c, "ft_fa", "fa_combined");
    let theirs = vectors(&mut f.c, "tw_tb", "tb_combined");
    assert_eq!(mine.len(), theirs.len());
    for ((id, a), (id2, b)) in mine.iter().zip(&theirs) {
        assert_eq!(id, id2);
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "key {id}: the resumed generation differs from the twin's"
        );
    }
    let mut rng = Rng(0x5A3F);
    for _ in 0..300 {
        let id = rng.range(1, f.rows.len() as i32);
        let want = combined(&f.rows[&id], &FDIMS, mult);
        let got = mine[&id].as_ref().unwrap();
        assert_eq!(got.len(), want.len(), "key {id}: width");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-6, "key {id} element {i}: {g} vs {w} (closed form)");
        }
    }
    mine.len()
}

/// The source `ft` is as it was loaded: pg_attribute rows and every row's ctid/xmin.
fn assert_source_untouched(f: &mut FaultDb, what: &str) {
    assert_eq!(attributes(&mut f.c, "ft"), f.ft_attributes, "{what}: pg_attribute rows of ft");
    assert!(row_versions(&mut f.c, "ft") == f.ft_rows, "{what}: rows of ft rewritten (ctid/xmin changed)");
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum JobKind {
    Materialize,
    Refit,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    /// pg_terminate_backend in phase `write`, batches committed.
    MidBatch,
    /// pg_terminate_backend while CREATE INDEX builds the generation's HNSW index.
    IndexBuild,
    /// pg_terminate_backend in phase `wait` (an older transaction is open).
    BeforeCutover,
    /// SIGKILL of the backend in phase `write`: crash restart of the whole (throw-away) cluster.
    Sigkill,
}

struct Runner {
    pid: i32,
    handle: JoinHandle<Result<(), postgres::Error>>,
}

/// Runs `call` in a session of its own (after `setup`), on a thread.
fn start_runner(db: &Db, setup: &str, call: &str) -> Runner {
    let mut c = db.session();
    if !setup.is_empty() {
        c.batch_execute(setup).unwrap();
    }
    let pid = backend_pid(&mut c);
    let call = call.to_string();
    Runner { pid, handle: thread::spawn(move || c.batch_execute(&call)) }
}

/// Runs `kind` of the second fit on `fa` (on a throw-away cluster on `port`), kills its runner
/// at `fault`, checks that nothing served changed, the job shows as interrupted and what the
/// committed state holds (the building generation = the committed batches, up to its
/// cursor_key; its index only in (c)), re-runs the same CALL and checks the resume
/// (`resumed_from`, "resuming after" the kill's rows, the first batch after them, the rows
/// written before the kill not rewritten, one index build or none in (c)) and the result (the
/// new fit served from that generation, bitwise equal to the twin's, the old generation
/// retained, the source untouched).
fn run_fault(name: &str, port: u16, seed: u64, kind: JobKind, fault: Fault) {
    let t0 = Instant::now();
    let (cluster, db, c) = throwaway_db(name, port);
    let mut f = fault_setup(db, c, seed, FROWS);
    let db = f.db.clone();
    let queries = f.queries.clone();

    // The second fit: the twin gets it without interruption.
    let call = match kind {
        JobKind::Materialize => {
            let (fm, wm) = fit(&mut f.c, "fa", "p1");
            let (ftw, wtw) = fit(&mut f.c, "tb", "p1");
            assert!(bits_eq(&wm, &wtw), "test precondition: bitwise-equal twin fits: {wm:?} vs {wtw:?}");
            f.c.batch_execute(&format!("CALL embedstack.materialize('tb', {ftw})")).unwrap();
            format!("CALL embedstack.materialize('fa', {fm}, batch_size => {FBATCH})")
        }
        JobKind::Refit => {
            f.c.batch_execute("CALL embedstack.refit('tb', 'p1', 'a', 'b', 'y', cutover => 'always')")
                .unwrap();
            format!("CALL embedstack.refit('fa', 'p1', 'a', 'b', 'y', cutover => 'always', batch_size => {FBATCH})")
        }
    };
    let twin = served(&mut f.c, "tb");
    let twin_weights = fit_weights(&mut f.c, twin.active_fit.unwrap());
    let before = served(&mut f.c, "fa");
    assert_ne!(
        before.multipliers, twin.multipliers,
        "test precondition: the second fit has other multipliers"
    );
    let old_gen = before.generation.unwrap();
    assert_eq!(before.index.as_deref(), Some(gen_index("ft_fa", old_gen).as_str()));
    let answers = knn_answers(&mut f.c, FA, &queries);
    assert!(answers.iter().all(|a| a.len() == 10));
    assert_index_used(&mut f.c, FA, &queries[0], &gen_index("ft_fa", old_gen), "before the job");

    // (c): a read-only transaction older than the end of the writing holds the cut-over back.
    let mut old = None;
    if fault == Fault::BeforeCutover {
        let mut o = db.session();
        o.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").unwrap();
        old = Some(o);
    }
    let runner = start_runner(&db, "", &call);
    let mut mon = db.session();
    let mut build_phase = String::new();
    let seen = wait_for(&format!("{fault:?} point of the job"), Duration::from_secs(600), || {
        if runner.handle.is_finished() {
            panic!("the job ended before the {fault:?} point: {:?}", latest_job_row(&mut mon, "fa"));
        }
        let j = latest_job_row(&mut mon, "fa").filter(|j| j.pid == runner.pid && j.state == "running")?;
        match fault {
            // A quarter of the rows or more committed, several batches still to go.
            Fault::MidBatch | Fault::Sigkill => (j.phase == "write"
                && j.rows_done >= FROWS as i64 / 4
                && j.rows_done + 4 * FBATCH <= j.rows_total.unwrap_or(0))
            .then_some(j),
            Fault::IndexBuild => {
                if j.phase != "index" {
                    return None;
                }
                let p: Option<String> = mon
                    .query_opt(
                        "SELECT phase FROM pg_stat_progress_create_index WHERE pid = $1",
                        &[&runner.pid],
                    )
                    .unwrap()
                    .map(|r| r.get(0));
                let p = p.filter(|p| p.starts_with("building index"))?;
                build_phase = p;
                Some(j)
            }
            Fault::BeforeCutover => (j.phase == "wait" && j.waiting).then_some(j),
        }
    });
    let pid = runner.pid;
    if fault == Fault::Sigkill {
        let st = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("run kill");
        assert!(st.success(), "kill -9 {pid}");
    } else {
        let ok: bool = mon.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
        assert!(ok, "pg_terminate_backend({pid})");
    }
    let res = runner.handle.join().expect("runner thread");
    let err = res.expect_err("the killed CALL must not succeed");
    let err = match err.as_db_error() {
        Some(d) => format!("{} {}", d.code().code(), d.message()),
        None => err.to_string(),
    };
    eprintln!(
        "{name}: killed job {} ({fault:?}, phase {}, rows_done {}): {err}",
        seen.id, seen.phase, seen.rows_done
    );
    if fault == Fault::Sigkill {
        // The postmaster ends every session, recovers, and accepts connections again.
        wait_for("the crash restart to end the other sessions", Duration::from_secs(60), || {
            mon.simple_query("SELECT 1").is_err().then_some(())
        });
        mon = db.reconnect(Duration::from_secs(60));
        f.c = db.reconnect(Duration::from_secs(60));
        let log = cluster.log();
        assert!(
            log.contains(&format!("server process (PID {pid}) was terminated by signal 9")),
            "the server log shows the SIGKILL and the crash restart:\n{log}"
        );
    } else {
        wait_for("the killed backend to exit", Duration::from_secs(30), || {
            let n: i64 = mon
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
                .unwrap()
                .get(0);
            (n == 0).then_some(())
        });
    }
    if let Some(mut o) = old.take() {
        o.batch_execute("COMMIT").unwrap();
    }

    // After the kill: nothing served changed, the job shows as interrupted.
    let killed = job_row(&mut mon, seen.id);
    let total = killed.rows_total.expect("rows_total of the killed job");
    assert_eq!(total, FROWS as i64);
    assert_eq!(killed.state, "running", "{killed:?}");
    assert_eq!(killed.phase, seen.phase, "{killed:?}");
    assert_eq!(
        job_status(&mut mon, "fa"),
        (Some(killed.id), Some("interrupted".to_string()), Some(killed.phase.clone())),
        "embedstack.status after the kill"
    );
    assert_eq!(served(&mut mon, "fa"), before, "served catalog state and view definition after the kill");
    assert_eq!(knn_answers(&mut mon, FA, &queries), answers, "served k-NN answers after the kill");
    assert_index_used(&mut mon, FA, &queries[0], &gen_index("ft_fa", old_gen), "after the kill");
    let new_fit = killed.fit_id.expect("fit of the killed job");
    let gid = killed.generation.expect("the generation the killed job wrote");
    let g = generation(&mut mon, "fa", gid);
    assert_eq!(
        (g.state.as_str(), g.fit_id, g.relation.as_deref(), g.index_name.as_deref()),
        ("building", new_fit, Some(gen_table("ft_fa", gid).as_str()), Some(gen_index("ft_fa", gid).as_str())),
        "{g:?}"
    );
    assert_eq!(
        (Some(&g.multipliers), Some(&g.storage)),
        (twin.multipliers.as_ref(), twin.storage.as_ref()),
        "the building generation's layout is the twin's"
    );
    let gt = gen_table("ft_fa", gid);
    let r = mon.query_one(&format!("SELECT count(*), max(id)::text FROM {gt}"), &[]).unwrap();
    let (staged, last): (i64, Option<String>) = (r.get(0), r.get(1));
    assert_eq!(staged, g.rows_written, "the generation holds the committed batches: {g:?}");
    assert_eq!(last, g.cursor_key, "its cursor_key is its last key: {g:?}");
    let gen_index_state = index_valid(&mut mon, &gen_index("ft_fa", gid));
    match fault {
        Fault::MidBatch | Fault::Sigkill => {
            assert!(killed.rows_done > 0 && killed.rows_done < total, "{killed:?}");
            assert_eq!(staged, killed.rows_done, "rows written = the committed batches' rows");
            assert_eq!(gen_index_state, None);
        }
        Fault::IndexBuild => {
            assert_eq!(staged, total);
            assert_eq!(gen_index_state, None, "the aborted CREATE INDEX leaves no index");
        }
        Fault::BeforeCutover => {
            assert_eq!(staged, total);
            assert_eq!(gen_index_state, Some(true), "the complete index stays");
        }
    }
    let written_before = row_versions(&mut mon, &gt);
    assert_eq!(written_before.len() as i64, staged);
    assert_source_untouched(&mut f, "after the kill");

    // The same CALL resumes and completes.
    let t1 = Instant::now();
    let (mut rc, notices) = db.with_notices();
    rc.batch_execute(&call).unwrap_or_else(|e| panic!("re-run of {call}: {e}"));
    let resume_secs = t1.elapsed().as_secs_f64();
    let notices = notices.lock().unwrap().clone();
    let resumed = latest_job_row(&mut f.c, "fa").unwrap();
    assert_eq!(resumed.resumed_from, Some(killed.id), "{resumed:?}");
    assert_eq!((resumed.state.as_str(), resumed.phase.as_str()), ("succeeded", "done"), "{resumed:?}");
    assert_eq!(resumed.fit_id, Some(new_fit));
    assert_eq!(resumed.generation, Some(gid), "the re-run writes the same generation");
    assert_eq!(resumed.rows_done, total, "{resumed:?}");
    assert_eq!(job_row(&mut f.c, killed.id).state, "interrupted");
    if kind == JobKind::Refit {
        assert!(
            notices[0].contains(&format!("resuming the interrupted refit {} (fit {new_fit})", killed.id)),
            "first NOTICE of the re-run: {notices:#?}"
        );
    }
    let prepare = notices
        .iter()
        .find(|n| n.contains(&format!("into generation {gid} ")) && n.contains("resuming after "))
        .unwrap_or_else(|| panic!("no NOTICE of resuming generation {gid}: {notices:#?}"));
    let already = resumed_after(prepare);
    let builds = notices.iter().filter(|n| n.contains("building the HNSW index")).count();
    let progress: Vec<i64> =
        notices.iter().filter(|n| n.contains(" rows (")).map(|n| progress_done(n)).collect();
    match fault {
        Fault::MidBatch | Fault::Sigkill => {
            assert_eq!(already, killed.rows_done, "rows already done: {prepare}");
            assert_eq!(progress.first(), Some(&(killed.rows_done + FBATCH)), "{notices:#?}");
            assert_eq!(builds, 1, "{notices:#?}");
        }
        Fault::IndexBuild => {
            assert_eq!(already, total, "{prepare}");
            assert!(progress.is_empty(), "no batch to write: {notices:#?}");
            assert_eq!(builds, 1, "{notices:#?}");
        }
        Fault::BeforeCutover => {
            assert_eq!(already, total, "{prepare}");
            assert!(progress.is_empty(), "no batch to write: {notices:#?}");
            assert_eq!(builds, 0, "the generation's index must be reused: {notices:#?}");
            assert!(notices.iter().any(|n| n.contains("is complete, keeping it")), "{notices:#?}");
        }
    }
    // The rows written before the kill were not written again.
    let written_after: BTreeMap<i32, (String, String)> =
        row_versions(&mut f.c, &gt).into_iter().map(|(id, ctid, xmin)| (id, (ctid, xmin))).collect();
    assert_eq!(written_after.len(), FROWS as usize);
    let rewritten = written_before
        .iter()
        .filter(|(id, ctid, xmin)| written_after.get(id) != Some(&(ctid.clone(), xmin.clone())))
        .count();
    assert_eq!(rewritten, 0, "rows written before the kill were rewritten by the re-run");

    // The new fit is served from that generation, equal to the twin's bitwise.
    let after = served(&mut f.c, "fa");
    assert_eq!(after.active_fit, Some(new_fit));
    assert!(
        bits_eq(&fit_weights(&mut f.c, new_fit), &twin_weights),
        "the resumed fit's weights = the twin's"
    );
    assert_eq!(
        (&after.multipliers, &after.storage),
        (&twin.multipliers, &twin.storage),
        "layout = the twin's"
    );
    assert_eq!(
        (after.generation, after.index.as_deref(), after.previous_fit, after.previous_generation),
        (Some(gid), Some(gen_index("ft_fa", gid).as_str()), before.active_fit, Some(old_gen)),
        "{after:?}"
    );
    let gens: Vec<(i64, String)> = generations(&mut f.c, "fa").into_iter().map(|g| (g.id, g.state)).collect();
    assert_eq!(gens, vec![(old_gen, "retained".to_string()), (gid, "served".to_string())]);
    assert_eq!(index_valid(&mut f.c, &gen_index("ft_fa", gid)), Some(true));
    let mult = symmetric_multipliers(&twin_weights, 0.05);
    let compared = assert_equals_twin(&mut f, &mult);
    assert_index_used(&mut f.c, FA, &queries[0], &gen_index("ft_fa", gid), "after the resume");
    assert_eq!(job_status(&mut f.c, "fa").1.as_deref(), Some("succeeded"));
    assert_source_untouched(&mut f, "after the resume");
    println!(
        "{name}: {kind:?} killed by {fault:?} in phase {} at {}/{} rows{}; resumed (job {} from {}, {} rows already \
         written, not rewritten) in {resume_secs:.1}s; {compared} keys equal to the twin's bitwise; {:.1}s in all",
        killed.phase,
        killed.rows_done,
        total,
        if build_phase.is_empty() { String::new() } else { format!(" (index build: {build_phase})") },
        resumed.id,
        killed.id,
        already,
        t0.elapsed().as_secs_f64()
    );
    drop(rc);
    drop(mon);
    drop(f);
    drop(cluster);
}

/// (a) materialize killed with pg_terminate_backend mid-batch, then resumed.
#[test]
fn faults_terminate_mid_batch_then_resume() {
    let _g = serial();
    run_fault("faults_mid_batch", 28901, 0xFA17_0001, JobKind::Materialize, Fault::MidBatch);
}

/// (b) refit killed with pg_terminate_backend during the HNSW build of the new generation.
#[test]
fn faults_terminate_during_index_build_then_resume() {
    let _g = serial();
    run_fault("faults_index_build", 28902, 0xFA17_0002, JobKind::Refit, Fault::IndexBuild);
}

/// (c) materialize killed in the `wait` phase (an older transaction holds the cut-over back);
/// the re-run keeps the complete index.
#[test]
fn faults_terminate_before_cutover_then_resume() {
    let _g = serial();
    run_fault("faults_before_cutover", 28903, 0xFA17_0003, JobKind::Materialize, Fault::BeforeCutover);
}

/// (d) refit's backend SIGKILLed mid-batch: the whole (throw-away) cluster restarts; the re-run
/// resumes.
#[test]
fn faults_sigkill_mid_batch_then_resume() {
    let _g = serial();
    run_fault("faults_sigkill", 28904, 0xFA17_0004, JobKind::Refit, Fault::Sigkill);
}

// ---------------------------------------------------------------------------------------
// 2. Load
// ---------------------------------------------------------------------------------------

const LDIMS: [usize; 3] = [16, 24, 8];
const LROWS: i32 = 100_000;
const WRITERS: usize = 2;
const READERS: usize = 2;

#[derive(Default)]
struct WriterStats {
    base: i32,
    inserts: u64,
    updates: u64,
    deletes: u64,
    live: BTreeSet<i32>,
    /// Start of every successful statement, seconds since the start of the run.
    ops: Vec<f64>,
    max_latency: Duration,
    errors: Vec<String>,
}

/// Inserts, updates (one or two models, sometimes to NULL) and deletes rows of its own id
/// range `base + 1 ..`, one row per statement, until `stop`.
fn writer(db: Db, w: usize, start: Instant, stop: Arc<AtomicBool>) -> WriterStats {
    let mut c = db.session();
    let mut rng = Rng(0xB0B0_0000 + w as u64);
    let base = 1_000_000 * (w as i32 + 1);
    let mut st = WriterStats { base, ..Default::default() };
    let mut live: Vec<i32> = Vec::new();
    let mut next = base;
    let vtext = |rng: &mut Rng, k: usize, null_rate: f64| -> Option<String> {
        if rng.unif() < null_rate {
            None
        } else {
            Some(lit(&rng.vec(LDIMS[k])))
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let r = rng.unif();
        let t = Instant::now();
        let at = start.elapsed().as_secs_f64();
        let (what, res) = if live.len() < 50 || r < 0.45 {
            next += 1;
            let id = next;
            let (a, b, d) = (vtext(&mut rng, 0, 0.02), vtext(&mut rng, 1, 0.02), vtext(&mut rng, 2, 0.02));
            let res = c.execute(
                "INSERT INTO big (id, m1, m2, m3) VALUES ($1, $2::text::vector, $3::text::vector, $4::text::vector)",
                &[&id, &a, &b, &d],
            );
            if res.is_ok() {
                live.push(id);
                st.inserts += 1;
            }
            (format!("insert {id}"), res)
        } else if r < 0.85 {
            let id = live[rng.range(0, live.len() as i32 - 1) as usize];
            let k = rng.range(0, 2) as usize;
            let res = if rng.unif() < 0.3 {
                let k2 = (k + 1) % 3;
                let (a, b) = (vtext(&mut rng, k, 0.05), vtext(&mut rng, k2, 0.05));
                c.execute(
                    &format!(
                        "UPDATE big SET m{} = $2::text::vector, m{} = $3::text::vector WHERE id = $1",
                        k + 1,
                        k2 + 1
                    ),
                    &[&id, &a, &b],
                )
            } else {
                let a = vtext(&mut rng, k, 0.05);
                c.execute(&format!("UPDATE big SET m{} = $2::text::vector WHERE id = $1", k + 1), &[&id, &a])
            };
            if res.is_ok() {
                st.updates += 1;
            }
            (format!("update {id}"), res)
        } else {
            let i = rng.range(0, live.len() as i32 - 1) as usize;
            let id = live.swap_remove(i);
            let res = c.execute("DELETE FROM big WHERE id = $1", &[&id]);
            if res.is_ok() {
                st.deletes += 1;
            }
            (format!("delete {id}"), res)
        };
        st.max_latency = st.max_latency.max(t.elapsed());
        match res {
            Ok(1) => st.ops.push(at),
            Ok(n) => st.errors.push(format!("writer {w}: {what} affected {n} rows")),
            Err(e) => st.errors.push(format!("writer {w}: {what}: {e}")),
        }
        if !st.errors.is_empty() {
            break;
        }
    }
    st.live = live.into_iter().collect();
    st
}

/// A k-NN answer: `(id, distance)` per neighbour.
type Answer = Vec<(i32, f64)>;

#[derive(Default)]
struct ReaderStats {
    /// `(query index, answer, seconds since the start)`.
    answers: Vec<(usize, Answer, f64)>,
    max_latency: Duration,
    errors: Vec<String>,
}

/// Runs the k-NN queries round-robin until `stop`.
fn reader(db: Db, r: usize, sqls: Arc<Vec<String>>, start: Instant, stop: Arc<AtomicBool>) -> ReaderStats {
    let mut c = db.session();
    c.batch_execute("SET hnsw.ef_search = 100").unwrap();
    let mut st = ReaderStats::default();
    let mut i = r * 7;
    while !stop.load(Ordering::Relaxed) {
        let qi = i % sqls.len();
        i += 1;
        let t = Instant::now();
        match c.query(sqls[qi].as_str(), &[]) {
            Ok(rows) => st.answers.push((
                qi,
                rows.iter().map(|x| (x.get(0), x.get(1))).collect(),
                start.elapsed().as_secs_f64(),
            )),
            Err(e) => {
                st.errors.push(format!("reader {r}, query {qi}: {e}"));
                break;
            }
        }
        st.max_latency = st.max_latency.max(t.elapsed());
    }
    st
}

fn start_readers(
    db: &Db,
    sqls: &Arc<Vec<String>>,
    start: Instant,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<ReaderStats>> {
    (0..READERS)
        .map(|r| {
            let (d, q, s) = (db.clone(), sqls.clone(), stop.clone());
            thread::spawn(move || reader(d, r, q, start, s))
        })
        .collect()
}

/// How the reader answers split between two fits.
#[derive(Debug, Default)]
struct FitSplit {
    n_a: u64,
    n_b: u64,
    n_both: u64,
    n_none_stable: u64,
    short: u64,
    bad: Vec<String>,
}

/// Classifies every reader answer: the returned rows with id `<= stable_max` (never written
/// during the run; their vectors are `rows`) must all have `<#>` = `−Σ s_k cos_k` (to 1e-4)
/// under fit A's `sa` or all under fit B's `sb`; each reader sees A, then B, never back.
fn split_by_fit(
    rstats: &[ReaderStats],
    qmodels: &[Models],
    rows: &BTreeMap<i32, Models>,
    stable_max: i32,
    mult_a: &[f64],
    mult_b: &[f64],
) -> FitSplit {
    let sa: Vec<f64> = mult_a.iter().map(|m| m * m).collect();
    let sb: Vec<f64> = mult_b.iter().map(|m| m * m).collect();
    let sx: Vec<f64> = mult_a.iter().zip(mult_b).map(|(a, b)| a * b).collect();
    let mut out = FitSplit::default();
    for (r, st) in rstats.iter().enumerate() {
        let mut seen_b = false;
        for (qi, ans, t) in &st.answers {
            if ans.len() < 10 {
                out.short += 1;
            }
            let q = &qmodels[*qi];
            let stable: Vec<&(i32, f64)> = ans.iter().filter(|(id, _)| *id <= stable_max).collect();
            if stable.is_empty() {
                out.n_none_stable += 1;
                continue;
            }
            let ok_a = stable.iter().all(|(id, d)| (d + score(q, &rows[id], &sa)).abs() <= 1e-4);
            let ok_b = stable.iter().all(|(id, d)| (d + score(q, &rows[id], &sb)).abs() <= 1e-4);
            match (ok_a, ok_b) {
                (true, false) => {
                    out.n_a += 1;
                    if seen_b && out.bad.len() < 10 {
                        out.bad.push(format!("reader {r} at {t:.3}s, query {qi}: fit A again after fit B"));
                    }
                }
                (false, true) => {
                    out.n_b += 1;
                    seen_b = true;
                }
                (true, true) => out.n_both += 1,
                (false, false) => {
                    if out.bad.len() < 10 {
                        let detail: Vec<String> = stable
                            .iter()
                            .map(|(id, d)| {
                                format!(
                                    "row {id}: <#> {d:.6}, fit A {:.6}, fit B {:.6}, mixed {:.6}",
                                    -score(q, &rows[id], &sa),
                                    -score(q, &rows[id], &sb),
                                    -score(q, &rows[id], &sx)
                                )
                            })
                            .collect();
                        out.bad.push(format!("reader {r} at {t:.3}s, query {qi}: {detail:#?}"));
                    }
                }
            }
        }
    }
    out
}

/// `(keys of the source or the relation, missing from the relation, extra in it, differing from
/// _combine_vector with `mult_sql` over the source row as text)`: the relation `rel(id, col)`
/// equals the combined vectors of the source `src` (model set `set`) on every key.
fn compare_with_source(
    c: &mut Client,
    src: &str,
    rel: &str,
    col: &str,
    set: &str,
    mult_sql: &str,
) -> (i64, i64, i64, i64) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE v.id IS NULL), count(*) FILTER (WHERE b.id IS NULL),
                        count(*) FILTER (WHERE b.id IS NOT NULL AND v.id IS NOT NULL
                                           AND v.{col}::text IS DISTINCT FROM
                                               embedstack._combine_vector({mult_sql}, m.model_dims, m.model_columns::text[],
                                                                          b.id, b.m1, b.m2, b.m3)::text)
                   FROM {src} b FULL JOIN {rel} v USING (id), embedstack.model_sets m WHERE m.name = '{set}'"
            ),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The load data: `big` (100,000 rows, default fillfactor) with model set `ld` served with fit
/// A (pairs `pa`); pairs `pb` for fit B. Returns the rows, fit A's multipliers and the queries
/// (18 rows' model vectors and 6 random ones) with their SQL through the view.
fn load_setup(c: &mut Client, rng: &mut Rng) -> LoadData {
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=LROWS {
        rows.insert(id, LDIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    load_vectors(c, "big", &LDIMS, &rows, "");
    let pa = make_pairs(rng, &rows, (1, LROWS), 4000, &|x, r| {
        1.0 * x[0] + 0.5 * x[1] + 0.2 * x[2] + 0.01 * r.sym()
    });
    load_pairs(c, "pa", &pa);
    let pb = make_pairs(rng, &rows, (1, LROWS), 4000, &|x, r| {
        0.2 * x[0] + 0.6 * x[1] + 1.0 * x[2] + 0.01 * r.sym()
    });
    load_pairs(c, "pb", &pb);
    c.batch_execute("SELECT embedstack.create_model_set('ld', 'big', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let (fa, wa) = fit(c, "ld", "pa");
    // The HNSW graph of 100,000 rows fits in memory: a much faster build.
    c.batch_execute("SET maintenance_work_mem = '256MB'").unwrap();
    c.batch_execute("CALL embedstack.materialize('ld')").unwrap();
    c.batch_execute("ANALYZE big").unwrap();
    let mult_a = symmetric_multipliers(&wa, 0.05);
    assert!(mult_a.iter().all(|&m| m > 0.0), "test precondition: every model kept under fit A: {wa:?}");
    let s0 = served(c, "ld");
    assert_eq!((s0.active_fit, s0.view.as_str()), (Some(fa), "big_ld"));
    for (g, w) in s0.multipliers.as_ref().unwrap().iter().zip(&mult_a) {
        assert!((g - w).abs() <= 1e-12, "fit A multipliers {:?} vs {mult_a:?}", s0.multipliers);
    }
    c.batch_execute(&format!("ANALYZE {}", gen_table("big_ld", s0.generation.unwrap()))).unwrap();
    let mut qmodels: Vec<Models> = (0..18).map(|_| rows[&rng.range(1, LROWS)].clone()).collect();
    for _ in 0..6 {
        qmodels.push(LDIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    let sqls: Arc<Vec<String>> = Arc::new(qmodels.iter().map(|q| knn_sql(LD, &models_sql(q))).collect());
    LoadData { rows, mult_a, qmodels, sqls }
}

/// What `load_setup` made: the rows, fit A's multipliers, the query models and their SQL.
struct LoadData {
    rows: BTreeMap<i32, Models>,
    mult_a: Vec<f64>,
    qmodels: Vec<Models>,
    sqls: Arc<Vec<String>>,
}

const LD: View<'static> = View { set: "ld", source: "big", view: "big_ld", col: "ld_combined" };

/// After a refit of `ld` to fit `fb` from generation `gen_a`: fit B served from a new
/// generation, A's retained; returns fit B's multipliers.
fn assert_refit_served(c: &mut Client, fb: i64, fa: i64, gen_a: i64) -> (Vec<f64>, i64) {
    let wb = fit_weights(c, fb);
    let mult_b = symmetric_multipliers(&wb, 0.05);
    assert!(mult_b.iter().all(|&m| m > 0.0), "test precondition: every model kept under fit B: {wb:?}");
    let s1 = served(c, "ld");
    assert_eq!(s1.active_fit, Some(fb));
    for (g, w) in s1.multipliers.as_ref().unwrap().iter().zip(&mult_b) {
        assert!((g - w).abs() <= 1e-12, "fit B multipliers {:?} vs {mult_b:?}", s1.multipliers);
    }
    let gen_b = s1.generation.unwrap();
    assert!(gen_b > gen_a);
    assert_eq!(
        (s1.index.as_deref(), s1.previous_fit, s1.previous_generation),
        (Some(gen_index("big_ld", gen_b).as_str()), Some(fa), Some(gen_a)),
        "{s1:?}"
    );
    let gens: Vec<(i64, String)> = generations(c, "ld").into_iter().map(|g| (g.id, g.state)).collect();
    assert_eq!(gens, vec![(gen_a, "retained".to_string()), (gen_b, "served".to_string())]);
    (mult_b, gen_b)
}

/// A refit of a 100,000-row table at the default fillfactor (fit A → fit B,
/// `cutover => 'always'`) under 2 writers and 2 readers:
/// * no writer or reader statement fails, every update / delete of a writer's own row hits
///   exactly that row, and each writer's id range holds exactly the rows it left; writers wrote
///   during the write phase and during the index build (not held back by CREATE INDEX);
/// * every reader answer (the README query: source joined to the view) is under exactly one
///   fit (see `split_by_fit`); each reader sees fit A, then fit B, never back; both are seen;
/// * afterwards fit B is served from a new generation (A's retained); the view equals
///   `embedstack._combine_vector` with fit B's multipliers over the source on every key (as
///   text; no key missing, none extra) and the closed form computed here (sample of rows, incl.
///   the writers'); the retained generation equals it with fit A's multipliers (kept fresh);
///   the source's pg_attribute rows and the untouched rows' ctid/xmin are unchanged; the served
///   query uses the new generation's index.
#[test]
fn faults_load_refit_under_concurrent_writers_and_readers() {
    let _g = serial();
    let t0 = Instant::now();
    let name = "faults_load";
    let (db, mut c) = project_db(name);
    let mut rng = Rng(0x5EED_10AD);
    let LoadData { rows, mult_a, qmodels, sqls } = load_setup(&mut c, &mut rng);
    let s0 = served(&mut c, "ld");
    let (fa, gen_a) = (s0.active_fit.unwrap(), s0.generation.unwrap());
    let big_attributes = attributes(&mut c, "big");
    let big_rows = row_versions(&mut c, "big");
    let setup_secs = t0.elapsed().as_secs_f64();
    assert_index_used(&mut c, LD, &models_sql(&qmodels[0]), &gen_index("big_ld", gen_a), "fit A");

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let writers: Vec<JoinHandle<WriterStats>> = (0..WRITERS)
        .map(|w| {
            let (d, s) = (db.clone(), stop.clone());
            thread::spawn(move || writer(d, w, start, s))
        })
        .collect();
    let readers = start_readers(&db, &sqls, start, &stop);
    // The job's phases as they commit: `(seconds since the start, phase)`.
    let phases: JoinHandle<Vec<(f64, String)>> = {
        let s = stop.clone();
        let mut m = db.session();
        thread::spawn(move || {
            let mut seen: Vec<(f64, String)> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let p: Option<String> = m
                    .query_opt(
                        "SELECT phase FROM embedstack.jobs WHERE model_set = 'ld' AND kind = 'refit'",
                        &[],
                    )
                    .unwrap()
                    .map(|r| r.get(0));
                if let Some(p) = p {
                    if seen.last().map(|l| &l.1) != Some(&p) {
                        seen.push((start.elapsed().as_secs_f64(), p));
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    thread::sleep(Duration::from_millis(1500));
    let (mut rc, notices) = db.with_notices();
    rc.batch_execute("SET maintenance_work_mem = '256MB'").unwrap();
    let refit_start = start.elapsed().as_secs_f64();
    let refit = rc.batch_execute(
        "CALL embedstack.refit('ld', 'pb', 'a', 'b', 'y', cutover => 'always', batch_size => 2000)",
    );
    let refit_end = start.elapsed().as_secs_f64();
    if refit.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let wstats: Vec<WriterStats> = writers.into_iter().map(|h| h.join().expect("writer thread")).collect();
    let rstats: Vec<ReaderStats> = readers.into_iter().map(|h| h.join().expect("reader thread")).collect();
    let phases = phases.join().expect("phase monitor thread");
    let run_secs = start.elapsed().as_secs_f64();
    refit.unwrap_or_else(|e| panic!("refit under load: {e}"));
    let errors: Vec<&String> =
        wstats.iter().flat_map(|s| &s.errors).chain(rstats.iter().flat_map(|s| &s.errors)).collect();
    assert!(errors.is_empty(), "statements failed under load: {errors:#?}");

    // The refit: fit B served from a new generation.
    let j = latest_job_row(&mut c, "ld").unwrap();
    assert_eq!(
        (j.kind.as_str(), j.state.as_str(), j.phase.as_str()),
        ("refit", "succeeded", "done"),
        "{j:?}"
    );
    assert!(j.outcome.as_deref().unwrap_or("").contains("cutover => always"), "{j:?}");
    let fb = j.fit_id.unwrap();
    let (mult_b, gen_b) = assert_refit_served(&mut c, fb, fa, gen_a);
    assert_eq!(j.generation, Some(gen_b));

    // Every answer under one fit.
    let split = split_by_fit(&rstats, &qmodels, &rows, LROWS, &mult_a, &mult_b);
    let answered: u64 = rstats.iter().map(|s| s.answers.len() as u64).sum();
    assert!(split.bad.is_empty(), "answers not under exactly one fit: {:#?}", split.bad);
    assert!(
        split.n_a > 0 && split.n_b > 0,
        "answers under fit A and fit B both expected (refit mid-run): {split:?}"
    );

    // Each writer's rows are exactly the ones it left.
    for s in &wstats {
        let ids: Vec<i32> = c
            .query(
                "SELECT id FROM big WHERE id > $1 AND id < $2 ORDER BY id",
                &[&s.base, &(s.base + 1_000_000)],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, s.live.iter().copied().collect::<Vec<_>>(), "rows of the writer from {}", s.base);
    }

    // The source: same attributes, the untouched rows not rewritten.
    assert_eq!(attributes(&mut c, "big"), big_attributes, "pg_attribute rows of big");
    let untouched: Vec<(i32, String, String)> =
        row_versions(&mut c, "big").into_iter().filter(|(id, _, _)| *id <= LROWS).collect();
    assert!(untouched == big_rows, "rows 1..={LROWS} of big rewritten (ctid/xmin changed) or lost");

    // Every key = _combine_vector over the source, in the view (fit B), and in the retained
    // generation (fit A) once a rollback serves it again (since 0.4.0 a retained generation is
    // not written by each write: the keys are recorded, and the rollback writes them again).
    let writer_rows: usize = wstats.iter().map(|s| s.live.len()).sum();
    let n_keys = LROWS as i64 + writer_rows as i64;
    let b = compare_with_source(&mut c, "big", "big_ld", "ld_combined", "ld", "m.served_multipliers");
    assert_eq!(b, (n_keys, 0, 0, 0), "view vs _combine_vector(fit B): (keys, missing, extra, differing)");
    let ga = generation(&mut c, "ld", gen_a);
    for (g, w) in ga.multipliers.iter().zip(&mult_a) {
        assert!(
            (g - w).abs() <= 1e-12,
            "generation {gen_a} multipliers {:?} vs fit A {mult_a:?}",
            ga.multipliers
        );
    }
    let mut sample: Vec<i32> = (0..2000).map(|_| rng.range(1, LROWS)).collect();
    sample.extend(wstats.iter().flat_map(|s| s.live.iter().copied()).take(3000));
    let mut checked = 0;
    for r in c
        .query(
            "SELECT s.id, s.m1::real[], s.m2::real[], s.m3::real[], v.ld_combined::real[]
               FROM big s JOIN big_ld v USING (id) WHERE s.id = ANY($1)",
            &[&sample],
        )
        .unwrap()
    {
        let id: i32 = r.get(0);
        let m: Models = vec![r.get(1), r.get(2), r.get(3)];
        if m.iter().all(|x| x.is_none()) {
            continue;
        }
        let got: Option<Vec<f32>> = r.get(4);
        let got = got.unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        let want = combined(&m, &LDIMS, &mult_b);
        assert_eq!(got.len(), want.len(), "row {id}: dimension");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-6, "row {id} element {i}: {g} vs {w} (closed form, fit B)");
        }
        checked += 1;
    }
    assert!(checked >= 2000, "{checked} sampled rows");
    let mut fresh = db.session();
    assert_index_used(&mut fresh, LD, &models_sql(&qmodels[0]), &gen_index("big_ld", gen_b), "fit B");
    let t_rb = Instant::now();
    c.batch_execute("CALL embedstack.rollback('ld')").unwrap();
    println!(
        "load: rollback to fit A (retained generation brought up to date): {:.2}s",
        t_rb.elapsed().as_secs_f64()
    );
    let mult_a_sql = format!("(SELECT g.multipliers FROM embedstack.generations g WHERE g.id = {gen_a})");
    let a = compare_with_source(&mut c, "big", "big_ld", "ld_combined", "ld", &mult_a_sql);
    assert_eq!(
        a,
        (n_keys, 0, 0, 0),
        "view after rollback vs _combine_vector(fit A): (keys, missing, extra, differing)"
    );

    let notices = notices.lock().unwrap().clone();
    for n in notices.iter().filter(|n| !n.contains(" rows (")) {
        println!("load: NOTICE {n}");
    }
    // Writer statements and reader answers per phase of the job.
    let phase_at = |t: f64| -> &str {
        if t < refit_start {
            return "before";
        }
        phases.iter().rev().find(|(s, _)| *s <= t).map(|(_, p)| p.as_str()).unwrap_or("fit")
    };
    let mut per_phase: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for t in wstats.iter().flat_map(|s| &s.ops) {
        per_phase.entry(phase_at(*t)).or_default().0 += 1;
    }
    for (_, _, t) in rstats.iter().flat_map(|s| &s.answers) {
        per_phase.entry(phase_at(*t)).or_default().1 += 1;
    }
    let timeline: Vec<String> = phases.iter().map(|(t, p)| format!("{p} at {t:.1}s")).collect();
    println!("load: job phases {}", timeline.join(", "));
    println!("load: (writer statements, reader answers) by phase: {per_phase:?}");
    let in_write = per_phase.get("write").map(|x| x.0).unwrap_or(0);
    assert!(in_write > 0, "test precondition: writers wrote during the write phase: {per_phase:?}");
    let in_index = per_phase.get("index").map(|x| x.0).unwrap_or(0);
    assert!(in_index > 0, "writers were held back during the index build: {per_phase:?}");
    let (ins, upd, del): (u64, u64, u64) =
        wstats.iter().fold((0, 0, 0), |(i, u, d), s| (i + s.inserts, u + s.updates, d + s.deletes));
    let wmax = wstats.iter().map(|s| s.max_latency).max().unwrap();
    let rmax = rstats.iter().map(|s| s.max_latency).max().unwrap();
    println!(
        "load: {LROWS} rows (dims {LDIMS:?}, default fillfactor) + {writer_rows} writer rows at the end; {WRITERS} writers, \
         {READERS} readers; refit {:.1}s ({refit_start:.1}s..{refit_end:.1}s of a {run_secs:.1}s run; {} NOTICEs)",
        refit_end - refit_start,
        notices.len()
    );
    println!(
        "load: {answered} k-NN answers: {} under fit A, {} under fit B, {} matching both, {} without untouched rows, \
         {} with < 10 rows, 0 mixed",
        split.n_a, split.n_b, split.n_both, split.n_none_stable, split.short
    );
    println!(
        "load: writers {ins} inserts, {upd} updates, {del} deletes, 0 errors; max statement latency writers {:.2}s, \
         readers {:.2}s",
        wmax.as_secs_f64(),
        rmax.as_secs_f64()
    );
    println!(
        "load: {n_keys} keys = _combine_vector(fit B) in the view and (fit A) in the retained generation, {checked} sampled \
         rows = closed form; setup {setup_secs:.1}s, {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
    drop(fresh);
    drop(rc);
    drop(c);
    drop_db(&db.name);
}

/// A refit (fit + materialise + cut-over) of the 100,000-row table while another session holds
/// `LOCK TABLE big IN SHARE MODE` from before the refit to after it (a transaction that stays
/// open), and 2 readers query the view all along:
/// * the refit completes (with `lock_timeout = '60s'` in its session: a lock it waited for
///   would fail it with 55P03 rather than hang), fit B served from a new generation;
/// * the SHARE lock was held all along (same backend, same transaction start, still granted
///   after the refit), so the refit took no lock that conflicts with it;
/// * every reader answer is under exactly one fit, each reader sees A then B, both are seen;
/// * the view equals `_combine_vector` over the source under fit B on every key, and the
///   source's pg_attribute rows and every row's ctid/xmin are unchanged.
#[test]
fn faults_refit_while_source_share_locked() {
    let _g = serial();
    let t0 = Instant::now();
    let name = "faults_share_lock";
    let (db, mut c) = project_db(name);
    let mut rng = Rng(0x5EED_5A4E);
    let LoadData { rows, mult_a, qmodels, sqls } = load_setup(&mut c, &mut rng);
    let s0 = served(&mut c, "ld");
    let (fa, gen_a) = (s0.active_fit.unwrap(), s0.generation.unwrap());
    let big_attributes = attributes(&mut c, "big");
    let big_rows = row_versions(&mut c, "big");

    let mut holder = db.session();
    let holder_pid = backend_pid(&mut holder);
    holder.batch_execute("BEGIN; LOCK TABLE big IN SHARE MODE").unwrap();
    let held = |c: &mut Client| -> (i64, Option<String>) {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM pg_locks l WHERE l.pid = $1 AND l.locktype = 'relation'
                           AND l.relation = 'big'::regclass AND l.mode = 'ShareLock' AND l.granted),
                        (SELECT xact_start::text FROM pg_stat_activity WHERE pid = $1)",
                &[&holder_pid],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let lock_before = held(&mut c);
    assert_eq!(lock_before.0, 1, "the holder has SHARE on big");

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let readers = start_readers(&db, &sqls, start, &stop);
    thread::sleep(Duration::from_millis(1000));
    let mut rc = db.session();
    rc.batch_execute("SET maintenance_work_mem = '256MB'; SET lock_timeout = '60s'").unwrap();
    let refit = rc.batch_execute(
        "CALL embedstack.refit('ld', 'pb', 'a', 'b', 'y', cutover => 'always', batch_size => 5000)",
    );
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let rstats: Vec<ReaderStats> = readers.into_iter().map(|h| h.join().expect("reader thread")).collect();
    let lock_after = held(&mut c);
    refit.unwrap_or_else(|e| {
        panic!(
            "refit while another session holds SHARE on the source: {} {e}",
            e.code().map(|s| s.code()).unwrap_or("")
        )
    });
    assert_eq!(lock_after, lock_before, "the SHARE lock held all along, in the same transaction");
    holder.batch_execute("COMMIT").unwrap();
    let errors: Vec<&String> = rstats.iter().flat_map(|s| &s.errors).collect();
    assert!(errors.is_empty(), "reader statements failed: {errors:#?}");

    let j = latest_job_row(&mut c, "ld").unwrap();
    assert_eq!((j.kind.as_str(), j.state.as_str()), ("refit", "succeeded"), "{j:?}");
    let fb = j.fit_id.unwrap();
    let (mult_b, gen_b) = assert_refit_served(&mut c, fb, fa, gen_a);
    let split = split_by_fit(&rstats, &qmodels, &rows, LROWS, &mult_a, &mult_b);
    assert!(split.bad.is_empty(), "answers not under exactly one fit: {:#?}", split.bad);
    assert!(split.n_a > 0 && split.n_b > 0, "answers under fit A and fit B both expected: {split:?}");
    let b = compare_with_source(&mut c, "big", "big_ld", "ld_combined", "ld", "m.served_multipliers");
    assert_eq!(
        b,
        (LROWS as i64, 0, 0, 0),
        "view vs _combine_vector(fit B): (keys, missing, extra, differing)"
    );
    assert_eq!(attributes(&mut c, "big"), big_attributes, "pg_attribute rows of big");
    assert!(row_versions(&mut c, "big") == big_rows, "rows of big rewritten (ctid/xmin changed)");
    assert_index_used(&mut c, LD, &models_sql(&qmodels[0]), &gen_index("big_ld", gen_b), "fit B");
    println!(
        "share lock: refit to generation {gen_b} with SHARE held on the source; {} answers under fit A, {} under fit B, \
         {} both, 0 mixed; {:.1}s",
        split.n_a,
        split.n_b,
        split.n_both,
        t0.elapsed().as_secs_f64()
    );
    drop(rc);
    drop(holder);
    drop(c);
    drop_db(&db.name);
}

// ---------------------------------------------------------------------------------------
// 3. The cut-over wait
// ---------------------------------------------------------------------------------------

/// Rows of the wait tests' tables.
const WROWS: i32 = 4000;

/// The cut-over wait ignores another database's transactions: a transaction with an xid
/// (`BEGIN; SELECT txid_current()`) held open in a scratch database from before the job to
/// after it, older than the end of the writing (its xid precedes the job's horizon), does not
/// hold the materialise back: the job (with `cutover_wait_timeout = '30s'`, so that a wrong
/// wait fails with 55000 instead of hanging) succeeds without ever waiting, and serves the new
/// fit, equal to the twin's bitwise; the scratch transaction is still the same one after it.
#[test]
fn faults_cutover_wait_ignores_other_databases() {
    let _g = serial();
    let t0 = Instant::now();
    let (db, c) = project_db("faults_wait_otherdb");
    let mut f = fault_setup(db, c, 0xFA17_0007, WROWS);
    let scratch = "es_faults_wait_scratch";
    drop(create_db(scratch));
    let mut other = connect_as(scratch, "postgres");
    other.batch_execute("BEGIN").unwrap();
    let xid: i64 = other.query_one("SELECT txid_current()", &[]).unwrap().get(0);
    let (fm, _) = fit(&mut f.c, "fa", "p1");
    let (ftw, _) = fit(&mut f.c, "tb", "p1");
    f.c.batch_execute(&format!("CALL embedstack.materialize('tb', {ftw})")).unwrap();
    let before = served(&mut f.c, "fa");
    f.c.batch_execute("SET embedstack.cutover_wait_timeout = '30s'").unwrap();
    let res = f.c.batch_execute(&format!("CALL embedstack.materialize('fa', {fm}, batch_size => 500)"));
    let still: i64 = other.query_one("SELECT txid_current()", &[]).unwrap().get(0);
    other.batch_execute("COMMIT").unwrap();
    drop(other);
    drop_db(scratch);
    res.unwrap_or_else(|e| panic!("materialize with a long transaction in another database: {e}"));
    assert_eq!(still, xid, "the other database's transaction stayed open all along");
    let j = latest_job_row(&mut f.c, "fa").unwrap();
    assert_eq!((j.state.as_str(), j.phase.as_str(), j.fit_id), ("succeeded", "done", Some(fm)), "{j:?}");
    let horizon: i64 = j.horizon.as_deref().expect("the job's horizon").parse().unwrap();
    assert!(
        xid < horizon,
        "test precondition: the other database's xid {xid} precedes the horizon {horizon}"
    );
    assert!(!j.waiting, "the job waited: {j:?}");
    let after = served(&mut f.c, "fa");
    assert_eq!(after.active_fit, Some(fm));
    assert_eq!(after.previous_generation, before.generation);
    let mult = symmetric_multipliers(&fit_weights(&mut f.c, fm), 0.05);
    let n = assert_equals_twin(&mut f, &mult);
    assert_source_untouched(&mut f, "after the materialise");
    println!(
        "wait/other db: materialised past a transaction (xid {xid} < horizon {horizon}) of another database; {n} keys = \
         the twin's; {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let name = f.db.name.clone();
    drop(f);
    drop_db(&name);
}

/// The cut-over waits for a REPEATABLE READ transaction of the same database whose snapshot
/// predates the end of the writing, and gives up after `embedstack.cutover_wait_timeout`:
/// * with `cutover_wait_timeout = '1s'` the materialise fails with 55000 (naming that
///   session's pid), recorded in the job (failed, phase `wait`) and `embedstack.status`;
/// * the old generation still serves: the catalog, the view's definition and the k-NN answers
///   are those of before; the old transaction reads the old vectors through the view, complete;
///   the new generation is complete and indexed, still `building`;
/// * after that transaction ends, a re-run completes: it resumes the generation (no batch, the
///   index kept, no row rewritten) and serves it, equal to the twin's bitwise.
#[test]
fn faults_cutover_waits_for_older_snapshot_then_times_out() {
    let _g = serial();
    let t0 = Instant::now();
    let (db, c) = project_db("faults_wait_timeout");
    let mut f = fault_setup(db, c, 0xFA17_0008, WROWS);
    let (fm, _) = fit(&mut f.c, "fa", "p1");
    let (ftw, _) = fit(&mut f.c, "tb", "p1");
    f.c.batch_execute(&format!("CALL embedstack.materialize('tb', {ftw})")).unwrap();
    let before = served(&mut f.c, "fa");
    let old_vectors = vectors(&mut f.c, "ft_fa", "fa_combined");
    assert_eq!(old_vectors.len(), WROWS as usize);
    let answers = knn_answers(&mut f.c, FA, &f.queries);

    let mut old = f.db.session();
    let old_pid = backend_pid(&mut old);
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").unwrap();
    let (mut rc, notices) = f.db.with_notices();
    rc.batch_execute("SET embedstack.cutover_wait_timeout = '1s'").unwrap();
    let e = rc
        .batch_execute(&format!("CALL embedstack.materialize('fa', {fm}, batch_size => 500)"))
        .expect_err("the cut-over must wait for the older transaction, then give up");
    assert_eq!(sqlstate(&e), "55000", "{e}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains(&format!("pids {old_pid}")), "the error names the older session {old_pid}: {msg}");
    let notices = notices.lock().unwrap().clone();
    assert!(notices.iter().any(|n| n.contains("waiting for transactions older")), "{notices:#?}");
    let j = latest_job_row(&mut f.c, "fa").unwrap();
    assert_eq!(
        (j.state.as_str(), j.phase.as_str(), j.error_sqlstate.as_deref()),
        ("failed", "wait", Some("55000")),
        "{j:?}"
    );
    let st: (Option<String>, Option<String>) = {
        let r =
            f.c.query_one(
                "SELECT job_state, last_error_sqlstate FROM embedstack.status WHERE model_set = 'fa'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(st, (Some("failed".into()), Some("55000".into())));
    assert_eq!(served(&mut f.c, "fa"), before, "the old generation still serves: catalog and view");
    assert_eq!(knn_answers(&mut f.c, FA, &f.queries), answers, "served k-NN answers after the timeout");
    let in_old = vectors(&mut old, "ft_fa", "fa_combined");
    assert!(in_old == old_vectors, "the older transaction reads the old vectors through the view, complete");
    let gid = j.generation.unwrap();
    let g = generation(&mut f.c, "fa", gid);
    assert_eq!((g.state.as_str(), g.rows_written), ("building", WROWS as i64), "{g:?}");
    assert_eq!(index_valid(&mut f.c, &gen_index("ft_fa", gid)), Some(true));
    let written = row_versions(&mut f.c, &gen_table("ft_fa", gid));
    old.batch_execute("COMMIT").unwrap();

    let (mut rc, notices) = f.db.with_notices();
    rc.batch_execute("SET embedstack.cutover_wait_timeout = '1s'").unwrap();
    rc.batch_execute(&format!("CALL embedstack.materialize('fa', {fm}, batch_size => 500)"))
        .unwrap_or_else(|e| panic!("re-run after the older transaction ended: {e}"));
    let notices = notices.lock().unwrap().clone();
    let j2 = latest_job_row(&mut f.c, "fa").unwrap();
    assert_eq!((j2.state.as_str(), j2.generation), ("succeeded", Some(gid)), "{j2:?}");
    let resume = notices
        .iter()
        .find(|n| n.contains("resuming after "))
        .unwrap_or_else(|| panic!("no resume NOTICE: {notices:#?}"));
    assert_eq!(resumed_after(resume), WROWS as i64);
    assert!(!notices.iter().any(|n| n.contains(" rows (")), "no batch written again: {notices:#?}");
    assert!(notices.iter().any(|n| n.contains("is complete, keeping it")), "{notices:#?}");
    assert!(row_versions(&mut f.c, &gen_table("ft_fa", gid)) == written, "rows of the generation rewritten");
    let after = served(&mut f.c, "fa");
    assert_eq!(
        (after.active_fit, after.generation, after.previous_generation),
        (Some(fm), Some(gid), before.generation)
    );
    let mult = symmetric_multipliers(&fit_weights(&mut f.c, fm), 0.05);
    let n = assert_equals_twin(&mut f, &mult);
    assert_source_untouched(&mut f, "after the re-run");
    println!(
        "wait/timeout: 55000 while an older REPEATABLE READ transaction (pid {old_pid}) ran, old generation served; \
         re-run served generation {gid}, {n} keys = the twin's; {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    drop(rc);
    drop(old);
    let name = f.db.name.clone();
    drop(f);
    drop_db(&name);
}
