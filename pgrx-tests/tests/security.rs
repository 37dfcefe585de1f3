//! Security of 0.3.1 (a security release), against the real project cluster: the findings
//! F1–F16 of the outside probe of 0.3.0, each turned into a test that reproduces its statements
//! and shows that nobody gained anything — no test role became superuser (or got any other
//! cluster-wide power), other roles' tables, views, model sets, weights and rows are unchanged,
//! and the server never restarted — and the shadow-object test, the general guard: an attacker's
//! look-alikes of every type, function, operator and aggregate the extension's code could
//! resolve through a search_path, and casts from her own types, are never run by anyone but her,
//! whoever calls the extension with whatever search_path.
//!
//! The 0.3.1 design these tests check (see the README's Security section): no function of the
//! extension switches user to write the catalog (0.3.0's `embedstack._write` is gone); the
//! catalog tables grant SELECT, INSERT, UPDATE, DELETE to PUBLIC under row security (a role sees
//! the model sets whose source it may read and is not subject to row security on, and writes
//! only those whose source it owns, with the session's outer role); the writers `_w_*` are
//! SECURITY INVOKER, executable by PUBLIC, and check ownership first; what the catalog names is
//! validated again by everything that drops or writes it; procedures pin search_path at entry and
//! after every COMMIT, functions pin it, C entry points pin it and qualify operators.
//!
//! Also: a superuser does not run the jobs of another role's tables (boundary (e) of
//! docs/security.md). F10 and F11 are correctness defects of serving, not privilege boundaries,
//! and have no test here.
//!
//! Each test has a database of its own (`es_sec_<tag>`) and roles of its own
//! (`es_sec_<tag>_<name>`, see `embedstack_client_tests::roles`), dropped at the end (a role a
//! failed test made superuser loses it again). `ES_KEEP_SECURITY_DBS=1` keeps them for inspection.
//! The whole file takes about a minute, most of it F4 waiting for pg_cron's next minute.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use embedstack_client_tests::roles::{
    backends_crashed, connect_with_notices, postmaster_start, simple_rows, Notices, TestRoles,
};
use embedstack_client_tests::served::relations_read_by_view;
use embedstack_client_tests::sql::{all_text, backend_pid, message, q, sqlstate};
use embedstack_client_tests::{admin, config, connect_as, create_db, pg_bin, port};
use postgres::{Client, NoTls};

// ---------------------------------------------------------------------------------------
// The world of a test: its database, its roles, the superuser's checking session
// ---------------------------------------------------------------------------------------

struct World {
    db: String,
    roles: TestRoles,
    /// The superuser's session that checks (search_path pinned: the test's own queries never
    /// resolve a look-alike that a test role created in public).
    su: Client,
    start: String,
}

impl World {
    /// Database `es_sec_<tag>` with the extension, and roles `bases` (also dropping the databases
    /// `extra_dbs` at the start and the end).
    fn new(tag: &str, bases: &[&str], extra_dbs: &[&str]) -> World {
        let db = format!("es_sec_{tag}");
        let mut dbs = vec![db.as_str()];
        dbs.extend(extra_dbs);
        let roles = TestRoles::create(tag, bases, &dbs);
        let mut su = create_db(&db);
        su.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
        su.batch_execute("SET search_path = pg_catalog, pg_temp").unwrap();
        let start = postmaster_start(&mut su);
        World { db, roles, su, start }
    }

    fn r(&self, base: &str) -> String {
        self.roles.name(base)
    }

    fn sql(&self, template: &str) -> String {
        self.roles.sql(template)
    }

    fn has(&self, base: &str) -> bool {
        self.roles.all().contains(&self.roles.sql(&format!("@{base}")))
    }

    fn connect(&self, base: &str) -> Client {
        connect_as(&self.db, &self.r(base))
    }

    fn connect_notices(&self, base: &str) -> (Client, Notices) {
        connect_with_notices(&self.db, &self.r(base))
    }

    /// Runs `template` (roles as `@name`) in the superuser's session.
    fn su_exec(&mut self, template: &str) {
        let s = self.sql(template);
        self.su.batch_execute(&s).unwrap_or_else(|e| panic!("{s}\n -> {}", all_text(&e)));
    }

    fn oid(&mut self, rel: &str) -> u32 {
        self.su
            .query_one("SELECT $1::text::regclass::oid", &[&rel])
            .unwrap_or_else(|e| panic!("oid of {rel}: {e}"))
            .get(0)
    }

    fn exists(&mut self, rel: &str) -> bool {
        self.su.query_one("SELECT to_regclass($1) IS NOT NULL", &[&rel]).unwrap().get(0)
    }

    /// The common set-up of the findings: schemas of each role in `schemas` (owned by it) and
    /// `alice_priv` (alice's, no grants); CREATE on public for alice, bob, carol; alice's table
    /// `alice.items` (200 rows, `tenant` = alice for even ids, bob for odd ones), her pairs, the
    /// model set `stack` (m1 vector(3), m2 real[4]) fitted and served through `alice.items_stack`;
    /// USAGE on schema alice for bob and carol; `alice.secret` (42), `alice_priv.ledger` (rows 1,
    /// 2), the view `public.alice_report`.
    fn common_setup(&mut self, schemas: &[&str]) {
        let mut ddl = String::new();
        for s in schemas {
            ddl.push_str(&format!("CREATE SCHEMA {s} AUTHORIZATION @{s};\n"));
        }
        ddl.push_str("CREATE SCHEMA alice_priv AUTHORIZATION @alice;\n");
        for r in ["alice", "bob", "carol"] {
            if self.has(r) {
                ddl.push_str(&format!("GRANT CREATE ON SCHEMA public TO @{r};\n"));
            }
        }
        self.su_exec(&ddl);
        let odd = if self.has("bob") { self.r("bob") } else { "nobody".into() };
        let mut a = self.connect("alice");
        load_items(&mut a, "alice.items", "alice.pairs", 1, 200, (&self.r("alice"), &odd));
        a.batch_execute(
            "SELECT embedstack.create_model_set('stack', 'alice.items', 'id', ARRAY['m1', 'm2']);
             SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
        )
        .unwrap();
        a.batch_execute("CALL embedstack.materialize('stack')").unwrap();
        let mut grants = String::new();
        for r in ["bob", "carol"] {
            if self.has(r) {
                grants.push_str(&format!("GRANT USAGE ON SCHEMA alice TO @{r};\n"));
            }
        }
        a.batch_execute(&self.sql(&format!(
            "{grants}
             CREATE TABLE alice.secret (x int); INSERT INTO alice.secret VALUES (42);
             CREATE TABLE alice_priv.ledger (id int PRIMARY KEY, amount int);
             INSERT INTO alice_priv.ledger VALUES (1, 100), (2, 200);
             CREATE VIEW public.alice_report AS SELECT count(*) AS n, sum(id) AS s FROM alice.items;"
        )))
        .unwrap();
    }

    /// Everything of alice's that no other role may change, as the superuser sees it: the
    /// catalog rows of `stack` (model set, fits, generations, jobs), her tables' rows, the vectors
    /// her view serves, her relations and their owners, the triggers on her table, her view in
    /// public.
    fn alice_state(&mut self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for sql in [
            "SELECT coalesce((SELECT row_to_json(m)::text FROM embedstack.model_sets m WHERE m.name = 'stack'), '-')",
            "SELECT coalesce((SELECT string_agg(row_to_json(f)::text, ',' ORDER BY f.id) FROM embedstack.fits f
                               WHERE f.model_set = 'stack'), '-')",
            "SELECT coalesce((SELECT string_agg(row_to_json(g)::text, ',' ORDER BY g.id) FROM embedstack.generations g
                               WHERE g.model_set = 'stack'), '-')",
            "SELECT coalesce((SELECT string_agg(j.id || ':' || j.kind || ':' || j.state, ',' ORDER BY j.id) FROM embedstack.jobs j
                               WHERE j.model_set = 'stack'), '-')",
            "SELECT md5(string_agg(i::text, ',' ORDER BY i.id)) FROM alice.items i",
            "SELECT md5(string_agg(v::text, ',' ORDER BY v.id)) FROM alice.items_stack v",
            "SELECT string_agg(c.relname || ':' || c.relkind::text || ':' || pg_get_userbyid(c.relowner) || ':'
                               || coalesce(c.relacl::text, ''), ',' ORDER BY c.relname)
               FROM pg_class c WHERE c.relnamespace = 'alice'::regnamespace",
            "SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname) FROM pg_trigger t
              WHERE t.tgrelid = 'alice.items'::regclass",
            "SELECT coalesce(pg_get_viewdef(to_regclass('public.alice_report')), '-')",
        ] {
            // (An error is part of the state: reading alice's view must keep working.)
            let v = match self.su.query_one(sql, &[]) {
                Ok(r) => r.get::<_, Option<String>>(0).unwrap_or_default(),
                Err(e) => format!("error: {}", all_text(&e)),
            };
            parts.push(v);
        }
        for (rel, sql) in [
            ("alice.secret", "SELECT string_agg(x::text, ',' ORDER BY x) FROM alice.secret"),
            ("alice_priv.ledger", "SELECT string_agg(l::text, ',' ORDER BY l.id) FROM alice_priv.ledger l"),
        ] {
            if self.exists(rel) {
                let v: Option<String> = self.su.query_one(sql, &[]).unwrap().get(0);
                parts.push(format!("{rel}: {}", v.unwrap_or_default()));
            } else {
                parts.push(format!("{rel}: missing"));
            }
        }
        parts.join("\n")
    }

    /// Nobody gained anything: no test role has any cluster-wide power, the server never
    /// restarted, and the checking session (open since the start) still answers.
    fn finish(&mut self) {
        assert!(!backends_crashed(&mut self.su), "the superuser's session was lost: did the server crash?");
        self.roles.assert_powerless(&mut self.su);
        assert_eq!(postmaster_start(&mut self.su), self.start, "the server restarted");
    }
}

/// `table (id int PK, tenant text, m1 vector(3), m2 real[4])` with ids `first..first+n-1`
/// (tenant: `tenants.0` for even ids, `.1` for odd ones), and `pairs (a, b, y)` with
/// `y = 2·cos(m1) + cos(m2)` (plus a little noise): a non-negative fit has both weights positive.
fn load_items(c: &mut Client, table: &str, pairs: &str, first: i32, n: i32, tenants: (&str, &str)) {
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, tenant text NOT NULL, m1 public.vector(3), m2 real[]);
         INSERT INTO {table}
         SELECT i, CASE WHEN i % 2 = 0 THEN {t0} ELSE {t1} END,
                ARRAY[sin(i), cos(i), sin(2 * i) + 0.5]::real[]::public.vector(3),
                ARRAY[cos(3 * i), sin(5 * i), 1, sin(7 * i)]::real[]
           FROM generate_series({first}, {last}) i;
         CREATE TABLE {pairs} AS
         SELECT a.id AS a, b.id AS b,
                (2 * (1 - (a.m1 OPERATOR(public.<=>) b.m1))
                 + (1 - (a.m2::public.vector OPERATOR(public.<=>) b.m2::public.vector))
                 + 0.01 * sin(a.id * b.id))::float8 AS y
           FROM {table} a JOIN {table} b ON b.id IN (a.id + 1, a.id + 7, a.id + 13);
         ANALYZE {table};",
        t0 = q(tenants.0),
        t1 = q(tenants.1),
        last = first + n - 1,
    ))
    .unwrap();
}

/// `table (id int PK, v vector(3))` with ids 1..n and pairs `<table>_p`, model set `set` on it,
/// fitted (and materialised when `serve`), as the connected role.
fn small_set(c: &mut Client, table: &str, set: &str, n: i32, serve: bool, extra: &str) -> i64 {
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, v public.vector(3));
         INSERT INTO {table} SELECT i, ARRAY[sin(i), cos(i), 1]::real[]::public.vector FROM generate_series(1, {n}) i;
         CREATE TABLE {table}_p AS SELECT a.id AS a, b.id AS b, (1 - (a.v OPERATOR(public.<=>) b.v))::float8 AS y
           FROM {table} a JOIN {table} b ON b.id IN (a.id + 1, a.id + 3);
         SELECT embedstack.create_model_set({set}, {table_q}, 'id', ARRAY['v']{extra});",
        set = q(set),
        table_q = q(table),
    ))
    .unwrap();
    let fit: i64 = c
        .query_one(
            "SELECT id FROM embedstack.fit($1, $2::text::regclass, 'a', 'b', 'y', nonnegative => true)",
            &[&set, &format!("{table}_p")],
        )
        .unwrap()
        .get(0);
    if serve {
        c.batch_execute(&format!("CALL embedstack.materialize({})", q(set))).unwrap();
    }
    fit
}

/// The top-5 keys for row 7's query vector through alice's served view, as `c` sees them.
fn top5(c: &mut Client) -> Vec<i32> {
    c.query(
        "SELECT v.id FROM alice.items_stack v
          ORDER BY v.stack_combined OPERATOR(public.<#>) embedstack.query_vector('stack', 7), v.id LIMIT 5",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The served multipliers of a model set (the superuser's view of the catalog).
fn weights(su: &mut Client, set: &str) -> Option<Vec<f64>> {
    su.query_opt("SELECT served_multipliers FROM embedstack.model_sets WHERE name = $1", &[&set])
        .unwrap()
        .and_then(|r| r.get(0))
}

/// `(active_fit, served_generation, previous_generation)` of a model set.
fn served_ids(su: &mut Client, set: &str) -> (Option<i64>, Option<i64>, Option<i64>) {
    let r = su
        .query_one(
            "SELECT active_fit, served_generation, previous_generation FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// The id of the latest job of a model set.
fn latest_job(su: &mut Client, set: &str) -> i64 {
    su.query_one("SELECT max(id) FROM embedstack.jobs WHERE model_set = $1", &[&set])
        .unwrap()
        .get::<_, Option<i64>>(0)
        .unwrap_or(0)
}

/// md5 of everything a relation holds, as `c` reads it.
fn content(c: &mut Client, rel: &str) -> String {
    c.query_one(
        &format!("SELECT coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '-') FROM {rel} x"),
        &[],
    )
    .unwrap()
    .get(0)
}

/// Runs `sql` expecting an error with one of `codes`; returns it.
fn expect_codes(c: &mut Client, sql: &str, codes: &[&str]) -> postgres::Error {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected an error ({codes:?}) from: {sql}"),
        Err(e) => {
            let code =
                e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("not a server error: {e}"));
            assert!(
                codes.contains(&code.as_str()),
                "{sql}\n  -> {code} {}\n  expected {codes:?}",
                all_text(&e)
            );
            e
        }
    }
}

fn expect_code(c: &mut Client, sql: &str, code: &str) -> postgres::Error {
    expect_codes(c, sql, &[code])
}

fn ok(c: &mut Client, sql: &str) {
    c.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}\n  -> {}", all_text(&e)));
}

fn scalar(c: &mut Client, sql: &str) -> Option<String> {
    simple_rows(c, sql)
        .unwrap_or_else(|e| panic!("{sql}\n  -> {}", all_text(&e)))
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

// ---------------------------------------------------------------------------------------
// F1. Temporary domains and user casts under the caller's search_path
// ---------------------------------------------------------------------------------------

/// F1: eve (nothing but CONNECT and TEMP) shadows `text` with a temporary domain whose CHECK
/// makes her superuser when it runs as anyone else, puts pg_temp first on her path and calls
/// the writers: 0.3.0's `_write` parsed its statement with her path as the catalog's owner.
/// Now `_write` does not exist (42883), every writer refuses her (42501: not her model set, and a
/// temporary table cannot be a source), also a direct INSERT into the catalog; create_model_set
/// on her temporary table is refused too. dave does the same through a cast from his own
/// composite type to text: his writers run as himself (his own model set works), alice's are
/// 42501. Neither becomes superuser; nothing of alice's changes.
#[test]
fn f1_temporary_domains_and_casts_run_as_their_owner_only() {
    let mut w = World::new("f1", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let before = w.alice_state();
    let (fit, gen) = {
        let (f, g, _) = served_ids(&mut w.su, "stack");
        (f.unwrap(), g.unwrap())
    };
    let job = latest_job(&mut w.su, "stack");
    let ledger = w.oid("alice_priv.ledger");
    let items = w.oid("alice.items");

    let mut eve = w.connect("eve");
    ok(
        &mut eve,
        &w.sql(
            "CREATE TEMP TABLE t (id int PRIMARY KEY, x real[]);
             INSERT INTO t VALUES (1, '{1,2,3,4}');
             CREATE FUNCTION pg_temp.pwn(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_user OPERATOR(pg_catalog.<>) '@eve' THEN
                     EXECUTE 'ALTER ROLE @eve SUPERUSER';
                 END IF;
                 RETURN true;
             END $$;
             CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.pwn(VALUE));
             SET search_path = pg_temp, pg_catalog;",
        ),
    );
    // The domain is live: her own cast to it runs her function (as herself).
    ok(&mut eve, "SELECT 'x'::text");
    let writers = [
        (
            "SELECT embedstack._w_insert_model_set('eve_x', 'pg_temp.t'::regclass, 'id', '{x}', '{4}', '{real[]}',
                                                   'symmetric', 0.05, 'eve_c', 'auto', 'eve_v')"
                .to_string(),
            vec!["42501"],
        ),
        (
            "SELECT embedstack._w_insert_model_set('eve_x'::pg_temp.text, 'pg_temp.t'::regclass, 'id', '{x}', '{4}',
                                                   '{real[]}', 'symmetric'::pg_temp.text, 0.05, 'eve_c', 'auto'::pg_temp.text,
                                                   'eve_v')"
                .to_string(),
            vec!["42501"],
        ),
        (
            format!(
                "SELECT embedstack._w_insert_model_set('eve_y', {items}::regclass, 'id', '{{m1}}', '{{3}}', '{{public.vector}}',
                                                       'symmetric', 0.05, 'eve_c', 'auto', 'eve_v')"
            ),
            vec!["42501"],
        ),
        ("SELECT embedstack._w_delete_model_set('stack')".to_string(), vec!["42501"]),
        ("SELECT embedstack._w_delete_model_set('stack'::pg_temp.text)".to_string(), vec!["42501"]),
        ("SELECT embedstack._w_insert_fit('stack', '{}', '{1,1}', 0, '{}', '{1}', '{}')".to_string(), vec!["42501"]),
        (format!("SELECT embedstack._w_insert_generation('stack', {fit}, '{{1,1}}', 'vector', 7)"), vec!["42501"]),
        (
            format!("SELECT embedstack._w_generation_set('stack', {gen}, {ledger}::regclass, NULL, NULL, NULL)"),
            vec!["42501"],
        ),
        (format!("SELECT embedstack._w_delete_generation('stack', {gen})"), vec!["42501"]),
        (format!("SELECT embedstack._w_generation_pending('stack', {gen}, {ledger}::regclass, true)"), vec!["42501"]),
        (format!("SELECT embedstack._w_serve('stack', {fit}, {gen})"), vec!["42501"]),
        ("SELECT embedstack._w_job_start('stack', 'refit', '{}', 'fit', NULL)".to_string(), vec!["42501"]),
        // A job of a model set eve cannot see is one she cannot name.
        (format!("SELECT embedstack._w_job_update({job}, 'write')"), vec!["42704", "42501"]),
        (format!("SELECT embedstack._w_job_finish({job}, 'failed', 'x')"), vec!["42704", "42501"]),
        ("SELECT embedstack._w_delete_model_set('no_such_set')".to_string(), vec!["42704"]),
        ("SELECT embedstack._w_job_update(999999999, 'write')".to_string(), vec!["42704"]),
        // 0.3.0's write gate is gone.
        (
            "SELECT embedstack._write('insert_model_set', 'eve_x', 'pg_temp.t'::regclass, 'id'::name, '{x}'::name[],
                                      '{4}'::int[], '{real[]}'::regtype[], 'symmetric', 0.05::float8, 'c'::name, 'auto',
                                      'v'::name)"
                .to_string(),
            vec!["42883"],
        ),
        ("SELECT embedstack._write('delete_model_set', 'stack')".to_string(), vec!["42883"]),
        // A temporary table is no source, through the public function or the catalog directly.
        (
            "SELECT embedstack.create_model_set('eve_x', 'pg_temp.t', 'id', '{x}', model_dims => '{4}')".to_string(),
            vec!["0A000", "42501"],
        ),
        (
            "INSERT INTO embedstack.model_sets (name, source, key_column, model_columns, model_dims, model_types, mode,
                                                threshold, combined_column, storage, view_name)
             VALUES ('eve_z', 'pg_temp.t'::regclass, 'id', '{x}', '{4}', '{real[]}', 'symmetric', 0.05, 'c', 'auto', 'v')"
                .to_string(),
            vec!["42501"],
        ),
        (
            format!(
                "INSERT INTO embedstack.model_sets (name, source, key_column, model_columns, model_dims, model_types, mode,
                                                    threshold, combined_column, storage, view_name)
                 VALUES ('eve_w', {items}::regclass, 'id', '{{m1}}', '{{3}}', '{{public.vector}}', 'symmetric', 0.05, 'c',
                         'auto', 'v')"
            ),
            vec!["42501"],
        ),
    ];
    for (sql, codes) in &writers {
        expect_codes(&mut eve, sql, codes);
    }
    let eve_sets: i64 =
        w.su.query_one("SELECT count(*) FROM embedstack.model_sets WHERE name LIKE 'eve%'", &[])
            .unwrap()
            .get(0);
    assert_eq!(eve_sets, 0, "no model set of eve's was registered");

    // dave: a cast from his own type to text, taken implicitly by the writers' text arguments.
    let mut dave = w.connect("dave");
    let dave_fit = small_set(&mut dave, "dave.t", "ds", 30, true, "");
    ok(
        &mut dave,
        &w.sql(
            "CREATE TYPE dave.ct AS (s pg_catalog.text);
             CREATE FUNCTION dave.ct_text(c dave.ct) RETURNS pg_catalog.text LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_user OPERATOR(pg_catalog.<>) '@dave' THEN
                     EXECUTE 'ALTER ROLE @dave SUPERUSER';
                 END IF;
                 RETURN c.s;
             END $$;
             CREATE CAST (dave.ct AS pg_catalog.text) WITH FUNCTION dave.ct_text(dave.ct) AS IMPLICIT;
             CREATE FUNCTION dave.ct_int8(c dave.ct) RETURNS pg_catalog.int8 LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_user OPERATOR(pg_catalog.<>) '@dave' THEN
                     EXECUTE 'ALTER ROLE @dave SUPERUSER';
                 END IF;
                 RETURN c.s::pg_catalog.int8;
             END $$;
             CREATE CAST (dave.ct AS pg_catalog.int8) WITH FUNCTION dave.ct_int8(dave.ct) AS IMPLICIT;
             SET search_path = dave, pg_catalog;",
        ),
    );
    let dave_job: i64 =
        scalar(&mut dave, "SELECT embedstack._w_job_start(ROW('ds')::dave.ct, 'refit', '{}', 'fit', NULL)")
            .unwrap()
            .parse()
            .unwrap();
    ok(&mut dave, &format!("SELECT embedstack._w_job_finish(ROW('{dave_job}')::dave.ct, 'failed', 'done')"));
    let ds_gen = served_ids(&mut w.su, "ds").1.unwrap();
    ok(
        &mut dave,
        &format!("SELECT embedstack._w_serve(ROW('ds')::dave.ct, {dave_fit}, ROW('{ds_gen}')::dave.ct)"),
    );
    for sql in [
        "SELECT embedstack._w_job_start(ROW('stack')::dave.ct, 'refit', '{}', 'fit', NULL)".to_string(),
        "SELECT embedstack._w_delete_model_set(ROW('stack')::dave.ct)".to_string(),
        format!("SELECT embedstack._w_serve(ROW('stack')::dave.ct, ROW('{fit}')::dave.ct, ROW('{gen}')::dave.ct)"),
        format!("SELECT embedstack._w_delete_generation(ROW('stack')::dave.ct, ROW('{gen}')::dave.ct)"),
        format!("SELECT embedstack._w_generation_set(ROW('stack')::dave.ct, {gen}, {ledger}::regclass, NULL, NULL, NULL)"),
    ] {
        expect_code(&mut dave, &sql, "42501");
    }
    expect_code(&mut dave, "SELECT embedstack._write('job_start', ROW('ds')::dave.ct, 'refit')", "42883");
    drop((eve, dave));

    assert_eq!(w.alice_state(), before, "alice's model set, tables and view are unchanged");
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F2. A generation row naming another role's table
// ---------------------------------------------------------------------------------------

/// F2: bob, owner of his own model set `bs3` with a generation, records alice's private table
/// as the generation's relation — through `_w_generation_set`, `_w_generation_pending`, a direct
/// UPDATE or INSERT of the catalog — and gets 42501 each time (the generations' row security
/// accepts only tables of the source's owner). The readers validate too: with rows forged by the
/// superuser (who bypasses row security) naming alice's ledger, her table `secret`, her view in
/// public and a table of hers named exactly like bob's next generation table, DROP TABLE of bob's
/// source drops none of them, and alice still reads them.
#[test]
fn f2_generation_rows_never_name_other_roles_tables() {
    let mut w = World::new("f2", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut b = w.connect("bob");
    let bfit = small_set(&mut b, "bob.t3", "bs3", 30, false, "");
    let gen: i64 = b
        .query_one("SELECT embedstack._w_insert_generation('bs3', $1, '{1}', 'vector', 3)", &[&bfit])
        .unwrap()
        .get(0);
    let ledger = w.oid("alice_priv.ledger");
    let report = w.oid("public.alice_report");
    for sql in [
        format!("SELECT embedstack._w_generation_set('bs3', {gen}, {ledger}::regclass, NULL, NULL, NULL)"),
        format!("SELECT embedstack._w_generation_set('bs3', {gen}, {report}::regclass, NULL, NULL, NULL)"),
        format!("SELECT embedstack._w_generation_pending('bs3', {gen}, {ledger}::regclass, true)"),
        format!("UPDATE embedstack.generations SET relation = {ledger}::regclass WHERE id = {gen}"),
        format!("UPDATE embedstack.generations SET pending = {ledger}::regclass WHERE id = {gen}"),
        format!(
            "INSERT INTO embedstack.generations (model_set, fit_id, multipliers, storage, width, state, relation)
             VALUES ('bs3', {bfit}, '{{1}}', 'vector', 3, 'building', {ledger}::regclass)"
        ),
    ] {
        let e = expect_code(&mut b, &sql, "42501");
        assert!(!all_text(&e).contains("ledger"), "{sql}: {}", all_text(&e));
    }
    let recorded: Option<String> =
        w.su.query_one("SELECT relation::text FROM embedstack.generations WHERE id = $1", &[&gen])
            .unwrap()
            .get(0);
    assert_eq!(recorded, None, "nothing was recorded");

    // Rows only a superuser could write.
    let gen2: i64 = b
        .query_one("SELECT embedstack._w_insert_generation('bs3', $1, '{1}', 'vector', 3)", &[&bfit])
        .unwrap()
        .get(0);
    let gen3: i64 = b
        .query_one("SELECT embedstack._w_insert_generation('bs3', $1, '{1}', 'vector', 3)", &[&bfit])
        .unwrap()
        .get(0);
    let look_alike = generation_table("t3_bs3", gen2);
    let mut a = w.connect("alice");
    ok(
        &mut a,
        &format!("CREATE TABLE alice.{look_alike} (id int); INSERT INTO alice.{look_alike} VALUES (7)"),
    );
    w.su_exec(&format!(
        "UPDATE embedstack.generations SET relation = 'alice_priv.ledger'::regclass, pending = 'alice.secret'::regclass
          WHERE id = {gen};
         UPDATE embedstack.generations SET relation = 'alice.{look_alike}'::regclass WHERE id = {gen2};
         UPDATE embedstack.generations SET relation = 'public.alice_report'::regclass WHERE id = {gen3};
         UPDATE embedstack.model_sets SET view_name = 'alice_report' WHERE name = 'bs3';"
    ));
    let before = w.alice_state();
    let look_alike_before = content(&mut w.su, &format!("alice.{look_alike}"));
    let _ = b.batch_execute("DROP TABLE bob.t3");
    let left: i64 =
        w.su.query_one("SELECT count(*) FROM embedstack.model_sets WHERE name = 'bs3'", &[]).unwrap().get(0);
    assert_eq!(left, 0, "bob's model set went with its source");
    assert_eq!(w.alice_state(), before, "alice's ledger, secret, view and model set survive");
    assert!(w.exists(&format!("alice.{look_alike}")), "alice's table named like bob's generation survives");
    assert_eq!(content(&mut w.su, &format!("alice.{look_alike}")), look_alike_before);
    let ledger_rows: Vec<i32> = a
        .query("SELECT id FROM alice_priv.ledger ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ledger_rows, [1, 2], "alice still reads her ledger");
    let secret: i32 = a.query_one("SELECT x FROM alice.secret", &[]).unwrap().get(0);
    assert_eq!(secret, 42);
    drop((a, b));
    w.finish();
}

/// The documented generation table name `<view>_g<id>` (short names).
fn generation_table(view: &str, id: i64) -> String {
    embedstack_client_tests::served::generation_table_name(view, id)
}

// ---------------------------------------------------------------------------------------
// F3. A shadowed text equality in the writer's statements
// ---------------------------------------------------------------------------------------

/// F3: carol's own `=` for text (and name) that also matches her model set's name `cs`, first on
/// her search_path: 0.3.0 ran the writers' statements with it, so her call on `cs` matched
/// alice's rows too. Now the writers on `stack` are 42501, carol's writers on `cs` change `cs`
/// only, and her direct UPDATE / DELETE of the catalog reaches her own rows only (RETURNING
/// shows which); alice's model set, weights and top-5 answer are unchanged.
#[test]
fn f3_a_shadowed_equality_reaches_only_the_callers_rows() {
    let mut w = World::new("f3", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    let top_before = top5(&mut a);
    let before = w.alice_state();
    let w_before = weights(&mut w.su, "stack");
    let (afit, agen, _) = served_ids(&mut w.su, "stack");
    let (afit, agen) = (afit.unwrap(), agen.unwrap());
    let mut c = w.connect("carol");
    let cfit = small_set(&mut c, "carol.ct", "cs", 30, true, "");
    let cgen = served_ids(&mut w.su, "cs").1.unwrap();
    ok(
        &mut c,
        "CREATE FUNCTION carol.eq(a pg_catalog.text, b pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE sql AS $$
             SELECT a OPERATOR(pg_catalog.=) b OR a OPERATOR(pg_catalog.=) 'cs' OR b OPERATOR(pg_catalog.=) 'cs' $$;
         CREATE FUNCTION carol.eqn(a pg_catalog.name, b pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE sql AS $$
             SELECT a::pg_catalog.text OPERATOR(pg_catalog.=) b OR a OPERATOR(pg_catalog.=) 'cs' OR b OPERATOR(pg_catalog.=) 'cs' $$;
         CREATE FUNCTION carol.eqt(a pg_catalog.text, b pg_catalog.name) RETURNS pg_catalog.bool LANGUAGE sql AS $$
             SELECT a OPERATOR(pg_catalog.=) b::pg_catalog.text OR a OPERATOR(pg_catalog.=) 'cs' OR b OPERATOR(pg_catalog.=) 'cs' $$;
         CREATE OPERATOR carol.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = carol.eq);
         CREATE OPERATOR carol.= (LEFTARG = pg_catalog.name, RIGHTARG = pg_catalog.text, FUNCTION = carol.eqn);
         CREATE OPERATOR carol.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.name, FUNCTION = carol.eqt);
         SET search_path = carol, pg_catalog;",
    );
    // Her operator is live: 'stack' = 'cs' under her path.
    assert_eq!(
        scalar(&mut c, "SELECT 'stack'::pg_catalog.text = 'cs'::pg_catalog.text").as_deref(),
        Some("t")
    );
    for sql in [
        "SELECT embedstack._w_delete_model_set('stack')".to_string(),
        format!("SELECT embedstack._w_serve('stack', {afit}, {agen})"),
        format!("SELECT embedstack._w_delete_generation('stack', {agen})"),
        "SELECT embedstack._w_insert_fit('stack', '{}', '{9,9}', 0, '{}', '{1}', '{}')".to_string(),
        "SELECT embedstack.drop_model_set('stack')".to_string(),
    ] {
        expect_code(&mut c, &sql, "42501");
    }
    // Her own model set: the writers change it and nothing else.
    ok(&mut c, &format!("SELECT embedstack._w_serve('cs', {cfit}, {cgen})"));
    ok(&mut c, "SELECT embedstack._w_insert_fit('cs', '{}', '{9}', 0, '{}', '{1}', '{}')");
    ok(&mut c, "SELECT embedstack._w_job_start('cs', 'refit', '{}', 'fit', NULL)");
    assert_eq!(w.alice_state(), before, "carol's writers on cs changed alice's model set");
    // Direct catalog writes: only her own rows.
    for (sql, col) in [
        (
            "UPDATE embedstack.model_sets SET threshold = 0.9 WHERE name = 'stack' RETURNING name",
            "model_sets",
        ),
        (
            "UPDATE embedstack.fits SET weights = '{9,9}' WHERE model_set = 'stack' RETURNING model_set",
            "fits",
        ),
        ("UPDATE embedstack.jobs SET state = 'failed' WHERE model_set = 'stack' RETURNING model_set", "jobs"),
        ("DELETE FROM embedstack.generations WHERE model_set = 'stack' RETURNING model_set", "generations"),
        ("DELETE FROM embedstack.fits WHERE model_set = 'stack' RETURNING model_set", "fits"),
        ("DELETE FROM embedstack.jobs WHERE model_set = 'stack' RETURNING model_set", "jobs"),
        ("DELETE FROM embedstack.model_sets WHERE name = 'stack' RETURNING name", "model_sets"),
    ] {
        let rows = simple_rows(&mut c, sql).unwrap_or_else(|e| panic!("{sql}: {}", all_text(&e)));
        let names: BTreeSet<String> = rows.into_iter().filter_map(|r| r[0].clone()).collect();
        assert!(names.iter().all(|n| n == "cs"), "{sql}: carol reached rows of {names:?} in {col}");
        if sql.starts_with("DELETE FROM embedstack.model_sets") {
            // Her operator matched her own row: it was live in the statement, row security kept
            // alice's out of reach.
            assert_eq!(names, BTreeSet::from(["cs".to_string()]), "{sql}");
        }
    }
    drop(c);
    assert_eq!(w.alice_state(), before, "alice's model set is unchanged");
    assert_eq!(weights(&mut w.su, "stack"), w_before, "alice's weights are unchanged");
    assert_eq!(top5(&mut a), top_before, "alice's top-5 is unchanged");
    drop(a);
    w.finish();
}
/// The look-alikes an attacker creates (run as the attacker, whose schema is `@S@`): the recorder
/// `@S@.hit(what)` (a row in `@S@.@T@` and a WARNING `lookalike hit [who=…] …`, and, when it runs as
/// anyone else, an attempt to make the attacker superuser); then, in each schema of `@TARGETS@`:
/// operators for every (left, right) pair the real one resolves for, functions with the signature of
/// every plain pg_catalog function of a long list of names, aggregates named like the built-in ones,
/// domains named like the built-in types (whose CHECK records); and implicit casts from her own
/// composite and enum types. Each behaves like the real thing after recording. `@S@.lookalikes` lists
/// them with a probe: the natural call that must reach it under a path that puts `@S@` first.
const LOOKALIKES_SQL: &str = r#####"
-- Look-alikes: run by the attacker role, with search_path pinned, before anything else.
SET search_path = pg_catalog, pg_temp;
CREATE TABLE @S@.@T@ (who pg_catalog.name, outer_user pg_catalog.name, what pg_catalog.text, query pg_catalog.text);
CREATE TABLE @S@.lookalikes (kind pg_catalog.text, what pg_catalog.text, probe pg_catalog.text, fn pg_catalog.text);
GRANT USAGE ON SCHEMA @S@ TO PUBLIC;
GRANT INSERT ON @S@.@T@ TO PUBLIC;
CREATE FUNCTION @S@.hit(what pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $hit$
BEGIN
    BEGIN
        INSERT INTO @S@.@T@ VALUES (current_user, session_user, what, left(current_query(), 400));
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RAISE WARNING 'lookalike hit [who=%] [session=%] [what=%] [query=%]', current_user, session_user, what,
        left(current_query(), 300);
    IF current_user <> '@ATTACKER@' THEN
        BEGIN
            EXECUTE format('ALTER ROLE %I SUPERUSER', '@ATTACKER@');
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
    RETURN true;
END $hit$;

DO $do$
DECLARE
    targets text[] := @TARGETS@;
    cmp text[] := ARRAY['=', '<>', '<', '<=', '>', '>='];
    arith text[] := ARRAY['+', '-', '*', '/', '%', '&', '|', '#'];
    str text[] := ARRAY['||', '~', '!~', '~~', '!~~', '~*'];
    js text[] := ARRAY['->', '->>', '?', '?|', '?&', '#>', '#>>', '@>', '<@', '||'];
    arr text[] := ARRAY['@>', '<@', '&&', '||', '='];
    pairs text[] := '{}';
    t text[];
    n integer := 0;
    rt text;
    fname text;
    what text;
    tgt text;
    op text;
    l text;
    r text;
    scalar_pairs text[] := ARRAY[
        'text,text', 'text,varchar', 'varchar,text', 'varchar,varchar', 'name,text', 'text,name', 'name,name',
        'char,char', 'char,text', 'bpchar,bpchar', 'oid,oid', 'oid,regclass', 'regclass,oid', 'regclass,regclass',
        'regtype,regtype', 'oid,regtype', 'regtype,oid', 'regnamespace,oid', 'oid,regnamespace', 'regproc,oid',
        'regprocedure,oid', 'oid,regprocedure', 'regrole,oid', 'oid,regrole', 'int2,int2', 'int2,int4', 'int4,int2',
        'int4,int4', 'int4,int8', 'int8,int4', 'int8,int8', 'int2,int8', 'float4,float4', 'float4,float8',
        'float8,float4', 'float8,float8', 'float8,int4', 'int4,float8', 'float8,int8', 'int8,float8',
        'float8,numeric', 'numeric,float8', 'numeric,numeric', 'numeric,int4', 'int4,numeric', 'numeric,int8',
        'int8,numeric', 'bool,bool', 'xid8,xid8', 'xid,xid', 'xid,int4', 'timestamptz,timestamptz',
        'timestamptz,interval', 'interval,interval', 'interval,float8', 'bytea,bytea', 'tid,tid', 'jsonb,jsonb',
        'json,json', 'uuid,uuid', 'date,date', 'timestamp,timestamp'];
    json_pairs text[] := ARRAY['jsonb,text', 'jsonb,int4', 'jsonb,text[]', 'json,text', 'json,int4', 'jsonb,jsonb'];
    array_pairs text[] := ARRAY['text[],text[]', 'name[],name[]', 'int4[],int4[]', 'int8[],int8[]', 'float8[],float8[]',
        'oid[],oid[]', 'regtype[],regtype[]', 'regclass[],regclass[]', 'name[],name', 'text[],text', 'int4[],int4',
        'int8[],int8', 'float8[],float8', 'oid[],oid', 'name,name[]', 'text,text[]', 'int8,int8[]', 'float8,float8[]',
        'jsonb[],jsonb'];
    prefix text[] := ARRAY['-,int4', '-,int8', '-,float8', '-,numeric', '@,float8', '~,int4', '!!,tsquery'];
    fnames text[] := ARRAY['format', 'quote_ident', 'quote_literal', 'quote_nullable', 'to_regclass', 'to_regtype',
        'to_regnamespace', 'to_regproc', 'to_regprocedure', 'to_regrole', 'has_table_privilege', 'has_column_privilege',
        'has_any_column_privilege', 'has_function_privilege', 'has_schema_privilege', 'has_sequence_privilege',
        'pg_has_role', 'set_config', 'current_setting', 'hashtext', 'hashtextextended', 'hashint4', 'hashint8', 'md5',
        'random', 'clock_timestamp', 'now', 'statement_timestamp', 'transaction_timestamp', 'pg_sleep',
        'pg_backend_pid', 'current_database', 'cardinality', 'array_position', 'array_positions', 'array_length',
        'array_lower', 'array_upper', 'array_to_string', 'array_append', 'array_prepend', 'array_cat', 'array_remove',
        'array_fill', 'unnest', 'generate_series', 'generate_subscripts', 'format_type', 'pg_get_userbyid',
        'row_security_active', 'left', 'right', 'substr', 'substring', 'strpos', 'position', 'octet_length', 'length',
        'char_length', 'lower', 'upper', 'btrim', 'ltrim', 'rtrim', 'replace', 'repeat', 'lpad', 'rpad', 'round',
        'trunc', 'floor', 'ceil', 'abs', 'sqrt', 'power', 'ln', 'log', 'exp', 'sign', 'age', 'pg_current_xact_id',
        'txid_current', 'date_trunc', 'date_part', 'extract', 'convert_to', 'convert_from', 'getdatabaseencoding',
        'encode', 'decode', 'obj_description', 'col_description', 'pg_get_viewdef', 'pg_get_indexdef',
        'pg_get_triggerdef', 'pg_get_functiondef', 'pg_get_constraintdef', 'pg_get_expr', 'pg_get_ruledef',
        'string_to_array', 'array_to_json', 'pg_blocking_pids', 'regexp_replace', 'regexp_match', 'regexp_matches',
        'regexp_split_to_array', 'split_part', 'starts_with', 'to_jsonb', 'to_json', 'jsonb_array_elements',
        'jsonb_array_elements_text', 'jsonb_each', 'jsonb_each_text', 'jsonb_typeof', 'jsonb_array_length',
        'jsonb_extract_path', 'jsonb_extract_path_text', 'jsonb_set', 'jsonb_strip_nulls', 'jsonb_pretty',
        'pg_relation_size', 'pg_total_relation_size', 'pg_table_is_visible', 'pg_type_is_visible',
        'pg_function_is_visible', 'nextval', 'currval', 'setval', 'lastval', 'pg_advisory_lock',
        'pg_advisory_unlock', 'pg_try_advisory_lock', 'pg_advisory_xact_lock', 'pg_advisory_lock_shared',
        'pg_try_advisory_xact_lock', 'pg_cancel_backend', 'pg_terminate_backend', 'pg_stat_get_activity',
        'pg_describe_object', 'pg_identify_object', 'pg_column_size', 'pg_notify', 'txid_current_if_assigned',
        'pg_xact_status', 'pg_snapshot_xmin', 'pg_current_snapshot', 'pg_visible_in_snapshot', 'timeofday',
        'text', 'name', 'int4', 'int8', 'int2', 'float4', 'float8', 'numeric', 'bool', 'regclass', 'oid', 'varchar',
        'bpchar', 'int4_to_char', 'to_char', 'to_number', 'to_timestamp', 'make_interval', 'justify_interval',
        'string_agg', 'pg_typeof', 'greatest', 'least', 'num_nonnulls', 'num_nulls', 'concat', 'concat_ws',
        'jsonb_build_object', 'jsonb_build_array', 'json_build_object', 'row_to_json', 'pg_get_function_arguments',
        'pg_get_function_result', 'pg_get_function_identity_arguments', 'current_schemas', 'version', 'inet_client_addr',
        'pg_stat_get_backend_pid', 'pg_listening_channels', 'pg_postmaster_start_time', 'pg_conf_load_time',
        'pg_is_in_recovery', 'pg_get_serial_sequence', 'pg_sequence_last_value', 'array_dims', 'array_ndims',
        'pg_size_pretty', 'quote_ident', 'bit_length', 'ascii', 'chr', 'initcap', 'md5', 'sha256', 'to_hex',
        'width_bucket', 'div', 'mod', 'gcd', 'lcm', 'factorial', 'trim_array', 'array_replace', 'pg_collation_for',
        'pg_get_partkeydef', 'pg_get_statisticsobjdef', 'pg_get_keywords', 'pg_options_to_table',
        'pg_tablespace_location', 'pg_relation_filenode', 'pg_relation_filepath', 'pg_indexes_size', 'pg_table_size',
        'format_type', 'xmin', 'age', 'mxid_age', 'txid_status', 'txid_visible_in_snapshot', 'txid_snapshot_xmin',
        'pg_get_object_address', 'has_database_privilege', 'has_type_privilege', 'has_language_privilege',
        'has_tablespace_privilege', 'has_foreign_data_wrapper_privilege', 'has_server_privilege',
        'has_parameter_privilege', 'pg_settings_get_flags'];
    p record;
    probe text;
    args text;
    callargs text;
    body text;
BEGIN
    -- Operators: every pair whose real operator resolves.
    FOREACH op IN ARRAY cmp || arith || str LOOP
        FOREACH l IN ARRAY scalar_pairs LOOP
            pairs := pairs || ARRAY[op || ' ' || l];
        END LOOP;
    END LOOP;
    FOREACH op IN ARRAY js LOOP
        FOREACH l IN ARRAY json_pairs LOOP
            pairs := pairs || ARRAY[op || ' ' || l];
        END LOOP;
    END LOOP;
    FOREACH op IN ARRAY arr LOOP
        FOREACH l IN ARRAY array_pairs LOOP
            pairs := pairs || ARRAY[op || ' ' || l];
        END LOOP;
    END LOOP;
    FOREACH what IN ARRAY pairs LOOP
        op := split_part(what, ' ', 1);
        l := 'pg_catalog.' || regexp_replace(split_part(split_part(what, ' ', 2), ',', 1), '^char', '"char"');
        r := 'pg_catalog.' || regexp_replace(split_part(split_part(what, ' ', 2), ',', 2), '^char', '"char"');
        BEGIN
            EXECUTE format('SELECT pg_catalog.format_type(pg_catalog.pg_typeof(NULL::%s OPERATOR(pg_catalog.%s) NULL::%s), NULL)',
                           l, op, r) INTO rt;
        EXCEPTION WHEN OTHERS THEN
            CONTINUE;
        END;
        CONTINUE WHEN EXISTS (SELECT 1 FROM @S@.lookalikes x WHERE x.what = format('operator %s(%s, %s)', op, l, r));
        n := n + 1;
        fname := 'la_op_' || n;
        what := format('operator %s(%s, %s)', op, l, r);
        EXECUTE format('CREATE FUNCTION @S@.%I(a %s, b %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                       fname, l, r, rt,
                       format('BEGIN PERFORM @S@.hit(%L); RETURN a OPERATOR(pg_catalog.%s) b; END', what, op));
        FOREACH tgt IN ARRAY targets LOOP
            EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = @S@.%I)', tgt, op, l, r, fname);
        END LOOP;
        INSERT INTO @S@.lookalikes VALUES ('operator', what, format('SELECT NULL::%s %s NULL::%s', l, op, r), fname);
    END LOOP;
    FOREACH what IN ARRAY prefix LOOP
        op := split_part(what, ',', 1);
        r := 'pg_catalog.' || split_part(what, ',', 2);
        BEGIN
            EXECUTE format('SELECT pg_catalog.format_type(pg_catalog.pg_typeof(OPERATOR(pg_catalog.%s) NULL::%s), NULL)', op, r) INTO rt;
        EXCEPTION WHEN OTHERS THEN
            CONTINUE;
        END;
        n := n + 1;
        fname := 'la_op_' || n;
        what := format('prefix operator %s(%s)', op, r);
        EXECUTE format('CREATE FUNCTION @S@.%I(b %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                       fname, r, rt, format('BEGIN PERFORM @S@.hit(%L); RETURN OPERATOR(pg_catalog.%s) b; END', what, op));
        FOREACH tgt IN ARRAY targets LOOP
            EXECUTE format('CREATE OPERATOR %I.%s (RIGHTARG = %s, FUNCTION = @S@.%I)', tgt, op, r, fname);
        END LOOP;
        INSERT INTO @S@.lookalikes VALUES ('operator', what, format('SELECT %s NULL::%s', op, r), fname);
    END LOOP;

    -- Functions: every plain (non-variadic, no OUT argument) pg_catalog function of these names, with
    -- the same signature.
    FOR p IN SELECT x.oid, x.proname, x.proretset, x.prorettype, pg_catalog.pg_get_function_identity_arguments(x.oid) AS args,
                    pg_catalog.pg_get_function_result(x.oid) AS res, x.pronargs, x.proargtypes
               FROM pg_catalog.pg_proc x
              WHERE x.pronamespace = 'pg_catalog'::regnamespace AND x.proname = ANY (fnames) AND x.prokind = 'f'
                AND x.provariadic = 0 AND x.proargmodes IS NULL
                AND x.prorettype NOT IN ('internal'::regtype, 'trigger'::regtype, 'event_trigger'::regtype,
                                         'cstring'::regtype, 'record'::regtype, 'language_handler'::regtype)
                AND NOT EXISTS (SELECT 1 FROM unnest(x.proargtypes::oid[]) a(t)
                                 WHERE a.t IN ('internal'::regtype, '"any"'::regtype, 'cstring'::regtype, 'anyenum'::regtype,
                                               'anyrange'::regtype, 'anymultirange'::regtype, 'anycompatiblerange'::regtype,
                                               'anycompatiblemultirange'::regtype))
              ORDER BY x.oid LOOP
        n := n + 1;
        fname := 'la_fn_' || n;
        what := format('function %s(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid));
        SELECT coalesce(string_agg(format('$%s', o), ', ' ORDER BY o), '') INTO callargs
          FROM generate_series(1, p.pronargs) o;
        body := CASE WHEN p.proretset THEN format('BEGIN PERFORM @S@.hit(%L); RETURN QUERY SELECT * FROM pg_catalog.%I(%s); END',
                                                  what, p.proname, callargs)
                     WHEN p.prorettype = 'void'::regtype THEN format('BEGIN PERFORM @S@.hit(%L); PERFORM pg_catalog.%I(%s); END',
                                                                     what, p.proname, callargs)
                     ELSE format('BEGIN PERFORM @S@.hit(%L); RETURN pg_catalog.%I(%s); END', what, p.proname, callargs) END;
        BEGIN
            FOREACH tgt IN ARRAY targets LOOP
                EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                               tgt, p.proname, p.args, p.res, body);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'no look-alike of %: %', what, SQLERRM;
            CONTINUE;
        END;
        -- The probe: the function called by its bare name with NULLs of its argument types
        -- (polymorphic ones as integers).
        SELECT coalesce(string_agg(CASE WHEN t.typname IN ('anyelement', 'anynonarray', 'anycompatible', 'anycompatiblenonarray')
                                             THEN 'NULL::pg_catalog.int4'
                                        WHEN t.typname IN ('anyarray', 'anycompatiblearray') THEN 'NULL::pg_catalog.int4[]'
                                        WHEN t.typcategory = 'A' THEN format('NULL::%I.%I[]', en.nspname, et.typname)
                                        ELSE format('NULL::%I.%I', tn.nspname, t.typname) END, ', ' ORDER BY a.o), '')
          INTO args
          FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, o) JOIN pg_catalog.pg_type t ON t.oid = a.t
          JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
          LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem LEFT JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace;
        INSERT INTO @S@.lookalikes (kind, what, probe) VALUES ('function', what,
            CASE WHEN p.proretset THEN format('SELECT * FROM %I(%s)', p.proname, args)
                 ELSE format('SELECT %I(%s)', p.proname, args) END);
    END LOOP;
END $do$;

-- Aggregates named like the built-in ones (their transition functions record the hit).
DO $do$
DECLARE
    targets text[] := @TARGETS@;
    tgt text;
BEGIN
    CREATE FUNCTION @S@.la_agg_count(st pg_catalog.int8) RETURNS pg_catalog.int8 LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate count(*)'); RETURN st + 1; END $f$;
    CREATE FUNCTION @S@.la_agg_max8(st pg_catalog.int8, v pg_catalog.int8) RETURNS pg_catalog.int8 LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate max(int8)'); RETURN greatest(st, v); END $f$;
    CREATE FUNCTION @S@.la_agg_min8(st pg_catalog.int8, v pg_catalog.int8) RETURNS pg_catalog.int8 LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate min(int8)'); RETURN least(st, v); END $f$;
    CREATE FUNCTION @S@.la_agg_max4(st pg_catalog.int4, v pg_catalog.int4) RETURNS pg_catalog.int4 LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate max(int4)'); RETURN greatest(st, v); END $f$;
    CREATE FUNCTION @S@.la_agg_sum8(st pg_catalog.numeric, v pg_catalog.int8) RETURNS pg_catalog.numeric LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate sum(int8)');
        RETURN coalesce(st, 0) + coalesce(v, 0); END $f$;
    CREATE FUNCTION @S@.la_agg_sumf(st pg_catalog.float8, v pg_catalog.float8) RETURNS pg_catalog.float8 LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate sum(float8)');
        RETURN coalesce(st, 0) + coalesce(v, 0); END $f$;
    CREATE FUNCTION @S@.la_agg_string(st pg_catalog.text, v pg_catalog.text, d pg_catalog.text) RETURNS pg_catalog.text
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate string_agg(text, text)');
        RETURN CASE WHEN v IS NULL THEN st WHEN st IS NULL THEN v ELSE st || d || v END; END $f$;
    CREATE FUNCTION @S@.la_agg_array(st anyarray, v anynonarray) RETURNS anyarray LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate array_agg(anynonarray)');
        RETURN array_append(st, v); END $f$;
    CREATE FUNCTION @S@.la_agg_bool_and(st pg_catalog.bool, v pg_catalog.bool) RETURNS pg_catalog.bool LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate bool_and(bool)');
        RETURN CASE WHEN v IS NULL THEN st WHEN st IS NULL THEN v ELSE st AND v END; END $f$;
    CREATE FUNCTION @S@.la_agg_jsonb(st pg_catalog.jsonb, v anyelement) RETURNS pg_catalog.jsonb LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $f$ BEGIN PERFORM @S@.hit('aggregate jsonb_agg(anyelement)');
        RETURN coalesce(st, '[]') || jsonb_build_array(v); END $f$;
    FOREACH tgt IN ARRAY targets LOOP
        EXECUTE format('CREATE AGGREGATE %I.count(*) (SFUNC = @S@.la_agg_count, STYPE = pg_catalog.int8, INITCOND = 0)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.max(pg_catalog.int8) (SFUNC = @S@.la_agg_max8, STYPE = pg_catalog.int8)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.min(pg_catalog.int8) (SFUNC = @S@.la_agg_min8, STYPE = pg_catalog.int8)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.max(pg_catalog.int4) (SFUNC = @S@.la_agg_max4, STYPE = pg_catalog.int4)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.sum(pg_catalog.int8) (SFUNC = @S@.la_agg_sum8, STYPE = pg_catalog.numeric)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.sum(pg_catalog.float8) (SFUNC = @S@.la_agg_sumf, STYPE = pg_catalog.float8)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.string_agg(pg_catalog.text, pg_catalog.text) (SFUNC = @S@.la_agg_string, STYPE = pg_catalog.text)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.array_agg(anynonarray) (SFUNC = @S@.la_agg_array, STYPE = anyarray)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.bool_and(pg_catalog.bool) (SFUNC = @S@.la_agg_bool_and, STYPE = pg_catalog.bool)', tgt);
        EXECUTE format('CREATE AGGREGATE %I.jsonb_agg(anyelement) (SFUNC = @S@.la_agg_jsonb, STYPE = pg_catalog.jsonb)', tgt);
    END LOOP;
    INSERT INTO @S@.lookalikes (kind, what, probe) VALUES
        ('aggregate', 'aggregate count(*)', 'SELECT count(*) FROM (VALUES (1)) v(x)'),
        ('aggregate', 'aggregate max(int8)', 'SELECT max(x) FROM (VALUES (1::pg_catalog.int8)) v(x)'),
        ('aggregate', 'aggregate min(int8)', 'SELECT min(x) FROM (VALUES (1::pg_catalog.int8)) v(x)'),
        ('aggregate', 'aggregate max(int4)', 'SELECT max(x) FROM (VALUES (1::pg_catalog.int4)) v(x)'),
        ('aggregate', 'aggregate sum(int8)', 'SELECT sum(x) FROM (VALUES (1::pg_catalog.int8)) v(x)'),
        ('aggregate', 'aggregate sum(float8)', 'SELECT sum(x) FROM (VALUES (1::pg_catalog.float8)) v(x)'),
        ('aggregate', 'aggregate string_agg(text, text)', 'SELECT string_agg(x, y) FROM (VALUES (''a''::pg_catalog.text, '',''::pg_catalog.text)) v(x, y)'),
        ('aggregate', 'aggregate array_agg(anynonarray)', 'SELECT array_agg(x) FROM (VALUES (1)) v(x)'),
        ('aggregate', 'aggregate bool_and(bool)', 'SELECT bool_and(x) FROM (VALUES (true)) v(x)'),
        ('aggregate', 'aggregate jsonb_agg(anyelement)', 'SELECT jsonb_agg(x) FROM (VALUES (1)) v(x)');
END $do$;

-- Types of her own, with implicit casts to the built-in types the extension's functions take.
CREATE TYPE @S@.ct AS (s pg_catalog.text);
CREATE TYPE @S@.en AS ENUM ('stack', 'id', 'm1');
DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['text', 'name', 'regclass', 'int8', 'int4', 'jsonb', 'oid', 'float8'] LOOP
        EXECUTE format('CREATE FUNCTION @S@.%I(c @S@.ct) RETURNS pg_catalog.%I LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                       'la_cast_ct_' || t, t, format('BEGIN PERFORM @S@.hit(%L); RETURN (c.s)::pg_catalog.%I; END', 'cast ct -> ' || t, t));
        EXECUTE format('CREATE CAST (@S@.ct AS pg_catalog.%I) WITH FUNCTION @S@.%I(@S@.ct) AS IMPLICIT', t, 'la_cast_ct_' || t);
        INSERT INTO @S@.lookalikes (kind, what, probe) VALUES ('cast', 'cast ct -> ' || t, format('SELECT (ROW(''1'')::@S@.ct)::pg_catalog.%I', t));
    END LOOP;
    FOREACH t IN ARRAY ARRAY['text', 'name'] LOOP
        EXECUTE format('CREATE FUNCTION @S@.%I(e @S@.en) RETURNS pg_catalog.%I LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                       'la_cast_en_' || t, t, format('BEGIN PERFORM @S@.hit(%L); RETURN format(''%%s'', e)::pg_catalog.%I; END', 'cast en -> ' || t, t));
        EXECUTE format('CREATE CAST (@S@.en AS pg_catalog.%I) WITH FUNCTION @S@.%I(@S@.en) AS IMPLICIT', t, 'la_cast_en_' || t);
        INSERT INTO @S@.lookalikes (kind, what, probe) VALUES ('cast', 'cast en -> ' || t, format('SELECT (''stack''::@S@.en)::pg_catalog.%I', t));
    END LOOP;
END $do$;

-- Domains named like the built-in types (last: nothing above may resolve a type to them).
DO $do$
DECLARE
    targets text[] := @TARGETS@;
    tgt text;
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['text', 'name', 'int2', 'int4', 'int8', 'float4', 'float8', 'numeric', 'bool', 'jsonb', 'json',
                             'regclass', 'regtype', 'regproc', 'regprocedure', 'regnamespace', 'regrole', 'regoper',
                             'oid', 'xid', 'xid8', 'tid', 'timestamptz', 'timestamp', 'interval', 'date', 'bytea', 'char',
                             'varchar', 'bpchar', 'uuid', 'pg_lsn', 'pg_node_tree', 'aclitem', 'vector', 'halfvec'] LOOP
        FOREACH tgt IN ARRAY targets LOOP
            BEGIN
                EXECUTE format('CREATE DOMAIN %I.%I AS %s CHECK (@S@.hit(%L))', tgt, t,
                               CASE WHEN t IN ('vector', 'halfvec') THEN format('%I.%I', (SELECT n.nspname FROM pg_catalog.pg_type y JOIN pg_catalog.pg_namespace n ON n.oid = y.typnamespace WHERE y.typname = t AND n.nspname <> tgt LIMIT 1), t)
                                    ELSE format('pg_catalog.%I', t) END,
                               'domain ' || t);
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'no domain %.%: %', tgt, t, SQLERRM;
                CONTINUE;
            END;
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_type y WHERE y.typnamespace = '@S@'::regnamespace AND y.typname = t) THEN
            INSERT INTO @S@.lookalikes (kind, what, probe) VALUES ('domain', 'domain ' || t, format('SELECT NULL::%I', t));
        END IF;
    END LOOP;
END $do$;
"#####;

/// Creates the look-alikes of [`LOOKALIKES_SQL`] as the connected attacker, whose schema `schema`
/// holds the functions, the recorder and its table `table`, in the schemas `targets`.
fn install_lookalikes(c: &mut Client, schema: &str, table: &str, attacker: &str, targets: &[&str]) {
    let targets_sql =
        format!("ARRAY[{}]::text[]", targets.iter().map(|t| q(t)).collect::<Vec<_>>().join(", "));
    let sql = LOOKALIKES_SQL
        .replace("@S@", schema)
        .replace("@T@", table)
        .replace("@ATTACKER@", attacker)
        .replace("@TARGETS@", &targets_sql);
    c.batch_execute(&sql).unwrap_or_else(|e| panic!("creating the look-alikes: {}", all_text(&e)));
}

/// One look-alike hit reported by a WARNING: `(who, session user, what, query)`.
fn hits_in(notices: &Notices) -> Vec<(String, String, String, String)> {
    // `[who=…] [session=…] [what=…] [query=…]`: a value ends where the next field starts (the
    // last one at the last `]`); values may contain brackets (`text[]`).
    let field = |m: &str, k: &str| -> String {
        let Some(start) = m.find(&format!("[{k}=")).map(|i| i + k.len() + 2) else { return String::new() };
        let rest = &m[start..];
        let end = if k == "query" { rest.rfind(']') } else { rest.find("] [") };
        rest[..end.unwrap_or(rest.len())].to_string()
    };
    notices
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m, _)| m.starts_with("lookalike hit "))
        .map(|(_, m, _)| (field(m, "who"), field(m, "session"), field(m, "what"), field(m, "query")))
        .collect()
}

/// The recorded hits (`schema.table`) by anyone but `attacker`, as the superuser reads them.
fn foreign_hits(su: &mut Client, schema: &str, table: &str, attacker: &str) -> Vec<String> {
    su.query(
        &format!(
            "SELECT format('%s (session %s): %s, %s times -- first in: %s', who, outer_user, what, count(*), min(query))
               FROM {schema}.{table} WHERE who::text <> $1 GROUP BY who, outer_user, what ORDER BY 1"
        ),
        &[&attacker],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs every probe of `schema.lookalikes` (chosen by `filter`, a condition on the columns kind,
/// what, fn) in the attacker's session `c`, whose path must make them reachable, and returns the
/// look-alikes no probe reached (by the attacker's own WARNINGs, which survive a probe's error).
fn unreachable_lookalikes(
    su: &mut Client,
    c: &mut Client,
    notices: &Notices,
    schema: &str,
    filter: &str,
) -> Vec<String> {
    let probes: Vec<(String, String)> = su
        .query(
            &format!("SELECT what, probe FROM {schema}.lookalikes WHERE {filter} ORDER BY kind, what"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!probes.is_empty(), "no look-alike matches {filter}");
    notices.lock().unwrap().clear();
    for (_, probe) in &probes {
        let _ = c.batch_execute(probe);
    }
    let reached: BTreeSet<String> = hits_in(notices).into_iter().map(|h| h.2).collect();
    probes
        .into_iter()
        .filter(|(what, _)| !reached.contains(what))
        .map(|(what, probe)| format!("{what}: {probe}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// F4. Operators another role put in public, and pg_cron
// ---------------------------------------------------------------------------------------

/// Unschedules a pg_cron job by name however the test ends.
struct CronGuard(String);

impl Drop for CronGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = config("postgres", "postgres").connect(NoTls) {
            let _ = a.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[&self.0]);
        }
    }
}

/// Schedules each `(job name, command, run as)` in database `db` with pg_cron (every minute:
/// pg_cron 1.4 has no seconds schedule; `None`: as the scheduling superuser, else with
/// `username =>`), waits for the first run of each to end, unschedules them; returns each run's
/// `(status, return_message)`.
fn run_through_pg_cron(db: &str, jobs: &[(&str, &str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    let mut a = admin();
    a.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    let mut ids = Vec::new();
    let mut guards = Vec::new();
    for (name, command, user) in jobs {
        a.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[name]).unwrap();
        guards.push(CronGuard(name.to_string()));
        let jobid: i64 = a
            .query_one(
                "SELECT cron.schedule_in_database($1, '* * * * *', $2, $3, $4)",
                &[name, command, &db, user],
            )
            .unwrap()
            .get(0);
        ids.push(jobid);
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut out = Vec::new();
    for (jobid, (_, command, _)) in ids.iter().zip(jobs) {
        loop {
            let done = a
                .query_opt(
                    "SELECT status, return_message FROM cron.job_run_details
                      WHERE jobid = $1 AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1",
                    &[jobid],
                )
                .unwrap();
            if let Some(r) = done {
                a.execute("SELECT cron.unschedule($1::bigint)", &[jobid]).unwrap();
                out.push((r.get(0), r.get(1)));
                break;
            }
            assert!(Instant::now() < deadline, "pg_cron did not run {command} within 150 s");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    drop(guards);
    out
}

/// F4: bob creates, in public, an operator for every argument pair the extension could compare
/// (`>=(float8, int4)`, `=(oid, regclass)`, `=(text, varchar)`, …: the ones without an exact
/// pg_catalog twin are chosen by any unqualified comparison under the default search_path —
/// checked first, as bob), each recording `current_user` into `bob.loot` (PUBLIC may insert) and
/// trying to make bob superuser when it runs as anyone else. alice, with the default path, runs
/// fit, evaluate, pair_statistics, query_vector (both forms), materialize, refresh, refit (never,
/// always, if_not_worse), rollback and writes to her table; the superuser, as pg_cron would, reads,
/// fits and rolls back (its materialize, refit and refresh on alice's tables are 42501 since 0.3.1);
/// pg_cron itself runs the README's refit scheduled as alice (`username =>`: succeeded, cut over)
/// and refuses it scheduled as the superuser. bob.loot holds bob's own probes only, no session saw
/// a look-alike run, bob is not superuser, and alice's model set serves (exact top-5).
#[test]
fn f4_operators_in_public_never_run_as_the_caller() {
    let mut w = World::new("f4", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let bob = w.r("bob");
    let (mut b, bob_notices) = w.connect_notices("bob");
    install_lookalikes(&mut b, "bob", "loot", &bob, &["public"]);
    ok(&mut b, "RESET search_path");
    // The look-alikes that the default path reaches: operators without an exact pg_catalog twin.
    let reachable_filter = "kind = 'operator' AND NOT EXISTS (
        SELECT 1 FROM pg_operator o JOIN pg_operator p ON p.oprname = o.oprname AND p.oprleft = o.oprleft
                                         AND p.oprright = o.oprright AND p.oprnamespace = 'pg_catalog'::regnamespace
         WHERE o.oprnamespace = 'public'::regnamespace AND o.oprcode = ('bob.' || fn)::regproc)";
    let missed = unreachable_lookalikes(&mut w.su, &mut b, &bob_notices, "bob", reachable_filter);
    assert!(
        missed.is_empty(),
        "look-alikes the default path does not reach (the test would be vacuous):\n{}",
        missed.join("\n")
    );
    for what in [
        "operator >=(pg_catalog.float8, pg_catalog.int4)",
        "operator =(pg_catalog.oid, pg_catalog.regclass)",
        "operator =(pg_catalog.text, pg_catalog.varchar)",
        "operator =(pg_catalog.int4, pg_catalog.numeric)",
    ] {
        let n: i64 = w
            .su
            .query_one("SELECT count(*) FROM bob.loot WHERE what = $1 AND who::text = $2", &[&what, &bob])
            .unwrap()
            .get(0);
        assert!(n >= 1, "bob's {what} in public is chosen under the default path");
    }
    drop(b);

    let (mut a, alice_notices) = w.connect_notices("alice");
    for sql in [
        "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 1, nonnegative => true)",
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.pair_statistics('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.query_vector('stack', 7)",
        "SELECT embedstack.query_vector('stack', ARRAY['[1,0,0]'::public.vector, '[0,1,0,1]'::public.vector])",
        "SELECT * FROM embedstack.explain('stack', 7, 8)",
        "SELECT * FROM embedstack.explain('stack', '7', '8')",
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y', ablation => true)",
        "CALL embedstack.materialize('stack')",
        "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', cutover => 'never')",
        "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', nonnegative => true, cutover => 'always')",
        "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 2, nonnegative => true)",
        "CALL embedstack.rollback('stack')",
        "CALL embedstack.refresh('stack')",
        "CALL embedstack.rollback('stack')",
        "INSERT INTO alice.items VALUES (1001, 'x', '[1,2,3]', '{1,2,3,4}')",
        "UPDATE alice.items SET m1 = '[3,2,1]' WHERE id = 1001",
        "DELETE FROM alice.items WHERE id = 1001",
        "SELECT * FROM embedstack.status",
        // A learned projection (0.5.0): learned, written, queried, kept fresh and rolled back
        // under the same look-alikes.
        "SELECT embedstack.create_model_set('wide', 'alice.items', 'id', ARRAY['m1', 'm2'], threshold => 0, dims => 2,
                                            view_name => 'items_wide')",
        "SELECT embedstack.fit('wide', 'alice.pairs', 'a', 'b', 'y', nonnegative => true)",
        "CALL embedstack.materialize('wide')",
        "SELECT embedstack.query_vector('wide', 7)",
        "SELECT embedstack.score('wide', 7, 8)",
        "SELECT embedstack.score('stack', '7', '8')",
        "SELECT embedstack.covariance_stats(ARRAY[3, 4], i.m1, i.m2) FROM alice.items i",
        "INSERT INTO alice.items VALUES (1002, 'x', '[1,2,3]', '{1,2,3,4}')",
        "UPDATE alice.items SET m1 = '[3,2,1]' WHERE id = 1002",
        "DELETE FROM alice.items WHERE id = 1002",
        "SELECT embedstack.fit('wide', 'alice.pairs', 'a', 'b', 'y', ridge => 3, nonnegative => true)",
        "CALL embedstack.materialize('wide')",
        "CALL embedstack.rollback('wide')",
        "SELECT embedstack.release('wide')",
        "SELECT * FROM embedstack.status",
    ] {
        ok(&mut a, sql);
    }
    // The superuser, as pg_cron would: reads, a fit and rollbacks; its jobs on alice's tables are
    // refused (42501: since 0.3.1 a superuser does not run the jobs of another role's tables).
    let (mut s, su_notices) = connect_with_notices(&w.db, "postgres");
    for sql in [
        "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 4, nonnegative => true)",
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.pair_statistics('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.query_vector('stack', 7)",
        "SELECT * FROM embedstack.explain('stack', 7, 8)",
        "SELECT * FROM embedstack.explain('stack', '7', '8')",
        "SELECT embedstack.score('stack', 7, 8)",
        "CALL embedstack.rollback('stack')",
        "CALL embedstack.rollback('stack')",
    ] {
        ok(&mut s, sql);
    }
    for sql in [
        "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', cutover => 'always')",
        "CALL embedstack.materialize('stack')",
        "CALL embedstack.refresh('stack')",
    ] {
        expect_code(&mut s, sql, "42501");
    }
    drop(s);
    // pg_cron: the recipe scheduled as alice (username =>) runs the refit; scheduled as the
    // superuser it is refused.
    let refit = "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 5, nonnegative => true, cutover => 'always')";
    let (as_alice, as_su) = (format!("{}-alice", w.db), format!("{}-su", w.db));
    let alice = w.r("alice");
    let runs = run_through_pg_cron(&w.db, &[(&as_alice, refit, Some(&alice)), (&as_su, refit, None)]);
    assert_eq!(runs[0].0, "succeeded", "the refit scheduled as alice: {:?}", runs[0].1);
    assert_eq!(runs[1].0, "failed", "the refit scheduled as the superuser: {:?}", runs[1].1);
    let msg = runs[1].1.clone().unwrap_or_default();
    assert!(msg.contains("superuser"), "the refusal says why: {msg}");
    let job_fit: Option<i64> = w
        .su
        .query_one(
            "SELECT j.fit_id FROM embedstack.jobs j WHERE j.model_set = 'stack' AND j.kind = 'refit' AND j.state = 'succeeded'
              ORDER BY j.id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(served_ids(&mut w.su, "stack").0, job_fit, "the scheduled refit cut over");

    let loot = foreign_hits(&mut w.su, "bob", "loot", &bob);
    let mut seen: Vec<String> =
        hits_in(&alice_notices).into_iter().chain(hits_in(&su_notices)).map(|h| format!("{h:?}")).collect();
    seen.sort();
    seen.dedup();
    assert!(
        loot.is_empty() && seen.is_empty(),
        "bob's operators in public ran as another role:\n{}\n{}",
        loot.join("\n"),
        seen.join("\n")
    );
    // The model set works: the served answer (through the index) is the exact one.
    a.batch_execute("SET hnsw.ef_search = 1000").unwrap();
    let top = top5(&mut a);
    a.batch_execute("SET enable_indexscan = off").unwrap();
    assert_eq!(top5(&mut a), top, "the served top-5 is the exact one");
    drop(a);
    // A learned projection is read as the calling role: bob, who may not read alice.items, sees
    // no projection row, and the projecting kernel refuses alice's projection id (42704) rather
    // than applying a basis derived from her rows to vectors of his choosing.
    let pid: i64 = w
        .su
        .query_one(
            "SELECT g.projection FROM embedstack.model_sets m JOIN embedstack.generations g ON g.id = m.served_generation
              WHERE m.name = 'wide'",
            &[],
        )
        .unwrap()
        .get(0);
    let (mut b, _) = w.connect_notices("bob");
    let seen: i64 = b.query_one("SELECT count(*) FROM embedstack.projections", &[]).unwrap().get(0);
    assert_eq!(seen, 0, "bob sees no projection of alice's");
    expect_code(
        &mut b,
        &format!(
            "SELECT embedstack._project_vector({pid}, '{{1,1}}', '{{3,4}}', '{{m1,m2}}', 1, '[1,2,3]'::public.vector, '{{1,2,3,4}}'::real[])"
        ),
        "42704",
    );
    drop(b);
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F5. View names of other roles
// ---------------------------------------------------------------------------------------

/// F5: bob's model sets name alice's views in public as their view (`view_name =>
/// 'alice_report'`), and his sources move to public (`ALTER TABLE … SET SCHEMA`): dropping them,
/// drop_model_set and materialize never drop or replace alice's views (materialize: 42P07). A
/// model set bob registers first with the name of alice's future view: alice's view, created
/// later, survives bob's materialize (42P07) and DROP TABLE; so does the served view of alice's
/// model set whose default name an (unmaterialised) model set of bob's named first. A name bob's
/// materialised model set holds is 42P07 for alice's create_model_set (documented), another
/// view_name works.
#[test]
fn f5_view_names_of_other_roles_are_never_dropped_or_replaced() {
    let mut w = World::new("f5", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    ok(&mut a, "CREATE VIEW public.alice_report2 AS SELECT 2 AS x");
    let mut b = w.connect("bob");
    small_set(&mut b, "bob.bt", "bv", 20, true, ", view_name => 'alice_report'");
    small_set(&mut b, "bob.bt0", "bv0", 20, false, ", view_name => 'alice_report2'");
    assert!(w.exists("bob.alice_report"), "bob's served view, named like alice's, in his schema");
    ok(&mut b, "ALTER TABLE bob.bt SET SCHEMA public; ALTER TABLE bob.bt0 SET SCHEMA public");
    let before = w.alice_state();
    let report2 = |su: &mut Client| -> Option<String> {
        su.query_one("SELECT pg_get_viewdef(to_regclass('public.alice_report2'))", &[]).unwrap().get(0)
    };
    let report2_before = report2(&mut w.su);
    assert!(report2_before.is_some());
    ok(&mut b, "DROP TABLE public.bt");
    ok(&mut b, "DROP TABLE public.bt0");
    assert!(!w.exists("bob.alice_report"), "bob's own served view went with his source");
    assert_eq!(w.alice_state(), before, "alice's view public.alice_report survives");
    assert_eq!(report2(&mut w.su), report2_before, "alice's view public.alice_report2 survives");
    let n: i64 = a.query_one("SELECT n FROM public.alice_report", &[]).unwrap().get(0);
    assert_eq!(n, 200);

    // materialize and drop_model_set of a moved, never served model set.
    small_set(&mut b, "bob.bt1", "bv1", 20, false, ", view_name => 'alice_report'");
    ok(&mut b, "ALTER TABLE bob.bt1 SET SCHEMA public");
    expect_code(&mut b, "CALL embedstack.materialize('bv1')", "42P07");
    ok(&mut b, "SELECT embedstack.drop_model_set('bv1')");
    assert_eq!(w.alice_state(), before, "alice's view survives materialize and drop_model_set");

    // Registered first, with the name alice's view gets later.
    small_set(&mut b, "public.bt3", "bv3", 20, false, ", view_name => 'alice_future'");
    ok(&mut a, "CREATE VIEW public.alice_future AS SELECT 3 AS y");
    let future = |su: &mut Client| -> Option<String> {
        su.query_one("SELECT pg_get_viewdef(to_regclass('public.alice_future'))", &[]).unwrap().get(0)
    };
    let future_before = future(&mut w.su);
    expect_code(&mut b, "CALL embedstack.materialize('bv3')", "42P07");
    assert_eq!(future(&mut w.su), future_before);
    ok(&mut b, "DROP TABLE public.bt3");
    assert_eq!(future(&mut w.su), future_before, "alice's later view survives the drop of bob's source");
    let y: i32 = a.query_one("SELECT y FROM public.alice_future", &[]).unwrap().get(0);
    assert_eq!(y, 3);

    // The default view name of alice's future model set, reserved by a model set of bob's that
    // alice cannot see: no conflict for her (the name is checked free among relations and the
    // model sets she sees); her view, once materialised, is hers, and bob's materialize (42P07),
    // drop_model_set and DROP TABLE leave it alone.
    small_set(&mut b, "public.bt4", "bv4", 20, false, ", view_name => 'pitems_af'");
    load_items(&mut a, "public.pitems", "public.ppairs", 1, 50, ("x", "y"));
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('af', 'public.pitems', 'id', '{m1,m2}');
         SELECT embedstack.fit('af', 'public.ppairs', 'a', 'b', 'y', nonnegative => true);",
    );
    ok(&mut a, "CALL embedstack.materialize('af')");
    let af = |su: &mut Client| -> (Option<String>, String) {
        let def: Option<String> =
            su.query_one("SELECT pg_get_viewdef(to_regclass('public.pitems_af'))", &[]).unwrap().get(0);
        (def, content(su, "public.pitems_af"))
    };
    let af_before = af(&mut w.su);
    expect_code(&mut b, "CALL embedstack.materialize('bv4')", "42P07");
    ok(&mut b, "SELECT embedstack.drop_model_set('bv4')");
    expect_code(
        &mut b,
        "SELECT embedstack.create_model_set('bv5', 'public.bt4', 'id', ARRAY['v'], view_name => 'pitems_af')",
        "42P07",
    );
    ok(&mut b, "DROP TABLE public.bt4");
    assert_eq!(af(&mut w.su), af_before, "alice's served view is bob's to neither replace nor drop");
    // A view name bob's materialised model set holds first: alice's create_model_set is 42P07
    // (documented: keep sources in schemas where only trusted roles create), and another
    // view_name works.
    small_set(&mut b, "public.bt6", "bv6", 20, true, ", view_name => 'pitems_ag'");
    let e = expect_code(
        &mut a,
        "SELECT embedstack.create_model_set('ag', 'public.pitems', 'id', '{m1,m2}')",
        "42P07",
    );
    assert!(message(&e).contains("pitems_ag"), "{}", all_text(&e));
    ok(&mut a, "SELECT embedstack.create_model_set('ag', 'public.pitems', 'id', '{m1,m2}', view_name => 'pitems_ag2')");
    assert_eq!(w.alice_state(), before);
    drop((a, b));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F6. Row security on the source
// ---------------------------------------------------------------------------------------

/// F6: alice's table gets row-level security (bob sees his tenant's rows only) and bob SELECT on
/// it: the served view refuses bob (42501: it cannot apply the source's policies), bob sees no
/// catalog row of `stack` (model set, fits, jobs, generations, status) and query_vector /
/// evaluate are 42501 for him; alice still reads every row through the view; bob's writes are
/// still served.
#[test]
fn f6_row_security_on_the_source_closes_the_served_view() {
    let mut w = World::new("f6", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    ok(
        &mut a,
        &w.sql(
            "ALTER TABLE alice.items ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON alice.items USING (tenant = current_user);
             GRANT SELECT, INSERT, UPDATE, DELETE ON alice.items TO @bob;
             GRANT SELECT ON alice.pairs TO @bob;",
        ),
    );
    let mut b = w.connect("bob");
    let own: i64 = b.query_one("SELECT count(*) FROM alice.items", &[]).unwrap().get(0);
    assert_eq!(own, 100, "test precondition: bob sees his tenant's rows only");
    for sql in [
        "SELECT * FROM alice.items_stack",
        "SELECT count(*) FROM alice.items_stack",
        "SELECT id FROM alice.items_stack WHERE id = 1",
        "SELECT embedstack.query_vector('stack', 1)",
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.pair_statistics('stack', 'alice.pairs', 'a', 'b', 'y')",
        // explain: even for a pair of bob's own tenant (2 and 4 are even: which tenant is bob's
        // does not matter, the model set is hidden from a role subject to row security).
        "SELECT * FROM embedstack.explain('stack', 2, 4)",
        "SELECT * FROM embedstack.explain('stack', 1, 3)",
        "SELECT embedstack.score('stack', 2, 4)",
    ] {
        expect_code(&mut b, sql, "42501");
    }
    for (what, key) in [
        ("model_sets", "name"),
        ("fits", "model_set"),
        ("jobs", "model_set"),
        ("generations", "model_set"),
        ("status", "model_set"),
    ] {
        let n: i64 = b
            .query_one(&format!("SELECT count(*) FROM embedstack.{what} WHERE {key} = 'stack'"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "bob sees rows of stack in embedstack.{what}");
    }
    let all: i64 = a.query_one("SELECT count(*) FROM alice.items_stack", &[]).unwrap().get(0);
    assert_eq!(all, 200, "alice (the owner) reads every row through the view");
    ok(&mut b, &w.sql("INSERT INTO alice.items VALUES (500, '@bob', '[1,0,0]', '{1,0,0,0}')"));
    let served: i64 =
        a.query_one("SELECT count(*) FROM alice.items_stack WHERE id = 500", &[]).unwrap().get(0);
    assert_eq!(served, 1, "bob's write is served");
    drop((a, b));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F7. A lock on the served view
// ---------------------------------------------------------------------------------------

/// The phase of the running job of a model set, if any.
fn running_phase(su: &mut Client, set: &str) -> Option<String> {
    su.query_opt(
        "SELECT phase FROM embedstack.jobs WHERE model_set = $1 AND state = 'running' ORDER BY id DESC LIMIT 1",
        &[&set],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// F7: carol, with no privilege on alice's table, holds ACCESS SHARE on the served view in an open
/// transaction, taken after the new generation was written (alice's own older transaction keeps
/// the job in its wait phase until then). With `embedstack.cutover_wait_timeout` at 5 s, alice's
/// materialize fails with 55P03 naming carol's pid; the view still serves the old generation and
/// its vectors; once carol commits, materialize again cuts over. The same for rollback (2 s).
#[test]
fn f7_a_lock_on_the_served_view_fails_the_cutover_after_the_timeout() {
    let mut w = World::new("f7", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    ok(
        &mut a,
        "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 1, nonnegative => true)",
    );
    let (_, g1, _) = served_ids(&mut w.su, "stack");
    let g1 = g1.unwrap();
    let reads_before = relations_read_by_view(&mut w.su, "alice.items_stack");
    let vectors_before = content(&mut a, "alice.items_stack");
    let mut a2 = w.connect("alice");
    ok(&mut a2, "BEGIN; SELECT pg_catalog.pg_current_xact_id()");
    let mut c = w.connect("carol");
    let carol_pid = backend_pid(&mut c);
    let (db, alice) = (w.db.clone(), w.r("alice"));
    let job = std::thread::spawn(move || {
        let mut a3 = connect_as(&db, &alice);
        a3.batch_execute("SET embedstack.cutover_wait_timeout = '5s'").unwrap();
        a3.batch_execute("CALL embedstack.materialize('stack')")
    });
    let t0 = Instant::now();
    while running_phase(&mut w.su, "stack").as_deref() != Some("wait") {
        assert!(t0.elapsed() < Duration::from_secs(120), "materialize never reached its wait phase");
        assert!(!job.is_finished(), "materialize ended before its wait phase");
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(&mut c, "BEGIN; LOCK TABLE alice.items_stack IN ACCESS SHARE MODE");
    ok(&mut a2, "COMMIT");
    let r = job.join().unwrap();
    let e = r.expect_err("materialize must give up while carol holds the view");
    assert_eq!(sqlstate(&e), "55P03", "{}", all_text(&e));
    assert!(
        all_text(&e).contains(&carol_pid.to_string()),
        "the error names carol's pid {carol_pid}: {}",
        all_text(&e)
    );
    assert_eq!(served_ids(&mut w.su, "stack").1, Some(g1), "the old generation is still served");
    assert_eq!(
        relations_read_by_view(&mut w.su, "alice.items_stack"),
        reads_before,
        "the view still reads the old generation"
    );
    ok(&mut c, "COMMIT");
    assert_eq!(content(&mut a, "alice.items_stack"), vectors_before, "the old vectors are still served");
    ok(&mut a, "CALL embedstack.materialize('stack')");
    let (_, g2, prev) = served_ids(&mut w.su, "stack");
    let g2 = g2.unwrap();
    assert!(g2 > g1 && prev == Some(g1), "the new generation is served: {g2} after {g1}");
    assert_ne!(relations_read_by_view(&mut w.su, "alice.items_stack"), reads_before);

    // rollback: the same bound.
    ok(&mut c, "BEGIN; LOCK TABLE alice.items_stack IN ACCESS SHARE MODE");
    ok(&mut a, "SET embedstack.cutover_wait_timeout = '2s'");
    let e = expect_code(&mut a, "CALL embedstack.rollback('stack')", "55P03");
    assert!(all_text(&e).contains(&carol_pid.to_string()), "{}", all_text(&e));
    assert_eq!(served_ids(&mut w.su, "stack").1, Some(g2), "rollback changed nothing");
    ok(&mut c, "COMMIT");
    ok(&mut a, "CALL embedstack.rollback('stack')");
    assert_eq!(served_ids(&mut w.su, "stack").1, Some(g1), "rollback serves the previous generation");
    assert_eq!(relations_read_by_view(&mut w.su, "alice.items_stack"), reads_before);
    drop((a, a2, c));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F8. Views of other roles on the generations
// ---------------------------------------------------------------------------------------

/// F8: carol (no privilege on alice's table) builds views on alice's retained generation and on
/// her served view. alice's next materialisation of a new layout succeeds, with a NOTICE that the
/// generation carol depends on is kept; drop_model_set then fails with 2BP01 whose DETAIL names
/// carol's view, and changes nothing.
#[test]
fn f8_views_of_other_roles_keep_a_generation_but_never_fail_a_cutover() {
    let mut w = World::new("f8", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let (mut a, notices) = w.connect_notices("alice");
    ok(
        &mut a,
        "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 1, nonnegative => true)",
    );
    ok(&mut a, "CALL embedstack.materialize('stack')");
    let gens = |su: &mut Client| -> Vec<(i64, String, Option<String>)> {
        su.query(
            "SELECT id, state, relation::text FROM embedstack.generations WHERE model_set = 'stack' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let g = gens(&mut w.su);
    assert_eq!(g.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(), ["retained", "served"], "{g:?}");
    let retained = g[0].2.clone().unwrap();
    let mut c = w.connect("carol");
    ok(
        &mut c,
        &format!(
            "CREATE VIEW carol.on_generation AS SELECT * FROM {retained};
             CREATE VIEW carol.on_view AS SELECT * FROM alice.items_stack;"
        ),
    );
    ok(
        &mut a,
        "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => 10, nonnegative => true)",
    );
    notices.lock().unwrap().clear();
    ok(&mut a, "CALL embedstack.materialize('stack')");
    let kept: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m, _)| m.contains(retained.trim_start_matches("alice.")) && m.contains("kept"))
        .map(|(_, m, _)| m.clone())
        .collect();
    assert!(
        !kept.is_empty(),
        "a NOTICE says the generation carol depends on is kept: {:?}",
        notices.lock().unwrap()
    );
    assert!(w.exists(&retained), "carol's view keeps {retained}");
    let g = gens(&mut w.su);
    assert_eq!(g.last().unwrap().1, "served", "{g:?}");
    assert!(g.iter().any(|x| x.2.as_deref() == Some(retained.as_str())), "{g:?}");
    let before = w.alice_state();
    let e = expect_code(&mut a, "SELECT embedstack.drop_model_set('stack')", "2BP01");
    let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_string();
    assert!(
        detail.contains("carol.on_view") || detail.contains("carol.on_generation"),
        "DETAIL names carol's view: {}",
        all_text(&e)
    );
    assert_eq!(w.alice_state(), before, "the failed drop changed nothing");
    drop((a, c));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F9. A served view left behind
// ---------------------------------------------------------------------------------------

/// F9: alice's source is dropped while her own view depends on its served view, which is left
/// behind (WARNING). carol registers a model set of the same name on her table and grants bob
/// SELECT on it: the leftover view refuses bob (42501), and everybody else — carol, alice, the
/// superuser: it opens to nobody.
#[test]
fn f9_a_served_view_left_behind_opens_to_nobody() {
    let mut w = World::new("f9", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    small_set(&mut a, "alice.src9", "m9", 20, true, "");
    ok(&mut a, "CREATE VIEW alice.my_report AS SELECT * FROM alice.src9_m9");
    ok(&mut a, "DROP TABLE alice.src9");
    assert!(w.exists("alice.src9_m9"), "test precondition: the served view is left behind");
    let mut c = w.connect("carol");
    ok(
        &mut c,
        &w.sql(
            "CREATE TABLE carol.u (id int PRIMARY KEY, v public.vector(3));
             INSERT INTO carol.u SELECT i, ARRAY[i, 1, 0]::real[]::public.vector FROM generate_series(1, 20) i;
             SELECT embedstack.create_model_set('m9', 'carol.u', 'id', ARRAY['v']);
             GRANT USAGE ON SCHEMA carol TO @bob; GRANT SELECT ON carol.u TO @bob;",
        ),
    );
    let mut b = w.connect("bob");
    for sql in [
        "SELECT * FROM alice.src9_m9",
        "SELECT count(*) FROM alice.src9_m9",
        "SELECT id FROM alice.src9_m9 LIMIT 1",
    ] {
        expect_code(&mut b, sql, "42501");
        expect_code(&mut c, sql, "42501");
        expect_code(&mut a, sql, "42501");
        expect_code(&mut w.su, sql, "42501");
    }
    expect_code(&mut a, "SELECT * FROM alice.my_report", "42501");
    drop((a, b, c));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F12. Taken names of generations, indexes, pending tables and the view
// ---------------------------------------------------------------------------------------

/// The served generation of a model set: `(id, relation, index name)`.
fn served_generation(su: &mut Client, set: &str) -> (i64, String, String) {
    let r = su
        .query_one(
            "SELECT g.id, g.relation::text, g.index_name::text FROM embedstack.generations g
               JOIN embedstack.model_sets m ON m.served_generation = g.id WHERE m.name = $1",
            &[&set],
        )
        .unwrap_or_else(|e| panic!("no served generation of {set}: {e}"));
    (r.get(0), r.get(1), r.get(2))
}

/// Is `name` a name derived from `base` (possibly cut and hashed) ending in `<tag><6 hex digits>`
/// (the random suffix of a name someone else took)?
fn suffixed(name: &str, base: &str, tag: &str) -> bool {
    let Some(i) = name.rfind(tag) else { return false };
    let hex = &name[i + tag.len()..];
    name.starts_with(&base[..base.len().min(20)])
        && hex.len() == 6
        && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// `(owner, valid index named index_name on it)` of a generation table.
fn generation_facts(su: &mut Client, relation: &str, index: &str) -> (String, bool) {
    let r = su
        .query_one(
            "SELECT pg_get_userbyid(c.relowner)::text,
                    EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
                             WHERE i.indrelid = c.oid AND x.relname = $2 AND i.indisvalid)
               FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&relation, &index],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// F12: bob reads the next generation id (the sequence is readable by PUBLIC now) and takes the
/// names of the next 21 generation tables of alice's model set in public: her materialize
/// succeeds with a generation table of a random 6-hex suffix, indexed, served to every row;
/// bob's tables are untouched. The same for the index and pending-table names of another model
/// set (the table gets its plain name, the index a suffix). The served view's own name, taken
/// before create_model_set or before the first materialize, is 42P07 (documented), and nothing
/// of alice's changes.
#[test]
fn f12_taken_generation_names_get_a_random_suffix() {
    let mut w = World::new("f12", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    load_items(&mut a, "public.pitems", "public.ppairs", 1, 150, ("x", "y"));
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('pub', 'public.pitems', 'id', '{m1,m2}');
         SELECT embedstack.fit('pub', 'public.ppairs', 'a', 'b', 'y', nonnegative => true);",
    );
    let mut b = w.connect("bob");
    let next_id = |b: &mut Client| -> i64 {
        scalar(
            b,
            "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM embedstack.generations_id_seq",
        )
        .expect("bob reads the generation id sequence")
        .parse()
        .unwrap()
    };
    let next = next_id(&mut b);
    let mut squatted = Vec::new();
    for n in next..=next + 20 {
        let t = format!("public.pitems_pub_g{n}");
        ok(&mut b, &format!("CREATE TABLE {t} (x text); INSERT INTO {t} VALUES ('bob''s {n}')"));
        squatted.push(t);
    }
    let bobs = |su: &mut Client, tables: &[String]| -> Vec<String> {
        tables.iter().map(|t| format!("{t}: {}", content(su, t))).collect()
    };
    let bob_before = bobs(&mut w.su, &squatted);
    ok(&mut a, "CALL embedstack.materialize('pub')");
    let (gid, rel, idx) = served_generation(&mut w.su, "pub");
    let table = rel.trim_start_matches("public.").to_string();
    assert!(suffixed(&table, "pitems_pub", &format!("_g{gid}_")), "a random 6-hex suffix: {table}");
    assert_eq!(
        generation_facts(&mut w.su, &rel, &idx),
        (w.r("alice"), true),
        "{rel} is alice's, with its index {idx}"
    );
    assert_eq!(relations_read_by_view(&mut w.su, "public.pitems_pub"), vec![rel.clone()]);
    let served: i64 = a
        .query_one("SELECT count(*) FROM public.pitems_pub WHERE pub_combined IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(served, 150, "every row served");
    assert_eq!(bobs(&mut w.su, &squatted), bob_before, "bob's tables are untouched");

    // Index and pending-table names.
    load_items(&mut a, "public.pitems2", "public.ppairs2", 1, 150, ("x", "y"));
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('pub2', 'public.pitems2', 'id', '{m1,m2}');
         SELECT embedstack.fit('pub2', 'public.ppairs2', 'a', 'b', 'y', nonnegative => true);",
    );
    let next = next_id(&mut b);
    let mut squatted2 = Vec::new();
    for n in next..=next + 20 {
        for tag in ["hnsw", "pending"] {
            let t = format!("public.pitems2_pub2_g{n}_{tag}");
            ok(&mut b, &format!("CREATE TABLE {t} (x text); INSERT INTO {t} VALUES ('bob''s {n}')"));
            squatted2.push(t);
        }
    }
    let bob_before2 = bobs(&mut w.su, &squatted2);
    ok(&mut a, "CALL embedstack.materialize('pub2')");
    let (gid2, rel2, idx2) = served_generation(&mut w.su, "pub2");
    assert_eq!(rel2, format!("public.pitems2_pub2_g{gid2}"), "the generation table has its plain name");
    assert!(suffixed(&idx2, &format!("pitems2_pub2_g{gid2}"), "_hnsw_"), "a random 6-hex suffix: {idx2}");
    assert_eq!(generation_facts(&mut w.su, &rel2, &idx2), (w.r("alice"), true));
    let served: i64 = a
        .query_one("SELECT count(*) FROM public.pitems2_pub2 WHERE pub2_combined IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(served, 150);
    assert_eq!(bobs(&mut w.su, &squatted2), bob_before2, "bob's tables are untouched");

    // The view's own name.
    let before = w.alice_state();
    let pub_before = content(&mut a, "public.pitems_pub");
    ok(&mut b, "CREATE TABLE public.pitems_pv (x int); INSERT INTO public.pitems_pv VALUES (1)");
    expect_code(
        &mut a,
        "SELECT embedstack.create_model_set('pv', 'public.pitems', 'id', '{m1,m2}')",
        "42P07",
    );
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('pv2', 'public.pitems', 'id', '{m1,m2}', combined_column => 'pv2_c');
         SELECT embedstack.fit('pv2', 'public.ppairs', 'a', 'b', 'y', nonnegative => true);",
    );
    ok(&mut b, "CREATE TABLE public.pitems_pv2 (x int); INSERT INTO public.pitems_pv2 VALUES (2)");
    expect_code(&mut a, "CALL embedstack.materialize('pv2')", "42P07");
    assert_eq!(served_ids(&mut w.su, "pv2"), (None, None, None), "nothing served");
    assert_eq!(content(&mut w.su, "public.pitems_pv"), content(&mut b, "public.pitems_pv"));
    let x: i32 = b.query_one("SELECT x FROM public.pitems_pv2", &[]).unwrap().get(0);
    assert_eq!(x, 2, "bob's table is untouched");
    assert_eq!(w.alice_state(), before);
    assert_eq!(content(&mut a, "public.pitems_pub"), pub_before);
    drop((a, b));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F13. Key values in the freshness trigger's errors
// ---------------------------------------------------------------------------------------

/// F13: carol may UPDATE alice's model column `m` and nothing else (no SELECT): her updates with a
/// vector of the wrong dimension, a NaN, Infinity or a NULL element fail, and no error shows a key
/// value (1001..1010) or the private column; it says the key is hidden. alice's own failing update
/// names the key. No row changed.
#[test]
fn f13_freshness_errors_hide_keys_from_writers_who_cannot_read_them() {
    let mut w = World::new("f13", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    ok(
        &mut a,
        &w.sql(
            "CREATE TABLE alice.lk (id int PRIMARY KEY, ssn text, m real[]);
             INSERT INTO alice.lk SELECT i, 'ssn-' || i || '-secret', ARRAY[sin(i), cos(i), 1]::real[]
               FROM generate_series(1001, 1010) i;
             CREATE TABLE alice.lk_p AS SELECT a.id AS a, b.id AS b, (a.id % 3 + b.id % 5)::float8 AS y
               FROM alice.lk a JOIN alice.lk b ON b.id > a.id;
             SELECT embedstack.create_model_set('lks', 'alice.lk', 'id', ARRAY['m']);
             SELECT embedstack.fit('lks', 'alice.lk_p', 'a', 'b', 'y', nonnegative => true);
             GRANT UPDATE (m) ON alice.lk TO @carol;",
        ),
    );
    ok(&mut a, "CALL embedstack.materialize('lks')");
    let rows_before = content(&mut w.su, "alice.lk");
    let served_before = content(&mut w.su, "alice.lk_lks");
    let mut c = w.connect("carol");
    for value in ["{1,2}", "{NaN,1,1}", "{Infinity,1,1}", "{1,NULL,1}", "{1,2,3,4}"] {
        let sql = format!("UPDATE alice.lk SET m = '{value}'");
        let e = match c.batch_execute(&sql) {
            Ok(()) => panic!("{sql}: succeeded"),
            Err(e) => e,
        };
        let text = all_text(&e);
        for id in 1001..=1010 {
            assert!(!text.contains(&id.to_string()), "{sql}: the error shows key {id} to carol:\n{text}");
        }
        assert!(!text.contains("ssn-"), "{sql}: {text}");
        assert!(text.contains("hidden"), "{sql}: the error says the key is hidden:\n{text}");
    }
    let e = expect_codes(&mut a, "UPDATE alice.lk SET m = '{1,2}' WHERE id = 1005", &["22000", "22023"]);
    assert!(all_text(&e).contains("1005"), "the owner sees the key: {}", all_text(&e));
    assert_eq!(content(&mut w.su, "alice.lk"), rows_before, "no row changed");
    assert_eq!(content(&mut w.su, "alice.lk_lks"), served_before, "nothing served changed");
    drop((a, c));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F14. A source moved to another schema
// ---------------------------------------------------------------------------------------

/// F14: after `ALTER TABLE alice.cc SET SCHEMA public`, a new fit, materialize and two refreshes
/// succeed: one served view (still `alice.cc_ccset`, no `public.cc_ccset`), generations in schema
/// alice (at most the served and one retained), the freshness triggers serve writes to
/// `public.cc`; drop_model_set succeeds and leaves nothing (no view, generation, trigger or
/// catalog row).
#[test]
fn f14_a_moved_source_keeps_its_model_set_where_it_was() {
    let mut w = World::new("f14", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let mut a = w.connect("alice");
    load_items(&mut a, "alice.cc", "alice.ccp", 1, 100, ("x", "y"));
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('ccset', 'alice.cc', 'id', '{m1,m2}');
         SELECT embedstack.fit('ccset', 'alice.ccp', 'a', 'b', 'y', nonnegative => true);",
    );
    ok(&mut a, "CALL embedstack.materialize('ccset')");
    ok(&mut a, "ALTER TABLE alice.cc SET SCHEMA public");
    ok(&mut a, "SELECT embedstack.fit('ccset', 'alice.ccp', 'a', 'b', 'y', ridge => 1, nonnegative => true)");
    ok(&mut a, "CALL embedstack.materialize('ccset')");
    ok(&mut a, "CALL embedstack.refresh('ccset')");
    ok(&mut a, "CALL embedstack.refresh('ccset')");
    let rels = |su: &mut Client| -> Vec<String> {
        su.query(
            "SELECT c.oid::regclass::text || ':' || c.relkind::text FROM pg_class c
              WHERE c.relname LIKE 'cc\\_ccset%' AND c.relnamespace IN ('alice'::regnamespace, 'public'::regnamespace)
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let now = rels(&mut w.su);
    assert!(now.contains(&"alice.cc_ccset:v".to_string()), "{now:?}");
    assert!(!w.exists("public.cc_ccset"), "no second view: {now:?}");
    assert!(now.iter().all(|r| r.starts_with("alice.")), "everything stays in schema alice: {now:?}");
    let gens: Vec<String> =
        w.su.query("SELECT relation::text FROM embedstack.generations WHERE model_set = 'ccset'", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(!gens.is_empty() && gens.len() <= 2 && gens.iter().all(|g| g.starts_with("alice.")), "{gens:?}");
    let (_, rel, _) = served_generation(&mut w.su, "ccset");
    assert_eq!(relations_read_by_view(&mut w.su, "alice.cc_ccset"), vec![rel]);
    let n: i64 = a.query_one("SELECT count(*) FROM alice.cc_ccset", &[]).unwrap().get(0);
    assert_eq!(n, 100);
    ok(&mut a, "INSERT INTO public.cc VALUES (5000, 'x', '[1,2,3]', '{1,2,3,4}')");
    let n: i64 = a.query_one("SELECT count(*) FROM alice.cc_ccset WHERE id = 5000", &[]).unwrap().get(0);
    assert_eq!(n, 1, "a write to the moved source is served");
    ok(&mut a, "SELECT embedstack.drop_model_set('ccset')");
    assert_eq!(rels(&mut w.su), Vec::<String>::new(), "drop_model_set leaves nothing");
    let left: i64 = w
        .su
        .query_one(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.cc'::regclass AND NOT tgisinternal)
                  + (SELECT count(*) FROM embedstack.model_sets WHERE name = 'ccset')
                  + (SELECT count(*) FROM embedstack.generations WHERE model_set = 'ccset')
                  + (SELECT count(*) FROM embedstack.fits WHERE model_set = 'ccset')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no trigger or catalog row left");
    drop(a);
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F15. Dump and restore by a non-superuser
// ---------------------------------------------------------------------------------------

/// Runs a client tool as `user` against the project cluster; returns (success, stderr).
fn tool(name: &str, user: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(pg_bin().join(name))
        .args(["-h", "127.0.0.1", "-p", &port(), "-U", user])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// F15: in a database where alice owns everything but the extensions, `pg_dump` as alice
/// (`--enable-row-security`: the catalog tables have row security, see docs/security.md) exits 0
/// (0.3.0: "permission denied for sequence fits_id_seq"), also in custom format. `pg_dump -n
/// alice` restored into a fresh database with embedstack: INSERT, UPDATE, DELETE and TRUNCATE on
/// the restored `alice.items` work (its freshness triggers name a model set that does not exist
/// there: a WARNING, nothing done), and the restored served view refuses every reader (42501).
#[test]
fn f15_a_non_superuser_dumps_and_restores_its_schema() {
    let restored = "es_sec_f15_restored";
    let mut w = World::new("f15", &["alice"], &[restored]);
    w.su_exec("CREATE SCHEMA alice AUTHORIZATION @alice");
    let mut a = w.connect("alice");
    load_items(&mut a, "alice.items", "alice.pairs", 1, 100, ("x", "y"));
    ok(
        &mut a,
        "SELECT embedstack.create_model_set('stack', 'alice.items', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', nonnegative => true);",
    );
    ok(&mut a, "CALL embedstack.materialize('stack')");
    let alice = w.r("alice");
    let dir = std::env::temp_dir();
    let plain = dir.join(format!("es_sec_f15_{}.sql", std::process::id()));
    let custom = dir.join(format!("es_sec_f15_{}.dump", std::process::id()));
    let schema = dir.join(format!("es_sec_f15_{}_alice.dump", std::process::id()));
    for (args, what) in [
        (vec!["--enable-row-security", "-f", plain.to_str().unwrap(), "-d", &w.db], "pg_dump (plain)"),
        (vec!["--enable-row-security", "-Fc", "-f", custom.to_str().unwrap(), "-d", &w.db], "pg_dump -Fc"),
        (vec!["-n", "alice", "-Fc", "-f", schema.to_str().unwrap(), "-d", &w.db], "pg_dump -n alice"),
    ] {
        let (okay, stderr) = tool("pg_dump", &alice, &args);
        assert!(okay, "{what} as alice failed:\n{stderr}");
    }
    let dump = std::fs::read_to_string(&plain).unwrap();
    assert!(dump.contains("CREATE EXTENSION IF NOT EXISTS embedstack"), "the dump carries the extension");
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&custom);

    let mut r = create_db(restored);
    r.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
    let (okay, stderr) =
        tool("pg_restore", "postgres", &["--exit-on-error", "-d", restored, schema.to_str().unwrap()]);
    let _ = std::fs::remove_file(&schema);
    assert!(okay, "pg_restore of alice's schema failed:\n{stderr}");
    let (mut ra, notices) = connect_with_notices(restored, &alice);
    for sql in [
        "INSERT INTO alice.items VALUES (1001, 'x', '[1,2,3]', '{1,2,3,4}')",
        "UPDATE alice.items SET m1 = '[3,2,1]' WHERE id = 1",
        "DELETE FROM alice.items WHERE id = 2",
        "INSERT INTO alice.items SELECT id + 5000, tenant, m1, m2 FROM alice.items WHERE id < 10",
    ] {
        ok(&mut ra, sql);
    }
    let n: i64 = ra.query_one("SELECT count(*) FROM alice.items", &[]).unwrap().get(0);
    assert_eq!(n, 100 + 1 - 1 + 8, "the writes happened");
    expect_code(&mut ra, "SELECT count(*) FROM alice.items_stack", "42501");
    ok(&mut ra, "TRUNCATE alice.items");
    eprintln!("F15: warnings of the restored database: {:?}", notices.lock().unwrap());
    drop((a, ra, r));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// F16. _served_columns
// ---------------------------------------------------------------------------------------

/// F16: eve, with no privilege on alice's table, learns nothing from the SECURITY DEFINER look-up
/// of the served views' gate: `_served_columns` answers only for a model set name together with a
/// generation table of that model set — with OID 0, alice's source, her private table or an
/// unknown name it answers nothing; with alice's served generation it gives the columns (which
/// pg_attribute shows everyone). The one-argument form of 0.3.0 is gone (42883). The gate itself
/// refuses her (42501), in both forms.
#[test]
fn f16_served_columns_answers_only_the_matching_pair() {
    let mut w = World::new("f16", &["alice", "bob", "carol", "dave", "eve"], &[]);
    w.common_setup(&["alice", "bob", "carol", "dave"]);
    let items = w.oid("alice.items");
    let ledger = w.oid("alice_priv.ledger");
    let (_, generation, _) = served_generation(&mut w.su, "stack");
    let gen = w.oid(&generation);
    let mut e = w.connect("eve");
    let columns = |e: &mut Client, set: &str, rel: u32| -> Option<String> {
        scalar(e, &format!("SELECT s.columns::text FROM embedstack._served_columns({}, {rel}) s", q(set)))
    };
    for (set, rel) in [("stack", 0), ("stack", items), ("stack", ledger), ("nope", gen), ("", gen)] {
        assert_eq!(columns(&mut e, set, rel), None, "_served_columns({set}, {rel})");
    }
    assert_eq!(columns(&mut e, "stack", gen).as_deref(), Some("{id,m1,m2}"));
    expect_code(&mut e, "SELECT embedstack._served_columns('stack')", "42883");
    expect_code(&mut e, &format!("SELECT embedstack._may_read_served('stack', {gen})"), "42501");
    expect_code(&mut e, "SELECT embedstack._may_read_served('stack')", "42501");
    drop(e);
    w.finish();
}

// ---------------------------------------------------------------------------------------
// A superuser's jobs on another role's tables
// ---------------------------------------------------------------------------------------

/// Boundary (e) of docs/security.md: a job writes the generation tables of the source's owner, so
/// what the owner attached to them runs with the job runner's rights. mallory's table has a key of
/// her own domain whose CHECK makes her superuser when it runs as one; its generations are typed
/// by that key. A superuser's materialize, refresh and refit of her model set are refused (42501,
/// with a hint to run them as the owner), also under `SET ROLE mallory` (her code could RESET
/// it), and change nothing served; mallory runs them herself; she never becomes superuser. A
/// superuser runs the jobs of a superuser's table (the rest of the tests).
#[test]
fn superuser_jobs_never_run_on_another_roles_tables() {
    let mut w = World::new("sujob", &["alice", "mallory"], &[]);
    w.su_exec("CREATE SCHEMA mallory AUTHORIZATION @mallory");
    let mut m = w.connect("mallory");
    ok(
        &mut m,
        &w.sql(
            "CREATE FUNCTION mallory.pwn(k int) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                     EXECUTE 'ALTER ROLE @mallory SUPERUSER';
                 END IF;
                 RETURN true;
             END $$;
             CREATE DOMAIN mallory.k AS int CHECK (mallory.pwn(VALUE));
             CREATE TABLE mallory.kt (id mallory.k PRIMARY KEY, v public.vector(3));
             INSERT INTO mallory.kt SELECT i, ARRAY[sin(i), cos(i), 1]::real[]::public.vector FROM generate_series(1, 40) i;
             CREATE TABLE mallory.kt_p AS SELECT a.id::int AS a, b.id::int AS b, (1 - (a.v OPERATOR(public.<=>) b.v))::float8 AS y
               FROM mallory.kt a JOIN mallory.kt b ON b.id::int IN (a.id::int + 1, a.id::int + 3);
             SELECT embedstack.create_model_set('kset', 'mallory.kt', 'id', ARRAY['v']);
             SELECT embedstack.fit('kset', 'mallory.kt_p', 'a', 'b', 'y', nonnegative => true);",
        ),
    );
    ok(&mut m, "CALL embedstack.materialize('kset')");
    let (_, rel, _) = served_generation(&mut w.su, "kset");
    let key_type: String = w
        .su
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'id'",
            &[&rel],
        )
        .unwrap()
        .get(0);
    assert_eq!(key_type, "mallory.k", "test precondition: the generation's key has mallory's type");
    let served = |su: &mut Client| (served_ids(su, "kset"), content(su, "mallory.kt_kset"));
    let before = served(&mut w.su);
    let (mut s, _) = connect_with_notices(&w.db, "postgres");
    ok(
        &mut s,
        "SELECT embedstack.fit('kset', 'mallory.kt_p', 'a', 'b', 'y', ridge => 1, nonnegative => true)",
    );
    for sql in [
        "CALL embedstack.materialize('kset')",
        "CALL embedstack.refresh('kset')",
        "CALL embedstack.refit('kset', 'mallory.kt_p', 'a', 'b', 'y', nonnegative => true, cutover => 'always')",
    ] {
        let e = expect_code(&mut s, sql, "42501");
        assert!(all_text(&e).contains(&w.r("mallory")), "the refusal names the owner to run it as: {}", all_text(&e));
        ok(&mut s, &w.sql("SET ROLE @mallory"));
        expect_code(&mut s, sql, "42501");
        ok(&mut s, "RESET ROLE");
    }
    drop(s);
    assert_eq!(served(&mut w.su), before, "the refused jobs changed nothing served");
    w.roles.assert_powerless(&mut w.su);
    ok(&mut m, "CALL embedstack.refresh('kset')");
    ok(&mut m, "CALL embedstack.refit('kset', 'mallory.kt_p', 'a', 'b', 'y', nonnegative => true, cutover => 'always')");
    assert_ne!(served_ids(&mut w.su, "kset").1, before.0 .1, "mallory runs her jobs herself");
    drop(m);
    w.finish();
}

// ---------------------------------------------------------------------------------------
// 0.4.1. A generation row whose pending-keys table is not the generation's
// ---------------------------------------------------------------------------------------

/// The paths that read, write, truncate or drop a retained or building generation's pending-keys
/// table, one victim table of alice's (`alice_priv.v_<path>`) each.
const PENDING_PATHS: [&str; 6] = ["reuse", "rollback", "catch_up", "write", "index", "truncate"];

/// Rows and indexes of a relation as the superuser sees them, or `missing`.
fn table_state(su: &mut Client, rel: &str) -> String {
    let exists: bool = su.query_one("SELECT to_regclass($1) IS NOT NULL", &[&rel]).unwrap().get(0);
    if !exists {
        return "missing".into();
    }
    let rows: Option<String> = su
        .query_one(&format!("SELECT string_agg(v::text, ',' ORDER BY v::text) FROM {rel} v"), &[])
        .unwrap()
        .get(0);
    let indexes: Option<String> = su
        .query_one(
            "SELECT string_agg(pg_get_indexdef(i.indexrelid), ';' ORDER BY 1) FROM pg_index i
              WHERE i.indrelid = $1::text::regclass",
            &[&rel],
        )
        .unwrap()
        .get(0);
    format!("rows {} | indexes {}", rows.unwrap_or_default(), indexes.unwrap_or_default())
}

/// The retained generation of `su_stack` with a pending-keys table: `(id, pending)`.
fn retained_with_pending(su: &mut Client) -> Option<(i64, String)> {
    su.query_opt(
        "SELECT id, pending::text FROM embedstack.generations
          WHERE model_set = 'su_stack' AND state = 'retained' AND pending IS NOT NULL ORDER BY id DESC LIMIT 1",
        &[],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
}

/// Runs `sql` in a new session of the superuser: its outcome (`ok` or `SQLSTATE message`) and the
/// WARNINGs it got.
fn su_run(w: &World, sql: &str, setup: &str) -> (String, Vec<String>) {
    let (mut c, notices) = connect_with_notices(&w.db, "postgres");
    if !setup.is_empty() {
        ok(&mut c, setup);
    }
    let outcome = match c.batch_execute(sql) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{} {}", e.code().map(|x| x.code()).unwrap_or("?"), message(&e)),
    };
    let warnings =
        notices.lock().unwrap().iter().filter(|n| n.0 == "WARNING").map(|n| n.1.clone()).collect::<Vec<_>>();
    (outcome, warnings)
}

/// 0.4.1: 0.4.0 trusted the catalog's `generations.pending` wherever it brought a generation up to
/// date from its recorded keys — the reuse of a retained generation by a materialise
/// (`_mat_prepare`), a rollback (`_switch_to`), the catch-up after an index build (`_mat_index`),
/// `catch_up`, and the freshness triggers (record, TRUNCATE) — and dropped, emptied, indexed or
/// wrote whatever relation it named, with the rights of whoever ran it, unlike the generation
/// tables, which it drops only when provably the model set's. Rows only a superuser (or a
/// corruption: a row outliving its table, whose OID another role's table gets) could write name,
/// for each path, a table of alice's (`alice_priv.v_<path>`, rows 1-3) as the pending-keys table of
/// a generation of the superuser's own model set `su_stack` (whose jobs the superuser runs), and
/// once the superuser's own table `public.su_keep`, which is no pending-keys table: none of them is
/// read, written, indexed, truncated or dropped. The reuse and the index build write the fit
/// anew, with a WARNING naming the relation (left in place); a rollback to that generation is
/// refused (55000); catch_up skips it with a WARNING; writes and a TRUNCATE of the source write
/// the generation itself. (Against 0.4.0 every path fails: each victim is dropped, emptied,
/// indexed or written.)
#[test]
fn pending_rows_never_make_the_extension_touch_other_tables() {
    let mut w = World::new("pend", &["alice"], &[]);
    w.common_setup(&["alice"]);
    let mut victims = String::new();
    for p in PENDING_PATHS {
        victims.push_str(&format!(
            "CREATE TABLE alice_priv.v_{p} (id int PRIMARY KEY, amount int);
             INSERT INTO alice_priv.v_{p} VALUES (1, 10), (2, 20), (3, 30);\n"
        ));
    }
    ok(&mut w.connect("alice"), &victims);
    // The superuser's model set: fit A (both models) served, then fit B (the first model only:
    // another layout), so that fit A's generation is retained and records the keys written.
    load_items(&mut w.su, "public.su_items", "public.su_pairs", 1, 200, ("x", "y"));
    w.su_exec(
        "CREATE TABLE public.su_keep (id int PRIMARY KEY, note text); INSERT INTO public.su_keep VALUES (1, 'keep'), (3, 'keep');
         CREATE TABLE public.su_pairs_b AS
         SELECT p.a, p.b, (1 - (x.m1 OPERATOR(public.<=>) y.m1))::float8 AS y
           FROM public.su_pairs p JOIN public.su_items x ON x.id = p.a JOIN public.su_items y ON y.id = p.b;
         SELECT embedstack.create_model_set('su_stack', 'public.su_items', 'id', ARRAY['m1', 'm2']);",
    );
    let fit = |su: &mut Client, pairs: &str| -> i64 {
        su.query_one(
            "SELECT id FROM embedstack.fit('su_stack', $1::text::regclass, 'a', 'b', 'y', nonnegative => true)",
            &[&pairs],
        )
        .unwrap()
        .get(0)
    };
    let fa = fit(&mut w.su, "public.su_pairs");
    let fb = fit(&mut w.su, "public.su_pairs_b");
    w.su_exec(&format!("CALL embedstack.materialize('su_stack', {fa})"));
    let served_a = weights(&mut w.su, "su_stack");
    w.su_exec(&format!("CALL embedstack.materialize('su_stack', {fb})"));
    assert_ne!(
        weights(&mut w.su, "su_stack"),
        served_a,
        "test precondition: fits A and B have other layouts"
    );
    let alice_before = w.alice_state();
    let victim_before: Vec<String> =
        PENDING_PATHS.iter().map(|p| table_state(&mut w.su, &format!("alice_priv.v_{p}"))).collect();
    let keep_before = table_state(&mut w.su, "public.su_keep");
    let mut failures: Vec<String> = Vec::new();
    // Keys recorded for the retained generation, then its row forged to name `victim`.
    let forge = |w: &mut World, failures: &mut Vec<String>, path: &str, victim: &str| -> Option<i64> {
        let (outcome, _) = su_run(
            w,
            "UPDATE public.su_items SET m2 = ARRAY[1, 2, 3, random()]::real[] WHERE id IN (3, 4)",
            "",
        );
        if outcome != "ok" {
            failures.push(format!("{path}: a write to the source before forging: {outcome}"));
        }
        let Some((g, pending)) = retained_with_pending(&mut w.su) else {
            failures.push(format!("{path}: no retained generation of su_stack with a pending-keys table"));
            return None;
        };
        if path == "reuse" || path == "rollback" {
            let n: i64 = w.su.query_one(&format!("SELECT count(*) FROM {pending}"), &[]).unwrap().get(0);
            assert!(n > 0, "test precondition ({path}): generation {g} recorded keys in {pending}");
        }
        w.su_exec(&format!(
            "UPDATE embedstack.generations SET pending = '{victim}'::regclass WHERE id = {g}"
        ));
        Some(g)
    };
    let warned = |warnings: &[String], victim: &str| {
        warnings.iter().any(|m| m.contains(victim) && m.contains("is recorded as"))
    };

    // 1. A materialise of fit A reuses its retained generation (_mat_prepare): written anew instead.
    if let Some(g) = forge(&mut w, &mut failures, "reuse", "alice_priv.v_reuse") {
        let (outcome, warnings) = su_run(&w, &format!("CALL embedstack.materialize('su_stack', {fa})"), "");
        let served = served_ids(&mut w.su, "su_stack");
        if outcome != "ok"
            || served.0 != Some(fa)
            || served.1 == Some(g)
            || !warned(&warnings, "alice_priv.v_reuse")
        {
            failures.push(format!(
                "reuse: {outcome}, serving {served:?} (generation {g} must not be served), warnings {warnings:?}"
            ));
        }
        let gone: i64 =
            w.su.query_one("SELECT count(*) FROM embedstack.generations WHERE id = $1", &[&g])
                .unwrap()
                .get(0);
        if gone != 0 {
            failures.push(format!("reuse: generation {g} is still recorded"));
        }
        let (n_view, n_src): (i64, i64) = {
            let r = w
                .su
                .query_one("SELECT (SELECT count(*) FROM public.su_items_su_stack), (SELECT count(*) FROM public.su_items)", &[])
                .unwrap();
            (r.get(0), r.get(1))
        };
        if n_view != n_src {
            failures.push(format!("reuse: the view serves {n_view} rows, the source has {n_src}"));
        }
    }

    // 2. A rollback to fit B's retained generation (_switch_to): refused, for a table of another
    // role and for the owner's own table that is no pending-keys table.
    for victim in ["public.su_keep", "alice_priv.v_rollback"] {
        if forge(&mut w, &mut failures, "rollback", victim).is_some() {
            let before = served_ids(&mut w.su, "su_stack");
            let (outcome, _) = su_run(&w, "CALL embedstack.rollback('su_stack')", "");
            if !outcome.starts_with("55000 ") || !outcome.contains("cannot be brought up to date") {
                failures.push(format!("rollback ({victim}): {outcome}"));
            }
            if served_ids(&mut w.su, "su_stack") != before {
                failures.push(format!("rollback ({victim}): what is served changed"));
            }
        }
    }

    // 3. catch_up: the generation is skipped with a WARNING.
    if forge(&mut w, &mut failures, "catch_up", "alice_priv.v_catch_up").is_some() {
        let (outcome, warnings) = su_run(&w, "CALL embedstack.catch_up('su_stack')", "");
        if outcome != "ok" || !warned(&warnings, "alice_priv.v_catch_up") {
            failures.push(format!("catch_up: {outcome}, warnings {warnings:?}"));
        }
    }

    // 4. Writes to the source while the row names the victim (still recording): the generation is
    // written instead.
    if forge(&mut w, &mut failures, "write", "alice_priv.v_write").is_some() {
        for sql in [
            "UPDATE public.su_items SET m1 = '[1,2,3]' WHERE id = 50",
            "INSERT INTO public.su_items (id, tenant, m1, m2) VALUES (500, 'x', '[3,2,1]', '{1,2,3,4}')",
            "DELETE FROM public.su_items WHERE id = 51",
        ] {
            let (outcome, _) = su_run(&w, sql, "");
            if outcome != "ok" {
                failures.push(format!("write: {sql}: {outcome}"));
            }
        }
    }

    // 5. The index build of a refresh (_mat_index): the job stops at its CREATE INDEX (an event
    // trigger refuses it in that session) after it opened the generation's pending-keys table;
    // the row is forged, and the refresh called again writes the generation anew.
    w.su_exec(
        "CREATE FUNCTION public.es_no_index() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF current_setting('es_test.no_index', true) = 'on' THEN
                 RAISE EXCEPTION 'es_test: no index now';
             END IF;
         END $$;
         CREATE EVENT TRIGGER es_no_index ON ddl_command_start WHEN TAG IN ('CREATE INDEX')
           EXECUTE FUNCTION public.es_no_index();",
    );
    let (outcome, _) = su_run(&w, "CALL embedstack.refresh('su_stack')", "SET es_test.no_index = 'on'");
    assert!(
        outcome.contains("es_test: no index now"),
        "test precondition: the refresh stops at its index: {outcome}"
    );
    w.su_exec("DROP EVENT TRIGGER es_no_index");
    let building: Option<(i64, bool)> =
        w.su.query_opt(
            "SELECT id, pending_open FROM embedstack.generations
              WHERE model_set = 'su_stack' AND state = 'building' AND pending IS NOT NULL",
            &[],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)));
    match building {
        None => failures
            .push("index: no building generation with a pending-keys table after the stopped refresh".into()),
        Some((g, _)) => {
            w.su_exec(&format!(
                "UPDATE embedstack.generations SET pending = 'alice_priv.v_index'::regclass WHERE id = {g}"
            ));
            let (outcome, warnings) = su_run(&w, "CALL embedstack.refresh('su_stack')", "");
            let served = served_ids(&mut w.su, "su_stack");
            if outcome != "ok" || served.1 == Some(g) || !warned(&warnings, "alice_priv.v_index") {
                failures.push(format!(
                    "index: {outcome}, serving {served:?} (generation {g} must not be served), warnings {warnings:?}"
                ));
            }
        }
    }

    // 6. TRUNCATE of the source while the row names the victim.
    if forge(&mut w, &mut failures, "truncate", "alice_priv.v_truncate").is_some() {
        let (outcome, _) = su_run(&w, "TRUNCATE public.su_items", "");
        if outcome != "ok" {
            failures.push(format!("truncate: {outcome}"));
        }
    }

    for (i, p) in PENDING_PATHS.iter().enumerate() {
        let now = table_state(&mut w.su, &format!("alice_priv.v_{p}"));
        if now != victim_before[i] {
            failures.push(format!("{p}: alice_priv.v_{p} changed: {} -> {now}", victim_before[i]));
        }
    }
    let keep = table_state(&mut w.su, "public.su_keep");
    if keep != keep_before {
        failures.push(format!("rollback: public.su_keep changed: {keep_before} -> {keep}"));
    }
    if w.alice_state() != alice_before {
        failures.push("alice's model set, tables or view changed".into());
    }
    assert!(failures.is_empty(), "pending-keys rows naming other tables:\n{}", failures.join("\n"));
    w.finish();
}

// ---------------------------------------------------------------------------------------
// The shadow-object test
// ---------------------------------------------------------------------------------------

/// A routine of the extension: its input arguments' names and schema-qualified types.
#[derive(Debug, Clone)]
struct Routine {
    name: String,
    kind: String,
    rettype: String,
    args: Vec<(String, String)>,
}

/// Every routine of schema embedstack that `grantee` may execute (every routine when `None`),
/// by name.
fn routines(su: &mut Client, grantee: Option<&str>) -> Vec<Routine> {
    su.query(
        "SELECT p.proname::text, p.prokind::text, p.prorettype::regtype::text,
                coalesce((SELECT array_agg(CASE WHEN t.typcategory = 'A' AND t.typelem <> 0
                                                THEN quote_ident(en.nspname) || '.' || quote_ident(et.typname) || '[]'
                                                ELSE quote_ident(tn.nspname) || '.' || quote_ident(t.typname) END ORDER BY a.o)
                            FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, o) JOIN pg_type t ON t.oid = a.t
                            JOIN pg_namespace tn ON tn.oid = t.typnamespace
                            LEFT JOIN pg_type et ON et.oid = t.typelem LEFT JOIN pg_namespace en ON en.oid = et.typnamespace),
                         '{}'),
                coalesce((SELECT array_agg(coalesce(x.n, '') ORDER BY x.o)
                            FROM unnest(p.proargnames, coalesce(p.proargmodes, array_fill('i'::\"char\", ARRAY[coalesce(cardinality(p.proargnames), 0)])))
                                 WITH ORDINALITY x(n, m, o)
                           WHERE x.m IN ('i', 'b', 'v')), '{}')
           FROM pg_proc p
          WHERE p.pronamespace = 'embedstack'::regnamespace
            AND ($1::text IS NULL OR has_function_privilege($1::text, p.oid, 'EXECUTE'))
          ORDER BY p.proname, p.oid",
        &[&grantee],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let types: Vec<String> = r.get(3);
        let names: Vec<String> = r.get(4);
        Routine {
            name: r.get(0),
            kind: r.get(1),
            rettype: r.get(2),
            args: types
                .into_iter()
                .enumerate()
                .map(|(i, t)| (names.get(i).cloned().unwrap_or_default(), t))
                .collect(),
        }
    })
    .collect()
}

/// What a caller passes, by policy.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Policy {
    /// NULL for every argument.
    Nulls,
    /// The model set of the context, its real ids, relations and catalog rows.
    Real,
    /// Other roles' relations and OIDs, ids nobody has.
    Forged,
    /// The caller's own composite type, cast implicitly to text, name, regclass, int8, jsonb, oid.
    OwnTypes,
}

/// The model set a generic call is about, and the caller's own type (schema of `ct`).
#[derive(Clone, Debug)]
struct Ctx {
    set: String,
    source: u32,
    pairs: u32,
    other_rel: u32,
    fit: i64,
    gen: i64,
    job: i64,
    rows: Vec<(&'static str, String)>,
    own_schema: Option<String>,
}

impl Ctx {
    /// The context of model set `set` (pairs table `pairs`), as the superuser reads it;
    /// `other_rel`: a relation of another role.
    fn of(su: &mut Client, set: &str, pairs: &str, other_rel: &str, own_schema: Option<&str>) -> Ctx {
        let r = su
            .query_one(
                "SELECT m.source::oid, $2::text::regclass::oid, $3::text::regclass::oid,
                        coalesce(m.active_fit, (SELECT max(f.id) FROM embedstack.fits f WHERE f.model_set = m.name), 0),
                        coalesce(m.served_generation, 0),
                        coalesce((SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = m.name), 0),
                        row_to_json(m)::text,
                        (SELECT row_to_json(g)::text FROM embedstack.generations g WHERE g.id = m.served_generation),
                        (SELECT row_to_json(f)::text FROM embedstack.fits f WHERE f.id = m.active_fit),
                        (SELECT row_to_json(j)::text FROM embedstack.jobs j WHERE j.model_set = m.name ORDER BY j.id DESC LIMIT 1)
                   FROM embedstack.model_sets m WHERE m.name = $1",
                &[&set, &pairs, &other_rel],
            )
            .unwrap_or_else(|e| panic!("context of {set}: {e}"));
        let mut rows = Vec::new();
        for (i, t) in [
            (6, "embedstack.model_sets"),
            (7, "embedstack.generations"),
            (8, "embedstack.fits"),
            (9, "embedstack.jobs"),
        ] {
            if let Some(j) = r.get::<_, Option<String>>(i) {
                rows.push((t, j));
            }
        }
        Ctx {
            set: set.to_string(),
            source: r.get(0),
            pairs: r.get(1),
            other_rel: r.get(2),
            fit: r.get(3),
            gen: r.get(4),
            job: r.get(5),
            rows,
            own_schema: own_schema.map(str::to_string),
        }
    }
}

/// The SQL of one argument: `name` and schema-qualified type `ty` of a parameter, by policy.
/// Every literal is typed with a schema-qualified type, so the caller's own statement never
/// resolves a type, function or operator through its search_path.
fn arg_value(name: &str, ty: &str, p: Policy, cx: &Ctx) -> String {
    let any = ty == "pg_catalog.\"any\"";
    let anyel = ty == "pg_catalog.anyelement";
    if p == Policy::Nulls {
        return if any || anyel { "NULL::pg_catalog.int4".into() } else { format!("NULL::{ty}") };
    }
    let own = |v: &str| -> Option<String> {
        match (&cx.own_schema, p) {
            (Some(s), Policy::OwnTypes) => Some(format!("(ROW({})::{s}.ct)", q(v))),
            _ => None,
        }
    };
    let forged = p == Policy::Forged;
    match ty {
        "pg_catalog.text" => {
            let v = match name {
                "mode" => "symmetric",
                "storage" => "auto",
                "cutover" => "always",
                "kind" => "refit",
                "phase" => "write",
                "state" => "failed",
                "outcome" | "message" | "detail" | "hint" | "procedure" | "tag" | "base" | "r" => "x",
                "event" => "INSERT",
                "sqlstate" => "XX000",
                "cursor_key" | "left_key" | "right_key" => "1",
                "hash_of" => "stack",
                _ => cx.set.as_str(),
            };
            own(v).unwrap_or_else(|| format!("{}::pg_catalog.text", q(v)))
        }
        "pg_catalog.name" => {
            let v = match name {
                "key_column" | "col" => "id",
                "left_column" => "a",
                "right_column" => "b",
                "target_column" => "y",
                "sample_weight_column" | "combined_column" | "view_name" => {
                    return "NULL::pg_catalog.name".into()
                }
                "index_name" => "x_idx",
                "tgname" => "x",
                "source_name" => "items",
                "nsp" => "alice",
                "owner" => "postgres",
                _ => "id",
            };
            own(v).unwrap_or_else(|| format!("{}::pg_catalog.name", q(v)))
        }
        "pg_catalog.regclass" => {
            let oid = match name {
                "pairs" if !forged => cx.pairs,
                _ if forged => cx.other_rel,
                _ => cx.source,
            };
            own(&oid.to_string()).unwrap_or_else(|| format!("'{oid}'::pg_catalog.regclass"))
        }
        "pg_catalog.oid" => {
            let oid = if forged { cx.other_rel } else { cx.source };
            own(&oid.to_string()).unwrap_or_else(|| format!("'{oid}'::pg_catalog.oid"))
        }
        "pg_catalog.int8" => {
            let v = if forged {
                9_000_000_001
            } else {
                match name {
                    "fit_id" => cx.fit,
                    "job_id" => cx.job,
                    "resumed_from" => return "NULL::pg_catalog.int8".into(),
                    "rows_done" | "rows_written" | "rows_total" => 1,
                    "key" => 7,
                    _ => cx.gen,
                }
            };
            own(&v.to_string()).unwrap_or_else(|| format!("{v}::pg_catalog.int8"))
        }
        "pg_catalog.int4" => match name {
            "batch_size" => "50::pg_catalog.int4".into(),
            "width" => "3::pg_catalog.int4".into(),
            "lock_timeout_ms" => "50::pg_catalog.int4".into(),
            "key" => format!("pg_catalog.hashtext({}::pg_catalog.text)", q(&cx.set)),
            _ => "1::pg_catalog.int4".into(),
        },
        "pg_catalog.float8" => match name {
            "threshold" => "0.05::pg_catalog.float8".into(),
            "holdout_fraction" => "0.2::pg_catalog.float8".into(),
            "ridge" | "tolerance" | "intercept" => "0::pg_catalog.float8".into(),
            _ => "1::pg_catalog.float8".into(),
        },
        "pg_catalog.float8[]" => match name {
            "state" | "st" | "fold_states" | "a" | "b" if forged => {
                "'{1,1,1,-1,0,1,0,0,1,1,1}'::pg_catalog.float8[]".into()
            }
            "ridges" => "'{0,1}'::pg_catalog.float8[]".into(),
            _ => "'{1,0.5}'::pg_catalog.float8[]".into(),
        },
        "pg_catalog.int4[]" => "'{3,4}'::pg_catalog.int4[]".into(),
        "pg_catalog.name[]" => "'{m1,m2}'::pg_catalog.name[]".into(),
        "pg_catalog.text[]" => match name {
            "hidden" => "'{}'::pg_catalog.text[]".into(),
            _ => "'{m1,m2}'::pg_catalog.text[]".into(),
        },
        "pg_catalog.regtype[]" => "'{public.vector,\"real[]\"}'::pg_catalog.regtype[]".into(),
        "pg_catalog.jsonb" => {
            let v = if forged { r#"{"refresh": true, "horizon": "1"}"# } else { "{}" };
            own(v).unwrap_or_else(|| format!("{}::pg_catalog.jsonb", q(v)))
        }
        "pg_catalog.bool" => match name {
            "wait" | "drop_columns" | "open" | "pending" => "false".into(),
            _ => "true".into(),
        },
        "pg_catalog.xid8" => "pg_catalog.pg_current_xact_id()".into(),
        "pg_catalog.timestamptz" => "pg_catalog.now()".into(),
        "pg_catalog.float4[]" => "'{1,2,3}'::pg_catalog.float4[]".into(),
        "pg_catalog.\"char\"" => "'r'::pg_catalog.\"char\"".into(),
        _ if any => "7::pg_catalog.int4, '[1,2,3]'::public.vector, '{1,2,3,4}'::pg_catalog.float4[]".into(),
        _ if anyel => "7::pg_catalog.int4".into(),
        t if t.ends_with(".vector[]") => {
            let s = t.trim_end_matches("[]");
            format!("ARRAY['[1,0,0]'::{s}, '[0,1,0,1]'::{s}]")
        }
        t if t.ends_with(".vector") || t.ends_with(".halfvec") => format!("'[1,2,3]'::{t}"),
        t => match cx.rows.iter().find(|(rt, _)| *rt == t) {
            Some((_, json)) if !forged => {
                format!("pg_catalog.jsonb_populate_record(NULL::{t}, {}::pg_catalog.jsonb)", q(json))
            }
            _ => format!("NULL::{t}"),
        },
    }
}

/// The statement calling routine `r` with arguments by policy.
fn call_sql(r: &Routine, p: Policy, cx: &Ctx) -> String {
    let args: Vec<String> = r.args.iter().map(|(n, t)| arg_value(n, t, p, cx)).collect();
    let f = format!("embedstack.{}", embedstack_client_tests::sql::qi(&r.name));
    match r.kind.as_str() {
        "p" => format!("CALL {f}({})", args.join(", ")),
        _ => format!("SELECT {f}({})", args.join(", ")),
    }
}

/// Calls every routine with every policy; the outcomes do not matter (most are errors), only what
/// runs where. Returns how many calls ran.
fn sweep(c: &mut Client, rs: &[Routine], policies: &[Policy], cx: &Ctx) -> usize {
    let mut n = 0;
    for r in rs {
        if r.rettype == "trigger" || r.rettype == "event_trigger" {
            // (Not callable directly: they run as triggers, which the rounds fire.)
            continue;
        }
        for p in policies {
            let _ = c.batch_execute(&call_sql(r, *p, cx));
            n += 1;
        }
    }
    n
}

/// The expected outcome of a victim's statement.
#[derive(Clone, Copy, Debug)]
enum Want {
    Ok,
    Code(&'static str),
}

/// Runs the statements, returns the ones whose outcome differs from the expected one.
fn run_steps(c: &mut Client, who: &str, steps: &[(String, Want)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (sql, want) in steps {
        // `COPY … FROM STDIN` followed by a line `\data:` and the rows.
        let got = match sql.split_once("\n\\data:") {
            Some((copy, data)) => c.copy_in(copy).and_then(|mut w| {
                std::io::Write::write_all(&mut w, data.as_bytes()).expect("COPY data");
                w.finish().map(|_| ())
            }),
            None => c.batch_execute(sql),
        };
        match (want, &got) {
            (Want::Ok, Ok(())) => {}
            (Want::Code(code), Err(e)) if e.code().map(|x| x.code()) == Some(code) => {}
            _ => bad.push(format!(
                "{who}: {sql}\n    want {want:?}, got {}",
                match &got {
                    Ok(()) => "success".to_string(),
                    Err(e) => format!("{} {}", e.code().map(|x| x.code()).unwrap_or("?"), all_text(e)),
                }
            )),
        }
    }
    bad
}

/// What an owner works on in the shadow test: its table with its pairs, model set and served view,
/// a second table with a model set (written in every way), the schema of its scratch tables.
struct Own {
    items: &'static str,
    pairs: &'static str,
    set: &'static str,
    view: &'static str,
    wt: &'static str,
    wset: &'static str,
    schema: &'static str,
}

const ALICE_OWN: Own = Own {
    items: "alice.items",
    pairs: "alice.pairs",
    set: "stack",
    view: "alice.items_stack",
    wt: "alice.wt",
    wset: "wset",
    schema: "alice",
};

/// The superuser's own tables (a superuser does not run jobs on other roles' tables, 0.3.1).
const SU_OWN: Own = Own {
    items: "public.su_items",
    pairs: "public.su_pairs",
    set: "su_stack",
    view: "public.su_items_su_stack",
    wt: "public.su_wt",
    wset: "su_wset",
    schema: "public",
};

/// What the owner of model sets does in round `r` (`tag`: who and the round), on a model set of
/// its own making and on its served one: every public function and procedure, the served query,
/// the status view, the primitives and aggregates, writes of every kind to the sources (the
/// freshness triggers), and a DROP TABLE of a served source (the event trigger). Every type,
/// function and operator the statements name is schema-qualified: under the hostile path only the
/// extension's own code could reach a look-alike.
fn owner_steps(o: &Own, tag: &str, r: usize) -> Vec<(String, Want)> {
    let id = 3000 + 10 * r as i32;
    let tmp = format!("tmp_{tag}");
    let dt = format!("{}.dt_{tag}", o.schema);
    let (items, pairs, set, view, wt, wset) = (o.items, o.pairs, o.set, o.view, o.wt, o.wset);
    let mut s: Vec<String> = vec![
        format!("SELECT embedstack.create_model_set('{tmp}', '{items}', 'id', '{{m1,m2}}', combined_column => '{tmp}_c')"),
        format!("SELECT embedstack.fit('{tmp}', '{pairs}', 'a', 'b', 'y', nonnegative => true)"),
        format!("CALL embedstack.materialize('{tmp}')"),
        format!("SELECT embedstack.drop_model_set('{tmp}')"),
        format!("SELECT embedstack.fit('{set}', '{pairs}', 'a', 'b', 'y', ridge => {r}.5, nonnegative => true)"),
        format!("SELECT * FROM embedstack.evaluate('{set}', '{pairs}', 'a', 'b', 'y')"),
        format!("SELECT embedstack.pair_statistics('{set}', '{pairs}', 'a', 'b', 'y')"),
        format!("CALL embedstack.materialize('{set}')"),
        format!("CALL embedstack.refit('{set}', '{pairs}', 'a', 'b', 'y', cutover => 'never')"),
        format!("CALL embedstack.refit('{set}', '{pairs}', 'a', 'b', 'y', nonnegative => true, cutover => 'always')"),
        format!("CALL embedstack.refit('{set}', '{pairs}', 'a', 'b', 'y', ridge => {r}, nonnegative => true)"),
        format!("CALL embedstack.refresh('{set}')"),
        format!("CALL embedstack.rollback('{set}')"),
        format!("CALL embedstack.rollback('{set}')"),
        format!("SELECT embedstack.release('{set}')"),
        format!("CALL embedstack.materialize('{wset}', batch_size => 7)"),
        format!("SELECT embedstack.query_vector('{set}', 7)"),
        format!("SELECT embedstack.query_vector('{set}', '7')"),
        format!("SELECT * FROM embedstack.explain('{set}', 7, 7)"),
        format!("SELECT * FROM embedstack.explain('{set}', '7', '7')"),
        format!("SELECT embedstack.score('{set}', 7, 7)"),
        format!("SELECT embedstack.score('{set}', '7', '7')"),
        format!("SELECT * FROM embedstack.evaluate('{set}', '{pairs}', 'a', 'b', 'y', ablation => true)"),
        format!("SELECT * FROM embedstack.check('{set}', '{pairs}', 'a', 'b', 'y')"),
        format!("SELECT * FROM embedstack.check('{wset}')"),
        format!("SELECT embedstack.query_vector('{set}', ARRAY['[1,0,0]'::public.vector, '[0,1,0,1]'::public.vector])"),
        format!(
            "SELECT v.id FROM {view} v
              ORDER BY v.{set}_combined OPERATOR(public.<#>) embedstack.query_vector('{set}', 7) LIMIT 5"
        ),
        "SELECT * FROM embedstack.status".into(),
        "SELECT * FROM embedstack.model_sets".into(),
        "SELECT * FROM embedstack.fits".into(),
        "SELECT * FROM embedstack.jobs".into(),
        "SELECT * FROM embedstack.generations".into(),
    ];
    s.extend(common_reads());
    s.extend([
        format!("INSERT INTO {items} (id, tenant, m1, m2) VALUES ({id}, 'n', '[1,2,3]', '{{1,2,3,4}}')"),
        format!("UPDATE {items} SET m1 = '[3,2,1]' WHERE id OPERATOR(pg_catalog.=) {id}"),
        format!("UPDATE {items} SET tenant = 'm' WHERE id OPERATOR(pg_catalog.=) {id}"),
        format!("DELETE FROM {items} WHERE id OPERATOR(pg_catalog.=) {id}"),
        format!("UPDATE {items} SET m2 = '{{1,{r},1,{r}}}' WHERE id OPERATOR(pg_catalog.=) 11"),
        // The writes above were recorded for the retained generation (the one the rollbacks left
        // unserved): a materialise of its fit reuses it, bringing it up to date from its
        // pending-keys table in committed batches (_mat_prepare, _pending_batch, _drop_pending).
        format!(
            "DO $$ DECLARE f pg_catalog.int8; BEGIN
                 SELECT m.previous_fit INTO f FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) '{set}';
                 CALL embedstack.materialize('{set}', fit_id => f);
             END $$"
        ),
        format!(
            "COPY {wt} (id, m1, m2) FROM STDIN\n\\data:{id}\t[1,2,3]\t{{1,2}}\n{}\t[3,2,1]\t{{2,1}}\n",
            id + 5
        ),
    ]);
    s.extend(wt_writes(wt, id + 1));
    s.extend([
        format!(
            "CREATE TABLE {dt} (id int PRIMARY KEY, m1 public.vector(3));
             INSERT INTO {dt} VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[1,1,0]'), (4, '[0,1,1]');
             CREATE TABLE {dt}_p (a int, b int, y double precision);
             INSERT INTO {dt}_p VALUES (1, 2, 0.1), (2, 3, 0.7), (3, 4, 0.6), (1, 3, 0.7), (1, 4, 0.1);
             SELECT embedstack.create_model_set('dt_{tag}', '{dt}', 'id', '{{m1}}')"
        ),
        format!("SELECT embedstack.fit('dt_{tag}', '{dt}_p', 'a', 'b', 'y')"),
        format!("CALL embedstack.materialize('dt_{tag}')"),
        format!("DROP TABLE {dt}"),
    ]);
    // A partitioned source (0.4.0): the event trigger on partitions created, attached, detached
    // and dropped, and the partitions' own freshness triggers (BEFORE TRUNCATE too).
    let pt = format!("{}.pt_{tag}", o.schema);
    s.extend([
        format!(
            "CREATE TABLE {pt} (id int PRIMARY KEY, m1 public.vector(3)) PARTITION BY RANGE (id);
             CREATE TABLE {pt}_1 PARTITION OF {pt} FOR VALUES FROM (1) TO (3);
             CREATE TABLE {pt}_2 PARTITION OF {pt} FOR VALUES FROM (3) TO (10);
             INSERT INTO {pt} VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[1,1,0]'), (4, '[0,1,1]'), (5, '[1,0,1]');
             SELECT embedstack.create_model_set('pt_{tag}', '{pt}', 'id', '{{m1}}')"
        ),
        format!("SELECT embedstack.fit('pt_{tag}', '{dt}_p', 'a', 'b', 'y')"),
        format!("CALL embedstack.materialize('pt_{tag}')"),
        format!("CREATE TABLE {pt}_3 PARTITION OF {pt} FOR VALUES FROM (10) TO (20); INSERT INTO {pt}_3 VALUES (11, '[1,2,3]')"),
        format!(
            "CREATE TABLE {pt}_4 (id int NOT NULL, m1 public.vector(3)); INSERT INTO {pt}_4 VALUES (21, '[3,2,1]');
             ALTER TABLE {pt} ATTACH PARTITION {pt}_4 FOR VALUES FROM (20) TO (30)"
        ),
        format!("UPDATE {pt}_4 SET m1 = '[1,1,1]'"),
        format!("ALTER TABLE {pt} DETACH PARTITION {pt}_3"),
        format!("TRUNCATE {pt}_1"),
        format!("DROP TABLE {pt}_4"),
    ]);
    s.into_iter().map(|x| (x, Want::Ok)).collect()
}

/// What the superuser does on alice's model set: reads, a fit and rollbacks work; the jobs that
/// write her generation tables are refused (42501: since 0.3.1 a superuser does not run the jobs
/// of another role's tables, whose triggers and index expressions would run as the superuser).
fn superuser_on_alice_steps(r: usize) -> Vec<(String, Want)> {
    let mut s: Vec<(String, Want)> = [
        format!("SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y', ridge => {r}.25, nonnegative => true)"),
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y')".into(),
        "SELECT embedstack.pair_statistics('stack', 'alice.pairs', 'a', 'b', 'y')".into(),
        "SELECT embedstack.query_vector('stack', 7)".into(),
        "SELECT * FROM embedstack.explain('stack', 7, 8)".into(),
        "SELECT embedstack.score('stack', 7, 8)".into(),
        "SELECT v.id FROM alice.items_stack v
          ORDER BY v.stack_combined OPERATOR(public.<#>) embedstack.query_vector('stack', 7) LIMIT 5"
            .into(),
        "CALL embedstack.rollback('stack')".into(),
        "CALL embedstack.rollback('stack')".into(),
        "SELECT embedstack.release('stack')".into(),
        // alice's partitioned source (owner_steps): writes and partition DDL by the superuser
        // apply the rows as alice (restricted), never as the superuser.
        format!("INSERT INTO alice.pt_a{r}_2 VALUES (6, '[1,1,1]')"),
        format!("TRUNCATE alice.pt_a{r}_2"),
        format!("INSERT INTO alice.pt_a{r} VALUES (7, '[1,2,1]')"),
        format!("ALTER TABLE alice.pt_a{r} DETACH PARTITION alice.pt_a{r}_2"),
    ]
    .into_iter()
    .map(|x| (x, Want::Ok))
    .collect();
    // A partition the superuser would own: refused (the triggers run as the source's owner).
    s.push((
        format!("CREATE TABLE alice.pt_a{r}_su PARTITION OF alice.pt_a{r} FOR VALUES FROM (30) TO (40)"),
        Want::Code("0A000"),
    ));
    s.extend(
        [
            "CALL embedstack.materialize('stack')",
            "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', cutover => 'always')",
            "CALL embedstack.refresh('stack')",
        ]
        .iter()
        .map(|x| (x.to_string(), Want::Code("42501"))),
    );
    s
}

/// Reads any role may do: the primitives and aggregates (the caller's own types all qualified).
fn common_reads() -> Vec<String> {
    vec![
        "SELECT embedstack.cosine('[1,2,3]'::public.vector, '[1,2,4]'::public.vector),
                embedstack.cosine('{1,2}'::real[], '{2,1}'::real[]),
                embedstack.cosine('{1,2}'::double precision[], '{2,1}'::double precision[]),
                embedstack.l2_normalize('[3,4]'::public.vector), embedstack.l2_normalize('{3,4}'::real[]),
                embedstack.l2_normalize('{3,4}'::double precision[]),
                embedstack.cosine_features(ARRAY['[1,0]'::public.vector], ARRAY['[1,1]'::public.vector]),
                embedstack.block_multipliers('{2,1}'::double precision[], 'symmetric', 0.05)"
            .into(),
        "SELECT embedstack.solve(s), embedstack.merge(s, s), embedstack.prediction_mse(s, '{1,1}'::double precision[], 0)
           FROM (SELECT embedstack.regression_stats(ARRAY[x, x OPERATOR(pg_catalog.*) x], x) AS s
                   FROM (SELECT g::double precision AS x FROM pg_catalog.generate_series(1, 50) g) v) st"
            .into(),
        "SELECT embedstack.fit_weights(ARRAY[x, x OPERATOR(pg_catalog.*) x], x),
                embedstack.regression_stats(ARRAY[x], x, 1::double precision)
           FROM (SELECT g::double precision AS x FROM pg_catalog.generate_series(1, 50) g) v"
            .into(),
        "SELECT cv.* FROM (SELECT embedstack.regression_stats(ARRAY[x, x OPERATOR(pg_catalog.*) x], x) AS s
                             FROM (SELECT g::double precision AS x FROM pg_catalog.generate_series(1, 50) g) v) st,
                LATERAL embedstack.cross_validate(ARRAY[st.s, st.s, st.s], '{0,1}'::double precision[]) cv"
            .into(),
    ]
}

/// Writes of every kind to `alice.wt` (the writer's table: INSERT, UPDATE, DELETE, TRUNCATE),
/// leaving rows in it.
fn wt_writes(wt: &str, id: i32) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO {wt} (id, m1, m2) VALUES ({id}, '[1,2,3]', '{{1,2}}'), ({}, '[3,2,1]', '{{2,1}}')",
            id + 1
        ),
        format!("UPDATE {wt} SET m1 = '[0.5,0.5,0.5]'"),
        format!("UPDATE {wt} SET m2 = '{{1,1}}'"),
        format!("DELETE FROM {wt}"),
        format!("INSERT INTO {wt} (id, m1, m2) VALUES ({id}, '[1,2,3]', '{{1,2}}')"),
        format!("TRUNCATE {wt}"),
        format!(
            "INSERT INTO {wt} (id, m1, m2) VALUES {}",
            (1..=30)
                .map(|i| format!("({i}, '[{i},1,{}]', '{{1,{i}}}')", 31 - i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ]
}

/// A reader of alice's table (SELECT on it and the pairs): the reading functions and the view
/// work; everything that would change the model set is 42501.
fn reader_steps() -> Vec<(String, Want)> {
    let mut s: Vec<(String, Want)> = [
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.pair_statistics('stack', 'alice.pairs', 'a', 'b', 'y')",
        "SELECT embedstack.query_vector('stack', 7)",
        "SELECT embedstack.query_vector('stack', ARRAY['[1,0,0]'::public.vector, '[0,1,0,1]'::public.vector])",
        "SELECT * FROM embedstack.explain('stack', 7, 8)",
        "SELECT * FROM embedstack.explain('stack', '7', '8')",
        "SELECT embedstack.score('stack', 7, 8)",
        "SELECT * FROM embedstack.evaluate('stack', 'alice.pairs', 'a', 'b', 'y', ablation => true)",
        "SELECT v.id FROM alice.items_stack v
          ORDER BY v.stack_combined OPERATOR(public.<#>) embedstack.query_vector('stack', 7) LIMIT 5",
        "SELECT * FROM embedstack.status",
        "SELECT * FROM embedstack.model_sets",
        "SELECT * FROM embedstack.fits",
        "SELECT * FROM embedstack.jobs",
        "SELECT * FROM embedstack.generations",
    ]
    .iter()
    .map(|x| (x.to_string(), Want::Ok))
    .collect();
    s.extend(common_reads().into_iter().map(|x| (x, Want::Ok)));
    s.extend(
        [
            "SELECT embedstack.fit('stack', 'alice.pairs', 'a', 'b', 'y')",
            "CALL embedstack.materialize('stack')",
            "CALL embedstack.refit('stack', 'alice.pairs', 'a', 'b', 'y', cutover => 'always')",
            "CALL embedstack.refresh('stack')",
            "CALL embedstack.rollback('stack')",
            "SELECT embedstack.drop_model_set('stack')",
            "SELECT embedstack.create_model_set('r_set', 'alice.items', 'id', '{m1,m2}')",
            "SELECT embedstack._w_delete_model_set('stack')",
            "DELETE FROM alice.items_stack",
        ]
        .iter()
        .map(|x| (x.to_string(), Want::Code("42501"))),
    );
    s
}

/// A writer of alice's tables without SELECT: its writes are served (the freshness triggers run
/// as the owner); the served vectors and the catalog's functions are 42501 for it.
fn writer_steps(r: usize) -> Vec<(String, Want)> {
    let id = 4000 + 10 * r as i32;
    let mut s: Vec<(String, Want)> = vec![(
        format!("INSERT INTO alice.items (id, tenant, m1, m2) VALUES ({id}, 'w', '[1,2,3]', '{{1,2,3,4}}')"),
        Want::Ok,
    )];
    s.push((
        format!(
            "COPY alice.wt (id, m1, m2) FROM STDIN\n\\data:{id}\t[1,2,3]\t{{1,2}}\n{}\t[3,2,1]\t{{2,1}}\n",
            id + 5
        ),
        Want::Ok,
    ));
    s.extend(wt_writes("alice.wt", id + 1).into_iter().map(|x| (x, Want::Ok)));
    s.extend(common_reads().into_iter().map(|x| (x, Want::Ok)));
    s.extend(
        [
            "SELECT * FROM alice.items_stack",
            "SELECT embedstack.query_vector('stack', 7)",
            "SELECT * FROM embedstack.explain('stack', 7, 8)",
            "SELECT embedstack.score('stack', 7, 8)",
            "CALL embedstack.materialize('wset')",
        ]
        .iter()
        .map(|x| (x.to_string(), Want::Code("42501"))),
    );
    s
}

/// The shadow-object test, the general guard of invariant 4 (no name resolved through the
/// caller's search_path): mallory creates, in her schema and in public, look-alikes of the
/// built-in types (domains whose CHECK records), of hundreds of pg_catalog functions (same
/// signatures), of the aggregates, and operators for every argument pair the real ones resolve
/// for, plus implicit casts from her own composite and enum types; each records
/// `(current_user, …)` into `mallory.hits` (and a WARNING, which survives a rollback) and tries
/// to make her superuser, then behaves like the real thing.
///
/// * Self-check (so the test cannot pass vacuously): under `mallory, public, pg_catalog` every
///   look-alike is reached by its natural call; `SELECT 1::float8 >= 0` reaches two; an unpinned
///   copy of a real function of the extension (`_model_set`) reaches some.
/// * Victims, each with `search_path = mallory, public, pg_catalog`, then with the default: alice
///   (the owner), a reader, a writer without SELECT, and the superuser (as pg_cron would; on its
///   own tables, and on alice's: reads, fit and rollback, its jobs there being refused with 42501)
///   run every public function and procedure, the served query, the status view, the primitives
///   and aggregates, writes of every kind to the sources (freshness triggers), a DROP TABLE of a
///   served source (the event trigger) — each with its expected outcome — and then every routine
///   of the schema they may execute (from pg_proc: new entry points are covered automatically)
///   with meaningful arguments on a model set of their own (reader, writer: alice's).
/// * mallory calls every routine PUBLIC may execute with NULLs, alice's model set, ids and
///   catalog rows, other roles' relations and forged OIDs and ids, and her own types; also on her
///   own model set.
///
/// Pass: no look-alike ran as anyone but mallory (recorded rows and WARNINGs; offending ones
/// printed), the victims' statements had their expected outcomes, mallory's calls changed nothing
/// of alice's, nobody gained anything.
#[test]
fn shadow_objects_never_run_as_anyone_but_their_creator() {
    let t0 = Instant::now();
    let mut w = World::new("shadow", &["alice", "mallory", "reader", "writer"], &[]);
    w.common_setup(&["alice", "mallory"]);
    let mallory = w.r("mallory");
    let mut a = w.connect("alice");
    ok(
        &mut a,
        &w.sql(
            "CREATE TABLE alice.wt (id int PRIMARY KEY, m1 public.vector(3), m2 real[]);
             INSERT INTO alice.wt SELECT i, ARRAY[i, 1, 31 - i]::real[]::public.vector, ARRAY[1, i]::real[]
               FROM generate_series(1, 30) i;
             CREATE TABLE alice.wtp AS SELECT a.id AS a, b.id AS b, (a.id % 7 + b.id % 3)::float8 AS y
               FROM alice.wt a JOIN alice.wt b ON b.id IN (a.id + 1, a.id + 2);
             SELECT embedstack.create_model_set('wset', 'alice.wt', 'id', ARRAY['m1', 'm2']);
             SELECT embedstack.fit('wset', 'alice.wtp', 'a', 'b', 'y', nonnegative => true);
             GRANT USAGE ON SCHEMA alice TO @reader, @writer;
             GRANT SELECT ON alice.items, alice.pairs TO @reader;
             GRANT INSERT ON alice.items TO @writer;
             GRANT INSERT, UPDATE, DELETE, TRUNCATE ON alice.wt TO @writer;",
        ),
    );
    ok(&mut a, "CALL embedstack.materialize('wset')");
    drop(a);
    // The superuser's own tables, on which it runs jobs.
    load_items(&mut w.su, "public.su_items", "public.su_pairs", 1, 200, ("x", "y"));
    w.su_exec(
        "CREATE TABLE public.su_wt AS SELECT * FROM alice.wt; ALTER TABLE public.su_wt ADD PRIMARY KEY (id);
         CREATE TABLE public.su_wtp AS SELECT * FROM alice.wtp;
         SELECT embedstack.create_model_set('su_stack', 'public.su_items', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('su_stack', 'public.su_pairs', 'a', 'b', 'y', nonnegative => true);
         SELECT embedstack.create_model_set('su_wset', 'public.su_wt', 'id', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('su_wset', 'public.su_wtp', 'a', 'b', 'y', nonnegative => true);",
    );
    w.su_exec("CALL embedstack.materialize('su_stack')");
    w.su_exec("CALL embedstack.materialize('su_wset')");
    w.su_exec("GRANT CREATE ON SCHEMA public TO @mallory");
    let (mut m, m_notices) = w.connect_notices("mallory");
    small_set(&mut m, "mallory.mt", "mset", 30, true, "");
    install_lookalikes(&mut m, "mallory", "hits", &mallory, &["mallory", "public"]);
    let counts: Vec<(String, i64)> =
        w.su.query("SELECT kind, count(*) FROM mallory.lookalikes GROUP BY kind ORDER BY kind", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    eprintln!("shadow: look-alikes {counts:?} at {:.1}s", t0.elapsed().as_secs_f64());

    // Self-check.
    let hostile = "mallory, public, pg_catalog";
    ok(&mut m, &format!("SET search_path = {hostile}"));
    let missed = unreachable_lookalikes(&mut w.su, &mut m, &m_notices, "mallory", "true");
    assert!(
        missed.is_empty(),
        "look-alikes their natural call does not reach (the test would be vacuous):\n{}",
        missed.join("\n")
    );
    m_notices.lock().unwrap().clear();
    ok(&mut m, "SELECT 1::float8 >= 0");
    let got: BTreeSet<String> = hits_in(&m_notices).into_iter().map(|h| h.2).collect();
    for what in ["domain float8", "operator >=(pg_catalog.float8, pg_catalog.int4)"] {
        assert!(got.contains(what), "SELECT 1::float8 >= 0 under mallory's path reaches {what}: {got:?}");
    }
    let body: String = w
        .su
        .query_one("SELECT prosrc FROM pg_proc WHERE oid = 'embedstack._model_set(text)'::regprocedure", &[])
        .unwrap()
        .get(0);
    ok(
        &mut m,
        &format!(
            "CREATE FUNCTION mallory.unpinned_model_set(model_set pg_catalog.text) RETURNS embedstack.model_sets
             LANGUAGE plpgsql AS {}",
            q(&body)
        ),
    );
    m_notices.lock().unwrap().clear();
    ok(&mut m, "SELECT mallory.unpinned_model_set('mset')");
    assert!(
        !hits_in(&m_notices).is_empty(),
        "an unpinned copy of embedstack._model_set under mallory's path reaches no look-alike"
    );
    drop(m);
    eprintln!("shadow: self-check done at {:.1}s", t0.elapsed().as_secs_f64());

    // The victims.
    let mut bad_outcomes: Vec<String> = Vec::new();
    let mut seen: Vec<(String, String, String, String)> = Vec::new();
    for (round, path) in [(1usize, Some(hostile)), (2, None)] {
        for who in ["alice", "reader", "writer", "postgres"] {
            let user = if who == "postgres" { "postgres".to_string() } else { w.r(who) };
            let (mut c, notices) = connect_with_notices(&w.db, &user);
            if let Some(p) = path {
                ok(&mut c, &format!("SET search_path = {p}"));
            }
            let tag = format!("{}{round}", &who[..1]);
            let steps = match who {
                "alice" => owner_steps(&ALICE_OWN, &tag, round),
                "postgres" => {
                    let mut s = owner_steps(&SU_OWN, &tag, round);
                    s.extend(superuser_on_alice_steps(round));
                    s
                }
                "reader" => reader_steps(),
                _ => writer_steps(round),
            };
            bad_outcomes.extend(run_steps(&mut c, &format!("{who} (round {round})"), &steps));
            // Every routine the victim may execute, on a model set of its own (alice's for the
            // reader and the writer, who cannot change it).
            let cx = if who == "alice" || who == "postgres" {
                let sw = format!("sw_{tag}");
                let o = if who == "alice" { &ALICE_OWN } else { &SU_OWN };
                let mut owner =
                    if who == "alice" { w.connect("alice") } else { connect_as(&w.db, "postgres") };
                ok(
                    &mut owner,
                    &format!(
                        "SELECT embedstack.create_model_set('{sw}', '{}', 'id', '{{m1,m2}}', combined_column => '{sw}_c');
                         SELECT embedstack.fit('{sw}', '{}', 'a', 'b', 'y', nonnegative => true);",
                        o.items, o.pairs
                    ),
                );
                ok(&mut owner, &format!("CALL embedstack.materialize('{sw}')"));
                Ctx::of(&mut w.su, &sw, o.pairs, "alice.wt", None)
            } else {
                Ctx::of(&mut w.su, "stack", "alice.pairs", "alice.wt", None)
            };
            let rs = routines(&mut w.su, if who == "postgres" { None } else { Some(&user) });
            let n = sweep(&mut c, &rs, &[Policy::Real], &cx);
            seen.extend(hits_in(&notices));
            eprintln!(
                "shadow: {who}, round {round} ({}): {} steps, {n} routine calls, at {:.1}s",
                path.unwrap_or("default path"),
                steps.len(),
                t0.elapsed().as_secs_f64()
            );
        }
    }

    // Each owner's rounds reused a retained generation that had recorded keys (the DO block of
    // owner_steps): the path that applies a pending-keys table ran under the hostile path too.
    for set in [ALICE_OWN.set, SU_OWN.set] {
        let reused: i64 =
            w.su.query_one(
                "SELECT count(*) FROM embedstack.jobs WHERE model_set = $1 AND state = 'succeeded'
                    AND details ? 'reuse_synced' AND (details->>'catchup_applied')::bigint > 0",
                &[&set],
            )
            .unwrap()
            .get(0);
        assert!(reused >= 2, "{set}: {reused} materialisations reused a retained generation with recorded keys (one per round)");
    }

    // A look-alike that ran as the superuser made mallory superuser: take it back (and report
    // it), so that her calls below are those of an unprivileged role.
    let escalated = w.roles.take_powers_back(&mut w.su);

    // mallory calls everything PUBLIC may execute.
    let before = w.alice_state();
    let stack = Ctx::of(&mut w.su, "stack", "alice.pairs", "alice_priv.ledger", Some("mallory"));
    let own = Ctx::of(&mut w.su, "mset", "mallory.mt_p", "alice.items", Some("mallory"));
    let rs = routines(&mut w.su, Some("public"));
    assert!(rs.len() > 40, "{} routines executable by PUBLIC", rs.len());
    for path in [Some(hostile), None] {
        let (mut m, m_notices) = w.connect_notices("mallory");
        ok(&mut m, "SET statement_timeout = '30s'; SET lock_timeout = '5s'");
        if let Some(p) = path {
            ok(&mut m, &format!("SET search_path = {p}"));
        }
        let n = sweep(&mut m, &rs, &[Policy::Nulls, Policy::Real, Policy::Forged, Policy::OwnTypes], &stack)
            + sweep(&mut m, &rs, &[Policy::Real], &own);
        seen.extend(hits_in(&m_notices));
        eprintln!(
            "shadow: mallory ({}): {n} calls, at {:.1}s",
            path.unwrap_or("default path"),
            t0.elapsed().as_secs_f64()
        );
    }
    let after = w.alice_state();
    let escalated_by_mallory = w.roles.take_powers_back(&mut w.su);

    let recorded = foreign_hits(&mut w.su, "mallory", "hits", &mallory);
    let mut by_what: std::collections::BTreeMap<(String, String, String), (usize, String)> =
        Default::default();
    for (who, session, what, query) in seen.into_iter().filter(|h| h.0 != mallory) {
        by_what.entry((who, session, what)).or_insert((0, query)).0 += 1;
    }
    let warned: Vec<String> = by_what
        .into_iter()
        .map(|((who, session, what), (n, query))| {
            format!("{who} (session {session}): {what}, {n} times -- first in: {query}")
        })
        .collect();
    let mut failures = Vec::new();
    if !recorded.is_empty() || !warned.is_empty() {
        failures.push(format!(
            "mallory's look-alikes ran as other roles ({} recorded, {} distinct warnings):\n{}\n--- warnings:\n{}",
            recorded.len(),
            warned.len(),
            recorded.join("\n"),
            warned.join("\n")
        ));
    }
    if !escalated.is_empty() || !escalated_by_mallory.is_empty() {
        failures.push(format!(
            "roles gained powers: after the victims' rounds {escalated:?}, after mallory's calls {escalated_by_mallory:?}"
        ));
    }
    if !bad_outcomes.is_empty() {
        failures.push(format!("unexpected outcomes:\n{}", bad_outcomes.join("\n")));
    }
    if after != before {
        failures.push(format!("mallory's calls changed alice's state:\nbefore:\n{before}\nafter:\n{after}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    w.finish();
    eprintln!("shadow: {:.1}s", t0.elapsed().as_secs_f64());
}
