//! A run's options, drawn from its seed (swarm testing): sizes, op weights, disk faults,
//! crash rates and crash-image sampling. Printed first by every run.
//!
//! Invariants:
//! - [`Options::draw`] consumes only the run's RNG, so a seed alone fixes the options.
//! - Sizes are small on purpose: metadata exhaustion, a full data device, node splits
//!   (more than 126 mappings in a device) and resizes are regular events, not rarities.
//! - `metadata_blocks <= metadata_disk_blocks`: the gap is the room a metadata resize can
//!   grow into after exhaustion.

use crate::disk::{AtomicUnit, DiskConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// Everything a seed decides about a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Size of the simulated metadata disk in 4 KiB blocks.
    pub metadata_disk_blocks: u64,
    /// Metadata space map size at start (room left on the disk for growing resizes).
    pub metadata_blocks: u64,
    /// Data device size at start, in data blocks.
    pub data_blocks: u64,
    /// Thin ids are drawn from `0..dev_ids`.
    pub dev_ids: u64,
    /// Virtual blocks are drawn from `0..vblocks`.
    pub vblocks: u64,
    /// Relative weight of each op (0 = never).
    pub weights: BTreeMap<OpKind, u32>,
    /// Faults are injected from this step on (the first steps build some state).
    pub faults_from_step: u64,
    pub disk: DiskConfig,
    /// Chance (ppm) that a superblock-writing op gets power cut at one of its I/Os.
    pub crash_in_commit_ppm: u32,
    /// Crash images materialised and reopened at each crash point (from pending writes).
    pub explore_images: u64,
    /// Run `check` on every n-th explored image (1 = all).
    pub check_every_image: u64,
    /// Metadata low-water threshold registered with the pool, in blocks.
    pub threshold_blocks: u64,
}

impl Options {
    /// Draws a run's options from its RNG.
    pub fn draw<R: Rng + ?Sized>(rng: &mut R) -> Options {
        let metadata_disk_blocks = rng.random_range(48..=320u64);
        // Half the runs start with a space map small enough to run out (the engine's own
        // structures take about 10 blocks; 16 is the format's minimum).
        let metadata_blocks = if rng.random_bool(0.5) {
            rng.random_range(18..=40u64)
        } else {
            rng.random_range(32..=metadata_disk_blocks)
        };
        // A third of the runs get a data device small enough to fill.
        let data_blocks = match rng.random_range(0..3u32) {
            0 => rng.random_range(8..=64u64),
            1 => rng.random_range(64..=400u64),
            _ => rng.random_range(400..=1200u64),
        };
        let mut weights = BTreeMap::new();
        for kind in OpKind::ALL {
            // Swarm: each op is off in about one run in six, and weights vary tenfold.
            let w = if rng.random_range(0..6u32) == 0 { 0 } else { rng.random_range(1..=10u32) };
            weights.insert(kind, w * base_weight(kind));
        }
        if rng.random_bool(0.3) {
            // Fill runs: mostly provisioning, so devices grow past one leaf (node splits).
            weights.insert(OpKind::Provision, rng.random_range(100..=300u32));
        }
        let mut disk = DiskConfig::draw(rng, metadata_disk_blocks);
        if disk.backed_blocks.is_some() {
            // A full metadata volume must be met: back less than the space map can use.
            disk.backed_blocks = Some(rng.random_range(metadata_blocks / 2..=metadata_blocks));
        }
        if rng.random_range(0..4u32) == 0 {
            // A quarter of the runs are class A only: exact recovery is demanded throughout.
            disk = DiskConfig {
                atomic_unit: disk.atomic_unit,
                crash: disk.crash,
                ..DiskConfig::none()
            };
        }
        let explore_images = [0, 4, 16, 64][rng.random_range(0..4usize)];
        Options {
            metadata_disk_blocks,
            metadata_blocks,
            data_blocks,
            dev_ids: rng.random_range(2..=10u64),
            vblocks: [32, 300, 2000][rng.random_range(0..3usize)],
            weights,
            faults_from_step: rng.random_range(0..50u64),
            disk,
            crash_in_commit_ppm: rng.random_range(0..=300_000u32),
            explore_images,
            check_every_image: [1, 4, 16][rng.random_range(0..3usize)],
            threshold_blocks: rng.random_range(4..=metadata_blocks / 2),
        }
    }

    /// Whether crashes may tear a block (otherwise writes land whole or not at all).
    pub fn tears(&self) -> bool {
        self.disk.atomic_unit != AtomicUnit::Block4096
    }
}

/// How common each op is before the per-run factor: mapping traffic dominates, as in a pool.
fn base_weight(kind: OpKind) -> u32 {
    match kind {
        OpKind::Provision => 12,
        OpKind::FindBlock | OpKind::RemoveBlock | OpKind::Query => 4,
        OpKind::Commit | OpKind::Open | OpKind::CreateThin => 3,
        OpKind::PowerCut | OpKind::CloseReopen | OpKind::ReadOnly => 1,
        _ => 2,
    }
}
