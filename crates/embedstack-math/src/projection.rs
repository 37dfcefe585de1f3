//! The learned projection of issue 21: PCA of the served combined vector, to `r` dimensions, so
//! that model sets wider than pgvector's HNSW limit (2,000 dims for `vector`, 4,000 for
//! `halfvec`) can still be indexed.
//!
//! The served vector for weights `w` is `x = [√w_k u_k]` (symmetric mode, `w` = the score
//! weights of [`crate::combine::scales`]). Its covariance is `C_w = D_w^{1/2} C D_w^{1/2}`, with
//! `C` the covariance of the unweighted concatenation kept by [`CovStats`]: learned once, re-
//! weighted per fit ([`weighted`] densely, [`fit`] without forming any `D × D` matrix). The basis
//! is its top-`r` eigenvectors ([`crate::subspace`]).
//!
//! Layout: blocks of weight 0 are left out of the served vector ([`crate::combine::combine_into`]
//! with multipliers `√w_k` skips them), so [`fit`]'s basis has one row per coordinate of the
//! blocks with a positive weight, in model order: `project(basis, x)` takes `x` exactly as
//! `combine_into` writes it.
//!
//! Centring. The basis comes from the CENTRED covariance, and [`project`] maps the UNcentred
//! served vector: `z = Vᵀ x`. Served with inner-product search, a query `q` scores a stored `x`
//! by `⟨Vᵀq, Vᵀx⟩ = qᵀ P x` (`P = V Vᵀ`) instead of `qᵀ x`. With `x = m + x̃` (`m` the mean):
//!
//! ```text
//! qᵀx − qᵀPx = qᵀ(I − P) m  +  qᵀ(I − P) x̃
//!              └ the same for every candidate: no effect on the ranking
//!                                └ the ranking error, mean square qᵀ(I − P) C (I − P) q
//! ```
//!
//! The second term is what the top eigenvectors of the centred `C` minimise (exactly when the
//! queries' second moment is isotropic or commutes with `C`, the assumption behind using PCA
//! here at all): the mean is common to every candidate and carries no ranking information, so
//! spending a dimension on it (as PCA of the uncentred second moment `C + m mᵀ` would, and with
//! anisotropic embedding models `m` is large) is wasted. Projecting uncentred vectors ranks
//! exactly as centring the stored side only would (`⟨Vᵀq, Vᵀ(x − m)⟩` differs by a per-query
//! constant), while centring BOTH sides, as scikit-learn's `PCA.transform` does, would add the
//! candidate-dependent bias `−⟨Vᵀm, Vᵀx⟩` and change the ranking. Uncentred also keeps the map
//! linear and the same for queries and stored vectors, with no mean to store or apply. Projected
//! vectors are not re-normalised: their inner products approximate the combined score.
//!
//! `variance_kept` is `Σ_{j ≤ r} λ_j / tr(C_w)`, the fraction of the centred (ranking-relevant)
//! variance the projection keeps; it is in `[0, 1]` and 1 when `r` reaches the rank.

use nalgebra::{DMatrix, DVector};

use crate::covariance::{CovError, CovOperator, CovStats};
use crate::jacobi::EigenError;
use crate::subspace::{top_eigen, SubspaceOptions, SymOp};
use crate::vector::first_non_finite_f32;

#[derive(Debug, Clone, PartialEq)]
pub enum ProjectionError {
    /// Weights that do not fit the model set: wrong count, negative, NaN or infinite, all zero.
    Weights(String),
    /// A matrix whose size does not match the model dimensions, or a vector whose length does
    /// not match the basis.
    Dimension {
        expected: usize,
        got: usize,
    },
    /// Element `position` (1-based) of a vector to project is NaN or infinite.
    NonFinite {
        position: usize,
        value: f64,
    },
    /// The weighted covariance is zero (every row alike): there is no direction to keep.
    NoVariance,
    Covariance(CovError),
    Eigen(EigenError),
}

impl std::fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectionError::Weights(why) => write!(f, "invalid weights: {why}"),
            ProjectionError::Dimension { expected, got } => {
                write!(f, "{got} dimensions where the projection expects {expected}")
            }
            ProjectionError::NonFinite { position, value } => {
                write!(f, "element {position} is {value}: NaN and infinity are not allowed")
            }
            ProjectionError::NoVariance => {
                write!(f, "the rows have no variance under these weights: there is nothing to project onto")
            }
            ProjectionError::Covariance(e) => write!(f, "{e}"),
            ProjectionError::Eigen(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProjectionError {}

impl From<CovError> for ProjectionError {
    fn from(e: CovError) -> Self {
        ProjectionError::Covariance(e)
    }
}

impl From<EigenError> for ProjectionError {
    fn from(e: EigenError) -> Self {
        ProjectionError::Eigen(e)
    }
}

/// A fitted projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// `D' × r`, orthonormal columns, the principal directions by decreasing variance; rows in
    /// the served layout (blocks of positive weight only).
    pub basis: DMatrix<f64>,
    /// Variances along the columns of `basis` (descending), with the covariance divided by `n`.
    pub eigenvalues: Vec<f64>,
    /// `tr(C_w)`: the total variance of the served vectors.
    pub total_variance: f64,
    /// `Σ eigenvalues / total_variance`, in `[0, 1]`.
    pub variance_kept: f64,
}

/// Per-coordinate multipliers `√w_k`, repeated over each model's dimensions. Checks the weights:
/// one per model, finite, ≥ 0.
pub fn coordinate_scales(block_dims: &[usize], weights: &[f64]) -> Result<Vec<f64>, ProjectionError> {
    if weights.len() != block_dims.len() {
        return Err(ProjectionError::Weights(format!(
            "{} weights for {} models",
            weights.len(),
            block_dims.len()
        )));
    }
    if let Some(k) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(ProjectionError::Weights(format!(
            "weight {} of model {} is not a finite non-negative number",
            weights[k],
            k + 1
        )));
    }
    Ok(block_dims.iter().zip(weights).flat_map(|(&d, &w)| std::iter::repeat_n(w.sqrt(), d)).collect())
}

/// Width of the served vector: the dimensions of the models with a positive weight.
pub fn served_width(block_dims: &[usize], weights: &[f64]) -> usize {
    block_dims.iter().zip(weights).filter(|(_, &w)| w > 0.0).map(|(d, _)| d).sum()
}

/// `D_w^{1/2} C D_w^{1/2}`: element `(i, j)` is `√w_a √w_b C_ij` for `i` in model `a` and `j` in
/// model `b`, the covariance of `[√w_k u_k]`. Blocks of weight 0 keep their place, as zero rows
/// and columns.
pub fn weighted(
    cov: &DMatrix<f64>,
    block_dims: &[usize],
    weights: &[f64],
) -> Result<DMatrix<f64>, ProjectionError> {
    let s = coordinate_scales(block_dims, weights)?;
    for got in [cov.nrows(), cov.ncols()] {
        if got != s.len() {
            return Err(ProjectionError::Dimension { expected: s.len(), got });
        }
    }
    Ok(DMatrix::from_fn(s.len(), s.len(), |i, j| s[i] * s[j] * cov[(i, j)]))
}

/// Fits the projection to `r` dimensions of the served vector for `weights` (one per model,
/// ≥ 0, at least one positive) from accumulated statistics. Multiplies by `C_w` through the
/// state's tiles: memory `O(D · (r + p))` beyond the state.
pub fn fit(
    stats: &mut CovStats,
    weights: &[f64],
    r: usize,
    opts: &SubspaceOptions,
) -> Result<Projection, ProjectionError> {
    let scale = coordinate_scales(stats.dims(), weights)?;
    let served: Vec<usize> = (0..scale.len()).filter(|&i| scale[i] > 0.0).collect();
    if served.is_empty() {
        return Err(ProjectionError::Weights("no model has a positive weight".into()));
    }
    let cov = stats.operator()?;
    let diag = cov.diagonal();
    // Rounding can leave a constant coordinate's variance a hair below 0.
    let trace = served.iter().map(|&i| scale[i] * scale[i] * diag[i].max(0.0)).sum();
    finish(&Weighted { cov, scale, served }, trace, r, opts)
}

/// Fits the projection from a covariance already weighted and in the served layout (e.g.
/// [`weighted`] with the zero-weight blocks removed): any symmetric PSD matrix.
pub fn fit_matrix(
    cov: &DMatrix<f64>,
    r: usize,
    opts: &SubspaceOptions,
) -> Result<Projection, ProjectionError> {
    if cov.nrows() != cov.ncols() {
        return Err(EigenError::NotSquare { rows: cov.nrows(), cols: cov.ncols() }.into());
    }
    if cov.iter().any(|v| !v.is_finite()) {
        return Err(EigenError::NonFinite.into());
    }
    let trace = cov.diagonal().iter().map(|v| v.max(0.0)).sum();
    finish(cov, trace, r, opts)
}

fn finish<A: SymOp + ?Sized>(
    a: &A,
    trace: f64,
    r: usize,
    opts: &SubspaceOptions,
) -> Result<Projection, ProjectionError> {
    if r == 0 || r > a.dim() {
        return Err(EigenError::Rank { r, dim: a.dim() }.into());
    }
    if trace.is_nan() || trace <= 0.0 {
        return Err(ProjectionError::NoVariance);
    }
    let top = top_eigen(a, r, opts)?;
    let kept: f64 = top.values.iter().map(|v| v.max(0.0)).sum();
    Ok(Projection {
        basis: top.vectors,
        eigenvalues: top.values,
        total_variance: trace,
        variance_kept: (kept / trace).clamp(0.0, 1.0),
    })
}

/// The projection a generation serves (issue 21): the stored blocks' per-model `multipliers`
/// (the served vector is `[m_k u_k]`, blocks with `m_k = 0` left out) projected to `r`
/// dimensions. The basis is the top `r − 1` principal directions of the served vectors plus,
/// as the last column, the part of their mean those directions miss (normalised): the
/// WordSim study (`bench/projection/RESULTS-wordsim.md`) measured that spending one dimension
/// on the mean ranks better at every `r` from 32 on in symmetric mode (recall@10 0.967 vs
/// 0.960 at 256), and that in query-weighted mode, where the query is weighted and the stored
/// vectors are not, leaving it out costs 0.015 of held-out Spearman at 256 (a per-query offset
/// that depends on the candidate). When the mean is already (numerically) in the span of the
/// top `r − 1` directions, or `r = 1`, the basis is the plain top `r`. `eigenvalues` are then the
/// variances along the final columns (`vᵀ C_w v`), `variance_kept` their sum over `tr(C_w)`.
pub fn fit_served(
    stats: &mut CovStats,
    multipliers: &[f64],
    r: usize,
    opts: &SubspaceOptions,
) -> Result<Projection, ProjectionError> {
    if let Some(k) = multipliers.iter().position(|m| !(m.is_finite() && *m >= 0.0)) {
        return Err(ProjectionError::Weights(format!(
            "multiplier {} of model {} is not a finite non-negative number",
            multipliers[k],
            k + 1
        )));
    }
    let weights: Vec<f64> = multipliers.iter().map(|m| m * m).collect();
    let scale = coordinate_scales(stats.dims(), &weights)?;
    let served: Vec<usize> = (0..scale.len()).filter(|&i| scale[i] > 0.0).collect();
    if served.is_empty() {
        return Err(ProjectionError::Weights("no model has a positive multiplier".into()));
    }
    let mean = stats.mean();
    let mean_w: Vec<f64> = served.iter().map(|&i| scale[i] * mean[i]).collect();
    let cov = stats.operator()?;
    let diag = cov.diagonal();
    let trace: f64 = served.iter().map(|&i| scale[i] * scale[i] * diag[i].max(0.0)).sum();
    let op = Weighted { cov, scale, served };
    let mut p = finish(&op, trace, r, opts)?;
    if r >= 2 {
        let m = DVector::from_vec(mean_w);
        let head = p.basis.columns(0, r - 1);
        let resid = &m - head * head.tr_mul(&m);
        let (rn, mn) = (resid.norm(), m.norm());
        if mn > 0.0 && rn > 1e-6 * mn {
            p.basis.set_column(r - 1, &(resid / rn));
            let cv = op.apply(&p.basis);
            p.eigenvalues = (0..r).map(|j| p.basis.column(j).dot(&cv.column(j))).collect();
            let kept: f64 = p.eigenvalues.iter().map(|v| v.max(0.0)).sum();
            p.variance_kept = (kept / trace).clamp(0.0, 1.0);
        }
    }
    Ok(p)
}

/// The basis as stored with a generation: `r` rows of `D'` values, row `j` the `j`-th column of
/// `basis` (so each output coordinate is one contiguous dot product), rounded to f32.
pub fn basis_rows_f32(basis: &DMatrix<f64>) -> Vec<f32> {
    let (d, r) = basis.shape();
    let mut out = Vec::with_capacity(d * r);
    for j in 0..r {
        out.extend(basis.column(j).iter().map(|&v| v as f32));
    }
    out
}

/// `out = B x` for a basis stored as [`basis_rows_f32`] (`out.len()` rows of `x.len()`
/// values): each coordinate a dot product accumulated in f64 ([`crate::kernels::dot`]),
/// rounded once. `Err(Dimension)` when the sizes disagree.
pub fn apply_rows(rows: &[f32], x: &[f32], out: &mut [f32]) -> Result<(), ProjectionError> {
    let d = x.len();
    if d == 0 || rows.len() != d * out.len() {
        return Err(ProjectionError::Dimension { expected: rows.len() / out.len().max(1), got: d });
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(d)) {
        *o = crate::kernels::dot(row, x) as f32;
    }
    Ok(())
}

/// `C_w` in the served layout, as products: scale, embed into `D`, multiply by `C`, gather.
struct Weighted<'a> {
    cov: CovOperator<'a>,
    /// `√w` per coordinate of the full layout.
    scale: Vec<f64>,
    /// Full-layout index of each served coordinate.
    served: Vec<usize>,
}

impl SymOp for Weighted<'_> {
    fn dim(&self) -> usize {
        self.served.len()
    }

    fn apply(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut full = DMatrix::zeros(self.cov.dim(), x.ncols());
        for c in 0..x.ncols() {
            for (k, &i) in self.served.iter().enumerate() {
                full[(i, c)] = self.scale[i] * x[(k, c)];
            }
        }
        let y = self.cov.apply(&full);
        DMatrix::from_fn(self.served.len(), x.ncols(), |k, c| {
            let i = self.served[k];
            self.scale[i] * y[(i, c)]
        })
    }
}

/// `Vᵀ x`: the served combined vector `x` (uncentred, see the module documentation) projected
/// onto the basis, computed in f64 and rounded once to f32.
pub fn project(basis: &DMatrix<f64>, x: &[f32]) -> Result<Vec<f32>, ProjectionError> {
    if x.len() != basis.nrows() {
        return Err(ProjectionError::Dimension { expected: basis.nrows(), got: x.len() });
    }
    if let Some((position, value)) = first_non_finite_f32(x) {
        return Err(ProjectionError::NonFinite { position, value });
    }
    let xv = DVector::from_iterator(x.len(), x.iter().map(|&v| v as f64));
    Ok(basis.tr_mul(&xv).iter().map(|&v| v as f32).collect())
}

impl Projection {
    /// [`project`] onto this projection's basis.
    pub fn project(&self, x: &[f32]) -> Result<Vec<f32>, ProjectionError> {
        project(&self.basis, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::{combine_into, Block};
    use crate::subspace::gaussian_matrix;

    /// Rows of a model set with a low-rank structure: each model vector is a fixed offset plus
    /// a mix of `rank` shared latent factors plus `noise`; model 2 is NULL in every fifth row.
    fn rows(dims: &[usize], n: usize, rank: usize, noise: f64, seed: u64) -> Vec<Vec<Option<Vec<f32>>>> {
        let d: usize = dims.iter().sum();
        let mix = gaussian_matrix(d, rank, seed);
        let z = gaussian_matrix(rank, n, seed + 1);
        let e = gaussian_matrix(d, n, seed + 2);
        (0..n)
            .map(|r| {
                let x = &mix * z.column(r);
                let mut at = 0;
                dims.iter()
                    .enumerate()
                    .map(|(k, &dk)| {
                        let v = (0..dk).map(|i| (x[at + i] + noise * e[(at + i, r)] + 3.0) as f32).collect();
                        at += dk;
                        if k == 1 && r % 5 == 0 {
                            None
                        } else {
                            Some(v)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn stats(dims: &[usize], rows: &[Vec<Option<Vec<f32>>>]) -> CovStats {
        let mut st = CovStats::new(dims).unwrap();
        for row in rows {
            let r: Vec<Option<&[f32]>> = row.iter().map(|v| v.as_deref()).collect();
            st.accumulate_f32(&r).unwrap();
        }
        st
    }

    /// The served vectors `[√w_k u_k]` built by hand in f64 (blocks of weight 0 left out, NULL
    /// blocks zero), and their two-pass covariance divided by n.
    fn served_covariance(dims: &[usize], weights: &[f64], rows: &[Vec<Option<Vec<f32>>>]) -> DMatrix<f64> {
        let xs: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| {
                let mut x = Vec::new();
                for ((v, &dk), &w) in row.iter().zip(dims).zip(weights) {
                    if w == 0.0 {
                        continue;
                    }
                    match v {
                        Some(v) => {
                            let norm = v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
                            x.extend(v.iter().map(|&a| w.sqrt() * a as f64 / norm));
                        }
                        None => x.extend(std::iter::repeat_n(0.0, dk)),
                    }
                }
                x
            })
            .collect();
        let (n, d) = (xs.len() as f64, xs[0].len());
        let mean: Vec<f64> = (0..d).map(|i| xs.iter().map(|x| x[i]).sum::<f64>() / n).collect();
        DMatrix::from_fn(d, d, |i, j| xs.iter().map(|x| (x[i] - mean[i]) * (x[j] - mean[j])).sum::<f64>() / n)
    }

    /// The rows and columns of the blocks with a positive weight.
    fn served_part(m: &DMatrix<f64>, dims: &[usize], weights: &[f64]) -> DMatrix<f64> {
        let keep: Vec<usize> = dims
            .iter()
            .zip(weights)
            .scan(0, |at, (&dk, &w)| {
                let r = (*at..*at + dk).filter(|_| w > 0.0).collect::<Vec<_>>();
                *at += dk;
                Some(r)
            })
            .flatten()
            .collect();
        DMatrix::from_fn(keep.len(), keep.len(), |i, j| m[(keep[i], keep[j])])
    }

    #[test]
    fn weighted_is_the_covariance_of_the_weighted_concatenation() {
        let dims = [4usize, 3, 5];
        let rs = rows(&dims, 60, 3, 0.5, 1);
        let mut st = stats(&dims, &rs);
        let c = st.covariance().unwrap();
        for weights in [[1.0, 1.0, 1.0], [0.5, 2.0, 0.1], [1.0, 0.0, 0.3]] {
            let cw = weighted(&c, &dims, &weights).unwrap();
            let want = served_covariance(&dims, &weights, &rs);
            let got = served_part(&cw, &dims, &weights);
            assert!((&got - &want).amax() < 1e-6, "{weights:?}: {}", (&got - &want).amax());
            // A zero-weight block keeps its place as zero rows and columns.
            if weights[1] == 0.0 {
                assert!(cw.rows(4, 3).iter().chain(cw.columns(4, 3).iter()).all(|&v| v == 0.0));
            }
        }
    }

    #[test]
    fn weights_and_sizes_are_checked() {
        let c = DMatrix::<f64>::identity(5, 5);
        assert!(matches!(weighted(&c, &[2, 3], &[1.0]), Err(ProjectionError::Weights(_))));
        assert!(matches!(weighted(&c, &[2, 3], &[1.0, -0.1]), Err(ProjectionError::Weights(_))));
        assert!(matches!(weighted(&c, &[2, 3], &[f64::NAN, 1.0]), Err(ProjectionError::Weights(_))));
        assert_eq!(
            weighted(&c, &[2, 2], &[1.0, 1.0]),
            Err(ProjectionError::Dimension { expected: 4, got: 5 })
        );
        let dims = [4usize, 3];
        let mut st = stats(&dims, &rows(&dims, 20, 2, 0.1, 2));
        let opts = SubspaceOptions::default();
        assert!(matches!(fit(&mut st, &[0.0, 0.0], 2, &opts), Err(ProjectionError::Weights(_))));
        assert!(matches!(fit(&mut st, &[1.0, 1.0, 1.0], 2, &opts), Err(ProjectionError::Weights(_))));
        // The served layout has 4 dimensions when model 2 has weight 0.
        assert_eq!(
            fit(&mut st, &[1.0, 0.0], 5, &opts),
            Err(ProjectionError::Eigen(EigenError::Rank { r: 5, dim: 4 }))
        );
        assert!(matches!(
            fit(&mut st, &[1.0, 1.0], 0, &opts),
            Err(ProjectionError::Eigen(EigenError::Rank { .. }))
        ));
        let mut empty = CovStats::new(&dims).unwrap();
        assert_eq!(
            fit(&mut empty, &[1.0, 1.0], 2, &opts),
            Err(ProjectionError::Covariance(CovError::NoRows))
        );
        // Every row alike: no variance to keep.
        let mut same = CovStats::new(&[2]).unwrap();
        for _ in 0..3 {
            same.accumulate_f32(&[Some(&[1.0, 2.0])]).unwrap();
        }
        assert_eq!(fit(&mut same, &[1.0], 1, &opts), Err(ProjectionError::NoVariance));
    }

    #[test]
    fn fitting_from_the_state_equals_fitting_the_dense_weighted_matrix() {
        // Rank 6 plus small noise: a gap after the 6th eigenvalue.
        let dims = [150usize, 70, 80];
        let rs = rows(&dims, 200, 6, 0.02, 3);
        let mut st = stats(&dims, &rs);
        let weights = [1.0, 0.0, 0.4];
        let opts = SubspaceOptions::default();
        let p = fit(&mut st, &weights, 6, &opts).unwrap();
        assert_eq!(p.basis.shape(), (230, 6));
        let dense =
            served_part(&weighted(&st.covariance().unwrap(), &dims, &weights).unwrap(), &dims, &weights);
        let q = fit_matrix(&dense, 6, &opts).unwrap();
        assert!((p.total_variance - dense.trace()).abs() < 1e-12 * dense.trace());
        for (a, b) in p.eigenvalues.iter().zip(&q.eigenvalues) {
            assert!((a - b).abs() < 1e-10 * q.eigenvalues[0], "{a} vs {b}");
        }
        assert!((&p.basis - &q.basis).amax() < 1e-8, "{}", (&p.basis - &q.basis).amax());
        // And the dense fit is the top of the full Jacobi decomposition.
        let full = crate::jacobi::symmetric_eigen(&dense).unwrap();
        for (a, b) in q.eigenvalues.iter().zip(&full.values) {
            assert!((a - b).abs() < 1e-8 * full.values[0]);
        }
        let kept: f64 = full.values[..6].iter().sum::<f64>() / full.values.iter().sum::<f64>();
        assert!((p.variance_kept - kept).abs() < 1e-8);
    }

    #[test]
    fn variance_kept_is_a_fraction_and_reaches_one_at_the_rank() {
        let dims = [10usize, 6];
        // 5 rows: the centred covariance has rank ≤ 4.
        let mut st = stats(&dims, &rows(&dims, 5, 3, 1.0, 4));
        let opts = SubspaceOptions::default();
        let mut last = 0.0;
        for r in 1..=16 {
            let p = fit(&mut st, &[1.0, 0.5], r, &opts).unwrap();
            assert!((0.0..=1.0).contains(&p.variance_kept));
            assert!(p.variance_kept >= last - 1e-12, "r={r}");
            last = p.variance_kept;
            if r >= 4 {
                assert!((p.variance_kept - 1.0).abs() < 1e-12, "r={r}: {}", p.variance_kept);
            }
        }
    }

    #[test]
    fn fits_are_deterministic_and_survive_serialisation() {
        let dims = [40usize, 30];
        let rs = rows(&dims, 150, 5, 0.3, 5);
        let opts = SubspaceOptions::default();
        let mut a = stats(&dims, &rs);
        let mut b = stats(&dims, &rs);
        let pa = fit(&mut a, &[1.0, 0.7], 8, &opts).unwrap();
        assert_eq!(pa, fit(&mut b, &[1.0, 0.7], 8, &opts).unwrap());
        let mut parsed = CovStats::from_slice(&a.to_vec()).unwrap();
        assert_eq!(pa, fit(&mut parsed, &[1.0, 0.7], 8, &opts).unwrap());
        // Sign convention: the largest component of each direction is positive.
        for col in pa.basis.column_iter() {
            let i = col.iamax();
            assert!(col[i] > 0.0);
        }
    }

    #[test]
    fn project_is_the_basis_transpose_times_the_served_vector() {
        let dims = [6usize, 4];
        let rs = rows(&dims, 50, 3, 0.2, 6);
        let mut st = stats(&dims, &rs);
        let p = fit(&mut st, &[1.0, 0.25], 3, &SubspaceOptions::default()).unwrap();
        let mut x = vec![0.0f32; 10];
        let blocks: Vec<Option<Block>> = rs[1].iter().map(|v| v.as_deref().map(Block::F32)).collect();
        combine_into(&blocks, &dims, &[1.0, 0.5], &mut x).unwrap();
        let z = p.project(&x).unwrap();
        for (k, &zk) in z.iter().enumerate() {
            let want: f64 = (0..10).map(|i| p.basis[(i, k)] * x[i] as f64).sum();
            assert!((zk as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3), "{zk} vs {want}");
        }
        assert_eq!(project(&p.basis, &x[..9]), Err(ProjectionError::Dimension { expected: 10, got: 9 }));
        x[4] = f32::INFINITY;
        assert!(matches!(project(&p.basis, &x), Err(ProjectionError::NonFinite { position: 5, .. })));
    }

    /// The mean-handling argument of the module documentation, on data whose centred variation
    /// has rank 2: model 1's unit vectors lie on a circle in the plane z = 0.6 and model 2 is the
    /// same vector in every row. The uncentred second moment would rank z first (0.36 > 0.32);
    /// the centred basis is the circle's plane, and projecting uncentred vectors changes every
    /// inner product of a query by the same constant, so rankings are exactly preserved.
    #[test]
    fn the_centred_basis_with_uncentred_projection_preserves_rankings() {
        let circle = |t: f64| [0.8 * t.cos() as f32, 0.8 * t.sin() as f32, 0.6];
        let mut st = CovStats::new(&[3, 2]).unwrap();
        let rows: Vec<[f32; 5]> = (0..40)
            .map(|i| {
                let c = circle(i as f64 * 0.7);
                [c[0], c[1], c[2], 1.0, 0.0]
            })
            .collect();
        for x in &rows {
            st.accumulate_f32(&[Some(&x[..3]), Some(&x[3..])]).unwrap();
        }
        let p = fit(&mut st, &[1.0, 1.0], 2, &SubspaceOptions::default()).unwrap();
        assert!((p.variance_kept - 1.0).abs() < 1e-6);
        // The basis spans the first two coordinates.
        for k in 0..2 {
            let in_plane = p.basis[(0, k)].powi(2) + p.basis[(1, k)].powi(2);
            assert!((in_plane - 1.0).abs() < 1e-6, "{in_plane}");
        }
        let ip = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
        for q in &rows[..5] {
            let pq = p.project(q).unwrap();
            let offsets: Vec<f64> = rows.iter().map(|x| ip(q, x) - ip(&pq, &p.project(x).unwrap())).collect();
            let spread = offsets.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v))
                - offsets.iter().fold(f64::INFINITY, |m, &v| m.min(v));
            assert!(spread < 1e-5, "the score error varies across candidates by {spread}");
        }
    }

    /// The served mean `[m_k ū_k]` built by hand (blocks of multiplier 0 left out).
    fn served_mean(dims: &[usize], mult: &[f64], rows: &[Vec<Option<Vec<f32>>>]) -> DVector<f64> {
        let d: usize = dims.iter().zip(mult).filter(|(_, &m)| m > 0.0).map(|(d, _)| d).sum();
        let mut acc = DVector::zeros(d);
        for row in rows {
            let mut at = 0;
            for ((v, &dk), &m) in row.iter().zip(dims).zip(mult) {
                if m == 0.0 {
                    continue;
                }
                if let Some(v) = v {
                    let norm = v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
                    for i in 0..dk {
                        acc[at + i] += m * v[i] as f64 / norm;
                    }
                }
                at += dk;
            }
        }
        acc / rows.len() as f64
    }

    #[test]
    fn fit_served_is_the_top_directions_plus_the_mean_they_miss() {
        let dims = [6usize, 5, 7];
        let rs = rows(&dims, 150, 4, 0.3, 11);
        let mut st = stats(&dims, &rs);
        for mult in [[1.0, 1.0, 1.0], [0.9, 0.0, 0.4]] {
            let w: Vec<f64> = mult.iter().map(|m| m * m).collect();
            let cw = served_covariance(&dims, &w, &rs);
            let m = served_mean(&dims, &mult, &rs);
            let r = 5;
            let opts = SubspaceOptions { power_iters: 12, ..SubspaceOptions::default() };
            let p = fit_served(&mut st, &mult, r, &opts).unwrap();
            assert_eq!(p.basis.shape(), (cw.nrows(), r));
            // Orthonormal columns.
            let g = p.basis.tr_mul(&p.basis);
            assert!((&g - DMatrix::identity(r, r)).amax() < 1e-9);
            // The first r-1 span the top r-1 eigenvectors of the dense reference (Jacobi).
            let e = crate::jacobi::symmetric_eigen(&cw).unwrap();
            let top = e.vectors.columns(0, r - 1).into_owned();
            let head = p.basis.columns(0, r - 1).into_owned();
            let proj_ref = &top * top.transpose();
            let proj_got = &head * head.transpose();
            assert!((&proj_ref - &proj_got).amax() < 1e-6, "{mult:?}: {}", (&proj_ref - &proj_got).amax());
            // The last column is the normalised part of the mean outside them.
            let resid = &m - &top * top.tr_mul(&m);
            let want = &resid / resid.norm();
            let last = p.basis.column(r - 1).into_owned();
            assert!((&last - &want).amax().min((&last + &want).amax()) < 1e-6);
            // The variances are v^T C_w v, and variance_kept their share of the trace. The
            // state's covariance is within about 1e-6 · √(C_ii C_jj) of the f64 reference `cw`
            // (f32 products, see `covariance`), so |vᵀ ΔC v| ≤ ‖ΔC‖_F ≤ 1e-6 · tr C_w.
            for j in 0..r {
                let v = p.basis.column(j).into_owned();
                let diff = (p.eigenvalues[j] - (v.transpose() * &cw * &v)[0]).abs();
                assert!(diff < 1e-6 * cw.trace(), "{diff:e}");
            }
            let kept: f64 = p.eigenvalues.iter().sum::<f64>() / cw.trace();
            assert!((p.variance_kept - kept).abs() < 1e-6, "{} vs {kept}", p.variance_kept);
        }
        assert!(matches!(
            fit_served(&mut st, &[1.0, f64::NAN, 1.0], 3, &SubspaceOptions::default()),
            Err(ProjectionError::Weights(_))
        ));
        assert!(matches!(
            fit_served(&mut st, &[0.0, 0.0, 0.0], 3, &SubspaceOptions::default()),
            Err(ProjectionError::Weights(_))
        ));
    }

    #[test]
    fn apply_rows_is_the_basis_transpose_times_x() {
        let b = gaussian_matrix(9, 4, 5);
        let rows = basis_rows_f32(&b);
        let x: Vec<f32> = (0..9).map(|i| (i as f32 - 4.0) / 3.0).collect();
        let mut out = vec![0f32; 4];
        apply_rows(&rows, &x, &mut out).unwrap();
        for j in 0..4 {
            let want: f64 = (0..9).map(|i| b[(i, j)] as f32 as f64 * x[i] as f64).sum();
            assert!((out[j] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "{j}: {} vs {want}", out[j]);
        }
        assert!(matches!(apply_rows(&rows, &x[..8], &mut out), Err(ProjectionError::Dimension { .. })));
        assert!(matches!(apply_rows(&rows, &x, &mut [0f32; 3]), Err(ProjectionError::Dimension { .. })));
    }
}
