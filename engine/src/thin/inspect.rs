//! Read-only views of the whole current state, for oracles, dumps and listings.

use super::records::DETAILS_VALUES;
use super::{Pool, PoolInner};
use crate::btree::{self, ReadMode};
use crate::error::{Error, Result};
use crate::format::checksum::BlockKind;
use crate::format::superblock::Superblock;
use crate::format::{BlockTime, DeviceDetails};
use crate::format::{MetadataBlock, ThinId, Time, TransactionId};
use std::collections::BTreeMap;

/// Pool-wide values of the current transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSummary {
    pub time: Time,
    pub transaction_id: TransactionId,
    pub flags: u32,
    pub data_block_size: u32,
    pub data_nr_blocks: u64,
    pub metadata_nr_blocks: u64,
    /// Where the held metadata snapshot is; block 0 (the superblock's place) when none is.
    pub held_root: MetadataBlock,
}

impl PoolInner {
    fn devices_in(
        &self,
        details_root: MetadataBlock,
        with_records: bool,
    ) -> Result<BTreeMap<u64, DeviceDetails>> {
        let mut out = BTreeMap::new();
        btree::walk(&self.tm, details_root, DETAILS_VALUES, &mut |id, v| {
            out.insert(id, DeviceDetails::unpack(v));
            Ok(())
        })?;
        if with_records {
            for (id, r) in &self.records {
                out.insert(*id, r.details);
            }
        }
        Ok(out)
    }

    fn mappings_in(&self, top_root: MetadataBlock, id: u64) -> Result<Vec<(u64, BlockTime)>> {
        let root = btree::lookup_u64(&self.tm, top_root, &self.values, id, ReadMode::Blocking)?
            .map(MetadataBlock)
            .ok_or_else(|| Error::NoData(format!("no mapping tree for device {id}")))?;
        let mut out = Vec::new();
        btree::walk(&self.tm, root, &self.values.mappings, &mut |k, v| {
            out.push((k, BlockTime::unpack(btree::le(v))));
            Ok(())
        })?;
        Ok(out)
    }
}

impl Pool {
    pub fn summary(&self) -> Result<PoolSummary> {
        self.query(|p| {
            Ok(PoolSummary {
                time: p.time,
                transaction_id: p.trans_id,
                flags: p.flags,
                data_block_size: p.sb.data_block_size,
                data_nr_blocks: p.dsm.nr_blocks(),
                metadata_nr_blocks: p.tm.sm.nr_blocks(),
                held_root: p.held_root,
            })
        })
    }

    /// Every device of the current state with its details (uncommitted changes included).
    pub fn devices(&self) -> Result<BTreeMap<u64, DeviceDetails>> {
        self.query(|p| p.devices_in(p.details_root, true))
    }

    /// Every mapping of device `id` in the current state, ascending.
    pub fn mappings(&self, id: ThinId) -> Result<Vec<(u64, BlockTime)>> {
        self.query(|p| p.mappings_in(p.mapping_root, id.0))
    }

    /// The mappings of device `id` at each of `vblocks` in the current state (`None` where
    /// unmapped): one top-level lookup, then one descent for all of them (each node read
    /// once when `vblocks` ascend). For oracles that verify only what changed.
    pub fn lookup_mappings(&self, id: ThinId, vblocks: &[u64]) -> Result<Vec<Option<BlockTime>>> {
        let id = id.0;
        self.query(|p| {
            let root = p.device_root(id, ReadMode::Blocking)?;
            let found = btree::lookup_many_u64(
                &p.tm,
                root,
                &p.values.mappings,
                vblocks,
                ReadMode::Blocking,
            )?;
            Ok(found.into_iter().map(|f| f.map(BlockTime::unpack)).collect())
        })
    }

    /// The held metadata snapshot's devices and mappings (None when no snapshot is held).
    #[allow(clippy::type_complexity)]
    pub fn held_snapshot(
        &self,
    ) -> Result<Option<BTreeMap<u64, (DeviceDetails, Vec<(u64, BlockTime)>)>>> {
        self.query(|p| {
            if p.held_root.0 == 0 {
                return Ok(None);
            }
            let raw = p.tm.read(p.held_root, BlockKind::Superblock)?;
            let copy = Superblock::unpack_unchecked(&raw);
            let mut out = BTreeMap::new();
            for (id, d) in p.devices_in(copy.device_details_root, false)? {
                out.insert(id, (d, p.mappings_in(copy.data_mapping_root, id)?));
            }
            Ok(Some(out))
        })
    }

    /// Metadata blocks in use now (free + used == size is an oracle invariant).
    pub fn metadata_blocks_used(&self) -> Result<u64> {
        self.query(|p| Ok(p.tm.sm.nr_allocated))
    }

    /// Metadata blocks whose count is not zero, counted one by one (the space map keeps the
    /// same number incrementally; an oracle compares the two).
    pub fn metadata_blocks_counted(&self) -> Result<u64> {
        self.query(|p| Ok(p.tm.sm.nonzero_counts()))
    }

    /// Block-manager I/O counters.
    pub fn io_stats(&self) -> crate::block_manager::BmStats {
        self.read().tm.bm.stats()
    }
}
