//! In-core device records and the handles that name them.
//!
//! Invariants:
//! - `records` holds every device touched in this transaction (created, snapshotted, opened,
//!   changed); for any other existing device the details tree is authoritative.
//! - A handle is live iff a record with its id and generation exists and is open; a handle
//!   whose device was deleted or rolled back is dead ([H2]) and stays dead even if the id is
//!   reused (the generation differs).

use super::PoolInner;
use crate::btree::{self, ReadMode};
use crate::error::{Error, Result};
use crate::format::details::DETAILS_BYTES;
use crate::format::{DeviceDetails, MetadataBlock};

pub(crate) const DETAILS_VALUES: btree::ValueKind<'static> =
    &btree::Plain { size: DETAILS_BYTES, tree: crate::events::Tree::Details };

/// A thin device opened with `open_thin_device`. Close it with `close_thin_device`.
#[derive(Debug, PartialEq, Eq)]
pub struct ThinHandle {
    pub(crate) id: u64,
    pub(crate) generation: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub generation: u64,
    pub open: bool,
    pub changed: bool,
    pub aborted_with_changes: bool,
    pub details: DeviceDetails,
}

impl PoolInner {
    pub(crate) fn committed_details(&self, id: u64) -> Result<Option<DeviceDetails>> {
        let v = btree::lookup(&self.tm, self.details_root, DETAILS_VALUES, id, ReadMode::Blocking)?;
        Ok(v.map(|v| DeviceDetails::unpack(&v)))
    }

    /// Whether `id` exists in the current state ([R3]).
    pub(crate) fn exists(&self, id: u64) -> Result<bool> {
        Ok(self.records.contains_key(&id) || self.committed_details(id)?.is_some())
    }

    /// The device's details as of now (record first, else the details tree).
    pub(crate) fn details(&self, id: u64) -> Result<Option<DeviceDetails>> {
        match self.records.get(&id) {
            Some(r) => Ok(Some(r.details)),
            None => self.committed_details(id),
        }
    }

    /// The record for `id`, loaded from the details tree if needed (ENODATA if absent).
    pub(crate) fn record_mut(&mut self, id: u64) -> Result<&mut Record> {
        if !self.records.contains_key(&id) {
            let details = self
                .committed_details(id)?
                .ok_or_else(|| Error::NoData(format!("no thin device {id}")))?;
            let generation = self.new_generation();
            self.records.insert(
                id,
                Record {
                    generation,
                    open: false,
                    changed: false,
                    aborted_with_changes: false,
                    details,
                },
            );
        }
        Ok(self.records.get_mut(&id).expect("inserted above"))
    }

    /// Records a device created in this transaction (closed, changed).
    pub(crate) fn add_new_record(&mut self, id: u64, details: DeviceDetails) {
        let generation = self.new_generation();
        let r =
            Record { generation, open: false, changed: true, aborted_with_changes: false, details };
        self.records.insert(id, r);
    }

    pub(crate) fn new_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// The live record a handle names: ENODATA for a dead handle, EINVAL for a closed one.
    pub(crate) fn live(&self, h: &ThinHandle) -> Result<&Record> {
        match self.records.get(&h.id) {
            Some(r) if r.generation == h.generation && r.open => Ok(r),
            _ if self.dead.contains(&h.generation) => {
                Err(Error::NoData(format!("thin device {} was deleted", h.id)))
            }
            _ => Err(Error::Invalid(format!("handle for thin device {} is not open", h.id))),
        }
    }

    pub(crate) fn live_mut(&mut self, h: &ThinHandle) -> Result<&mut Record> {
        self.live(h)?;
        Ok(self.records.get_mut(&h.id).expect("checked live"))
    }

    /// The root of the device's mapping subtree.
    pub(crate) fn device_root(&self, id: u64, mode: ReadMode) -> Result<MetadataBlock> {
        btree::lookup_u64(&self.tm, self.mapping_root, &self.values, id, mode)?
            .map(MetadataBlock)
            .ok_or_else(|| Error::NoData(format!("thin device {id} has no mapping tree")))
    }

    /// The root of the device's mapping subtree, ready to be modified: the top-level path to
    /// it is shadowed first, so sharing held above it (a held metadata snapshot sharing the
    /// top level) is pushed down into the subtree's count before the subtree is copied.
    pub(crate) fn device_root_for_write(&mut self, id: u64) -> Result<MetadataBlock> {
        let root = self.device_root(id, ReadMode::Blocking)?;
        self.set_device_root(id, root)?;
        Ok(root)
    }

    /// Adds a new top-level entry for `id`; the caller's reference to `root` moves into it.
    pub(crate) fn add_device_root(&mut self, id: u64, root: MetadataBlock) -> Result<()> {
        let bytes = root.to_le_bytes();
        self.mapping_root =
            btree::insert(&mut self.tm, &self.values, self.mapping_root, id, &bytes)?.0;
        Ok(())
    }

    /// Points the top-level entry of `id` at `root` (its old root's reference already moved).
    pub(crate) fn set_device_root(&mut self, id: u64, root: MetadataBlock) -> Result<()> {
        let (top, _) =
            btree::replace(&mut self.tm, &self.values, self.mapping_root, id, &root.to_le_bytes())?;
        self.mapping_root = top;
        Ok(())
    }
}
