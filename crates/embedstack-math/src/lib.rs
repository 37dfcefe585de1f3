//! The numerical core of embedstack, free of any Postgres dependency so that it can be tested
//! with plain `cargo test` and property tests, and reasoned about on its own.
//!
//! * [`kernels`]: vectorised dot products and norms (f32 data, f64 accumulation).
//! * [`vector`]: normalisation and cosine with the SQL-facing semantics (zero vectors,
//!   non-finite elements, dimension mismatches).
//! * [`regstats`]: mergeable sufficient statistics of a weighted linear regression.
//! * [`solve`]: OLS / ridge / NNLS solvers, diagnostics and exact k-fold cross-validation.
pub mod kernels;
pub mod regstats;
pub mod solve;
pub mod vector;
