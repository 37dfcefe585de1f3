//! The regression aggregate against a real server: WordSim-353 fits through SQL against
//! scikit-learn's reference, and a forced parallel plan (Partial Aggregate under Gather)
//! giving the same state as a serial plan.

use embedstack_client_tests::check::close;
use embedstack_client_tests::fixtures::{load_wordsim, model_array, reference, MODELS};
use embedstack_client_tests::fresh_db;

#[test]
fn wordsim_fits_through_sql_match_scikit_learn() {
    let mut c = fresh_db("fit_wordsim");
    load_wordsim(&mut c);
    let reference = reference();
    c.batch_execute(&format!(
        "CREATE TABLE train_state AS
         SELECT embedstack.regression_stats(embedstack.cosine_features({}, {}), p.y) AS state
         FROM pairs_train p JOIN words wa ON wa.word = p.a JOIN words wb ON wb.word = p.b",
        model_array("wa"),
        model_array("wb")
    ))
    .unwrap();
    let mut cases: Vec<(String, String)> =
        vec![("ols".into(), "".into()), ("nnls".into(), ", nonnegative => true".into())];
    for name in reference["fits"].as_object().unwrap().keys().filter(|k| k.starts_with("ridge_a")) {
        cases.push((name.clone(), format!(", ridge => {}", name.trim_start_matches("ridge_a"))));
    }
    for (name, args) in cases {
        let row = c
            .query_one(
                &format!(
                    "SELECT (f).weights, (f).intercept, (f).r2, (f).n_used
                     FROM (SELECT embedstack.solve(state{args}) AS f FROM train_state) s"
                ),
                &[],
            )
            .unwrap();
        let (w, b0, r2, n): (Vec<f64>, f64, f64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let want = &reference["fits"][&name];
        assert_eq!(n as u64, reference["n_train"].as_u64().unwrap());
        for (k, m) in MODELS.iter().enumerate() {
            let ww = want["coef"][m].as_f64().unwrap();
            assert!(close(w[k], ww, 1e-9), "{name} {m}: {} vs {ww}", w[k]);
        }
        assert!(close(b0, want["intercept"].as_f64().unwrap(), 1e-9), "{name} intercept {b0}");
        assert!((r2 - want["r2_train"].as_f64().unwrap()).abs() <= 1e-9, "{name} r2 {r2}");
    }
    // The one-call aggregate equals solve(state) for OLS.
    let b0: f64 = c
        .query_one(
            &format!(
                "SELECT (embedstack.fit_weights(embedstack.cosine_features({}, {}), p.y)).intercept
                 FROM pairs_train p JOIN words wa ON wa.word = p.a JOIN words wb ON wb.word = p.b",
                model_array("wa"),
                model_array("wb")
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(close(b0, reference["fits"]["ols"]["intercept"].as_f64().unwrap(), 1e-9));
}

#[test]
fn forced_parallel_plan_equals_serial_plan() {
    let mut c = fresh_db("fit_parallel");
    c.batch_execute(
        "CREATE TABLE par AS SELECT ARRAY[sin(i), cos(i), sin(i * 0.37)] AS x,
                2 * sin(i) - cos(i) + 0.1 * sin(i * 7.1) AS y, 1 + (i % 3) AS w
         FROM generate_series(1, 300000) i;
         ANALYZE par;",
    )
    .unwrap();
    for agg in ["embedstack.regression_stats(x, y)", "embedstack.regression_stats(x, y, w)"] {
        c.batch_execute("SET max_parallel_workers_per_gather = 0").unwrap();
        let serial: Vec<f64> = c.query_one(&format!("SELECT {agg} FROM par"), &[]).unwrap().get(0);
        c.batch_execute(
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
             SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off",
        )
        .unwrap();
        let plan: Vec<String> = c
            .query(&format!("EXPLAIN (ANALYZE, COSTS OFF) SELECT {agg} FROM par"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("Partial Aggregate") && plan.contains("Gather"), "{plan}");
        assert!(plan.contains("Workers Launched: 2"), "{plan}");
        let parallel: Vec<f64> = c.query_one(&format!("SELECT {agg} FROM par"), &[]).unwrap().get(0);
        assert_eq!(serial.len(), parallel.len());
        assert_eq!(serial[3], 300000.0);
        assert_eq!(serial[3], parallel[3]);
        for (a, b) in serial.iter().zip(&parallel) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + a.abs()), "{agg}: {a} vs {b}");
        }
        c.batch_execute("RESET ALL").unwrap();
    }
}
