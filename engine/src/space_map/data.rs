//! The data space map: 2-bit bitmaps indexed by a btree (key = bitmap number, value = 16-byte
//! index entry), overflow counts in their own btree. Unlike the metadata map it stays on disk
//! (a data device can have billions of blocks); touched index entries are cached.
//!
//! Invariants:
//! - `entries[i].cur` is the current index entry of bitmap i; `committed_blocknr` is where the
//!   last commit's bitmap lives (None: the bitmap did not exist then). A bitmap is copied once
//!   per transaction (`shadowed`), so the committed bitmap stays readable until commit.
//! - `nr_free` in cached entries is exact (recomputed from the bitmap when an entry is first
//!   loaded, because tool-written images may understate it).
//! - Allocation hands out only blocks whose count is 0 now and at the last commit.
//! - `nr_allocated == #{b < nr_blocks : count(b) > 0}`.

use super::{OVERFLOW_THRESHOLD, OVERFLOW_VALUES};
use crate::btree::{self, ReadMode, ValueKind};
use crate::canary::Canary;
use crate::error::{Error, Result, Space};
use crate::events::{self, Map, SpaceEvent};
use crate::format::checksum::BlockKind;
use crate::format::{bitmap, IndexEntry, MetadataBlock, SmRoot};
use crate::limits::{ENTRIES_PER_BITMAP, INDEX_ENTRY_BYTES};
use crate::transaction::TransactionManager;
use std::collections::BTreeMap;

/// The data space map's index btree holds 16-byte index entries.
pub const INDEX_VALUES: ValueKind<'static> =
    &btree::Plain { size: INDEX_ENTRY_BYTES, tree: crate::events::Tree::SmIndex };

#[derive(Debug, Clone, Copy)]
struct CachedEntry {
    cur: IndexEntry,
    committed_blocknr: Option<MetadataBlock>,
    shadowed: bool,
    dirty: bool,
}

#[derive(Debug, Clone)]
pub struct DataSpaceMap {
    nr_blocks: u64,
    committed_nr_blocks: u64,
    nr_allocated: u64,
    index_root: MetadataBlock,
    overflow_root: MetadataBlock,
    entries: BTreeMap<u64, CachedEntry>,
    /// Bitmaps removed by a shrink in this transaction (their index entries go at commit).
    removed: Vec<u64>,
    cursor: u64,
}

impl DataSpaceMap {
    /// An empty map of 0 blocks (format), with empty index and overflow trees.
    pub fn format(tm: &mut TransactionManager) -> Result<Self> {
        Ok(DataSpaceMap {
            nr_blocks: 0,
            committed_nr_blocks: 0,
            nr_allocated: 0,
            index_root: btree::empty(tm, INDEX_VALUES)?,
            overflow_root: btree::empty(tm, OVERFLOW_VALUES)?,
            entries: BTreeMap::new(),
            removed: Vec::new(),
            cursor: 0,
        })
    }

    /// Opens the map described by `root`; nothing is read until a block is asked about.
    pub fn open(root: &SmRoot) -> Self {
        DataSpaceMap {
            nr_blocks: root.nr_blocks,
            committed_nr_blocks: root.nr_blocks,
            nr_allocated: root.nr_allocated,
            index_root: root.bitmap_root,
            overflow_root: root.ref_count_root,
            entries: BTreeMap::new(),
            removed: Vec::new(),
            cursor: 0,
        }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    pub fn committed_nr_blocks(&self) -> u64 {
        self.committed_nr_blocks
    }

    /// Committed size minus blocks in use now, saturating ([R5]).
    pub fn free_count(&self) -> u64 {
        self.committed_nr_blocks.saturating_sub(self.nr_allocated)
    }

    fn entry(&mut self, tm: &mut TransactionManager, i: u64) -> Result<CachedEntry> {
        if let Some(e) = self.entries.get(&i) {
            return Ok(*e);
        }
        let v = btree::lookup(tm, self.index_root, INDEX_VALUES, i, ReadMode::Blocking)?
            .ok_or_else(|| {
                Error::structure(self.index_root, format!("data space map has no bitmap {i}"))
            })?;
        let mut cur = IndexEntry::unpack(&v);
        let bmp = tm.read(cur.blocknr, BlockKind::Bitmap).map_err(|e| {
            if i > 0 {
                events::space(Map::Data, SpaceEvent::LaterBitmapReadFailed);
            }
            e.via(self.index_root.0)
        })?;
        cur.nr_free = bitmap::count_free(&bmp);
        cur.none_free_before =
            cur.none_free_before
                .min(bitmap::find_free(&bmp, 0, ENTRIES_PER_BITMAP).unwrap_or(ENTRIES_PER_BITMAP)
                    as u32);
        let e = CachedEntry {
            cur,
            committed_blocknr: Some(cur.blocknr),
            shadowed: false,
            dirty: false,
        };
        self.entries.insert(i, e);
        Ok(e)
    }

    fn check_range(&self, b: u64) -> Result<()> {
        if b >= self.nr_blocks {
            return Err(Error::Invalid(format!(
                "data block {b} beyond the data device ({})",
                self.nr_blocks
            )));
        }
        Ok(())
    }

    /// The reference count of data block `b` in the current transaction.
    pub fn count(&mut self, tm: &mut TransactionManager, b: u64) -> Result<u32> {
        self.check_range(b)?;
        let e = self.entry(tm, b / ENTRIES_PER_BITMAP)?;
        let bmp = tm.read(e.cur.blocknr, BlockKind::Bitmap)?;
        let v = bitmap::get(&bmp, b % ENTRIES_PER_BITMAP);
        if v < OVERFLOW_THRESHOLD {
            return Ok(v);
        }
        let c = btree::lookup(tm, self.overflow_root, OVERFLOW_VALUES, b, ReadMode::Blocking)?
            .ok_or_else(|| {
                Error::structure(
                    e.cur.blocknr,
                    format!("data block {b} marked 3 without an overflow count"),
                )
            })?;
        Ok(u32::from_le_bytes(c[..4].try_into().expect("4-byte count")))
    }

    fn committed_is_free(&mut self, tm: &mut TransactionManager, b: u64) -> Result<bool> {
        if tm.canaries.on(Canary::ReuseFreedInTransaction) {
            return Ok(true);
        }
        if b >= self.committed_nr_blocks {
            return Ok(true);
        }
        let e = self.entry(tm, b / ENTRIES_PER_BITMAP)?;
        let Some(old) = e.committed_blocknr else { return Ok(true) };
        let bmp = tm.read(old, BlockKind::Bitmap)?;
        Ok(bitmap::get(&bmp, b % ENTRIES_PER_BITMAP) == 0)
    }

    /// Sets the count of `b`, copying its bitmap on first change in this transaction.
    pub fn set_count(&mut self, tm: &mut TransactionManager, b: u64, new: u32) -> Result<()> {
        let old = self.count(tm, b)?;
        if old == new {
            return Ok(());
        }
        let i = b / ENTRIES_PER_BITMAP;
        let bit = b % ENTRIES_PER_BITMAP;
        let mut e = self.entry(tm, i)?;
        if !e.shadowed {
            let (copy, _) = tm.shadow(e.cur.blocknr, BlockKind::Bitmap)?;
            e.cur.blocknr = copy;
            e.shadowed = true;
        }
        tm.modify(e.cur.blocknr, BlockKind::Bitmap, |blk| {
            bitmap::set(blk, bit, new.min(OVERFLOW_THRESHOLD))
        })?;
        if old == 0 {
            e.cur.nr_free -= 1;
            self.nr_allocated += 1;
            if e.cur.none_free_before as u64 == bit {
                e.cur.none_free_before = bit as u32 + 1;
            }
        } else if new == 0 {
            e.cur.nr_free += 1;
            // The root's count is untrusted input: never wrap.
            self.nr_allocated = self.nr_allocated.saturating_sub(1);
            e.cur.none_free_before = e.cur.none_free_before.min(bit as u32);
        }
        e.dirty = true;
        self.entries.insert(i, e);
        if (old < OVERFLOW_THRESHOLD) != (new < OVERFLOW_THRESHOLD) {
            let e = if new >= OVERFLOW_THRESHOLD {
                SpaceEvent::OverflowIn
            } else {
                SpaceEvent::OverflowOut
            };
            events::space(Map::Data, e);
        }
        if new >= OVERFLOW_THRESHOLD {
            let (root, _) =
                btree::insert(tm, OVERFLOW_VALUES, self.overflow_root, b, &new.to_le_bytes())?;
            self.overflow_root = root;
        } else if old >= OVERFLOW_THRESHOLD {
            self.overflow_root = btree::remove(tm, OVERFLOW_VALUES, self.overflow_root, b)?.0;
        }
        Ok(())
    }

    pub fn inc(&mut self, tm: &mut TransactionManager, b: u64) -> Result<()> {
        let c = self.count(tm, b)?;
        let new = c
            .checked_add(1)
            .ok_or_else(|| Error::Invalid(format!("data block {b} count overflow")))?;
        self.set_count(tm, b, new)
    }

    pub fn dec(&mut self, tm: &mut TransactionManager, b: u64) -> Result<()> {
        let c = self.count(tm, b)?;
        if c == 0 {
            return Err(Error::Invalid(format!("unable to decrement free data block {b}")));
        }
        self.set_count(tm, b, c - 1)
    }

    /// Adds `add` references to each block of `runs` (ascending, distinct blocks), bitmap by
    /// bitmap: one copy and one edit per bitmap instead of one per block (bulk restore).
    pub fn add_counts(&mut self, tm: &mut TransactionManager, runs: &[(u64, u32)]) -> Result<()> {
        let mut i = 0;
        while i < runs.len() {
            let bitmap_no = runs[i].0 / ENTRIES_PER_BITMAP;
            let j = i + runs[i..].partition_point(|r| r.0 / ENTRIES_PER_BITMAP == bitmap_no);
            self.add_counts_in_bitmap(tm, bitmap_no, &runs[i..j])?;
            i = j;
        }
        Ok(())
    }

    fn add_counts_in_bitmap(
        &mut self,
        tm: &mut TransactionManager,
        i: u64,
        runs: &[(u64, u32)],
    ) -> Result<()> {
        if let Some(&(b, _)) = runs.iter().find(|r| r.0 >= self.nr_blocks) {
            return self.check_range(b);
        }
        let mut e = self.entry(tm, i)?;
        if !e.shadowed {
            e.cur.blocknr = tm.shadow(e.cur.blocknr, BlockKind::Bitmap)?.0;
            e.shadowed = true;
        }
        let mut overflow = Vec::new();
        let (mut newly_used, mut first_touched) = (0u32, u32::MAX);
        tm.modify(e.cur.blocknr, BlockKind::Bitmap, |blk| {
            for &(b, add) in runs {
                let bit = b % ENTRIES_PER_BITMAP;
                let old = bitmap::get(blk, bit);
                if old == 0 {
                    newly_used += 1;
                    first_touched = first_touched.min(bit as u32);
                }
                if old == OVERFLOW_THRESHOLD {
                    overflow.push((b, None, add));
                    continue;
                }
                let new = old + add;
                bitmap::set(blk, bit, new.min(OVERFLOW_THRESHOLD));
                if new >= OVERFLOW_THRESHOLD {
                    events::space(Map::Data, SpaceEvent::OverflowIn);
                    overflow.push((b, Some(new), add));
                }
            }
        })?;
        e.cur.nr_free -= newly_used;
        if first_touched == e.cur.none_free_before {
            let bmp = tm.read(e.cur.blocknr, BlockKind::Bitmap)?;
            e.cur.none_free_before =
                bitmap::find_free(&bmp, 0, ENTRIES_PER_BITMAP).unwrap_or(ENTRIES_PER_BITMAP) as u32;
        }
        e.dirty = true;
        self.entries.insert(i, e);
        self.nr_allocated += u64::from(newly_used);
        for (b, known, add) in overflow {
            let new = match known {
                Some(n) => n,
                None => {
                    let v = btree::lookup(
                        tm,
                        self.overflow_root,
                        OVERFLOW_VALUES,
                        b,
                        ReadMode::Blocking,
                    )?
                    .ok_or_else(|| {
                        Error::structure(
                            e.cur.blocknr,
                            format!("data block {b} marked 3 without an overflow count"),
                        )
                    })?;
                    u32::from_le_bytes(v[..4].try_into().expect("4-byte count")) + add
                }
            };
            self.overflow_root =
                btree::insert(tm, OVERFLOW_VALUES, self.overflow_root, b, &new.to_le_bytes())?.0;
        }
        Ok(())
    }

    /// Allocates a block free now and at the last commit: from the cursor to the end, then
    /// from 0. Sets its count to 1.
    pub fn alloc(&mut self, tm: &mut TransactionManager) -> Result<u64> {
        let start = self.cursor.min(self.nr_blocks);
        let found = match self.find_free(tm, start, self.nr_blocks)? {
            Some(b) => Some(b),
            None => self.find_free(tm, 0, start)?,
        };
        let b = found.ok_or(Error::NoSpace(Space::Data))?;
        events::count_alloc(Map::Data, start, b);
        self.set_count(tm, b, 1)?;
        self.cursor = b + 1;
        Ok(b)
    }

    fn find_free(
        &mut self,
        tm: &mut TransactionManager,
        begin: u64,
        end: u64,
    ) -> Result<Option<u64>> {
        let mut b = begin;
        while b < end {
            let i = b / ENTRIES_PER_BITMAP;
            let base = i * ENTRIES_PER_BITMAP;
            let limit = (base + ENTRIES_PER_BITMAP).min(end);
            let e = self.entry(tm, i)?;
            if e.cur.nr_free > 0 {
                let bmp = tm.read(e.cur.blocknr, BlockKind::Bitmap)?;
                let mut off = (b - base).max(u64::from(e.cur.none_free_before));
                while let Some(f) = bitmap::find_free(&bmp, off, limit - base) {
                    if self.committed_is_free(tm, base + f)? {
                        return Ok(Some(base + f));
                    }
                    off = f + 1;
                }
            }
            b = limit;
        }
        Ok(None)
    }

    /// Whether any block in `[begin, end)` is in use now or at the last commit.
    fn any_used(&mut self, tm: &mut TransactionManager, begin: u64, end: u64) -> Result<bool> {
        for b in begin..end {
            if self.count(tm, b)? > 0 || !self.committed_is_free(tm, b)? {
                return Ok(true);
            }
            // Skip whole free bitmaps quickly.
            let i = b / ENTRIES_PER_BITMAP;
            let e = self.entry(tm, i)?;
            if e.cur.nr_free == ENTRIES_PER_BITMAP as u32
                && e.committed_blocknr == Some(e.cur.blocknr)
            {
                let next = (i + 1) * ENTRIES_PER_BITMAP;
                if next >= end {
                    break;
                }
            }
        }
        Ok(false)
    }

    /// Grows (new zeroed bitmaps as needed) or shrinks (refused if a dropped block is in use).
    pub fn resize(&mut self, tm: &mut TransactionManager, new_nr_blocks: u64) -> Result<()> {
        let old = self.nr_blocks;
        if new_nr_blocks < old && self.any_used(tm, new_nr_blocks, old)? {
            return Err(Error::NoSpace(Space::Shrink));
        }
        let old_bitmaps = old.div_ceil(ENTRIES_PER_BITMAP);
        let new_bitmaps = new_nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
        events::count_resize(Map::Data, old_bitmaps, new_bitmaps);
        for i in old_bitmaps..new_bitmaps {
            let blocknr = tm.new_block(BlockKind::Bitmap)?;
            let cur =
                IndexEntry { blocknr, nr_free: ENTRIES_PER_BITMAP as u32, none_free_before: 0 };
            self.entries.insert(
                i,
                CachedEntry { cur, committed_blocknr: None, shadowed: true, dirty: true },
            );
            self.removed.retain(|&r| r != i);
        }
        for i in new_bitmaps..old_bitmaps {
            let e = self.entry(tm, i)?;
            tm.dec(e.cur.blocknr)?;
            self.entries.remove(&i);
            self.removed.push(i);
        }
        self.nr_blocks = new_nr_blocks;
        self.cursor = self.cursor.min(new_nr_blocks);
        Ok(())
    }

    /// Writes dirty index entries into the index tree; returns the root for the superblock.
    pub fn pre_commit(&mut self, tm: &mut TransactionManager) -> Result<SmRoot> {
        for i in std::mem::take(&mut self.removed) {
            self.index_root = btree::remove(tm, INDEX_VALUES, self.index_root, i)?.0;
        }
        let dirty: Vec<(u64, IndexEntry)> =
            self.entries.iter().filter(|(_, e)| e.dirty).map(|(i, e)| (*i, e.cur)).collect();
        for (i, cur) in dirty {
            self.index_root = btree::insert(tm, INDEX_VALUES, self.index_root, i, &cur.pack())?.0;
        }
        events::count_commit(Map::Data, self.nr_blocks.div_ceil(ENTRIES_PER_BITMAP));
        Ok(self.root())
    }

    pub fn root(&self) -> SmRoot {
        SmRoot {
            nr_blocks: self.nr_blocks,
            nr_allocated: self.nr_allocated,
            bitmap_root: self.index_root,
            ref_count_root: self.overflow_root,
        }
    }

    /// After the superblock is durable: the current view becomes the committed one.
    pub fn mark_committed(&mut self) {
        for e in self.entries.values_mut() {
            e.committed_blocknr = Some(e.cur.blocknr);
            e.shadowed = false;
            e.dirty = false;
        }
        self.committed_nr_blocks = self.nr_blocks;
    }
}
