//! Operations support for refit / materialize (sql/operations.sql): the per-model-set job
//! lock that survives the procedures' COMMITs but never a failed call, and the ownership check
//! of the catalog writers.

pub mod authorize;
mod job_lock;

pub use job_lock::register_abort_release;
