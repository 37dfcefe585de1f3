//! Solvers on [`RegStats`]: OLS, ridge and non-negative least squares, with or without an
//! intercept, plus diagnostics and exact k-fold cross-validation from per-fold statistics.
//!
//! Everything works on the Gram form `A β = b` built from the statistics:
//! * with an intercept, `A = Cxx` and `b = Cxy` (centred co-moments); `β0 = ȳ − x̄ᵀβ`;
//! * without, `A = Cxx + W x̄x̄ᵀ` and `b = Cxy + W x̄ ȳ` (raw weighted moments).
//!
//! Ridge adds `α I` to `A` (the intercept is never penalised: scikit-learn `Ridge` semantics).
//! `A` is decomposed with nalgebra's symmetric eigen-solver; eigenvalues below a relative cutoff
//! are treated as zero, which yields the minimum-norm solution for rank-deficient or collinear
//! features (as a pseudo-inverse / LAPACK `gelsd` does), and the eigenvectors of the discarded
//! directions name the features involved.
//!
//! Non-negative: Lawson–Hanson active-set NNLS on the same quadratic (scikit-learn's
//! `LinearRegression(positive=True)` solves the same problem with `scipy.optimize.nnls`).
//!
//! Numbers that are not numbers: every state is checked ([`RegStats::check`]) before use, and
//! every number that leaves (weights, intercept, r², rmse, standard errors, cross-validated
//! mse and r², prediction mse) is finite or the call fails with [`SolveError::Overflow`]; the
//! condition number is finite or `+∞` for a singular design. Matrices are rescaled by powers of
//! two before decomposition and residual sums of squares are formed on rescaled terms, which
//! is exact: the results are those of the unscaled arithmetic, without its spurious overflows.
//!
//! Long loops (eigen-decompositions, NNLS iterations, cross-validation folds) call
//! [`crate::interrupt::check`].

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::fpscale::{even_exponent, ldexp, Scaled};
use crate::interrupt;
use crate::regstats::{RegStats, StatsError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    /// Ridge penalty α ≥ 0 on the weights (never on the intercept).
    pub ridge: f64,
    /// Constrain every weight to be ≥ 0.
    pub nonnegative: bool,
    /// Fit an intercept (scikit-learn's default).
    pub fit_intercept: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions { ridge: 0.0, nonnegative: false, fit_intercept: true }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub r2: f64,
    pub rmse: f64,
    pub n_used: u64,
    pub n_skipped: u64,
    /// 2-norm condition number of the (centred) design, `sqrt(λmax / λmin)` of the Gram matrix;
    /// `f64::INFINITY` when it is singular.
    pub condition_number: f64,
    /// Standard errors of the weights (OLS / ridge sandwich formula); `None` where undefined
    /// (non-negative fits, too few rows).
    pub std_errors: Vec<Option<f64>>,
    /// Numerical rank of the Gram matrix.
    pub rank: usize,
    /// 0-based indices of features involved in a rank deficiency (empty when full rank).
    pub collinear: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SolveError {
    /// An option (ridge penalty, weights given to score) is out of its domain.
    InvalidOption(String),
    /// A state is malformed, inconsistent, over [`crate::regstats::MAX_FEATURES`], or merging
    /// states overflowed.
    State(StatsError),
    /// A result does not fit in an `f64`; the string names it.
    Overflow(String),
    /// The symmetric eigen-solver did not converge within its iteration limit.
    NoConvergence,
}

impl std::fmt::Display for SolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SolveError::InvalidOption(s) => f.write_str(s),
            SolveError::State(e) => e.fmt(f),
            SolveError::Overflow(what) => write!(f, "{what} is out of range for type double precision"),
            SolveError::NoConvergence => {
                f.write_str("the eigen-decomposition of the Gram matrix did not converge")
            }
        }
    }
}

impl std::error::Error for SolveError {}

impl From<StatsError> for SolveError {
    fn from(e: StatsError) -> Self {
        SolveError::State(e)
    }
}

fn overflow(what: &str) -> SolveError {
    SolveError::Overflow(what.to_string())
}

/// `Ok(v)` when `v` is finite, else `Err(Overflow(what))`.
fn finite(v: f64, what: &str) -> Result<f64, SolveError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(overflow(what))
    }
}

fn check_ridge(ridge: f64) -> Result<(), SolveError> {
    if !(ridge.is_finite() && ridge >= 0.0) {
        return Err(SolveError::InvalidOption(format!("ridge must be a finite number >= 0, got {ridge}")));
    }
    Ok(())
}

/// The Gram system of a state: `(A, b)`.
struct Gram {
    a: DMatrix<f64>,
    b: DVector<f64>,
}

fn gram(st: &RegStats, fit_intercept: bool) -> Result<Gram, SolveError> {
    let k = st.k;
    let mut a = DMatrix::zeros(k, k);
    let mut b = DVector::zeros(k);
    let extra = if fit_intercept { 0.0 } else { st.wsum };
    for i in 0..k {
        for j in 0..k {
            a[(i, j)] = st.c(i, j) + extra * st.mean[i] * st.mean[j];
        }
        b[i] = st.c(i, k) + extra * st.mean[i] * st.mean[k];
    }
    // Centred moments are finite in a checked state; raw ones (W x̄x̄ᵀ) may not be.
    if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(overflow("the uncentred second moments of the features (fit_intercept => false)"));
    }
    Ok(Gram { a, b })
}

/// Relative eigenvalue cutoff: directions whose eigenvalue is below `RCOND · λmax` carry no
/// information beyond rounding noise of the moments (a duplicated column lands near 1e-16).
const RCOND: f64 = 1e-12;

/// Iteration cap of the eigen-solver. nalgebra's default is no cap, and its implicit QR loop
/// is known to spin forever on some inputs (dimforge/nalgebra#1025): a backend stuck inside
/// it could not even be cancelled. Convergence takes about two QR steps per eigenvalue, so
/// this cap only cuts off a loop that is not converging.
fn max_eigen_iterations(k: usize) -> usize {
    1000 + 100 * k
}

/// Eigen-decomposition of a symmetric matrix `M = M_s · 2^exp`, where `M_s` (what was
/// decomposed) has its largest entry in `[1/4, 1)`.
struct Eigen {
    values: DVector<f64>,
    vectors: DMatrix<f64>,
    exp: i32,
}

fn decompose(m: &DMatrix<f64>) -> Result<Eigen, SolveError> {
    // One decomposition of a MAX_FEATURES-sized matrix is the longest uninterruptible step.
    interrupt::check();
    let k = m.nrows();
    if k == 0 {
        // nalgebra's tridiagonalisation does not accept an empty matrix.
        return Ok(Eigen { values: DVector::zeros(0), vectors: DMatrix::zeros(0, 0), exp: 0 });
    }
    let amax = m.amax();
    if !amax.is_finite() {
        return Err(overflow("the Gram matrix"));
    }
    // nalgebra divides by the largest entry itself, but scales the eigenvalues back, which can
    // overflow (λmax ≤ k · max|M|): decompose the power-of-two rescaled matrix instead. Its
    // normalised form is bit-identical, so eigenvectors are unchanged and eigenvalues exact.
    let exp = even_exponent(amax);
    let ms = m.map(|v| ldexp(v, -exp));
    let eig = SymmetricEigen::try_new(ms, f64::EPSILON, max_eigen_iterations(k))
        .ok_or(SolveError::NoConvergence)?;
    if eig.eigenvalues.iter().chain(eig.eigenvectors.iter()).any(|v| !v.is_finite()) {
        return Err(SolveError::NoConvergence);
    }
    Ok(Eigen { values: eig.eigenvalues, vectors: eig.eigenvectors, exp })
}

struct EigenSolve {
    beta: DVector<f64>,
    /// Pseudo-inverse of the rescaled (penalised) Gram matrix `M_s`: `M⁺ = pinv_s · 2^−exp`.
    pinv_s: DMatrix<f64>,
    exp: i32,
    rank: usize,
    null_vectors: Vec<DVector<f64>>,
}

impl Eigen {
    /// Minimum-norm solution of `M β = b`: `β = M_s⁺ (b · 2^−exp)`, the scales cancelling.
    fn solve(&self, b: &DVector<f64>) -> EigenSolve {
        let k = self.values.len();
        let lmax = self.values.iter().cloned().fold(0.0f64, f64::max);
        let cut = lmax * RCOND;
        let mut pinv_s = DMatrix::zeros(k, k);
        let mut rank = 0;
        let mut null_vectors = Vec::new();
        for (i, &l) in self.values.iter().enumerate() {
            let v = self.vectors.column(i);
            if l > cut && l > 0.0 {
                pinv_s += (v * v.transpose()) / l;
                rank += 1;
            } else {
                null_vectors.push(v.into_owned());
            }
        }
        // b may be far larger than M (huge labels): b_s can overflow, and so β, which the
        // caller's finiteness check reports.
        let b_s = b.map(|v| ldexp(v, -self.exp));
        let beta = &pinv_s * b_s;
        EigenSolve { beta, pinv_s, exp: self.exp, rank, null_vectors }
    }

    /// `sqrt(λmax / λmin)` (scale-free); `+∞` when singular.
    fn condition_number(&self) -> f64 {
        let ev = &self.values;
        let lmax = ev.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lmin = ev.iter().cloned().fold(f64::INFINITY, f64::min);
        if ev.is_empty() || lmax <= 0.0 {
            return f64::INFINITY;
        }
        if lmin <= lmax * RCOND || lmin <= 0.0 {
            f64::INFINITY
        } else {
            (lmax / lmin).sqrt()
        }
    }
}

/// Lawson–Hanson NNLS on the quadratic `βᵀMβ − 2bᵀβ`, `β ≥ 0`.
fn nnls_gram(m: &DMatrix<f64>, b: &DVector<f64>) -> Result<DVector<f64>, SolveError> {
    let k = m.nrows();
    if k == 0 {
        return Ok(DVector::zeros(0));
    }
    // Scaling M and b by the same power of two leaves β and every iterate unchanged (the
    // tolerances below are relative) and keeps b − Mβ within range.
    let e = even_exponent(m.amax().max(b.amax()));
    let (m, b) = (m.map(|v| ldexp(v, -e)), b.map(|v| ldexp(v, -e)));
    let scale = m.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(b.amax()).max(f64::MIN_POSITIVE);
    let tol = 1e-13 * scale * k as f64;
    let mut beta = DVector::zeros(k);
    let mut passive = vec![false; k];
    for _outer in 0..(3 * k + 10) {
        let w = &b - &m * &beta;
        let candidate = (0..k).filter(|&j| !passive[j]).max_by(|&i, &j| w[i].total_cmp(&w[j]));
        let Some(t) = candidate.filter(|&t| w[t] > tol) else { break };
        passive[t] = true;
        for _inner in 0..(3 * k + 10) {
            let idx: Vec<usize> = (0..k).filter(|&j| passive[j]).collect();
            let sub = DMatrix::from_fn(idx.len(), idx.len(), |r, c| m[(idx[r], idx[c])]);
            let sb = DVector::from_fn(idx.len(), |r, _| b[idx[r]]);
            // `decompose` checks for interrupts: once per inner iteration, the loop that made
            // a 400-feature solve ignore statement_timeout for 24 s.
            let s_p = decompose(&sub)?.solve(&sb).beta;
            let mut s = DVector::zeros(k);
            for (r, &j) in idx.iter().enumerate() {
                s[j] = s_p[r];
            }
            if !s.iter().all(|v| v.is_finite()) {
                return Err(overflow("the non-negative weights"));
            }
            if idx.iter().all(|&j| s[j] > 0.0) {
                beta = s;
                break;
            }
            let mut alpha = f64::INFINITY;
            for &j in &idx {
                if s[j] <= 0.0 {
                    let d = beta[j] - s[j];
                    if d > 0.0 {
                        alpha = alpha.min(beta[j] / d);
                    } else {
                        alpha = 0.0;
                    }
                }
            }
            let alpha = if alpha.is_finite() { alpha } else { 0.0 };
            beta += (&s - &beta) * alpha;
            // The variable(s) that limited the step are now (numerically) zero: release them.
            let zero = 1e-14 * beta.amax().max(f64::MIN_POSITIVE);
            for &j in &idx {
                if beta[j] <= zero {
                    beta[j] = 0.0;
                    passive[j] = false;
                }
            }
        }
    }
    Ok(beta)
}

/// Solves the regression described by `st`. `Ok(None)` when no rows were used.
pub fn solve(st: &RegStats, opts: SolveOptions) -> Result<Option<Fit>, SolveError> {
    check_ridge(opts.ridge)?;
    // Checks k against MAX_FEATURES first: nothing of size k is allocated before.
    st.check()?;
    if st.n == 0 {
        return Ok(None);
    }
    let k = st.k;
    let g = gram(st, opts.fit_intercept)?;
    // One decomposition of the unpenalised Gram matrix gives the OLS solution, the rank, the
    // collinear features and the condition number.
    let ea = decompose(&g.a)?;
    let sa = ea.solve(&g.b);
    let mut m = g.a.clone();
    let penalised = if opts.ridge == 0.0 {
        None
    } else {
        for i in 0..k {
            m[(i, i)] += opts.ridge;
        }
        if m.iter().any(|v| !v.is_finite()) {
            return Err(overflow("the ridge penalty added to the Gram matrix"));
        }
        Some(decompose(&m)?.solve(&g.b))
    };
    let es = penalised.as_ref().unwrap_or(&sa);
    let beta = if opts.nonnegative { nnls_gram(&m, &g.b)? } else { es.beta.clone() };
    if !beta.iter().all(|v| v.is_finite()) {
        return Err(overflow("a weight"));
    }
    let intercept = if opts.fit_intercept {
        finite(st.mean[k] - (0..k).map(|i| st.mean[i] * beta[i]).sum::<f64>(), "the intercept")?
    } else {
        0.0
    };
    let weights: Vec<f64> = beta.iter().cloned().collect();
    // Residual sum of squares on the training data, kept rescaled until each result is formed.
    let sse = residual_ss(st, &weights, intercept);
    let sst = st.c(k, k);
    let r2 = if sst > 0.0 {
        finite(1.0 - sse.div(sst).value(), "r2")?
    } else if sse.m == 0.0 {
        1.0
    } else {
        0.0
    };
    let rmse = finite(sse.div(st.wsum).sqrt().value(), "rmse")?;
    let dof = st.n as f64 - k as f64 - if opts.fit_intercept { 1.0 } else { 0.0 };
    let std_errors = if opts.nonnegative || dof <= 0.0 {
        vec![None; k]
    } else {
        let sigma2 = sse.div(dof);
        // Sandwich M⁺ A M⁺ σ² (= A⁺ σ² for OLS). With M⁺ = pinv_s · 2^−exp and A = A_s · 2^exp,
        // that is pinv_s A_s pinv_s · 2^−exp · σ²: the diagonal is formed rescaled.
        let a_s = g.a.map(|v| ldexp(v, -es.exp));
        let x = &es.pinv_s * a_s * &es.pinv_s;
        (0..k)
            .map(|i| {
                let cov = Scaled::new(x[(i, i)].max(0.0) * sigma2.m, sigma2.e - es.exp);
                finite(cov.sqrt().value(), "a standard error").map(Some)
            })
            .collect::<Result<_, _>>()?
    };
    let collinear = if sa.rank < k {
        (0..k).filter(|&i| sa.null_vectors.iter().any(|v| v[i].abs() > 1e-3)).collect()
    } else {
        Vec::new()
    };
    Ok(Some(Fit {
        weights,
        intercept,
        r2,
        rmse,
        n_used: st.n,
        n_skipped: st.skipped,
        condition_number: ea.condition_number(),
        std_errors,
        rank: sa.rank,
        collinear,
    }))
}

/// The regression of `st` refitted without feature `j` (0-based), with the same options: the
/// solve of the state with `j`'s row and column removed from its moments
/// ([`RegStats::without_feature`]), no scan of the rows. The fit's `weights` has `k − 1`
/// entries, in the order of the remaining features. `Ok(None)` when the state has no rows.
pub fn solve_without(st: &RegStats, j: usize, opts: SolveOptions) -> Result<Option<Fit>, SolveError> {
    solve(&st.without_feature(j)?, opts)
}

/// `Σ w (y − β0 − βᵀx)²` over the rows summarised by `st` (checked, `weights` finite of length
/// `k`): `Cyy − 2βᵀCxy + βᵀCxxβ + W (ȳ − β0 − βᵀx̄)²`, exact, no scan.
///
/// The same terms in the same order as the plain `f64` formula, each formed as a [`Scaled`]
/// number: the rounding is the plain formula's, but no partial sum overflows (weights of 1e308
/// made the plain formula compute ∞ − ∞, a NaN that `max(0)` then reported as an SSE of 0), and
/// small terms are not flushed to zero by a common scale.
fn residual_ss(st: &RegStats, weights: &[f64], intercept: f64) -> Scaled {
    let k = st.k;
    let s = Scaled::from;
    let mut quad = s(st.c(k, k));
    for i in 0..k {
        // 2·w_i is exact in Scaled form even where it would overflow as an f64.
        quad = quad.add(s(weights[i]).mul(2.0).mul(st.c(i, k)).neg());
        for j in 0..k {
            quad = quad.add(s(weights[i]).mul(weights[j]).mul(st.c(i, j)));
        }
    }
    let dot = (0..k).fold(Scaled::ZERO, |acc, i| acc.add(s(weights[i]).mul(st.mean[i])));
    let resid = s(st.mean[k]).add(s(intercept).neg()).add(dot.neg());
    let sse = quad.add(s(st.wsum).mul_scaled(resid).mul_scaled(resid));
    // A residual sum of squares is ≥ 0; rounding can leave it a hair below.
    if sse.m < 0.0 {
        Scaled::ZERO
    } else {
        sse
    }
}

/// Checks a model to score against a state of `k` features.
fn check_model(k: usize, weights: &[f64], intercept: f64) -> Result<(), SolveError> {
    if weights.len() != k {
        return Err(StatsError::FeatureCount { expected: k, got: weights.len() }.into());
    }
    if !intercept.is_finite() || weights.iter().any(|w| !w.is_finite()) {
        return Err(SolveError::InvalidOption("weights and intercept must be finite".into()));
    }
    Ok(())
}

/// Held-out weighted SSE of the model `(weights, intercept)` on the rows summarised by `fold`:
/// `Σ w (y − β0 − βᵀx)² = Cyy − 2βᵀCxy + βᵀCxxβ + W (ȳ − β0 − βᵀx̄)²`, exact, no scan.
/// `Err(Overflow)` when the SSE exceeds the `f64` range.
pub fn heldout_sse(fold: &RegStats, weights: &[f64], intercept: f64) -> Result<f64, SolveError> {
    fold.check()?;
    check_model(fold.k, weights, intercept)?;
    finite(residual_ss(fold, weights, intercept).value(), "the held-out sum of squared errors")
}

/// Weighted mean squared error of the prediction `intercept + weights·x` over the rows `st`
/// summarises (`heldout_sse / W`, formed without overflowing the SSE first). `Ok(None)` for a
/// state without rows.
pub fn prediction_mse(st: &RegStats, weights: &[f64], intercept: f64) -> Result<Option<f64>, SolveError> {
    st.check()?;
    check_model(st.k, weights, intercept)?;
    if st.n == 0 {
        return Ok(None);
    }
    finite(residual_ss(st, weights, intercept).div(st.wsum).value(), "the mean squared error").map(Some)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CvResult {
    pub ridge: f64,
    /// Pooled held-out mean squared error: Σ_f SSE_f / Σ_f W_f (`None` if no fold scored).
    pub mse: Option<f64>,
    /// Pooled held-out r²: 1 − Σ_f SSE_f / Σ_f SST_f, SST_f centred on fold f's own mean
    /// (`None` if the held-out labels have no variance).
    pub r2: Option<f64>,
    /// Folds that contributed (a fold whose training complement is empty is skipped).
    pub folds: usize,
}

/// Exact k-fold cross-validation from per-fold statistics: fold f is held out, the model is
/// fitted on the merge of the others, and scored by [`heldout_sse`]. Every fold is checked;
/// folds with rows must share one `k` (a fold without rows may have any `k`: it contributes
/// nothing).
pub fn cross_validate(
    folds: &[RegStats],
    ridges: &[f64],
    opts: SolveOptions,
) -> Result<Vec<CvResult>, SolveError> {
    for &ridge in ridges {
        check_ridge(ridge)?;
    }
    for fold in folds {
        interrupt::check();
        fold.check()?;
    }
    // Training statistics of each fold (the merge of all the others), computed once for all
    // ridges: F² merges of O(k²) each, interruptible between merges.
    let mut trains: Vec<Option<RegStats>> = Vec::with_capacity(folds.len());
    for (f, fold) in folds.iter().enumerate() {
        if fold.n == 0 {
            trains.push(None);
            continue;
        }
        let mut train = RegStats::new(fold.k);
        for (g, other) in folds.iter().enumerate() {
            if g == f || other.n == 0 {
                continue;
            }
            interrupt::check();
            if other.k != fold.k {
                return Err(StatsError::FeatureCount { expected: fold.k, got: other.k }.into());
            }
            train.merge_checked(other)?;
        }
        trains.push(Some(train));
    }
    let mut out = Vec::with_capacity(ridges.len());
    for &ridge in ridges {
        let (mut sse, mut w, mut sst, mut used) = (Scaled::ZERO, Scaled::ZERO, Scaled::ZERO, 0);
        for (fold, train) in folds.iter().zip(&trains) {
            let Some(train) = train else { continue };
            // `solve` checks for interrupts in each decomposition.
            let Some(fit) = solve(train, SolveOptions { ridge, ..opts })? else { continue };
            sse = sse.add(residual_ss(fold, &fit.weights, fit.intercept));
            w = w.add(Scaled::from(fold.wsum));
            sst = sst.add(Scaled::from(fold.c(fold.k, fold.k)));
            used += 1;
        }
        let mse = if w.m > 0.0 {
            Some(finite(sse.div_scaled(w).value(), "the cross-validated mean squared error")?)
        } else {
            None
        };
        let r2 = if sst.m > 0.0 {
            Some(finite(1.0 - sse.div_scaled(sst).value(), "the cross-validated r2")?)
        } else {
            None
        };
        out.push(CvResult { ridge, mse, r2, folds: used });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regstats::MAX_FEATURES;
    use proptest::prelude::*;

    type Rows = Vec<(Vec<f64>, f64, f64)>;

    fn stats(k: usize, rows: &Rows) -> RegStats {
        let mut st = RegStats::new(k);
        for (x, y, w) in rows {
            st.accumulate(x, *y, *w).unwrap();
        }
        st
    }

    /// Independent OLS/ridge reference: two-pass centring, normal equations, Gaussian
    /// elimination with partial pivoting (no shared code with the solver).
    #[allow(clippy::needless_range_loop)] // Gauss-Jordan on an augmented matrix, by index
    fn reference_fit(k: usize, rows: &Rows, ridge: f64) -> (Vec<f64>, f64) {
        let w: f64 = rows.iter().map(|r| r.2).sum();
        let mx: Vec<f64> = (0..k).map(|i| rows.iter().map(|r| r.2 * r.0[i]).sum::<f64>() / w).collect();
        let my = rows.iter().map(|r| r.2 * r.1).sum::<f64>() / w;
        let mut a = vec![vec![0.0; k + 1]; k];
        for r in rows {
            for i in 0..k {
                for j in 0..k {
                    a[i][j] += r.2 * (r.0[i] - mx[i]) * (r.0[j] - mx[j]);
                }
                a[i][k] += r.2 * (r.0[i] - mx[i]) * (r.1 - my);
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += ridge;
        }
        for c in 0..k {
            let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            a.swap(c, p);
            for r in 0..k {
                if r != c {
                    let f = a[r][c] / a[c][c];
                    for j in c..=k {
                        a[r][j] -= f * a[c][j];
                    }
                }
            }
        }
        let beta: Vec<f64> = (0..k).map(|i| a[i][k] / a[i][i]).collect();
        let b0 = my - (0..k).map(|i| beta[i] * mx[i]).sum::<f64>();
        (beta, b0)
    }

    fn objective(rows: &Rows, beta: &[f64], b0: f64) -> f64 {
        rows.iter()
            .map(|(x, y, w)| {
                let e = y - b0 - x.iter().zip(beta).map(|(a, b)| a * b).sum::<f64>();
                w * e * e
            })
            .sum()
    }

    fn rows(k: usize) -> impl Strategy<Value = Rows> {
        proptest::collection::vec(
            (proptest::collection::vec(-1.0f64..1.0, k), -5.0f64..5.0, 0.1f64..3.0),
            12..60,
        )
    }

    proptest! {
        #[test]
        fn ols_and_ridge_match_the_reference(r in rows(4), ridge in prop_oneof![Just(0.0), 0.001f64..10.0]) {
            let fit = solve(&stats(4, &r), SolveOptions { ridge, ..Default::default() }).unwrap().unwrap();
            let (beta, b0) = reference_fit(4, &r, ridge);
            for (g, w) in fit.weights.iter().zip(&beta) {
                prop_assert!((g - w).abs() <= 1e-8 * (1.0 + w.abs()), "{} vs {}", g, w);
            }
            prop_assert!((fit.intercept - b0).abs() <= 1e-8 * (1.0 + b0.abs()));
        }

        /// NNLS against exhaustive KKT search: the optimum of a convex QP with β ≥ 0 is the
        /// unconstrained optimum on some support set; enumerate all 2^k supports.
        #[test]
        fn nnls_is_the_best_feasible_support(r in rows(4)) {
            let fit = solve(&stats(4, &r), SolveOptions { nonnegative: true, ..Default::default() }).unwrap().unwrap();
            prop_assert!(fit.weights.iter().all(|&w| w >= 0.0));
            let mut best = f64::INFINITY;
            for mask in 0u32..16 {
                let idx: Vec<usize> = (0..4).filter(|i| mask & (1 << i) != 0).collect();
                let sub: Rows = r.iter().map(|(x, y, w)| (idx.iter().map(|&i| x[i]).collect(), *y, *w)).collect();
                let (beta_s, b0) = if idx.is_empty() {
                    let w: f64 = r.iter().map(|x| x.2).sum();
                    (vec![], r.iter().map(|x| x.2 * x.1).sum::<f64>() / w)
                } else {
                    reference_fit(idx.len(), &sub, 0.0)
                };
                if beta_s.iter().all(|&b| b >= 0.0) {
                    let mut full = vec![0.0; 4];
                    for (j, &i) in idx.iter().enumerate() { full[i] = beta_s[j]; }
                    best = best.min(objective(&r, &full, b0));
                }
            }
            let got = objective(&r, &fit.weights, fit.intercept);
            prop_assert!(got <= best * (1.0 + 1e-9) + 1e-12, "{} vs {}", got, best);
        }

        /// Exact k-fold CV from per-fold statistics equals refitting per fold and scoring
        /// the held-out rows one by one.
        #[test]
        fn cross_validation_equals_brute_force(r in rows(3), folds in 2usize..6, ridge in 0.0f64..2.0) {
            let fold_of = |i: usize| (i * 7 + 3) % folds;
            let per_fold: Vec<RegStats> = (0..folds)
                .map(|f| stats(3, &r.iter().enumerate().filter(|(i, _)| fold_of(*i) == f).map(|(_, x)| x.clone()).collect()))
                .collect();
            let cv = cross_validate(&per_fold, &[ridge], SolveOptions::default()).unwrap();
            let (mut sse, mut w, mut sst) = (0.0, 0.0, 0.0);
            for f in 0..folds {
                let test: Rows = r.iter().enumerate().filter(|(i, _)| fold_of(*i) == f).map(|(_, x)| x.clone()).collect();
                let train: Rows = r.iter().enumerate().filter(|(i, _)| fold_of(*i) != f).map(|(_, x)| x.clone()).collect();
                if test.is_empty() || train.is_empty() { continue; }
                let (beta, b0) = reference_fit(3, &train, ridge);
                sse += objective(&test, &beta, b0);
                let tw: f64 = test.iter().map(|x| x.2).sum();
                let ty = test.iter().map(|x| x.2 * x.1).sum::<f64>() / tw;
                sst += test.iter().map(|x| x.2 * (x.1 - ty) * (x.1 - ty)).sum::<f64>();
                w += tw;
            }
            let mse = cv[0].mse.unwrap();
            prop_assert!((mse - sse / w).abs() <= 1e-9 * (1.0 + sse / w), "{} vs {}", mse, sse / w);
            prop_assert!((cv[0].r2.unwrap() - (1.0 - sse / sst)).abs() <= 1e-9);
        }
    }

    /// The rows with feature `j` deleted.
    fn drop_column(r: &Rows, j: usize) -> Rows {
        r.iter()
            .map(|(x, y, w)| {
                (x.iter().enumerate().filter(|(i, _)| *i != j).map(|(_, v)| *v).collect(), *y, *w)
            })
            .collect()
    }

    proptest! {
        /// Ablation (evaluate's `(without <model>)` rows): refitting from the stored state with
        /// feature j's row and column removed equals fitting from scratch on the rows with column
        /// j deleted, for OLS, ridge and non-negative fits, with and without an intercept.
        #[test]
        fn dropping_a_feature_equals_fitting_without_its_column(
            r in rows(4),
            j in 0usize..4,
            ridge in prop_oneof![Just(0.0), 0.001f64..10.0],
            nonnegative in any::<bool>(),
            fit_intercept in any::<bool>(),
        ) {
            let opts = SolveOptions { ridge, nonnegative, fit_intercept };
            let got = solve_without(&stats(4, &r), j, opts).unwrap().unwrap();
            let reduced = drop_column(&r, j);
            let want = solve(&stats(3, &reduced), opts).unwrap().unwrap();
            prop_assert_eq!(got.weights.len(), 3);
            for (g, w) in got.weights.iter().zip(&want.weights) {
                prop_assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "{:?} vs {:?}", got.weights, want.weights);
            }
            prop_assert!((got.intercept - want.intercept).abs() <= 1e-9 * (1.0 + want.intercept.abs()));
            prop_assert!((got.r2 - want.r2).abs() <= 1e-9);
            prop_assert_eq!((got.n_used, got.n_skipped), (want.n_used, want.n_skipped));
            // OLS and ridge with an intercept also against the independent reference solver.
            if !nonnegative && fit_intercept {
                let (beta, b0) = reference_fit(3, &reduced, ridge);
                for (g, w) in got.weights.iter().zip(&beta) {
                    prop_assert!((g - w).abs() <= 1e-8 * (1.0 + w.abs()), "{} vs {}", g, w);
                }
                prop_assert!((got.intercept - b0).abs() <= 1e-8 * (1.0 + b0.abs()));
            }
        }

        /// The reduced state is the state accumulated from the reduced rows (moments to rounding).
        #[test]
        fn the_reduced_state_is_the_state_of_the_reduced_rows(r in rows(3), j in 0usize..3) {
            let got = stats(3, &r).without_feature(j).unwrap();
            let want = stats(2, &drop_column(&r, j));
            prop_assert_eq!((got.k, got.n, got.skipped), (want.k, want.n, want.skipped));
            prop_assert_eq!(got.wsum, want.wsum);
            for (g, w) in got.mean.iter().chain(&got.comoment).zip(want.mean.iter().chain(&want.comoment)) {
                prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{} vs {}", g, w);
            }
            prop_assert!(got.check().is_ok());
        }
    }

    #[test]
    fn dropping_the_only_feature_leaves_the_mean_and_bad_indices_are_errors() {
        // y = 2, 4, 9 on x = 1, 2, 3: without x the fit is the weighted mean of y.
        let st = stats(1, &vec![(vec![1.0], 2.0, 1.0), (vec![2.0], 4.0, 1.0), (vec![3.0], 9.0, 2.0)]);
        let fit = solve_without(&st, 0, SolveOptions::default()).unwrap().unwrap();
        assert!(fit.weights.is_empty());
        assert!((fit.intercept - (2.0 + 4.0 + 18.0) / 4.0).abs() < 1e-15, "{}", fit.intercept);
        assert_eq!(
            solve_without(&st, 1, SolveOptions::default()),
            Err(SolveError::State(StatsError::FeatureCount { expected: 1, got: 2 }))
        );
        // A forged state is refused before anything is removed from it.
        let bad = RegStats { wsum: -1.0, ..st.clone() };
        assert!(matches!(solve_without(&bad, 0, SolveOptions::default()), Err(SolveError::State(_))));
        // Without rows: nothing to refit.
        assert_eq!(solve_without(&RegStats::new(3), 1, SolveOptions::default()), Ok(None));
    }

    fn all_finite(fit: &Fit) -> bool {
        fit.weights.iter().chain([&fit.intercept, &fit.r2, &fit.rmse]).all(|v| v.is_finite())
            && fit.std_errors.iter().all(|s| s.is_none_or(f64::is_finite))
            && (fit.condition_number.is_finite() || fit.condition_number == f64::INFINITY)
    }

    #[test]
    fn over_the_feature_cap_is_an_error_before_allocating() {
        // 2^40 features and empty vectors: the Gram matrix alone would be 2^80 elements. Every
        // entry point refuses before allocating anything of that size.
        let st = RegStats { k: 1 << 40, n: 1, skipped: 0, wsum: 1.0, mean: vec![], comoment: vec![] };
        let cap = SolveError::State(StatsError::TooManyFeatures { got: 1 << 40 });
        assert_eq!(solve(&st, SolveOptions { nonnegative: true, ..Default::default() }), Err(cap.clone()));
        assert_eq!(
            cross_validate(&[st.clone(), st.clone()], &[0.0], SolveOptions::default()),
            Err(cap.clone())
        );
        assert_eq!(prediction_mse(&st, &[], 0.0), Err(cap.clone()));
        assert_eq!(heldout_sse(&st, &[], 0.0), Err(cap));
        // Just over the limit, built the legitimate way.
        let mut st = RegStats::new(MAX_FEATURES + 1);
        st.accumulate(&vec![0.5; MAX_FEATURES + 1], 1.0, 1.0).unwrap();
        assert_eq!(
            solve(&st, SolveOptions::default()),
            Err(SolveError::State(StatsError::TooManyFeatures { got: MAX_FEATURES + 1 }))
        );
    }

    #[test]
    fn prediction_mse_of_huge_weights_is_an_error_not_zero() {
        // Rows x = 1, 2, 3 with y = 2, 4, 7 (the regression test's data).
        let st = stats(1, &vec![(vec![1.0], 2.0, 1.0), (vec![2.0], 4.0, 1.0), (vec![3.0], 7.0, 1.0)]);
        assert!((prediction_mse(&st, &[2.0], 0.0).unwrap().unwrap() - 1.0 / 3.0).abs() < 1e-15);
        // Issue 11 item 9: weight 1e308 made the SSE ∞ − ∞ = NaN, and max(0) reported 0.
        assert!(matches!(prediction_mse(&st, &[1e308], 0.0), Err(SolveError::Overflow(_))));
        assert!(matches!(heldout_sse(&st, &[1e308], 0.0), Err(SolveError::Overflow(_))));
        // Huge but representable: Σ(y − 1e150·x)² / 3 ≈ 1e300 · 14 / 3.
        let want = [(1.0f64, 2.0f64), (2.0, 4.0), (3.0, 7.0)]
            .iter()
            .map(|(x, y)| (y - 1e150 * x).powi(2))
            .sum::<f64>()
            / 3.0;
        let got = prediction_mse(&st, &[1e150], 0.0).unwrap().unwrap();
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        // The SSE itself overflows (W = 1e10 rows' worth of weight) while the MSE does not.
        let heavy = stats(1, &vec![(vec![1.0], 2.0, 1e10), (vec![2.0], 4.0, 1e10), (vec![3.0], 7.0, 1e10)]);
        let mse = prediction_mse(&heavy, &[1e153], 0.0).unwrap().unwrap();
        assert!(mse.is_finite() && (mse / (1e306 * 14.0 / 3.0) - 1.0).abs() < 1e-12, "{mse}");
        assert!(matches!(heldout_sse(&heavy, &[1e153], 0.0), Err(SolveError::Overflow(_))));
        // Non-finite or mis-sized models.
        assert!(matches!(prediction_mse(&st, &[f64::NAN], 0.0), Err(SolveError::InvalidOption(_))));
        assert!(matches!(prediction_mse(&st, &[1.0], f64::INFINITY), Err(SolveError::InvalidOption(_))));
        assert_eq!(
            prediction_mse(&st, &[1.0, 2.0], 0.0),
            Err(SolveError::State(StatsError::FeatureCount { expected: 1, got: 2 }))
        );
        assert_eq!(prediction_mse(&RegStats::new(1), &[1.0], 0.0), Ok(None));
    }

    #[test]
    fn cross_validation_of_extremes_is_an_error_not_infinity() {
        // Folds of ordinary rows, and one fold of a single row labelled 1e300: its held-out
        // SSE is ~1e600. That used to come back as mse = Infinity and r² = −Infinity.
        let fold = |rows: &[(f64, f64)]| stats(1, &rows.iter().map(|&(x, y)| (vec![x], y, 1.0)).collect());
        let normal =
            [fold(&[(0.0, 1.0), (1.0, 3.0), (0.5, 2.5)]), fold(&[(0.2, 1.5), (0.9, 2.5), (0.4, 1.0)])];
        let extreme = fold(&[(0.5, 1e300)]);
        let folds = [normal[0].clone(), normal[1].clone(), extreme];
        for ridge in [0.0, 1.0] {
            let cv = cross_validate(&folds, &[ridge], SolveOptions::default());
            assert!(
                matches!(cv, Err(SolveError::Overflow(_)) | Err(SolveError::State(StatsError::Overflow(_)))),
                "{cv:?}"
            );
        }
        // Held-out r² = 1 − SSE/SST with SST tiny: 1 − 1e300/1e-300 is not a float8.
        let flat = [fold(&[(0.0, 0.0), (1.0, 1e-150)]), fold(&[(0.0, 1e150), (1.0, -1e150)])];
        match cross_validate(&flat, &[0.0], SolveOptions::default()) {
            Ok(cv) => assert!(cv
                .iter()
                .all(|r| r.mse.is_none_or(f64::is_finite) && r.r2.is_none_or(f64::is_finite))),
            Err(e) => assert!(
                matches!(e, SolveError::Overflow(_) | SolveError::State(StatsError::Overflow(_))),
                "{e:?}"
            ),
        }
        // An empty fold of another k (the aggregate's k = 0 start state) contributes nothing.
        let mut empty = RegStats::new(0);
        empty.skip();
        let cv =
            cross_validate(&[normal[0].clone(), normal[1].clone(), empty], &[0.0], SolveOptions::default())
                .unwrap();
        assert_eq!(cv[0].folds, 2);
        // Invalid ridges are refused up front.
        assert!(matches!(
            cross_validate(&normal, &[f64::NAN], SolveOptions::default()),
            Err(SolveError::InvalidOption(_))
        ));
    }

    #[test]
    fn forged_but_consistent_states_give_errors_not_nan_weights() {
        // A state that passes every consistency check but whose solution does not fit a
        // float8: variance 1e-308, covariance 1, label variance 1e308 → β = 1e308, and the
        // intercept ȳ − x̄β with x̄ = 10 is 1e309.
        let st = RegStats {
            k: 1,
            n: 3,
            skipped: 0,
            wsum: 3.0,
            mean: vec![10.0, 0.0],
            comoment: vec![1e-308, 1.0, 1e308],
        };
        assert!(st.check().is_ok());
        let r = solve(&st, SolveOptions::default());
        assert!(matches!(r, Err(SolveError::Overflow(_))), "{r:?}");
        // The same without the mean offset: the weight fits, the results are finite.
        let st = RegStats { mean: vec![0.0, 0.0], ..st };
        let fit = solve(&st, SolveOptions::default()).unwrap().unwrap();
        assert!(all_finite(&fit), "{fit:?}");
        // Moments near f64::MAX: eigenvalues λ ≤ k·max|A| used to overflow when scaled back.
        let c = f64::MAX / 2.0;
        let st = RegStats {
            k: 2,
            n: 10,
            skipped: 0,
            wsum: 10.0,
            mean: vec![0.0; 3],
            comoment: vec![c, 0.9 * c, 0.1 * c, c, 0.2 * c, c],
        };
        assert!(st.check().is_ok());
        for opts in [
            SolveOptions::default(),
            SolveOptions { nonnegative: true, ..Default::default() },
            SolveOptions { ridge: 1e300, ..Default::default() },
            SolveOptions { fit_intercept: false, ..Default::default() },
        ] {
            let fit = solve(&st, opts).unwrap().unwrap();
            assert!(all_finite(&fit), "{opts:?}: {fit:?}");
            assert!(fit.condition_number.is_finite(), "{opts:?}: {fit:?}");
        }
        // Raw moments that do not fit (fit_intercept => false with W·x̄² ≈ 1e600).
        let st = RegStats {
            k: 1,
            n: 2,
            skipped: 0,
            wsum: 1e300,
            mean: vec![1e150, 1.0],
            comoment: vec![1.0, 0.0, 1.0],
        };
        assert!(matches!(
            solve(&st, SolveOptions { fit_intercept: false, ..Default::default() }),
            Err(SolveError::Overflow(_))
        ));
        assert!(all_finite(&solve(&st, SolveOptions::default()).unwrap().unwrap()));
        // A ridge penalty that overflows the Gram diagonal (C00 = MAX/2).
        let st =
            RegStats { k: 1, n: 2, skipped: 0, wsum: 2.0, mean: vec![0.0, 0.0], comoment: vec![c, 0.0, 1.0] };
        assert!(matches!(
            solve(&st, SolveOptions { ridge: f64::MAX, ..Default::default() }),
            Err(SolveError::Overflow(_))
        ));
    }

    #[test]
    fn a_state_without_features_solves_to_its_mean() {
        // k = 0 with rows cannot come from SQL (the first row fixes k ≥ 1) but can be forged;
        // nalgebra's eigen-solver does not take an empty matrix.
        let mut st = RegStats::new(0);
        st.accumulate(&[], 3.0, 1.0).unwrap();
        st.accumulate(&[], 5.0, 1.0).unwrap();
        for opts in
            [SolveOptions::default(), SolveOptions { nonnegative: true, ridge: 1.0, fit_intercept: true }]
        {
            let fit = solve(&st, opts).unwrap().unwrap();
            assert_eq!((fit.weights.len(), fit.intercept, fit.r2, fit.rmse), (0, 4.0, 0.0, 1.0));
        }
    }

    #[test]
    fn duplicated_feature_gives_the_minimum_norm_solution_and_names_it() {
        // y = 1 + 4 x1 + 2 x2 exactly; x3 duplicates x1. The minimum-norm solution splits x1's
        // weight evenly: (2, 2, 2) for (x1, x2, x3).
        let r: Rows = (0..40)
            .map(|i| {
                let (x1, x2) = (((i * 13) % 17) as f64 / 17.0, ((i * 5) % 11) as f64 / 11.0);
                (vec![x1, x2, x1], 1.0 + 4.0 * x1 + 2.0 * x2, 1.0)
            })
            .collect();
        let fit = solve(&stats(3, &r), SolveOptions::default()).unwrap().unwrap();
        for (g, w) in fit.weights.iter().zip([2.0, 2.0, 2.0]) {
            assert!((g - w).abs() < 1e-9, "{:?}", fit.weights);
        }
        assert!((fit.intercept - 1.0).abs() < 1e-9);
        assert_eq!(fit.rank, 2);
        assert_eq!(fit.collinear, vec![0, 2]);
        assert!(fit.condition_number.is_infinite());
        assert!(fit.weights.iter().all(|w| w.is_finite()));
    }

    #[test]
    fn far_from_zero_with_small_spread_is_exact() {
        // y ≈ 1e6, features ≈ 1e3 + tiny dyadic offsets, exact linear relation: raw sums of
        // squares would cancel catastrophically; the centred statistics recover it.
        let r: Rows = (0..200)
            .map(|i| {
                let a = ((i * 37) % 101) as f64 / 1024.0;
                let b = ((i * 53) % 97) as f64 / 1024.0;
                (vec![1000.0 + a, 1000.0 + b], 1e6 + 2.0 * a - 3.0 * b, 1.0)
            })
            .collect();
        let fit = solve(&stats(2, &r), SolveOptions::default()).unwrap().unwrap();
        // The exact answer: y = β0 + 2 x1 − 3 x2 with β0 = 1e6 − 2000 + 3000.
        assert!((fit.weights[0] - 2.0).abs() <= 1e-6 * 2.0, "{:?}", fit.weights);
        assert!((fit.weights[1] + 3.0).abs() <= 1e-6 * 3.0, "{:?}", fit.weights);
        assert!((fit.intercept - 1_001_000.0).abs() <= 1e-6 * 1_001_000.0, "{}", fit.intercept);
        assert!((fit.r2 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn noisy_far_from_zero_matches_the_shifted_problem() {
        // Shifting x and y by exact constants changes only the intercept: solve the shifted,
        // well-scaled problem independently as the reference.
        let noise = |i: usize| (((i * 7919) % 1000) as f64 - 500.0) / 4096.0;
        let base: Rows = (0..300)
            .map(|i| {
                let a = ((i * 37) % 101) as f64 / 1024.0;
                let b = ((i * 53) % 97) as f64 / 1024.0;
                (vec![a, b], 0.5 * a - 0.25 * b + noise(i), 1.0)
            })
            .collect();
        let shifted: Rows =
            base.iter().map(|(x, y, w)| (vec![x[0] + 1000.0, x[1] + 1000.0], y + 1e6, *w)).collect();
        let (beta, b0) = reference_fit(2, &base, 0.0);
        let fit = solve(&stats(2, &shifted), SolveOptions::default()).unwrap().unwrap();
        for (g, w) in fit.weights.iter().zip(&beta) {
            assert!((g - w).abs() <= 1e-6 * w.abs(), "{g} vs {w}");
        }
        let want_b0 = b0 + 1e6 - 1000.0 * (beta[0] + beta[1]);
        assert!((fit.intercept - want_b0).abs() <= 1e-6 * want_b0.abs());
    }

    #[test]
    fn no_intercept_and_degenerate_inputs() {
        // y = 3 x exactly through the origin.
        let r: Rows = (1..10).map(|i| (vec![i as f64], 3.0 * i as f64, 1.0)).collect();
        let fit = solve(&stats(1, &r), SolveOptions { fit_intercept: false, ..Default::default() })
            .unwrap()
            .unwrap();
        assert!((fit.weights[0] - 3.0).abs() < 1e-12);
        assert_eq!(fit.intercept, 0.0);
        assert_eq!(solve(&RegStats::new(2), SolveOptions::default()).unwrap(), None);
        assert!(solve(&stats(1, &r), SolveOptions { ridge: -1.0, ..Default::default() }).is_err());
        assert!(solve(&stats(1, &r), SolveOptions { ridge: f64::NAN, ..Default::default() }).is_err());
        // A single row: finite weights (minimum norm: zero), no standard errors.
        let one = stats(2, &vec![(vec![0.5, 0.25], 1.0, 1.0)]);
        let fit = solve(&one, SolveOptions::default()).unwrap().unwrap();
        assert!(fit.weights.iter().all(|w| w.is_finite()) && fit.intercept == 1.0);
        assert!(fit.std_errors.iter().all(|s| s.is_none()));
    }
}
