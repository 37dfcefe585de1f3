//! How fitted weights become combined vectors (docs/design.md §2).
//!
//! * Symmetric mode: score weights `s_k = w_k / w_max`, kept when `w_k > threshold · w_max`;
//!   stored and query blocks are both `sqrt(s_k) · u_k`, so `⟨c(a), c(b)⟩ = Σ_kept s_k x_k`.
//! * Query-weighted mode: stored blocks are `u_k` for every model (written once); the query
//!   blocks are `s_k · u_k` with `s_k = w_k / max_j |w_j|` (any positive normaliser preserves
//!   the ranking; the largest magnitude keeps query elements in [-1, 1]). Negative weights work.
//! * A NULL or zero model vector is a zero block: it contributes 0 to the inner product.

use crate::kernels;
use crate::vector::{first_non_finite_f32, first_non_finite_f64, Operand, VectorError};

/// How a model set combines its models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Symmetric,
    QueryWeighted,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "symmetric" => Some(Mode::Symmetric),
            "query_weighted" => Some(Mode::QueryWeighted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScaleError {
    /// Symmetric mode needs at least one positive weight.
    NoPositiveWeight { max: f64 },
    /// Every weight is zero: there is nothing to rank by.
    AllZero,
    /// A weight is NaN or infinite.
    NonFinite { model: usize },
    /// The threshold is outside [0, 1).
    Threshold(f64),
}

impl std::fmt::Display for ScaleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleError::NoPositiveWeight { max } => {
                write!(f, "no model has a positive weight (largest weight {max}): symmetric mode cannot combine them")
            }
            ScaleError::AllZero => write!(f, "every weight is zero: there is nothing to rank by"),
            ScaleError::NonFinite { model } => write!(f, "weight of model {model} is not finite"),
            ScaleError::Threshold(t) => write!(f, "threshold {t} is outside [0, 1)"),
        }
    }
}

/// The per-model multipliers of a model set for one fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Scales {
    /// Multiplier of each stored block; 0 means the block is left out of the stored vector.
    pub stored: Vec<f64>,
    /// Multiplier of each query block, over the same layout as `stored` (0 = a zero block
    /// in query-weighted mode, or a left-out block in symmetric mode).
    pub query: Vec<f64>,
    /// Score weight of each model: the served score is `Σ score_k x_k`.
    pub score: Vec<f64>,
}

impl Scales {
    /// Whether block `k` is part of the stored (and query) vector.
    pub fn keeps(&self, k: usize) -> bool {
        self.stored[k] > 0.0
    }

    /// Width of the combined vector for models of dimensions `dims`.
    pub fn width(&self, dims: &[usize]) -> usize {
        layout_width(dims, &self.stored)
    }
}

/// Weights within this fraction of the largest magnitude are zero up to rounding.
pub const ZERO_WEIGHT: f64 = 1e-12;

/// Scales for `weights` (one per model) in `mode` with `threshold`.
pub fn scales(weights: &[f64], mode: Mode, threshold: f64) -> Result<Scales, ScaleError> {
    if !(0.0..1.0).contains(&threshold) {
        return Err(ScaleError::Threshold(threshold));
    }
    if let Some(k) = weights.iter().position(|w| !w.is_finite()) {
        return Err(ScaleError::NonFinite { model: k + 1 });
    }
    match mode {
        Mode::Symmetric => {
            let max = weights.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            // A weight that is zero up to rounding (|w| ≤ 1e-12 · max|w|, e.g. 2e-16 left by
            // the solver for a model with no effect) is not a positive weight: it must not
            // become w_max and be served alone.
            let largest = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
            if max.is_nan() || max <= ZERO_WEIGHT * largest || max <= 0.0 {
                // Report rounding noise (either sign) as the 0 it stands for.
                let shown = if max.abs() <= ZERO_WEIGHT * largest { 0.0 } else { max };
                return Err(ScaleError::NoPositiveWeight { max: shown });
            }
            let score: Vec<f64> =
                weights.iter().map(|&w| if w > threshold * max { w / max } else { 0.0 }).collect();
            let stored: Vec<f64> = score.iter().map(|s| s.sqrt()).collect();
            Ok(Scales { query: stored.clone(), stored, score })
        }
        Mode::QueryWeighted => {
            let max = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
            if max == 0.0 {
                return Err(ScaleError::AllZero);
            }
            let score: Vec<f64> = weights.iter().map(|w| w / max).collect();
            Ok(Scales { stored: vec![1.0; weights.len()], query: score.clone(), score })
        }
    }
}

/// One model's vector as read from a row.
#[derive(Debug, Clone, Copy)]
pub enum Block<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Block<'_> {
    pub fn len(&self) -> usize {
        match self {
            Block::F32(x) => x.len(),
            Block::F64(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `‖x‖²`, or the first non-finite element.
    pub fn norm_sq(&self) -> Result<f64, VectorError> {
        let (n, bad) = match self {
            Block::F32(x) => {
                let n = kernels::norm_sq(x);
                (n, if n.is_finite() { None } else { first_non_finite_f32(x) })
            }
            Block::F64(x) => match first_non_finite_f64(x) {
                Some(bad) => (f64::NAN, Some(bad)),
                None => (kernels::norm_sq_f64(x), None),
            },
        };
        match bad {
            None if n.is_finite() => Ok(n),
            // f64 data whose squares overflow: treat as the (finite) vector it is by rescaling.
            None => Ok(f64::INFINITY),
            Some((position, value)) => {
                Err(VectorError::NonFinite { operand: Operand::Only, position, value })
            }
        }
    }

    /// Writes `scale · x / ‖x‖` into `out` (same length), rounding once to f32; a zero or
    /// missing vector writes zeros.
    pub fn write_unit_scaled(&self, scale: f64, out: &mut [f32]) -> Result<(), VectorError> {
        assert_eq!(self.len(), out.len(), "output block must match the model dimension");
        match self {
            Block::F32(x) => {
                let n2 = self.norm_sq()?;
                if n2 == 0.0 {
                    out.fill(0.0);
                    return Ok(());
                }
                let f = scale / n2.sqrt();
                for (o, &v) in out.iter_mut().zip(x.iter()) {
                    *o = (v as f64 * f) as f32;
                }
            }
            Block::F64(x) => {
                self.norm_sq()?; // finiteness
                                 // Rescale by the largest magnitude first so that huge or tiny f64 values
                                 // neither overflow nor underflow when squared.
                let m = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                if m == 0.0 {
                    out.fill(0.0);
                    return Ok(());
                }
                let n = x.iter().map(|v| (v / m) * (v / m)).sum::<f64>().sqrt();
                let f = scale / m / n;
                for (o, &v) in out.iter_mut().zip(x.iter()) {
                    *o = (v * f) as f32;
                }
            }
        }
        Ok(())
    }
}

/// Error while combining a row: which model and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum CombineError {
    /// Model `model` (1-based) has `found` dimensions where the model set says `expected`.
    Dimension { model: usize, expected: usize, found: usize },
    /// Model `model` (1-based) holds a NaN or infinite element.
    NonFinite { model: usize, source: VectorError },
}

impl std::fmt::Display for CombineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CombineError::Dimension { model, expected, found } => {
                write!(f, "model {model} has {found} dimensions, the model set expects {expected}")
            }
            CombineError::NonFinite { model, source } => write!(f, "model {model}: {source}"),
        }
    }
}

/// Writes the combined vector of one row into `out` (length = `Σ dims` over blocks with a
/// non-zero multiplier): each block `multiplier_k · u_k`; `None` or zero blocks are zeros.
pub fn combine_into(
    blocks: &[Option<Block<'_>>],
    dims: &[usize],
    multipliers: &[f64],
    out: &mut [f32],
) -> Result<(), CombineError> {
    combine_over_layout(blocks, dims, multipliers, multipliers, out)
}

/// Like [`combine_into`], but the layout (which blocks exist) comes from `layout` and the
/// scale of each block from `scale`: the query side of query-weighted mode, where a model
/// with weight 0 still occupies its (zero) block of the stored layout.
pub fn combine_over_layout(
    blocks: &[Option<Block<'_>>],
    dims: &[usize],
    layout: &[f64],
    scale: &[f64],
    out: &mut [f32],
) -> Result<(), CombineError> {
    debug_assert_eq!(blocks.len(), dims.len());
    let mut at = 0;
    for (k, block) in blocks.iter().enumerate() {
        if let Some(b) = block {
            // Even a left-out block must have the model's size: the model set's columns
            // must hold what it says.
            check_dim(k, dims[k], b)?;
        }
        if layout[k] == 0.0 {
            continue;
        }
        let slot = &mut out[at..at + dims[k]];
        at += dims[k];
        match block {
            Some(b) if scale[k] != 0.0 => b
                .write_unit_scaled(scale[k], slot)
                .map_err(|source| CombineError::NonFinite { model: k + 1, source })?,
            _ => slot.fill(0.0),
        }
    }
    debug_assert_eq!(at, out.len());
    Ok(())
}

fn check_dim(k: usize, expected: usize, b: &Block<'_>) -> Result<(), CombineError> {
    if b.len() != expected {
        return Err(CombineError::Dimension { model: k + 1, expected, found: b.len() });
    }
    Ok(())
}

/// Width of the layout given per-model multipliers (blocks with multiplier 0 are left out).
pub fn layout_width(dims: &[usize], multipliers: &[f64]) -> usize {
    dims.iter().zip(multipliers).filter(|(_, &m)| m != 0.0).map(|(d, _)| d).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn symmetric_scales_follow_the_seed() {
        // The WordSim OLS weights of the fixture (reference.json fits.ols).
        let w = [6.8137, 2.2499, 1.8673, 0.8830, 0.6611, -0.8472, -1.7079];
        let s = scales(&w, Mode::Symmetric, 0.05).unwrap();
        assert_eq!(s.score[0], 1.0);
        assert_relative_eq!(s.score[1], 2.2499 / 6.8137);
        assert_eq!(&s.score[5..], &[0.0, 0.0]);
        assert_relative_eq!(s.stored[1], (2.2499f64 / 6.8137).sqrt());
        assert_eq!(s.stored, s.query);
        assert_eq!(s.width(&[384, 384, 256, 64, 100, 300, 1024]), 384 + 384 + 256 + 64 + 100);
    }

    #[test]
    fn threshold_is_strict_and_relative() {
        let s = scales(&[1.0, 0.05, 0.0500001], Mode::Symmetric, 0.05).unwrap();
        assert_eq!(s.stored[1], 0.0);
        assert!(s.stored[2] > 0.0);
    }

    #[test]
    fn symmetric_mode_rejects_non_positive_weights() {
        assert!(matches!(
            scales(&[-1.0, 0.0], Mode::Symmetric, 0.05),
            Err(ScaleError::NoPositiveWeight { .. })
        ));
        assert!(matches!(scales(&[0.0, 0.0], Mode::QueryWeighted, 0.05), Err(ScaleError::AllZero)));
        assert!(matches!(
            scales(&[1.0, f64::NAN], Mode::QueryWeighted, 0.05),
            Err(ScaleError::NonFinite { model: 2 })
        ));
        assert!(matches!(scales(&[1.0], Mode::Symmetric, 1.0), Err(ScaleError::Threshold(_))));
    }

    #[test]
    fn query_weighted_keeps_negative_weights_and_stores_unit_blocks() {
        let s = scales(&[2.0, -4.0, 1.0], Mode::QueryWeighted, 0.05).unwrap();
        assert_eq!(s.stored, vec![1.0; 3]);
        assert_eq!(s.query, vec![0.5, -1.0, 0.25]);
    }

    #[test]
    fn missing_and_zero_blocks_are_zeros_and_wrong_sizes_are_named() {
        let a = [3.0f32, 4.0];
        let z = [0.0f64, 0.0, 0.0];
        let mut out = [9.0f32; 6];
        combine_into(
            &[Some(Block::F32(&a)), None, Some(Block::F64(&z))],
            &[2, 1, 3],
            &[2.0, 1.0, 1.0],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1.2, 1.6, 0.0, 0.0, 0.0, 0.0]);
        let err =
            combine_into(&[Some(Block::F32(&a)), None, None], &[3, 1, 3], &[1.0, 0.0, 1.0], &mut out[..4]);
        assert_eq!(err, Err(CombineError::Dimension { model: 1, expected: 3, found: 2 }));
        let bad = [1.0f64, f64::INFINITY];
        let err = combine_into(&[Some(Block::F64(&bad))], &[2], &[1.0], &mut out[..2]).unwrap_err();
        assert!(matches!(err, CombineError::NonFinite { model: 1, .. }), "{err:?}");
    }

    #[test]
    fn huge_and_tiny_f64_blocks_normalise() {
        let mut out = [0.0f32; 2];
        Block::F64(&[3e200, 4e200]).write_unit_scaled(1.0, &mut out).unwrap();
        assert_eq!(out, [0.6, 0.8]);
        Block::F64(&[3e-200, 4e-200]).write_unit_scaled(1.0, &mut out).unwrap();
        assert_eq!(out, [0.6, 0.8]);
    }

    fn cos(a: &[f32], b: &[f32]) -> Option<f64> {
        crate::vector::cosine_f32(a, b).unwrap()
    }

    proptest! {
        /// The contract of docs/design.md §2: the inner product of two combined vectors (symmetric) or
        /// of a query and a stored vector (query-weighted) is the score-weighted sum of
        /// per-model cosines, missing/zero blocks contributing 0.
        #[test]
        fn inner_products_are_the_weighted_sums(
            w in prop::collection::vec(-3.0f64..3.0, 3),
            a in prop::collection::vec(prop::option::of(prop::collection::vec(-1.0f32..1.0, 4)), 3),
            b in prop::collection::vec(prop::option::of(prop::collection::vec(-1.0f32..1.0, 4)), 3),
            qw in any::<bool>(),
        ) {
            let mode = if qw { Mode::QueryWeighted } else { Mode::Symmetric };
            let Ok(s) = scales(&w, mode, 0.05) else { return Ok(()); };
            let dims = [4usize; 3];
            let ba: Vec<Option<Block>> = a.iter().map(|v| v.as_deref().map(Block::F32)).collect();
            let bb: Vec<Option<Block>> = b.iter().map(|v| v.as_deref().map(Block::F32)).collect();
            let width = layout_width(&dims, &s.stored);
            let (mut q, mut d) = (vec![0f32; width], vec![0f32; width]);
            let mut qfull = vec![0f32; width];
            combine_into(&ba, &dims, &s.stored, &mut q).unwrap();
            combine_into(&bb, &dims, &s.stored, &mut d).unwrap();
            combine_over_layout(&ba, &dims, &s.stored, &s.query, &mut qfull).unwrap();
            let expected: f64 = (0..3)
                .map(|k| match (&a[k], &b[k]) {
                    (Some(x), Some(y)) => s.score[k] * cos(x, y).unwrap_or(0.0),
                    _ => 0.0,
                })
                .sum();
            let ip = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum::<f64>();
            let served = if qw { ip(&qfull, &d) } else { ip(&q, &d) };
            prop_assert!((served - expected).abs() < 1e-5, "{served} vs {expected}");
        }
    }
}
