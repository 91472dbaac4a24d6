//! Transaction manager: the only source of writable metadata blocks, and the commit protocol.
//!
//! Invariants:
//! - A writable block is either new in this transaction or a shadow (copy) made in it; both
//!   live at locations free in the committed space map, so writing them early is harmless.
//! - `shadow` copies a block at most once per transaction unless it became shared again.
//! - Commit order: write back the space map and every dirty block, flush, then the superblock,
//!   flush. A failure before the superblock write leaves the committed state untouched.
//!
//! The floors above (btrees, space maps, the pool) name metadata blocks as [`MetadataBlock`]
//! when they call in; below, the block manager and the metadata space map take the bare
//! number, as the device does.

use crate::block_manager::BlockManager;
use crate::canary::{Canaries, Canary};
use crate::error::{Error, Result};
use crate::format::checksum::BlockKind;
use crate::format::superblock::{SmRoot, Superblock};
use crate::format::MetadataBlock;
use crate::io::Block;
use crate::space_map::metadata::{FreeIn, MetadataSpaceMap};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct TransactionManager {
    pub bm: BlockManager,
    pub sm: MetadataSpaceMap,
    shadowed: BTreeSet<u64>,
    /// Deliberately broken behaviours for the simulator's teeth tests (none outside a
    /// `canary` build).
    pub(crate) canaries: Canaries,
}

impl TransactionManager {
    /// A manager over `bm` with an empty metadata space map, which
    /// `space_map::metadata_commit::{format, load}` then fill.
    pub fn new(bm: BlockManager) -> Self {
        TransactionManager {
            bm,
            sm: MetadataSpaceMap::new_empty(0),
            shadowed: BTreeSet::new(),
            canaries: Canaries::NONE,
        }
    }

    /// Forgets all transaction state (before loading a committed state again).
    pub(crate) fn reset(&mut self) {
        self.shadowed.clear();
    }

    pub fn read(&self, b: MetadataBlock, kind: BlockKind) -> Result<Arc<Block>> {
        self.check_in_range(b.0)?;
        self.bm.read(b.0, kind)
    }

    pub fn try_read(&self, b: MetadataBlock, kind: BlockKind) -> Result<Arc<Block>> {
        self.check_in_range(b.0)?;
        self.bm.try_read(b.0, kind)
    }

    /// Pointers from disk are untrusted: a block past the space map is corruption.
    fn check_in_range(&self, b: u64) -> Result<()> {
        if b >= self.sm.nr_blocks() {
            return Err(Error::structure(
                b,
                format!("pointer past the metadata space map ({} blocks)", self.sm.nr_blocks()),
            ));
        }
        Ok(())
    }

    /// A fresh zeroed block of `kind`, count 1, writable in this transaction.
    pub fn new_block(&mut self, kind: BlockKind) -> Result<MetadataBlock> {
        self.new_block_with(kind, [0u8; 4096])
    }

    /// A metadata block free in the current and the committed space map: writing it cannot
    /// touch anything the last commit references.
    pub(crate) fn alloc_block(&mut self) -> Result<MetadataBlock> {
        let view = if self.canaries.on(Canary::ReuseFreedInTransaction) {
            FreeIn::CurrentOnly
        } else {
            FreeIn::BothViews
        };
        let b = self.sm.alloc(view)?;
        // The header's first invariant: a new or shadow block is free in the committed map.
        assert!(
            view == FreeIn::CurrentOnly || !self.sm.committed_used(b),
            "block {b} is allocated over the committed metadata"
        );
        Ok(MetadataBlock(b))
    }

    /// A new block holding `data` (filled by the caller): one cache insert, no separate
    /// modify (bulk loading writes thousands of these).
    pub fn new_block_with(&mut self, kind: BlockKind, data: Block) -> Result<MetadataBlock> {
        let b = self.alloc_block()?;
        self.bm.put(b.0, kind, data)?;
        self.shadowed.insert(b.0);
        Ok(b)
    }

    /// Copy-on-write: a writable version of `orig`, and whether `orig` was shared (then the
    /// caller must increment everything the copy points to).
    pub fn shadow(&mut self, orig: MetadataBlock, kind: BlockKind) -> Result<(MetadataBlock, bool)> {
        let shared = self.sm.count(orig.0)? > 1;
        if !shared && self.shadowed.contains(&orig.0) {
            return Ok((orig, false));
        }
        let data = *self.read(orig, kind)?;
        let b = self.alloc_block()?;
        self.bm.put(b.0, kind, data)?;
        self.shadowed.insert(b.0);
        self.dec(orig)?;
        Ok((b, shared))
    }

    /// Edits a block made writable in this transaction. Anything else would overwrite a block
    /// the committed metadata may reach; corrupt metadata can lead here, so it is an error.
    pub fn modify<R>(
        &self,
        b: MetadataBlock,
        kind: BlockKind,
        f: impl FnOnce(&mut Block) -> R,
    ) -> Result<R> {
        if !self.shadowed.contains(&b.0) {
            return Err(Error::structure(
                b.0,
                "block modified without being shadowed in this transaction",
            ));
        }
        self.bm.modify(b.0, kind, f)
    }

    pub fn inc(&mut self, b: MetadataBlock) -> Result<u32> {
        self.sm.inc(b.0)
    }

    /// Drops one reference; a block reaching zero leaves the cache unwritten.
    pub fn dec(&mut self, b: MetadataBlock) -> Result<u32> {
        let c = self.sm.dec(b.0)?;
        if c == 0 {
            self.shadowed.remove(&b.0);
            self.bm.discard(b.0);
        }
        Ok(c)
    }

    pub fn ref_count(&self, b: MetadataBlock) -> Result<u32> {
        self.sm.count(b.0)
    }

    /// First half of a commit once the metadata space map is written (its writer,
    /// `space_map::metadata_commit::pre_commit`, calls this): every dirty block, flush.
    /// Returns the metadata space-map root for the superblock.
    pub(crate) fn write_body(&mut self) -> Result<SmRoot> {
        if self.canaries.on(Canary::SuperblockBeforeNodes) {
            // Everything stays dirty: the superblock (block 0) goes out first at commit.
            return Ok(self.sm_root());
        }
        if self.canaries.on(Canary::NoFlushBeforeSuperblock) {
            self.bm.write_back()?;
            return Ok(self.sm_root());
        }
        self.bm.flush()?;
        Ok(self.sm_root())
    }

    pub fn sm_root(&self) -> SmRoot {
        SmRoot {
            nr_blocks: self.sm.nr_blocks(),
            nr_allocated: self.sm.nr_allocated,
            bitmap_root: self.sm.index_block,
            ref_count_root: self.sm.overflow_root,
        }
    }

    /// Second half: write the superblock and flush; the new state is then durable.
    pub fn commit(&mut self, sb: &Superblock) -> Result<()> {
        // The commit order of the header: every dirty block is out (and flushed) before the
        // superblock, except in the canaries that break exactly this.
        let broken = self.canaries.on(Canary::SuperblockBeforeNodes)
            || self.canaries.on(Canary::NoFlushBeforeSuperblock);
        assert!(
            broken || self.bm.dirty_count() == 0,
            "{} dirty blocks at the superblock write",
            self.bm.dirty_count()
        );
        self.bm.put(0, BlockKind::Superblock, sb.pack(0))?;
        self.bm.flush()?;
        self.shadowed.clear();
        self.sm.mark_committed();
        Ok(())
    }
}
