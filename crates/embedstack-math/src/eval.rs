//! Evaluation statistics for held-out pairs: Pearson and Spearman correlation.
//!
//! Spearman is the Pearson correlation of average ranks (ties share the mean of the ranks
//! they span), the definition `scipy.stats.spearmanr` uses, which the reference results of
//! the test fixtures were computed with.

/// Pearson correlation; `None` with fewer than two points or when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    let n = x.len();
    if n < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based average ranks.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn ties_share_the_mean_rank() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn a_hand_computed_example() {
        // x ranks 1,2,3,4,5; y ranks 2,1,4,3,5: d² = 1+1+1+1+0 = 4, rho = 1 - 6·4/(5·24) = 0.8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [20.0, 10.0, 40.0, 30.0, 50.0];
        assert_relative_eq!(spearman(&x, &y).unwrap(), 0.8, epsilon = 1e-15);
        // Pearson of an exact line is 1 (-1 when decreasing).
        assert_relative_eq!(pearson(&x, &[3.0, 5.0, 7.0, 9.0, 11.0]).unwrap(), 1.0, epsilon = 1e-15);
        assert_relative_eq!(pearson(&x, &[-1.0, -2.0, -3.0, -4.0, -5.0]).unwrap(), -1.0, epsilon = 1e-15);
        assert_eq!(pearson(&x, &[1.0; 5]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    proptest! {
        #[test]
        fn spearman_ignores_monotone_transforms(v in prop::collection::vec((-1e3f64..1e3, -1e3f64..1e3), 3..40)) {
            let (x, y): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
            let tx: Vec<f64> = x.iter().map(|a| (a / 100.0).exp()).collect();
            match (spearman(&x, &y), spearman(&tx, &y)) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }
}
