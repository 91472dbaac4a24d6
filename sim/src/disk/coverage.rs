//! Fault coverage: which fault kinds fired, against which kind of block, in which phase.
//!
//! A campaign fails when a cell that should be reachable stays at zero, so a fault that
//! never fires cannot look green. Invariants:
//! - Every injected fault is counted exactly once, in one cell keyed by (fault kind, kind of
//!   block hit, inside a commit or not, metadata snapshot held or not), and once per phase
//!   label.
//! - Counts only grow; [`FaultCoverage::merge`] adds shard counts cell by cell.
//! - All maps are `BTreeMap`s: iteration order, and so every report, is deterministic.
//! - *Exposure* counts, per cell, every draw of a fault chance, classified like the fault
//!   would have been: I/O calls (read EIO; lost, misdirected and EIO writes; flush EIO),
//!   reads that reached the media (latent errors, bit rot), and pending writes at a crash
//!   (dropped).
//!   A run multiplies them by its rates into the expected count of every cell, which is how
//!   a campaign knows which cells its options make reachable.

use super::config::{DiskConfig, FaultRates, PPM};
use engine::format::node::INTERNAL;
use engine::format::BlockKind;
use engine::io::Block;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What the engine is doing, as told by the runner through [`super::SimDisk::set_phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Phase {
    /// Between the start of a commit and its return.
    pub in_commit: bool,
    /// A metadata snapshot is held (reserve_metadata_snap without release).
    pub metadata_snap_held: bool,
    /// Free-form name of the step ("format", "commit", "insert", "recovery", ...).
    pub label: &'static str,
}

impl Phase {
    /// The phase a new disk starts in.
    pub const IDLE: Phase = Phase { in_commit: false, metadata_snap_held: false, label: "idle" };
}

impl Default for Phase {
    fn default() -> Self {
        Phase::IDLE
    }
}

/// The outcome class the oracle enforces for a fault (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultClass {
    /// Must recover exactly: the last committed state (old or new during a commit).
    A,
    /// Must detect or recover, never lie.
    B,
    /// I/O errors are values; after faults stop, reopen gives the last committed state.
    C,
}

/// Every kind of fault the disk injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// `--crash-at`: power failed at this I/O; it and every later I/O fail until `crash()`.
    PowerLoss,
    /// A pending write dropped by a crash.
    CrashDrop,
    /// A pending write torn by a crash at atomic-unit boundaries.
    CrashTear,
    /// A crash applied an older version of a block after a newer one.
    StaleVersion,
    /// A crash tore a write finer than the atomic unit (inside a sector, or splitting a
    /// larger atomic unit).
    SubsectorTear,
    /// An acknowledged write that is never destaged.
    LostWrite,
    /// A write destaged onto another block.
    MisdirectedWrite,
    /// A bit flipped in a durable block.
    BitRot,
    /// A block that reads EIO until rewritten.
    LatentSector,
    /// One read failed with EIO.
    ReadEio,
    /// One write failed with EIO.
    WriteEio,
    /// One flush failed with EIO.
    FlushEio,
    /// A write beyond the backed part of a full device failed with EIO.
    DeviceFull,
    /// One 512-byte sector of a durable block reads back as zeros until the block is
    /// rewritten (a stuck sector).
    ZeroedSector,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        FaultKind::PowerLoss,
        FaultKind::CrashDrop,
        FaultKind::CrashTear,
        FaultKind::StaleVersion,
        FaultKind::SubsectorTear,
        FaultKind::LostWrite,
        FaultKind::MisdirectedWrite,
        FaultKind::BitRot,
        FaultKind::LatentSector,
        FaultKind::ReadEio,
        FaultKind::WriteEio,
        FaultKind::FlushEio,
        FaultKind::DeviceFull,
        FaultKind::ZeroedSector,
    ];

    /// The I/O this fault is drawn on with a fixed chance ([`FaultKind::rate`]): every
    /// read, write or flush call, every read that reached the media, every write pending at
    /// a crash. `None` for faults that depend on the atomic unit or on write order (tears,
    /// stale versions) or that the runner arms (power loss, a full device).
    pub const fn drawn_on(self) -> Option<IoKind> {
        match self {
            FaultKind::ReadEio => Some(IoKind::Read),
            FaultKind::LostWrite | FaultKind::MisdirectedWrite | FaultKind::WriteEio => {
                Some(IoKind::Write)
            }
            FaultKind::FlushEio => Some(IoKind::Flush),
            FaultKind::LatentSector | FaultKind::BitRot | FaultKind::ZeroedSector => {
                Some(IoKind::MediaRead)
            }
            FaultKind::CrashDrop => Some(IoKind::CrashPending),
            FaultKind::PowerLoss
            | FaultKind::CrashTear
            | FaultKind::StaleVersion
            | FaultKind::SubsectorTear
            | FaultKind::DeviceFull => None,
        }
    }

    /// Its chance per draw under `config`, in parts per million (0 for a fault not drawn
    /// with a fixed chance).
    pub fn rate(self, config: &DiskConfig) -> u32 {
        match self {
            FaultKind::CrashDrop => {
                let c = &config.crash;
                PPM.saturating_sub(c.apply_ppm.saturating_add(c.tear_ppm))
            }
            k => config.rates.of(k),
        }
    }

    /// Whether the fault can leave an older, self-consistent version of a block where a
    /// newer one was acknowledged: a checksum cannot tell (the class B outcome may be
    /// undetectable), and the live pool's cache still holds the newer block, so only a
    /// reopen shows the damage.
    pub const fn leaves_older_block(self) -> bool {
        matches!(self, FaultKind::LostWrite | FaultKind::MisdirectedWrite)
    }

    /// The outcome class the oracle must enforce after this fault.
    pub const fn class(self) -> FaultClass {
        match self {
            FaultKind::PowerLoss
            | FaultKind::CrashDrop
            | FaultKind::CrashTear
            | FaultKind::StaleVersion => FaultClass::A,
            FaultKind::SubsectorTear
            | FaultKind::LostWrite
            | FaultKind::MisdirectedWrite
            | FaultKind::BitRot
            | FaultKind::ZeroedSector => FaultClass::B,
            FaultKind::LatentSector
            | FaultKind::ReadEio
            | FaultKind::WriteEio
            | FaultKind::FlushEio
            | FaultKind::DeviceFull => FaultClass::C,
        }
    }
}

/// Each fault kind's rate field (here, beside the kinds, so that the config knows nothing of
/// them).
impl FaultRates {
    /// The rate field of a fault kind drawn with a fixed chance per I/O; `None` for the
    /// kinds that are not (crash outcomes, power loss, a full device).
    pub fn of_mut(&mut self, kind: FaultKind) -> Option<&mut u32> {
        match kind {
            FaultKind::LostWrite => Some(&mut self.lost_write_ppm),
            FaultKind::MisdirectedWrite => Some(&mut self.misdirected_write_ppm),
            FaultKind::BitRot => Some(&mut self.bit_rot_ppm),
            FaultKind::LatentSector => Some(&mut self.latent_sector_ppm),
            FaultKind::ReadEio => Some(&mut self.read_eio_ppm),
            FaultKind::WriteEio => Some(&mut self.write_eio_ppm),
            FaultKind::FlushEio => Some(&mut self.flush_eio_ppm),
            FaultKind::ZeroedSector => Some(&mut self.zeroed_sector_ppm),
            FaultKind::PowerLoss
            | FaultKind::CrashDrop
            | FaultKind::CrashTear
            | FaultKind::StaleVersion
            | FaultKind::SubsectorTear
            | FaultKind::DeviceFull => None,
        }
    }

    /// The rate of `kind` (0 for a kind without a rate field).
    pub fn of(&self, kind: FaultKind) -> u32 {
        self.clone().of_mut(kind).map_or(0, |r| *r)
    }
}

/// The kind of block a fault hit, from the data written, read or at rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HitKind {
    Superblock,
    /// A btree leaf (or a node whose flags name no kind: it is still checksummed as a node).
    LeafNode,
    /// A btree internal node: damage here cuts off whole subtrees.
    InternalNode,
    Bitmap,
    Index,
    /// All zero bytes (never written, or wiped).
    Zero,
    /// Non-zero data that no checksum salt matches (torn, rotten, or not metadata).
    Unknown,
    /// The fault hit no block (a flush).
    NoBlock,
}

impl HitKind {
    /// Classifies a block's bytes with the engine's salt test (format spec §2).
    pub fn of(block: &Block) -> HitKind {
        if block.iter().all(|&b| b == 0) {
            return HitKind::Zero;
        }
        match BlockKind::classify(block) {
            Some(BlockKind::Superblock) => HitKind::Superblock,
            Some(BlockKind::Node) if engine::format::node::flags(block) == INTERNAL => {
                HitKind::InternalNode
            }
            Some(BlockKind::Node) => HitKind::LeafNode,
            Some(BlockKind::Bitmap) => HitKind::Bitmap,
            Some(BlockKind::Index) => HitKind::Index,
            None => HitKind::Unknown,
        }
    }
}

/// The kind of I/O call a fault chance was drawn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IoKind {
    Read,
    /// Plain and FUA writes.
    Write,
    Flush,
    /// A read the cache did not serve (media faults are drawn on these).
    MediaRead,
    /// A write pending at a crash, not already lost (the crash decides whether it survives).
    CrashPending,
}

/// One cell of exposure: the I/O kind, the block kind it would hit, and the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExposureKey {
    pub io: IoKind,
    pub hit: HitKind,
    pub in_commit: bool,
    pub snap_held: bool,
}

/// One cell of the coverage matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoverageKey {
    pub fault: FaultKind,
    pub hit: HitKind,
    pub in_commit: bool,
    pub snap_held: bool,
}

/// A cell and its value, the serialised form of a matrix (JSON maps need string keys).
#[derive(Serialize, Deserialize)]
struct CoverageCell<V> {
    #[serde(flatten)]
    key: CoverageKey,
    count: V,
}

/// The fault × phase matrix plus crash counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCoverage {
    #[serde(with = "cells_as_list")]
    cells: BTreeMap<CoverageKey, u64>,
    /// Faults per phase label.
    by_label: BTreeMap<String, u64>,
    /// Crash points: calls of `crash`, `crash_with` and `explore`.
    crash_points: u64,
    /// Crash images produced: one per `crash`, one per image `explore` yields.
    crash_images: u64,
}

/// I/O calls that drew a per-I/O fault chance, per cell (see the module header). Kept by the
/// disk beside its [`FaultCoverage`]; a run turns it into expected counts per cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposure(BTreeMap<ExposureKey, u64>);

impl Exposure {
    /// Counts one I/O call that drew a fault chance of its kind.
    pub fn add(&mut self, io: IoKind, hit: HitKind, phase: &Phase) {
        let key = ExposureKey {
            io,
            hit,
            in_commit: phase.in_commit,
            snap_held: phase.metadata_snap_held,
        };
        *self.0.entry(key).or_insert(0) += 1;
    }

    /// Calls per cell.
    pub fn cells(&self) -> &BTreeMap<ExposureKey, u64> {
        &self.0
    }
}

impl FaultCoverage {
    /// Counts one injected fault.
    pub fn record(&mut self, fault: FaultKind, hit: HitKind, phase: &Phase) {
        let key = CoverageKey {
            fault,
            hit,
            in_commit: phase.in_commit,
            snap_held: phase.metadata_snap_held,
        };
        *self.cells.entry(key).or_insert(0) += 1;
        *self.by_label.entry(phase.label.to_owned()).or_insert(0) += 1;
    }

    /// Counts a crash point that produced `images` crash images.
    pub fn record_crash_point(&mut self, images: u64) {
        self.crash_points += 1;
        self.crash_images = self.crash_images.saturating_add(images);
    }

    /// The whole matrix.
    pub fn cells(&self) -> &BTreeMap<CoverageKey, u64> {
        &self.cells
    }

    /// The count of one cell (0 if it never fired).
    pub fn count(&self, key: &CoverageKey) -> u64 {
        self.cells.get(key).copied().unwrap_or(0)
    }

    /// How often `fault` fired, over every block kind and phase.
    pub fn total(&self, fault: FaultKind) -> u64 {
        self.cells.iter().filter(|(k, _)| k.fault == fault).map(|(_, n)| n).sum()
    }

    /// Faults per phase label.
    pub fn by_label(&self) -> &BTreeMap<String, u64> {
        &self.by_label
    }

    pub fn crash_points(&self) -> u64 {
        self.crash_points
    }

    pub fn crash_images(&self) -> u64 {
        self.crash_images
    }

    /// Adds another run's (or shard's) counts to these.
    pub fn merge(&mut self, other: &FaultCoverage) {
        for (key, n) in &other.cells {
            *self.cells.entry(*key).or_insert(0) += n;
        }
        for (label, n) in &other.by_label {
            *self.by_label.entry(label.clone()).or_insert(0) += n;
        }
        self.crash_points += other.crash_points;
        self.crash_images = self.crash_images.saturating_add(other.crash_images);
    }
}

/// A matrix keyed by [`CoverageKey`] as a JSON list of cells (`{fault, hit, in_commit,
/// snap_held, count}`); cells listed twice add up.
pub mod cells_as_list {
    use super::{CoverageCell, CoverageKey};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::ops::AddAssign;

    pub fn serialize<S: Serializer, V: Serialize + Copy>(
        cells: &BTreeMap<CoverageKey, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<CoverageCell<V>> =
            cells.iter().map(|(key, count)| CoverageCell { key: *key, count: *count }).collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D, V>(d: D) -> Result<BTreeMap<CoverageKey, V>, D::Error>
    where
        D: Deserializer<'de>,
        V: Deserialize<'de> + AddAssign + Default,
    {
        let list = Vec::<CoverageCell<V>>::deserialize(d)?;
        let mut cells = BTreeMap::new();
        for cell in list {
            *cells.entry(cell.key).or_insert_with(V::default) += cell.count;
        }
        Ok(cells)
    }
}

/// One injected fault, for failure messages and trace files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    /// Ordinal of the I/O call that injected it (crash faults: the calls made so far).
    pub io_ordinal: u64,
    pub fault: FaultKind,
    pub class: FaultClass,
    /// The block hit (for a misdirected write: the block it was meant for).
    pub block: Option<u64>,
    pub hit: HitKind,
    pub phase: Phase,
}

/// Most fault events kept between two [`FaultLog`] takes; older ones are dropped (counted).
pub const MAX_FAULT_EVENTS: usize = 4096;

/// The faults injected since the log was last taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultLog {
    /// The most recent events, oldest first.
    pub events: VecDeque<FaultEvent>,
    /// Events dropped from the front because the log was full.
    pub dropped: u64,
    /// Every class injected, including those of dropped events.
    pub classes: BTreeSet<FaultClass>,
}

impl FaultLog {
    pub(super) fn push(&mut self, event: FaultEvent) {
        self.classes.insert(event.class);
        if self.events.len() == MAX_FAULT_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Whether only class A faults (crashes, tears within the atomic unit) were injected:
    /// then the oracle demands exact recovery.
    pub fn class_a_only(&self) -> bool {
        self.classes.iter().all(|c| *c == FaultClass::A)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_class_and_classes_cover_a_b_c() {
        let classes: BTreeSet<_> = FaultKind::ALL.iter().map(|k| k.class()).collect();
        assert_eq!(classes.len(), 3);
    }

    #[test]
    fn hit_kind_of_zero_and_unknown_blocks() {
        let mut b = [0u8; 4096];
        assert_eq!(HitKind::of(&b), HitKind::Zero);
        b[17] = 1;
        assert_eq!(HitKind::of(&b), HitKind::Unknown);
        engine::format::checksum::seal(&mut b, BlockKind::Bitmap, 3);
        assert_eq!(HitKind::of(&b), HitKind::Bitmap);
    }

    #[test]
    fn coverage_counts_merges_and_round_trips() {
        let mut c = FaultCoverage::default();
        let commit = Phase { in_commit: true, metadata_snap_held: false, label: "commit" };
        c.record(FaultKind::LostWrite, HitKind::LeafNode, &commit);
        c.record(FaultKind::LostWrite, HitKind::LeafNode, &commit);
        c.record(FaultKind::ReadEio, HitKind::Zero, &Phase::IDLE);
        c.record_crash_point(5);
        let key = CoverageKey {
            fault: FaultKind::LostWrite,
            hit: HitKind::LeafNode,
            in_commit: true,
            snap_held: false,
        };
        assert_eq!(c.count(&key), 2);
        assert_eq!(c.total(FaultKind::ReadEio), 1);
        assert_eq!(c.by_label()["commit"], 2);
        let text = serde_json::to_string(&c).expect("coverage serialises");
        let back: FaultCoverage = serde_json::from_str(&text).expect("coverage parses");
        assert_eq!(back, c);
        let mut sum = c.clone();
        sum.merge(&c);
        assert_eq!(sum.count(&key), 4);
        assert_eq!((sum.crash_points(), sum.crash_images()), (2, 10));
    }

    #[test]
    fn log_is_bounded_and_remembers_classes() {
        let mut log = FaultLog::default();
        for i in 0..(MAX_FAULT_EVENTS as u64 + 3) {
            let fault = if i == 0 { FaultKind::BitRot } else { FaultKind::CrashDrop };
            log.push(FaultEvent {
                io_ordinal: i,
                fault,
                class: fault.class(),
                block: Some(i),
                hit: HitKind::Zero,
                phase: Phase::IDLE,
            });
        }
        assert_eq!(log.events.len(), MAX_FAULT_EVENTS);
        assert_eq!(log.dropped, 3);
        assert!(!log.class_a_only());
    }
}
