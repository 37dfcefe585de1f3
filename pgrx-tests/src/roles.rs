//! Roles of a security test on the shared project cluster, and what shows that nobody gained
//! anything: no test role became superuser (or got any other cluster-wide attribute or
//! membership), the server never restarted.
//!
//! Roles are cluster-wide and the client tests run two at a time, so each test gets roles of its
//! own, `es_sec_<tag>_<base>` (`base`: alice, bob, …), created fresh (a leftover of an earlier run
//! is dropped first) and dropped, with the test's databases, when the [`TestRoles`] value is
//! dropped — also when the test panics. SQL templates name them `@<base>` ([`TestRoles::sql`]);
//! schemas are per database and keep the plain names (`alice`, `bob`, …).

use std::sync::{Arc, Mutex};

use postgres::{Client, NoTls};

use crate::{admin, config, port};

pub struct TestRoles {
    prefix: String,
    bases: Vec<String>,
    dbs: Vec<String>,
}

impl TestRoles {
    /// Drops the databases `dbs` (full names) and any leftover role of this test, then creates the
    /// roles `es_sec_<tag>_<base>` with LOGIN and nothing else.
    pub fn create(tag: &str, bases: &[&str], dbs: &[&str]) -> TestRoles {
        let roles = TestRoles {
            prefix: format!("es_sec_{tag}_"),
            bases: bases.iter().map(|b| b.to_string()).collect(),
            dbs: dbs.iter().map(|d| d.to_string()).collect(),
        };
        let mut a = admin();
        for db in &roles.dbs {
            a.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        }
        for b in bases {
            let n = roles.name(b);
            a.batch_execute(&format!("DROP ROLE IF EXISTS {n}"))
                .unwrap_or_else(|e| panic!("a leftover role {n} of an earlier run cannot be dropped: {e:?}"));
            a.batch_execute(&format!(
                "CREATE ROLE {n} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ))
            .unwrap();
        }
        roles
    }

    /// The role name of `base`.
    pub fn name(&self, base: &str) -> String {
        assert!(self.bases.iter().any(|b| b == base), "no role {base} in this test");
        format!("{}{base}", self.prefix)
    }

    /// `template` with every `@<base>` replaced by the role name (longest bases first).
    pub fn sql(&self, template: &str) -> String {
        let mut bases = self.bases.clone();
        bases.sort_by_key(|b| std::cmp::Reverse(b.len()));
        let mut s = template.to_string();
        for b in bases {
            s = s.replace(&format!("@{b}"), &format!("{}{b}", self.prefix));
        }
        s
    }

    /// All role names.
    pub fn all(&self) -> Vec<String> {
        self.bases.iter().map(|b| format!("{}{b}", self.prefix)).collect()
    }

    /// The roles of the test that gained a cluster-wide power (see [`TestRoles::assert_powerless`]),
    /// with the powers; each is taken away again at once, so that a test can go on safely and
    /// report it at the end.
    pub fn take_powers_back(&self, c: &mut Client) -> Vec<String> {
        let names = self.all();
        let bad: Vec<(String, String)> = c
            .query(
                "SELECT r.rolname::text, concat_ws(',', CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                        CASE WHEN r.rolreplication THEN 'REPLICATION' END, CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END)
                   FROM pg_catalog.pg_roles r
                  WHERE r.rolname::text OPERATOR(pg_catalog.=) ANY ($1)
                    AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)",
                &[&names],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (n, _) in &bad {
            c.batch_execute(&format!(
                "ALTER ROLE {n} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS"
            ))
            .unwrap();
        }
        bad.into_iter().map(|(n, p)| format!("{n}: {p}")).collect()
    }

    /// No role of the test has any cluster-wide power: not superuser, no CREATEROLE, CREATEDB,
    /// REPLICATION or BYPASSRLS, and no membership in any role.
    pub fn assert_powerless(&self, c: &mut Client) {
        let names = self.all();
        let bad: Vec<String> = c
            .query(
                "SELECT r.rolname::text || ':' || concat_ws(',', CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                        CASE WHEN r.rolreplication THEN 'REPLICATION' END, CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                        (SELECT string_agg('member of ' || g.rolname::text, ',') FROM pg_catalog.pg_auth_members m
                           JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid))
                   FROM pg_catalog.pg_roles r
                  WHERE r.rolname::text OPERATOR(pg_catalog.=) ANY ($1)
                    AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
                         OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid))
                  ORDER BY 1",
                &[&names],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(bad.is_empty(), "test roles gained powers: {bad:?}");
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname::text OPERATOR(pg_catalog.=) ANY ($1)",
                &[&names],
            )
            .unwrap()
            .get(0);
        assert_eq!(n as usize, names.len(), "the test roles exist");
    }
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        if let Ok(mut a) =
            Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", port()), NoTls)
        {
            // A role a failed test made superuser must not stay so, even when kept.
            for n in self.all() {
                let _ = a.batch_execute(&format!(
                    "ALTER ROLE {n} NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS"
                ));
            }
            if std::env::var("ES_KEEP_SECURITY_DBS").is_ok() {
                return;
            }
            for db in &self.dbs {
                let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
            for n in self.all() {
                let _ = a.batch_execute(&format!("DROP ROLE IF EXISTS {n}"));
            }
        }
    }
}

/// When the server started: unchanged across a test iff the server never restarted (a crashed
/// backend makes the postmaster reinitialise, which pg_postmaster_start_time does not show, so
/// [`backends_crashed`] is checked too).
pub fn postmaster_start(c: &mut Client) -> String {
    c.query_one("SELECT pg_catalog.pg_postmaster_start_time()::pg_catalog.text", &[]).unwrap().get(0)
}

/// A session that was connected before a crash-and-reinitialise of the server is gone: `true`
/// when `c` no longer answers.
pub fn backends_crashed(c: &mut Client) -> bool {
    c.simple_query("SELECT 1").is_err()
}

/// What a session received: `(severity, message, detail)` of every notice and warning.
pub type Notices = Arc<Mutex<Vec<(String, String, String)>>>;

/// A session on database `db` as `user` that keeps every NOTICE and WARNING it receives.
pub fn connect_with_notices(db: &str, user: &str) -> (Client, Notices) {
    let notices: Notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let c = config(db, user)
        .notice_callback(move |n| {
            sink.lock().unwrap().push((
                n.severity().to_string(),
                n.message().to_string(),
                n.detail().unwrap_or_default().to_string(),
            ))
        })
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {db} as {user}: {e}"));
    (c, notices)
}

/// Rows of a statement run with the simple protocol (no type lookups by the client), as text.
pub fn simple_rows(c: &mut Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
    let mut out = Vec::new();
    for m in c.simple_query(sql)? {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    Ok(out)
}
