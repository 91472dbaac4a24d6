//! `thinsim explore`: every crash state of a short workload, judged by the swarm's oracle.
//!
//! The workload is a trace's ops without its faults (class A: every crash state must reopen
//! at a committed state). A first replay finds every flush call; then, for each, the
//! workload is replayed up to that op with the power cut at that flush, so every write of
//! the flush epoch is pending, and the runner enumerates the crash states there — every
//! subset of the pending writes, each torn in every way the atomic unit allows — up to a
//! bound per cut, above which it samples (and the report says so). Every state is opened,
//! compared with the candidate committed states and `check`ed, as in the swarm.
//!
//! Invariants: the counts are of states the runner actually opened and judged (the
//! runner's `CrashPoint`s), never of states planned; a cut that judged none is reported.

use crate::disk::TearSet;
use crate::runner::{self, CrashPoint, ExploreBounds, Failure, Op, StepFault, Trace, TraceError};

/// A failure and the flush cut (op, I/O offset in the op) that led to it; None: the
/// workload's own power cuts.
pub type CutFailure = (Option<(u64, u64)>, Box<Failure>);

/// Everything `explore` found.
#[derive(Clone, Debug, Default)]
pub struct ExploreReport {
    /// Power cuts tried: one per flush of the workload, plus the workload's own cuts.
    pub cuts: usize,
    /// Every crash point the runner enumerated.
    pub points: Vec<CrashPoint>,
    /// Failures, with the flush cut (op, I/O offset) that led to each (None: the workload's
    /// own power cuts).
    pub failures: Vec<CutFailure>,
}

impl ExploreReport {
    pub fn states(&self) -> u64 {
        self.points.iter().map(|p| p.judged).sum()
    }

    pub fn sampled_points(&self) -> usize {
        self.points.iter().filter(|p| p.sampled).count()
    }

    /// Crash points with more than one pending write: where ordering and subsets matter.
    pub fn nontrivial_points(&self) -> usize {
        self.points.iter().filter(|p| p.pending_writes > 1).count()
    }
}

/// The trace's ops with no faults and no fault phase: what is explored.
pub fn workload(t: &Trace) -> Trace {
    let steps = t
        .steps
        .iter()
        .filter(|s| s.op != Op::FaultsOn)
        .map(|s| runner::Step { op: s.op.clone(), faults: Vec::new() })
        .collect();
    Trace { steps, expect: None, ..t.clone() }
}

/// The tears to enumerate on a disk with this trace's atomic unit: every mask of units.
pub fn tears_for(t: &Trace) -> TearSet {
    if t.options.disk.atomic_unit.units_per_block() > 1 {
        TearSet::AllMasks
    } else {
        TearSet::Whole
    }
}

/// Explores the workload of `t` (see the module header); `max_cuts` bounds the flush cuts.
pub fn explore(
    t: &Trace,
    max_states: u64,
    max_cuts: Option<usize>,
    mut progress: impl FnMut(usize, usize),
) -> Result<ExploreReport, TraceError> {
    let w = workload(t);
    let bounds = ExploreBounds { max_states, tears: tears_for(&w) };
    let cfg = runner::RunConfig { explore: Some(bounds), ..w.config() };
    let base = runner::replay_with(&w, cfg.clone());
    if let Some(e) = base.invalid {
        return Err(e);
    }
    let mut report = ExploreReport { cuts: 1, points: base.crash_points, ..Default::default() };
    if let Some(f) = base.failure {
        report.failures.push((None, f));
    }
    let flushes: Vec<(u64, u64)> =
        base.flushes.iter().copied().take(max_cuts.unwrap_or(usize::MAX)).collect();
    for (i, &(step, io)) in flushes.iter().enumerate() {
        progress(i, flushes.len());
        let mut cut = w.clone();
        // Ops are 1-based; the replay appends the final power cut.
        let n = usize::try_from(step).unwrap_or(usize::MAX);
        if n > cut.steps.len() {
            cut.steps.push(runner::Step { op: Op::FinalPowerCut, faults: Vec::new() });
        }
        cut.steps.truncate(n);
        if let Some(last) = cut.steps.last_mut() {
            last.faults = vec![StepFault { io, fault: crate::disk::Planned::PowerLoss }];
        }
        let out = runner::replay_with(&cut, cfg.clone());
        if let Some(e) = out.invalid {
            return Err(e);
        }
        report.cuts += 1;
        report.points.extend(out.crash_points);
        if let Some(f) = out.failure {
            report.failures.push((Some((step, io)), f));
        }
    }
    progress(flushes.len(), flushes.len());
    Ok(report)
}
