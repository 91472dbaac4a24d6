//! The transactional part of the pool: exactly what a commit makes durable and what an abort
//! or a crash brings back (spec §2.1, §8).
//!
//! Invariants of a [`PoolState`] (checked by [`PoolState::check`]):
//! - `refs` equals a from-scratch recount: for every data block, the number of (device,
//!   vblock) mappings to it, plus the held snapshot's mappings to it, plus the caller's
//!   references (spec §8 item 8). Only non-zero counts are stored, in `refs` and in
//!   `caller_refs` alike, so `refs.len()` is the number of blocks in use.
//! - Every counted block is below `data_blocks`.
//! - `time < 2^24` ([R8]); for every device, live or held,
//!   `creation_time <= snapshotted_time <= time` and every mapping's time is `<= time`.
//!
//! `refs` is kept up to date incrementally so lookups stay cheap; all changes to mappings,
//! the held snapshot and caller references go through the methods below, which is what keeps
//! it equal to the recount.

use std::collections::BTreeMap;

use crate::cow_map::CowMap;

/// First time value a mapping's 24-bit stamp cannot hold ([R8]).
pub const TIME_LIMIT: u32 = 1 << 24;

/// One mapping: where a virtual block lives and when it was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapping {
    pub data_block: u64,
    /// The pool time at insert.
    pub time: u32,
}

/// A thin device's mappings and details. `mapped_blocks` is derived, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// vblock → mapping.
    pub mappings: CowMap<Mapping>,
    /// The pool's transaction id when the device was created (§3.8).
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
}

/// Device id → device. A plain map: there are few devices, and cloning one is O(1).
pub type Devices = BTreeMap<u64, Device>;

impl Device {
    /// An empty device stamped with the pool's current transaction id and time (§3.3).
    pub fn new(transaction_id: u64, time: u32) -> Device {
        Device {
            mappings: CowMap::new(),
            transaction_id,
            creation_time: time,
            snapshotted_time: time,
        }
    }

    /// The details' `mapped_blocks`: always the number of mappings (spec §8 item 6).
    pub fn mapped_blocks(&self) -> u64 {
        self.mappings.len() as u64
    }

    /// find_block's time-stamp heuristic (§3.11): older than the last snapshot taken of (or
    /// as) this device.
    pub fn is_shared(&self, mapping: &Mapping) -> bool {
        self.snapshotted_time > mapping.time
    }
}

/// One `thin_ls` row (dm-thin-format.md §10.4), in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsRow {
    pub mapped: u64,
    /// Mappings whose data block no other (device, vblock) pair of the listed devices maps.
    pub exclusive: u64,
    pub shared: u64,
}

/// `thin_ls` counts over one set of devices (the live pool, or a held snapshot with `-m`).
/// Caller references and the held snapshot do not count: thin_ls only walks the listed trees.
pub fn ls(devices: &Devices) -> BTreeMap<u64, LsRow> {
    let mut targets: BTreeMap<u64, u64> = BTreeMap::new();
    for mapping in devices.values().flat_map(|d| d.mappings.values()) {
        *targets.entry(mapping.data_block).or_insert(0) += 1;
    }
    let row = |device: &Device| {
        let exclusive =
            device.mappings.values().filter(|m| targets[&m.data_block] == 1).count() as u64;
        LsRow {
            mapped: device.mapped_blocks(),
            exclusive,
            shared: device.mapped_blocks() - exclusive,
        }
    };
    devices.iter().map(|(&id, device)| (id, row(device))).collect()
}

/// Everything a commit makes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    pub devices: Devices,
    pub time: u32,
    pub trans_id: u64,
    /// Data device size in blocks.
    pub data_blocks: u64,
    /// The held metadata snapshot: the device set as of its reserve's commit ([R6]).
    pub held: Option<Devices>,
    /// References owned by callers: allocated-not-inserted blocks and net explicit incs.
    pub caller_refs: CowMap<u64>,
    /// Logical count per data block (non-zero entries only); see the module invariants.
    refs: CowMap<u64>,
}

impl PoolState {
    pub(crate) fn new(data_blocks: u64) -> PoolState {
        PoolState {
            devices: Devices::new(),
            time: 0,
            trans_id: 0,
            data_blocks,
            held: None,
            caller_refs: CowMap::new(),
            refs: CowMap::new(),
        }
    }

    /// Logical count of every data block in use (spec §8 item 8); absent = 0.
    pub fn logical_refs(&self) -> &CowMap<u64> {
        &self.refs
    }

    /// Logical count of one block.
    pub fn refs_of(&self, block: u64) -> u64 {
        self.refs.get(block).copied().unwrap_or(0)
    }

    /// References the caller holds on one block.
    pub fn caller_refs_of(&self, block: u64) -> u64 {
        self.caller_refs.get(block).copied().unwrap_or(0)
    }

    /// The fewest space-map references block `b` can have, given that sharing is lazy (§4.1):
    /// a shared leaf counts its entries once, but within one tree every entry is its own, and
    /// caller references are counted directly. So: caller refs + the most mappings to `b` in
    /// any single tree (live device or held-snapshot device).
    pub fn physical_refs_lower_bound(&self, block: u64) -> u64 {
        let held = self.held.iter().flat_map(|h| h.values());
        let in_one_tree =
            |d: &Device| d.mappings.values().filter(|m| m.data_block == block).count();
        let most = self.devices.values().chain(held).map(in_one_tree).max().unwrap_or(0);
        self.caller_refs_of(block) + most as u64
    }

    pub(crate) fn add_device(&mut self, id: u64, device: Device) {
        for mapping in device.mappings.values() {
            add_ref(&mut self.refs, mapping.data_block);
        }
        self.devices.insert(id, device);
    }

    pub(crate) fn remove_device(&mut self, id: u64) -> Option<Device> {
        let device = self.devices.remove(&id)?;
        for mapping in device.mappings.values() {
            drop_ref(&mut self.refs, mapping.data_block);
        }
        Some(device)
    }

    /// Stores a mapping (§3.14). Unless the vblock already maps `mapping.data_block` (then
    /// only its time changes), one of the caller's references on the block moves into the
    /// mapping — the block's logical count is unchanged — and an overwritten different block
    /// loses its reference. False, and no change, when a reference is needed and the caller
    /// holds none.
    pub(crate) fn insert_mapping(&mut self, id: u64, vblock: u64, mapping: Mapping) -> bool {
        let device = self.devices.get_mut(&id).expect("callers insert into existing devices");
        let old = device.mappings.get(vblock).map(|m| m.data_block);
        if old != Some(mapping.data_block) {
            if self.caller_refs.get(mapping.data_block).is_none() {
                return false;
            }
            drop_ref(&mut self.caller_refs, mapping.data_block);
            if let Some(old) = old {
                drop_ref(&mut self.refs, old);
            }
        }
        device.mappings.insert(vblock, mapping);
        true
    }

    pub(crate) fn remove_mapping(&mut self, id: u64, vblock: u64) -> Option<Mapping> {
        let device = self.devices.get_mut(&id).expect("callers remove from existing devices");
        let old = device.mappings.remove(vblock)?;
        drop_ref(&mut self.refs, old.data_block);
        Some(old)
    }

    /// Replaces the held snapshot; its mappings keep their blocks referenced (§3.9).
    pub(crate) fn set_held(&mut self, held: Option<Devices>) {
        let mappings = |h: &Option<Devices>| -> Vec<u64> {
            h.iter()
                .flat_map(|d| d.values())
                .flat_map(|d| d.mappings.values())
                .map(|m| m.data_block)
                .collect()
        };
        mappings(&self.held).into_iter().for_each(|b| drop_ref(&mut self.refs, b));
        mappings(&held).into_iter().for_each(|b| add_ref(&mut self.refs, b));
        self.held = held;
    }

    /// One more caller reference on `block` (alloc, inc).
    pub(crate) fn give_caller_ref(&mut self, block: u64) {
        add_ref(&mut self.caller_refs, block);
        add_ref(&mut self.refs, block);
    }

    /// Takes back one caller reference (dec, or insert moving it into a mapping); false and
    /// no change when the caller holds none.
    pub(crate) fn take_caller_ref(&mut self, block: u64) -> bool {
        if self.caller_refs_of(block) == 0 {
            return false;
        }
        drop_ref(&mut self.caller_refs, block);
        drop_ref(&mut self.refs, block);
        true
    }

    /// The logical counts recomputed from scratch.
    pub fn recount(&self) -> CowMap<u64> {
        let mut refs = self.caller_refs.clone();
        let held = self.held.iter().flat_map(|h| h.values());
        for mapping in self.devices.values().chain(held).flat_map(|d| d.mappings.values()) {
            add_ref(&mut refs, mapping.data_block);
        }
        refs
    }

    /// The module invariants, as a readable error.
    pub fn check(&self) -> Result<(), String> {
        if self.time >= TIME_LIMIT {
            return Err(format!("time {} does not fit 24 bits", self.time));
        }
        if self.caller_refs.values().any(|c| c == 0) {
            return Err("a zero caller-reference entry is stored".into());
        }
        let recount = self.recount();
        if self.refs != recount {
            return Err(format!("logical refs {:?} != recount {:?}", self.refs, recount));
        }
        if let Some((block, _)) = self.refs.range(self.data_blocks..).next() {
            return Err(format!("block {block} in use beyond the size {}", self.data_blocks));
        }
        let held = self.held.iter().flat_map(|h| h.iter());
        for (id, device) in self.devices.iter().chain(held) {
            self.check_times(*id, device)?;
        }
        Ok(())
    }

    fn check_times(&self, id: u64, device: &Device) -> Result<(), String> {
        if device.creation_time > device.snapshotted_time || device.snapshotted_time > self.time {
            return Err(format!(
                "device {id}: creation_time {} <= snapshotted_time {} <= time {} broken",
                device.creation_time, device.snapshotted_time, self.time
            ));
        }
        match device.mappings.iter().find(|(_, m)| m.time > self.time) {
            Some((vblock, m)) => Err(format!(
                "device {id} vblock {vblock}: time {} after pool time {}",
                m.time, self.time
            )),
            None => Ok(()),
        }
    }
}

// One lookup and one update each.
fn add_ref(counts: &mut CowMap<u64>, block: u64) {
    let count = counts.get(block).copied().unwrap_or(0);
    counts.insert(block, count + 1);
}

fn drop_ref(counts: &mut CowMap<u64>, block: u64) {
    match counts.get(block).copied() {
        Some(1) => {
            counts.remove(block);
        }
        Some(count) => {
            counts.insert(block, count - 1);
        }
        None => panic!("a dropped reference was counted when taken"),
    }
}
