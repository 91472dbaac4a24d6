//! Structural event counters: what the engine's trees and space maps did — splits, merges,
//! redistributions, root collapses, shadows of shared nodes, allocations across a bitmap
//! boundary, counts moving into and out of an overflow tree, bitmaps added and removed.
//!
//! They exist so a harness can prove that its workloads reached the engine's structural
//! code: a campaign that never splits a node has not tested splitting, whatever its oracles
//! say. The counters are always compiled and cost one thread-local add per event (events are
//! per split or per allocation, never per byte).
//!
//! Invariants:
//! - Counters are per thread: a simulator runs one pool per thread, so parallel runs never
//!   mix their counts, and a seed's counts are deterministic.
//! - Counting never changes what the engine does: no event is read back by the engine.
//! - [`Counts::merge`] adds counters and takes the maximum of gauges (heights, bitmaps), so a
//!   campaign's counts are the merge of its runs' in any order.

use crate::limits::ENTRIES_PER_BITMAP;
use std::cell::RefCell;

/// Which tree a btree event happened in (told apart by the tree's value type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// The top level of the mapping tree (thin id → subtree root).
    Top,
    /// A device's mapping tree (vblock → block and time).
    Mapping,
    /// The device-details tree.
    Details,
    /// The data space map's index tree (bitmap number → index entry).
    SmIndex,
    /// An overflow tree of reference counts ≥ 3 (data or metadata map).
    Overflow,
}

impl Tree {
    pub const ALL: [Tree; 5] =
        [Tree::Top, Tree::Mapping, Tree::Details, Tree::SmIndex, Tree::Overflow];

    pub const fn name(self) -> &'static str {
        match self {
            Tree::Top => "top",
            Tree::Mapping => "mapping",
            Tree::Details => "details",
            Tree::SmIndex => "sm_index",
            Tree::Overflow => "overflow",
        }
    }
}

/// A structural event of a btree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BtreeEvent {
    /// A full leaf split in two (below the root).
    LeafSplit,
    /// A full internal node split in two (below the root).
    InternalSplit,
    /// The root split: the tree grew a level.
    RootSplit,
    /// A root split by an insert of a key below the tree's minimum.
    RootSplitNewMin,
    /// Two siblings merged into one.
    Merge,
    /// Two siblings shared their entries evenly (this engine rebalances two nodes at a time).
    Redistribute,
    /// A rebalance whose sibling was shared with another tree (shadowed with its children
    /// incremented).
    RebalanceSharedSibling,
    /// An internal root with one child gave way to the child.
    RootCollapse,
    /// A `remove_range` that removed keys from two or more leaves.
    RemoveRangeMultiLeaf,
    /// A lookup-next that passed through an internal node below its first key.
    LookupNextBelowFirst,
    /// A shared leaf was shadowed (its values incremented).
    ShadowSharedLeaf,
    /// A shared internal node was shadowed (its children incremented).
    ShadowSharedInternal,
}

impl BtreeEvent {
    pub const ALL: [BtreeEvent; 12] = [
        BtreeEvent::LeafSplit,
        BtreeEvent::InternalSplit,
        BtreeEvent::RootSplit,
        BtreeEvent::RootSplitNewMin,
        BtreeEvent::Merge,
        BtreeEvent::Redistribute,
        BtreeEvent::RebalanceSharedSibling,
        BtreeEvent::RootCollapse,
        BtreeEvent::RemoveRangeMultiLeaf,
        BtreeEvent::LookupNextBelowFirst,
        BtreeEvent::ShadowSharedLeaf,
        BtreeEvent::ShadowSharedInternal,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BtreeEvent::LeafSplit => "leaf_split",
            BtreeEvent::InternalSplit => "internal_split",
            BtreeEvent::RootSplit => "root_split",
            BtreeEvent::RootSplitNewMin => "root_split_new_min",
            BtreeEvent::Merge => "merge",
            BtreeEvent::Redistribute => "redistribute",
            BtreeEvent::RebalanceSharedSibling => "rebalance_shared_sibling",
            BtreeEvent::RootCollapse => "root_collapse",
            BtreeEvent::RemoveRangeMultiLeaf => "remove_range_multi_leaf",
            BtreeEvent::LookupNextBelowFirst => "lookup_next_below_first",
            BtreeEvent::ShadowSharedLeaf => "shadow_shared_leaf",
            BtreeEvent::ShadowSharedInternal => "shadow_shared_internal",
        }
    }

    /// Events that reshape a tree (a crash while one is uncommitted is a case of its own).
    pub const fn reshapes(self) -> bool {
        matches!(
            self,
            BtreeEvent::LeafSplit
                | BtreeEvent::InternalSplit
                | BtreeEvent::RootSplit
                | BtreeEvent::Merge
                | BtreeEvent::Redistribute
                | BtreeEvent::RootCollapse
        )
    }
}

/// Which space map a space-map event happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Map {
    Data,
    Metadata,
}

impl Map {
    pub const ALL: [Map; 2] = [Map::Data, Map::Metadata];

    pub const fn name(self) -> &'static str {
        match self {
            Map::Data => "data",
            Map::Metadata => "metadata",
        }
    }
}

/// A structural event of a space map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpaceEvent {
    /// An allocation found its block in a later bitmap than the previous allocation's (or,
    /// after an open, than block 0's): allocation moved across a bitmap boundary.
    AllocCrossesBitmap,
    /// An allocation found nothing from the cursor on and wrapped to block 0.
    CursorWrap,
    /// A count went from below 3 to 3 or more (into the overflow tree).
    OverflowIn,
    /// A count went from 3 or more to below 3 (out of the overflow tree).
    OverflowOut,
    /// A resize added a bitmap beyond the first.
    GrowAddsBitmap,
    /// A shrink removed a bitmap.
    ShrinkRemovesBitmap,
    /// A commit wrote a space map of more than one bitmap (an index of several entries).
    MultiBitmapCommit,
    /// Reading a bitmap other than the first failed (I/O error or damage).
    LaterBitmapReadFailed,
}

impl SpaceEvent {
    pub const ALL: [SpaceEvent; 8] = [
        SpaceEvent::AllocCrossesBitmap,
        SpaceEvent::CursorWrap,
        SpaceEvent::OverflowIn,
        SpaceEvent::OverflowOut,
        SpaceEvent::GrowAddsBitmap,
        SpaceEvent::ShrinkRemovesBitmap,
        SpaceEvent::MultiBitmapCommit,
        SpaceEvent::LaterBitmapReadFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SpaceEvent::AllocCrossesBitmap => "alloc_crosses_bitmap",
            SpaceEvent::CursorWrap => "cursor_wrap",
            SpaceEvent::OverflowIn => "overflow_in",
            SpaceEvent::OverflowOut => "overflow_out",
            SpaceEvent::GrowAddsBitmap => "grow_adds_bitmap",
            SpaceEvent::ShrinkRemovesBitmap => "shrink_removes_bitmap",
            SpaceEvent::MultiBitmapCommit => "multi_bitmap_commit",
            SpaceEvent::LaterBitmapReadFailed => "later_bitmap_read_failed",
        }
    }
}

const TREES: usize = Tree::ALL.len();
const BTREE_EVENTS: usize = BtreeEvent::ALL.len();
const MAPS: usize = Map::ALL.len();
const SPACE_EVENTS: usize = SpaceEvent::ALL.len();

/// Every counter and gauge of one thread (or merged from many).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    btree: [[u64; BTREE_EVENTS]; TREES],
    space: [[u64; SPACE_EVENTS]; MAPS],
    /// Greatest height (levels, a lone leaf is 1) a tree of each kind reached.
    max_height: [u64; TREES],
    /// Greatest number of bitmaps a space map of each kind held at a commit.
    max_bitmaps: [u64; MAPS],
}

impl Counts {
    pub fn btree(&self, tree: Tree, e: BtreeEvent) -> u64 {
        self.btree[tree as usize][e as usize]
    }

    pub fn space(&self, map: Map, e: SpaceEvent) -> u64 {
        self.space[map as usize][e as usize]
    }

    pub fn max_height(&self, tree: Tree) -> u64 {
        self.max_height[tree as usize]
    }

    pub fn max_bitmaps(&self, map: Map) -> u64 {
        self.max_bitmaps[map as usize]
    }

    /// Sum of the reshaping events of every tree (see [`BtreeEvent::reshapes`]).
    pub fn reshapes(&self) -> u64 {
        let reshaping = BtreeEvent::ALL.iter().filter(|e| e.reshapes());
        reshaping.map(|&e| Tree::ALL.iter().map(|&t| self.btree(t, e)).sum::<u64>()).sum()
    }

    /// Adds counters, takes the maximum of gauges.
    pub fn merge(&mut self, o: &Counts) {
        for (a, b) in self.btree.iter_mut().flatten().zip(o.btree.iter().flatten()) {
            *a += b;
        }
        for (a, b) in self.space.iter_mut().flatten().zip(o.space.iter().flatten()) {
            *a += b;
        }
        for (a, b) in self.max_height.iter_mut().zip(&o.max_height) {
            *a = (*a).max(*b);
        }
        for (a, b) in self.max_bitmaps.iter_mut().zip(&o.max_bitmaps) {
            *a = (*a).max(*b);
        }
    }

    /// Sets the counts of one event (tests and report merging).
    pub fn set_btree(&mut self, tree: Tree, e: BtreeEvent, n: u64) {
        self.btree[tree as usize][e as usize] = n;
    }

    pub fn set_space(&mut self, map: Map, e: SpaceEvent, n: u64) {
        self.space[map as usize][e as usize] = n;
    }

    pub fn set_max_height(&mut self, tree: Tree, h: u64) {
        self.max_height[tree as usize] = h;
    }

    pub fn set_max_bitmaps(&mut self, map: Map, n: u64) {
        self.max_bitmaps[map as usize] = n;
    }
}

thread_local! {
    static COUNTS: RefCell<Counts> = RefCell::new(Counts::default());
}

pub(crate) fn btree(tree: Tree, e: BtreeEvent) {
    COUNTS.with(|c| c.borrow_mut().btree[tree as usize][e as usize] += 1);
}

pub(crate) fn space(map: Map, e: SpaceEvent) {
    COUNTS.with(|c| c.borrow_mut().space[map as usize][e as usize] += 1);
}

pub(crate) fn height(tree: Tree, levels: u64) {
    COUNTS.with(|c| {
        let h = &mut c.borrow_mut().max_height[tree as usize];
        *h = (*h).max(levels);
    });
}

pub(crate) fn bitmaps(map: Map, n: u64) {
    COUNTS.with(|c| {
        let m = &mut c.borrow_mut().max_bitmaps[map as usize];
        *m = (*m).max(n);
    });
}

/// This thread's counts so far.
pub fn snapshot() -> Counts {
    COUNTS.with(|c| c.borrow().clone())
}

/// This thread's counts so far, and zero from now on.
pub fn take() -> Counts {
    COUNTS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Runs `f` without counting what it does: the counts after are the counts before. For work
/// that is not the workload's (the simulator's offline tools judging an image).
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let before = take();
    let r = f();
    COUNTS.with(|c| *c.borrow_mut() = before);
    r
}

// ----- space-map events shared by the metadata and the data map ---------------------

/// Counts an allocation that searched from `start` (one past the previous allocation, or 0)
/// and found `found` (both maps): a wrap, or a block in a later bitmap than the one the
/// previous allocation (or the search) was in.
pub(crate) fn count_alloc(map: Map, start: u64, found: u64) {
    if found < start {
        space(map, SpaceEvent::CursorWrap);
    } else if found / ENTRIES_PER_BITMAP != start.saturating_sub(1) / ENTRIES_PER_BITMAP {
        space(map, SpaceEvent::AllocCrossesBitmap);
    }
}

/// Counts a resize from `old` to `new` bitmaps (the first bitmap of a new map is no event).
pub(crate) fn count_resize(map: Map, old: u64, new: u64) {
    if new > old && new > 1 {
        space(map, SpaceEvent::GrowAddsBitmap);
    } else if new < old {
        space(map, SpaceEvent::ShrinkRemovesBitmap);
    }
}

/// Counts a commit of a map of `nr_bitmaps` bitmaps.
pub(crate) fn count_commit(map: Map, nr_bitmaps: u64) {
    bitmaps(map, nr_bitmaps);
    if nr_bitmaps > 1 {
        space(map, SpaceEvent::MultiBitmapCommit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_per_thread_and_take_resets() {
        take();
        btree(Tree::Mapping, BtreeEvent::LeafSplit);
        height(Tree::Mapping, 3);
        height(Tree::Mapping, 2);
        let other = std::thread::spawn(|| {
            space(Map::Data, SpaceEvent::CursorWrap);
            take()
        })
        .join()
        .expect("thread");
        let mine = take();
        assert_eq!(mine.btree(Tree::Mapping, BtreeEvent::LeafSplit), 1);
        assert_eq!(mine.max_height(Tree::Mapping), 3);
        assert_eq!(mine.space(Map::Data, SpaceEvent::CursorWrap), 0);
        assert_eq!(other.space(Map::Data, SpaceEvent::CursorWrap), 1);
        assert_eq!(take(), Counts::default());
    }

    #[test]
    fn merge_adds_counters_and_keeps_the_highest_gauge() {
        let mut a = Counts::default();
        a.set_btree(Tree::Top, BtreeEvent::Merge, 2);
        a.set_max_height(Tree::Top, 4);
        let mut b = Counts::default();
        b.set_btree(Tree::Top, BtreeEvent::Merge, 3);
        b.set_max_height(Tree::Top, 2);
        b.set_max_bitmaps(Map::Metadata, 3);
        a.merge(&b);
        assert_eq!(a.btree(Tree::Top, BtreeEvent::Merge), 5);
        assert_eq!(a.max_height(Tree::Top), 4);
        assert_eq!(a.max_bitmaps(Map::Metadata), 3);
        assert_eq!(a.reshapes(), 5);
    }
}
