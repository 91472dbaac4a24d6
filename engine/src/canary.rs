//! Deliberately broken behaviours, so the simulator can prove it catches each class of bug.
//!
//! One switch: every broken site in the engine reads `tm.canaries.on(Canary::X)` (the offline
//! tools, which have no transaction manager, read the `canaries` their caller hands them). Without the
//! `canary` feature [`Canaries`] is a zero-sized value whose `on` is the constant `false`, so
//! the optimiser removes each site and production code reads as production code. Only a
//! `canary` build can make a non-empty set ([`Canaries::of`]); `.ci/run` checks that no
//! release build reaches the feature.
//!
//! Each canary breaks exactly one rule the engine otherwise keeps.

/// One deliberately broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Canary {
    /// Write the superblock before the other dirty blocks are written and flushed.
    SuperblockBeforeNodes,
    /// Skip the flush between the body of a commit and its superblock.
    NoFlushBeforeSuperblock,
    /// Allocate blocks freed in this transaction (ignore the committed view).
    ReuseFreedInTransaction,
    /// Do not increment children when shadowing a shared node.
    NoIncOnSharedShadow,
    /// Abort keeps the in-core device records instead of reloading them.
    AbortKeepsRecords,
    /// remove_block / remove_range skip the data-block decrement.
    SkipDataDecOnRemove,
    /// An insert below an internal node's first key does not lower that key (the child's
    /// new minimum is then unreachable): needs trees of two levels or more.
    NoLowerKeyOnNewMin,
    /// A redistribution between two siblings leaves the parent's key for the right one
    /// unchanged (lookups near the boundary go to the wrong child).
    RedistributeKeepsParentKey,
    /// Commit without calling the pre-commit callback (the pool target's data-device flush
    /// before the metadata that maps the data).
    SkipPreCommitCallback,
    /// `check` does not report a data block whose stored count is above the references the
    /// trees hold (a leak, a non-fatal finding): the tool, not the pool, is broken.
    CheckMissesDataLeaks,
    /// `repair` loses the highest mapping of every device it salvages, though the block
    /// that holds it reads fine: the tool, not the pool, is broken.
    RepairDropsLastMapping,
}

impl Canary {
    /// Every canary, in declaration order.
    pub const ALL: [Canary; 11] = [
        Canary::SuperblockBeforeNodes,
        Canary::NoFlushBeforeSuperblock,
        Canary::ReuseFreedInTransaction,
        Canary::NoIncOnSharedShadow,
        Canary::AbortKeepsRecords,
        Canary::SkipDataDecOnRemove,
        Canary::NoLowerKeyOnNewMin,
        Canary::RedistributeKeepsParentKey,
        Canary::SkipPreCommitCallback,
        Canary::CheckMissesDataLeaks,
        Canary::RepairDropsLastMapping,
    ];

    /// The name used on the command line, in trace files and in corpus file names.
    pub const fn name(self) -> &'static str {
        match self {
            Canary::SuperblockBeforeNodes => "superblock_before_nodes",
            Canary::NoFlushBeforeSuperblock => "no_flush_before_superblock",
            Canary::ReuseFreedInTransaction => "reuse_freed_in_transaction",
            Canary::NoIncOnSharedShadow => "no_inc_on_shared_shadow",
            Canary::AbortKeepsRecords => "abort_keeps_records",
            Canary::SkipDataDecOnRemove => "skip_data_dec_on_remove",
            Canary::NoLowerKeyOnNewMin => "no_lower_key_on_new_min",
            Canary::RedistributeKeepsParentKey => "redistribute_keeps_parent_key",
            Canary::SkipPreCommitCallback => "skip_pre_commit_callback",
            Canary::CheckMissesDataLeaks => "check_misses_data_leaks",
            Canary::RepairDropsLastMapping => "repair_drops_last_mapping",
        }
    }

    pub fn from_name(name: &str) -> Option<Canary> {
        Canary::ALL.into_iter().find(|c| c.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The canaries switched on in one pool. Empty, and always empty, without the feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Canaries {
    #[cfg(feature = "canary")]
    bits: u16,
}

impl Canaries {
    /// No canary: the engine as shipped.
    pub const NONE: Canaries = Canaries {
        #[cfg(feature = "canary")]
        bits: 0,
    };

    /// Just `c` (canary builds only).
    #[cfg(feature = "canary")]
    pub const fn of(c: Canary) -> Canaries {
        Canaries { bits: c.bit() }
    }

    /// Whether the rule `c` is broken. The constant `false` without the feature.
    #[inline(always)]
    pub const fn on(self, c: Canary) -> bool {
        #[cfg(feature = "canary")]
        {
            self.bits & c.bit() != 0
        }
        #[cfg(not(feature = "canary"))]
        {
            let _ = c.bit();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for c in Canary::ALL {
            assert_eq!(Canary::from_name(c.name()), Some(c));
        }
        let names: std::collections::BTreeSet<_> = Canary::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Canary::ALL.len());
        assert_eq!(Canary::from_name("no_such_canary"), None);
    }

    #[test]
    fn none_breaks_nothing() {
        assert!(Canary::ALL.iter().all(|&c| !Canaries::NONE.on(c)));
    }

    #[cfg(feature = "canary")]
    #[test]
    fn of_breaks_exactly_its_rule() {
        for c in Canary::ALL {
            let on: Vec<Canary> =
                Canary::ALL.into_iter().filter(|&x| Canaries::of(c).on(x)).collect();
            assert_eq!(on, vec![c]);
        }
    }
}
