//! The pure core against scikit-learn on real data: WordSim-353 features (one cosine per model,
//! train split), then OLS, NNLS and every ridge alpha of `reference.json`, which was computed
//! independently with numpy + scikit-learn 1.9.1. Coefficients and intercept within 1e-9
//! relative (1e-12 absolute near zero), r² within 1e-9.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use embedstack_math::regstats::RegStats;
use embedstack_math::solve::{solve, SolveOptions};
use embedstack_math::vector::cosine_f32;

const MODELS: [&str; 7] = [
    "minilm_l6",
    "para_minilm_l3",
    "wordllama_l2s256",
    "static_m2v64",
    "w2v_sg100",
    "ppmi_svd300",
    "char_ngram",
];

/// `tests/fixtures/wordsim353` of this repository, or `$ES_FIXTURES` (a directory with the same files).
fn fixture_dir() -> PathBuf {
    std::env::var("ES_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/wordsim353"))
}

/// The fixture's `words.copy`, stored gzip-compressed as `words.copy.gz`.
fn words_copy(dir: &Path) -> String {
    let file = std::fs::File::open(dir.join("words.copy.gz")).unwrap();
    let mut text = String::new();
    GzDecoder::new(file).read_to_string(&mut text).unwrap();
    text
}

fn parse_array(s: &str) -> Vec<f32> {
    s.trim_matches(|c| c == '{' || c == '}').split(',').map(|v| v.parse().unwrap()).collect()
}

fn train_stats() -> RegStats {
    let dir = fixture_dir();
    let words: HashMap<String, Vec<Vec<f32>>> = words_copy(&dir)
        .lines()
        .map(|l| {
            let mut it = l.split('\t');
            let w = it.next().unwrap().to_string();
            (w, it.map(parse_array).collect())
        })
        .collect();
    let mut st = RegStats::new(MODELS.len());
    for line in std::fs::read_to_string(dir.join("pairs_train.csv")).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (a, b, y) = (&words[f[0]], &words[f[1]], f[2].parse::<f64>().unwrap());
        let x: Vec<f64> = (0..MODELS.len()).map(|k| cosine_f32(&a[k], &b[k]).unwrap().unwrap()).collect();
        st.accumulate(&x, y, 1.0).unwrap();
    }
    st
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs() || (got - want).abs() <= 1e-12
}

#[test]
fn ols_nnls_and_ridge_match_scikit_learn() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap())
            .unwrap();
    let st = train_stats();
    assert_eq!(st.n, reference["n_train"].as_u64().unwrap());
    let mut cases = vec![
        ("ols", SolveOptions::default()),
        ("nnls", SolveOptions { nonnegative: true, ..Default::default() }),
    ];
    for name in reference["fits"].as_object().unwrap().keys().filter(|k| k.starts_with("ridge_a")) {
        let alpha: f64 = name.trim_start_matches("ridge_a").parse().unwrap();
        cases.push((
            Box::leak(name.clone().into_boxed_str()),
            SolveOptions { ridge: alpha, ..Default::default() },
        ));
    }
    assert!(cases.len() >= 7, "every ridge alpha of the reference is checked");
    for (name, opts) in cases {
        let want = &reference["fits"][name];
        let fit = solve(&st, opts).unwrap().unwrap();
        for (k, m) in MODELS.iter().enumerate() {
            let w = want["coef"][m].as_f64().unwrap();
            assert!(close(fit.weights[k], w), "{name} {m}: {} vs {w}", fit.weights[k]);
        }
        let b0 = want["intercept"].as_f64().unwrap();
        assert!(close(fit.intercept, b0), "{name} intercept: {} vs {b0}", fit.intercept);
        let r2 = want["r2_train"].as_f64().unwrap();
        assert!((fit.r2 - r2).abs() <= 1e-9, "{name} r2: {} vs {r2}", fit.r2);
    }
}
