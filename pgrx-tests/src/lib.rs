//! Helpers for the client-side tests: they talk to the project cluster started by
//! `make cluster` (scripts/cluster.sh), with the extension installed by `make install`.
//!
//! Each test gets a database of its own, so tests can run concurrently and leave nothing
//! behind for each other.
//!
//! This file: connections and databases. The modules, by concern:
//! * [`reference`]: the independent reference maths (cosines, blocks, multipliers, combined
//!   vectors, scores, OLS); [`stats`]: Pearson and Spearman;
//! * [`data`]: the deterministic generator, literals and COPY text, loading vectors and pairs;
//! * [`catalog`]: what the extension records and serves, read back;
//! * [`sql`]: SQLSTATE checks, quoting, index names; [`check`]: tolerance checks;
//!   [`wait`]: polling other sessions;
//! * [`served`] (0.3.0): the served view, generation tables, freshness triggers and the source's
//!   untouched state, with the documented names computed independently; [`gate`]: stopping a
//!   materialisation inside a chosen batch;
//! * [`fixtures`]: the WordSim-353 fixture; [`cluster`]: a throw-away cluster of a test's own.

use std::path::PathBuf;
use std::process::Command;

use postgres::{Client, Config, NoTls};

pub mod catalog;
pub mod check;
pub mod cluster;
pub mod data;
pub mod exact;
pub mod fixtures;
pub mod gate;
pub mod reference;
pub mod roles;
pub mod served;
pub mod sql;
pub mod stats;
pub mod wait;

/// The port of the project cluster: `$ES_PGPORT`, else 54815 (as in scripts/env.sh).
pub fn port() -> String {
    std::env::var("ES_PGPORT").unwrap_or_else(|_| "54815".into())
}

fn conn_string(db: &str, user: &str) -> String {
    format!("host=127.0.0.1 port={} user={user} dbname={db}", port())
}

/// Connection settings of database `db` as `user` on the project cluster.
pub fn config(db: &str, user: &str) -> Config {
    conn_string(db, user).parse().unwrap_or_else(|e| panic!("connection settings of {db} as {user}: {e}"))
}

/// A session on database `db` as `user`.
pub fn connect_as(db: &str, user: &str) -> Client {
    Client::connect(&conn_string(db, user), NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {db} as {user}: {e}"))
}

/// Another session on the database `fresh_db(name)` made (`es_<name>`), as `user`.
pub fn connect(name: &str, user: &str) -> Client {
    connect_as(&format!("es_{name}"), user)
}

/// Connects to the maintenance database.
pub fn admin() -> Client {
    Client::connect(&conn_string("postgres", "postgres"), NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the project cluster ({e}); run `make cluster` first"))
}

/// A new empty database `db` (dropped first if it exists), without any extension.
pub fn create_db(db: &str) -> Client {
    let mut a = admin();
    // Two statements: a multi-statement string would run as one implicit transaction.
    a.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    a.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    connect_as(db, "postgres")
}

/// Drops database `db` if it exists.
pub fn drop_db(db: &str) {
    admin().batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
}

/// A fresh database named `es_<name>` with `embedstack` (and pgvector) installed.
pub fn fresh_db(name: &str) -> Client {
    let mut c = create_db(&format!("es_{name}"));
    c.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
    c
}

/// The PostgreSQL binaries, found as scripts/env.sh finds them: `$PG_BIN`, else
/// `$PG_CONFIG --bindir` (`PG_CONFIG` defaulting to /usr/bin/pg_config), else the PG 15 default.
pub fn pg_bin() -> PathBuf {
    if let Ok(b) = std::env::var("PG_BIN") {
        return PathBuf::from(b);
    }
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/bin/pg_config".into());
    match Command::new(&pg_config).arg("--bindir").output() {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => PathBuf::from("/usr/lib/postgresql/15/bin"),
    }
}

/// The WordSim-353 fixture: `tests/fixtures/wordsim353` of this repository, or `$ES_FIXTURES`
/// (a directory with the same files).
pub fn fixture_dir() -> PathBuf {
    if let Ok(p) = std::env::var("ES_FIXTURES") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("tests/fixtures/wordsim353")
        .canonicalize()
        .expect("tests/fixtures/wordsim353 in the repository")
}
