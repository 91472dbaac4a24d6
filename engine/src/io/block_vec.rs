//! A copy-on-write vector of shared blocks, in chunks: what a [`super::MemoryDevice`] is made
//! of, and so every image of the simulator's disk and its newest view.
//!
//! A crash image, the durable image, the newest view and the last good image are copies of
//! each other with a few blocks changed. A plain `Vec<Arc<Block>>` costs a pointer copy and
//! a reference-count increment per block for every copy: fine for a 300-block pool, a wall
//! for a 65,000-block one (the big-pool runs). Here a copy costs one increment per chunk of
//! [`CHUNK_BLOCKS`] blocks, and the first write to a chunk after a copy copies that chunk.
//!
//! Invariants:
//! - `len` blocks, in `len.div_ceil(CHUNK_BLOCKS)` chunks, all full but the last.
//! - A chunk or block shared by two vectors is copied before either changes it
//!   (`Arc::make_mut`), so copies never see each other's writes.

use super::Block;
use std::sync::Arc;

/// Blocks per chunk: a copy of a 65,536-block image touches 256 chunk pointers.
pub const CHUNK_BLOCKS: usize = 256;

#[derive(Clone)]
pub struct BlockVec {
    len: usize,
    chunks: Vec<Arc<Vec<Arc<Block>>>>,
}

impl BlockVec {
    /// `len` blocks, every one `fill` (shared).
    pub fn filled(len: usize, fill: &Arc<Block>) -> BlockVec {
        let chunks = (0..len.div_ceil(CHUNK_BLOCKS))
            .map(|c| {
                let n = CHUNK_BLOCKS.min(len - c * CHUNK_BLOCKS);
                Arc::new(vec![Arc::clone(fill); n])
            })
            .collect();
        BlockVec { len, chunks }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&Arc<Block>> {
        self.chunks.get(i / CHUNK_BLOCKS).and_then(|c| c.get(i % CHUNK_BLOCKS))
    }

    /// Replaces block `i` (ignored beyond the end, like a write the range check refused).
    pub fn set(&mut self, i: usize, data: Arc<Block>) {
        if i >= self.len {
            return;
        }
        let chunk = Arc::make_mut(&mut self.chunks[i / CHUNK_BLOCKS]);
        chunk[i % CHUNK_BLOCKS] = data;
    }

    /// Block `i` to change in place: its chunk and the block itself are copied first when
    /// shared, so no other vector sees the change.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Block> {
        let chunk = Arc::make_mut(self.chunks.get_mut(i / CHUNK_BLOCKS)?);
        chunk.get_mut(i % CHUNK_BLOCKS).map(Arc::make_mut)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Block>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Whether both hold the same bytes, comparing shared chunks and blocks by pointer.
    pub fn same_contents(&self, other: &BlockVec) -> bool {
        self.len == other.len
            && self.chunks.iter().zip(&other.chunks).all(|(a, b)| {
                Arc::ptr_eq(a, b)
                    || a.iter().zip(b.iter()).all(|(x, y)| Arc::ptr_eq(x, y) || x == y)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_independent_and_cheap_to_compare() {
        let zero = Arc::new([0u8; 4096]);
        let mut a = BlockVec::filled(CHUNK_BLOCKS * 2 + 3, &zero);
        assert_eq!(a.len(), 515);
        assert_eq!(a.iter().count(), 515);
        let b = a.clone();
        a.set(514, Arc::new([7u8; 4096]));
        a.set(9999, Arc::new([8u8; 4096]));
        assert_eq!(a.get(514).map(|x| x[0]), Some(7));
        assert_eq!(b.get(514).map(|x| x[0]), Some(0), "the copy kept its block");
        assert!(a.get(515).is_none());
        assert!(!a.same_contents(&b));
        a.set(514, Arc::clone(&zero));
        assert!(a.same_contents(&b));
        // The untouched chunks are still shared.
        assert!(Arc::ptr_eq(&a.chunks[0], &b.chunks[0]));
        assert!(!Arc::ptr_eq(&a.chunks[2], &b.chunks[2]));
    }
}
