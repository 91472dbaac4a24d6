//! Crash semantics of the simulated disk: what survives a flush, FUA and a crash, and that
//! crash images are exactly the per-sector choices among the durable and pending versions
//! (class A), while sub-sector tears (class B) produce sectors of no version at all.

use engine::io::{Block, BlockDevice};
use sim::disk::{
    AtomicUnit, CrashPlan, CrashPolicy, DiskConfig, ExploreOptions, FaultKind, MemoryImage,
    SimDisk, TearSet, WriteChoice, SECTORS_PER_BLOCK,
};
use std::collections::BTreeSet;

/// A block whose every sector is distinct from every other sector of every other version:
/// byte = tag, sector index, and position mixed, so each sector identifies its version.
fn version(tag: u8) -> Block {
    let mut b = [0u8; 4096];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = tag.wrapping_mul(31) ^ ((i / 512) as u8).wrapping_mul(7) ^ (i as u8);
    }
    b[0] = tag;
    b[512] = tag;
    b
}

fn sector(b: &Block, s: usize) -> &[u8] {
    &b[s * 512..(s + 1) * 512]
}

fn torn_heavy() -> DiskConfig {
    DiskConfig {
        crash: CrashPolicy { apply_ppm: 300_000, tear_ppm: 500_000, reorder: true },
        ..DiskConfig::none()
    }
}

/// A disk with block 0..4 durable at versions 1..=4 and pending writes (block, tag) given.
fn disk_with_pending(config: DiskConfig, seed: u64, pending: &[(u64, u8)]) -> SimDisk {
    let mut disk = SimDisk::new(4, config, seed).expect("a valid disk");
    for b in 0..4u64 {
        disk.write(b, &version(b as u8 + 1)).expect("setup write");
    }
    disk.flush().expect("setup flush");
    for &(b, tag) in pending {
        disk.write(b, &version(tag)).expect("pending write");
    }
    disk
}

/// The versions block `b` may show after a crash: durable, then each pending write to it.
fn versions_of(disk: &SimDisk, b: u64) -> Vec<Block> {
    let mut v = vec![*disk.durable_image().block(b).expect("in range")];
    v.extend(disk.pending_writes().iter().filter(|w| w.block() == b).map(|w| *w.data()));
    v
}

/// Whether every sector of `image` is that sector of some version of its block.
fn sector_choice_of_versions(image: &MemoryImage, versions: &[Vec<Block>]) -> bool {
    versions.iter().enumerate().all(|(b, vs)| {
        let got = image.block(b as u64).expect("in range");
        (0..SECTORS_PER_BLOCK).all(|s| vs.iter().any(|v| sector(v, s) == sector(got, s)))
    })
}

#[test]
fn flushed_writes_survive_any_crash() {
    for seed in 0..32 {
        let mut disk = disk_with_pending(torn_heavy(), seed, &[(1, 10), (2, 11)]);
        disk.flush().expect("flush");
        let before = disk.durable_image();
        assert!(disk.pending_writes().is_empty());
        let report = disk.crash();
        assert!(report.outcomes.is_empty());
        assert_eq!(disk.durable_image(), before, "seed {seed}");
        let mut buf = [0u8; 4096];
        disk.read(1, &mut buf).expect("read after crash");
        assert_eq!(buf, version(10));
    }
}

#[test]
fn fua_write_survives_a_crash_that_drops_everything() {
    let drop_all = DiskConfig {
        crash: CrashPolicy { apply_ppm: 0, tear_ppm: 0, reorder: false },
        ..DiskConfig::none()
    };
    let mut disk = disk_with_pending(drop_all, 5, &[(0, 20), (3, 21)]);
    disk.write_fua(0, &version(22)).expect("fua");
    // The FUA write superseded the older cached write to block 0; block 3's stays pending.
    assert_eq!(disk.pending_writes().len(), 1);
    disk.crash();
    let image = disk.durable_image();
    assert_eq!(image.block(0), Some(&version(22)));
    assert_eq!(image.block(3), Some(&version(4)));
}

#[test]
fn reads_see_newest_data_before_any_flush() {
    let mut disk = disk_with_pending(DiskConfig::none(), 1, &[(2, 30), (2, 31)]);
    let mut buf = [0u8; 4096];
    disk.read(2, &mut buf).expect("read");
    assert_eq!(buf, version(31));
    assert_eq!(disk.durable_image().block(2), Some(&version(3)));
}

#[test]
fn random_crashes_are_sector_choices_among_versions() {
    let pending = [(0, 10), (0, 11), (1, 12), (0, 13), (3, 14)];
    let mut torn = 0;
    let mut stale = 0;
    for seed in 0..200 {
        let mut disk = disk_with_pending(torn_heavy(), seed, &pending);
        let versions: Vec<_> = (0..4).map(|b| versions_of(&disk, b)).collect();
        let report = disk.crash();
        torn += report.torn();
        stale += report.stale_wins();
        assert!(sector_choice_of_versions(&disk.durable_image(), &versions), "seed {seed}");
        assert!(disk.check_invariants().is_ok());
    }
    assert!(torn > 0 && stale > 0, "torn {torn}, stale {stale}");
}

#[test]
fn subsector_tears_mix_versions_inside_a_sector() {
    let config = DiskConfig { subsector_tears: true, ..torn_heavy() };
    let mut mixed = 0;
    for seed in 0..100 {
        let mut disk = disk_with_pending(config.clone(), seed, &[(0, 10), (1, 11)]);
        let versions: Vec<_> = (0..4).map(|b| versions_of(&disk, b)).collect();
        let report = disk.crash();
        if !sector_choice_of_versions(&disk.durable_image(), &versions) {
            mixed += 1;
            let faults: Vec<_> = report.outcomes.iter().filter_map(|o| o.fault).collect();
            assert!(faults.contains(&FaultKind::SubsectorTear), "seed {seed}: {faults:?}");
        }
    }
    assert!(mixed > 0);
    assert!(mixed < 100);
}

#[test]
fn four_kib_atomic_unit_never_tears() {
    let config = DiskConfig { atomic_unit: AtomicUnit::Block4096, ..torn_heavy() };
    for seed in 0..50 {
        let mut disk = disk_with_pending(config.clone(), seed, &[(0, 10), (0, 11), (2, 12)]);
        let versions: Vec<_> = (0..4).map(|b| versions_of(&disk, b)).collect();
        let report = disk.crash();
        assert_eq!(report.torn(), 0);
        let image = disk.durable_image();
        for (b, vs) in versions.iter().enumerate() {
            assert!(vs.iter().any(|v| Some(v) == image.block(b as u64)), "seed {seed} block {b}");
        }
    }
}

#[test]
fn exhaustive_exploration_is_exactly_every_sector_choice() {
    // 1 KiB units: 4 units per block, 16 options per write (drop, apply, 14 tears).
    let config = DiskConfig { atomic_unit: AtomicUnit::Bytes1024, ..DiskConfig::none() };
    let mut disk = disk_with_pending(config, 9, &[(0, 10), (0, 11), (1, 12)]);
    let versions: Vec<_> = (0..4).map(|b| versions_of(&disk, b)).collect();
    let opts = ExploreOptions { tears: TearSet::AllMasks, max_images: 1 << 20, sample_seed: 0 };
    let states = disk.explore(&opts);
    assert!(states.is_exhaustive());
    assert_eq!(states.total(), Some(16 * 16 * 16));
    let mut distinct = BTreeSet::new();
    for state in states {
        assert!(sector_choice_of_versions(&state.image, &versions));
        assert_eq!(disk.image_with(&state.choices).as_ref(), Ok(&state.image));
        distinct.insert(state.image.to_bytes());
    }
    // Block 0: 3 versions per 1 KiB unit; block 1: 2 versions per unit; blocks 2, 3 fixed.
    assert_eq!(distinct.len(), 3usize.pow(4) * 2usize.pow(4));
    assert_eq!(disk.coverage().crash_points(), 1);
    assert_eq!(disk.coverage().crash_images(), 4096);
    assert_eq!(disk.pending_writes().len(), 3, "exploring leaves the disk as it was");
}

#[test]
fn sampled_exploration_starts_with_the_extremes() {
    let pending: Vec<(u64, u8)> = (0..12).map(|i| (i % 4, 40 + i as u8)).collect();
    let mut disk = disk_with_pending(DiskConfig::none(), 2, &pending);
    let opts = ExploreOptions { tears: TearSet::Prefixes, max_images: 10, sample_seed: 77 };
    let states: Vec<_> = disk.explore(&opts).collect();
    assert_eq!(states.len(), 10);
    assert_eq!(states[0].image, disk.durable_image());
    let all = disk.image_with(&[WriteChoice::Apply; 12]).expect("valid");
    assert_eq!(states[1].image, all);
    let again: Vec<_> = disk.explore(&opts).map(|s| s.choices).collect();
    assert_eq!(again, states.iter().map(|s| s.choices.clone()).collect::<Vec<_>>());
}

/// A sample never counts one crash state twice: with one state fewer asked for than there
/// are, every state but one is yielded, each once (drawn with replacement, about a third of
/// the draws would repeat one).
#[test]
fn sampled_exploration_yields_each_state_at_most_once() {
    // Whole writes: two choices each, 2^6 = 64 states.
    let pending: Vec<(u64, u8)> = (0..6).map(|i| (i % 4, 60 + i as u8)).collect();
    let mut disk = disk_with_pending(DiskConfig::none(), 4, &pending);
    for max_images in [63, 40, 2] {
        let opts = ExploreOptions { tears: TearSet::Whole, max_images, sample_seed: 5 };
        let states = disk.explore(&opts);
        assert!(!states.is_exhaustive());
        assert_eq!(states.total(), Some(64));
        let choices: Vec<_> = states.map(|s| s.choices).collect();
        assert_eq!(choices.len() as u64, max_images);
        let distinct: BTreeSet<_> = choices.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(distinct.len(), choices.len(), "max_images {max_images}: a state repeated");
    }
}

#[test]
fn crash_with_replays_a_reported_crash() {
    let pending = [(0, 10), (1, 11), (0, 12), (2, 13)];
    let mut a = disk_with_pending(torn_heavy(), 3, &pending);
    let mut b = disk_with_pending(torn_heavy(), 99, &pending);
    let report = a.crash();
    let replay = b.crash_with(&report.plan).expect("plan fits");
    assert_eq!(a.durable_image(), b.durable_image());
    assert_eq!(replay.outcomes, report.outcomes);
    let bad = CrashPlan::in_issue_order(vec![WriteChoice::Apply]);
    assert!(b.crash_with(&bad).is_err(), "nothing pending after the crash: one choice is wrong");
}

#[test]
fn image_with_refuses_wrong_plans_and_is_pure() {
    let disk = disk_with_pending(torn_heavy(), 4, &[(0, 10), (1, 11)]);
    assert!(disk.image_with(&[WriteChoice::Apply]).is_err());
    let plan = CrashPlan { choices: vec![WriteChoice::Apply; 2], order: vec![0, 0] };
    assert!(disk.image_with_plan(&plan).is_err());
    let hash = disk.trace_hash();
    let image = disk.image_with(&[WriteChoice::Drop, WriteChoice::Apply]).expect("valid");
    assert_eq!(image.block(0), Some(&version(1)));
    assert_eq!(image.block(1), Some(&version(11)));
    assert_eq!(disk.trace_hash(), hash);
    assert_eq!(disk.pending_writes().len(), 2);
}

#[test]
fn older_version_can_win_when_reordered() {
    let mut disk = disk_with_pending(DiskConfig::none(), 0, &[(0, 10), (0, 11)]);
    let plan = CrashPlan { choices: vec![WriteChoice::Apply; 2], order: vec![1, 0] };
    let report = disk.crash_with(&plan).expect("valid");
    assert_eq!(report.stale_wins(), 1);
    assert_eq!(disk.durable_image().block(0), Some(&version(10)));
    assert_eq!(disk.coverage().total(FaultKind::StaleVersion), 1);
}

#[test]
fn restore_durable_reboots_onto_another_image() {
    let mut disk = disk_with_pending(DiskConfig::none(), 0, &[(0, 10)]);
    let image = disk.image_with(&[WriteChoice::Apply]).expect("valid");
    let mut other = disk.clone();
    other.restore_durable(image.clone()).expect("same size");
    assert!(other.pending_writes().is_empty());
    let mut buf = [0u8; 4096];
    other.read(0, &mut buf).expect("read");
    assert_eq!(buf, version(10));
    assert!(disk.restore_durable(MemoryImage::new(3)).is_err());
    let fresh =
        SimDisk::from_image(image.clone(), DiskConfig::none(), sim::entropy::Entropy::seeded(1))
            .expect("a valid disk");
    assert_eq!(fresh.durable_image(), image);
}
