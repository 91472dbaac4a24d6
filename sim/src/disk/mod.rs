//! The simulated metadata disk: an [`engine::io::BlockDevice`] with a volatile write cache,
//! crashes, and seeded fault injection.
//!
//! # Fault model
//!
//! The disk injects only what the engine claims to survive. Every fault is tagged with the
//! outcome class the oracle enforces (DESIGN §5): **A** must recover exactly, **B** must
//! detect or recover and never lie, **C** errors are values.
//!
//! - **Volatile write cache (A).** An accepted write is *pending* until a flush, or until it
//!   returns if it was a FUA write. Reads see the newest data written (the cache serves it).
//!   `crash()` keeps any subset of the pending writes, each applied whole, dropped, or torn,
//!   applied in any order, so an older pending version of a block may land over a newer one.
//!   The durable image is then what the rebooted engine sees; the same disk keeps serving.
//!   A flush destages every pending write in issue order; a FUA write destages that write
//!   alone and supersedes older cached writes to its block.
//! - **Torn writes.** A crash tears at the atomic unit (512 B by default; 1 or 2 KiB; 4 KiB =
//!   never torn): each unit of the block is old or new (A). With `subsector_tears`, a tear
//!   may also cut inside a sector, old bytes after new ones, or split a larger unit (B).
//! - **Lost write (B).** Accepted and readable from the cache, but never reaches the media:
//!   dropped silently at flush or crash; once flushed, reads see the media's older data.
//! - **Misdirected write (B).** Readable at its own block from the cache; destaged onto
//!   another, random block (which it overwrites, or tears when a crash tears it), so after
//!   the flush its own block reads old data and the victim reads the misdirected data.
//! - **Bit rot (B).** When a block with no cached write is read, one bit of its durable copy
//!   may flip first; the flip persists until the block is rewritten.
//! - **Latent sector error (C).** When a block with no cached write is read, it may turn
//!   unreadable: that read and every later read that reaches the media fail with EIO until
//!   a write to the block is destaged.
//! - **Transient EIO (C)** on read, write or flush: the call fails, nothing changes; a failed
//!   write is not accepted, a failed flush leaves every write pending.
//! - **Full device (C).** The runner chooses small devices (`nr_blocks`) on purpose; on top
//!   of that `backed_blocks` makes writes to blocks at or beyond it fail with EIO, as on a
//!   metadata volume whose backing store ran out. Reads of those blocks still work.
//! - **Power loss (A)**, `--crash-at`: [`SimDisk::set_crash_at_io`]`(n)` makes the I/O call
//!   with ordinal `n` (1-based, over every read, write, FUA write and flush since the disk
//!   was made; an ordinal already passed means the next call) fail with
//!   [`POWER_LOSS_DETAIL`], and every later call too, until [`SimDisk::crash`]. A write cut
//!   this way is still accepted into the cache: like any pending write it may or may not
//!   reach the media. The runner then calls `crash()`.
//!
//! Errors are [`IoErrorKind::Device`] (EIO) with a detail naming the injected fault; blocks
//! beyond the end return [`IoErrorKind::OutOfRange`]. No call sequence panics.
//!
//! # Coverage, exploration, replay
//! Every injected fault, including each crash outcome (a dropped or torn write, an older
//! version winning), is counted in [`FaultCoverage`] under (fault kind, kind of block hit as
//! classified from its bytes, in commit, metadata snapshot held), with the phase the runner
//! set through [`SimDisk::set_phase`], and logged as a [`FaultEvent`] carrying its class.
//! `crash()` returns a [`CrashReport`] whose [`CrashPlan`] replays the same crash through
//! `crash_with`. `pending_writes`, `image_with` and `explore` enumerate crash images without
//! touching the disk or its RNG; each crash and each exploration counts one crash point.
//! Every fault decision is also a value ([`Planned`] at an I/O ordinal): `take_planned`
//! returns those made, and `set_fault_script` makes the disk take its decisions from a
//! script instead of its RNG, so a recorded or edited plan replays (see `plan`).
//!
//! # Invariants
//! - One [`Entropy`] stream (seeded ChaCha, or a fuzzer's bytes) drives every decision; no
//!   clock, no hash-map order. The same seed (or bytes) and call sequence give the same
//!   results, images and [`SimDisk::trace_hash`].
//! - `newest[b]` is the data of the latest pending write issued to `b`, or else the very
//!   same `Arc` as the durable block; so "the cache holds `b`" is `!ptr_eq`.
//! - After a successful flush nothing is pending and the newest view equals the durable
//!   image; after `crash()` likewise, and the disk is powered on.
//! - Pending writes are in strictly increasing `seq` order; every block they name is in range.
//! - [`SimDisk::set_faults_enabled`]`(false)` stops every class B and C injection (and repairs
//!   latent sector errors, as a replaced disk would); crashes stay class A.

mod config;
mod coverage;
mod crash;
mod expect;
mod explore;
mod image;
mod plan;
mod trace_hash;

pub use config::{AtomicUnit, ConfigError, CrashPolicy, DiskConfig, FaultRates, PPM};
pub use coverage::{
    cells_as_list, CoverageKey, Exposure, ExposureKey, FaultClass, FaultCoverage, FaultEvent,
    FaultKind, FaultLog, HitKind, IoKind, Phase, MAX_FAULT_EVENTS,
};
pub use crash::{cut, CrashOutcome, CrashReport};
pub use expect::{expected_cells, expected_faults};
pub use explore::{CrashState, CrashStates, ExploreOptions, TearSet};
pub use image::{
    content_hash, CrashPlan, MemoryImage, PendingWrite, PlanError, SubsectorCut, Tear, WriteChoice,
    WriteFate, SECTORS_PER_BLOCK,
};
pub use plan::{AtIo, Planned};
pub use trace_hash::{hash_block, IoStats};

use crate::entropy::Entropy;
use engine::io::{Block, BlockDevice, IoError, IoErrorKind, IoOp};
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use trace_hash::{TraceHash, TraceOp};

/// Largest simulated device: 4 Mi blocks (16 GiB), above the format's 4,161,600-block limit.
pub const MAX_SIM_BLOCKS: u64 = 1 << 22;

/// Detail of the error every I/O returns once power is lost.
pub const POWER_LOSS_DETAIL: &str = "simulated power loss";

/// Whether `e` is the simulated power loss of `--crash-at`.
pub fn is_power_loss(e: &IoError) -> bool {
    e.kind == IoErrorKind::Device && e.detail == POWER_LOSS_DETAIL
}

/// The simulated disk. Cloning is cheap (blocks are shared) and the clone continues the same
/// random stream, so a runner can try many futures from one point.
#[derive(Clone)]
pub struct SimDisk {
    config: DiskConfig,
    rng: Entropy,
    durable: MemoryImage,
    newest: engine::io::BlockVec,
    pending: Vec<PendingWrite>,
    next_seq: u64,
    latent: BTreeSet<u64>,
    faults_enabled: bool,
    phase: Phase,
    crash_at: Option<u64>,
    powered_off: bool,
    stats: IoStats,
    trace: TraceHash,
    coverage: FaultCoverage,
    exposure: Exposure,
    log: FaultLog,
    /// Where fault decisions come from (the RNG or a script), and the log of them.
    faults: plan::FaultSource,
    /// The I/O ordinal of every flush call: where the flush epochs end.
    flush_ordinals: Vec<u64>,
}

/// What the power-loss gate says about the current I/O call.
enum Gate {
    On,
    /// Power fails at this call.
    FailsNow,
    /// Power failed earlier.
    Off,
}

impl SimDisk {
    /// A zero-filled disk of `nr_blocks` blocks; refused beyond [`MAX_SIM_BLOCKS`] or with a
    /// config that does not validate ([`DiskConfig::validate`]), never clamped.
    pub fn new(nr_blocks: u64, config: DiskConfig, seed: u64) -> Result<Self, ConfigError> {
        SimDisk::with_entropy(nr_blocks, config, Entropy::seeded(seed))
    }

    /// [`SimDisk::new`] drawing its faults from `rng` (the fuzzer's bytes, say).
    pub fn with_entropy(
        nr_blocks: u64,
        config: DiskConfig,
        rng: Entropy,
    ) -> Result<Self, ConfigError> {
        if nr_blocks > MAX_SIM_BLOCKS {
            return Err(ConfigError::TooLarge { nr_blocks, max: MAX_SIM_BLOCKS });
        }
        SimDisk::from_image(MemoryImage::new(nr_blocks), config, rng)
    }

    /// A disk whose durable contents are `image` (e.g. a crash image found by `explore`).
    pub fn from_image(
        image: MemoryImage,
        config: DiskConfig,
        rng: Entropy,
    ) -> Result<Self, ConfigError> {
        let nr_blocks = image.nr_blocks();
        if nr_blocks > MAX_SIM_BLOCKS {
            return Err(ConfigError::TooLarge { nr_blocks, max: MAX_SIM_BLOCKS });
        }
        config.validate()?;
        Ok(SimDisk {
            config,
            rng,
            newest: image.shared_blocks(),
            durable: image,
            pending: Vec::new(),
            next_seq: 0,
            latent: BTreeSet::new(),
            faults_enabled: true,
            phase: Phase::IDLE,
            crash_at: None,
            powered_off: false,
            stats: IoStats::default(),
            trace: TraceHash::default(),
            coverage: FaultCoverage::default(),
            exposure: Exposure::default(),
            log: FaultLog::default(),
            faults: plan::FaultSource::default(),
            flush_ordinals: Vec::new(),
        })
    }

    pub fn config(&self) -> &DiskConfig {
        &self.config
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Labels the faults injected from now on (coverage).
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Switches class B and C injection on or off. Switching off also repairs latent sector
    /// errors, so that "after faults stop, reopen gives the last committed state" can hold.
    pub fn set_faults_enabled(&mut self, enabled: bool) {
        self.faults_enabled = enabled;
        if !enabled {
            self.latent.clear();
        }
    }

    pub fn faults_enabled(&self) -> bool {
        self.faults_enabled
    }

    /// Arms power loss at I/O ordinal `n` (see the module header); replaces any earlier arm.
    /// For "k calls from now" use `set_crash_at_io(disk.stats().io_calls() + k)`. A crash or
    /// `restore_durable` before it fires disarms it.
    pub fn set_crash_at_io(&mut self, n: u64) {
        self.crash_at = Some(n);
    }

    /// The I/O ordinal of every flush call so far (1-based, as `set_crash_at_io` counts).
    pub fn flush_ordinals(&self) -> &[u64] {
        &self.flush_ordinals
    }

    /// The I/O ordinal power loss is armed at, if any.
    pub fn crash_armed_at(&self) -> Option<u64> {
        self.crash_at
    }

    /// Disarms `set_crash_at_io` (power already lost stays lost until `crash`).
    pub fn clear_crash_at(&mut self) {
        self.crash_at = None;
    }

    /// Whether power was lost and every I/O fails until `crash()`.
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    /// Writes accepted and not yet destaged, in issue order.
    pub fn pending_writes(&self) -> &[PendingWrite] {
        &self.pending
    }

    /// What survives power loss right now.
    pub fn durable_image(&self) -> MemoryImage {
        self.durable.clone()
    }

    /// The newest contents of `block` as a read would see them, without I/O or faults.
    pub fn peek(&self, block: u64) -> Option<&Block> {
        let i = usize::try_from(block).ok()?;
        self.newest.get(i).map(|b| &**b)
    }

    /// Whether `block` currently has a latent sector error.
    pub fn is_latent(&self, block: u64) -> bool {
        self.latent.contains(&block)
    }

    pub fn stats(&self) -> &IoStats {
        &self.stats
    }

    /// Hash of every I/O, fault and crash so far (equal for equal seeds and call sequences).
    pub fn trace_hash(&self) -> u64 {
        self.trace.value()
    }

    pub fn coverage(&self) -> &FaultCoverage {
        &self.coverage
    }

    /// I/O calls that drew each per-I/O fault chance, per coverage cell.
    pub fn exposure(&self) -> &Exposure {
        &self.exposure
    }

    /// The faults injected since the last take, and starts a new log.
    pub fn take_fault_log(&mut self) -> FaultLog {
        std::mem::take(&mut self.log)
    }

    /// From now on every fault decision comes from `script` (see [`Planned`]), none from the
    /// RNG; replaces any earlier script. Entries for calls already made are ignored.
    pub fn set_fault_script(&mut self, script: Vec<AtIo>) {
        self.faults.set_script(script);
    }

    /// Every fault decision made since the last take (drawn or scripted), with its I/O
    /// ordinal: the plan that replays them.
    pub fn take_planned(&mut self) -> Vec<AtIo> {
        self.faults.take_log()
    }

    /// The image a crash would leave with `choices` (one per pending write, applied in issue
    /// order). Pure: the disk, its RNG and its counters are untouched.
    pub fn image_with(&self, choices: &[WriteChoice]) -> Result<MemoryImage, PlanError> {
        self.image_with_plan(&CrashPlan::in_issue_order(choices.to_vec()))
    }

    /// The image a crash would leave with `plan`. Pure, like `image_with`.
    pub fn image_with_plan(&self, plan: &CrashPlan) -> Result<MemoryImage, PlanError> {
        plan.validate(self.pending.len())?;
        let mut image = self.durable.clone();
        image::apply_validated(&mut image, &self.pending, plan);
        Ok(image)
    }

    /// Every crash state reachable from here (sampled above `opts.max_images`). Counts one
    /// crash point and the images planned; the disk itself is unchanged.
    pub fn explore(&mut self, opts: &ExploreOptions) -> CrashStates {
        let states = CrashStates::new(
            self.durable.clone(),
            self.pending.clone(),
            self.config.atomic_unit,
            opts,
        );
        self.coverage.record_crash_point(states.planned());
        states
    }

    /// Replaces the durable image (the disk "reboots" onto it): nothing pending, power on,
    /// no latent errors (a fresh medium). The RNG and counters continue.
    pub fn restore_durable(&mut self, image: MemoryImage) -> Result<(), PlanError> {
        if image.nr_blocks() != self.durable.nr_blocks() {
            let (image, disk) = (image.nr_blocks(), self.durable.nr_blocks());
            return Err(PlanError::SizeMismatch { image, disk });
        }
        self.durable = image;
        self.reboot();
        self.latent.clear();
        self.trace.event(TraceOp::Restore, self.durable.nr_blocks(), 0, 0);
        Ok(())
    }

    /// Power loss: applies a crash drawn from the disk's RNG under the config's crash policy,
    /// then reboots (nothing pending, power on).
    /// With a fault script, the next scripted plan fitted to the pending writes instead.
    pub fn crash(&mut self) -> CrashReport {
        let plan = if self.faults.is_scripted() {
            let scripted = self.faults.scripted_crash();
            let empty = || CrashPlan::in_issue_order(Vec::new());
            plan::fit(&scripted.unwrap_or_else(empty), &self.pending)
        } else {
            let subsector = self.config.subsector_tears && self.faults_enabled;
            crash::draw_plan(&mut self.rng, &self.pending, &self.config, subsector)
        };
        self.faults.log(self.stats.io_calls(), Planned::Crash(plan.clone()));
        self.crash_validated(plan)
    }

    /// Power loss with a given plan (replay of a saved crash, or a shrunk one).
    pub fn crash_with(&mut self, plan: &CrashPlan) -> Result<CrashReport, PlanError> {
        plan.validate(self.pending.len())?;
        self.faults.log(self.stats.io_calls(), Planned::Crash(plan.clone()));
        Ok(self.crash_validated(plan.clone()))
    }

    fn crash_validated(&mut self, plan: CrashPlan) -> CrashReport {
        let policy = &self.config.crash;
        if u64::from(policy.apply_ppm) + u64::from(policy.tear_ppm) < u64::from(PPM) {
            for w in self.pending.iter().filter(|w| w.fate() != WriteFate::Lost) {
                self.exposure.add(IoKind::CrashPending, HitKind::of(w.data()), &self.phase);
            }
        }
        let stale = image::apply_validated(&mut self.durable, &self.pending, &plan);
        let pending = std::mem::take(&mut self.pending);
        let mut outcomes = Vec::with_capacity(pending.len());
        for ((w, choice), stale) in pending.iter().zip(&plan.choices).zip(stale) {
            outcomes.push(self.crash_outcome(w, *choice, stale));
        }
        self.stats.crashes += 1;
        self.coverage.record_crash_point(1);
        self.trace.event(TraceOp::Crash, outcomes.len() as u64, self.stats.crashes, 0);
        for (position, &i) in plan.order.iter().enumerate() {
            self.trace.event(TraceOp::CrashOrder, position as u64, i as u64, 0);
        }
        self.reboot();
        self.debug_check("after a crash");
        CrashReport { plan, outcomes, phase: self.phase.label }
    }

    /// Records one write's crash outcome in coverage and the trace.
    fn crash_outcome(
        &mut self,
        w: &PendingWrite,
        choice: WriteChoice,
        stale: bool,
    ) -> CrashOutcome {
        let lost = w.fate() == WriteFate::Lost;
        let fault = match choice {
            WriteChoice::Apply => None,
            WriteChoice::Drop => Some(FaultKind::CrashDrop),
            WriteChoice::Tear(t) => Some(t.fault_kind(self.config.atomic_unit)),
        };
        // A lost write's loss was counted when it was issued; its crash choice changes nothing.
        let fault = if lost { None } else { fault };
        let hit = (fault.is_some() || stale).then(|| HitKind::of(w.data()));
        if let (Some(fault), Some(hit)) = (fault, hit) {
            self.record(fault, Some(w.block()), hit);
        }
        if let (true, Some(hit)) = (stale, hit) {
            self.record(FaultKind::StaleVersion, Some(w.block()), hit);
        }
        let code = match choice {
            WriteChoice::Drop => 0,
            WriteChoice::Apply => 1,
            WriteChoice::Tear(t) => {
                let cut = t.cut.map_or(0, |c| u64::from(c.sector) << 16 | u64::from(c.new_bytes));
                2 + u64::from(t.sectors_new) + (cut << 8)
            }
        };
        self.trace.event(TraceOp::CrashChoice, w.seq(), code, u64::from(stale));
        CrashOutcome { seq: w.seq(), block: w.block(), fate: w.fate(), choice, stale, fault, hit }
    }

    /// Back to a powered-on disk whose cache is empty.
    fn reboot(&mut self) {
        self.pending.clear();
        self.newest = self.durable.shared_blocks();
        self.powered_off = false;
        self.crash_at = None;
    }

    /// The paranoid mode: [`SimDisk::check_invariants`] after every flush and crash, in debug
    /// builds (and so in `cargo test` without `--release`); nothing in release builds.
    fn debug_check(&self, when: &str) {
        if cfg!(debug_assertions) {
            if let Err(e) = self.check_invariants() {
                panic!("simulated disk invariant broken {when}: {e}");
            }
        }
    }

    /// Checks the structural invariants of the module header (tests, and the paranoid mode
    /// of debug builds). Linear in blocks + pending writes.
    pub fn check_invariants(&self) -> Result<(), String> {
        let nr = self.durable.nr_blocks();
        if self.newest.len() as u64 != nr {
            return Err(format!("newest view has {} blocks, durable {nr}", self.newest.len()));
        }
        let mut latest: Vec<Option<&Arc<Block>>> = vec![None; self.newest.len()];
        let mut last_seq = None;
        for w in &self.pending {
            if last_seq.is_some_and(|s| s >= w.seq()) {
                return Err(format!("pending write #{} out of order", w.seq()));
            }
            last_seq = Some(w.seq());
            if w.lands_at().is_some_and(|t| t >= nr) || w.block() >= nr {
                return Err(format!("pending write #{} names a block out of range", w.seq()));
            }
            if let Some(slot) = usize::try_from(w.block()).ok().and_then(|i| latest.get_mut(i)) {
                *slot = Some(&w.data);
            }
        }
        for (i, newest) in self.newest.iter().enumerate() {
            let want = latest[i].or(self.durable.shared(i));
            if !want.is_some_and(|w| Arc::ptr_eq(w, newest)) {
                return Err(format!("newest view of block {i} is neither cached nor durable"));
            }
        }
        Ok(())
    }
}

/// Fault injection helpers.
impl SimDisk {
    /// True with probability `ppm` per million; draws nothing when `ppm` is 0.
    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.random_range(0..PPM) < ppm
    }

    /// Whether a fault of `probe`'s kind strikes the current I/O call (writing to `block`):
    /// drawn at `ppm` with its parameters, or taken from the script. Logged either way.
    fn decide(&mut self, probe: Planned, ppm: u32, block: u64) -> Option<Planned> {
        let io = self.stats.io_calls();
        let nr = self.durable.nr_blocks();
        let got = if self.faults.is_scripted() {
            self.faults.scripted(io, &probe).filter(|f| match f {
                // A hand-edited target must be another block of this disk.
                Planned::MisdirectedWrite { to } => *to < nr && *to != block,
                Planned::BitRot { byte, bit } => {
                    usize::from(*byte) < engine::limits::BLOCK_SIZE && *bit < 8
                }
                Planned::ZeroedSector { sector } => usize::from(*sector) < SECTORS_PER_BLOCK,
                _ => true,
            })
        } else if self.chance(ppm) {
            Some(match probe {
                Planned::BitRot { .. } => {
                    let byte = self.rng.random_range(0..engine::limits::BLOCK_SIZE) as u16;
                    Planned::BitRot { byte, bit: self.rng.random_range(0..8u8) }
                }
                Planned::ZeroedSector { .. } => Planned::ZeroedSector {
                    sector: self.rng.random_range(0..SECTORS_PER_BLOCK as u8),
                },
                Planned::MisdirectedWrite { .. } => {
                    let other = self.rng.random_range(0..nr.saturating_sub(1).max(1));
                    Planned::MisdirectedWrite { to: if other >= block { other + 1 } else { other } }
                }
                p => p,
            })
        } else {
            None
        };
        if let Some(f) = &got {
            self.faults.log(io, f.clone());
        }
        got
    }

    /// Counts a fault in coverage, the log and the trace.
    fn record(&mut self, fault: FaultKind, block: Option<u64>, hit: HitKind) {
        self.coverage.record(fault, hit, &self.phase);
        self.log.push(FaultEvent {
            io_ordinal: self.stats.io_calls(),
            fault,
            class: fault.class(),
            block,
            hit,
            phase: self.phase,
        });
        self.trace.event(TraceOp::Fault, fault as u64, block.unwrap_or(u64::MAX), hit as u64);
    }

    fn hit_of_newest(&self, block: u64) -> HitKind {
        self.peek(block).map_or(HitKind::NoBlock, HitKind::of)
    }

    /// The power-loss gate every I/O call passes first (after being counted).
    fn gate(&mut self) -> Gate {
        if self.powered_off {
            return Gate::Off;
        }
        match self.crash_at {
            Some(n) if self.stats.io_calls() >= n => {
                self.powered_off = true;
                self.crash_at = None;
                self.faults.log(self.stats.io_calls(), Planned::PowerLoss);
                Gate::FailsNow
            }
            _ => Gate::On,
        }
    }

    fn index(&self, op: IoOp, block: u64) -> Result<usize, IoError> {
        let nr = self.durable.nr_blocks();
        match usize::try_from(block) {
            Ok(i) if block < nr => Ok(i),
            _ => Err(IoError::out_of_range(op, block, nr)),
        }
    }

    /// Whether the cache holds a write to block `i` (reads of it do not reach the media).
    fn is_cached(&self, i: usize) -> bool {
        match (self.newest.get(i), self.durable.shared(i)) {
            (Some(n), Some(d)) => !Arc::ptr_eq(n, d),
            _ => false,
        }
    }
}

fn eio(op: IoOp, block: Option<u64>, detail: &str) -> IoError {
    IoError { op, block, kind: IoErrorKind::Device, detail: detail.to_owned() }
}

/// The read path.
impl SimDisk {
    fn read_inner(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        match self.gate() {
            Gate::On => {}
            Gate::Off => return Err(eio(IoOp::Read, Some(block), POWER_LOSS_DETAIL)),
            Gate::FailsNow => {
                let hit = self.hit_of_newest(block);
                self.record(FaultKind::PowerLoss, Some(block), hit);
                return Err(eio(IoOp::Read, Some(block), POWER_LOSS_DETAIL));
            }
        }
        let i = self.index(IoOp::Read, block)?;
        if self.faults_enabled {
            self.read_faults(i, block)?;
        }
        match self.newest.get(i) {
            Some(data) => buf.copy_from_slice(&data[..]),
            None => return Err(IoError::out_of_range(IoOp::Read, block, self.nr_blocks())),
        }
        Ok(())
    }

    /// Read-side faults. Latent errors and bit rot live on the media, so they only touch
    /// reads the cache does not serve.
    fn read_faults(&mut self, i: usize, block: u64) -> Result<(), IoError> {
        let from_media = !self.is_cached(i);
        if from_media && self.latent.contains(&block) {
            return Err(eio(IoOp::Read, Some(block), "latent sector error (injected)"));
        }
        if self.config.rates.read_eio_ppm > 0 {
            let hit = self.hit_of_newest(block);
            self.exposure.add(IoKind::Read, hit, &self.phase);
        }
        if self.decide(Planned::ReadEio, self.config.rates.read_eio_ppm, block).is_some() {
            let hit = self.hit_of_newest(block);
            self.record(FaultKind::ReadEio, Some(block), hit);
            return Err(eio(IoOp::Read, Some(block), "transient read EIO (injected)"));
        }
        if !from_media {
            return Ok(());
        }
        let media_faults = FaultKind::ALL
            .iter()
            .any(|k| k.drawn_on() == Some(IoKind::MediaRead) && k.rate(&self.config) > 0);
        if media_faults {
            let hit = self.hit_of_newest(block);
            self.exposure.add(IoKind::MediaRead, hit, &self.phase);
        }
        if self.decide(Planned::LatentSector, self.config.rates.latent_sector_ppm, block).is_some()
        {
            self.latent.insert(block);
            let hit = self.hit_of_newest(block);
            self.record(FaultKind::LatentSector, Some(block), hit);
            return Err(eio(IoOp::Read, Some(block), "latent sector error (injected)"));
        }
        let rot = Planned::BitRot { byte: 0, bit: 0 };
        if let Some(Planned::BitRot { byte, bit }) =
            self.decide(rot, self.config.rates.bit_rot_ppm, block)
        {
            self.rot(i, block, usize::from(byte), bit);
        }
        let zero = Planned::ZeroedSector { sector: 0 };
        if let Some(Planned::ZeroedSector { sector }) =
            self.decide(zero, self.config.rates.zeroed_sector_ppm, block)
        {
            self.zero_sector(i, block, usize::from(sector));
        }
        Ok(())
    }

    /// Zeroes sector `sector` of durable block `i` (not cached, so newest shares it).
    fn zero_sector(&mut self, i: usize, block: u64, sector: usize) {
        let Some(mut data) = self.durable.block(block).copied() else { return };
        let hit = HitKind::of(&data);
        let at = sector * engine::limits::SECTOR_SIZE;
        data[at..at + engine::limits::SECTOR_SIZE].fill(0);
        let data = Arc::new(data);
        self.durable.set(i, Arc::clone(&data));
        self.newest.set(i, data);
        self.record(FaultKind::ZeroedSector, Some(block), hit);
    }

    /// Flips bit `bit` of byte `byte` of durable block `i` (not cached, so newest shares it).
    fn rot(&mut self, i: usize, block: u64, byte: usize, bit: u8) {
        let Some(mut data) = self.durable.block(block).copied() else { return };
        let hit = HitKind::of(&data);
        data[byte] ^= 1 << bit;
        let data = Arc::new(data);
        self.durable.set(i, Arc::clone(&data));
        self.newest.set(i, data);
        self.record(FaultKind::BitRot, Some(block), hit);
    }
}

/// The write and flush paths.
impl SimDisk {
    fn write_inner(&mut self, block: u64, data: &Arc<Block>, fua: bool) -> Result<(), IoError> {
        let buf: &Block = data;
        match self.gate() {
            Gate::On => {}
            Gate::Off => return Err(eio(IoOp::Write, Some(block), POWER_LOSS_DETAIL)),
            Gate::FailsNow => {
                // The write was in flight: in the cache, unacknowledged, maybe persisted.
                if let Ok(i) = self.index(IoOp::Write, block) {
                    self.accept(i, block, data, WriteFate::Normal);
                }
                self.record(FaultKind::PowerLoss, Some(block), HitKind::of(buf));
                return Err(eio(IoOp::Write, Some(block), POWER_LOSS_DETAIL));
            }
        }
        let i = self.index(IoOp::Write, block)?;
        if self.faults_enabled {
            self.write_faults(block, buf)?;
        }
        let fate = if self.faults_enabled { self.draw_fate(block, buf) } else { WriteFate::Normal };
        self.accept(i, block, data, fate);
        if fua {
            self.destage_last();
        }
        Ok(())
    }

    /// Write-side errors: the write is refused and nothing changes.
    fn write_faults(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        if self.config.backed_blocks.is_some_and(|backed| block >= backed) {
            self.record(FaultKind::DeviceFull, Some(block), HitKind::of(buf));
            return Err(eio(IoOp::Write, Some(block), "device full: block not backed (injected)"));
        }
        let r = &self.config.rates;
        if r.write_eio_ppm > 0 || r.lost_write_ppm > 0 || r.misdirected_write_ppm > 0 {
            self.exposure.add(IoKind::Write, HitKind::of(buf), &self.phase);
        }
        if self.decide(Planned::WriteEio, self.config.rates.write_eio_ppm, block).is_some() {
            self.record(FaultKind::WriteEio, Some(block), HitKind::of(buf));
            return Err(eio(IoOp::Write, Some(block), "transient write EIO (injected)"));
        }
        Ok(())
    }

    /// Where an accepted write will land: its own block, nowhere, or another block.
    fn draw_fate(&mut self, block: u64, buf: &Block) -> WriteFate {
        let nr = self.durable.nr_blocks();
        if self.decide(Planned::LostWrite, self.config.rates.lost_write_ppm, block).is_some() {
            self.record(FaultKind::LostWrite, Some(block), HitKind::of(buf));
            return WriteFate::Lost;
        }
        let misdirect = Planned::MisdirectedWrite { to: 0 };
        let ppm = if nr > 1 { self.config.rates.misdirected_write_ppm } else { 0 };
        if let Some(Planned::MisdirectedWrite { to }) = self.decide(misdirect, ppm, block) {
            self.record(FaultKind::MisdirectedWrite, Some(block), HitKind::of(buf));
            return WriteFate::Misdirected { to };
        }
        WriteFate::Normal
    }

    /// Puts a write in the cache. The buffer is kept as given, not copied: nobody changes a
    /// shared buffer in place (faults and tears build new ones; the engine copies first).
    fn accept(&mut self, i: usize, block: u64, data: &Arc<Block>, fate: WriteFate) {
        // Every block a pending write names is in range (the header's invariant): the range
        // check ran before, and a misdirected target is drawn in range.
        let nr = self.durable.nr_blocks();
        assert!(block < nr && fate.lands_in(nr), "pending write {block} ({fate:?}) out of range");
        let data = Arc::clone(data);
        self.newest.set(i, Arc::clone(&data));
        self.pending.push(PendingWrite { seq: self.next_seq, block, data, fate });
        self.next_seq += 1;
    }

    /// FUA: destages the write just accepted; older cached writes to its block are superseded.
    fn destage_last(&mut self) {
        let Some(w) = self.pending.pop() else { return };
        self.pending.retain(|p| p.block() != w.block());
        let landed = self.destage(&w);
        for b in [Some(w.block()), landed].into_iter().flatten() {
            self.refresh_newest(b);
        }
    }

    /// Writes one pending write to the media per its fate; returns where it landed.
    fn destage(&mut self, w: &PendingWrite) -> Option<u64> {
        let target = w.lands_at()?;
        let i = usize::try_from(target).ok()?;
        self.durable.set(i, Arc::clone(&w.data));
        self.latent.remove(&target);
        Some(target)
    }

    /// Restores the newest-view invariant for `block` after destaging.
    fn refresh_newest(&mut self, block: u64) {
        let Ok(i) = usize::try_from(block) else { return };
        let cached = self.pending.iter().rev().find(|p| p.block() == block).map(|p| &p.data);
        if let Some(data) = cached.or(self.durable.shared(i)).cloned() {
            self.newest.set(i, data);
        }
    }

    fn flush_inner(&mut self) -> Result<(), IoError> {
        match self.gate() {
            Gate::On => {}
            Gate::Off => return Err(eio(IoOp::Flush, None, POWER_LOSS_DETAIL)),
            Gate::FailsNow => {
                self.record(FaultKind::PowerLoss, None, HitKind::NoBlock);
                return Err(eio(IoOp::Flush, None, POWER_LOSS_DETAIL));
            }
        }
        if self.faults_enabled && self.config.rates.flush_eio_ppm > 0 {
            self.exposure.add(IoKind::Flush, HitKind::NoBlock, &self.phase);
        }
        if self.faults_enabled
            && self.decide(Planned::FlushEio, self.config.rates.flush_eio_ppm, 0).is_some()
        {
            self.record(FaultKind::FlushEio, None, HitKind::NoBlock);
            return Err(eio(IoOp::Flush, None, "transient flush EIO (injected)"));
        }
        let pending = std::mem::take(&mut self.pending);
        for w in &pending {
            let landed = self.destage(w);
            for b in [Some(w.block()), landed].into_iter().flatten() {
                self.refresh_newest(b);
            }
        }
        // The header's invariant after a flush: nothing pending, and every block the flush
        // touched is served from the media again (the newest view holds the durable `Arc`).
        assert!(self.pending.is_empty(), "a flush left writes pending");
        for w in &pending {
            let i = w.block() as usize;
            let same = match (self.newest.get(i), self.durable.shared(i)) {
                (Some(n), Some(d)) => Arc::ptr_eq(n, d),
                (n, d) => n.is_none() && d.is_none(),
            };
            assert!(same, "block {i}: the newest view differs from the media after a flush");
        }
        Ok(())
    }
}

impl BlockDevice for SimDisk {
    fn nr_blocks(&self) -> u64 {
        self.durable.nr_blocks()
    }

    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        self.stats.reads += 1;
        let r = self.read_inner(block, buf);
        let data = if r.is_ok() { hash_block(buf) } else { 0 };
        self.finish(TraceOp::Read, block, data, &r);
        r
    }

    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.write_one(block, &Arc::new(*buf), false)
    }

    fn write_fua(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.write_one(block, &Arc::new(*buf), true)
    }

    /// The same I/O calls, faults and trace as one `write` per block, keeping the buffers.
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        for (block, data) in (first..).zip(blocks) {
            self.write_one(block, data, false)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.stats.flushes += 1;
        self.flush_ordinals.push(self.stats.io_calls());
        let r = self.flush_inner();
        self.finish(TraceOp::Flush, u64::MAX, 0, &r);
        self.debug_check("after a flush");
        r
    }
}

impl SimDisk {
    /// One write call (counted, faulted and traced as such).
    fn write_one(&mut self, block: u64, data: &Arc<Block>, fua: bool) -> Result<(), IoError> {
        let op = if fua {
            self.stats.fua_writes += 1;
            TraceOp::WriteFua
        } else {
            self.stats.writes += 1;
            TraceOp::Write
        };
        let r = self.write_inner(block, data, fua);
        self.finish(op, block, hash_block(data), &r);
        r
    }

    /// Folds one I/O call into the trace and the error count.
    fn finish(&mut self, op: TraceOp, block: u64, data: u64, r: &Result<(), IoError>) {
        self.trace.event(op, block, data, 0);
        self.trace.result(r);
        if r.is_err() {
            self.stats.errors += 1;
        }
    }
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("nr_blocks", &self.durable.nr_blocks())
            .field("pending", &self.pending.len())
            .field("latent", &self.latent)
            .field("powered_off", &self.powered_off)
            .field("phase", &self.phase)
            .field("stats", &self.stats)
            .field("trace_hash", &format_args!("{:#018x}", self.trace_hash()))
            .finish()
    }
}
