//! A database whose extension is still on the SQL of an earlier release, with this library
//! installed (the window between `make install` and `ALTER EXTENSION embedstack UPDATE`), against
//! the real project cluster. The SQL of 0.2.1 and 0.3.0 writes its catalog through
//! `embedstack._write`, whose C function ran the writer as the catalog's owner; with this library
//! it runs as the caller, search_path pinned (src/operations/legacy_write.rs):
//! * on 0.3.0's SQL the extension's owner keeps working (create, fit, materialize), an ordinary
//!   role gains nothing — F1's domain and cast routes run as that role only, and it cannot
//!   write the catalog — and the update then serves the same vectors;
//! * on 0.2.1's SQL (other writer signatures) a catalog write says to run the update.

use embedstack_client_tests::roles::TestRoles;
use embedstack_client_tests::sql::{expect_code, message};
use embedstack_client_tests::{connect_as, create_db};
use postgres::Client;

fn items(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, m1 vector(3), m2 real[]);
         INSERT INTO items SELECT i, ('[' || cos(i) || ',' || sin(i) || ',' || (i % 5 + 1) || ']')::vector,
                ARRAY[cos(2 * i), sin(2 * i)]::real[] FROM generate_series(1, 200) i;
         CREATE TABLE pairs AS SELECT a.id AS a, b.id AS b,
                1 + 2 * embedstack.cosine(a.m1, b.m1) + 3 * embedstack.cosine(a.m2, b.m2) AS y
           FROM items a JOIN items b ON a.id < b.id AND (a.id * 7 + b.id) % 13 = 0;",
    )
    .unwrap();
}

fn rolsuper(su: &mut Client, role: &str) -> bool {
    su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role]).unwrap().get(0)
}

#[test]
fn on_0_3_0_sql_the_owner_works_and_nobody_gains_anything() {
    let db = "es_legacy_030";
    let roles = TestRoles::create("legacy", &["eve"], &[db]);
    let eve = roles.name("eve");
    let mut su = create_db(db);
    su.batch_execute("CREATE EXTENSION embedstack VERSION '0.3.0' CASCADE").unwrap();
    items(&mut su);
    su.batch_execute(
        "SELECT embedstack.create_model_set('stack', 'items', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('stack', 'pairs', 'a', 'b', 'y');
         SET client_min_messages = warning;",
    )
    .unwrap();
    su.batch_execute("CALL embedstack.materialize('stack')").unwrap();
    let served = |su: &mut Client| -> (i64, Option<Vec<f64>>) {
        let n: i64 = su.query_one("SELECT count(*) FROM items_stack", &[]).unwrap().get(0);
        let m: Option<Vec<f64>> = su
            .query_one("SELECT served_multipliers FROM embedstack.model_sets WHERE name = 'stack'", &[])
            .unwrap()
            .get(0);
        (n, m)
    };
    let before = served(&mut su);
    assert_eq!(before.0, 200);

    // eve: only CONNECT and TEMP. F1's routes run as eve, and the writes are refused.
    let mut e = connect_as(db, &eve);
    e.batch_execute(&format!(
        "CREATE TEMP TABLE t (id int PRIMARY KEY, v vector(2));
         CREATE FUNCTION pg_temp.pwn(x pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_user OPERATOR(pg_catalog.<>) '{eve}' THEN EXECUTE 'ALTER ROLE {eve} SUPERUSER'; END IF;
           RETURN true;
         END $$;
         CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.pwn(VALUE));
         CREATE TYPE pg_temp.ct AS (s pg_catalog.text);
         CREATE FUNCTION pg_temp.ct2text(x pg_temp.ct) RETURNS pg_catalog.text LANGUAGE plpgsql AS $$
         BEGIN
           IF current_user OPERATOR(pg_catalog.<>) '{eve}' THEN EXECUTE 'ALTER ROLE {eve} SUPERUSER'; END IF;
           RETURN x.s;
         END $$;
         CREATE CAST (pg_temp.ct AS pg_catalog.text) WITH FUNCTION pg_temp.ct2text(pg_temp.ct);
         SET search_path = pg_temp, pg_catalog;"
    ))
    .unwrap();
    for sql in [
        "SELECT embedstack._write('insert_model_set', 'eve_x'::pg_catalog.text, 'pg_temp.t'::regclass, 'id'::name,
           '{v}'::name[], '{2}'::int[], '{public.vector}'::regtype[], 'symmetric'::pg_catalog.text, 0.05::float8,
           'c'::name, 'auto'::pg_catalog.text, 'ev'::name)",
        "SELECT embedstack._write('delete_model_set', 'stack'::pg_catalog.text)",
        "SELECT embedstack._write('job_start', ROW('stack')::pg_temp.ct, 'materialize'::pg_catalog.text, '{}'::jsonb,
           'prepare'::pg_catalog.text, NULL::bigint)",
    ] {
        let err = expect_code(&mut e, sql, "42501");
        assert!(!message(&err).is_empty());
    }
    assert!(!rolsuper(&mut su, &eve), "eve never became superuser");
    assert_eq!(served(&mut su), before, "the model set is unchanged");
    drop(e);

    // The update: the same vectors served, now through the 0.3.1 gate.
    su.batch_execute("ALTER EXTENSION embedstack UPDATE").unwrap();
    let updated: bool = su
        .query_one(
            "SELECT e.extversion = a.default_version FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
              WHERE e.extname = 'embedstack'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(updated, "the extension is at the installed default version");
    assert_eq!(served(&mut su), before);
    let def: String = su.query_one("SELECT pg_get_viewdef('items_stack')", &[]).unwrap().get(0);
    assert!(def.contains("_may_read_served('stack'::text, 'items_stack_g1'::regclass)"), "{def}");
    drop(su);
    drop(roles);
}

#[test]
fn on_0_2_1_sql_a_catalog_write_says_to_update() {
    let db = "es_legacy_021";
    let mut su = create_db(db);
    su.batch_execute("CREATE EXTENSION embedstack VERSION '0.2.1' CASCADE").unwrap();
    items(&mut su);
    let err = expect_code(
        &mut su,
        "SELECT embedstack.create_model_set('stack', 'items', 'id', ARRAY['m1', 'm2'])",
        "42883",
    );
    let hint = match err.as_db_error() {
        Some(d) => d.hint().unwrap_or_default().to_string(),
        None => String::new(),
    };
    assert!(hint.contains("ALTER EXTENSION embedstack UPDATE"), "{}: hint {hint:?}", message(&err));
    su.batch_execute("ALTER EXTENSION embedstack UPDATE").unwrap();
    su.batch_execute("SELECT embedstack.create_model_set('stack', 'items', 'id', ARRAY['m1', 'm2'])")
        .unwrap();
    drop(su);
    embedstack_client_tests::drop_db(db);
}
