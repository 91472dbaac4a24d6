//! The metadata space map, held entirely in memory while the pool is open and written back
//! in the kernel's format at commit (index block + bitmaps + overflow btree).
//!
//! Why in memory: the metadata device is capped at 4,161,600 blocks, so two views of its
//! counts fit in ~17 MiB, and keeping them in memory removes the kernel's recursion (changing
//! a count changes a bitmap, which needs a block, which changes a count…). Instead of the
//! kernel's queue of deferred inc/dec, the commit runs a fixpoint: shadow every dirty bitmap
//! and the index once, sync the overflow tree, repeat until no new block is dirtied, then
//! write the final counts. Each bitmap and the index are copied at most once per transaction,
//! so the loop ends.
//!
//! Invariants:
//! - `counts.len() == nr_blocks`; `committed_used` has the same length.
//! - A block is allocatable iff `counts[b] == 0 && !committed_used[b]`.
//! - `nr_allocated == #{b : counts[b] > 0}`.
//! - `allocated_this_txn` counts allocations since the last commit (never frees), so the
//!   reported free count only falls within a transaction, as the kernel's does.

use crate::error::{Error, Result, Space};
use crate::events::{self, Map, SpaceEvent};
use crate::format::{bitmap, IndexEntry, MetadataBlock};
use crate::limits::{ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS, METADATA_RESERVE_MAX_BLOCKS};
use std::collections::BTreeSet;

/// Callback run when the raw free count crosses the registered threshold downwards.
pub type ThresholdFn = Box<dyn FnMut() + Send + Sync>;

pub(crate) struct Threshold {
    pub blocks: u64,
    pub callback: ThresholdFn,
    /// Free count at the last allocation (None: nothing observed since registration).
    pub last_observed: Option<u64>,
}

pub struct MetadataSpaceMap {
    pub(crate) counts: Vec<u32>,
    pub(crate) committed_used: Vec<bool>,
    pub(crate) nr_allocated: u64,
    pub(crate) committed_nr_blocks: u64,
    pub(crate) committed_nr_allocated: u64,
    pub(crate) allocated_this_txn: u64,
    pub(crate) cursor: u64,
    /// Location of the index block as last written (committed, or shadowed in this txn).
    pub(crate) index_block: MetadataBlock,
    pub(crate) index_shadowed: bool,
    /// Bitmap locations, one per 16320 blocks.
    pub(crate) bitmaps: Vec<MetadataBlock>,
    pub(crate) bitmap_shadowed: Vec<bool>,
    pub(crate) dirty_bitmaps: BTreeSet<usize>,
    pub(crate) overflow_root: MetadataBlock,
    /// Blocks whose overflow entry may need inserting, updating or removing at commit.
    pub(crate) overflow_dirty: BTreeSet<u64>,
    pub(crate) threshold: Option<Threshold>,
    /// Blocks whose count went to or from zero since the last `mark_committed` (repeats
    /// allowed): the only entries of `committed_used` a commit can change.
    pub(crate) touched: Vec<u64>,
    /// Each bitmap's `(nr_free, none_free_before)` as last written; `None`: recompute. Valid
    /// for every bitmap not in `dirty_bitmaps`, since a count going to or from zero marks its
    /// bitmap dirty and only `mark_committed` (after a write) and `load` (which starts empty)
    /// clear the marks.
    pub(crate) index_cache: Vec<Option<(u32, u32)>>,
}

/// Which views a newly allocated block must be free in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeIn {
    /// Free now and in the last committed state: a block freed in this transaction is still
    /// referenced by the committed metadata and must not be overwritten before the commit.
    BothViews,
    /// Free now (breaks crash consistency; canary only).
    CurrentOnly,
}

impl MetadataSpaceMap {
    /// An empty map of `nr_blocks` (format); bitmaps and index get blocks at first commit.
    pub fn new_empty(nr_blocks: u64) -> Self {
        let n = usize::try_from(nr_blocks).expect("metadata size is capped at 4,161,600");
        MetadataSpaceMap {
            counts: vec![0; n],
            committed_used: vec![false; n],
            nr_allocated: 0,
            committed_nr_blocks: nr_blocks,
            committed_nr_allocated: 0,
            allocated_this_txn: 0,
            cursor: 0,
            index_block: MetadataBlock(0),
            index_shadowed: true,
            bitmaps: Vec::new(),
            bitmap_shadowed: Vec::new(),
            dirty_bitmaps: BTreeSet::new(),
            overflow_root: MetadataBlock(0),
            overflow_dirty: BTreeSet::new(),
            threshold: None,
            touched: Vec::new(),
            index_cache: Vec::new(),
        }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.counts.len() as u64
    }

    /// Blocks with a non-zero count, recounted (`nr_allocated` is kept incrementally).
    pub fn nonzero_counts(&self) -> u64 {
        self.counts.iter().filter(|&&c| c > 0).count() as u64
    }

    pub fn count(&self, b: u64) -> Result<u32> {
        self.counts
            .get(b as usize)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("metadata block {b} beyond the space map")))
    }

    /// The in-core count of `b`, 0 beyond the map (a block a shrink removed).
    pub(crate) fn count_or_zero(&self, b: u64) -> u32 {
        self.counts.get(b as usize).copied().unwrap_or(0)
    }

    /// Loading only: block `b`'s bitmap entry `v` (1..=3) as read from disk, into a map that
    /// starts empty. Marks nothing dirty: the disk already holds it.
    pub(crate) fn load_entry(&mut self, b: u64, v: u32) {
        let slot = &mut self.counts[b as usize];
        assert!(*slot == 0 && (1..=3).contains(&v), "entry {v} loaded twice or out of range");
        *slot = v;
        self.touched.push(b);
        self.nr_allocated += 1;
    }

    /// Loading only: the overflow tree's full count `c` for `b`. False (and no change) when
    /// `b`'s bitmap entry is not 3 or `c` is below 3: the two structures disagree.
    pub(crate) fn load_overflow_count(&mut self, b: u64, c: u32) -> bool {
        match self.counts.get_mut(b as usize) {
            Some(slot) if *slot == 3 && c >= 3 => {
                *slot = c;
                true
            }
            _ => false,
        }
    }

    /// The first block whose count is still exactly 3 (after loading: an entry of 3 with no
    /// overflow count, if the tree has no entry for it).
    pub(crate) fn first_count_of_three(&self) -> Option<u64> {
        self.counts.iter().position(|&c| c == 3).map(|b| b as u64)
    }

    fn set(&mut self, b: u64, new: u32) {
        let old = self.counts[b as usize];
        if old == 0 && new > 0 {
            self.nr_allocated += 1;
            self.touched.push(b);
        } else if old > 0 && new == 0 {
            self.nr_allocated -= 1;
            self.touched.push(b);
        }
        self.counts[b as usize] = new;
        if old.min(3) != new.min(3) {
            self.dirty_bitmaps.insert((b / ENTRIES_PER_BITMAP) as usize);
        }
        if old >= 3 || new >= 3 {
            self.overflow_dirty.insert(b);
        }
        if (old >= 3) != (new >= 3) {
            let e = if new >= 3 { SpaceEvent::OverflowIn } else { SpaceEvent::OverflowOut };
            events::space(Map::Metadata, e);
        }
    }

    pub fn inc(&mut self, b: u64) -> Result<u32> {
        let c = self.count(b)?;
        let new = c.checked_add(1).ok_or_else(|| {
            Error::Invalid(format!("metadata block {b} reference count overflow"))
        })?;
        self.set(b, new);
        Ok(new)
    }

    pub fn dec(&mut self, b: u64) -> Result<u32> {
        let c = self.count(b)?;
        if c == 0 {
            return Err(Error::structure(b, "decrement of a free metadata block"));
        }
        self.set(b, c - 1);
        Ok(c - 1)
    }

    /// Sets a count directly (bootstrap and restore only).
    pub(crate) fn set_count(&mut self, b: u64, c: u32) {
        self.set(b, c);
    }

    /// Whether block `b` is referenced by the last committed state.
    pub(crate) fn committed_used(&self, b: u64) -> bool {
        self.committed_used.get(b as usize).copied().unwrap_or(false)
    }

    fn allocatable(&self, b: u64) -> bool {
        self.counts[b as usize] == 0 && !self.committed_used[b as usize]
    }

    /// Allocates a block free in `view` (both views, except for the canary
    /// `ReuseFreedInTransaction`), searching from the cursor and wrapping once.
    pub(crate) fn alloc(&mut self, view: FreeIn) -> Result<u64> {
        let n = self.nr_blocks();
        let start = self.cursor.min(n);
        let free = |b: u64| match view {
            FreeIn::BothViews => self.allocatable(b),
            FreeIn::CurrentOnly => self.counts[b as usize] == 0,
        };
        let found = (start..n).chain(0..start).find(|&b| free(b));
        let b = found.ok_or(Error::NoSpace(Space::Metadata))?;
        events::count_alloc(Map::Metadata, start, b);
        self.set(b, 1);
        self.cursor = b + 1;
        self.allocated_this_txn += 1;
        self.observe_threshold();
        Ok(b)
    }

    /// Raw free count as the kernel reports it (before the reserve).
    pub fn raw_free(&self) -> u64 {
        self.committed_nr_blocks
            .saturating_sub(self.committed_nr_allocated)
            .saturating_sub(self.allocated_this_txn)
    }

    /// Blocks hidden from the reported free count: min(4096, size / 10).
    pub fn reserve(&self) -> u64 {
        METADATA_RESERVE_MAX_BLOCKS.min(self.committed_nr_blocks / 10)
    }

    /// Free count with the reserve subtracted (what callers see).
    pub fn reported_free(&self) -> u64 {
        self.raw_free().saturating_sub(self.reserve())
    }

    fn observe_threshold(&mut self) {
        let free = self.raw_free();
        if let Some(t) = &mut self.threshold {
            let was_above = t.last_observed.is_none_or(|prev| prev > t.blocks);
            if free <= t.blocks && was_above {
                (t.callback)();
            }
            t.last_observed = Some(free);
        }
    }

    pub fn register_threshold(&mut self, blocks: u64, callback: ThresholdFn) {
        let last_observed = self.threshold.as_ref().and_then(|t| t.last_observed);
        self.threshold = Some(Threshold { blocks, callback, last_observed });
    }

    /// Moves a threshold registration into this map (abort keeps it, [R4]).
    pub(crate) fn adopt_threshold(&mut self, t: Option<Threshold>) {
        self.threshold = t;
    }

    /// The committed view becomes the current one (after the superblock is durable).
    pub(crate) fn mark_committed(&mut self) {
        if self.committed_used.len() == self.counts.len() {
            for b in std::mem::take(&mut self.touched) {
                self.committed_used[b as usize] = self.counts[b as usize] > 0;
            }
        } else {
            self.committed_used.clear();
            self.committed_used.extend(self.counts.iter().map(|&c| c > 0));
            self.touched.clear();
        }
        debug_assert!(self.committed_used.iter().zip(&self.counts).all(|(&u, &c)| u == (c > 0)));
        self.committed_nr_blocks = self.nr_blocks();
        self.committed_nr_allocated = self.nr_allocated;
        self.allocated_this_txn = 0;
        self.index_shadowed = false;
        self.bitmap_shadowed.iter_mut().for_each(|s| *s = false);
        self.dirty_bitmaps.clear();
        self.overflow_dirty.clear();
    }

    /// Grows or shrinks the map. Shrinking requires every dropped block free in both views.
    pub fn resize(&mut self, new_nr_blocks: u64) -> Result<()> {
        if new_nr_blocks > MAX_METADATA_BLOCKS {
            return Err(Error::Invalid(format!(
                "metadata size {new_nr_blocks} exceeds the format's {MAX_METADATA_BLOCKS} blocks"
            )));
        }
        let old = self.nr_blocks();
        if new_nr_blocks < old {
            let lost = (new_nr_blocks..old).any(|b| !self.allocatable(b));
            if lost {
                return Err(Error::NoSpace(Space::Shrink));
            }
        }
        let n = new_nr_blocks as usize;
        self.counts.resize(n, 0);
        self.committed_used.resize(n, false);
        let nr_bitmaps = new_nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize;
        events::count_resize(Map::Metadata, old.div_ceil(ENTRIES_PER_BITMAP), nr_bitmaps as u64);
        // Dropped bitmaps are released by the commit (it owns the block references). A
        // bitmap marked dirty by a growth earlier in this transaction may not exist yet, so
        // the marks are cut whatever `bitmaps` holds (else the commit indexes past it).
        self.dirty_bitmaps.retain(|&i| i < nr_bitmaps);
        // The last bitmap's out-of-range entries changed meaning: rewrite it.
        if nr_bitmaps > 0 {
            self.dirty_bitmaps.insert(nr_bitmaps - 1);
        }
        self.cursor = self.cursor.min(new_nr_blocks);
        Ok(())
    }

    /// The bitmap body for bitmap `i`, from the current counts (header left for sealing).
    pub(crate) fn render_bitmap(&self, i: usize) -> crate::io::Block {
        let mut b = [0u8; 4096];
        for (w, chunk) in self.bitmap_counts(i).chunks(32).enumerate() {
            bitmap::put_word(&mut b, w as u64, bitmap::encode_word(chunk));
        }
        b
    }

    /// The counts bitmap `i` covers (the last bitmap may cover fewer than 16320).
    fn bitmap_counts(&self, i: usize) -> &[u32] {
        let base = i * ENTRIES_PER_BITMAP as usize;
        let end = (base + ENTRIES_PER_BITMAP as usize).min(self.counts.len());
        &self.counts[base..end]
    }

    /// Every bitmap's index entry, exact (kernel hints are looser but compatible): computed
    /// for dirty bitmaps, taken from the cache for the rest.
    pub(crate) fn index_entries(&mut self) -> Vec<IndexEntry> {
        self.index_cache.resize(self.bitmaps.len(), None);
        (0..self.bitmaps.len())
            .map(|i| {
                let cached = self.index_cache[i].filter(|_| !self.dirty_bitmaps.contains(&i));
                let (nr_free, none_free_before) = cached.unwrap_or_else(|| self.free_of(i));
                debug_assert_eq!((nr_free, none_free_before), self.free_of(i));
                self.index_cache[i] = Some((nr_free, none_free_before));
                IndexEntry { blocknr: self.bitmaps[i], nr_free, none_free_before }
            })
            .collect()
    }

    /// Bitmap `i`'s free entries (of 16320: entries past the map's end count as free) and
    /// its first free entry (its length when none is).
    fn free_of(&self, i: usize) -> (u32, u32) {
        let counts = self.bitmap_counts(i);
        let used: u32 = counts.iter().map(|&c| u32::from(c != 0)).sum();
        let first_free = counts.iter().position(|&c| c == 0).unwrap_or(counts.len());
        (ENTRIES_PER_BITMAP as u32 - used, first_free as u32)
    }
}
