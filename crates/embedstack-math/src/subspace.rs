//! Top-`r` eigenpairs of a large symmetric positive semi-definite operator by randomized
//! subspace iteration (Halko, Martinsson & Tropp, "Finding structure with randomness", SIAM
//! Review 2011: Algorithm 4.4, then the Rayleigh–Ritz step of Algorithm 5.3).
//!
//! ```text
//! Ω: D × l Gaussian, l = min(r + p, D)     Q = orth(A Ω)
//! repeat q times:  Q = orth(A Q)          (re-orthonormalised each time: no loss of rank to rounding)
//! B = Qᵀ A Q  (l × l)  = W Θ Wᵀ  (Jacobi)   U = Q W[:, ..r],  eigenvalues θ_1 ≥ … ≥ θ_r
//! ```
//!
//! Cost: `q + 2` products `A X` with `X` of `l` columns, `O(D² l)` each, plus `O(D l²)` for the
//! QR factorisations and `O(l³)` for Jacobi — against `O(D³)` for a full decomposition. The
//! error of eigenvalue `j` shrinks like `(λ_{l+1}/λ_j)^{q+1}`: exact to rounding when the
//! spectrum has a gap after `l` (or the rank is at most `l`), and the Ritz values never exceed
//! the true eigenvalues (Cauchy interlacing), so the variance they account for is a lower bound.
//!
//! Deterministic: the test matrix comes from a fixed-seed generator (SplitMix64, Box–Muller),
//! and every step is a fixed sequence of floating-point operations, so the same input gives
//! bit-identical output on the same build and CPU (matrixmultiply picks its kernel, e.g. FMA or
//! not, from the CPU, and `ln`/`cos` come from the platform's libm). Eigenvectors follow the
//! crate's sign convention: largest-magnitude component positive.

use nalgebra::DMatrix;

use crate::interrupt;
use crate::jacobi::{fix_signs, symmetric_eigen, EigenError};

/// A symmetric linear operator of dimension `dim`, given by its products.
pub trait SymOp {
    fn dim(&self) -> usize;
    /// `A X` for a `dim × m` matrix `X`.
    fn apply(&self, x: &DMatrix<f64>) -> DMatrix<f64>;
}

impl SymOp for DMatrix<f64> {
    fn dim(&self) -> usize {
        self.nrows()
    }

    fn apply(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        self * x
    }
}

/// The seed of the Gaussian test matrix unless a caller picks another.
pub const DEFAULT_SEED: u64 = 0x0e5b_ed57_ac20_0021;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubspaceOptions {
    /// Extra columns `p` beyond `r` (Halko et al. recommend 5–10).
    pub oversample: usize,
    /// Power iterations `q`: products with `A` after the first, each followed by a QR. The
    /// basis spans `A^{q+1} Ω`.
    pub power_iters: usize,
    /// Seed of the Gaussian test matrix.
    pub seed: u64,
}

impl Default for SubspaceOptions {
    /// `p = 10`, `q = 4` (scikit-learn's `randomized_svd` default when `r` is a sizeable
    /// fraction of `D`: embedding spectra decay slowly, so a few iterations matter).
    fn default() -> Self {
        SubspaceOptions { oversample: 10, power_iters: 4, seed: DEFAULT_SEED }
    }
}

/// The `r` largest eigenvalues (descending) and their orthonormal eigenvectors (`D × r`).
#[derive(Debug, Clone, PartialEq)]
pub struct TopEigen {
    pub values: Vec<f64>,
    pub vectors: DMatrix<f64>,
}

/// Top-`r` eigenpairs of the symmetric PSD operator `a` (see the module documentation).
/// `Err(Rank)` unless `1 ≤ r ≤ dim`; `Err(NonFinite)` when a product is not finite.
pub fn top_eigen<A: SymOp + ?Sized>(a: &A, r: usize, opts: &SubspaceOptions) -> Result<TopEigen, EigenError> {
    let d = a.dim();
    if r == 0 || r > d {
        return Err(EigenError::Rank { r, dim: d });
    }
    let l = r.saturating_add(opts.oversample).min(d);
    let omega = gaussian_matrix(d, l, opts.seed);
    let mut q = orthonormal(a.apply(&omega))?;
    for _ in 0..opts.power_iters {
        interrupt::check();
        q = orthonormal(a.apply(&q))?;
    }
    interrupt::check();
    let aq = a.apply(&q);
    let b = q.tr_mul(&aq);
    let eig = symmetric_eigen(&b)?;
    let mut vectors = &q * eig.vectors.columns(0, r);
    fix_signs(&mut vectors);
    Ok(TopEigen { values: eig.values[..r].to_vec(), vectors })
}

/// An orthonormal basis of the columns' span (thin Householder QR: orthonormal even when the
/// columns are dependent, e.g. when the operator's rank is below `l`).
fn orthonormal(y: DMatrix<f64>) -> Result<DMatrix<f64>, EigenError> {
    if y.iter().any(|v| !v.is_finite()) {
        return Err(EigenError::NonFinite);
    }
    Ok(y.qr().q())
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed, seedable generator; the crate
/// needs reproducibility, not cryptographic strength, and takes no dependency for it.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform on the open interval (0, 1): 53 random bits, offset by half a step.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// A `rows × cols` matrix of independent standard normal values (Box–Muller on SplitMix64),
/// filled column by column; the same seed gives the same matrix.
pub fn gaussian_matrix(rows: usize, cols: usize, seed: u64) -> DMatrix<f64> {
    let mut g = SplitMix64(seed);
    let mut m = DMatrix::zeros(rows, cols);
    for pair in m.as_mut_slice().chunks_mut(2) {
        let radius = (-2.0 * g.uniform().ln()).sqrt();
        let angle = std::f64::consts::TAU * g.uniform();
        pair[0] = radius * angle.cos();
        if let Some(second) = pair.get_mut(1) {
            *second = radius * angle.sin();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DVector;

    fn orthogonal(n: usize, seed: u64) -> DMatrix<f64> {
        gaussian_matrix(n, n, seed).qr().q()
    }

    fn from_spectrum(q: &DMatrix<f64>, values: &[f64]) -> DMatrix<f64> {
        q * DMatrix::from_diagonal(&DVector::from_column_slice(values)) * q.transpose()
    }

    /// Sine of the largest principal angle between the column spaces of two orthonormal bases:
    /// the spectral norm of `(I − U Uᵀ) V`.
    fn subspace_sine(u: &DMatrix<f64>, v: &DMatrix<f64>) -> f64 {
        let residual = v - u * (u.transpose() * v);
        residual.singular_values().max()
    }

    #[test]
    fn top_eigenpairs_match_the_full_decomposition_when_the_spectrum_has_a_gap() {
        for (d, r, seed) in [(60usize, 5usize, 1u64), (90, 12, 2), (120, 20, 3)] {
            let q = orthogonal(d, seed);
            // r leading eigenvalues in [1, 10], then a tail ≤ 1e-3: a gap of 1,000.
            let values: Vec<f64> = (0..d)
                .map(|i| if i < r { 10.0 - 9.0 * i as f64 / r as f64 } else { 1e-3 / (1 + i - r) as f64 })
                .collect();
            let a = from_spectrum(&q, &values);
            let top = top_eigen(&a, r, &SubspaceOptions::default()).unwrap();
            // Reference: the full Jacobi decomposition, and the planted spectrum.
            let full = symmetric_eigen(&a).unwrap();
            for ((t, f), v) in top.values.iter().zip(&full.values).zip(&values) {
                assert!((t - v).abs() < 1e-8 * v, "d={d}: {t} vs {v}");
                assert!((t - f).abs() < 1e-8 * v);
            }
            let s = subspace_sine(&top.vectors, &q.columns(0, r).into_owned());
            assert!(s < 1e-8, "d={d}: sin θ = {s}");
            let vtv = top.vectors.transpose() * &top.vectors;
            assert!((vtv - DMatrix::identity(r, r)).amax() < 1e-13);
            // Distinct eigenvalues: each vector is the full decomposition's, sign included.
            let diff = (&top.vectors - full.vectors.columns(0, r)).amax();
            assert!(diff < 1e-8, "d={d}: {diff}");
        }
    }

    #[test]
    fn a_rank_within_the_sample_is_found_exactly() {
        // Rank 8 ≤ r + p: the range finder captures the whole range whatever the spectrum.
        let g = gaussian_matrix(80, 8, 5);
        let a = &g * g.transpose();
        let full = symmetric_eigen(&a).unwrap();
        let opts = SubspaceOptions { power_iters: 0, ..SubspaceOptions::default() };
        let top = top_eigen(&a, 8, &opts).unwrap();
        for j in 0..8 {
            assert!((top.values[j] - full.values[j]).abs() < 1e-10 * full.values[0]);
        }
        assert!(subspace_sine(&top.vectors, &full.vectors.columns(0, 8).into_owned()) < 1e-10);
        // r = D works too (l is capped at D).
        let top = top_eigen(&a, 80, &opts).unwrap();
        assert!((top.values.iter().sum::<f64>() - a.trace()).abs() < 1e-10 * a.trace());
    }

    #[test]
    fn without_a_gap_ritz_values_are_lower_bounds() {
        let q = orthogonal(100, 6);
        let values: Vec<f64> = (0..100).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let a = from_spectrum(&q, &values);
        let top = top_eigen(&a, 10, &SubspaceOptions::default()).unwrap();
        for (t, v) in top.values.iter().zip(&values) {
            assert!(*t <= v * (1.0 + 1e-12), "{t} > {v}");
            assert!(*t > 0.9 * v, "{t} far below {v}");
        }
    }

    #[test]
    fn results_are_bit_identical_for_the_same_input_and_seed() {
        let g = gaussian_matrix(70, 70, 7);
        let a = &g * g.transpose();
        let opts = SubspaceOptions::default();
        assert_eq!(top_eigen(&a, 6, &opts).unwrap(), top_eigen(&a.clone(), 6, &opts).unwrap());
        assert_eq!(gaussian_matrix(3, 5, 42), gaussian_matrix(3, 5, 42));
        assert_ne!(gaussian_matrix(3, 5, 42), gaussian_matrix(3, 5, 43));
    }

    #[test]
    fn the_test_matrix_is_standard_normal() {
        let g = gaussian_matrix(200, 500, DEFAULT_SEED);
        let n = g.len() as f64;
        let mean = g.sum() / n;
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let within_one = g.iter().filter(|x| x.abs() < 1.0).count() as f64 / n;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "{mean} {var}");
        assert!((within_one - 0.6827).abs() < 0.005, "{within_one}");
    }

    #[test]
    fn bad_ranks_and_non_finite_products_are_errors() {
        let a = DMatrix::<f64>::identity(4, 4);
        let opts = SubspaceOptions::default();
        assert_eq!(top_eigen(&a, 0, &opts), Err(EigenError::Rank { r: 0, dim: 4 }));
        assert_eq!(top_eigen(&a, 5, &opts), Err(EigenError::Rank { r: 5, dim: 4 }));
        let mut nan = a.clone();
        nan[(0, 0)] = f64::NAN;
        assert_eq!(top_eigen(&nan, 2, &opts), Err(EigenError::NonFinite));
    }
}
