//! The three-way differential: a workload run in the kernel (under UML), on thinsim's engine
//! through the pool target's calls, and on the model; compared op by op (what userspace was
//! told) and at every checkpoint (what the kernel's committed metadata holds).
//!
//! At a checkpoint the kernel's metadata device, copied while the pool was suspended (so
//! committed), is opened by thinsim's engine read-only and compared in full with the model
//! at that op: devices, details (mapped count, transaction id, creation and snapshot
//! times), every mapping with its data block and time, the pool's time, transaction id,
//! data size, free data blocks and held snapshot; its superblock's metadata size with the
//! emulation's; and `check` of the image against the model's recount (data reference
//! counts included, which thin_check 0.9.0 does not check). The kernel's own status line is
//! compared as well (transaction id, data used and total, held root present).
//! The model's data block numbers are the engine's, which follows the kernel's allocation
//! cursor, so equal mappings mean the kernel and the engine chose the same blocks.
//!
//! Verdicts are [`Difference`] values; the first one ends the comparison (what follows it
//! is its consequence).
//! A difference in a checkpoint's metadata also gets both sides dumped beside the run
//! ([`super::sides`]), the evidence a person reads; the verdict stays the typed value.

use super::crash::{self, CrashFinding, CrashStats};
use super::defects::{Defect, DefectStatus};
use super::draw::NoExpectation;
use super::draw::{self, Expected};
use super::emulate::{ClockDependence, Divergence, ExhaustHint, Exhaustion, Outcome, WindowRule};
use super::faults::{Degraded, FaultTally};
use super::held::{self, HeldMismatch, HeldTally};
use super::observe::{
    compare_exhausted_status, compare_heal_status, compare_status, open_kernel_image,
};
use super::reopen::{reopen, ReopenFinding, REOPEN_SAMPLES};
use super::sides::{self, Sides};
use super::structure::Structure;
use super::uml::{self, GuestResults, RunDir, UmlError, UmlKernel};
use super::workload::{KOp, Workload};
use crate::runner::oracle::{self, Mismatch};
use engine::io::MemoryDevice;
use engine::tools::shape::image_shape;
use std::path::Path;

/// What the differential found first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The engine and the model disagree (thinsim's bug; the kernel is not needed).
    Divergence { op: usize, divergence: Divergence },
    /// The workload holds an op whose answer would be the kernel's clock's (an edited or
    /// old workload: the drawer never makes one); it is not run.
    ClockDependent { op: usize, why: ClockDependence },
    /// The kernel answered an op differently.
    Outcome { op: usize, expected: Outcome, kernel: Outcome, text: String },
    /// The kernel's committed metadata differs from the model's state.
    Metadata { op: usize, mismatch: Mismatch },
    /// thinsim's engine could not open the kernel's metadata.
    Unreadable { op: usize, error: String },
    /// `check` (or its recount against the model) failed on the kernel's metadata.
    Check { op: usize, mismatch: Mismatch },
    /// The kernel's status line disagrees with the model.
    Status { op: usize, detail: String },
    /// The kernel's metadata size differs from the emulation's.
    MetadataSize { op: usize, expected: u64, kernel: u64 },
    /// Crash mode: the kernel's own write stream, cut, gave a wrong image (`op` is the
    /// workload's length: crash mode judges the whole run).
    Crash { op: usize, finding: CrashFinding },
    /// A crash image the engine passed, reopened in the kernel, was refused or differs.
    Reopen { op: usize, finding: ReopenFinding },
    /// The tools' `-m` read a checkpoint's held snapshot wrong ([`held`]).
    HeldSnapshot { op: usize, mismatch: HeldMismatch },
    /// The workload puts an op where a fault window cannot hold it (an edited workload:
    /// the drawer never does); it is not run.
    Window { op: usize, rule: WindowRule },
    /// At a heal: the pool's mode before it, or the tools' check of the metadata taken out
    /// (which must pass and clear needs_check), was not what the emulation says.
    Heal { op: usize, finding: HealFinding },
    /// At a metadata exhaustion: the kernel never entered out-of-metadata-space, entered it
    /// far from where the engine's count says, or its status then was not that mode's.
    Exhaustion { op: usize, finding: ExhaustFinding },
}

/// What a metadata exhaustion showed wrong (the state after it is judged at the checkpoint
/// after the growth that ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExhaustFinding {
    /// The guest reported no exhaustion for this op.
    Missing,
    /// The kernel created `limit` devices and refused none: it never ran out of metadata
    /// space where the engine's count (plus the margin) says it must have.
    NotReached { created: u64 },
    /// The kernel's count of creates is more than [`draw::EXHAUST_DRIFT_BOUND`] off the
    /// engine's ([`Exhaustion::drift`]).
    Drift { kernel: u64, engine_full_at: Option<u64>, engine_free_after_blocks: u64 },
    /// The status line after the refused message is not out-of-metadata-space's.
    Status { detail: String },
}

impl std::fmt::Display for ExhaustFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExhaustFinding::Missing => write!(f, "the guest reported no exhaustion"),
            ExhaustFinding::NotReached { created } => {
                write!(f, "{created} devices created and none refused")
            }
            ExhaustFinding::Drift { kernel, engine_full_at, engine_free_after_blocks } => {
                write!(f, "the kernel created {kernel} devices; the engine ")?;
                match engine_full_at {
                    Some(at) => write!(f, "was full after {at}"),
                    None => write!(f, "had {engine_free_after_blocks} blocks left"),
                }
            }
            ExhaustFinding::Status { detail } => write!(f, "{detail}"),
        }
    }
}

/// What a heal showed wrong (its metadata image is judged as a checkpoint's is:
/// [`Difference::Metadata`], [`Difference::Check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealFinding {
    /// The guest reported no heal for this op.
    Missing,
    /// The status line before the heal disagrees with the expected mode.
    Mode { detail: String },
    /// `thinsim check --clear-needs-check-flag` failed on the kernel's metadata.
    ToolCheck { exit: i32, output: String },
}

impl std::fmt::Display for HealFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealFinding::Missing => write!(f, "the guest reported no heal"),
            HealFinding::Mode { detail } => write!(f, "{detail}"),
            HealFinding::ToolCheck { exit, output } => {
                write!(f, "check --clear-needs-check-flag exited {exit}: {output}")
            }
        }
    }
}

impl Difference {
    /// A workload with no expected answers from op `op` on: not run, or not judged.
    pub fn unexpected(op: usize, why: NoExpectation) -> Difference {
        match why {
            NoExpectation::Divergence(divergence) => Difference::Divergence { op, divergence },
            NoExpectation::Clock(why) => Difference::ClockDependent { op, why },
            NoExpectation::Window(rule) => Difference::Window { op, rule },
        }
    }

    pub fn op(&self) -> usize {
        match self {
            Difference::Divergence { op, .. }
            | Difference::ClockDependent { op, .. }
            | Difference::Outcome { op, .. }
            | Difference::Metadata { op, .. }
            | Difference::Unreadable { op, .. }
            | Difference::Check { op, .. }
            | Difference::Status { op, .. }
            | Difference::MetadataSize { op, .. }
            | Difference::Crash { op, .. }
            | Difference::Reopen { op, .. }
            | Difference::HeldSnapshot { op, .. }
            | Difference::Window { op, .. }
            | Difference::Heal { op, .. }
            | Difference::Exhaustion { op, .. } => *op,
        }
    }

    /// The short name of the kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Difference::Divergence { .. } => "engine-model divergence",
            Difference::ClockDependent { .. } => "answer depends on the kernel's clock",
            Difference::Outcome { .. } => "op outcome",
            Difference::Metadata { .. } => "committed metadata",
            Difference::Unreadable { .. } => "kernel metadata unreadable",
            Difference::Check { .. } => "check of kernel metadata",
            Difference::Status { .. } => "pool status",
            Difference::MetadataSize { .. } => "metadata size",
            Difference::Crash { .. } => "crash image",
            Difference::Reopen { .. } => "crash image reopened in the kernel",
            Difference::HeldSnapshot { .. } => "held snapshot read with -m",
            Difference::Window { .. } => "op not allowed in a fault window",
            Difference::Heal { .. } => "heal after a fault window",
            Difference::Exhaustion { .. } => "metadata exhaustion",
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op {}: {}: ", self.op(), self.kind())?;
        match self {
            Difference::Divergence { divergence, .. } => write!(f, "{divergence}"),
            Difference::ClockDependent { why, .. } => write!(f, "{why}"),
            Difference::Outcome { expected, kernel, text, .. } => {
                write!(f, "expected {expected}, the kernel said {kernel} ({text:?})")
            }
            Difference::Metadata { mismatch, .. } | Difference::Check { mismatch, .. } => {
                write!(f, "\n{mismatch}")
            }
            Difference::Unreadable { error, .. } => write!(f, "{error}"),
            Difference::Status { detail, .. } => write!(f, "{detail}"),
            Difference::MetadataSize { expected, kernel, .. } => {
                write!(f, "expected {expected} blocks, the kernel's superblock says {kernel}")
            }
            Difference::Crash { finding, .. } => write!(f, "{finding}"),
            Difference::Reopen { finding, .. } => write!(f, "{finding}"),
            Difference::HeldSnapshot { mismatch, .. } => write!(f, "{mismatch}"),
            Difference::Window { rule, .. } => write!(f, "{rule}"),
            Difference::Heal { finding, .. } => write!(f, "{finding}"),
            Difference::Exhaustion { finding, .. } => write!(f, "{finding}"),
        }
    }
}

/// One seed's run.
#[derive(Debug)]
pub struct KernelRun {
    pub seed: u64,
    pub kernel: String,
    pub ops: usize,
    pub checkpoints: usize,
    pub emulated_commits: u64,
    pub difference: Option<Difference>,
    /// Crash mode's counts (when it ran).
    pub crash: Option<CrashStats>,
    /// Wall-clock seconds the guest ran, and crash mode judged (reports only: nothing a
    /// seed drives depends on them).
    pub guest_seconds: f64,
    pub judge_seconds: f64,
    /// Crash images reopened in the kernel (and found right).
    pub reopened: usize,
    /// Checkpoints whose held snapshot the tools read with `-m`, the live metadata damaged.
    pub held: HeldTally,
    /// The structure the kernel's checkpoint images show ([`super::structure`]).
    pub structure: Structure,
    /// The pool modes and error paths the run reached, as far as the kernel agreed
    /// ([`super::faults`]).
    pub faults: FaultTally,
    /// The metadata exhaustions, with the kernel's count of creates and the engine's.
    pub exhaustions: Vec<Exhaustion>,
    /// Whether this kernel carries the held-root defect (decides what its symptom means).
    pub held_root: DefectStatus,
    /// For a difference in a checkpoint's metadata: both sides dumped beside the run, and
    /// the lines around where they part (or why they could not be written).
    pub sides: Option<Result<Sides, String>>,
}

/// Compares the guest's results with the expected ones; the first difference. Each
/// checkpoint with a held snapshot is also read through the tools' `-m` ([`held`]), tallied
/// in `held`; each checkpoint image's structure is added to `structure`.
pub fn compare(
    w: &Workload,
    e: &Expected,
    g: &GuestResults,
    dir: &RunDir,
    held: &mut HeldTally,
    structure: &mut Structure,
) -> Option<Difference> {
    let mut checkpoints = e.checkpoints.iter().peekable();
    let mut statuses = g.statuses.iter();
    let mut statuses_seen = 0usize;
    let mut heals = (e.heals.iter(), g.heals.iter());
    let mut exhausts = (e.exhausts.iter(), g.exhausts.iter());
    for (i, op) in w.ops.iter().enumerate() {
        let (kernel, text) = g.outcomes.get(i).cloned()?;
        let expected = e.outcomes[i];
        if kernel != expected {
            return Some(Difference::Outcome { op: i, expected, kernel, text });
        }
        if *op == KOp::HealMeta {
            if let Some(d) = judge_heal(i, heals.0.next(), heals.1.next(), dir) {
                return Some(d);
            }
            continue;
        }
        if let KOp::ExhaustMeta { limit, .. } = *op {
            let (x, gx) = (exhausts.0.next(), exhausts.1.next());
            if let Some(finding) = judge_exhaust(i, limit, x, gx, &w.shape.features) {
                return Some(Difference::Exhaustion { op: i, finding });
            }
            continue;
        }
        if *op != KOp::Checkpoint {
            continue;
        }
        let (ci, model, meta_blocks) = checkpoints.next()?;
        debug_assert_eq!(*ci, i);
        let dev = match judge_image(i, &dir.checkpoint(i), model, *meta_blocks) {
            Ok(dev) => dev,
            Err(d) => return Some(d),
        };
        match image_shape(dev.to_device()) {
            Ok(shape) => structure.add(shape),
            Err(error) => return Some(Difference::Unreadable { op: i, error }),
        }
        match held::judge(&dev, model) {
            Ok(Some(r)) => held.add(&r),
            Ok(None) => {}
            Err(mismatch) => return Some(Difference::HeldSnapshot { op: i, mismatch }),
        }
        if let Some((si, st)) = statuses.next() {
            let nth = statuses_seen;
            statuses_seen += 1;
            let oods = e.out_of_data_space.get(nth).copied().unwrap_or(false);
            if let Err(detail) = compare_status(st, model, &w.shape.features, oods) {
                return Some(Difference::Status { op: *si, detail });
            }
        }
    }
    None
}

/// The paths of the ops before `first_difference` (all ops when none): the ones the
/// kernel agreed with.
pub fn fault_tally(e: &Expected, first_difference: Option<usize>) -> FaultTally {
    let mut t = FaultTally::default();
    let upto = first_difference.unwrap_or(e.paths.len()).min(e.paths.len());
    for p in e.paths[..upto].iter().flatten() {
        t.add(*p);
    }
    t
}

/// The exhaustion at op `i`: it was reached, near the engine's count, and the kernel's
/// status then is out-of-metadata-space's.
fn judge_exhaust(
    i: usize,
    limit: u64,
    expected: Option<&(usize, Exhaustion, model::Model)>,
    g: Option<&(usize, u64, String)>,
    features: &super::workload::PoolFeatures,
) -> Option<ExhaustFinding> {
    let (Some((ei, x, model)), Some((gi, created, status))) = (expected, g) else {
        return Some(ExhaustFinding::Missing);
    };
    if *ei != i || *gi != i {
        return Some(ExhaustFinding::Missing);
    }
    if !x.refused {
        return Some(ExhaustFinding::NotReached { created: (*created).min(limit) });
    }
    if x.drift() > draw::EXHAUST_DRIFT_BOUND {
        return Some(ExhaustFinding::Drift {
            kernel: x.created,
            engine_full_at: x.engine_full_at,
            engine_free_after_blocks: x.engine_free_after_blocks,
        });
    }
    compare_exhausted_status(status, model, features)
        .err()
        .map(|detail| ExhaustFinding::Status { detail })
}

/// What the guest said of each metadata exhaustion, for the expectation to follow: the
/// count it created, and whether the op's answer was a refusal (it ended out of metadata
/// space).
pub fn exhaust_hints(w: &Workload, g: &GuestResults) -> Vec<ExhaustHint> {
    g.exhausts
        .iter()
        .filter(|(i, _, _)| matches!(w.ops.get(*i), Some(KOp::ExhaustMeta { .. })))
        .map(|(i, created, _)| ExhaustHint {
            created: *created,
            refused: g.outcomes.get(*i).is_some_and(|(o, _)| *o != Outcome::Ok),
        })
        .collect()
}

/// The heal at op `i`: the status before it, the tools' check, and the metadata taken
/// out, judged as a checkpoint's image is.
fn judge_heal(
    i: usize,
    expected: Option<&(usize, model::Model, Option<Degraded>, u64)>,
    g: Option<&(usize, i32, String)>,
    dir: &RunDir,
) -> Option<Difference> {
    let heal = |finding| Some(Difference::Heal { op: i, finding });
    let (Some((ei, model, mode, meta_blocks)), Some((gi, exit, status))) = (expected, g) else {
        return heal(HealFinding::Missing);
    };
    if *ei != i || *gi != i {
        return heal(HealFinding::Missing);
    }
    if let Err(detail) = compare_heal_status(status, *mode) {
        return heal(HealFinding::Mode { detail });
    }
    if *exit != 0 {
        let output = std::fs::read_to_string(dir.dir.join(format!("heal-{i}.check")))
            .unwrap_or_default()
            .trim()
            .to_string();
        return heal(HealFinding::ToolCheck { exit: *exit, output });
    }
    judge_image(i, &dir.heal(i), model, *meta_blocks).err()
}

/// A metadata image the kernel wrote at op `i` (a checkpoint's or a heal's), judged in
/// full against `model`: it opens, equals the model, has the expected metadata size, and
/// passes `check` with the model's recount. The image, for what else is read from it.
fn judge_image(
    i: usize,
    path: &Path,
    model: &model::Model,
    meta_blocks: u64,
) -> Result<MemoryDevice, Difference> {
    let (dev, pool) =
        open_kernel_image(path).map_err(|error| Difference::Unreadable { op: i, error })?;
    oracle::compare_pool(&pool, model)
        .map_err(|mismatch| Difference::Metadata { op: i, mismatch })?;
    let s = pool.summary().map_err(|e| Difference::Unreadable { op: i, error: e.to_string() })?;
    if s.metadata_nr_blocks != meta_blocks {
        return Err(Difference::MetadataSize {
            op: i,
            expected: meta_blocks,
            kernel: s.metadata_nr_blocks,
        });
    }
    drop(pool);
    oracle::check_image(&dev, model).map_err(|mismatch| Difference::Check { op: i, mismatch })?;
    Ok(dev)
}

/// Both sides' dumps for a difference in a checkpoint's metadata (the kernel's image and
/// the model at that op); `None` for differences that are not about one checkpoint's image.
fn both_sides(
    d: &Difference,
    w: &Workload,
    e: &Expected,
    rd: &RunDir,
) -> Option<Result<Sides, String>> {
    let op = match d {
        Difference::Metadata { op, .. }
        | Difference::Check { op, .. }
        | Difference::MetadataSize { op, .. } => *op,
        _ => return None,
    };
    let (_, model, _) = e.checkpoints.iter().find(|(ci, _, _)| *ci == op)?;
    Some(sides::write(&rd.dir, op, &rd.checkpoint(op), model, w.shape.data_block_sectors))
}

/// Why a seed produced no verdict.
#[derive(Debug)]
pub enum RunError {
    Uml(UmlError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Uml(e) => write!(f, "{e}"),
        }
    }
}

/// Crash mode on `log`, a log of a run of `w` (`e` its expectation, with points): the
/// verdict, or why the image the run started from could not be made.
pub fn judge_log(
    w: &Workload,
    e: &Expected,
    log: &Path,
    keep: Option<&Path>,
    images_per_epoch: usize,
    samples: usize,
) -> Result<crash::CrashVerdict, String> {
    let initial = initial_image(w)?;
    Ok(judge_log_from(w, e, log, &initial, keep, images_per_epoch, samples))
}

/// The metadata image a run of `w` starts from: blank, or the one thinsim restored.
pub fn initial_image(w: &Workload) -> Result<MemoryDevice, String> {
    match &w.shape.prepopulation {
        None => Ok(MemoryDevice::new(w.shape.max_metadata_blocks)),
        Some(_) => Ok(super::emulate::initial_image(&w.shape)?.0),
    }
}

/// Crash mode on `log` from the image `initial` the run started from.
pub fn judge_log_from(
    w: &Workload,
    e: &Expected,
    log: &Path,
    initial: &MemoryDevice,
    keep: Option<&Path>,
    images_per_epoch: usize,
    samples: usize,
) -> crash::CrashVerdict {
    let acks = super::durability::acks(&w.ops, &e.outcomes, &e.op_points);
    crash::judge(&crash::CrashInput {
        log,
        keep,
        initial,
        points: &e.points,
        acks: &acks,
        layout: super::script::Layout::of(w),
        entropy: crash::crash_entropy(w.seed),
        images_per_epoch,
        samples,
    })
}

/// The kernel's counts for `w`'s metadata exhaustions, from the guest's `results` in a
/// kept run directory (none needed, and none read, when `w` has no exhaustion).
pub fn saved_hints(dir: &Path, w: &Workload) -> Result<Vec<ExhaustHint>, String> {
    if !w.ops.iter().any(|o| matches!(o, KOp::ExhaustMeta { .. })) {
        return Ok(Vec::new());
    }
    let path = dir.join("results");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!(
            "{}: {err} (a metadata exhaustion's count is the kernel's, kept there)",
            path.display()
        )
    })?;
    let g = uml::parse_results(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(exhaust_hints(w, &g))
}

/// Crash mode on a kept run directory alone (no kernel): its `workload.json`, the
/// `initial.img` it started from and its `log.img`, judged as the run judged them, with
/// the held-root rule for `held_root`. Errors name the file that is missing or unreadable.
pub fn judge_saved(
    dir: &Path,
    images_per_epoch: usize,
    held_root: DefectStatus,
    kernel: &str,
) -> Result<crash::CrashVerdict, String> {
    let rd = RunDir { dir: dir.to_path_buf() };
    let w = Workload::read(&dir.join("workload.json")).map_err(|e| e.to_string())?;
    let e = draw::expect_hinted(&w, true, &saved_hints(dir, &w)?)
        .map_err(|(op, d)| format!("the workload does not replay: op {op}: {d}"))?;
    let initial =
        std::fs::read(rd.initial()).map_err(|err| format!("{}: {err}", rd.initial().display()))?;
    if initial.len() as u64 != w.shape.max_metadata_blocks * 4096 {
        return Err(format!(
            "{}: {} bytes, the workload's metadata device is {} blocks",
            rd.initial().display(),
            initial.len(),
            w.shape.max_metadata_blocks
        ));
    }
    if !rd.log().is_file() {
        return Err(format!("{}: no log (was the run kept?)", rd.log().display()));
    }
    let initial = MemoryDevice::from_bytes(&initial);
    let mut v = judge_log_from(&w, &e, &rd.log(), &initial, None, images_per_epoch, 0);
    if v.finding.is_none() {
        v.finding = crash::held_root_rule(held_root, kernel, &v.stats);
    }
    Ok(v)
}

/// Runs `w` three ways in `dir` and compares; with `crash_images` > 0, then judges that
/// many crash images per flush epoch of the kernel's logged metadata writes.
pub fn run_workload(
    k: &UmlKernel,
    w: &Workload,
    dir: &Path,
    thinsim: &Path,
    crash_images: usize,
    held_root: Option<DefectStatus>,
) -> Result<KernelRun, RunError> {
    let mut run = KernelRun {
        seed: w.seed,
        kernel: k.version(),
        ops: w.ops.len(),
        checkpoints: w.ops.iter().filter(|o| **o == KOp::Checkpoint).count(),
        emulated_commits: 0,
        difference: None,
        crash: None,
        guest_seconds: 0.0,
        judge_seconds: 0.0,
        reopened: 0,
        held: HeldTally::default(),
        structure: Structure::default(),
        faults: FaultTally::default(),
        exhaustions: Vec::new(),
        sides: None,
        held_root: held_root.unwrap_or(Defect::HeldRootOutsideCommit.status(&k.version())),
    };
    // The intermediate states crash mode matches commits against are kept in the same pass.
    let e = match draw::expect(w, crash_images > 0) {
        Ok(e) => e,
        Err((op, why)) => {
            run.difference = Some(Difference::unexpected(op, why));
            return Ok(run);
        }
    };
    run.emulated_commits = e.commits;
    let t = std::time::Instant::now();
    let g = uml::run(k, w, dir, thinsim).map_err(RunError::Uml)?;
    run.guest_seconds = t.elapsed().as_secs_f64();
    if !g.kernel.is_empty() {
        run.kernel = g.kernel.clone();
        // The guest's own `uname -r` decides, unless the caller said which rule to apply.
        run.held_root = held_root.unwrap_or(Defect::HeldRootOutsideCommit.status(&run.kernel));
    }
    let rd = RunDir { dir: dir.to_path_buf() };
    // A metadata exhaustion's count of creates is the kernel's: the expectation is made
    // again to follow it (the first one refused nothing the kernel would then do).
    let e = if w.ops.iter().any(|o| matches!(o, KOp::ExhaustMeta { .. })) {
        match draw::expect_hinted(w, crash_images > 0, &exhaust_hints(w, &g)) {
            Ok(e) => e,
            Err((op, why)) => {
                run.difference = Some(Difference::unexpected(op, why));
                return Ok(run);
            }
        }
    } else {
        e
    };
    run.difference = compare(w, &e, &g, &rd, &mut run.held, &mut run.structure);
    run.faults = fault_tally(&e, run.difference.as_ref().map(Difference::op));
    run.exhaustions = e.exhausts.iter().map(|(_, x, _)| *x).collect();
    run.sides = run.difference.as_ref().and_then(|d| both_sides(d, w, &e, &rd));
    if run.difference.is_some() || crash_images == 0 {
        return Ok(run);
    }
    let t = std::time::Instant::now();
    let judged = judge_log(w, &e, &rd.log(), Some(dir), crash_images, REOPEN_SAMPLES);
    run.judge_seconds = t.elapsed().as_secs_f64();
    let v = match judged {
        Ok(v) => v,
        Err(error) => {
            run.difference = Some(Difference::Unreadable { op: 0, error });
            return Ok(run);
        }
    };
    run.crash = Some(v.stats);
    // A check must prove it ran: a kernel run commits at every checkpoint, so crash mode
    // with no commit or no image judged read nothing, and that is a failure, not a pass.
    let finding = v
        .finding
        .or_else(|| crash::held_root_rule(run.held_root, &run.kernel, &v.stats))
        .or_else(|| {
            (v.stats.commits == 0 || v.stats.images == 0)
                .then_some(CrashFinding::NothingJudged { entries: v.stats.entries })
        });
    if let Some(finding) = finding {
        run.difference = Some(Difference::Crash { op: w.ops.len(), finding });
        return Ok(run);
    }
    let r = reopen(k, dir, thinsim, w, &v.samples, &e.points).map_err(RunError::Uml)?;
    run.reopened = r.reopened;
    // As above: samples were kept, so none reopened is a check that did not run.
    let finding = r.finding.or_else(|| {
        (r.reopened == 0).then_some(ReopenFinding::NothingReopened { samples: v.samples.len() })
    });
    if let Some(finding) = finding {
        run.difference = Some(Difference::Reopen { op: w.ops.len(), finding });
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::uml::GuestResults;
    use crate::kernel::workload::{PoolFeatures, PoolShape};

    const FULL: &str =
        "0 8 thin-pool 0 1024/1024 0/64 - ro discard_passdown error_if_no_space - 256";

    fn x(created: u64, engine_full_at: Option<u64>, free: u64) -> Exhaustion {
        Exhaustion { created, refused: true, engine_full_at, engine_free_after_blocks: free }
    }

    /// The exhaustion judge names each way it can go wrong, and passes the right one.
    #[test]
    fn an_exhaustion_is_judged_reached_near_the_engine_and_read_only() {
        let f = PoolFeatures::default();
        let m = model::Model::new(64);
        let judge = |e: Exhaustion, kernel: u64, status: &str| {
            let expected = (3, e, m.clone());
            judge_exhaust(3, 900, Some(&expected), Some(&(3, kernel, status.to_string())), &f)
        };
        assert_eq!(judge(x(880, Some(880), 0), 880, FULL), None);
        let bound = draw::EXHAUST_DRIFT_BOUND;
        assert_eq!(judge(x(880 + bound, Some(880), 0), 880 + bound, FULL), None, "at the bound");
        assert_eq!(judge(x(880, None, bound), 880, FULL), None, "room left, at the bound");
        assert!(matches!(
            judge(x(881 + bound, Some(880), 0), 881 + bound, FULL),
            Some(ExhaustFinding::Drift { kernel, engine_full_at: Some(880), .. }) if kernel == 881 + bound
        ));
        assert!(matches!(
            judge(x(800, None, bound + 1), 800, FULL),
            Some(ExhaustFinding::Drift { engine_free_after_blocks, .. }) if engine_free_after_blocks == bound + 1
        ));
        let never = Exhaustion { refused: false, ..x(900, None, 30) };
        assert_eq!(judge(never, 900, FULL), Some(ExhaustFinding::NotReached { created: 900 }));
        let rw = FULL.replace(" ro ", " rw ");
        assert!(matches!(
            judge(x(880, Some(880), 0), 880, &rw),
            Some(ExhaustFinding::Status { .. })
        ));
        // Reported for another op, or not at all.
        let e = (3, x(880, Some(880), 0), m.clone());
        assert_eq!(judge_exhaust(3, 900, Some(&e), None, &f), Some(ExhaustFinding::Missing));
        let other = (4, 880, FULL.to_string());
        assert_eq!(
            judge_exhaust(3, 900, Some(&e), Some(&other), &f),
            Some(ExhaustFinding::Missing)
        );
        let late = (5, x(880, Some(880), 0), m.clone());
        let g = (3, 880, FULL.to_string());
        assert_eq!(judge_exhaust(3, 900, Some(&late), Some(&g), &f), Some(ExhaustFinding::Missing));
    }

    /// The hints are the guest's counts for the workload's exhaustions, refused where the
    /// op's answer was a failure.
    #[test]
    fn hints_follow_the_guest() {
        let w = Workload {
            format_version: crate::kernel::workload::FORMAT_VERSION,
            seed: 0,
            shape: PoolShape {
                data_block_sectors: 128,
                data_blocks: 64,
                metadata_blocks: 1024,
                virtual_blocks: 64,
                max_data_blocks: 64,
                max_metadata_blocks: 1024,
                prepopulation: None,
                features: PoolFeatures::default(),
            },
            ops: vec![
                KOp::CreateThin { dev: 0 },
                KOp::ExhaustMeta { first_dev: 9, limit: 50 },
                KOp::GrowMetadata { blocks: 2048 },
                KOp::ExhaustMeta { first_dev: 99, limit: 5 },
            ],
        };
        let refused = Outcome::Failed(model::Errno::EOPNOTSUPP);
        let g = GuestResults {
            outcomes: vec![
                (Outcome::Ok, String::new()),
                (refused, "errno EOPNOTSUPP".into()),
                (Outcome::Ok, String::new()),
                (Outcome::Ok, String::new()),
            ],
            // A line for an op that is no exhaustion is not a hint.
            exhausts: vec![(1, 40, FULL.into()), (2, 7, FULL.into()), (3, 5, FULL.into())],
            ..GuestResults::default()
        };
        assert_eq!(
            exhaust_hints(&w, &g),
            vec![
                ExhaustHint { created: 40, refused: true },
                ExhaustHint { created: 5, refused: false }
            ]
        );
    }
}
