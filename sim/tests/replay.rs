//! A run from its seed and a run from its recorded trace are the same run: the same I/O
//! (trace hash), the same statistics and the same verdict, over every class of run, with
//! faults, crashes and power cuts; and the trace survives its text form.

use sim::runner::{self, RunConfig, Trace};

fn round_trip(seed: u64, steps: u64) {
    let cfg = RunConfig { steps, ..RunConfig::new(seed) };
    let first = runner::run(&cfg);
    let trace = first.trace.clone().expect("every run records its trace");
    let text = trace.to_text();
    let parsed = Trace::parse(&text).expect("a recorded trace parses");
    assert_eq!(parsed, trace, "seed {seed}: the trace changed through its text form");
    let again = runner::replay(&parsed);
    assert!(again.invalid.is_none(), "seed {seed}: {:?}", again.invalid);
    assert_eq!(
        again.trace_hash, first.trace_hash,
        "seed {seed}: the replay did other I/O (class {:?})",
        first.options.class
    );
    assert_eq!(again.stats, first.stats, "seed {seed}");
    assert_eq!(
        again.failure.as_ref().map(|f| f.signature()),
        first.failure.as_ref().map(|f| f.signature()),
        "seed {seed}"
    );
    // Replaying the replay's own trace changes nothing either.
    let third = runner::replay(again.trace.as_ref().expect("replays record too"));
    assert_eq!(third.trace_hash, first.trace_hash, "seed {seed}: second replay");
}

#[test]
fn replay_of_a_recorded_trace_does_the_same_io() {
    for seed in 0..40 {
        round_trip(seed, 120);
    }
}

#[test]
fn replay_covers_faults_crashes_and_every_class() {
    let mut faults = 0;
    let mut crashes = 0;
    let mut classes = std::collections::BTreeSet::new();
    for seed in 100..140 {
        let out = runner::run(&RunConfig { steps: 200, ..RunConfig::new(seed) });
        let t = out.trace.as_ref().expect("recorded");
        faults += t.fault_count();
        crashes += out.stats.crashes;
        classes.insert(out.options.class);
        round_trip(seed, 200);
    }
    // The comparison above must have met what it is about.
    assert!(faults > 100, "only {faults} faults recorded");
    assert!(crashes > 40, "only {crashes} crashes");
    assert!(classes.len() >= 3, "classes met: {classes:?}");
}
