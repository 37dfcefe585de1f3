//! Operations across the life of a database, against the real project cluster, with the 0.3.0
//! storage (docs/design.md §7: the served vectors live in generation tables read through one
//! view per model set; the source table is only read):
//!
//! 1. a refit scheduled with pg_cron (the README recipe, literally) runs in the real
//!    scheduler's background worker and cuts over; a run that finds the model set busy fails
//!    cleanly and changes nothing;
//! 2. `pg_dump -Fc` / `pg_restore` of a database with served model sets gives the same
//!    catalog (generations included), the same served views, generation tables, indexes,
//!    triggers and answers, a working refit and fit / generation id sequences that continue;
//! 3. `ALTER EXTENSION embedstack UPDATE` from releases 0.1.0 and 0.2.0 (through 0.2.1): each
//!    model set that served a column of its table serves the same vectors from its first
//!    generation through the view; the old column stays in the table, no row is rewritten; the
//!    statement-level freshness triggers replace the row trigger; a refit afterwards writes the
//!    next generation and never touches the source; no SECURITY DEFINER routine but the two
//!    look-ups of 0.3.1 is executable by PUBLIC; from 0.1.0 the extension then equals a fresh
//!    install; from 0.3.0 (0.3.1 is a security release) the served vectors stay, every served
//!    view gets the two-argument gate, and the extension equals a fresh install;
//! 4. after the upgrade, a non-superuser role that owns its table uses the extension end to
//!    end, and cannot touch a model set of a table it does not own.
//!
//! Expected combined vectors are computed here, in f64, from the raw data the test generated;
//! expected names from the documented naming rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use embedstack_client_tests::catalog::{active_fit, columns, fit, row_versions};
use embedstack_client_tests::check::assert_close_vec;
use embedstack_client_tests::data::{load_pairs, load_vectors, make_pairs, models_sql, vec_sql, Models, Rng};
use embedstack_client_tests::reference::{combined, symmetric_multipliers};
use embedstack_client_tests::served::relations_read_by_view;
use embedstack_client_tests::sql::{backend_pid, expect_code, message};
use embedstack_client_tests::{admin, config, connect_as, create_db, drop_db, fresh_db, pg_bin, port};
use postgres::{Client, NoTls};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Model dimensions of every table of this file: `m1 vector(8), m2 vector(12), m3 vector(4)`.
const DIMS: [usize; 3] = [8, 12, 4];

/// Runs a client tool against the project cluster; asserts exit code 0 and an empty stderr.
fn run_tool(tool: &str, args: &[&str]) -> String {
    let exe = pg_bin().join(tool);
    let p = port();
    let out = Command::new(&exe)
        .args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool} {args:?} failed ({}):\n{stderr}", out.status);
    assert!(stderr.trim().is_empty(), "{tool} {args:?} reported:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` rows with ids `1..=n`, every model present except a few NULLs.
fn make_rows(rng: &mut Rng, n: i32) -> BTreeMap<i32, Models> {
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=n {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    rows.get_mut(&7).unwrap()[0] = None;
    rows.get_mut(&11).unwrap()[2] = None;
    rows
}

/// Random pairs of distinct ids in `1..=` the last id, target `Σ coef_k cos_k` (missing
/// cosine = 0) plus small noise.
fn linear_pairs(
    rng: &mut Rng,
    rows: &BTreeMap<i32, Models>,
    n: usize,
    coef: [f64; 3],
) -> Vec<(i32, i32, f64)> {
    let hi = *rows.keys().last().unwrap();
    make_pairs(rng, rows, (1, hi), n, &|x, r| (0..3).map(|k| coef[k] * x[k]).sum::<f64>() + 0.01 * r.sym())
}

/// The standard data set of a test: `items` (2000 rows) and pairs `pairs` (target
/// `2·cos1 + cos2 + 0.5·cos3`) and `pairs2` (`cos1 + 2·cos2 + 0.3·cos3`), analysed.
fn load_items(c: &mut Client, seed: u64) -> BTreeMap<i32, Models> {
    let mut rng = Rng(seed);
    let rows = make_rows(&mut rng, 2000);
    load_vectors(c, "items", &DIMS, &rows, "");
    let p1 = linear_pairs(&mut rng, &rows, 3000, [2.0, 1.0, 0.5]);
    let p2 = linear_pairs(&mut rng, &rows, 3000, [1.0, 2.0, 0.3]);
    load_pairs(c, "pairs", &p1);
    load_pairs(c, "pairs2", &p2);
    c.batch_execute("ANALYZE").unwrap();
    rows
}

/// A model set as queries see it: its source, its served view (schema-qualified outside
/// public) and the view's vector column (the model set's combined column).
#[derive(Clone, Copy, Debug)]
struct Set<'a> {
    name: &'a str,
    schema: &'a str,
    source: &'a str,
    view: &'a str,
    col: &'a str,
}

impl Set<'_> {
    fn view_rel(&self) -> String {
        if self.schema == "public" {
            self.view.to_string()
        } else {
            format!("{}.{}", self.schema, self.view)
        }
    }
}

/// `sym` on `items` and `qw` (query-weighted, combined column `qw_vec`) on `app.docs`, with the
/// documented view names `<source table>_<model set>`.
const SYM: Set<'static> =
    Set { name: "sym", schema: "public", source: "items", view: "items_sym", col: "sym_combined" };
const QW: Set<'static> =
    Set { name: "qw", schema: "app", source: "app.docs", view: "docs_qw", col: "qw_vec" };

/// Where the vectors are read: 0.3.0's view (joined to the source), or a 0.1/0.2 release's
/// column of the source table.
#[derive(Clone, Copy, PartialEq, Debug)]
enum At {
    View,
    Column,
}

/// The served top-10 query of a model set (the README's query for 0.3.0).
fn knn_sql(s: Set, at: At, q: &Models) -> String {
    let qv = format!("embedstack.query_vector('{}', {})", s.name, models_sql(q));
    match at {
        At::View => format!(
            "SELECT t.id, (v.{col} <#> {qv})::float8 FROM {src} t JOIN {view} v USING (id) ORDER BY v.{col} <#> {qv} LIMIT 10",
            col = s.col,
            src = s.source,
            view = s.view_rel()
        ),
        At::Column => format!(
            "SELECT id, ({col} <#> {qv})::float8 FROM {src} ORDER BY {col} <#> {qv} LIMIT 10",
            col = s.col,
            src = s.source
        ),
    }
}

fn answers(c: &mut Client, sql: &str) -> Vec<(i32, f64)> {
    c.query(sql, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Top-10 `(id, inner-product distance)` for the query models, through the HNSW index with a
/// search list covering the whole table (so the answer is the exact one, and comparable
/// across databases whose index was built separately).
fn knn(c: &mut Client, s: Set, at: At, q: &Models) -> Vec<(i32, f64)> {
    c.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let r = answers(c, &knn_sql(s, at, q));
    c.batch_execute("RESET hnsw.ef_search").unwrap();
    r
}

/// The same top-10 without any index scan: the exact answer.
fn knn_exact(c: &mut Client, s: Set, at: At, q: &Models) -> Vec<(i32, f64)> {
    c.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off").unwrap();
    let r = answers(c, &knn_sql(s, at, q));
    c.batch_execute("RESET enable_indexscan; RESET enable_bitmapscan").unwrap();
    r
}

/// Asserts the served k-NN query plans as a scan of `index` with default settings.
fn assert_uses_index(c: &mut Client, s: Set, at: At, q: &Models, index: &str) {
    let plan: Vec<String> =
        c.query(&format!("EXPLAIN {}", knn_sql(s, at, q)), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(
        plan.iter().any(|l| l.contains(&format!("Index Scan using {index} "))),
        "the k-NN query of {} does not use {index}:\n{}",
        s.name,
        plan.join("\n")
    );
}

/// `id -> vector::text` of every key served (the vectors, exactly).
fn vectors_text(c: &mut Client, s: Set, at: At) -> BTreeMap<i32, Option<String>> {
    let rel = match at {
        At::View => s.view_rel(),
        At::Column => s.source.to_string(),
    };
    c.query(&format!("SELECT id, {}::text FROM {rel} ORDER BY id", s.col), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Query model vectors: some rows of the data, a fresh random one, one with a NULL model.
fn queries(rows: &BTreeMap<i32, Models>, seed: u64) -> Vec<Models> {
    let mut rng = Rng(seed);
    let mut qs: Vec<Models> = [1, 777, 1500].iter().filter_map(|id| rows.get(id).cloned()).collect();
    qs.push(DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    qs.push(vec![Some(rng.vec(DIMS[0])), None, Some(rng.vec(DIMS[2]))]);
    qs
}

/// Definition of an index by name (`None` when it does not exist).
fn index_def(c: &mut Client, schema: &str, index: &str) -> Option<String> {
    c.query_opt(
        "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'i'",
        &[&schema, &index],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// The extension's default (current) version, as installed.
fn current_version(c: &mut Client) -> String {
    c.query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'embedstack'", &[])
        .unwrap()
        .get(0)
}

fn installed_version(c: &mut Client) -> String {
    c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'embedstack'", &[]).unwrap().get(0)
}

/// The served index of a model set, as the catalog records it.
fn served_index(c: &mut Client, set: &str) -> String {
    c.query_one("SELECT served_index::text FROM embedstack.model_sets WHERE name = $1", &[&set])
        .unwrap()
        .get::<_, Option<String>>(0)
        .expect("a served index")
}

/// The served generation of a model set, as the catalog records it.
fn served_generation(c: &mut Client, set: &str) -> i64 {
    c.query_one("SELECT served_generation FROM embedstack.model_sets WHERE name = $1", &[&set])
        .unwrap()
        .get::<_, Option<i64>>(0)
        .expect("a served generation")
}

/// `_derived_name` of sql/model_sets.sql, computed here: `<base>_<tag>` when it fits in 63
/// bytes and no hash is asked for; else `<base cut> _ <8 hex digits of md5(hash_of or base)> _
/// <tag>` (the names here are ASCII).
fn derived_name(base: &str, tag: &str, hash_of: Option<&str>) -> String {
    if hash_of.is_none() && base.len() + 1 + tag.len() <= 63 {
        return format!("{base}_{tag}");
    }
    let h = format!("{:x}", md5::compute(hash_of.unwrap_or(base).as_bytes()));
    let suffix = format!("_{}_{tag}", &h[..8]);
    let keep = base.len().min(63 - suffix.len());
    format!("{}{suffix}", &base[..keep])
}

/// The documented name of generation `id`'s table: `<view>_g<id>`, hashed (with the view
/// name) when longer than 63 bytes; its index is `derived_name(<table>, "hnsw")`.
fn generation_table(view: &str, id: i64) -> String {
    let tag = format!("g{id}");
    let hash = view.len() + 1 + tag.len() > 63;
    derived_name(view, &tag, if hash { Some(view) } else { None })
}

/// The documented served view name: `<source table>_<model set>`, hashed when longer than 63
/// bytes.
fn view_name(table: &str, set: &str) -> String {
    let base = format!("{table}_{set}");
    if base.len() <= 63 {
        base
    } else {
        derived_name(&base, "served", Some(&format!("{table}.{set}")))
    }
}

/// The documented names of a model set's four statement-level freshness triggers (insert,
/// update, delete, truncate): `embedstack_<set>_ins` …, all hashed when the longest would not fit.
fn trigger_names(set: &str) -> Vec<String> {
    let base = format!("embedstack_{set}");
    let hashed = base.len() + "_trunc".len() > 63;
    ["ins", "upd", "del", "trunc"]
        .iter()
        .map(|t| derived_name(&base, t, if hashed { Some(&base) } else { None }))
        .collect()
}

/// `(name, definition)` of the non-internal triggers of a table, by name.
fn triggers(c: &mut Client, table: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT tgname::text, pg_get_triggerdef(oid) FROM pg_trigger
          WHERE tgrelid = $1::text::regclass AND NOT tgisinternal ORDER BY tgname",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Asserts the triggers of `table` are exactly the statement-level freshness triggers of
/// `sets` under their documented names, each an `AFTER <event> … FOR EACH STATEMENT` calling
/// `embedstack._refresh_generations('<set>')` (so no row trigger of 0.1/0.2 is left).
fn assert_statement_triggers(c: &mut Client, table: &str, sets: &[&str]) {
    let got = triggers(c, table);
    let mut want: Vec<(String, String)> = Vec::new();
    for set in sets {
        for (name, event) in trigger_names(set).into_iter().zip(["INSERT", "UPDATE", "DELETE", "TRUNCATE"]) {
            want.push((name, format!("{event}|{set}")));
        }
    }
    want.sort();
    let names: Vec<&String> = got.iter().map(|(n, _)| n).collect();
    let want_names: Vec<&String> = want.iter().map(|(n, _)| n).collect();
    assert_eq!(names, want_names, "triggers on {table}: {got:#?}");
    for ((name, def), (_, ev_set)) in got.iter().zip(&want) {
        let (event, set) = ev_set.split_once('|').unwrap();
        assert!(
            def.contains(&format!("AFTER {event} ON "))
                && def.contains("FOR EACH STATEMENT EXECUTE FUNCTION embedstack._refresh_generations(")
                && def.ends_with(&format!("('{set}')")),
            "trigger {name} on {table}: {def}"
        );
    }
}

/// Inserts a row and checks the freshness trigger served its combined vector through the view:
/// the served multipliers of the active fit (symmetric: `sqrt(w_k / w_max)` above the
/// threshold, checked here; query-weighted: 1) applied to the unit blocks.
fn check_trigger_on_insert(c: &mut Client, table: &str, set: &str, id: i32, rng: &mut Rng) {
    let m: Models = DIMS.iter().map(|&d| Some(rng.vec(d))).collect();
    let vals: Vec<String> = m.iter().map(vec_sql).collect();
    c.batch_execute(&format!("INSERT INTO {table} (id, m1, m2, m3) VALUES ({id}, {})", vals.join(", ")))
        .unwrap();
    let r = c
        .query_one(
            "SELECT m.mode, m.threshold, m.combined_column::text, format('%I.%I', n.nspname, m.view_name),
                    m.served_multipliers, f.weights
               FROM embedstack.model_sets m JOIN embedstack.fits f ON f.id = m.active_fit
               JOIN pg_class s ON s.oid = m.source JOIN pg_namespace n ON n.oid = s.relnamespace
              WHERE m.name = $1",
            &[&set],
        )
        .unwrap();
    let (mode, threshold, column, view, served, w): (String, f64, String, String, Vec<f64>, Vec<f64>) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    let mult = if mode == "symmetric" { symmetric_multipliers(&w, threshold) } else { vec![1.0; 3] };
    for k in 0..3 {
        assert!((served[k] - mult[k]).abs() <= 1e-12, "{set}: served multipliers {served:?}, want {mult:?}");
    }
    let got: Option<Vec<f32>> = c
        .query_opt(&format!("SELECT {column}::real[] FROM {view} WHERE id = {id}"), &[])
        .unwrap()
        .unwrap_or_else(|| {
            panic!("{set}: the inserted row {id} is not in the view {view} (trigger missing?)")
        })
        .get(0);
    let got = got.unwrap_or_else(|| panic!("{set}: the inserted row {id} has no combined vector"));
    assert_close_vec(&got, &combined(&m, &DIMS, &mult), 1e-6, &format!("{set}: inserted row {id}"));
}

/// One row of `embedstack.status`.
#[derive(Debug, Clone, PartialEq)]
struct StatusSummary {
    active_fit: Option<i64>,
    job_id: Option<i64>,
    job_kind: Option<String>,
    job_state: Option<String>,
    job_fit: Option<i64>,
    outcome: Option<String>,
    last_error: Option<String>,
    served_generation: Option<i64>,
    previous_generation: Option<i64>,
}

fn status_summary(c: &mut Client, set: &str) -> StatusSummary {
    let r = c
        .query_one(
            "SELECT active_fit, job_id, job_kind, job_state, job_fit, outcome, last_error, served_generation,
                    previous_generation
               FROM embedstack.status WHERE model_set = $1",
            &[&set],
        )
        .unwrap();
    StatusSummary {
        active_fit: r.get(0),
        job_id: r.get(1),
        job_kind: r.get(2),
        job_state: r.get(3),
        job_fit: r.get(4),
        outcome: r.get(5),
        last_error: r.get(6),
        served_generation: r.get(7),
        previous_generation: r.get(8),
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
    state: String,
}

fn generations(c: &mut Client, set: &str) -> Vec<Gen> {
    c.query(
        "SELECT id, relation::text, index_name::text, fit_id, multipliers, storage, state
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
        state: r.get(6),
    })
    .collect()
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

/// The source as it is: pg_attribute rows and every row's `(id, ctid, xmin)`.
type SourceState = (Vec<String>, Vec<(i32, String, String)>);

fn source_state(c: &mut Client, table: &str) -> SourceState {
    (attributes(c, table), row_versions(c, table))
}

/// 0.3.1: no routine of the extension runs as its owner on a caller's behalf, except two
/// look-ups: the SECURITY DEFINER routines PUBLIC may execute are exactly
/// `_model_set_exists(text)` and `_served_columns(text, regclass)` (the event trigger's function,
/// the third, is not executable by PUBLIC), each with a pinned search_path; the catalog writers
/// (`embedstack._w_*`, at least 10) are SECURITY INVOKER; 0.3.0's write gate `_write` is gone.
fn assert_no_public_definer(c: &mut Client) {
    let definers: Vec<(String, bool, Option<Vec<String>>)> = c
        .query(
            "SELECT p.oid::regprocedure::text, has_function_privilege('public', p.oid, 'EXECUTE'), p.proconfig
               FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace AND p.prosecdef ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let public: Vec<&str> = definers.iter().filter(|d| d.1).map(|d| d.0.as_str()).collect();
    assert_eq!(
        public,
        ["embedstack._model_set_exists(text)", "embedstack._served_columns(text,regclass)"],
        "SECURITY DEFINER routines executable by PUBLIC: {definers:?}"
    );
    for (f, _, config) in &definers {
        assert!(
            config.as_ref().is_some_and(|c| c.iter().any(|s| s == "search_path=pg_catalog, pg_temp")),
            "{f} is SECURITY DEFINER without a pinned search_path: {config:?}"
        );
    }
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE p.prosecdef),
                    (SELECT count(*) FROM pg_proc w WHERE w.pronamespace = 'embedstack'::regnamespace AND w.proname = '_write')
               FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace AND p.proname LIKE '\\_w\\_%'",
            &[],
        )
        .unwrap();
    let (n, definer, write): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert!(n >= 10, "{n} catalog writers");
    assert_eq!(definer, 0, "SECURITY DEFINER catalog writers");
    assert_eq!(write, 0, "0.3.0's embedstack._write still exists");
}

/// What a 0.1/0.2 release served for a model set (a column of its source): the vectors and the
/// k-NN answers (equal to exact search).
#[derive(Debug, Clone, PartialEq)]
struct ColumnServed {
    vectors: BTreeMap<i32, Option<String>>,
    knn: Vec<Vec<(i32, f64)>>,
}

fn column_served(c: &mut Client, s: Set, rows: &BTreeMap<i32, Models>, seed: u64) -> ColumnServed {
    let mut knn_all = Vec::new();
    for q in queries(rows, seed) {
        let got = knn(c, s, At::Column, &q);
        assert_eq!(got, knn_exact(c, s, At::Column, &q), "{}: HNSW vs exact (column)", s.name);
        knn_all.push(got);
    }
    ColumnServed { vectors: vectors_text(c, s, At::Column), knn: knn_all }
}

/// After an upgrade from a release that served columns: the model set serves, from its one
/// generation, exactly what the column served (same vectors for every key, same answers through
/// the view, equal to exact search, through the generation's index): returns the generation.
/// Checks the generation's catalog row (served, the active fit and served layout, the documented
/// table and index names `<view>_g<id>`, `<table>_hnsw`, hashed when long), the view (documented name, reads
/// that generation only) and the model set's catalog row.
fn assert_upgraded_set(
    c: &mut Client,
    s: Set,
    before: &ColumnServed,
    rows: &BTreeMap<i32, Models>,
    seed: u64,
) -> i64 {
    let r = c
        .query_one(
            "SELECT view_name::text, active_fit, served_multipliers, served_storage, served_generation, served_index::text
               FROM embedstack.model_sets WHERE name = $1",
            &[&s.name],
        )
        .unwrap();
    let view: String = r.get(0);
    let fit_id: Option<i64> = r.get(1);
    let mult: Option<Vec<f64>> = r.get(2);
    let storage: Option<String> = r.get(3);
    let gen: Option<i64> = r.get(4);
    let served_idx: Option<String> = r.get(5);
    assert_eq!(view, s.view, "{}: the documented view name", s.name);
    let gens = generations(c, s.name);
    assert_eq!(gens.len(), 1, "{}: one generation after the upgrade: {gens:?}", s.name);
    let g = &gens[0];
    let table = generation_table(s.view, g.id);
    let index = derived_name(&table, "hnsw", None);
    let rel = if s.schema == "public" { table.clone() } else { format!("{}.{table}", s.schema) };
    assert_eq!(
        (
            g.state.as_str(),
            Some(g.fit_id),
            Some(&g.multipliers),
            Some(&g.storage),
            g.relation.as_deref(),
            g.index_name.as_deref()
        ),
        ("served", fit_id, mult.as_ref(), storage.as_ref(), Some(rel.as_str()), Some(index.as_str())),
        "{}: the generation made by the upgrade: {g:?}",
        s.name
    );
    assert_eq!((gen, served_idx.as_deref()), (Some(g.id), Some(index.as_str())), "{}", s.name);
    assert_eq!(
        relations_read_by_view(c, &s.view_rel()),
        vec![rel.clone()],
        "{}: the view reads its generation",
        s.name
    );
    assert!(
        vectors_text(c, s, At::View) == before.vectors,
        "{}: the view does not serve the vectors the column served",
        s.name
    );
    for (i, q) in queries(rows, seed).iter().enumerate() {
        let got = knn(c, s, At::View, q);
        assert_eq!(got, before.knn[i], "{}: k-NN answer {i} through the view vs the column's", s.name);
        assert_eq!(got, knn_exact(c, s, At::View, q), "{}: HNSW vs exact (view)", s.name);
        assert_uses_index(c, s, At::View, q, &index);
    }
    g.id
}

/// Every object of the extension with a hash of what defines it (/tmp/extobjs.sql).
const EXTOBJS_SQL: &str = r#"
WITH objs AS (
  SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'embedstack' AND d.deptype = 'e')
SELECT pg_describe_object(o.classid, o.objid, 0) AS object,
       md5(coalesce(CASE o.classid
         WHEN 'pg_proc'::regclass THEN (SELECT concat_ws('|', p.prokind, p.prosrc, p.probin, pg_get_function_arguments(p.oid),
                 pg_get_function_result(p.oid), p.provolatile, p.proisstrict, p.proparallel, p.prosecdef,
                 p.proconfig::text, p.proacl::text, p.procost, p.prorows) FROM pg_proc p WHERE p.oid = o.objid)
         WHEN 'pg_class'::regclass THEN (SELECT concat_ws('|', c.relkind, c.relacl::text, c.reloptions::text,
                 CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
                 CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END,
                 (SELECT string_agg(concat_ws(':', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                          pg_get_expr(ad.adbin, ad.adrelid), col_description(c.oid, a.attnum)), ',' ORDER BY a.attnum)
                    FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                 (SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = c.oid))
               FROM pg_class c WHERE c.oid = o.objid)
         WHEN 'pg_type'::regclass THEN (SELECT format_type(o.objid, NULL))
         ELSE '' END, '') || '|' || coalesce(obj_description(o.objid, o.classid::regclass::name), '')) AS definition
  FROM objs o
 ORDER BY 1
"#;

/// More of what defines each object of the extension than the list above hashes: the whole
/// function definitions (`pg_get_functiondef`) and the aggregates' support functions, sequence
/// parameters and ownership, constraint names, triggers, indexes and rules of the tables and
/// views, column privileges, the attributes of composite types.
const EXTDETAIL_SQL: &str = r#"
WITH objs AS (
  SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'embedstack' AND d.deptype = 'e')
SELECT 'detail ' || pg_describe_object(o.classid, o.objid, 0) AS object,
       md5(coalesce(CASE o.classid
         WHEN 'pg_proc'::regclass THEN (SELECT concat_ws('|', CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,
                 p.proleakproof, p.prosupport::text, p.provariadic::regtype::text,
                 (SELECT concat_ws(',', a.aggkind, a.aggnumdirectargs, a.aggtransfn::text, a.aggfinalfn::text, a.aggcombinefn::text,
                         a.aggserialfn::text, a.aggdeserialfn::text, a.aggmtransfn::text, a.aggminvtransfn::text, a.aggmfinalfn::text,
                         a.aggfinalextra, a.aggmfinalextra, a.aggfinalmodify, a.aggmfinalmodify, a.aggsortop::regoper::text,
                         a.aggtranstype::regtype::text, a.aggtransspace, a.aggmtranstype::regtype::text, a.agginitval, a.aggminitval)
                    FROM pg_aggregate a WHERE a.aggfnoid = p.oid))
               FROM pg_proc p WHERE p.oid = o.objid)
         WHEN 'pg_class'::regclass THEN (SELECT concat_ws('|', c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
                 c.relhasrules, c.relispartition,
                 (SELECT concat_ws(',', s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
                    FROM pg_sequence s WHERE s.seqrelid = c.oid),
                 (SELECT string_agg(x.d, ',' ORDER BY x.d) FROM (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ':' || d.deptype::text AS d
                    FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) x),
                 (SELECT string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL),
                 (SELECT string_agg(k.conname || '=' || pg_get_constraintdef(k.oid), ',' ORDER BY k.conname)
                    FROM pg_constraint k WHERE k.conrelid = c.oid),
                 (SELECT string_agg(pg_get_triggerdef(t.oid), ',' ORDER BY t.tgname)
                    FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
                 (SELECT string_agg(x.d, ',' ORDER BY x.d) FROM (SELECT pg_get_indexdef(i.indexrelid) AS d
                    FROM pg_index i WHERE i.indrelid = c.oid) x),
                 (SELECT string_agg(r.rulename || '=' || pg_get_ruledef(r.oid), ',' ORDER BY r.rulename)
                    FROM pg_rewrite r WHERE r.ev_class = c.oid),
                 (SELECT string_agg(pl.polname, ',' ORDER BY pl.polname) FROM pg_policy pl WHERE pl.polrelid = c.oid))
               FROM pg_class c WHERE c.oid = o.objid)
         WHEN 'pg_type'::regclass THEN (SELECT concat_ws('|', t.typtype, t.typacl::text,
                 (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
               FROM pg_type t WHERE t.oid = o.objid)
         ELSE '' END, '')) AS definition
  FROM objs o
 ORDER BY 1
"#;

/// What else an install leaves that the object lists do not cover: the extension's
/// configuration tables and their conditions, the schema's privileges, the initial privileges
/// pg_dump compares with (pg_init_privs), the extension's version, and everything in the
/// schema (members or not) with its owner.
const EXTMETA_SQL: &str = r#"
SELECT 'extconfig', (SELECT e.extconfig::regclass[]::text || ' ' || coalesce(e.extcondition::text, '')
                       FROM pg_extension e WHERE e.extname = 'embedstack')
UNION ALL
SELECT 'schema acl', (SELECT n.nspacl::text FROM pg_namespace n WHERE n.nspname = 'embedstack')
UNION ALL
SELECT 'init privs ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid), ip.privtype::text || ' ' || ip.initprivs::text
  FROM pg_init_privs ip
 WHERE EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                WHERE e.extname = 'embedstack' AND d.deptype = 'e' AND d.classid = ip.classoid AND d.objid = ip.objoid)
    OR (ip.classoid = 'pg_namespace'::regclass AND ip.objoid = 'embedstack'::regnamespace)
UNION ALL
SELECT 'version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'embedstack')
UNION ALL
SELECT 'in schema embedstack: ' || x.what, x.how FROM (
    SELECT 'relation ' || c.relname || ' (' || c.relkind::text || ')' AS what, c.relowner::regrole::text AS how
      FROM pg_class c WHERE c.relnamespace = 'embedstack'::regnamespace
    UNION ALL
    SELECT 'routine ' || p.oid::regprocedure::text, p.proowner::regrole::text
      FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
    UNION ALL
    SELECT 'type ' || t.typname, t.typowner::regrole::text
      FROM pg_type t WHERE t.typnamespace = 'embedstack'::regnamespace) x
ORDER BY 1
"#;

/// `name -> value` rows of a two-column query (names must be unique).
fn rows2(c: &mut Client, sql: &str) -> BTreeMap<String, String> {
    let rows = c.query(sql, &[]).unwrap();
    let map: BTreeMap<String, String> =
        rows.iter().map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default())).collect();
    assert_eq!(map.len(), rows.len(), "duplicate object names");
    map
}

/// Differences between two `object -> definition` maps, one line each.
fn diff_maps(
    a_name: &str,
    a: &BTreeMap<String, String>,
    b_name: &str,
    b: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in {a_name}: {k} = {v}")),
            Some(w) if w != v => out.push(format!("differs: {k}: {a_name} {v} / {b_name} {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("only in {b_name}: {k} = {v}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. pg_cron
// ---------------------------------------------------------------------------------------

/// Unschedules every pg_cron job named `name` (leftovers of an earlier run included).
fn unschedule_by_name(a: &mut Client, name: &str) {
    a.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[&name]).unwrap();
}

/// Unschedules the test's job however the test ends.
struct CronGuard(String);

impl Drop for CronGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = config("postgres", "postgres").connect(NoTls) {
            let _ = a.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[&self.0]);
        }
    }
}

#[derive(Debug)]
struct CronRun {
    runid: i64,
    status: String,
    message: Option<String>,
    start: Option<f64>,
}

/// The job's runs (start time as epoch seconds of the server clock).
fn cron_runs(a: &mut Client, jobid: i64) -> Vec<CronRun> {
    a.query(
        "SELECT runid, status, return_message, extract(epoch FROM start_time)::float8
           FROM cron.job_run_details WHERE jobid = $1 ORDER BY runid",
        &[&jobid],
    )
    .unwrap()
    .iter()
    .map(|r| CronRun { runid: r.get(0), status: r.get(1), message: r.get(2), start: r.get(3) })
    .collect()
}

/// The refit recipe of the README, scheduled in the real pg_cron scheduler:
/// * with a first fit served, `cron.schedule_in_database(...)` of
///   `CALL embedstack.refit(..., cutover => 'always')` runs at the next minute boundary in a
///   background worker (`cron.job_run_details` says succeeded, for the test database, as
///   postgres) and cuts over: `embedstack.status` shows a succeeded refit job, run by another
///   backend, whose fit (a new one, trained on the non-held-out pairs) is the active fit, and
///   the served view (a new generation and its index) answers with it; the source table is
///   unchanged (pg_attribute rows, every row's ctid/xmin);
/// * a scheduled run that finds the model set busy (its job lock held by another session,
///   taken here with `pg_advisory_lock(1701667443, hashtext(set))`, the documented lock tag)
///   fails in `cron.job_run_details` with the 55P03 message naming the holder's pid, and
///   changes nothing: same active fit, no new job;
/// * the job is unscheduled at the end (and at the start, and on panic).
#[test]
fn pg_cron_runs_the_scheduled_refit() {
    let t0 = Instant::now();
    let db = "es_life_cron";
    let set = "cs";
    let job_name = format!("embedstack-refit-{db}");
    let mut a = admin();
    a.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    unschedule_by_name(&mut a, &job_name);
    let _guard = CronGuard(job_name.clone());

    let mut c = fresh_db("life_cron");
    let rows = load_items(&mut c, 0x11FE_0001);
    c.batch_execute(&format!(
        "SELECT embedstack.create_model_set('{set}', 'items', 'id', ARRAY['m1', 'm2', 'm3'])"
    ))
    .unwrap();
    let (f1, _) = fit(&mut c, set, "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('{set}', {f1})")).unwrap();
    assert_eq!(active_fit(&mut c, set), Some(f1));
    let first_gen = served_generation(&mut c, set);
    let items_before = source_state(&mut c, "items");
    let first_job = status_summary(&mut c, set).job_id.expect("materialize records a job");
    let my_pid = backend_pid(&mut c);

    // The recipe, literally.
    let recipe = format!(
        "SELECT cron.schedule_in_database('{job_name}', '* * * * *', $$CALL embedstack.refit('{set}', 'pairs', 'a', 'b', 'y', cutover => 'always')$$, '{db}')"
    );
    let jobid: i64 = a.query_one(&recipe, &[]).unwrap().get(0);
    let (jdb, juser, jcmd): (String, String, String) = {
        let r = a
            .query_one("SELECT database, username, command FROM cron.job WHERE jobid = $1", &[&jobid])
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((jdb.as_str(), juser.as_str()), (db, "postgres"));
    assert_eq!(jcmd, format!("CALL embedstack.refit('{set}', 'pairs', 'a', 'b', 'y', cutover => 'always')"));
    eprintln!(
        "cron: scheduled job {jobid} at {:.1}s; waiting for the next minute boundary",
        t0.elapsed().as_secs_f64()
    );

    // Wait for a succeeded run and the cut-over it made.
    let deadline = Instant::now() + Duration::from_secs(150);
    let run = loop {
        let runs = cron_runs(&mut a, jobid);
        if let Some(bad) = runs.iter().find(|r| r.status == "failed") {
            panic!("the scheduled refit failed: {bad:?}\nstatus: {:?}", status_summary(&mut c, set));
        }
        let st = status_summary(&mut c, set);
        if let Some(ok) = runs.iter().find(|r| r.status == "succeeded") {
            if st.job_kind.as_deref() == Some("refit") && st.job_state.as_deref() == Some("succeeded") {
                break ok.runid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no succeeded scheduled refit within 150 s: runs {runs:?}, status {st:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    // From here on another session holds the model set's job lock, so the next scheduled runs
    // (every minute) cannot change what the checks below look at; they must fail as busy.
    let mut holder = connect_as(db, "postgres");
    let holder_pid = backend_pid(&mut holder);
    holder.batch_execute(&format!("SELECT pg_advisory_lock(1701667443, hashtext('{set}'))")).unwrap();
    let locked_at: f64 =
        holder.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]).unwrap().get(0);
    let st = status_summary(&mut c, set);
    eprintln!("cron: run {run} succeeded, checked at {:.1}s: {st:?}", t0.elapsed().as_secs_f64());
    assert_eq!(
        (st.job_kind.as_deref(), st.job_state.as_deref()),
        (Some("refit"), Some("succeeded")),
        "{st:?}"
    );
    let f_new = st.job_fit.expect("the refit job names its fit");
    assert_ne!(f_new, f1, "the scheduled refit must make a new fit");
    assert!(f_new > f1);
    assert_eq!(st.active_fit, Some(f_new), "cutover => 'always' serves the new fit");
    assert!(st.job_id.unwrap() > first_job);
    assert_eq!(st.last_error, None);
    let (job_pid, split, kind): (i32, Option<String>, String) = {
        let r = c
            .query_one(
                "SELECT j.pid, f.training_source->>'split', j.kind FROM embedstack.jobs j
                   JOIN embedstack.fits f ON f.id = j.fit_id WHERE j.id = $1",
                &[&st.job_id.unwrap()],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_ne!(job_pid, my_pid, "the refit ran in the cron worker, not in the test's session");
    assert_eq!((kind.as_str(), split.as_deref()), ("refit", Some("train")));
    let (srv_fit, srv_index, srv_gen): (Option<i64>, Option<String>, Option<i64>) = {
        let r = c
            .query_one(
                "SELECT active_fit, served_index::text, served_generation FROM embedstack.model_sets WHERE name = $1",
                &[&set],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(srv_fit, Some(f_new));
    let job_gen: Option<i64> = c
        .query_one("SELECT generation FROM embedstack.jobs WHERE id = $1", &[&st.job_id.unwrap()])
        .unwrap()
        .get(0);
    let gen = srv_gen.expect("served generation");
    assert_eq!(job_gen, Some(gen), "the refit's generation is served");
    assert!(gen > first_gen, "a new generation: {gen} after {first_gen}");
    let idx = srv_index.expect("served index");
    assert_eq!(idx, format!("items_cs_g{gen}_hnsw"));
    assert!(source_state(&mut c, "items") == items_before, "the scheduled refit changed the source table");
    let cs = Set { name: set, schema: "public", source: "items", view: "items_cs", col: "cs_combined" };
    for q in queries(&rows, 0x11FE_0002) {
        assert_eq!(knn(&mut c, cs, At::View, &q), knn_exact(&mut c, cs, At::View, &q));
        assert_uses_index(&mut c, cs, At::View, &q, &idx);
    }
    check_trigger_on_insert(&mut c, "items", set, 5001, &mut Rng(0x11FE_0003));

    // A run that finds the model set busy fails cleanly and changes nothing.
    let before = status_summary(&mut c, set);
    assert_eq!(before.job_state.as_deref(), Some("succeeded"));
    let deadline = Instant::now() + Duration::from_secs(150);
    let busy = loop {
        let runs = cron_runs(&mut a, jobid);
        if let Some(r) = runs.iter().find(|r| {
            r.start.is_some_and(|s| s > locked_at) && (r.status == "failed" || r.status == "succeeded")
        }) {
            break CronRun {
                runid: r.runid,
                status: r.status.clone(),
                message: r.message.clone(),
                start: r.start,
            };
        }
        assert!(Instant::now() < deadline, "no scheduled run after the lock within 150 s: {runs:?}");
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("cron: run {} with the lock held: {busy:?} at {:.1}s", busy.runid, t0.elapsed().as_secs_f64());
    assert_eq!(
        busy.status, "failed",
        "a refit must not run while another session holds the model set: {busy:?}"
    );
    let msg = busy.message.unwrap_or_default();
    assert!(
        msg.contains(&format!("model set \"{set}\" is busy")) && msg.contains(&format!("(pid {holder_pid})")),
        "{msg}"
    );
    let after = status_summary(&mut c, set);
    assert_eq!(after.active_fit, before.active_fit);
    assert_eq!(after.job_id, before.job_id, "a busy refit records no job");
    assert_eq!(after.job_state.as_deref(), Some("succeeded"));
    holder.batch_execute(&format!("SELECT pg_advisory_unlock(1701667443, hashtext('{set}'))")).unwrap();

    unschedule_by_name(&mut a, &job_name);
    let left: i64 =
        a.query_one("SELECT count(*) FROM cron.job WHERE jobname = $1", &[&job_name]).unwrap().get(0);
    assert_eq!(left, 0);
    eprintln!("cron: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 2. pg_dump / pg_restore
// ---------------------------------------------------------------------------------------

/// Every row of `embedstack.model_sets`, `embedstack.fits` and `embedstack.generations`, all
/// columns as text.
fn catalog(c: &mut Client) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut rows =
        |sql: &str| -> Vec<String> { c.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect() };
    (
        rows("SELECT m::text FROM embedstack.model_sets m ORDER BY name"),
        rows("SELECT f::text FROM embedstack.fits f ORDER BY id"),
        rows("SELECT g::text FROM embedstack.generations g ORDER BY id"),
    )
}

/// Everything a served database answers, for comparing two databases.
#[derive(Debug, Clone, PartialEq)]
struct ServedDb {
    catalog: (Vec<String>, Vec<String>, Vec<String>),
    sym_vectors: BTreeMap<i32, Option<String>>,
    qw_vectors: BTreeMap<i32, Option<String>>,
    sym_knn: Vec<Vec<(i32, f64)>>,
    qw_knn: Vec<Vec<(i32, f64)>>,
    sym_index: Option<String>,
    qw_index: Option<String>,
    sym_view: Option<String>,
    qw_view: Option<String>,
    /// `(generation table, its rows as text)` of every generation.
    generation_rows: Vec<(String, Vec<String>)>,
    items_triggers: Vec<(String, String)>,
    docs_triggers: Vec<(String, String)>,
    fits_seq: (i64, bool),
    generations_seq: (i64, bool),
}

fn served_db(c: &mut Client, items: &BTreeMap<i32, Models>, docs: &BTreeMap<i32, Models>) -> ServedDb {
    let mut knns = Vec::new();
    for (s, rows, seed) in [(SYM, items, 0xD0_0001), (QW, docs, 0xD0_0002)] {
        let idx = served_index(c, s.name);
        let mut all = Vec::new();
        for q in queries(rows, seed) {
            let got = knn(c, s, At::View, &q);
            assert_eq!(got, knn_exact(c, s, At::View, &q), "{}: HNSW vs exact", s.name);
            assert_eq!(got.len(), 10);
            assert_uses_index(c, s, At::View, &q, &idx);
            all.push(got);
        }
        knns.push(all);
    }
    let qw_knn = knns.pop().unwrap();
    let sym_knn = knns.pop().unwrap();
    let seq = |c: &mut Client, s: &str| -> (i64, bool) {
        let r = c.query_one(&format!("SELECT last_value, is_called FROM embedstack.{s}"), &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let viewdef = |c: &mut Client, v: &str| -> Option<String> {
        c.query_one("SELECT pg_get_viewdef(to_regclass($1))", &[&v]).unwrap().get(0)
    };
    let gen_tables: Vec<String> = c
        .query("SELECT relation::text FROM embedstack.generations ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let generation_rows = gen_tables
        .into_iter()
        .map(|t| {
            let rows: Vec<String> = c
                .query(&format!("SELECT g::text FROM {t} g ORDER BY 1"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (t, rows)
        })
        .collect();
    ServedDb {
        catalog: catalog(c),
        sym_vectors: vectors_text(c, SYM, At::View),
        qw_vectors: vectors_text(c, QW, At::View),
        sym_knn,
        qw_knn,
        sym_index: {
            let idx = served_index(c, "sym");
            index_def(c, "public", &idx)
        },
        qw_index: {
            let idx = served_index(c, "qw");
            index_def(c, "app", &idx)
        },
        sym_view: viewdef(c, &SYM.view_rel()),
        qw_view: viewdef(c, &QW.view_rel()),
        generation_rows,
        items_triggers: triggers(c, "items"),
        docs_triggers: triggers(c, "app.docs"),
        fits_seq: seq(c, "fits_id_seq"),
        generations_seq: seq(c, "generations_id_seq"),
    }
}

/// Asserts two `ServedDb` are equal, naming the first differing part.
fn assert_same_served(a: &ServedDb, b: &ServedDb, what: &str) {
    assert_eq!(a.catalog.0, b.catalog.0, "{what}: embedstack.model_sets rows");
    assert_eq!(a.catalog.1, b.catalog.1, "{what}: embedstack.fits rows");
    assert_eq!(a.catalog.2, b.catalog.2, "{what}: embedstack.generations rows");
    assert!(a.sym_vectors == b.sym_vectors, "{what}: vectors served by items_sym differ");
    assert!(a.qw_vectors == b.qw_vectors, "{what}: vectors served by app.docs_qw differ");
    assert!(a.generation_rows == b.generation_rows, "{what}: rows of the generation tables differ");
    assert_eq!(a.sym_knn, b.sym_knn, "{what}: sym k-NN answers");
    assert_eq!(a.qw_knn, b.qw_knn, "{what}: qw k-NN answers");
    assert_eq!(a.sym_index, b.sym_index, "{what}: sym index");
    assert_eq!(a.qw_index, b.qw_index, "{what}: qw index");
    assert_eq!(a.sym_view, b.sym_view, "{what}: sym view");
    assert_eq!(a.qw_view, b.qw_view, "{what}: qw view");
    assert_eq!(a.items_triggers, b.items_triggers, "{what}: triggers on items");
    assert_eq!(a.docs_triggers, b.docs_triggers, "{what}: triggers on app.docs");
    assert_eq!(a.fits_seq, b.fits_seq, "{what}: embedstack.fits_id_seq");
    assert_eq!(a.generations_seq, b.generations_seq, "{what}: embedstack.generations_id_seq");
}

/// Two model sets: `sym` (symmetric) on `items`, and `qw` (query-weighted, combined column
/// `qw_vec`) on `app.docs` (a table outside the search path); not materialised.
fn setup_served(c: &mut Client, seed: u64) -> (BTreeMap<i32, Models>, BTreeMap<i32, Models>) {
    let items = load_items(c, seed);
    c.batch_execute("SELECT embedstack.create_model_set('sym', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let mut rng = Rng(seed ^ 0xABCD);
    let docs = make_rows(&mut rng, 2000);
    c.batch_execute("CREATE SCHEMA app").unwrap();
    load_vectors(c, "app.docs", &DIMS, &docs, "");
    let dp = linear_pairs(&mut rng, &docs, 1500, [1.5, -0.7, 0.8]);
    load_pairs(c, "app.doc_pairs", &dp);
    c.batch_execute("ANALYZE app.docs").unwrap();
    c.batch_execute(
        "SELECT embedstack.create_model_set('qw', 'app.docs', 'id', ARRAY['m1', 'm2', 'm3'], mode => 'query_weighted',
                                            combined_column => 'qw_vec')",
    )
    .unwrap();
    (items, docs)
}

/// The database `es_<name>` with the model sets of `setup_served` served (`sym`: fit 1 then
/// fit 2 materialised, two layouts: generation 1 retained, 2 served; `qw`: generation 3), what
/// it serves, and its `pg_dump -Fc` (exit code 0, nothing on stderr) in a temporary file.
fn dump_source(name: &str) -> (Client, BTreeMap<i32, Models>, BTreeMap<i32, Models>, ServedDb, PathBuf) {
    let mut c = fresh_db(name);
    let (items, docs) = setup_served(&mut c, 0xD0_1000);
    let (f1, w1) = fit(&mut c, "sym", "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f1}, 700)")).unwrap();
    let (f2, w2) = fit(&mut c, "sym", "pairs2");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f2})")).unwrap();
    assert!(symmetric_multipliers(&w1, 0.05) != symmetric_multipliers(&w2, 0.05), "two different layouts");
    let (fq, _) = fit(&mut c, "qw", "app.doc_pairs");
    c.batch_execute("CALL embedstack.materialize('qw')").unwrap();
    assert_eq!((active_fit(&mut c, "sym"), active_fit(&mut c, "qw")), (Some(f2), Some(fq)));
    let jobs: i64 = c.query_one("SELECT count(*) FROM embedstack.jobs", &[]).unwrap().get(0);
    assert_eq!(jobs, 3);
    let states: Vec<(i64, String, String)> = c
        .query("SELECT id, model_set, state FROM embedstack.generations ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |id: i64, m: &str, st: &str| (id, m.to_string(), st.to_string());
    assert_eq!(states, vec![s(1, "sym", "retained"), s(2, "sym", "served"), s(3, "qw", "served")]);
    c.batch_execute("ANALYZE").unwrap();
    let orig = served_db(&mut c, &items, &docs);
    assert_eq!(orig.catalog.1.len(), 3, "fits 1, 2 (sym) and the qw fit");
    assert_eq!(orig.generation_rows.len(), 3);
    assert_eq!(orig.items_triggers.len(), 4);
    assert_eq!(orig.docs_triggers.len(), 4);
    let file = std::env::temp_dir().join(format!("embedstack_{name}_{}.dump", std::process::id()));
    run_tool("pg_dump", &["-Fc", "-f", file.to_str().unwrap(), "-d", &format!("es_{name}")]);
    (c, items, docs, orig, file)
}

/// `pg_dump -Fc` of a database with served model sets, `pg_restore` into a new database
/// (exit code 0, nothing on stderr; also, into another database, the catalog rows first and
/// the rest with `-j 4`, compared the same way), then in the restored database:
/// * `embedstack.model_sets`, `embedstack.fits` and `embedstack.generations` rows identical as
///   text (`source` and `relation` resolve to the restored tables), `fits_id_seq` and
///   `generations_id_seq` at the same values, `embedstack.jobs` empty;
/// * the served views defined identically and serving identical vectors, every generation
///   table's rows identical, the generations' HNSW indexes and the freshness triggers defined
///   identically, the k-NN answers (ids and distances) identical, through the indexes
///   (EXPLAIN), and equal to exact search;
/// * `pg_dump --schema-only` of both databases identical, and the extension's objects, their
///   definitions, configuration tables and privileges identical (the upgrade test's lists);
/// * the triggers work (an inserted row gets the combined vector computed here);
/// * `embedstack.status` works (no job: jobs are not dumped); a refit works, its fit and its
///   generation take the ids after the restored ones, the k-NN query uses the new generation's
///   index, and the source table is not changed; a query-weighted refit writes nothing.
#[test]
fn pg_dump_and_pg_restore_keep_what_is_served() {
    let t0 = Instant::now();
    let src_db = "es_life_dump";
    let dst_db = "es_life_dump_restored";
    let (mut c, items, docs, orig, file) = dump_source("life_dump");
    let file_s = file.to_str().unwrap().to_string();
    let mut r = create_db(dst_db);
    run_tool("pg_restore", &["--exit-on-error", "-d", dst_db, &file_s]);

    // A section-by-section restore (the extension's catalog rows first, serially, then
    // everything else with -j), as restore scripts often do, gives the same database.
    let dst_j = "es_life_dump_restored_j";
    let mut rj = create_db(dst_j);
    run_tool("pg_restore", &["--exit-on-error", "--section=pre-data", "-d", dst_j, &file_s]);
    run_tool("pg_restore", &["--exit-on-error", "--section=data", "-n", "embedstack", "-d", dst_j, &file_s]);
    run_tool(
        "pg_restore",
        &["--exit-on-error", "-j", "4", "--section=data", "-N", "embedstack", "-d", dst_j, &file_s],
    );
    run_tool("pg_restore", &["--exit-on-error", "-j", "4", "--section=post-data", "-d", dst_j, &file_s]);
    let _ = std::fs::remove_file(&file);
    rj.batch_execute("ANALYZE").unwrap();
    let rest_j = served_db(&mut rj, &items, &docs);
    assert_same_served(&orig, &rest_j, "restored in sections with -j 4 vs original");
    drop(rj);
    drop_db(dst_j);
    eprintln!("dump/restore: done at {:.1}s", t0.elapsed().as_secs_f64());

    // The schema as pg_dump sees it, before anything changes.
    // (Without the random `\restrict` key lines recent pg_dump versions write.)
    let schema = |db: &str| -> String {
        run_tool("pg_dump", &["--schema-only", "-d", db])
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (schema_a, schema_b) = (schema(src_db), schema(dst_db));
    assert!(schema_a.contains("CREATE EXTENSION IF NOT EXISTS embedstack"), "{schema_a}");
    if schema_a != schema_b {
        let la: Vec<&str> = schema_a.lines().collect();
        let lb: Vec<&str> = schema_b.lines().collect();
        let first = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)).unwrap();
        panic!(
            "pg_dump --schema-only differs from line {first}:\n  original: {:?}\n  restored: {:?}",
            la.get(first),
            lb.get(first)
        );
    }

    assert_eq!(installed_version(&mut r), current_version(&mut r));
    r.batch_execute("ANALYZE").unwrap();
    let rest = served_db(&mut r, &items, &docs);
    assert_same_served(&orig, &rest, "restored vs original");
    let mut diffs = Vec::new();
    for sql in [EXTOBJS_SQL, EXTDETAIL_SQL, EXTMETA_SQL] {
        let (a, b) = (rows2(&mut c, sql), rows2(&mut r, sql));
        diffs.extend(diff_maps("original", &a, "restored", &b));
    }
    assert!(diffs.is_empty(), "the restored extension differs from the original:\n{}", diffs.join("\n"));
    // `source` and the generations' relations resolve to the restored tables.
    let resolves: Vec<(String, bool)> = r
        .query(
            "SELECT m.name, m.source = to_regclass(CASE m.name WHEN 'sym' THEN 'public.items' ELSE 'app.docs' END)
               FROM embedstack.model_sets m ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|x| (x.get(0), x.get(1)))
        .collect();
    assert_eq!(resolves, vec![("qw".to_string(), true), ("sym".to_string(), true)]);
    for s in [SYM, QW] {
        let gens = generations(&mut r, s.name);
        let served: Vec<&Gen> = gens.iter().filter(|g| g.state == "served").collect();
        assert_eq!(served.len(), 1, "{}: {gens:?}", s.name);
        let rel = served[0].relation.clone().expect("the served generation's table");
        assert_eq!(
            relations_read_by_view(&mut r, &s.view_rel()),
            vec![rel.clone()],
            "{}: the view reads it",
            s.name
        );
        for g in &gens {
            let ok: bool = r
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_index i
                       WHERE i.indrelid = to_regclass($1) AND i.indexrelid = to_regclass(format('%I.%I', $3::text, $2::text))
                         AND i.indisvalid)",
                    &[&g.relation, &g.index_name, &s.schema],
                )
                .unwrap()
                .get(0);
            assert!(ok, "{}: generation {} table and index restored: {g:?}", s.name, g.id);
        }
    }
    let jobs: i64 = r.query_one("SELECT count(*) FROM embedstack.jobs", &[]).unwrap().get(0);
    assert_eq!(jobs, 0, "jobs are not dumped");
    for set in ["sym", "qw"] {
        let st = status_summary(&mut r, set);
        assert_eq!(st.active_fit, active_fit(&mut c, set));
        assert_eq!(
            (st.job_id, st.job_state.clone(), st.last_error.clone()),
            (None, None, None),
            "{set}: {st:?}"
        );
    }

    // The freshness triggers.
    check_trigger_on_insert(&mut r, "items", "sym", 3001, &mut Rng(0xD0_0003));
    check_trigger_on_insert(&mut r, "app.docs", "qw", 3001, &mut Rng(0xD0_0004));

    // A refit in the restored database; the fit and generation ids continue after the
    // restored ones; the source table is only read.
    let max_id: i64 = r.query_one("SELECT max(id) FROM embedstack.fits", &[]).unwrap().get(0);
    let max_gen: i64 = r.query_one("SELECT max(id) FROM embedstack.generations", &[]).unwrap().get(0);
    assert_eq!(orig.fits_seq, (max_id, true));
    assert_eq!(orig.generations_seq, (max_gen, true));
    let items_state = source_state(&mut r, "items");
    r.batch_execute("CALL embedstack.refit('sym', 'pairs', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let st = status_summary(&mut r, "sym");
    assert_eq!(st.job_kind.as_deref(), Some("refit"));
    assert_eq!(st.job_state.as_deref(), Some("succeeded"), "{st:?}");
    assert_eq!(st.job_fit, Some(max_id + 1), "the new fit takes the next id: {st:?}");
    assert_eq!(st.active_fit, Some(max_id + 1));
    assert_eq!(st.served_generation, Some(max_gen + 1), "the new generation takes the next id: {st:?}");
    assert!(source_state(&mut r, "items") == items_state, "the refit changed the source table");
    let q = &queries(&items, 0xD0_0001)[0];
    assert_uses_index(&mut r, SYM, At::View, q, &format!("items_sym_g{}_hnsw", max_gen + 1));
    assert_eq!(knn(&mut r, SYM, At::View, q), knn_exact(&mut r, SYM, At::View, q));
    check_trigger_on_insert(&mut r, "items", "sym", 3002, &mut Rng(0xD0_0005));
    // Query-weighted: a refit only switches the active fit; nothing is written.
    let docs_state = source_state(&mut r, "app.docs");
    let qw_gen = served_generation(&mut r, "qw");
    let qw_rows = row_versions(&mut r, &format!("app.docs_qw_g{qw_gen}"));
    r.batch_execute("CALL embedstack.refit('qw', 'app.doc_pairs', 'a', 'b', 'y', cutover => 'always')")
        .unwrap();
    let st = status_summary(&mut r, "qw");
    assert_eq!((st.job_state.as_deref(), st.active_fit), (Some("succeeded"), Some(max_id + 2)), "{st:?}");
    assert_eq!(st.served_generation, Some(qw_gen), "a query-weighted refit serves the same generation");
    assert!(source_state(&mut r, "app.docs") == docs_state, "the refit changed app.docs");
    assert!(
        row_versions(&mut r, &format!("app.docs_qw_g{qw_gen}")) == qw_rows,
        "a query-weighted refit rewrites no row of the generation"
    );
    drop(r);
    drop_db(dst_db);
    eprintln!("dump/restore: {:.1}s", t0.elapsed().as_secs_f64());
}

/// A plain parallel restore (`pg_restore -j 4`) of a database with model sets. pg_dump orders
/// the configuration tables' rows by their foreign keys in the archive, but the TABLE DATA
/// entries depend only on their own table, so parallel workers load `embedstack.fits`,
/// `embedstack.model_sets` and `embedstack.generations` at the same time: there is no foreign
/// key between them.
#[test]
fn parallel_pg_restore_keeps_what_is_served() {
    let dst = "es_life_dump_par_restored";
    let (_c, items, docs, orig, file) = dump_source("life_dump_par");
    let file_s = file.to_str().unwrap().to_string();
    let mut r = create_db(dst);
    let p = port();
    let out = Command::new(pg_bin().join("pg_restore"))
        .args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-j", "4", "-d", dst, &file_s])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fits: i64 = r.query_one("SELECT count(*) FROM embedstack.fits", &[]).unwrap().get(0);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "pg_restore -j 4 failed ({}), {fits} fits restored of {}:\n{stderr}",
        out.status,
        orig.catalog.1.len()
    );
    r.batch_execute("ANALYZE").unwrap();
    let rest = served_db(&mut r, &items, &docs);
    assert_same_served(&orig, &rest, "restored with -j 4 vs original");
    drop(r);
    drop_db(dst);
}

// ---------------------------------------------------------------------------------------
// 3. Upgrades from releases that served a column
// ---------------------------------------------------------------------------------------

/// The model-set columns every release has, as text (0.3.0 dropped the staging columns and
/// added the view and generation ones).
const COMMON_MODEL_SET_COLS: &str = "SELECT concat_ws('|', name, source::text, key_column, model_columns::text,
    model_dims::text, model_types::text, mode, threshold, combined_column, storage, active_fit, served_multipliers::text,
    served_storage, created_at) FROM embedstack.model_sets ORDER BY name";

fn common_catalog(c: &mut Client) -> (Vec<String>, Vec<String>) {
    let ms = c.query(COMMON_MODEL_SET_COLS, &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let fits = c
        .query("SELECT f::text FROM embedstack.fits f ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (ms, fits)
}

/// A database with embedstack 0.1.0 and, made with the 0.1.0 API, the two served model sets
/// of `setup_served` (`sym`: fit 1 then fit 2 materialised with the 3-argument materialize).
fn setup_0_1_0(db: &str, seed: u64) -> (Client, BTreeMap<i32, Models>, BTreeMap<i32, Models>) {
    let mut c = create_db(db);
    c.batch_execute("CREATE EXTENSION embedstack VERSION '0.1.0' CASCADE").unwrap();
    assert_eq!(installed_version(&mut c), "0.1.0");
    let jobs: Option<String> =
        c.query_one("SELECT to_regclass('embedstack.jobs')::text", &[]).unwrap().get(0);
    assert_eq!(jobs, None, "0.1.0 has no jobs table");
    let (items, docs) = setup_served(&mut c, seed);
    let (f1, _) = fit(&mut c, "sym", "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f1}, 500)")).unwrap();
    let (f2, _) = fit(&mut c, "sym", "pairs2");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f2}, 700)")).unwrap();
    let (fq, _) = fit(&mut c, "qw", "app.doc_pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('qw', {fq}, 1000)")).unwrap();
    assert_eq!((active_fit(&mut c, "sym"), active_fit(&mut c, "qw")), (Some(f2), Some(fq)));
    c.batch_execute("ANALYZE").unwrap();
    (c, items, docs)
}

/// Runs `ALTER EXTENSION embedstack UPDATE`, with a clear message when the installed update
/// path does not reach the current version (the 0.2.1 → 0.3.0 script missing).
fn update_extension(c: &mut Client) -> String {
    let from = installed_version(c);
    let to = current_version(c);
    let path: Option<String> = c
        .query_one(
            "SELECT path FROM pg_extension_update_paths('embedstack') WHERE source = $1 AND target = $2",
            &[&from, &to],
        )
        .unwrap()
        .get(0);
    let path = path.unwrap_or_else(|| {
        panic!("no installed update path from {from} to {to} (is sql/embedstack--0.2.1--{to}.sql installed?)")
    });
    c.batch_execute("ALTER EXTENSION embedstack UPDATE")
        .unwrap_or_else(|e| panic!("ALTER EXTENSION embedstack UPDATE ({path}): {e:?}"));
    assert_eq!(installed_version(c), to);
    path
}

/// `ALTER EXTENSION embedstack UPDATE` from 0.1.0 (through 0.2.0 and 0.2.1), with served
/// model sets made by 0.1.0:
/// * the catalog rows (the columns every release has) and the fits are unchanged;
/// * each model set serves the vectors its column served, from its one generation (served,
///   the active fit and served layout, the documented names, the first generation ids) through
///   its view, with the same k-NN answers (= exact search) through the generation's index;
/// * the old columns stay in the tables: pg_attribute rows and every row's ctid/xmin unchanged;
/// * the row triggers are replaced by the statement-level freshness triggers, which work;
/// * the extension's objects and their definitions (the object list of /tmp/extobjs.sql), its
///   configuration tables, the schema's privileges and the initial privileges are exactly
///   those of a fresh `CREATE EXTENSION embedstack` — differing rows printed; no SECURITY
///   DEFINER routine but the two look-ups is executable by PUBLIC, and `_write` is gone;
/// * the operations work on the upgraded model sets: status (no job yet), refit with the
///   default policy (cuts over to the next generation; the source table unchanged), refit
///   `cutover => 'never'` (kept), a query-weighted refit that writes nothing, materialize of fit
///   2 again (the same answers as before the upgrade), and the jobs table records all four.
#[test]
fn upgrade_from_0_1_0_keeps_data_and_equals_a_fresh_install() {
    let t0 = Instant::now();
    let db = "es_life_upgrade";
    let (mut c, items, docs) = setup_0_1_0(db, 0x0F_0100);
    let cat_before = common_catalog(&mut c);
    let sym_before = column_served(&mut c, SYM, &items, 0xD0_0001);
    let qw_before = column_served(&mut c, QW, &docs, 0xD0_0002);
    let items_state = source_state(&mut c, "items");
    let docs_state = source_state(&mut c, "app.docs");
    let (items_cols, docs_cols) = (columns(&mut c, "items"), columns(&mut c, "app.docs"));
    assert!(items_cols.contains(&"sym_combined".to_string()) && docs_cols.contains(&"qw_vec".to_string()));

    update_extension(&mut c);
    assert_eq!(common_catalog(&mut c), cat_before, "catalog rows after the upgrade");
    let g_sym = assert_upgraded_set(&mut c, SYM, &sym_before, &items, 0xD0_0001);
    let g_qw = assert_upgraded_set(&mut c, QW, &qw_before, &docs, 0xD0_0002);
    let mut ids = vec![g_sym, g_qw];
    ids.sort();
    assert_eq!(ids, vec![1, 2], "the upgrade writes the first generations");
    assert_eq!(columns(&mut c, "items"), items_cols, "the old column stays in items");
    assert_eq!(columns(&mut c, "app.docs"), docs_cols, "the old column stays in app.docs");
    assert!(source_state(&mut c, "items") == items_state, "the upgrade changed items (attributes or rows)");
    assert!(
        source_state(&mut c, "app.docs") == docs_state,
        "the upgrade changed app.docs (attributes or rows)"
    );
    assert_statement_triggers(&mut c, "items", &["sym"]);
    assert_statement_triggers(&mut c, "app.docs", &["qw"]);
    eprintln!("upgrade: served data unchanged at {:.1}s", t0.elapsed().as_secs_f64());

    // Same objects and definitions as a fresh install.
    let mut fresh = fresh_db("life_upgrade_ref");
    let objs_up = rows2(&mut c, EXTOBJS_SQL);
    let objs_fresh = rows2(&mut fresh, EXTOBJS_SQL);
    let mut diffs = diff_maps("upgraded", &objs_up, "fresh", &objs_fresh);
    for sql in [EXTDETAIL_SQL, EXTMETA_SQL] {
        let (up, fr) = (rows2(&mut c, sql), rows2(&mut fresh, sql));
        diffs.extend(diff_maps("upgraded", &up, "fresh", &fr));
    }
    assert!(
        diffs.is_empty(),
        "the upgraded extension differs from a fresh install ({} objects upgraded, {} fresh):\n{}",
        objs_up.len(),
        objs_fresh.len(),
        diffs.join("\n")
    );
    assert!(objs_up.len() > 50, "{} objects", objs_up.len());
    drop(fresh);
    drop_db("es_life_upgrade_ref");
    assert_no_public_definer(&mut c);

    // The freshness triggers.
    check_trigger_on_insert(&mut c, "items", "sym", 4001, &mut Rng(0x0F_0101));
    check_trigger_on_insert(&mut c, "app.docs", "qw", 4001, &mut Rng(0x0F_0102));

    // The operations on the upgraded sets.
    let f2 = active_fit(&mut c, "sym").unwrap();
    let st = status_summary(&mut c, "sym");
    assert_eq!((st.active_fit, st.job_id, st.served_generation), (Some(f2), None, Some(g_sym)), "{st:?}");
    let max_id: i64 = c.query_one("SELECT max(id) FROM embedstack.fits", &[]).unwrap().get(0);
    let items_state = source_state(&mut c, "items");
    c.batch_execute("CALL embedstack.refit('sym', 'pairs', 'a', 'b', 'y')").unwrap();
    let st = status_summary(&mut c, "sym");
    assert_eq!(
        (st.job_kind.as_deref(), st.job_state.as_deref()),
        (Some("refit"), Some("succeeded")),
        "{st:?}"
    );
    assert_eq!(st.job_fit, Some(max_id + 1));
    assert_eq!(st.active_fit, Some(max_id + 1), "the new fit is better on the held-out pairs: {st:?}");
    assert_eq!(
        (st.served_generation, st.previous_generation),
        (Some(3), Some(g_sym)),
        "the refit writes the next generation; the upgrade's is kept for rollback: {st:?}"
    );
    assert!(source_state(&mut c, "items") == items_state, "the refit changed items (attributes or rows)");
    let (new_mse, act_mse, act): (f64, f64, i64) = {
        let r = c
            .query_one(
                "SELECT (details->>'new_mse')::float8, (details->>'active_mse')::float8, (details->>'active_fit')::bigint
                   FROM embedstack.jobs WHERE id = $1",
                &[&st.job_id.unwrap()],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(act, f2);
    assert!(new_mse < act_mse, "new {new_mse} vs active {act_mse}");
    let q = &queries(&items, 0x0F_0103)[0];
    assert_uses_index(&mut c, SYM, At::View, q, "items_sym_g3_hnsw");
    assert_eq!(knn(&mut c, SYM, At::View, q), knn_exact(&mut c, SYM, At::View, q));
    check_trigger_on_insert(&mut c, "items", "sym", 4002, &mut Rng(0x0F_0104));

    c.batch_execute("CALL embedstack.refit('sym', 'pairs2', 'a', 'b', 'y', cutover => 'never')").unwrap();
    let st2 = status_summary(&mut c, "sym");
    assert_eq!((st2.job_state.as_deref(), st2.active_fit), (Some("kept"), Some(max_id + 1)), "{st2:?}");
    assert_eq!(st2.job_fit, Some(max_id + 2));

    let docs_state = source_state(&mut c, "app.docs");
    let qw_rows = row_versions(&mut c, &format!("app.docs_qw_g{g_qw}"));
    c.batch_execute("CALL embedstack.refit('qw', 'app.doc_pairs', 'a', 'b', 'y', cutover => 'always')")
        .unwrap();
    let st = status_summary(&mut c, "qw");
    assert_eq!((st.job_state.as_deref(), st.active_fit), (Some("succeeded"), Some(max_id + 3)), "{st:?}");
    assert_eq!(st.served_generation, Some(g_qw), "a query-weighted refit serves the same generation");
    assert!(source_state(&mut c, "app.docs") == docs_state, "a query-weighted refit changed app.docs");
    assert!(
        row_versions(&mut c, &format!("app.docs_qw_g{g_qw}")) == qw_rows,
        "a query-weighted refit rewrites no row of its generation"
    );

    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f2}, 300, wait => true)")).unwrap();
    let st = status_summary(&mut c, "sym");
    assert_eq!(
        (st.job_kind.as_deref(), st.job_state.as_deref(), st.active_fit),
        (Some("materialize"), Some("succeeded"), Some(f2))
    );
    let jobs: Vec<(String, String, String)> = c
        .query("SELECT model_set, kind, state FROM embedstack.jobs ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        jobs,
        vec![
            s("sym", "refit", "succeeded"),
            s("sym", "refit", "kept"),
            s("qw", "refit", "succeeded"),
            s("sym", "materialize", "succeeded")
        ]
    );
    c.batch_execute("DELETE FROM items WHERE id > 2000").unwrap();
    assert_eq!(
        knn(&mut c, SYM, At::View, q),
        knn(&mut c, SYM, At::Column, q),
        "fit 2 served again: same answers"
    );
    drop(c);
    drop_db(db);
    eprintln!("upgrade: {:.1}s", t0.elapsed().as_secs_f64());
}

/// `ALTER EXTENSION embedstack UPDATE` from 0.2.0 (through 0.2.1), with model sets made by
/// 0.2.0: `sym` and `qw` of `setup_served`, and `long` (a name of 60 bytes on `items`, combined
/// column `lc`, whose 0.2.0 row trigger was `embedstack_` + its first 52 characters):
/// * each model set serves the vectors its column served from its one generation through its
///   view (`long`'s under the documented hashed view name), with the same answers;
/// * the old columns stay, no row rewritten (ctid/xmin), pg_attribute unchanged;
/// * the row triggers are gone (0.2.0's and 0.2.1's names), replaced by the statement-level
///   triggers under their documented names (hashed for `long`), which work;
/// * no SECURITY DEFINER routine but the two look-ups is executable by PUBLIC (the writers refuse a
///   non-owner themselves); the catalog rows and the served vectors are visible to a role only
///   when it may read the source;
/// * a refit afterwards writes the next generation, serves it through the same view and its
///   index, and never touches the source.
#[test]
fn upgrade_from_0_2_0_serves_the_columns_from_generations() {
    let db = "es_life_upgrade_020";
    let reader = "es_life_reader_020";
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {reader}")).unwrap();
    let mut c = create_db(db);
    c.batch_execute("CREATE EXTENSION embedstack VERSION '0.2.0' CASCADE").unwrap();
    let (items, docs) = setup_served(&mut c, 0x0F_0300);
    let long = format!("{}_long_set", "l".repeat(51));
    assert_eq!(long.len(), 60);
    let (f1, _) = fit(&mut c, "sym", "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f1})")).unwrap();
    let (fq, _) = fit(&mut c, "qw", "app.doc_pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('qw', {fq})")).unwrap();
    c.batch_execute(&format!(
        "SELECT embedstack.create_model_set('{long}', 'items', 'id', ARRAY['m1', 'm2', 'm3'], combined_column => 'lc')"
    ))
    .unwrap();
    let (fl, _) = fit(&mut c, &long, "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('{long}', {fl})")).unwrap();
    let old_trigger = format!("embedstack_{}", &long[..52]);
    let trig =
        |c: &mut Client, t: &str| -> Vec<String> { triggers(c, t).into_iter().map(|(n, _)| n).collect() };
    assert!(
        trig(&mut c, "items").contains(&old_trigger),
        "0.2.0 named the trigger {old_trigger}: {:?}",
        trig(&mut c, "items")
    );
    c.batch_execute("ANALYZE").unwrap();
    let long_view = view_name("items", &long);
    assert!(long_view.len() <= 63 && long_view.ends_with("_served"), "{long_view}");
    let lset = Set { name: &long, schema: "public", source: "items", view: &long_view, col: "lc" };
    let cat_before = common_catalog(&mut c);
    let before: Vec<ColumnServed> =
        [(SYM, &items, 0xD0_0001), (QW, &docs, 0xD0_0002), (lset, &items, 0xD0_0003)]
            .iter()
            .map(|(s, rows, seed)| column_served(&mut c, *s, rows, *seed))
            .collect();
    let items_state = source_state(&mut c, "items");
    let docs_state = source_state(&mut c, "app.docs");
    let items_cols = columns(&mut c, "items");

    update_extension(&mut c);
    assert_eq!(common_catalog(&mut c), cat_before, "catalog rows after the upgrade");
    let mut ids = vec![
        assert_upgraded_set(&mut c, SYM, &before[0], &items, 0xD0_0001),
        assert_upgraded_set(&mut c, QW, &before[1], &docs, 0xD0_0002),
        assert_upgraded_set(&mut c, lset, &before[2], &items, 0xD0_0003),
    ];
    let g_sym = ids[0];
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3], "the upgrade writes the first generations");
    assert_eq!(columns(&mut c, "items"), items_cols, "the old columns stay in items");
    assert!(source_state(&mut c, "items") == items_state, "the upgrade changed items (attributes or rows)");
    assert!(
        source_state(&mut c, "app.docs") == docs_state,
        "the upgrade changed app.docs (attributes or rows)"
    );

    // The statement triggers replace the row triggers, and fire.
    assert_statement_triggers(&mut c, "items", &["sym", &long]);
    assert_statement_triggers(&mut c, "app.docs", &["qw"]);
    let t = trig(&mut c, "items");
    let row_trigger_021 = derived_name(&format!("embedstack_{long}"), "trg", None);
    assert!(
        !t.contains(&old_trigger)
            && !t.contains(&row_trigger_021)
            && !t.contains(&"embedstack_sym".to_string()),
        "{t:?}"
    );
    check_trigger_on_insert(&mut c, "items", "sym", 5001, &mut Rng(0x0F_0301));
    check_trigger_on_insert(&mut c, "items", &long, 5002, &mut Rng(0x0F_0302));
    check_trigger_on_insert(&mut c, "app.docs", "qw", 5003, &mut Rng(0x0F_0304));

    // No SECURITY DEFINER writer (0.3.1: the writers are SECURITY INVOKER and refuse a
    // non-owner); catalog rows and served vectors visible to readers of the source only.
    assert_no_public_definer(&mut c);
    c.batch_execute(&format!("CREATE ROLE {reader} LOGIN")).unwrap();
    let mut r = connect_as(db, reader);
    expect_code(&mut r, "SELECT embedstack._w_delete_model_set('sym')", "42501");
    expect_code(&mut r, "SELECT embedstack._write('delete_model_set', 'sym')", "42883");
    let visible = |r: &mut Client| -> i64 {
        r.query_one("SELECT count(*) FROM embedstack.model_sets", &[]).unwrap().get(0)
    };
    assert_eq!(visible(&mut r), 0, "no SELECT on items or app.docs: nothing visible");
    expect_code(&mut r, "SELECT count(*) FROM items_sym", "42501");
    c.batch_execute(&format!("GRANT SELECT ON items TO {reader}")).unwrap();
    assert_eq!(visible(&mut r), 2, "SELECT on items: sym and the long-named set");
    let n: i64 = r.query_one("SELECT count(*) FROM items_sym", &[]).unwrap().get(0);
    let n_items: i64 = c.query_one("SELECT count(*) FROM items", &[]).unwrap().get(0);
    assert_eq!(n, n_items, "the reader of items reads the served view");
    drop(r);

    // A refit after the upgrade writes the next generation; the source is only read.
    let items_state = source_state(&mut c, "items");
    c.batch_execute("CALL embedstack.refit('sym', 'pairs2', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let st = status_summary(&mut c, "sym");
    assert_eq!(st.job_state.as_deref(), Some("succeeded"), "{st:?}");
    assert_eq!((st.served_generation, st.previous_generation), (Some(4), Some(g_sym)), "{st:?}");
    let gens: Vec<(i64, String)> = generations(&mut c, "sym").into_iter().map(|g| (g.id, g.state)).collect();
    assert_eq!(gens, vec![(g_sym, "retained".to_string()), (4, "served".to_string())]);
    assert_eq!(served_index(&mut c, "sym"), "items_sym_g4_hnsw");
    assert_eq!(relations_read_by_view(&mut c, "items_sym"), vec!["items_sym_g4".to_string()]);
    assert!(source_state(&mut c, "items") == items_state, "the refit changed items (attributes or rows)");
    let q = &queries(&items, 0x0F_0303)[0];
    assert_uses_index(&mut c, SYM, At::View, q, "items_sym_g4_hnsw");
    assert_eq!(knn(&mut c, SYM, At::View, q), knn_exact(&mut c, SYM, At::View, q));
    check_trigger_on_insert(&mut c, "items", "sym", 5004, &mut Rng(0x0F_0305));
    drop(c);
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {reader}")).unwrap();
}

/// The arities of the `embedstack._may_read_served` gates a view's rule calls.
fn gate_arities(c: &mut Client, view: &str) -> Vec<i32> {
    c.query(
        "SELECT p.pronargs::int FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass
           JOIN pg_proc p ON p.oid = d.refobjid
          WHERE r.ev_class = $1::text::regclass AND p.proname = '_may_read_served'
            AND p.pronamespace = 'embedstack'::regnamespace
          ORDER BY 1",
        &[&view],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `ALTER EXTENSION embedstack UPDATE` from 0.3.0 to the security release 0.3.1 and on through
/// 0.4.0 to the current release (0.4.1), with model sets served by 0.3.0 (`sym` on `items`: two layouts, a served and a retained generation; `qw`,
/// query-weighted, on `app.docs`):
/// * the catalog rows (the columns every release has, the fits, the generations) and the source
///   tables (pg_attribute, every row's ctid/xmin) are unchanged; each view serves the same vectors
///   and the same k-NN answers (= exact search) through the served generation's index;
/// * every served view calls the two-argument gate now (bound to its model set's source), no
///   longer 0.3.0's one-argument one: a role without SELECT on the source is refused (42501), a
///   GRANT opens the view at once;
/// * the extension's objects, definitions, configuration, privileges and initial privileges are
///   exactly those of a fresh `CREATE EXTENSION embedstack` (differing rows printed); no SECURITY
///   DEFINER routine but the two look-ups is executable by PUBLIC, and `_write` is gone;
/// * rollback switches to the retained generation and back, and a refit writes the next
///   generation, without touching the source.
#[test]
fn upgrade_from_0_3_0_equals_a_fresh_install() {
    let t0 = Instant::now();
    let db = "es_life_upgrade_030";
    let reader = "es_life_reader_030";
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {reader}")).unwrap();
    let mut c = create_db(db);
    c.batch_execute("CREATE EXTENSION embedstack VERSION '0.3.0' CASCADE").unwrap();
    assert_eq!(installed_version(&mut c), "0.3.0");
    let (items, docs) = setup_served(&mut c, 0x0F_0400);
    let (f1, _) = fit(&mut c, "sym", "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f1})")).unwrap();
    let (f2, _) = fit(&mut c, "sym", "pairs2");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f2})")).unwrap();
    let (fq, _) = fit(&mut c, "qw", "app.doc_pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('qw', {fq})")).unwrap();
    c.batch_execute("ANALYZE").unwrap();
    let states: Vec<String> = generations(&mut c, "sym").into_iter().map(|g| g.state).collect();
    assert_eq!(states, ["retained", "served"], "test precondition: two generations of sym");
    for s in [SYM, QW] {
        assert_eq!(gate_arities(&mut c, &s.view_rel()), [1], "{}: 0.3.0's gate", s.name);
    }
    let cat_before = common_catalog(&mut c);
    let gens_before = (generations(&mut c, "sym"), generations(&mut c, "qw"));
    let before: Vec<ColumnServed> = [(SYM, &items, 0xD0_0001), (QW, &docs, 0xD0_0002)]
        .iter()
        .map(|(s, rows, seed)| {
            let mut knn_all = Vec::new();
            for q in queries(rows, *seed) {
                let got = knn(&mut c, *s, At::View, &q);
                assert_eq!(
                    got,
                    knn_exact(&mut c, *s, At::View, &q),
                    "{}: HNSW vs exact before the upgrade",
                    s.name
                );
                knn_all.push(got);
            }
            ColumnServed { vectors: vectors_text(&mut c, *s, At::View), knn: knn_all }
        })
        .collect();
    let items_state = source_state(&mut c, "items");
    let docs_state = source_state(&mut c, "app.docs");

    // Through every release since: 0.3.1 and 0.4.0 (their frozen install scripts in
    // sql/releases/) to the current one (0.4.1, the security release of 0.4.0).
    let path = update_extension(&mut c);
    let to = current_version(&mut c);
    assert!(
        path.starts_with("0.3.0--0.3.1--0.4.0--") && path.ends_with(&format!("--{to}")),
        "the update walks 0.3.0 -> 0.3.1 -> 0.4.0 -> ... -> {to}: {path}"
    );
    assert_eq!(common_catalog(&mut c), cat_before, "catalog rows after the upgrade");
    assert_eq!(
        (generations(&mut c, "sym"), generations(&mut c, "qw")),
        gens_before,
        "generations after the upgrade"
    );
    assert!(source_state(&mut c, "items") == items_state, "the upgrade changed items (attributes or rows)");
    assert!(
        source_state(&mut c, "app.docs") == docs_state,
        "the upgrade changed app.docs (attributes or rows)"
    );
    for (i, (s, rows, seed)) in [(SYM, &items, 0xD0_0001), (QW, &docs, 0xD0_0002)].into_iter().enumerate() {
        assert_eq!(
            gate_arities(&mut c, &s.view_rel()),
            [2],
            "{}: the view calls the two-argument gate",
            s.name
        );
        assert!(
            vectors_text(&mut c, s, At::View) == before[i].vectors,
            "{}: the view serves other vectors",
            s.name
        );
        let index = served_index(&mut c, s.name);
        for (k, q) in queries(rows, seed).iter().enumerate() {
            let got = knn(&mut c, s, At::View, q);
            assert_eq!(got, before[i].knn[k], "{}: k-NN answer {k} after the upgrade", s.name);
            assert_eq!(got, knn_exact(&mut c, s, At::View, q), "{}: HNSW vs exact", s.name);
            assert_uses_index(&mut c, s, At::View, q, &index);
        }
    }
    eprintln!("upgrade 0.3.0: served data unchanged at {:.1}s", t0.elapsed().as_secs_f64());

    // Same objects and definitions as a fresh install.
    let mut fresh = fresh_db("life_upgrade_030_ref");
    let objs_up = rows2(&mut c, EXTOBJS_SQL);
    let objs_fresh = rows2(&mut fresh, EXTOBJS_SQL);
    let mut diffs = diff_maps("upgraded", &objs_up, "fresh", &objs_fresh);
    for sql in [EXTDETAIL_SQL, EXTMETA_SQL] {
        let (up, fr) = (rows2(&mut c, sql), rows2(&mut fresh, sql));
        diffs.extend(diff_maps("upgraded", &up, "fresh", &fr));
    }
    assert!(
        diffs.is_empty(),
        "the extension upgraded from 0.3.0 differs from a fresh install ({} objects upgraded, {} fresh):\n{}",
        objs_up.len(),
        objs_fresh.len(),
        diffs.join("\n")
    );
    assert!(objs_up.len() > 50, "{} objects", objs_up.len());
    drop(fresh);
    drop_db("es_life_upgrade_030_ref");
    assert_no_public_definer(&mut c);

    // The new gate decides who reads the served vectors.
    c.batch_execute(&format!("CREATE ROLE {reader} LOGIN")).unwrap();
    let mut r = connect_as(db, reader);
    expect_code(&mut r, "SELECT count(*) FROM items_sym", "42501");
    expect_code(&mut r, "SELECT embedstack._w_delete_model_set('sym')", "42501");
    c.batch_execute(&format!("GRANT SELECT ON items TO {reader}")).unwrap();
    let n: i64 = r.query_one("SELECT count(*) FROM items_sym", &[]).unwrap().get(0);
    let n_items: i64 = c.query_one("SELECT count(*) FROM items", &[]).unwrap().get(0);
    assert_eq!(n, n_items, "the reader of items reads every served row");
    drop(r);

    // rollback and a refit on the upgraded model set.
    let (g_ret, g_srv) = (gens_before.0[0].id, gens_before.0[1].id);
    c.batch_execute("CALL embedstack.rollback('sym')").unwrap();
    assert_eq!(served_generation(&mut c, "sym"), g_ret, "rollback serves the retained generation");
    assert!(
        vectors_text(&mut c, SYM, At::View) != before[0].vectors,
        "the retained generation holds the other layout"
    );
    c.batch_execute("CALL embedstack.rollback('sym')").unwrap();
    assert_eq!(served_generation(&mut c, "sym"), g_srv);
    assert!(vectors_text(&mut c, SYM, At::View) == before[0].vectors, "switched back");
    let items_state = source_state(&mut c, "items");
    // (0.4.0: a rollback holds the model set until release.)
    c.batch_execute("SELECT embedstack.release('sym')").unwrap();
    c.batch_execute("CALL embedstack.refit('sym', 'pairs', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let st = status_summary(&mut c, "sym");
    assert_eq!(st.job_state.as_deref(), Some("succeeded"), "{st:?}");
    assert!(st.served_generation.unwrap() > g_srv, "the refit writes the next generation: {st:?}");
    assert!(source_state(&mut c, "items") == items_state, "the refit changed items (attributes or rows)");
    let q = &queries(&items, 0x0F_0401)[0];
    assert_eq!(knn(&mut c, SYM, At::View, q), knn_exact(&mut c, SYM, At::View, q));
    check_trigger_on_insert(&mut c, "items", "sym", 6001, &mut Rng(0x0F_0402));
    drop(c);
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {reader}")).unwrap();
    eprintln!("upgrade 0.3.0: {:.1}s", t0.elapsed().as_secs_f64());
}

/// `ALTER EXTENSION embedstack UPDATE` from 0.4.0 to the security release 0.4.1 (one step), with
/// `sym` served by 0.4.0 from fit 2 and fit 1's generation retained, recording the keys written
/// (into a pending-keys table 0.4.0 made): the extension's objects are exactly those of a fresh
/// install; 0.4.1 accepts that table as the generation's (_is_pending_table), so a rollback
/// writes the recorded row into the generation, serves it and drops the table; the catalog rows
/// are unchanged by the update.
#[test]
fn upgrade_from_0_4_0_keeps_the_recorded_keys() {
    let t0 = Instant::now();
    let db = "es_life_upgrade_040";
    drop_db(db);
    let mut c = create_db(db);
    c.batch_execute("CREATE EXTENSION embedstack VERSION '0.4.0' CASCADE").unwrap();
    setup_served(&mut c, 0x0F_0500);
    let (f1, _) = fit(&mut c, "sym", "pairs");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f1})")).unwrap();
    let (f2, _) = fit(&mut c, "sym", "pairs2");
    c.batch_execute(&format!("CALL embedstack.materialize('sym', {f2})")).unwrap();
    check_trigger_on_insert(&mut c, "items", "sym", 7001, &mut Rng(0x0F_0501));
    let (g1, pending): (i64, String) = {
        let r = c
            .query_one(
                "SELECT id, pending::text FROM embedstack.generations
                  WHERE model_set = 'sym' AND state = 'retained' AND pending IS NOT NULL AND pending_open",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let recorded: i64 =
        c.query_one(&format!("SELECT count(*) FROM {pending} WHERE id = 7001"), &[]).unwrap().get(0);
    assert_eq!(
        recorded, 1,
        "test precondition: 0.4.0 recorded the inserted key for generation {g1} in {pending}"
    );
    let cat_before = common_catalog(&mut c);
    let gens_before = generations(&mut c, "sym");

    let path = update_extension(&mut c);
    let to = current_version(&mut c);
    assert!(path.starts_with("0.4.0--0.4.1") && path.ends_with(&to), "0.4.0 -> 0.4.1 -> ... -> {to}: {path}");
    assert_eq!(common_catalog(&mut c), cat_before, "catalog rows after the upgrade");
    assert_eq!(generations(&mut c, "sym"), gens_before, "generations after the upgrade");
    let mut fresh = fresh_db("life_upgrade_040_ref");
    let mut diffs = Vec::new();
    for sql in [EXTOBJS_SQL, EXTDETAIL_SQL, EXTMETA_SQL] {
        let (up, fr) = (rows2(&mut c, sql), rows2(&mut fresh, sql));
        diffs.extend(diff_maps("upgraded", &up, "fresh", &fr));
    }
    assert!(
        diffs.is_empty(),
        "the extension upgraded from 0.4.0 differs from a fresh install:\n{}",
        diffs.join("\n")
    );
    drop(fresh);
    drop_db("es_life_upgrade_040_ref");
    assert_no_public_definer(&mut c);

    // The pending-keys table 0.4.0 made is the generation's: applied, then dropped.
    let accepted: bool = c
        .query_one(
            "SELECT embedstack._is_pending_table(m, g) FROM embedstack.model_sets m, embedstack.generations g
              WHERE m.name = 'sym' AND g.id = $1",
            &[&g1],
        )
        .unwrap()
        .get(0);
    assert!(accepted, "0.4.1 accepts {pending}, made by 0.4.0, as generation {g1}'s pending-keys table");
    c.batch_execute("CALL embedstack.rollback('sym')").unwrap();
    assert_eq!((served_generation(&mut c, "sym"), active_fit(&mut c, "sym")), (g1, Some(f1)));
    let (n_view, n_items, row): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM items_sym), (SELECT count(*) FROM items),
                        (SELECT count(*) FROM items_sym WHERE id = 7001)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((n_view, row), (n_items, 1), "the rollback wrote the recorded row into generation {g1}");
    let left: Option<String> = c.query_one("SELECT to_regclass($1)::text", &[&pending]).unwrap().get(0);
    assert_eq!(left, None, "the applied pending-keys table is dropped");
    c.batch_execute("SELECT embedstack.release('sym')").unwrap();
    check_trigger_on_insert(&mut c, "items", "sym", 7002, &mut Rng(0x0F_0502));
    drop(c);
    drop_db(db);
    eprintln!("upgrade 0.4.0: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 4. A non-superuser owner after the upgrade
// ---------------------------------------------------------------------------------------

/// A role without superuser, owning its schema and tables, in a database upgraded from 0.1.0
/// (with a model set of postgres's served by 0.1.0):
/// * before the upgrade it cannot use the extension at all (no USAGE on the schema: 42501);
/// * after it: create_model_set, fit, materialize (the view `mine.t_mine` and its generation,
///   owned by the role), the served k-NN query through the generation's index, the triggers,
///   refit, status, jobs, reads of the catalog, and drop_model_set (view and generations gone),
///   all as that role;
/// * it cannot fit, materialize, refit, roll back or drop postgres's model set, read its served
///   view, nor write its catalog rows directly (0.3.1: an INSERT is 42501, UPDATE and DELETE reach
///   no row) or through the writers (42501), and postgres's set is unchanged.
#[test]
fn non_superuser_owner_uses_the_extension_after_the_upgrade() {
    let t0 = Instant::now();
    let db = "es_life_role";
    let role = "es_life_owner";
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    let (mut c, _, _) = setup_0_1_0(db, 0x0F_0200);
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; CREATE SCHEMA mine AUTHORIZATION {role}"
    ))
    .unwrap();

    let mut u = connect_as(db, role);
    let is_super: String = u.query_one("SHOW is_superuser", &[]).unwrap().get(0);
    assert_eq!(is_super, "off");
    let mut rng = Rng(0x0F_0201);
    let rows = make_rows(&mut rng, 2000);
    load_vectors(&mut u, "mine.t", &DIMS, &rows, "");
    let pairs = linear_pairs(&mut rng, &rows, 2000, [2.0, 1.0, 0.5]);
    load_pairs(&mut u, "mine.p", &pairs);
    u.batch_execute("ANALYZE mine.t").unwrap();
    let create = "SELECT embedstack.create_model_set('mine', 'mine.t', 'id', ARRAY['m1', 'm2', 'm3'])";
    let m = message(&expect_code(&mut u, create, "42501"));
    assert!(m.contains("schema embedstack"), "0.1.0: {m}");

    update_extension(&mut c);
    let (sym_before, _) = common_catalog(&mut c);
    let sym_gens_before = generations(&mut c, "sym");
    drop(u);
    let mut u = connect_as(db, role);

    // End to end as the role.
    u.batch_execute(create).unwrap();
    let (f1, w1) = fit(&mut u, "mine", "mine.p");
    assert!(w1.iter().all(|&w| w > 0.0), "{w1:?}");
    u.batch_execute("CALL embedstack.materialize('mine', batch_size => 250)").unwrap();
    assert_eq!(active_fit(&mut u, "mine"), Some(f1));
    let mine = Set { name: "mine", schema: "mine", source: "mine.t", view: "t_mine", col: "mine_combined" };
    let gen = served_generation(&mut u, "mine");
    let owners: Vec<(String, String)> = u
        .query(
            "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c
              WHERE c.relnamespace = 'mine'::regnamespace AND c.relname IN ('t_mine', $1) ORDER BY 1",
            &[&format!("t_mine_g{gen}")],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        owners,
        vec![("t_mine".to_string(), role.to_string()), (format!("t_mine_g{gen}"), role.to_string())],
        "the view and its generation belong to the source's owner"
    );
    let mult = symmetric_multipliers(&w1, 0.05);
    let got: BTreeMap<i32, Option<Vec<f32>>> = u
        .query("SELECT id, mine_combined::real[] FROM mine.t_mine ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got.len(), rows.len());
    for (id, m) in &rows {
        let g = got[id].as_ref().unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        assert_close_vec(g, &combined(m, &DIMS, &mult), 1e-6, &format!("row {id}"));
    }
    for q in queries(&rows, 0x0F_0202) {
        assert_uses_index(&mut u, mine, At::View, &q, &format!("t_mine_g{gen}_hnsw"));
        assert_eq!(knn(&mut u, mine, At::View, &q), knn_exact(&mut u, mine, At::View, &q));
    }
    check_trigger_on_insert(&mut u, "mine.t", "mine", 9001, &mut Rng(0x0F_0203));
    u.batch_execute("CALL embedstack.refit('mine', 'mine.p', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let st = status_summary(&mut u, "mine");
    assert_eq!(
        (st.job_kind.as_deref(), st.job_state.as_deref()),
        (Some("refit"), Some("succeeded")),
        "{st:?}"
    );
    assert_eq!(st.active_fit, st.job_fit);
    assert_ne!(st.active_fit, Some(f1));
    let n_jobs: i64 =
        u.query_one("SELECT count(*) FROM embedstack.jobs WHERE model_set = 'mine'", &[]).unwrap().get(0);
    assert_eq!(n_jobs, 2);
    // The catalog shows a role the model sets of the tables it may read: its own.
    for (what, key) in [
        ("model_sets", "name"),
        ("fits", "model_set"),
        ("jobs", "model_set"),
        ("status", "model_set"),
        ("generations", "model_set"),
    ] {
        let others: i64 = u
            .query_one(&format!("SELECT count(*) FROM embedstack.{what} WHERE {key} <> 'mine'"), &[])
            .unwrap()
            .get(0);
        assert_eq!(others, 0, "the role sees no other model set's {what}");
    }
    let n_fits: i64 =
        c.query_one("SELECT count(*) FROM embedstack.fits WHERE model_set <> 'mine'", &[]).unwrap().get(0);
    assert!(n_fits >= 3, "postgres's fits exist: {n_fits}");

    // Not postgres's model set, not its served vectors, not the catalog directly.
    for sql in [
        "SELECT embedstack.fit('sym', 'mine.p', 'a', 'b', 'y')",
        "CALL embedstack.materialize('sym')",
        "CALL embedstack.refit('sym', 'mine.p', 'a', 'b', 'y', cutover => 'always')",
        "CALL embedstack.rollback('sym')",
        "SELECT embedstack.drop_model_set('sym', true)",
        "SELECT count(*) FROM items_sym",
        "INSERT INTO embedstack.jobs (model_set, kind, params, phase, state, pid) VALUES ('sym', 'refit', '{}', 'fit', 'running', 1)",
        "SELECT embedstack._w_delete_model_set('sym')",
        "SELECT embedstack._w_serve('sym', NULL, NULL)",
        "SELECT embedstack._w_insert_fit('sym', '{}', '{1,1,1}', 0, '{}', '{}', '{}')",
        "SELECT embedstack._w_insert_generation('sym', 1, '{1,1,1}', 'vector', 24)",
        "SELECT embedstack._w_insert_model_set('evil', 'items', 'id', '{m1}', '{8}', '{vector}', 'symmetric', 0, 'x', 'auto', 'evil_v')",
    ] {
        expect_code(&mut u, sql, "42501");
    }
    // 0.3.1: the catalog is writable by PUBLIC under row security: the role's UPDATE and DELETE
    // reach no row of postgres's model set; 0.3.0's write gate is gone.
    for sql in [
        "DELETE FROM embedstack.model_sets WHERE name = 'sym'",
        "UPDATE embedstack.model_sets SET active_fit = NULL WHERE name = 'sym'",
        "DELETE FROM embedstack.generations WHERE model_set = 'sym'",
        "DELETE FROM embedstack.fits WHERE model_set = 'sym'",
    ] {
        assert_eq!(u.execute(sql, &[]).unwrap(), 0, "{sql}");
    }
    expect_code(&mut u, "SELECT embedstack._write('delete_model_set', 'sym')", "42883");
    let (sym_after, _) = common_catalog(&mut c);
    let sym_rows = |v: &[String]| v.iter().filter(|r| !r.starts_with("mine|")).cloned().collect::<Vec<_>>();
    assert_eq!(sym_rows(&sym_after), sym_before, "postgres's model sets are unchanged");
    assert_eq!(generations(&mut c, "sym"), sym_gens_before, "postgres's generations are unchanged");

    u.batch_execute("SELECT embedstack.drop_model_set('mine', true)").unwrap();
    let left: i64 =
        u.query_one("SELECT count(*) FROM embedstack.model_sets WHERE name = 'mine'", &[]).unwrap().get(0);
    assert_eq!(left, 0);
    let rels: Vec<String> = u
        .query(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'mine'::regnamespace AND relkind IN ('r', 'v', 'i')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rels, ["p", "t", "t_pkey"], "the view, the generations and their indexes are dropped");
    assert_eq!(columns(&mut u, "mine.t"), ["id", "m1", "m2", "m3"], "nothing was ever added to the table");
    drop(u);
    drop(c);
    drop_db(db);
    admin().batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    eprintln!("non-superuser owner: {:.1}s", t0.elapsed().as_secs_f64());
}
