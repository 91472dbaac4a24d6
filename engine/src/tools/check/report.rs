//! What `check` reports: findings, their kinds and severities, and the report's totals.
//!
//! Invariant: a finding's severity follows from its kind alone ([`FindingKind::severity`]),
//! so a caller that judges a report (the simulator's oracles, the CLI's exit code) never
//! matches on message text.

use std::fmt;

/// How bad a finding is, in thin-provisioning-tools 1.x's terms: `Error` findings are fatal
/// (the metadata cannot be trusted); `NonFatal` ones are leaks, which waste space but lose
/// nothing (`--auto-repair` fixes them, `--ignore-non-fatal-errors` passes them); warnings
/// are hints and tool quirks the kernel accepts, which never fail a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    NonFatal,
    Error,
}

/// The space map a reference count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    Metadata,
    Data,
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Space::Metadata => "metadata",
            Space::Data => "data",
        })
    }
}

/// What kind of problem a finding is: its severity follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The superblock cannot be read, fails validation, or has impossible fields.
    Superblock,
    /// A block failed to read or to validate (checksum, location, kind).
    Unreadable,
    /// A pointer past the end of the metadata device.
    PointerOutOfRange,
    /// Node shape: value size, capacity, fill, key order and ranges, leaf depth, cycles.
    TreeShape,
    /// Details and mapping trees disagree, a wrong `mapped_blocks`, device times out of order.
    DeviceDetails,
    /// A mapping past the data device or stamped after the pool time.
    Mapping,
    /// A stored reference count that differs from the references the trees hold: above them
    /// it is a leak (non-fatal), below them a block in use could be handed out again (fatal).
    RefCount { space: Space, stored: u32, expected: u32 },
    /// Space map structure: the bitmap count, a missing overflow count, allocated totals.
    SpaceMap,
    /// Hints the kernel keeps loose (index `nr_free`, the metadata root's allocated count).
    Hint,
}

impl FindingKind {
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::RefCount { stored, expected, .. } if stored > expected => {
                Severity::NonFatal
            }
            FindingKind::Hint => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// One problem, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The block at fault, when there is one (for a reference count: the counted block).
    pub block: Option<u64>,
    /// Blocks from the root of the tree to the parent of `block`.
    pub path: Vec<u64>,
    pub what: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }

    /// A leak: (space, block, stored count, referenced count), stored above referenced.
    pub fn leak(&self) -> Option<(Space, u64, u32, u32)> {
        match (self.kind, self.block) {
            (FindingKind::RefCount { space, stored, expected }, Some(b)) if stored > expected => {
                Some((space, b, stored, expected))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity() {
            Severity::Error => "error",
            Severity::NonFatal => "non-fatal",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let Some(b) = self.block {
            write!(f, "block {b}: ")?;
        }
        write!(f, "{}", self.what)?;
        if !self.path.is_empty() {
            write!(f, " (path {:?})", self.path)?;
        }
        Ok(())
    }
}

/// What was checked, and what was found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub devices: u64,
    pub mappings: u64,
    pub metadata_blocks_used: u64,
    pub data_blocks_used: u64,
    pub transaction_id: crate::format::TransactionId,
    /// The superblock's NEEDS_CHECK flag.
    pub needs_check: bool,
    /// Where the held metadata snapshot is, if one is.
    pub metadata_snap: Option<u64>,
    /// Free metadata blocks as the metadata space map's root records them (thin_check's
    /// METADATA_FREE_BLOCKS).
    pub metadata_free_blocks: u64,
    /// The metadata device's size in blocks, as the superblock's space map records it.
    pub metadata_nr_blocks: u64,
    /// The superblock validated (the other numbers mean something).
    pub superblock_valid: bool,
}

impl CheckReport {
    /// No fatal and no non-fatal finding: what the simulator holds every image to (a leak is
    /// an engine bug even if it loses nothing).
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.severity() == Severity::Warning)
    }

    /// No fatal finding (leaks and warnings allowed): thin_check 1.x's pass.
    pub fn is_sound(&self) -> bool {
        self.findings.iter().all(|f| f.severity() < Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity() == severity).count()
    }

    /// Every leak found, in finding order.
    pub fn leaks(&self) -> Vec<(Space, u64, u32, u32)> {
        self.findings.iter().filter_map(Finding::leak).collect()
    }
}
