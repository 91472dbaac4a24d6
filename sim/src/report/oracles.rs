//! The oracle table of a campaign: every oracle of `runner::oracles`, how often it was due,
//! ran and fired. An oracle whose due count reached [`ORACLE_DUE_AT`] and that never ran is
//! a gap, which fails the campaign like a fault cell or a structural counter at zero: a
//! check that stopped looking cannot pass silently.
//!
//! The due counts are the campaign's own stats, counted where the event happens, not where
//! the oracle judges it (commits, aborts, recoveries, crash images, repairs, ...), so an
//! oracle cut out of its path shows up as ran 0 against a due count that is not.

use super::Summary;
use crate::runner::{Due, OpKind, Oracle, ORACLE_DUE_AT};
use serde::{Deserialize, Serialize};

/// One oracle's line of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OracleRow {
    pub oracle: Oracle,
    /// What makes it due (a [`Due`] by name), and that count; `None` for an oracle no count
    /// makes due (rare, or replays only).
    pub due_by: String,
    pub due: Option<u64>,
    pub ran: u64,
    /// Failures it raised (summed over signatures).
    pub fired: u64,
    pub gap: bool,
}

/// The count of `d` in the campaign `s`.
fn due_count(s: &Summary, d: Due) -> Option<u64> {
    let st = &s.stats;
    let all_repairs = st.repair.get(crate::runner::repair::ALL_KINDS);
    Some(match d {
        Due::Runs => st.runs,
        Due::Steps => st.steps,
        Due::Aborts => st.aborts,
        Due::FailModes => st.outcomes.c_fail_modes,
        Due::CloseOps => st.ops.get(&OpKind::CloseReopen).copied().unwrap_or(0),
        Due::Commits => st.commits,
        Due::FullVerifications => st.commit_checks,
        Due::Undetectable => st.outcomes.b_undetectable,
        Due::CrashImages => st.crash_images_checked,
        Due::Recoveries => st.recoveries,
        Due::MatchedRecoveries => st.outcomes.a_exact + st.outcomes.b_recovered,
        Due::Checks => st.image_checks + st.commit_checks,
        Due::Repairs => all_repairs.map_or(0, |t| t.repaired + t.refused),
        Due::Repaired => all_repairs.map_or(0, |t| t.repaired),
        Due::RepairsWithBound => {
            all_repairs.map_or(0, |t| t.bound_judged) + st.clean_repair.bound_judged
        }
        Due::Rare | Due::Never => return None,
    })
}

/// Every oracle's row, in [`Oracle::ALL`]'s order.
pub fn rows(s: &Summary) -> Vec<OracleRow> {
    Oracle::ALL
        .iter()
        .map(|&oracle| {
            let due = due_count(s, oracle.due());
            let ran = s.stats.oracles.get(&oracle).copied().unwrap_or(0);
            let fired =
                s.failures.iter().filter(|g| g.first.oracle == oracle).map(|g| g.count).sum();
            OracleRow {
                oracle,
                due_by: format!("{:?}", oracle.due()),
                due,
                ran,
                fired,
                gap: ran == 0 && due.is_some_and(|n| n >= ORACLE_DUE_AT),
            }
        })
        .collect()
}

/// The gaps of a table, as the report states them.
pub fn gaps(rows: &[OracleRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.gap)
        .map(|r| {
            format!(
                "oracle {}: due {} times ({}), never ran",
                r.oracle,
                r.due.unwrap_or(0),
                r.due_by
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::FaultKind;

    #[test]
    fn an_oracle_due_that_never_ran_is_a_gap_and_a_replay_only_one_never_is() {
        let mut s = Summary::new("t", None);
        s.stats.runs = 40;
        s.stats.steps = 1000;
        for _ in 0..40 {
            s.stats.ran(Oracle::Setup);
        }
        let r = rows(&s);
        assert_eq!(r.len(), Oracle::ALL.len());
        let row = |o: Oracle| r.iter().find(|x| x.oracle == o).expect("a row").clone();
        assert!(!row(Oracle::Setup).gap, "ran 40 of 40");
        assert!(row(Oracle::Panic).gap && row(Oracle::Result).gap, "1000 steps, never ran");
        assert!(!row(Oracle::InvalidTrace).gap && row(Oracle::InvalidTrace).due.is_none());
        assert!(!row(Oracle::Recovery).gap, "no recovery was due");
        let g = gaps(&r);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!(g[0], "oracle panic: due 1000 times (Steps), never ran");
    }

    #[test]
    fn fired_sums_the_failures_an_oracle_raised() {
        let mut s = Summary::new("t", None);
        let failure = crate::runner::Failure {
            seed: 7,
            step: 3,
            op: "commit".into(),
            oracle: Oracle::StateAfterCommit,
            faults: vec![FaultKind::LostWrite],
            detail: "differs".into(),
            replay: "thinsim run --seed 7".into(),
            trace_file: None,
        };
        s.add_failure(&failure, 3, &[7, 8, 9]);
        let r = rows(&s);
        let fired = |o: Oracle| r.iter().find(|x| x.oracle == o).map(|x| x.fired);
        assert_eq!(fired(Oracle::StateAfterCommit), Some(3));
        assert_eq!(fired(Oracle::Recovery), Some(0));
        assert_eq!(failure.signature(), "state-after-commit/commit/LostWrite");
    }
}
