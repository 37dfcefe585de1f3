//! Dense symmetric eigen-decomposition by the cyclic Jacobi method, for the small
//! `(r + p) × (r + p)` Rayleigh–Ritz matrices of [`crate::subspace`] (at most a few hundred
//! rows).
//!
//! Jacobi rather than tridiagonalisation + QL: a few dozen lines with no shifts or deflation to
//! get wrong, backward stable, and its eigenvectors are orthonormal to working precision however
//! close the eigenvalues are. It costs about `3n³` flops per sweep and converges quadratically
//! (6–10 sweeps); at `n = 266` (r = 256, p = 10) that is well under a second.
//!
//! A pair `(p, q)` is rotated unless `a_pq` is negligible, either relatively
//! (`|a_pq| ≤ ε √|a_pp| √|a_qq|`: the rotation would not change the eigenvalues) or absolutely
//! (`|a_pq| ≤ ε ‖A‖_F / n`: all of those together perturb the spectrum by at most `ε ‖A‖_F`).
//! The iteration stops after a sweep without rotations. The matrix is first scaled by a power of
//! two (exact) so that `‖A‖_F` cannot overflow.

use nalgebra::DMatrix;

use crate::fpscale::{exponent, ldexp};
use crate::interrupt;

/// Sweeps after which [`symmetric_eigen`] gives up (quadratic convergence needs about ten).
pub const MAX_SWEEPS: usize = 60;

#[derive(Debug, Clone, PartialEq)]
pub enum EigenError {
    /// The matrix is not square.
    NotSquare { rows: usize, cols: usize },
    /// The matrix (or an operator's product) holds a NaN or an infinity.
    NonFinite,
    /// Jacobi did not converge within [`MAX_SWEEPS`] sweeps.
    NoConvergence,
    /// `r` is 0 or larger than the dimension.
    Rank { r: usize, dim: usize },
}

impl std::fmt::Display for EigenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EigenError::NotSquare { rows, cols } => write!(f, "a {rows} × {cols} matrix is not square"),
            EigenError::NonFinite => write!(f, "the matrix holds a NaN or infinite value"),
            EigenError::NoConvergence => {
                write!(f, "the eigen-decomposition did not converge in {MAX_SWEEPS} sweeps")
            }
            EigenError::Rank { r, dim } => {
                write!(f, "cannot keep {r} dimensions of {dim}: the rank must be between 1 and {dim}")
            }
        }
    }
}

impl std::error::Error for EigenError {}

/// Eigenvalues in descending order and the matching orthonormal eigenvectors (columns), each
/// with its largest-magnitude component positive.
#[derive(Debug, Clone, PartialEq)]
pub struct SymEigen {
    pub values: Vec<f64>,
    pub vectors: DMatrix<f64>,
}

/// Eigen-decomposition of the symmetric part `(A + Aᵀ)/2` of a square matrix.
pub fn symmetric_eigen(a: &DMatrix<f64>) -> Result<SymEigen, EigenError> {
    let (n, cols) = a.shape();
    if n != cols {
        return Err(EigenError::NotSquare { rows: n, cols });
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(EigenError::NonFinite);
    }
    let amax = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // After scaling every element is below 1 in magnitude, so ‖A‖_F ≤ n.
    let e = exponent(amax);
    let mut w = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            w[i + j * n] = ldexp(a[(i, j)], -e) * 0.5 + ldexp(a[(j, i)], -e) * 0.5;
        }
    }
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i + i * n] = 1.0;
    }
    let fro = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    let floor = f64::EPSILON * fro / n.max(1) as f64;
    let mut converged = false;
    for _ in 0..MAX_SWEEPS {
        interrupt::check();
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let apq = w[p + q * n].abs();
                if apq <= floor || apq <= f64::EPSILON * w[p + p * n].abs().sqrt() * w[q + q * n].abs().sqrt()
                {
                    continue;
                }
                rotate(&mut w, &mut v, n, p, q);
                rotated = true;
            }
        }
        if !rotated {
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(EigenError::NoConvergence);
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Descending; a stable sort keeps equal eigenvalues in index order (deterministic).
    order.sort_by(|&x, &y| w[y + y * n].total_cmp(&w[x + x * n]));
    let values = order.iter().map(|&i| ldexp(w[i + i * n], e)).collect();
    let mut vectors = DMatrix::from_fn(n, n, |i, j| v[i + order[j] * n]);
    fix_signs(&mut vectors);
    Ok(SymEigen { values, vectors })
}

/// One Jacobi rotation zeroing `w[p][q]` (`p < q`), `w ← Jᵀ w J`, `v ← v J`.
fn rotate(w: &mut [f64], v: &mut [f64], n: usize, p: usize, q: usize) {
    let (app, aqq, apq) = (w[p + p * n], w[q + q * n], w[p + q * n]);
    let theta = (aqq - app) / (2.0 * apq);
    // t = tan of the rotation angle, the smaller root of t² + 2θt − 1 = 0.
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    rotate_columns(w, n, p, q, c, s);
    // w is symmetric: rows p and q are the new columns (w J); the 2 × 2 block is set exactly.
    for k in 0..n {
        w[p + k * n] = w[k + p * n];
        w[q + k * n] = w[k + q * n];
    }
    w[p + p * n] = app - t * apq;
    w[q + q * n] = aqq + t * apq;
    w[p + q * n] = 0.0;
    w[q + p * n] = 0.0;
    rotate_columns(v, n, p, q, c, s);
}

/// Columns `p < q` of a column-major `n × n` matrix: `(x_p, x_q) ← (c x_p − s x_q, s x_p + c x_q)`.
#[inline]
fn rotate_columns(m: &mut [f64], n: usize, p: usize, q: usize, c: f64, s: f64) {
    let (lo, hi) = m.split_at_mut(q * n);
    let col_p = &mut lo[p * n..p * n + n];
    let col_q = &mut hi[..n];
    for (x, y) in col_p.iter_mut().zip(col_q.iter_mut()) {
        let (a, b) = (*x, *y);
        *x = c * a - s * b;
        *y = s * a + c * b;
    }
}

/// The sign convention of every eigenvector this crate returns: the component of largest
/// magnitude (the first one on a tie) is positive, so that projections are reproducible.
pub(crate) fn fix_signs(v: &mut DMatrix<f64>) {
    for mut col in v.column_iter_mut() {
        let mut best = 0;
        let mut best_abs = 0.0;
        for (i, x) in col.iter().enumerate() {
            if x.abs() > best_abs {
                best_abs = x.abs();
                best = i;
            }
        }
        if col.nrows() > 0 && col[best] < 0.0 {
            col.neg_mut();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subspace::gaussian_matrix;

    /// A random orthogonal matrix: the Q of a Gaussian matrix's Householder QR (nalgebra's,
    /// independent of the code under test).
    fn orthogonal(n: usize, seed: u64) -> DMatrix<f64> {
        gaussian_matrix(n, n, seed).qr().q()
    }

    fn from_spectrum(q: &DMatrix<f64>, values: &[f64]) -> DMatrix<f64> {
        let l = DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(values));
        q * l * q.transpose()
    }

    fn max_abs(m: &DMatrix<f64>) -> f64 {
        m.iter().fold(0.0f64, |a, v| a.max(v.abs()))
    }

    /// `VᵀV = I` and `V Λ Vᵀ = A`, both to `tol` (relative to the largest eigenvalue for the
    /// reconstruction).
    fn check_decomposition(a: &DMatrix<f64>, e: &SymEigen, tol: f64) {
        let n = a.nrows();
        let vtv = e.vectors.transpose() * &e.vectors;
        assert!(max_abs(&(vtv - DMatrix::identity(n, n))) < tol, "not orthonormal");
        let back = from_spectrum(&e.vectors, &e.values);
        let scale = e.values.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        assert!(max_abs(&(back - a)) < tol * scale, "does not reconstruct");
        assert!(e.values.windows(2).all(|w| w[0] >= w[1]), "not descending");
        for col in e.vectors.column_iter() {
            let big = col.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let first = col.iter().position(|v| v.abs() == big).unwrap();
            assert!(col[first] > 0.0, "sign convention");
        }
    }

    #[test]
    fn known_spectra_are_recovered() {
        for (n, seed) in [(1usize, 1u64), (2, 2), (5, 3), (40, 4), (100, 5)] {
            let q = orthogonal(n, seed);
            // Distinct values (7i mod n is a permutation of the parity of i), gaps ≥ 0.1, of
            // both signs for the larger n.
            let values: Vec<f64> =
                (0..n).map(|i| 6.0 - 0.1 * (i * 7 % n) as f64 - 3.0 * (i % 2) as f64).collect();
            let a = from_spectrum(&q, &values);
            let e = symmetric_eigen(&a).unwrap();
            let mut want = values.clone();
            want.sort_by(|x, y| y.total_cmp(x));
            for (g, w) in e.values.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12 * 10.0, "n={n}: {g} vs {w}");
            }
            check_decomposition(&a, &e, 1e-12);
            // Each eigenvector is the planted one up to sign: |⟨v, q_i⟩| = 1.
            for (j, w) in want.iter().enumerate() {
                let i = values.iter().position(|v| v == w).unwrap();
                let c = e.vectors.column(j).dot(&q.column(i)).abs();
                assert!((c - 1.0).abs() < 1e-10, "n={n}, eigenvalue {w}: |cos| = {c}");
            }
        }
    }

    #[test]
    fn repeated_eigenvalues_and_rank_deficient_matrices() {
        let q = orthogonal(30, 8);
        let values: Vec<f64> = (0..30).map(|i| [5.0, 5.0, 5.0, 1.0, 0.0][i % 5]).collect();
        let a = from_spectrum(&q, &values);
        let e = symmetric_eigen(&a).unwrap();
        check_decomposition(&a, &e, 1e-12);
        assert!(e.values[..6].iter().all(|v| (v - 5.0).abs() < 1e-12));
        assert!(e.values[24..].iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn agrees_with_nalgebra_on_random_symmetric_matrices() {
        let g = gaussian_matrix(60, 60, 21);
        let a = &g + g.transpose();
        let e = symmetric_eigen(&a).unwrap();
        let mut want: Vec<f64> = a.clone().symmetric_eigen().eigenvalues.iter().copied().collect();
        want.sort_by(|x, y| y.total_cmp(x));
        for (g, w) in e.values.iter().zip(&want) {
            assert!((g - w).abs() < 1e-11, "{g} vs {w}");
        }
        check_decomposition(&a, &e, 1e-12);
    }

    #[test]
    fn trivial_and_extreme_matrices() {
        let e = symmetric_eigen(&DMatrix::zeros(0, 0)).unwrap();
        assert!(e.values.is_empty());
        let e = symmetric_eigen(&DMatrix::zeros(3, 3)).unwrap();
        assert_eq!(e.values, vec![0.0; 3]);
        assert_eq!(e.vectors, DMatrix::identity(3, 3));
        let d = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 3.0, 2.0]));
        let e = symmetric_eigen(&d).unwrap();
        assert_eq!(e.values, vec![3.0, 2.0, 1.0]);
        assert_eq!(e.vectors.column(0).iter().copied().collect::<Vec<_>>(), vec![0.0, 1.0, 0.0]);
        // Values near the ends of the f64 range: the power-of-two scaling keeps them exact.
        let q = orthogonal(6, 9);
        for scale in [1e300, 1e-300] {
            let values: Vec<f64> = (0..6).map(|i| (6 - i) as f64 * scale).collect();
            let e = symmetric_eigen(&from_spectrum(&q, &values)).unwrap();
            for (g, w) in e.values.iter().zip(&values) {
                assert!(((g - w) / w).abs() < 1e-12, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn only_the_symmetric_part_counts_and_bad_input_is_an_error() {
        let a = DMatrix::from_row_slice(2, 2, &[2.0, 1.0, 3.0, 2.0]);
        let e = symmetric_eigen(&a).unwrap();
        assert!((e.values[0] - 4.0).abs() < 1e-15 && e.values[1].abs() < 1e-15);
        assert_eq!(symmetric_eigen(&DMatrix::zeros(2, 3)), Err(EigenError::NotSquare { rows: 2, cols: 3 }));
        let mut bad = DMatrix::identity(3, 3);
        bad[(1, 2)] = f64::NAN;
        assert_eq!(symmetric_eigen(&bad), Err(EigenError::NonFinite));
    }

    #[test]
    fn results_are_deterministic() {
        let g = gaussian_matrix(50, 50, 33);
        let a = &g * g.transpose();
        assert_eq!(symmetric_eigen(&a).unwrap(), symmetric_eigen(&a.clone()).unwrap());
    }
}
