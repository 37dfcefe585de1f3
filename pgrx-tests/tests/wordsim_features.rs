//! Independent correctness check on real data: the WordSim-353 fixture (7 real models,
//! 381 words). `cosine_features` computed in SQL must reproduce, for every model, the held-out
//! Spearman of `reference.json` (`test.single.<model>.spearman`, computed with numpy/scipy).

use embedstack_client_tests::fixtures::{load_wordsim, model_array, reference, MODELS};
use embedstack_client_tests::fresh_db;
use embedstack_client_tests::stats::spearman;

#[test]
fn cosine_features_reproduce_reference_spearman_per_model() {
    let mut c = fresh_db("wordsim_features");
    load_wordsim(&mut c);
    let reference = reference();
    let rows = c
        .query(
            &format!(
                "SELECT p.y, embedstack.cosine_features({}, {})
                 FROM pairs_test p JOIN words wa ON wa.word = p.a JOIN words wb ON wb.word = p.b
                 ORDER BY p.a, p.b",
                model_array("wa"),
                model_array("wb")
            ),
            &[],
        )
        .unwrap();
    assert_eq!(rows.len() as u64, reference["n_test"].as_u64().unwrap(), "every test pair is covered");
    let y: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    for (k, model) in MODELS.iter().enumerate() {
        let x: Vec<f64> = rows
            .iter()
            .map(|r| r.get::<_, Vec<Option<f64>>>(1)[k].expect("every model covers every test word"))
            .collect();
        let got = spearman(&x, &y);
        let want = reference["test"]["single"][model]["spearman"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-9, "{model}: spearman {got} vs reference {want}");
    }
}

#[test]
fn real_array_cosine_matches_vector_cosine_on_fixture() {
    // The same features through the real[] overload on the raw columns: identical values.
    let mut c = fresh_db("wordsim_real_arrays");
    load_wordsim(&mut c);
    for model in MODELS {
        let row = c
            .query_one(
                &format!(
                    "SELECT max(abs(embedstack.cosine(ra.{model}, rb.{model}) - embedstack.cosine(wa.{model}, wb.{model}))),
                            count(*)
                     FROM pairs_train p
                     JOIN words_raw ra ON ra.word = p.a JOIN words_raw rb ON rb.word = p.b
                     JOIN words wa ON wa.word = p.a JOIN words wb ON wb.word = p.b"
                ),
                &[],
            )
            .unwrap();
        let diff: f64 = row.get(0);
        let n: i64 = row.get(1);
        assert_eq!(n, 213);
        assert!(diff == 0.0, "{model}: {diff}");
    }
}
