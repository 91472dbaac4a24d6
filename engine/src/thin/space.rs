//! Space: data-block allocation and explicit references, free counts, sizes and resizing.

use super::Pool;
use crate::error::{Error, Result};
use crate::format::DataBlock;
use crate::limits::MAX_METADATA_BLOCKS;

impl Pool {
    /// A data block free now and at the last commit ([H13]), with one reference for the caller.
    pub fn alloc_data_block(&self) -> Result<DataBlock> {
        self.mutate(|p| p.dsm.alloc(&mut p.tm)).map(DataBlock)
    }

    fn check_data_range(nr_blocks: u64, begin: u64, end: u64) -> Result<()> {
        if begin > end || end > nr_blocks {
            return Err(Error::Invalid(format!(
                "data range [{begin}, {end}) outside [0, {nr_blocks})"
            )));
        }
        Ok(())
    }

    /// Adds one reference to every data block in `[begin, end)`.
    pub fn inc_data_range(&self, begin: DataBlock, end: DataBlock) -> Result<()> {
        let (begin, end) = (begin.0, end.0);
        self.mutate(|p| {
            Self::check_data_range(p.dsm.nr_blocks(), begin, end)?;
            for b in begin..end {
                p.dsm.inc(&mut p.tm, b)?;
            }
            Ok(())
        })
    }

    /// Drops one reference from every block in `[begin, end)`; EINVAL, with no effect, if any
    /// of them is free ([R1]).
    pub fn dec_data_range(&self, begin: DataBlock, end: DataBlock) -> Result<()> {
        let (begin, end) = (begin.0, end.0);
        self.mutate(|p| {
            Self::check_data_range(p.dsm.nr_blocks(), begin, end)?;
            for b in begin..end {
                if p.dsm.count(&mut p.tm, b)? == 0 {
                    return Err(Error::Invalid(format!("data block {b} is already free")));
                }
            }
            for b in begin..end {
                p.dsm.dec(&mut p.tm, b)?;
            }
            Ok(())
        })
    }

    /// Whether data block `b` has more than one reference now (lazy: see spec §4.1).
    pub fn block_is_shared(&self, b: DataBlock) -> Result<bool> {
        let b = b.0;
        self.query_mut(|p| Ok(p.dsm.count(&mut p.tm, b)? > 1))
    }

    /// The reference counts of many data blocks now, under one lock (for the simulator's
    /// verification of what changed); `out[i]` is `blocks[i]`'s.
    pub fn data_block_counts(&self, blocks: &[u64]) -> Result<Vec<u32>> {
        self.query_mut(|p| blocks.iter().map(|&b| p.dsm.count(&mut p.tm, b)).collect())
    }

    /// The reference count of data block `b` now (for checkers and the simulator).
    pub fn data_block_count(&self, b: u64) -> Result<u32> {
        self.query_mut(|p| p.dsm.count(&mut p.tm, b))
    }

    /// Committed data size minus blocks in use now ([R5]: saturates at 0).
    pub fn get_free_block_count(&self) -> Result<u64> {
        self.query(|p| Ok(p.dsm.free_count()))
    }

    /// Free metadata blocks as the kernel reports them (reserve subtracted).
    pub fn get_free_metadata_block_count(&self) -> Result<u64> {
        self.query(|p| Ok(p.tm.sm.reported_free()))
    }

    /// Metadata blocks counted free before the reserve (what the threshold watches).
    pub fn get_raw_free_metadata_block_count(&self) -> Result<u64> {
        self.query(|p| Ok(p.tm.sm.raw_free()))
    }

    /// The data device size as last committed.
    pub fn get_data_dev_size(&self) -> Result<u64> {
        self.query(|p| Ok(p.dsm.committed_nr_blocks()))
    }

    /// The metadata device size in blocks, including an uncommitted resize.
    pub fn get_metadata_dev_size(&self) -> Result<u64> {
        self.query(|p| Ok(p.tm.sm.nr_blocks()))
    }

    /// Resizes the data device ([H5]): equal is a no-op, growth is relative to the current
    /// size ([R7]), a shrink that would drop a block in use now or at the last commit is
    /// ENOSPC with no effect.
    pub fn resize_data_dev(&self, new_nr_blocks: u64) -> Result<()> {
        self.mutate(|p| {
            if new_nr_blocks == p.dsm.nr_blocks() {
                return Ok(());
            }
            p.dsm.resize(&mut p.tm, new_nr_blocks)
        })
    }

    /// Resizes the metadata space map (same rules; at most the device and the format's cap).
    pub fn resize_metadata_dev(&self, new_nr_blocks: u64) -> Result<()> {
        self.mutate(|p| {
            if new_nr_blocks == p.tm.sm.nr_blocks() {
                return Ok(());
            }
            let dev_blocks = p.tm.bm.nr_blocks();
            if new_nr_blocks > dev_blocks.min(MAX_METADATA_BLOCKS) {
                return Err(Error::Invalid(format!(
                    "metadata size {new_nr_blocks} exceeds the device ({dev_blocks} blocks)"
                )));
            }
            p.tm.sm.resize(new_nr_blocks)
        })
    }
}
