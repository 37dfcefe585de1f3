//! Helpers for the client-side tests: they talk to the project cluster started by
//! `make cluster` (scripts/cluster.sh), with the extension installed by `make install`.
//!
//! Each test gets a database of its own, so tests can run concurrently and leave nothing
//! behind for each other.

use std::path::PathBuf;

use postgres::{Client, NoTls};

pub mod cluster;
pub mod fixtures;
pub mod sql;
pub mod stats;

fn conn_string(db: &str) -> String {
    let port = std::env::var("ES_PGPORT").unwrap_or_else(|_| "54815".into());
    format!("host=127.0.0.1 port={port} user=postgres dbname={db}")
}

/// Connects to the maintenance database.
pub fn admin() -> Client {
    Client::connect(&conn_string("postgres"), NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the project cluster ({e}); run `make cluster` first"))
}

/// A fresh database named `es_<name>` with `embedstack` (and pgvector) installed.
pub fn fresh_db(name: &str) -> Client {
    let db = format!("es_{name}");
    let mut a = admin();
    // Two statements: a multi-statement string would run as one implicit transaction.
    a.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    a.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut c = Client::connect(&conn_string(&db), NoTls).unwrap();
    c.batch_execute("CREATE EXTENSION embedstack CASCADE").unwrap();
    c
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
