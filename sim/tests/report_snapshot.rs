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

/// `thinsim report --compare`: two campaigns of the same seeds differ only in wall-clock
/// figures, which the comparison leaves out; one more seed shows, field by field.
#[test]
fn reports_of_the_same_seeds_compare_equal_whatever_the_clock() {
    let outcomes: Vec<_> =
        (0..4).map(|s| run(&RunConfig { steps: 60, ..RunConfig::new(s) })).collect();
    let campaign = |n: usize, seconds: f64, name: &str| {
        let mut s = Summary::new(name, None);
        for o in &outcomes[..n] {
            s.add_timed(o, seconds);
        }
        s.finalize(Some(seconds * n as f64));
        s
    };
    let (a, b) = (campaign(3, 0.5, "checked-in"), campaign(3, 7.0, "fresh"));
    assert_ne!(a.wall_seconds, b.wall_seconds);
    assert_eq!(a.differences(&b), Vec::<String>::new());
    let c = campaign(4, 0.5, "checked-in");
    let d = a.differences(&c);
    assert!(d.iter().any(|l| l.starts_with("seeds.runs: 3 vs 4")), "{d:?}");
    assert!(d.iter().any(|l| l.starts_with("stats.steps: ")), "{d:?}");
    assert!(d.iter().all(|l| !l.contains("seconds") && !l.starts_with("throughput")), "{d:?}");
}
