//! `thinsim shrink`: the smallest trace that still fails the same way.
//!
//! A candidate is kept when its replay fails with the same signature (oracle, op kind and
//! fault kinds; `Failure::signature`); a candidate that cannot run (an op on a device with
//! no open handle, say) or that fails differently is dropped. The passes, repeated until
//! none makes progress or the budget is spent (1–4 to their own fixpoint before 5 runs, so
//! the ops are down before the numbers of a long trace take the budget):
//! 1. cut everything after the failing op;
//! 2. delta debugging over the ops: remove chunks of half, a quarter, … one op; then runs
//!    of provisions of one device become one `provision_many` op, and delta debugging goes
//!    on over its vblocks (a deep tree needs hundreds of provisions to split a leaf);
//! 3. remove faults one at a time (a removed crash plan keeps every write: a clean cut);
//! 4. simplify the crash plans that stay: issue order, then each dropped or torn write
//!    applied whole instead;
//! 5. simplify arguments: renumber devices to the smallest free ids, then make each block
//!    number, range end and size smaller (0, half, one less).
//!
//! Invariants: the result always reproduces the signature (it is the last kept candidate,
//! and the first is the input, which must fail); the budget is checked before every
//! replay, so a shrink ends within one replay of it.

use crate::disk::{CrashPlan, Planned, WriteChoice};
use crate::runner::{self, Trace};
use std::time::{Duration, Instant};

/// What the shrinker reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub pass: &'static str,
    pub ops: usize,
    pub faults: usize,
    pub replays: u64,
}

/// The result of a shrink.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub trace: Trace,
    pub signature: String,
    pub ops_before: usize,
    pub faults_before: usize,
    pub replays: u64,
    pub seconds: f64,
    /// The budget ran out before the passes stopped making progress.
    pub budget_spent: bool,
}

/// Why a trace could not be shrunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShrinkError {
    /// The trace replays without a failure: nothing to shrink.
    Passes,
    Invalid(runner::TraceError),
}

impl std::fmt::Display for ShrinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShrinkError::Passes => {
                write!(f, "the trace replays without a failure: nothing to shrink")
            }
            ShrinkError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

struct Shrinker<'a> {
    best: Trace,
    signature: String,
    replays: u64,
    deadline: Instant,
    progress: &'a mut dyn FnMut(&Progress),
    pass: &'static str,
    /// Stop as soon as the kept trace has at most this many ops.
    goal_ops: Option<usize>,
}

/// Shrinks `t` within `budget` (see the module header).
pub fn shrink(
    t: &Trace,
    budget: Duration,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Shrunk, ShrinkError> {
    shrink_to_goal(t, budget, None, progress)
}

/// [`shrink`], ending early once the kept trace has at most `goal_ops` ops (a check that
/// only asks whether a shrink reaches a size, such as CI's, need not spend the rest of its
/// budget simplifying); the result is then that trace, `budget_spent` false.
pub fn shrink_to_goal(
    t: &Trace,
    budget: Duration,
    goal_ops: Option<usize>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Shrunk, ShrinkError> {
    let start = Instant::now();
    let first = runner::replay(t);
    if let Some(e) = first.invalid {
        return Err(ShrinkError::Invalid(e));
    }
    let f = first.failure.ok_or(ShrinkError::Passes)?;
    let mut s = Shrinker {
        best: t.clone(),
        signature: f.signature(),
        replays: 1,
        deadline: start + budget,
        progress,
        pass: "cut",
        goal_ops,
    };
    s.cut_after(f.step);
    let state = |s: &Shrinker| (s.best.steps.len(), s.best.fault_count(), weight(&s.best));
    loop {
        let before = state(&s);
        // The structural passes to their fixpoint first: the ops and faults are what a
        // person reads, and the argument pass can spend a whole budget on the numbers of a
        // long trace (every vblock of every provision) before the ops are down.
        loop {
            let round = state(&s);
            s.remove_ops();
            s.coalesce_provisions();
            s.shrink_vblock_lists();
            s.remove_faults();
            s.simplify_crashes();
            if s.out_of_time() || round == state(&s) {
                break;
            }
        }
        s.renumber_devices();
        s.smaller_numbers();
        if s.out_of_time() || before == state(&s) {
            break;
        }
    }
    let budget_spent = Instant::now() >= s.deadline;
    let mut trace = s.best;
    trace.expect = Some(runner::trace::Expected {
        signature: s.signature.clone(),
        step: trace.expect.as_ref().map_or(0, |e| e.step),
    });
    // The failing step of the smallest trace, for its header.
    let last = runner::replay(&trace);
    if let (Some(e), Some(f)) = (trace.expect.as_mut(), last.failure) {
        e.step = f.step;
    }
    Ok(Shrunk {
        trace,
        signature: s.signature,
        ops_before: t.steps.len(),
        faults_before: t.fault_count(),
        replays: s.replays + 1,
        seconds: start.elapsed().as_secs_f64(),
        budget_spent,
    })
}

/// `t` with runs of fault-free provisions of one device merged into `provision_many` ops:
/// every run, or (`only`) the run starting at that op.
fn coalesced(t: &Trace, only: Option<usize>) -> Trace {
    use runner::Op::{Provision, ProvisionMany};
    let mut out = Trace { steps: Vec::with_capacity(t.steps.len()), ..t.clone() };
    let mut i = 0;
    while i < t.steps.len() {
        let s = &t.steps[i];
        let dev = match &s.op {
            Provision { dev, .. } | ProvisionMany { dev, .. } if s.faults.is_empty() => Some(*dev),
            _ => None,
        };
        let (Some(dev), true) = (dev, only.is_none_or(|o| o == i)) else {
            out.steps.push(s.clone());
            i += 1;
            continue;
        };
        let mut vblocks = Vec::new();
        while let Some(s) = t.steps.get(i).filter(|s| s.faults.is_empty()) {
            match &s.op {
                Provision { dev: d, vblock } if *d == dev => vblocks.push(*vblock),
                ProvisionMany { dev: d, vblocks: v } if *d == dev => vblocks.extend(v),
                _ => break,
            }
            i += 1;
        }
        out.steps.push(runner::Step { op: ProvisionMany { dev, vblocks }, faults: Vec::new() });
    }
    out
}

/// The sum of every number in the ops and of the non-default crash choices: what the
/// argument passes make smaller (a progress measure).
fn weight(t: &Trace) -> u128 {
    let mut t = t.clone();
    let mut w: u128 = 0;
    for s in &mut t.steps {
        w += s.op.numbers_mut().into_iter().map(|(_, n)| u128::from(*n)).sum::<u128>();
        for f in &s.faults {
            if let Planned::Crash(p) = &f.fault {
                w += p.choices.iter().filter(|c| **c != WriteChoice::Apply).count() as u128;
                w += p.order.iter().enumerate().filter(|(i, o)| i != *o).count() as u128;
            }
        }
    }
    w
}

impl Shrinker<'_> {
    /// The budget is spent, or the goal reached: no more replays.
    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline || self.goal_ops.is_some_and(|g| self.best.steps.len() <= g)
    }

    fn report(&mut self) {
        let p = Progress {
            pass: self.pass,
            ops: self.best.steps.len(),
            faults: self.best.fault_count(),
            replays: self.replays,
        };
        (self.progress)(&p);
    }

    /// Keeps `cand` if it fails the same way; cuts it after its failing op too.
    fn try_keep(&mut self, cand: Trace) -> bool {
        if self.out_of_time() {
            return false;
        }
        self.replays += 1;
        let out = runner::replay(&cand);
        let same = out.invalid.is_none()
            && out.failure.as_ref().is_some_and(|f| f.signature() == self.signature);
        if same {
            self.best = cand;
            if let Some(f) = out.failure {
                self.truncate(f.step);
            }
            self.report();
        }
        same
    }

    fn truncate(&mut self, step: u64) {
        let n = usize::try_from(step).unwrap_or(usize::MAX);
        if n < self.best.steps.len() {
            self.best.steps.truncate(n);
        }
    }

    fn cut_after(&mut self, step: u64) {
        self.pass = "cut";
        self.truncate(step);
        self.report();
    }

    /// Delta debugging over the op list (complements only: remove one chunk at a time).
    fn remove_ops(&mut self) {
        self.pass = "ops";
        let mut chunk = (self.best.steps.len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < self.best.steps.len() && !self.out_of_time() {
                let mut cand = self.best.clone();
                let end = (i + chunk).min(cand.steps.len());
                cand.steps.drain(i..end);
                if !self.try_keep(cand) {
                    i += chunk;
                }
            }
            if chunk == 1 || self.out_of_time() {
                return;
            }
            chunk = (chunk / 2).max(1);
        }
    }

    /// Every maximal run of fault-free provisions of one device as one `provision_many`:
    /// all runs at once if that holds, else run by run.
    fn coalesce_provisions(&mut self) {
        self.pass = "coalesce";
        let all = coalesced(&self.best, None);
        if all.steps.len() == self.best.steps.len() || self.try_keep(all) {
            return;
        }
        let mut at = 0;
        while at < self.best.steps.len() && !self.out_of_time() {
            let cand = coalesced(&self.best, Some(at));
            if cand.steps.len() < self.best.steps.len() && self.try_keep(cand) {
                continue;
            }
            at += 1;
        }
    }

    /// Delta debugging over the vblocks of each `provision_many`.
    fn shrink_vblock_lists(&mut self) {
        self.pass = "vblocks";
        let mut op = 0;
        while op < self.best.steps.len() && !self.out_of_time() {
            let len = |t: &Trace| match t.steps.get(op).map(|s| &s.op) {
                Some(runner::Op::ProvisionMany { vblocks, .. }) => vblocks.len(),
                _ => 0,
            };
            let mut chunk = (len(&self.best) / 2).max(1);
            while len(&self.best) > 1 && !self.out_of_time() {
                let mut i = 0;
                while i < len(&self.best) && !self.out_of_time() {
                    let mut cand = self.best.clone();
                    if let runner::Op::ProvisionMany { vblocks, .. } = &mut cand.steps[op].op {
                        let end = (i + chunk).min(vblocks.len());
                        vblocks.drain(i..end);
                    }
                    if !self.try_keep(cand) {
                        i += chunk;
                    }
                }
                if chunk == 1 {
                    break;
                }
                chunk = (chunk / 2).max(1);
            }
            op += 1;
        }
    }

    fn remove_faults(&mut self) {
        self.pass = "faults";
        let mut op = 0;
        while op < self.best.steps.len() && !self.out_of_time() {
            let mut f = 0;
            while f < self.best.steps.get(op).map_or(0, |s| s.faults.len()) {
                let mut cand = self.best.clone();
                cand.steps[op].faults.remove(f);
                if !self.try_keep(cand) {
                    f += 1;
                }
            }
            op += 1;
        }
    }

    /// The crash plans that stay: issue order, then whole writes, one choice at a time.
    fn simplify_crashes(&mut self) {
        self.pass = "crashes";
        for op in 0..self.best.steps.len() {
            for f in 0..self.best.steps.get(op).map_or(0, |s| s.faults.len()) {
                let Some(Planned::Crash(p)) = self.crash_at(op, f) else { continue };
                let identity: Vec<usize> = (0..p.order.len()).collect();
                if p.order != identity {
                    self.try_plan(op, f, CrashPlan { order: identity, ..p.clone() });
                }
                let mut i = 0;
                while let Some(Planned::Crash(p)) = self.crash_at(op, f) {
                    if i >= p.choices.len() || self.out_of_time() {
                        break;
                    }
                    if p.choices[i] != WriteChoice::Apply {
                        let mut q = p.clone();
                        q.choices[i] = WriteChoice::Apply;
                        self.try_plan(op, f, q);
                    }
                    i += 1;
                }
            }
        }
    }

    fn crash_at(&self, op: usize, f: usize) -> Option<Planned> {
        self.best.steps.get(op)?.faults.get(f).map(|x| x.fault.clone())
    }

    fn try_plan(&mut self, op: usize, f: usize, plan: CrashPlan) -> bool {
        let mut cand = self.best.clone();
        cand.steps[op].faults[f].fault = Planned::Crash(plan);
        self.try_keep(cand)
    }

    /// Renames each device to the smallest id no op uses, in every op at once.
    fn renumber_devices(&mut self) {
        self.pass = "devices";
        let ids = self.dev_ids();
        for &id in ids.iter().rev() {
            let used = self.dev_ids();
            let Some(to) = (0..id).find(|c| !used.contains(c)) else { continue };
            let mut cand = self.best.clone();
            for s in &mut cand.steps {
                for d in s.op.dev_ids_mut() {
                    if *d == id {
                        *d = to;
                    }
                }
            }
            self.try_keep(cand);
        }
    }

    fn dev_ids(&self) -> std::collections::BTreeSet<u64> {
        let mut t = self.best.clone();
        t.steps.iter_mut().flat_map(|s| s.op.dev_ids_mut().into_iter().map(|d| *d)).collect()
    }

    /// Each number other than a device id: 0, half, one less, while one of them holds.
    fn smaller_numbers(&mut self) {
        self.pass = "numbers";
        let mut op = 0;
        while op < self.best.steps.len() && !self.out_of_time() {
            let n = self.best.steps[op].op.numbers_mut().len();
            for k in 0..n {
                while let Some(cur) = self.number(op, k).filter(|&c| c > 0) {
                    let mut tries = vec![0, cur / 2, cur - 1];
                    tries.dedup();
                    let kept = tries.into_iter().any(|v| {
                        let mut c = self.best.clone();
                        if let Some((_, x)) = c.steps[op].op.numbers_mut().into_iter().nth(k) {
                            *x = v;
                        }
                        self.try_keep(c)
                    });
                    if !kept || op >= self.best.steps.len() {
                        break;
                    }
                }
            }
            op += 1;
        }
    }

    /// Number `k` of op `op`, unless it is a thin id.
    fn number(&self, op: usize, k: usize) -> Option<u64> {
        let mut o = self.best.steps.get(op)?.op.clone();
        let (kind, n) = o.numbers_mut().into_iter().nth(k)?;
        (kind == runner::op::Number::Other).then_some(*n)
    }
}
