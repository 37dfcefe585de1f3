//! Model sets served end to end against a real server: query-weighted refits that rewrite no
//! row, HNSW recall against exact inner-product search, the README's query (source JOIN served
//! view) planned on the generation's HNSW index, the freshness triggers, and bad input (error
//! codes, injection attempts, awkward identifiers, nothing served changing on failure).
//!
//! 0.3.0 storage (docs/design.md §7): the combined vectors live in generation tables
//! `<view>_g<id>` with their HNSW index `<table>_hnsw`, read through the served view
//! `<source>_<set>`; the source table is never altered, rewritten or locked by the extension.
//! The names are computed here by the documented rules (crate module `served`).
//!
//! Every expected value is computed independently on the client (this file and the crate's
//! `reference` and `stats` modules), in f64, from the raw data the test generated (or read back
//! as `real[]`): cosines, normalised blocks, the documented multipliers (symmetric:
//! `sqrt(w_k / w_max)` for `w_k > threshold · w_max`; query-weighted: unit stored blocks and
//! query blocks scaled by `w_k / max_j |w_j|`), OLS, Pearson, Spearman.
//! The fitted weights are read from `embedstack.fits` and (where the data allow) checked
//! against an OLS solved here.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Instant;

use embedstack_client_tests::catalog::{active_fit, columns, fit};
use embedstack_client_tests::check::assert_close_vec;
use embedstack_client_tests::data::{
    copy_field, lit, load_pairs, load_vectors, make_pairs, models_sql, vec_sql, Models, Rng,
};
use embedstack_client_tests::fresh_db;
use embedstack_client_tests::reference::{combined, cos, ols, score, symmetric_multipliers};
use embedstack_client_tests::served::{
    assert_freshness_triggers, attributes, default_view_name, extension_triggers, generation_index_name,
    generation_row_versions, generation_table_name, generations, relation_exists, served_by_id,
    served_generation, source_state, trigger_names, view_exists, view_name, view_reads, Generation,
};
use embedstack_client_tests::sql::{all_text, expect_code, message, q, qi, quote_ident, sqlstate};
use embedstack_client_tests::stats::{pearson, spearman};
use postgres::Client;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The pairs' features as the fit uses them: pairs where every cosine exists.
fn usable(rows: &BTreeMap<i32, Models>, pairs: &[(i32, i32, f64)]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (a, b, t) in pairs {
        let f: Option<Vec<f64>> = (0..rows[a].len()).map(|k| cos(&rows[a][k], &rows[b][k])).collect();
        if let Some(f) = f {
            x.push(f);
            y.push(*t);
        }
    }
    (x, y)
}

/// The served generation of `set` over table `source` (schema public, default view name), with
/// the documented names checked: view `<source>_<set>`, table `<view>_g<id>`, index
/// `<table>_hnsw` (an HNSW index with the inner-product operator class of its storage type), and
/// the view reading that table.
fn checked_served_generation(c: &mut Client, set: &str, source: &str) -> Generation {
    let view = default_view_name(source, set);
    assert_eq!(view_name(c, set), view, "{set}: the view name");
    let g = served_generation(c, set).unwrap_or_else(|| panic!("{set}: nothing served"));
    assert_eq!(g.state, "served", "{g:?}");
    let table = generation_table_name(&view, g.id);
    assert_eq!(g.table.as_deref(), Some(table.as_str()), "{set}: generation table name");
    let index = generation_index_name(&table);
    assert_eq!(g.index_name.as_deref(), Some(index.as_str()), "{set}: generation index name");
    let def: String = c
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 AND indexname = $2",
            &[&table, &index],
        )
        .unwrap_or_else(|e| panic!("{set}: index {index} on {table}: {e}"))
        .get(0);
    assert!(def.contains("USING hnsw") && def.contains(&format!("{}_ip_ops", g.storage)), "{def}");
    assert_eq!(view_reads(c, set), Some(quote_ident(&table)), "{set}: the view reads the served generation");
    g
}

// ---------------------------------------------------------------------------------------
// 1. Query-weighted mode
// ---------------------------------------------------------------------------------------

/// Query-weighted mode serves the fitted score exactly, negative weights included, and a
/// refit is a catalog switch:
/// * fit 1 (target `3·cos1 − 2·cos2 + 0.5·cos3` + noise) gives the OLS weights solved here,
///   one of them clearly negative; the stored vectors are the unweighted unit blocks;
/// * materialising fit 1 writes generation 1 (table, HNSW index and view by the documented
///   names, four statement-level freshness triggers) and leaves the source as it was (its
///   attributes, storage, indexes and every row's `(ctid, xmin)`);
/// * materialising fit 2 (target `cos1 − cos2 + 4·cos3`) rewrites no row (every source and
///   generation row's `(ctid, xmin)` is unchanged), writes no new generation, and only moves
///   `active_fit`;
/// * for several query rows (incl. a NULL model and a zero vector), `−(row <#> query)` equals
///   `Σ s_k cos_k` with `s_k = w_k / max|w|` of fit 2 for every row, the key form of
///   `query_vector` equals the array form, and the exact top-10 matches the top-10 by the
///   score computed here;
/// * `evaluate` reports the per-model and stacked correlations computed here.
#[test]
fn query_weighted_refit_rewrites_nothing_and_ranks_by_the_weighted_sum() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_query_weighted");
    const DIMS: [usize; 3] = [8, 6, 4];
    let mut rng = Rng(0x5EED_0001);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=2000 {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    // Missing models and a zero vector.
    rows.get_mut(&7).unwrap()[0] = None;
    rows.get_mut(&19).unwrap()[1] = None;
    rows.get_mut(&23).unwrap()[2] = None;
    rows.get_mut(&31).unwrap()[0] = None;
    rows.get_mut(&31).unwrap()[2] = None;
    rows.get_mut(&42).unwrap()[2] = Some(vec![0.0; 4]);
    load_vectors(&mut c, "items", &DIMS, &rows, "");

    let pairs1 = make_pairs(&mut rng, &rows, (1, 2000), 3000, &|x, r| {
        3.0 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.01 * r.sym()
    });
    let pairs2 =
        make_pairs(&mut rng, &rows, (1, 2000), 3000, &|x, r| x[0] - x[1] + 4.0 * x[2] + 0.01 * r.sym());
    // Pairs touching the NULL / zero rows, so that the fit has something to skip.
    let mut pairs1 = pairs1;
    pairs1.extend([(7, 1, 0.3), (1, 42, 0.1), (31, 23, 0.2)]);
    load_pairs(&mut c, "pairs1", &pairs1);
    load_pairs(&mut c, "pairs2", &pairs2);
    c.batch_execute("ANALYZE").unwrap();

    c.batch_execute(
        "SELECT embedstack.create_model_set('qw', 'items', 'id', ARRAY['m1', 'm2', 'm3'], mode => 'query_weighted')",
    )
    .unwrap();
    let source0 = source_state(&mut c, "items");

    // Fit 1: the OLS solved here from the raw data; one weight clearly negative.
    let (f1, w1) = fit(&mut c, "qw", "pairs1");
    let (x1, y1) = usable(&rows, &pairs1);
    let want1 = ols(&x1, &y1).0;
    for k in 0..3 {
        assert!((w1[k] - want1[k]).abs() <= 1e-7, "fit 1 weight {k}: got {}, want {}", w1[k], want1[k]);
    }
    assert!(w1[1] < -1.5, "fit 1 must have a clearly negative weight: {w1:?}");
    let n_used: i64 = c
        .query_one("SELECT (diagnostics->>'n_used')::bigint FROM embedstack.fits WHERE id = $1", &[&f1])
        .unwrap()
        .get(0);
    assert_eq!(n_used as usize, x1.len());

    c.batch_execute("CALL embedstack.materialize('qw')").unwrap();
    assert_eq!(active_fit(&mut c, "qw"), Some(f1));
    let g1 = checked_served_generation(&mut c, "qw", "items");
    assert_eq!((g1.fit_id, g1.storage.as_str(), g1.width), (f1, "vector", 18), "{g1:?}");
    assert_eq!(source_state(&mut c, "items"), source0, "materialize must leave the source as it was");
    assert_freshness_triggers(&mut c, "items", "qw");
    // Stored: the unweighted unit blocks of every model, read through the view.
    let stored = served_by_id(&mut c, "qw");
    assert_eq!(stored.len(), rows.len());
    for (id, m) in &rows {
        let got = stored[id].as_ref().unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        assert_close_vec(got, &combined(m, &DIMS, &[1.0; 3]), 1e-6, &format!("stored row {id}"));
    }

    let gen_table = g1.relation.clone().unwrap();
    let snapshot = |c: &mut Client| {
        (source_state(c, "items"), generations(c, "qw"), generation_row_versions(c, &gen_table, "id"))
    };
    let before = snapshot(&mut c);
    assert_eq!(before.0.rows.len(), 2000);
    assert_eq!(before.2.len(), 2000);

    // Fit 2 and the switch: no row rewritten, only the active fit moves.
    let (f2, w2) = fit(&mut c, "qw", "pairs2");
    let (x2, y2) = usable(&rows, &pairs2);
    let want2 = ols(&x2, &y2).0;
    for k in 0..3 {
        assert!((w2[k] - want2[k]).abs() <= 1e-7, "fit 2 weight {k}: got {}, want {}", w2[k], want2[k]);
    }
    assert_eq!(active_fit(&mut c, "qw"), Some(f1), "fit alone must not change what is served");
    c.batch_execute(&format!("CALL embedstack.materialize('qw', {f2})")).unwrap();
    assert_eq!(active_fit(&mut c, "qw"), Some(f2));
    let after = snapshot(&mut c);
    assert_eq!(before.0, after.0, "a query-weighted refit must leave the source as it was");
    assert_eq!(before.1, after.1, "a query-weighted refit writes no new generation");
    assert_eq!(before.2, after.2, "a query-weighted refit must not rewrite any generation row");
    assert_eq!(served_generation(&mut c, "qw").map(|g| g.id), Some(g1.id));

    // Score weights of fit 2.
    let maxabs = w2.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let s: Vec<f64> = w2.iter().map(|w| w / maxabs).collect();

    for q in [1, 7, 23, 31, 42, 1000, 1999] {
        let qm = &rows[&q];
        let qv = format!("embedstack.query_vector('qw', {})", models_sql(qm));
        // The query vector: concat of s_k · normalise(q_k); key form = array form.
        let by_array: Vec<f32> = c.query_one(&format!("SELECT ({qv})::real[]"), &[]).unwrap().get(0);
        assert_close_vec(&by_array, &combined(qm, &DIMS, &s), 1e-6, &format!("query vector of {q}"));
        let by_key: Vec<f32> = c
            .query_one(&format!("SELECT embedstack.query_vector('qw', {q}::int)::real[]"), &[])
            .unwrap()
            .get(0);
        assert_close_vec(&by_key, &by_array.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-7, "key form");

        // Every row's served score.
        let got: Vec<(i32, f64)> = c
            .query(
                &format!(
                    "WITH q AS MATERIALIZED (SELECT {qv} AS v)
                     SELECT i.id, (i.qw_combined <#> q.v)::float8 FROM items_qw i, q ORDER BY i.id"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(got.len(), rows.len());
        for (id, ip) in &got {
            let want = score(qm, &rows[id], &s);
            assert!((-ip - want).abs() <= 1e-5, "query {q}, row {id}: -(<#>) = {}, want {want}", -ip);
        }

        // Exact top-10 (sequential scan) against the top-10 by the score computed here.
        c.batch_execute("SET enable_indexscan = off").unwrap();
        let top: Vec<i32> = c
            .query(&format!("SELECT id FROM items_qw ORDER BY qw_combined <#> {qv} LIMIT 10"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        c.batch_execute("RESET enable_indexscan").unwrap();
        let mut want: Vec<(i32, f64)> = rows.iter().map(|(id, m)| (*id, score(qm, m, &s))).collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top.len(), 10);
        for (i, id) in top.iter().enumerate() {
            let sc = score(qm, &rows[id], &s);
            assert!(
                (sc - want[i].1).abs() <= 1e-5,
                "query {q}: rank {i} is row {id} (score {sc}), want score {} (row {})",
                want[i].1,
                want[i].0
            );
        }
        // Without near-ties at the boundary, the sets are equal.
        if want[9].1 - want[10].1 > 1e-5 {
            let a: HashSet<i32> = top.iter().copied().collect();
            let b: HashSet<i32> = want[..10].iter().map(|p| p.0).collect();
            assert_eq!(a, b, "query {q}: top-10 ids");
        }
    }

    // evaluate (fit 2 on pairs2): per-model and stacked correlations computed here.
    let ev: BTreeMap<String, (i64, Option<f64>, Option<f64>)> = c
        .query(
            "SELECT model, n, pearson, spearman FROM embedstack.evaluate('qw', 'pairs2', 'a', 'b', 'y')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    for k in 0..3 {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (a, b, t) in &pairs2 {
            if let Some(v) = cos(&rows[a][k], &rows[b][k]) {
                x.push(v);
                y.push(*t);
            }
        }
        let (n, p, sp) = ev[&format!("m{}", k + 1)];
        assert_eq!(n as usize, x.len(), "evaluate m{} n", k + 1);
        assert!((p.unwrap() - pearson(&x, &y)).abs() <= 1e-9, "evaluate m{} pearson", k + 1);
        assert!((sp.unwrap() - spearman(&x, &y)).abs() <= 1e-6, "evaluate m{} spearman", k + 1);
    }
    let stack: Vec<f64> = pairs2.iter().map(|(a, b, _)| score(&rows[a], &rows[b], &s)).collect();
    let ys: Vec<f64> = pairs2.iter().map(|p| p.2).collect();
    let (n, p, sp) = ev["(stack)"];
    assert_eq!(n as usize, pairs2.len());
    assert!((p.unwrap() - pearson(&stack, &ys)).abs() <= 1e-9, "evaluate (stack) pearson");
    assert!((sp.unwrap() - spearman(&stack, &ys)).abs() <= 1e-6, "evaluate (stack) spearman");
    eprintln!("query_weighted: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 2. HNSW recall
// ---------------------------------------------------------------------------------------

/// The served HNSW index finds the exact inner-product neighbours: on 50,000 clustered rows
/// (three models of 16/12/8 dimensions, 200 centres + uniform noise, generated server-side
/// with `setseed`; 2% of the rows miss model 3), symmetric mode, the index's top-10 for 62
/// query rows has mean recall@10
/// ≥ 0.95 against the exact top-10 of a sequential scan, and that exact top-10 is the top-10
/// by the weighted cosine sum computed here from the raw vectors. The served query over the view
/// `big_hs` plans as an `Index Scan using big_hs_g<id>_hnsw` (the generation's index) with
/// default planner settings; the generation stores `vector(36)`, the view serves `vector`.
///
/// For the index side the test sets `enable_seqscan = off` (to be sure the index answers) and
/// `hnsw.ef_search = 100` (pgvector's default is 40; the recall target is stated for 100).
#[test]
fn hnsw_recall_at_10_against_exact_search_on_50k_rows() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_hnsw_recall");
    const DIMS: [usize; 3] = [16, 12, 8];
    c.batch_execute(
        "SELECT setseed(0.42);
         CREATE TABLE centres AS
           SELECT md.m, ce AS c, array_agg((random() * 2 - 1)::real ORDER BY g) AS v
             FROM (VALUES (1, 16), (2, 12), (3, 8)) md(m, d), generate_series(0, 199) ce,
                  generate_series(1, md.d) g
            GROUP BY md.m, ce;
         CREATE TABLE noisy AS
           SELECT i, a.m, array_agg((ce.v[g] + 0.5 * (random() * 2 - 1))::real ORDER BY g) AS v
             FROM generate_series(1, 50000) i,
                  LATERAL (VALUES (1, i % 200), (2, i % 200), (3, (i / 250) % 200)) a(m, c)
                  JOIN centres ce ON ce.m = a.m AND ce.c = a.c,
                  generate_series(1, cardinality(ce.v)) g
            GROUP BY i, a.m;
         CREATE TABLE big (id int PRIMARY KEY, m1 vector(16), m2 vector(12), m3 vector(8));
         INSERT INTO big
           SELECT n1.i, n1.v::vector(16), n2.v::vector(12), n3.v::vector(8)
             FROM noisy n1 JOIN noisy n2 ON n2.i = n1.i AND n2.m = 2 JOIN noisy n3 ON n3.i = n1.i AND n3.m = 3
            WHERE n1.m = 1;
         DROP TABLE noisy;
         -- 2% of the rows miss model 3: their combined vectors are shorter, so inner-product
         -- order differs from cosine order.
         UPDATE big SET m3 = NULL WHERE id % 50 = 0;
         -- Half the pairs within a cluster of models 1-2, half random.
         CREATE TABLE bpairs AS
           SELECT a, CASE WHEN j % 2 = 0 THEN 1 + ((a - 1 + 200 * (1 + (random() * 100)::int)) % 50000)
                          ELSE 1 + (random() * 49999)::int END AS b
             FROM (SELECT j, 1 + (random() * 49999)::int AS a FROM generate_series(1, 4000) j) s;
         ALTER TABLE bpairs ADD COLUMN y float8;
         UPDATE bpairs p SET y = 1.0 * embedstack.cosine(x.m1, z.m1) + 0.6 * embedstack.cosine(x.m2, z.m2)
                               + 0.3 * embedstack.cosine(x.m3, z.m3) + 0.02 * (random() * 2 - 1)
           FROM big x, big z WHERE x.id = p.a AND z.id = p.b;
         ANALYZE;",
    )
    .unwrap();
    eprintln!("hnsw: data generated in {:.1}s", t0.elapsed().as_secs_f64());

    c.batch_execute("SELECT embedstack.create_model_set('hs', 'big', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let (_, w) = fit(&mut c, "hs", "bpairs");
    let mult = symmetric_multipliers(&w, 0.05);
    assert!(mult.iter().all(|&m| m > 0.0), "test precondition: every model kept, weights {w:?}");
    let s: Vec<f64> = mult.iter().map(|m| m * m).collect();
    let t1 = Instant::now();
    c.batch_execute("CALL embedstack.materialize('hs')").unwrap();
    eprintln!("hnsw: materialize (50k rows + index) {:.1}s", t1.elapsed().as_secs_f64());
    c.batch_execute("ANALYZE").unwrap();

    let width: usize = DIMS.iter().sum();
    let g = checked_served_generation(&mut c, "hs", "big");
    assert_eq!((g.storage.as_str(), g.width as usize), ("vector", width), "{g:?}");
    let types: Vec<String> = [("big_hs", "hs_combined"), (g.relation.as_deref().unwrap(), "hs_combined")]
        .iter()
        .map(|(rel, col)| {
            c.query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = $1::text::regclass AND attname = $2 AND NOT attisdropped",
                &[rel, col],
            )
            .unwrap()
            .get(0)
        })
        .collect();
    assert_eq!(types, ["vector".to_string(), format!("vector({width})")], "view, generation");
    assert_eq!(columns(&mut c, "big"), ["id", "m1", "m2", "m3"], "the source gets no column");
    let index = g.index_name.clone().unwrap();

    // The raw vectors, for the independent ranking.
    let rows: BTreeMap<i32, Models> = c
        .query("SELECT id, m1::real[], m2::real[], m3::real[] FROM big", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), vec![r.get(1), r.get(2), r.get(3)]))
        .collect();
    assert_eq!(rows.len(), 50000);

    // The served query plans as an HNSW index scan with default settings.
    let q1 = &rows[&1];
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN SELECT id FROM big_hs ORDER BY hs_combined <#> embedstack.query_vector('hs', {}) LIMIT 10",
                models_sql(q1)
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {index}"))), "{plan:#?}");
    let plan: Vec<String> = c
        .query(
            "EXPLAIN SELECT id FROM big_hs ORDER BY hs_combined <#> embedstack.query_vector('hs', $1::int) LIMIT 10",
            &[&1i32],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {index}"))), "{plan:#?}");

    let queries: Vec<i32> = (0..60).map(|k| 1 + k * 833).chain([50, 25000]).collect();
    let mut recall_sum = 0.0;
    let mut worst = (1.0f64, 0);
    for &q in &queries {
        c.batch_execute("SET enable_indexscan = off; RESET enable_seqscan").unwrap();
        let exact: Vec<i32> = c
            .query(
                "SELECT id FROM big_hs ORDER BY hs_combined <#> (SELECT embedstack.query_vector('hs', $1::int)) LIMIT 10",
                &[&q],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        c.batch_execute("RESET enable_indexscan; SET enable_seqscan = off; SET hnsw.ef_search = 100")
            .unwrap();
        let approx: Vec<i32> = c
            .query(
                "SELECT id FROM big_hs ORDER BY hs_combined <#> embedstack.query_vector('hs', $1::int) LIMIT 10",
                &[&q],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        c.batch_execute("RESET enable_seqscan; RESET hnsw.ef_search").unwrap();

        // The exact answer is the top-10 by the weighted cosine sum (scores compared, so
        // ties cannot make this flaky).
        let qm = &rows[&q];
        let mut want: Vec<f64> = rows.values().map(|m| score(qm, m, &s)).collect();
        want.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(exact.len(), 10);
        for (i, id) in exact.iter().enumerate() {
            let sc = score(qm, &rows[id], &s);
            assert!(
                (sc - want[i]).abs() <= 1e-5,
                "query {q}: exact rank {i} row {id} score {sc}, want {}",
                want[i]
            );
        }

        let e: HashSet<i32> = exact.iter().copied().collect();
        let hit = approx.iter().filter(|id| e.contains(id)).count();
        let r = hit as f64 / 10.0;
        recall_sum += r;
        if r < worst.0 {
            worst = (r, q);
        }
    }
    let recall = recall_sum / queries.len() as f64;
    eprintln!(
        "hnsw: mean recall@10 = {recall:.4} over {} queries (worst {} at row {}); {:.1}s",
        queries.len(),
        worst.0,
        worst.1,
        t0.elapsed().as_secs_f64()
    );
    assert!(recall >= 0.95, "mean recall@10 {recall} < 0.95");
}

// ---------------------------------------------------------------------------------------
// 2b. The README's query
// ---------------------------------------------------------------------------------------

/// The README's query, `SELECT … FROM items s JOIN items_stack v USING (id) ORDER BY
/// v.stack_combined <#> embedstack.query_vector('stack', <key>) LIMIT 10`, on 4000 rows
/// (models of 8/6/4 dimensions, symmetric mode, a source column `category` = id mod 7):
/// * its plan is an `Index Scan using <generation>_hnsw` of the served generation (default
///   planner settings), and so is the plan with `WHERE s.category = 3` under
///   `SET hnsw.iterative_scan = strict_order` (the scan goes on until 10 rows pass the filter);
/// * for several query rows, the filtered answer through the index (the plan of that very
///   statement checked, with `hnsw.ef_search = 200`; above about 400 the planner prefers to sort
///   every row) equals exact search (`enable_indexscan = off`: every row ordered), and that exact
///   answer is the top-10 of category 3 by the weighted cosine sum computed here from the raw
///   vectors (scores compared; ids too where no near-tie could reorder them).
#[test]
fn readme_query_uses_the_generation_index_and_filters_like_exact_search() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_readme_query");
    const DIMS: [usize; 3] = [8, 6, 4];
    let mut rng = Rng(0x5EED_0012);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=4000 {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    rows.get_mut(&11).unwrap()[2] = None;
    load_vectors(&mut c, "items", &DIMS, &rows, "");
    c.batch_execute("ALTER TABLE items ADD COLUMN category int; UPDATE items SET category = id % 7").unwrap();
    let pairs = make_pairs(&mut rng, &rows, (1, 4000), 3000, &|x, r| {
        1.0 * x[0] + 0.6 * x[1] + 0.3 * x[2] + 0.01 * r.sym()
    });
    load_pairs(&mut c, "pairs", &pairs);
    c.batch_execute("SELECT embedstack.create_model_set('stack', 'items', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let (_, w) = fit(&mut c, "stack", "pairs");
    let mult = symmetric_multipliers(&w, 0.05);
    assert!(mult.iter().all(|&m| m > 0.0), "test precondition: every model kept, weights {w:?}");
    let s: Vec<f64> = mult.iter().map(|m| m * m).collect();
    c.batch_execute("CALL embedstack.materialize('stack')").unwrap();
    c.batch_execute("ANALYZE").unwrap();
    let g = checked_served_generation(&mut c, "stack", "items");
    let index = g.index_name.clone().unwrap();

    let readme = |filter: &str, key: i32| {
        format!(
            "SELECT s.id FROM items s JOIN items_stack v USING (id) {filter}
              ORDER BY v.stack_combined <#> embedstack.query_vector('stack', {key}) LIMIT 10"
        )
    };
    let uses_index = |c: &mut Client, sql: &str| -> (bool, Vec<String>) {
        let plan: Vec<String> =
            c.query(&format!("EXPLAIN {sql}"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
        (plan.iter().any(|l| l.contains(&format!("Index Scan using {index} "))), plan)
    };
    let (ok, plan) = uses_index(&mut c, &readme("", 42));
    assert!(ok, "the README query with default settings:\n{}", plan.join("\n"));
    let filtered = |key: i32| readme("WHERE s.category = 3", key);
    c.batch_execute("SET hnsw.iterative_scan = strict_order").unwrap();
    let (ok, plan) = uses_index(&mut c, &filtered(42));
    assert!(ok, "the filtered README query under strict_order:\n{}", plan.join("\n"));

    for q in [42, 11, 777, 2024, 3999] {
        // Through the index: the plan of exactly this statement, then its answer.
        c.batch_execute("SET hnsw.ef_search = 200").unwrap();
        let (ok, plan) = uses_index(&mut c, &filtered(q));
        assert!(ok, "query {q}: the filtered query must use the index:\n{}", plan.join("\n"));
        let approx: Vec<i32> = c.query(&filtered(q), &[]).unwrap().iter().map(|r| r.get(0)).collect();
        c.batch_execute("RESET hnsw.ef_search").unwrap();

        // Exact search: every row ordered, no index.
        c.batch_execute("SET enable_indexscan = off").unwrap();
        let (ok, plan) = uses_index(&mut c, &filtered(q));
        assert!(!ok, "exact search must not use the index:\n{}", plan.join("\n"));
        let exact: Vec<i32> = c.query(&filtered(q), &[]).unwrap().iter().map(|r| r.get(0)).collect();
        c.batch_execute("RESET enable_indexscan").unwrap();

        // The top-10 of category 3 by the score computed here.
        let qm = &rows[&q];
        let mut want: Vec<(i32, f64)> =
            rows.iter().filter(|(id, _)| *id % 7 == 3).map(|(id, m)| (*id, score(qm, m, &s))).collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!((exact.len(), approx.len()), (10, 10), "query {q}");
        for (i, id) in exact.iter().enumerate() {
            assert_eq!(id % 7, 3, "query {q}: row {id} is not of category 3");
            let sc = score(qm, &rows[id], &s);
            assert!(
                (sc - want[i].1).abs() <= 1e-5,
                "query {q}: exact rank {i} is row {id} (score {sc}), want score {} (row {})",
                want[i].1,
                want[i].0
            );
        }
        for (i, id) in approx.iter().enumerate() {
            let sc = score(qm, &rows[id], &s);
            assert!(
                (sc - want[i].1).abs() <= 1e-5,
                "query {q}: the index's rank {i} is row {id} (score {sc}), exact search has row {} (score {}); \
                 index {approx:?}, exact {exact:?}",
                exact[i],
                want[i].1
            );
        }
        let clear = (0..10).all(|i| want[i].1 - want[i + 1].1 > 1e-5);
        if clear {
            assert_eq!(approx, exact, "query {q}: the index's answer vs exact search");
        }
    }
    eprintln!("readme query: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 3. The freshness trigger
// ---------------------------------------------------------------------------------------

/// After materialize, rows written by INSERT, COPY and UPDATE (one model, several models, a
/// model set to NULL, to a zero vector, every model NULL, a non-model column, a changed key) and
/// removed by DELETE have, through the served view, exactly the combined vectors a fresh
/// materialisation gives: compared per id with (a) the closed form computed here from the final
/// raw data and the fit's weights (symmetric mode, one model below the threshold so it is left
/// out) and (b) a second model set materialised from scratch over a copy of the final table.
/// The freshness triggers are the four documented statement-level triggers (no row trigger),
/// the source's columns are the user's only (dropped ones included), and an UPDATE of a
/// non-model column rewrites no generation row.
#[test]
fn trigger_keeps_combined_vectors_equal_to_a_fresh_materialisation() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_trigger");
    const DIMS: [usize; 3] = [8, 6, 4];
    let mut rng = Rng(0x5EED_0003);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=300 {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    rows.get_mut(&3).unwrap()[1] = None;
    load_vectors(&mut c, "t", &DIMS, &rows, "");
    c.batch_execute("ALTER TABLE t ADD COLUMN label text").unwrap();
    // Pairs only among ids 1..200, which the test never modifies: a fit over the final data
    // sees the same features, hence the same weights.
    let pairs = make_pairs(&mut rng, &rows, (1, 200), 1500, &|x, r| {
        2.0 * x[0] + 1.0 * x[1] + 0.02 * x[2] + 0.002 * r.sym()
    });
    load_pairs(&mut c, "p", &pairs);
    c.batch_execute("SELECT embedstack.create_model_set('trig', 't', 'id', ARRAY['m1', 'm2', 'm3'])")
        .unwrap();
    let attributes0 = attributes(&mut c, "t");
    let (_, w) = fit(&mut c, "trig", "p");
    let mult = symmetric_multipliers(&w, 0.05);
    assert!(
        mult[0] > 0.0 && mult[1] > 0.0 && mult[2] == 0.0,
        "test precondition: model 3 left out, weights {w:?}"
    );
    let width: usize = (0..3).filter(|&k| mult[k] > 0.0).map(|k| DIMS[k]).sum();
    c.batch_execute("CALL embedstack.materialize('trig')").unwrap();
    let g = checked_served_generation(&mut c, "trig", "t");
    let gen_table = g.relation.clone().unwrap();
    assert_freshness_triggers(&mut c, "t", "trig");
    let ours = extension_triggers(&mut c, "t");
    assert_eq!(ours.len(), 4, "the four freshness triggers and nothing else of the extension: {ours:?}");

    // Writes after materialize, mirrored in `rows`.
    let set = |c: &mut Client, rows: &mut BTreeMap<i32, Models>, id: i32, k: usize, v: Option<Vec<f32>>| {
        c.batch_execute(&format!("UPDATE t SET m{} = {} WHERE id = {id}", k + 1, vec_sql(&v))).unwrap();
        rows.get_mut(&id).unwrap()[k] = v;
    };
    let v = rng.vec(8);
    set(&mut c, &mut rows, 201, 0, Some(v));
    set(&mut c, &mut rows, 202, 1, None);
    set(&mut c, &mut rows, 203, 0, Some(vec![0.0; 8]));
    set(&mut c, &mut rows, 204, 2, None); // left-out model: combined unchanged but recomputed
    for k in 0..3 {
        set(&mut c, &mut rows, 250, k, None);
    }
    set(&mut c, &mut rows, 3, 1, None); // already NULL: a no-op update
                                        // Several models of several rows in one statement.
    let mut values = Vec::new();
    for id in 210..=230 {
        let (a, b) = (rng.vec(8), rng.vec(6));
        values.push(format!("({id}, '{}'::vector, '{}'::vector)", lit(&a), lit(&b)));
        let r = rows.get_mut(&id).unwrap();
        r[0] = Some(a);
        r[1] = Some(b);
    }
    c.batch_execute(&format!(
        "UPDATE t SET m1 = v.m1, m2 = v.m2 FROM (VALUES {}) v(id, m1, m2) WHERE t.id = v.id",
        values.join(", ")
    ))
    .unwrap();
    // A non-model column: no generation row is rewritten.
    let gen_rows = generation_row_versions(&mut c, &gen_table, "id");
    c.batch_execute("UPDATE t SET label = 'relabelled' WHERE id BETWEEN 240 AND 245").unwrap();
    assert_eq!(
        generation_row_versions(&mut c, &gen_table, "id"),
        gen_rows,
        "an UPDATE of a non-model column rewrote generation rows"
    );
    // A changed key, and deleted rows.
    c.batch_execute("UPDATE t SET id = 1290 WHERE id = 290").unwrap();
    let moved = rows.remove(&290).unwrap();
    rows.insert(1290, moved);
    c.batch_execute("DELETE FROM t WHERE id BETWEEN 260 AND 265").unwrap();
    for id in 260..=265 {
        rows.remove(&id);
    }
    // New rows: complete, a NULL model, a zero vector, every model NULL; then two by COPY.
    let mut inserts = Vec::new();
    for id in 301..=320 {
        let mut m: Models = DIMS.iter().map(|&d| Some(rng.vec(d))).collect();
        match id {
            305 => m[0] = None,
            306 => m[1] = Some(vec![0.0; 6]),
            307 => m = vec![None, None, None],
            _ => {}
        }
        let vals: Vec<String> = m.iter().map(vec_sql).collect();
        inserts.push(format!("({id}, {})", vals.join(", ")));
        rows.insert(id, m);
    }
    c.batch_execute(&format!("INSERT INTO t (id, m1, m2, m3) VALUES {}", inserts.join(", "))).unwrap();
    let mut copy = c.copy_in("COPY t (id, m1, m2, m3) FROM STDIN").unwrap();
    for id in [321, 322] {
        let mut m: Models = DIMS.iter().map(|&d| Some(rng.vec(d))).collect();
        if id == 322 {
            m[1] = None;
        }
        let fields: Vec<String> = m.iter().map(copy_field).collect();
        writeln!(copy, "{id}\t{}", fields.join("\t")).unwrap();
        rows.insert(id, m);
    }
    copy.finish().unwrap();
    assert_eq!(attributes(&mut c, "t"), attributes0, "the source's columns are the user's only");

    // An inserted row: not NULL, the served dimension.
    for id in [305, 307, 321, 322, 1290] {
        let dim: Option<i32> = c
            .query_one(&format!("SELECT vector_dims(trig_combined) FROM t_trig WHERE id = {id}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(
            dim.map(|d| d as usize),
            Some(width),
            "inserted row {id}: combined NULL or of the wrong dimension"
        );
    }

    // (a) The closed form.
    let got = served_by_id(&mut c, "trig");
    assert_eq!(got.len(), rows.len());
    for (id, m) in &rows {
        let g = got[id].as_ref().unwrap_or_else(|| panic!("row {id}: combined is NULL"));
        assert_close_vec(g, &combined(m, &DIMS, &mult), 1e-6, &format!("row {id} vs closed form"));
    }

    // (b) A fresh materialisation over a copy of the final data.
    c.batch_execute(
        "CREATE TABLE t2 AS SELECT id, label, m1, m2, m3 FROM t; ALTER TABLE t2 ADD PRIMARY KEY (id);
         SELECT embedstack.create_model_set('trig2', 't2', 'id', ARRAY['m1', 'm2', 'm3'])",
    )
    .unwrap();
    let (_, w2) = fit(&mut c, "trig2", "p");
    for k in 0..3 {
        assert!((w2[k] - w[k]).abs() <= 1e-9, "same pairs, same features: weights {w:?} vs {w2:?}");
    }
    c.batch_execute("CALL embedstack.materialize('trig2')").unwrap();
    let fresh = served_by_id(&mut c, "trig2");
    assert_eq!(fresh.len(), got.len());
    for (id, g) in &got {
        let f = fresh[id].as_ref().unwrap_or_else(|| panic!("t2 row {id}: combined is NULL"));
        let f64s: Vec<f64> = f.iter().map(|&v| v as f64).collect();
        assert_close_vec(g.as_ref().unwrap(), &f64s, 1e-6, &format!("row {id} vs fresh materialisation"));
    }
    eprintln!("trigger: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 4. Bad input
// ---------------------------------------------------------------------------------------

/// A small table `u(id, m1 vector(4), m2 vector(3), txt text, nokey int)` and pairs `up`.
fn small_setup(c: &mut Client, seed: u64) -> BTreeMap<i32, Models> {
    let mut rng = Rng(seed);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=60 {
        rows.insert(id, vec![Some(rng.vec(4)), Some(rng.vec(3))]);
    }
    load_vectors(c, "u", &[4, 3], &rows, "");
    c.batch_execute("ALTER TABLE u ADD COLUMN txt text DEFAULT 'x', ADD COLUMN nokey int").unwrap();
    let pairs = make_pairs(&mut rng, &rows, (1, 60), 300, &|x, r| x[0] + 0.5 * x[1] + 0.01 * r.sym());
    load_pairs(c, "up", &pairs);
    rows
}

/// Unknown names and catalog rules: an unknown model set in fit / materialize /
/// query_vector (both forms) / evaluate / drop_model_set is 42704; an unknown key or model
/// column 42703; a text model column 42804; a key without a unique index 42P10; a duplicate
/// model set 42710.
#[test]
fn bad_input_unknown_names_and_catalog_rules() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_bad_names");
    small_setup(&mut c, 0x5EED_0004);
    expect_code(&mut c, "SELECT embedstack.fit('nope', 'up', 'a', 'b', 'y')", "42704");
    expect_code(&mut c, "CALL embedstack.materialize('nope')", "42704");
    expect_code(&mut c, "SELECT embedstack.query_vector('nope', ARRAY['[1,0,0,0]'::vector, NULL])", "42704");
    expect_code(&mut c, "SELECT embedstack.query_vector('nope', 1::int)", "42704");
    expect_code(&mut c, "SELECT * FROM embedstack.evaluate('nope', 'up', 'a', 'b', 'y')", "42704");
    expect_code(&mut c, "SELECT embedstack.drop_model_set('nope')", "42704");
    expect_code(&mut c, "SELECT embedstack.drop_model_set('nope', true)", "42704");

    expect_code(&mut c, "SELECT embedstack.create_model_set('s', 'u', 'id', ARRAY['m1', 'zz'])", "42703");
    expect_code(&mut c, "SELECT embedstack.create_model_set('s', 'u', 'zz', ARRAY['m1', 'm2'])", "42703");
    let e = expect_code(
        &mut c,
        "SELECT embedstack.create_model_set('s', 'u', 'id', ARRAY['m1', 'txt'])",
        "42804",
    );
    assert!(message(&e).contains("txt"), "{}", message(&e));
    expect_code(&mut c, "SELECT embedstack.create_model_set('s', 'u', 'nokey', ARRAY['m1', 'm2'])", "42P10");
    assert_eq!(
        c.query_one("SELECT count(*) FROM embedstack.model_sets", &[]).unwrap().get::<_, i64>(0),
        0,
        "failed creations leave no catalog row"
    );
    c.batch_execute("SELECT embedstack.create_model_set('s', 'u', 'id', ARRAY['m1', 'm2'])").unwrap();
    expect_code(
        &mut c,
        "SELECT embedstack.create_model_set('s', 'u', 'id', ARRAY['m1'], combined_column => 'other')",
        "42710",
    );
    // A known set with an unknown fit id.
    expect_code(&mut c, "CALL embedstack.materialize('s', 999999)", "42704");
    // A known set, not materialised yet: query_vector has nothing to serve.
    expect_code(&mut c, "SELECT embedstack.query_vector('s', 1::int)", "55000");
    c.batch_execute("SELECT embedstack.drop_model_set('s')").unwrap();
    expect_code(&mut c, "SELECT embedstack.drop_model_set('s')", "42704");
    eprintln!("bad names: {:.1}s", t0.elapsed().as_secs_f64());
}

/// A stored `real[]` vector with the wrong dimension (model set over `real[]` columns with
/// `model_dims`): a fit whose pairs reach it and a materialize both raise 22000 naming the
/// row's key (4242); the failed materialize serves nothing (no active fit, no served
/// generation, no view) and leaves the source's columns as they were.
#[test]
fn bad_input_wrong_dimension_row_names_its_key() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_bad_dim");
    let mut rng = Rng(0x5EED_0005);
    c.batch_execute("CREATE TABLE r (id int PRIMARY KEY, a real[], b real[])").unwrap();
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in (1..=40).chain([4242]) {
        let a = if id == 4242 { rng.vec(3) } else { rng.vec(4) };
        rows.insert(id, vec![Some(a), Some(rng.vec(3))]);
    }
    let mut w = c.copy_in("COPY r (id, a, b) FROM STDIN").unwrap();
    for (id, m) in &rows {
        let arr = |v: &Option<Vec<f32>>| {
            let p: Vec<String> = v.as_ref().unwrap().iter().map(|x| format!("{x}")).collect();
            format!("{{{}}}", p.join(","))
        };
        writeln!(w, "{id}\t{}\t{}", arr(&m[0]), arr(&m[1])).unwrap();
    }
    w.finish().unwrap();
    let mut pairs = Vec::new();
    for _ in 0..200 {
        let (a, b) = (rng.range(1, 40), rng.range(1, 40));
        if a != b {
            let x0 = cos(&rows[&a][0], &rows[&b][0]).unwrap();
            let x1 = cos(&rows[&a][1], &rows[&b][1]).unwrap();
            pairs.push((a, b, x0 + 0.5 * x1 + 0.01 * rng.sym()));
        }
    }
    load_pairs(&mut c, "p_ok", &pairs);
    pairs.push((4242, 1, 0.5));
    load_pairs(&mut c, "p_bad", &pairs);
    c.batch_execute(
        "SELECT embedstack.create_model_set('rd', 'r', 'id', ARRAY['a', 'b'], model_dims => ARRAY[4, 3])",
    )
    .unwrap();

    let e = expect_code(&mut c, "SELECT embedstack.fit('rd', 'p_bad', 'a', 'b', 'y')", "22000");
    assert!(message(&e).contains("4242"), "fit error must name the key: {}", message(&e));
    assert_eq!(c.query_one("SELECT count(*) FROM embedstack.fits", &[]).unwrap().get::<_, i64>(0), 0);
    fit(&mut c, "rd", "p_ok");
    let attributes0 = attributes(&mut c, "r");
    let e = expect_code(&mut c, "CALL embedstack.materialize('rd')", "22000");
    assert!(message(&e).contains("4242"), "materialize error must name the key: {}", message(&e));
    assert_eq!(active_fit(&mut c, "rd"), None);
    assert_eq!(served_generation(&mut c, "rd"), None);
    assert!(
        generations(&mut c, "rd").iter().all(|g| g.state == "building"),
        "{:?}",
        generations(&mut c, "rd")
    );
    assert!(!view_exists(&mut c, "rd") && !relation_exists(&mut c, "r_rd"), "no view is served");
    assert_eq!(attributes(&mut c, "r"), attributes0);
    eprintln!("bad dim: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Too wide: three 1500-dimension models in query-weighted mode (4500 > 4000) and two in
/// `storage => 'vector'` (3000 > 2000) make create_model_set raise 54000 (since 0.4.0) and record
/// nothing (no model set, no view, the source's columns unchanged); the same two models with
/// `storage => 'auto'` are served as `halfvec` (a `halfvec(3000)` generation) holding the unit
/// blocks (checked against the raw data).
#[test]
fn bad_input_too_wide_combined_vector() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_too_wide");
    c.batch_execute(
        "SELECT setseed(0.7);
         CREATE TABLE w (id int PRIMARY KEY, m1 vector(1500), m2 vector(1500), m3 vector(1500));
         INSERT INTO w
           SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 1500) WHERE i > 0)::vector(1500),
                     (SELECT array_agg(random() - 0.5) FROM generate_series(1, 1500) WHERE i > 0)::vector(1500),
                     (SELECT array_agg(random() - 0.5) FROM generate_series(1, 1500) WHERE i > 0)::vector(1500)
             FROM generate_series(1, 30) i;
         CREATE TABLE wp AS SELECT 1 + (j % 30) AS a, 1 + ((j * 7 + 3) % 30) AS b, random() AS y
           FROM generate_series(1, 200) j WHERE (j % 30) <> ((j * 7 + 3) % 30);",
    )
    .unwrap();
    // Query-weighted: every model is stored, so the width is known when the model set is created:
    // refused there (0.4.0; 0.3.x accepted it and failed at the first materialise, P8), with a
    // hint for query-weighted sets; nothing is recorded, nothing served, the source unchanged.
    let attributes0 = attributes(&mut c, "w");
    let e = expect_code(
        &mut c,
        "SELECT embedstack.create_model_set('wide', 'w', 'id', ARRAY['m1', 'm2', 'm3'], mode => 'query_weighted')",
        "54000",
    );
    eprintln!("54000 message: {}", message(&e));
    assert!(
        all_text(&e).contains("4500")
            && all_text(&e).contains("symmetric")
            && all_text(&e).contains("dims => N"),
        "{}",
        all_text(&e)
    );
    let e = expect_code(
        &mut c,
        "SELECT embedstack.create_model_set('wv', 'w', 'id', ARRAY['m1', 'm2'], mode => 'query_weighted', storage => 'vector')",
        "54000",
    );
    assert!(all_text(&e).contains("halfvec"), "the hint names halfvec: {}", all_text(&e));
    let n: i64 = c.query_one("SELECT count(*) FROM embedstack.model_sets", &[]).unwrap().get(0);
    assert_eq!(n, 0, "no model set recorded");
    assert!(!relation_exists(&mut c, "w_wide") && !relation_exists(&mut c, "w_wv"), "no view");
    assert_eq!(attributes(&mut c, "w"), attributes0);

    // Within halfvec's limit: served as halfvec(3000).
    c.batch_execute(
        "SELECT embedstack.create_model_set('wh', 'w', 'id', ARRAY['m1', 'm2'], mode => 'query_weighted')",
    )
    .unwrap();
    let (fh, _) = fit(&mut c, "wh", "wp");
    c.batch_execute("CALL embedstack.materialize('wh')").unwrap();
    assert_eq!(active_fit(&mut c, "wh"), Some(fh));
    let g = checked_served_generation(&mut c, "wh", "w");
    assert_eq!((g.storage.as_str(), g.width), ("halfvec", 3000), "{g:?}");
    let r = c
        .query_one(
            "SELECT (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                      WHERE attrelid = $1::text::regclass AND attname = 'wh_combined' AND NOT attisdropped),
                    (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                      WHERE attrelid = 'w_wh'::regclass AND attname = 'wh_combined' AND NOT attisdropped),
                    (SELECT served_storage FROM embedstack.model_sets WHERE name = 'wh')",
            &[&g.relation.as_deref().unwrap()],
        )
        .unwrap();
    assert_eq!(r.get::<_, Option<String>>(0).as_deref(), Some("halfvec(3000)"), "the generation");
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("halfvec"), "the view");
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("halfvec"));
    assert_eq!(attributes(&mut c, "w"), attributes0, "the source gets no column");
    let mut n_rows = 0;
    for row in c
        .query(
            "SELECT id, m1::real[], m2::real[], v.wh_combined::real[] FROM w JOIN w_wh v USING (id) ORDER BY id",
            &[],
        )
        .unwrap()
    {
        n_rows += 1;
        let id: i32 = row.get(0);
        let m: Models = vec![row.get(1), row.get(2)];
        let want = combined(&m, &[1500, 1500], &[1.0, 1.0]);
        let got: Vec<f32> = row.get(3);
        assert_eq!(got.len(), 3000);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // halfvec: 11 significant bits.
            assert!((*g as f64 - w).abs() <= 1e-3 * w.abs() + 1e-7, "row {id} element {i}: {g} vs {w}");
        }
    }
    assert_eq!(n_rows, 30, "every row served");
    eprintln!("too wide: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Symmetric mode with every fitted weight ≤ 0 (target `−(cos1 + cos2)/2`): materialize
/// raises 22023 with a hint, with the fit id given and with the latest fit, and what is
/// served does not change: the active fit, the multipliers, the served generation, every stored
/// combined vector (every generation row's ctid/xmin), no new generation is left behind, and
/// the source keeps its columns.
#[test]
fn bad_input_symmetric_without_positive_weight_changes_nothing() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_no_positive");
    let mut rng = Rng(0x5EED_0006);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=150 {
        rows.insert(id, vec![Some(rng.vec(6)), Some(rng.vec(5))]);
    }
    load_vectors(&mut c, "s", &[6, 5], &rows, "");
    let pos = make_pairs(&mut rng, &rows, (1, 150), 600, &|x, r| x[0] + 0.7 * x[1] + 0.01 * r.sym());
    let neg = make_pairs(&mut rng, &rows, (1, 150), 600, &|x, r| -(x[0] + x[1]) / 2.0 + 0.01 * r.sym());
    load_pairs(&mut c, "pos", &pos);
    load_pairs(&mut c, "neg", &neg);
    c.batch_execute("SELECT embedstack.create_model_set('sym', 's', 'id', ARRAY['m1', 'm2'])").unwrap();
    let (f1, w1) = fit(&mut c, "sym", "pos");
    c.batch_execute("CALL embedstack.materialize('sym')").unwrap();
    let mult = symmetric_multipliers(&w1, 0.05);
    let g = checked_served_generation(&mut c, "sym", "s");
    let gen_table = g.relation.clone().unwrap();
    let served = served_by_id(&mut c, "sym");
    assert_eq!(served.len(), rows.len());
    for (id, m) in &rows {
        assert_close_vec(
            served[id].as_ref().unwrap(),
            &combined(m, &[6, 5], &mult),
            1e-6,
            &format!("row {id}"),
        );
    }
    type Catalog =
        (Option<i64>, Option<Vec<f64>>, Option<String>, Option<String>, Option<i64>, Vec<Generation>);
    let catalog = |c: &mut Client| -> Catalog {
        let r = c
            .query_one(
                "SELECT active_fit, served_multipliers, served_storage, served_index::text, served_generation
                   FROM embedstack.model_sets WHERE name = 'sym'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), generations(c, "sym"))
    };
    let before = catalog(&mut c);
    assert_eq!((before.0, before.4), (Some(f1), Some(g.id)));
    let gen_rows = generation_row_versions(&mut c, &gen_table, "id");

    let (f2, w2) = fit(&mut c, "sym", "neg");
    assert!(w2.iter().all(|&x| x <= 0.0), "test precondition: no positive weight, {w2:?}");
    // The hint is checked last, so that the served-state checks below run either way.
    let mut no_hint = Vec::new();
    for sql in
        [format!("CALL embedstack.materialize('sym', {f2})"), "CALL embedstack.materialize('sym')".into()]
    {
        let e = expect_code(&mut c, &sql, "22023");
        let db = e.as_db_error().unwrap();
        if db.hint().is_none_or(|h| h.is_empty()) {
            no_hint.push(format!("{sql}: hint {:?}, detail {:?}", db.hint(), db.detail()));
        }
    }
    assert_eq!(catalog(&mut c), before, "the served state must not change, no generation is added");
    assert_eq!(served_by_id(&mut c, "sym"), served, "stored vectors must not change");
    assert_eq!(generation_row_versions(&mut c, &gen_table, "id"), gen_rows, "no generation row rewritten");
    let cols = columns(&mut c, "s");
    assert_eq!(cols, ["id", "m1", "m2"], "the source keeps its columns");
    assert!(no_hint.is_empty(), "22023 must carry a hint:\n{}", no_hint.join("\n"));
    eprintln!("no positive weight: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Injection attempts fail cleanly or are handled as plain names: column arguments such as
/// `m1; DROP TABLE t` or `"m1"` are unknown columns (42703 in create_model_set, a class-42
/// error in fit / evaluate), a pairs name with SQL in it is not a relation; a model set named
/// `x'); DROP TABLE t; --` and a combined column named `c"; DROP TABLE t; --` work end to end
/// (create, fit, materialize, query through the view `u_<name>` whose vector column has that
/// name, drop: view, generation tables and triggers gone). Afterwards `t` and the pairs table
/// still exist with all their rows and the source its columns.
#[test]
fn bad_input_injection_attempts_are_inert() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_injection");
    let rows = small_setup(&mut c, 0x5EED_0007);
    let exists = |c: &mut Client| -> (i64, i64) {
        let r = c.query_one("SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM up)", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let start = exists(&mut c);
    assert_eq!(start.0, 60);

    let create = |c: &mut Client, key: &str, models: &[&str]| -> postgres::Error {
        let models: Vec<String> = models.iter().map(|s| s.to_string()).collect();
        c.query_one(
            "SELECT embedstack.create_model_set('inj', 'u', $1::text::name, $2::text[]::name[])",
            &[&key, &models],
        )
        .expect_err("create_model_set must fail")
    };
    for (key, models) in [
        ("id", vec!["m1; DROP TABLE u", "m2"]),
        ("id", vec!["\"m1\"", "m2"]),
        ("id", vec!["m1", "m2\"); DROP TABLE u; --"]),
        ("id", vec!["m1", "m2) FROM u; DROP TABLE u; --"]),
        ("id; DROP TABLE u", vec!["m1", "m2"]),
        ("\"id\"", vec!["m1", "m2"]),
    ] {
        let e = create(&mut c, key, &models);
        assert_eq!(sqlstate(&e), "42703", "key {key:?}, models {models:?}: {}", message(&e));
        assert_eq!(exists(&mut c), start);
    }

    c.batch_execute("SELECT embedstack.create_model_set('ok', 'u', 'id', ARRAY['m1', 'm2'])").unwrap();
    let bad_fit = |c: &mut Client,
                   pairs: &str,
                   l: &str,
                   r: &str,
                   y: &str,
                   sw: Option<&str>|
     -> postgres::Error {
        c.query_one(
            "SELECT id FROM embedstack.fit('ok', $1::text::regclass, $2::text::name, $3::text::name, $4::text::name,
                                           sample_weight_column => $5::text::name)",
            &[&pairs, &l, &r, &y, &sw],
        )
        .expect_err("fit must fail")
    };
    for (pairs, l, r, y, sw) in [
        ("up", "a; DROP TABLE u", "b", "y", None),
        ("up", "a", "\"b\"", "y", None),
        ("up", "a", "b", "y) FROM up; DROP TABLE u; --", None),
        ("up", "a", "b", "y", Some("y); DROP TABLE u; --")),
        ("up; DROP TABLE u", "a", "b", "y", None),
    ] {
        let e = bad_fit(&mut c, pairs, l, r, y, sw);
        let code = sqlstate(&e);
        eprintln!("injection: fit({pairs:?}, {l:?}, {r:?}, {y:?}, {sw:?}) -> {code} {}", message(&e));
        assert!(
            code.starts_with("42"),
            "fit({pairs:?}, {l:?}, {r:?}, {y:?}, {sw:?}): {code} {}",
            message(&e)
        );
        assert_eq!(exists(&mut c), start);
    }
    assert_eq!(c.query_one("SELECT count(*) FROM embedstack.fits", &[]).unwrap().get::<_, i64>(0), 0);
    // evaluate needs a fit (55000 otherwise); then its column arguments are checked.
    fit(&mut c, "ok", "up");
    for (l, r, y) in
        [("a; DROP TABLE u", "b", "y"), ("a", "b\"; DROP TABLE u; --", "y"), ("a", "b", "y; DROP TABLE u")]
    {
        let e = c
            .query("SELECT * FROM embedstack.evaluate('ok', 'up', $1::text::name, $2::text::name, $3::text::name)", &[&l, &r, &y])
            .expect_err("evaluate must fail");
        assert!(
            sqlstate(&e).starts_with("42"),
            "evaluate({l:?}, {r:?}, {y:?}): {} {}",
            sqlstate(&e),
            message(&e)
        );
        assert_eq!(exists(&mut c), start);
    }
    // A key of another type (text against an int key) is an error, not text spliced in.
    c.batch_execute("CALL embedstack.materialize('ok')").unwrap();
    let e = c
        .query_one("SELECT embedstack.query_vector('ok', $1::text)", &[&"1; DROP TABLE u"])
        .expect_err("a text key against an int key must fail");
    assert!(sqlstate(&e).starts_with("42") || sqlstate(&e).starts_with("22"), "{}", message(&e));
    assert_eq!(exists(&mut c), start);

    // Hostile but legal names work end to end.
    for (name, combined_col) in [("x'); DROP TABLE u; --", None), ("plain", Some("c\"; DROP TABLE u; --"))] {
        c.query_one(
            "SELECT embedstack.create_model_set($1, 'u', 'id', ARRAY['m1', 'm2'], combined_column => $2::text::name)",
            &[&name, &combined_col],
        )
        .unwrap_or_else(|e| panic!("create_model_set({name:?}, {combined_col:?}): {e}"));
        let col = combined_col.map(str::to_string).unwrap_or_else(|| format!("{name}_combined"));
        let (_, w) = fit(&mut c, name, "up");
        // CALL with the name as a literal (quotes doubled), as a DBA would type it.
        c.batch_execute(&format!("CALL embedstack.materialize('{}')", name.replace('\'', "''")))
            .unwrap_or_else(|e| panic!("materialize({name:?}): {e}"));
        let g = checked_served_generation(&mut c, name, "u");
        let view = format!("public.{}", quote_ident(&default_view_name("u", name)));
        assert_eq!(columns(&mut c, &view), ["id".to_string(), col.clone()], "{name:?}: the view's columns");
        assert_eq!(columns(&mut c, "u"), ["id", "m1", "m2", "txt", "nokey"], "the source keeps its columns");
        assert_freshness_triggers(&mut c, "u", name);
        let quoted = format!("\"{}\"", col.replace('"', "\"\""));
        let mult = symmetric_multipliers(&w, 0.05);
        let s: Vec<f64> = mult.iter().map(|m| m * m).collect();
        let q = &rows[&5];
        let got: Vec<(i32, f64)> = c
            .query(
                &format!(
                    "SELECT id, ({quoted} <#> (SELECT embedstack.query_vector($1, 5::int)))::float8 FROM {view} ORDER BY id"
                ),
                &[&name],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(got.len(), 60);
        for (id, ip) in got {
            let want = score(q, &rows[&id], &s);
            assert!((-ip - want).abs() <= 1e-5, "{name:?} row {id}: {} vs {want}", -ip);
        }
        c.query_one("SELECT embedstack.drop_model_set($1, drop_columns => true)", &[&name]).unwrap();
        assert!(!relation_exists(&mut c, &view), "{name:?}: the view is dropped");
        assert!(
            !relation_exists(&mut c, g.relation.as_deref().unwrap()),
            "{name:?}: the generation is dropped"
        );
        assert!(
            extension_triggers(&mut c, "u").iter().all(|(_, arg)| arg != name),
            "{name:?}: its triggers are dropped"
        );
        assert_eq!(columns(&mut c, "u"), ["id", "m1", "m2", "txt", "nokey"]);
        assert_eq!(exists(&mut c), start);
    }
    // Only the triggers of 'ok' are left: an insert works, and 'ok' serves the new row.
    c.batch_execute("INSERT INTO u (id, m1, m2) VALUES (1000, '[1,2,3,4]', '[1,2,3]')").unwrap();
    let mut left: Vec<String> = extension_triggers(&mut c, "u").into_iter().map(|(n, _)| n).collect();
    left.sort();
    let mut want = trigger_names("ok").to_vec();
    want.sort();
    assert_eq!(left, want);
    assert!(served_by_id(&mut c, "ok")[&1000].is_some(), "'ok' serves the inserted row");
    eprintln!("injection: {:.1}s", t0.elapsed().as_secs_f64());
}

/// A table literally named `we ird"t` with columns `k ey`, `m 1` (vector), `M2` (real[],
/// dimension discovered), `m"3` (float8[]) and pairs `pa irs("le ft", "ri ght", "ta rget")`
/// work end to end: create_model_set with `'"we ird""t"'::regclass`, fit (the OLS solved
/// here), materialize (view `we ird"t_we ird set`, its generation table and index by the
/// documented names), the served query over the view (an index scan of the generation, every
/// row's score equal to the weighted cosine sum), query_vector by key, evaluate, and the
/// freshness triggers on insert.
#[test]
fn awkward_identifiers_work_end_to_end() {
    let t0 = Instant::now();
    let mut c = fresh_db("ms_weird_names");
    const DIMS: [usize; 3] = [4, 3, 5];
    let mut rng = Rng(0x5EED_0008);
    let mut rows: BTreeMap<i32, Models> = BTreeMap::new();
    for id in 1..=120 {
        rows.insert(id, DIMS.iter().map(|&d| Some(rng.vec(d))).collect());
    }
    rows.get_mut(&9).unwrap()[2] = None;
    c.batch_execute(
        r#"CREATE TABLE "we ird""t" ("k ey" int PRIMARY KEY, "m 1" vector(4), "M2" real[], "m""3" float8[])"#,
    )
    .unwrap();
    let arr = |v: &Option<Vec<f32>>| match v {
        Some(v) => {
            let p: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
            format!("{{{}}}", p.join(","))
        }
        None => "\\N".into(),
    };
    let mut w = c.copy_in(r#"COPY "we ird""t" ("k ey", "m 1", "M2", "m""3") FROM STDIN"#).unwrap();
    for (id, m) in &rows {
        writeln!(w, "{id}\t{}\t{}\t{}", copy_field(&m[0]), arr(&m[1]), arr(&m[2])).unwrap();
    }
    w.finish().unwrap();
    let pairs = make_pairs(&mut rng, &rows, (1, 120), 800, &|x, _| x[0] + 0.5 * x[1] + 0.8 * x[2]);
    c.batch_execute(r#"CREATE TABLE "pa irs" ("le ft" int, "ri ght" int, "ta rget" float8)"#).unwrap();
    let mut w = c.copy_in(r#"COPY "pa irs" FROM STDIN"#).unwrap();
    for (a, b, y) in &pairs {
        writeln!(w, "{a}\t{b}\t{y:?}").unwrap();
    }
    w.finish().unwrap();

    let ms: (String, Vec<i32>) = {
        let r = c
            .query_one(
                r#"SELECT source::text, model_dims FROM embedstack.create_model_set('we ird set', '"we ird""t"'::regclass,
                       'k ey', ARRAY['m 1', 'M2', 'm"3'])"#,
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(ms.0, r#""we ird""t""#);
    assert_eq!(ms.1, vec![4, 3, 5]);
    let r = c
        .query_one(
            r#"SELECT id, weights FROM embedstack.fit('we ird set', '"pa irs"', 'le ft', 'ri ght', 'ta rget')"#,
            &[],
        )
        .unwrap();
    let w: Vec<f64> = r.get(1);
    let (x, y) = {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (a, b, t) in &pairs {
            let f: Option<Vec<f64>> = (0..3).map(|k| cos(&rows[a][k], &rows[b][k])).collect();
            if let Some(f) = f {
                x.push(f);
                y.push(*t);
            }
        }
        (x, y)
    };
    let want = ols(&x, &y).0;
    for k in 0..3 {
        assert!((w[k] - want[k]).abs() <= 1e-7, "weight {k}: {} vs {}", w[k], want[k]);
    }
    c.batch_execute("CALL embedstack.materialize('we ird set')").unwrap();
    c.batch_execute("ANALYZE").unwrap();
    let g = checked_served_generation(&mut c, "we ird set", "we ird\"t");
    assert_freshness_triggers(&mut c, r#""we ird""t""#, "we ird set");
    let view = r#""we ird""t_we ird set""#;
    let mult = symmetric_multipliers(&w, 0.05);
    let s: Vec<f64> = mult.iter().map(|m| m * m).collect();

    // Every row's served score for one query row, and the plan of the served query.
    let q = &rows[&9];
    let qv = format!("embedstack.query_vector('we ird set', {})", models_sql(q));
    let got: Vec<(i32, f64)> = c
        .query(
            &format!(
                r#"SELECT "k ey", ("we ird set_combined" <#> (SELECT {qv}))::float8 FROM {view} ORDER BY 1"#
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got.len(), 120);
    for (id, ip) in got {
        let want = score(q, &rows[&id], &s);
        assert!((-ip - want).abs() <= 1e-5, "row {id}: {} vs {want}", -ip);
    }
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = c
        .query(
            &format!(r#"EXPLAIN SELECT "k ey" FROM {view} ORDER BY "we ird set_combined" <#> {qv} LIMIT 5"#),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let index = qi(g.index_name.as_deref().unwrap());
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {index}"))), "{plan:#?}");
    let top: Vec<i32> = c
        .query(&format!(r#"SELECT "k ey" FROM {view} ORDER BY "we ird set_combined" <#> {qv} LIMIT 5"#), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute("RESET enable_seqscan").unwrap();
    assert_eq!(top.len(), 5);
    // Key form = array form.
    let a: Vec<f32> = c.query_one(&format!("SELECT ({qv})::real[]"), &[]).unwrap().get(0);
    let b: Vec<f32> =
        c.query_one("SELECT embedstack.query_vector('we ird set', 9::int)::real[]", &[]).unwrap().get(0);
    assert_eq!(a, b);

    // evaluate: the target is exactly linear in the features, so the fit's Pearson is 1.
    let ev: BTreeMap<String, (i64, Option<f64>)> = c
        .query(
            r#"SELECT model, n, pearson FROM embedstack.evaluate('we ird set', '"pa irs"', 'le ft', 'ri ght', 'ta rget')"#,
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let models: HashSet<&str> = ev.keys().map(|k| k.as_str()).collect();
    assert_eq!(models, HashSet::from(["m 1", "M2", "m\"3", "(stack)", "(fit)"]));
    let (n, p) = ev["(fit)"];
    assert_eq!(n as usize, x.len());
    assert!((p.unwrap() - 1.0).abs() <= 1e-9, "(fit) pearson {p:?}");

    // The trigger on insert.
    let m: Models = DIMS.iter().map(|&d| Some(rng.vec(d))).collect();
    c.batch_execute(&format!(
        r#"INSERT INTO "we ird""t" ("k ey", "m 1", "M2", "m""3") VALUES (500, '{}', '{}', '{}')"#,
        lit(m[0].as_ref().unwrap()),
        arr(&m[1]),
        arr(&m[2])
    ))
    .unwrap();
    let g: Vec<f32> = c
        .query_one(&format!(r#"SELECT "we ird set_combined"::real[] FROM {view} WHERE "k ey" = 500"#), &[])
        .unwrap()
        .get(0);
    assert_close_vec(&g, &combined(&m, &DIMS, &mult), 1e-6, "inserted row");
    eprintln!("weird names: {:.1}s", t0.elapsed().as_secs_f64());
}

/// `query_vector` is built once per query, not once per row: when the planner sorts instead of
/// using the index (here forced: a small table, index scans off), the ORDER BY over the served
/// view calls it for every row, and each build reads the catalog and, for the key form, the
/// key's row. Counted from the tables' scan statistics against the same query with the vector
/// given as a constant (which reads what the view itself reads: its gate, the generation): one
/// build = one more read of `embedstack.model_sets` and one more of the source (the key's row,
/// or the vectors form's sub-select), whatever the number of rows (60). The answers equal the
/// ones of a query that computes the vector once in a CTE.
#[test]
fn query_vector_is_built_once_per_query() {
    let db = "ms_qv_once";
    let mut c = fresh_db(db);
    small_setup(&mut c, 0x5EED_0011);
    c.batch_execute(
        "SELECT embedstack.create_model_set('once', 'u', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('once', 'up', 'a', 'b', 'y');",
    )
    .unwrap();
    c.batch_execute("CALL embedstack.materialize('once')").unwrap();
    let gen_table = served_generation(&mut c, "once").unwrap().relation.unwrap();
    // Scans of a table so far, as this session's statistics report them (flushed first).
    let scans = |c: &mut Client, table: &str| -> i64 {
        c.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        c.query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_all_tables WHERE relid = $1::text::regclass",
            &[&table],
        )
        .unwrap()
        .get(0)
    };
    let counts = |c: &mut Client| -> [i64; 3] {
        [scans(c, "embedstack.model_sets"), scans(c, "u"), scans(c, &gen_table)]
    };
    c.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off").unwrap();
    let rows: i64 = c.query_one("SELECT count(*) FROM u", &[]).unwrap().get(0);
    assert_eq!(rows, 60);

    for (form, qv) in [
        ("key", "embedstack.query_vector('once', 7)"),
        ("vectors", "embedstack.query_vector('once', ARRAY[(SELECT m1 FROM u WHERE id = 7), NULL])"),
    ] {
        let constant: String = c.query_one(&format!("SELECT ({qv})::text"), &[]).unwrap().get(0);
        let ids = |c: &mut Client, sql: &str| -> Vec<i32> {
            c.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
        };
        let n0 = counts(&mut c);
        let base = ids(
            &mut c,
            &format!("SELECT id FROM u_once ORDER BY once_combined <#> {} LIMIT 10", q(&constant)),
        );
        let n1 = counts(&mut c);
        let got = ids(&mut c, &format!("SELECT id FROM u_once ORDER BY once_combined <#> {qv} LIMIT 10"));
        let n2 = counts(&mut c);
        let want = ids(
            &mut c,
            &format!("WITH q AS MATERIALIZED (SELECT {qv} AS v) SELECT id FROM u_once, q ORDER BY once_combined <#> q.v LIMIT 10"),
        );
        assert_eq!(got, want, "{form}: the answers");
        assert_eq!(got, base, "{form}: the answers with the vector as a constant");
        let (view_reads, query_reads): (Vec<i64>, Vec<i64>) =
            (0..3).map(|k| (n1[k] - n0[k], n2[k] - n1[k])).unzip();
        eprintln!(
            "{form}: the view reads (catalog, source, generation) {view_reads:?}, the query {query_reads:?}"
        );
        assert_eq!(view_reads[1], 0, "{form}: the view reads no source row");
        assert_eq!(view_reads[2], 1, "{form}: the query scans the generation once");
        assert_eq!(
            query_reads,
            [view_reads[0] + 1, 1, 1],
            "{form}: one build of the query vector over {rows} rows reads the catalog once and the source once"
        );
    }
}
