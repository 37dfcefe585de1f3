//! `materialize` and `refit` commit after every step, which PostgreSQL allows only in a CALL
//! that is not inside a transaction block. Inside one (psql after BEGIN, or a driver that opens
//! a transaction for every statement, as psycopg does by default) their first COMMIT would fail
//! with a bare "invalid transaction termination"; this check says why before anything starts.

use pgrx::prelude::*;

/// ERROR 2D000 with a HINT when called inside a transaction block.
#[pg_extern(volatile, parallel_restricted)]
fn _require_no_transaction_block(procedure: &str) {
    if unsafe { pg_sys::IsTransactionBlock() } {
        crate::errors::fail_hint(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            format!("{procedure} cannot run inside a transaction block: it commits after every step"),
            "CALL it on its own, outside BEGIN ... COMMIT (psql: in autocommit mode; psycopg: connect with \
             autocommit=True; pg_cron runs each job outside a transaction block)",
        );
    }
}
