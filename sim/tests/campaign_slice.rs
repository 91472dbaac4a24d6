//! A short campaign slice over every class of run: every seed must pass, and the slice must
//! reach the engine's structure (splits, rebalances, several bitmaps, a crash with a reshape
//! pending). It is the test command `cargo mutants` runs against the engine
//! (`reports/bench/mutants.md`), so it stops at the first failure.

use sim::report::Summary;
use sim::runner::{self, RunClass, RunConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

const SEEDS: u64 = 600;

#[test]
fn campaign_slice_passes_and_reaches_the_structure() {
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= SEEDS || failed.load(Ordering::Relaxed) {
                    break;
                }
                let out = runner::run(&RunConfig::new(seed));
                if let Some(f) = &out.failure {
                    failed.store(true, Ordering::Relaxed);
                    eprintln!("{f}");
                }
                outcomes.lock().unwrap().push(out);
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.seed);
    let first = outcomes.iter().find_map(|o| o.failure.as_ref());
    assert!(first.is_none(), "{}", first.map(|f| f.to_string()).unwrap_or_default());
    let mut summary = Summary::new("slice", None);
    for o in &outcomes {
        summary.add(o);
    }
    summary.finalize(Some(1.0));
    assert!(summary.passed(), "{:?} {:?}", summary.coverage_gaps, summary.structure_gaps);
    for class in RunClass::ALL {
        assert!(summary.classes.get(&class).is_some_and(|c| c.runs > 0), "no {class:?} run");
    }
    let c = &summary.structure;
    for name in [
        "btree.mapping.leaf_split",
        "btree.mapping.root_split",
        "btree.mapping.merge",
        "btree.mapping.redistribute",
        "btree.mapping.shadow_shared_leaf",
        "btree.overflow.root_split",
        "space.data.alloc_crosses_bitmap",
        "space.data.overflow_in",
        "space.metadata.multi_bitmap_commit",
        "crossing.crash_with_reshape_pending",
    ] {
        assert!(c.get(name) > 0, "the slice never reached {name}");
    }
    assert!(c.get("height.mapping") >= 3);
}
