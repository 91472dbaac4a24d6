//! A run's options, drawn from its seed (swarm testing): the run's class, sizes, op
//! weights, disk faults, crash rates and crash-image sampling. Printed first by every run.
//!
//! Every seed draws one [`RunClass`] first, then options of that class:
//! - **small** (10 runs in 16): pools small enough that metadata exhaustion, a full data
//!   device, thresholds and resizes are regular events. Their trees stay one or two levels
//!   deep: a mapping leaf holds 252 entries and splits only at the 253rd mapping of one
//!   device, which a small run reaches only in its provision-heavy "fill" share.
//! - **deep trees** (4 in 16): few devices, a large key space and provision-heavy weights
//!   with fresh keys in ascending, descending or clustered order, four times the steps, so
//!   devices grow several leaves and split; then a removal phase (snapshots and a held
//!   metadata snapshot first, then bursts of `remove_block`, `remove_range` and deletes), so
//!   merges and redistributions meet shared siblings.
//! - **big pools** (1 in 16): data devices of 3–6 space-map bitmaps (16,320 blocks each) or
//!   of more than 168 (the data index tree then splits), metadata devices of 2–4 bitmaps,
//!   resizes by whole bitmaps, and a restored prefix of mappings that fills the first data
//!   bitmap nearly full, so allocation crosses bitmap boundaries from the first steps.
//! - **pre-populated** (1 in 16): the run starts from an image restored from thin_dump XML
//!   with 10^4–1.3·10^5 mappings (some devices sharing blocks three ways and more, so both
//!   overflow trees fill), or with hundreds of devices (the top-level and details trees
//!   split), then runs the ordinary faulty workload on top, with a removal phase. Sizes that
//!   fill whole leaves and internal nodes exactly put the first inserts into full nodes, so
//!   internal and root splits cost no steps.
//!
//! Faults and crashes are drawn the same way in every class.
//!
//! Invariants:
//! - [`Options::draw`] consumes only the run's RNG, so a seed alone fixes the options.
//! - `metadata_blocks <= metadata_disk_blocks`: the gap is the room a metadata resize can
//!   grow into after exhaustion.
//! - A pre-populated image fits its pool: its data blocks are below `data_blocks`.

use super::op::OpKind;
use crate::disk::{AtomicUnit, DiskConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The swarm's classes of runs (see the module header for what each is for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RunClass {
    Small,
    DeepTree,
    BigPool,
    Prepopulated,
}

impl RunClass {
    pub const ALL: [RunClass; 4] =
        [RunClass::Small, RunClass::DeepTree, RunClass::BigPool, RunClass::Prepopulated];

    pub const fn name(self) -> &'static str {
        match self {
            RunClass::Small => "small",
            RunClass::DeepTree => "deep_tree",
            RunClass::BigPool => "big_pool",
            RunClass::Prepopulated => "prepopulated",
        }
    }

    /// Draws a class: 10 in 16 small, 4 deep trees, 1 big pool, 1 pre-populated. Small
    /// runs are the cheapest source of crash images, exhaustion and thresholds; a big or
    /// pre-populated run costs 20–40 small ones (every full verification compares its
    /// tens of thousands of mappings), so those get the least share that still reaches
    /// their events in every campaign of a few thousand seeds.
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> RunClass {
        match rng.random_range(0..16u32) {
            0..=9 => RunClass::Small,
            10..=13 => RunClass::DeepTree,
            14 => RunClass::BigPool,
            _ => RunClass::Prepopulated,
        }
    }
}

/// The order in which provisions pick fresh virtual blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOrder {
    /// Uniform over the key space (and mapped keys, for overwrites).
    Random,
    /// Each device's fresh keys ascend from a random start: every split is at the right edge.
    Ascending,
    /// Fresh keys descend: every insert is below the tree's minimum.
    Descending,
    /// Runs of 32 ascending keys from random starts: splits in the middle of the tree.
    Clustered,
}

/// An image restored before the run starts (thin_dump XML through `restore`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prepopulation {
    /// Devices 0..devices are created.
    pub devices: u64,
    /// Mappings of device 0, from vblock 0 up (with gaps), data blocks densely from 0.
    pub mappings: u64,
    /// One vblock in every `hole_every` is left unmapped (1: none), so trees have holes.
    pub hole_every: u64,
    /// Devices 1..=sharers also map every `share_every`-th mapping of device 0 (same vblock,
    /// same data block): counts reach sharers + 1, into both overflow trees.
    pub sharers: u64,
    pub share_every: u64,
    /// Mappings of each other device (fresh data blocks after device 0's).
    pub mappings_per_other: u64,
    /// Device 0's (and its sharers') first vblock, so keys below the restored ones exist and
    /// an insert can make a new minimum in a tree of two levels. 0 in traces from before it.
    #[serde(default)]
    pub first_vblock: u64,
}

impl Prepopulation {
    /// Whether the layout is one of the few fixed ones worth keeping once restored: the large
    /// ones, and the `sim` fuzz target's deep start ([`Prepopulation::FUZZ_DEEP_START`]).
    pub fn cacheable(&self) -> bool {
        self.mappings >= FULL_NODE * FULL_NODE || *self == Self::FUZZ_DEEP_START
    }

    /// Where a deep-tree input of the `sim` fuzz target starts (`fuzzing::sim`): three
    /// devices whose mapping trees have two levels (1,200 mappings of device 0, about five
    /// leaves, with holes), a third of them shared three ways (both overflow trees hold
    /// entries), from vblock 10,000, so inserts below, inside and above the restored keys
    /// split, merge and redistribute from an input's first ops.
    pub const FUZZ_DEEP_START: Prepopulation = Prepopulation {
        devices: 3,
        mappings: 1_200,
        hole_every: 4,
        sharers: 2,
        share_every: 3,
        mappings_per_other: 0,
        first_vblock: 10_000,
    };

    /// Refuses a layout no run can restore (see [`Options::validate`]): sizes far above what
    /// is drawn, and data beyond the pool's `data_blocks`. (Sharers past the last device are
    /// harmless: only devices 1..devices can share.)
    pub fn validate(&self, data_blocks: u64) -> Result<(), OptionsError> {
        let bad = |reason: String| Err(OptionsError { field: "prepopulate", reason });
        for (what, v, max) in [
            ("devices", self.devices, MAX_PREPOPULATED_DEVICES),
            ("mappings", self.mappings, MAX_PREPOPULATED_MAPPINGS),
            ("mappings_per_other", self.mappings_per_other, MAX_PREPOPULATED_MAPPINGS),
            ("first_vblock", self.first_vblock, MAX_VBLOCKS),
        ] {
            if v > max {
                return bad(format!("{what} {v} is over {max}"));
            }
        }
        let used = self.data_blocks_used();
        if used > data_blocks {
            return bad(format!("uses up to {used} data blocks of the pool's {data_blocks}"));
        }
        Ok(())
    }

    /// Data blocks the image uses (all of them are mapped, from block 0 up).
    pub fn data_blocks_used(&self) -> u64 {
        self.mappings + self.devices.saturating_sub(1 + self.sharers) * self.mappings_per_other
    }
}

/// The second phase of deep-tree and pre-populated runs: once `from_permille` of the run's
/// steps are done the runner takes a snapshot and reserves a metadata snapshot, then draws
/// ops with these weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalPhase {
    pub from_permille: u64,
    pub weights: BTreeMap<OpKind, u32>,
}

/// Everything a seed decides about a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub class: RunClass,
    /// The run takes this share of the configured steps, in percent (deep runs need more,
    /// pre-populated runs start where others end and verify more per step).
    pub steps_percent: u64,
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
    /// How provisions choose fresh virtual blocks.
    pub key_order: KeyOrder,
    /// Largest change of one data resize, in data blocks.
    pub resize_data_step: u64,
    /// Largest change of one metadata resize, in blocks.
    pub resize_metadata_step: u64,
    /// Relative weight of each op (0 = never).
    pub weights: BTreeMap<OpKind, u32>,
    pub removal: Option<RemovalPhase>,
    pub prepopulate: Option<Prepopulation>,
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

/// Options a run cannot honour: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "option {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for OptionsError {}

/// Entries of a full mapping leaf and of a full internal node (value size 8).
const FULL_NODE: u64 = 252;

/// Bounds on options read from a trace ([`Options::validate`]), far above what is drawn.
const MAX_EXPLORE_IMAGES: u64 = 4096;
/// Data blocks: 2,056 space-map bitmaps (the largest drawn pool has 171).
const MAX_DATA_BLOCKS: u64 = 1 << 25;
const MAX_STEPS_PERCENT: u64 = 100_000;
/// The pool target takes 24-bit thin ids (dm-thin.c's `MAX_DEV_ID`); at most 260 are drawn.
const MAX_DEVICE_IDS: u64 = 1 << 24;
/// Devices of a restored layout (the most drawn is 252).
const MAX_PREPOPULATED_DEVICES: u64 = 4096;
const MAX_VBLOCKS: u64 = 1 << 40;
/// Mappings of a restored device (the largest drawn layout has 127,008).
const MAX_PREPOPULATED_MAPPINGS: u64 = 1 << 20;

impl Options {
    /// Draws a run's options from its RNG.
    pub fn draw<R: Rng + ?Sized>(rng: &mut R) -> Options {
        let class = RunClass::draw(rng);
        let o = Options::draw_class(rng, class);
        if let Err(e) = o.validate() {
            panic!("drawn options break their own invariants: {e}");
        }
        o
    }

    /// Refuses options no run can honour (as a hand-edited trace may hold), naming the
    /// field: the module's invariants, the disk's ([`DiskConfig::validate`]), and the
    /// non-empty ranges the generator draws from.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let bad = |field: &'static str, reason: String| Err(OptionsError { field, reason });
        if self.metadata_disk_blocks > crate::disk::MAX_SIM_BLOCKS {
            let max = crate::disk::MAX_SIM_BLOCKS;
            return bad(
                "metadata_disk_blocks",
                format!("{} is over {max}", self.metadata_disk_blocks),
            );
        }
        if self.metadata_blocks > self.metadata_disk_blocks {
            let reason = format!(
                "{} is more than the disk's {} blocks",
                self.metadata_blocks, self.metadata_disk_blocks
            );
            return bad("metadata_blocks", reason);
        }
        if let Err(e) = self.disk.validate() {
            return bad("disk", e.to_string());
        }
        if self.crash_in_commit_ppm > crate::disk::PPM {
            return bad(
                "crash_in_commit_ppm",
                format!("{} is over 1000000", self.crash_in_commit_ppm),
            );
        }
        for (field, v) in [
            ("dev_ids", self.dev_ids),
            ("vblocks", self.vblocks),
            ("check_every_image", self.check_every_image),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        // Bounds far above anything drawn, so that a hand-edited or hostile trace is refused
        // in words instead of hanging (2^63 crash images) or aborting on an allocation.
        for (field, v, max) in [
            ("explore_images", self.explore_images, MAX_EXPLORE_IMAGES),
            ("data_blocks", self.data_blocks, MAX_DATA_BLOCKS),
            ("steps_percent", self.steps_percent, MAX_STEPS_PERCENT),
            ("dev_ids", self.dev_ids, MAX_DEVICE_IDS),
            ("vblocks", self.vblocks, MAX_VBLOCKS),
        ] {
            if v > max {
                return bad(field, format!("{v} is over {max}"));
            }
        }
        if let Some(p) = &self.prepopulate {
            p.validate(self.data_blocks)?;
        }
        Ok(())
    }

    /// Draws the options of a run of `class`.
    pub fn draw_class<R: Rng + ?Sized>(rng: &mut R, class: RunClass) -> Options {
        let mut o = Options::draw_small(rng);
        o.class = class;
        match class {
            RunClass::Small => {}
            RunClass::DeepTree => o.deep_tree(rng),
            RunClass::BigPool => o.big_pool(rng),
            RunClass::Prepopulated => o.prepopulated(rng),
        }
        o.explore_images = (o.explore_images * explore_scale(class)).min(o.max_explore_images());
        o
    }

    /// The small-pool options every class starts from.
    fn draw_small<R: Rng + ?Sized>(rng: &mut R) -> Options {
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
            // Fill runs: mostly provisioning, so some devices pass one leaf (253 mappings).
            weights.insert(OpKind::Provision, rng.random_range(100..=300u32));
        }
        let explore_images = [0, 4, 16, 64][rng.random_range(0..4usize)];
        let mut o = Options {
            class: RunClass::Small,
            steps_percent: 100,
            metadata_disk_blocks,
            metadata_blocks,
            data_blocks,
            dev_ids: rng.random_range(2..=10u64),
            vblocks: [32, 300, 2000][rng.random_range(0..3usize)],
            key_order: KeyOrder::Random,
            resize_data_step: 64,
            resize_metadata_step: 32,
            weights,
            removal: None,
            prepopulate: None,
            faults_from_step: rng.random_range(0..50u64),
            disk: DiskConfig::none(),
            crash_in_commit_ppm: rng.random_range(0..=300_000u32),
            explore_images,
            check_every_image: [1, 4, 16][rng.random_range(0..3usize)],
            threshold_blocks: 0,
        };
        o.draw_disk(rng);
        o
    }

    /// Faults, crash policy and threshold for the run's sizes.
    fn draw_disk<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut disk = DiskConfig::draw(rng, self.metadata_disk_blocks);
        if disk.backed_blocks.is_some() {
            // A full metadata volume must be met: back less than the space map can use.
            disk.backed_blocks =
                Some(rng.random_range(self.metadata_blocks / 2..=self.metadata_blocks));
        }
        if rng.random_range(0..4u32) == 0 {
            // A quarter of the runs are class A only: exact recovery is demanded throughout.
            disk = DiskConfig {
                atomic_unit: disk.atomic_unit,
                crash: disk.crash,
                ..DiskConfig::none()
            };
        }
        self.disk = disk;
        self.threshold_blocks = rng.random_range(4..=(self.metadata_blocks / 2).max(4));
    }

    /// Few devices, fresh keys in one order, provision-heavy, then a removal phase.
    fn deep_tree<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.steps_percent = 400;
        self.dev_ids = rng.random_range(1..=2u64);
        self.vblocks = rng.random_range(20_000..=1_000_000u64);
        self.key_order = [KeyOrder::Ascending, KeyOrder::Descending, KeyOrder::Clustered]
            [rng.random_range(0..3usize)];
        self.data_blocks = rng.random_range(2_000..=6_000u64);
        self.metadata_disk_blocks = rng.random_range(600..=1_500u64);
        self.metadata_blocks = rng.random_range(300..=self.metadata_disk_blocks);
        let w = &mut self.weights;
        // About three steps in four provision: a device passes a leaf (253) in the first
        // few hundred steps and holds several by the removal phase.
        w.insert(OpKind::Provision, rng.random_range(800..=1600u32));
        // Commit often enough that growth survives the aborts faults cause.
        w.insert(OpKind::Commit, rng.random_range(15..=40u32));
        // Keep the pool open and the trees growing: fewer resets than a small run.
        // Growth first: removals, deletes and read-only spells belong to the removal phase.
        for k in [
            OpKind::Delete,
            OpKind::CreateThin,
            OpKind::RemoveBlock,
            OpKind::RemoveRange,
            OpKind::ReadOnly,
            OpKind::DecRange,
        ] {
            w.insert(k, w[&k].min(1));
        }
        self.removal = Some(RemovalPhase { from_permille: 700, weights: removal_weights(rng) });
        // Keep the pool's growth: a crash or abort throws away what the last commit missed.
        self.fewer_resets();
        self.draw_disk(rng);
    }

    /// Several bitmaps in both maps, resizes by whole bitmaps, the first data bitmap nearly
    /// full from a restored prefix.
    fn big_pool<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let per_bitmap = engine::limits::ENTRIES_PER_BITMAP;
        // One run in eight: 168 bitmaps fill the data index tree's root leaf exactly, so the
        // first growth by a bitmap splits it.
        let bitmaps = if rng.random_range(0..8u32) == 0 { 168 } else { rng.random_range(3..=6u64) };
        self.steps_percent = 50;
        self.data_blocks = bitmaps * per_bitmap - rng.random_range(0..per_bitmap / 2);
        // One run in four is tight: the device ends at most 150 blocks into its second
        // bitmap, so allocation fills that partial bitmap to the device's end, runs out, and
        // shrinks meet blocks in use near the end.
        let tight = rng.random_range(0..4u32) == 0;
        if tight {
            self.data_blocks = per_bitmap + rng.random_range(16..=150u64);
        }
        self.metadata_disk_blocks = rng.random_range(2..=4u64) * per_bitmap + 64;
        self.metadata_blocks = rng.random_range(per_bitmap + 16..=self.metadata_disk_blocks);
        self.resize_data_step = 3 * per_bitmap;
        self.resize_metadata_step = per_bitmap + 100;
        // Blocks below the end of a bitmap are all in use, so fresh allocations cross it.
        let mappings = per_bitmap - rng.random_range(1..=64u64);
        self.prepopulate = Some(Prepopulation {
            devices: rng.random_range(1..=3u64),
            mappings,
            hole_every: 1,
            sharers: 0,
            share_every: 1,
            mappings_per_other: 0,
            first_vblock: 0,
        });
        self.dev_ids = 4;
        self.vblocks = mappings + 4_000;
        let w = &mut self.weights;
        for k in [OpKind::ResizeData, OpKind::ResizeMetadata, OpKind::IncRange, OpKind::DecRange] {
            w.insert(k, w[&k].max(4));
        }
        if tight {
            // Enough provisions to fill the partial bitmap within the run.
            w.insert(OpKind::Provision, rng.random_range(400..=800u32));
            self.steps_percent = 100;
        }
        self.fewer_resets();
        self.draw_disk(rng);
    }

    /// A restored image of 10^4–1.3·10^5 mappings or hundreds of devices, then the usual
    /// workload and a removal phase.
    fn prepopulated<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let p = match rng.random_range(0..10u32) {
            // Hundreds of devices: the top-level (252 a leaf) and details (126) trees split.
            // 126 devices fill a details leaf, 252 two of them and a top-level leaf: the first
            // create splits them.
            0..=2 => Prepopulation {
                devices: [126, 130, 252][rng.random_range(0..3usize)],
                mappings: rng.random_range(50..=500u64),
                hole_every: 1,
                sharers: 0,
                share_every: 1,
                mappings_per_other: rng.random_range(1..=6u64),
                first_vblock: 0,
            },
            // Full leaves under a full internal root (252 × 252), or under two full internal
            // nodes: the first fresh insert splits a leaf and the node above it, and with one
            // internal level the root. Fixed layouts: restored once per thread, then shared.
            3 | 4 => Prepopulation {
                devices: 1,
                mappings: FULL_NODE * FULL_NODE * rng.random_range(1..=2u64),
                hole_every: 1,
                sharers: 0,
                share_every: 1,
                mappings_per_other: 0,
                first_vblock: 0,
            },
            // Shared three ways and more: overflow trees of thousands of entries.
            _ => Prepopulation {
                devices: rng.random_range(3..=5u64),
                mappings: rng.random_range(8_000..=16_000u64),
                hole_every: rng.random_range(2..=9u64),
                sharers: rng.random_range(2..=3u64),
                share_every: rng.random_range(1..=3u64),
                mappings_per_other: rng.random_range(0..=1_000u64),
                first_vblock: 0,
            },
        };
        self.steps_percent = 50;
        self.dev_ids = p.devices + 8;
        self.vblocks = p.mappings * 2 + 64;
        let used = p.data_blocks_used();
        self.data_blocks = used + rng.random_range(64..=4_000u64);
        // Room for the restored trees (about one block a 126 mappings) and growth.
        let needed = used / 100 + p.devices * 2 + 64;
        self.metadata_disk_blocks = needed * 3 + 512;
        self.metadata_blocks = self.metadata_disk_blocks;
        let mut removal = removal_weights(rng);
        let many_devices = p.devices > 100;
        self.prepopulate = Some(p);
        if many_devices {
            // Deletes, lowest ids first, empty a leaf of the top-level and details trees.
            removal.insert(OpKind::Delete, rng.random_range(100..=200u32));
            self.steps_percent = 100;
        }
        self.removal = Some(RemovalPhase { from_permille: 600, weights: removal });
        // Provisions split the restored trees: half of the key space is fresh.
        self.weights.insert(OpKind::Provision, rng.random_range(60..=200u32));
        self.check_every_image = self.check_every_image.max(4);
        self.fewer_resets();
        self.draw_disk(rng);
    }

    /// Fewer resets, for runs that must grow (deep trees) or whose full verification is
    /// costly (every mapping and data block compared): power cuts, reopens and aborts stay,
    /// at about one in several hundred steps, and crashes inside commits at up to 5%.
    fn fewer_resets(&mut self) {
        for k in [OpKind::PowerCut, OpKind::CloseReopen, OpKind::Abort] {
            let w = self.weights[&k].min(1);
            self.weights.insert(k, w);
            if let Some(r) = &mut self.removal {
                r.weights.insert(k, w);
            }
        }
        self.crash_in_commit_ppm = self.crash_in_commit_ppm.min(50_000);
    }

    /// The most crash images a crash point of this run's class explores: 64 (the largest
    /// drawn count) scaled by [`explore_scale`].
    fn max_explore_images(&self) -> u64 {
        64 * explore_scale(self.class)
    }

    /// Whether crashes may tear a block (otherwise writes land whole or not at all).
    pub fn tears(&self) -> bool {
        self.disk.atomic_unit != AtomicUnit::Block4096
    }
}

/// How many crash images a crash point of `class` explores, as a multiple of the drawn count
/// (0, 4, 16 or 64). Most images of a crash point agree with a verified one on every block its
/// verification read, and then cost a lookup (`runner::memo`): 89–99 % of them, by class. What
/// a run costs is its ops, its fixed verification (the start, the full match at a recovery,
/// the repair judge) and the few images the memo has not seen, so more states per crash point
/// are more of the crash space judged at little cost. Measured side by side, 600–1,500 seeds
/// of one class on one core: big and pre-populated runs at 64× (the cap 4,096 is
/// `MAX_EXPLORE_IMAGES`) take 0.97× the time for about 20× the images; deep trees at 16× about
/// the same time for 9×; small runs at 4× about 1.05× the time for 3×.
fn explore_scale(class: RunClass) -> u64 {
    match class {
        RunClass::BigPool | RunClass::Prepopulated => 64,
        RunClass::DeepTree => 16,
        RunClass::Small => 4,
    }
}

/// The removal phase: bursts of removals and deletes, with snapshots still taken.
fn removal_weights<R: Rng + ?Sized>(rng: &mut R) -> BTreeMap<OpKind, u32> {
    let mut w: BTreeMap<OpKind, u32> = OpKind::ALL.iter().map(|&k| (k, 1)).collect();
    w.insert(OpKind::RemoveBlock, rng.random_range(20..=60u32));
    w.insert(OpKind::RemoveRange, rng.random_range(5..=30u32));
    w.insert(OpKind::Delete, rng.random_range(2..=12u32));
    w.insert(OpKind::Provision, rng.random_range(2..=10u32));
    w.insert(OpKind::Commit, rng.random_range(2..=8u32));
    w.insert(OpKind::Open, 4);
    w
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Every class's largest exploration is one a trace may carry (`validate`'s bound), and
    /// drawn options stay within their class's cap and pass validation.
    #[test]
    fn each_class_explores_within_its_cap_and_the_trace_bound() {
        for class in RunClass::ALL {
            let cap = 64 * explore_scale(class);
            assert!(cap <= MAX_EXPLORE_IMAGES, "{class:?}: {cap}");
            let mut seen = std::collections::BTreeSet::new();
            for seed in 0..64 {
                let o = Options::draw_class(&mut ChaCha8Rng::seed_from_u64(seed), class);
                assert!(o.explore_images <= cap, "{class:?} seed {seed}: {}", o.explore_images);
                o.validate().unwrap_or_else(|e| panic!("{class:?} seed {seed}: {e:?}"));
                seen.insert(o.explore_images);
            }
            assert!(seen.contains(&cap), "{class:?}: the cap is drawn ({seen:?})");
            assert!(seen.contains(&0), "{class:?}: some runs explore nothing ({seen:?})");
        }
    }
}
