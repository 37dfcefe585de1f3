//! Operations support for refit / materialize (sql/operations.sql): the per-model-set job
//! lock that survives the procedures' COMMITs but never a failed call, the check that they are
//! not called inside a transaction block, who may change or read a model set (authorize), the
//! pinned search_path of the C code's SQL, and the catalog door of releases before 0.3.1
//! (legacy_write).

pub mod authorize;
mod job_lock;
mod legacy_write;
pub mod pinned_path;
mod transaction;

pub use job_lock::register_abort_release;
