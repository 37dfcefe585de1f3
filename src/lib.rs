//! embedstack: learn how to stack several embedding models of the same entities into one
//! vector, inside PostgreSQL, and serve it through pgvector's HNSW index.
//!
//! This crate is the thin Postgres glue. The maths lives in `embedstack-math`
//! (`crates/embedstack-math`), which has no pgrx dependency and is tested on its own.

// The Postgres glue works with raw datums, SPI and the fmgr interface: unsafe is allowed here
// (the workspace denies it elsewhere; the core allows it only in its kernels).
#![allow(unsafe_code)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod datatype;
mod errors;
mod model_set;
mod operations;
mod pg_version;
mod primitives;
mod regression_state;
mod settings;
mod solve;

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx attaches a Rust backtrace to the DETAIL of every error when the server's environment
    // has RUST_BACKTRACE set: users must never see those. RUST_LIB_BACKTRACE takes precedence
    // for std::backtrace captures (panics still print to the server log as configured). The
    // backend is single-threaded here, before any capture.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    settings::register();
    solve::register_interrupt_hook();
    operations::register_abort_release();
}

// Hand-written SQL: the aggregates (after the functions they name), then object comments,
// after every generated object exists.
extension_sql_file!(
    "../sql/aggregates.sql",
    name = "aggregates",
    requires = [solve::fit_weights_final, regression_state::merge]
);
extension_sql_file!("../sql/catalog.sql", name = "catalog", requires = ["fit_type"]);
extension_sql_file!("../sql/catalog_writers.sql", name = "catalog_writers", requires = ["catalog"]);
extension_sql_file!(
    "../sql/catalog_access.sql",
    name = "catalog_access",
    requires = ["catalog_writers", operations::authorize::_may_read, operations::authorize::_may_write]
);
extension_sql_file!("../sql/projection.sql", name = "projection", requires = ["catalog_access"]);
extension_sql_file!("../sql/model_sets.sql", name = "model_sets", requires = ["projection"]);
extension_sql_file!("../sql/citus.sql", name = "citus", requires = ["model_sets"]);
extension_sql_file!("../sql/materialize.sql", name = "materialize", requires = ["citus"]);
extension_sql_file!(
    "../sql/partitions.sql",
    name = "partitions",
    requires = ["materialize", model_set::freshness::_apply_as_owner]
);
extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["partitions"]);
extension_sql_file!("../sql/refit.sql", name = "refit", requires = ["jobs"]);
extension_sql_file!("../sql/status.sql", name = "status", requires = ["refit"]);
extension_sql_file!("../sql/check.sql", name = "check", requires = ["status"]);
extension_sql_file!("../sql/comments.sql", name = "comments", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
