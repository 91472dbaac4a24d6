//! Snapshot (insta) of a campaign report's machine-readable summary for three fixed seeds:
//! the schema and every deterministic number (ops, commits, crashes, outcomes, faults,
//! coverage). Wall-clock fields are removed first. A change here is a change to the stable
//! `summary.json` schema or to what a seed does, and must be reviewed.

use sim::report::Summary;
use sim::runner::{run, RunConfig};

#[test]
fn three_seed_summary() {
    let mut summary = Summary::new("snapshot", None);
    summary.seeds.ranges.push([0, 3]);
    for seed in 0..3 {
        summary.add(&run(&RunConfig { steps: 120, ..RunConfig::new(seed) }));
    }
    summary.finalize(None);
    let mut v = serde_json::to_value(&summary).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("wall_seconds");
    obj.remove("throughput");
    insta::assert_json_snapshot!(v);
}
