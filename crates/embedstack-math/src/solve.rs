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

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::regstats::RegStats;

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
    InvalidOption(String),
}

impl std::fmt::Display for SolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SolveError::InvalidOption(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for SolveError {}

/// The Gram system of a state: `(A, b, yy, W)` where `yy` is Σw·y² in the same centring.
struct Gram {
    a: DMatrix<f64>,
    b: DVector<f64>,
    yy: f64,
}

fn gram(st: &RegStats, fit_intercept: bool) -> Gram {
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
    let yy = st.c(k, k) + extra * st.mean[k] * st.mean[k];
    Gram { a, b, yy }
}

/// Relative eigenvalue cutoff: directions whose eigenvalue is below `RCOND · λmax` carry no
/// information beyond rounding noise of the moments (a duplicated column lands near 1e-16).
const RCOND: f64 = 1e-12;

struct EigenSolve {
    beta: DVector<f64>,
    /// Pseudo-inverse of the (penalised) Gram matrix.
    pinv: DMatrix<f64>,
    rank: usize,
    null_vectors: Vec<DVector<f64>>,
}

fn eigen_solve(m: &DMatrix<f64>, b: &DVector<f64>) -> EigenSolve {
    let k = m.nrows();
    let eig = SymmetricEigen::new(m.clone());
    let lmax = eig.eigenvalues.iter().cloned().fold(0.0f64, f64::max);
    let cut = lmax * RCOND;
    let mut pinv = DMatrix::zeros(k, k);
    let mut rank = 0;
    let mut null_vectors = Vec::new();
    for (i, &l) in eig.eigenvalues.iter().enumerate() {
        let v = eig.eigenvectors.column(i);
        if l > cut && l > 0.0 {
            pinv += (&v * v.transpose()) / l;
            rank += 1;
        } else {
            null_vectors.push(v.into_owned());
        }
    }
    let beta = &pinv * b;
    EigenSolve { beta, pinv, rank, null_vectors }
}

fn condition_number(a: &DMatrix<f64>) -> f64 {
    let ev = SymmetricEigen::new(a.clone()).eigenvalues;
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

/// Lawson–Hanson NNLS on the quadratic `βᵀMβ − 2bᵀβ`, `β ≥ 0`.
fn nnls_gram(m: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    let k = m.nrows();
    let scale = m.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(b.amax()).max(f64::MIN_POSITIVE);
    let tol = 1e-13 * scale * k as f64;
    let mut beta = DVector::zeros(k);
    let mut passive = vec![false; k];
    for _outer in 0..(3 * k + 10) {
        let w = b - m * &beta;
        let candidate = (0..k).filter(|&j| !passive[j]).max_by(|&i, &j| w[i].total_cmp(&w[j]));
        let Some(t) = candidate.filter(|&t| w[t] > tol) else { break };
        passive[t] = true;
        for _inner in 0..(3 * k + 10) {
            let idx: Vec<usize> = (0..k).filter(|&j| passive[j]).collect();
            let sub = DMatrix::from_fn(idx.len(), idx.len(), |r, c| m[(idx[r], idx[c])]);
            let sb = DVector::from_fn(idx.len(), |r, _| b[idx[r]]);
            let s_p = eigen_solve(&sub, &sb).beta;
            let mut s = DVector::zeros(k);
            for (r, &j) in idx.iter().enumerate() {
                s[j] = s_p[r];
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
    beta
}

/// Solves the regression described by `st`. `Ok(None)` when no rows were used.
pub fn solve(st: &RegStats, opts: SolveOptions) -> Result<Option<Fit>, SolveError> {
    if !(opts.ridge.is_finite() && opts.ridge >= 0.0) {
        return Err(SolveError::InvalidOption(format!(
            "ridge must be a finite number >= 0, got {}",
            opts.ridge
        )));
    }
    if st.n == 0 || st.wsum <= 0.0 {
        return Ok(None);
    }
    let k = st.k;
    let g = gram(st, opts.fit_intercept);
    let mut m = g.a.clone();
    for i in 0..k {
        m[(i, i)] += opts.ridge;
    }
    let es = eigen_solve(&m, &g.b);
    let beta = if opts.nonnegative { nnls_gram(&m, &g.b) } else { es.beta.clone() };
    let intercept =
        if opts.fit_intercept { st.mean[k] - (0..k).map(|i| st.mean[i] * beta[i]).sum::<f64>() } else { 0.0 };
    // Residual sum of squares on the training data, from the unpenalised Gram form.
    let sse = (g.yy - 2.0 * beta.dot(&g.b) + (beta.transpose() * &g.a * &beta)[(0, 0)]).max(0.0);
    let sst = st.c(k, k);
    let r2 = if sst > 0.0 {
        1.0 - sse / sst
    } else if sse == 0.0 {
        1.0
    } else {
        0.0
    };
    let rmse = (sse / st.wsum).sqrt();
    let dof = st.n as f64 - k as f64 - if opts.fit_intercept { 1.0 } else { 0.0 };
    let std_errors = if opts.nonnegative || dof <= 0.0 {
        vec![None; k]
    } else {
        let sigma2 = sse / dof;
        // Sandwich M⁺ A M⁺ (= A⁺ for OLS).
        let cov = &es.pinv * &g.a * &es.pinv * sigma2;
        (0..k).map(|i| Some(cov[(i, i)].max(0.0).sqrt())).collect()
    };
    let unpenalised = if opts.ridge == 0.0 { es.rank } else { eigen_solve(&g.a, &g.b).rank };
    let collinear = if unpenalised < k {
        let null = eigen_solve(&g.a, &g.b).null_vectors;
        (0..k).filter(|&i| null.iter().any(|v| v[i].abs() > 1e-3)).collect()
    } else {
        Vec::new()
    };
    Ok(Some(Fit {
        weights: beta.iter().cloned().collect(),
        intercept,
        r2,
        rmse,
        n_used: st.n,
        n_skipped: st.skipped,
        condition_number: condition_number(&g.a),
        std_errors,
        rank: unpenalised,
        collinear,
    }))
}

/// Held-out weighted SSE of the model `(weights, intercept)` on the rows summarised by `fold`:
/// `Σ w (y − β0 − βᵀx)² = Cyy − 2βᵀCxy + βᵀCxxβ + W (ȳ − β0 − βᵀx̄)²`, exact, no scan.
pub fn heldout_sse(fold: &RegStats, weights: &[f64], intercept: f64) -> f64 {
    let k = fold.k;
    let mut quad = fold.c(k, k);
    for i in 0..k {
        quad -= 2.0 * weights[i] * fold.c(i, k);
        for j in 0..k {
            quad += weights[i] * weights[j] * fold.c(i, j);
        }
    }
    let resid_mean = fold.mean[k] - intercept - (0..k).map(|i| weights[i] * fold.mean[i]).sum::<f64>();
    (quad + fold.wsum * resid_mean * resid_mean).max(0.0)
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
/// fitted on the merge of the others, and scored by [`heldout_sse`].
pub fn cross_validate(
    folds: &[RegStats],
    ridges: &[f64],
    opts: SolveOptions,
) -> Result<Vec<CvResult>, SolveError> {
    let mut out = Vec::with_capacity(ridges.len());
    for &ridge in ridges {
        let (mut sse, mut w, mut sst, mut used) = (0.0, 0.0, 0.0, 0);
        for (f, fold) in folds.iter().enumerate() {
            if fold.n == 0 {
                continue;
            }
            let mut train = RegStats::new(fold.k);
            for (g, other) in folds.iter().enumerate() {
                if g != f {
                    train.merge(other).map_err(|e| SolveError::InvalidOption(e.to_string()))?;
                }
            }
            let Some(fit) = solve(&train, SolveOptions { ridge, ..opts })? else { continue };
            sse += heldout_sse(fold, &fit.weights, fit.intercept);
            w += fold.wsum;
            sst += fold.c(fold.k, fold.k);
            used += 1;
        }
        let mse = (w > 0.0).then(|| sse / w);
        let r2 = (sst > 0.0).then(|| 1.0 - sse / sst);
        out.push(CvResult { ridge, mse, r2, folds: used });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
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
