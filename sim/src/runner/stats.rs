//! What a run (or a campaign) did, as counters that add up across runs and shards.
//!
//! Invariant: every field is a count (or a map of counts) and [`RunStats::merge`] adds them
//! field by field, so a merged report equals the report of one big run.

use super::op::OpKind;
use super::oracles::Oracle;
use super::repair::RepairTally;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Outcomes per fault class (DESIGN §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Class A: crashes recovered to exactly an allowed committed state.
    pub a_exact: u64,
    /// Class A: recoveries during a commit that found the new state (else the old one).
    pub a_new_state: u64,
    /// Class B: after the fault the reopen gave the right committed state (and check passed).
    pub b_recovered: u64,
    /// Class B: the damage was reported as a typed error (open, check or a call).
    pub b_detected: u64,
    /// Class B: a wrong answer the format cannot detect in principle (a lost or misdirected
    /// write leaving an older, self-consistent block). Counted, explained, not a failure.
    pub b_undetectable: u64,
    /// Class C: engine calls that failed with a typed I/O error.
    pub c_errors: u64,
    /// Class C: aborts after an error, and of those the ones that failed (fail mode).
    pub c_aborts: u64,
    pub c_fail_modes: u64,
    /// Class C: reopens after faults stopped that gave the last committed state.
    pub c_recovered: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    pub runs: u64,
    pub steps: u64,
    pub ops: BTreeMap<OpKind, u64>,
    pub commits: u64,
    pub aborts: u64,
    /// Real crashes of the shared disk (power cuts), and reopens after them.
    pub crashes: u64,
    pub crashes_in_commit: u64,
    pub recoveries: u64,
    /// Explored crash images reopened and compared, and how many of those also ran `check`.
    pub crash_images_checked: u64,
    pub image_checks: u64,
    /// `check` runs on committed images (after commits and recoveries).
    pub commit_checks: u64,
    /// Crash images and recoveries judged by a remembered verification of an image that
    /// holds the same bytes in every block that verification read (`runner::memo`), not
    /// verified again in full; included in `crash_images_checked` and `recoveries`.
    #[serde(default)]
    pub crash_images_memo: u64,
    #[serde(default)]
    pub recoveries_memo: u64,
    /// Commits verified incrementally (only what changed; see `runner::verify`).
    #[serde(default)]
    pub incremental_checks: u64,
    pub metadata_exhausted: u64,
    pub data_full: u64,
    pub metadata_resizes: u64,
    pub data_resizes: u64,
    pub threshold_callbacks: u64,
    /// The data device (`runner::data_device`): writes of provisioned blocks, flushes by the
    /// pre-commit callback, and mapped blocks whose data was found to survive a recovery.
    #[serde(default)]
    pub data_writes: u64,
    #[serde(default)]
    pub data_flushes: u64,
    #[serde(default)]
    pub data_blocks_verified: u64,
    pub outcomes: Outcomes,
    /// Why class B wrong answers were judged undetectable (reason → count).
    pub undetectable_reasons: BTreeMap<String, u64>,
    /// Repair after class B outcomes, per fault kind (and `all`): see `runner::repair`.
    #[serde(default)]
    pub repair: BTreeMap<String, RepairTally>,
    /// The undamaged committed image each run repairs once: it must come back whole.
    #[serde(default)]
    pub clean_repair: RepairTally,
    /// `check`'s findings judged after commits (`oracle::judge_leaks`).
    #[serde(default)]
    pub check_leaks: LeakTally,
    /// How often each oracle judged (`runner::oracles`): the report lists every oracle, and
    /// one that was due and never ran is a gap.
    #[serde(default)]
    pub oracles: BTreeMap<Oracle, u64>,
}

/// `check` judged against the model's leaks: the campaign's proof that `check` still reports
/// the non-fatal findings it should (a data block whose stored count is above the
/// references the trees hold), no more and no fewer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakTally {
    /// Committed images `check` ran on, its findings judged.
    pub images: u64,
    /// Of those, the images where the model held references outside the trees.
    pub images_with_leaks: u64,
    /// Leaked data blocks reported, each exactly as the model holds it.
    pub leaked_blocks: u64,
}

impl LeakTally {
    pub fn merge(&mut self, o: &LeakTally) {
        self.images += o.images;
        self.images_with_leaks += o.images_with_leaks;
        self.leaked_blocks += o.leaked_blocks;
    }

    /// One judged image with `leaked` leaked data blocks.
    pub fn record(&mut self, leaked: u64) {
        self.images += 1;
        self.images_with_leaks += u64::from(leaked > 0);
        self.leaked_blocks += leaked;
    }
}

impl RunStats {
    pub fn op(&mut self, kind: OpKind) {
        *self.ops.entry(kind).or_insert(0) += 1;
    }

    /// `oracle` judged once more.
    pub fn ran(&mut self, oracle: Oracle) {
        *self.oracles.entry(oracle).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: &RunStats) {
        self.runs += o.runs;
        self.steps += o.steps;
        for (k, n) in &o.ops {
            *self.ops.entry(*k).or_insert(0) += n;
        }
        self.commits += o.commits;
        self.aborts += o.aborts;
        self.crashes += o.crashes;
        self.crashes_in_commit += o.crashes_in_commit;
        self.recoveries += o.recoveries;
        self.crash_images_checked += o.crash_images_checked;
        self.image_checks += o.image_checks;
        self.commit_checks += o.commit_checks;
        self.crash_images_memo += o.crash_images_memo;
        self.recoveries_memo += o.recoveries_memo;
        self.incremental_checks += o.incremental_checks;
        self.metadata_exhausted += o.metadata_exhausted;
        self.data_full += o.data_full;
        self.metadata_resizes += o.metadata_resizes;
        self.data_resizes += o.data_resizes;
        self.threshold_callbacks += o.threshold_callbacks;
        self.data_writes += o.data_writes;
        self.data_flushes += o.data_flushes;
        self.data_blocks_verified += o.data_blocks_verified;
        self.clean_repair.merge(&o.clean_repair);
        self.check_leaks.merge(&o.check_leaks);
        let (a, b) = (&mut self.outcomes, &o.outcomes);
        a.a_exact += b.a_exact;
        a.a_new_state += b.a_new_state;
        a.b_recovered += b.b_recovered;
        a.b_detected += b.b_detected;
        a.b_undetectable += b.b_undetectable;
        a.c_errors += b.c_errors;
        a.c_aborts += b.c_aborts;
        a.c_fail_modes += b.c_fail_modes;
        a.c_recovered += b.c_recovered;
        for (k, t) in &o.repair {
            self.repair.entry(k.clone()).or_default().merge(t);
        }
        for (k, n) in &o.oracles {
            *self.oracles.entry(*k).or_insert(0) += n;
        }
        for (k, n) in &o.undetectable_reasons {
            *self.undetectable_reasons.entry(k.clone()).or_insert(0) += n;
        }
    }
}
