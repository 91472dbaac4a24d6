//! Property tests of the simulated disk: random call sequences never panic and keep the
//! structural invariants, and a fault-free disk agrees with a tiny model of a volatile
//! write cache (reads see the newest data, flush makes it durable, a crash picks versions).

use engine::io::{Block, BlockDevice, IoErrorKind};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::disk::{
    CrashPlan, CrashPolicy, DiskConfig, ExploreOptions, Phase, SimDisk, TearSet, WriteChoice,
    SECTORS_PER_BLOCK,
};

#[derive(Clone, Debug)]
enum Op {
    Read(u64),
    Write(u64, u8),
    Fua(u64, u8),
    Flush,
    Crash,
    CrashWithApplyAll,
    Faults(bool),
    CrashAt(u8),
    Phase(bool, bool),
    Explore(u8),
    RestoreDurable,
}

fn op(max_block: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..max_block).prop_map(Op::Read),
        4 => (0..max_block, any::<u8>()).prop_map(|(b, t)| Op::Write(b, t)),
        1 => (0..max_block, any::<u8>()).prop_map(|(b, t)| Op::Fua(b, t)),
        2 => Just(Op::Flush),
        1 => Just(Op::Crash),
        1 => Just(Op::CrashWithApplyAll),
        1 => any::<bool>().prop_map(Op::Faults),
        1 => (0..6u8).prop_map(Op::CrashAt),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(c, s)| Op::Phase(c, s)),
        1 => (1..20u8).prop_map(Op::Explore),
        1 => Just(Op::RestoreDurable),
    ]
}

fn version(tag: u8) -> Block {
    let mut b = [0u8; 4096];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = tag ^ ((i / 512) as u8).wrapping_mul(41) ^ (i as u8).wrapping_mul(3);
    }
    b
}

fn apply(disk: &mut SimDisk, op: &Op) {
    let mut buf = [0u8; 4096];
    match *op {
        Op::Read(b) => drop(disk.read(b, &mut buf)),
        Op::Write(b, t) => drop(disk.write(b, &version(t))),
        Op::Fua(b, t) => drop(disk.write_fua(b, &version(t))),
        Op::Flush => drop(disk.flush()),
        Op::Crash => drop(disk.crash()),
        Op::CrashWithApplyAll => {
            let n = disk.pending_writes().len();
            let plan = CrashPlan::in_issue_order(vec![WriteChoice::Apply; n]);
            assert!(disk.crash_with(&plan).is_ok());
        }
        Op::Faults(on) => disk.set_faults_enabled(on),
        Op::CrashAt(k) => disk.set_crash_at_io(disk.stats().io_calls() + u64::from(k)),
        Op::Phase(in_commit, metadata_snap_held) => {
            disk.set_phase(Phase { in_commit, metadata_snap_held, label: "prop" })
        }
        Op::Explore(max) => {
            let opts = ExploreOptions {
                tears: TearSet::Prefixes,
                max_images: u64::from(max),
                sample_seed: 1,
            };
            assert!(disk.explore(&opts).count() <= usize::from(max));
        }
        Op::RestoreDurable => assert!(disk.restore_durable(disk.durable_image()).is_ok()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_never_panic(
        seed in any::<u64>(),
        nr_blocks in 0..8u64,
        ops in proptest::collection::vec(op(10), 0..80),
    ) {
        let config = DiskConfig::draw(&mut ChaCha8Rng::seed_from_u64(seed), nr_blocks);
        let mut disk = SimDisk::new(nr_blocks, config, seed).expect("a valid disk");
        for op in &ops {
            apply(&mut disk, op);
            prop_assert_eq!(disk.check_invariants(), Ok(()), "after {:?}", op);
        }
        let mut twin = SimDisk::new(nr_blocks, disk.config().clone(), seed).expect("a valid disk");
        for op in &ops {
            apply(&mut twin, op);
        }
        prop_assert_eq!(twin.trace_hash(), disk.trace_hash());
        prop_assert_eq!(twin.durable_image(), disk.durable_image());
    }

    #[test]
    fn fault_free_disk_matches_a_cache_model(
        seed in any::<u64>(),
        apply_ppm in 0..=1_000_000u32,
        reorder in any::<bool>(),
        ops in proptest::collection::vec(op(5), 0..60),
    ) {
        let crash = CrashPolicy { apply_ppm, tear_ppm: 1_000_000 - apply_ppm, reorder };
        let mut disk = SimDisk::new(4, DiskConfig { crash, ..DiskConfig::none() }, seed).expect("a valid disk");
        let mut model = CacheModel { durable: vec![[0u8; 4096]; 4], pending: Vec::new() };
        for op in &ops {
            model.step(&mut disk, op)?;
        }
    }
}

/// The expected behaviour of a fault-free volatile write cache.
struct CacheModel {
    durable: Vec<Block>,
    pending: Vec<(u64, Block)>,
}

impl CacheModel {
    fn newest(&self, b: u64) -> Block {
        let cached = self.pending.iter().rev().find(|(pb, _)| *pb == b).map(|(_, d)| *d);
        cached.unwrap_or(self.durable[b as usize])
    }

    fn step(&mut self, disk: &mut SimDisk, op: &Op) -> Result<(), TestCaseError> {
        let mut buf = [0u8; 4096];
        match *op {
            Op::Read(b) if b < 4 => {
                prop_assert!(disk.read(b, &mut buf).is_ok());
                prop_assert!(buf == self.newest(b), "read of block {}", b);
            }
            Op::Read(b) => {
                let e = disk.read(b, &mut buf).map_err(|e| e.kind);
                prop_assert_eq!(e, Err(IoErrorKind::OutOfRange));
            }
            Op::Write(b, t) if b < 4 => {
                prop_assert!(disk.write(b, &version(t)).is_ok());
                self.pending.push((b, version(t)));
            }
            Op::Fua(b, t) if b < 4 => {
                prop_assert!(disk.write_fua(b, &version(t)).is_ok());
                self.pending.retain(|(pb, _)| *pb != b);
                self.durable[b as usize] = version(t);
            }
            Op::Flush => {
                prop_assert!(disk.flush().is_ok());
                for (b, d) in self.pending.drain(..) {
                    self.durable[b as usize] = d;
                }
                prop_assert!(self.image_is_durable(disk));
            }
            Op::Crash => self.crash(disk)?,
            // Power loss and the rest are covered by the other property.
            _ => {}
        }
        Ok(())
    }

    fn crash(&mut self, disk: &mut SimDisk) -> Result<(), TestCaseError> {
        disk.crash();
        let image = disk.durable_image();
        for b in 0..4u64 {
            let got = image.block(b).expect("in range");
            let mut versions = vec![self.durable[b as usize]];
            versions.extend(self.pending.iter().filter(|(pb, _)| *pb == b).map(|(_, d)| *d));
            for s in 0..SECTORS_PER_BLOCK {
                let r = s * 512..(s + 1) * 512;
                prop_assert!(
                    versions.iter().any(|v| v[r.clone()] == got[r.clone()]),
                    "block {} sector {} is no version's",
                    b,
                    s
                );
            }
            self.durable[b as usize] = *got;
        }
        self.pending.clear();
        Ok(())
    }

    fn image_is_durable(&self, disk: &SimDisk) -> bool {
        let image = disk.durable_image();
        (0..4u64).all(|b| image.block(b) == Some(&self.durable[b as usize]))
    }
}
