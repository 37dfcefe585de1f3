//! Mergeable second-order statistics of a model set's rows, for the learned projection of
//! issue 21 ([`crate::projection`]).
//!
//! The state describes the UNweighted concatenation `u = [u_1 … u_K]` of the unit-normalised
//! model vectors of each row: the row count `n`, `Σ u` and `Σ u uᵀ`. The covariance of the
//! served vector for any weights `w`, `[√w_k u_k]`, is `D_w^{1/2} C D_w^{1/2}` with `C` the
//! covariance of `u`, so one pass over the source serves every later fit.
//!
//! * Normalisation is [`combine_into`] with every multiplier 1: the same dimension checks,
//!   non-finite errors and f32 rounding as the served vectors. A missing model (SQL NULL) and a
//!   zero vector (no direction: `vector::normalize_f32` leaves it as it is, the cosines return
//!   NULL) are the same thing here: a zero block. That is exactly what the served vector holds
//!   for such a row, so `C` is the covariance of the vectors that will be searched, rather than
//!   of an imputed or pairwise-complete estimate. Every row counts in `n`, even one with every
//!   model missing (it is served as a zero vector). `present` counts, per model, the rows where
//!   it had a direction, for diagnostics.
//! * Raw sums, not Welford-style centred updates as in [`crate::regstats`]: every element of a
//!   unit vector is in `[-1, 1]`, so the sums cannot overflow and centring at the end,
//!   `S/n − m mᵀ`, loses at most about `log2(n)` ulps of 1 in absolute terms; the entries of the
//!   covariance of `d`-dimensional unit vectors are around `1/d`, far above that. Raw sums make
//!   merging an addition and make blocked accumulation possible.
//! * Accumulating a row is a rank-1 update of a `D × D` matrix, `O(D²)`, and at `D = 5,632` a
//!   row-at-a-time update would stream the 127 MB triangle through memory per row. Rows are
//!   therefore buffered, [`BATCH_ROWS`] at a time, and added as one rank-`B` update `XᵀX`
//!   through nalgebra's `gemm` (matrixmultiply: cache-blocked, with its own run-time
//!   AVX2/AVX-512 selection; the crate has no unsafe code outside `kernels.rs`), tile by tile
//!   over the upper block triangle. Readers ([`CovStats::to_vec`], [`CovStats::covariance`],
//!   [`CovStats::operator`]) flush the buffer first, hence take `&mut self`.
//! * The products of a batch are computed in f32 (twice the f64 throughput) and added to the
//!   f64 tiles; `Σ u`, the tiles and everything serialised stay f64. The rows are f32 already
//!   (the unit vectors), but their products are not, and an f32 sum of `B` of them is off by
//!   about `√B · 2^−24` of its size. The batch is therefore shifted by the running mean `c`
//!   (rounded to f32) before the product: `Σ u uᵀ = Σ (u − c)(u − c)ᵀ + c gᵀ + g cᵀ` with
//!   `g = Σ u − (B/2) c` exactly, the last two terms in f64 and only the first in f32, as
//!   `Σ v vᵀ` with `v = u − c` rounded to f32. Its rounding is then relative to the spread of
//!   the rows, the size of the covariance, rather than to `S/n = C + m mᵀ`, of which the
//!   centring cancels `m mᵀ`. The covariance comes out within about `2^−24 · B / √n ·
//!   √(C_ii C_jj)` of an all-f64 computation (measured: `1.4e-7 · √(C_ii C_jj)` at most at
//!   D = 5,632 over 10,000 rows, `examples/cov_bench.rs`; unshifted, 1.9e-6), and a
//!   projection fitted from it keeps the same variance to 8 digits. It is not exact: a state
//!   depends on the batching (merges, flushes) through rounding at that level, not at f64's.
//! * A flush may run on several threads ([`CovStats::set_threads`], default 1): the tiles are
//!   handed out one at a time, so the result is the same bit for bit whatever the number, and
//!   only the calling thread calls the interrupt hook.
//! * Serialised as a flat `f64` array (the SQL aggregate's `float8[]`, for parallel aggregation
//!   and Citus) holding the upper triangle packed by rows, independent of the tiling. Parsing
//!   validates everything a forged array could break, and errors rather than panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut, DVector};

use crate::combine::{combine_into, Block, CombineError};
use crate::interrupt;

/// Marks a serialised covariance state (a different number from the regression state's).
pub const STATE_MAGIC: f64 = 4_011_972.0;
/// Layout version of the serialised state; bump on any change.
pub const STATE_VERSION: f64 = 1.0;
/// Serialised header: magic, version, model count `K`, row count `n`.
pub const HEADER_LEN: usize = 4;
/// Most models a state may have (the regression's feature limit: a model set is both).
pub const MAX_MODELS: usize = crate::regstats::MAX_FEATURES;
/// Most combined dimensions `D`. The serialised state holds `D(D+1)/2` values: 268 MB at this
/// limit, under Postgres' 1 GB limit on a `float8[]` with room for the copies an aggregate
/// makes; pgvector's HNSW stops at 2,000 (vector) / 4,000 (halfvec) dimensions, which is the
/// reason to project at all, and the model sets this was built for reach 5,632.
pub const MAX_DIMS: usize = 8_192;
/// Largest row count a state may hold (float8 counts are exact up to 2^53).
pub const MAX_COUNT: u64 = 1 << 53;
/// Rows buffered before a blocked update (a `256 × D` f32 buffer: 5.8 MB at D = 5,632). With the
/// f32 products, each flush streams the f64 tiles through memory once for `B` rows, which is
/// no longer small beside the products: 256 took 9% less time than 128, and 512 another 3-4%
/// (AMD EPYC Zen 4, AVX-512, `examples/cov_bench.rs`) at twice the buffer and `√2` times the
/// rounding. (With f64 products, 64, 128 and 256 were within noise of each other.) The 256-wide
/// tiles were measured against 128, 512 and 1,024 (f64, `examples/projection_bench.rs`).
pub const BATCH_ROWS: usize = 256;
/// Tile edge of the upper block triangle: a 256 × 256 f64 tile is 512 kB, within L2.
const TILE: usize = 256;
/// Least work of a flush, `B · D²` multiply-adds, for which extra threads are started (about a
/// millisecond; starting a thread takes tens of microseconds).
const PARALLEL_MIN_WORK: usize = 1 << 24;

/// How a flush starts its extra threads (see [`CovStats::set_threads`]): called on the calling
/// thread, once per threaded flush, with a closure that creates the threads and returns at once;
/// the guard must call it exactly once. The threads inherit what the guard sets up around that
/// call: under PostgreSQL, block every signal before and restore the mask after (a signal
/// handler must run on the backend's own thread), as `src/model_set/fit_threads.rs` does. The
/// threads only compute: they never call the interrupt hook nor anything else of the embedder,
/// and a thread that cannot be created is no error (its share falls to the others).
pub type SpawnGuard = fn(&mut dyn FnMut());
/// Relative slack of the consistency checks on parsed states (Cauchy–Schwarz, unit norms).
/// Legitimate states are off by rounding only: each f32 unit block has a squared norm within
/// `2 · 2^−24` of 1, and sums of `n` terms in f64 carry about `log2(n) · 2^−53`.
const SLACK: f64 = 1e-5;

/// Elements of a unit vector below this magnitude are accumulated as 0: 2⁻⁶⁰, so that the
/// product of any two kept elements (≥ 2⁻¹²⁰) is a normal f32 (≥ 2⁻¹²⁶).
const TINY: f32 = 8.673_617e-19;

/// Multipliers of the unweighted concatenation: every block at scale 1.
static ONES: [f64; MAX_MODELS] = [1.0; MAX_MODELS];

#[derive(Debug, Clone, PartialEq)]
pub enum CovError {
    /// A model vector of a row has the wrong dimension or a non-finite element.
    Row(CombineError),
    /// A row has a different number of models than the state.
    ModelCount { expected: usize, got: usize },
    /// The model dimensions of a new state are invalid (no model, a zero dimension, more than
    /// [`MAX_MODELS`] models).
    Layout(String),
    /// More than [`MAX_DIMS`] combined dimensions.
    TooManyDims { got: usize },
    /// Two states with different model dimensions were merged.
    Mismatch { left: Vec<usize>, right: Vec<usize> },
    /// A serialised state is malformed or inconsistent.
    Corrupt(String),
    /// A row count would pass [`MAX_COUNT`].
    Overflow,
    /// The covariance of no rows is undefined.
    NoRows,
}

impl std::fmt::Display for CovError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CovError::Row(e) => write!(f, "{e}"),
            CovError::ModelCount { expected, got } => {
                write!(f, "a row has {got} model vectors, the model set has {expected}")
            }
            CovError::Layout(why) => write!(f, "invalid model dimensions: {why}"),
            CovError::TooManyDims { got } => {
                write!(f, "the combined vector has {got} dimensions, at most {MAX_DIMS} are supported")
            }
            CovError::Mismatch { left, right } => {
                write!(f, "cannot merge covariance states of model dimensions {left:?} and {right:?}")
            }
            CovError::Corrupt(why) => write!(f, "invalid covariance state: {why}"),
            CovError::Overflow => write!(f, "a covariance state cannot hold more than {MAX_COUNT} rows"),
            CovError::NoRows => write!(f, "the covariance of no rows is undefined"),
        }
    }
}

impl std::error::Error for CovError {}

/// Row count, `Σ u` and `Σ u uᵀ` of the unit-normalised concatenation of a model set's rows.
/// The fields are private: every state is built by [`CovStats::new`] and updated by the methods
/// below, or parsed (and validated) by [`CovStats::from_slice`], so it is always consistent.
#[derive(Debug, Clone)]
pub struct CovStats {
    dims: Vec<usize>,
    d: usize,
    /// Rows accumulated, buffered ones included.
    n: u64,
    /// Per model, rows where it had a non-zero vector.
    present: Vec<u64>,
    /// `Σ u`, buffered rows included.
    sum: Vec<f64>,
    /// Upper block triangle of `Σ u uᵀ` over the flushed rows: tiles `(I, J)`, `I ≤ J`, in row
    /// order, each `rows(I) × rows(J)` column-major. Diagonal tiles are kept whole (and exactly
    /// symmetric), so a product reads them as they are.
    tiles: Vec<f64>,
    /// Offset of tile `(I, J)` in `tiles` at `I · nt + J` (`usize::MAX` below the diagonal).
    tile_off: Vec<usize>,
    /// Buffered rows, row-major, `pending_rows × d`, capacity [`BATCH_ROWS`] rows.
    pending: Vec<f32>,
    pending_rows: usize,
    /// The current row as written by `combine_into`.
    scratch: Vec<f32>,
    /// Threads of a flush (1: the caller's only), and how the others are started.
    threads: usize,
    spawn: SpawnGuard,
}

/// `(start, length)` of tile `t` of a dimension `d`.
#[inline]
fn tile_span(d: usize, t: usize) -> (usize, usize) {
    let start = t * TILE;
    (start, TILE.min(d - start))
}

#[inline]
fn tile_count(d: usize) -> usize {
    d.div_ceil(TILE)
}

#[inline]
fn packed_len(d: usize) -> usize {
    d * (d + 1) / 2
}

/// Start of row `i` in the upper triangle packed by rows (rows `0..i` hold `d, d−1, …`).
#[inline]
fn packed_row(d: usize, i: usize) -> usize {
    i * d - i * i.saturating_sub(1) / 2
}

/// Checks model dimensions and returns their sum `D`.
fn check_dims(dims: &[usize]) -> Result<usize, CovError> {
    if dims.is_empty() {
        return Err(CovError::Layout("a model set has at least one model".into()));
    }
    if dims.len() > MAX_MODELS {
        return Err(CovError::Layout(format!("{} models, at most {MAX_MODELS} are supported", dims.len())));
    }
    let mut d = 0usize;
    for (k, &dk) in dims.iter().enumerate() {
        if dk == 0 {
            return Err(CovError::Layout(format!("model {} has 0 dimensions", k + 1)));
        }
        d = d.saturating_add(dk);
    }
    if d > MAX_DIMS {
        return Err(CovError::TooManyDims { got: d });
    }
    Ok(d)
}

/// Length of the serialised state of a model set of dimensions `dims` (unchecked).
pub fn serialized_len(dims: &[usize]) -> usize {
    let d: usize = dims.iter().sum();
    HEADER_LEN + 2 * dims.len() + d + packed_len(d)
}

impl CovStats {
    /// An empty state for models of dimensions `dims` (in the model set's order).
    pub fn new(dims: &[usize]) -> Result<Self, CovError> {
        let d = check_dims(dims)?;
        let nt = tile_count(d);
        let mut tile_off = vec![usize::MAX; nt * nt];
        let mut len = 0;
        for i in 0..nt {
            for j in i..nt {
                tile_off[i * nt + j] = len;
                len += tile_span(d, i).1 * tile_span(d, j).1;
            }
        }
        Ok(CovStats {
            dims: dims.to_vec(),
            d,
            n: 0,
            present: vec![0; dims.len()],
            sum: vec![0.0; d],
            tiles: vec![0.0; len],
            tile_off,
            pending: vec![0.0; BATCH_ROWS * d],
            pending_rows: 0,
            scratch: vec![0.0; d],
            threads: 1,
            spawn: spawn_directly,
        })
    }

    /// Sets the number of threads a flush uses (default 1: the caller's only) and how the
    /// others are started (see [`SpawnGuard`]; under PostgreSQL it must block signals). The
    /// extra threads are started per flush (every [`BATCH_ROWS`] rows) when the flush is big
    /// enough to pay for them, take tiles from a shared queue, and are joined before the flush
    /// returns; only the calling thread calls the interrupt hook. The result is the same, bit
    /// for bit, whatever the number. Kept by `clone`, not by the serialised state: a parsed
    /// state has 1 thread.
    pub fn set_threads(&mut self, threads: usize, spawn: SpawnGuard) {
        self.threads = threads.max(1);
        self.spawn = spawn;
    }

    /// Model dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Combined dimension `D = Σ d_k`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Rows accumulated.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Per model, the rows where it had a (non-zero) vector.
    pub fn present(&self) -> &[u64] {
        &self.present
    }

    /// `Σ u / n`, the mean of the unweighted concatenation (zeros before any row).
    pub fn mean(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }

    /// Adds one row: one entry per model, `None` for a missing (NULL) vector. Each vector is
    /// normalised to unit length; a zero vector counts as missing. On error (a wrong dimension,
    /// a NaN or infinite element, too many rows) the state is unchanged.
    pub fn accumulate(&mut self, row: &[Option<Block<'_>>]) -> Result<(), CovError> {
        if row.len() != self.dims.len() {
            return Err(CovError::ModelCount { expected: self.dims.len(), got: row.len() });
        }
        let n = add_counts(self.n, 1)?;
        combine_into(row, &self.dims, &ONES[..self.dims.len()], &mut self.scratch).map_err(CovError::Row)?;
        // Nothing fails from here on. Elements below TINY count as 0 (in the buffer and in Σu
        // alike): the batch products are f32, where the square of such an element underflows
        // while its product with a larger one does not, which would leave Σ u uᵀ inconsistent
        // with itself (|Σ u_i u_j| > √(Σ u_i² Σ u_j²); real models have such dimensions, e.g.
        // MiniLM's at ~1e-32). Their contribution to any sum of a unit vector is below 1e-36.
        for v in self.scratch.iter_mut() {
            if v.abs() < TINY {
                *v = 0.0;
            }
        }
        let d = self.d;
        let slot = &mut self.pending[self.pending_rows * d..(self.pending_rows + 1) * d];
        slot.copy_from_slice(&self.scratch);
        for (s, &v) in self.sum.iter_mut().zip(&self.scratch) {
            *s += v as f64;
        }
        let mut at = 0;
        for (k, &dk) in self.dims.iter().enumerate() {
            // A unit vector has an element of magnitude ≥ 1/√d_k: it is never all zeros.
            if self.scratch[at..at + dk].iter().any(|&v| v != 0.0) {
                self.present[k] += 1;
            }
            at += dk;
        }
        self.n = n;
        self.pending_rows += 1;
        if self.pending_rows == BATCH_ROWS {
            self.flush();
        }
        Ok(())
    }

    /// [`CovStats::accumulate`] for f32 model vectors (pgvector's `vector`).
    pub fn accumulate_f32(&mut self, row: &[Option<&[f32]>]) -> Result<(), CovError> {
        let blocks: Vec<Option<Block<'_>>> = row.iter().map(|v| v.map(Block::F32)).collect();
        self.accumulate(&blocks)
    }

    /// Adds the buffered rows to `Σ u uᵀ` as one rank-`B` update, tile by tile. The result
    /// does not depend on when flushes happen except through rounding (summation order), and
    /// does not depend on the number of threads at all.
    pub fn flush(&mut self) {
        let b = self.pending_rows;
        if b == 0 {
            return;
        }
        let d = self.d;
        let nt = tile_count(d);
        // The shift: c = the running mean rounded to f32, v = u − c rounded to f32 (in place:
        // the buffer is emptied below), s = Σ u over the batch and g = s − (b/2) c in f64. Then
        // Σ u uᵀ = Σ (u − c)(u − c)ᵀ + c gᵀ + g cᵀ exactly, and only the first term, the
        // spread of the rows about c, is computed in f32, as Σ v vᵀ.
        let nf = self.n as f64;
        let c: Vec<f64> = self.sum.iter().map(|&s| (s / nf) as f32 as f64).collect();
        let mut g = vec![0.0f64; d];
        for row in self.pending[..b * d].chunks_exact_mut(d) {
            for ((v, &ci), gi) in row.iter_mut().zip(&c).zip(g.iter_mut()) {
                *gi += *v as f64;
                *v -= ci as f32;
            }
        }
        let half = b as f64 / 2.0;
        for (gi, &ci) in g.iter_mut().zip(&c) {
            *gi -= half * ci;
        }
        let batch = Batch { x: &self.pending[..b * d], b, d, c: &c, g: &g };

        // The tiles as disjoint slices, in row order.
        let mut work = Vec::with_capacity(nt * (nt + 1) / 2);
        let mut rest = &mut self.tiles[..];
        for ti in 0..nt {
            for tj in ti..nt {
                let (tile, tail) =
                    std::mem::take(&mut rest).split_at_mut(tile_span(d, ti).1 * tile_span(d, tj).1);
                rest = tail;
                work.push((ti, tj, tile));
            }
        }
        let workers = if b * d * d >= PARALLEL_MIN_WORK { self.threads - 1 } else { 0 }.min(work.len() - 1);
        if workers == 0 {
            let mut prod = vec![0.0f32; TILE * TILE];
            for (ti, tj, tile) in work {
                if ti == tj {
                    // One tile row is at most D × 256 × B multiply-adds: tens of milliseconds.
                    interrupt::check();
                }
                batch.add_tile(ti, tj, tile, &mut prod);
            }
        } else {
            let spawn = self.spawn;
            let queue = Mutex::new(work.into_iter());
            let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
            let stop = AtomicBool::new(false);
            let worker = || {
                let mut prod = vec![0.0f32; TILE * TILE];
                while !stop.load(Ordering::Relaxed) {
                    let Some((ti, tj, tile)) = next() else { break };
                    batch.add_tile(ti, tj, tile, &mut prod);
                }
            };
            std::thread::scope(|scope| {
                let mut handles = Vec::with_capacity(workers);
                spawn(&mut || {
                    for _ in 0..workers {
                        // A thread that cannot be created leaves its share to the others.
                        if let Ok(h) = std::thread::Builder::new().spawn_scoped(scope, worker) {
                            handles.push(h);
                        }
                    }
                });
                {
                    // Only this thread calls the interrupt hook; if the hook unwinds, the other
                    // threads stop after their current tile and the scope joins them.
                    let _stop = StopOnDrop(&stop);
                    let mut prod = vec![0.0f32; TILE * TILE];
                    loop {
                        interrupt::check();
                        let Some((ti, tj, tile)) = next() else { break };
                        batch.add_tile(ti, tj, tile, &mut prod);
                    }
                }
                for h in handles {
                    if let Err(panic) = h.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
            });
        }
        self.pending_rows = 0;
    }

    /// Adds `other`'s rows to `self`: afterwards `self` is the state of the concatenated rows
    /// (up to rounding: the sums are added in a different order). Both must have the same
    /// model dimensions; on error `self` is unchanged.
    pub fn merge(&mut self, other: &CovStats) -> Result<(), CovError> {
        if self.dims != other.dims {
            return Err(CovError::Mismatch { left: self.dims.clone(), right: other.dims.clone() });
        }
        let n = add_counts(self.n, other.n)?;
        for (a, b) in self.tiles.iter_mut().zip(&other.tiles) {
            *a += b;
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.present.iter_mut().zip(&other.present) {
            // Each count is ≤ its state's n, so the sum is ≤ n ≤ MAX_COUNT.
            *a += b;
        }
        self.n = n;
        // `other`'s buffered rows are in its n and Σ u already, not yet in its Σ u uᵀ.
        let d = self.d;
        for r in 0..other.pending_rows {
            let row = &other.pending[r * d..(r + 1) * d];
            self.pending[self.pending_rows * d..(self.pending_rows + 1) * d].copy_from_slice(row);
            self.pending_rows += 1;
            if self.pending_rows == BATCH_ROWS {
                self.flush();
            }
        }
        Ok(())
    }

    /// `Σ u uᵀ[i][j]` of a flushed state, `i ≤ j`.
    #[inline]
    fn s(&self, i: usize, j: usize) -> f64 {
        let nt = tile_count(self.d);
        let (ti, tj) = (i / TILE, j / TILE);
        let ni = tile_span(self.d, ti).1;
        self.tiles[self.tile_off[ti * nt + tj] + (i - ti * TILE) + (j - tj * TILE) * ni]
    }

    /// Serialised form, `[magic, version, K, n, dims…, present…, Σu…, Σuuᵀ…]`, the last the
    /// upper triangle packed by rows (row `i` holds columns `i..D`). Flushes first.
    pub fn to_vec(&mut self) -> Vec<f64> {
        self.flush();
        let d = self.d;
        let mut v = Vec::with_capacity(serialized_len(&self.dims));
        v.extend_from_slice(&[STATE_MAGIC, STATE_VERSION, self.dims.len() as f64, self.n as f64]);
        v.extend(self.dims.iter().map(|&x| x as f64));
        v.extend(self.present.iter().map(|&x| x as f64));
        v.extend_from_slice(&self.sum);
        let base = v.len();
        v.resize(base + packed_len(d), 0.0);
        let packed = &mut v[base..];
        let nt = tile_count(d);
        for ti in 0..nt {
            let (i0, ni) = tile_span(d, ti);
            for tj in ti..nt {
                let (j0, nj) = tile_span(d, tj);
                let tile = &self.tiles[self.tile_off[ti * nt + tj]..][..ni * nj];
                for (jj, col) in tile.chunks_exact(ni).enumerate() {
                    let j = j0 + jj;
                    let rows = if ti == tj { jj + 1 } else { ni };
                    for (ii, &val) in col[..rows].iter().enumerate() {
                        let i = i0 + ii;
                        packed[packed_row(d, i) + (j - i)] = val;
                    }
                }
            }
        }
        v
    }

    /// Parses and validates a serialised state. Checked, in this order so that nothing is
    /// allocated from an unchecked size: magic and version; `K` in `1..=MAX_MODELS`; each
    /// dimension ≥ 1 and `D ≤ MAX_DIMS`; the exact length; counts that are integers in
    /// `[0, 2^53]` with `present_k ≤ n`; finite values; an all-zero state when `n = 0`; and the
    /// consistency any real state has up to rounding: `|Σu_i| ≤ present`, `0 ≤ Σu_i² ≤ present`,
    /// each model's `Σ_i Σu_i²` equal to its `present` count (unit vectors), `(Σu_i)² ≤ n Σu_i²`
    /// and Cauchy–Schwarz `|Σu_iu_j| ≤ √(Σu_i² Σu_j²)`.
    pub fn from_slice(s: &[f64]) -> Result<Self, CovError> {
        if s.len() < HEADER_LEN {
            return Err(CovError::Corrupt(format!(
                "{} elements, a state has at least {HEADER_LEN}",
                s.len()
            )));
        }
        if s[0] != STATE_MAGIC {
            return Err(CovError::Corrupt("not a covariance state (bad magic number)".into()));
        }
        if s[1] != STATE_VERSION {
            return Err(CovError::Corrupt(format!("unsupported state version {}", s[1])));
        }
        let k = parse_integer(s[2], MAX_MODELS as u64, "model count")? as usize;
        if k == 0 {
            return Err(CovError::Corrupt("a state has at least one model".into()));
        }
        if s.len() < HEADER_LEN + 2 * k {
            return Err(CovError::Corrupt(format!("{} elements, too short for {k} models", s.len())));
        }
        let mut dims = Vec::with_capacity(k);
        for (m, &v) in s[HEADER_LEN..HEADER_LEN + k].iter().enumerate() {
            let dk = parse_integer(v, MAX_DIMS as u64, "model dimension")
                .map_err(|_| CovError::Corrupt(format!("model {} has an invalid dimension {v}", m + 1)))?;
            dims.push(dk as usize);
        }
        let d = check_dims(&dims).map_err(|e| match e {
            CovError::Layout(why) => CovError::Corrupt(why),
            other => other,
        })?;
        let expected = serialized_len(&dims);
        if s.len() != expected {
            return Err(CovError::Corrupt(format!(
                "{} elements, expected {expected} for model dimensions {dims:?}",
                s.len()
            )));
        }
        let n = parse_integer(s[3], MAX_COUNT, "row count")?;
        let mut present = Vec::with_capacity(k);
        for &v in &s[HEADER_LEN + k..HEADER_LEN + 2 * k] {
            let p = parse_integer(v, MAX_COUNT, "present count")?;
            if p > n {
                return Err(CovError::Corrupt(format!("present count {p} above the row count {n}")));
            }
            present.push(p);
        }
        let sum = &s[HEADER_LEN + 2 * k..HEADER_LEN + 2 * k + d];
        let packed = &s[HEADER_LEN + 2 * k + d..];
        if let Some(i) = sum.iter().chain(packed).position(|v| !v.is_finite()) {
            let at = HEADER_LEN + 2 * k + i;
            return Err(CovError::Corrupt(format!("element {} is {}", at + 1, s[at])));
        }
        check_moments(&dims, n, &present, sum, packed)?;

        let mut st = CovStats::new(&dims)?;
        st.n = n;
        st.present = present;
        st.sum.copy_from_slice(sum);
        let nt = tile_count(d);
        for ti in 0..nt {
            interrupt::check();
            let (i0, ni) = tile_span(d, ti);
            for tj in ti..nt {
                let (j0, nj) = tile_span(d, tj);
                let off = st.tile_off[ti * nt + tj];
                let tile = &mut st.tiles[off..off + ni * nj];
                for jj in 0..nj {
                    for ii in 0..ni {
                        let (i, j) = (i0 + ii, j0 + jj);
                        let (a, b) = if i <= j { (i, j) } else { (j, i) };
                        tile[ii + jj * ni] = packed[packed_row(d, a) + (b - a)];
                    }
                }
            }
        }
        Ok(st)
    }

    /// The covariance `C = Σ(u − m)(u − m)ᵀ / n` of the rows as a dense `D × D` matrix.
    ///
    /// Divided by `n`, not `n − 1`: the projection describes the rows that are stored and
    /// searched, a population rather than a sample of one (the eigenvectors and the fraction of
    /// variance kept do not depend on the factor, only the eigenvalues' scale does), and a
    /// single row then has a zero covariance instead of 0/0. `Err(NoRows)` before any row.
    /// `D²` values (254 MB at D = 5,632): [`CovStats::operator`] multiplies by `C` without
    /// forming it.
    pub fn covariance(&mut self) -> Result<DMatrix<f64>, CovError> {
        if self.n == 0 {
            return Err(CovError::NoRows);
        }
        self.flush();
        let d = self.d;
        let nf = self.n as f64;
        let m = self.mean();
        let mut c = DMatrix::zeros(d, d);
        for j in 0..d {
            interrupt_every(j);
            for i in 0..=j {
                let v = self.s(i, j) / nf - m[i] * m[j];
                c[(i, j)] = v;
                c[(j, i)] = v;
            }
        }
        Ok(c)
    }

    /// A handle that multiplies by the covariance without forming it. Flushes first.
    pub fn operator(&mut self) -> Result<CovOperator<'_>, CovError> {
        if self.n == 0 {
            return Err(CovError::NoRows);
        }
        self.flush();
        let mean = DVector::from_vec(self.mean());
        Ok(CovOperator { stats: self, mean })
    }
}

/// Multiplication by the covariance `C = S/n − m mᵀ` of a flushed state, reading `S = Σ u uᵀ`
/// from its tiles: `C X = S X / n − m (mᵀ X)`, `O(D² · cols)` through `gemm`, no `D × D` copy.
pub struct CovOperator<'a> {
    stats: &'a CovStats,
    mean: DVector<f64>,
}

impl CovOperator<'_> {
    /// `D`.
    pub fn dim(&self) -> usize {
        self.stats.d
    }

    /// The variances `C_ii`.
    pub fn diagonal(&self) -> Vec<f64> {
        let nf = self.stats.n as f64;
        (0..self.stats.d).map(|i| self.stats.s(i, i) / nf - self.mean[i] * self.mean[i]).collect()
    }

    /// `C X` for a `D × m` matrix `X`.
    pub fn apply(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let st = self.stats;
        let d = st.d;
        assert_eq!(x.nrows(), d, "the operand must have D rows");
        let nt = tile_count(d);
        let mut y = DMatrix::zeros(d, x.ncols());
        for ti in 0..nt {
            interrupt::check();
            let (i0, ni) = tile_span(d, ti);
            for tj in ti..nt {
                let (j0, nj) = tile_span(d, tj);
                let tile = &st.tiles[st.tile_off[ti * nt + tj]..][..ni * nj];
                let s_ij = DMatrixView::from_slice(tile, ni, nj);
                y.rows_mut(i0, ni).gemm(1.0, &s_ij, &x.rows(j0, nj), 1.0);
                if tj != ti {
                    // The tile below the diagonal is the transpose: the same slice read by rows.
                    let s_ji = DMatrixView::from_slice_with_strides(tile, nj, ni, ni, 1);
                    y.rows_mut(j0, nj).gemm(1.0, &s_ji, &x.rows(i0, ni), 1.0);
                }
            }
        }
        y /= st.n as f64;
        let mtx = x.tr_mul(&self.mean);
        y.ger(-1.0, &self.mean, &mtx, 1.0);
        y
    }
}

/// One flush's batch: the shifted rows `v` (`b × d`, row-major, f32), the shift `c` and
/// `g = Σ u − (b/2) c` (see [`CovStats::flush`]).
struct Batch<'a> {
    x: &'a [f32],
    b: usize,
    d: usize,
    c: &'a [f64],
    g: &'a [f64],
}

impl Batch<'_> {
    /// Adds the batch's part of tile `(ti, tj)` of `Σ u uᵀ`, `Σ v vᵀ + c gᵀ + g cᵀ`, to `tile`:
    /// the product in f32 (into `prod`, at least `TILE²` long), the rest in f64. Of a diagonal
    /// tile, the upper half is added and the lower copied from it (canonical: a state and its
    /// serialised round trip are bit-identical).
    fn add_tile(&self, ti: usize, tj: usize, tile: &mut [f64], prod: &mut [f32]) {
        let (x, b, d) = (self.x, self.b, self.d);
        let (i0, ni) = tile_span(d, ti);
        let (j0, nj) = tile_span(d, tj);
        // Vᵀ restricted to the tile's rows: (ni × b), element (i, r) at r·d + i0 + i.
        let vt = DMatrixView::from_slice_with_strides(&x[i0..], ni, b, 1, d);
        // V restricted to the tile's columns: (b × nj), element (r, j) at r·d + j0 + j.
        let v = DMatrixView::from_slice_with_strides(&x[j0..], b, nj, d, 1);
        DMatrixViewMut::from_slice(&mut prod[..ni * nj], ni, nj).gemm(1.0, &vt, &v, 0.0);
        let (ci, gi) = (&self.c[i0..i0 + ni], &self.g[i0..i0 + ni]);
        for (jj, (tcol, pcol)) in tile.chunks_exact_mut(ni).zip(prod.chunks_exact(ni)).enumerate() {
            let (cj, gj) = (self.c[j0 + jj], self.g[j0 + jj]);
            let rows = if ti == tj { jj + 1 } else { ni };
            for (((t, &p), &c), &g) in
                tcol[..rows].iter_mut().zip(&pcol[..rows]).zip(&ci[..rows]).zip(&gi[..rows])
            {
                *t += p as f64 + c * gj + g * cj;
            }
        }
        if ti == tj {
            for j in 0..ni {
                for i in j + 1..ni {
                    tile[i + j * ni] = tile[j + i * ni];
                }
            }
        }
    }
}

/// Sets the flag when dropped, unwinding included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The default [`SpawnGuard`]: nothing around the spawning.
fn spawn_directly(spawn: &mut dyn FnMut()) {
    spawn()
}

/// An interrupt check every 256 columns of a `D²` loop.
#[inline]
fn interrupt_every(j: usize) {
    if j.is_multiple_of(256) {
        interrupt::check();
    }
}

fn add_counts(a: u64, b: u64) -> Result<u64, CovError> {
    a.checked_add(b).filter(|&s| s <= MAX_COUNT).ok_or(CovError::Overflow)
}

/// A serialised integer: finite, ≥ 0, integral, ≤ `max`.
fn parse_integer(v: f64, max: u64, what: &str) -> Result<u64, CovError> {
    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= max as f64) {
        return Err(CovError::Corrupt(format!("invalid {what} {v}")));
    }
    Ok(v as u64)
}

/// The consistency checks of [`CovStats::from_slice`] on finite moments.
fn check_moments(
    dims: &[usize],
    n: u64,
    present: &[u64],
    sum: &[f64],
    packed: &[f64],
) -> Result<(), CovError> {
    let d = sum.len();
    if n == 0 {
        if sum.iter().chain(packed).any(|&v| v != 0.0) {
            return Err(CovError::Corrupt("non-zero sums in a state without rows".into()));
        }
        return Ok(());
    }
    let nf = n as f64;
    let loose = |x: f64| x * (1.0 + SLACK);
    let mut diag = Vec::with_capacity(d);
    let mut at = 0;
    for (k, (&dk, &pk)) in dims.iter().zip(present).enumerate() {
        let pk = pk as f64;
        let mut block = 0.0;
        for i in at..at + dk {
            let sii = packed[packed_row(d, i)];
            if !(0.0..=loose(pk)).contains(&sii) {
                return Err(CovError::Corrupt(format!(
                    "sum of squares {sii} of dimension {} is out of range",
                    i + 1
                )));
            }
            if sum[i].abs() > loose(pk) || sum[i] * sum[i] > loose(nf * sii) {
                return Err(CovError::Corrupt(format!(
                    "sum {} of dimension {} is out of range",
                    sum[i],
                    i + 1
                )));
            }
            block += sii;
            diag.push(sii.sqrt());
        }
        // Every present row adds a unit vector to the block: its squared norm is 1.
        if (block - pk).abs() > SLACK * pk {
            return Err(CovError::Corrupt(format!(
                "model {} has sums of squares {block} for {pk} unit vectors",
                k + 1
            )));
        }
        at += dk;
    }
    for i in 0..d {
        interrupt_every(i);
        let row = &packed[packed_row(d, i)..packed_row(d, i) + (d - i)];
        for (j, &sij) in (i..d).zip(row) {
            if sij.abs() > loose(diag[i] * diag[j]) {
                return Err(CovError::Corrupt(format!(
                    "the sum of products of dimensions {} and {} exceeds what their sums of squares allow",
                    i + 1,
                    j + 1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subspace::gaussian_matrix;
    use proptest::prelude::*;

    /// A row of model vectors as the tests hold them: `None` = NULL.
    type Row = Vec<Option<Vec<f32>>>;

    /// Deterministic rows for `dims`: Gaussian vectors around a per-model offset (so the mean
    /// is far from 0, as with real embeddings), with some NULLs and zero vectors mixed in.
    fn rows(dims: &[usize], n: usize, seed: u64) -> Vec<Row> {
        let d: usize = dims.iter().sum();
        let g = gaussian_matrix(d, n, seed);
        (0..n)
            .map(|r| {
                let mut at = 0;
                dims.iter()
                    .enumerate()
                    .map(|(k, &dk)| {
                        let v: Vec<f32> = (0..dk).map(|i| (g[(at + i, r)] + 1.5 + k as f64) as f32).collect();
                        at += dk;
                        match (r * 7 + k * 3) % 11 {
                            0 => None,
                            1 => Some(vec![0.0; dk]),
                            _ => Some(v),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn acc(dims: &[usize], rows: &[Row]) -> CovStats {
        let mut st = CovStats::new(dims).unwrap();
        for row in rows {
            let r: Vec<Option<&[f32]>> = row.iter().map(|v| v.as_deref()).collect();
            st.accumulate_f32(&r).unwrap();
        }
        st
    }

    /// The reference, independent of the code under test: each vector normalised by hand in
    /// f64 (NULL and zero vectors as zero blocks), then the two-pass covariance divided by n.
    fn reference(dims: &[usize], rows: &[Row]) -> (Vec<f64>, DMatrix<f64>) {
        let d: usize = dims.iter().sum();
        let units: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .zip(dims)
                    .flat_map(|(v, &dk)| match v {
                        Some(v) => {
                            let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                            v.iter().map(|&x| if norm > 0.0 { x as f64 / norm } else { 0.0 }).collect()
                        }
                        None => vec![0.0; dk],
                    })
                    .collect()
            })
            .collect();
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..d).map(|i| units.iter().map(|u| u[i]).sum::<f64>() / n).collect();
        let cov = DMatrix::from_fn(d, d, |i, j| {
            units.iter().map(|u| (u[i] - mean[i]) * (u[j] - mean[j])).sum::<f64>() / n
        });
        (mean, cov)
    }

    fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
        a.iter().zip(b.iter()).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn covariance_matches_the_two_pass_reference_across_tiles_and_flushes() {
        // 300 dimensions span two tiles (256 + 44); 300 rows cross two flushes and leave a
        // partial buffer.
        for (dims, n) in [(vec![3usize, 5], 40usize), (vec![200, 60, 40], 300)] {
            let rs = rows(&dims, n, 11);
            let mut st = acc(&dims, &rs);
            let (mean, want) = reference(&dims, &rs);
            let got = st.covariance().unwrap();
            // f32 rounding of the unit vectors: ~6e-8 relative per element.
            assert!(max_abs_diff(&got, &want) < 1e-6, "{}", max_abs_diff(&got, &want));
            for (m, w) in st.mean().iter().zip(&mean) {
                assert!((m - w).abs() < 1e-6);
            }
            assert_eq!(st.n(), n as u64);
            for (k, &p) in st.present().iter().enumerate() {
                let want =
                    rs.iter().filter(|r| r[k].as_ref().is_some_and(|v| v.iter().any(|&x| x != 0.0))).count();
                assert_eq!(p, want as u64, "model {k}");
            }
            // The operator multiplies by the same matrix without forming it (both halves of
            // the off-diagonal tiles, the diagonal tiles, the centring term).
            let x = gaussian_matrix(st.dim(), 7, 3);
            let y = st.operator().unwrap().apply(&x);
            let diff = max_abs_diff(&y, &(&got * &x));
            assert!(diff < 1e-12, "{diff}");
            let diag = st.operator().unwrap().diagonal();
            for (i, v) in diag.iter().enumerate() {
                assert!((v - got[(i, i)]).abs() < 1e-15);
            }
        }
    }

    /// A plain f64 reference from the unit vectors the state sees (`combine_into`, as in
    /// `accumulate`), so that only the flush is compared: `(mean, covariance)`.
    fn f64_reference(dims: &[usize], rows: &[Row]) -> (DVector<f64>, DMatrix<f64>) {
        let d: usize = dims.iter().sum();
        let mut x = DMatrix::<f64>::zeros(rows.len(), d);
        let mut unit = vec![0.0f32; d];
        for (r, row) in rows.iter().enumerate() {
            let blocks: Vec<Option<Block<'_>>> = row.iter().map(|v| v.as_deref().map(Block::F32)).collect();
            combine_into(&blocks, dims, &ONES[..dims.len()], &mut unit).unwrap();
            for (i, &v) in unit.iter().enumerate() {
                x[(r, i)] = v as f64;
            }
        }
        let n = rows.len() as f64;
        let mean = DVector::from_fn(d, |i, _| x.column(i).sum() / n);
        for (i, mut col) in x.column_iter_mut().enumerate() {
            col.add_scalar_mut(-mean[i]);
        }
        (mean, x.tr_mul(&x) / n)
    }

    /// The largest `|C_ij − R_ij| / √(R_ii R_jj)`: errors on the scale of the entries' own
    /// variances (a correlation-scale error), meaningful also where `R_ij` is near 0.
    fn max_scaled_error(got: &DMatrix<f64>, want: &DMatrix<f64>) -> f64 {
        let d = want.nrows();
        let mut worst = 0.0f64;
        for j in 0..d {
            for i in 0..d {
                let scale = (want[(i, i)] * want[(j, j)]).sqrt();
                if scale > 0.0 {
                    worst = worst.max((got[(i, j)] - want[(i, j)]).abs() / scale);
                }
            }
        }
        worst
    }

    #[test]
    fn f32_products_match_an_f64_reference_and_threads_change_nothing() {
        // Two tiles (256 + 45 columns), three batches, the last one partial. Models 1 and 3
        // are Gaussian around an offset of 4 per element, so that the mean holds ~95% of their
        // squared norm (real embeddings have a strong common direction too), with a NULL or a
        // zero vector now and then; model 2 is one-dimensional, u = ±1 (the equality cases of
        // the parse checks).
        let dims = [200usize, 1, 100];
        let n = 2 * BATCH_ROWS + 120;
        let g = gaussian_matrix(301, n, 21);
        let rs: Vec<Row> = (0..n)
            .map(|r| {
                let block = |at: usize, len: usize, offset: f64| -> Vec<f32> {
                    (at..at + len).map(|i| (g[(i, r)] + offset) as f32).collect()
                };
                vec![
                    (r % 13 != 0).then(|| block(0, 200, 4.0)),
                    Some(block(200, 1, 0.0)),
                    Some(if r % 17 == 0 { vec![0.0; 100] } else { block(201, 100, 4.0) }),
                ]
            })
            .collect();
        let (mean, want) = f64_reference(&dims, &rs);
        let mut single = acc(&dims, &rs);
        let got = single.covariance().unwrap();
        // Each batch's f32 sums are off by about √B · 2^−24 ≈ 1e-6 of their size (rounding
        // errors adding up like a random walk; B · 2^−24 ≈ 1.5e-5 at worst), and the shift
        // makes that size the spread of the rows, Σ_batch v_i² ≈ B · C_ii: about
        // 1e-6 · √(C_ii C_jj) for one batch, the largest of the 45,000 entries up to a few
        // times more, and less over many batches, about 2^−24 · B / √n. Measured: 5.6e-7 here,
        // 1.4e-7 at D = 5,632 over 10,000 rows (`examples/cov_bench.rs`). Unshifted, the
        // error is relative to S/n = C + m mᵀ instead: 4.4e-6 here, which this bound rejects.
        let err = max_scaled_error(&got, &want);
        assert!(err < 2e-6, "{err:e}");
        for (m, w) in single.mean().iter().zip(mean.iter()) {
            assert!((m - w).abs() < 1e-12);
        }
        // A legitimate state, in particular Cauchy–Schwarz at equality for the 1-d model.
        let v = single.to_vec();
        CovStats::from_slice(&v).unwrap();
        // More threads give the same state bit for bit (tiles are independent units of work).
        static GUARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn guard(spawn: &mut dyn FnMut()) {
            GUARDS.fetch_add(1, Ordering::Relaxed);
            spawn()
        }
        for threads in [2, 5] {
            let mut st = CovStats::new(&dims).unwrap();
            st.set_threads(threads, guard);
            for row in &rs {
                let r: Vec<Option<&[f32]>> = row.iter().map(|v| v.as_deref()).collect();
                st.accumulate_f32(&r).unwrap();
            }
            assert_eq!(st.to_vec(), v, "{threads} threads");
        }
        // The full batches were flushed on several threads (the partial one is too small).
        assert_eq!(GUARDS.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_constant_dimension_has_zero_variance_exactly() {
        // The shift is the mean rounded to f32: a dimension with the same value in every row
        // is centred exactly, so its variance is 0, not rounding noise (and not negative), and
        // the terms of the mean are f64 (s = Σ u, not the sum of the rounded v).
        let mut st = CovStats::new(&[2, 1]).unwrap();
        for r in 0..(BATCH_ROWS + 7) {
            let a = (r as f32 * 0.37).sin();
            st.accumulate_f32(&[Some(&[a, 1.0 + a * a]), Some(&[-2.0])]).unwrap();
        }
        let c = st.covariance().unwrap();
        assert_eq!(c[(2, 2)], 0.0);
        // Covariances with it: f64 rounding of the sums only.
        assert!(c[(0, 2)].abs() < 1e-15 && c[(1, 2)].abs() < 1e-15, "{c}");
    }

    #[test]
    fn a_dimension_of_tiny_values_keeps_the_state_consistent() {
        // WordSim's MiniLM vectors have a dimension at ~1e-32 next to ordinary ones: in f32
        // its square underflows while its products with the others do not, and the parsed
        // state failed its Cauchy–Schwarz check (|S_ij| > √(S_ii S_jj)). Such elements count
        // as 0, so the state parses and the dimension has no variance.
        let mut st = CovStats::new(&[3]).unwrap();
        for r in 0..(2 * BATCH_ROWS + 5) {
            let a = 1.0 + (r as f32 * 0.37).sin() * 0.1;
            st.accumulate_f32(&[Some(&[a, 3e-32 * (1.0 + r as f32), 0.5])]).unwrap();
        }
        let v = st.to_vec();
        let mut back = CovStats::from_slice(&v).expect("the state parses");
        let c = back.covariance().unwrap();
        assert!(c[(1, 1)] == 0.0 && c[(0, 1)] == 0.0 && st.mean()[1] == 0.0, "{c}");
        assert!(c[(0, 0)] > 0.0);
    }

    #[test]
    fn missing_and_zero_vectors_are_zero_blocks_and_f64_blocks_normalise() {
        let mut st = CovStats::new(&[2, 1]).unwrap();
        let a = [3.0f32, 4.0];
        let z = [0.0f64];
        st.accumulate(&[Some(Block::F32(&a)), None]).unwrap();
        st.accumulate(&[Some(Block::F64(&[0.0, -2e300])), Some(Block::F64(&z))]).unwrap();
        st.accumulate(&[None, Some(Block::F64(&[-5.0]))]).unwrap();
        assert_eq!(st.present(), &[2, 1]);
        // Rows u: (0.6, 0.8, 0), (0, −1, 0), (0, 0, −1).
        let v = st.to_vec();
        assert_eq!(&v[..HEADER_LEN], &[STATE_MAGIC, STATE_VERSION, 2.0, 3.0]);
        assert_eq!(&v[HEADER_LEN..HEADER_LEN + 4], &[2.0, 1.0, 2.0, 1.0]);
        let sum = &v[HEADER_LEN + 4..HEADER_LEN + 7];
        assert!((sum[0] - 0.6).abs() < 1e-7 && (sum[1] + 0.2).abs() < 1e-7 && sum[2] == -1.0);
        let s = &v[HEADER_LEN + 7..];
        let want = [0.36, 0.48, 0.0, 1.64, 0.0, 1.0];
        for (g, w) in s.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{s:?}");
        }
    }

    #[test]
    fn a_single_row_has_zero_covariance_and_no_row_is_an_error() {
        let mut st = CovStats::new(&[2]).unwrap();
        assert_eq!(st.covariance(), Err(CovError::NoRows));
        assert!(matches!(st.operator(), Err(CovError::NoRows)));
        st.accumulate_f32(&[Some(&[1.0, 2.0])]).unwrap();
        assert_eq!(st.covariance().unwrap(), DMatrix::zeros(2, 2));
    }

    #[test]
    fn bad_rows_are_errors_that_leave_the_state_unchanged() {
        let dims = [2usize, 3];
        let mut st = acc(&dims, &rows(&dims, 5, 1));
        let before = st.to_vec();
        assert_eq!(
            st.accumulate_f32(&[Some(&[1.0, 2.0])]),
            Err(CovError::ModelCount { expected: 2, got: 1 })
        );
        assert_eq!(
            st.accumulate_f32(&[Some(&[1.0, 2.0]), Some(&[1.0, 2.0])]),
            Err(CovError::Row(CombineError::Dimension { model: 2, expected: 3, found: 2 }))
        );
        let err = st.accumulate_f32(&[Some(&[1.0, f32::NAN]), None]).unwrap_err();
        assert!(matches!(err, CovError::Row(CombineError::NonFinite { model: 1, .. })), "{err:?}");
        assert_eq!(err.to_string(), "model 1: element 2 is NaN: NaN and infinity are not allowed");
        assert_eq!(st.to_vec(), before);
    }

    #[test]
    fn invalid_layouts_are_refused_before_allocating() {
        assert!(matches!(CovStats::new(&[]), Err(CovError::Layout(_))));
        assert!(matches!(CovStats::new(&[3, 0]), Err(CovError::Layout(_))));
        assert_eq!(CovStats::new(&[MAX_DIMS, 1]).unwrap_err(), CovError::TooManyDims { got: MAX_DIMS + 1 });
        assert!(matches!(CovStats::new(&[usize::MAX, usize::MAX]), Err(CovError::TooManyDims { .. })));
        assert!(matches!(CovStats::new(&[1; MAX_MODELS + 1]), Err(CovError::Layout(_))));
        let mut a = CovStats::new(&[2, 3]).unwrap();
        let b = CovStats::new(&[3, 2]).unwrap();
        assert!(matches!(a.merge(&b), Err(CovError::Mismatch { .. })));
    }

    /// Sums agree to a multiple of `n`: every term is at most 1 in magnitude, so `n` is the
    /// scale of the sums (entries can cancel to near 0, where a relative test would be
    /// meaningless). `Σ u` is summed in f64: `1e-12 · n`. `Σ u uᵀ` adds f32 products of
    /// batches, and how the rows fall into batches differs between the states compared: each
    /// batch's sums are off by about `√B · 2^−24 ≈ 1e-6` of their size, so `1e-6 · n`.
    fn assert_same_state(a: &mut CovStats, b: &mut CovStats) {
        let (va, vb) = (a.to_vec(), b.to_vec());
        assert_eq!(va.len(), vb.len());
        let k = a.dims().len();
        assert_eq!(va[..HEADER_LEN + 2 * k], vb[..HEADER_LEN + 2 * k], "header, dims and counts");
        let n = a.n().max(1) as f64;
        let products = HEADER_LEN + 2 * k + a.dim();
        for (i, (x, y)) in va.iter().zip(&vb).enumerate().skip(HEADER_LEN + 2 * k) {
            let tol = if i < products { 1e-12 * n } else { 1e-6 * n };
            assert!((x - y).abs() <= tol, "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn merge_is_associative_and_equals_accumulating_everything() {
        let dims = [4usize, 6];
        let rs = rows(&dims, 420, 5);
        let mut all = acc(&dims, &rs);
        let (a, b, c) = (acc(&dims, &rs[..130]), acc(&dims, &rs[130..131]), acc(&dims, &rs[131..]));
        let mut left = a.clone();
        left.merge(&b).unwrap();
        left.merge(&c).unwrap();
        let mut bc = b.clone();
        bc.merge(&c).unwrap();
        let mut right = a.clone();
        right.merge(&bc).unwrap();
        assert_same_state(&mut left, &mut all);
        assert_same_state(&mut right, &mut all);
        // Merging an empty state changes nothing, bit for bit.
        let mut e = all.clone();
        e.merge(&CovStats::new(&dims).unwrap()).unwrap();
        assert_eq!(e.to_vec(), all.to_vec());
    }

    #[test]
    fn serialisation_round_trips_bit_for_bit_and_accumulation_continues_identically() {
        let dims = [200usize, 100];
        let rs = rows(&dims, 150, 9);
        let mut st = acc(&dims, &rs[..140]);
        let v = st.to_vec();
        assert_eq!(v.len(), serialized_len(&dims));
        let mut back = CovStats::from_slice(&v).unwrap();
        assert_eq!(back.to_vec(), v);
        for row in &rs[140..] {
            let r: Vec<Option<&[f32]>> = row.iter().map(|v| v.as_deref()).collect();
            st.accumulate_f32(&r).unwrap();
            back.accumulate_f32(&r).unwrap();
        }
        assert_eq!(back.to_vec(), st.to_vec());
        assert_eq!(back.covariance().unwrap(), st.covariance().unwrap());
    }

    fn corrupt(v: &[f64]) -> String {
        match CovStats::from_slice(v) {
            Err(CovError::Corrupt(why)) => why,
            Err(CovError::TooManyDims { got }) => format!("too many dims {got}"),
            other => panic!("accepted or wrong error: {:?}", other.map(|s| s.n())),
        }
    }

    #[test]
    fn forged_states_are_rejected_with_a_reason() {
        let dims = [2usize, 3];
        let good = acc(&dims, &rows(&dims, 20, 4)).to_vec();
        assert!(CovStats::from_slice(&good).is_ok());
        let k = dims.len();
        let (sum0, tri0) = (HEADER_LEN + 2 * k, HEADER_LEN + 2 * k + 5);
        let set = |i: usize, x: f64| {
            let mut v = good.clone();
            v[i] = x;
            v
        };
        assert!(corrupt(&[]).contains("at least"));
        assert!(corrupt(&good[..good.len() - 1]).contains("expected"));
        assert!(corrupt(&[good.clone(), vec![0.0]].concat()).contains("expected"));
        assert!(corrupt(&set(0, 1.0)).contains("magic"));
        assert!(corrupt(&set(1, 2.0)).contains("version"));
        for bad in [0.0, -1.0, 1.5, f64::NAN, 1e300, (MAX_MODELS + 1) as f64] {
            corrupt(&set(2, bad));
        }
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 2f64.powi(54)] {
            assert!(corrupt(&set(3, bad)).contains("row count"), "{bad}");
        }
        for bad in [0.0, -2.0, 2.5, f64::NAN, 1e12] {
            assert!(corrupt(&set(HEADER_LEN, bad)).contains("dimension"), "{bad}");
        }
        // Dimensions whose sum exceeds MAX_DIMS, in a short array: no allocation of D².
        let mut huge = good[..HEADER_LEN + 2 * k].to_vec();
        huge[HEADER_LEN] = MAX_DIMS as f64;
        assert!(corrupt(&huge).contains("too many dims"));
        assert!(corrupt(&set(HEADER_LEN + k, 21.0)).contains("above the row count"));
        assert!(corrupt(&set(HEADER_LEN + k, -1.0)).contains("present"));
        assert!(corrupt(&set(sum0 + 1, f64::NAN)).contains("NaN"));
        assert!(corrupt(&set(tri0 + 3, f64::INFINITY)).contains("inf"));
        assert!(corrupt(&set(sum0, 25.0)).contains("sum"));
        assert!(corrupt(&set(tri0, -0.5)).contains("sum of squares"));
        // The diagonal of model 1 no longer adds up to its present count.
        assert!(corrupt(&set(tri0, good[tri0] * 1.5)).contains("unit vectors"));
        // An off-diagonal sum of products beyond Cauchy–Schwarz.
        assert!(corrupt(&set(tri0 + 1, 1e3)).contains("exceeds"));
        // n = 0 with non-zero sums.
        let mut empty = CovStats::new(&dims).unwrap().to_vec();
        assert!(CovStats::from_slice(&empty).is_ok());
        empty[sum0] = 1e-300;
        assert!(corrupt(&empty).contains("without rows"));
    }

    /// Up to 300 rows: more than two flushes' worth of [`BATCH_ROWS`].
    fn arb_rows(dims: &'static [usize]) -> impl Strategy<Value = Vec<Row>> {
        (1usize..300, any::<u64>()).prop_map(move |(n, seed)| rows(dims, n, seed))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn merge_of_a_split_equals_accumulating_the_concatenation(
            rs in arb_rows(&[3, 1, 4]),
            cut in 0.0f64..1.0,
            swap in any::<bool>(),
        ) {
            let dims = [3usize, 1, 4];
            let cut = (cut * rs.len() as f64) as usize;
            let (a, b) = (acc(&dims, &rs[..cut]), acc(&dims, &rs[cut..]));
            let mut merged = if swap { b.clone() } else { a.clone() };
            merged.merge(if swap { &a } else { &b }).unwrap();
            let mut all = acc(&dims, &rs);
            assert_same_state(&mut merged, &mut all);
        }

        #[test]
        fn any_mutation_of_a_state_is_rejected_or_harmless(
            rs in arb_rows(&[2, 3]),
            at in 0.0f64..1.0,
            value in prop_oneof![
                Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), Just(1e308),
                -3.0f64..3.0,
            ],
        ) {
            let mut st = acc(&[2, 3], &rs);
            let mut v = st.to_vec();
            let i = ((at * v.len() as f64) as usize).min(v.len() - 1);
            v[i] = value;
            // Never a panic; whatever is accepted is a usable state.
            if let Ok(mut parsed) = CovStats::from_slice(&v) {
                if parsed.n() > 0 {
                    prop_assert!(parsed.covariance().unwrap().iter().all(|c| c.is_finite()));
                }
            }
        }
    }
}
