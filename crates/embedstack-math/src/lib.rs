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
//! * [`covariance`]: mergeable covariance state of a model set's unit-normalised rows.
//! * [`jacobi`]: dense symmetric eigen-decomposition (cyclic Jacobi) for small matrices.
//! * [`subspace`]: top-r eigenpairs of a large PSD operator by randomized subspace iteration.
//! * [`projection`]: PCA of the weighted combined vector to r dimensions, and projecting.
pub mod combine;
pub mod covariance;
pub mod entity_cache;
pub mod eval;
mod fpscale;
pub mod interrupt;
pub mod jacobi;
pub mod kernels;
pub mod projection;
pub mod regstats;
pub mod solve;
pub mod subspace;
pub mod vector;
