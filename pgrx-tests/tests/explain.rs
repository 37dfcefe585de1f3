//! `explain(model_set, a_key, b_key, fit_id)` and `evaluate(…, ablation => true)` on the
//! WordSim-353 fixture, against numbers computed outside embedstack:
//! `tests/fixtures/wordsim353/explain_reference.json`, made by `explain_reference.py` next to it
//! (numpy float64 cosines of the raw vectors, scikit-learn LinearRegression / positive=True /
//! Ridge(alpha=1) refitted on the training pairs without each model's column, scipy Pearson and
//! Spearman on the test pairs). The served score is also checked against the served vectors read
//! back with SQL (the view's inner products, and query_vector · v_b).

use std::collections::HashMap;

use embedstack_client_tests::check::close;
use embedstack_client_tests::fixture_dir;
use embedstack_client_tests::fixtures::{load_wordsim, MODELS};
use embedstack_client_tests::fresh_db;
use embedstack_client_tests::roles::TestRoles;
use embedstack_client_tests::sql::{all_text, expect_code};
use postgres::Client;
use serde_json::Value;

fn explain_reference() -> Value {
    let path = fixture_dir().join("explain_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[derive(Debug, Clone)]
struct Row {
    model: String,
    cosine: Option<f64>,
    weight: Option<f64>,
    contribution: Option<f64>,
    share: Option<f64>,
    note: Option<String>,
}

fn explain(c: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Vec<Row> {
    c.query(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {}", all_text(&e)))
        .iter()
        .map(|r| Row {
            model: r.get(0),
            cosine: r.get(1),
            weight: r.get(2),
            contribution: r.get(3),
            share: r.get(4),
            note: r.get(5),
        })
        .collect()
}

fn setup(c: &mut Client, set: &str, mode: &str) {
    let models: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
    c.execute(
        "SELECT embedstack.create_model_set($1, 'words', 'word', $2::name[], mode => $3)",
        &[&set, &models, &mode],
    )
    .unwrap();
}

/// The rows of one pair against the reference of fit `fit` ("ols", "nnls"); returns (total).
fn check_pair(rows: &[Row], reference: &Value, fit: &str, p: &Value) -> Row {
    let want = &reference["explain"][fit];
    let names: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    let mut expected: Vec<&str> = MODELS.to_vec();
    expected.extend(["(intercept)", "(total)"]);
    assert_eq!(names, expected);
    let pair = format!("{}/{}", p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
    let abs_sum: f64 = MODELS.iter().map(|m| p["contribution"][m].as_f64().unwrap().abs()).sum();
    for (k, m) in MODELS.iter().enumerate() {
        let r = &rows[k];
        let (x, w, c) = (
            p["cosine"][m].as_f64().unwrap(),
            want["weights"][m].as_f64().unwrap(),
            p["contribution"][m].as_f64().unwrap(),
        );
        assert!((r.cosine.unwrap() - x).abs() <= 1e-9, "{pair} {m}: cosine {:?} vs {x}", r.cosine);
        assert!(close(r.weight.unwrap(), w, 1e-9), "{pair} {m}: weight {:?} vs {w}", r.weight);
        assert!(
            (r.contribution.unwrap() - c).abs() <= 1e-8,
            "{pair} {m}: contribution {:?} vs {c}",
            r.contribution
        );
        assert!((r.share.unwrap() - c / abs_sum).abs() <= 1e-8, "{pair} {m}: share {:?}", r.share);
    }
    let intercept = &rows[MODELS.len()];
    assert!(
        close(intercept.contribution.unwrap(), want["intercept"].as_f64().unwrap(), 1e-9),
        "{intercept:?}"
    );
    assert!(intercept.cosine.is_none() && intercept.weight.is_none());
    let total = rows[MODELS.len() + 1].clone();
    let pred = p["prediction"].as_f64().unwrap();
    assert!(
        (total.contribution.unwrap() - pred).abs() <= 1e-8,
        "{pair}: prediction {:?} vs {pred}",
        total.contribution
    );
    total
}

/// Symmetric mode, OLS: cosines, weights, contributions, shares and prediction are the
/// reference's; (total).cosine is the inner product of the two served vectors in the view (and
/// the reference's Σ_kept (w_k / w_max) cos_k); the threshold's left-out models are named.
/// Keys as text parameters, as literals, and a named older fit (fit_id).
#[test]
fn explain_symmetric_matches_the_reference_and_the_served_vectors() {
    let mut c = fresh_db("explain_sym");
    load_wordsim(&mut c);
    let reference = explain_reference();
    setup(&mut c, "ws", "symmetric");
    let ols: i64 =
        c.query_one("SELECT id FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y')", &[]).unwrap().get(0);

    // Before materialize: the fit is explained (the latest), nothing is served.
    let p0 = &reference["explain"]["ols"]["pairs"][0];
    let (a0, b0) = (p0["a"].as_str().unwrap(), p0["b"].as_str().unwrap());
    let rows = explain(&mut c, "SELECT * FROM embedstack.explain('ws', $1::text, $2::text)", &[&a0, &b0]);
    let total = check_pair(&rows, &reference, "ols", p0);
    assert!(total.cosine.is_none(), "{total:?}");
    assert!(total.note.as_deref().unwrap().contains("not materialised"), "{total:?}");

    c.batch_execute("SET client_min_messages = warning").unwrap();
    c.batch_execute("CALL embedstack.materialize('ws', batch_size => 500)").unwrap();
    for p in reference["explain"]["ols"]["pairs"].as_array().unwrap() {
        let (a, b) = (p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        let rows = explain(&mut c, "SELECT * FROM embedstack.explain('ws', $1::text, $2::text)", &[&a, &b]);
        let total = check_pair(&rows, &reference, "ols", p);
        let served = total.cosine.expect("served score");
        let want = p["symmetric_score"].as_f64().unwrap();
        assert!((served - want).abs() <= 1e-5, "{a}/{b}: served {served} vs reference {want}");
        let ip: f64 = c
            .query_one(
                "SELECT -(va.ws_combined <#> vb.ws_combined) FROM words_ws va, words_ws vb
                  WHERE va.word = $1 AND vb.word = $2",
                &[&a, &b],
            )
            .unwrap()
            .get(0);
        assert!((served - ip).abs() <= 1e-6, "{a}/{b}: served {served} vs the view's inner product {ip}");
        let note = total.note.unwrap();
        for part in [
            "symmetric",
            "vector(1188)",
            "5 of 7",
            "left out: ppmi_svd300, char_ngram",
            &format!("fit {ols}"),
        ] {
            assert!(note.contains(part), "(total) note {note:?} lacks {part:?}");
        }
        for r in &rows[..MODELS.len()] {
            let left_out = ["ppmi_svd300", "char_ngram"].contains(&r.model.as_str());
            assert_eq!(
                r.note.as_deref().is_some_and(|n| n.contains("left out of the served vector")),
                left_out,
                "{r:?}"
            );
        }
    }
    // Literal keys (the text overload) give the same rows.
    let lit = explain(&mut c, &format!("SELECT * FROM embedstack.explain('ws', '{a0}', '{b0}')"), &[]);
    check_pair(&lit, &reference, "ols", p0);

    // A named fit that is not served: its weights, the served score still the served fit's.
    let nnls: i64 = c
        .query_one(
            "SELECT id FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y', nonnegative => true)",
            &[],
        )
        .unwrap()
        .get(0);
    let p = &reference["explain"]["nnls"]["pairs"][0];
    let rows =
        explain(&mut c, "SELECT * FROM embedstack.explain('ws', $1::text, $2::text, $3)", &[&a0, &b0, &nnls]);
    let total = check_pair(&rows, &reference, "nnls", p);
    let served_ols = p0["symmetric_score"].as_f64().unwrap();
    assert!((total.cosine.unwrap() - served_ols).abs() <= 1e-5, "{total:?}");
    assert!(total
        .note
        .as_deref()
        .unwrap()
        .contains(&format!("fit {nnls} is explained but fit {ols} is served")));
    // The default is the active fit (OLS), not the latest (NNLS).
    let rows = explain(&mut c, "SELECT * FROM embedstack.explain('ws', $1::text, $2::text)", &[&a0, &b0]);
    check_pair(&rows, &reference, "ols", p0);

    // Unknown key: P0002 naming the argument, not the value.
    let e = expect_code(&mut c, "SELECT * FROM embedstack.explain('ws', 'tiger', 'no-such-word')", "P0002");
    let text = all_text(&e);
    assert!(text.contains("b_key") && !text.contains("no-such-word"), "{text}");
    expect_code(&mut c, "SELECT * FROM embedstack.explain('nope', 'tiger', 'cat')", "42704");
}

/// Query-weighted mode (every model stored, 2512 dims: halfvec): (total).cosine is
/// -(query_vector(a) <#> v_b) read from the view, and the reference's Σ_k (w_k / max|w|) cos_k up
/// to halfvec rounding; no model is left out.
#[test]
fn explain_query_weighted_is_query_vector_times_the_served_vector() {
    let mut c = fresh_db("explain_qw");
    load_wordsim(&mut c);
    let reference = explain_reference();
    setup(&mut c, "wq", "query_weighted");
    c.execute("SELECT embedstack.fit('wq', 'pairs_train', 'a', 'b', 'y')", &[]).unwrap();
    c.batch_execute("SET client_min_messages = warning").unwrap();
    c.batch_execute("CALL embedstack.materialize('wq', batch_size => 500)").unwrap();
    let storage: String = c
        .query_one("SELECT served_storage FROM embedstack.model_sets WHERE name = 'wq'", &[])
        .unwrap()
        .get(0);
    assert_eq!(storage, "halfvec");
    for p in reference["explain"]["ols"]["pairs"].as_array().unwrap() {
        let (a, b) = (p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        let rows = explain(&mut c, "SELECT * FROM embedstack.explain('wq', $1::text, $2::text)", &[&a, &b]);
        let total = check_pair(&rows, &reference, "ols", p);
        let served = total.cosine.expect("served score");
        let q: f64 = c
            .query_one(
                "SELECT -(embedstack.query_vector('wq', $1::text) <#> v.wq_combined) FROM words_wq v WHERE v.word = $2",
                &[&a, &b],
            )
            .unwrap()
            .get(0);
        assert!((served - q).abs() <= 1e-9, "{a}/{b}: served {served} vs query_vector <#> v_b {q}");
        let want = p["query_weighted_score"].as_f64().unwrap();
        assert!((served - want).abs() <= 5e-3, "{a}/{b}: served {served} vs reference {want}");
        let note = total.note.unwrap();
        assert!(
            note.contains("query_weighted") && note.contains("halfvec(2512)") && note.contains("7 of 7"),
            "{note}"
        );
        assert!(rows[..MODELS.len()].iter().all(|r| r.note.is_none()), "{rows:?}");
    }
}

/// evaluate(…, ablation => true): one (without <model>) row per model, whose n, Pearson and
/// Spearman are those of scikit-learn refitted on the training pairs without that model's column
/// (OLS, non-negative, ridge 1), predicting the test pairs; the other rows are unchanged.
#[test]
fn ablation_matches_refits_without_each_model() {
    let mut c = fresh_db("explain_ablation");
    load_wordsim(&mut c);
    let reference = explain_reference();
    setup(&mut c, "ws", "symmetric");
    for (fit, sql) in [
        ("ols", "SELECT id FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y')"),
        ("nnls", "SELECT id FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y', nonnegative => true)"),
        ("ridge_a1", "SELECT id FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y', ridge => 1)"),
    ] {
        let id: i64 = c.query_one(sql, &[]).unwrap().get(0);
        let plain: Vec<(String, i64, Option<f64>, Option<f64>)> = c
            .query(
                "SELECT * FROM embedstack.evaluate('ws', 'pairs_test', 'a', 'b', 'y', fit_id => $1)",
                &[&id],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let rows: Vec<(String, i64, Option<f64>, Option<f64>)> = c
            .query(
                "SELECT * FROM embedstack.evaluate('ws', 'pairs_test', 'a', 'b', 'y', fit_id => $1, ablation => true)",
                &[&id],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(&rows[..plain.len()], &plain[..], "{fit}: ablation changes no other row");
        let by: HashMap<&str, (i64, f64, f64)> =
            rows.iter().map(|r| (r.0.as_str(), (r.1, r.2.unwrap(), r.3.unwrap()))).collect();
        let full = &reference["full"][fit];
        let (n, p, s) = by["(fit)"];
        assert_eq!(n, 91);
        assert!(
            close(p, full["pearson"].as_f64().unwrap(), 1e-8)
                && close(s, full["spearman"].as_f64().unwrap(), 1e-8)
        );
        assert_eq!(rows.len(), plain.len() + MODELS.len());
        for m in MODELS {
            let want = &reference["ablation"][fit][m];
            let (n, p, s) = by[format!("(without {m})").as_str()];
            assert_eq!(n, want["n"].as_i64().unwrap(), "{fit} without {m}");
            let (wp, ws) = (want["pearson"].as_f64().unwrap(), want["spearman"].as_f64().unwrap());
            assert!(close(p, wp, 1e-8), "{fit} without {m}: pearson {p} vs {wp}");
            assert!(close(s, ws, 1e-8), "{fit} without {m}: spearman {s} vs {ws}");
            eprintln!(
                "{fit:>8} without {m:<17} spearman {s:.4} (delta {:+.4})",
                s - full["spearman"].as_f64().unwrap()
            );
        }
    }
}

/// explain runs as the caller: a role that may not read the source gets 42501 (the model set is
/// hidden from it, or the model columns are not readable), and no key value is in the error.
#[test]
fn explain_needs_select_on_the_source() {
    let db = "es_explain_priv";
    let roles = TestRoles::create("explain", &["nobody", "keyonly"], &[db]);
    let mut c = fresh_db("explain_priv");
    c.batch_execute(
        "CREATE TABLE words (word text PRIMARY KEY, m1 vector(2), m2 vector(2));
         INSERT INTO words VALUES ('tiger', '[1,0]', '[1,1]'), ('lynx', '[1,1]', '[0,1]'), ('dog', '[0,1]', '[1,0]');
         CREATE TABLE pairs (a text, b text, y float8);
         INSERT INTO pairs VALUES ('tiger', 'lynx', 3), ('lynx', 'dog', 1), ('tiger', 'dog', 2), ('tiger', 'tiger', 5);
         SELECT embedstack.create_model_set('p', 'words', 'word', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('p', 'pairs', 'a', 'b', 'y');",
    )
    .unwrap();
    c.batch_execute(&roles.sql("GRANT SELECT (word) ON words TO @keyonly")).unwrap();
    for role in ["nobody", "keyonly"] {
        let mut r = embedstack_client_tests::connect_as(db, &roles.name(role));
        let e = expect_code(&mut r, "SELECT * FROM embedstack.explain('p', 'tiger', 'lynx')", "42501");
        let text = all_text(&e);
        assert!(!text.contains("tiger") && !text.contains("lynx"), "{role}: {text}");
    }
    // The owner may.
    let rows = explain(&mut c, "SELECT * FROM embedstack.explain('p', 'tiger', 'lynx')", &[]);
    assert_eq!(rows.len(), 4);
    drop(c);
    drop(roles); // drops the database, then the roles
}
