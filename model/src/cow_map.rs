//! [`CowMap`]: the model's ordered map from `u64` keys (vblocks, data blocks) to small `Copy`
//! values, persistent by copy-on-write, so that cloning a whole pool state is O(1).
//!
//! Why not a general persistent B-tree: the model clones its state at every commit, abort and
//! crash, and the simulator keeps more copies (the last verified state, the state before a
//! commit). A persistent B-tree makes those clones free but pays on every update: a
//! leaf-to-root path of wide nodes copied, reference counts of all their children touched,
//! and a deep search on every lookup. The model's keys are small integers that cluster, so a
//! flat layout does better: keys are split into 64-key leaves (`key / 64`), each a presence
//! bitmask and an array of values, held in an ordered index by leaf number
//! ([`LeafIndex`]: by position for small leaf numbers).
//! - A lookup is one index search and a bit test.
//! - An update copies at most one leaf (≈ 1 KiB) and, the first time a map is touched after a
//!   clone, the index (one pointer per leaf). Later updates in the same transaction touch
//!   only what they change.
//! - Two maps sharing a leaf share it by pointer, so [`CowMap::diff`] skips everything two
//!   versions still share, and equality does too.
//!
//! Invariants:
//! - `len` is the number of set presence bits over all leaves;
//! - no stored leaf is empty (an update that empties a leaf drops it);
//! - leaf `i` holds the keys `64 i .. 64 i + 63`: bit `j` of `present` ⇔ key `64 i + j` is in
//!   the map, with its value in `values[j]`; absent slots hold `V::default()`, so two leaves
//!   with equal bits and arrays hold the same entries.

use crate::leaf_index::LeafIndex;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

/// log2 of the keys per leaf.
const LEAF_SHIFT: u32 = 6;
/// Keys per leaf: one bit each in the presence mask.
const LEAF_KEYS: usize = 1 << LEAF_SHIFT;
/// 64-bit words of a leaf's presence mask.
const WORDS: usize = LEAF_KEYS / 64;

// `Copy`, so a copy-on-write clone is one `memcpy` into the new allocation.
#[derive(Clone, Copy, PartialEq)]
struct Leaf<V> {
    present: [u64; WORDS],
    values: [V; LEAF_KEYS],
}

impl<V: Copy + Default + PartialEq> Leaf<V> {
    fn empty() -> Rc<Self> {
        Rc::new(Leaf { present: [0; WORDS], values: [V::default(); LEAF_KEYS] })
    }

    fn set(&mut self, slot: usize, value: V) {
        self.present[slot / 64] |= 1 << (slot % 64);
        self.values[slot] = value;
    }

    fn unset(&mut self, slot: usize) {
        self.present[slot / 64] &= !(1 << (slot % 64));
        self.values[slot] = V::default();
    }
}

/// The set bits of a mask, ascending, as slot numbers.
fn slots(mask: [u64; WORDS]) -> impl Iterator<Item = usize> {
    (0..WORDS).flat_map(move |w| {
        let mut bits = mask[w];
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                w * 64 + b
            })
        })
    })
}

impl<V: Copy> Leaf<V> {
    fn has(&self, slot: usize) -> bool {
        self.present[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn get(&self, slot: usize) -> Option<V> {
        self.has(slot).then(|| self.values[slot])
    }

    /// Whether `slot` is the only key present.
    fn only(&self, slot: usize) -> bool {
        (0..WORDS).all(|w| self.present[w] == if w == slot / 64 { 1 << (slot % 64) } else { 0 })
    }

    fn last_slot(&self) -> Option<usize> {
        let w = (0..WORDS).rev().find(|&w| self.present[w] != 0)?;
        Some(w * 64 + 63 - self.present[w].leading_zeros() as usize)
    }
}

/// Leaf number and slot of a key.
fn split(key: u64) -> (u64, usize) {
    (key >> LEAF_SHIFT, (key & (LEAF_KEYS as u64 - 1)) as usize)
}

/// A persistent ordered map `u64 → V`; see the module documentation.
pub struct CowMap<V> {
    leaves: Rc<LeafIndex<Rc<Leaf<V>>>>,
    len: usize,
}

impl<V> Clone for CowMap<V> {
    fn clone(&self) -> Self {
        CowMap { leaves: Rc::clone(&self.leaves), len: self.len }
    }
}

impl<V: Copy + Default + PartialEq> Default for CowMap<V> {
    fn default() -> Self {
        CowMap::new()
    }
}

impl<V: Copy + Default + PartialEq> CowMap<V> {
    pub fn new() -> Self {
        CowMap { leaves: Rc::new(LeafIndex::default()), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        let (leaf, slot) = split(key);
        let leaf = self.leaves.get(leaf)?;
        leaf.has(slot).then(|| &leaf.values[slot])
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Stores `value` at `key`; returns the value it replaced.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let (index, slot) = split(key);
        let leaf = Rc::make_mut(&mut self.leaves).get_or_insert_with(index, Leaf::empty);
        let leaf = Rc::make_mut(leaf); // copied first if shared
        let old = leaf.get(slot);
        leaf.set(slot, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; returns its value. Copies nothing when the key is absent.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let old = *self.get(key)?;
        let (index, slot) = split(key);
        let leaves = Rc::make_mut(&mut self.leaves);
        let leaf = leaves.get_mut(index).expect("get found it");
        if leaf.only(slot) {
            leaves.remove(index);
        } else {
            Rc::make_mut(leaf).unset(slot);
        }
        self.len -= 1;
        Some(old)
    }

    /// Entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, V> {
        self.range(..)
    }

    /// The `n`-th smallest key (as `keys().nth(n)`), counting whole leaves by their
    /// presence masks: a leaf costs a popcount, not an iteration.
    pub fn nth_key(&self, mut n: usize) -> Option<u64> {
        for (index, leaf) in self.leaves.iter() {
            let count: usize = leaf.present.iter().map(|w| w.count_ones() as usize).sum();
            if n < count {
                let slot = slots(leaf.present).nth(n).expect("n < the leaf's count");
                return Some((index << LEAF_SHIFT) | slot as u64);
            }
            n -= count;
        }
        None
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Entries with keys in `range`, ascending.
    pub fn range(&self, range: impl RangeBounds<u64>) -> Iter<'_, V> {
        let first = match range.start_bound() {
            Bound::Included(&k) => Some(k),
            Bound::Excluded(&k) => k.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let last = match range.end_bound() {
            Bound::Included(&k) => Some(k),
            Bound::Excluded(&k) => k.checked_sub(1),
            Bound::Unbounded => Some(u64::MAX),
        };
        match (first, last) {
            (Some(first), Some(last)) if first <= last => Iter::new(
                Some(Box::new(self.leaves.range(first >> LEAF_SHIFT, last >> LEAF_SHIFT))),
                first,
                last,
            ),
            _ => Iter::new(None, 1, 0),
        }
    }

    /// The entry with the highest key.
    pub fn last(&self) -> Option<(u64, V)> {
        let (index, leaf) = self.leaves.last()?;
        let slot = leaf.last_slot().expect("stored leaves are not empty");
        Some(((index << LEAF_SHIFT) + slot as u64, leaf.values[slot]))
    }

    /// Whether `self` and `other` are the same version (a clone not updated since).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.leaves, &other.leaves)
    }

    /// Every key whose entry differs between `self` (old) and `other` (new), ascending, with
    /// its old and new value. Leaves the two versions share are skipped unread.
    pub fn diff(&self, other: &Self) -> Vec<(u64, Option<V>, Option<V>)> {
        let mut out = Vec::new();
        if self.ptr_eq(other) {
            return out;
        }
        let (mut a, mut b) = (self.leaves.iter().peekable(), other.leaves.iter().peekable());
        loop {
            let (ia, ib) = (a.peek().map(|&(i, _)| i), b.peek().map(|&(i, _)| i));
            let index = match (ia, ib) {
                (None, None) => return out,
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
            };
            let la = if ia == Some(index) { a.next().map(|(_, l)| l) } else { None };
            let lb = if ib == Some(index) { b.next().map(|(_, l)| l) } else { None };
            if let (Some(x), Some(y)) = (la, lb) {
                if Rc::ptr_eq(x, y) {
                    continue;
                }
            }
            let entry = |leaf: Option<&Rc<Leaf<V>>>, slot: usize| leaf.and_then(|l| l.get(slot));
            let present = |leaf: Option<&Rc<Leaf<V>>>| leaf.map_or([0; WORDS], |l| l.present);
            let (pa, pb) = (present(la), present(lb));
            let candidates: [u64; WORDS] = std::array::from_fn(|w| pa[w] | pb[w]);
            for slot in slots(candidates) {
                let (old, new) = (entry(la, slot), entry(lb, slot));
                if old != new {
                    out.push(((index << LEAF_SHIFT) + slot as u64, old, new));
                }
            }
        }
    }
}

impl<V: Copy + Default + PartialEq> PartialEq for CowMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other)
            || (self.len == other.len
                && self.leaves.len() == other.leaves.len()
                && self
                    .leaves
                    .iter()
                    .zip(other.leaves.iter())
                    .all(|((i, a), (j, b))| i == j && (Rc::ptr_eq(a, b) || a == b)))
    }
}

impl<V: Copy + Default + Eq> Eq for CowMap<V> {}

impl<V: Copy + Default + PartialEq + fmt::Debug> fmt::Debug for CowMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Copy + Default + PartialEq> FromIterator<(u64, V)> for CowMap<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(iter: I) -> Self {
        let mut map = CowMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V: Copy + Default + PartialEq> std::ops::Index<&u64> for CowMap<V> {
    type Output = V;

    /// The value at a key that must be present (panics otherwise, as `BTreeMap`'s does).
    fn index(&self, key: &u64) -> &V {
        self.get(*key).expect("key present in CowMap")
    }
}

/// The index's leaves in a range, by leaf number (boxed: one dynamic call per leaf, not per
/// entry).
type LeafIter<'a, V> = Box<dyn Iterator<Item = (u64, &'a Rc<Leaf<V>>)> + 'a>;

/// Ascending entries of a [`CowMap`] within `first..=last`.
pub struct Iter<'a, V> {
    leaves: Option<LeafIter<'a, V>>,
    first: u64,
    last: u64,
    /// The leaf being read, its first key, the presence word being read, and that word's
    /// bits in range not yet returned.
    leaf: Option<&'a Leaf<V>>,
    base: u64,
    word: usize,
    bits: u64,
}

impl<'a, V> Iter<'a, V> {
    fn new(leaves: Option<LeafIter<'a, V>>, first: u64, last: u64) -> Self {
        Iter { leaves, first, last, leaf: None, base: 0, word: 0, bits: 0 }
    }

    /// Presence word `word` of the current leaf, limited to keys in `first..=last`.
    fn bits_of(&self, leaf: &Leaf<V>, word: usize) -> u64 {
        let low = self.base + word as u64 * 64; // the word's first key
        let from = match self.first.saturating_sub(low) {
            0 => u64::MAX,
            below if below >= 64 => 0,
            below => u64::MAX << below,
        };
        let to = match self.last.checked_sub(low) {
            None => 0,
            Some(above) if above >= 63 => u64::MAX,
            Some(above) => u64::MAX >> (63 - above),
        };
        leaf.present[word] & from & to
    }
}

impl<V: Copy> Iterator for Iter<'_, V> {
    type Item = (u64, V);

    fn next(&mut self) -> Option<(u64, V)> {
        loop {
            if self.bits != 0 {
                let slot = self.word * 64 + self.bits.trailing_zeros() as usize;
                self.bits &= self.bits - 1;
                let leaf = self.leaf.expect("bits come from a leaf");
                return Some((self.base + slot as u64, leaf.values[slot]));
            }
            if let Some(leaf) = self.leaf.filter(|_| self.word + 1 < WORDS) {
                self.word += 1;
                self.bits = self.bits_of(leaf, self.word);
                continue;
            }
            let (index, leaf) = self.leaves.as_mut()?.next()?;
            let leaf: &Leaf<V> = leaf;
            (self.leaf, self.base, self.word) = (Some(leaf), index << LEAF_SHIFT, 0);
            self.bits = self.bits_of(leaf, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, u64, u32),
        Remove(usize, u64),
        /// Live map `.1` becomes a clone of live map `.0`: from then on both are written, so
        /// leaves are copied from leaves that are later written in place.
        Fork(usize, usize),
        Snapshot(usize),
    }

    /// Keys that cluster in a few leaves, hit leaf edges, straddle the dense/sparse split of
    /// the index, and reach the top of the key space.
    fn key() -> impl Strategy<Value = u64> {
        let edge = crate::leaf_index::DENSE_LEAVES << LEAF_SHIFT;
        prop_oneof![
            0u64..1200,
            (edge - 130)..(edge + 130),
            (0u64..4).prop_map(|i| u64::MAX - i),
            any::<u64>()
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..2usize, key(), any::<u32>()).prop_map(|(m, k, v)| Op::Insert(m, k, v)),
            5 => (0..2usize, key()).prop_map(|(m, k)| Op::Remove(m, k)),
            1 => (0..2usize, 0..2usize).prop_map(|(a, b)| Op::Fork(a, b)),
            2 => (0..2usize).prop_map(Op::Snapshot),
        ]
    }

    fn bound(k: Option<u64>, inclusive: bool) -> Bound<u64> {
        match (k, inclusive) {
            (None, _) => Bound::Unbounded,
            (Some(k), true) => Bound::Included(k),
            (Some(k), false) => Bound::Excluded(k),
        }
    }

    type Version = (CowMap<u32>, BTreeMap<u64, u32>);

    proptest! {
        /// Every operation answers as `BTreeMap` does, old versions never change, and
        /// `diff` between any two versions lists exactly the keys whose entries differ.
        #[test]
        fn behaves_like_btreemap(ops in prop::collection::vec(op(), 0..200),
                                 lo in prop::option::of(key()), hi in prop::option::of(key()),
                                 lo_inc: bool, hi_inc: bool) {
            let mut live: [Version; 2] = Default::default();
            let mut versions: Vec<Version> = vec![live[0].clone()];
            for op in ops {
                match op {
                    Op::Insert(m, k, v) => {
                        let (map, want) = &mut live[m];
                        prop_assert_eq!(map.insert(k, v), want.insert(k, v));
                    }
                    Op::Remove(m, k) => {
                        let (map, want) = &mut live[m];
                        prop_assert_eq!(map.remove(k), want.remove(&k));
                    }
                    Op::Fork(a, b) => live[b] = live[a].clone(),
                    Op::Snapshot(m) => versions.push(live[m].clone()),
                }
                for (map, want) in &live {
                    prop_assert_eq!(map.len(), want.len());
                }
            }
            versions.extend(live.iter().cloned());
            for (m, w) in &versions {
                prop_assert_eq!(m.iter().collect::<Vec<_>>(), w.iter().map(|(&k, &v)| (k, v)).collect::<Vec<_>>());
                prop_assert_eq!(m.last(), w.last_key_value().map(|(&k, &v)| (k, v)));
                for n in [0, 1, w.len() / 2, w.len().saturating_sub(1), w.len(), w.len() + 1] {
                    prop_assert_eq!(m.nth_key(n), w.keys().nth(n).copied());
                }
                for &k in w.keys() {
                    prop_assert_eq!(m.get(k), w.get(&k));
                }
                let r = (bound(lo, lo_inc), bound(hi, hi_inc));
                let valid = match (lo, hi) {
                    (Some(a), Some(b)) => a < b || (a == b && lo_inc && hi_inc),
                    _ => true,
                };
                if valid {
                    let got: Vec<_> = m.range(r).collect();
                    let exp: Vec<_> = w.range(r).map(|(&k, &v)| (k, v)).collect();
                    prop_assert_eq!(got, exp);
                }
            }
            for (a, wa) in &versions {
                for (b, wb) in &versions {
                    let keys: std::collections::BTreeSet<u64> = wa.keys().chain(wb.keys()).copied().collect();
                    let exp: Vec<_> = keys.into_iter()
                        .map(|k| (k, wa.get(&k).copied(), wb.get(&k).copied()))
                        .filter(|(_, x, y)| x != y)
                        .collect();
                    prop_assert_eq!(&a.diff(b), &exp);
                    prop_assert_eq!(a == b, wa == wb);
                }
            }
        }
    }

    #[test]
    fn diff_sees_writes_to_the_leaf_a_copy_was_taken_from() {
        let mut a: CowMap<u32> = (0..10).map(|k| (k, 0)).collect();
        let mut b = a.clone();
        b.insert(1, 1); // b copies the leaf; a is now its only holder
        a.insert(2, 2); // so a writes its leaf in place
        assert_eq!(a.diff(&b), vec![(1, Some(0), Some(1)), (2, Some(2), Some(0))]);
        assert_eq!(b.diff(&a), vec![(1, Some(1), Some(0)), (2, Some(0), Some(2))]);
    }

    #[test]
    fn a_clone_shares_until_written_and_then_copies_one_leaf() {
        let mut a: CowMap<u32> = (0..1000).map(|k| (k, k as u32)).collect();
        let b = a.clone();
        assert!(a.ptr_eq(&b));
        a.insert(70, 7);
        assert!(!a.ptr_eq(&b));
        let shared = a.leaves.iter().zip(b.leaves.iter()).filter(|(x, y)| Rc::ptr_eq(x.1, y.1));
        assert_eq!(shared.count(), a.leaves.len() - 1, "only the leaf of key 70 was copied");
        assert_eq!(b.get(70), Some(&70));
        assert_eq!(a.diff(&b), vec![(70, Some(7), Some(70))]);
    }

    #[test]
    fn emptied_leaves_are_dropped_and_empty_ranges_are_empty() {
        let (second, fourth) = (LEAF_KEYS as u64, 3 * LEAF_KEYS as u64);
        let mut m: CowMap<u32> =
            [(5, 1), (second, 2), (fourth, 4), (u64::MAX, 3)].into_iter().collect();
        assert_eq!(m.leaves.len(), 4, "one leaf each");
        m.remove(fourth);
        assert_eq!(m.leaves.len(), 3);
        m.remove(5);
        assert_eq!(m.leaves.len(), 2);
        assert_eq!(m.range(6..6).count(), 0);
        assert_eq!(m.range((Bound::Excluded(u64::MAX), Bound::Unbounded)).count(), 0);
        assert_eq!(m.range(..0).count(), 0);
        assert_eq!(m.range(6..).collect::<Vec<_>>(), vec![(second, 2), (u64::MAX, 3)]);
        assert_eq!(m.last(), Some((u64::MAX, 3)));
    }
}
