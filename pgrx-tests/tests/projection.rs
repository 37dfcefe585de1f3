//! Learned projections (issue 21, `create_model_set(…, dims => N)`), against the project cluster:
//!
//! 1. A 5,632-dimension model set (3,072 + 1,536 + 1,024, wider than pgvector indexes) is created,
//!    fitted, materialised at 256 dimensions with an HNSW index and served: each stored vector is
//!    the projection (the recorded basis applied in this test, in f64, to the combined vector
//!    built here from the raw model vectors) of its row; the basis is orthonormal; the served
//!    ranking agrees with the exact unprojected score; the freshness triggers keep INSERT, UPDATE
//!    and DELETE served; a fit of other weights writes a new generation with a new projection,
//!    rollback serves the old pair again; `pg_dump` / `pg_restore` restore the projections, the
//!    generations and the same answers.
//! 2. On the WordSim-353 fixture, `dims => 256` keeps at least 0.99× of the exact served held-out
//!    Spearman (reference.json, scikit-learn: symmetric 0.8375, query-weighted 0.8356).

use std::path::PathBuf;
use std::process::Command;

use embedstack_client_tests::fixtures::{load_wordsim, reference};
use embedstack_client_tests::stats::spearman;
use embedstack_client_tests::{connect_as, create_db, fresh_db, pg_bin, port};
use postgres::Client;

/// `items(id, a vector(3072), b vector(1536), c vector(1024))`: each model a fixed offset plus
/// a mix of 12 shared latent factors plus noise (an embedding-like decaying spectrum), built in
/// SQL from a seeded generator; `pairs(a, b, y)` labelled by the models' cosines with `wa, wb, wc`.
fn create_wide_source(c: &mut Client, rows: i32) {
    c.batch_execute(&format!(
        "SELECT setseed(0.21);
         CREATE TABLE latent AS SELECT i, array_agg(random() * 2 - 1 ORDER BY f) z FROM generate_series(1, {rows}) i,
                                      generate_series(1, 12) f GROUP BY i;
         CREATE TABLE mix AS SELECT m, d, array_agg(random() * 2 - 1 ORDER BY f) w FROM (VALUES (1, 3072), (2, 1536), (3, 1024)) v(m, n),
                                    generate_series(1, n) d, generate_series(1, 12) f GROUP BY m, d;
         CREATE FUNCTION pg_temp.model(i int, mm int) RETURNS real[] LANGUAGE sql AS $$
             SELECT array_agg((0.5 + (SELECT sum(x.w[f] * l.z[f]) FROM generate_series(1, 12) f) + 0.4 * (random() * 2 - 1))::real ORDER BY x.d)
               FROM mix x, latent l WHERE x.m = mm AND l.i = model.i $$;
         CREATE TABLE items (id int PRIMARY KEY, a vector(3072), b vector(1536), c vector(1024));
         INSERT INTO items SELECT i, pg_temp.model(i, 1)::vector, pg_temp.model(i, 2)::vector, pg_temp.model(i, 3)::vector
           FROM generate_series(1, {rows}) i;
         CREATE TABLE pairs AS SELECT (random() * ({rows} - 1))::int + 1 AS a, (random() * ({rows} - 1))::int + 1 AS b, 0.0::float8 AS y
           FROM generate_series(1, 1500);
         ANALYZE"
    ))
    .unwrap();
}

fn label(c: &mut Client, w: [f64; 3]) {
    c.execute(
        "UPDATE pairs p SET y = $1 * embedstack.cosine(x.a, z.a) + $2 * embedstack.cosine(x.b, z.b) + $3 * embedstack.cosine(x.c, z.c)
           FROM items x, items z WHERE x.id = p.a AND z.id = p.b",
        &[&w[0], &w[1], &w[2]],
    )
    .unwrap();
}

fn fit(c: &mut Client) -> (i64, Vec<f64>) {
    let r = c.query_one("SELECT id, weights FROM embedstack.fit('w', 'pairs', 'a', 'b', 'y')", &[]).unwrap();
    (r.get(0), r.get(1))
}

fn materialize(c: &mut Client) {
    c.batch_execute("CALL embedstack.materialize('w')").unwrap();
}

fn vector(c: &mut Client, sql: &str, id: i32) -> Option<Vec<f32>> {
    let row = c.query_opt(sql, &[&id]).unwrap()?;
    let text: Option<String> = row.get(0);
    text.map(|t| t.trim_matches(|ch| ch == '[' || ch == ']').split(',').map(|x| x.parse().unwrap()).collect())
}

fn raw_models(c: &mut Client, id: i32) -> Vec<Vec<f32>> {
    ["a", "b", "c"]
        .iter()
        .map(|m| vector(c, &format!("SELECT {m}::text FROM items WHERE id = $1"), id).unwrap())
        .collect()
}

/// The served generation's projection: (id, multipliers, basis rows).
fn served_projection(c: &mut Client) -> (i64, Vec<f64>, Vec<Vec<f64>>) {
    let r = c
        .query_one(
            "SELECT p.id, p.multipliers, p.dims, p.input_width, p.basis::float8[] FROM embedstack.model_sets m
               JOIN embedstack.generations g ON g.id = m.served_generation JOIN embedstack.projections p ON p.id = g.projection
              WHERE m.name = 'w'",
            &[],
        )
        .unwrap();
    let (dims, input): (i32, i32) = (r.get(2), r.get(3));
    let flat: Vec<f64> = r.get(4);
    assert_eq!(flat.len(), (dims * input) as usize);
    (r.get(0), r.get(1), flat.chunks(input as usize).map(<[f64]>::to_vec).collect())
}

/// The combined vector `[m_k u_k]` (blocks with m_k = 0 left out), in f64, from raw vectors.
fn combined(models: &[Vec<f32>], mult: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for (v, &m) in models.iter().zip(mult) {
        if m == 0.0 {
            continue;
        }
        let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        out.extend(v.iter().map(|&x| m * x as f64 / n));
    }
    out
}

fn project(rows: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    rows.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Stored vector of `id` in the served view against this test's projection of its raw vectors.
fn assert_row_served(c: &mut Client, id: i32, what: &str) {
    let (_, mult, basis) = served_projection(c);
    let want = project(&basis, &combined(&raw_models(c, id), &mult));
    let got = vector(c, "SELECT w_combined::text FROM items_w WHERE id = $1", id)
        .unwrap_or_else(|| panic!("{what}: row {id} is not served"));
    assert_eq!(got.len(), want.len(), "{what}: width");
    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((*g as f64 - w).abs() < 2e-5, "{what}: row {id} coordinate {j}: {g} vs {w}");
    }
}

fn run_pg_tool(tool: &str, args: &[&str]) {
    let exe = pg_bin().join(tool);
    let p = port();
    let root = embedstack_client_tests::cluster::is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd.args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres"]).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Top 10 ids by the served view for key `k`.
fn top10(c: &mut Client, k: i32) -> Vec<i32> {
    c.query(
        "SELECT v.id FROM items_w v ORDER BY v.w_combined <#> embedstack.query_vector('w', $1::int4) LIMIT 10",
        &[&k],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn a_5632_dimension_model_set_is_served_projected_end_to_end() {
    let db = "es_projection_wide";
    let mut c = fresh_db("projection_wide");
    create_wide_source(&mut c, 500);
    // Too wide to index: a query-weighted set is refused (54000) naming dims; with dims it is created.
    let err = c
        .query_one("SELECT embedstack.create_model_set('q', 'items', 'id', ARRAY['a','b','c'], mode => 'query_weighted')", &[])
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "54000");
    assert!(db_err.hint().unwrap_or("").contains("dims => N"), "{db_err:?}");
    c.batch_execute("SELECT embedstack.create_model_set('w', 'items', 'id', ARRAY['a','b','c'], threshold => 0, dims => 256)")
        .unwrap();
    label(&mut c, [1.0, 0.6, 0.3]);
    let (f1, w1) = fit(&mut c);
    assert!(w1.iter().all(|&w| w > 0.05), "every model kept: {w1:?}");
    materialize(&mut c);

    // Served at 256 dimensions from 5,632, with a valid HNSW index.
    let (width, storage, idx_valid): (i32, String, bool) = {
        let r = c
            .query_one(
                "SELECT g.width, g.storage, i.indisvalid FROM embedstack.model_sets m
                   JOIN embedstack.generations g ON g.id = m.served_generation
                   JOIN pg_class x ON x.relname = g.index_name JOIN pg_index i ON i.indexrelid = x.oid
                   JOIN pg_am a ON a.oid = x.relam AND a.amname = 'hnsw' WHERE m.name = 'w'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((width, storage.as_str(), idx_valid), (256, "vector", true));
    let (p1, mult1, basis) = served_projection(&mut c);
    assert_eq!(basis[0].len(), 5632);
    for i in 0..basis.len() {
        for j in [0, i / 2, i] {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot(&basis[i], &basis[j]) - want).abs() < 1e-5, "basis rows {i}, {j}");
        }
    }
    let st = c
        .query_one("SELECT dims, unprojected_width, variance_kept, outcome FROM embedstack.status WHERE model_set = 'w'", &[])
        .unwrap();
    let (dims, unproj, kept, outcome): (i32, i32, f64, String) = (st.get(0), st.get(1), st.get(2), st.get(3));
    assert_eq!((dims, unproj), (256, 5632));
    assert!(kept > 0.5 && kept <= 1.0, "variance kept {kept}");
    assert!(outcome.contains("projected: 256 of 5632 dimensions"), "{outcome}");
    // The served (projected) score ranks the fit's pairs as the fit's prediction does: with every
    // model kept, the exact served score is a monotone function of the prediction (Spearman 1).
    let rho: f64 = c
        .query_one("SELECT served_spearman FROM embedstack.status WHERE model_set = 'w'", &[])
        .unwrap()
        .get(0);
    assert!(rho > 0.99 && rho <= 1.0 + 1e-12, "served Spearman {rho}");
    for id in [1, 77, 500] {
        assert_row_served(&mut c, id, "after materialize");
    }

    // The served ranking against the exact unprojected score (symmetric: the inner product of
    // the unprojected combined vectors), computed here for 5 queries over all 500 rows.
    let all: Vec<(i32, Vec<f64>)> =
        (1..=500).map(|id| (id, combined(&raw_models(&mut c, id), &mult1))).collect();
    c.batch_execute("SET hnsw.ef_search = 40").unwrap();
    let mut hits = 0;
    for q in [3, 99, 250, 404, 480] {
        let qv = &all[(q - 1) as usize].1;
        let mut exact: Vec<(f64, i32)> = all.iter().map(|(id, v)| (dot(qv, v), *id)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<i32> = exact[..10].iter().map(|e| e.1).collect();
        hits += top10(&mut c, q).iter().filter(|id| truth.contains(id)).count();
    }
    let recall = hits as f64 / 50.0;
    assert!(recall >= 0.9, "recall@10 of the served (projected, HNSW) ranking vs the exact score: {recall}");

    // score(): the exact unprojected served score, intercept + w_max * (x_a . x_b) in symmetric
    // mode (x = [m_k u_k], m_k^2 = w_k / w_max), computed here from the raw vectors; re-ranking
    // 40 HNSW candidates by it finds the exact top 10.
    let intercept: f64 =
        c.query_one("SELECT intercept FROM embedstack.fits WHERE id = $1", &[&f1]).unwrap().get(0);
    let w_max = w1.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for (a, b) in [(3, 99), (250, 250), (404, 17)] {
        let got: f64 =
            c.query_one("SELECT embedstack.score('w', $1::int4, $2::int4)", &[&a, &b]).unwrap().get(0);
        let want = intercept + w_max * dot(&all[(a - 1) as usize].1, &all[(b - 1) as usize].1);
        assert!(
            (got - want).abs() < 1e-9 * (1.0 + want.abs()),
            "score('w', {a}, {b}) = {got}, expected {want}"
        );
    }
    let mut rerank_hits = 0;
    for q in [3, 99, 250, 404, 480] {
        let qv = &all[(q - 1) as usize].1;
        let mut exact: Vec<(f64, i32)> = all.iter().map(|(id, v)| (dot(qv, v), *id)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<i32> = exact[..10].iter().map(|e| e.1).collect();
        let got: Vec<i32> = c
            .query(
                "SELECT r.id FROM (SELECT v.id FROM items_w v
                                    ORDER BY v.w_combined <#> embedstack.query_vector('w', $1::int4) LIMIT 40) r
                  ORDER BY embedstack.score('w', $1::int4, r.id) DESC LIMIT 10",
                &[&q],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        rerank_hits += got.iter().filter(|id| truth.contains(id)).count();
    }
    let rerank_recall = rerank_hits as f64 / 50.0;
    assert!(
        rerank_recall >= 0.98 && rerank_recall >= recall,
        "recall@10 of 40 HNSW candidates re-ranked by score(): {rerank_recall} (HNSW alone {recall})"
    );
    let null: Option<f64> = c.query_one("SELECT embedstack.score('w', NULL::int4, 2)", &[]).unwrap().get(0);
    assert_eq!(null, None, "STRICT: a NULL key scores NULL");
    let e = c.query_one("SELECT embedstack.score('w', 9999, 2)", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("P0002"), "{e:?}");

    // Freshness: the triggers write projected vectors.
    c.batch_execute(
        "INSERT INTO items SELECT 501, b.a, a.b, a.c FROM items a, items b WHERE a.id = 1 AND b.id = 2;
         UPDATE items SET c = (SELECT c FROM items WHERE id = 3) WHERE id = 77;
         DELETE FROM items WHERE id = 500",
    )
    .unwrap();
    assert_row_served(&mut c, 501, "after INSERT");
    assert_row_served(&mut c, 77, "after UPDATE");
    assert!(
        vector(&mut c, "SELECT w_combined::text FROM items_w WHERE id = $1", 500).is_none(),
        "deleted row served"
    );

    // Another fit's weights: a new generation with a new projection; rollback returns to the pair.
    label(&mut c, [0.2, 1.0, 0.1]);
    let (f2, _) = fit(&mut c);
    materialize(&mut c);
    let (p2, mult2, _) = served_projection(&mut c);
    assert_ne!(p2, p1, "a new projection for other multipliers");
    assert_ne!(mult2, mult1);
    assert_row_served(&mut c, 501, "fit 2");
    c.batch_execute("CALL embedstack.rollback('w'); SELECT embedstack.release('w')").unwrap();
    let active: i64 =
        c.query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = 'w'", &[]).unwrap().get(0);
    assert_eq!(active, f1);
    assert_eq!(served_projection(&mut c).0, p1, "rollback serves the old projection");
    assert_row_served(&mut c, 77, "after rollback");
    assert_row_served(&mut c, 501, "after rollback");
    let _ = f2;

    // A refit trains on the pairs outside its held-out half: the cut-over's served check ranks
    // exactly those (every pair here has all cosines, so as many as the new fit used).
    c.batch_execute(
        "CALL embedstack.refit('w', 'pairs', 'a', 'b', 'y', holdout_fraction => 0.5, cutover => 'always')",
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT (j.details->>'pairs_checked')::int8, (j.details->>'served_spearman')::float8,
                    (f.diagnostics->>'n_used')::int8, f.training_source->>'split'
               FROM embedstack.jobs j JOIN embedstack.fits f ON f.id = j.fit_id
              WHERE j.model_set = 'w' ORDER BY j.id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let (checked, rho, n_used, split): (i64, f64, i64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(split, "train");
    assert!(n_used > 500 && n_used < 1000, "the refit trained on about half of 1,500 pairs: {n_used}");
    assert_eq!(checked, n_used, "served check on the refit's training pairs only");
    assert!(rho > 0.99, "served Spearman after the refit {rho}");

    // pg_dump / pg_restore: the projections, the generations and the answers come back.
    let catalog = |c: &mut Client| -> Vec<String> {
        c.query(
            "SELECT row_to_json(x)::text FROM (SELECT id, model_set, multipliers, input_width, dims, md5(basis::text) b, variance_kept
               FROM embedstack.projections ORDER BY id) x
             UNION ALL SELECT row_to_json(g)::text FROM (SELECT id, projection, width, state FROM embedstack.generations ORDER BY id) g",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let before = catalog(&mut c);
    c.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let top_before: Vec<Vec<i32>> = [5, 77].iter().map(|&k| top10(&mut c, k)).collect();
    let dir = PathBuf::from(format!("/tmp/es_projection_dump_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_pg_tool("pg_dump", &["-Fd", "-f", dir.to_str().unwrap(), "-d", db]);
    let dst = "es_projection_restored";
    drop(create_db(dst));
    run_pg_tool("pg_restore", &["--exit-on-error", "-d", dst, dir.to_str().unwrap()]);
    let mut r = connect_as(dst, "postgres");
    assert_eq!(catalog(&mut r), before, "restored projections and generations");
    r.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let top_after: Vec<Vec<i32>> = [5, 77].iter().map(|&k| top10(&mut r, k)).collect();
    assert_eq!(top_after, top_before, "restored answers");
    r.batch_execute("INSERT INTO items SELECT 900, a, b, c FROM items WHERE id = 5").unwrap();
    assert_row_served(&mut r, 900, "restored, after INSERT");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Held-out Spearman of the served score on WordSim's test pairs: the inner product of
/// `query_vector(set, a)` and b's served vector.
fn served_spearman(c: &mut Client, set: &str, view: &str, col: &str) -> f64 {
    let rows = c
        .query(
            &format!(
                "SELECT p.y, -(embedstack.query_vector('{set}', p.a) <#> v.{col})::float8 FROM pairs_test p
                   JOIN {view} v ON v.word = p.b"
            ),
            &[],
        )
        .unwrap();
    let (y, s): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| (r.get::<_, f64>(0), r.get::<_, f64>(1))).unzip();
    assert_eq!(y.len(), 91, "every test pair is served");
    spearman(&s, &y)
}

#[test]
fn wordsim_at_256_dims_keeps_the_served_spearman() {
    let mut c = fresh_db("projection_wordsim");
    load_wordsim(&mut c);
    let refj = reference();
    let exact_sym = refj["test"]["ols_combined_cosine"]["spearman"].as_f64().unwrap();
    let exact_qw = refj["test"]["ols_weighted_sum"]["spearman"].as_f64().unwrap();
    let models: Vec<String> =
        embedstack_client_tests::fixtures::MODELS.iter().map(|m| format!("'{m}'")).collect();
    for (set, mode, exact) in [("sym", "symmetric", exact_sym), ("qw", "query_weighted", exact_qw)] {
        c.batch_execute(&format!(
            "SELECT embedstack.create_model_set('{set}', 'words', 'word', ARRAY[{}], mode => '{mode}', dims => 256);
             SELECT embedstack.fit('{set}', 'pairs_train', 'a', 'b', 'y')",
            models.join(", ")
        ))
        .unwrap();
        c.batch_execute(&format!("CALL embedstack.materialize('{set}')")).unwrap();
        let got = served_spearman(&mut c, set, &format!("words_{set}"), &format!("{set}_combined"));
        let (rho, kept): (f64, f64) = {
            let r = c
                .query_one(
                    "SELECT served_spearman, variance_kept FROM embedstack.status WHERE model_set = $1",
                    &[&set],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        eprintln!("WordSim {mode}: variance kept {kept:.4}, Spearman of served vs fitted on the training pairs {rho:.4}");
        eprintln!(
            "WordSim {mode}, dims => 256: held-out Spearman {got:.4} (exact {exact:.4}, ratio {:.4})",
            got / exact
        );
        assert!(got >= 0.99 * exact, "{mode}: {got} < 0.99 × {exact}");
    }
}
