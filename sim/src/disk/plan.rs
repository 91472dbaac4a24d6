//! Faults as values: every decision the disk's RNG makes (which I/O call fails or is lost,
//! which bit rots, where a misdirected write lands, what a crash keeps) is a [`Planned`]
//! fault at an I/O ordinal. A disk either draws them from its RNG and logs each one
//! (recording), or is given a script and takes them from it without touching its RNG
//! (replay, and the shrinker's edited plans).
//!
//! Invariants:
//! - A scripted fault applies only where a drawn one could have happened: at the same kind
//!   of decision, on the I/O call with its ordinal, and only while injection is enabled.
//!   A scripted fault whose I/O call turns out to be of another kind is skipped, never
//!   moved, so a plan edited by hand or by the shrinker stays meaningful.
//! - Scripted crashes are used in order; a crash with no scripted plan left keeps every
//!   pending write (in issue order), and a plan is fitted to the pending writes it meets.
//! - A lost write is always dropped by a crash, scripted or not.

use super::image::{CrashPlan, PendingWrite, WriteChoice, WriteFate};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One decision of the disk's fault injection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Planned {
    ReadEio,
    LatentSector,
    /// One bit of the block's durable copy flips before the read.
    BitRot {
        byte: u16,
        bit: u8,
    },
    /// One sector (0..8) of the block's durable copy reads as zeros from this read on.
    ZeroedSector {
        sector: u8,
    },
    WriteEio,
    LostWrite,
    MisdirectedWrite {
        to: u64,
    },
    FlushEio,
    /// The power fails at this call (armed by the runner, logged by the disk).
    PowerLoss,
    /// What a power cut does with the pending writes.
    Crash(CrashPlan),
}

impl Planned {
    /// Whether `self` is a decision of the same kind as `other` (parameters aside).
    fn same_kind(&self, other: &Planned) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A planned fault at an absolute I/O ordinal (see `SimDisk::set_crash_at_io`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtIo {
    pub io: u64,
    pub fault: Planned,
}

/// Where the disk's fault decisions come from.
#[derive(Clone, Debug, Default)]
pub(super) struct FaultSource {
    /// `None`: drawn from the RNG. `Some`: the remaining script.
    script: Option<VecDeque<AtIo>>,
    /// Every decision made, in order (drawn or scripted), until taken.
    log: Vec<AtIo>,
}

impl FaultSource {
    pub(super) fn is_scripted(&self) -> bool {
        self.script.is_some()
    }

    /// From now on, decisions come from `script` (ordered by I/O ordinal), not the RNG.
    pub(super) fn set_script(&mut self, mut script: Vec<AtIo>) {
        script.sort_by_key(|a| a.io);
        self.script = Some(script.into());
    }

    /// The scripted decision of `probe`'s kind at call `io`, if any (and drops script
    /// entries for earlier calls, which can no longer apply).
    pub(super) fn scripted(&mut self, io: u64, probe: &Planned) -> Option<Planned> {
        let script = self.script.as_mut()?;
        while script.front().is_some_and(|a| a.io < io && !matches!(a.fault, Planned::Crash(_))) {
            script.pop_front();
        }
        let i = script.iter().position(|a| a.io == io && a.fault.same_kind(probe))?;
        script.remove(i).map(|a| a.fault)
    }

    /// The next scripted crash plan (crashes are matched by order, not ordinal).
    pub(super) fn scripted_crash(&mut self) -> Option<CrashPlan> {
        let script = self.script.as_mut()?;
        let i = script.iter().position(|a| matches!(a.fault, Planned::Crash(_)))?;
        match script.remove(i).map(|a| a.fault) {
            Some(Planned::Crash(p)) => Some(p),
            _ => None,
        }
    }

    pub(super) fn log(&mut self, io: u64, fault: Planned) {
        self.log.push(AtIo { io, fault });
    }

    pub(super) fn take_log(&mut self) -> Vec<AtIo> {
        std::mem::take(&mut self.log)
    }
}

/// `plan` made valid for `pending`: missing choices keep their write, extra ones go, the
/// order keeps the plan's indices that exist and appends the rest, lost writes drop.
pub(super) fn fit(plan: &CrashPlan, pending: &[PendingWrite]) -> CrashPlan {
    let n = pending.len();
    let choices = pending
        .iter()
        .enumerate()
        .map(|(i, w)| match w.fate() {
            WriteFate::Lost => WriteChoice::Drop,
            _ => match plan.choices.get(i).copied() {
                Some(WriteChoice::Tear(t)) if !t.is_valid() => WriteChoice::Apply,
                Some(c) => c,
                None => WriteChoice::Apply,
            },
        })
        .collect();
    let mut seen = vec![false; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for &i in &plan.order {
        if i < n && !seen[i] {
            seen[i] = true;
            order.push(i);
        }
    }
    order.extend((0..n).filter(|&i| !seen[i]));
    CrashPlan { choices, order }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_match_kind_and_ordinal_only() {
        let mut s = FaultSource::default();
        s.set_script(vec![
            AtIo { io: 5, fault: Planned::LostWrite },
            AtIo { io: 3, fault: Planned::ReadEio },
            AtIo { io: 9, fault: Planned::Crash(CrashPlan::in_issue_order(vec![])) },
        ]);
        assert!(s.is_scripted());
        // Call 3 is a write, not a read: its read fault is skipped, not moved.
        assert_eq!(s.scripted(3, &Planned::WriteEio), None);
        assert_eq!(s.scripted(4, &Planned::ReadEio), None);
        assert_eq!(s.scripted(5, &Planned::LostWrite), Some(Planned::LostWrite));
        assert_eq!(s.scripted(5, &Planned::LostWrite), None);
        // Crashes come in order whatever the ordinal.
        assert!(s.scripted_crash().is_some());
        assert!(s.scripted_crash().is_none());
    }
}
