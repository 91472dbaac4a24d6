//! Faults inside the kernel: the pool modes a failed metadata commit leads to, and the
//! error paths a run's ops went down, counted so that a campaign shows what it reached.
//!
//! A fault window ([`super::workload::KOp::FaultMeta`] … [`super::workload::KOp::HealMeta`])
//! starts right after a checkpoint, so nothing is pending and the pool's once-a-second
//! commit has nothing to do; the first op that commits (a message, or a FUA write that
//! provisions) fails, the pool target aborts the transaction and enters
//! [`Degraded::ReadOnly`] (the abort re-read the last commit and needs_check was set) or
//! [`Degraded::Fail`] (the abort itself failed). The paths are what the emulation expected
//! and the kernel then answered alike: a run's tally counts the paths of the ops before its
//! first difference only.
//!
//! Invariant: [`FaultTally::to_json`] lists every path, zeros included, so a path no run
//! reached is visible (and [`FaultTally::from_json`] reads back what it wrote).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The pool target's mode after a failed commit (dm-thin's `PM_READ_ONLY` and `PM_FAIL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degraded {
    /// Writes that need no new mapping go on; everything else that writes fails with EIO,
    /// messages with EOPNOTSUPP; needs_check is set.
    ReadOnly,
    /// Every bio fails with EIO, messages with EOPNOTSUPP.
    Fail,
    /// Out of metadata space (`PM_OUT_OF_METADATA_SPACE`): a commit left the free metadata
    /// blocks, less the reserve, at 0. Bios and messages as in [`Degraded::ReadOnly`], but
    /// nothing was aborted and needs_check is not set: growing the metadata device takes
    /// the pool back to write mode.
    OutOfMetadataSpace,
}

/// One mode or error path of the pool target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPath {
    /// A window opened with writes failing (`flakey error_writes`).
    WindowErrorWrites,
    /// A window opened with every bio failing (the `error` target).
    WindowErrorAll,
    /// A message succeeded and its commit failed: the message still answers success (the
    /// target ignores its commit's result: the header is silent, the kernel's rule is
    /// recorded in reports/kernel/README.md) and its change is aborted.
    MessageCommitFailed,
    /// A FUA write provisioned a block and the commit it waits for failed: EIO.
    FuaWriteCommitFailed,
    /// The abort re-read the last commit: needs_check set, read-only mode.
    AbortToReadOnly,
    /// The abort could not re-read the superblock: fail mode.
    AbortFailedToFail,
    /// The device a message created was aborted with its commit: activation finds no
    /// such device (ENODATA).
    ActivateAborted,
    /// Read-only: a write to an exclusively mapped block goes through.
    ReadOnlyWriteMapped,
    /// Read-only: a write that needs a new mapping (unmapped, or shared) fails with EIO.
    ReadOnlyWriteUnserviceable,
    /// Read-only: an empty flush whose device maps block 0 goes through.
    ReadOnlyFlushMapped,
    /// Read-only: an empty flush whose device leaves block 0 unmapped fails with EIO.
    ReadOnlyFlushUnmapped,
    /// Read-only: a discard succeeds and changes nothing.
    ReadOnlyDiscard,
    /// Read-only or fail mode: a message is refused with EOPNOTSUPP.
    MessageRefused,
    /// Fail mode: a write, discard or flush fails with EIO.
    FailIo,
    /// The metadata taken out after a window held needs_check, and the tools cleared it.
    HealClearedNeedsCheck,
    /// The metadata taken out after a window held the last commit without needs_check.
    HealWithoutNeedsCheck,
    /// A heal outside a window: the pool closed and reopened.
    Reopen,
    /// `create_thin` messages filled the metadata device until the pool entered
    /// out-of-metadata-space at a commit and refused the next message.
    MetadataExhausted,
    /// A metadata growth took the pool out of out-of-metadata-space, back to write mode.
    GrowLeftOutOfMetadataSpace,
}

impl FaultPath {
    pub const ALL: [FaultPath; 19] = [
        FaultPath::WindowErrorWrites,
        FaultPath::WindowErrorAll,
        FaultPath::MessageCommitFailed,
        FaultPath::FuaWriteCommitFailed,
        FaultPath::AbortToReadOnly,
        FaultPath::AbortFailedToFail,
        FaultPath::ActivateAborted,
        FaultPath::ReadOnlyWriteMapped,
        FaultPath::ReadOnlyWriteUnserviceable,
        FaultPath::ReadOnlyFlushMapped,
        FaultPath::ReadOnlyFlushUnmapped,
        FaultPath::ReadOnlyDiscard,
        FaultPath::MessageRefused,
        FaultPath::FailIo,
        FaultPath::HealClearedNeedsCheck,
        FaultPath::HealWithoutNeedsCheck,
        FaultPath::Reopen,
        FaultPath::MetadataExhausted,
        FaultPath::GrowLeftOutOfMetadataSpace,
    ];

    /// The snake_case name (the JSON key).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .expect("a path serialises to its name")
    }

    /// The paths a campaign must reach when its workloads hold fault windows of both kinds
    /// (each is drawn in every window of its kind; the others depend on the ops drawn),
    /// and a metadata exhaustion, which always ends with a growth.
    pub const REQUIRED: [FaultPath; 8] = [
        FaultPath::WindowErrorWrites,
        FaultPath::WindowErrorAll,
        FaultPath::AbortToReadOnly,
        FaultPath::AbortFailedToFail,
        FaultPath::HealClearedNeedsCheck,
        FaultPath::HealWithoutNeedsCheck,
        FaultPath::MetadataExhausted,
        FaultPath::GrowLeftOutOfMetadataSpace,
    ];
}

/// How often each path was reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultTally(pub BTreeMap<FaultPath, u64>);

impl FaultTally {
    pub fn add(&mut self, p: FaultPath) {
        *self.0.entry(p).or_insert(0) += 1;
    }

    pub fn get(&self, p: FaultPath) -> u64 {
        self.0.get(&p).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, o: &FaultTally) {
        for (p, n) in &o.0 {
            *self.0.entry(*p).or_insert(0) += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|n| *n == 0)
    }

    /// Every path with its count, zeros included.
    pub fn to_json(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> =
            FaultPath::ALL.iter().map(|p| (p.name(), self.get(*p).into())).collect();
        serde_json::Value::Object(m)
    }

    /// Reads [`FaultTally::to_json`]'s output (unknown keys and non-numbers are ignored:
    /// a summary written by an older thinsim has none).
    pub fn from_json(v: &serde_json::Value) -> FaultTally {
        let mut t = FaultTally::default();
        for p in FaultPath::ALL {
            if let Some(n) = v.get(p.name()).and_then(|n| n.as_u64()) {
                if n > 0 {
                    t.0.insert(p, n);
                }
            }
        }
        t
    }

    /// One line: the paths reached, then those not.
    pub fn line(&self) -> String {
        let reached: Vec<String> = FaultPath::ALL
            .iter()
            .filter(|p| self.get(**p) > 0)
            .map(|p| format!("{} {}", p.name(), self.get(*p)))
            .collect();
        let missed: Vec<String> =
            FaultPath::ALL.iter().filter(|p| self.get(**p) == 0).map(|p| p.name()).collect();
        format!(
            "{}; not reached: {}",
            if reached.is_empty() { "none".to_string() } else { reached.join(", ") },
            if missed.is_empty() { "none".to_string() } else { missed.join(", ") }
        )
    }

    /// The required paths not reached ([`FaultPath::REQUIRED`]).
    pub fn missing_required(&self) -> Vec<FaultPath> {
        FaultPath::REQUIRED.iter().copied().filter(|p| self.get(*p) == 0).collect()
    }

    /// A markdown table of every path and its count.
    pub fn table(&self) -> String {
        let mut o = String::from("| mode or error path | reached |\n|---|---:|\n");
        for p in FaultPath::ALL {
            o.push_str(&format!("| `{}` | {} |\n", p.name(), self.get(p)));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_listed_and_reads_back() {
        let mut t = FaultTally::default();
        t.add(FaultPath::AbortToReadOnly);
        t.add(FaultPath::AbortToReadOnly);
        t.add(FaultPath::FailIo);
        let j = t.to_json();
        assert_eq!(j.as_object().map(|o| o.len()), Some(FaultPath::ALL.len()));
        assert_eq!(j["abort_to_read_only"], 2);
        assert_eq!(j["window_error_all"], 0);
        assert_eq!(FaultTally::from_json(&j), t);
        assert!(FaultTally::default().is_empty() && !t.is_empty());
        assert!(FaultTally::from_json(&FaultTally::default().to_json()).is_empty());
        let mut m = t.clone();
        m.merge(&t);
        assert_eq!(m.get(FaultPath::AbortToReadOnly), 4);
        assert!(t.line().contains("abort_to_read_only 2"), "{}", t.line());
        assert!(t.line().contains("not reached: window_error_writes"), "{}", t.line());
        assert!(t.missing_required().contains(&FaultPath::WindowErrorAll));
        assert!(!t.missing_required().contains(&FaultPath::AbortToReadOnly));
        assert!(t.table().contains("| `fail_io` | 1 |"));
    }

    #[test]
    fn names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<String> =
            FaultPath::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), FaultPath::ALL.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
