//! Per-entity cache for computing pair features from stored columns.
//!
//! The SQL way (join the source table twice per pair) detoasts an entity's vectors once per
//! pair it appears in. Here every referenced entity is read once into a contiguous slab per
//! model, and pair features are computed from the slabs. Memory is bounded: when the
//! entities do not fit in the budget they are split into equal chunks of at most half the
//! budget, and the pairs are processed per chunk pair `(i, j)`, `i ≤ j`, with chunk `i` held
//! while the chunks `j > i` are streamed. Entities are then read `P + P(P-1)/2` times for
//! `P` chunks instead of once per pair.
//!
//! Each entity's `1/‖v‖` is computed once at load, so a pair costs one dot product per model
//! (`⟨a,b⟩ · (1/‖a‖) · (1/‖b‖)`, equal to SQL `cosine` up to a few ulps). f64 vectors whose
//! squared norm under- or overflows fall back to [`crate::vector::cosine_f64`].

use crate::combine::Block;
use crate::kernels;
use crate::vector::cosine_f64;

/// Element type of a model's stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemKind {
    F32,
    F64,
}

impl ElemKind {
    pub fn size(self) -> usize {
        match self {
            ElemKind::F32 => 4,
            ElemKind::F64 => 8,
        }
    }
}

/// Bytes one entity takes in a chunk: its vectors plus a presence flag per model.
pub fn bytes_per_entity(layout: &[(usize, ElemKind)]) -> usize {
    layout.iter().map(|&(d, k)| d * k.size() + 1).sum()
}

/// Number of entities per chunk: all of them when they fit in `budget` bytes, otherwise as
/// many as fit in half the budget (two chunks are held at once), at least one.
pub fn chunk_len(n_entities: usize, bytes_per_entity: usize, budget: usize) -> usize {
    if n_entities == 0 || n_entities.saturating_mul(bytes_per_entity) <= budget {
        return n_entities.max(1);
    }
    (budget / 2 / bytes_per_entity.max(1)).max(1)
}

/// The processing order: `(i, j)` chunk pairs, `i ≤ j`, grouped by `i`. A pair of entities
/// `(a, b)` belongs to chunk pair `(min, max)` of their chunks.
pub fn schedule(n_chunks: usize) -> Vec<(usize, usize)> {
    (0..n_chunks).flat_map(|i| (i..n_chunks).map(move |j| (i, j))).collect()
}

/// The chunk pair of entity indices `a` and `b` for chunks of `len` entities.
pub fn chunk_pair(a: usize, b: usize, len: usize) -> (usize, usize) {
    let (ca, cb) = (a / len, b / len);
    (ca.min(cb), ca.max(cb))
}

enum Slab {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Vectors of a contiguous range of entities, one slab per model.
pub struct EntityChunk {
    first: usize,
    len: usize,
    dims: Vec<usize>,
    slabs: Vec<Slab>,
    /// `1/‖v‖` per entity and model (len × models): 0 = missing or zero vector; NaN = an f64
    /// vector whose squared norm is out of range (use the rescaling cosine).
    inv_norm: Vec<f64>,
}

/// A stored vector whose dimension is not the model set's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionError {
    pub model: usize,
    pub expected: usize,
    pub found: usize,
}

impl EntityChunk {
    pub fn new(first: usize, len: usize, layout: &[(usize, ElemKind)]) -> Self {
        let slabs = layout
            .iter()
            .map(|&(d, k)| match k {
                ElemKind::F32 => Slab::F32(vec![0.0; d * len]),
                ElemKind::F64 => Slab::F64(vec![0.0; d * len]),
            })
            .collect();
        EntityChunk {
            first,
            len,
            dims: layout.iter().map(|l| l.0).collect(),
            slabs,
            inv_norm: vec![0.0; len * layout.len()],
        }
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.len
    }

    /// Stores model `model`'s vector of entity `idx` (which must be in range). An f32 block
    /// goes into an f64 slab exactly; an f64 block into an f32 slab is rounded (the model
    /// set's column type decides the slab, so this only happens for mixed sources).
    pub fn set(&mut self, idx: usize, model: usize, block: Block<'_>) -> Result<(), DimensionError> {
        let d = self.dims[model];
        if block.len() != d {
            return Err(DimensionError { model: model + 1, expected: d, found: block.len() });
        }
        let at = (idx - self.first) * d;
        match (&mut self.slabs[model], block) {
            (Slab::F32(s), Block::F32(x)) => s[at..at + d].copy_from_slice(x),
            (Slab::F64(s), Block::F64(x)) => s[at..at + d].copy_from_slice(x),
            (Slab::F64(s), Block::F32(x)) => {
                s[at..at + d].iter_mut().zip(x).for_each(|(o, &v)| *o = v as f64)
            }
            (Slab::F32(s), Block::F64(x)) => {
                s[at..at + d].iter_mut().zip(x).for_each(|(o, &v)| *o = v as f32)
            }
        }
        let i = idx - self.first;
        let n2 = match &self.slabs[model] {
            Slab::F32(s) => kernels::norm_sq(&s[i * d..(i + 1) * d]),
            Slab::F64(s) => kernels::norm_sq_f64(&s[i * d..(i + 1) * d]),
        };
        self.inv_norm[i * self.dims.len() + model] = if n2 == 0.0 {
            // Either a zero vector or an f64 vector too small to square: tell them apart.
            match &self.slabs[model] {
                Slab::F64(s) if s[i * d..(i + 1) * d].iter().any(|v| *v != 0.0) => f64::NAN,
                _ => 0.0,
            }
        } else if (1e-280..=1e280).contains(&n2) {
            1.0 / n2.sqrt()
        } else {
            f64::NAN
        };
        Ok(())
    }

    #[inline]
    fn inv_norm(&self, idx: usize, model: usize) -> f64 {
        self.inv_norm[(idx - self.first) * self.dims.len() + model]
    }

    #[inline]
    fn block(&self, idx: usize, model: usize) -> Block<'_> {
        let (i, d) = (idx - self.first, self.dims[model]);
        match &self.slabs[model] {
            Slab::F32(s) => Block::F32(&s[i * d..(i + 1) * d]),
            Slab::F64(s) => Block::F64(&s[i * d..(i + 1) * d]),
        }
    }
}

/// Cosine features of entities `a` (in chunk `ca`) and `b` (in chunk `cb`) into `out`, one per
/// model: `None` when either vector is missing or zero. Elements must have been checked
/// finite when loaded.
pub fn pair_features(ca: &EntityChunk, a: usize, cb: &EntityChunk, b: usize, out: &mut [Option<f64>]) {
    for (k, o) in out.iter_mut().enumerate() {
        let (ia, ib) = (ca.inv_norm(a, k), cb.inv_norm(b, k));
        if ia == 0.0 || ib == 0.0 {
            *o = None;
            continue;
        }
        *o = match (ca.block(a, k), cb.block(b, k)) {
            (Block::F32(x), Block::F32(y)) => Some((kernels::dot(x, y) * ia * ib).clamp(-1.0, 1.0)),
            (Block::F64(x), Block::F64(y)) if ia.is_finite() && ib.is_finite() => {
                Some((kernels::dot_norms_f64(x, y).0 * ia * ib).clamp(-1.0, 1.0))
            }
            (Block::F64(x), Block::F64(y)) => cosine_f64(x, y).ok().flatten(),
            _ => unreachable!("a model's slab has one element type"),
        };
    }
}

/// A labelled pair of cached entities (`y`/`w` `None` when NULL).
#[derive(Debug, Clone, Copy)]
pub struct LabelledPair {
    pub a: u32,
    pub b: u32,
    pub y: Option<f64>,
    pub w: Option<f64>,
}

/// Regression statistics of `pairs`, whose entities are in `ca` or `cb`: a pair with a
/// missing feature, target or weight is skipped and counted. Pure computation over the
/// chunks: callers may run slices of the pairs on several threads and merge the results
/// (`RegStats::merge` is exact up to rounding).
pub fn accumulate_pairs(
    ca: &EntityChunk,
    cb: &EntityChunk,
    pairs: &[LabelledPair],
) -> Result<crate::regstats::RegStats, crate::regstats::StatsError> {
    let k = ca.dims.len();
    // The model count bounds the state's size: checked against MAX_FEATURES before allocating.
    let mut st = crate::regstats::RegStats::try_new(k)?;
    let mut f = vec![None; k];
    let mut x = vec![0.0; k];
    let chunk_of = |e: usize| if ca.range().contains(&e) { ca } else { cb };
    for p in pairs {
        let (a, b) = (p.a as usize, p.b as usize);
        pair_features(chunk_of(a), a, chunk_of(b), b, &mut f);
        match (p.y, p.w) {
            (Some(y), Some(w)) if f.iter().all(Option::is_some) => {
                for (xi, fi) in x.iter_mut().zip(&f) {
                    *xi = fi.unwrap();
                }
                st.accumulate(&x, y, w)?;
            }
            _ => st.skip(),
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn everything_fits_in_one_chunk_when_the_budget_allows() {
        assert_eq!(chunk_len(1000, 100, 100_000), 1000);
        assert_eq!(chunk_len(1001, 100, 100_000), 500);
        assert_eq!(chunk_len(10, 1000, 10), 1);
        assert_eq!(chunk_len(0, 100, 0), 1);
    }

    #[test]
    fn wrong_dimensions_are_reported_with_the_model() {
        let mut c = EntityChunk::new(0, 1, &[(2, ElemKind::F32), (3, ElemKind::F32)]);
        assert_eq!(
            c.set(0, 1, Block::F32(&[1.0, 2.0])),
            Err(DimensionError { model: 2, expected: 3, found: 2 })
        );
    }

    proptest! {
        /// Every pair of entities is processed in exactly one scheduled chunk pair, whose two
        /// chunks hold both entities; and the entity reads are P + P(P-1)/2 chunk loads.
        #[test]
        fn every_pair_lands_in_exactly_one_scheduled_chunk_pair(
            n in 1usize..200, len in 1usize..50,
            pairs in prop::collection::vec((0usize..200, 0usize..200), 0..100),
        ) {
            let p = n.div_ceil(len);
            let sched = schedule(p);
            prop_assert_eq!(sched.len(), p * (p + 1) / 2);
            for (a, b) in pairs.into_iter().filter(|&(a, b)| a < n && b < n) {
                let cp = chunk_pair(a, b, len);
                prop_assert_eq!(sched.iter().filter(|&&s| s == cp).count(), 1);
                let held = [cp.0, cp.1];
                prop_assert!(held.contains(&(a / len)) && held.contains(&(b / len)));
            }
        }

        /// Features from the cache equal the SQL `cosine` of the same vectors.
        #[test]
        fn cached_features_equal_direct_cosines(
            vs in prop::collection::vec((prop::collection::vec(-2.0f32..2.0, 5), prop::collection::vec(-2.0f64..2.0, 3)), 2..8),
            split in 1usize..8,
        ) {
            let layout = [(5, ElemKind::F32), (3, ElemKind::F64)];
            let n = vs.len();
            let len = split.min(n);
            let mut chunks: Vec<EntityChunk> = (0..n.div_ceil(len)).map(|c| EntityChunk::new(c * len, len.min(n - c * len), &layout)).collect();
            for (i, (x, y)) in vs.iter().enumerate() {
                let c = &mut chunks[i / len];
                c.set(i, 0, Block::F32(x)).unwrap();
                c.set(i, 1, Block::F64(y)).unwrap();
            }
            let mut out = [None; 2];
            for a in 0..n {
                for b in 0..n {
                    pair_features(&chunks[a / len], a, &chunks[b / len], b, &mut out);
                    // Same value as SQL cosine up to rounding of the precomputed 1/‖v‖.
                    let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-14,
                        (x, y) => x == y,
                    };
                    prop_assert!(close(out[0], crate::vector::cosine_f32(&vs[a].0, &vs[b].0).unwrap()));
                    prop_assert!(close(out[1], cosine_f64(&vs[a].1, &vs[b].1).unwrap()));
                }
            }
        }
    }
}
