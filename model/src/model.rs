//! The pool model: the Contract semantics of every call of spec §3 over two [`PoolState`]s,
//! `committed` and `current`, plus the in-core flags that are not transactional.
//!
//! Invariants (checked by [`Model::check_invariants`]):
//! - both states satisfy the [`PoolState`] invariants, and no block counted in the committed
//!   state lies beyond the current size (a shrink keeps every block either view uses, [H5]);
//! - a live handle's device exists in `current`, and no id has two live handles ([H1]);
//! - `changed` only names devices of `current`;
//! - while the pool is not in service, `current == committed` (every change is an M call,
//!   and every M call puts the pool in service first, §2.4);
//! - `committed` equals `current` except at the keys of `current`'s change log (so commit
//!   copies those keys into `committed`, and abort copies them back: neither copies a whole
//!   state);
//! - `unverified`, when known, holds every key changed since the last `take_changes`, apart
//!   from those still in `current`'s log.

use std::collections::{BTreeMap, BTreeSet};

use crate::cow_map::CowMap;
use crate::state::{ls, Change, Device, Devices, LsRow, Mapping, PoolState, TIME_LIMIT};
use crate::Errno::{self, EBUSY, EEXIST, EINVAL, ENODATA, ENOSPC, EPERM};

/// An open thin device. The generation is unique for the model's lifetime, so a handle that
/// died ([H2], [H3]) never comes back to life when its id is re-created, and a handle from
/// before a crash or close is unknown afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle {
    id: u64,
    generation: u64,
}

impl Handle {
    /// dm_thin_dev_id: infallible, also on a dead handle and in fail mode ([H6]).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// What the model remembers about one open handle.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenDevice {
    id: u64,
    /// False once the device was deleted ([H2]) or rolled away by an abort ([H3]).
    live: bool,
    /// The device's `changed` at the last abort this handle saw (§3.19); false at open.
    aborted_changes: bool,
}

/// find_block's answer (§3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub data_block: u64,
    pub shared: bool,
}

/// find_mapped_range's answer (§3.12); `thin_end` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedRange {
    pub thin_begin: u64,
    pub thin_end: u64,
    pub pool_begin: u64,
    pub maybe_shared: bool,
}

/// The reference model of one pool object. See the crate documentation for how to drive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    committed: PoolState,
    current: PoolState,
    /// Durable as soon as it is set ([H7]): survives abort, crash and close.
    needs_check: bool,
    /// Devices with create/snap/insert/remove since the last commit (§3.19).
    changed: BTreeSet<u64>,
    /// Open handles by generation.
    handles: BTreeMap<u64, OpenDevice>,
    next_generation: u64,
    in_service: bool,
    read_only: bool,
    failed: bool,
    poisoned: bool,
    /// Keys changed in committed transactions and aborts since `take_changes`; `None` once
    /// more than [`UNVERIFIED_MAX`] piled up (a caller that never takes them pays no memory).
    unverified: Option<Vec<Change>>,
}

/// Changes kept for `take_changes` at most; past this the set is forgotten (`None`). Every
/// clone of the model copies them, so a caller that never takes them (the kernel wing's
/// emulation clones its model at every checkpoint) must not pile up more: at 2^19 one test
/// of the kernel wing grew past 24 GB.
const UNVERIFIED_MAX: usize = 1 << 16;

impl Model {
    /// A freshly formatted pool whose data device was then resized to `data_blocks` and
    /// committed: time 0, trans_id 0, no devices. The resize was an M call, so the pool is in
    /// service.
    pub fn new(data_blocks: u64) -> Model {
        let state = PoolState::new(data_blocks);
        Model {
            committed: state.clone(),
            current: state,
            needs_check: false,
            changed: BTreeSet::new(),
            handles: BTreeMap::new(),
            next_generation: 0,
            in_service: true,
            read_only: false,
            failed: false,
            poisoned: false,
            unverified: Some(Vec::new()),
        }
    }

    /// Keys of the current state changed since the last call (in no particular order, maybe
    /// repeated), or `None` when too many piled up to keep. For verifying only what changed.
    pub fn take_changes(&mut self) -> Option<Vec<Change>> {
        let mut changes = self.unverified.replace(Vec::new())?;
        changes.extend_from_slice(self.current.log());
        Some(changes)
    }

    /// Whether [`Model::take_changes`] would list the changes (not too many piled up).
    pub fn changes_kept(&self) -> bool {
        self.unverified.is_some()
    }

    /// Brings `committed` (commit) or `current` (abort, crash) up to the other, over the
    /// keys this transaction changed.
    fn settle_transaction(&mut self, commit: bool) {
        // In log order: copying a key twice is harmless, and sorting costs more than it saves
        // (take_changes sorts once for the verifier).
        let changes = self.current.drain_log();
        if commit {
            self.committed.copy_changes(&self.current, &changes);
        } else {
            self.current.copy_changes(&self.committed, &changes);
        }
        if let Some(unverified) = &mut self.unverified {
            if unverified.is_empty() {
                *unverified = changes; // the usual case: taken at every commit
            } else {
                unverified.extend(changes);
            }
            if unverified.len() > UNVERIFIED_MAX {
                self.unverified = None;
            }
        }
    }

    // ----- entry rules ------------------------------------------------------------------

    /// Entry of every M call except abort: in service first, even when refused (§2.4); then
    /// fail mode (§1.5), a poisoned transaction ([R1]), read-only mode ([H8]).
    fn enter_mutator(&mut self) -> Result<(), Errno> {
        self.in_service = true;
        if self.failed || self.poisoned {
            return Err(EINVAL);
        }
        if self.read_only {
            return Err(EPERM);
        }
        Ok(())
    }

    /// Entry of every Q and C call except the two closes: only fail mode refuses ([H6]).
    fn enter_query(&self) -> Result<(), Errno> {
        if self.failed {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// A handle that is not open (closed, or from before a crash) is a caller bug: EINVAL.
    fn handle_state(&self, handle: Handle) -> Result<&OpenDevice, Errno> {
        match self.handles.get(&handle.generation) {
            Some(open) if open.id == handle.id => Ok(open),
            _ => Err(EINVAL),
        }
    }

    /// The device id behind a live handle; ENODATA on a dead one ([H2]).
    fn live_id(&self, handle: Handle) -> Result<u64, Errno> {
        let open = self.handle_state(handle)?;
        if open.live {
            Ok(open.id)
        } else {
            Err(ENODATA)
        }
    }

    fn live_device(&self, id: u64) -> &Device {
        self.current.devices.get(&id).expect("a live handle's device exists (module invariant)")
    }

    fn device_for_query(&self, handle: Handle) -> Result<&Device, Errno> {
        self.enter_query()?;
        Ok(self.live_device(self.live_id(handle)?))
    }

    fn device_for_mutator(&mut self, handle: Handle) -> Result<u64, Errno> {
        self.enter_mutator()?;
        self.live_id(handle)
    }

    // ----- devices ----------------------------------------------------------------------

    /// §3.3 create_thin. EEXIST iff `id` exists in the current state ([R3]).
    pub fn create_thin(&mut self, id: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        if self.current.devices.contains_key(&id) {
            return Err(EEXIST);
        }
        self.current.add_device(id, Device::new(self.current.trans_id, self.current.time));
        self.changed.insert(id);
        Ok(())
    }

    /// §3.4 create_snap: EEXIST, then ENODATA, then ENOSPC if time would reach 2^24 ([R8]);
    /// all before any change. Time advances by one; both devices are stamped with it.
    pub fn create_snap(&mut self, id: u64, origin: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        if self.current.devices.contains_key(&id) {
            return Err(EEXIST);
        }
        let Some(origin_device) = self.current.devices.get(&origin) else {
            return Err(ENODATA);
        };
        let time = self.current.time + 1;
        if time >= TIME_LIMIT {
            return Err(ENOSPC);
        }
        let mut snap = Device::new(self.current.trans_id, time);
        snap.mappings = origin_device.mappings.clone();
        self.current.time = time;
        self.current.set_snapshotted_time(origin, time);
        self.current.add_device(id, snap);
        self.changed.extend([id, origin]);
        Ok(())
    }

    /// §3.5 delete_thin_device. Allowed while open: the handle becomes dead ([H2]). The
    /// device's `changed` goes with it (§3.19: deleting does not count as a change).
    pub fn delete_thin(&mut self, id: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        if self.current.remove_device(id).is_none() {
            return Err(ENODATA);
        }
        self.changed.remove(&id);
        for open in self.handles.values_mut().filter(|open| open.id == id) {
            open.live = false;
        }
        Ok(())
    }

    // ----- transactions -----------------------------------------------------------------

    /// §3.6 commit. A no-op while not in service ([H11]); EINVAL when poisoned ([R1]);
    /// EPERM in read-only mode ([H8]).
    pub fn commit(&mut self) -> Result<(), Errno> {
        self.enter_query()?;
        if !self.in_service {
            return Ok(());
        }
        if self.poisoned {
            return Err(EINVAL);
        }
        if self.read_only {
            return Err(EPERM);
        }
        self.commit_now();
        Ok(())
    }

    fn commit_now(&mut self) {
        self.settle_transaction(true);
        self.changed.clear();
    }

    /// §3.7 abort, full roll-back ([H3]): works in read-only mode and when poisoned (it is
    /// the way out); open handles see their device's committed state, or die if it has none.
    pub fn abort(&mut self) -> Result<(), Errno> {
        self.in_service = true;
        self.enter_query()?;
        self.settle_transaction(false);
        for open in self.handles.values_mut().filter(|open| open.live) {
            open.aborted_changes = self.changed.contains(&open.id);
            open.live = self.current.devices.contains_key(&open.id);
        }
        self.changed.clear();
        self.poisoned = false;
        Ok(())
    }

    /// §3.8 set: compare-and-set against the current (uncommitted) value.
    pub fn set_transaction_id(&mut self, current: u64, new: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        if current != self.current.trans_id {
            return Err(EINVAL);
        }
        self.current.trans_id = new;
        Ok(())
    }

    /// §3.8 get: the current value, uncommitted sets included.
    pub fn get_transaction_id(&self) -> Result<u64, Errno> {
        self.enter_query()?;
        Ok(self.current.trans_id)
    }

    /// §3.9 reserve: commits first, even if it then fails with EBUSY ([H9]); the snapshot is
    /// then taken in the new transaction, so abort or crash undo it ([R6]).
    pub fn reserve_metadata_snap(&mut self) -> Result<(), Errno> {
        self.enter_mutator()?;
        self.commit_now();
        if self.current.held.is_some() {
            return Err(EBUSY);
        }
        let frozen = self.current.devices.clone();
        self.current.set_held(Some(frozen));
        Ok(())
    }

    /// §3.9 release: EINVAL if none is held; transactional ([R6]).
    pub fn release_metadata_snap(&mut self) -> Result<(), Errno> {
        self.enter_mutator()?;
        if self.current.held.is_none() {
            return Err(EINVAL);
        }
        self.current.set_held(None);
        Ok(())
    }

    /// §3.9 get: whether a snapshot is held in the current state.
    pub fn metadata_snap_held(&self) -> Result<bool, Errno> {
        self.enter_query()?;
        Ok(self.current.held.is_some())
    }

    // ----- handles ----------------------------------------------------------------------

    /// §3.10 open (class C: not in service, works read-only). EBUSY while the device has a
    /// live handle ([H1]); ENODATA if it does not exist now ([R3]).
    pub fn open_thin(&mut self, id: u64) -> Result<Handle, Errno> {
        self.enter_query()?;
        if !self.current.devices.contains_key(&id) {
            return Err(ENODATA);
        }
        if self.handles.values().any(|open| open.live && open.id == id) {
            return Err(EBUSY);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.handles.insert(generation, OpenDevice { id, live: true, aborted_changes: false });
        Ok(Handle { id, generation })
    }

    /// §3.10 close: works on dead handles and in fail mode ([H6]); EINVAL only for a handle
    /// that is not open (a caller bug the engine's types may rule out).
    pub fn close_thin(&mut self, handle: Handle) -> Result<(), Errno> {
        self.handle_state(handle)?;
        self.handles.remove(&handle.generation);
        Ok(())
    }

    /// Every open handle and whether it is live, in opening order.
    pub fn open_handles(&self) -> Vec<(Handle, bool)> {
        let handle = |(&generation, open): (&u64, &OpenDevice)| {
            (Handle { id: open.id, generation }, open.live)
        };
        self.handles.iter().map(handle).collect()
    }

    // ----- lookups ----------------------------------------------------------------------

    /// §3.11 find_block with `can_issue_io = true`. With `false` the engine may also answer
    /// EWOULDBLOCK ([H4]); the model does not know the cache.
    pub fn find_block(&self, handle: Handle, vblock: u64) -> Result<Lookup, Errno> {
        let device = self.device_for_query(handle)?;
        let mapping = device.mappings.get(vblock).ok_or(ENODATA)?;
        Ok(Lookup { data_block: mapping.data_block, shared: device.is_shared(mapping) })
    }

    /// §3.12 find_mapped_range: the run starting at the first mapping in `[begin, end)`,
    /// broken by a hole, a data-block discontinuity or a change of the shared flag (a change
    /// of time alone does not break it). ENODATA if there is none ([H12]).
    pub fn find_mapped_range(
        &self,
        handle: Handle,
        begin: u64,
        end: u64,
    ) -> Result<MappedRange, Errno> {
        let device = self.device_for_query(handle)?;
        if end < begin {
            return Err(ENODATA);
        }
        let (first, first_mapping) = device.mappings.range(begin..).next().ok_or(ENODATA)?;
        if first >= end {
            return Err(ENODATA);
        }
        let maybe_shared = device.is_shared(&first_mapping);
        let mut thin_end = first + 1;
        for (vblock, mapping) in device.mappings.range(thin_end..end) {
            let expected = first_mapping.data_block.checked_add(vblock - first);
            let continues = vblock == thin_end
                && Some(mapping.data_block) == expected
                && device.is_shared(&mapping) == maybe_shared;
            if !continues {
                break;
            }
            thin_end += 1;
        }
        Ok(MappedRange {
            thin_begin: first,
            thin_end,
            pool_begin: first_mapping.data_block,
            maybe_shared,
        })
    }

    /// §3.17: `Some(highest vblock)`, or `None` for a device without mappings.
    pub fn highest_mapped_block(&self, handle: Handle) -> Result<Option<u64>, Errno> {
        Ok(self.device_for_query(handle)?.mappings.last().map(|(v, _)| v))
    }

    /// §3.18: the device's mapped_blocks in the current state.
    pub fn mapped_count(&self, handle: Handle) -> Result<u64, Errno> {
        Ok(self.device_for_query(handle)?.mapped_blocks())
    }

    /// §3.19: some existing device was created, snapshotted or written since the last commit.
    pub fn changed_this_transaction(&self) -> Result<bool, Errno> {
        self.enter_query()?;
        Ok(!self.changed.is_empty())
    }

    /// §3.19 for one device; false on a dead handle ([H2]).
    pub fn thin_changed(&self, handle: Handle) -> Result<bool, Errno> {
        self.enter_query()?;
        let open = self.handle_state(handle)?;
        Ok(open.live && self.changed.contains(&open.id))
    }

    /// §3.19: whether the device had uncommitted changes at the last abort this handle saw;
    /// false on a dead handle ([H2]).
    pub fn aborted_changes(&self, handle: Handle) -> Result<bool, Errno> {
        self.enter_query()?;
        let open = self.handle_state(handle)?;
        Ok(open.live && open.aborted_changes)
    }

    // ----- mappings ---------------------------------------------------------------------

    /// §3.14 insert_block. The caller's reference on `data_block` moves into the mapping; an
    /// overwritten different block loses its reference; rewriting the same block only
    /// refreshes the time. EINVAL (model precondition, no change) if the caller holds no
    /// reference to hand over.
    pub fn insert_block(
        &mut self,
        handle: Handle,
        vblock: u64,
        data_block: u64,
    ) -> Result<(), Errno> {
        let id = self.device_for_mutator(handle)?;
        let mapping = Mapping { data_block, time: self.current.time };
        if !self.current.insert_mapping(id, vblock, mapping) {
            return Err(EINVAL);
        }
        self.changed.insert(id);
        Ok(())
    }

    /// §3.15 remove_block: ENODATA with no change for an unmapped vblock ([R1]).
    pub fn remove_block(&mut self, handle: Handle, vblock: u64) -> Result<(), Errno> {
        let id = self.device_for_mutator(handle)?;
        self.current.remove_mapping(id, vblock).ok_or(ENODATA)?;
        self.changed.insert(id);
        Ok(())
    }

    /// §3.16 remove_range over `[begin, end)`. Marks the device changed even when nothing was
    /// in range or `begin >= end` (the kernel reshapes the top level regardless).
    pub fn remove_range(&mut self, handle: Handle, begin: u64, end: u64) -> Result<(), Errno> {
        let id = self.device_for_mutator(handle)?;
        if begin < end {
            let doomed: Vec<u64> =
                self.live_device(id).mappings.range(begin..end).map(|(v, _)| v).collect();
            for vblock in doomed {
                self.current.remove_mapping(id, vblock);
            }
        }
        self.changed.insert(id);
        Ok(())
    }

    // ----- data space -------------------------------------------------------------------

    /// §3.13 alloc_data_block when the engine returned `block`: Ok(()) iff the call had to
    /// succeed and `block` is allocatable; then the caller owns one reference to it. Errors:
    /// those of [`Model::alloc_data_block_expect`], or EINVAL for an illegal choice.
    pub fn alloc_data_block_check(&mut self, block: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        // An allocatable answer proves a block was available; only a wrong answer needs the
        // (linear) search to tell ENOSPC from an illegal choice.
        if !self.is_allocatable(block) {
            return Err(if self.data_block_available() { EINVAL } else { ENOSPC });
        }
        self.current.give_caller_ref(block);
        Ok(())
    }

    /// §3.13 alloc_data_block when the engine failed: the error the model expects (the M-call
    /// entry rules, or ENOSPC when no block is free in both views, [H13]); Ok(()) means the
    /// call had to succeed. Changes nothing but the in-service flag.
    pub fn alloc_data_block_expect(&mut self) -> Result<(), Errno> {
        self.enter_mutator()?;
        if !self.data_block_available() {
            return Err(ENOSPC);
        }
        Ok(())
    }

    /// Below the current size and unused in both the current and the committed view
    /// (blocks beyond the committed size count as unused there).
    pub fn is_allocatable(&self, block: u64) -> bool {
        block < self.current.data_blocks
            && self.current.refs_of(block) == 0
            && self.committed.refs_of(block) == 0
    }

    /// The lowest allocatable block. Stops after at most one more step than there are blocks
    /// in use, so it is cheap on any data size.
    pub fn first_allocatable_block(&self) -> Option<u64> {
        (0..self.current.data_blocks).find(|&block| self.is_allocatable(block))
    }

    /// Whether an ENOSPC from alloc_data_block can be about data space at all.
    pub fn data_block_available(&self) -> bool {
        self.first_allocatable_block().is_some()
    }

    /// §3.20: committed size − blocks in use now, saturating at 0 ([R5]). Physical > 0 ⇔
    /// logical > 0 (§4.1), so the logical counts give the engine's number.
    pub fn free_data_blocks(&self) -> Result<u64, Errno> {
        self.enter_query()?;
        Ok(self.committed.data_blocks.saturating_sub(self.current.logical_refs().len() as u64))
    }

    /// §3.22: the committed data size (an uncommitted resize is invisible).
    pub fn data_dev_size(&self) -> Result<u64, Errno> {
        self.enter_query()?;
        Ok(self.committed.data_blocks)
    }

    /// §3.23 block_is_shared. The engine answers from lazy physical counts, the model knows
    /// bounds: `Some(answer)` when the engine must give it, `None` when either is right.
    /// Logical ≤ 1 ⇒ false; [`PoolState::physical_refs_lower_bound`] ≥ 2 ⇒ true.
    pub fn block_is_shared(&self, block: u64) -> Result<Option<bool>, Errno> {
        self.enter_query()?;
        if block >= self.current.data_blocks {
            return Err(EINVAL);
        }
        if self.current.refs_of(block) <= 1 {
            Ok(Some(false))
        } else if self.current.physical_refs_lower_bound(block) >= 2 {
            Ok(Some(true))
        } else {
            Ok(None)
        }
    }

    /// §3.24 inc_data_range over `[begin, end)`: the caller gains one reference per block.
    pub fn inc_data_range(&mut self, begin: u64, end: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        self.check_data_range(begin, end)?;
        (begin..end).for_each(|block| self.current.give_caller_ref(block));
        Ok(())
    }

    /// §3.24 dec_data_range: the caller gives back one reference per block. EINVAL with no
    /// change ([R1]) if any block has none to give (which covers every block at count 0).
    pub fn dec_data_range(&mut self, begin: u64, end: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        self.check_data_range(begin, end)?;
        if (begin..end).any(|block| self.current.caller_refs_of(block) == 0) {
            return Err(EINVAL);
        }
        for block in begin..end {
            self.current.take_caller_ref(block);
        }
        Ok(())
    }

    /// Contract of §3.24: `begin <= end <= current size`, else EINVAL before any change.
    fn check_data_range(&self, begin: u64, end: u64) -> Result<(), Errno> {
        if begin > end || end > self.current.data_blocks {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// §3.25 resize_data_dev ([H5]): grow relative to the current size ([R7]); shrink only if
    /// no block at or past `blocks` is in use in the current or the committed view (else
    /// ENOSPC, no change), because the committed state may still be reopened.
    pub fn resize_data_dev(&mut self, blocks: u64) -> Result<(), Errno> {
        self.enter_mutator()?;
        let in_use_past = |state: &PoolState| state.logical_refs().range(blocks..).next().is_some();
        if in_use_past(&self.current) || in_use_past(&self.committed) {
            return Err(ENOSPC);
        }
        self.current.data_blocks = blocks;
        Ok(())
    }

    // ----- modes ------------------------------------------------------------------------

    /// §3.26 read-only mode ([H8]): M calls and in-service commits refuse with EPERM.
    pub fn read_only(&mut self) -> Result<(), Errno> {
        self.enter_query()?;
        self.read_only = true;
        Ok(())
    }

    /// §3.26: leave read-only mode.
    pub fn read_write(&mut self) -> Result<(), Errno> {
        self.enter_query()?;
        self.read_only = false;
        Ok(())
    }

    /// §3.29 set_needs_check: durable on return ([H7]), so abort and crash keep it.
    pub fn set_needs_check(&mut self) -> Result<(), Errno> {
        self.enter_mutator()?;
        self.needs_check = true;
        Ok(())
    }

    /// What `thin_check --clear-needs-check-flag` does to a closed pool's metadata after a
    /// clean check: the flag goes, nothing else changes. Not an API call (the tools do it
    /// offline); the kernel wing's emulation uses it between a fault window and the
    /// reopen.
    pub fn clear_needs_check(&mut self) {
        self.needs_check = false;
    }

    /// §3.29 needs_check (EINVAL in fail mode under [H6]).
    pub fn needs_check(&self) -> Result<bool, Errno> {
        self.enter_query()?;
        Ok(self.needs_check)
    }

    /// The runner saw the engine's abort fail: fail mode (§1.5, [H6]) until crash or close.
    pub fn enter_fail_mode(&mut self) {
        self.failed = true;
    }

    /// The runner saw a non-argument error (metadata ENOSPC, EIO, …) from an M call or a
    /// commit: every later M call and commit is EINVAL until abort ([R1]). Other answers are
    /// unspecified meanwhile, so the runner should not compare them.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// §3.2 close ([R2], [R9]): EBUSY with no change while any device is open (a dead
    /// handle names no device, so it does not count); else commit when writable and not
    /// failed, and return that commit's result. Unless EBUSY, the model then stands for the
    /// pool as the next open finds it (see `crash`); leftover dead handles are forgotten.
    pub fn close(&mut self) -> Result<(), Errno> {
        if self.handles.values().any(|open| open.live) {
            return Err(EBUSY);
        }
        let result = if self.read_only || self.failed { Ok(()) } else { self.commit() };
        self.crash();
        result
    }

    /// A crash (or the pool object's end) and a reopen: the committed state, no handles,
    /// not in service, read-write, neither poisoned nor failed. needs_check stays ([H7]).
    pub fn crash(&mut self) {
        self.settle_transaction(false);
        self.handles.clear();
        self.changed.clear();
        self.in_service = false;
        self.read_only = false;
        self.failed = false;
        self.poisoned = false;
    }

    // ----- observers for the oracle -----------------------------------------------------

    pub fn current(&self) -> &PoolState {
        &self.current
    }

    pub fn committed(&self) -> &PoolState {
        &self.committed
    }

    pub fn devices(&self) -> &Devices {
        &self.current.devices
    }

    pub fn committed_devices(&self) -> &Devices {
        &self.committed.devices
    }

    /// The current held snapshot's devices, if one is held.
    pub fn held_snapshot_devices(&self) -> Option<&Devices> {
        self.current.held.as_ref()
    }

    pub fn time(&self) -> u32 {
        self.current.time
    }

    /// Logical count per data block in the current state (spec §8 item 8).
    pub fn logical_refs(&self) -> &CowMap<u64> {
        self.current.logical_refs()
    }

    /// thin_ls rows for the live devices of the current state.
    pub fn ls(&self) -> BTreeMap<u64, LsRow> {
        ls(&self.current.devices)
    }

    pub fn is_in_service(&self) -> bool {
        self.in_service
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The module invariants, as a readable error.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.current.check().map_err(|e| format!("current: {e}"))?;
        self.committed.check().map_err(|e| format!("committed: {e}"))?;
        let size = self.current.data_blocks;
        if let Some((block, _)) = self.committed.logical_refs().range(size..).next() {
            return Err(format!("committed block {block} beyond the current size {size}"));
        }
        let mut live_ids = BTreeSet::new();
        for open in self.handles.values().filter(|open| open.live) {
            if !self.current.devices.contains_key(&open.id) || !live_ids.insert(open.id) {
                return Err(format!("device {}: live handle missing device or doubled", open.id));
            }
        }
        if let Some(id) = self.changed.iter().find(|&id| !self.current.devices.contains_key(id)) {
            return Err(format!("device {id} marked changed but absent"));
        }
        if !self.in_service && self.current != self.committed {
            return Err("uncommitted changes while not in service".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
