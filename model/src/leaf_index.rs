//! [`LeafIndex`]: the ordered index from leaf number to leaf behind a [`crate::CowMap`].
//!
//! The model's keys (vblocks, data blocks) are small and dense, so most leaf numbers are
//! below [`DENSE_LEAVES`] and are found by position in a vector (one load, no search); the
//! rest, for keys far out in the 64-bit space, sit in a `BTreeMap`. A lookup in the ordered
//! map was the model's largest single cost before this split.
//!
//! Invariants:
//! - leaf number `i < DENSE_LEAVES` is at `dense[i]`, every other one in `sparse`;
//! - `dense` never ends in `None` (so its last entry is the highest dense leaf);
//! - `count` is the number of leaves held.

use std::collections::BTreeMap;

/// Leaf numbers below this (keys below 2^18) are indexed by position: at most 32 KiB of
/// pointers, which a copy of the index copies whole.
pub(crate) const DENSE_LEAVES: u64 = 1 << 12;

#[derive(Clone, Debug)]
pub(crate) struct LeafIndex<T> {
    dense: Vec<Option<T>>,
    sparse: BTreeMap<u64, T>,
    count: usize,
}

impl<T> Default for LeafIndex<T> {
    fn default() -> Self {
        LeafIndex { dense: Vec::new(), sparse: BTreeMap::new(), count: 0 }
    }
}

impl<T> LeafIndex<T> {
    /// Leaves held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn get(&self, index: u64) -> Option<&T> {
        if index < DENSE_LEAVES {
            self.dense.get(index as usize)?.as_ref()
        } else {
            self.sparse.get(&index)
        }
    }

    pub(crate) fn get_mut(&mut self, index: u64) -> Option<&mut T> {
        if index < DENSE_LEAVES {
            self.dense.get_mut(index as usize)?.as_mut()
        } else {
            self.sparse.get_mut(&index)
        }
    }

    /// The leaf at `index`, made by `make` first if there is none.
    pub(crate) fn get_or_insert_with(&mut self, index: u64, make: impl FnOnce() -> T) -> &mut T {
        if index < DENSE_LEAVES {
            let i = index as usize;
            if i >= self.dense.len() {
                self.dense.resize_with(i + 1, || None);
            }
            let slot = &mut self.dense[i];
            if slot.is_none() {
                self.count += 1;
            }
            slot.get_or_insert_with(make)
        } else {
            let count = &mut self.count;
            self.sparse.entry(index).or_insert_with(|| {
                *count += 1;
                make()
            })
        }
    }

    pub(crate) fn remove(&mut self, index: u64) {
        let removed = if index < DENSE_LEAVES {
            let removed = self.dense.get_mut(index as usize).and_then(Option::take).is_some();
            while matches!(self.dense.last(), Some(None)) {
                self.dense.pop();
            }
            removed
        } else {
            self.sparse.remove(&index).is_some()
        };
        self.count -= usize::from(removed);
    }

    /// Leaves numbered `first..=last`, ascending.
    pub(crate) fn range(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &T)> + '_ {
        let dense_end = last.saturating_add(1).min(self.dense.len() as u64);
        let dense = self.dense[first.min(dense_end) as usize..dense_end as usize]
            .iter()
            .zip(first..)
            .filter_map(|(leaf, i)| leaf.as_ref().map(|leaf| (i, leaf)));
        let sparse_first = first.max(DENSE_LEAVES);
        let sparse = (sparse_first <= last)
            .then(|| self.sparse.range(sparse_first..=last).map(|(&i, leaf)| (i, leaf)))
            .into_iter()
            .flatten();
        dense.chain(sparse)
    }

    /// Every leaf, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.range(0, u64::MAX)
    }

    /// The highest-numbered leaf.
    pub(crate) fn last(&self) -> Option<(u64, &T)> {
        if let Some((&i, leaf)) = self.sparse.last_key_value() {
            return Some((i, leaf));
        }
        let i = self.dense.len().checked_sub(1)?;
        self.dense[i].as_ref().map(|leaf| (i as u64, leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_leaves_iterate_in_order_and_trim() {
        let mut x: LeafIndex<u32> = LeafIndex::default();
        for i in [DENSE_LEAVES + 5, 3, u64::MAX, 0, DENSE_LEAVES - 1] {
            *x.get_or_insert_with(i, || 0) = (i % 1000) as u32;
        }
        assert_eq!(x.len(), 5);
        let order: Vec<u64> = x.iter().map(|(i, _)| i).collect();
        assert_eq!(order, [0, 3, DENSE_LEAVES - 1, DENSE_LEAVES + 5, u64::MAX]);
        let mid: Vec<u64> = x.range(1, DENSE_LEAVES + 5).map(|(i, _)| i).collect();
        assert_eq!(mid, [3, DENSE_LEAVES - 1, DENSE_LEAVES + 5]);
        assert_eq!(x.range(4, 2).count(), 0);
        x.remove(u64::MAX);
        x.remove(DENSE_LEAVES + 5);
        x.remove(DENSE_LEAVES - 1);
        assert_eq!(x.last().map(|(i, _)| i), Some(3), "trailing holes trimmed");
        x.remove(3);
        x.remove(3);
        assert_eq!((x.len(), x.last().map(|(i, _)| i)), (1, Some(0)));
        x.remove(0);
        assert_eq!((x.len(), x.last().is_none(), x.dense.len()), (0, true, 0));
    }
}
