//! The resume cursor of a materialisation (F11 of the 0.3.0 security probe), against the real
//! project cluster: a run interrupted after some committed batches and resumed in a session with
//! other settings — DateStyle, IntervalStyle, TimeZone, extra_float_digits — must serve exactly
//! the source's rows, for keys whose text form those settings change (timestamp, timestamptz,
//! interval, float8), and for numeric, uuid and text with a non-C (ICU) collation. (lc_monetary
//! is pinned as well, but this machine has no locale but C to vary it with.)
//! In 0.3.0 the cursor was the last key as text in the session's format: a timestamp cursor
//! resumed under another DateStyle skipped rows, and a float8 cursor under
//! `extra_float_digits = -12` printed every key alike, so the job never advanced.
//!
//! The interruption is deterministic: a user trigger on the model set's generation tables (added
//! by an event trigger as the job creates them) raises at the 25th row inserted, inside the third
//! batch of 10; batches one and two are committed, and the cursor holds the 20th key.

use embedstack_client_tests::sql::{expect_code, q};
use embedstack_client_tests::{connect, fresh_db};
use postgres::Client;

/// The settings of the interrupted run and of the resume: every type's text form differs between
/// them (or, for float8, the second prints distinct keys alike).
const FIRST: &str =
    "SET DateStyle = 'SQL, MDY'; SET IntervalStyle = 'sql_standard'; SET TimeZone = 'America/New_York';
                     SET extra_float_digits = 3";
const SECOND: &str =
    "SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'; SET TimeZone = 'Asia/Kolkata';
                      SET extra_float_digits = -12";

/// One key type: its name, the SQL of its 40 keys from `i` (1..=40, ascending in key order).
struct Key {
    name: &'static str,
    ty: &'static str,
    of_i: &'static str,
}

const KEYS: &[Key] = &[
    Key { name: "ts", ty: "timestamp", of_i: "timestamp '2000-01-12' + i * interval '1 month'" },
    Key {
        name: "tstz",
        ty: "timestamptz",
        of_i: "timestamptz '2000-01-12 23:30:00+00' + i * interval '7 hours'",
    },
    Key { name: "iv", ty: "interval", of_i: "i * interval '1 day 3 hours'" },
    Key { name: "f8", ty: "float8", of_i: "1 + i * 1e-9" },
    Key { name: "num", ty: "numeric", of_i: "1.5 + i * 0.125" },
    Key { name: "uid", ty: "uuid", of_i: "md5(i::text)::uuid" },
    Key {
        name: "txt",
        ty: "text COLLATE \"und-x-icu\"",
        of_i: "chr(64 + (i % 26) + 1) || lpad(i::text, 3, '0')",
    },
];

/// Does the server have ICU (the text key's collation)?
fn has_icu(c: &mut Client) -> bool {
    c.query_one("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')", &[])
        .unwrap()
        .get(0)
}

fn setup(c: &mut Client, k: &Key) {
    let t = format!("src_{}", k.name);
    c.batch_execute(&format!(
        "CREATE TABLE {t} (k {ty} PRIMARY KEY, m1 vector(2), m2 real[]);
         INSERT INTO {t} SELECT {of_i}, ('[' || cos(i) || ',' || sin(i) || ']')::vector, ARRAY[cos(2 * i), sin(3 * i)]::real[]
           FROM generate_series(1, 40) i;
         CREATE TABLE pairs_{n} AS SELECT a.k AS a, b.k AS b,
                1 + 2 * embedstack.cosine(a.m1, b.m1) + embedstack.cosine(a.m2, b.m2) AS y
           FROM {t} a JOIN {t} b ON a.k < b.k;
         SELECT embedstack.create_model_set('set_{n}', '{t}', 'k', ARRAY['m1', 'm2']);
         SELECT embedstack.fit('set_{n}', 'pairs_{n}', 'a', 'b', 'y');",
        ty = k.ty,
        of_i = k.of_i,
        n = k.name,
    ))
    .unwrap();
}

/// The 25th row inserted into a generation table of any model set fails (once per sequence).
fn install_interruption(c: &mut Client) {
    c.batch_execute(
        "CREATE SEQUENCE boom_seq;
         CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('public.boom_seq') = 25 THEN
                 RAISE EXCEPTION 'interrupted on purpose' USING ERRCODE = 'P0001';
             END IF;
             RETURN NEW;
         END $$;
         CREATE FUNCTION boom_on_new_generations() RETURNS event_trigger LANGUAGE plpgsql
         SET search_path = pg_catalog, pg_temp AS $$
         DECLARE
             r record;
         BEGIN
             FOR r IN SELECT c.oid::regclass AS rel FROM pg_event_trigger_ddl_commands() d
                        JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'r'
                       WHERE d.command_tag = 'CREATE TABLE' AND c.relname ~ '^src_.*_g[0-9]+$' LOOP
                 EXECUTE format('CREATE TRIGGER boom BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.boom()', r.rel);
             END LOOP;
         END $$;
         CREATE EVENT TRIGGER boom_on_new_generations ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
           EXECUTE FUNCTION boom_on_new_generations();",
    )
    .unwrap();
}

/// Are the served keys exactly the source's, each once (compared in the key's own type)?
fn served_exactly(c: &mut Client, k: &Key) -> (i64, i64, i64) {
    let row = c
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM src_{n}), (SELECT count(*) FROM src_{n}_set_{n}),
                        (SELECT count(*) FROM src_{n} s FULL JOIN src_{n}_set_{n} v ON v.k = s.k
                          WHERE s.k IS NULL OR v.k IS NULL)",
                n = k.name
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// For every key type: interrupted in the third batch under `FIRST`, resumed under `SECOND`
/// (bounded by a statement timeout: 0.3.0 never finished the float8 case), the served view holds
/// each source row exactly once, the resumed job continued the same generation from the 20th key
/// (20 rows written before), and the cursor it left is the greatest key in a fixed format.
#[test]
fn a_resumed_materialisation_serves_every_row_whatever_the_session_settings() {
    let mut su = fresh_db("resume_cursor");
    let icu = has_icu(&mut su);
    install_interruption(&mut su);
    for k in KEYS.iter().filter(|k| icu || k.name != "txt") {
        setup(&mut su, k);
        su.batch_execute("ALTER SEQUENCE boom_seq RESTART").unwrap();
        let set = format!("set_{}", k.name);

        let mut first = connect("resume_cursor", "postgres");
        first.batch_execute(FIRST).unwrap();
        let e = expect_code(
            &mut first,
            &format!("CALL embedstack.materialize({}, batch_size => 10)", q(&set)),
            "P0001",
        );
        assert!(
            e.to_string().contains("interrupted on purpose")
                || format!("{e:?}").contains("interrupted on purpose")
        );
        let (rows, cursor): (i64, Option<String>) = {
            let r = su
                .query_one(
                    "SELECT g.rows_written, g.cursor_key FROM embedstack.generations g
                      WHERE g.model_set = $1 AND g.state = 'building'",
                    &[&set],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(rows, 20, "{}: two batches committed before the interruption", k.name);
        assert!(cursor.is_some(), "{}: a cursor was recorded", k.name);

        let mut second = connect("resume_cursor", "postgres");
        second.batch_execute(SECOND).unwrap();
        second.batch_execute("SET statement_timeout = '60s'").unwrap();
        second
            .batch_execute(&format!("CALL embedstack.materialize({}, batch_size => 10)", q(&set)))
            .unwrap_or_else(|e| panic!("{}: the resumed run: {e:?}", k.name));
        let resumed: Option<i64> = su
            .query_one(
                "SELECT (j.details->>'resumed_rows')::bigint FROM embedstack.jobs j WHERE j.model_set = $1
                  ORDER BY j.id DESC LIMIT 1",
                &[&set],
            )
            .unwrap()
            .get(0);
        assert_eq!(resumed, Some(20), "{}: the second call continued after the 20 rows written", k.name);
        let generations: i64 = su
            .query_one("SELECT count(*) FROM embedstack.generations WHERE model_set = $1", &[&set])
            .unwrap()
            .get(0);
        assert_eq!(generations, 1, "{}: the same generation was continued", k.name);
        assert_eq!(
            served_exactly(&mut su, k),
            (40, 40, 0),
            "{}: source rows, served rows, unmatched",
            k.name
        );

        // The cursor left behind is the greatest key, read back in the key's type under the
        // fixed settings it is written with (whatever the writing session's were).
        let exact: bool = {
            let mut fixed = connect("resume_cursor", "postgres");
            fixed
                .batch_execute(
                    "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC';
                     SET extra_float_digits = 3",
                )
                .unwrap();
            fixed
                .query_one(
                    &format!(
                        "SELECT (SELECT g.cursor_key FROM embedstack.generations g WHERE g.model_set = $1)::{ty}
                                = (SELECT s.k FROM src_{n} s ORDER BY s.k DESC LIMIT 1)",
                        ty = k.ty.split(' ').next().unwrap(),
                        n = k.name
                    ),
                    &[&set],
                )
                .unwrap()
                .get(0)
        };
        assert!(exact, "{}: the cursor is the greatest key, in the fixed format", k.name);
    }
}
