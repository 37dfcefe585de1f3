//! Loads `tests/fixtures/wordsim353` into a database, as a user would: COPY the raw
//! `real[]` vectors, then keep a pgvector `vector(n)` copy of every model column.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use postgres::Client;
use serde_json::Value;

use crate::fixture_dir;

pub const MODELS: [&str; 7] = [
    "minilm_l6",
    "para_minilm_l3",
    "wordllama_l2s256",
    "static_m2v64",
    "w2v_sg100",
    "ppmi_svd300",
    "char_ngram",
];

pub fn reference() -> Value {
    let path = fixture_dir().join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Creates `words_raw(word, <model> real[] …)`, `words(word, <model> vector(dim) …)`,
/// `pairs_train(a, b, y)` and `pairs_test(a, b, y)`.
pub fn load_wordsim(c: &mut Client) {
    let reference = reference();
    let dir = fixture_dir();
    let cols: Vec<String> = MODELS.iter().map(|m| format!("{m} real[]")).collect();
    c.batch_execute(&format!("CREATE TABLE words_raw (word text PRIMARY KEY, {})", cols.join(", "))).unwrap();
    let mut data = Vec::new();
    GzDecoder::new(std::fs::File::open(dir.join("words.copy.gz")).unwrap()).read_to_end(&mut data).unwrap();
    let mut w = c.copy_in("COPY words_raw FROM STDIN").unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap();

    let vcols: Vec<String> = MODELS
        .iter()
        .map(|m| format!("{m}::vector({}) AS {m}", reference["dims"][m].as_u64().unwrap()))
        .collect();
    c.batch_execute(&format!(
        "CREATE TABLE words AS SELECT word, {} FROM words_raw; ALTER TABLE words ADD PRIMARY KEY (word)",
        vcols.join(", ")
    ))
    .unwrap();

    for split in ["pairs_train", "pairs_test"] {
        c.batch_execute(&format!(
            "CREATE TABLE {split} (a text NOT NULL, b text NOT NULL, y float8 NOT NULL)"
        ))
        .unwrap();
        let csv = std::fs::read(dir.join(format!("{split}.csv"))).unwrap();
        let mut w = c.copy_in(&format!("COPY {split} FROM STDIN WITH (FORMAT csv, HEADER true)")).unwrap();
        w.write_all(&csv).unwrap();
        w.finish().unwrap();
    }
    c.batch_execute("ANALYZE").unwrap();
}

/// `ARRAY[t.m1, t.m2, …]` over all fixture models for table alias `t`.
pub fn model_array(alias: &str) -> String {
    let cols: Vec<String> = MODELS.iter().map(|m| format!("{alias}.{m}")).collect();
    format!("ARRAY[{}]", cols.join(", "))
}
