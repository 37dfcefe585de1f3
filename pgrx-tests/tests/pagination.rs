//! Pagination through the served view (the README's query shape, no WHERE), against the real
//! project cluster: past `hnsw.ef_search` candidates the HNSW scan alone returns short or empty
//! pages (P5 of the 0.3.0 new-user trial); with `hnsw.iterative_scan` (pgvector 0.8), as the
//! README says, `LIMIT 100` and `LIMIT 10 OFFSET 100` return full pages, through the generation's
//! index, in score order.

use embedstack_client_tests::fresh_db;
use postgres::Client;

/// The README query for item 7: ids and scores of one page.
fn page(c: &mut Client, limit: i64, offset: i64) -> Vec<(i32, f64)> {
    c.query(
        "SELECT s.id, (v.pg_combined <#> embedstack.query_vector('pg', 7))::float8 FROM items s JOIN items_pg v USING (id)
          ORDER BY v.pg_combined <#> embedstack.query_vector('pg', 7) LIMIT $1 OFFSET $2",
        &[&limit, &offset],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn pages_past_ef_search_are_full_with_iterative_scan() {
    let mut c = fresh_db("pagination");
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, m1 vector(8), m2 vector(4));
         INSERT INTO items SELECT i,
                ARRAY(SELECT sin(i * 0.37 + j) FROM generate_series(1, 8) j)::float4[]::vector,
                ARRAY(SELECT cos(i * 0.11 + 2 * j) FROM generate_series(1, 4) j)::float4[]::vector
           FROM generate_series(1, 5000) i;
         CREATE TABLE pairs AS SELECT a.id AS a, b.id AS b,
                1 + 2 * embedstack.cosine(a.m1, b.m1) + embedstack.cosine(a.m2, b.m2) AS y
           FROM items a JOIN items b ON a.id < b.id AND a.id <= 300 AND b.id <= 300 AND (a.id * 7 + b.id) % 97 = 0;
         SELECT embedstack.create_model_set('pg', 'items', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('pg', 'pairs', 'a', 'b', 'y');
         SET client_min_messages = warning;",
    )
    .unwrap();
    // (Its own statement: a multi-statement string is one transaction block, which
    // materialize refuses.)
    c.batch_execute("CALL embedstack.materialize('pg')").unwrap();
    c.batch_execute("ANALYZE").unwrap();
    for (limit, offset) in [(100, 0), (10, 100)] {
        let plan: String = c
            .query(
                "EXPLAIN (COSTS OFF) SELECT s.id FROM items s JOIN items_pg v USING (id)
                  ORDER BY v.pg_combined <#> embedstack.query_vector('pg', 7) LIMIT $1 OFFSET $2",
                &[&(limit as i64), &(offset as i64)],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains("Index Scan using items_pg_g1_hnsw"),
            "LIMIT {limit} OFFSET {offset}: the generation's HNSW index serves the page:\n{plan}"
        );
    }

    // Without the iterative scan: at most ef_search (40) candidates, so short and empty pages.
    let ef: i64 = c.query_one("SELECT current_setting('hnsw.ef_search')::bigint", &[]).unwrap().get(0);
    assert_eq!(ef, 40);
    assert!(page(&mut c, 100, 0).len() < 100, "the documented limit: a page past ef_search is short");
    assert!(
        page(&mut c, 10, 100).len() < 10,
        "the documented limit: a page past ef_search is short or empty"
    );

    // With it: full pages, in score order, the second page continuing the first.
    c.batch_execute("SET hnsw.iterative_scan = strict_order").unwrap();
    let first = page(&mut c, 100, 0);
    let second = page(&mut c, 10, 100);
    assert_eq!((first.len(), second.len()), (100, 10), "full pages");
    let all: Vec<f64> = first.iter().chain(second.iter()).map(|r| r.1).collect();
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "score order across the pages");
    let ids: std::collections::BTreeSet<i32> = first.iter().chain(second.iter()).map(|r| r.0).collect();
    assert_eq!(ids.len(), 110, "no row twice");
}
