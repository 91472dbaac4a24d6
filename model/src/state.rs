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
//!
//! Every change also goes into the state's change log (a [`Change`] per key touched, see
//! [`PoolState::log`]). Two states that were equal differ at most where one's log says, so
//! [`PoolState::copy_changes`] makes them equal again by copying just those keys: this is
//! how the model commits and aborts without copying whole states (a copy shares leaves, and
//! every later write would then copy a leaf), and how the simulator verifies only what
//! changed. The log is bookkeeping, not state: equality ignores it.

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
    // The blocks mapped more than once over all listed devices, from one sort of every
    // mapped block (a sorted array is several times faster here than a counting map).
    let mut blocks: Vec<u64> =
        devices.values().flat_map(|d| d.mappings.values()).map(|m| m.data_block).collect();
    blocks.sort_unstable();
    let mut repeated: Vec<u64> = blocks.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    repeated.dedup();
    let row = |device: &Device| {
        let exclusive = device
            .mappings
            .values()
            .filter(|m| repeated.binary_search(&m.data_block).is_err())
            .count() as u64;
        LsRow {
            mapped: device.mapped_blocks(),
            exclusive,
            shared: device.mapped_blocks() - exclusive,
        }
    };
    devices.iter().map(|(&id, device)| (id, row(device))).collect()
}

/// One key of a [`PoolState`] that may have changed. Every field a change can touch has a
/// variant; the scalars (time, transaction id, data size) are always copied, so have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// A device was created (snapshots included) or deleted: the whole device.
    Device(u64),
    /// A device's details (its snapshotted time).
    Details(u64),
    /// One (device, vblock) mapping.
    Mapping(u64, u64),
    /// The logical count of a data block.
    Refs(u64),
    /// The caller's references on a data block.
    CallerRefs(u64),
    /// The held metadata snapshot.
    Held,
}

/// Everything a commit makes durable.
#[derive(Debug, Clone)]
pub struct PoolState {
    pub devices: Devices,
    pub time: u32,
    pub trans_id: u64,
    /// Data device size in blocks.
    pub data_blocks: u64,
    /// The held metadata snapshot: the device set as of its reserve's commit ([R6]).
    pub held: Option<Devices>,
    /// References owned by callers: allocated-not-inserted blocks and net explicit incs.
    /// A plain map: usually nearly empty (an alloc's reference moves into a mapping at once),
    /// so copying it is cheap, and a persistent map would build and drop a leaf per alloc.
    pub caller_refs: BTreeMap<u64, u64>,
    /// Logical count per data block (non-zero entries only); see the module invariants.
    refs: CowMap<u64>,
    /// Keys changed since the log was last drained (see the module documentation).
    log: Vec<Change>,
}

/// Equal states: everything but the change log.
impl PartialEq for PoolState {
    fn eq(&self, other: &Self) -> bool {
        self.devices == other.devices
            && self.time == other.time
            && self.trans_id == other.trans_id
            && self.data_blocks == other.data_blocks
            && self.held == other.held
            && self.caller_refs == other.caller_refs
            && self.refs == other.refs
    }
}

impl Eq for PoolState {}

impl PoolState {
    pub(crate) fn new(data_blocks: u64) -> PoolState {
        PoolState {
            devices: Devices::new(),
            time: 0,
            trans_id: 0,
            data_blocks,
            held: None,
            caller_refs: BTreeMap::new(),
            refs: CowMap::new(),
            log: Vec::new(),
        }
    }

    /// Keys changed since the log was last drained.
    pub fn log(&self) -> &[Change] {
        &self.log
    }

    pub(crate) fn drain_log(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.log)
    }

    /// Makes `self` equal to `source` given that the two were equal except at `changes`:
    /// copies those keys (whole devices before their mappings) and the scalars. Writes no log.
    /// (Copying entries beats sharing `source`'s leaves: a shared leaf is copied whole at its
    /// next write, and measured that costs more than it saves.)
    pub(crate) fn copy_changes(&mut self, source: &PoolState, changes: &[Change]) {
        self.time = source.time;
        self.trans_id = source.trans_id;
        self.data_blocks = source.data_blocks;
        for change in changes {
            if let Change::Device(id) = *change {
                match source.devices.get(&id) {
                    Some(device) => self.devices.insert(id, device.clone()),
                    None => self.devices.remove(&id),
                };
            }
        }
        for change in changes {
            match *change {
                Change::Device(_) => {}
                Change::Details(id) => {
                    if let (Some(to), Some(from)) =
                        (self.devices.get_mut(&id), source.devices.get(&id))
                    {
                        to.transaction_id = from.transaction_id;
                        to.creation_time = from.creation_time;
                        to.snapshotted_time = from.snapshotted_time;
                    }
                }
                Change::Mapping(id, vblock) => {
                    // A device copied whole above already has it (and a mapping of a device
                    // gone from `source` went with the device).
                    if let (Some(to), Some(from)) =
                        (self.devices.get_mut(&id), source.devices.get(&id))
                    {
                        match from.mappings.get(vblock) {
                            Some(&m) => to.mappings.insert(vblock, m),
                            None => to.mappings.remove(vblock),
                        };
                    }
                }
                Change::Refs(block) => self.refs.set_count(block, source.refs.count(block)),
                Change::CallerRefs(block) => {
                    self.caller_refs.set_count(block, source.caller_refs.count(block));
                }
                Change::Held => self.held = source.held.clone(),
            }
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
        self.caller_refs.count(block)
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
            self.add_ref(mapping.data_block);
        }
        self.devices.insert(id, device);
        self.log.push(Change::Device(id));
    }

    pub(crate) fn remove_device(&mut self, id: u64) -> Option<Device> {
        let device = self.devices.remove(&id)?;
        self.log.push(Change::Device(id));
        for mapping in device.mappings.values() {
            self.drop_ref(mapping.data_block);
        }
        Some(device)
    }

    /// A new snapshotted time for an existing device (create_snap of it).
    pub(crate) fn set_snapshotted_time(&mut self, id: u64, time: u32) {
        if let Some(device) = self.devices.get_mut(&id) {
            device.snapshotted_time = time;
            self.log.push(Change::Details(id));
        }
    }

    /// Stores a mapping (§3.14). Unless the vblock already maps `mapping.data_block` (then
    /// only its time changes), one of the caller's references on the block moves into the
    /// mapping — the block's logical count is unchanged — and an overwritten different block
    /// loses its reference. False, and no change, when a reference is needed and the caller
    /// holds none.
    pub(crate) fn insert_mapping(&mut self, id: u64, vblock: u64, mapping: Mapping) -> bool {
        let device = self.devices.get_mut(&id).expect("callers insert into existing devices");
        let old = device.mappings.get(vblock).map(|m| m.data_block);
        if old != Some(mapping.data_block) && self.caller_refs.count(mapping.data_block) == 0 {
            return false;
        }
        device.mappings.insert(vblock, mapping);
        self.log.push(Change::Mapping(id, vblock));
        if old != Some(mapping.data_block) {
            drop_count(&mut self.caller_refs, mapping.data_block);
            self.log.push(Change::CallerRefs(mapping.data_block));
            if let Some(old) = old {
                self.drop_ref(old);
            }
        }
        true
    }

    pub(crate) fn remove_mapping(&mut self, id: u64, vblock: u64) -> Option<Mapping> {
        let device = self.devices.get_mut(&id).expect("callers remove from existing devices");
        let old = device.mappings.remove(vblock)?;
        self.log.push(Change::Mapping(id, vblock));
        self.drop_ref(old.data_block);
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
        mappings(&self.held).into_iter().for_each(|b| self.drop_ref(b));
        mappings(&held).into_iter().for_each(|b| self.add_ref(b));
        self.held = held;
        self.log.push(Change::Held);
    }

    /// One more caller reference on `block` (alloc, inc).
    pub(crate) fn give_caller_ref(&mut self, block: u64) {
        add_count(&mut self.caller_refs, block);
        self.log.push(Change::CallerRefs(block));
        self.add_ref(block);
    }

    /// Takes back one caller reference (dec, or insert moving it into a mapping); false and
    /// no change when the caller holds none.
    pub(crate) fn take_caller_ref(&mut self, block: u64) -> bool {
        if self.caller_refs_of(block) == 0 {
            return false;
        }
        drop_count(&mut self.caller_refs, block);
        self.log.push(Change::CallerRefs(block));
        self.drop_ref(block);
        true
    }

    fn add_ref(&mut self, block: u64) {
        add_count(&mut self.refs, block);
        self.log.push(Change::Refs(block));
    }

    fn drop_ref(&mut self, block: u64) {
        drop_count(&mut self.refs, block);
        self.log.push(Change::Refs(block));
    }

    /// The logical counts recomputed from scratch.
    pub fn recount(&self) -> CowMap<u64> {
        let mut refs: CowMap<u64> = self.caller_refs.iter().map(|(&b, &n)| (b, n)).collect();
        let held = self.held.iter().flat_map(|h| h.values());
        for mapping in self.devices.values().chain(held).flat_map(|d| d.mappings.values()) {
            add_count(&mut refs, mapping.data_block);
        }
        refs
    }

    /// The module invariants, as a readable error.
    pub fn check(&self) -> Result<(), String> {
        if self.time >= TIME_LIMIT {
            return Err(format!("time {} does not fit 24 bits", self.time));
        }
        if self.caller_refs.values().any(|&c| c == 0) {
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

/// A count per block, absent = 0 (zero counts are never stored).
trait Counts {
    fn count(&self, block: u64) -> u64;
    fn set_count(&mut self, block: u64, count: u64);
}

impl Counts for CowMap<u64> {
    fn count(&self, block: u64) -> u64 {
        self.get(block).copied().unwrap_or(0)
    }
    fn set_count(&mut self, block: u64, count: u64) {
        match count {
            0 => self.remove(block),
            n => self.insert(block, n),
        };
    }
}

impl Counts for BTreeMap<u64, u64> {
    fn count(&self, block: u64) -> u64 {
        self.get(&block).copied().unwrap_or(0)
    }
    fn set_count(&mut self, block: u64, count: u64) {
        match count {
            0 => self.remove(&block),
            n => self.insert(block, n),
        };
    }
}

// One lookup and one update each.
fn add_count(counts: &mut impl Counts, block: u64) {
    counts.set_count(block, counts.count(block) + 1);
}

fn drop_count(counts: &mut impl Counts, block: u64) {
    let count = counts.count(block);
    assert!(count > 0, "a dropped reference was counted when taken");
    counts.set_count(block, count - 1);
}
