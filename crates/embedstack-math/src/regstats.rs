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

use crate::interrupt;

/// Layout version of the serialised state; bump on any change.
pub const STATE_VERSION: f64 = 1.0;
/// Marks a serialised state (guards against passing an arbitrary float8[] to `solve`).
pub const STATE_MAGIC: f64 = 4_011_970.0;
/// Serialised header: magic, version, k, rows used, rows skipped, weight sum.
pub const HEADER_LEN: usize = 6;

/// Most features a regression state, and so a fit, may have.
///
/// A state holds `(k+1)(k+2)/2` co-moments and solving decomposes `k × k` matrices (the
/// non-negative solver does so once per active-set change: roughly `k⁴` work), so memory and
/// time grow fast with `k`; the use case, stacking a handful of embedding models, needs few.
/// At 256 a state is 33,416 float8 values (261 kB) and one eigen-decomposition takes tens of
/// milliseconds, the granularity of interrupt checks. Every `k` that comes from input (a row's
/// feature count, a stored state's header, a struct handed to `solve`) is checked against this
/// limit before anything of size `k` is allocated.
pub const MAX_FEATURES: usize = 256;

/// Largest row count (used or skipped) a state may hold. The serialised counts are float8,
/// exact up to 2^53; a larger stored "count" can only be forged, and would saturate when read
/// as an integer (a `bigint` of −1 in SQL).
pub const MAX_COUNT: u64 = 1 << 53;

/// Relative slack of the Cauchy–Schwarz check `|C_ij| ≤ √(C_ii · C_jj)` on stored states. The
/// co-moments are sums of rank-one positive semi-definite terms, so the inequality holds up to
/// rounding: about `n · 2^−52` relative in the worst case, far below this for any real `n`.
const CAUCHY_SCHWARZ_SLACK: f64 = 1e-4;
/// Absolute slack on `C_ii` in the same check: squared deviations that underflow (|d| < 1e-154)
/// vanish from `C_ii` while their products with large deviations survive in `C_ij`.
const UNDERFLOW_SLACK: f64 = 1e-290;
/// Ceiling of an updated diagonal co-moment in accumulate and merge. Keeping each `C_ii` at or
/// below `f64::MAX / 2` guarantees, by Cauchy–Schwarz, that no off-diagonal update overflows
/// either, so the check on the `k + 1` diagonal terms, done before anything is written, covers
/// the whole matrix.
const DIAGONAL_LIMIT: f64 = f64::MAX / 2.0;

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
    /// A serialised state, or a state handed over as a struct, is malformed or inconsistent.
    Corrupt(String),
    /// More features than [`MAX_FEATURES`].
    TooManyFeatures { got: usize },
    /// A statistic (or a result computed from statistics) does not fit in an `f64`; the
    /// string names it.
    Overflow(String),
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
            StatsError::TooManyFeatures { got } => {
                write!(f, "a regression cannot have more than {MAX_FEATURES} features, got {got}")
            }
            StatsError::Overflow(what) => write!(f, "{what} is out of range for type double precision"),
        }
    }
}

impl std::error::Error for StatsError {}

#[inline]
fn packed_len(p: usize) -> usize {
    p * (p + 1) / 2
}

/// Name of variable `i` of a state with `k` features, for messages.
fn var_name(k: usize, i: usize) -> String {
    if i < k {
        format!("feature {}", i + 1)
    } else {
        "the label".to_string()
    }
}

/// `Err(TooManyFeatures)` when `k` exceeds [`MAX_FEATURES`]; call it before allocating
/// anything whose size depends on a `k` taken from input.
#[inline]
pub fn check_feature_count(k: usize) -> Result<(), StatsError> {
    if k > MAX_FEATURES {
        Err(StatsError::TooManyFeatures { got: k })
    } else {
        Ok(())
    }
}

/// `a + b` for row counts, refusing to go past [`MAX_COUNT`].
fn add_counts(a: u64, b: u64) -> Result<u64, StatsError> {
    a.checked_add(b)
        .filter(|&s| s <= MAX_COUNT)
        .ok_or_else(|| StatsError::Overflow(format!("a row count above {MAX_COUNT}")))
}

impl RegStats {
    /// An empty state of `k` features. `k` is the caller's to bound (a model set's model
    /// count, a test's constant); a `k` that comes from input goes through [`RegStats::try_new`].
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

    /// [`RegStats::new`] for a `k` from input: checks [`MAX_FEATURES`] before allocating.
    pub fn try_new(k: usize) -> Result<Self, StatsError> {
        check_feature_count(k)?;
        Ok(RegStats::new(k))
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

    /// Adds one row. `x.len()` must equal `k`; `w > 0`. On error the state is unchanged.
    pub fn accumulate(&mut self, x: &[f64], y: f64, w: f64) -> Result<(), StatsError> {
        check_row(self.k, x, y, w)?;
        if w == 0.0 {
            self.skipped = add_counts(self.skipped, 1)?;
            return Ok(());
        }
        let n = add_counts(self.n, 1)?;
        accumulate_raw(self.k, &mut self.wsum, &mut self.mean, &mut self.comoment, x, y, w)?;
        self.n = n;
        Ok(())
    }

    /// Counts a row that was skipped (NULL feature or label). Saturates at [`MAX_COUNT`]
    /// (2^53 skipped rows cannot happen in practice; saturating keeps this infallible for the
    /// per-pair kernels that call it).
    pub fn skip(&mut self) {
        self.skipped = (self.skipped + 1).min(MAX_COUNT);
    }

    /// Checks that the state is well-formed and internally consistent: `k` within
    /// [`MAX_FEATURES`] (checked first, before any work proportional to `k`), lengths matching
    /// `k`, counts within [`MAX_COUNT`], a finite non-negative weight sum that is zero exactly
    /// when no row was used, finite means and co-moments, non-negative variances, co-moments
    /// within the Cauchy–Schwarz bound, and all-zero moments when no row was used.
    ///
    /// Every public entry point that takes a state built elsewhere (`solve`, `merge`,
    /// `cross_validate`, `prediction_mse`) calls it: the fields are public, and a state parsed
    /// from storage went through the same checks in [`RegStats::from_slice`].
    pub fn check(&self) -> Result<(), StatsError> {
        check_feature_count(self.k)?;
        let p = self.p();
        if self.mean.len() != p || self.comoment.len() != packed_len(p) {
            return Err(StatsError::Corrupt(format!(
                "{} means and {} co-moments for {} features, expected {} and {}",
                self.mean.len(),
                self.comoment.len(),
                self.k,
                p,
                packed_len(p)
            )));
        }
        for (v, name) in [(self.n, "row count"), (self.skipped, "skipped count")] {
            if v > MAX_COUNT {
                return Err(StatsError::Corrupt(format!("invalid {name} {v}")));
            }
        }
        check_weight_sum(self.n == 0, self.wsum)?;
        check_moments(self.k, self.n == 0, &self.mean, &self.comoment)
    }

    /// Merges `other` into `self` (Chan et al.). Both must be valid ([`RegStats::check`]) and
    /// have the same `k`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &RegStats) -> Result<(), StatsError> {
        self.check()?;
        other.check()?;
        if self.k != other.k {
            return Err(StatsError::FeatureCount { expected: self.k, got: other.k });
        }
        self.merge_checked(other)
    }

    /// [`RegStats::merge`] of two states already checked, with the same `k`. Transactional:
    /// works on copies of the moments, which costs no more than the merge itself.
    pub(crate) fn merge_checked(&mut self, other: &RegStats) -> Result<(), StatsError> {
        let n = add_counts(self.n, other.n)?;
        let skipped = add_counts(self.skipped, other.skipped)?;
        let (mut wsum, mut mean, mut comoment) = (self.wsum, self.mean.clone(), self.comoment.clone());
        merge_raw(
            self.p(),
            (&mut wsum, &mut mean, &mut comoment),
            (other.wsum, &other.mean, &other.comoment),
        )?;
        (self.n, self.skipped, self.wsum, self.mean, self.comoment) = (n, skipped, wsum, mean, comoment);
        Ok(())
    }

    /// The state of the same rows with feature `j` (0-based) deleted: its mean and its row and
    /// column of the co-moment matrix removed, the label moving up to index `k − 1`. Exact: the
    /// centred co-moments of the remaining variables do not depend on the deleted one, so this
    /// is, up to the rounding of the original accumulation, the state accumulated from the rows
    /// with column `j` deleted (what the ablation of `evaluate` refits from). The state is
    /// checked first; `j ≥ k` is `Err(FeatureCount)`.
    pub fn without_feature(&self, j: usize) -> Result<RegStats, StatsError> {
        self.check()?;
        if j >= self.k {
            return Err(StatsError::FeatureCount { expected: self.k, got: j + 1 });
        }
        let keep: Vec<usize> = (0..self.p()).filter(|&i| i != j).collect();
        let mean = keep.iter().map(|&i| self.mean[i]).collect();
        let mut comoment = Vec::with_capacity(packed_len(keep.len()));
        for (r, &a) in keep.iter().enumerate() {
            for &b in &keep[r..] {
                comoment.push(self.c(a, b));
            }
        }
        Ok(RegStats { k: self.k - 1, n: self.n, skipped: self.skipped, wsum: self.wsum, mean, comoment })
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

    /// Parses and validates a serialised state ([`validate_slice`]).
    pub fn from_slice(s: &[f64]) -> Result<Self, StatsError> {
        let k = validate_slice(s)?;
        let p = k + 1;
        Ok(RegStats {
            k,
            n: s[3] as u64,
            skipped: s[4] as u64,
            wsum: s[5],
            mean: s[HEADER_LEN..HEADER_LEN + p].to_vec(),
            comoment: s[HEADER_LEN + p..].to_vec(),
        })
    }
}

/// Merges two valid states into a new one. Unlike [`RegStats::merge`], a state without usable
/// rows merges with a state of any `k` (the `k = 0` state an aggregate starts from has not seen
/// a feature array yet): its skipped rows are added to the other's.
pub fn merge_states(a: &RegStats, b: &RegStats) -> Result<RegStats, StatsError> {
    a.check()?;
    b.check()?;
    if a.k != b.k {
        let (rows, empty) = match (a.n, b.n) {
            (0, _) => (b, a),
            (_, 0) => (a, b),
            _ => return Err(StatsError::FeatureCount { expected: a.k, got: b.k }),
        };
        let mut out = rows.clone();
        out.skipped = add_counts(out.skipped, empty.skipped)?;
        return Ok(out);
    }
    let mut out = a.clone();
    out.merge_checked(b)?;
    Ok(out)
}

/// Parses states laid end to end (e.g. the rows of a 2-D `float8[]`, one state per row): each
/// state's length comes from its own header, whose `k` is checked against [`MAX_FEATURES`]
/// before the length is computed.
pub fn split_states(flat: &[f64]) -> Result<Vec<RegStats>, StatsError> {
    let mut out = Vec::new();
    let mut rest = flat;
    while !rest.is_empty() {
        // A long array of small states takes a while to validate.
        interrupt::check();
        if rest.len() < HEADER_LEN {
            return Err(StatsError::Corrupt(format!(
                "{} trailing elements, a state has at least {HEADER_LEN}",
                rest.len()
            )));
        }
        let len = serialized_len(parse_feature_count(rest[2])?);
        out.push(RegStats::from_slice(&rest[..len.min(rest.len())])?);
        rest = &rest[len..];
    }
    Ok(out)
}

/// Length of the serialised state for `k` features.
pub fn serialized_len(k: usize) -> usize {
    HEADER_LEN + (k + 1) + packed_len(k + 1)
}

/// The feature count of a serialised header: a non-negative integer within [`MAX_FEATURES`].
fn parse_feature_count(kf: f64) -> Result<usize, StatsError> {
    // k = 0 is the state before the first usable row: it only counts skipped rows.
    if !(kf.is_finite() && kf >= 0.0 && kf.fract() == 0.0) {
        return Err(StatsError::Corrupt(format!("invalid feature count {kf}")));
    }
    if kf > MAX_FEATURES as f64 {
        // A huge integral float is not a plausible request for that many features.
        return Err(if kf <= MAX_COUNT as f64 {
            StatsError::TooManyFeatures { got: kf as usize }
        } else {
            StatsError::Corrupt(format!("invalid feature count {kf}"))
        });
    }
    Ok(kf as usize)
}

/// The weight sum is finite, ≥ 0, and zero exactly when no row was used.
fn check_weight_sum(no_rows: bool, wsum: f64) -> Result<(), StatsError> {
    if !(wsum.is_finite() && wsum >= 0.0) || no_rows != (wsum == 0.0) {
        return Err(StatsError::Corrupt(format!(
            "invalid weight sum {wsum} for {} rows",
            if no_rows { "no" } else { "some" }
        )));
    }
    Ok(())
}

/// Consistency of the moments of a state of `k` features (lengths already checked).
fn check_moments(k: usize, no_rows: bool, mean: &[f64], c: &[f64]) -> Result<(), StatsError> {
    let p = k + 1;
    if let Some(i) = mean.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::Corrupt(format!("the mean of {} is {}", var_name(k, i), mean[i])));
    }
    if let Some(i) = c.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::Corrupt(format!("co-moment {} is {}", i + 1, c[i])));
    }
    if no_rows {
        // Nothing was accumulated: every moment is still the zero it started from.
        if mean.iter().chain(c).any(|&v| v != 0.0) {
            return Err(StatsError::Corrupt("non-zero moments in a state without rows".into()));
        }
        return Ok(());
    }
    let mut sd = Vec::with_capacity(p);
    let mut idx = 0;
    for i in 0..p {
        if c[idx] < 0.0 {
            return Err(StatsError::Corrupt(format!("negative variance for {}", var_name(k, i))));
        }
        sd.push((c[idx] + UNDERFLOW_SLACK).sqrt());
        idx += p - i;
    }
    // A co-moment matrix is positive semi-definite: its 2×2 minors are ≥ 0.
    let mut idx = 0;
    for i in 0..p {
        for j in i..p {
            if c[idx].abs() > sd[i] * sd[j] * (1.0 + CAUCHY_SCHWARZ_SLACK) {
                return Err(StatsError::Corrupt(format!(
                    "the co-moment of {} and {} exceeds what their variances allow",
                    var_name(k, i),
                    var_name(k, j)
                )));
            }
            idx += 1;
        }
    }
    Ok(())
}

/// Checks the header of a serialised state and returns its `k`: magic, version, `k` within
/// [`MAX_FEATURES`] (before the expected length is computed), the length, counts that are
/// integers in `[0, MAX_COUNT]`, and the weight sum. O(1): the in-place transition function
/// runs it on every row.
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
    let k = parse_feature_count(s[2])?;
    if s.len() != serialized_len(k) {
        return Err(StatsError::Corrupt(format!(
            "{} elements, expected {} for {k} features",
            s.len(),
            serialized_len(k)
        )));
    }
    for (i, name) in [(3, "row count"), (4, "skipped count")] {
        if !(s[i].is_finite() && s[i] >= 0.0 && s[i].fract() == 0.0 && s[i] <= MAX_COUNT as f64) {
            return Err(StatsError::Corrupt(format!("invalid {name} {}", s[i])));
        }
    }
    check_weight_sum(s[3] == 0.0, s[5])?;
    Ok(k)
}

/// Full validation of a serialised state without copying it: [`validate_header`], then the
/// consistency of its moments (see [`RegStats::check`]). Returns `k`.
pub fn validate_slice(s: &[f64]) -> Result<usize, StatsError> {
    let k = validate_header(s)?;
    let p = k + 1;
    check_moments(k, s[3] == 0.0, &s[HEADER_LEN..HEADER_LEN + p], &s[HEADER_LEN + p..])?;
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
/// aggregate's `float8[]` state without allocating. `w > 0` (a zero weight is a skipped row).
///
/// Finite rows can still push the statistics out of the `f64` range (features of ±1e300 have
/// squared deviations of 1e600): that is `Err(Overflow)`, detected before anything is written
/// (weight sum, deviations, new means and the diagonal, which bounds the rest — see
/// `DIAGONAL_LIMIT`), so a rejected row leaves the state as it was.
#[inline]
pub fn accumulate_raw(
    k: usize,
    wsum: &mut f64,
    mean: &mut [f64],
    c: &mut [f64],
    x: &[f64],
    y: f64,
    w: f64,
) -> Result<(), StatsError> {
    let p = k + 1;
    let z = |i: usize| if i < k { x[i] } else { y };
    let new_w = *wsum + w;
    if !new_w.is_finite() {
        return Err(StatsError::Overflow("the sum of sample weights".into()));
    }
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
    let scale = w * (1.0 - ratio);
    let mut diag = 0;
    for i in 0..p {
        d[i] = z(i) - mean[i];
        // The same expressions as the update below, so what is checked is what is stored.
        let (m, cii) = (mean[i] + d[i] * ratio, c[diag] + d[i] * scale * d[i]);
        if !(d[i].is_finite() && m.is_finite() && cii <= DIAGONAL_LIMIT) {
            return Err(StatsError::Overflow(format!("the sum of squared deviations of {}", var_name(k, i))));
        }
        diag += p - i;
    }
    for i in 0..p {
        mean[i] += d[i] * ratio;
    }
    let mut idx = 0;
    for i in 0..p {
        let di = d[i] * scale;
        for &dj in &d[i..p] {
            c[idx] += di * dj;
            idx += 1;
        }
    }
    *wsum = new_w;
    Ok(())
}

/// `a · b · f` as `(a · b) · f`, or `(a · f) · b` when `a · b` alone overflows (a small `f` can
/// bring it back into range); the first form is the historical one, kept for bit-identical
/// results whenever it does not overflow.
#[inline]
fn prod3(a: f64, b: f64, f: f64) -> f64 {
    let ab = a * b;
    if ab.is_finite() {
        ab * f
    } else {
        (a * f) * b
    }
}

/// The merge on borrowed storage (see [`RegStats::merge`]). `Err(Overflow)` when the merged
/// statistics leave the `f64` range, detected before anything is written (as in
/// [`accumulate_raw`]).
pub fn merge_raw(
    p: usize,
    a: (&mut f64, &mut [f64], &mut [f64]),
    b: (f64, &[f64], &[f64]),
) -> Result<(), StatsError> {
    let (wa, ma, ca) = a;
    let (wb, mb, cb) = b;
    if wb == 0.0 {
        return Ok(());
    }
    if *wa == 0.0 {
        *wa = wb;
        ma.copy_from_slice(mb);
        ca.copy_from_slice(cb);
        return Ok(());
    }
    let k = p - 1;
    let w = *wa + wb;
    if !w.is_finite() {
        return Err(StatsError::Overflow("the sum of sample weights".into()));
    }
    // Wa·Wb/W, the weight of the between-means term; Wa·(Wb/W) when the product overflows.
    let f = if (*wa * wb).is_finite() { *wa * wb / w } else { *wa * (wb / w) };
    let d: Vec<f64> = (0..p).map(|i| mb[i] - ma[i]).collect();
    let mut diag = 0;
    for (i, &di) in d.iter().enumerate() {
        let cii = ca[diag] + (cb[diag] + prod3(di, di, f));
        if !(di.is_finite() && cii <= DIAGONAL_LIMIT) {
            return Err(StatsError::Overflow(format!("the sum of squared deviations of {}", var_name(k, i))));
        }
        diag += p - i;
    }
    let mut idx = 0;
    for i in 0..p {
        for j in i..p {
            ca[idx] += cb[idx] + prod3(d[i], d[j], f);
            idx += 1;
        }
    }
    for i in 0..p {
        // (d·Wb)/W as before; d·(Wb/W) when d·Wb overflows. A convex combination of the two
        // finite means, so the result is finite.
        let t = d[i] * wb;
        ma[i] += if t.is_finite() { t / w } else { d[i] * (wb / w) };
    }
    *wa = w;
    Ok(())
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
    #[allow(clippy::needless_range_loop)] // a matrix indexed by (row, column) reads best as such
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

    #[test]
    fn the_feature_cap_is_checked_before_allocating() {
        assert_eq!(RegStats::try_new(MAX_FEATURES + 1), Err(StatsError::TooManyFeatures { got: 257 }));
        assert!(RegStats::try_new(MAX_FEATURES).is_ok());
        // Issue 11 item 7: 16,400 features (a header, or the first row of the aggregate).
        let header = [STATE_MAGIC, STATE_VERSION, 16_400.0, 0.0, 0.0, 0.0];
        assert_eq!(validate_header(&header), Err(StatsError::TooManyFeatures { got: 16_400 }));
        assert_eq!(split_states(&header), Err(StatsError::TooManyFeatures { got: 16_400 }));
        assert_eq!(check_feature_count(16_400), Err(StatsError::TooManyFeatures { got: 16_400 }));
        // An integral float far beyond any count is a forged header, not a request.
        let mut bad = header;
        bad[2] = 1e300;
        assert!(matches!(validate_header(&bad), Err(StatsError::Corrupt(_))));
        // A struct claiming 2^40 features with empty vectors: refused before anything of that
        // size (or its square) is touched.
        let forged = RegStats { k: 1 << 40, n: 1, skipped: 0, wsum: 1.0, mean: vec![], comoment: vec![] };
        assert_eq!(forged.check(), Err(StatsError::TooManyFeatures { got: 1 << 40 }));
        assert_eq!(RegStats::new(1).merge(&forged), Err(StatsError::TooManyFeatures { got: 1 << 40 }));
        assert_eq!(
            merge_states(&forged, &RegStats::new(1)),
            Err(StatsError::TooManyFeatures { got: 1 << 40 })
        );
    }

    #[test]
    fn forged_states_are_rejected_with_a_reason() {
        let good =
            acc(2, &[(vec![1.0, 2.0], 3.0, 1.0), (vec![0.0, 1.0], 1.0, 2.0), (vec![0.5, 0.0], 2.0, 1.0)])
                .to_vec();
        assert!(RegStats::from_slice(&good).is_ok());
        let forge = |i: usize, v: f64| {
            let mut s = good.clone();
            s[i] = v;
            RegStats::from_slice(&s)
        };
        let corrupt = |r: Result<RegStats, StatsError>| matches!(r, Err(StatsError::Corrupt(_)));
        // Counts: negative, fractional, NaN, infinite, beyond 2^53 (read as u64 such a count
        // saturated, and SQL showed n_used = -1).
        for v in [-1.0, 2.5, f64::NAN, f64::INFINITY, 1e300, 2f64.powi(53) + 2.0] {
            assert!(corrupt(forge(3, v)), "n = {v}");
            assert!(corrupt(forge(4, v)), "skipped = {v}");
        }
        // The weight sum: negative, NaN, infinite, zero although rows were used; rows missing
        // although the weight sum is positive.
        for v in [-1.0, f64::NAN, f64::INFINITY, 0.0] {
            assert!(corrupt(forge(5, v)), "wsum = {v}");
        }
        assert!(corrupt(forge(3, 0.0)));
        // Means and co-moments must be finite.
        for i in [HEADER_LEN, HEADER_LEN + 2, HEADER_LEN + 3, good.len() - 1] {
            assert!(corrupt(forge(i, f64::NAN)) && corrupt(forge(i, f64::NEG_INFINITY)), "element {i}");
        }
        // Layout for k = 2: means at 6..9, then C00 C01 C02 C11 C12 C22 at 9..15.
        assert!(corrupt(forge(12, -1e-3)), "negative variance");
        assert!(corrupt(forge(10, 1e6)), "a covariance its variances cannot produce");
        assert!(corrupt(forge(13, -1e6)), "a covariance its variances cannot produce");
        // An empty state with moments.
        let mut empty = RegStats::new(2).to_vec();
        empty[HEADER_LEN + 1] = 1.0;
        assert!(corrupt(RegStats::from_slice(&empty)));
        // Structs built by hand: inconsistent lengths, counts beyond 2^53.
        let mut st = RegStats::from_slice(&good).unwrap();
        st.mean.pop();
        assert!(matches!(st.check(), Err(StatsError::Corrupt(_))));
        let mut st = RegStats::from_slice(&good).unwrap();
        st.n = u64::MAX;
        assert!(matches!(st.check(), Err(StatsError::Corrupt(_))));
        // Perfectly correlated variables (a duplicated feature) are legitimate.
        let dup =
            acc(2, &[(vec![0.1, 0.1], 3.0, 1.0), (vec![0.7, 0.7], 1.0, 2.0), (vec![0.3, 0.3], 2.0, 0.5)]);
        assert!(RegStats::from_slice(&dup.to_vec()).is_ok());
    }

    #[test]
    fn extreme_rows_overflow_instead_of_storing_infinity() {
        let overflow = |r: Result<(), StatsError>| matches!(r, Err(StatsError::Overflow(_)));
        // Features ±1e300: the second row's squared deviation is 4e600.
        let mut st = RegStats::new(1);
        st.accumulate(&[1e300], 1.0, 1.0).unwrap();
        let before = st.clone();
        assert!(overflow(st.accumulate(&[-1e300], 1.0, 1.0)));
        assert_eq!(st, before, "a rejected row leaves the state unchanged");
        // Labels ±1e300.
        let mut st = RegStats::new(1);
        st.accumulate(&[0.0], 1e300, 1.0).unwrap();
        assert!(overflow(st.accumulate(&[1.0], -1e300, 1.0)));
        // ±f64::MAX: the deviation itself overflows.
        let mut st = RegStats::new(1);
        st.accumulate(&[f64::MAX], 0.0, 1.0).unwrap();
        assert!(overflow(st.accumulate(&[-f64::MAX], 0.0, 1.0)));
        // The weight sum.
        let mut st = RegStats::new(1);
        st.accumulate(&[0.0], 0.0, f64::MAX).unwrap();
        assert!(overflow(st.accumulate(&[0.0], 0.0, f64::MAX)));
        // The in-place form used by the SQL transition function leaves its storage untouched.
        let mut s = before.to_vec();
        let (head, rest) = s.split_at_mut(HEADER_LEN);
        let (mean, c) = rest.split_at_mut(2);
        assert!(overflow(accumulate_raw(1, &mut head[5], mean, c, &[-1e300], 1.0, 1.0)));
        assert_eq!(s, before.to_vec());
        // Large values whose statistics still fit are accepted, and the state stays valid.
        let mut st = RegStats::new(1);
        for (x, y) in [(1e150, 2e150), (-1e150, -2e150), (3e150, 1e150)] {
            st.accumulate(&[x], y, 1.0).unwrap();
        }
        assert!(st.to_vec().iter().all(|v| v.is_finite()));
        assert!(RegStats::from_slice(&st.to_vec()).is_ok());
    }

    #[test]
    fn merging_extremes_overflows_instead_of_a_nan() {
        let mut a = RegStats::new(1);
        a.accumulate(&[1e300], 0.0, 1.0).unwrap();
        let mut b = RegStats::new(1);
        b.accumulate(&[-1e300], 0.0, 1.0).unwrap();
        let before = a.clone();
        assert!(matches!(a.merge(&b), Err(StatsError::Overflow(_))));
        assert_eq!(a, before, "a failed merge leaves the state unchanged");
        assert!(matches!(merge_states(&a, &b), Err(StatsError::Overflow(_))));
        // Weight sums of 1e200: Wa·Wb overflows, Wa·Wb/W does not; the merge is still the
        // same as accumulating both rows.
        let mut a = RegStats::new(1);
        a.accumulate(&[1.0], 2.0, 1e200).unwrap();
        let mut b = RegStats::new(1);
        b.accumulate(&[3.0], 4.0, 1e200).unwrap();
        let mut both = a.clone();
        both.accumulate(&[3.0], 4.0, 1e200).unwrap();
        a.merge(&b).unwrap();
        assert!(close(&a, &both, 1e-12), "{a:?} vs {both:?}");
        // Counts: the merge refuses to go past 2^53 rows.
        let mut big = both.clone();
        big.n = MAX_COUNT;
        assert!(matches!(big.clone().merge(&both), Err(StatsError::Overflow(_))));
    }

    #[test]
    fn merge_states_lets_an_empty_state_of_any_k_through() {
        let mut empty = RegStats::new(0);
        empty.skip();
        let rows = acc(2, &[(vec![1.0, 2.0], 3.0, 1.0)]);
        for (a, b) in [(&empty, &rows), (&rows, &empty)] {
            let m = merge_states(a, b).unwrap();
            assert_eq!((m.k, m.n, m.skipped), (2, 1, 1));
        }
        let other = acc(1, &[(vec![1.0], 3.0, 1.0)]);
        assert_eq!(merge_states(&rows, &other), Err(StatsError::FeatureCount { expected: 2, got: 1 }));
    }

    #[test]
    fn split_states_reads_states_end_to_end() {
        let a = acc(1, &[(vec![1.0], 3.0, 1.0), (vec![2.0], 1.0, 1.0)]).to_vec();
        let b = acc(1, &[(vec![0.5], 2.0, 2.0)]).to_vec();
        let flat = [a.clone(), b.clone()].concat();
        assert_eq!(split_states(&flat).unwrap().iter().map(RegStats::to_vec).collect::<Vec<_>>(), vec![a, b]);
        assert!(matches!(split_states(&flat[..flat.len() - 1]), Err(StatsError::Corrupt(_))));
        assert!(matches!(split_states(&flat[..3]), Err(StatsError::Corrupt(_))));
        assert_eq!(split_states(&[]), Ok(vec![]));
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
            prop_assert!(RegStats::from_slice(&sa.to_vec()).is_ok(), "a merged state passes validation");
        }

        #[test]
        fn serialisation_round_trips(r in rows(2)) {
            let st = acc(2, &r);
            prop_assert_eq!(RegStats::from_slice(&st.to_vec()).unwrap(), st);
        }
    }
}
