//! The pool target, emulated: for each [`KOp`] the calls `drivers/md/dm-thin.c` makes to the
//! metadata (spec §5), made on thinsim's engine and on the model in lockstep. Its answers are
//! what the kernel is expected to answer; its state at a checkpoint is what the kernel's
//! metadata is expected to hold.
//!
//! What the pool target does, as emulated here (spec §5.2–5.5):
//! - A message that succeeds is followed by a commit; one that fails is not (its partial
//!   work, if any, waits for the next commit). `reserve_metadata_snap` also commits first.
//!   Deleting an active device deactivates it first (its handle closes).
//! - A write to a block that is unmapped, or mapped with the time-stamp `shared` flag set
//!   (not the reference count: the pool target breaks sharing by time stamp), allocates and
//!   inserts; a write to an exclusively mapped block changes no metadata. Before allocating,
//!   a free data count of 0 makes the pool commit and look again; still 0, or an allocation
//!   that finds nothing, is ENOSPC and the pool enters out-of-data-space, where every write
//!   that needs a block fails at once (`error_if_no_space`) until a commit finds free blocks.
//! - A flush through a device commits only if that device changed in this transaction.
//! - A table reload suspends the pool (a commit) and resumes it: growth of the data or the
//!   metadata device is applied at resume, with a commit.
//!
//! - A fault window ([`KOp::FaultMeta`]): the next commit fails. The target aborts the
//!   transaction; with reads still working the abort succeeds, needs_check is set and the
//!   pool is read-only, else it is in fail mode ([`super::faults`]). A message whose
//!   commit failed still answers success (the target ignores its commit's result), and a
//!   device it created cannot be activated. Read-only: messages fail with EOPNOTSUPP,
//!   writes that need a new mapping with EIO, an empty flush with EIO where block 0 is
//!   unmapped, discards succeed and change nothing; fail mode: every bio fails with EIO.
//!   [`KOp::HealMeta`] reopens the pool on the last commit, needs_check cleared.
//! - A metadata exhaustion ([`KOp::ExhaustMeta`]): `create_thin` messages, each committed,
//!   until a commit leaves the free metadata count less the reserve at 0; the pool is then
//!   out of metadata space ([`Degraded::OutOfMetadataSpace`]: read-only, nothing aborted,
//!   no needs_check; it replaces out-of-data-space, the pool having one mode) until a
//!   metadata growth, which returns it to write mode before it
//!   resizes and commits. The engine's btree nodes are not laid out as the kernel's, so
//!   after a kernel run the count of creates is the kernel's ([`ExhaustHint`]) and the
//!   engine's own count is kept beside it ([`Exhaustion::drift`]).
//!
//! Invariants: the engine and the model give the same answer to every call (a difference
//! is a [`Divergence`], which ends the run: the two can no longer be compared with the
//! kernel); every open handle belongs to a device that exists in both.

use super::faults::{Degraded, FaultPath};
use super::workload::{KOp, MetaFault, PoolShape};
use crate::runner::errno;
use crate::runner::lockstep::{self, Both, Handles};
use crate::runner::oracle::{self, Mismatch};
use engine::io::MemoryDevice;
use engine::thin::{Pool, PoolOptions, ThinHandle};
use model::{Errno, Model};
use std::collections::{BTreeMap, VecDeque};

/// The metadata image a prepopulated workload starts from, and the model of its state:
/// restored by thinsim on a device of the largest metadata size. `None` shape has none.
pub fn initial_image(shape: &PoolShape) -> Result<(MemoryDevice, Model), String> {
    let p = shape.prepopulation.as_ref().ok_or("the workload starts from a blank device")?;
    crate::runner::restored_prepopulation(
        p,
        shape.data_blocks,
        shape.metadata_blocks,
        shape.max_metadata_blocks,
    )
}

/// The answer userspace sees for an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(Errno),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Failed(e) => write!(f, "failed {e:?}"),
        }
    }
}

/// The engine and the model disagree: thinsim's own bug, found without the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub call: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "engine and model disagree on {}: {}", self.call, self.detail)
    }
}

type Res<T> = Result<T, Divergence>;

/// Why the kernel's answer to an op would depend on its own clock (its once-a-second
/// commit), so that no emulation can say what it is. A drawn workload never holds one;
/// a saved or edited workload that does is refused before it runs ([`Emulation::clock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockDependence {
    /// A data block was freed in the open transaction and the op allocates, or its answer
    /// turns on out-of-data-space: the kernel's periodic commit may or may not have made
    /// the free allocatable (and taken the pool out of out-of-data-space) first.
    AfterUncommittedFree,
    /// Out of data space, a discard frees a data block and leaves the device's block 0
    /// unmapped: its own flush fails with ENOSPC, unless the kernel's periodic commit fell
    /// between the discard and the flush and found the freed block (seeds 778 and 779).
    DiscardFreesOutOfDataSpace,
    /// Under a metadata fault, an op changes the metadata without committing at once (a
    /// write that provisions without FUA, a discard that unmaps, an allocation that must
    /// commit first): the commit that fails is the periodic one, at a moment of the
    /// kernel's clock, and what the op answers depends on it.
    ChangeUnderFault,
}

/// An op a fault window cannot hold (the drawer never puts one there; an edited workload
/// that does is refused before it runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowRule {
    /// A second fault before the first is healed.
    NestedFault,
    /// A checkpoint, or a growth (a table reload), inside a window: the suspend's commit
    /// would be the failing one, and the window ends with its own judged reopen.
    SuspendInWindow,
    /// `reserve_metadata_snap` under a fault before the pool degraded: its first commit
    /// fails and the call then runs on read-only metadata.
    ReserveUnderFault,
    /// Out of metadata space, anything but bios, messages (refused) and the metadata growth
    /// that ends it: a checkpoint's or a data growth's resume, or a reopen, which would
    /// start the pool in write mode on a full metadata device.
    OutOfMetadataSpace,
    /// With every bio failing and the pool not yet degraded, an op that may read metadata
    /// (any but `set_transaction_id`, a flush, the heal): whether its blocks are cached, or
    /// its read fails with EIO first, is the kernel's buffer cache's (seed 2: a
    /// `release_metadata_snap` failed with EIO reading the held root).
    ReadUnderErrorAll,
}

impl std::fmt::Display for WindowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WindowRule::NestedFault => "a metadata fault inside a fault window",
            WindowRule::SuspendInWindow => {
                "a checkpoint or growth inside a fault window (the window ends with heal_meta)"
            }
            WindowRule::ReserveUnderFault => {
                "reserve_metadata_snap as a fault window's failing commit"
            }
            WindowRule::OutOfMetadataSpace => {
                "a checkpoint, data growth or reopen while out of metadata space (a metadata \
                 growth ends it)"
            }
            WindowRule::ReadUnderErrorAll => {
                "an op that may read metadata while every metadata bio fails, before the pool \
                 degraded (it depends on the kernel's cache)"
            }
        })
    }
}

impl std::fmt::Display for ClockDependence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClockDependence::AfterUncommittedFree => {
                "a data block freed in the open transaction, and the op allocates or flushes: \
                 whether the kernel's periodic commit made the free allocatable first is timing"
            }
            ClockDependence::DiscardFreesOutOfDataSpace => {
                "out of data space, the discard frees a block and leaves block 0 unmapped: its \
                 flush fails unless the kernel's periodic commit falls before it"
            }
            ClockDependence::ChangeUnderFault => {
                "under a metadata fault the op changes metadata without committing: the \
                 failing commit would be the kernel's periodic one"
            }
        })
    }
}

/// What a kernel run said of a metadata exhaustion: how many devices the pool created, and
/// whether it then refused a message (it entered out-of-metadata-space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExhaustHint {
    pub created: u64,
    pub refused: bool,
}

/// A metadata exhaustion as the emulation ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhaustion {
    /// Devices created: the kernel's count when hinted, else the engine's own.
    pub created: u64,
    /// Whether the pool ended out of metadata space (else `limit` were created).
    pub refused: bool,
    /// After how many creates the engine's free metadata count less the reserve was 0
    /// (`None`: not within `created`).
    pub engine_full_at: Option<u64>,
    /// The engine's free metadata blocks less the reserve after the last create.
    pub engine_free_after_blocks: u64,
}

impl Exhaustion {
    /// How many creates the engine's own count is off the one run: those it would have
    /// refused (it filled up first) or still had room for (each create takes at least one
    /// block: the new device's empty mapping root).
    pub fn drift(&self) -> u64 {
        match self.engine_full_at {
            Some(at) => self.created - at,
            None => self.engine_free_after_blocks,
        }
    }
}

/// The emulated pool target: an engine pool and the model, and the target's own state.
pub struct Emulation {
    pool: Pool,
    model: Model,
    shape: PoolShape,
    data_blocks: u64,
    metadata_blocks: u64,
    /// Active thin devices: the engine's and the model's handle.
    active: BTreeMap<u64, (ThinHandle, model::Handle)>,
    /// The pool target's out-of-data-space mode.
    out_of_data_space: bool,
    /// The fault under the metadata device, from [`KOp::FaultMeta`] to [`KOp::HealMeta`].
    fault: Option<MetaFault>,
    /// The mode a failed commit left the pool in (until the heal reopens it).
    degraded: Option<Degraded>,
    /// The fault paths the op being applied went down ([`Emulation::take_paths`]).
    paths: Vec<FaultPath>,
    /// At a heal: the state the metadata is expected to hold when taken out (before the
    /// tools clear needs_check), and the mode the pool was in.
    healed: Option<(Model, Option<Degraded>)>,
    /// The kernel's counts for the exhaustions to come, in order ([`Emulation::hint`]).
    exhaust_hints: VecDeque<ExhaustHint>,
    /// The last exhaustion run ([`Emulation::take_exhausted`]).
    exhausted: Option<Exhaustion>,
    /// Commits made, for statistics.
    pub commits: u64,
    /// When kept: the model after every block of a write and after every op, the states
    /// between which the kernel's own (periodic) commits can fall.
    points: Option<Vec<Model>>,
}

fn engine_result<T>(r: engine::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| errno(&e))
}

/// The lockstep's agreed answer (`runner::lockstep`), or a divergence.
fn agreed<T: PartialEq + std::fmt::Debug>(both: Both<T>) -> Res<Result<T, Errno>> {
    let call = both.call;
    both.agreed().map_err(|detail| Divergence { call, detail })
}

fn outcome(r: Result<(), Errno>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Failed(e),
    }
}

impl Emulation {
    /// A freshly formatted pool of `shape`'s initial sizes, committed, with no devices.
    pub fn new(shape: &PoolShape) -> Res<Emulation> {
        let setup = |e: String| Divergence { call: "format", detail: e };
        let (pool, model) = match &shape.prepopulation {
            None => {
                // The engine formats the whole device; the kernel's metadata device starts
                // smaller and grows, so the engine's space map is shrunk to the starting
                // size (a fresh pool uses a handful of blocks at the front).
                let dev = MemoryDevice::new(shape.max_metadata_blocks);
                let pool = Pool::open(Box::new(dev), PoolOptions::new(shape.data_block_sectors))
                    .map_err(|e| setup(e.to_string()))?;
                let sized = pool
                    .resize_metadata_dev(shape.metadata_blocks)
                    .and_then(|()| pool.resize_data_dev(shape.data_blocks))
                    .and_then(|()| pool.commit());
                sized.map_err(|e| setup(e.to_string()))?;
                (pool, Model::new(shape.data_blocks))
            }
            Some(_) => {
                let (image, model) = initial_image(shape).map_err(setup)?;
                let opts =
                    PoolOptions { may_format: false, ..PoolOptions::new(shape.data_block_sectors) };
                let pool = Pool::open(image.to_device(), opts).map_err(|e| setup(e.to_string()))?;
                (pool, model)
            }
        };
        let mut em = Emulation {
            pool,
            model,
            shape: shape.clone(),
            data_blocks: shape.data_blocks,
            metadata_blocks: shape.metadata_blocks,
            active: BTreeMap::new(),
            out_of_data_space: false,
            fault: None,
            degraded: None,
            paths: Vec::new(),
            healed: None,
            exhaust_hints: VecDeque::new(),
            exhausted: None,
            commits: 0,
            points: None,
        };
        // The pool target's devices are all active from the start.
        let existing: Vec<u64> = em.model.committed_devices().keys().copied().collect();
        for dev in existing {
            em.activate(dev)?;
        }
        em.compare("format")?;
        Ok(em)
    }

    /// Keep the model after every block and op from now on (see [`Emulation::take_points`]).
    /// Called on a new emulation, the first states are the pool as the kernel formats it
    /// (no data blocks yet: the pool target's first resume resizes it and commits again)
    /// and as resized.
    pub fn keep_points(&mut self) {
        self.points = Some(vec![Model::new(0), self.model.clone()]);
    }

    /// The states kept since the last call (the model's maps share their leaves, so a
    /// state costs little more than the changes since the previous one).
    pub fn take_points(&mut self) -> Vec<Model> {
        self.points.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// How many states are kept so far (the last one is index `kept() - 1`).
    pub fn kept(&self) -> usize {
        self.points.as_ref().map_or(0, Vec::len)
    }

    fn point(&mut self) {
        if let Some(p) = self.points.as_mut() {
            p.push(self.model.clone());
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn shape(&self) -> &PoolShape {
        &self.shape
    }

    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    pub fn metadata_blocks(&self) -> u64 {
        self.metadata_blocks
    }

    pub fn out_of_data_space(&self) -> bool {
        self.out_of_data_space
    }

    /// The fault under the metadata device, if a window is open and not yet healed.
    pub fn fault(&self) -> Option<MetaFault> {
        self.fault
    }

    /// The mode a failed commit left the pool in, inside a window.
    pub fn degraded(&self) -> Option<Degraded> {
        self.degraded
    }

    /// Whether a fault window is open (a fault armed, or the pool degraded by one).
    pub fn in_window(&self) -> bool {
        self.fault.is_some() || self.degraded.is_some()
    }

    /// The fault paths of the last op applied (taken: the next op starts empty).
    pub fn take_paths(&mut self) -> Vec<FaultPath> {
        std::mem::take(&mut self.paths)
    }

    /// After a [`KOp::HealMeta`]: the state the metadata held when it was taken out, and
    /// the mode the pool had been in (taken).
    pub fn take_healed(&mut self) -> Option<(Model, Option<Degraded>)> {
        self.healed.take()
    }

    /// The kernel's counts for the [`KOp::ExhaustMeta`] ops to come, in order: each
    /// creates as many devices as the kernel did, whatever the engine's own count says.
    pub fn hint(&mut self, hints: &[ExhaustHint]) {
        self.exhaust_hints = hints.iter().copied().collect();
    }

    /// After a [`KOp::ExhaustMeta`]: how it ran (taken).
    pub fn take_exhausted(&mut self) -> Option<Exhaustion> {
        self.exhausted.take()
    }

    /// Why a fault window cannot hold `op` now, if it cannot.
    pub fn window_rule(&self, op: &KOp) -> Option<WindowRule> {
        if !self.in_window() {
            return None;
        }
        if self.degraded == Some(Degraded::OutOfMetadataSpace) {
            return match op {
                KOp::FaultMeta { .. } | KOp::ExhaustMeta { .. } => Some(WindowRule::NestedFault),
                KOp::Checkpoint | KOp::GrowData { .. } | KOp::HealMeta => {
                    Some(WindowRule::OutOfMetadataSpace)
                }
                _ => None,
            };
        }
        match op {
            KOp::FaultMeta { .. } | KOp::ExhaustMeta { .. } => Some(WindowRule::NestedFault),
            KOp::Checkpoint | KOp::GrowData { .. } | KOp::GrowMetadata { .. } => {
                Some(WindowRule::SuspendInWindow)
            }
            KOp::ReserveSnap if self.degraded.is_none() => Some(WindowRule::ReserveUnderFault),
            KOp::SetTransactionId { .. } | KOp::Flush { .. } | KOp::HealMeta => None,
            _ if self.degraded.is_none() && self.fault == Some(MetaFault::ErrorAll) => {
                Some(WindowRule::ReadUnderErrorAll)
            }
            _ => None,
        }
    }

    /// Under an armed fault (not yet degraded), whether `op` would change the metadata
    /// without committing at once, or need a commit to allocate.
    fn changes_under_fault(&self, op: &KOp) -> bool {
        if self.fault.is_none() || self.degraded.is_some() {
            return false;
        }
        let needs_block = |dev: u64, v: u64| {
            let Some(d) = self.model.devices().get(&dev) else { return false };
            match d.mappings.get(v) {
                None => true,
                Some(m) => m.time < d.snapshotted_time,
            }
        };
        match *op {
            KOp::Write { dev, vblock, blocks, fua } => {
                let provisions = (vblock..vblock.saturating_add(blocks))
                    .take_while(|v| *v < self.shape.virtual_blocks)
                    .any(|v| needs_block(dev, v));
                let no_room =
                    self.out_of_data_space || self.free_data_blocks().map_or(true, |n| n == 0);
                provisions && (!fua || no_room)
            }
            KOp::Discard { dev, begin, end } => self
                .model
                .devices()
                .get(&dev)
                .is_some_and(|d| d.mappings.range(begin..end).next().is_some()),
            _ => false,
        }
    }

    /// The devices that exist (all active), in id order.
    pub fn devices(&self) -> Vec<u64> {
        self.active.keys().copied().collect()
    }

    /// The mapped vblocks of `dev` in the current transaction (from the model).
    pub fn mapped(&self, dev: u64) -> Vec<u64> {
        self.model.devices().get(&dev).map(|d| d.mappings.keys().collect()).unwrap_or_default()
    }

    /// Whether a write to `v` of `dev` would free a data block: it breaks sharing (time
    /// stamp) of a block nothing else references any more, whose count drops to 0. Such a
    /// free is not allocatable until the next commit, and whether the kernel commits before
    /// its next allocation depends on its clock, so the drawer flushes right after it.
    pub fn write_would_free(&self, dev: u64, v: u64) -> bool {
        let Some(d) = self.model.devices().get(&dev) else { return false };
        let Some(m) = d.mappings.get(v) else { return false };
        m.time < d.snapshotted_time && self.model.logical_refs().get(m.data_block) == Some(&1)
    }

    /// Whether a data block in use at the last commit is free now: a free that is not yet
    /// allocatable, and that the kernel's clock may commit at any moment (which also takes
    /// the pool out of out-of-data-space). The drawer commits deterministically first.
    pub fn uncommitted_frees(&self) -> bool {
        let cur = self.model.current();
        self.model.committed().logical_refs().keys().any(|b| cur.refs_of(b) == 0)
    }

    /// Whether `op`'s answer, applied now, would depend on the kernel's clock.
    pub fn clock(&self, op: &KOp) -> Option<ClockDependence> {
        match *op {
            // These commit before they do anything else (a message that fails commits
            // nothing, and refuses the same either way), or are a commit.
            _ if self.changes_under_fault(op) => Some(ClockDependence::ChangeUnderFault),
            KOp::Checkpoint
            | KOp::FaultMeta { .. }
            | KOp::HealMeta
            | KOp::ExhaustMeta { .. }
            | KOp::GrowData { .. }
            | KOp::GrowMetadata { .. }
            | KOp::ReserveSnap
            | KOp::CreateThin { .. }
            | KOp::CreateSnap { .. }
            | KOp::Delete { .. }
            | KOp::SetTransactionId { .. }
            | KOp::ReleaseSnap => None,
            KOp::Write { .. } | KOp::Flush { .. } if self.uncommitted_frees() => {
                Some(ClockDependence::AfterUncommittedFree)
            }
            KOp::Discard { .. } if self.uncommitted_frees() => {
                Some(ClockDependence::AfterUncommittedFree)
            }
            KOp::Discard { dev, begin, end }
                if self.discard_frees_out_of_space(dev, begin, end) =>
            {
                Some(ClockDependence::DiscardFreesOutOfDataSpace)
            }
            KOp::Write { .. } | KOp::Flush { .. } | KOp::Discard { .. } => None,
        }
    }

    /// Out of data space, whether discarding `[begin, end)` of `dev` frees a data block
    /// (one whose only reference it removes) and leaves the device's block 0 unmapped.
    pub fn discard_frees_out_of_space(&self, dev: u64, begin: u64, end: u64) -> bool {
        if !self.out_of_data_space {
            return false;
        }
        let Some(d) = self.model.devices().get(&dev) else { return false };
        let refs = self.model.logical_refs();
        let frees = d.mappings.range(begin..end).any(|(_, m)| refs.get(m.data_block) == Some(&1));
        let block_0_stays = d.mappings.get(0).is_some() && !(begin..end).contains(&0);
        frees && !block_0_stays
    }

    /// Full comparison of the engine with the model.
    fn compare(&self, call: &'static str) -> Res<()> {
        oracle::compare_pool(&self.pool, &self.model)
            .map_err(|m| Divergence { call, detail: m.to_string() })
    }

    /// The pool target's commit: refused in read-only and fail mode; under a fault it fails,
    /// and the target aborts. Whether it committed.
    fn commit(&mut self) -> Res<bool> {
        if self.degraded.is_some() {
            return Ok(false);
        }
        if let Some(fault) = self.fault {
            self.commit_failed(fault)?;
            return Ok(false);
        }
        agreed(lockstep::commit(&self.pool, &mut self.model))?.map_err(|e| Divergence {
            call: "commit",
            detail: format!("both failed with {e:?}"),
        })?;
        self.commits += 1;
        if self.out_of_data_space && self.free_data_blocks()? > 0 {
            self.out_of_data_space = false;
        }
        Ok(true)
    }

    /// A commit failed under `fault`: the target aborts (both sides roll back to the last
    /// commit). With reads working the abort succeeds, needs_check is set and the pool goes
    /// read-only; with every bio failing the abort cannot re-read the superblock and the
    /// pool goes to fail mode. Either way the metadata becomes read-only.
    fn commit_failed(&mut self, fault: MetaFault) -> Res<()> {
        let both = lockstep::Both::new("abort", self.pool.abort(), self.model.abort());
        agreed(both)?
            .map_err(|e| Divergence { call: "abort", detail: format!("both failed with {e:?}") })?;
        let mode = match fault {
            MetaFault::ErrorWrites => {
                let _set = agreed(lockstep::set_needs_check(&self.pool, &mut self.model))?;
                self.paths.push(FaultPath::AbortToReadOnly);
                Degraded::ReadOnly
            }
            MetaFault::ErrorAll => {
                self.paths.push(FaultPath::AbortFailedToFail);
                Degraded::Fail
            }
        };
        let _ro = agreed(lockstep::read_only(&self.pool, &mut self.model))?;
        self.degraded = Some(mode);
        self.compare("abort")
    }

    /// The engine's free metadata blocks less the reserve (the model has no metadata).
    pub fn free_metadata_blocks(&self) -> Res<u64> {
        self.pool.get_free_metadata_block_count().map_err(|e| Divergence {
            call: "get_free_metadata_block_count",
            detail: format!("the engine failed with {e}"),
        })
    }

    fn free_data_blocks(&self) -> Res<u64> {
        let both = lockstep::free_block_count(&self.pool, &self.model);
        agreed(both)?.map_err(|e| Divergence {
            call: "get_free_block_count",
            detail: format!("both failed with {e:?}"),
        })
    }

    fn activate(&mut self, dev: u64) -> Res<()> {
        match lockstep::open_thin(&self.pool, &mut self.model, dev) {
            (_, Some(th), Some(mh)) => {
                self.active.insert(dev, (th, mh));
                Ok(())
            }
            (both, _, _) => Err(Divergence { call: both.call, detail: both.difference() }),
        }
    }

    fn deactivate(&mut self, dev: u64) -> Res<()> {
        if let Some((th, mh)) = self.active.remove(&dev) {
            let _closed = agreed(lockstep::close_thin(&self.pool, &mut self.model, th, mh))?;
        }
        Ok(())
    }

    /// A message: on success the pool target commits, and answers success whatever the
    /// commit did.
    fn message(&mut self, r: Result<(), Errno>) -> Res<Outcome> {
        // A commit that did not happen failed under the fault (a degraded pool sends no
        // message this far).
        if r.is_ok() && !self.commit()? {
            self.paths.push(FaultPath::MessageCommitFailed);
        }
        Ok(outcome(r))
    }

    /// Activation of a device a successful message created: refused when the message's
    /// commit failed (the device was aborted with it; in fail mode no device activates).
    fn activate_created(&mut self, dev: u64) -> Res<Outcome> {
        match self.degraded {
            None => {
                self.activate(dev)?;
                Ok(Outcome::Ok)
            }
            // Out of metadata space no message succeeds.
            Some(Degraded::ReadOnly | Degraded::OutOfMetadataSpace) => {
                self.paths.push(FaultPath::ActivateAborted);
                Ok(Outcome::Failed(Errno::ENODATA))
            }
            // Fail mode refuses to activate anything (EINVAL); no drawn or allowed
            // workload gets here (under `error_all` only a transaction id commits).
            Some(Degraded::Fail) => Ok(Outcome::Failed(Errno::EINVAL)),
        }
    }

    /// Applies one op; the answer userspace is expected to see.
    pub fn apply(&mut self, op: &KOp) -> Res<Outcome> {
        let r = self.apply_op(op);
        self.point();
        r
    }

    fn apply_op(&mut self, op: &KOp) -> Res<Outcome> {
        if let Some(rule) = self.window_rule(op) {
            return Err(Divergence { call: "fault window", detail: rule.to_string() });
        }
        if let (Some(Degraded::OutOfMetadataSpace), KOp::GrowMetadata { blocks }) =
            (self.degraded, op)
        {
            // The suspend's commit is refused; at resume the target sees the larger device
            // and goes back to write mode before it resizes, then commits.
            let _rw = agreed(lockstep::read_write(&self.pool, &mut self.model))?;
            self.degraded = None;
            self.paths.push(FaultPath::GrowLeftOutOfMetadataSpace);
            return self.grow_metadata(*blocks);
        }
        if let Some(mode) = self.degraded {
            return self.apply_degraded(op, mode);
        }
        match *op {
            KOp::CreateThin { dev } => {
                let r = agreed(lockstep::create_thin(&self.pool, &mut self.model, dev))?;
                let out = self.message(r)?;
                if out == Outcome::Ok {
                    return self.activate_created(dev);
                }
                Ok(out)
            }
            KOp::CreateSnap { dev, origin } => {
                let r = agreed(lockstep::create_snap(&self.pool, &mut self.model, dev, origin))?;
                let out = self.message(r)?;
                if out == Outcome::Ok {
                    return self.activate_created(dev);
                }
                Ok(out)
            }
            KOp::FaultMeta { fault } => {
                self.fault = Some(fault);
                self.paths.push(match fault {
                    MetaFault::ErrorWrites => FaultPath::WindowErrorWrites,
                    MetaFault::ErrorAll => FaultPath::WindowErrorAll,
                });
                Ok(Outcome::Ok)
            }
            KOp::HealMeta => self.heal(),
            KOp::Delete { dev } => {
                self.deactivate(dev)?;
                let r = agreed(lockstep::delete_thin(&self.pool, &mut self.model, dev))?;
                self.message(r)
            }
            KOp::SetTransactionId { current, new } => {
                let both = lockstep::set_transaction_id(&self.pool, &mut self.model, current, new);
                let r = agreed(both)?;
                self.message(r)
            }
            KOp::ReserveSnap => {
                self.commit()?;
                let r = agreed(lockstep::reserve_metadata_snap(&self.pool, &mut self.model))?;
                self.message(r)
            }
            KOp::ReleaseSnap => {
                let r = agreed(lockstep::release_metadata_snap(&self.pool, &mut self.model))?;
                self.message(r)
            }
            KOp::Write { dev, vblock, blocks, fua } => {
                for v in vblock..vblock.saturating_add(blocks) {
                    if let Outcome::Failed(e) = self.write_block(dev, v)? {
                        return Ok(Outcome::Failed(e));
                    }
                    if fua {
                        // A FUA bio is held until a commit if its device changed in this
                        // transaction (the pool target's bio_triggers_commit); a failed
                        // commit fails it.
                        if !self.commit_if_changed(dev)? {
                            self.paths.push(FaultPath::FuaWriteCommitFailed);
                            return Ok(Outcome::Failed(Errno::EIO));
                        }
                        // An O_DSYNC write to a block device is followed by an empty flush
                        // (the block layer's sync after the write), which obeys the flush
                        // rule: out of data space with block 0 unmapped it fails with
                        // ENOSPC, and the write, on disk and committed, returns ENOSPC.
                        if let Outcome::Failed(e) = self.flush(dev)? {
                            return Ok(Outcome::Failed(e));
                        }
                    }
                    if v + 1 < vblock.saturating_add(blocks) {
                        self.point();
                    }
                }
                Ok(Outcome::Ok)
            }
            KOp::Discard { dev, begin, end } => {
                let Some((th, mh)) = self.active.get(&dev) else {
                    return Ok(Outcome::Failed(Errno::ENODATA));
                };
                let h = Handles { engine: th, model: *mh };
                let r = agreed(lockstep::remove_range(&self.pool, &mut self.model, h, begin, end))?;
                if let Err(e) = r {
                    return Ok(Outcome::Failed(e));
                }
                self.flush(dev)
            }
            KOp::Flush { dev } => self.flush(dev),
            KOp::GrowData { blocks } => {
                self.commit()?; // the old table's postsuspend
                let r = agreed(lockstep::resize_data_dev(&self.pool, &mut self.model, blocks))?;
                if r.is_ok() {
                    self.data_blocks = blocks;
                }
                self.commit()?;
                Ok(outcome(r))
            }
            KOp::GrowMetadata { blocks } => {
                self.commit()?; // the old table's postsuspend
                self.grow_metadata(blocks)
            }
            KOp::ExhaustMeta { first_dev, limit } => self.exhaust(first_dev, limit),
            KOp::Checkpoint => {
                self.commit()?;
                self.compare("checkpoint")?;
                Ok(Outcome::Ok)
            }
        }
    }

    /// The resume of a larger metadata device: resize, then commit.
    fn grow_metadata(&mut self, blocks: u64) -> Res<Outcome> {
        // The model has no metadata size: the engine alone answers.
        let r = engine_result(self.pool.resize_metadata_dev(blocks));
        if r.is_ok() {
            self.metadata_blocks = blocks;
        }
        self.commit()?;
        Ok(outcome(r))
    }

    /// `create_thin` for `first_dev`, `first_dev + 1`, …, each committed, until the pool is
    /// out of metadata space (the engine's count, or the kernel's when hinted) or `limit`
    /// were created; the next message is refused. The devices are never activated.
    fn exhaust(&mut self, first_dev: u64, limit: u64) -> Res<Outcome> {
        let hint = self.exhaust_hints.pop_front();
        let mut created = 0u64;
        let mut engine_full_at = None;
        let refused = loop {
            let full = self.free_metadata_blocks()? == 0;
            if full && engine_full_at.is_none() {
                engine_full_at = Some(created);
            }
            match hint {
                Some(h) if created >= h.created => break h.refused,
                None if full => break true,
                _ if created >= limit => break false,
                _ => {}
            }
            let dev = first_dev + created;
            if let Err(e) = agreed(lockstep::create_thin(&self.pool, &mut self.model, dev))? {
                // Not a drawn case (the ids are the drawer's own range): the answer as is.
                return Ok(Outcome::Failed(e));
            }
            self.commit()?;
            created += 1;
            self.point();
        };
        self.exhausted = Some(Exhaustion {
            created,
            refused,
            engine_full_at,
            engine_free_after_blocks: self.free_metadata_blocks()?,
        });
        if !refused {
            return Ok(Outcome::Ok);
        }
        let _ro = agreed(lockstep::read_only(&self.pool, &mut self.model))?;
        self.degraded = Some(Degraded::OutOfMetadataSpace);
        // The pool has one mode: out-of-metadata-space replaces out-of-data-space, and the
        // growth that ends it returns to write mode, whatever the free data count (the next
        // allocation that finds none enters out-of-data-space again; benchmark seed 6).
        self.out_of_data_space = false;
        self.paths.push(FaultPath::MetadataExhausted);
        Ok(Outcome::Failed(Errno::EOPNOTSUPP))
    }

    fn flush(&mut self, dev: u64) -> Res<Outcome> {
        let Some((th, mh)) = self.active.get(&dev) else {
            return Ok(Outcome::Failed(Errno::ENODATA));
        };
        let h = Handles { engine: th, model: *mh };
        if self.out_of_data_space {
            // Out of data space, the pool target handles an empty flush as a write to
            // block 0 (spec §5.1 and reports/kernel/): unmapped there, it fails with ENOSPC
            // and nothing commits.
            let both = lockstep::find_block(&self.pool, &self.model, h, 0, true);
            if agreed(both)?.map(|l| l.data_block) == Err(Errno::ENODATA) {
                return Ok(Outcome::Failed(Errno::ENOSPC));
            }
        }
        if !self.commit_if_changed(dev)? {
            return Ok(Outcome::Failed(Errno::EIO));
        }
        Ok(Outcome::Ok)
    }

    /// A commit if `dev` (active) changed in this transaction; false if that commit failed.
    fn commit_if_changed(&mut self, dev: u64) -> Res<bool> {
        let (th, mh) = &self.active[&dev];
        let h = Handles { engine: th, model: *mh };
        if agreed(lockstep::thin_changed(&self.pool, &self.model, h))? == Ok(true) {
            return self.commit();
        }
        Ok(true)
    }

    /// One block of a write, as the pool target's worker handles its bio.
    fn write_block(&mut self, dev: u64, v: u64) -> Res<Outcome> {
        let Some((th, mh)) = self.active.get(&dev) else {
            return Ok(Outcome::Failed(Errno::ENODATA));
        };
        let h = Handles { engine: th, model: *mh };
        if v >= self.shape.virtual_blocks {
            // Beyond the thin device: the block layer refuses the write (dd sees ENOSPC).
            return Ok(Outcome::Failed(Errno::ENOSPC));
        }
        let both = lockstep::find_block(&self.pool, &self.model, h, v, true);
        match agreed(both)?.map(|l| l.shared) {
            Ok(false) => return Ok(Outcome::Ok),
            Ok(true) | Err(Errno::ENODATA) => {}
            Err(e) => return Ok(Outcome::Failed(e)),
        }
        if self.out_of_data_space {
            return Ok(Outcome::Failed(Errno::ENOSPC));
        }
        if self.free_data_blocks()? == 0 {
            self.commit()?;
            if self.free_data_blocks()? == 0 {
                self.out_of_data_space = true;
                return Ok(Outcome::Failed(Errno::ENOSPC));
            }
        }
        let block = match agreed(lockstep::alloc_data_block(&self.pool, &mut self.model))? {
            Ok(b) => b.expect("an agreed allocation names its block"),
            Err(e) => {
                if e == Errno::ENOSPC {
                    self.out_of_data_space = true;
                }
                return Ok(Outcome::Failed(e));
            }
        };
        // The pool target inserts the mapping when the prepared mapping is processed, on
        // a later pass of its worker; the pass that allocated may commit first (its clock),
        // so "allocated, not yet mapped" is a state a kernel commit can hold.
        self.point();
        let (th, mh) = &self.active[&dev];
        let h = Handles { engine: th, model: *mh };
        let r = agreed(lockstep::insert_block(&self.pool, &mut self.model, h, v, block))?;
        Ok(outcome(r))
    }

    /// An op while the pool is read-only or failed after a failed commit.
    fn apply_degraded(&mut self, op: &KOp, mode: Degraded) -> Res<Outcome> {
        if op.is_message() {
            if let KOp::Delete { dev } = *op {
                // The guest deactivates the device before it sends the message.
                self.deactivate(dev)?;
            }
            self.paths.push(FaultPath::MessageRefused);
            return Ok(Outcome::Failed(Errno::EOPNOTSUPP));
        }
        let dev = match *op {
            KOp::Write { dev, .. } | KOp::Discard { dev, .. } | KOp::Flush { dev } => dev,
            KOp::HealMeta => return self.heal(),
            _ => {
                let detail = format!("{} in {mode:?} mode", op.name());
                return Err(Divergence { call: "fault window", detail });
            }
        };
        if !self.active.contains_key(&dev) {
            return Ok(Outcome::Failed(Errno::ENODATA));
        }
        if let KOp::Write { vblock, .. } = *op {
            if vblock >= self.shape.virtual_blocks {
                // The block layer refuses it before the target sees it.
                return Ok(Outcome::Failed(Errno::ENOSPC));
            }
        }
        if mode == Degraded::Fail {
            self.paths.push(FaultPath::FailIo);
            return Ok(Outcome::Failed(Errno::EIO));
        }
        match *op {
            KOp::Write { dev, vblock, blocks, fua } => {
                for v in vblock..vblock.saturating_add(blocks) {
                    if v >= self.shape.virtual_blocks {
                        return Ok(Outcome::Failed(Errno::ENOSPC));
                    }
                    let (th, mh) = &self.active[&dev];
                    let h = Handles { engine: th, model: *mh };
                    let found = agreed(lockstep::find_block(&self.pool, &self.model, h, v, true))?;
                    if found.map(|l| l.shared) != Ok(false) {
                        // Unmapped or shared: it would need a new mapping.
                        self.paths.push(FaultPath::ReadOnlyWriteUnserviceable);
                        return Ok(Outcome::Failed(Errno::EIO));
                    }
                    self.paths.push(FaultPath::ReadOnlyWriteMapped);
                    if fua {
                        // O_DSYNC's empty flush after the write (see apply_op).
                        if let Outcome::Failed(e) = self.read_only_flush(dev)? {
                            return Ok(Outcome::Failed(e));
                        }
                    }
                }
                Ok(Outcome::Ok)
            }
            KOp::Discard { dev, .. } => {
                self.paths.push(FaultPath::ReadOnlyDiscard);
                self.read_only_flush(dev)
            }
            _ => self.read_only_flush(dev),
        }
    }

    /// An empty flush in read-only mode: the target handles it as a write to block 0, which
    /// goes through when mapped (nothing changed, so no commit) and fails with EIO when not.
    fn read_only_flush(&mut self, dev: u64) -> Res<Outcome> {
        let (th, mh) = &self.active[&dev];
        let h = Handles { engine: th, model: *mh };
        match agreed(lockstep::find_block(&self.pool, &self.model, h, 0, true))? {
            Ok(_) => {
                self.paths.push(FaultPath::ReadOnlyFlushMapped);
                Ok(Outcome::Ok)
            }
            Err(_) => {
                self.paths.push(FaultPath::ReadOnlyFlushUnmapped);
                Ok(Outcome::Failed(Errno::EIO))
            }
        }
    }

    /// Restore the metadata device and reopen the pool: the target's suspend and close
    /// commit (refused when degraded); what the metadata holds then is kept for the judge;
    /// the tools clear needs_check; the pool opens again on the last commit and the devices
    /// that were active are activated again.
    fn heal(&mut self) -> Res<Outcome> {
        let was_window = self.in_window();
        let mode = self.degraded;
        // The guest restores the metadata device before it suspends anything.
        self.fault = None;
        self.commit()?;
        self.healed = Some((self.model.clone(), mode));
        let needs_check = agreed(lockstep::needs_check(&self.pool, &self.model))? == Ok(true);
        self.paths.push(match (was_window, needs_check) {
            (false, _) => FaultPath::Reopen,
            (true, true) => FaultPath::HealClearedNeedsCheck,
            (true, false) => FaultPath::HealWithoutNeedsCheck,
        });
        let devs = self.devices();
        for dev in &devs {
            self.deactivate(*dev)?;
        }
        let reopen = |e: String| Divergence { call: "reopen", detail: e };
        let scratch = Pool::open(
            Box::new(MemoryDevice::new(engine::limits::MIN_METADATA_BLOCKS)),
            PoolOptions::new(self.shape.data_block_sectors),
        )
        .map_err(|e| reopen(e.to_string()))?;
        let old = std::mem::replace(&mut self.pool, scratch);
        let dev = old.close().map_err(|e| reopen(format!("{e:?}")))?;
        let opts =
            PoolOptions { may_format: false, ..PoolOptions::new(self.shape.data_block_sectors) };
        self.pool = Pool::open(dev, opts).map_err(|e| reopen(e.to_string()))?;
        self.pool.clear_needs_check().map_err(|e| reopen(e.to_string()))?;
        let _closed = self.model.close();
        self.model.clear_needs_check();
        self.degraded = None;
        self.out_of_data_space = false;
        for dev in devs {
            self.activate(dev)?;
        }
        self.compare("reopen")?;
        Ok(Outcome::Ok)
    }

    /// Compares a pool opened on the kernel's metadata with the model, in full.
    pub fn judge_image(&self, kernel: &Pool) -> Result<(), Mismatch> {
        oracle::compare_pool(kernel, &self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::faults::FaultPath as P;

    fn shape() -> PoolShape {
        PoolShape {
            data_block_sectors: 128,
            data_blocks: 64,
            metadata_blocks: 1024,
            virtual_blocks: 256,
            max_data_blocks: 64,
            max_metadata_blocks: 1024,
            prepopulation: None,
            features: Default::default(),
        }
    }

    fn run(em: &mut Emulation, op: KOp) -> (Outcome, Vec<FaultPath>) {
        assert_eq!(em.clock(&op), None, "{op:?}");
        assert_eq!(em.window_rule(&op), None, "{op:?}");
        let o = em.apply(&op).expect("no divergence");
        (o, em.take_paths())
    }

    fn setup(fault: MetaFault) -> Emulation {
        let mut em = Emulation::new(&shape()).expect("formats");
        for op in [
            KOp::CreateThin { dev: 1 },
            KOp::CreateThin { dev: 2 },
            KOp::Write { dev: 1, vblock: 0, blocks: 3, fua: false },
            KOp::Write { dev: 2, vblock: 5, blocks: 1, fua: false },
            KOp::Checkpoint,
        ] {
            run(&mut em, op);
        }
        assert_eq!(run(&mut em, KOp::FaultMeta { fault }).0, Outcome::Ok);
        em
    }

    /// Under `error_writes` the message's commit fails, the message still succeeds, its
    /// device is gone, and the read-only pool answers as the target does; the heal finds
    /// the last commit with needs_check and reopens the pool writable.
    #[test]
    fn a_failed_commit_goes_read_only_and_the_heal_reopens_the_last_commit() {
        let mut em = setup(MetaFault::ErrorWrites);
        let committed = em.model().committed().clone();
        // Under the fault, a write that provisions without FUA would be failed by the
        // periodic commit: refused as clock-dependent; a reserve is no trigger either.
        let w = KOp::Write { dev: 1, vblock: 9, blocks: 1, fua: false };
        assert_eq!(em.clock(&w), Some(ClockDependence::ChangeUnderFault));
        // An overwrite of an exclusively mapped block changes nothing: allowed.
        assert_eq!(em.clock(&KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: false }), None);
        assert_eq!(em.window_rule(&KOp::ReserveSnap), Some(WindowRule::ReserveUnderFault));
        let (o, p) = run(&mut em, KOp::CreateThin { dev: 7 });
        assert_eq!(o, Outcome::Failed(Errno::ENODATA), "the message succeeded, activation not");
        assert_eq!(p, vec![P::AbortToReadOnly, P::MessageCommitFailed, P::ActivateAborted]);
        assert_eq!(em.degraded(), Some(Degraded::ReadOnly));
        assert!(!em.model().devices().contains_key(&7), "aborted");
        let answers = [
            (KOp::Write { dev: 1, vblock: 1, blocks: 1, fua: true }, Outcome::Ok),
            (KOp::Write { dev: 1, vblock: 2, blocks: 2, fua: false }, Outcome::Failed(Errno::EIO)),
            (KOp::Flush { dev: 1 }, Outcome::Ok),
            (KOp::Flush { dev: 2 }, Outcome::Failed(Errno::EIO)),
            (KOp::Discard { dev: 1, begin: 0, end: 3 }, Outcome::Ok),
            (KOp::SetTransactionId { current: 0, new: 1 }, Outcome::Failed(Errno::EOPNOTSUPP)),
        ];
        for (op, want) in answers {
            assert_eq!(run(&mut em, op.clone()).0, want, "{op:?}");
        }
        assert_eq!(em.mapped(1), vec![0, 1, 2], "the discard changed nothing");
        assert_eq!(em.window_rule(&KOp::Checkpoint), Some(WindowRule::SuspendInWindow));
        let nested = KOp::FaultMeta { fault: MetaFault::ErrorAll };
        assert_eq!(em.window_rule(&nested), Some(WindowRule::NestedFault));
        // Degraded, a reserve is refused by the pool like any message, not by the window.
        assert_eq!(run(&mut em, KOp::ReserveSnap).0, Outcome::Failed(Errno::EOPNOTSUPP));
        let (o, p) = run(&mut em, KOp::HealMeta);
        assert_eq!((o, p), (Outcome::Ok, vec![P::HealClearedNeedsCheck]));
        let (image, mode) = em.take_healed().expect("a heal keeps its image");
        assert_eq!(mode, Some(Degraded::ReadOnly));
        assert_eq!(image.needs_check(), Ok(true));
        assert_eq!(image.committed(), &committed);
        assert_eq!(em.model().needs_check(), Ok(false));
        assert!(!em.in_window());
        assert_eq!(run(&mut em, KOp::CreateThin { dev: 7 }).0, Outcome::Ok, "writable again");
    }

    /// Under `error_writes` a FUA write that provisions is the failing commit's own, and
    /// fails with EIO.
    #[test]
    fn a_fua_write_fails_with_its_commit() {
        let mut em = setup(MetaFault::ErrorWrites);
        let (o, p) = run(&mut em, KOp::Write { dev: 2, vblock: 40, blocks: 2, fua: true });
        assert_eq!(o, Outcome::Failed(Errno::EIO));
        assert_eq!(p, vec![P::AbortToReadOnly, P::FuaWriteCommitFailed]);
        assert_eq!(em.mapped(2), vec![5], "the provisioned block was aborted");
    }

    /// Under `error_all` the abort fails too: fail mode, where every bio fails; nothing
    /// sets needs_check. Before the pool degrades, only ops that read no metadata may run
    /// (what is cached is the kernel's).
    #[test]
    fn a_failed_abort_goes_to_fail_mode() {
        let mut em = setup(MetaFault::ErrorAll);
        for op in [
            KOp::ReleaseSnap,
            KOp::CreateThin { dev: 9 },
            KOp::Write { dev: 2, vblock: 40, blocks: 2, fua: true },
        ] {
            assert_eq!(em.window_rule(&op), Some(WindowRule::ReadUnderErrorAll), "{op:?}");
        }
        let (o, p) = run(&mut em, KOp::SetTransactionId { current: 0, new: 1 });
        assert_eq!((o, p), (Outcome::Ok, vec![P::AbortFailedToFail, P::MessageCommitFailed]));
        assert_eq!(em.model().current().trans_id, 0, "aborted");
        for op in [
            KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: false },
            KOp::Flush { dev: 1 },
            KOp::Discard { dev: 2, begin: 0, end: 8 },
        ] {
            assert_eq!(run(&mut em, op), (Outcome::Failed(Errno::EIO), vec![P::FailIo]));
        }
        let (o, p) = run(&mut em, KOp::CreateSnap { dev: 9, origin: 1 });
        assert_eq!((o, p), (Outcome::Failed(Errno::EOPNOTSUPP), vec![P::MessageRefused]));
        assert_eq!(run(&mut em, KOp::HealMeta).1, vec![P::HealWithoutNeedsCheck]);
        let (image, mode) = em.take_healed().expect("kept");
        assert_eq!((mode, image.needs_check()), (Some(Degraded::Fail), Ok(false)));
        // Out of a window a heal is a plain reopen.
        assert_eq!(run(&mut em, KOp::HealMeta).1, vec![P::Reopen]);
    }

    /// Out of data space, a commit that finds no free block leaves the pool there: the
    /// flush of a device whose block 0 is unmapped still fails with ENOSPC.
    #[test]
    fn a_commit_without_free_blocks_stays_out_of_data_space() {
        let mut em = Emulation::new(&PoolShape { data_blocks: 4, max_data_blocks: 4, ..shape() })
            .expect("formats");
        run(&mut em, KOp::CreateThin { dev: 1 });
        run(&mut em, KOp::CreateThin { dev: 2 });
        let full = run(&mut em, KOp::Write { dev: 1, vblock: 1, blocks: 5, fua: false });
        assert_eq!(full.0, Outcome::Failed(Errno::ENOSPC));
        assert!(em.out_of_data_space());
        assert_eq!(run(&mut em, KOp::SetTransactionId { current: 0, new: 1 }).0, Outcome::Ok);
        assert!(em.out_of_data_space(), "the commit found no free block");
        assert_eq!(run(&mut em, KOp::Flush { dev: 2 }).0, Outcome::Failed(Errno::ENOSPC));
        // A delete frees device 1's blocks and commits: the commit finds them.
        assert_eq!(run(&mut em, KOp::Delete { dev: 1 }).0, Outcome::Ok);
        assert!(!em.out_of_data_space(), "the delete's commit found free blocks");
    }

    /// Under an armed fault an overwrite of a block shared with a snapshot needs a new
    /// mapping: without FUA its failing commit would be the periodic one.
    #[test]
    fn an_overwrite_of_a_shared_block_under_a_fault_is_clock_dependent() {
        let mut em = Emulation::new(&shape()).expect("formats");
        for op in [
            KOp::CreateThin { dev: 1 },
            KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: false },
            KOp::CreateSnap { dev: 3, origin: 1 },
            KOp::Checkpoint,
            KOp::FaultMeta { fault: MetaFault::ErrorWrites },
        ] {
            run(&mut em, op);
        }
        let over = KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: false };
        assert_eq!(em.clock(&over), Some(ClockDependence::ChangeUnderFault));
        // A discard that unmaps changes metadata too; one over nothing does not.
        let unmaps = KOp::Discard { dev: 1, begin: 0, end: 1 };
        assert_eq!(em.clock(&unmaps), Some(ClockDependence::ChangeUnderFault));
        assert_eq!(em.clock(&KOp::Discard { dev: 1, begin: 5, end: 9 }), None);
    }

    /// Under an armed fault, with no free data block, even a FUA write that provisions
    /// would have to commit before it allocates: refused.
    #[test]
    fn a_fua_write_with_no_free_block_under_a_fault_is_clock_dependent() {
        let mut em = Emulation::new(&PoolShape { data_blocks: 4, max_data_blocks: 4, ..shape() })
            .expect("formats");
        for op in [
            KOp::CreateThin { dev: 1 },
            KOp::Write { dev: 1, vblock: 0, blocks: 4, fua: false },
            KOp::Checkpoint,
            KOp::FaultMeta { fault: MetaFault::ErrorWrites },
        ] {
            run(&mut em, op);
        }
        assert!(!em.out_of_data_space(), "full, not yet out of space");
        let w = KOp::Write { dev: 1, vblock: 9, blocks: 1, fua: true };
        assert_eq!(em.clock(&w), Some(ClockDependence::ChangeUnderFault));
    }

    /// A pool with a metadata device of 128 blocks (a reserve of 12), device 1 with two
    /// blocks, committed.
    fn small() -> Emulation {
        let mut em = Emulation::new(&PoolShape {
            metadata_blocks: 128,
            max_metadata_blocks: 128 + 1024,
            ..shape()
        })
        .expect("formats");
        for op in [
            KOp::CreateThin { dev: 1 },
            KOp::Write { dev: 1, vblock: 0, blocks: 2, fua: false },
            KOp::Checkpoint,
        ] {
            run(&mut em, op);
        }
        em
    }

    const FILL: u64 = 1 << 23;

    /// Creates fill the metadata until the free count less the reserve is 0: the pool is
    /// then read-only without needs_check, the fillers exist but are never active, and a
    /// metadata growth takes the pool back to write mode.
    #[test]
    fn an_exhaustion_fills_the_metadata_and_a_growth_ends_it() {
        let mut em = small();
        let free = em.free_metadata_blocks().expect("counts");
        let limit = free + 64;
        let (o, p) = run(&mut em, KOp::ExhaustMeta { first_dev: FILL, limit });
        assert_eq!((o, p), (Outcome::Failed(Errno::EOPNOTSUPP), vec![P::MetadataExhausted]));
        let x = em.take_exhausted().expect("kept");
        assert!(x.refused && x.engine_full_at == Some(x.created) && x.drift() == 0, "{x:?}");
        assert!((1..=free).contains(&x.created), "each create takes a block: {x:?}, {free}");
        assert_eq!(em.free_metadata_blocks(), Ok(0));
        assert_eq!(em.model().committed().devices.len() as u64, 1 + x.created);
        assert!(em.model().committed().devices.contains_key(&(FILL + x.created - 1)));
        assert_eq!(em.devices(), vec![1], "the fillers are never active");
        assert_eq!(em.degraded(), Some(Degraded::OutOfMetadataSpace));
        let answers = [
            (KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: true }, Outcome::Ok),
            (KOp::Write { dev: 1, vblock: 9, blocks: 1, fua: false }, Outcome::Failed(Errno::EIO)),
            (KOp::Flush { dev: 1 }, Outcome::Ok),
            (KOp::Discard { dev: 1, begin: 0, end: 2 }, Outcome::Ok),
            (KOp::CreateThin { dev: 2 }, Outcome::Failed(Errno::EOPNOTSUPP)),
        ];
        for (op, want) in answers {
            assert_eq!(run(&mut em, op.clone()).0, want, "{op:?}");
        }
        assert_eq!(em.mapped(1), vec![0, 1], "the discard changed nothing");
        assert_eq!(em.model().needs_check(), Ok(false), "nothing was aborted");
        for (op, rule) in [
            (KOp::Checkpoint, WindowRule::OutOfMetadataSpace),
            (KOp::GrowData { blocks: 64 }, WindowRule::OutOfMetadataSpace),
            (KOp::HealMeta, WindowRule::OutOfMetadataSpace),
            (KOp::FaultMeta { fault: MetaFault::ErrorWrites }, WindowRule::NestedFault),
            (KOp::ExhaustMeta { first_dev: 2, limit: 1 }, WindowRule::NestedFault),
        ] {
            assert_eq!(em.window_rule(&op), Some(rule), "{op:?}");
        }
        let (o, p) = run(&mut em, KOp::GrowMetadata { blocks: 128 + 1024 });
        assert_eq!((o, p), (Outcome::Ok, vec![P::GrowLeftOutOfMetadataSpace]));
        assert!(!em.in_window() && em.free_metadata_blocks().expect("counts") > 0);
        assert_eq!(em.metadata_blocks(), 128 + 1024);
        assert_eq!(run(&mut em, KOp::CreateThin { dev: 2 }).0, Outcome::Ok, "writable again");
        let w = KOp::Write { dev: 1, vblock: 9, blocks: 1, fua: true };
        assert_eq!(run(&mut em, w).0, Outcome::Ok);
    }

    /// Out of data space, an exhaustion replaces that mode, and the growth that ends it
    /// leaves the pool in write mode: a flush of a device whose block 0 is unmapped then
    /// succeeds; the next write that needs a block finds none and enters out-of-data-space.
    #[test]
    fn the_growth_after_an_exhaustion_leaves_write_mode_not_out_of_data_space() {
        let mut em = Emulation::new(&PoolShape {
            data_blocks: 4,
            max_data_blocks: 4,
            metadata_blocks: 128,
            max_metadata_blocks: 128 + 1024,
            ..shape()
        })
        .expect("formats");
        run(&mut em, KOp::CreateThin { dev: 1 });
        run(&mut em, KOp::CreateThin { dev: 2 });
        let full = run(&mut em, KOp::Write { dev: 1, vblock: 1, blocks: 6, fua: false });
        assert_eq!(full.0, Outcome::Failed(Errno::ENOSPC));
        run(&mut em, KOp::Checkpoint);
        assert!(em.out_of_data_space());
        let (o, _) = run(&mut em, KOp::ExhaustMeta { first_dev: FILL, limit: 200 });
        assert_eq!(o, Outcome::Failed(Errno::EOPNOTSUPP));
        assert!(!em.out_of_data_space(), "one mode: out of metadata space");
        run(&mut em, KOp::GrowMetadata { blocks: 128 + 1024 });
        assert!(!em.out_of_data_space() && !em.in_window());
        assert_eq!(run(&mut em, KOp::Flush { dev: 2 }).0, Outcome::Ok, "write mode's flush");
        let w = KOp::Write { dev: 2, vblock: 7, blocks: 1, fua: false };
        assert_eq!(run(&mut em, w).0, Outcome::Failed(Errno::ENOSPC));
        assert!(em.out_of_data_space());
    }

    /// Hinted, an exhaustion creates the kernel's count, refused or not, and keeps the
    /// engine's own count beside it.
    #[test]
    fn a_hinted_exhaustion_follows_the_kernels_count() {
        let mut own = small();
        let free = own.free_metadata_blocks().expect("counts");
        run(&mut own, KOp::ExhaustMeta { first_dev: FILL, limit: free + 64 });
        let x = own.take_exhausted().expect("kept");
        let cases = [
            // The kernel filled up 3 creates earlier: the engine had room for more.
            (x.created - 3, true, free + 64, Outcome::Failed(Errno::EOPNOTSUPP)),
            // 2 later (within the reserve): the engine was full 2 creates before.
            (x.created + 2, true, free + 64, Outcome::Failed(Errno::EOPNOTSUPP)),
            // The limit reached with nothing refused: the pool stays writable.
            (x.created + 2, false, x.created + 2, Outcome::Ok),
        ];
        // Unhinted, the limit ends it first when the engine has room for more.
        let mut short = small();
        let (o, _) = run(&mut short, KOp::ExhaustMeta { first_dev: FILL, limit: 3 });
        let y = short.take_exhausted().expect("kept");
        assert_eq!((o, y.created, y.refused, short.degraded()), (Outcome::Ok, 3, false, None));
        for (created, refused, limit, want) in cases {
            let mut em = small();
            em.hint(&[ExhaustHint { created, refused }]);
            let (o, _) = run(&mut em, KOp::ExhaustMeta { first_dev: FILL, limit });
            let y = em.take_exhausted().expect("kept");
            assert_eq!((o, y.created, y.refused), (want, created, refused));
            assert_eq!(em.degraded().is_some(), refused);
            if created < x.created {
                assert_eq!(y.engine_full_at, None);
                assert!(y.drift() >= 3, "{y:?}");
            } else {
                assert_eq!((y.engine_full_at, y.drift()), (Some(x.created), 2));
            }
        }
    }
}
