//! Reference maths computed on the client, independently of the extension: in f64, from the
//! raw f32 data a test generated (or read back as `real[]`), by the documented definitions —
//! cosines, normalised blocks, the symmetric multipliers `sqrt(w_k / w_max)`, combined vectors,
//! the weighted score `Σ s_k cos_k`, and OLS solved here.

use crate::data::Models;

/// Euclidean norm in f64.
pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

/// Cosine in f64 of two f32 vectors (independent of the extension), `None` when either is a
/// zero vector (no direction).
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    Some(dot / (na * nb))
}

/// Cosine in f64, `None` when either side is missing or a zero vector (no direction).
pub fn cos(a: &Option<Vec<f32>>, b: &Option<Vec<f32>>) -> Option<f64> {
    cosine(a.as_ref()?, b.as_ref()?)
}

/// `scale · v / ‖v‖` in f64; zeros for a missing or zero vector.
pub fn unit_block(v: &Option<Vec<f32>>, d: usize, scale: f64) -> Vec<f64> {
    match v {
        Some(v) if norm(v) > 0.0 => {
            let n = norm(v);
            v.iter().map(|&x| scale * x as f64 / n).collect()
        }
        _ => vec![0.0; d],
    }
}

/// Symmetric-mode multipliers per model: `sqrt(w_k / w_max)` when `w_k > threshold · w_max`,
/// else 0 (block left out).
pub fn symmetric_multipliers(w: &[f64], threshold: f64) -> Vec<f64> {
    let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(max > 0.0, "test precondition: a positive weight, {w:?}");
    w.iter().map(|&x| if x > threshold * max { (x / max).sqrt() } else { 0.0 }).collect()
}

/// Concatenation of `mult_k · normalise(v_k)` over the blocks with a non-zero multiplier
/// (`dims`: the models' dimensions, for the zeros of a missing or zero vector).
pub fn combined(m: &Models, dims: &[usize], mult: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for k in 0..dims.len() {
        if mult[k] != 0.0 {
            out.extend(unit_block(&m[k], dims[k], mult[k]));
        }
    }
    out
}

/// `Σ s_k cos_k(a, b)`, a missing or zero vector counting 0.
pub fn score(a: &Models, b: &Models, s: &[f64]) -> f64 {
    (0..s.len()).map(|k| s[k] * cos(&a[k], &b[k]).unwrap_or(0.0)).sum()
}

/// OLS with intercept (centred normal equations, Gaussian elimination with partial pivoting):
/// the coefficients and the intercept.
pub fn ols(x: &[Vec<f64>], y: &[f64]) -> (Vec<f64>, f64) {
    let n = x.len() as f64;
    let k = x[0].len();
    let mx: Vec<f64> = (0..k).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let my = y.iter().sum::<f64>() / n;
    let mut a = vec![vec![0.0; k + 1]; k];
    for (r, &yy) in x.iter().zip(y) {
        for i in 0..k {
            for j in 0..k {
                a[i][j] += (r[i] - mx[i]) * (r[j] - mx[j]);
            }
            a[i][k] += (r[i] - mx[i]) * (yy - my);
        }
    }
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
        a.swap(c, p);
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let w: Vec<f64> = (0..k).map(|i| a[i][k] / a[i][i]).collect();
    let b = my - (0..k).map(|j| w[j] * mx[j]).sum::<f64>();
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cos_of_missing_or_zero_is_none() {
        let v = Some(vec![1.0, 2.0]);
        assert_eq!(cos(&v, &None), None);
        assert_eq!(cos(&v, &Some(vec![0.0, 0.0])), None);
        assert!((cos(&v, &Some(vec![2.0, 4.0])).unwrap() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn ols_recovers_an_exact_line() {
        let x: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64, (i * i) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| 3.0 - 2.0 * r[0] + 0.5 * r[1]).collect();
        let (w, b) = ols(&x, &y);
        assert!(
            (w[0] + 2.0).abs() < 1e-9 && (w[1] - 0.5).abs() < 1e-9 && (b - 3.0).abs() < 1e-9,
            "{w:?} {b}"
        );
    }
}
