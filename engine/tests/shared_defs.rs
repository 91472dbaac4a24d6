//! `dump --shared-defs` (thin_dump 1.x's `<def>`/`<ref>`) against 0.9.0's form: for pools
//! whose devices share runs of mappings in every way a history of snapshots and writes
//! leaves them, the shared dump restores to a pool whose 0.9.0 dump is the original's, byte
//! for byte; and a pool with shared runs does write defs.

mod common;

use engine::io::MemoryDevice;
use engine::thin::{Pool, Source, ThinId};
use engine::tools::defs::dump_shared;
use engine::tools::dump::{dump_with, DumpOptions};
use engine::tools::restore::restore_slice;
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn xml(pool: &Pool, shared: bool, opts: &DumpOptions) -> String {
    let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
    if shared {
        dump_shared(pool, &mut w, Source::Live, opts).unwrap();
    } else {
        dump_with(pool, &mut w, Source::Live, opts).unwrap();
    }
    String::from_utf8(w.finish().unwrap()).unwrap()
}

/// The 0.9.0 dump of `doc` restored.
fn restored_dump(doc: &str, opts: &DumpOptions) -> String {
    let dev = restore_slice(doc.as_bytes(), Box::new(MemoryDevice::new(1024))).unwrap();
    let mut bytes = vec![0u8; 1024 * 4096];
    let mut dev = dev;
    for (b, chunk) in bytes.chunks_mut(4096).enumerate() {
        let mut block = [0u8; 4096];
        dev.read(b as u64, &mut block).unwrap();
        chunk.copy_from_slice(&block);
    }
    let pool = Pool::open_image(MemoryDevice::from_bytes(&bytes).to_device()).unwrap();
    xml(&pool, false, opts)
}

/// One step of a pool's history.
#[derive(Debug, Clone)]
enum Step {
    /// Create device `id` with mappings at `vblocks`.
    Create(u64, Vec<u64>),
    /// Snapshot `origin` as `id`.
    Snap(u64, u64),
    /// Map (or break sharing of) these virtual blocks of `id`.
    Write(u64, Vec<u64>),
    /// Unmap `[begin, end)` of `id`.
    Remove(u64, u64, u64),
}

fn step() -> impl Strategy<Value = Step> {
    let id = 1u64..6;
    let vblocks = prop::collection::vec(0u64..600, 1..80);
    prop_oneof![
        (id.clone(), vblocks.clone()).prop_map(|(i, v)| Step::Create(i, v)),
        (id.clone(), id.clone()).prop_map(|(i, o)| Step::Snap(i, o)),
        (id.clone(), vblocks).prop_map(|(i, v)| Step::Write(i, v)),
        (id, 0u64..600, 1u64..200).prop_map(|(i, b, n)| Step::Remove(i, b, b + n)),
    ]
}

/// Applies what of `steps` the pool accepts (a step on a missing device, or a snapshot onto
/// an existing id, is skipped), and commits.
fn build(steps: &[Step]) -> Pool {
    let (pool, _dev) = common::fresh_pool(1024, 100_000);
    let mut ids = BTreeSet::new();
    for s in steps {
        match s {
            Step::Create(i, v) if !ids.contains(i) => {
                pool.create_thin(ThinId(*i)).unwrap();
                ids.insert(*i);
                common::provision(&pool, ThinId(*i), v.iter().copied());
            }
            Step::Snap(i, o) if !ids.contains(i) && ids.contains(o) => {
                pool.create_snap(ThinId(*i), ThinId(*o)).unwrap();
                ids.insert(*i);
            }
            Step::Write(i, v) if ids.contains(i) => {
                common::provision(&pool, ThinId(*i), v.iter().copied());
            }
            Step::Remove(i, b, e) if ids.contains(i) => {
                let h = pool.open_thin_device(ThinId(*i)).unwrap();
                pool.remove_range(&h, engine::thin::VBlock(*b), engine::thin::VBlock(*e)).unwrap();
                pool.close_thin_device(h);
            }
            _ => {}
        }
    }
    pool.commit().unwrap();
    pool
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_shared_dump_restores_to_the_same_pool(steps in prop::collection::vec(step(), 1..12)) {
        let pool = build(&steps);
        for opts in [DumpOptions::default(), DumpOptions { dev_ids: Some([1, 3].into()), ..DumpOptions::default() }] {
            let plain = xml(&pool, false, &opts);
            let shared = xml(&pool, true, &opts);
            prop_assert_eq!(restored_dump(&shared, &opts), plain);
        }
    }
}

#[test]
fn a_snapshot_and_its_origin_share_one_def() {
    // Every other block mapped: 300 single-mapping lines, which a def writes once.
    let pool = build(&[
        Step::Create(1, (0..300).map(|v| v * 2).collect()),
        Step::Snap(2, 1),
        Step::Write(2, vec![300]),
    ]);
    let shared = xml(&pool, true, &DumpOptions::default());
    assert_eq!(shared.matches("<def name=").count(), 2, "{shared}");
    assert_eq!(shared.matches("<ref name=").count(), 4, "{shared}");
    let plain = xml(&pool, false, &DumpOptions::default());
    assert_eq!(restored_dump(&shared, &DumpOptions::default()), plain);
}
