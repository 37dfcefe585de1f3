//! The numerical core of embedstack, free of any Postgres dependency so that it can be tested
//! with plain `cargo test` and property tests, and reasoned about on its own.
//!
//! * [`kernels`]: vectorised dot products and norms (f32 data, f64 accumulation).
//! * [`vector`]: normalisation and cosine with the SQL-facing semantics (zero vectors,
//!   non-finite elements, dimension mismatches).
//! * [`regstats`]: mergeable sufficient statistics of a weighted linear regression.
//! * [`solve`]: OLS / ridge / NNLS solvers, diagnostics and exact k-fold cross-validation.
//! * [`combine`]: fitted weights → per-block multipliers and combined vectors.
//! * [`entity_cache`]: bounded per-entity cache for pair features from stored columns.
//! * [`eval`]: Pearson and Spearman correlation for held-out evaluation.
//! * [`interrupt`]: the hook through which long loops let the embedder cancel them.
pub mod combine;
pub mod entity_cache;
pub mod eval;
mod fpscale;
pub mod interrupt;
pub mod kernels;
pub mod regstats;
pub mod solve;
pub mod vector;
