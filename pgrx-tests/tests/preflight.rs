//! Errors that name the fix and the pre-flight check (issue 19, items 6 and 7; P8 of the 0.3.0
//! new-user trial), against the real project cluster.
//!
//! 1. `embedstack.check(set, pairs, a, b, y)` on a source and pairs with one of every known
//!    problem planted (the expected counts are the rows planted here): one finding each, with its
//!    severity, and each finding's query lists exactly the rows it counts; constant targets and too
//!    few pairs are errors.
//! 2. The messages: a source with mixed dimensions is refused at create_model_set with the count
//!    and a query that lists the rows; a fit of fewer pairs than weights + intercept warns so and is
//!    not what a plain materialize picks; a fit that explains nothing warns; a key given as a
//!    quoted literal works for an integer key (and fails as the key type's input does); a row
//!    without any model vector is refused by query_vector; a renamed model column names the model
//!    set and the way back.

use std::collections::BTreeMap;

use embedstack_client_tests::fresh_db;
use embedstack_client_tests::roles::connect_with_notices;
use embedstack_client_tests::sql::{all_text, expect_code};

/// `(severity, finding, model column)`.
type Finding = (String, String, Option<String>);

/// `finding -> (count, query)`.
type Findings = BTreeMap<Finding, (i64, Option<String>)>;

fn findings(c: &mut postgres::Client, sql: &str) -> Findings {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), (r.get(3), r.get(5))))
        .collect()
}

fn key(sev: &str, what: &str, col: Option<&str>) -> Finding {
    (sev.to_string(), what.to_string(), col.map(str::to_string))
}

#[test]
fn check_counts_every_finding_with_a_query_that_lists_it() {
    let mut c = fresh_db("preflight_check");
    c.batch_execute(
        "CREATE TABLE src (id int PRIMARY KEY, m1 real[], m2 vector(3));
         INSERT INTO src SELECT g, ARRAY[sin(g), cos(g), 1, g % 3 + 1]::real[], ARRAY[g % 5 + 1, 1, cos(g)]::real[]::vector
           FROM generate_series(1, 40) g;
         INSERT INTO src VALUES
           (41, '{1,2,3}', '[1,2,3]'), (42, '{3,2,1}', '[1,2,3]'),       -- m1 of 3 dimensions, not 4
           (43, '{0,0,0,0}', '[1,2,3]'),                                  -- m1 zero
           (44, '{NaN,1,1,1}', '[1,2,3]'),                                -- m1 with a NaN
           (45, NULL, '[1,2,3]'), (46, NULL, '[3,2,1]'),                  -- m1 NULL
           (47, '{1,1,1,1}', '[0,0,0]'),                                  -- m2 zero
           (48, NULL, NULL),                                              -- no model vector
           (49, '{{1,2},{3,4}}', '[1,1,1]');                              -- m1 nested
         SELECT embedstack.create_model_set('s', 'src', 'id', ARRAY['m1', 'm2'], model_dims => '{4,3}');
         CREATE TABLE pairs (a int, b int, y float8);
         INSERT INTO pairs SELECT g, g + 1, 0.5 + (g % 4) / 10.0 FROM generate_series(1, 30) g;
         INSERT INTO pairs VALUES (1, 1000, 0.5), (2000, 3, 0.5), (5, 3000, 0.1),  -- unknown keys
                                  (6, 8, NULL), (7, 9, NULL),                      -- NULL targets
                                  (2, 1, 0.7);                                     -- (1, 2) again, reversed",
    )
    .unwrap();
    let got = findings(&mut c, "SELECT * FROM embedstack.check('s', 'pairs', 'a', 'b', 'y')");
    let want: Vec<(Finding, i64)> = vec![
        (key("error", "dimension mismatch", Some("m1")), 2),
        (key("error", "multi-dimensional array", Some("m1")), 1),
        (key("error", "NULL, NaN or infinite element", Some("m1")), 1),
        (key("warning", "zero vector", Some("m1")), 1),
        (key("info", "NULL vector", Some("m1")), 3),
        (key("warning", "zero vector", Some("m2")), 1),
        (key("info", "NULL vector", Some("m2")), 1),
        (key("warning", "no model vector", None), 1),
        (key("warning", "pair key not in the source", None), 3),
        (key("warning", "NULL target", None), 2),
        (key("warning", "duplicate pair", None), 1),
        (key("info", "summary", None), 49),
    ];
    let got_counts: BTreeMap<_, i64> = got.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    let want_counts: BTreeMap<_, i64> = want.into_iter().collect();
    assert_eq!(got_counts, want_counts, "findings");
    // Each query lists the rows its finding counts (a duplicate pair: its group).
    for ((sev, what, col), (count, query)) in &got {
        let Some(q) = query else { continue };
        let n = c.query(q.as_str(), &[]).unwrap_or_else(|e| panic!("{what}: {q}: {e}")).len() as i64;
        let expected = if what == "duplicate pair" { 1 } else { *count };
        assert_eq!(n, expected, "{sev} {what} {col:?}: {q}");
    }
    // Without pairs: the source's findings only.
    let src_only = findings(&mut c, "SELECT * FROM embedstack.check('s')");
    assert_eq!(src_only.len(), got.len() - 3, "{src_only:?}");
    // Constant targets and too few pairs are errors.
    c.batch_execute("CREATE TABLE few AS SELECT 1 AS a, 2 AS b, 0.5::float8 AS y UNION ALL SELECT 3, 4, 0.5")
        .unwrap();
    let f = findings(&mut c, "SELECT * FROM embedstack.check('s', 'few', 'a', 'b', 'y')");
    assert_eq!(f.get(&key("error", "constant target", None)).map(|x| x.0), Some(2), "{f:?}");
    assert_eq!(f.get(&key("error", "too few pairs", None)).map(|x| x.0), Some(2), "{f:?}");
    // Half the pair arguments: 22023.
    expect_code(&mut c, "SELECT * FROM embedstack.check('s', 'few', 'a')", "22023");
}

#[test]
fn messages_name_the_fix() {
    let mut c = fresh_db("preflight_messages");
    // Mixed dimensions: refused at create_model_set with the count and a query that lists them.
    c.batch_execute(
        "CREATE TABLE md (id int PRIMARY KEY, m real[]);
         INSERT INTO md SELECT g, CASE WHEN g IN (5, 9, 12) THEN ARRAY[1, 2]::real[] ELSE ARRAY[1, g, 3]::real[] END
           FROM generate_series(1, 20) g;",
    )
    .unwrap();
    let e = expect_code(&mut c, "SELECT embedstack.create_model_set('md', 'md', 'id', ARRAY['m'])", "22000");
    let text = all_text(&e);
    assert!(text.contains("has 3 rows whose dimension is not 3"), "{text}");
    let hint = e.as_db_error().unwrap().hint().unwrap().to_string();
    let query = hint.split(" lists them").next().unwrap();
    let ids: Vec<i32> = c.query(query, &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [5, 9, 12], "the hint's query lists the rows: {query}");

    // Fewer pairs than weights + intercept; a fit that explains nothing.
    let (mut s, notices) = connect_with_notices("es_preflight_messages", "postgres");
    s.batch_execute(
        "CREATE TABLE it (id int PRIMARY KEY, m1 vector(3), m2 vector(3), m3 vector(3));
         INSERT INTO it SELECT g, ARRAY[sin(g), cos(g), 1]::real[]::vector, ARRAY[cos(g * 0.3), 1, sin(g * 2)]::real[]::vector,
                               ARRAY[1, sin(g * 0.7), cos(g * 1.3)]::real[]::vector FROM generate_series(1, 300) g;
         INSERT INTO it VALUES (999, NULL, NULL, NULL);
         SELECT embedstack.create_model_set('it', 'it', 'id', ARRAY['m1', 'm2', 'm3'], mode => 'query_weighted');
         CREATE TABLE two AS SELECT 1 AS a, 2 AS b, 0.9::float8 AS y UNION ALL SELECT 3, 4, 0.2;
         CREATE TABLE noise AS SELECT a.id AS a, b.id AS b,
                (hashint4(a.id * 1000 + b.id) % 1000) / 1000.0::float8 AS y
           FROM it a JOIN it b ON b.id BETWEEN a.id + 1 AND a.id + 3 WHERE a.id < 300 AND b.id < 300;",
    )
    .unwrap();
    notices.lock().unwrap().clear();
    let (few_fit, under): (i64, bool) = {
        let r = s
            .query_one(
                "SELECT id, (diagnostics->>'underdetermined')::boolean FROM embedstack.fit('it', 'two', 'a', 'b', 'y')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(under, "a fit of 2 pairs for 3 weights and an intercept is marked underdetermined");
    let warned: Vec<String> = notices.lock().unwrap().iter().map(|n| n.1.clone()).collect();
    assert!(
        warned.iter().any(|m| m.contains("only 2 usable rows for 3 weights and the intercept")),
        "{warned:?}"
    );
    let e = expect_code(&mut s, "CALL embedstack.materialize('it')", "55000");
    assert!(all_text(&e).contains("underdetermined"), "{}", all_text(&e));
    let _ = few_fit;
    notices.lock().unwrap().clear();
    let r2: f64 = s
        .query_one(
            "SELECT (diagnostics->>'r2')::float8 FROM embedstack.fit('it', 'noise', 'a', 'b', 'y')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(r2 < 0.01, "test precondition: hashed labels explain nothing (r2 = {r2})");
    let warned: Vec<String> = notices.lock().unwrap().iter().map(|n| n.1.clone()).collect();
    assert!(warned.iter().any(|m| m.contains("explains almost nothing")), "{warned:?}");

    // A quoted key for an integer key column; a row without any vector.
    s.batch_execute("CALL embedstack.materialize('it')").unwrap();
    let same: bool = s
        .query_one("SELECT embedstack.query_vector('it', '7') = embedstack.query_vector('it', 7)", &[])
        .unwrap()
        .get(0);
    assert!(same, "query_vector('it', '7') reads the literal as the integer key 7");
    let same: bool = s
        .query_one("SELECT embedstack.query_vector('it', '7'::text) = embedstack.query_vector('it', 7)", &[])
        .unwrap()
        .get(0);
    assert!(same);
    expect_code(&mut s, "SELECT embedstack.query_vector('it', 'seven')", "22P02");
    expect_code(&mut s, "SELECT embedstack.query_vector('it', '123456')", "P0002");
    let e = expect_code(&mut s, "SELECT embedstack.query_vector('it', 999)", "22004");
    assert!(all_text(&e).contains("no model vector"), "{}", all_text(&e));

    // A model column renamed since the model set was created: 42703 naming the model set and the
    // way back.
    s.batch_execute("ALTER TABLE it RENAME COLUMN m3 TO m3_renamed").unwrap();
    let e = expect_code(&mut s, "SELECT embedstack.fit('it', 'noise', 'a', 'b', 'y')", "42703");
    assert!(
        all_text(&e).contains("model set \"it\" reads it") && all_text(&e).contains("RENAME COLUMN"),
        "{}",
        all_text(&e)
    );
}
