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
//! Features are computed with [`crate::vector::cosine_f32`] / [`crate::vector::cosine_f64`],
//! the functions behind SQL `cosine`, so they are bit-identical to the SQL path.

use crate::combine::Block;
use crate::vector::{cosine_f32, cosine_f64};

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
    present: Vec<bool>, // len × models
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
            present: vec![false; len * layout.len()],
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
        self.present[(idx - self.first) * self.dims.len() + model] = true;
        Ok(())
    }

    fn block(&self, idx: usize, model: usize) -> Option<Block<'_>> {
        let i = idx - self.first;
        if !self.present[i * self.dims.len() + model] {
            return None;
        }
        let d = self.dims[model];
        Some(match &self.slabs[model] {
            Slab::F32(s) => Block::F32(&s[i * d..(i + 1) * d]),
            Slab::F64(s) => Block::F64(&s[i * d..(i + 1) * d]),
        })
    }
}

/// Cosine features of entities `a` (in chunk `ca`) and `b` (in chunk `cb`) into `out`, one per
/// model: `None` when either vector is missing or zero. Elements must have been checked
/// finite when loaded.
pub fn pair_features(ca: &EntityChunk, a: usize, cb: &EntityChunk, b: usize, out: &mut [Option<f64>]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = match (ca.block(a, k), cb.block(b, k)) {
            (Some(Block::F32(x)), Some(Block::F32(y))) => cosine_f32(x, y).ok().flatten(),
            (Some(Block::F64(x)), Some(Block::F64(y))) => cosine_f64(x, y).ok().flatten(),
            _ => None,
        };
    }
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
                    prop_assert_eq!(out[0], cosine_f32(&vs[a].0, &vs[b].0).unwrap());
                    prop_assert_eq!(out[1], cosine_f64(&vs[a].1, &vs[b].1).unwrap());
                }
            }
        }
    }
}
