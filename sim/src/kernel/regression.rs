//! Kernel-wing regressions: one file per harness or emulation bug the real kernel exposed,
//! in `corpus/kernel-regressions/`. Each holds what broke, what fixed it, where it was
//! found, a workload (shrunk from the seed that found it, [`super::shrink`]) and what the
//! emulation must now say about its last op. They replay without a kernel: the bug was in
//! thinsim's expectation, so the expectation is what they pin.
//!
//! Invariant: a file's verdict is checked on its last op only, and every earlier op must
//! replay with no divergence and no clock dependence (so the file is a workload the
//! differential could run).

use super::draw::{expect, NoExpectation};
use super::emulate::{ClockDependence, Outcome};
use super::workload::{KOp, Workload};
use serde::{Deserialize, Serialize};

/// What the emulation must answer for a regression's last op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Verdict {
    /// The op fails with this errno (its name, as `ENOSPC`), and would succeed without
    /// FUA: the failure is the empty flush that follows an O_DSYNC write.
    FailsByItsFlush { errno: String },
    /// The op's answer would be the kernel's clock's: the workload is refused there.
    ClockDependent { why: ClockDependence },
    /// The last op is a checkpoint, and whether the pool is out of data space there (the
    /// mode its status line must show).
    CheckpointMode { out_of_data_space: bool },
}

/// One regression file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRegression {
    pub broke: String,
    pub fixed: String,
    pub found_by: String,
    pub verdict: Verdict,
    pub workload: Workload,
}

/// Why a regression does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegressionFailure {
    /// An op before the last has no expectation.
    Earlier { op: usize, why: NoExpectation },
    /// The last op's answer is not the recorded one.
    Answer { expected: Verdict, got: String },
}

impl std::fmt::Display for RegressionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegressionFailure::Earlier { op, why } => write!(f, "op {op}: {why}"),
            RegressionFailure::Answer { expected, got } => {
                write!(f, "the last op: expected {expected:?}, got {got}")
            }
        }
    }
}

fn errno_name(o: Outcome) -> Option<String> {
    match o {
        Outcome::Ok => None,
        Outcome::Failed(e) => Some(format!("{e:?}")),
    }
}

/// Whether `w`'s last op gets `verdict` from the emulation (all ops before it replaying).
pub fn holds(w: &Workload, verdict: &Verdict) -> Result<(), RegressionFailure> {
    let last = w.ops.len().checked_sub(1).ok_or_else(|| RegressionFailure::Answer {
        expected: verdict.clone(),
        got: "an empty workload".into(),
    })?;
    let answer = |got: String| RegressionFailure::Answer { expected: verdict.clone(), got };
    match (verdict, expect(w, false)) {
        (_, Err((op, why))) if op < last => Err(RegressionFailure::Earlier { op, why }),
        (Verdict::ClockDependent { why }, Err((_, NoExpectation::Clock(c)))) if c == *why => Ok(()),
        (Verdict::FailsByItsFlush { errno }, Ok(e)) => {
            let got = errno_name(e.outcomes[last]);
            if got.as_deref() != Some(errno.as_str()) {
                return Err(answer(format!("{:?}", e.outcomes[last])));
            }
            // Without FUA the same write succeeds: only the flush after it fails.
            let mut plain = w.clone();
            match plain.ops.last_mut() {
                Some(KOp::Write { fua, .. }) if *fua => *fua = false,
                _ => {
                    return Err(answer(format!(
                        "a last op that is not a FUA write: {:?}",
                        w.ops[last]
                    )))
                }
            }
            match expect(&plain, false) {
                Ok(p) if p.outcomes[last] == Outcome::Ok => Ok(()),
                Ok(p) => {
                    Err(answer(format!("without FUA the write also fails: {:?}", p.outcomes[last])))
                }
                Err((op, why)) => Err(RegressionFailure::Earlier { op, why }),
            }
        }
        (Verdict::CheckpointMode { out_of_data_space }, Ok(e)) => {
            match (&w.ops[last], e.out_of_data_space.last()) {
                (KOp::Checkpoint, Some(got)) if got == out_of_data_space => Ok(()),
                (KOp::Checkpoint, got) => Err(answer(format!("out of data space: {got:?}"))),
                (op, _) => Err(answer(format!("a last op that is not a checkpoint: {op:?}"))),
            }
        }
        (_, Ok(e)) => Err(answer(format!("{:?}", e.outcomes[last]))),
        (_, Err((_, why))) => Err(answer(why.to_string())),
    }
}
