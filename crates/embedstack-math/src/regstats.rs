//! Sufficient statistics of a weighted linear regression of `y` on `k` features: weight sum,
//! means and the centred co-moment matrix of `z = [x_1 … x_k, y]`, updated one row at a time
//! and merged pairwise.
//!
//! These are the Youngs–Cramer / Chan updates core Postgres uses in `float8_regr_accum`
//! (two variables), generalised to `k + 1` variables and to sample weights (West 1979):
//!
//! ```text
//! accumulate (z, w):  W' = W + w;  d = z − m;  m' = m + d·w/W';  C' = C + w·d·(z − m')ᵀ
//! merge (A, B):       W = Wa + Wb; d = mb − ma; m = ma + d·Wb/W; C = Ca + Cb + d·dᵀ·Wa·Wb/W
//! ```
//!
//! Centring as we go keeps the co-moments accurate when the data sit far from zero with a small
//! spread (y ≈ 1e6 ± 1), where raw sums of squares would cancel catastrophically.
//!
//! `C` is symmetric; we keep its upper triangle packed row by row.

/// Layout version of the serialised state; bump on any change.
pub const STATE_VERSION: f64 = 1.0;
/// Marks a serialised state (guards against passing an arbitrary float8[] to `solve`).
pub const STATE_MAGIC: f64 = 4_011_970.0;
/// Serialised header: magic, version, k, rows used, rows skipped, weight sum.
pub const HEADER_LEN: usize = 6;

#[derive(Debug, Clone, PartialEq)]
pub struct RegStats {
    /// Number of features (the state covers `k + 1` variables: features then `y`).
    pub k: usize,
    /// Rows accumulated (with positive weight).
    pub n: u64,
    /// Rows skipped (NULL feature or label, or zero weight).
    pub skipped: u64,
    /// Σ w.
    pub wsum: f64,
    /// Weighted means of `[x, y]`, length `k + 1`.
    pub mean: Vec<f64>,
    /// Upper triangle of Σ w (z − m)(z − m)ᵀ, packed by rows, length `(k+1)(k+2)/2`.
    pub comoment: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatsError {
    /// A row's feature count differs from the state's.
    FeatureCount { expected: usize, got: usize },
    /// Non-finite feature, label or weight. `position` is 1-based within the features; 0
    /// means the label, `usize::MAX` the weight.
    NonFinite { position: usize, value: f64 },
    /// Negative sample weight.
    NegativeWeight(f64),
    /// A serialised state is malformed.
    Corrupt(String),
}

impl std::fmt::Display for StatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsError::FeatureCount { expected, got } => {
                write!(f, "feature arrays of different lengths {expected} and {got}")
            }
            StatsError::NonFinite { position: 0, value } => write!(f, "label is {value}"),
            StatsError::NonFinite { position: usize::MAX, value } => write!(f, "sample weight is {value}"),
            StatsError::NonFinite { position, value } => write!(f, "feature {position} is {value}"),
            StatsError::NegativeWeight(w) => write!(f, "sample weight {w} is negative"),
            StatsError::Corrupt(why) => write!(f, "invalid regression state: {why}"),
        }
    }
}

impl std::error::Error for StatsError {}

#[inline]
fn packed_len(p: usize) -> usize {
    p * (p + 1) / 2
}

impl RegStats {
    pub fn new(k: usize) -> Self {
        RegStats {
            k,
            n: 0,
            skipped: 0,
            wsum: 0.0,
            mean: vec![0.0; k + 1],
            comoment: vec![0.0; packed_len(k + 1)],
        }
    }

    /// Number of variables tracked (`k + 1`).
    #[inline]
    pub fn p(&self) -> usize {
        self.k + 1
    }

    /// Co-moment `C[i][j]` (any order of `i`, `j`).
    #[inline]
    pub fn c(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i <= j { (i, j) } else { (j, i) };
        let p = self.p();
        // Row i of the packed upper triangle starts after rows 0..i of lengths p, p-1, …,
        // i.e. at i·p − i(i−1)/2, and holds columns i..p.
        self.comoment[i * p - i * i.saturating_sub(1) / 2 + (j - i)]
    }

    /// Adds one row. `x.len()` must equal `k`; `w > 0`.
    pub fn accumulate(&mut self, x: &[f64], y: f64, w: f64) -> Result<(), StatsError> {
        check_row(self.k, x, y, w)?;
        if w == 0.0 {
            self.skipped += 1;
            return Ok(());
        }
        accumulate_raw(self.k, &mut self.wsum, &mut self.mean, &mut self.comoment, x, y, w);
        self.n += 1;
        Ok(())
    }

    /// Counts a row that was skipped (NULL feature or label).
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Merges `other` into `self` (Chan et al.). Both must have the same `k`.
    pub fn merge(&mut self, other: &RegStats) -> Result<(), StatsError> {
        if self.k != other.k {
            return Err(StatsError::FeatureCount { expected: self.k, got: other.k });
        }
        merge_raw(
            self.p(),
            (&mut self.wsum, &mut self.mean, &mut self.comoment),
            (other.wsum, &other.mean, &other.comoment),
        );
        self.n += other.n;
        self.skipped += other.skipped;
        Ok(())
    }

    /// Serialised form: `[magic, version, k, n, skipped, wsum, mean…, comoment…]`.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(serialized_len(self.k));
        v.extend_from_slice(&[
            STATE_MAGIC,
            STATE_VERSION,
            self.k as f64,
            self.n as f64,
            self.skipped as f64,
            self.wsum,
        ]);
        v.extend_from_slice(&self.mean);
        v.extend_from_slice(&self.comoment);
        v
    }

    /// Parses and validates a serialised state.
    pub fn from_slice(s: &[f64]) -> Result<Self, StatsError> {
        let k = validate_header(s)?;
        let p = k + 1;
        let mean = s[HEADER_LEN..HEADER_LEN + p].to_vec();
        let comoment = s[HEADER_LEN + p..].to_vec();
        let st = RegStats { k, n: s[3] as u64, skipped: s[4] as u64, wsum: s[5], mean, comoment };
        if st.mean.iter().chain(&st.comoment).any(|v| !v.is_finite()) {
            return Err(StatsError::Corrupt("non-finite moment".into()));
        }
        for i in 0..p {
            if st.c(i, i) < 0.0 {
                return Err(StatsError::Corrupt(format!("negative variance for variable {}", i + 1)));
            }
        }
        Ok(st)
    }
}

/// Length of the serialised state for `k` features.
pub fn serialized_len(k: usize) -> usize {
    HEADER_LEN + (k + 1) + packed_len(k + 1)
}

/// Checks the header of a serialised state and returns its `k`.
pub fn validate_header(s: &[f64]) -> Result<usize, StatsError> {
    if s.len() < HEADER_LEN {
        return Err(StatsError::Corrupt(format!("{} elements, a state has at least {HEADER_LEN}", s.len())));
    }
    if s[0] != STATE_MAGIC {
        return Err(StatsError::Corrupt("not a regression state (bad magic number)".into()));
    }
    if s[1] != STATE_VERSION {
        return Err(StatsError::Corrupt(format!("unsupported state version {}", s[1])));
    }
    let kf = s[2];
    // k = 0 is the state before the first usable row: it only counts skipped rows.
    if !(kf.is_finite() && kf >= 0.0 && kf.fract() == 0.0 && kf <= 10_000.0) {
        return Err(StatsError::Corrupt(format!("invalid feature count {kf}")));
    }
    let k = kf as usize;
    if s.len() != serialized_len(k) {
        return Err(StatsError::Corrupt(format!(
            "{} elements, expected {} for {k} features",
            s.len(),
            serialized_len(k)
        )));
    }
    for (i, name) in [(3, "row count"), (4, "skipped count")] {
        if !(s[i].is_finite() && s[i] >= 0.0 && s[i].fract() == 0.0) {
            return Err(StatsError::Corrupt(format!("invalid {name} {}", s[i])));
        }
    }
    if !(s[5].is_finite() && s[5] >= 0.0) || (s[3] == 0.0) != (s[5] == 0.0) {
        return Err(StatsError::Corrupt(format!("invalid weight sum {}", s[5])));
    }
    Ok(k)
}

/// Validates one row against a state of `k` features: feature count, finite values, weight ≥ 0.
/// Shared by [`RegStats::accumulate`] and the in-place SQL transition function.
#[inline]
pub fn check_row(k: usize, x: &[f64], y: f64, w: f64) -> Result<(), StatsError> {
    if x.len() != k {
        return Err(StatsError::FeatureCount { expected: k, got: x.len() });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite { position: i + 1, value: x[i] });
    }
    if !y.is_finite() {
        return Err(StatsError::NonFinite { position: 0, value: y });
    }
    if !w.is_finite() {
        return Err(StatsError::NonFinite { position: usize::MAX, value: w });
    }
    if w < 0.0 {
        return Err(StatsError::NegativeWeight(w));
    }
    Ok(())
}

/// The update on borrowed storage, so the SQL transition function can run it in place on the
/// aggregate's `float8[]` state without allocating.
#[inline]
pub fn accumulate_raw(k: usize, wsum: &mut f64, mean: &mut [f64], c: &mut [f64], x: &[f64], y: f64, w: f64) {
    let p = k + 1;
    let z = |i: usize| if i < k { x[i] } else { y };
    let new_w = *wsum + w;
    let ratio = w / new_w;
    // d = z - m (old mean); e = z - m' (new mean) = d * (1 - ratio)
    let mut d = [0.0f64; 64];
    let mut dv;
    let d: &mut [f64] = if p <= 64 {
        &mut d[..p]
    } else {
        dv = vec![0.0; p];
        &mut dv
    };
    for i in 0..p {
        d[i] = z(i) - mean[i];
        mean[i] += d[i] * ratio;
    }
    let scale = w * (1.0 - ratio);
    let mut idx = 0;
    for i in 0..p {
        let di = d[i] * scale;
        for &dj in &d[i..p] {
            c[idx] += di * dj;
            idx += 1;
        }
    }
    *wsum = new_w;
}

/// The merge on borrowed storage (see [`RegStats::merge`]).
pub fn merge_raw(p: usize, a: (&mut f64, &mut [f64], &mut [f64]), b: (f64, &[f64], &[f64])) {
    let (wa, ma, ca) = a;
    let (wb, mb, cb) = b;
    if wb == 0.0 {
        return;
    }
    if *wa == 0.0 {
        *wa = wb;
        ma.copy_from_slice(mb);
        ca.copy_from_slice(cb);
        return;
    }
    let w = *wa + wb;
    let f = *wa * wb / w;
    let d: Vec<f64> = (0..p).map(|i| mb[i] - ma[i]).collect();
    let mut idx = 0;
    for i in 0..p {
        for j in i..p {
            ca[idx] += cb[idx] + d[i] * d[j] * f;
            idx += 1;
        }
    }
    for i in 0..p {
        ma[i] += d[i] * wb / w;
    }
    *wa = w;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two-pass reference: weighted means, then centred co-moments.
    fn two_pass(k: usize, rows: &[(Vec<f64>, f64, f64)]) -> RegStats {
        let mut st = RegStats::new(k);
        let wsum: f64 = rows.iter().map(|r| r.2).sum();
        let z = |r: &(Vec<f64>, f64, f64), i: usize| if i < k { r.0[i] } else { r.1 };
        for i in 0..=k {
            st.mean[i] = rows.iter().map(|r| r.2 * z(r, i)).sum::<f64>() / wsum;
        }
        let mut idx = 0;
        for i in 0..=k {
            for j in i..=k {
                st.comoment[idx] =
                    rows.iter().map(|r| r.2 * (z(r, i) - st.mean[i]) * (z(r, j) - st.mean[j])).sum();
                idx += 1;
            }
        }
        st.wsum = wsum;
        st.n = rows.len() as u64;
        st
    }

    fn close(a: &RegStats, b: &RegStats, tol: f64) -> bool {
        a.k == b.k
            && a.n == b.n
            && a.skipped == b.skipped
            && (a.wsum - b.wsum).abs() <= tol * b.wsum.abs().max(1.0)
            && a.mean.iter().zip(&b.mean).all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0))
            && a.comoment.iter().zip(&b.comoment).all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0))
    }

    fn rows(k: usize) -> impl Strategy<Value = Vec<(Vec<f64>, f64, f64)>> {
        proptest::collection::vec(
            (proptest::collection::vec(-1.0f64..1.0, k), -10.0f64..10.0, 0.01f64..5.0),
            1..60,
        )
    }

    fn acc(k: usize, rows: &[(Vec<f64>, f64, f64)]) -> RegStats {
        let mut st = RegStats::new(k);
        for (x, y, w) in rows {
            st.accumulate(x, *y, *w).unwrap();
        }
        st
    }

    #[test]
    fn packed_index_matches_layout() {
        let mut st = RegStats::new(2);
        st.comoment = (0..6).map(|i| i as f64).collect();
        // rows: (0,0)(0,1)(0,2) (1,1)(1,2) (2,2)
        let want = [[0, 1, 2], [1, 3, 4], [2, 4, 5]];
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(st.c(i, j), want[i][j] as f64, "({i},{j})");
            }
        }
    }

    #[test]
    fn errors() {
        let mut st = RegStats::new(2);
        assert_eq!(st.accumulate(&[1.0], 1.0, 1.0), Err(StatsError::FeatureCount { expected: 2, got: 1 }));
        assert!(matches!(
            st.accumulate(&[1.0, f64::NAN], 1.0, 1.0),
            Err(StatsError::NonFinite { position: 2, .. })
        ));
        assert!(matches!(
            st.accumulate(&[1.0, 1.0], f64::INFINITY, 1.0),
            Err(StatsError::NonFinite { position: 0, .. })
        ));
        assert_eq!(st.accumulate(&[1.0, 1.0], 1.0, -1.0), Err(StatsError::NegativeWeight(-1.0)));
        assert_eq!(st, RegStats::new(2), "a rejected row leaves the state unchanged");
    }

    #[test]
    fn corrupt_states_are_rejected() {
        let good = acc(2, &[(vec![1.0, 2.0], 3.0, 1.0), (vec![0.0, 1.0], 1.0, 1.0)]).to_vec();
        assert_eq!(RegStats::from_slice(&good).unwrap().to_vec(), good);
        let mut bad = good.clone();
        bad[0] = 1.0;
        assert!(RegStats::from_slice(&bad).is_err());
        assert!(RegStats::from_slice(&good[..good.len() - 1]).is_err());
        assert!(RegStats::from_slice(&[]).is_err());
        let mut bad = good.clone();
        bad[2] = 1e300;
        assert!(RegStats::from_slice(&bad).is_err());
        let mut bad = good.clone();
        bad[HEADER_LEN + 3] = -1.0; // C[0][0] < 0
        assert!(RegStats::from_slice(&bad).is_err());
        let mut bad = good;
        bad[HEADER_LEN] = f64::NAN;
        assert!(RegStats::from_slice(&bad).is_err());
    }

    proptest! {
        #[test]
        fn one_pass_equals_two_pass(r in rows(3)) {
            prop_assert!(close(&acc(3, &r), &two_pass(3, &r), 1e-10));
        }

        #[test]
        fn merge_of_a_split_equals_accumulating_the_union(r in rows(3), cut in 0usize..60, rev in any::<bool>()) {
            let cut = cut.min(r.len());
            let (a, b) = r.split_at(cut);
            let mut sa = acc(3, a);
            let sb = acc(3, b);
            if rev {
                let mut sb2 = sb.clone();
                sb2.merge(&sa).unwrap();
                sa = sb2;
            } else {
                sa.merge(&sb).unwrap();
            }
            prop_assert!(close(&sa, &acc(3, &r), 1e-10));
        }

        #[test]
        fn serialisation_round_trips(r in rows(2)) {
            let st = acc(2, &r);
            prop_assert_eq!(RegStats::from_slice(&st.to_vec()).unwrap(), st);
        }
    }
}
