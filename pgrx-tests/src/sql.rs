//! SQL and error helpers shared by the client tests: SQLSTATE checks, quoting, index names,
//! the backend of a session.

use postgres::Client;

/// The SQLSTATE of an error (panics when it is not a server error, e.g. a lost connection).
pub fn sqlstate(e: &postgres::Error) -> String {
    e.code().unwrap_or_else(|| panic!("not a database error: {e}")).code().to_string()
}

/// The primary message of a server error ("" otherwise).
pub fn message(e: &postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default()
}

/// DETAIL, HINT and message of a server error, joined (for "this text must not appear" checks).
pub fn all_text(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| {
            format!("{}\n{}\n{}", d.message(), d.detail().unwrap_or_default(), d.hint().unwrap_or_default())
        })
        .unwrap_or_else(|| e.to_string())
}

/// Runs `sql` (simple protocol, autocommit) expecting an error; returns it.
pub fn expect_err(c: &mut Client, sql: &str) -> postgres::Error {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected an error from: {sql}"),
        Err(e) => e,
    }
}

/// Asserts `sql` fails with SQLSTATE `code`; returns the error.
pub fn expect_code(c: &mut Client, sql: &str, code: &str) -> postgres::Error {
    let e = expect_err(c, sql);
    assert_eq!(sqlstate(&e), code, "{sql}\n  -> {}", all_text(&e));
    e
}

/// The PID of the backend serving a session.
pub fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// A SQL string literal.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL quoted identifier.
pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `quote_ident` for the names the tests use: quoted unless lower-case letters, digits and
/// underscores (not starting with a digit).
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        qi(s)
    }
}

/// The name 0.1/0.2 `materialize` gave a model set's served (`staging = false`) or staging HNSW index,
/// by the documented rule: `<table>_<column>_<h>_hnsw` (`_hnsw_next` for the staging one) where
/// `<h>` is the first 8 hex digits of md5 of `<schema>.<table>.<column>`, each part quoted as
/// an identifier when it needs quotes (short names only: long ones are cut to fit 63 bytes).
/// 0.3.0 indexes generation tables instead: see [`crate::served::generation_index_name`].
pub fn index_name(schema: &str, table: &str, column: &str, staging: bool) -> String {
    let key = format!("{}.{}.{}", quote_ident(schema), quote_ident(table), quote_ident(column));
    let h = format!("{:x}", md5::compute(key.as_bytes()));
    let name = format!("{table}_{column}_{}_{}", &h[..8], if staging { "hnsw_next" } else { "hnsw" });
    assert!(name.len() <= 63, "index_name is for short names only: {name}");
    name
}
