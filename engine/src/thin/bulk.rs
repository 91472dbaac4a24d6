//! Bulk loading of a freshly formatted pool, the seam `tools::restore` writes through: whole
//! mapping trees built bottom-up (`btree::build`) instead of one insert per mapping, data
//! references added bitmap by bitmap, then one commit. The kernel has no such call; the
//! tools build pools this way.
//!
//! Invariants:
//! - Only a pool with no devices and no data blocks can be loaded ([`Pool::bulk_load`]
//!   refuses any other, before any change).
//! - A load either commits whole ([`BulkLoad::finish`]) or leaves nothing: on an error the
//!   device's superblock is zeroed (it reads as unformatted) and the pool fails every later
//!   call, so no half-built pool is ever opened.
//! - The caller owns the data references: [`BulkLoad::add_device`] adds none, and
//!   [`BulkLoad::add_data_counts`] must add one per mapping loaded.

use super::records::DETAILS_VALUES;
use super::{Pool, PoolInner};
use crate::btree;
use crate::error::{Error, Result};
use crate::format::{DeviceDetails, Time, TransactionId};

/// A pool being loaded; see the module invariants.
pub struct BulkLoad<'a> {
    p: &'a mut PoolInner,
}

/// What the superblock records besides the trees, set by [`BulkLoad::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSuperblock {
    pub time: Time,
    pub trans_id: TransactionId,
    pub flags: u32,
    pub version: u32,
    pub uuid: [u8; 16],
}

impl Pool {
    /// Runs `load` on this pool, which must be fresh from format: no devices, no data
    /// blocks (any other is refused untouched). An error from `load` leaves the device
    /// unformatted and the pool failing every later call.
    pub fn bulk_load<E: From<Error>>(
        &self,
        load: impl FnOnce(&mut BulkLoad<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.control(|p| {
            if !p.is_fresh()? {
                return Err(E::from(Error::Invalid(
                    "bulk load needs a freshly formatted pool".into(),
                )));
            }
            p.in_service = true;
            let r = load(&mut BulkLoad { p: &mut *p });
            if r.is_err() {
                let _ = p.tm.bm.put(0, crate::format::BlockKind::Superblock, [0u8; 4096]);
                p.tm.bm.invalidate_all();
                let _ = p.tm.bm.with_device(|d| d.write(0, &[0u8; 4096]).and_then(|()| d.flush()));
                p.fail_io = true;
            }
            r
        })
    }
}

impl PoolInner {
    /// No data blocks and no device (the details tree has no first entry).
    fn is_fresh(&self) -> Result<bool> {
        if self.dsm.nr_blocks() != 0 {
            return Ok(false);
        }
        let mut any = false;
        let walked = btree::walk(&self.tm, self.details_root, DETAILS_VALUES, &mut |_, _| {
            any = true;
            Err(Error::Invalid("a device exists".into()))
        });
        match walked {
            Err(_) if any => Ok(false),
            r => r.map(|()| true),
        }
    }
}

impl BulkLoad<'_> {
    /// Sizes the data device (the space map grows to `nr_blocks`, all free).
    pub fn resize_data(&mut self, nr_blocks: u64) -> Result<()> {
        let p = &mut *self.p;
        p.dsm.resize(&mut p.tm, nr_blocks)
    }

    /// Loads device `dev` with `mappings` (virtual block, packed block-time), sorting them
    /// when they are not in order; its details record their count. Data references are the
    /// caller's ([`BulkLoad::add_data_counts`]).
    pub fn add_device(
        &mut self,
        dev: u64,
        transaction_id: TransactionId,
        creation_time: Time,
        snapshotted_time: Time,
        mappings: &mut [(u64, u64)],
    ) -> Result<()> {
        if !mappings.is_sorted_by_key(|m| m.0) {
            mappings.sort_unstable_by_key(|m| m.0);
        }
        let p = &mut *self.p;
        let root = btree::build(&mut p.tm, &p.values.mappings, mappings)?;
        p.mapping_root =
            btree::insert(&mut p.tm, &p.values, p.mapping_root, dev, &root.to_le_bytes())?.0;
        let details = DeviceDetails {
            mapped_blocks: mappings.len() as u64,
            transaction_id,
            creation_time,
            snapshotted_time,
        };
        p.details_root =
            btree::insert(&mut p.tm, DETAILS_VALUES, p.details_root, dev, &details.pack())?.0;
        Ok(())
    }

    /// Adds `count` references to each data block of `runs` (block, count), ascending.
    pub fn add_data_counts(&mut self, runs: &[(u64, u32)]) -> Result<()> {
        let p = &mut *self.p;
        p.dsm.add_counts(&mut p.tm, runs)
    }

    /// Sets the superblock's values and commits the load.
    pub fn finish(&mut self, sb: &BulkSuperblock) -> Result<()> {
        let p = &mut *self.p;
        p.time = sb.time;
        p.trans_id = sb.trans_id;
        p.flags = sb.flags;
        p.sb.version = sb.version;
        p.sb.uuid = sb.uuid;
        p.commit_now()
    }
}
