//! SQL and error helpers shared by the client tests: SQLSTATE checks, quoting.

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

/// A SQL string literal.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL quoted identifier.
pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
