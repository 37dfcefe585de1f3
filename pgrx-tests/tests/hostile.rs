//! Hostile use (issue 11): every statement an outside probe of 0.2.0 ran as an unprivileged
//! role, with the clean outcome asserted — a SQLSTATE, the session still connected, the server
//! never restarted — and the model sets of other roles untouched.
//!
//! These statements crashed 0.2.0's server, so each test runs on a throw-away cluster of its
//! own (`embedstack_client_tests::cluster`), started with RUST_BACKTRACE=1 in the server's
//! environment: no error may show a Rust backtrace to the user even then. At the end of each
//! test the server log must not show a backend killed by a signal.
//!
//! Roles: `alice` owns schema `alice` and her table `alice.people` with model set `ms` (served,
//! 0.3.0, through the view `alice.people_ms` over a generation table); `bob` owns schema `bob` and
//! has no privilege on alice's objects; `carol` may SELECT alice.people.

use embedstack_client_tests::cluster::ThrowawayCluster;
use embedstack_client_tests::served::{
    assert_freshness_triggers, default_view_name, generation_index_name, generation_table_name, generations,
    relation_exists, served_generation, source_state, trigger_names, view_name,
};
use embedstack_client_tests::sql::{all_text, expect_code, message, q, quote_ident};
use postgres::Client;

/// A throw-away cluster for one test, with database `h`, the extension, the roles and alice's
/// served model set `ms` (two models: m1 real[4], m2 vector(3); 60 rows, 114 pairs).
fn setup(name: &str, port: u16) -> (ThrowawayCluster, Client) {
    let cl = ThrowawayCluster::start(name, port, &[("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")]);
    let mut su = cl.connect("postgres", "postgres");
    su.batch_execute("CREATE DATABASE h").unwrap();
    let mut su = cl.connect("h", "postgres");
    su.batch_execute(
        "CREATE EXTENSION embedstack CASCADE;
         CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
         CREATE SCHEMA alice AUTHORIZATION alice; CREATE SCHEMA bob AUTHORIZATION bob;",
    )
    .unwrap();
    let mut a = cl.connect("h", "alice");
    people(&mut a, "alice.people", 60);
    a.batch_execute(
        "SELECT embedstack.create_model_set('ms', 'alice.people', 'id', '{m1,m2}');
         SELECT embedstack.fit('ms', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    a.batch_execute("CALL embedstack.materialize('ms')").unwrap();
    a.batch_execute(
        "GRANT USAGE ON SCHEMA alice TO carol; GRANT SELECT ON alice.people, alice.pairs TO carol",
    )
    .unwrap();
    (cl, su)
}

/// `table(id int PK, email text, m1 real[], m2 vector(3))` with `n` rows whose emails are
/// private (`user<i>@corp.example`), and pairs `<schema>.pairs(a, b, y)` over them.
fn people(c: &mut Client, table: &str, n: i32) {
    let schema = table.split('.').next().unwrap();
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, email text, m1 real[], m2 vector(3));
         INSERT INTO {table}
         SELECT i, 'user' || i || '@corp.example',
                ARRAY[sin(i), cos(i), sin(2 * i), 1]::real[],
                ('[' || cos(3 * i) || ',' || sin(5 * i) || ',1.5]')::vector
           FROM generate_series(1, {n}) i;
         CREATE TABLE IF NOT EXISTS {schema}.pairs (a int, b int, y float8);
         INSERT INTO {schema}.pairs SELECT i, i + 1, (i % 7)::float8 FROM generate_series(1, {n} - 1) i;
         INSERT INTO {schema}.pairs SELECT i, i + 5, ((i * 3) % 5)::float8 FROM generate_series(1, {n} - 5) i;"
    ))
    .unwrap();
}

/// The session still works and the server never lost a backend to a signal.
fn assert_alive(cl: &ThrowawayCluster, sessions: &mut [&mut Client]) {
    for s in sessions.iter_mut() {
        let one: i32 = s.query_one("SELECT 1", &[]).expect("the session survived").get(0);
        assert_eq!(one, 1);
    }
    let log = cl.log();
    assert!(
        !log.contains("terminated by signal")
            && !log.contains("server process")
            && !log.contains("reinitializing"),
        "the server log shows a crash:\n{log}"
    );
}

/// Everything the catalog holds about model set `set`, as the superuser sees it.
fn catalog_of(su: &mut Client, set: &str) -> String {
    su.query_one(
        "SELECT coalesce((SELECT row_to_json(m)::text FROM embedstack.model_sets m WHERE m.name = $1), '-') || ' | '
             || coalesce((SELECT string_agg(row_to_json(f)::text, ',' ORDER BY f.id) FROM embedstack.fits f
                           WHERE f.model_set = $1), '-') || ' | '
             || coalesce((SELECT string_agg(j.id || j.state || j.phase, ',' ORDER BY j.id) FROM embedstack.jobs j
                           WHERE j.model_set = $1), '-') || ' | '
             || coalesce((SELECT string_agg(row_to_json(g)::text, ',' ORDER BY g.id) FROM embedstack.generations g
                           WHERE g.model_set = $1), '-')",
        &[&set],
    )
    .unwrap()
    .get(0)
}

/// The served vector of row `id` of alice.people, as the model set `ms`'s view serves it (None
/// when the view has no such row), and the closed form of that row computed by the row kernel
/// `embedstack._combine_vector` from the source row and the served multipliers.
fn served_and_kernel(a: &mut Client, id: i32) -> (Option<Vec<f32>>, Vec<f32>) {
    let served: Option<Vec<f32>> = a
        .query_opt("SELECT ms_combined::real[] FROM alice.people_ms WHERE id = $1", &[&id])
        .unwrap()
        .and_then(|r| r.get(0));
    let kernel: Vec<f32> = a
        .query_one(
            "SELECT embedstack._combine_vector(m.served_multipliers, m.model_dims, m.model_columns::text[], p.id, p.m1,
                                               p.m2)::real[]
               FROM alice.people p, embedstack.model_sets m WHERE p.id = $1 AND m.name = 'ms'",
            &[&id],
        )
        .unwrap()
        .get(0);
    (served, kernel)
}

/// A new row of alice.people gets its combined vector from the freshness triggers.
fn insert_gets_vector(a: &mut Client, id: i32) {
    a.batch_execute(&format!(
        "INSERT INTO alice.people VALUES ({id}, 'new@corp.example', '{{1,2,3,4}}', '[1,0,1]')"
    ))
    .unwrap();
    let (served, kernel) = served_and_kernel(a, id);
    assert_eq!(served, Some(kernel), "row {id} got its combined vector");
}

/// Item 1 and 2: a model column whose type changed after the model set was created (also after
/// it was served: the freshness triggers refuse), the freshness trigger function pointed by a
/// user at another table's model set (39P01), user relations in the way of what the extension
/// creates — the served view's name (42P07, nothing written); the next generation table's name
/// (0.3.1: taken by the user, the generation gets a random suffix and the user's table is left as
/// it was) — a temporary source, and the catalog writers called with forged types (0.3.1: by a
/// non-owner 42501; by the owner on its own table, the forged row is refused by every reader):
/// clean errors, no crash.
#[test]
fn altered_types_and_foreign_triggers_are_clean_errors() {
    let (cl, mut su) = setup("types", 28891);
    let mut a = cl.connect("h", "alice");

    // A temporary table cannot be a source (its model set would outlive it).
    a.batch_execute("CREATE TEMP TABLE t (id int PRIMARY KEY, x real[])").unwrap();
    expect_code(
        &mut a,
        "SELECT embedstack.create_model_set('m', 'pg_temp.t', 'id', '{x}', model_dims => '{4}')",
        "0A000",
    );

    // The catalog writers (0.3.1: executable by PUBLIC, as the caller): a non-owner of the table
    // is refused; its owner can record a forged model set of its own table (row types that are
    // not the table's), which every reader then refuses (42804), and drop again.
    a.batch_execute(
        "CREATE TABLE alice.ints (id int PRIMARY KEY, x int8); INSERT INTO alice.ints VALUES (1, 7), (2, 8)",
    )
    .unwrap();
    let ints: u32 = su.query_one("SELECT 'alice.ints'::regclass::oid", &[]).unwrap().get(0);
    let forged = |rel: &str| {
        format!(
            "SELECT embedstack._w_insert_model_set('forged', {rel}, 'id', '{{x}}', '{{4}}', '{{real[]}}', 'symmetric', 0, 'c',
                                                   'auto', 'ints_forged')"
        )
    };
    let mut b0 = cl.connect("h", "bob");
    expect_code(&mut b0, &forged(&format!("{ints}::regclass")), "42501");
    drop(b0);
    a.batch_execute(&forged("'alice.ints'")).unwrap();
    a.batch_execute(
        "CREATE TABLE alice.int_pairs (a int, b int, y float8); INSERT INTO alice.int_pairs VALUES (1, 2, 1)",
    )
    .unwrap();
    for sql in [
        "SELECT embedstack.pair_statistics('forged', 'alice.int_pairs', 'a', 'b', 'y')",
        "SELECT embedstack.fit('forged', 'alice.int_pairs', 'a', 'b', 'y')",
    ] {
        expect_code(&mut a, sql, "42804");
    }
    a.batch_execute("SELECT embedstack.drop_model_set('forged')").unwrap();

    // A model set whose real[] column became int8: every reader and the trigger refuse.
    people(&mut a, "alice.p2", 30);
    // (PostgreSQL itself refuses ALTER TYPE of a column the freshness trigger names, so the
    // type changes before the first materialise, as in the probe.)
    a.batch_execute(
        "SELECT embedstack.create_model_set('m2', 'alice.p2', 'id', '{m1,m2}');
         SELECT embedstack.fit('m2', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    a.batch_execute("ALTER TABLE alice.p2 ALTER m1 TYPE int8 USING 7").unwrap();
    for sql in [
        "SELECT embedstack.pair_statistics('m2', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT * FROM embedstack.evaluate('m2', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT * FROM embedstack.evaluate('m2', 'alice.pairs', 'a', 'b', 'y', ablation => true)",
        "SELECT * FROM embedstack.explain('m2', 1, 2)",
        "SELECT embedstack.fit('m2', 'alice.pairs', 'a', 'b', 'y')",
        "CALL embedstack.materialize('m2')",
    ] {
        let e = expect_code(&mut a, sql, "42804");
        assert!(all_text(&e).contains("m1"), "{}", all_text(&e));
    }
    assert_alive(&cl, &mut [&mut a]);

    // A vector(3) column altered to vector(2): refused where 0.2.0 skipped it silently.
    people(&mut a, "alice.p3", 30);
    a.batch_execute("SELECT embedstack.create_model_set('m3', 'alice.p3', 'id', '{m1,m2}')").unwrap();
    a.batch_execute("ALTER TABLE alice.p3 ALTER m2 TYPE vector(2) USING subvector(m2, 1, 2)").unwrap();
    let e =
        expect_code(&mut a, "SELECT embedstack.pair_statistics('m3', 'alice.pairs', 'a', 'b', 'y')", "42804");
    assert!(all_text(&e).contains("vector(3)"), "{}", all_text(&e));

    // A look-alike type named `vector` in another schema is not pgvector's.
    a.batch_execute(
        "CREATE TYPE alice.vector AS (x int8);
         CREATE TABLE alice.p4 (id int PRIMARY KEY, v alice.vector);
         INSERT INTO alice.p4 VALUES (1, ROW(42))",
    )
    .unwrap();
    expect_code(
        &mut a,
        "SELECT embedstack.create_model_set('m4', 'alice.p4', 'id', '{v}', model_dims => '{3}')",
        "42804",
    );
    expect_code(
        &mut a,
        "SELECT embedstack._combine_vector('{1}', '{3}', '{v}', 1, (SELECT v FROM alice.p4))",
        "42804",
    );
    // (alice's search_path starts with her schema: the look-alike would shadow pgvector's.)
    a.batch_execute("DROP TABLE alice.p4; DROP TYPE alice.vector").unwrap();

    // A model column retyped after the model set is served (the statement-level freshness
    // triggers name no column, so PostgreSQL allows it): a write to the source is refused.
    people(&mut a, "alice.p5", 30);
    a.batch_execute(
        "SELECT embedstack.create_model_set('m5', 'alice.p5', 'id', '{m1,m2}');
         SELECT embedstack.fit('m5', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    a.batch_execute("CALL embedstack.materialize('m5')").unwrap();
    a.batch_execute("ALTER TABLE alice.p5 ALTER m1 TYPE int8 USING 7").unwrap();
    let e = expect_code(&mut a, "INSERT INTO alice.p5 (id, m1, m2) VALUES (100, 7, '[1,2,3]')", "42804");
    assert!(all_text(&e).contains("m1"), "{}", all_text(&e));
    let n: i64 = a.query_one("SELECT count(*) FROM alice.p5_m5", &[]).unwrap().get(0);
    assert_eq!(n, 30, "nothing written");

    // The freshness trigger function installed by a user on another table, naming alice's
    // model set: inert since 0.3.1 (a WARNING; the statement goes through, so that a table
    // restored with triggers whose model set is not its own stays writable), and nothing is
    // written to the generation.
    let ms_rows = |su: &mut Client| -> i64 {
        let rel = served_generation(su, "ms").unwrap().relation.unwrap();
        su.query_one(&format!("SELECT count(*) FROM {rel}"), &[]).unwrap().get(0)
    };
    let ms_before = ms_rows(&mut su);
    a.batch_execute(
        "CREATE TABLE alice.other (id int PRIMARY KEY, m1 real[], m2 vector(3));
         CREATE TRIGGER t AFTER INSERT ON alice.other REFERENCING NEW TABLE AS embedstack_new
           FOR EACH STATEMENT EXECUTE FUNCTION embedstack._refresh_generations('ms')",
    )
    .unwrap();
    a.batch_execute("INSERT INTO alice.other VALUES (1, '{1,2,3,4}', '[1,2,3]')").unwrap();
    assert_eq!(ms_rows(&mut su), ms_before, "the other table's rows never reach the generation");
    // ... as a row trigger (and before): refused (39P01).
    a.batch_execute(
        "DROP TRIGGER t ON alice.other;
         CREATE TRIGGER t BEFORE INSERT ON alice.other FOR EACH ROW EXECUTE FUNCTION embedstack._refresh_generations('ms')",
    )
    .unwrap();
    expect_code(&mut a, "INSERT INTO alice.other VALUES (2, '{1,2,3,4}', '[1,2,3]')", "39P01");
    let n: i64 = a.query_one("SELECT count(*) FROM alice.other", &[]).unwrap().get(0);
    assert_eq!((n, ms_rows(&mut su)), (1, ms_before), "only the statement-trigger insert went through");
    // ... at bob's served model set (which alice cannot even see): the same, and bob's
    // generation is untouched.
    let mut b = cl.connect("h", "bob");
    people(&mut b, "bob.items", 20);
    b.batch_execute(
        "SELECT embedstack.create_model_set('bset', 'bob.items', 'id', '{m1,m2}');
         SELECT embedstack.fit('bset', 'bob.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    b.batch_execute("CALL embedstack.materialize('bset')").unwrap();
    let bset_table = served_generation(&mut su, "bset").unwrap().relation.unwrap();
    let bset_before: i64 = su.query_one(&format!("SELECT count(*) FROM {bset_table}"), &[]).unwrap().get(0);
    a.batch_execute(
        "CREATE TABLE alice.other2 (id int PRIMARY KEY, m1 real[], m2 vector(3));
         CREATE TRIGGER t AFTER INSERT ON alice.other2 REFERENCING NEW TABLE AS embedstack_new
           FOR EACH STATEMENT EXECUTE FUNCTION embedstack._refresh_generations('bset')",
    )
    .unwrap();
    a.batch_execute("INSERT INTO alice.other2 VALUES (1000, '{1,2,3,4}', '[1,2,3]')").unwrap();
    let bset_after: i64 = su.query_one(&format!("SELECT count(*) FROM {bset_table}"), &[]).unwrap().get(0);
    assert_eq!(bset_after, bset_before, "bob's generation untouched");
    assert_alive(&cl, &mut [&mut a, &mut b]);

    // Item 2 (0.2: the combined column replaced by columns of other types; 0.3.0 writes no
    // column): user relations in the way of the names the extension creates.
    insert_gets_vector(&mut a, 500);
    // (a) The served view's name, taken before create_model_set: 42P07, no catalog row.
    a.batch_execute("CREATE TABLE alice.people_mv (x int)").unwrap();
    let e = expect_code(
        &mut a,
        "SELECT embedstack.create_model_set('mv', 'alice.people', 'id', '{m1,m2}')",
        "42P07",
    );
    assert!(message(&e).contains("people_mv"), "{}", message(&e));
    assert_eq!(catalog_of(&mut su, "mv"), "- | - | - | -");
    a.batch_execute("DROP TABLE alice.people_mv").unwrap();
    // (b) ... taken after create_model_set, by relations of several kinds: materialize is 42P07,
    // nothing is written or served, and the user's relation is left as it was.
    let source0 = source_state(&mut su, "alice.people");
    let mut written_in_vain = Vec::new();
    for (i, (make, probe)) in [
        ("CREATE TABLE alice.people_mv{i} (x int); INSERT INTO alice.people_mv{i} VALUES (42)", "x"),
        ("CREATE VIEW alice.people_mv{i} AS SELECT 42 AS x", "x"),
        ("CREATE SEQUENCE alice.people_mv{i} START 42", "last_value"),
        ("CREATE MATERIALIZED VIEW alice.people_mv{i} AS SELECT 42 AS x", "x"),
    ]
    .iter()
    .enumerate()
    {
        let set = format!("mv{i}");
        a.batch_execute(&format!(
            "SELECT embedstack.create_model_set('{set}', 'alice.people', 'id', '{{m1,m2}}');
             SELECT embedstack.fit('{set}', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);"
        ))
        .unwrap();
        a.batch_execute(&make.replace("{i}", &i.to_string())).unwrap();
        let what = |a: &mut Client| -> (String, String) {
            let r = a
                .query_one(
                    &format!(
                        "SELECT (SELECT relkind::text FROM pg_class WHERE oid = 'alice.people_mv{i}'::regclass),
                                (SELECT string_agg({probe}::text, ',') FROM alice.people_mv{i})"
                    ),
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        let theirs = what(&mut a);
        let e = expect_code(&mut a, &format!("CALL embedstack.materialize('{set}')"), "42P07");
        assert!(message(&e).contains(&format!("people_mv{i}")), "{}", message(&e));
        assert_eq!(what(&mut a), theirs, "{set}: the user's relation is left as it was");
        let active: Option<i64> = su
            .query_one("SELECT active_fit FROM embedstack.model_sets WHERE name = $1", &[&set])
            .unwrap()
            .get(0);
        assert_eq!(active, None, "{set}: nothing served");
        let written: Vec<(i64, i64)> =
            generations(&mut su, &set).iter().map(|g| (g.id, g.rows_written)).collect();
        // (Checked at the end, so that the checks below run either way.)
        if !written.iter().all(|(_, n)| *n == 0) {
            written_in_vain.push(format!("{set}: generations (id, rows written) {written:?}"));
        }
        assert_eq!(source_state(&mut su, "alice.people"), source0, "{set}: the source untouched");
    }
    // (c) The next generation table's name (0.3.1: generation ids are predictable, so a taken
    // name gets a random 6-hex suffix instead of failing every run): the call serves at once,
    // from a generation table of the suffixed name, and the user's table is left as it was.
    a.batch_execute(
        "SELECT embedstack.create_model_set('mc', 'alice.people', 'id', '{m1,m2}');
         SELECT embedstack.fit('mc', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    let next: i64 = su
        .query_one("SELECT last_value + (is_called::int) FROM embedstack.generations_id_seq", &[])
        .unwrap()
        .get(0);
    let name = generation_table_name("people_mc", next);
    let in_the_way = format!("alice.{}", quote_ident(&name));
    a.batch_execute(&format!("CREATE TABLE {in_the_way} (id int, mc_combined bytea)")).unwrap();
    a.batch_execute("CALL embedstack.materialize('mc')").unwrap();
    let g = served_generation(&mut su, "mc").expect("served");
    let table = g.table.clone().unwrap();
    // (`<view>_<8 hex of md5(view)>_g<id>_<6 random hex>`, cut to 63 bytes.)
    let hex = table.rsplit('_').next().unwrap_or_default();
    assert!(
        table != name
            && table.starts_with("people_mc")
            && table.contains(&format!("_g{}_", g.id))
            && hex.len() == 6
            && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "a random 6-hex suffix: {table} (the plain name {name} is taken)"
    );
    let theirs: Vec<(String, String)> = su
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&in_the_way],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        theirs,
        [("id".to_string(), "integer".to_string()), ("mc_combined".to_string(), "bytea".to_string())],
        "the user's table is left as it was"
    );
    let n: i64 = a.query_one(&format!("SELECT count(*) FROM {in_the_way}"), &[]).unwrap().get(0);
    assert_eq!(n, 0, "the user's table is left as it was");
    let rows: i64 = a.query_one("SELECT count(*) FROM alice.people", &[]).unwrap().get(0);
    let served: i64 = a.query_one("SELECT count(*) FROM alice.people_mc", &[]).unwrap().get(0);
    assert_eq!(served, rows, "served, though the plain name was taken");
    insert_gets_vector(&mut a, 501);
    assert_alive(&cl, &mut [&mut a, &mut b, &mut su]);
    assert!(
        written_in_vain.is_empty(),
        "materialize wrote a generation although a relation is in the way of the served view (42P07 at the \
         cut-over, after writing and indexing):\n{}",
        written_in_vain.join("\n")
    );
}

/// Item 3: bob's SECURITY DEFINER functions, granted to alice and called by her, cannot drive
/// the catalog writers (directly, through plain DML on the catalog, or through the public
/// functions) against her model set; nor can alice's own SECURITY DEFINER function be driven by
/// bob. (0.3.1: the write gate `_write` of 0.3.0 is gone: 42883; the writers are SECURITY
/// INVOKER, executable by PUBLIC, and refuse a non-owner themselves.)
#[test]
fn definer_functions_cannot_change_another_roles_model_set() {
    let (cl, mut su) = setup("deputy", 28892);
    let mut a = cl.connect("h", "alice");
    let mut b = cl.connect("h", "bob");
    let (fit, generation): (i64, i64) = {
        let r = su
            .query_one(
                "SELECT active_fit, served_generation FROM embedstack.model_sets WHERE name = 'ms'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let before = catalog_of(&mut su, "ms");

    let bodies = [
        format!("PERFORM embedstack._w_serve('ms', {fit}, {generation})"),
        "PERFORM embedstack._w_delete_model_set('ms')".to_string(),
        // Pointing the served generation at the source table itself.
        format!("PERFORM embedstack._w_generation_set('ms', {generation}, 'alice.people', 'people_pkey', NULL, NULL)"),
        format!("PERFORM embedstack._w_delete_generation('ms', {generation})"),
        format!("PERFORM embedstack._w_insert_generation('ms', {fit}, '{{1,1}}', 'vector', 7)"),
        format!("PERFORM embedstack._w_generation_pending('ms', {generation}, 'alice.people', true)"),
        "PERFORM embedstack._w_insert_model_set('ms_forged', 'alice.people'::regclass, 'id'::name, '{m1}'::name[],
             '{4}'::int[], '{real[]}'::regtype[], 'symmetric', 0::float8, 'email'::name, 'auto', 'people'::name)"
            .to_string(),
        "PERFORM embedstack._w_insert_fit('ms', '{}', '{9,9}', 0, '{}', '{1}', '{}')".to_string(),
        "PERFORM embedstack._w_job_start('ms', 'refit', '{}', 'fit', NULL)".to_string(),
        // Plain DML on the catalog (0.3.1: PUBLIC may write, under row security): alice's rows
        // are not bob's to change; UPDATE and DELETE reach none of them, an INSERT is refused.
        "UPDATE embedstack.model_sets SET threshold = 0.9 WHERE name = 'ms';
         IF FOUND THEN RAISE EXCEPTION 'updated alice''s model set' USING ERRCODE = '42501'; END IF;
         DELETE FROM embedstack.generations WHERE model_set = 'ms';
         IF FOUND THEN RAISE EXCEPTION 'deleted alice''s generations' USING ERRCODE = '42501'; END IF;
         DELETE FROM embedstack.fits WHERE model_set = 'ms';
         IF FOUND THEN RAISE EXCEPTION 'deleted alice''s fits' USING ERRCODE = '42501'; END IF;
         INSERT INTO embedstack.jobs (model_set, kind, params, phase, state, pid) VALUES ('ms', 'refit', '{}', 'fit', 'running', 1)"
            .to_string(),
        "PERFORM embedstack.drop_model_set('ms')".to_string(),
        "PERFORM embedstack.fit('ms', 'alice.pairs', 'a', 'b', 'y')".to_string(),
        "CALL embedstack.materialize('ms')".to_string(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        b.batch_execute(&format!(
            "CREATE FUNCTION bob.f{i}() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$ BEGIN {body}; END $f$;
             GRANT USAGE ON SCHEMA bob TO alice; GRANT EXECUTE ON FUNCTION bob.f{i}() TO alice;"
        ))
        .unwrap();
        let e = expect_code(&mut a, &format!("SELECT bob.f{i}()"), "42501");
        assert!(!all_text(&e).contains("backtrace"), "{}", all_text(&e));
        // Bob calling it himself gets no further.
        expect_code(&mut b, &format!("SELECT bob.f{i}()"), "42501");
        assert_eq!(catalog_of(&mut su, "ms"), before, "bob.f{i} ({body}) changed alice's model set");
    }
    // 0.3.0's write gate is gone; the writers called directly by bob refuse him.
    expect_code(&mut b, "SELECT embedstack._write('delete_model_set', 'ms')", "42883");
    expect_code(&mut b, "SELECT embedstack._write('no_such_writer', 'ms')", "42883");
    expect_code(&mut b, "SELECT embedstack._w_delete_model_set('ms')", "42501");
    expect_code(&mut b, &format!("SELECT embedstack._w_serve('ms', {fit}, {generation})"), "42501");

    // Alice's own SECURITY DEFINER function that writes her catalog works when she calls it,
    // and is refused when bob does: the outer role must own the table too. (Its write leaves
    // every column as it is: NULL arguments change nothing.)
    a.batch_execute(&format!(
        "CREATE FUNCTION alice.touch_generation() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN PERFORM embedstack._w_generation_set('ms', {generation}, NULL, NULL, NULL, NULL); END $f$;
         GRANT USAGE ON SCHEMA alice TO bob; GRANT EXECUTE ON FUNCTION alice.touch_generation() TO bob;"
    ))
    .unwrap();
    a.batch_execute("SELECT alice.touch_generation()").unwrap();
    expect_code(&mut b, "SELECT alice.touch_generation()", "42501");
    // SET ROLE inside a superuser session: the role set is the outer role.
    su.batch_execute("SET ROLE bob").unwrap();
    expect_code(&mut su, "SELECT alice.touch_generation()", "42501");
    su.batch_execute("RESET ROLE").unwrap();

    // Her model set is intact and serving: same catalog, triggers in place, inserts work.
    assert_eq!(catalog_of(&mut su, "ms"), before);
    assert_freshness_triggers(&mut su, "alice.people", "ms");
    insert_gets_vector(&mut a, 700);
    let (n, nulls): (i64, i64) = {
        let r = a
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE ms_combined IS NULL) FROM alice.people_ms",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let rows: i64 = a.query_one("SELECT count(*) FROM alice.people", &[]).unwrap().get(0);
    assert_eq!((n, nulls), (rows, 0), "every row served");
    assert_alive(&cl, &mut [&mut a, &mut b, &mut su]);
}

/// What model set `set` over `schema.source` serves, with the documented names checked
/// (computed here): the view `<source>_<set>` (its columns: the key `id` and the combined
/// column), the served generation's table `<view>_g<id>` and its index `<table>_hnsw` on it; every
/// source row served, none NULL. Returns the generation table (SQL text).
fn check_served_names(su: &mut Client, set: &str, schema: &str, source: &str) -> String {
    let view = default_view_name(source, set);
    assert_eq!(view_name(su, set), view, "{set}: view name");
    let g = served_generation(su, set).unwrap_or_else(|| panic!("{set}: nothing served"));
    let table = generation_table_name(&view, g.id);
    assert_eq!(g.table.as_deref(), Some(table.as_str()), "{set}: generation table");
    let index = generation_index_name(&table);
    assert_eq!(g.index_name.as_deref(), Some(index.as_str()), "{set}: generation index");
    let rel = g.relation.clone().unwrap();
    let idx_ok: bool = su
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                             WHERE i.indrelid = $1::text::regclass AND c.relname = $2)",
            &[&rel, &index],
        )
        .unwrap()
        .get(0);
    assert!(idx_ok, "{set}: the index {index} on {rel}");
    let (key, col): (String, String) = {
        let r = su
            .query_one(
                "SELECT key_column::text, combined_column::text FROM embedstack.model_sets WHERE name = $1",
                &[&set],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let qview = format!("{}.{}", quote_ident(schema), quote_ident(&view));
    let cols: Vec<String> = su
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 ORDER BY attnum",
            &[&qview],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, [key, col.clone()], "{set}: the view's columns");
    let (n, nulls): (i64, i64) = {
        let r = su
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE {} IS NULL) FROM {qview}",
                    quote_ident(&col)
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let rows: i64 = su
        .query_one(&format!("SELECT count(*) FROM {}.{}", quote_ident(schema), quote_ident(source)), &[])
        .unwrap()
        .get(0);
    assert_eq!((n, nulls), (rows, 0), "{set}: every row served");
    rel
}

/// Item 4 and 5: temporary and dropped sources (the served view and generation tables go with
/// the source, and the names are free again); names near 63 bytes and model sets whose names
/// share a long prefix on one table (view, generation, index and trigger names by the documented
/// rules, all distinct).
#[test]
fn dropped_sources_free_names_and_derived_names_are_unique() {
    let (cl, mut su) = setup("names", 28893);
    let mut a = cl.connect("h", "alice");
    let mut b = cl.connect("h", "bob");

    // DROP TABLE of a served source drops its model set (fits, generations too) with its view
    // and generation tables; the name is free for anyone.
    people(&mut a, "alice.gone", 20);
    a.batch_execute(
        "SELECT embedstack.create_model_set('gone', 'alice.gone', 'id', '{m1,m2}');
         SELECT embedstack.fit('gone', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    )
    .unwrap();
    a.batch_execute("CALL embedstack.materialize('gone')").unwrap();
    let gone_gen = check_served_names(&mut su, "gone", "alice", "gone");
    a.batch_execute("DROP TABLE alice.gone").unwrap();
    assert_eq!(catalog_of(&mut su, "gone"), "- | - | - | -");
    assert!(
        !relation_exists(&mut su, "alice.gone_gone") && !relation_exists(&mut su, &gone_gen),
        "view and generation dropped"
    );
    people(&mut b, "bob.t", 20);
    b.batch_execute("SELECT embedstack.create_model_set('gone', 'bob.t', 'id', '{m1,m2}')").unwrap();

    // With the event trigger disabled (an orphan as 0.2.0 left them): the owner cannot see it,
    // a superuser can drop it, and the name is free again.
    su.batch_execute("ALTER EVENT TRIGGER embedstack_source_dropped DISABLE").unwrap();
    people(&mut a, "alice.gone2", 20);
    a.batch_execute(
        "SELECT embedstack.create_model_set('gone2', 'alice.gone2', 'id', '{m1,m2}'); DROP TABLE alice.gone2",
    )
    .unwrap();
    su.batch_execute("ALTER EVENT TRIGGER embedstack_source_dropped ENABLE").unwrap();
    expect_code(&mut a, "SELECT embedstack.drop_model_set('gone2')", "42501");
    su.batch_execute("SELECT embedstack.drop_model_set('gone2')").unwrap();
    assert_eq!(catalog_of(&mut su, "gone2"), "- | - | - | -");
    b.batch_execute(
        "SELECT embedstack.create_model_set('gone2', 'bob.t', 'id', '{m1,m2}', combined_column => 'c2')",
    )
    .unwrap();
    // A name taken by a model set alice cannot see is still taken.
    expect_code(&mut a, "SELECT embedstack.create_model_set('gone2', 'alice.people', 'id', '{m1}')", "42710");

    // Names near 63 bytes: a 63-byte multibyte combined column; a 17-character CJK model set
    // name. Two materialisations with different layouts each (a real cut-over every time).
    let combined = format!("{}x", "é".repeat(31));
    assert_eq!(combined.len(), 63);
    let cjk = "模型集合模型集合模型集合模型集合模";
    assert_eq!(cjk.chars().count(), 17);
    people(&mut a, "alice.long", 40);
    a.batch_execute(&format!(
        "SELECT embedstack.create_model_set('long', 'alice.long', 'id', '{{m1,m2}}', combined_column => {});
         SELECT embedstack.create_model_set({}, 'alice.long', 'id', '{{m1,m2}}');",
        q(&combined),
        q(cjk)
    ))
    .unwrap();
    for set in ["long", cjk] {
        for target in ["y", "a::float8"] {
            // Two fits on different targets: different weights, different stored layouts.
            a.batch_execute(&format!(
                "SELECT embedstack.fit({}, 'alice.pairs', 'a', 'b', {}, nonnegative => true)",
                q(set),
                q(target.split("::").next().unwrap())
            ))
            .unwrap();
            a.batch_execute(&format!("CALL embedstack.materialize({})", q(set))).unwrap();
        }
        let gens = generations(&mut su, set);
        assert_eq!(
            gens.iter().map(|g| g.state.as_str()).collect::<Vec<_>>(),
            ["retained", "served"],
            "{set}: two layouts, two generations"
        );
        check_served_names(&mut su, set, "alice", "long");
        let col: String = a
            .query_one("SELECT combined_column::text FROM embedstack.model_sets WHERE name = $1", &[&set])
            .unwrap()
            .get(0);
        if set == "long" {
            assert_eq!(col, combined);
        }
        assert_freshness_triggers(&mut su, "alice.long", set);
    }
    // (The CJK set's generation index name had to be cut on a character and hashed: checked
    // above against the rule.)
    let g = served_generation(&mut su, cjk).unwrap();
    assert!(g.table.as_deref().unwrap().len() + "_hnsw".len() > 63, "test precondition: a long name, {g:?}");

    // Two model sets on one table whose names share 52 characters.
    let stem = "n".repeat(52);
    let (sa, sb) = (format!("{stem}_one"), format!("{stem}_two"));
    people(&mut a, "alice.twin", 30);
    for (s, c) in [(&sa, "ca"), (&sb, "cb")] {
        a.batch_execute(&format!(
            "SELECT embedstack.create_model_set({}, 'alice.twin', 'id', '{{m1,m2}}', combined_column => '{c}');
             SELECT embedstack.fit({}, 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
            q(s),
            q(s)
        ))
        .unwrap();
        a.batch_execute(&format!("CALL embedstack.materialize({})", q(s))).unwrap();
    }
    let gen_a = check_served_names(&mut su, &sa, "alice", "twin");
    let gen_b = check_served_names(&mut su, &sb, "alice", "twin");
    assert_ne!(gen_a, gen_b);
    for s in [&sa, &sb] {
        assert_freshness_triggers(&mut su, "alice.twin", s);
    }
    let (ta, tb) = (trigger_names(&sa), trigger_names(&sb));
    assert!(ta.iter().all(|t| !tb.contains(t)), "{ta:?} {tb:?}");
    a.batch_execute(&format!("SELECT embedstack.drop_model_set({})", q(&sb))).unwrap();
    let view_b = format!("alice.{}", quote_ident(&default_view_name("twin", &sb)));
    assert!(
        !relation_exists(&mut su, &view_b) && !relation_exists(&mut su, &gen_b),
        "B's view and generation dropped"
    );
    a.batch_execute("INSERT INTO alice.twin VALUES (1000, 'n@corp.example', '{1,2,3,4}', '[1,0,1]')")
        .unwrap();
    let view_a = format!("alice.{}", quote_ident(&default_view_name("twin", &sa)));
    let has: Option<bool> = a
        .query_opt(&format!("SELECT ca IS NOT NULL FROM {view_a} WHERE id = 1000"), &[])
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(has, Some(true), "A's triggers survived dropping B");
    assert_alive(&cl, &mut [&mut a, &mut b, &mut su]);
}

/// Item 8: the catalog rows of a model set are visible to the roles that may read its source,
/// and to nobody else — including key values in jobs and the statistics in fits; the same for
/// the served vectors: the view's gate refuses a role without SELECT on the source (42501, even
/// with USAGE on the schema), the generation tables have no grants; and a role that may write
/// the source but read none of it (INSERT only), or write and read it but hold no grant on the
/// generations, keeps them fresh.
#[test]
fn catalog_rows_follow_read_privileges_on_the_source() {
    let (cl, mut su) = setup("leaks", 28894);
    let mut a = cl.connect("h", "alice");
    // A failed materialise records a key value in the job's error: a second model set on the
    // table, materialised for the first time, meets a row that cannot be combined.
    a.batch_execute(
        "SELECT embedstack.create_model_set('ms2', 'alice.people', 'id', '{m1,m2}', combined_column => 'c2');
         SELECT embedstack.fit('ms2', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);
         ALTER TABLE alice.people DISABLE TRIGGER USER;
         UPDATE alice.people SET m1 = '{1,NULL,3,4}' WHERE id = 9;
         ALTER TABLE alice.people ENABLE TRIGGER USER;",
    )
    .unwrap();
    let e = expect_code(&mut a, "CALL embedstack.materialize('ms2')", "22004");
    assert!(all_text(&e).contains("key 9"), "{}", all_text(&e));
    let errors: i64 =
        su.query_one("SELECT count(*) FROM embedstack.jobs WHERE error IS NOT NULL", &[]).unwrap().get(0);
    assert!(errors >= 1, "the failure was recorded");

    let count = |c: &mut Client, what: &str| -> i64 {
        let key = if what == "model_sets" { "name" } else { "model_set" };
        c.query_one(&format!("SELECT count(*) FROM embedstack.{what} WHERE {key} IN ('ms', 'ms2')"), &[])
            .unwrap()
            .get(0)
    };
    let mut b = cl.connect("h", "bob");
    let mut c = cl.connect("h", "carol");
    for what in ["model_sets", "fits", "jobs", "status", "generations"] {
        let (na, nb, nc) = (count(&mut a, what), count(&mut b, what), count(&mut c, what));
        assert!(na >= 1, "alice sees her {what}");
        assert_eq!(nb, 0, "bob sees none of alice's {what}");
        assert_eq!(nc, na, "carol (SELECT on the source) sees what alice sees in {what}");
    }
    let leaked: i64 = b
        .query_one("SELECT count(*) FROM embedstack.jobs WHERE error::text LIKE '%key 9%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
    let seen: i64 = c
        .query_one("SELECT count(*) FROM embedstack.jobs WHERE error::text LIKE '%key 9%'", &[])
        .unwrap()
        .get(0);
    assert!(seen >= 1, "carol, who may read the table, sees the error");
    // Reading through the functions: bob is refused, carol reads.
    for sql in [
        "SELECT * FROM embedstack.evaluate('ms', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.query_vector('ms', 5)",
        "SELECT * FROM embedstack.explain('ms', 5, 6)",
        "SELECT * FROM embedstack.explain('ms', '5', '6')",
        "SELECT embedstack.score('ms', 5, 6)",
    ] {
        let e = expect_code(&mut b, sql, "42501");
        assert!(!all_text(&e).contains("key 5"), "{}", all_text(&e));
    }
    c.batch_execute("SELECT embedstack.query_vector('ms', 5)").unwrap();
    c.batch_execute("SELECT * FROM embedstack.explain('ms', 5, 6)").unwrap();

    // The served vectors: the view's gate, not the schema, refuses bob; carol reads them.
    a.batch_execute("GRANT USAGE ON SCHEMA alice TO bob").unwrap();
    let gen = served_generation(&mut su, "ms").unwrap().relation.unwrap();
    let e = expect_code(&mut b, "SELECT * FROM alice.people_ms", "42501");
    assert!(message(&e).contains("served vectors"), "{}", all_text(&e));
    expect_code(&mut b, "SELECT count(*) FROM alice.people_ms", "42501");
    for who in [&mut b, &mut c] {
        expect_code(who, &format!("SELECT count(*) FROM {gen}"), "42501");
    }
    let rows: i64 = a.query_one("SELECT count(*) FROM alice.people", &[]).unwrap().get(0);
    let seen: i64 = c.query_one("SELECT count(*) FROM alice.people_ms", &[]).unwrap().get(0);
    assert_eq!(seen, rows, "carol reads every served row");

    // Writers without a grant on the generations keep them fresh: bob may only INSERT (no
    // SELECT), carol may also UPDATE and DELETE.
    a.batch_execute("GRANT INSERT ON alice.people TO bob; GRANT UPDATE, DELETE ON alice.people TO carol")
        .unwrap();
    for role in ["bob", "carol"] {
        let any: bool = su
            .query_one(
                &format!(
                    "SELECT has_table_privilege('{role}', $1, 'SELECT') OR has_table_privilege('{role}', $1, 'INSERT')
                         OR has_table_privilege('{role}', $1, 'UPDATE') OR has_table_privilege('{role}', $1, 'DELETE')"
                ),
                &[&gen],
            )
            .unwrap()
            .get(0);
        assert!(!any, "test precondition: {role} holds no grant on {gen}");
    }
    b.batch_execute("INSERT INTO alice.people VALUES (2000, 'b@corp.example', '{4,3,2,1}', '[0,1,1]')")
        .unwrap();
    expect_code(&mut b, "SELECT count(*) FROM alice.people", "42501");
    c.batch_execute(
        "UPDATE alice.people SET m2 = '[2,2,-1]' WHERE id = 10; DELETE FROM alice.people WHERE id = 11",
    )
    .unwrap();
    for id in [2000, 10] {
        let (served, kernel) = served_and_kernel(&mut a, id);
        assert_eq!(served, Some(kernel), "row {id} served fresh");
    }
    let gone: i64 = a.query_one("SELECT count(*) FROM alice.people_ms WHERE id = 11", &[]).unwrap().get(0);
    assert_eq!(gone, 0, "a deleted row is no longer served");
    assert_alive(&cl, &mut [&mut a, &mut b, &mut c, &mut su]);
}

/// Items 6, 7, 9, 10: long solves are cancellable, the feature count is capped before any
/// allocation, finite extremes never become a silent NaN/Infinity/0, and internal errors have
/// SQLSTATEs and no Rust backtrace even with RUST_BACKTRACE set in the server's environment.
#[test]
fn resources_numbers_and_error_codes() {
    let (cl, mut su) = setup("numbers", 28895);
    let mut b = cl.connect("h", "bob");

    // Item 7: the feature cap, before allocating (0.2.0: a 1 GB state, then XX000).
    for k in [16000, 16400, 257] {
        expect_code(
            &mut b,
            &format!("SELECT embedstack.regression_stats(array_fill(0.5::float8, ARRAY[{k}]), 1.0)"),
            "54000",
        );
    }

    // Item 6: solve with 256 features, non-negative, stops at statement_timeout.
    b.batch_execute(
        "CREATE TABLE bob.big AS
         SELECT embedstack.regression_stats(f, y) AS st FROM (
           SELECT array_agg((v - floor(v))::float8 ORDER BY j) AS f, cos(i)::float8 AS y
             FROM (SELECT i, j, 43758.5453 * sin(i * 12.9898 + j * 78.233) AS v
                     FROM generate_series(1, 600) i, generate_series(1, 256) j) r GROUP BY i) x",
    )
    .unwrap();
    b.batch_execute("SET statement_timeout = '100ms'").unwrap();
    expect_code(&mut b, "SELECT embedstack.solve(st, 0, true) FROM bob.big", "57014");
    b.batch_execute("RESET statement_timeout").unwrap();

    // Item 9: finite extremes.
    for sql in [
        "SELECT embedstack.regression_stats(ARRAY[x, 1]::float8[], x) FROM (VALUES (1e300::float8), (-1e300)) v(x)",
        "SELECT embedstack.regression_stats(ARRAY[x, -x]::float8[], x) FROM (VALUES (1e300::float8), (-1e300), (1e299)) v(x)",
    ] {
        expect_code(&mut b, sql, "22003");
    }
    let state = "(SELECT embedstack.regression_stats(ARRAY[x, x * x]::float8[], 2 * x) FROM generate_series(1, 50) x)";
    for sql in [
        format!("SELECT embedstack.prediction_mse({state}, '{{1e308,1}}', 0)"),
        format!("SELECT embedstack.prediction_mse({state}, '{{1,1}}', 1e308)"),
    ] {
        match b.query_one(sql.as_str(), &[]) {
            Ok(r) => {
                let v: Option<f64> = r.get(0);
                let v = v.expect("a state with rows has an MSE");
                assert!(v.is_finite() && v > 0.0, "{sql}: {v} (0.2.0 returned 0)");
            }
            Err(e) => {
                assert_eq!(embedstack_client_tests::sql::sqlstate(&e), "22003", "{sql}: {}", all_text(&e))
            }
        }
    }
    // Forged states: every result finite or a clean error.
    for forged in [
        "'{1,1,1,-1,0,1,0,0,1,1,1}'",            // n = -1
        "'{1,1,1,3,0,3,NaN,0,1,1,1}'",           // NaN mean
        "'{1,1,1,3,0,3,1e308,1e308,1e308,1,1}'", // huge means
        "'{1,1,1,3,0,3,0,0,-5,0,-5}'",           // negative variances
        "'{1,1,1,2.5,0,3,0,0,1,1,1}'",           // fractional n
    ] {
        match b.query_one(&format!("SELECT (s).weights, (s).intercept, (s).r2, (s).n_used FROM (SELECT embedstack.solve({forged}::float8[]) s) x"), &[]) {
            Ok(r) => {
                let w: Option<Vec<f64>> = r.get(0);
                let i: Option<f64> = r.get(1);
                let n: Option<i64> = r.get(3);
                if let Some(w) = w {
                    assert!(w.iter().all(|x| x.is_finite()), "{forged}: {w:?}");
                    assert!(i.unwrap().is_finite(), "{forged}");
                    assert!(n.unwrap() >= 0, "{forged}");
                }
            }
            Err(e) => {
                let code = embedstack_client_tests::sql::sqlstate(&e);
                assert!(code.starts_with("22") || code == "54000", "{forged}: {code} {}", all_text(&e));
            }
        }
    }

    // Item 10: SQLSTATEs instead of XX000.
    expect_code(&mut b, "SELECT embedstack.block_multipliers('{1,NULL}', 'symmetric', 0.05)", "22004");
    expect_code(
        &mut b,
        "SELECT embedstack._combine_vector('{NaN}', '{3}', '{x}', 1, '[1,2,3]'::vector)",
        "22023",
    );
    expect_code(
        &mut b,
        "SELECT embedstack._combine_vector('{1e300}', '{3}', '{x}', 1, '[1,2,3]'::vector)",
        "22003",
    );
    expect_code(
        &mut b,
        "SELECT embedstack._combine_vector('{1}', '{-3}', '{x}', 1, '[1,2,3]'::vector)",
        "22023",
    );
    expect_code(
        &mut b,
        "SELECT embedstack._combine_halfvec('{1}', '{20000}', '{x}', 1, (SELECT array_fill(0.5::real, ARRAY[16000])::vector))",
        "22023",
    );
    expect_code(
        &mut b,
        "SELECT embedstack._combine_halfvec('{1,1}', '{10000,10000}', '{x,y}', 1,
                (SELECT array_fill(0.5::real, ARRAY[10000])::vector), (SELECT array_fill(0.5::real, ARRAY[10000])::vector))",
        "54000",
    );
    // Errors raised inside the extension carry no Rust backtrace (the server runs with
    // RUST_BACKTRACE=1), whatever their origin: ereport, a core error, an SPI error.
    for (sql, code) in [
        ("SELECT embedstack.cosine('[1,2]'::vector, '[1,2,3]'::vector)", "22000"),
        ("SELECT embedstack.query_vector('nope', ARRAY['[1,2,3]'::vector])", "42704"),
        ("SELECT embedstack.block_multipliers('{1,NULL}', 'symmetric', 0.05)", "22004"),
        ("SELECT embedstack.pair_statistics('ms', 'alice.pairs', 'a', 'b', 'y')", "42501"),
        // explain: unknown model set, NULL arguments (not STRICT: fit_id defaults to NULL).
        ("SELECT * FROM embedstack.explain('nope', 1, 2)", "42704"),
        ("SELECT * FROM embedstack.explain(NULL, 1, 2)", "22004"),
        ("SELECT * FROM embedstack.explain('ms', NULL::int, 2)", "22004"),
        ("SELECT * FROM embedstack.explain('ms', NULL, NULL)", "22004"),
        // score: unknown model set.
        ("SELECT embedstack.score('nope', 1, 2)", "42704"),
        (
            "SELECT * FROM embedstack.evaluate('ms', 'pg_catalog.pg_class', 'a', 'b', 'y', ablation => NULL)",
            "22004",
        ),
    ] {
        let e = expect_code(&mut b, sql, code);
        let t = all_text(&e);
        assert!(
            !t.contains("backtrace") && !t.contains("   0: ") && !t.contains("rust_begin_unwind"),
            "{sql}: a Rust backtrace reached the user:\n{t}"
        );
    }
    let mut a = cl.connect("h", "alice");
    // An error raised by PostgreSQL inside the extension's SPI query (a label that is not a number).
    a.batch_execute("CREATE TABLE alice.text_pairs AS SELECT a, b, 'x'::text AS y FROM alice.pairs").unwrap();
    let e = expect_code(
        &mut a,
        "SELECT embedstack.pair_statistics('ms', 'alice.text_pairs', 'a', 'b', 'y')",
        "22P02",
    );
    assert!(!all_text(&e).contains("   0: "), "{}", all_text(&e));
    assert_alive(&cl, &mut [&mut a, &mut b, &mut su]);
}
