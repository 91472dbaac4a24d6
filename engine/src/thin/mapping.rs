//! Per-device mapping calls: lookups, ranges, insert and remove.

use super::records::ThinHandle;
use super::{Lookup, MappedRange, Pool, PoolInner};
use crate::btree::{self, ReadMode};
use crate::error::{Error, Result};
use crate::format::BlockTime;
use crate::format::{DataBlock, VBlock};

impl PoolInner {
    fn lookup_mapping(&self, h: &ThinHandle, vblock: u64, mode: ReadMode) -> Result<Lookup> {
        let rec = self.live(h)?;
        let root = self.device_root(h.id, mode)?;
        let v = btree::lookup_u64(&self.tm, root, &self.values.mappings, vblock, mode)?
            .ok_or_else(|| Error::NoData(format!("device {} block {vblock} is unmapped", h.id)))?;
        let bt = BlockTime::unpack(v);
        Ok(Lookup { data_block: bt.data_block, shared: rec.details.snapshotted_time > bt.time })
    }
}

impl Pool {
    /// Looks up `vblock`. With `can_issue_io` false, a block not in the cache gives
    /// EWOULDBLOCK ([H4]: the contract follows the kernel's code here).
    pub fn find_block(&self, h: &ThinHandle, vblock: VBlock, can_issue_io: bool) -> Result<Lookup> {
        let vblock = vblock.0;
        let mode = if can_issue_io { ReadMode::Blocking } else { ReadMode::CacheOnly };
        self.query(|p| p.lookup_mapping(h, vblock, mode))
    }

    /// The first run of mappings in `[begin, end)` with consecutive data blocks and one
    /// `shared` flag ([H12]: ENODATA when there is none, including begin ≥ end).
    pub fn find_mapped_range(
        &self,
        h: &ThinHandle,
        begin: VBlock,
        end: VBlock,
    ) -> Result<MappedRange> {
        let (begin, end) = (begin.0, end.0);
        self.query(|p| {
            let rec = p.live(h)?;
            if end <= begin {
                return Err(Error::NoData("empty range".into()));
            }
            let root = p.device_root(h.id, ReadMode::Blocking)?;
            let (v0, val) = btree::lookup_ge(&p.tm, root, &p.values.mappings, begin)?
                .filter(|(k, _)| *k < end)
                .ok_or_else(|| Error::NoData(format!("no mapping in [{begin}, {end})")))?;
            let first = BlockTime::unpack(btree::le(&val));
            let snap = rec.details.snapshotted_time;
            let shared = snap > first.time;
            let mut v = v0 + 1;
            while v < end {
                match btree::lookup_u64(&p.tm, root, &p.values.mappings, v, ReadMode::Blocking)? {
                    Some(x) => {
                        let bt = BlockTime::unpack(x);
                        if bt.data_block.0 != first.data_block.0 + (v - v0)
                            || (snap > bt.time) != shared
                        {
                            break;
                        }
                    }
                    None => break,
                }
                v += 1;
            }
            Ok(MappedRange {
                thin_begin: VBlock(v0),
                thin_end: VBlock(v),
                pool_begin: first.data_block,
                maybe_shared: shared,
            })
        })
    }

    /// Maps `vblock` to `data_block` at the current time. The caller's reference to the data
    /// block (from alloc or inc) moves into the mapping; a different block it replaces loses one.
    pub fn insert_block(
        &self,
        h: &ThinHandle,
        vblock: VBlock,
        data_block: DataBlock,
    ) -> Result<()> {
        let vblock = vblock.0;
        self.mutate(|p| {
            p.live(h)?;
            if data_block.0 >= p.dsm.nr_blocks() {
                return Err(Error::Invalid(format!(
                    "data block {data_block} beyond the data device"
                )));
            }
            let value = BlockTime { data_block, time: p.time }.pack().ok_or_else(|| {
                Error::Invalid(format!("data block {data_block} does not fit 40 bits"))
            })?;
            let root = p.device_root_for_write(h.id)?;
            let (new_root, new_key) =
                btree::insert(&mut p.tm, &p.values.mappings, root, vblock, &value.to_le_bytes())?;
            if new_root != root {
                p.set_device_root(h.id, new_root)?;
            }
            p.apply_data_ops()?;
            let r = p.live_mut(h)?;
            if new_key {
                r.details.mapped_blocks += 1;
            }
            r.changed = true;
            Ok(())
        })
    }

    /// Unmaps `vblock` (ENODATA, with no effect, if it is not mapped: [R1]).
    pub fn remove_block(&self, h: &ThinHandle, vblock: VBlock) -> Result<()> {
        let vblock = vblock.0;
        self.mutate(|p| {
            p.live(h)?;
            p.live(h)?;
            if p.lookup_mapping(h, vblock, ReadMode::Blocking)
                .is_err_and(|e| e.errno() == crate::error::Errno::ENODATA)
            {
                return Err(Error::NoData(format!("device {} block {vblock} is unmapped", h.id)));
            }
            let root = p.device_root_for_write(h.id)?;
            let (new_root, removed) = btree::remove(&mut p.tm, &p.values.mappings, root, vblock)?;
            if removed.is_none() {
                return Err(Error::NoData(format!("device {} block {vblock} is unmapped", h.id)));
            }
            if new_root != root {
                p.set_device_root(h.id, new_root)?;
            }
            p.apply_data_ops()?;
            let r = p.live_mut(h)?;
            r.details.mapped_blocks = r.details.mapped_blocks.saturating_sub(1);
            r.changed = true;
            Ok(())
        })
    }

    /// Unmaps every block in `[begin, end)`; the device counts as changed even if none was.
    pub fn remove_range(&self, h: &ThinHandle, begin: VBlock, end: VBlock) -> Result<()> {
        let (begin, end) = (begin.0, end.0);
        self.mutate(|p| {
            p.live(h)?;
            let root = p.device_root_for_write(h.id)?;
            let (new_root, n) =
                btree::remove_range(&mut p.tm, &p.values.mappings, root, begin, end)?;
            if new_root != root {
                p.set_device_root(h.id, new_root)?;
            }
            p.apply_data_ops()?;
            let r = p.live_mut(h)?;
            r.details.mapped_blocks = r.details.mapped_blocks.saturating_sub(n);
            r.changed = true;
            Ok(())
        })
    }

    /// The highest mapped virtual block, None for an empty device.
    pub fn get_highest_mapped_block(&self, h: &ThinHandle) -> Result<Option<VBlock>> {
        self.query(|p| {
            p.live(h)?;
            let root = p.device_root(h.id, ReadMode::Blocking)?;
            Ok(btree::highest_key(&p.tm, root, &p.values.mappings)?.map(VBlock))
        })
    }

    pub fn get_mapped_count(&self, h: &ThinHandle) -> Result<u64> {
        self.query(|p| Ok(p.live(h)?.details.mapped_blocks))
    }

    /// Whether the device changed since the last commit (false for a dead handle).
    pub fn thin_changed_this_transaction(&self, h: &ThinHandle) -> bool {
        self.read().live(h).map(|r| r.changed).unwrap_or(false)
    }

    /// Whether the last abort threw away changes of this device (false for a dead handle).
    pub fn aborted_changes(&self, h: &ThinHandle) -> bool {
        self.read().live(h).map(|r| r.aborted_with_changes).unwrap_or(false)
    }

    /// Reads ahead blocks that cache-only lookups missed (never changes an answer).
    pub fn issue_prefetches(&self) {
        let p = self.read();
        if !p.fail_io {
            p.tm.bm.issue_prefetches(crate::format::BlockKind::Node);
        }
    }
}
