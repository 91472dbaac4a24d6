//! The oracles by name: every check that can fail a run, what it judges, and which of the
//! campaign's counts says it was due.
//!
//! A failure names exactly one [`Oracle`]; the runner counts each oracle every time it
//! judges (`RunStats::oracles`), and the report lists every oracle with how often it ran and
//! how often it fired. An oracle that was due (its [`Due`] count reached
//! [`ORACLE_DUE_AT`]) and never ran is a coverage gap that fails the campaign, like a fault
//! cell: a check that stopped looking cannot pass silently.
//!
//! A due count must imply that the oracle's path was taken: it is counted where the event
//! happens, on the way to the check (a commit, an abort, a recovery that matched, a repair).
//! An oracle whose path no count implies is [`Due::Rare`]: listed with its runs, never a
//! gap.
//!
//! Invariants:
//! - [`Oracle::name`] is the string that trace signatures (`expect.signature` in
//!   `corpus/regressions/`), reports and the trace hash carry; it is never renamed, and
//!   serde writes an oracle as its name.
//! - [`Oracle::ALL`] lists each variant once, in the order the report shows them (a test
//!   checks the names are distinct and round-trip).

use serde::{Deserialize, Serialize};

/// Runs below which no count makes an oracle due (a few seeds prove nothing).
pub const ORACLE_DUE_AT: u64 = 30;

/// Every oracle of the runner; serde reads and writes it as its [`Oracle::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Oracle {
    /// The run's pool was formatted or restored, sized and set up as drawn.
    Setup,
    /// No engine call panicked (every step runs under a panic guard).
    Panic,
    /// A replayed trace's step met its preconditions (replays only, never a campaign).
    InvalidTrace,
    /// Each call's answer equals the model's (value or errno).
    Result,
    /// An abort succeeds unless a fault explains it, and the model accepts it.
    Abort,
    /// After a failed abort the pool is in fail mode and refuses queries.
    FailMode,
    /// After an abort the pool holds the last committed state.
    StateAfterAbort,
    /// Closing the pool with no thin device open succeeds or fails as a fault explains.
    Close,
    /// After a commit, the metadata space map's counts equal a recount of its trees.
    MetadataSpaceAfterCommit,
    /// After a commit, the pool equals the model (incrementally or in full).
    StateAfterCommit,
    /// After a full verification, `ls` of the pool equals the model's.
    LsAfterCommit,
    /// After a full verification, `check` of the durable image agrees with the model.
    CheckAfterCommit,
    /// With class B damage outstanding, the durable image reopens equal to the commit.
    ImageAfterCommit,
    /// Every explored crash image opens at an allowed committed state.
    CrashImage,
    /// A power cut's recovery reopens at an allowed committed state.
    Recovery,
    /// After a recovery, the data the metadata maps is the data last written and flushed.
    DataDurability,
    /// `check` never panics, on any image.
    CheckPanic,
    /// A wrong answer under class B damage is one the format cannot detect.
    ClassBLie,
    /// The last good image, restored after detected damage, reopens equal to its model.
    Restore,
    /// Repair of a damaged image succeeds.
    Repair,
    /// What repair writes passes `check`.
    RepairUnclean,
    /// Repair keeps only mappings and devices that were committed.
    RepairInvented,
    /// Repair keeps every mapping a tolerant walk from a validated superblock can still read
    /// (`runner::repair_bound`), and every committed mapping of an undamaged image.
    RepairIncomplete,
}

/// The count in a campaign's stats that makes an oracle due: when it reaches
/// [`ORACLE_DUE_AT`], the oracle must have run (`report` reads the counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Runs,
    Steps,
    Aborts,
    /// Aborts that failed (the pool then goes to fail mode).
    FailModes,
    /// Close-and-reopen ops.
    CloseOps,
    Commits,
    /// Full verifications (after commits and recoveries).
    FullVerifications,
    /// Class B wrong answers judged undetectable.
    Undetectable,
    CrashImages,
    Recoveries,
    /// Recoveries whose reopened pool matched a candidate (class A exact, class B recovered).
    MatchedRecoveries,
    /// `check` runs on images (crash images and full verifications).
    Checks,
    /// Damaged images handed to repair (repaired or refused).
    Repairs,
    /// Damaged images repair turned into an image.
    Repaired,
    /// Repairs with a completeness bound: damaged images whose superblock validated, and the
    /// undamaged image each run repairs once.
    RepairsWithBound,
    /// Runs only when class B damage is outstanding at a commit and the committed state
    /// still matched: no count implies it, so it is listed, not enforced.
    Rare,
    /// Only when replaying a trace.
    Never,
}

impl Oracle {
    pub const ALL: [Oracle; 23] = [
        Oracle::Setup,
        Oracle::Panic,
        Oracle::InvalidTrace,
        Oracle::Result,
        Oracle::Abort,
        Oracle::FailMode,
        Oracle::StateAfterAbort,
        Oracle::Close,
        Oracle::MetadataSpaceAfterCommit,
        Oracle::StateAfterCommit,
        Oracle::LsAfterCommit,
        Oracle::CheckAfterCommit,
        Oracle::ImageAfterCommit,
        Oracle::CrashImage,
        Oracle::Recovery,
        Oracle::DataDurability,
        Oracle::CheckPanic,
        Oracle::ClassBLie,
        Oracle::Restore,
        Oracle::Repair,
        Oracle::RepairUnclean,
        Oracle::RepairInvented,
        Oracle::RepairIncomplete,
    ];

    /// The name failures, signatures and reports carry.
    pub fn name(self) -> &'static str {
        match self {
            Oracle::Setup => "setup",
            Oracle::Panic => "panic",
            Oracle::InvalidTrace => "invalid-trace",
            Oracle::Result => "result",
            Oracle::Abort => "abort",
            Oracle::FailMode => "fail-mode",
            Oracle::StateAfterAbort => "state-after-abort",
            Oracle::Close => "close",
            Oracle::MetadataSpaceAfterCommit => "metadata-space-after-commit",
            Oracle::StateAfterCommit => "state-after-commit",
            Oracle::LsAfterCommit => "ls-after-commit",
            Oracle::CheckAfterCommit => "check-after-commit",
            Oracle::ImageAfterCommit => "image-after-commit",
            Oracle::CrashImage => "crash-image",
            Oracle::Recovery => "recovery",
            Oracle::DataDurability => "data-durability",
            Oracle::CheckPanic => "check-panic",
            Oracle::ClassBLie => "class-b-lie",
            Oracle::Restore => "restore",
            Oracle::Repair => "repair",
            Oracle::RepairUnclean => "repair-unclean",
            Oracle::RepairInvented => "repair-invented",
            Oracle::RepairIncomplete => "repair-incomplete",
        }
    }

    /// The oracle of a name, if any.
    pub fn from_name(name: &str) -> Option<Oracle> {
        Oracle::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Which count makes this oracle due in a campaign.
    pub fn due(self) -> Due {
        match self {
            Oracle::Setup => Due::Runs,
            Oracle::Panic | Oracle::Result => Due::Steps,
            Oracle::InvalidTrace => Due::Never,
            Oracle::Abort | Oracle::StateAfterAbort => Due::Aborts,
            Oracle::FailMode => Due::FailModes,
            Oracle::Close => Due::CloseOps,
            Oracle::MetadataSpaceAfterCommit | Oracle::StateAfterCommit => Due::Commits,
            Oracle::LsAfterCommit | Oracle::CheckAfterCommit => Due::FullVerifications,
            Oracle::ImageAfterCommit => Due::Rare,
            Oracle::ClassBLie => Due::Undetectable,
            Oracle::CrashImage => Due::CrashImages,
            Oracle::Recovery => Due::Recoveries,
            Oracle::DataDurability => Due::MatchedRecoveries,
            Oracle::CheckPanic => Due::Checks,
            Oracle::Restore | Oracle::Repair => Due::Repairs,
            Oracle::RepairUnclean | Oracle::RepairInvented => Due::Repaired,
            Oracle::RepairIncomplete => Due::RepairsWithBound,
        }
    }
}

impl From<Oracle> for &'static str {
    fn from(o: Oracle) -> Self {
        o.name()
    }
}

impl TryFrom<String> for Oracle {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Oracle::from_name(&name).ok_or_else(|| format!("no oracle is named {name:?}"))
    }
}

impl std::fmt::Display for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip_through_serde() {
        let names: std::collections::BTreeSet<&str> = Oracle::ALL.map(Oracle::name).into();
        assert_eq!(names.len(), Oracle::ALL.len());
        for o in Oracle::ALL {
            assert_eq!(Oracle::from_name(o.name()), Some(o));
            let json = serde_json::to_string(&o).expect("serializes");
            assert_eq!(json, format!("\"{}\"", o.name()));
            assert_eq!(serde_json::from_str::<Oracle>(&json).expect("reads back"), o);
        }
        assert_eq!(Oracle::from_name("state"), None);
        assert!(serde_json::from_str::<Oracle>("\"state\"").is_err());
    }
}
