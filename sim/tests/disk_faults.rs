//! Injected faults of the simulated disk: each does what the fault model says, is typed,
//! is counted in coverage with its class, and everything is reproducible from the seed.

use engine::format::checksum::seal;
use engine::format::BlockKind;
use engine::io::{Block, BlockDevice, IoErrorKind};
use sim::disk::{
    is_power_loss, CoverageKey, CrashPlan, DiskConfig, FaultClass, FaultKind, FaultRates, HitKind,
    Phase, SimDisk, WriteChoice, WriteFate, PPM,
};

fn node(location: u64, tag: u8) -> Block {
    let mut b = [tag; 4096];
    seal(&mut b, BlockKind::Node, location);
    b
}

fn with_rates(rates: FaultRates) -> DiskConfig {
    DiskConfig { rates, ..DiskConfig::none() }
}

/// A fixed call sequence mixing every operation, for determinism checks.
fn workload(disk: &mut SimDisk) {
    let mut buf = [0u8; 4096];
    for round in 0..20u64 {
        for b in 0..6u64 {
            let _ = disk.write((b * 5 + round) % 16, &node(b, (round * 7 + b) as u8));
            let _ = disk.read((b * 3 + round) % 16, &mut buf);
        }
        if round % 3 == 0 {
            let _ = disk.write_fua(round % 16, &node(round, 3));
        }
        if round % 4 == 1 {
            let _ = disk.flush();
            for b in 0..16 {
                let _ = disk.read(b, &mut buf);
            }
        }
        if round % 7 == 6 {
            disk.crash();
        }
    }
    disk.crash();
}

/// Every fault kind with a rate at 2 %, bit rot at 5 % and flush EIO at 20 % (a kind added
/// later is in here without a line: `FaultRates::of_mut`).
fn busy_config() -> DiskConfig {
    let mut rates = FaultRates::ZERO;
    for k in FaultKind::ALL {
        if let Some(r) = rates.of_mut(k) {
            *r = 20_000;
        }
    }
    rates.bit_rot_ppm = 50_000;
    rates.flush_eio_ppm = 200_000;
    DiskConfig { subsector_tears: true, backed_blocks: Some(15), ..with_rates(rates) }
}

#[test]
fn same_seed_same_trace_and_image() {
    let run = |seed| {
        let mut disk = SimDisk::new(16, busy_config(), seed).expect("a valid disk");
        workload(&mut disk);
        (disk.trace_hash(), disk.durable_image(), disk.coverage().clone(), disk.stats().clone())
    };
    let (h1, img1, cov1, stats1) = run(42);
    let (h2, img2, cov2, stats2) = run(42);
    assert_eq!(h1, h2);
    assert_eq!(img1, img2);
    assert_eq!(cov1, cov2);
    assert_eq!(stats1, stats2);
    let (h3, img3, _, _) = run(43);
    assert!(h3 != h1 || img3 != img1);
}

#[test]
fn transient_eio_is_typed_and_changes_nothing() {
    let rates = FaultRates {
        read_eio_ppm: PPM,
        write_eio_ppm: PPM,
        flush_eio_ppm: PPM,
        ..FaultRates::ZERO
    };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    let mut buf = [9u8; 4096];
    let e = disk.read(1, &mut buf).expect_err("read EIO");
    assert_eq!((e.kind, e.block), (IoErrorKind::Device, Some(1)));
    assert_eq!(buf, [9u8; 4096]);
    let e = disk.write(1, &node(1, 5)).expect_err("write EIO");
    assert_eq!(e.kind, IoErrorKind::Device);
    assert!(disk.pending_writes().is_empty());
    assert_eq!(disk.peek(1), Some(&[0u8; 4096]));
    assert!(disk.write_fua(1, &node(1, 5)).is_err());
    assert!(disk.flush().is_err());
    assert!(!is_power_loss(&e));
    for kind in [FaultKind::ReadEio, FaultKind::WriteEio, FaultKind::FlushEio] {
        assert!(disk.coverage().total(kind) >= 1, "{kind:?}");
        assert_eq!(kind.class(), FaultClass::C);
    }
    disk.set_faults_enabled(false);
    disk.write(1, &node(1, 5)).expect("faults off");
    disk.flush().expect("faults off");
    assert_eq!(disk.stats().errors, 4);
}

#[test]
fn failed_flush_leaves_writes_pending() {
    let rates = FaultRates { flush_eio_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    disk.write(2, &node(2, 1)).expect("write");
    assert!(disk.flush().is_err());
    assert_eq!(disk.pending_writes().len(), 1);
    assert_eq!(disk.durable_image().block(2), Some(&[0u8; 4096]));
}

#[test]
fn latent_sector_error_persists_until_rewritten() {
    let rates = FaultRates { latent_sector_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    disk.write(2, &node(2, 1)).expect("write");
    let mut buf = [0u8; 4096];
    disk.read(2, &mut buf).expect("served from the cache, not the media");
    disk.flush().expect("flush");
    assert!(disk.read(2, &mut buf).is_err());
    assert!(disk.is_latent(2));
    for _ in 0..3 {
        assert_eq!(disk.read(2, &mut buf).map_err(|e| e.kind), Err(IoErrorKind::Device));
    }
    assert_eq!(disk.coverage().total(FaultKind::LatentSector), 1, "injected once");
    disk.write(2, &node(2, 2)).expect("rewrite");
    disk.read(2, &mut buf).expect("cached");
    assert_eq!(buf, node(2, 2));
    disk.flush().expect("flush");
    assert!(!disk.is_latent(2));
    let key = CoverageKey {
        fault: FaultKind::LatentSector,
        hit: HitKind::LeafNode,
        in_commit: false,
        snap_held: false,
    };
    assert_eq!(disk.coverage().count(&key), 1);
}

#[test]
fn misdirected_write_lands_elsewhere() {
    let rates = FaultRates { misdirected_write_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(8, with_rates(rates), 3).expect("a valid disk");
    disk.write(5, &node(5, 1)).expect("write");
    let WriteFate::Misdirected { to } = disk.pending_writes()[0].fate() else {
        panic!("every write is misdirected at this rate")
    };
    assert_ne!(to, 5);
    let mut buf = [0u8; 4096];
    disk.read(5, &mut buf).expect("cache serves the intended block");
    assert_eq!(buf, node(5, 1));
    disk.flush().expect("flush");
    let image = disk.durable_image();
    assert_eq!(image.block(5), Some(&[0u8; 4096]));
    assert_eq!(image.block(to), Some(&node(5, 1)));
    disk.read(to, &mut buf).expect("read the victim");
    assert_eq!(buf, node(5, 1));
    let log = disk.take_fault_log();
    assert_eq!(log.events[0].fault, FaultKind::MisdirectedWrite);
    assert_eq!(log.events[0].hit, HitKind::LeafNode);
    assert!(!log.class_a_only());
}

#[test]
fn lost_write_is_gone_after_flush_and_crash() {
    let rates = FaultRates { lost_write_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    disk.write(1, &node(1, 7)).expect("acknowledged");
    let mut buf = [0u8; 4096];
    disk.read(1, &mut buf).expect("cache");
    assert_eq!(buf, node(1, 7));
    disk.flush().expect("flush");
    disk.read(1, &mut buf).expect("media");
    assert_eq!(buf, [0u8; 4096]);
    disk.write(2, &node(2, 7)).expect("acknowledged");
    disk.crash_with(&CrashPlan::in_issue_order(vec![WriteChoice::Apply])).expect("plan");
    assert_eq!(disk.durable_image().block(2), Some(&[0u8; 4096]));
    assert_eq!(disk.coverage().total(FaultKind::LostWrite), 2);
    assert_eq!(FaultKind::LostWrite.class(), FaultClass::B);
}

#[test]
fn bit_rot_flips_one_durable_bit() {
    let rates = FaultRates { bit_rot_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    disk.write(0, &node(0, 4)).expect("write");
    disk.flush().expect("flush");
    let mut buf = [0u8; 4096];
    disk.read(0, &mut buf).expect("read");
    let flipped: u32 = buf.iter().zip(node(0, 4).iter()).map(|(a, b)| (a ^ b).count_ones()).sum();
    assert_eq!(flipped, 1);
    assert_eq!(disk.durable_image().block(0), Some(&buf));
    assert_eq!(HitKind::of(&buf), HitKind::Unknown);
    let key = CoverageKey {
        fault: FaultKind::BitRot,
        hit: HitKind::LeafNode,
        in_commit: false,
        snap_held: false,
    };
    assert_eq!(disk.coverage().count(&key), 1);
}

#[test]
fn a_zeroed_sector_reads_as_zeros_from_the_media_until_rewritten() {
    let rates = FaultRates { zeroed_sector_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    let mut buf = [0u8; 4096];
    disk.write(0, &node(0, 4)).expect("write");
    disk.read(0, &mut buf).expect("read from the cache");
    assert_eq!(buf, node(0, 4), "a cached write never meets the media");
    disk.flush().expect("flush");
    disk.read(0, &mut buf).expect("read from the media");
    let zeroed: Vec<usize> = (0..8)
        .filter(|s| buf[s * 512..(s + 1) * 512] != node(0, 4)[s * 512..(s + 1) * 512])
        .collect();
    assert_eq!(zeroed.len(), 1, "one sector differs");
    assert!(buf[zeroed[0] * 512..(zeroed[0] + 1) * 512].iter().all(|&b| b == 0));
    assert_eq!(disk.durable_image().block(0), Some(&buf), "it stays zero on the media");
    assert_eq!(HitKind::of(&buf), HitKind::Unknown, "the checksum no longer matches");
    let key = CoverageKey {
        fault: FaultKind::ZeroedSector,
        hit: HitKind::LeafNode,
        in_commit: false,
        snap_held: false,
    };
    assert_eq!(disk.coverage().count(&key), 1);
    assert_eq!(FaultKind::ZeroedSector.class(), FaultClass::B);
    disk.write(0, &node(0, 5)).expect("rewrite");
    disk.read(0, &mut buf).expect("read the rewrite from the cache");
    assert_eq!(buf, node(0, 5));
}

#[test]
fn full_device_refuses_writes_beyond_the_backed_blocks() {
    let config = DiskConfig { backed_blocks: Some(2), ..DiskConfig::none() };
    let mut disk = SimDisk::new(4, config, 1).expect("a valid disk");
    disk.write(1, &node(1, 1)).expect("backed");
    let e = disk.write(2, &node(2, 1)).expect_err("not backed");
    assert_eq!(e.kind, IoErrorKind::Device);
    let mut buf = [1u8; 4096];
    disk.read(3, &mut buf).expect("reads still work");
    assert_eq!(disk.coverage().total(FaultKind::DeviceFull), 1);
}

#[test]
fn out_of_range_is_typed_for_every_operation() {
    let mut disk = SimDisk::new(4, busy_config(), 1).expect("a valid disk");
    let mut buf = [0u8; 4096];
    for e in [
        disk.read(4, &mut buf).expect_err("read"),
        disk.write(u64::MAX, &buf).expect_err("write"),
        disk.write_fua(4, &buf).expect_err("fua"),
    ] {
        assert_eq!(e.kind, IoErrorKind::OutOfRange);
    }
    // A disk too big, or a rate over every event, is refused with a typed error, not clamped.
    let max = sim::disk::MAX_SIM_BLOCKS;
    assert_eq!(
        SimDisk::new(max + 1, DiskConfig::none(), 0).err(),
        Some(sim::disk::ConfigError::TooLarge { nr_blocks: max + 1, max })
    );
    assert_eq!(SimDisk::new(max, DiskConfig::none(), 0).map(|d| d.nr_blocks()).ok(), Some(max));
    let mut over = DiskConfig::none();
    over.rates.bit_rot_ppm = 1_000_001;
    assert_eq!(
        SimDisk::new(4, over, 0).err(),
        Some(sim::disk::ConfigError::Rate { field: "rates.bit_rot_ppm", ppm: 1_000_001 })
    );
    let mut shares = DiskConfig::none();
    shares.crash.apply_ppm = 600_000;
    shares.crash.tear_ppm = 600_000;
    assert!(matches!(SimDisk::new(4, shares, 0), Err(sim::disk::ConfigError::Rate { .. })));
}

#[test]
fn crash_at_cuts_power_until_crash() {
    let mut disk = SimDisk::new(4, DiskConfig::none(), 1).expect("a valid disk");
    disk.write(0, &node(0, 1)).expect("write");
    disk.set_crash_at_io(disk.stats().io_calls() + 2);
    disk.write(1, &node(1, 1)).expect("first call still runs");
    let e = disk.write(2, &node(2, 1)).expect_err("second call loses power");
    assert!(is_power_loss(&e));
    assert!(disk.is_powered_off());
    let mut buf = [0u8; 4096];
    assert!(disk.read(0, &mut buf).is_err_and(|e| is_power_loss(&e)));
    assert!(disk.flush().is_err_and(|e| is_power_loss(&e)));
    assert!(disk.write(3, &buf).is_err_and(|e| is_power_loss(&e)));
    // The interrupted write was in flight: it is pending like the others.
    assert_eq!(disk.pending_writes().len(), 3);
    disk.crash_with(&CrashPlan::in_issue_order(vec![WriteChoice::Apply; 3])).expect("plan");
    assert!(!disk.is_powered_off());
    assert_eq!(disk.durable_image().block(2), Some(&node(2, 1)));
    disk.read(2, &mut buf).expect("powered on again");
    assert_eq!(disk.coverage().total(FaultKind::PowerLoss), 1);
}

#[test]
fn coverage_follows_the_phase() {
    let rates = FaultRates { write_eio_ppm: PPM, ..FaultRates::ZERO };
    let mut disk = SimDisk::new(4, with_rates(rates), 1).expect("a valid disk");
    disk.set_phase(Phase { in_commit: true, metadata_snap_held: true, label: "commit" });
    let _ = disk.write(0, &node(0, 1));
    disk.set_phase(Phase::IDLE);
    let _ = disk.write(0, &[0u8; 4096]);
    let c = disk.coverage();
    let commit = CoverageKey {
        fault: FaultKind::WriteEio,
        hit: HitKind::LeafNode,
        in_commit: true,
        snap_held: true,
    };
    let idle = CoverageKey {
        fault: FaultKind::WriteEio,
        hit: HitKind::Zero,
        in_commit: false,
        snap_held: false,
    };
    assert_eq!((c.count(&commit), c.count(&idle)), (1, 1));
    assert_eq!(c.by_label()["commit"], 1);
    let json = serde_json::to_value(c).expect("serialises");
    assert!(json["cells"].as_array().is_some_and(|cells| cells.len() == 2));
}

#[test]
fn busy_run_fires_every_kind_and_counts_crashes() {
    let mut disk = SimDisk::new(16, busy_config(), 7).expect("a valid disk");
    // 40 flushes at 20 % and 24 crashes: a kind at zero is a broken kind, not bad luck.
    for _ in 0..8 {
        workload(&mut disk);
    }
    let cov = disk.coverage();
    for kind in FaultKind::ALL {
        if kind != FaultKind::PowerLoss {
            assert!(
                cov.total(kind) > 0,
                "{kind:?} never fired: {:?} {:?}",
                FaultKind::ALL.map(|k| cov.total(k)),
                disk.stats()
            );
        }
    }
    assert_eq!(cov.crash_points(), disk.stats().crashes);
    assert!(disk.check_invariants().is_ok());
}
