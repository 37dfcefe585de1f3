//! Operations (0.2.0, on the 0.3.0 storage) against the real running cluster: the refit policy,
//! the per-model-set job lock, the status view, history retention, privileges (owner checks of
//! the catalog writers, reading only what one may SELECT, the served view's gate) and injection
//! attempts through refit's arguments.
//!
//! Every expected value is computed independently here (with the crate's `reference` module):
//! the held-out split by the documented hash predicate, cosines, OLS fits and held-out
//! prediction MSEs in f64 from the vectors read back from the server, the documented symmetric
//! multipliers `sqrt(w_k / w_max)` and the combined vectors. Nothing asserts a duration.
//!
//! 0.3.0 storage (docs/design.md §7): a materialisation writes a generation table read through
//! the model set's view; the source is only read. "Everything served" is the catalog's served
//! state, the generations, the served generation's rows (ctid/xmin) and the source's own state.
//!
//! Concurrency is made deterministic without sleeps: each generation table of a model set gets,
//! as it is created, a user trigger (`BEFORE INSERT ... FOR EACH ROW`, crate module `gate`) that
//! takes a shared advisory lock for a few chosen keys; a "gate" session holding that lock
//! exclusively stops a materialisation inside exactly one batch (the batches are keyset-ordered,
//! so the committed progress at that moment is known exactly), and releasing it lets the run go
//! on. Sessions are observed through `pg_stat_activity` / `pg_locks`; waiting loops have
//! generous deadlines that only guard against hangs.

use std::collections::BTreeMap;
use std::thread;
use std::time::Instant;

use embedstack_client_tests::check::assert_close_vec;
use embedstack_client_tests::data::{load_pairs, load_vectors, Models, Rng};
use embedstack_client_tests::gate::{
    at_gate, awaited_advisory, close_gate, install_generation_gate, open_gate, wait_at_gate,
};
use embedstack_client_tests::reference::{combined, cos, ols, symmetric_multipliers};
use embedstack_client_tests::served::{
    default_view_name, generation_row_versions, generation_table_name, generations, relation_exists,
    served_by_id, served_generation, source_state, view_name, Generation, SourceState,
};
use embedstack_client_tests::sql::{backend_pid, expect_code, expect_err, message, q, qi, sqlstate};
use embedstack_client_tests::wait::wait_until;
use embedstack_client_tests::{connect, fresh_db};
use postgres::Client;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers (the shared ones are in the crate's modules)
// ---------------------------------------------------------------------------------------

/// The models of every test table here: vector(16), vector(24), vector(8).
const DIMS: [usize; 3] = [16, 24, 8];

/// The job-lock key space of the extension ('embs', objsubid 2).
const JOB_LOCK_CLASS: i64 = 1_701_667_443;

/// Job locks (of this database) held by `pid`.
fn job_locks_held(c: &mut Client, pid: i32) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.classid = 1701667443::oid
            AND l.objsubid = 2 AND l.granted AND l.pid = $1",
        &[&pid],
    )
    .unwrap()
    .get(0)
}

/// `n` rows of three models and `n_pairs` pairs of distinct ids with target
/// `1.0·cos1 + 0.5·cos2 + 0.25·cos3 + 0.05·U(-1, 1)`, loaded as `table` and `pairs`.
fn setup_data(c: &mut Client, seed: u64, table: &str, n: i32, n_pairs: usize) -> BTreeMap<i32, Models> {
    let mut rng = Rng(seed);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=n {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    load_vectors(c, table, &DIMS, &rows, "");
    let mut pairs = Vec::with_capacity(n_pairs);
    while pairs.len() < n_pairs {
        let (a, b) = (rng.range(1, n), rng.range(1, n));
        if a == b {
            continue;
        }
        let x: Vec<f64> = (0..3).map(|k| cos(&rows[&a][k], &rows[&b][k]).unwrap()).collect();
        pairs.push((a, b, 1.0 * x[0] + 0.5 * x[1] + 0.25 * x[2] + 0.05 * rng.sym()));
    }
    load_pairs(c, "pairs", &pairs);
    c.batch_execute("ANALYZE").unwrap();
    rows
}

/// The vectors as the server stores them (read back as `real[]`).
fn read_rows(c: &mut Client, table: &str) -> BTreeMap<i32, Models> {
    c.query(&format!("SELECT id, m1::real[], m2::real[], m3::real[] FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), vec![r.get(1), r.get(2), r.get(3)]))
        .collect()
}

/// The documented held-out split of refit, as SQL over a pairs table with key columns `l`, `r`.
fn holdout_sql(l: &str, r: &str, frac: f64) -> String {
    format!("(hashtextextended({l}::text || chr(31) || {r}::text, 0) & 1048575) < {frac:?}::float8 * 1048576")
}

/// `(a, b, y, held_out)` of every pair of table `pairs(a, b, y)` (the split computed by SQL).
fn split_pairs(c: &mut Client, frac: f64) -> Vec<(i32, i32, f64, bool)> {
    c.query(&format!("SELECT p.a, p.b, p.y, {} FROM pairs p", holdout_sql("p.a", "p.b", frac)), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn features(rows: &BTreeMap<i32, Models>, a: i32, b: i32) -> Vec<f64> {
    (0..3).map(|k| cos(&rows[&a][k], &rows[&b][k]).expect("no missing vector in these tests")).collect()
}

/// Prediction MSE of `intercept + w·x` over the given pairs, computed here.
fn mse(rows: &BTreeMap<i32, Models>, pairs: &[(i32, i32, f64)], w: &[f64], intercept: f64) -> f64 {
    let sse: f64 = pairs
        .iter()
        .map(|(a, b, y)| {
            let x = features(rows, *a, *b);
            let pred = intercept + (0..3).map(|k| w[k] * x[k]).sum::<f64>();
            (y - pred) * (y - pred)
        })
        .sum();
    sse / pairs.len() as f64
}

fn rel_close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-300)
}

/// `(weights, intercept)` of a fit.
fn fit_row(c: &mut Client, id: i64) -> (Vec<f64>, f64) {
    let r = c.query_one("SELECT weights, intercept FROM embedstack.fits WHERE id = $1", &[&id]).unwrap();
    (r.get(0), r.get(1))
}

fn fit_ids(c: &mut Client, set: &str) -> Vec<i64> {
    c.query("SELECT id FROM embedstack.fits WHERE model_set = $1 ORDER BY id", &[&set])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn job_ids(c: &mut Client, set: &str) -> Vec<i64> {
    c.query("SELECT id FROM embedstack.jobs WHERE model_set = $1 ORDER BY id", &[&set])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A row of embedstack.jobs.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Job {
    id: i64,
    kind: String,
    state: String,
    phase: String,
    fit_id: Option<i64>,
    rows_done: i64,
    rows_total: Option<i64>,
    pid: i32,
    resumed_from: Option<i64>,
    details: Value,
    error: Option<Value>,
    outcome: Option<String>,
}

const JOB_COLS: &str =
    "id, kind, state, phase, fit_id, rows_done, rows_total, pid, resumed_from, details::text, \
                        error::text, outcome";

fn job_from(r: &postgres::Row) -> Job {
    Job {
        id: r.get(0),
        kind: r.get(1),
        state: r.get(2),
        phase: r.get(3),
        fit_id: r.get(4),
        rows_done: r.get(5),
        rows_total: r.get(6),
        pid: r.get(7),
        resumed_from: r.get(8),
        details: serde_json::from_str(&r.get::<_, String>(9)).unwrap(),
        error: r.get::<_, Option<String>>(10).map(|s| serde_json::from_str(&s).unwrap()),
        outcome: r.get(11),
    }
}

fn job(c: &mut Client, id: i64) -> Job {
    job_from(&c.query_one(&format!("SELECT {JOB_COLS} FROM embedstack.jobs WHERE id = $1"), &[&id]).unwrap())
}

fn latest_job(c: &mut Client, set: &str) -> Job {
    job_from(
        &c.query_one(
            &format!("SELECT {JOB_COLS} FROM embedstack.jobs WHERE model_set = $1 ORDER BY id DESC LIMIT 1"),
            &[&set],
        )
        .unwrap(),
    )
}

/// A row of embedstack.status.
#[derive(Debug, Clone, PartialEq)]
struct Status {
    active_fit: Option<i64>,
    job_id: Option<i64>,
    job_kind: Option<String>,
    job_state: Option<String>,
    phase: Option<String>,
    job_fit: Option<i64>,
    rows_done: Option<i64>,
    rows_total: Option<i64>,
    pid: Option<i32>,
    last_error: Option<String>,
    last_error_sqlstate: Option<String>,
}

fn status(c: &mut Client, set: &str) -> Status {
    let r = c
        .query_one(
            "SELECT active_fit, job_id, job_kind, job_state, phase, job_fit, rows_done, rows_total, pid,
                    last_error, last_error_sqlstate
               FROM embedstack.status WHERE model_set = $1",
            &[&set],
        )
        .unwrap();
    Status {
        active_fit: r.get(0),
        job_id: r.get(1),
        job_kind: r.get(2),
        job_state: r.get(3),
        phase: r.get(4),
        job_fit: r.get(5),
        rows_done: r.get(6),
        rows_total: r.get(7),
        pid: r.get(8),
        last_error: r.get(9),
        last_error_sqlstate: r.get(10),
    }
}

/// Everything that is served for a model set over `table`: the catalog's served state, the
/// generations, the served generation's rows `(id, ctid, xmin)` (a rewritten row changes both),
/// and the source's own state (attributes, storage, indexes, every row's ctid/xmin).
/// `(active_fit, served_multipliers, served_storage, served_index, served_generation)`.
type ServedCatalog = (Option<i64>, Option<Vec<f64>>, Option<String>, Option<String>, Option<i64>);

#[derive(Debug, PartialEq)]
struct Served {
    catalog: ServedCatalog,
    generations: Vec<Generation>,
    generation_rows: Vec<(i32, String, String)>,
    source: SourceState,
}

fn served(c: &mut Client, set: &str, table: &str) -> Served {
    let r = c
        .query_one(
            "SELECT active_fit, served_multipliers, served_storage, served_index::text, served_generation
               FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    let catalog = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let generation_rows = match served_generation(c, set).and_then(|g| g.relation) {
        Some(rel) => generation_row_versions(c, &rel, "id"),
        None => Vec::new(),
    };
    Served { catalog, generations: generations(c, set), generation_rows, source: source_state(c, table) }
}

/// Checks every combined vector served through the model set's view against the closed form
/// for the fit's weights (symmetric mode, threshold 0.05), the catalog's served multipliers, and
/// that the served generation is the fit's layout, in the table of the documented name.
fn check_served_vectors(c: &mut Client, set: &str, table: &str, rows: &BTreeMap<i32, Models>, fit: i64) {
    let (w, _) = fit_row(c, fit);
    let mult = symmetric_multipliers(&w, 0.05);
    let cat: Vec<f64> = c
        .query_one("SELECT served_multipliers FROM embedstack.model_sets WHERE name = $1", &[&set])
        .unwrap()
        .get(0);
    for k in 0..3 {
        assert!((cat[k] - mult[k]).abs() <= 1e-12, "served multipliers {cat:?}, want {mult:?}");
    }
    let view = default_view_name(table, set);
    assert_eq!(view_name(c, set), view);
    let g = served_generation(c, set).expect("a served generation");
    assert_eq!(g.table.as_deref(), Some(generation_table_name(&view, g.id).as_str()), "{g:?}");
    assert_eq!(g.multipliers, cat, "{g:?}");
    let got = served_by_id(c, set);
    assert_eq!(got.len(), rows.len());
    for (id, g) in got {
        let g = g.unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        assert_close_vec(&g, &combined(&rows[&id], &DIMS, &mult), 1e-6, &format!("row {id}"));
    }
}

/// `CALL embedstack.refit(set, pairs, 'a', 'b', 'y' <extra>)`.
fn refit_sql(set: &str, extra: &str) -> String {
    format!("CALL embedstack.refit({}, 'pairs', 'a', 'b', 'y'{extra})", q(set))
}

/// Runs `sql` in `client` on another thread; the client comes back with the result so that the
/// caller decides when the session ends.
fn spawn_call(mut client: Client, sql: String) -> thread::JoinHandle<(Client, Result<(), postgres::Error>)> {
    thread::spawn(move || {
        let r = client.batch_execute(&sql);
        (client, r)
    })
}

// ---------------------------------------------------------------------------------------
// 1. The refit policy
// ---------------------------------------------------------------------------------------

/// The refit policy on 3000 rows (models of 16/24/8 dimensions) and 4000 pairs with target
/// `cos1 + 0.5·cos2 + 0.25·cos3 + noise`:
/// * (a) the first refit (no active fit) cuts over: its weights are the OLS solved here on the
///   pairs outside the documented hash split, the job 'succeeded', status shows the new fit
///   active, every combined vector is the closed form for its weights;
/// * (c) a refit with ridge 1e6 is worse on the held-out pairs: job 'kept', the active fit
///   and everything served (catalog, generations, every served and source row's ctid/xmin)
///   unchanged; the job's `new_mse`, `active_mse` and `holdout_pairs` equal the held-out MSEs
///   computed here from the vectors read back and each fit's weights and intercept (1e-9
///   relative);
/// * (d) `cutover => 'never'` records a fit (an OLS fit again) and changes nothing served;
/// * (e) `cutover => 'always'` with ridge 1e6 cuts over, though worse: the served multipliers
///   and every stored vector are those of the ridge fit;
/// * (f) `holdout_fraction => 0` with an active fit and the default policy: ERROR 22023,
///   nothing served changes, the job 'failed' and the status view reports 22023.
#[test]
fn refit_policy_cutover_kept_never_always_and_no_holdout() {
    let t0 = Instant::now();
    let mut c = fresh_db("ops_refit_policy");
    let generated = setup_data(&mut c, 0x0995_0001, "items", 3000, 4000);
    let rows = read_rows(&mut c, "items");
    assert_eq!(rows, generated, "the server stores exactly the generated vectors");
    c.batch_execute("SELECT embedstack.create_model_set('rs', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();

    let split = split_pairs(&mut c, 0.2);
    let train: Vec<(i32, i32, f64)> = split.iter().filter(|p| !p.3).map(|p| (p.0, p.1, p.2)).collect();
    let held: Vec<(i32, i32, f64)> = split.iter().filter(|p| p.3).map(|p| (p.0, p.1, p.2)).collect();
    assert!(held.len() > 600 && held.len() < 1000, "test precondition: ~20% held out, got {}", held.len());
    let x_train: Vec<Vec<f64>> = train.iter().map(|(a, b, _)| features(&rows, *a, *b)).collect();
    let y_train: Vec<f64> = train.iter().map(|p| p.2).collect();
    let (w_ols, b_ols) = ols(&x_train, &y_train);

    // (a) First refit: no active fit -> cut over.
    c.batch_execute(&refit_sql("rs", "")).unwrap();
    let j1 = latest_job(&mut c, "rs");
    assert_eq!((j1.kind.as_str(), j1.state.as_str(), j1.phase.as_str()), ("refit", "succeeded", "done"));
    let f1 = j1.fit_id.expect("the refit job names its fit");
    let (w1, b1) = fit_row(&mut c, f1);
    for k in 0..3 {
        assert!((w1[k] - w_ols[k]).abs() <= 1e-7, "fit 1 weight {k}: {} vs OLS {}", w1[k], w_ols[k]);
    }
    assert!((b1 - b_ols).abs() <= 1e-7, "fit 1 intercept {b1} vs OLS {b_ols}");
    let st = status(&mut c, "rs");
    assert_eq!(st.active_fit, Some(f1));
    assert_eq!(st.job_id, Some(j1.id));
    assert_eq!(st.job_state.as_deref(), Some("succeeded"));
    assert_eq!((st.rows_done, st.rows_total), (Some(3000), Some(3000)));
    assert_eq!(st.last_error_sqlstate, None);
    assert_eq!(j1.details["holdout_pairs"].as_i64(), Some(held.len() as i64));
    assert!(j1.details["active_fit"].is_null() && j1.details["active_mse"].is_null(), "{:?}", j1.details);
    let want = mse(&rows, &held, &w1, b1);
    let got = j1.details["new_mse"].as_f64().unwrap();
    assert!(rel_close(got, want, 1e-9), "fit 1 held-out MSE: job says {got}, computed {want}");
    let ts: Value = serde_json::from_str(
        &c.query_one("SELECT training_source::text FROM embedstack.fits WHERE id = $1", &[&f1])
            .unwrap()
            .get::<_, String>(0),
    )
    .unwrap();
    assert_eq!(ts["split"], "train");
    assert_eq!(ts["holdout_fraction"].as_f64(), Some(0.2));
    check_served_vectors(&mut c, "rs", "items", &rows, f1);

    // (c) A much worse fit (ridge 1e6) is kept out; the MSEs are checked here.
    let before = served(&mut c, "rs", "items");
    c.batch_execute(&refit_sql("rs", ", ridge => 1e6")).unwrap();
    let j = latest_job(&mut c, "rs");
    assert_eq!((j.state.as_str(), j.phase.as_str()), ("kept", "done"), "{j:?}");
    let f_ridge = j.fit_id.unwrap();
    assert!(f_ridge > f1);
    assert_eq!(served(&mut c, "rs", "items"), before, "a kept refit must not change anything served");
    let (wr, br) = fit_row(&mut c, f_ridge);
    let new_want = mse(&rows, &held, &wr, br);
    let act_want = mse(&rows, &held, &w1, b1);
    let new_got = j.details["new_mse"].as_f64().unwrap();
    let act_got = j.details["active_mse"].as_f64().unwrap();
    assert!(rel_close(new_got, new_want, 1e-9), "new_mse: job {new_got}, computed {new_want}");
    assert!(rel_close(act_got, act_want, 1e-9), "active_mse: job {act_got}, computed {act_want}");
    assert!(new_want > 10.0 * act_want, "test precondition: the ridge fit is clearly worse");
    assert_eq!(j.details["active_fit"].as_i64(), Some(f1));
    assert_eq!(j.details["holdout_pairs"].as_i64(), Some(held.len() as i64));
    let st = status(&mut c, "rs");
    assert_eq!((st.active_fit, st.job_state.as_deref()), (Some(f1), Some("kept")));
    assert!(j.outcome.as_deref().unwrap_or("").contains("the active fit stays"), "{:?}", j.outcome);

    // (d) cutover => 'never': a fit is recorded (OLS again), nothing served changes.
    let n_fits = fit_ids(&mut c, "rs").len();
    c.batch_execute(&refit_sql("rs", ", cutover => 'never'")).unwrap();
    let j = latest_job(&mut c, "rs");
    assert_eq!(j.state, "kept", "{j:?}");
    let f_never = j.fit_id.unwrap();
    assert_eq!(fit_ids(&mut c, "rs").len(), n_fits + 1);
    assert_eq!(*fit_ids(&mut c, "rs").last().unwrap(), f_never);
    let (wn, _) = fit_row(&mut c, f_never);
    for k in 0..3 {
        assert!((wn[k] - w_ols[k]).abs() <= 1e-7, "never-fit weight {k}: {} vs OLS {}", wn[k], w_ols[k]);
    }
    assert_eq!(served(&mut c, "rs", "items"), before, "cutover => 'never' must not change anything served");
    assert_eq!(status(&mut c, "rs").active_fit, Some(f1));

    // (e) cutover => 'always' serves the worse ridge fit.
    c.batch_execute(&refit_sql("rs", ", ridge => 1e6, cutover => 'always'")).unwrap();
    let j = latest_job(&mut c, "rs");
    assert_eq!(j.state, "succeeded", "{j:?}");
    let f_always = j.fit_id.unwrap();
    assert_eq!(status(&mut c, "rs").active_fit, Some(f_always));
    let (wa, ba) = fit_row(&mut c, f_always);
    let new_got = j.details["new_mse"].as_f64().unwrap();
    let act_got = j.details["active_mse"].as_f64().unwrap();
    assert!(rel_close(new_got, mse(&rows, &held, &wa, ba), 1e-9));
    assert!(rel_close(act_got, mse(&rows, &held, &w1, b1), 1e-9));
    assert!(new_got > act_got, "test precondition: worse, and still served");
    assert!(
        symmetric_multipliers(&wa, 0.05)
            .iter()
            .zip(symmetric_multipliers(&w1, 0.05))
            .any(|(a, b)| (a - b).abs() > 0.01),
        "test precondition: the ridge fit has other multipliers"
    );
    check_served_vectors(&mut c, "rs", "items", &rows, f_always);

    // (f) holdout_fraction => 0 cannot compare with the active fit: an argument error (22023)
    // before anything runs: no job, no fit, nothing served changes.
    let before = served(&mut c, "rs", "items");
    let jobs_before = latest_job(&mut c, "rs").id;
    let fits_before = fit_ids(&mut c, "rs");
    expect_code(&mut c, &refit_sql("rs", ", holdout_fraction => 0"), "22023");
    assert_eq!(latest_job(&mut c, "rs").id, jobs_before, "an argument error starts no job");
    assert_eq!(fit_ids(&mut c, "rs"), fits_before);
    // A fraction so small that no pair is held out fails inside the job (22023): recorded as
    // the job's error and the status view's last error; no fit is recorded.
    let e = expect_code(&mut c, &refit_sql("rs", ", holdout_fraction => 1e-9"), "22023");
    eprintln!("refit without usable held-out pairs: {}", message(&e));
    assert_eq!(served(&mut c, "rs", "items"), before, "a failed refit must not change anything served");
    assert_eq!(fit_ids(&mut c, "rs"), fits_before, "a failed refit records no fit");
    let j = latest_job(&mut c, "rs");
    assert_eq!(j.state, "failed", "{j:?}");
    assert_eq!(j.fit_id, None, "{j:?}");
    assert_eq!(j.error.as_ref().unwrap()["sqlstate"], "22023");
    let st = status(&mut c, "rs");
    assert_eq!(st.job_id, Some(j.id));
    assert_eq!(st.job_state.as_deref(), Some("failed"));
    assert_eq!(st.last_error_sqlstate.as_deref(), Some("22023"));
    assert_eq!(st.last_error.as_deref(), Some(message(&e).as_str()));
    assert_eq!(st.active_fit, Some(f_always));
    // The lock went with the failed call: the same session and another one can refit at once.
    let me = backend_pid(&mut c);
    assert_eq!(job_locks_held(&mut c, me), 0);
    let mut other = connect("ops_refit_policy", "postgres");
    other.batch_execute(&refit_sql("rs", ", cutover => 'never', wait => false")).unwrap();
    eprintln!("refit policy: {:.1}s", t0.elapsed().as_secs_f64());
}

/// (b) A second refit identical to the first one (same pairs, same arguments, same data) must
/// produce the same fit: identical weights, hence equal held-out MSEs, hence "not worse" -> cut
/// over; and as the stored multipliers are then identical, nothing changes (0.4.0): no new
/// generation, the same one served, none of its rows rewritten (every row keeps its ctid and
/// xmin), the source untouched, and the active fit and the rollback point stay (0.3.x moved
/// `active_fit` to the new fit and made the identical old one the rollback point). Checked twice: right
/// after the first refit, and after an UPDATE of a column outside the model set (which moves half
/// the source rows physically but changes nothing the model set reads: the freshness triggers
/// rewrite no generation row).
#[test]
fn refit_identical_rerun_rewrites_no_row() {
    let t0 = Instant::now();
    let mut c = fresh_db("ops_refit_identical");
    setup_data(&mut c, 0x0995_0002, "items", 3000, 4000);
    c.batch_execute("ALTER TABLE items ADD COLUMN note text").unwrap();
    c.batch_execute("SELECT embedstack.create_model_set('ri', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    c.batch_execute(&refit_sql("ri", "")).unwrap();
    let j1 = latest_job(&mut c, "ri");
    assert_eq!(j1.state, "succeeded");
    let f1 = j1.fit_id.unwrap();
    let (w1, b1) = fit_row(&mut c, f1);

    for (step, touch) in [
        ("right after the first refit", None),
        ("after an UPDATE of a non-model column", Some("UPDATE items SET note = 'touched' WHERE id % 2 = 0")),
    ] {
        if let Some(sql) = touch {
            let before = served(&mut c, "ri", "items");
            c.batch_execute(sql).unwrap();
            let after = served(&mut c, "ri", "items");
            assert_eq!(
                (&after.catalog, &after.generations, &after.generation_rows),
                (&before.catalog, &before.generations, &before.generation_rows),
                "{step}: an UPDATE of a non-model column rewrote generation rows"
            );
            assert_ne!(
                after.source.rows, before.source.rows,
                "test precondition: the UPDATE moved source rows"
            );
        }
        let before = served(&mut c, "ri", "items");
        assert_eq!(before.generation_rows.len(), 3000);
        c.batch_execute(&refit_sql("ri", "")).unwrap();
        let j = latest_job(&mut c, "ri");
        let f = j.fit_id.unwrap();
        let (w, b) = fit_row(&mut c, f);
        let after = served(&mut c, "ri", "items");
        let rewritten =
            after.generation_rows.iter().zip(&before.generation_rows).filter(|(x, y)| x != y).count();
        assert_eq!(
            (&w, b),
            (&w1, b1),
            "{step}: an identical refit must give identical weights (job {} state {}, {rewritten} rows rewritten, {})",
            j.id,
            j.state,
            j.details["decision"]
        );
        assert_eq!(j.details["new_mse"], j.details["active_mse"], "{step}: {:?}", j.details);
        assert_eq!(j.state, "succeeded", "{step}: not worse -> cut over: {j:?}");
        assert!(j.outcome.as_deref().unwrap_or("").contains("nothing changed"), "{step}: {j:?}");
        assert_eq!(status(&mut c, "ri").active_fit, Some(f1), "{step}: the served fit stays");
        assert_eq!(rewritten, 0, "{step}: identical multipliers: no row may be rewritten");
        assert_eq!(after.generation_rows, before.generation_rows, "{step}: the served generation's rows");
        assert_eq!(after.generations, before.generations, "{step}: no new generation");
        assert_eq!(after.source, before.source, "{step}: the source is only read");
        assert_eq!(
            (&after.catalog.1, &after.catalog.2, &after.catalog.3, &after.catalog.4),
            (&before.catalog.1, &before.catalog.2, &before.catalog.3, &before.catalog.4),
            "{step}: served multipliers, storage, index and generation"
        );
    }
    eprintln!("identical refit: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Bad arguments of refit fail before anything runs, with the documented SQLSTATEs: an
/// unknown cutover policy 22023, holdout_fraction 1 (and NaN, −0.1) 22023, negative ridge
/// 22023, batch_size 0 22023, an unknown pairs column 42703, an unknown pairs table 42P01, an
/// unknown model set 42704, NULL pairs / column / policy 22004. No job row, no fit, nothing
/// served changes.
#[test]
fn refit_bad_arguments() {
    let mut c = fresh_db("ops_refit_bad_args");
    setup_data(&mut c, 0x0995_0004, "items", 300, 600);
    c.batch_execute("SELECT embedstack.create_model_set('rb', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    c.batch_execute(&refit_sql("rb", "")).unwrap();
    let before = served(&mut c, "rb", "items");
    let (fits, jobs) = (fit_ids(&mut c, "rb"), job_ids(&mut c, "rb"));
    for (sql, code) in [
        (refit_sql("rb", ", cutover => 'sometimes'"), "22023"),
        (refit_sql("rb", ", cutover => 'ALWAYS'"), "22023"),
        (refit_sql("rb", ", holdout_fraction => 1"), "22023"),
        (refit_sql("rb", ", holdout_fraction => -0.1"), "22023"),
        (refit_sql("rb", ", holdout_fraction => 'NaN'"), "22023"),
        (refit_sql("rb", ", ridge => -1"), "22023"),
        (refit_sql("rb", ", tolerance => -0.5"), "22023"),
        (refit_sql("rb", ", tolerance => 'Infinity'"), "22023"),
        (refit_sql("rb", ", batch_size => 0"), "22023"),
        ("CALL embedstack.refit('rb', 'pairs', 'a', 'zz', 'y')".into(), "42703"),
        ("CALL embedstack.refit('rb', 'pairs', 'a', 'b', 'y', sample_weight_column => 'w')".into(), "42703"),
        ("CALL embedstack.refit('rb', 'no_such_pairs', 'a', 'b', 'y')".into(), "42P01"),
        ("CALL embedstack.refit('nope', 'pairs', 'a', 'b', 'y')".into(), "42704"),
        ("CALL embedstack.refit('rb', NULL, 'a', 'b', 'y')".into(), "22004"),
        ("CALL embedstack.refit('rb', 'pairs', NULL, 'b', 'y')".into(), "22004"),
        (refit_sql("rb", ", cutover => NULL"), "22004"),
        (refit_sql("rb", ", wait => NULL"), "22004"),
    ] {
        expect_code(&mut c, &sql, code);
    }
    assert_eq!(served(&mut c, "rb", "items"), before);
    assert_eq!(fit_ids(&mut c, "rb"), fits, "no fit recorded by a rejected call");
    assert_eq!(job_ids(&mut c, "rb"), jobs, "no job recorded by a rejected call");
}

/// tolerance must be "a finite number >= 0" (the refit's own message): NaN is not one, and
/// would make `new_mse <= active_mse * (1 + NaN)` true in PostgreSQL's ordering (NaN sorts
/// above every number), i.e. silently turn 'if_not_worse' into 'always'.
#[test]
fn refit_rejects_nan_tolerance() {
    let mut c = fresh_db("ops_refit_nan_tol");
    setup_data(&mut c, 0x0995_0005, "items", 300, 600);
    c.batch_execute("SELECT embedstack.create_model_set('rn', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    c.batch_execute(&refit_sql("rn", "")).unwrap();
    let before = served(&mut c, "rn", "items");
    let r = c.batch_execute(&refit_sql("rn", ", ridge => 1e6, tolerance => 'NaN'"));
    let after = served(&mut c, "rn", "items");
    let j = latest_job(&mut c, "rn");
    assert_eq!(after.catalog, before.catalog, "a NaN tolerance served the worse ridge fit: {j:?}");
    assert!(after == before, "a NaN tolerance rewrote the served rows: {j:?}");
    let e = r.expect_err("tolerance => NaN must be rejected");
    assert_eq!(sqlstate(&e), "22023", "{}", message(&e));
}

// ---------------------------------------------------------------------------------------
// 2. The job lock
// ---------------------------------------------------------------------------------------

/// One materialize / refit per model set at a time, on 6000 rows materialised in batches of
/// 500. Session A's materialize is stopped inside a batch by a gate (see the file comment);
/// meanwhile:
/// * refit / materialize with `wait => false` get 55P03 whose message names A's pid, and
///   drop_model_set (with or without columns) gets 55P03; nothing changes;
/// * a refit with `wait => true` in session B blocks on the job lock (pg_locks shows it
///   waiting for the extension's lock key, no job row of B exists yet) until A finishes,
///   then runs to completion: its job started after A's finished;
/// * A's result is the closed form for its fit (every row), though other sessions interfered;
/// * after calls that FAIL after taking the lock — refit with holdout_fraction 0 (in the fit
///   step) and a materialize whose prepare step fails creating the next generation table (a
///   user's event trigger refuses it, P0001; nothing written: everything served and the
///   generations as they were; 0.3.1 no longer fails on a user's table of the next generation's
///   name: it takes a suffixed name) — the failing session, still connected, holds no job lock,
///   and another session's refit with `wait => false` runs at once.
#[test]
fn job_lock_serialises_and_is_released_by_failed_calls() {
    let t0 = Instant::now();
    let db = "ops_job_lock";
    let mut c = fresh_db(db);
    let rows = setup_data(&mut c, 0x0995_0010, "big", 6000, 2000);
    install_generation_gate(&mut c, "big_cc");
    c.batch_execute("SELECT embedstack.create_model_set('cc', 'big', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let f1: i64 =
        c.query_one("SELECT (embedstack.fit('cc', 'pairs', 'a', 'b', 'y')).id", &[]).unwrap().get(0);

    let mut gate = connect(db, "postgres");
    close_gate(&mut gate, 3001);
    let mut a = connect(db, "postgres");
    let a_pid = backend_pid(&mut a);
    let run_a = spawn_call(a, format!("CALL embedstack.materialize('cc', {f1}, batch_size => 500)"));
    wait_at_gate(&mut c, a_pid, 3001);
    let st = status(&mut c, "cc");
    assert_eq!(
        (st.job_state.as_deref(), st.phase.as_deref(), st.rows_done, st.pid),
        (Some("running"), Some("write"), Some(3000), Some(a_pid)),
        "{st:?}"
    );
    let jobs_before = job_ids(&mut c, "cc");
    let fits_before = fit_ids(&mut c, "cc");

    for sql in [
        refit_sql("cc", ", wait => false"),
        refit_sql("cc", ""),
        "CALL embedstack.materialize('cc', wait => false)".to_string(),
        format!("CALL embedstack.materialize('cc', {f1}, batch_size => 500)"),
    ] {
        let e = expect_code(&mut c, &sql, "55P03");
        assert!(
            message(&e).contains(&format!("pid {a_pid}")),
            "{sql}: the message must name pid {a_pid}: {}",
            message(&e)
        );
    }
    expect_code(&mut c, "SELECT embedstack.drop_model_set('cc')", "55P03");
    expect_code(&mut c, "SELECT embedstack.drop_model_set('cc', drop_columns => true)", "55P03");
    assert_eq!(job_ids(&mut c, "cc"), jobs_before, "a refused call records no job");
    assert_eq!(fit_ids(&mut c, "cc"), fits_before, "a refused refit records no fit");
    assert_eq!(c.query_one("SELECT count(*) FROM embedstack.model_sets", &[]).unwrap().get::<_, i64>(0), 1);
    let me = backend_pid(&mut c);
    assert_eq!(job_locks_held(&mut c, me), 0, "refused calls hold no lock");

    // B queues behind A.
    let mut b = connect(db, "postgres");
    let b_pid = backend_pid(&mut b);
    let run_b = spawn_call(b, refit_sql("cc", ", wait => true, cutover => 'never', batch_size => 500"));
    wait_until("B to wait for the job lock", || {
        matches!(awaited_advisory(&mut c, b_pid), Some((JOB_LOCK_CLASS, _, 2)))
    });
    let b_jobs: i64 =
        c.query_one("SELECT count(*) FROM embedstack.jobs WHERE pid = $1", &[&b_pid]).unwrap().get(0);
    assert_eq!(b_jobs, 0, "B must not start a job while A holds the lock");
    assert_eq!(status(&mut c, "cc").job_state.as_deref(), Some("running"));

    open_gate(&mut gate, 3001);
    let (a, ra) = run_a.join().unwrap();
    ra.unwrap_or_else(|e| panic!("A's materialize: {e}"));
    drop(a);
    let (b, rb) = run_b.join().unwrap();
    rb.unwrap_or_else(|e| panic!("B's refit: {e}"));
    drop(b);

    let ja = job(&mut c, *jobs_before.last().unwrap());
    let jb = latest_job(&mut c, "cc");
    assert_eq!((ja.kind.as_str(), ja.state.as_str(), ja.pid), ("materialize", "succeeded", a_pid), "{ja:?}");
    assert_eq!((jb.kind.as_str(), jb.state.as_str(), jb.pid), ("refit", "kept", b_pid), "{jb:?}");
    assert!(jb.id > ja.id);
    assert_eq!(jb.resumed_from, None, "A had finished: nothing to resume");
    let after: bool = c
        .query_one(
            "SELECT b.started_at >= a.finished_at FROM embedstack.jobs a, embedstack.jobs b WHERE a.id = $1 AND b.id = $2",
            &[&ja.id, &jb.id],
        )
        .unwrap()
        .get(0);
    assert!(after, "B's job must start after A's finished");
    assert_eq!(status(&mut c, "cc").active_fit, Some(f1));
    check_served_vectors(&mut c, "cc", "big", &rows, f1);

    // A failing refit (22023 in the fit step) in session X: X, still connected, holds no
    // lock, and another session refits at once with wait => false.
    let mut x = connect(db, "postgres");
    let x_pid = backend_pid(&mut x);
    expect_code(&mut x, &refit_sql("cc", ", holdout_fraction => 0, batch_size => 500"), "22023");
    assert_eq!(job_locks_held(&mut c, x_pid), 0, "the failed refit left its lock held");
    c.batch_execute(&refit_sql("cc", ", wait => false, cutover => 'never'")).unwrap();
    assert_eq!(latest_job(&mut c, "cc").state, "kept");

    // A failing materialize (in its prepare step: a user's event trigger refuses the creation
    // of the next generation table).
    let f_ridge: i64 = c
        .query_one("SELECT (embedstack.fit('cc', 'pairs', 'a', 'b', 'y', ridge => 1e6)).id", &[])
        .unwrap()
        .get(0);
    c.batch_execute(
        "CREATE FUNCTION public.refuse_generations() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                         WHERE d.command_tag = 'CREATE TABLE' AND d.object_identity LIKE 'public.big\\_cc\\_g%') THEN
                 RAISE EXCEPTION 'no new generation of cc now';
             END IF;
         END $$;
         CREATE EVENT TRIGGER refuse_generations ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
           EXECUTE FUNCTION public.refuse_generations();",
    )
    .unwrap();
    let gens_before = generations(&mut c, "cc");
    let before = served(&mut c, "cc", "big");
    let e = expect_code(
        &mut x,
        &format!("CALL embedstack.materialize('cc', {f_ridge}, batch_size => 500)"),
        "P0001",
    );
    assert!(message(&e).contains("no new generation"), "{}", message(&e));
    assert_eq!(job_locks_held(&mut c, x_pid), 0, "the failed materialize left its lock held");
    assert_eq!(served(&mut c, "cc", "big"), before, "nothing written");
    assert_eq!(generations(&mut c, "cc"), gens_before, "no generation recorded");
    let st = status(&mut c, "cc");
    assert_eq!((st.job_state.as_deref(), st.last_error_sqlstate.as_deref()), (Some("failed"), Some("P0001")));
    c.batch_execute("DROP EVENT TRIGGER refuse_generations").unwrap();
    c.batch_execute(&refit_sql("cc", ", wait => false, cutover => 'never'")).unwrap();
    assert_eq!(latest_job(&mut c, "cc").state, "kept");
    drop(x);
    eprintln!("job lock: {:.1}s", t0.elapsed().as_secs_f64());
}

/// A call that fails after taking the job lock, inside a subtransaction the client rolls back
/// (a savepoint, as drivers with automatic savepoints or psql's ON_ERROR_ROLLBACK do, or a
/// PL/pgSQL exception block), must not leave the lock behind: afterwards, with that session
/// still connected and idle, another session's refit with `wait => false` must run.
/// Two shapes: `CALL refit` in a transaction block (refused with 2D000 right after it took
/// the lock, where its first COMMIT would have failed) and `drop_model_set(..., drop_columns => true)` failing with 2BP01 on a
/// user's view built on the served view.
#[test]
fn job_lock_released_when_the_failure_is_rolled_back_to_a_savepoint() {
    let db = "ops_job_lock_savepoint";
    let mut c = fresh_db(db);
    setup_data(&mut c, 0x0995_0011, "items", 300, 600);
    c.batch_execute("SELECT embedstack.create_model_set('sp', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    c.batch_execute(&refit_sql("sp", "")).unwrap();

    let mut x = connect(db, "postgres");
    let x_pid = backend_pid(&mut x);
    x.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    let e = expect_err(&mut x, &refit_sql("sp", ", cutover => 'never'"));
    assert_eq!(sqlstate(&e), "2D000", "{}", message(&e));
    x.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").unwrap();
    let held_1 = job_locks_held(&mut c, x_pid);
    let r1 = c.batch_execute(&refit_sql("sp", ", cutover => 'never', wait => false"));
    // Disconnecting ends any lock X kept, so that the second shape starts clean.
    drop(x);
    wait_until("X's backend to exit", || {
        c.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&x_pid])
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });

    c.batch_execute("CREATE VIEW dep AS SELECT id, sp_combined FROM items_sp").unwrap();
    let mut y = connect(db, "postgres");
    let y_pid = backend_pid(&mut y);
    y.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    let e = expect_err(&mut y, "SELECT embedstack.drop_model_set('sp', drop_columns => true)");
    assert_eq!(sqlstate(&e), "2BP01", "{}", message(&e));
    y.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").unwrap();
    let held_2 = job_locks_held(&mut c, y_pid);
    let r2 = c.batch_execute(&refit_sql("sp", ", cutover => 'never', wait => false"));

    eprintln!(
        "savepoint: job locks left: after CALL refit {held_1} (then {}), after drop_model_set {held_2} (then {})",
        r1.as_ref().map(|_| "ok".to_string()).unwrap_or_else(sqlstate),
        r2.as_ref().map(|_| "ok".to_string()).unwrap_or_else(sqlstate)
    );
    assert_eq!(held_1, 0, "CALL refit rolled back to a savepoint left the job lock held by pid {x_pid}");
    r1.unwrap_or_else(|e| panic!("refit after the rolled-back CALL: {} {}", sqlstate(&e), message(&e)));
    assert_eq!(held_2, 0, "drop_model_set rolled back to a savepoint left the job lock held by pid {y_pid}");
    r2.unwrap_or_else(|e| {
        panic!("refit after the rolled-back drop_model_set: {} {}", sqlstate(&e), message(&e))
    });
}

/// The generation a job writes (`jobs.generation`).
fn job_generation(c: &mut Client, job: i64) -> Generation {
    let id: i64 = c
        .query_one("SELECT generation FROM embedstack.jobs WHERE id = $1", &[&job])
        .unwrap()
        .get::<_, Option<i64>>(0)
        .unwrap_or_else(|| panic!("job {job} names no generation"));
    let set: String =
        c.query_one("SELECT model_set FROM embedstack.jobs WHERE id = $1", &[&job]).unwrap().get(0);
    generations(c, &set)
        .into_iter()
        .find(|g| g.id == id)
        .unwrap_or_else(|| panic!("generation {id} of job {job}"))
}

// ---------------------------------------------------------------------------------------
// 3. Status, cancel, terminate and resume
// ---------------------------------------------------------------------------------------

/// The status view during and after runs of a refit over 6000 rows in batches of 500:
/// * while it runs (observed from another session, the run stopped at gates at rows 1501 and
///   then 3001): job_state 'running', kind 'refit', phase 'write', pid = the runner's,
///   rows_total 6000, rows_done exactly 1500 then 3000, and every value seen in between a
///   multiple of 500, non-decreasing, ≤ rows_total;
/// * pg_cancel_backend on the runner: the call fails with 57014; status shows that job
///   'failed' with last_error_sqlstate 57014; nothing is served; the runner's session, still
///   connected, holds no job lock;
/// * a second run, terminated with pg_terminate_backend at row 1501: status shows job_state
///   'interrupted' (its row still says running; no session holds the lock), rows_done 1500;
/// * the same call again resumes it: the new job's resumed_from is the interrupted job, its fit
///   is the interrupted job's (no new fit), it succeeds with rows_done = rows_total = 6000 and
///   serves the generation the interrupted job was writing; the 1500 rows written into it before
///   the termination were not rewritten (same ctid/xmin), the others were added; the cancelled
///   run's generation (another fit) is gone; the source was never touched (every row's
///   ctid/xmin, its attributes); every served vector is the closed form of that fit.
#[test]
fn status_progress_cancel_terminate_and_resume() {
    let t0 = Instant::now();
    let db = "ops_status";
    let mut c = fresh_db(db);
    let rows = setup_data(&mut c, 0x0995_0020, "big", 6000, 2000);
    install_generation_gate(&mut c, "big_st");
    c.batch_execute("SELECT embedstack.create_model_set('st', 'big', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let source0 = source_state(&mut c, "big");
    let call = refit_sql("st", ", batch_size => 500");
    let mut gate = connect(db, "postgres");

    // Run 1: progress, then cancel.
    close_gate(&mut gate, 1501);
    close_gate(&mut gate, 3001);
    let mut a = connect(db, "postgres");
    let a_pid = backend_pid(&mut a);
    let run = spawn_call(a, call.clone());
    wait_at_gate(&mut c, a_pid, 1501);
    let st = status(&mut c, "st");
    assert_eq!(
        (st.job_kind.as_deref(), st.job_state.as_deref(), st.phase.as_deref()),
        (Some("refit"), Some("running"), Some("write")),
        "{st:?}"
    );
    assert_eq!((st.rows_done, st.rows_total, st.pid), (Some(1500), Some(6000), Some(a_pid)));
    assert_eq!(st.active_fit, None);
    let job1 = st.job_id.unwrap();
    let fit1 = st.job_fit.expect("the fit step has committed the fit");
    open_gate(&mut gate, 1501);
    let mut seen = vec![1500i64];
    wait_until("the run to stop at row 3001", || {
        let s = status(&mut c, "st");
        assert_eq!(s.job_id, Some(job1));
        if s.phase.as_deref() == Some("write") {
            seen.push(s.rows_done.unwrap());
        }
        at_gate(&mut c, a_pid, 3001) && s.rows_done == Some(3000)
    });
    let st = status(&mut c, "st");
    assert_eq!(
        (st.job_state.as_deref(), st.phase.as_deref(), st.rows_done),
        (Some("running"), Some("write"), Some(3000))
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "rows_done went back: {seen:?}");
    assert!(seen.iter().all(|&n| n % 500 == 0 && n <= 6000), "{seen:?}");
    assert_eq!(seen.last(), Some(&3000));

    let cancelled: bool = c.query_one("SELECT pg_cancel_backend($1)", &[&a_pid]).unwrap().get(0);
    assert!(cancelled);
    let (mut a, r) = run.join().unwrap();
    let e = r.expect_err("a cancelled refit must fail");
    assert_eq!(sqlstate(&e), "57014", "{}", message(&e));
    let st = status(&mut c, "st");
    assert_eq!(st.job_id, Some(job1));
    assert_eq!(st.job_state.as_deref(), Some("failed"));
    assert_eq!(st.last_error_sqlstate.as_deref(), Some("57014"));
    assert_eq!(st.active_fit, None, "nothing is served after a cancelled first refit");
    assert_eq!(job(&mut c, job1).state, "failed");
    assert_eq!(job_locks_held(&mut c, a_pid), 0, "the cancelled session still holds the job lock");
    let gen1 = job_generation(&mut c, job1);
    assert_eq!((gen1.state.as_str(), gen1.rows_written), ("building", 3000), "{gen1:?}");
    // The session is usable and idle.
    assert_eq!(a.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
    drop(a);
    open_gate(&mut gate, 3001);

    // Run 2: terminated at row 1501.
    close_gate(&mut gate, 1501);
    let mut a = connect(db, "postgres");
    let a_pid = backend_pid(&mut a);
    let run = spawn_call(a, call.clone());
    wait_at_gate(&mut c, a_pid, 1501);
    let job2 = status(&mut c, "st").job_id.unwrap();
    assert!(job2 > job1);
    let terminated: bool = c.query_one("SELECT pg_terminate_backend($1, 60000)", &[&a_pid]).unwrap().get(0);
    assert!(terminated);
    let (_, r) = run.join().unwrap();
    assert!(r.is_err(), "a terminated call must fail");
    wait_until("the terminated backend to be gone", || {
        c.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&a_pid])
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });
    let st = status(&mut c, "st");
    assert_eq!(st.job_id, Some(job2));
    assert_eq!(st.job_state.as_deref(), Some("interrupted"), "{st:?}");
    assert_eq!((st.phase.as_deref(), st.rows_done), (Some("write"), Some(1500)));
    let j2 = job(&mut c, job2);
    assert_eq!(j2.state, "running", "the job row itself is left as it was");
    let fit2 = j2.fit_id.unwrap();
    let gen2 = job_generation(&mut c, job2);
    assert_eq!((gen2.state.as_str(), gen2.fit_id, gen2.rows_written), ("building", fit2, 1500), "{gen2:?}");
    assert!(gen2.id > gen1.id);
    assert!(
        !relation_exists(&mut c, gen1.relation.as_deref().unwrap()),
        "run 1's generation (fit {fit1}) is dropped"
    );
    let gen_table = gen2.relation.clone().unwrap();
    assert_eq!(gen2.table.as_deref(), Some(generation_table_name("big_st", gen2.id).as_str()));
    let written = generation_row_versions(&mut c, &gen_table, "id");
    assert_eq!(written.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=1500).collect::<Vec<_>>());
    let fits_before = fit_ids(&mut c, "st");
    open_gate(&mut gate, 1501);

    // Run 3: the same call resumes the interrupted refit.
    c.batch_execute(&call).unwrap();
    let j3 = latest_job(&mut c, "st");
    assert_eq!(j3.resumed_from, Some(job2), "{j3:?}");
    assert_eq!(j3.fit_id, Some(fit2), "the resumed refit finishes the interrupted fit");
    assert_eq!(fit_ids(&mut c, "st"), fits_before, "resuming fits nothing new");
    assert_eq!((j3.state.as_str(), j3.rows_done, j3.rows_total), ("succeeded", 6000, Some(6000)), "{j3:?}");
    assert_eq!(job(&mut c, job2).state, "interrupted");
    let st = status(&mut c, "st");
    assert_eq!((st.active_fit, st.job_state.as_deref()), (Some(fit2), Some("succeeded")));
    assert_eq!(
        served_generation(&mut c, "st").map(|g| g.id),
        Some(gen2.id),
        "the resumed generation is served"
    );
    let versions_after: BTreeMap<i32, (String, String)> =
        generation_row_versions(&mut c, &gen_table, "id").into_iter().map(|(i, a, b)| (i, (a, b))).collect();
    assert_eq!(versions_after.len(), 6000);
    for (id, ctid, xmin) in &written {
        assert_eq!(versions_after[id], (ctid.clone(), xmin.clone()), "row {id} was rewritten");
    }
    assert_eq!(source_state(&mut c, "big"), source0, "the source is only read");
    check_served_vectors(&mut c, "st", "big", &rows, fit2);
    assert!(fit1 < fit2);
    eprintln!("status: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 4. History retention
// ---------------------------------------------------------------------------------------

/// `SET embedstack.keep_history = 3`: after every fit (by refit or fit), the model set keeps
/// its 3 newest fits plus the active one (never deleted, even when old) and its 3 newest jobs.
/// Once another fit is active, the old active fit is still kept while a rollback could serve it
/// again (it is `previous_fit`, and the fit of a retained generation); after one more switch to
/// a new layout (its generation dropped, `embedstack.keep_generations` = 1) it goes at the next
/// fit; the active and previous fits are kept even when they fall out of the newest 3.
/// `keep_history = 0` keeps everything; a negative value is rejected. Another model set's
/// history is untouched.
#[test]
fn keep_history_trims_fits_and_jobs_but_never_the_active_fit() {
    let mut c = fresh_db("ops_keep_history");
    setup_data(&mut c, 0x0995_0030, "items", 300, 600);
    c.batch_execute(
        "SELECT embedstack.create_model_set('kh', 'items', 'id', ARRAY['m1', 'm2', 'm3']);
         SELECT embedstack.create_model_set('other', 'items', 'id', ARRAY['m1', 'm2']);",
    )
    .unwrap();
    let show =
        |c: &mut Client| -> String { c.query_one("SHOW embedstack.keep_history", &[]).unwrap().get(0) };
    for _ in 0..5 {
        c.batch_execute("SELECT embedstack.fit('other', 'pairs', 'a', 'b', 'y')").unwrap();
    }
    assert_eq!(show(&mut c), "100");
    c.batch_execute("SET embedstack.keep_history = 3").unwrap();
    assert_eq!(show(&mut c), "3");

    let f1: i64 =
        c.query_one("SELECT (embedstack.fit('kh', 'pairs', 'a', 'b', 'y')).id", &[]).unwrap().get(0);
    c.batch_execute(&format!("CALL embedstack.materialize('kh', {f1})")).unwrap();
    assert_eq!(status(&mut c, "kh").active_fit, Some(f1));
    let mut all_fits = vec![f1];
    let mut all_jobs = job_ids(&mut c, "kh");
    assert_eq!(all_jobs.len(), 1);

    let newest = |v: &[i64], n: usize| -> Vec<i64> { v[v.len().saturating_sub(n)..].to_vec() };
    for round in 0..6 {
        c.batch_execute(&refit_sql("kh", ", cutover => 'never'")).unwrap();
        let j = latest_job(&mut c, "kh");
        assert_eq!(j.state, "kept");
        all_fits.push(j.fit_id.unwrap());
        all_jobs.push(j.id);
        let mut want_fits = newest(&all_fits, 3);
        if !want_fits.contains(&f1) {
            want_fits.insert(0, f1);
        }
        assert_eq!(fit_ids(&mut c, "kh"), want_fits, "round {round}: fits");
        assert_eq!(job_ids(&mut c, "kh"), newest(&all_jobs, 3), "round {round}: jobs");
        assert_eq!(status(&mut c, "kh").active_fit, Some(f1));
    }

    // A new active fit; the old one stays while rollback may serve it again.
    c.batch_execute(&refit_sql("kh", ", cutover => 'always'")).unwrap();
    let j = latest_job(&mut c, "kh");
    assert_eq!(j.state, "succeeded");
    let f_new = j.fit_id.unwrap();
    all_fits.push(f_new);
    all_jobs.push(j.id);
    assert_eq!(status(&mut c, "kh").active_fit, Some(f_new));
    let mut want = newest(&all_fits, 3);
    want.insert(0, f1); // still active when the new fit was recorded
    assert_eq!(fit_ids(&mut c, "kh"), want);
    let previous = |c: &mut Client| -> (Option<i64>, Option<i64>) {
        let r = c
            .query_one(
                "SELECT previous_fit, served_generation FROM embedstack.model_sets WHERE name = 'kh'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(previous(&mut c).0, Some(f1));
    let f_plain: i64 = c
        .query_one("SELECT (embedstack.fit('kh', 'pairs', 'a', 'b', 'y', ridge => 3)).id", &[])
        .unwrap()
        .get(0);
    all_fits.push(f_plain);
    let mut want = newest(&all_fits, 3);
    want.insert(0, f1);
    assert_eq!(fit_ids(&mut c, "kh"), want, "the previous fit is kept for rollback");
    assert!(fit_ids(&mut c, "kh").contains(&f_new));
    assert_eq!(job_ids(&mut c, "kh"), newest(&all_jobs, 3), "fit() trims jobs too");
    // Serving f_plain (a new layout: a new generation): f_new becomes the previous fit, f1's
    // generation is dropped (one retained generation), and f1 goes at the next fit. (f_plain is
    // fitted with a ridge: without one it would have f1's layout, and serving it would reuse f1's
    // retained generation, rollback.rs.)
    let gen_before = previous(&mut c).1;
    c.batch_execute(&format!("CALL embedstack.materialize('kh', {f_plain})")).unwrap();
    all_jobs.push(latest_job(&mut c, "kh").id);
    let (prev, gen_after) = previous(&mut c);
    assert_eq!(prev, Some(f_new));
    assert_ne!(gen_after, gen_before, "test precondition: f_plain has another layout than f_new");
    assert!(generations(&mut c, "kh").iter().all(|g| g.fit_id != f1), "{:?}", generations(&mut c, "kh"));
    let f_next: i64 =
        c.query_one("SELECT (embedstack.fit('kh', 'pairs', 'a', 'b', 'y')).id", &[]).unwrap().get(0);
    all_fits.push(f_next);
    assert_eq!(fit_ids(&mut c, "kh"), newest(&all_fits, 3), "the old active fit is trimmed now");
    assert_eq!(job_ids(&mut c, "kh"), newest(&all_jobs, 3));
    // The active and the previous fit are kept even when they fall out of the newest 3.
    for _ in 0..3 {
        let id: i64 =
            c.query_one("SELECT (embedstack.fit('kh', 'pairs', 'a', 'b', 'y')).id", &[]).unwrap().get(0);
        all_fits.push(id);
    }
    let mut want = newest(&all_fits, 3);
    want.insert(0, f_plain);
    want.insert(0, f_new);
    assert_eq!(fit_ids(&mut c, "kh"), want);

    // 0 keeps everything; negative values are rejected.
    c.batch_execute("SET embedstack.keep_history = 0").unwrap();
    let n = fit_ids(&mut c, "kh").len();
    for _ in 0..4 {
        c.batch_execute("SELECT embedstack.fit('kh', 'pairs', 'a', 'b', 'y')").unwrap();
    }
    assert_eq!(fit_ids(&mut c, "kh").len(), n + 4);
    expect_code(&mut c, "SET embedstack.keep_history = -1", "22023");
    assert_eq!(fit_ids(&mut c, "other").len(), 5, "another model set's history is untouched");
}

// ---------------------------------------------------------------------------------------
// 5. Privileges
// ---------------------------------------------------------------------------------------

/// Catalog contents as text, to check that nothing changed.
fn catalog_text(c: &mut Client) -> (String, String, String, String) {
    let r = c
        .query_one(
            "SELECT (SELECT coalesce(string_agg(m::text, E'\\n' ORDER BY name), '') FROM embedstack.model_sets m),
                    (SELECT coalesce(string_agg(f::text, E'\\n' ORDER BY id), '') FROM embedstack.fits f),
                    (SELECT coalesce(string_agg(j::text, E'\\n' ORDER BY id), '') FROM embedstack.jobs j),
                    (SELECT coalesce(string_agg(g::text, E'\\n' ORDER BY id), '') FROM embedstack.generations g)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

const ROLES: [&str; 4] = ["ops_priv_reader", "ops_priv_owner", "ops_priv_nosel", "ops_priv_keyonly"];

/// Roles are cluster-wide: drop those a failed earlier run may have left (their objects lived
/// in the test database, which fresh_db has just dropped).
fn drop_roles(c: &mut Client) {
    for r in ROLES {
        let exists: bool =
            c.query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&r]).unwrap().get(0);
        if exists {
            c.batch_execute(&format!("DROP OWNED BY {r}; DROP ROLE {r}")).unwrap();
        }
    }
}

/// Privileges, with roles `ops_priv_*` created here (and dropped at the end):
/// * (a) a role with SELECT on the source and the pairs reads through evaluate, query_vector
///   (both forms), pair_statistics and the served view exactly what the owner reads, but fit,
///   refit, materialize, drop_model_set and create_model_set on that table are 42501, and so are
///   reading the generation table directly (no grants) and writing through the view; nothing
///   changes;
/// * (b) a role owning its table (created by itself; it got CREATE on the schema) can
///   create_model_set / fit / materialize / refit / drop on it; after REVOKE UPDATE on its own
///   table it still materialises a new layout (the source is only read); after its CREATE on
///   the schema is revoked, materialize and refit of a new layout (a generation table to
///   create) are 42501 and nothing served changes;
/// * (c) a role without SELECT on the source (SELECT on the pairs only) gets 42501 from
///   evaluate, pair_statistics, query_vector(set, key) and reading the served view; with SELECT
///   on the key column only, still 42501; a later GRANT of the model columns opens the view at
///   once, and a REVOKE closes it again;
/// * (d) direct INSERT / UPDATE / DELETE on model_sets, generations, fits and jobs (0.3.1:
///   granted to PUBLIC under row security): a row of a model set whose source the role does not
///   own cannot be inserted (42501) and is not reached by UPDATE or DELETE (0 rows), for a reader
///   and for the owner of another table, who does update its own model set's row; SELECT is
///   allowed;
/// * (e) every catalog writer (0.3.1: SECURITY INVOKER, executable by PUBLIC, checking ownership
///   itself) called directly by a non-owner is 42501 and changes nothing (nor for the owner of
///   another table);
/// * (f) a superuser session after SET ROLE to a non-owner gets 42501 too (fit, refit,
///   materialize, a writer); after RESET ROLE the superuser can.
#[test]
fn privileges_owner_checks_reading_and_catalog_writers() {
    let db = "ops_privileges";
    let mut c = fresh_db(db);
    drop_roles(&mut c);
    let rows = setup_data(&mut c, 0x0995_0040, "src", 400, 800);
    c.batch_execute(
        "SELECT embedstack.create_model_set('pv', 'src', 'id', ARRAY['m1', 'm2', 'm3']);
         SELECT embedstack.fit('pv', 'pairs', 'a', 'b', 'y');
         CREATE ROLE ops_priv_reader LOGIN;
         CREATE ROLE ops_priv_owner LOGIN;
         CREATE ROLE ops_priv_nosel LOGIN;
         CREATE ROLE ops_priv_keyonly LOGIN;
         GRANT SELECT ON src, pairs TO ops_priv_reader, ops_priv_owner;
         GRANT SELECT ON pairs TO ops_priv_nosel, ops_priv_keyonly;
         GRANT SELECT (id) ON src TO ops_priv_keyonly;
         GRANT CREATE ON SCHEMA public TO ops_priv_owner;",
    )
    .unwrap();
    // A CALL that COMMITs must be a statement of its own (not in a multi-statement string).
    c.batch_execute("CALL embedstack.materialize('pv')").unwrap();
    type Reads = (String, Vec<f32>, Vec<f32>, Vec<f64>, BTreeMap<i32, Option<Vec<f32>>>);
    let reads = |c: &mut Client| -> Reads {
        let ev: String = c
            .query_one(
                "SELECT string_agg(format('%s %s %s %s', model, n, pearson, spearman), '; ' ORDER BY model)
                   FROM embedstack.evaluate('pv', 'pairs', 'a', 'b', 'y')",
                &[],
            )
            .unwrap()
            .get(0);
        let by_key: Vec<f32> =
            c.query_one("SELECT embedstack.query_vector('pv', 7)::real[]", &[]).unwrap().get(0);
        let by_vec: Vec<f32> = c
            .query_one(
                "SELECT embedstack.query_vector('pv', ARRAY[m1, m2, m3])::real[] FROM src WHERE id = 7",
                &[],
            )
            .unwrap()
            .get(0);
        let ps: Vec<f64> = c
            .query_one("SELECT embedstack.pair_statistics('pv', 'pairs', 'a', 'b', 'y')", &[])
            .unwrap()
            .get(0);
        (ev, by_key, by_vec, ps, served_by_id(c, "pv"))
    };
    let owner_reads = reads(&mut c);
    let fit_w: Vec<f64> = c
        .query_one(
            "SELECT f.weights FROM embedstack.fits f JOIN embedstack.model_sets m ON m.active_fit = f.id",
            &[],
        )
        .unwrap()
        .get(0);
    let want_q = combined(&rows[&7], &DIMS, &symmetric_multipliers(&fit_w, 0.05));
    for (g, w) in owner_reads.1.iter().zip(&want_q) {
        assert!((*g as f64 - w).abs() <= 1e-6, "query vector of row 7");
    }
    assert_eq!(owner_reads.4.len(), 400, "the view serves every row");
    let pv_gen = served_generation(&mut c, "pv").unwrap();
    let pv_table = pv_gen.relation.clone().unwrap();
    let cat0 = catalog_text(&mut c);

    // (a) A reader reads the same, changes nothing.
    let mut reader = connect(db, "ops_priv_reader");
    assert_eq!(reads(&mut reader), owner_reads, "a reader with SELECT reads what the owner reads");
    for sql in [
        "SELECT embedstack.fit('pv', 'pairs', 'a', 'b', 'y')".to_string(),
        refit_sql("pv", ""),
        refit_sql("pv", ", cutover => 'never'"),
        "CALL embedstack.materialize('pv')".into(),
        "SELECT embedstack.drop_model_set('pv')".into(),
        "SELECT embedstack.drop_model_set('pv', drop_columns => true)".into(),
        "SELECT embedstack.create_model_set('pv2', 'src', 'id', ARRAY['m1', 'm2'])".into(),
        format!("SELECT count(*) FROM {pv_table}"),
        format!("UPDATE {pv_table} SET pv_combined = NULL"),
        "INSERT INTO src_pv (id) VALUES (9999)".into(),
        "DELETE FROM src_pv".into(),
    ] {
        expect_code(&mut reader, &sql, "42501");
    }
    assert_eq!(catalog_text(&mut c), cat0, "refused calls change nothing");
    assert_eq!(served_by_id(&mut c, "pv"), owner_reads.4, "refused calls change nothing served");

    // (b) An owner of its own table can do everything on it, until it loses CREATE on the schema.
    let mut owner = connect(db, "ops_priv_owner");
    owner
        .batch_execute(
            "CREATE TABLE own_src AS SELECT id, m1, m2, m3 FROM src;
             ALTER TABLE own_src ADD PRIMARY KEY (id);
             SELECT embedstack.create_model_set('own', 'own_src', 'id', ARRAY['m1', 'm2', 'm3']);
             SELECT embedstack.fit('own', 'pairs', 'a', 'b', 'y');",
        )
        .unwrap();
    owner.batch_execute("CALL embedstack.materialize('own')").unwrap();
    owner.batch_execute(&refit_sql("own", ", cutover => 'always'")).unwrap();
    let j = latest_job(&mut owner, "own");
    assert_eq!((j.kind.as_str(), j.state.as_str()), ("refit", "succeeded"), "{j:?}");
    assert_eq!(status(&mut owner, "own").active_fit, j.fit_id);
    check_served_vectors(&mut owner, "own", "own_src", &rows, j.fit_id.unwrap());
    // The owner of another table cannot touch 'pv'.
    expect_code(&mut owner, "SELECT embedstack.fit('pv', 'pairs', 'a', 'b', 'y')", "42501");
    expect_code(&mut owner, "SELECT embedstack.drop_model_set('pv')", "42501");
    // Without UPDATE on its own table: a new layout is still materialised (the source is read).
    owner.batch_execute("REVOKE UPDATE ON own_src FROM ops_priv_owner").unwrap();
    let new_layout = |c: &mut Client, ridge: f64| -> i64 {
        let r = c
            .query_one(
                "SELECT id, weights FROM embedstack.fit('own', 'pairs', 'a', 'b', 'y', ridge => $1)",
                &[&ridge],
            )
            .unwrap();
        let w: Vec<f64> = r.get(1);
        let served: Vec<f64> = c
            .query_one("SELECT served_multipliers FROM embedstack.model_sets WHERE name = 'own'", &[])
            .unwrap()
            .get(0);
        assert!(
            symmetric_multipliers(&w, 0.05).iter().zip(&served).any(|(a, b)| (a - b).abs() > 1e-3),
            "test precondition: fit with ridge {ridge} has another layout than {served:?}"
        );
        r.get(0)
    };
    let f_ridge = new_layout(&mut owner, 1e6);
    let gen_before = served_generation(&mut owner, "own").unwrap().id;
    owner.batch_execute(&format!("CALL embedstack.materialize('own', {f_ridge})")).unwrap();
    assert!(served_generation(&mut owner, "own").unwrap().id > gen_before, "a new generation");
    check_served_vectors(&mut owner, "own", "own_src", &rows, f_ridge);
    // Without CREATE on the schema: no generation table can be created.
    c.batch_execute("REVOKE CREATE ON SCHEMA public FROM ops_priv_owner").unwrap();
    let before = served(&mut owner, "own", "own_src");
    let f_ols = new_layout(&mut owner, 0.0);
    for sql in
        [format!("CALL embedstack.materialize('own', {f_ols})"), refit_sql("own", ", cutover => 'always'")]
    {
        let e = expect_code(&mut owner, &sql, "42501");
        assert!(message(&e).contains("schema public"), "{sql}: {}", message(&e));
    }
    assert_eq!(served(&mut owner, "own", "own_src"), before);
    let cat_own = catalog_text(&mut c);

    // (c) No SELECT on the source (or on its key column only): reading vectors is 42501.
    for role in ["ops_priv_nosel", "ops_priv_keyonly"] {
        let mut r = connect(db, role);
        for sql in [
            "SELECT * FROM embedstack.evaluate('pv', 'pairs', 'a', 'b', 'y')",
            "SELECT embedstack.pair_statistics('pv', 'pairs', 'a', 'b', 'y')",
            "SELECT embedstack.query_vector('pv', 7)",
            "SELECT embedstack.query_vector('pv', 7::int)",
            "SELECT * FROM src_pv",
            "SELECT id FROM src_pv",
            "SELECT count(*) FROM src_pv",
        ] {
            expect_code(&mut r, sql, "42501");
        }
    }
    // The key column is readable for the key-only role (the grant works), its vectors are not.
    let mut k = connect(db, "ops_priv_keyonly");
    assert_eq!(k.query_one("SELECT count(id) FROM src", &[]).unwrap().get::<_, i64>(0), 400);
    expect_code(&mut k, "SELECT m1 FROM src LIMIT 1", "42501");
    // A later GRANT of the model columns opens the view at once; a REVOKE closes it.
    c.batch_execute("GRANT SELECT (m1, m2, m3) ON src TO ops_priv_keyonly").unwrap();
    assert_eq!(served_by_id(&mut k, "pv"), owner_reads.4, "the view after GRANT SELECT (m1, m2, m3)");
    c.batch_execute("REVOKE SELECT (m3) ON src FROM ops_priv_keyonly").unwrap();
    expect_code(&mut k, "SELECT id FROM src_pv", "42501");

    // (d) Direct writes to the catalog (0.3.1: PUBLIC may write it, under row security).
    let foreign_inserts = |set: &str, src: &str| -> Vec<String> {
        vec![
            format!(
                "INSERT INTO embedstack.model_sets (name, source, key_column, model_columns, model_dims, model_types, mode,
                     threshold, combined_column, storage, view_name)
                 VALUES ('forged', '{src}', 'id', '{{m1}}', '{{16}}', '{{vector}}', 'symmetric', 0, 'forged_c', 'auto',
                         'forged_v')"
            ),
            format!(
                "INSERT INTO embedstack.fits (model_set, options, weights, intercept, diagnostics, state, training_source)
                 VALUES ('{set}', '{{}}', '{{1,1,1}}', 0, '{{}}', '{{1}}', '{{}}')"
            ),
            format!(
                "INSERT INTO embedstack.jobs (model_set, kind, params, phase, state, pid)
                 VALUES ('{set}', 'refit', '{{}}', 'fit', 'running', 1)"
            ),
            format!(
                "INSERT INTO embedstack.generations (model_set, fit_id, multipliers, storage, width, state)
                 VALUES ('{set}', 1, '{{1,1,1}}', 'vector', 48, 'served')"
            ),
        ]
    };
    let foreign_changes = |not_mine: &str| -> Vec<String> {
        vec![
            format!("UPDATE embedstack.model_sets SET active_fit = NULL WHERE {not_mine}"),
            format!("UPDATE embedstack.model_sets SET threshold = 0.5 WHERE {not_mine}"),
            format!("DELETE FROM embedstack.model_sets WHERE {not_mine}"),
            format!(
                "UPDATE embedstack.fits SET weights = '{{9,9,9}}' WHERE model_set IS NULL OR {}",
                not_mine.replace("name", "model_set")
            ),
            format!(
                "DELETE FROM embedstack.fits WHERE model_set IS NULL OR {}",
                not_mine.replace("name", "model_set")
            ),
            format!(
                "UPDATE embedstack.generations SET state = 'retained' WHERE {}",
                not_mine.replace("name", "model_set")
            ),
            format!("DELETE FROM embedstack.generations WHERE {}", not_mine.replace("name", "model_set")),
            format!(
                "UPDATE embedstack.jobs SET state = 'failed' WHERE {}",
                not_mine.replace("name", "model_set")
            ),
            format!("DELETE FROM embedstack.jobs WHERE {}", not_mine.replace("name", "model_set")),
        ]
    };
    // The reader owns nothing: every row is another role's.
    let mut sqls = foreign_inserts("pv", "src");
    sqls.extend(foreign_inserts("own", "own_src"));
    for sql in &sqls {
        expect_code(&mut reader, sql, "42501");
    }
    for sql in foreign_changes("true") {
        let n = reader.execute(sql.as_str(), &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(n, 0, "the reader reached rows of another role's model set: {sql}");
    }
    // The owner of 'own' reaches none of 'pv''s rows, and updates its own.
    for sql in foreign_inserts("pv", "src") {
        expect_code(&mut owner, &sql, "42501");
    }
    for sql in foreign_changes("name <> 'own'") {
        let n = owner.execute(sql.as_str(), &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(n, 0, "the owner of another table reached rows of 'pv': {sql}");
    }
    let n = owner
        .execute("UPDATE embedstack.model_sets SET threshold = threshold WHERE name = 'own'", &[])
        .unwrap();
    assert_eq!(n, 1, "the owner writes its own model set's row");
    for who in [&mut reader, &mut owner] {
        let n: i64 = who.query_one("SELECT count(*) FROM embedstack.fits", &[]).unwrap().get(0);
        assert!(n > 0, "the catalog is readable");
    }
    assert_eq!(catalog_text(&mut c), cat_own);

    // (e) The catalog writers (SECURITY INVOKER since 0.3.1) called directly by a non-owner.
    let (pv_fit, pv_job): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT active_fit FROM embedstack.model_sets WHERE name = 'pv'),
                        (SELECT max(id) FROM embedstack.jobs WHERE model_set = 'pv')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let writers = [
        "SELECT embedstack._w_insert_model_set('forged', 'src', 'id', '{m1}', '{16}', '{vector}', 'symmetric', 0,
             'forged_c', 'auto', 'forged_v')"
            .to_string(),
        "SELECT embedstack._w_delete_model_set('pv')".into(),
        "SELECT embedstack._w_insert_fit('pv', '{}', '{1,1,1}', 0, '{}', '{1}', '{}')".into(),
        format!("SELECT embedstack._w_insert_generation('pv', {pv_fit}, '{{1,1,1}}', 'vector', 48)"),
        format!("SELECT embedstack._w_generation_set('pv', {}, NULL, NULL, '7', 7)", pv_gen.id),
        format!("SELECT embedstack._w_delete_generation('pv', {})", pv_gen.id),
        format!("SELECT embedstack._w_serve('pv', {pv_fit}, {})", pv_gen.id),
        "SELECT embedstack._w_job_start('pv', 'refit', '{}', 'fit', NULL)".into(),
        format!("SELECT embedstack._w_job_update({pv_job}, 'write', 5, 10)"),
        format!("SELECT embedstack._w_job_finish({pv_job}, 'failed', 'forged')"),
    ];
    for who in [&mut reader, &mut owner] {
        for sql in &writers {
            expect_code(who, sql, "42501");
        }
    }
    assert_eq!(catalog_text(&mut c), cat_own, "writers refused change nothing");

    // (f) SET ROLE inside a superuser session: the check uses the role set.
    let mut su = connect(db, "postgres");
    su.batch_execute("SET ROLE ops_priv_reader").unwrap();
    expect_code(&mut su, "SELECT embedstack.fit('pv', 'pairs', 'a', 'b', 'y')", "42501");
    expect_code(&mut su, &refit_sql("pv", ", cutover => 'never'"), "42501");
    expect_code(&mut su, "CALL embedstack.materialize('pv')", "42501");
    expect_code(&mut su, "SELECT embedstack._w_delete_model_set('pv')", "42501");
    expect_code(&mut su, &writers[2], "42501");
    assert_eq!(catalog_text(&mut c), cat_own);
    su.batch_execute("RESET ROLE").unwrap();
    su.batch_execute(&refit_sql("pv", ", cutover => 'never'")).unwrap();
    assert_eq!(latest_job(&mut su, "pv").state, "kept");

    drop((reader, owner, k, su));
    c.batch_execute("SELECT embedstack.drop_model_set('own', drop_columns => true)").unwrap();
    drop_roles(&mut c);
}

// ---------------------------------------------------------------------------------------
// 6. Injection through refit's arguments
// ---------------------------------------------------------------------------------------

/// refit with a pairs table named `we ird"t` and columns `le ft`, `x; DROP TABLE canary; --`
/// and `ta'rget`, on a model set named `x'); DROP TABLE canary; --`, works: the job cuts over,
/// its held-out count is the documented split computed here, its weights are the OLS solved
/// here on the other pairs. Hostile table / column names fail cleanly (42P01 / 42602 for the
/// table, 42703 for a column), and the canary table, the source and the pairs keep all their
/// rows.
#[test]
fn refit_injection_attempts_are_inert() {
    let mut c = fresh_db("ops_injection");
    let rows = setup_data(&mut c, 0x0995_0050, "src", 400, 900);
    let set = "x'); DROP TABLE canary; --";
    let (l, r, t) = ("le ft", "x; DROP TABLE canary; --", "ta'rget");
    c.batch_execute(&format!(
        "CREATE TABLE canary (x int); INSERT INTO canary VALUES (1), (2);
         CREATE TABLE \"we ird\"\"t\" ({} int, {} int, {} float8);
         INSERT INTO \"we ird\"\"t\" SELECT a, b, y FROM pairs;
         SELECT embedstack.create_model_set({}, 'src', 'id', ARRAY['m1', 'm2', 'm3']);",
        qi(l),
        qi(r),
        qi(t),
        q(set)
    ))
    .unwrap();
    let counts = |c: &mut Client| -> (i64, i64, i64) {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM canary), (SELECT count(*) FROM src), (SELECT count(*) FROM \"we ird\"\"t\")",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let start = counts(&mut c);
    assert_eq!(start, (2, 400, 900));

    let weird = q("\"we ird\"\"t\"");
    c.batch_execute(&format!("CALL embedstack.refit({}, {weird}, {}, {}, {})", q(set), q(l), q(r), q(t)))
        .unwrap();
    let j = latest_job(&mut c, set);
    assert_eq!(j.state, "succeeded", "{j:?}");
    assert_eq!(counts(&mut c), start);
    // The split and the fit, computed here.
    let split: Vec<(i32, i32, f64, bool)> = c
        .query(
            &format!(
                "SELECT p.{0}, p.{1}, p.{2}, {3} FROM \"we ird\"\"t\" p",
                qi(l),
                qi(r),
                qi(t),
                holdout_sql(&format!("p.{}", qi(l)), &format!("p.{}", qi(r)), 0.2)
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let held = split.iter().filter(|p| p.3).count();
    assert_eq!(j.details["holdout_pairs"].as_i64(), Some(held as i64));
    let train: Vec<&(i32, i32, f64, bool)> = split.iter().filter(|p| !p.3).collect();
    let x: Vec<Vec<f64>> = train.iter().map(|p| features(&rows, p.0, p.1)).collect();
    let y: Vec<f64> = train.iter().map(|p| p.2).collect();
    let (w_ols, _) = ols(&x, &y);
    let (w, _) = fit_row(&mut c, j.fit_id.unwrap());
    for k in 0..3 {
        assert!((w[k] - w_ols[k]).abs() <= 1e-7, "weight {k}: {} vs OLS {}", w[k], w_ols[k]);
    }
    let ts: String = c
        .query_one("SELECT training_source::text FROM embedstack.fits WHERE id = $1", &[&j.fit_id.unwrap()])
        .unwrap()
        .get(0);
    let ts: Value = serde_json::from_str(&ts).unwrap();
    assert_eq!(
        (ts["left"].as_str(), ts["right"].as_str(), ts["target"].as_str()),
        (Some(l), Some(r), Some(t))
    );
    assert_eq!(status(&mut c, set).active_fit, j.fit_id);
    let served = served_by_id(&mut c, set);
    assert_eq!(
        (view_name(&mut c, set), served.len(), served.values().all(|v| v.is_some())),
        (default_view_name("src", set), 400, true),
        "served through the view src_<set>"
    );

    // Hostile names that do not exist.
    let jobs = job_ids(&mut c, set);
    for (pairs, l2, r2, t2, sw, codes) in [
        ("x; DROP TABLE canary; --", "a", "b", "y", None, &["42602", "42P01"][..]),
        ("\"x; DROP TABLE canary; --\"", "a", "b", "y", None, &["42P01"][..]),
        ("pairs; DROP TABLE canary", "a", "b", "y", None, &["42602", "42P01"][..]),
        ("pairs", "a\"; DROP TABLE canary; --", "b", "y", None, &["42703"][..]),
        ("pairs", "a", "b) FROM pairs; DROP TABLE canary; --", "y", None, &["42703"][..]),
        ("pairs", "a", "b", "y'; DROP TABLE canary; --", None, &["42703"][..]),
        ("pairs", "a", "b", "y", Some("y); DROP TABLE canary; --"), &["42703"][..]),
        ("\"we ird\"\"t\"", "le ft", "x", "ta'rget", None, &["42703"][..]),
        ("\"we ird\"\"t\"", "\"le ft\"", r, t, None, &["42703"][..]),
    ] {
        let sql = format!(
            "CALL embedstack.refit({}, {}, {}, {}, {}, sample_weight_column => {})",
            q(set),
            q(pairs),
            q(l2),
            q(r2),
            q(t2),
            sw.map(q).unwrap_or_else(|| "NULL".into())
        );
        let e = expect_err(&mut c, &sql);
        let code = sqlstate(&e);
        assert!(codes.contains(&code.as_str()), "{sql}: {code} {}", message(&e));
        assert_eq!(counts(&mut c), start, "{sql}");
    }
    assert_eq!(job_ids(&mut c, set), jobs, "rejected calls record no job");
    assert!(c.query_one("SELECT to_regclass('canary') IS NOT NULL", &[]).unwrap().get::<_, bool>(0));
}
