//! Faults and load against the 0.2.0 jobs (`CALL embedstack.materialize` / `embedstack.refit`
//! as committed steps prepare → write → index → wait → cutover), against a real server.
//!
//! Faults: a 20,000-row table with three models (`vector(32)`, `vector(48)`, `vector(16)`) is
//! served with a first fit; a second fit with other weights makes the job rewrite every row.
//! A twin table (same data, its own model set, bitwise-equal fits) is materialised without
//! interruption as the reference. The runner of the first table's job is killed
//! (a) mid-batch, (b) during the HNSW build, (c) in the `wait` phase before the cut-over,
//! (d) with SIGKILL mid-batch (the postmaster restarts every session). After each kill: the
//! served k-NN answers (ids and distances), the served catalog state and the served index plan
//! are those of before the job, and `embedstack.status` says `interrupted`; the same CALL then
//! resumes (`resumed_from`, rows already done, the staging index reused for (c)), completes, and
//! the combined column equals the twin's bitwise on every row.
//!
//! Load: a 100,000-row table served with fit A is refitted (fit B, `cutover => 'always'`) while
//! writer sessions insert / update / delete their own rows and reader sessions run k-NN queries
//! continuously. No statement may fail; every reader answer is consistent with one fit (the
//! distances of the returned untouched rows are all fit A's or all fit B's scores, computed here
//! from the raw vectors); afterwards every row's combined vector equals a fresh materialisation.
//!
//! Older snapshots: a read-only REPEATABLE READ transaction begun before a job holds its
//! cut-over back, both when the staging index is `indcheckxmin` (HOT batches, serial index
//! build) and in the default case (full pages, parallel HNSW build), where an earlier version
//! cut over at once and that transaction then read the served column as all NULL.
//!
//! The SIGKILL restarts every session of the cluster, so the tests of this file run one at a
//! time (a static lock); cargo runs test binaries one after another.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use embedstack_client_tests::catalog::{columns, combined_by_id, fit};
use embedstack_client_tests::data::{lit, load_pairs, load_vectors, make_pairs, models_sql, Models, Rng};
use embedstack_client_tests::reference::{combined, score, symmetric_multipliers};
use embedstack_client_tests::sql::{backend_pid, index_name};
use embedstack_client_tests::wait::wait_for;
use embedstack_client_tests::{config, fresh_db};
use postgres::{Client, Config, NoTls};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One test at a time in this binary: a SIGKILL restart would break the others' sessions.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn bits_eq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Connection settings of database `es_<name>` (the database `fresh_db(name)` creates) as
/// postgres, giving up connecting after 10 s (the server may be restarting after a SIGKILL).
fn session_config(name: &str) -> Config {
    let mut cfg = config(&format!("es_{name}"), "postgres");
    cfg.connect_timeout(Duration::from_secs(10));
    cfg
}

/// Another session on `es_<name>`, with [`session_config`].
fn session(name: &str) -> Client {
    session_config(name).connect(NoTls).unwrap_or_else(|e| panic!("connect to es_{name}: {e}"))
}

type Notices = Arc<Mutex<Vec<String>>>;

/// A connection whose NOTICEs are collected.
fn connect_with_notices(name: &str) -> (Client, Notices) {
    let notices: Notices = Arc::default();
    let sink = notices.clone();
    let mut cfg = session_config(name);
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    (cfg.connect(NoTls).unwrap_or_else(|e| panic!("connect to es_{name}: {e}")), notices)
}

/// Connects again after a crash restart: retries for up to `timeout`.
fn reconnect(name: &str, timeout: Duration) -> Client {
    let t = Instant::now();
    loop {
        let err = match session_config(name).connect(NoTls) {
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

fn fit_weights(c: &mut Client, fit: i64) -> Vec<f64> {
    c.query_one("SELECT weights FROM embedstack.fits WHERE id = $1", &[&fit]).unwrap().get(0)
}

/// What a model set serves: active fit, multipliers, storage, index, combined column.
type ServedState = (Option<i64>, Option<Vec<f64>>, Option<String>, Option<String>, String);

fn served_state(c: &mut Client, set: &str) -> ServedState {
    let r = c
        .query_one(
            "SELECT active_fit, served_multipliers, served_storage, served_index::text, combined_column::text
               FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// `(staging_column, staging_fit)` of a model set.
fn staging(c: &mut Client, set: &str) -> (Option<String>, Option<i64>) {
    let r = c
        .query_one(
            "SELECT staging_column::text, staging_fit FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1))
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
}

const JOB_ROW_COLS: &str = "id, kind, phase, state, rows_done, rows_total, fit_id, resumed_from, pid,
                        coalesce((details->>'waiting')::boolean, false), outcome";

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

/// `Some(indisvalid)` of an index, `None` when it does not exist.
fn index_valid(c: &mut Client, index: &str) -> Option<bool> {
    c.query_opt("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", &[&index])
        .unwrap()
        .map(|r| r.get(0))
}

/// The served k-NN answers `(id, distance)` of each query (`hnsw.ef_search = 200`).
fn knn_answers(
    c: &mut Client,
    set: &str,
    table: &str,
    col: &str,
    queries: &[String],
) -> Vec<Vec<(i32, f64)>> {
    c.batch_execute("SET hnsw.ef_search = 200").unwrap();
    queries
        .iter()
        .map(|q| {
            let qv = format!("embedstack.query_vector('{set}', {q})");
            c.query(
                &format!("SELECT id, ({col} <#> {qv})::float8 FROM {table} ORDER BY {col} <#> {qv} LIMIT 10"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        })
        .collect()
}

/// Asserts the served query plans as a scan of `index`.
fn assert_index_used(c: &mut Client, set: &str, table: &str, col: &str, q: &str, index: &str, what: &str) {
    let plan: Vec<String> = c
        .query(
            &format!("EXPLAIN SELECT id FROM {table} ORDER BY {col} <#> embedstack.query_vector('{set}', {q}) LIMIT 10"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {index}"))), "{what}: plan {plan:#?}");
}

/// The number in a NOTICE `... (N already done)`.
fn already_done(notice: &str) -> i64 {
    let end = notice.rfind(" already done)").unwrap();
    let start = notice[..end].rfind('(').unwrap() + 1;
    notice[start..end].parse().unwrap_or_else(|e| panic!("{notice}: {e}"))
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
/// Batch size of the interrupted jobs: 40 committed batches.
const FBATCH: i64 = 500;

/// A database with `ft` (model set `fa`) and its twin `tw` (model set `tb`): the same rows
/// (every 1000th misses model 2), created `WITH (fillfactor = 25)` unless `default_table`, so
/// that the batches are mostly HOT updates (then CREATE INDEX marks the staging index
/// `indcheckxmin` when older snapshots exist, see `_index_ready`; on full pages they are new
/// tuples elsewhere, each also inserted into the served HNSW index), pairs `p0` and `p1` with
/// different target weights, both sets served with a fit on `p0` (bitwise-equal weights),
/// vacuumed and analysed.
struct FaultDb {
    name: String,
    c: Client,
    /// The fixed k-NN queries (`ARRAY[...]::vector[]`).
    queries: Vec<String>,
}

fn fault_setup(name: &str, seed: u64, default_table: bool) -> FaultDb {
    let t0 = Instant::now();
    let mut c = fresh_db(name);
    let mut rng = Rng(seed);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=FROWS {
        let mut m: Models = FDIMS.iter().map(|&d| Some(rng.vec(d))).collect();
        if id % 1000 == 7 {
            m[1] = None;
        }
        rows.insert(id, m);
    }
    for t in ["ft", "tw"] {
        load_vectors(&mut c, t, &FDIMS, &rows, if default_table { "" } else { "WITH (fillfactor = 25)" });
    }
    let p0 = make_pairs(&mut rng, &rows, (1, FROWS), 3000, &|x, r| {
        1.0 * x[0] + 0.5 * x[1] + 0.2 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "p0", &p0);
    let p1 = make_pairs(&mut rng, &rows, (1, FROWS), 3000, &|x, r| {
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

    // Query rows (15007 misses model 2), a random query and one with a NULL model.
    let mut queries: Vec<String> =
        [1, 4321, 9999, 15007, 19998].iter().map(|id| models_sql(&rows[id])).collect();
    let r: Models = FDIMS.iter().map(|&d| Some(rng.vec(d))).collect();
    queries.push(models_sql(&r));
    queries.push(models_sql(&vec![Some(rng.vec(32)), None, Some(rng.vec(16))]));
    eprintln!("{name}: setup (2 x {FROWS} rows, 2 materialisations) {:.1}s", t0.elapsed().as_secs_f64());
    FaultDb { name: name.to_string(), c, queries }
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
    /// pg_terminate_backend while CREATE INDEX builds the staging HNSW index.
    IndexBuild,
    /// pg_terminate_backend in phase `wait` (an older transaction is open).
    BeforeCutover,
    /// SIGKILL of the backend in phase `write`: crash restart of the whole cluster.
    Sigkill,
}

struct Runner {
    pid: i32,
    handle: JoinHandle<Result<(), postgres::Error>>,
}

/// Runs `call` in a session of its own (after `setup`), on a thread.
fn start_runner(name: &str, setup: &str, call: &str) -> Runner {
    let mut c = session(name);
    if !setup.is_empty() {
        c.batch_execute(setup).unwrap();
    }
    let pid = backend_pid(&mut c);
    let call = call.to_string();
    Runner { pid, handle: thread::spawn(move || c.batch_execute(&call)) }
}

/// Runs `kind` of the second fit on `fa`, kills its runner at `fault`, checks that nothing
/// served changed and the job shows as interrupted (and what the committed state holds: the
/// staged rows = the committed batches' rows, the staging index present only in (c)), re-runs
/// the same CALL and checks the resume (`resumed_from`, the kill's rows already done in the
/// first NOTICE and the first batch after them, one index build or none in (c)) and the result
/// (the new fit served, the column bitwise equal to the twin's, no staging leftovers).
fn run_fault(name: &str, seed: u64, kind: JobKind, fault: Fault) {
    let t0 = Instant::now();
    let mut f = fault_setup(name, seed, false);
    let db = f.name.clone();
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
    let twin = served_state(&mut f.c, "tb");
    let twin_weights = fit_weights(&mut f.c, twin.0.unwrap());
    let before = served_state(&mut f.c, "fa");
    assert_ne!(before.1, twin.1, "test precondition: the second fit has other multipliers");
    let answers = knn_answers(&mut f.c, "fa", "ft", "fa_combined", &queries);
    assert!(answers.iter().all(|a| a.len() == 10));
    assert_index_used(
        &mut f.c,
        "fa",
        "ft",
        "fa_combined",
        &queries[0],
        &index_name("public", "ft", "fa_combined", false),
        "before the job",
    );

    // (c): a read-only transaction older than the staging writes holds the cut-over back.
    let mut old = None;
    if fault == Fault::BeforeCutover {
        let mut o = session(&db);
        o.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").unwrap();
        old = Some(o);
    }
    // A serial build in (c): pgvector's parallel HNSW build never marks the index indcheckxmin
    // (each participant scans with an IndexInfo of its own; ii_BrokenHotChain is lost), and
    // without it the job does not wait.
    let setup = if fault == Fault::BeforeCutover { "SET max_parallel_maintenance_workers = 0" } else { "" };
    let runner = start_runner(&db, setup, &call);
    let mut mon = session(&db);
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
        mon = reconnect(&db, Duration::from_secs(60));
        f.c = reconnect(&db, Duration::from_secs(60));
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
    assert_eq!(served_state(&mut mon, "fa"), before, "served catalog state after the kill");
    assert_eq!(
        knn_answers(&mut mon, "fa", "ft", "fa_combined", &queries),
        answers,
        "served k-NN answers after the kill"
    );
    assert_index_used(
        &mut mon,
        "fa",
        "ft",
        "fa_combined",
        &queries[0],
        &index_name("public", "ft", "fa_combined", false),
        "after the kill",
    );
    let new_fit = killed.fit_id.expect("fit of the killed job");
    assert_eq!(staging(&mut mon, "fa"), (Some("fa_combined_next".to_string()), Some(new_fit)));
    let staged: i64 = mon.query_one("SELECT count(fa_combined_next) FROM ft", &[]).unwrap().get(0);
    let staging_index = index_valid(&mut mon, &index_name("public", "ft", "fa_combined", true));
    match fault {
        Fault::MidBatch | Fault::Sigkill => {
            assert!(killed.rows_done > 0 && killed.rows_done < total, "{killed:?}");
            assert_eq!(staged, killed.rows_done, "staged rows = the committed batches' rows");
            assert_eq!(staging_index, None);
        }
        Fault::IndexBuild => {
            assert_eq!(staged, total);
            assert_eq!(staging_index, None, "the aborted CREATE INDEX leaves no index");
        }
        Fault::BeforeCutover => {
            assert_eq!(staged, total);
            assert_eq!(staging_index, Some(true), "the complete staging index stays");
        }
    }

    // The same CALL resumes and completes.
    let t1 = Instant::now();
    let (mut rc, notices) = connect_with_notices(&db);
    rc.batch_execute(&call).unwrap_or_else(|e| panic!("re-run of {call}: {e}"));
    let resume_secs = t1.elapsed().as_secs_f64();
    let notices = notices.lock().unwrap().clone();
    let resumed = latest_job_row(&mut f.c, "fa").unwrap();
    assert_eq!(resumed.resumed_from, Some(killed.id), "{resumed:?}");
    assert_eq!((resumed.state.as_str(), resumed.phase.as_str()), ("succeeded", "done"), "{resumed:?}");
    assert_eq!(resumed.fit_id, Some(new_fit));
    assert_eq!(resumed.rows_done, total, "{resumed:?}");
    assert_eq!(job_row(&mut f.c, killed.id).state, "interrupted");
    if kind == JobKind::Refit {
        assert!(
            notices[0].contains(&format!("resuming the interrupted refit {} (fit {new_fit})", killed.id)),
            "first NOTICE of the re-run: {notices:#?}"
        );
    }
    let prepare =
        notices.iter().find(|n| n.contains(" already done)")).unwrap_or_else(|| panic!("{notices:#?}"));
    let already = already_done(prepare);
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
            assert_eq!(builds, 0, "the staging index must be reused: {notices:#?}");
            assert!(notices.iter().any(|n| n.contains("is complete, keeping it")), "{notices:#?}");
        }
    }

    // The new fit is served, and the column equals the twin's bitwise.
    let after = served_state(&mut f.c, "fa");
    assert_eq!(after.0, Some(new_fit));
    assert!(
        bits_eq(&fit_weights(&mut f.c, new_fit), &twin_weights),
        "the resumed fit's weights = the twin's"
    );
    assert_eq!((&after.1, &after.2), (&twin.1, &twin.2), "multipliers and storage = the twin's");
    assert_eq!(after.3.as_deref(), Some(index_name("public", "ft", "fa_combined", false).as_str()));
    assert_eq!(staging(&mut f.c, "fa"), (None, None));
    assert_eq!(columns(&mut f.c, "ft"), ["id", "m1", "m2", "m3", "fa_combined"]);
    assert_eq!(index_valid(&mut f.c, &index_name("public", "ft", "fa_combined", true)), None);
    assert_eq!(index_valid(&mut f.c, &index_name("public", "ft", "fa_combined", false)), Some(true));
    let r =
        f.c.query_one(
            "SELECT count(*), count(f.fa_combined),
                    count(*) FILTER (WHERE f.fa_combined::text IS DISTINCT FROM t.tb_combined::text)
               FROM ft f FULL JOIN tw t USING (id)",
            &[],
        )
        .unwrap();
    let (n, nn, diff): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        (n, nn, diff),
        (FROWS as i64, FROWS as i64, 0),
        "(rows, non-NULL, differing from the twin as text)"
    );
    let mine = combined_by_id(&mut f.c, "ft", "fa_combined");
    let theirs = combined_by_id(&mut f.c, "tw", "tb_combined");
    assert_eq!(mine.len(), theirs.len());
    for ((id, a), (id2, b)) in mine.iter().zip(&theirs) {
        assert_eq!(id, id2);
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "row {id}: combined differs from the twin's"
        );
    }
    assert_index_used(
        &mut f.c,
        "fa",
        "ft",
        "fa_combined",
        &queries[0],
        &index_name("public", "ft", "fa_combined", false),
        "after the resume",
    );
    assert_eq!(job_status(&mut f.c, "fa").1.as_deref(), Some("succeeded"));
    println!(
        "{name}: {kind:?} killed by {fault:?} in phase {} at {}/{} rows{}; resumed (job {} from {}, {} rows already done) \
         in {resume_secs:.1}s; {} rows equal to the twin's bitwise; {:.1}s in all",
        killed.phase,
        killed.rows_done,
        total,
        if build_phase.is_empty() { String::new() } else { format!(" (index build: {build_phase})") },
        resumed.id,
        killed.id,
        already,
        mine.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// (a) materialize killed with pg_terminate_backend mid-batch, then resumed.
#[test]
fn faults_terminate_mid_batch_then_resume() {
    let _g = serial();
    run_fault("faults_mid_batch", 0xFA17_0001, JobKind::Materialize, Fault::MidBatch);
}

/// (b) refit killed with pg_terminate_backend during the HNSW build of the staging index.
#[test]
fn faults_terminate_during_index_build_then_resume() {
    let _g = serial();
    run_fault("faults_index_build", 0xFA17_0002, JobKind::Refit, Fault::IndexBuild);
}

/// (c) materialize killed in the `wait` phase (an older transaction holds the cut-over back);
/// the re-run keeps the complete staging index.
#[test]
fn faults_terminate_before_cutover_then_resume() {
    let _g = serial();
    run_fault("faults_before_cutover", 0xFA17_0003, JobKind::Materialize, Fault::BeforeCutover);
}

/// (d) refit's backend SIGKILLed mid-batch: the whole cluster restarts; the re-run resumes.
#[test]
fn faults_sigkill_mid_batch_then_resume() {
    let _g = serial();
    run_fault("faults_sigkill", 0xFA17_0004, JobKind::Refit, Fault::Sigkill);
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
fn writer(name: String, w: usize, start: Instant, stop: Arc<AtomicBool>) -> WriterStats {
    let mut c = session(&name);
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
fn reader(
    name: String,
    r: usize,
    sqls: Arc<Vec<String>>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> ReaderStats {
    let mut c = session(&name);
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

/// A refit of a 100,000-row table (fit A → fit B, `cutover => 'always'`) under concurrent
/// writers and readers:
/// * no writer or reader statement fails, every update / delete of a writer's own row hits
///   exactly that row, and each writer's id range holds exactly the rows it left;
/// * every reader answer is consistent with one fit: for the returned rows of the untouched id
///   range `1..=100000`, `<#>` equals `−Σ m_k² cos_k` (symmetric multipliers computed here from
///   fit A's or fit B's weights, to 1e-4) for all of them under the same fit; each reader sees
///   fit A, then fit B, never back; both are seen;
/// * afterwards fit B is served, and every row's combined vector equals
///   `embedstack._combine_vector` with fit B's multipliers (as text, all rows) and the closed
///   form computed here (sample of rows, incl. the writers'); no row with all its models has a
///   NULL combined vector; the served query uses the new index.
#[test]
fn faults_load_refit_under_concurrent_writers_and_readers() {
    let _g = serial();
    let t0 = Instant::now();
    let name = "faults_load";
    let mut c = fresh_db(name);
    let mut rng = Rng(0x5EED_10AD);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=LROWS {
        rows.insert(id, LDIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    // Room for HOT updates: on full pages every batch UPDATE is a new tuple elsewhere, which
    // inserts every row into the served HNSW index as well (about 100 rows/s here under this
    // load with the default fillfactor, a 19-minute refit); the test is about consistency.
    load_vectors(&mut c, "big", &LDIMS, &rows, "WITH (fillfactor = 20)");
    let pa = make_pairs(&mut rng, &rows, (1, LROWS), 4000, &|x, r| {
        1.0 * x[0] + 0.5 * x[1] + 0.2 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "pa", &pa);
    let pb = make_pairs(&mut rng, &rows, (1, LROWS), 4000, &|x, r| {
        0.2 * x[0] + 0.6 * x[1] + 1.0 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "pb", &pb);
    c.batch_execute("SELECT embedstack.create_model_set('ld', 'big', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let (fa, wa) = fit(&mut c, "ld", "pa");
    // The HNSW graph of 100,000 rows fits in memory: a much faster build.
    c.batch_execute("SET maintenance_work_mem = '256MB'").unwrap();
    c.batch_execute("CALL embedstack.materialize('ld')").unwrap();
    c.batch_execute("ANALYZE big").unwrap();
    let mult_a = symmetric_multipliers(&wa, 0.05);
    assert!(mult_a.iter().all(|&m| m > 0.0), "test precondition: every model kept under fit A: {wa:?}");
    let s0 = served_state(&mut c, "ld");
    assert_eq!(s0.0, Some(fa));
    for (g, w) in s0.1.as_ref().unwrap().iter().zip(&mult_a) {
        assert!((g - w).abs() <= 1e-12, "fit A multipliers {:?} vs {mult_a:?}", s0.1);
    }
    let setup_secs = t0.elapsed().as_secs_f64();

    // The queries: 18 rows' model vectors and 6 random ones.
    let mut qmodels: Vec<Models> = (0..18).map(|_| rows[&rng.range(1, LROWS)].clone()).collect();
    for _ in 0..6 {
        qmodels.push(LDIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    let sqls: Arc<Vec<String>> = Arc::new(
        qmodels
            .iter()
            .map(|q| {
                let qv = format!("embedstack.query_vector('ld', {})", models_sql(q));
                format!("SELECT id, (ld_combined <#> {qv})::float8 FROM big ORDER BY ld_combined <#> {qv} LIMIT 10")
            })
            .collect(),
    );
    assert_index_used(
        &mut c,
        "ld",
        "big",
        "ld_combined",
        &models_sql(&qmodels[0]),
        &index_name("public", "big", "ld_combined", false),
        "fit A",
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let writers: Vec<JoinHandle<WriterStats>> = (0..WRITERS)
        .map(|w| {
            let (n, s) = (name.to_string(), stop.clone());
            thread::spawn(move || writer(n, w, start, s))
        })
        .collect();
    let readers: Vec<JoinHandle<ReaderStats>> = (0..READERS)
        .map(|r| {
            let (n, q, s) = (name.to_string(), sqls.clone(), stop.clone());
            thread::spawn(move || reader(n, r, q, start, s))
        })
        .collect();
    // The job's phases as they commit: `(seconds since the start, phase)`.
    let phases: JoinHandle<Vec<(f64, String)>> = {
        let s = stop.clone();
        let mut m = session(name);
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
    let (mut rc, notices) = connect_with_notices(name);
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

    // The refit: fit B served.
    let j = latest_job_row(&mut c, "ld").unwrap();
    assert_eq!(
        (j.kind.as_str(), j.state.as_str(), j.phase.as_str()),
        ("refit", "succeeded", "done"),
        "{j:?}"
    );
    assert!(j.outcome.as_deref().unwrap_or("").contains("cutover => always"), "{j:?}");
    let fb = j.fit_id.unwrap();
    let wb = fit_weights(&mut c, fb);
    let mult_b = symmetric_multipliers(&wb, 0.05);
    assert!(mult_b.iter().all(|&m| m > 0.0), "test precondition: every model kept under fit B: {wb:?}");
    let s1 = served_state(&mut c, "ld");
    assert_eq!(s1.0, Some(fb));
    for (g, w) in s1.1.as_ref().unwrap().iter().zip(&mult_b) {
        assert!((g - w).abs() <= 1e-12, "fit B multipliers {:?} vs {mult_b:?}", s1.1);
    }
    assert_eq!(s1.3.as_deref(), Some(index_name("public", "big", "ld_combined", false).as_str()));
    assert_eq!(staging(&mut c, "ld"), (None, None));
    assert_eq!(columns(&mut c, "big"), ["id", "m1", "m2", "m3", "ld_combined"]);

    // Every answer under one fit.
    let sa: Vec<f64> = mult_a.iter().map(|m| m * m).collect();
    let sb: Vec<f64> = mult_b.iter().map(|m| m * m).collect();
    let sx: Vec<f64> = mult_a.iter().zip(&mult_b).map(|(a, b)| a * b).collect();
    let (mut n_a, mut n_b, mut n_both, mut n_none_stable, mut short) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut last_a, mut first_b) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut bad: Vec<String> = Vec::new();
    for (r, st) in rstats.iter().enumerate() {
        let mut seen_b = false;
        for (qi, ans, t) in &st.answers {
            if ans.len() < 10 {
                short += 1;
            }
            let q = &qmodels[*qi];
            let stable: Vec<&(i32, f64)> = ans.iter().filter(|(id, _)| *id <= LROWS).collect();
            if stable.is_empty() {
                n_none_stable += 1;
                continue;
            }
            let ok_a = stable.iter().all(|(id, d)| (d + score(q, &rows[id], &sa)).abs() <= 1e-4);
            let ok_b = stable.iter().all(|(id, d)| (d + score(q, &rows[id], &sb)).abs() <= 1e-4);
            match (ok_a, ok_b) {
                (true, false) => {
                    n_a += 1;
                    last_a = last_a.max(*t);
                    if seen_b && bad.len() < 10 {
                        bad.push(format!("reader {r} at {t:.3}s, query {qi}: fit A again after fit B"));
                    }
                }
                (false, true) => {
                    n_b += 1;
                    first_b = first_b.min(*t);
                    seen_b = true;
                }
                (true, true) => n_both += 1,
                (false, false) => {
                    if bad.len() < 10 {
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
                        bad.push(format!("reader {r} at {t:.3}s, query {qi}: {detail:#?}"));
                    }
                }
            }
        }
    }
    let answered: u64 = rstats.iter().map(|s| s.answers.len() as u64).sum();
    assert!(bad.is_empty(), "answers not consistent with one fit: {bad:#?}");
    assert!(n_a > 0 && n_b > 0, "answers under fit A {n_a}, fit B {n_b}: both expected (refit mid-run)");
    assert!(last_a <= first_b + 1.0, "fit A answered at {last_a:.3}s after fit B at {first_b:.3}s");

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

    // Every row = a fresh materialisation under fit B.
    let r = c
        .query_one(
            "SELECT count(*), count(b.ld_combined),
                    count(*) FILTER (WHERE b.ld_combined::text IS DISTINCT FROM
                        embedstack._combine_vector(m.served_multipliers, m.model_dims, m.model_columns::text[],
                                                   b.id, b.m1, b.m2, b.m3)::text),
                    count(*) FILTER (WHERE b.m1 IS NOT NULL AND b.m2 IS NOT NULL AND b.m3 IS NOT NULL
                                       AND b.ld_combined IS NULL)
               FROM big b, embedstack.model_sets m WHERE m.name = 'ld'",
            &[],
        )
        .unwrap();
    let (n_rows, n_nonnull, n_diff, n_missing): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let writer_rows: usize = wstats.iter().map(|s| s.live.len()).sum();
    assert_eq!(n_rows as usize, LROWS as usize + writer_rows);
    assert_eq!(n_diff, 0, "rows whose combined vector differs from _combine_vector under fit B");
    assert_eq!(n_missing, 0, "rows with every model but a NULL combined vector");
    let mut sample: Vec<i32> = (0..2000).map(|_| rng.range(1, LROWS)).collect();
    sample.extend(wstats.iter().flat_map(|s| s.live.iter().copied()).take(3000));
    let mut checked = 0;
    for r in c
        .query(
            "SELECT id, m1::real[], m2::real[], m3::real[], ld_combined::real[] FROM big WHERE id = ANY($1)",
            &[&sample],
        )
        .unwrap()
    {
        let id: i32 = r.get(0);
        let m: Models = vec![r.get(1), r.get(2), r.get(3)];
        let got: Option<Vec<f32>> = r.get(4);
        let got = got.unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        let want = combined(&m, &LDIMS, &mult_b);
        assert_eq!(got.len(), want.len(), "row {id}: dimension");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-6, "row {id} element {i}: {g} vs {w} (closed form, fit B)");
        }
        checked += 1;
    }
    let mut fresh = session(name);
    assert_index_used(
        &mut fresh,
        "ld",
        "big",
        "ld_combined",
        &models_sql(&qmodels[0]),
        &index_name("public", "big", "ld_combined", false),
        "fit B",
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
    let (ins, upd, del): (u64, u64, u64) =
        wstats.iter().fold((0, 0, 0), |(i, u, d), s| (i + s.inserts, u + s.updates, d + s.deletes));
    let wmax = wstats.iter().map(|s| s.max_latency).max().unwrap();
    let rmax = rstats.iter().map(|s| s.max_latency).max().unwrap();
    println!(
        "load: {LROWS} rows (dims {LDIMS:?}) + {writer_rows} writer rows at the end; {WRITERS} writers, {READERS} readers; \
         refit {:.1}s ({refit_start:.1}s..{refit_end:.1}s of a {run_secs:.1}s run; {} NOTICEs)",
        refit_end - refit_start,
        notices.len()
    );
    println!(
        "load: {answered} k-NN answers: {n_a} under fit A (last at {last_a:.2}s), {n_b} under fit B (first at {first_b:.2}s), \
         {n_both} matching both, {n_none_stable} without untouched rows, {short} with < 10 rows, 0 mixed"
    );
    println!(
        "load: writers {ins} inserts, {upd} updates, {del} deletes, 0 errors; max statement latency writers {:.2}s, \
         readers {:.2}s",
        wmax.as_secs_f64(),
        rmax.as_secs_f64()
    );
    println!(
        "load: {n_rows} rows ({n_nonnull} non-NULL) = _combine_vector(fit B) as text, {checked} sampled rows = closed form; setup {setup_secs:.1}s, \
         {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 3. The cut-over and older snapshots
// ---------------------------------------------------------------------------------------

/// A materialize of fit `p1` on `fa` while a `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1`
/// started before it stays open: the job must stay in phase `wait` with nothing served changed
/// and that transaction still reading the old served column complete, then complete once the
/// transaction ends. Otherwise panics with what that transaction sees after the cut-over.
fn cutover_with_older_snapshot(name: &str, seed: u64, default_table: bool, runner_setup: &str) {
    let t0 = Instant::now();
    let mut f = fault_setup(name, seed, default_table);
    let db = f.name.clone();
    let (fm, _) = fit(&mut f.c, "fa", "p1");
    let before = served_state(&mut f.c, "fa");
    let mut old = session(&db);
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").unwrap();
    let runner = start_runner(
        &db,
        runner_setup,
        &format!("CALL embedstack.materialize('fa', {fm}, batch_size => {FBATCH})"),
    );
    let mut mon = session(&db);
    let waiting = wait_for("the job to wait or finish", Duration::from_secs(600), || {
        if runner.handle.is_finished() {
            return Some(false);
        }
        latest_job_row(&mut mon, "fa")
            .filter(|j| j.pid == runner.pid && j.phase == "wait" && j.waiting)
            .map(|_| true)
    });
    if !waiting {
        let r = old.query_one("SELECT count(*), count(fa_combined) FROM ft", &[]).unwrap();
        let (n, nn): (i64, i64) = (r.get(0), r.get(1));
        let seen: Option<i64> = old
            .query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = 'fa'", &[])
            .unwrap()
            .get(0);
        let knn_old = knn_answers(&mut old, "fa", "ft", "fa_combined", &f.queries[..1]);
        old.batch_execute("COMMIT").unwrap();
        let res = runner.handle.join().expect("runner thread");
        let r = mon
            .query_one(
                "SELECT indcheckxmin, (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'ft')
                   FROM pg_index WHERE indexrelid = $1::text::regclass",
                &[&index_name("public", "ft", "fa_combined", false)],
            )
            .unwrap();
        let (checkxmin, hot): (bool, i64) = (r.get(0), r.get(1));
        panic!(
            "the job cut over while a REPEATABLE READ transaction older than its writes was open (job result {res:?}, \
             now serving fit {:?}; new index indcheckxmin = {checkxmin}, HOT updates of ft so far {hot}); in that \
             transaction the served column fa_combined reads {nn} non-NULL values of {n} rows, the catalog says \
             active fit {seen:?}, and a served k-NN query returns {:?}",
            served_state(&mut mon, "fa").0,
            knn_old[0]
        );
    }
    thread::sleep(Duration::from_secs(1));
    assert!(!runner.handle.is_finished(), "the job must wait for the older transaction");
    assert_eq!(served_state(&mut mon, "fa"), before);
    let nn: i64 = old.query_one("SELECT count(fa_combined) FROM ft", &[]).unwrap().get(0);
    assert_eq!(nn, FROWS as i64, "the older transaction reads the old served column, complete");
    old.batch_execute("COMMIT").unwrap();
    runner.handle.join().expect("runner thread").unwrap();
    assert_eq!(served_state(&mut mon, "fa").0, Some(fm));
    assert_eq!(latest_job_row(&mut mon, "fa").unwrap().state, "succeeded");
    println!(
        "{name}: the cut-over waited for the older read-only transaction; {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// HOT batches (`fillfactor = 25`) and a serial index build: the staging index is
/// `indcheckxmin`, and the cut-over waits for a read-only REPEATABLE READ transaction that
/// began before the job.
#[test]
fn faults_cutover_waits_for_read_only_snapshot() {
    let _g = serial();
    cutover_with_older_snapshot(
        "faults_ro_snapshot",
        0xFA17_0005,
        false,
        "SET max_parallel_maintenance_workers = 0",
    );
}

/// The same with a table as COPY leaves it (full pages: the batches are not HOT updates) and
/// pgvector's default parallel HNSW build: the staging index is not `indcheckxmin`. The cut-over
/// must still wait (an earlier version did not: the older transaction then read the renamed
/// staging column through its old snapshot, every row NULL).
#[test]
fn faults_cutover_waits_for_older_snapshot_default_table() {
    let _g = serial();
    cutover_with_older_snapshot("faults_ro_default", 0xFA17_0006, true, "");
}
