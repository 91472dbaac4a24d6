//! Ops as values: one [`Op`] per step of a run, with every argument the step passes to the
//! engine and the model. The runner draws an op from the model's state (`draw`) and then
//! applies it (`apply`); a trace file is a list of ops, so a person can read, edit and
//! replay a run without the generator that drew it.
//!
//! Invariants:
//! - An op names devices by thin id, never by a handle's position: `apply` uses the first
//!   open handle of that device, and an op on a device with no open handle is an invalid
//!   trace (reported with its step), not a panic.
//! - The serde names are the trace format (`trace::FORMAT_VERSION`): renaming a variant or
//!   a field is a format change.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every step the runner can take. The names are stable: reports key on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpKind {
    CreateThin,
    CreateSnap,
    Delete,
    Commit,
    Abort,
    SetTransactionId,
    ReserveSnap,
    ReleaseSnap,
    Open,
    CloseThin,
    FindBlock,
    FindMappedRange,
    Provision,
    Alloc,
    RemoveBlock,
    RemoveRange,
    Query,
    BlockIsShared,
    IncRange,
    DecRange,
    ResizeData,
    ResizeMetadata,
    ReadOnly,
    SetNeedsCheck,
    PowerCut,
    CloseReopen,
}

impl OpKind {
    pub const ALL: [OpKind; 26] = [
        OpKind::CreateThin,
        OpKind::CreateSnap,
        OpKind::Delete,
        OpKind::Commit,
        OpKind::Abort,
        OpKind::SetTransactionId,
        OpKind::ReserveSnap,
        OpKind::ReleaseSnap,
        OpKind::Open,
        OpKind::CloseThin,
        OpKind::FindBlock,
        OpKind::FindMappedRange,
        OpKind::Provision,
        OpKind::Alloc,
        OpKind::RemoveBlock,
        OpKind::RemoveRange,
        OpKind::Query,
        OpKind::BlockIsShared,
        OpKind::IncRange,
        OpKind::DecRange,
        OpKind::ResizeData,
        OpKind::ResizeMetadata,
        OpKind::ReadOnly,
        OpKind::SetNeedsCheck,
        OpKind::PowerCut,
        OpKind::CloseReopen,
    ];

    /// Ops that may write a superblock: a crash inside them may leave the old or the new
    /// committed state.
    pub fn writes_superblock(self) -> bool {
        matches!(
            self,
            OpKind::Commit | OpKind::ReserveSnap | OpKind::SetNeedsCheck | OpKind::CloseReopen
        )
    }

    /// The disk phase label (coverage by phase).
    pub fn label(self) -> &'static str {
        match self {
            OpKind::Commit | OpKind::CloseReopen => "commit",
            OpKind::ReserveSnap => "reserve_snap",
            OpKind::ReleaseSnap => "release_snap",
            OpKind::SetNeedsCheck => "set_needs_check",
            OpKind::Abort => "abort",
            OpKind::Provision | OpKind::RemoveBlock | OpKind::RemoveRange => "mapping",
            OpKind::CreateThin | OpKind::CreateSnap | OpKind::Delete => "devices",
            OpKind::ResizeData | OpKind::ResizeMetadata => "resize",
            _ => "query",
        }
    }
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Fault injection starts (class B and C faults may strike from here on).
    FaultsOn,
    CreateThin {
        dev: u64,
    },
    CreateSnap {
        dev: u64,
        origin: u64,
    },
    Delete {
        dev: u64,
    },
    Commit,
    Abort,
    SetTransactionId {
        current: u64,
        new: u64,
    },
    ReserveSnap,
    ReleaseSnap,
    Open {
        dev: u64,
    },
    CloseThin {
        dev: u64,
    },
    FindBlock {
        dev: u64,
        vblock: u64,
        can_issue_io: bool,
    },
    FindMappedRange {
        dev: u64,
        begin: u64,
        end: u64,
    },
    /// alloc_data_block, then insert_block of the new block at `vblock`.
    Provision {
        dev: u64,
        vblock: u64,
    },
    /// [`Op::Provision`] of each vblock in turn, stopping at the first answer that is not
    /// agreed: what the shrinker makes of a run of provisions of one device (a deep tree
    /// needs hundreds to split a leaf), so a reproducer stays a few lines long.
    ProvisionMany {
        dev: u64,
        vblocks: Vec<u64>,
    },
    /// alloc_data_block alone.
    Alloc,
    /// insert_block of a data block the caller holds a reference to (from inc_data_range).
    InsertHeld {
        dev: u64,
        vblock: u64,
        data: u64,
    },
    RemoveBlock {
        dev: u64,
        vblock: u64,
    },
    RemoveRange {
        dev: u64,
        begin: u64,
        end: u64,
    },
    HighestMappedBlock {
        dev: u64,
    },
    MappedCount {
        dev: u64,
    },
    ThinChanged {
        dev: u64,
    },
    AbortedChanges {
        dev: u64,
    },
    ChangedThisTransaction,
    MetadataSnap,
    DataDevSize,
    FreeBlockCount,
    NeedsCheck,
    TransactionId,
    BlockIsShared {
        data: u64,
    },
    IncRange {
        begin: u64,
        end: u64,
    },
    /// dec_data_range of caller references only.
    DecRange {
        begin: u64,
        end: u64,
    },
    ResizeData {
        blocks: u64,
    },
    ResizeMetadata {
        blocks: u64,
    },
    ReadOnly,
    ReadWrite,
    SetNeedsCheck,
    PowerCut,
    CloseReopen,
    /// The end of every run: faults stop, power is cut, the pool must reopen at its last
    /// commit.
    FinalPowerCut,
}

impl Op {
    /// The kind the op counts as in the run's statistics (None: not a workload op).
    pub fn kind(&self) -> Option<OpKind> {
        use Op::*;
        Some(match self {
            FaultsOn | FinalPowerCut => return None,
            CreateThin { .. } => OpKind::CreateThin,
            CreateSnap { .. } => OpKind::CreateSnap,
            Delete { .. } => OpKind::Delete,
            Commit => OpKind::Commit,
            Abort => OpKind::Abort,
            SetTransactionId { .. } => OpKind::SetTransactionId,
            ReserveSnap => OpKind::ReserveSnap,
            ReleaseSnap => OpKind::ReleaseSnap,
            Open { .. } => OpKind::Open,
            CloseThin { .. } => OpKind::CloseThin,
            FindBlock { .. } => OpKind::FindBlock,
            FindMappedRange { .. } => OpKind::FindMappedRange,
            Provision { .. } | ProvisionMany { .. } | InsertHeld { .. } => OpKind::Provision,
            Alloc => OpKind::Alloc,
            RemoveBlock { .. } => OpKind::RemoveBlock,
            RemoveRange { .. } => OpKind::RemoveRange,
            HighestMappedBlock { .. }
            | MappedCount { .. }
            | ThinChanged { .. }
            | AbortedChanges { .. }
            | ChangedThisTransaction
            | MetadataSnap
            | DataDevSize
            | FreeBlockCount
            | NeedsCheck
            | TransactionId => OpKind::Query,
            BlockIsShared { .. } => OpKind::BlockIsShared,
            IncRange { .. } => OpKind::IncRange,
            DecRange { .. } => OpKind::DecRange,
            ResizeData { .. } => OpKind::ResizeData,
            ResizeMetadata { .. } => OpKind::ResizeMetadata,
            ReadOnly | ReadWrite => OpKind::ReadOnly,
            SetNeedsCheck => OpKind::SetNeedsCheck,
            PowerCut => OpKind::PowerCut,
            CloseReopen => OpKind::CloseReopen,
        })
    }

    /// The device the op needs an open handle of.
    pub fn handle_dev(&self) -> Option<u64> {
        use Op::*;
        match *self {
            CloseThin { dev }
            | FindBlock { dev, .. }
            | FindMappedRange { dev, .. }
            | Provision { dev, .. }
            | ProvisionMany { dev, .. }
            | InsertHeld { dev, .. }
            | RemoveBlock { dev, .. }
            | RemoveRange { dev, .. }
            | HighestMappedBlock { dev }
            | MappedCount { dev }
            | ThinChanged { dev }
            | AbortedChanges { dev } => Some(dev),
            _ => None,
        }
    }

    /// Every number the op carries, each tagged with whether it is a thin id (the shrinker
    /// renames devices everywhere at once and makes the other numbers smaller).
    pub fn numbers_mut(&mut self) -> Vec<(Number, &mut u64)> {
        use Number::{Device as D, Other as N};
        use Op::*;
        match self {
            CreateThin { dev } | Delete { dev } | Open { dev } | CloseThin { dev } => {
                vec![(D, dev)]
            }
            HighestMappedBlock { dev }
            | MappedCount { dev }
            | ThinChanged { dev }
            | AbortedChanges { dev } => vec![(D, dev)],
            CreateSnap { dev, origin } => vec![(D, dev), (D, origin)],
            SetTransactionId { current, new } => vec![(N, current), (N, new)],
            FindBlock { dev, vblock, .. }
            | Provision { dev, vblock }
            | RemoveBlock { dev, vblock } => {
                vec![(D, dev), (N, vblock)]
            }
            FindMappedRange { dev, begin, end } | RemoveRange { dev, begin, end } => {
                vec![(D, dev), (N, begin), (N, end)]
            }
            InsertHeld { dev, vblock, data } => vec![(D, dev), (N, vblock), (N, data)],
            ProvisionMany { dev, vblocks } => {
                let mut v = vec![(D, dev)];
                v.extend(vblocks.iter_mut().map(|b| (N, b)));
                v
            }
            BlockIsShared { data } => vec![(N, data)],
            IncRange { begin, end } | DecRange { begin, end } => vec![(N, begin), (N, end)],
            ResizeData { blocks } | ResizeMetadata { blocks } => vec![(N, blocks)],
            _ => Vec::new(),
        }
    }

    /// The thin ids the op names.
    pub fn dev_ids_mut(&mut self) -> Vec<&mut u64> {
        self.numbers_mut()
            .into_iter()
            .filter(|(k, _)| *k == Number::Device)
            .map(|(_, n)| n)
            .collect()
    }
}

/// What a number in an op stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Number {
    /// A thin id.
    Device,
    /// A block, a range bound, a size or a transaction id.
    Other,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Op::*;
        match self {
            FaultsOn => write!(f, "faults on"),
            CreateThin { dev } => write!(f, "create_thin({dev})"),
            CreateSnap { dev, origin } => write!(f, "create_snap({dev}, origin {origin})"),
            Delete { dev } => write!(f, "delete_thin_device({dev})"),
            Commit => write!(f, "commit"),
            Abort => write!(f, "abort"),
            SetTransactionId { current, new } => write!(f, "set_transaction_id({current}, {new})"),
            ReserveSnap => write!(f, "reserve_metadata_snap"),
            ReleaseSnap => write!(f, "release_metadata_snap"),
            Open { dev } => write!(f, "open_thin_device({dev})"),
            CloseThin { dev } => write!(f, "close_thin_device({dev})"),
            FindBlock { dev, vblock, can_issue_io } => {
                write!(f, "find_block(dev {dev}, vblock {vblock}, can_issue_io {can_issue_io})")
            }
            FindMappedRange { dev, begin, end } => {
                write!(f, "find_mapped_range(dev {dev}, {begin}..{end})")
            }
            Provision { dev, vblock } => write!(f, "provision(dev {dev}, vblock {vblock})"),
            ProvisionMany { dev, vblocks } => {
                write!(f, "provision(dev {dev}, {} vblocks: {})", vblocks.len(), ranges(vblocks))
            }
            Alloc => write!(f, "alloc_data_block"),
            InsertHeld { dev, vblock, data } => {
                write!(f, "insert_block(dev {dev}, vblock {vblock}, held data {data})")
            }
            RemoveBlock { dev, vblock } => write!(f, "remove_block(dev {dev}, vblock {vblock})"),
            RemoveRange { dev, begin, end } => write!(f, "remove_range(dev {dev}, {begin}..{end})"),
            HighestMappedBlock { dev } => write!(f, "get_highest_mapped_block(dev {dev})"),
            MappedCount { dev } => write!(f, "get_mapped_count(dev {dev})"),
            ThinChanged { dev } => write!(f, "thin_changed_this_transaction(dev {dev})"),
            AbortedChanges { dev } => write!(f, "aborted_changes(dev {dev})"),
            ChangedThisTransaction => write!(f, "changed_this_transaction"),
            MetadataSnap => write!(f, "get_metadata_snap"),
            DataDevSize => write!(f, "get_data_dev_size"),
            FreeBlockCount => write!(f, "get_free_block_count"),
            NeedsCheck => write!(f, "needs_check"),
            TransactionId => write!(f, "get_transaction_id"),
            BlockIsShared { data } => write!(f, "block_is_shared({data})"),
            IncRange { begin, end } => write!(f, "inc_data_range({begin}..{end})"),
            DecRange { begin, end } => write!(f, "dec_data_range({begin}..{end})"),
            ResizeData { blocks } => write!(f, "resize_data_dev({blocks})"),
            ResizeMetadata { blocks } => write!(f, "resize_metadata_dev({blocks})"),
            ReadOnly => write!(f, "metadata_read_only"),
            ReadWrite => write!(f, "metadata_read_write"),
            SetNeedsCheck => write!(f, "set_needs_check"),
            PowerCut => write!(f, "power cut"),
            CloseReopen => write!(f, "close and reopen the pool"),
            FinalPowerCut => write!(f, "final power cut"),
        }
    }
}

/// `0..=9, 12, 20..=17` for the keys 0,1,…,9,12,20,19,18,17: runs of consecutive keys.
fn ranges(keys: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let step = match keys.get(i + 1) {
            Some(&n) if n == keys[i].wrapping_add(1) => 1i64,
            Some(&n) if n == keys[i].wrapping_sub(1) => -1,
            _ => 0,
        };
        let mut j = i;
        while step != 0 && keys.get(j + 1).is_some_and(|&n| n as i64 == keys[j] as i64 + step) {
            j += 1;
        }
        parts.push(if j > i { format!("{}..={}", keys[i], keys[j]) } else { keys[i].to_string() });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_read_as_one_json_object_each() {
        let op = Op::InsertHeld { dev: 1, vblock: 5, data: 17 };
        let text = serde_json::to_string(&op).expect("serializes");
        assert_eq!(text, r#"{"op":"insert_held","dev":1,"vblock":5,"data":17}"#);
        assert_eq!(serde_json::from_str::<Op>(&text).expect("parses"), op);
        assert_eq!(serde_json::to_string(&Op::Commit).expect("serializes"), r#"{"op":"commit"}"#);
        // A misspelt field is refused, not ignored.
        assert!(serde_json::from_str::<Op>(r#"{"op":"delete","device":1}"#).is_err());
        let many = Op::ProvisionMany { dev: 2, vblocks: vec![0, 1, 2, 3, 9, 7, 6, 5] };
        assert_eq!(many.to_string(), "provision(dev 2, 8 vblocks: 0..=3, 9, 7..=5)");
    }
}
