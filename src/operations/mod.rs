//! Operations support for refit / materialize (sql/operations.sql): the per-model-set job
//! lock that survives the procedures' COMMITs but never a failed call, the check that they are
//! not called inside a transaction block, and who may change a model set (the catalog write gate).

pub mod authorize;
mod job_lock;
pub mod pinned_path;
mod transaction;

pub use job_lock::register_abort_release;
