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
//! Invariants: the engine and the model give the same answer to every call (a difference
//! is a [`Divergence`], which ends the run: the two can no longer be compared with the
//! kernel); every open handle belongs to a device that exists in both.

use super::workload::{KOp, PoolShape};
use crate::runner::errno;
use crate::runner::lockstep::{self, Both, Handles};
use crate::runner::oracle::{self, Mismatch};
use engine::io::MemoryDevice;
use engine::thin::{Pool, PoolOptions, ThinHandle};
use model::{Errno, Model};
use std::collections::BTreeMap;

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
        })
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
            KOp::Checkpoint
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

    fn commit(&mut self) -> Res<()> {
        agreed(lockstep::commit(&self.pool, &mut self.model))?.map_err(|e| Divergence {
            call: "commit",
            detail: format!("both failed with {e:?}"),
        })?;
        self.commits += 1;
        if self.out_of_data_space && self.free_data_blocks()? > 0 {
            self.out_of_data_space = false;
        }
        Ok(())
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

    /// A message: on success the pool target commits.
    fn message(&mut self, r: Result<(), Errno>) -> Res<Outcome> {
        if r.is_ok() {
            self.commit()?;
        }
        Ok(outcome(r))
    }

    /// Applies one op; the answer userspace is expected to see.
    pub fn apply(&mut self, op: &KOp) -> Res<Outcome> {
        let r = self.apply_op(op);
        self.point();
        r
    }

    fn apply_op(&mut self, op: &KOp) -> Res<Outcome> {
        match *op {
            KOp::CreateThin { dev } => {
                let r = agreed(lockstep::create_thin(&self.pool, &mut self.model, dev))?;
                let out = self.message(r)?;
                if out == Outcome::Ok {
                    self.activate(dev)?;
                }
                Ok(out)
            }
            KOp::CreateSnap { dev, origin } => {
                let r = agreed(lockstep::create_snap(&self.pool, &mut self.model, dev, origin))?;
                let out = self.message(r)?;
                if out == Outcome::Ok {
                    self.activate(dev)?;
                }
                Ok(out)
            }
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
                        // transaction (the pool target's bio_triggers_commit).
                        self.commit_if_changed(dev)?;
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
                self.commit()?;
                // The model has no metadata size: the engine alone answers.
                let r = engine_result(self.pool.resize_metadata_dev(blocks));
                if r.is_ok() {
                    self.metadata_blocks = blocks;
                }
                self.commit()?;
                Ok(outcome(r))
            }
            KOp::Checkpoint => {
                self.commit()?;
                self.compare("checkpoint")?;
                Ok(Outcome::Ok)
            }
        }
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
        self.commit_if_changed(dev)?;
        Ok(Outcome::Ok)
    }

    /// A commit if `dev` (active) changed in this transaction.
    fn commit_if_changed(&mut self, dev: u64) -> Res<()> {
        let (th, mh) = &self.active[&dev];
        let h = Handles { engine: th, model: *mh };
        if agreed(lockstep::thin_changed(&self.pool, &self.model, h))? == Ok(true) {
            self.commit()?;
        }
        Ok(())
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

    /// Compares a pool opened on the kernel's metadata with the model, in full.
    pub fn judge_image(&self, kernel: &Pool) -> Result<(), Mismatch> {
        oracle::compare_pool(kernel, &self.model)
    }
}
