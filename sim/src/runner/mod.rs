//! The runner: one run = (seed, options). The engine and the model run in lockstep on a
//! simulated disk; every answer is compared, the whole state after every abort and recovery,
//! after every commit what changed and the whole state on the schedule of [`verify`], and
//! crashes come at random points, including between any two I/Os of a commit.
//!
//! Invariants:
//! - One `ChaCha8Rng` seeded from the run's seed draws the options and every op (`draw`);
//!   the disk has its own RNG seeded from it for its faults. No clock, no hash-map order: a
//!   seed replays exactly, and [`RunOutcome::trace_hash`] (ops, results, disk trace) proves
//!   it.
//! - Every run records itself as a [`Trace`]: each op as a value with the faults the disk
//!   injected during it. [`replay`] runs a trace with no RNG at all (the disk takes its
//!   faults from the trace), doing the same I/O and giving the same trace hash.
//! - The model is only compared where it is specified: never while poisoned or failed.
//! - A commit that returned Ok is never lost: after any recovery the pool must show the
//!   model's committed state (for a superblock write in flight: the old or the new one).
//! - Fault classes (DESIGN §5): A must recover exactly; B may be detected (typed error) or
//!   recovered, a wrong answer is allowed only when a lost or misdirected write makes it
//!   undetectable by the format (counted and explained); C fails the call with a typed
//!   error, the runner aborts (fail mode if that fails) and, after faults stop, the reopened
//!   pool is at its last committed state.

mod apply;
mod config;
pub mod data_device;
mod draw;
pub mod lockstep;
pub mod memo;
mod model_xml;
pub mod op;
mod options;
pub mod oracle;
pub mod oracles;
mod prepopulate;
mod recovery;
pub mod repair;
mod repair_bound;
pub mod shared;
mod stats;
pub mod trace;
pub mod verify;

pub use config::{CrashAt, ExploreBounds, RunConfig, CANARIES, CANARY_BUILD, DEFAULT_STEPS};
pub use lockstep::errno;
pub use model_xml::model_dump;
pub use op::{Op, OpKind};
pub use options::{KeyOrder, Options, OptionsError, Prepopulation, RemovalPhase, RunClass};
pub use oracles::{Due, Oracle, ORACLE_DUE_AT};
pub use prepopulate::restored as restored_prepopulation;
pub use stats::{LeakTally, Outcomes, RunStats};
pub use trace::{Step, StepFault, Trace, TraceError};

use crate::disk::{
    CoverageKey, FaultClass, FaultCoverage, FaultKind, IoStats, MemoryImage, SimDisk,
};
use crate::entropy::Entropy;
use crate::fnv::Fnv;
use engine::thin::{Pool, PoolOptions, ThinHandle};
use model::Model;
use rand::Rng;
use serde::{Deserialize, Serialize};
use shared::SharedDisk;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Data block size every simulated pool uses (sectors); irrelevant to the metadata.
const DATA_BLOCK_SECTORS: u32 = 128;

/// A failed oracle: everything needed to understand and replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub op: String,
    /// Which oracle fired.
    pub oracle: Oracle,
    /// Fault kinds injected since the last verified state.
    pub faults: Vec<FaultKind>,
    pub detail: String,
    pub replay: String,
    /// The trace file written for this failure (`thinsim replay FILE` reproduces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_file: Option<String>,
}

impl Failure {
    /// The fault kinds by name (`LostWrite`), as signatures and reports carry them.
    pub fn fault_names(&self) -> Vec<String> {
        self.faults.iter().map(|k| format!("{k:?}")).collect()
    }

    /// The de-duplication key: oracle + op kind + fault kinds.
    pub fn signature(&self) -> String {
        let op = self.op.split(['(', ' ']).next().unwrap_or("");
        format!("{}/{}/{}", self.oracle, op, self.fault_names().join("+"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "FAILURE seed {} step {}: {} oracle, op {}",
            self.seed, self.step, self.oracle, self.op
        )?;
        if !self.faults.is_empty() {
            writeln!(f, "faults since last verified state: {}", self.fault_names().join(", "))?;
        }
        writeln!(f, "{}", self.detail)?;
        write!(f, "replay: {}", self.replay)?;
        if let Some(file) = &self.trace_file {
            write!(f, "\nreplay the trace: thinsim replay {file}")?;
        }
        Ok(())
    }
}

type Res<T> = Result<T, Box<Failure>>;

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub seed: u64,
    pub options: Options,
    pub stats: RunStats,
    pub coverage: FaultCoverage,
    /// Expected counts of each fault kind given the run's rates and I/O (for reachability).
    pub expected_faults: Vec<(FaultKind, f64)>,
    /// Expected count of each coverage cell given the run's rates and exposure.
    pub expected_cells: Vec<(CoverageKey, f64)>,
    pub trace_hash: u64,
    /// What the engine's structures did in this run (splits, rebalances, bitmaps, ...).
    pub structure: engine::events::Counts,
    /// Structural events crossed with faults, counted by the runner.
    pub crossings: Crossings,
    pub failure: Option<Box<Failure>>,
    /// The last image verified against the model (after the final power cut), when asked for.
    pub final_image: Option<MemoryImage>,
    /// The run as values (ops and faults), up to the failure if there was one.
    pub trace: Option<Trace>,
    /// A replayed trace asked for an op that cannot run (the run stopped there).
    pub invalid: Option<TraceError>,
    /// With `RunConfig::explore`: every power cut's enumeration.
    pub crash_points: Vec<CrashPoint>,
    /// With `RunConfig::explore`: every flush call, as (op, I/O offset in the op).
    pub flushes: Vec<(u64, u64)>,
}

/// One power cut's crash states, as `thinsim explore` enumerated them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashPoint {
    /// The op (1-based) during or after which power was cut.
    pub step: u64,
    pub pending_writes: usize,
    /// Crash states reachable (None: more than 2^64).
    pub reachable: Option<u64>,
    /// States opened and judged.
    pub judged: u64,
    /// Judged a sample, not every state.
    pub sampled: bool,
}

/// Structural events crossed with faults: the cases where a crash or a fault meets the
/// engine in the middle of reshaping a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossings {
    /// Power cuts while a split, merge, redistribution or root collapse was not yet
    /// committed (it was in the cache, in pending writes, or in the commit being written).
    pub crash_with_reshape_pending: u64,
}

impl Crossings {
    pub fn merge(&mut self, o: &Crossings) {
        self.crash_with_reshape_pending += o.crash_with_reshape_pending;
    }
}

/// Which part of the current op the runner is in, for the failure text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doing {
    Setup,
    /// The op as a whole.
    Op,
    /// A provision's alloc_data_block.
    Alloc,
    /// A provision's insert_block of the block just allocated.
    Insert {
        dev: u64,
        vblock: u64,
        data: u64,
    },
    /// close_reopen's close of the pool.
    ClosePool,
}

impl Runner {
    /// What the runner is doing, as a failure names it.
    fn op_text(&self) -> String {
        match self.doing {
            Doing::Setup => "format".into(),
            Doing::Op => self.current.to_string(),
            Doing::Alloc => "alloc_data_block".into(),
            Doing::Insert { dev, vblock, data } => {
                format!("insert_block(dev {dev}, vblock {vblock}, data {data})")
            }
            Doing::ClosePool => "close pool".into(),
        }
    }
}

/// The last state known to be on disk and right: restored after undetectable class B damage.
struct Good {
    image: MemoryImage,
    model: Model,
}

struct Runner {
    cfg: RunConfig,
    opts: Options,
    /// The generator (a run from a seed); `None` when replaying a trace.
    drawer: Option<draw::Drawer>,
    disk: SharedDisk,
    pool: Option<Pool>,
    model: Model,
    handles: Vec<(model::Handle, ThinHandle)>,
    /// The op being run: 1-based over every op of the run (a trace's op lines).
    step: u64,
    /// The op being run, and which part of it (named in a failure; formatted only then).
    current: Op,
    doing: Doing,
    stats: RunStats,
    hash: Fnv,
    good: Good,
    /// Class B fault kinds injected since the last verified state.
    b_faults: BTreeSet<FaultKind>,
    /// Every (virtual block, data block, time) the model ever mapped, committed or not: what
    /// an older block on disk can hold. Repair's excused mappings must come from here.
    ever_mapped: BTreeSet<(u64, u64, u32)>,
    /// A class C fault was injected since faults were last switched on (latent errors
    /// keep failing reads without new events).
    c_seen: bool,
    threshold_hits: Arc<AtomicU64>,
    /// The data device's ordering, flushed by the pre-commit callback (`data`).
    data: Arc<std::sync::Mutex<data_device::DataShadow>>,
    /// The data writes the last power cut lost (block → write), for the recovery's check.
    data_lost: std::collections::BTreeMap<u64, u64>,
    last_commit_ios: u64,
    pressure: draw::Pressure,
    crash_at_armed: bool,
    /// The model before the current op, while that op may write a superblock.
    pre: Option<Model>,
    /// I/O done while faults were enabled, and the disk's counters when they were switched on.
    faulty_io: IoStats,
    faulty_since: Option<IoStats>,
    /// Set by an abort after a failed op, cleared by a clean abort or a power cut.
    aborted_changes_unspecified: bool,
    /// `THINSIM_VERBOSE` set: print every op and answer to stderr (output only).
    verbose: bool,
    /// What was verified last and when the next full verification is due.
    verifier: verify::Verifier,
    /// Verified images by what their verification read (amortized mode only).
    memo: memo::Memo,
    /// The `faults_on` op ran: injection is on except while recovering.
    faults_phase: bool,
    /// Reshaping events counted when the pool last matched durable state (commit, reopen).
    reshapes_durable: u64,
    crossings: Crossings,
    /// Every op run so far, with the faults injected during it.
    recorded: Vec<Step>,
    crash_points: Vec<CrashPoint>,
    flushes: Vec<(u64, u64)>,
}

/// Runs one seed.
pub fn run(cfg: &RunConfig) -> RunOutcome {
    let mut rng = Entropy::seeded(cfg.seed);
    let opts = draw_options(cfg, &mut rng);
    debug_assert_eq!(opts, options_of(cfg), "options_of draws what run draws");
    let disk = Entropy::seeded(rng.random());
    run_drawing(cfg, opts, rng, disk)
}

/// The options [`run`] draws for `cfg`, without running: a front end prints them before the
/// run starts, so a hang or a crash of the process still shows what was running.
pub fn options_of(cfg: &RunConfig) -> Options {
    draw_options(cfg, &mut Entropy::seeded(cfg.seed))
}

/// Runs the choices in `bytes` (the `sim` fuzz target): the first byte splits the rest into
/// the generator's stream (options, ops, crash offsets) and the disk's (its faults and crash
/// plans), each going on from a seeded tail when its bytes run out (see [`Entropy`]).
/// `cfg.seed` only labels the run; its trace is what replays it. `draw` draws the options
/// from the generator's stream (the fuzz target keeps to the cheap classes); the trace
/// records them as drawn.
pub fn run_bytes(
    cfg: &RunConfig,
    bytes: &[u8],
    draw: impl FnOnce(&mut Entropy) -> Options,
) -> RunOutcome {
    let (&split, rest) = bytes.split_first().unwrap_or((&0, &[]));
    let at = rest.len() * usize::from(split) / 256;
    let (ops, faults) = rest.split_at(at);
    let mut rng = Entropy::from_bytes(ops);
    let opts = draw(&mut rng);
    let opts = class_a_only(cfg, opts);
    run_drawing(cfg, opts, rng, Entropy::from_bytes(faults))
}

fn draw_options(cfg: &RunConfig, rng: &mut Entropy) -> Options {
    class_a_only(cfg, Options::draw(rng))
}

/// `--class-a-only`: the options' faults reduced to crashes and tears within the unit.
fn class_a_only(cfg: &RunConfig, mut opts: Options) -> Options {
    if cfg.class_a_only {
        let d = &opts.disk;
        opts.disk = crate::disk::DiskConfig {
            atomic_unit: d.atomic_unit,
            crash: d.crash.clone(),
            ..crate::disk::DiskConfig::none()
        };
    }
    opts
}

/// A run drawn from `rng` with options `opts`, the disk drawing from `disk`.
fn run_drawing(cfg: &RunConfig, opts: Options, rng: Entropy, disk: Entropy) -> RunOutcome {
    // The engine counts structural events per thread: start this run's from zero.
    engine::events::take();
    let drawer = draw::Drawer::new(rng);
    let mut r = match Runner::new(cfg.clone(), opts.clone(), disk, Some(drawer)) {
        Ok(r) => r,
        Err(f) => return outcome_without_runner(cfg, opts, f),
    };
    let result = catch_panic(&mut r, Runner::run_drawn);
    r.finish(result)
}

/// Replays a trace: its ops in order, each with its faults, then the final power cut (if
/// the trace does not end with one). Nothing is drawn.
pub fn replay(t: &Trace) -> RunOutcome {
    replay_with(t, t.config())
}

/// [`replay`] under another configuration (`thinsim explore` sets its bounds).
pub fn replay_with(t: &Trace, cfg: RunConfig) -> RunOutcome {
    engine::events::take();
    if let Some(name) = &t.canary {
        let reason = if !CANARY_BUILD {
            Some("this build has no canaries (build with --features canary)")
        } else if !CANARIES.contains(&name.as_str()) {
            Some("no such canary in this build")
        } else {
            None
        };
        if let Some(reason) = reason {
            let mut o = outcome_without_runner(&cfg, t.options.clone(), setup_failure(&cfg, ""));
            o.failure = None;
            o.invalid = Some(TraceError::Canary { name: name.clone(), reason });
            return o;
        }
    }
    let mut r = match Runner::new(cfg.clone(), t.options.clone(), Entropy::seeded(0), None) {
        Ok(r) => r,
        Err(f) => return outcome_without_runner(&cfg, t.options.clone(), f),
    };
    let result = catch_panic(&mut r, |r| r.run_trace(&t.steps));
    r.finish(result)
}

/// Runs `body`; an engine panic is a finding like any other: reported with its replay line.
fn catch_panic(r: &mut Runner, body: impl FnOnce(&mut Runner) -> Res<()>) -> Res<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(r))).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(r.fail(Oracle::Panic, format!("panicked: {msg}")))
    })
}

/// A failure before the runner exists (setup), with the run's replay line.
fn setup_failure(cfg: &RunConfig, detail: &str) -> Box<Failure> {
    Box::new(Failure {
        seed: cfg.seed,
        step: 0,
        op: "setup".into(),
        oracle: Oracle::Setup,
        faults: Vec::new(),
        detail: detail.to_owned(),
        replay: cfg.replay_line(),
        trace_file: None,
    })
}

fn outcome_without_runner(cfg: &RunConfig, options: Options, f: Box<Failure>) -> RunOutcome {
    RunOutcome {
        seed: cfg.seed,
        options,
        stats: RunStats { runs: 1, ..RunStats::default() },
        coverage: FaultCoverage::default(),
        expected_faults: Vec::new(),
        expected_cells: Vec::new(),
        trace_hash: 0,
        structure: engine::events::take(),
        crossings: Crossings::default(),
        failure: Some(f),
        final_image: None,
        trace: None,
        invalid: None,
        crash_points: Vec::new(),
        flushes: Vec::new(),
    }
}

impl Runner {
    fn new(
        cfg: RunConfig,
        opts: Options,
        disk_rng: Entropy,
        drawer: Option<draw::Drawer>,
    ) -> Res<Runner> {
        let (sim, model) = match &opts.prepopulate {
            None => (
                SimDisk::with_entropy(opts.metadata_disk_blocks, opts.disk.clone(), disk_rng),
                Model::new(opts.data_blocks),
            ),
            Some(p) => {
                let (image, model) = prepopulate::prepared(p, &opts)
                    .map_err(|d| setup_failure(&cfg, &format!("prepopulation: {d}")))?;
                (SimDisk::from_image(image, opts.disk.clone(), disk_rng), model)
            }
        };
        // Drawn options always build a disk and traces are validated when read
        // (`Options::validate`), so this is a setup failure only for a caller's own options.
        let mut sim = sim.map_err(|e| setup_failure(&cfg, &format!("disk: {e}")))?;
        // Setup (a restore included) is not the workload: its structural events do not count.
        engine::events::take();
        sim.set_faults_enabled(false);
        if drawer.is_none() {
            // A replay: every fault comes from the trace, none from the disk's RNG.
            sim.set_fault_script(Vec::new());
        }
        let disk = SharedDisk::new(sim);
        let good = Good { image: MemoryImage::new(0), model: model.clone() };
        let ever_mapped = repair::mapped_triples(&model);
        let verifier = verify::Verifier::new(cfg.verify);
        let mut r = Runner {
            cfg,
            opts,
            drawer,
            disk,
            pool: None,
            model,
            handles: Vec::new(),
            step: 0,
            current: Op::FaultsOn,
            doing: Doing::Setup,
            stats: RunStats { runs: 1, ..RunStats::default() },
            hash: Fnv::default(),
            good,
            b_faults: BTreeSet::new(),
            ever_mapped,
            c_seen: false,
            threshold_hits: Arc::new(AtomicU64::new(0)),
            data: Arc::default(),
            data_lost: Default::default(),
            last_commit_ios: 8,
            pressure: draw::Pressure::default(),
            crash_at_armed: false,
            pre: None,
            aborted_changes_unspecified: false,
            faulty_io: IoStats::default(),
            faulty_since: None,
            verbose: std::env::var_os("THINSIM_VERBOSE").is_some(),
            memo: memo::Memo::default(),
            verifier,
            faults_phase: false,
            reshapes_durable: 0,
            crossings: Crossings::default(),
            recorded: Vec::new(),
            crash_points: Vec::new(),
            flushes: Vec::new(),
        };
        r.format()?;
        // Setup draws no faults; what the disk logged (nothing but a scheduled crash) is not
        // an op's.
        r.disk.lock().take_planned();
        Ok(r)
    }

    /// Formats, sizes both devices and commits, fault-free: the model's starting state.
    fn format(&mut self) -> Res<()> {
        self.stats.ran(Oracle::Setup);
        let pool = match self.opts.prepopulate {
            Some(_) => Pool::open(self.disk.device(), verify::reopen_options()).map_err(|e| {
                self.fail(Oracle::Setup, format!("opening the restored image: {e}"))
            })?,
            None => self.format_empty()?,
        };
        self.install(pool)?;
        self.verify_committed()?;
        if let Some(CrashAt::Io(n)) = self.cfg.crash_at {
            self.disk.lock().set_crash_at_io(n);
        }
        Ok(())
    }

    /// An empty pool of the run's sizes.
    fn format_empty(&mut self) -> Res<Pool> {
        let pool = Pool::open(self.disk.device(), PoolOptions::new(DATA_BLOCK_SECTORS))
            .map_err(|e| self.fail(Oracle::Setup, format!("format failed: {e}")))?;
        let setup = pool
            .resize_data_dev(self.opts.data_blocks)
            .and_then(|()| pool.resize_metadata_dev(self.opts.metadata_blocks))
            .and_then(|()| pool.commit());
        setup.map_err(|e| self.fail(Oracle::Setup, format!("sizing the new pool failed: {e}")))?;
        Ok(pool)
    }

    /// Makes `pool` the runner's pool: canary, threshold callback.
    fn install(&mut self, pool: Pool) -> Res<()> {
        pool.set_canaries(self.cfg.canaries());
        let hits = Arc::clone(&self.threshold_hits);
        let cb = Box::new(move || {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        pool.register_metadata_threshold(self.opts.threshold_blocks, cb)
            .map_err(|e| self.fail(Oracle::Setup, format!("register_metadata_threshold: {e}")))?;
        // The pool target's pre-commit callback: flush the data device.
        let data = Arc::clone(&self.data);
        let flush = Box::new(move || {
            data.lock().expect("the data shadow is never poisoned").flush();
            Ok(())
        });
        pool.register_pre_commit_callback(flush)
            .map_err(|e| self.fail(Oracle::Setup, format!("register_pre_commit_callback: {e}")))?;
        self.pool = Some(pool);
        self.verifier.forget();
        self.reshapes_durable = engine::events::snapshot().reshapes();
        Ok(())
    }

    fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("the pool is open between recoveries")
    }

    /// A run from its seed: the ops drawn one at a time from the state the last one left.
    fn run_drawn(&mut self) -> Res<()> {
        let total_steps = (self.cfg.steps.saturating_mul(self.opts.steps_percent) / 100).max(1);
        let removal_at =
            self.opts.removal.as_ref().map(|r| total_steps * r.from_permille / 1000 + 1);
        for step in 1..=total_steps {
            if step == self.opts.faults_from_step.max(1) {
                self.perform(Op::FaultsOn, None)?;
            }
            if Some(step) == removal_at {
                for i in 0..3 {
                    if let Some(op) = self.draw_next(Some(i)) {
                        self.perform(op, None)?;
                    }
                }
            }
            let op = self.draw_next(None).expect("a drawing run has a drawer");
            self.perform(op, None)?;
        }
        self.perform(Op::FinalPowerCut, None)
    }

    /// A replayed run: the trace's ops with their faults, then the final power cut.
    fn run_trace(&mut self, steps: &[Step]) -> Res<()> {
        for s in steps {
            self.perform(s.op.clone(), Some(&s.faults))?;
        }
        if steps.last().is_none_or(|s| s.op != Op::FinalPowerCut) {
            self.perform(Op::FinalPowerCut, Some(&[]))?;
        }
        Ok(())
    }

    /// The next op from the generator (`removal`: the i-th op of the removal phase's start).
    fn draw_next(&mut self, removal: Option<usize>) -> Option<Op> {
        let open: Vec<u64> = self.handles.iter().map(|(m, _)| m.id()).collect();
        let v = draw::View {
            model: &self.model,
            opts: &self.opts,
            open: &open,
            pressure: self.pressure,
            pool: self.pool.as_ref(),
        };
        let d = self.drawer.as_mut()?;
        match removal {
            Some(i) => d.removal_op(i, &v),
            None => Some(d.draw(&v)),
        }
    }

    /// Runs one op: its phase label, its power cut (drawn, or from the trace) and its
    /// faults (from the trace when replaying), then records it with the faults it met.
    fn perform(&mut self, op: Op, faults: Option<&[StepFault]>) -> Res<()> {
        self.step += 1;
        let kind = op.kind();
        if let Some(k) = kind {
            self.stats.steps += 1;
            self.stats.op(k);
            // Every step runs under the runner's panic guard (`catch_panic`).
            self.stats.ran(Oracle::Panic);
        }
        let io0 = self.disk.lock().stats().io_calls();
        let superblock = kind.is_some_and(OpKind::writes_superblock);
        if let Some(k) = kind {
            let held = self.model.current().held.is_some();
            let phase = crate::disk::Phase {
                in_commit: superblock,
                metadata_snap_held: held,
                label: k.label(),
            };
            self.disk.lock().set_phase(phase);
        }
        let armed = match (faults, kind) {
            (Some(f), _) => self.script(io0, f),
            (None, Some(k)) => self.arm_crash(k),
            (None, None) => false,
        };
        self.pre = superblock.then(|| self.model.clone());
        let r = self.apply(&op);
        self.pre = None;
        let mut d = self.disk.lock();
        if armed {
            d.clear_crash_at();
        }
        d.set_phase(crate::disk::Phase::IDLE);
        let faults =
            d.take_planned().into_iter().map(|a| StepFault { io: a.io - io0, fault: a.fault });
        let faults = faults.collect();
        if self.cfg.explore.is_some() {
            let flushes =
                d.flush_ordinals().iter().filter(|&&f| f > io0).map(|f| (self.step, f - io0));
            self.flushes.extend(flushes);
        }
        drop(d);
        self.recorded.push(Step { op, faults });
        r?;
        if kind.is_some() {
            self.verifier.count_op();
        }
        self.drain_faults();
        Ok(())
    }

    /// Hands the disk the faults of the op starting at I/O call `io0`; arms its power cut.
    fn script(&mut self, io0: u64, faults: &[StepFault]) -> bool {
        let mut d = self.disk.lock();
        let at = |f: &StepFault| io0.saturating_add(f.io);
        let cut = faults.iter().find(|f| f.fault == crate::disk::Planned::PowerLoss).map(at);
        let script = faults.iter().map(|f| crate::disk::AtIo { io: at(f), fault: f.fault.clone() });
        d.set_fault_script(script.collect());
        if let Some(n) = cut {
            d.set_crash_at_io(n);
        }
        cut.is_some()
    }

    /// Arms power loss inside this op when the run asks for it; true if armed here.
    fn arm_crash(&mut self, kind: OpKind) -> bool {
        let by_phase = matches!(self.cfg.crash_at, Some(CrashAt::Phase(k)) if k == kind)
            && !self.crash_at_armed;
        let (opts, ios) = (&self.opts, self.last_commit_ios);
        let Some(offset) =
            self.drawer.as_mut().and_then(|d| d.crash_offset(kind, opts, ios, by_phase))
        else {
            return false;
        };
        let mut d = self.disk.lock();
        if d.crash_armed_at().is_some() {
            // `--crash-at io:N` is still to come: a random cut must not replace it.
            return false;
        }
        self.crash_at_armed |= by_phase;
        let at = d.stats().io_calls() + offset;
        d.set_crash_at_io(at);
        true
    }

    /// Switches injection on (only once the run's fault phase began) or off.
    fn set_faults(&mut self, on: bool) {
        let on = on && self.faults_phase;
        let mut d = self.disk.lock();
        if d.faults_enabled() != on {
            d.set_faults_enabled(on);
            // Reachability needs the I/O done while faults could fire, not all of it.
            let now = d.stats().clone();
            if on {
                self.faulty_since = Some(now);
            } else if let Some(start) = self.faulty_since.take() {
                add_io_delta(&mut self.faulty_io, &start, &now);
            }
        }
        if !on {
            self.c_seen = false;
        }
    }

    /// Reads the disk's fault log: B kinds make later wrong answers possible, C kinds make
    /// later EIO possible.
    fn drain_faults(&mut self) {
        let log = self.disk.lock().take_fault_log();
        for ev in &log.events {
            if self.verbose {
                eprintln!(
                    "[{}] fault {:?} block {:?} ({:?}, {})",
                    self.step, ev.fault, ev.block, ev.hit, ev.phase.label
                );
            }
            match ev.class {
                FaultClass::B => {
                    self.b_faults.insert(ev.fault);
                }
                FaultClass::C => self.c_seen = true,
                FaultClass::A => {}
            }
        }
        if log.dropped > 0 && log.classes.contains(&FaultClass::B) {
            self.b_faults.insert(FaultKind::LostWrite);
        }
        if log.classes.contains(&FaultClass::C) {
            self.c_seen = true;
        }
    }

    fn fold(&mut self, text: &str) {
        self.fold_fmt(format_args!("{text}"));
    }

    /// Folds an answer into the trace hash (and prints it when verbose).
    fn fold_fmt(&mut self, text: fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("[{}] {} => {text}", self.step, self.op_text());
        }
        self.hash.add(&self.step.to_le_bytes());
        let _ = fmt::Write::write_fmt(&mut self.hash, text);
    }

    fn fail(&self, oracle: Oracle, detail: String) -> Box<Failure> {
        let replay = match self.drawer {
            Some(_) => self.cfg.replay_line(),
            None => "thinsim replay TRACE".to_owned(),
        };
        Box::new(Failure {
            seed: self.cfg.seed,
            step: self.step,
            op: self.op_text(),
            oracle,
            faults: self.b_faults.iter().copied().collect(),
            detail,
            replay,
            trace_file: None,
        })
    }

    /// The current op cannot run (a replayed trace broke a precondition): the run stops.
    fn invalid(&self, reason: String) -> Box<Failure> {
        self.fail(Oracle::InvalidTrace, reason)
    }

    fn finish(mut self, result: Res<()>) -> RunOutcome {
        let (failure, invalid) = match result.as_ref().err() {
            Some(f) if f.oracle == Oracle::InvalidTrace => {
                let e = TraceError::InvalidStep {
                    step: f.step,
                    op: f.op.clone(),
                    reason: f.detail.clone(),
                };
                (None, Some(e))
            }
            Some(f) => (Some(f.clone()), None),
            None => (None, None),
        };
        self.stats.threshold_callbacks = self.threshold_hits.load(Ordering::Relaxed);
        {
            let d = self.data.lock().expect("the data shadow is never poisoned");
            self.stats.data_writes = d.writes();
            self.stats.data_flushes = d.flushes;
        }
        let d = self.disk.lock();
        self.hash.add(&d.trace_hash().to_le_bytes());
        if let Some(start) = self.faulty_since.take() {
            add_io_delta(&mut self.faulty_io, &start, d.stats());
        }
        let expected_faults = crate::disk::expected_faults(&self.opts.disk, &self.faulty_io);
        let expected_cells = crate::disk::expected_cells(&self.opts.disk, d.exposure().cells());
        RunOutcome {
            seed: self.cfg.seed,
            options: self.opts.clone(),
            stats: self.stats.clone(),
            coverage: d.coverage().clone(),
            expected_faults,
            expected_cells,
            trace_hash: self.hash.0,
            structure: engine::events::take(),
            crossings: self.crossings.clone(),
            final_image: (self.cfg.keep_final_image && result.is_ok())
                .then(|| self.good.image.clone()),
            trace: Some(Trace {
                build: trace::build_id(),
                seed: self.cfg.seed,
                canary: self.cfg.canary.clone(),
                verify: self.cfg.verify,
                options: self.opts.clone(),
                expect: failure
                    .as_ref()
                    .map(|f| trace::Expected { signature: f.signature(), step: f.step }),
                steps: std::mem::take(&mut self.recorded),
            }),
            failure,
            invalid,
            crash_points: std::mem::take(&mut self.crash_points),
            flushes: std::mem::take(&mut self.flushes),
        }
    }
}

/// Adds the I/O between two counter snapshots to `acc`.
fn add_io_delta(acc: &mut IoStats, start: &IoStats, now: &IoStats) {
    acc.reads += now.reads - start.reads;
    acc.writes += now.writes - start.writes;
    acc.fua_writes += now.fua_writes - start.fua_writes;
    acc.flushes += now.flushes - start.flushes;
}
