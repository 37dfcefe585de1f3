//! The model-set pipeline end to end on the WordSim-353 fixture, against the independent
//! reference (numpy float64 + scikit-learn): create_model_set → fit → materialize → serve →
//! evaluate. Served (0.3.0) through the view `words_ws` over a generation table; the source
//! table `words` keeps its columns.

use std::collections::HashMap;

use embedstack_client_tests::check::close;
use embedstack_client_tests::fixtures::{load_wordsim, reference, MODELS};
use embedstack_client_tests::fresh_db;
use embedstack_client_tests::reference::cosine;
use embedstack_client_tests::served::{
    attributes, generation_index_name, generation_table_name, served_by_key, served_generation, view_name,
};
use embedstack_client_tests::stats::{pearson, spearman};

#[test]
fn wordsim_model_set_reproduces_the_reference_end_to_end() {
    let mut c = fresh_db("ms_wordsim");
    load_wordsim(&mut c);
    let reference = reference();
    let ols = &reference["fits"]["ols"];
    let models: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();

    c.execute("SELECT embedstack.create_model_set('ws', 'words', 'word', $1::name[])", &[&models]).unwrap();
    let attributes0 = attributes(&mut c, "words");

    // fit() from the stored columns reproduces scikit-learn's LinearRegression.
    let row = c
        .query_one(
            "SELECT id, weights, intercept, (diagnostics->>'r2')::float8, (diagnostics->>'n_used')::int8
               FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y')",
            &[],
        )
        .unwrap();
    let (fit_id, w, b0, r2, n): (i64, Vec<f64>, f64, f64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(n, reference["n_train"].as_i64().unwrap());
    for (k, m) in MODELS.iter().enumerate() {
        let want = ols["coef"][m].as_f64().unwrap();
        assert!(close(w[k], want, 1e-9), "{m}: {} vs {want}", w[k]);
    }
    assert!(close(b0, ols["intercept"].as_f64().unwrap(), 1e-9), "intercept {b0}");
    assert!(close(r2, ols["r2_train"].as_f64().unwrap(), 1e-9), "r2 {r2}");

    // Nothing is served until materialize.
    let active: Option<i64> =
        c.query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = 'ws'", &[]).unwrap().get(0);
    assert_eq!(active, None);

    c.batch_execute("CALL embedstack.materialize('ws', batch_size => 100)").unwrap();
    let (active, mult): (Option<i64>, Vec<f64>) = {
        let r = c
            .query_one(
                "SELECT active_fit, served_multipliers FROM embedstack.model_sets WHERE name = 'ws'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(active, Some(fit_id));
    // Kept models and their scales are the reference's (threshold 0.05).
    for (k, m) in MODELS.iter().enumerate() {
        let want = ols["scale"].get(*m).and_then(|v| v.as_f64()).unwrap_or(0.0);
        assert!(
            close(mult[k] * mult[k], want, 1e-12),
            "{m}: multiplier² {} vs scale {want}",
            mult[k] * mult[k]
        );
    }
    // Served through the view words_ws, from generation table words_ws_g<id> and its index.
    assert_eq!(view_name(&mut c, "ws"), "words_ws");
    let g = served_generation(&mut c, "ws").expect("a served generation");
    let table = generation_table_name("words_ws", g.id);
    assert_eq!(g.table.as_deref(), Some(table.as_str()));
    assert_eq!(g.index_name.as_deref(), Some(generation_index_name(&table).as_str()));
    assert_eq!((g.fit_id, g.storage.as_str(), g.width), (fit_id, "vector", 384 + 384 + 256 + 64 + 100));
    let dim: i32 = c.query_one("SELECT vector_dims(ws_combined) FROM words_ws LIMIT 1", &[]).unwrap().get(0);
    assert_eq!(dim, 384 + 384 + 256 + 64 + 100);
    let served = served_by_key::<String>(&mut c, "ws");
    let n_words: i64 = c.query_one("SELECT count(*) FROM words", &[]).unwrap().get(0);
    assert_eq!(served.len() as i64, n_words, "every word served");
    assert!(served.values().all(|v| v.is_some()), "no NULL combined vector");
    assert_eq!(attributes(&mut c, "words"), attributes0, "the source keeps its columns");

    // Raw vectors, to compute the expected scores independently.
    let mut raw: HashMap<String, Vec<Vec<f32>>> = HashMap::new();
    let cols = MODELS.join(", ");
    for r in c.query(&format!("SELECT word, {cols} FROM words_raw"), &[]).unwrap() {
        raw.insert(r.get(0), (0..MODELS.len()).map(|k| r.get::<_, Vec<f32>>(k + 1)).collect());
    }

    // Every held-out pair: the inner product of the combined vectors is Σ_kept scale_k cos_k.
    let pairs = c
        .query(
            "SELECT p.a, p.b, p.y, -(wa.ws_combined <#> wb.ws_combined), 1 - (wa.ws_combined <=> wb.ws_combined)
               FROM pairs_test p JOIN words_ws wa ON wa.word = p.a JOIN words_ws wb ON wb.word = p.b",
            &[],
        )
        .unwrap();
    assert_eq!(pairs.len() as i64, reference["n_test"].as_i64().unwrap());
    let (mut ys, mut combined_cos) = (Vec::new(), Vec::new());
    for r in &pairs {
        let (a, b, y, ip, cc): (String, String, f64, f64, f64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let want: f64 = MODELS
            .iter()
            .enumerate()
            .map(|(k, m)| {
                ols["scale"].get(*m).and_then(|v| v.as_f64()).unwrap_or(0.0)
                    * cosine(&raw[&a][k], &raw[&b][k])
                        .unwrap_or_else(|| panic!("{a}/{b}: a zero vector of {m} has no cosine"))
            })
            .sum();
        assert!((ip - want).abs() <= 1e-5, "{a}/{b}: inner product {ip} vs weighted sum {want}");
        ys.push(y);
        combined_cos.push(cc);
    }
    let test = &reference["test"];
    let want = test["ols_combined_cosine"]["spearman"].as_f64().unwrap();
    let got = spearman(&combined_cos, &ys);
    assert!((got - want).abs() <= 1e-3, "held-out Spearman of combined cosines {got} vs {want}");

    // evaluate() agrees with the reference, per model and for the stack.
    let rows = c
        .query(
            "SELECT model, n, pearson, spearman FROM embedstack.evaluate('ws', 'pairs_test', 'a', 'b', 'y')",
            &[],
        )
        .unwrap();
    let by: HashMap<String, (i64, f64, f64)> =
        rows.iter().map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2), r.get(3)))).collect();
    for m in MODELS {
        let (n, p, s) = by[m];
        assert_eq!(n, 91);
        assert!(close(s, test["single"][m]["spearman"].as_f64().unwrap(), 1e-9), "{m} spearman {s}");
        assert!(close(p, test["single"][m]["pearson"].as_f64().unwrap(), 1e-9), "{m} pearson {p}");
    }
    let (_, p, s) = by["(stack)"];
    assert!((s - want).abs() <= 1e-3, "(stack) spearman {s} vs {want}");
    assert!(
        (p - test["ols_combined_cosine"]["pearson"].as_f64().unwrap()).abs() <= 1e-3,
        "(stack) pearson {p}"
    );
    let (_, p, s) = by["(fit)"];
    assert!(close(s, test["ols_weighted_sum"]["spearman"].as_f64().unwrap(), 1e-9), "(fit) spearman {s}");
    assert!(close(p, test["ols_weighted_sum"]["pearson"].as_f64().unwrap(), 1e-9), "(fit) pearson {p}");
    // The stack's Pearson recomputed here from the served inner products.
    let ips: Vec<f64> = pairs.iter().map(|r| r.get::<_, f64>(3)).collect();
    let (_, p_stack, _) = by["(stack)"];
    assert!((pearson(&ips, &ys) - p_stack).abs() <= 1e-5, "(stack) pearson {p_stack}");

    // Item-to-item with the README's query (source JOIN view): the stored row's query vector
    // equals its stored combined vector (symmetric mode), so a word is its own nearest neighbour.
    let first: String = c
        .query_one(
            "SELECT s.word FROM words s JOIN words_ws v USING (word)
              ORDER BY v.ws_combined <#> embedstack.query_vector('ws', 'tiger'::text) LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(first, "tiger");
}

/// The cache fallback: with a budget far below the entities' size, fit processes chunk
/// pairs and must give the same statistics as with everything cached.
#[test]
fn fit_with_a_tiny_entity_cache_gives_the_same_fit() {
    let mut c = fresh_db("ms_cache");
    load_wordsim(&mut c);
    let models: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
    c.execute("SELECT embedstack.create_model_set('ws', 'words', 'word', $1::name[])", &[&models]).unwrap();
    let full: Vec<f64> = c
        .query_one("SELECT embedstack.pair_statistics('ws', 'pairs_train', 'a', 'b', 'y')", &[])
        .unwrap()
        .get(0);
    // 381 words x (2,512 dims x 4 bytes) ≈ 3.8 MB; 1 MB makes 8 chunks of 47 words.
    c.batch_execute("SET embedstack.entity_cache_size = '1MB'").unwrap();
    let chunked: Vec<f64> = c
        .query_one("SELECT embedstack.pair_statistics('ws', 'pairs_train', 'a', 'b', 'y')", &[])
        .unwrap()
        .get(0);
    assert_eq!(full.len(), chunked.len());
    // Same pairs, different accumulation order: equal up to rounding.
    for (i, (a, b)) in full.iter().zip(&chunked).enumerate() {
        assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "element {i}: {a} vs {b}");
    }
    let w: Vec<f64> = c
        .query_one("SELECT weights FROM embedstack.fit('ws', 'pairs_train', 'a', 'b', 'y')", &[])
        .unwrap()
        .get(0);
    let want = reference()["fits"]["ols"]["coef"]["minilm_l6"].as_f64().unwrap();
    assert!(close(w[0], want, 1e-9));
}
