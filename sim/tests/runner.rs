//! The runner's own guarantees: determinism, a fixed seed range that passes, crash
//! consistency on a few seeds, and reports that merge into what one campaign gives.

use sim::report::Summary;
use sim::runner::{run, CrashAt, OpKind, RunConfig};

/// A fixed seed range (every seed of 0..70000 passes today; these are the ones the tests
/// below were tuned on).
const PASSING: std::ops::Range<u64> = 5..25;

#[test]
fn same_seed_same_trace_hash() {
    for seed in [1, 2, 3] {
        let cfg = RunConfig { steps: 200, ..RunConfig::new(seed) };
        let (a, b) = (run(&cfg), run(&cfg));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.stats, b.stats, "seed {seed}");
        assert_eq!(a.options, b.options, "seed {seed}");
    }
    let other = run(&RunConfig { steps: 200, ..RunConfig::new(4) });
    assert_ne!(other.trace_hash, run(&RunConfig { steps: 200, ..RunConfig::new(1) }).trace_hash);
}

#[test]
fn fixed_seed_range_passes() {
    let mut total = Summary::new("test", None);
    for seed in PASSING {
        let out = run(&RunConfig::new(seed));
        if let Some(f) = &out.failure {
            panic!("{f}");
        }
        total.add(&out);
    }
    let s = &total.stats;
    // The range exercises what it claims to: commits, crashes, explored images, recoveries.
    assert!(s.commits > 50 && s.crashes > 20 && s.recoveries > 20, "{s:?}");
    assert!(s.crash_images_checked > 100, "{s:?}");
    assert!(s.outcomes.a_exact > 0, "{:?}", s.outcomes);
}

/// Class A only (the engine bugs reported with class B faults stay out of the way).
/// Power cut inside the first commit / metadata-snapshot reserve / set_needs_check, at
/// every seed: the reopen must give the old or the new committed state.
#[test]
fn crash_consistency_smoke() {
    let phases = [OpKind::Commit, OpKind::ReserveSnap, OpKind::SetNeedsCheck, OpKind::CloseReopen];
    let mut in_commit = 0;
    for seed in PASSING.take(8) {
        for phase in phases {
            let cfg = RunConfig {
                steps: 150,
                crash_at: Some(CrashAt::Phase(phase)),
                class_a_only: true,
                ..RunConfig::new(seed)
            };
            let out = run(&cfg);
            if let Some(f) = &out.failure {
                panic!("{f}");
            }
            in_commit += out.stats.crashes_in_commit;
        }
    }
    assert!(in_commit > 10, "only {in_commit} crashes landed inside a superblock write");
}

#[test]
fn crash_at_io_cuts_power_at_that_io() {
    // A power cut drawn before I/O 40 (an op, or a crash inside a commit) disarms it, so
    // not every seed gets there; most do.
    let mut cut = 0;
    for seed in 0..10 {
        let cfg = RunConfig { steps: 60, crash_at: Some(CrashAt::Io(40)), ..RunConfig::new(seed) };
        let out = run(&cfg);
        assert!(out.failure.is_none(), "{:?}", out.failure);
        let t = out.trace.expect("recorded");
        let at: Vec<u64> = t
            .steps
            .iter()
            .flat_map(|s| s.faults.iter())
            .filter(|f| f.fault == sim::disk::Planned::PowerLoss)
            .map(|f| f.io)
            .collect();
        if out.coverage.total(sim::disk::FaultKind::PowerLoss) >= 1 {
            assert!(!at.is_empty(), "seed {seed}: the trace records the power loss");
            cut += 1;
        }
    }
    assert!(cut >= 5, "only {cut} of 10 seeds reached I/O 40 powered");
}

#[test]
fn shard_reports_merge_into_the_whole() {
    let outs: Vec<_> =
        (5..11).map(|s| run(&RunConfig { steps: 80, ..RunConfig::new(s) })).collect();
    let mut whole = Summary::new("whole", None);
    let (mut a, mut b) = (Summary::new("a", None), Summary::new("b", None));
    for (i, o) in outs.iter().enumerate() {
        whole.add(o);
        if i % 2 == 0 {
            a.add(o)
        } else {
            b.add(o)
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    a.finalize(Some(1.0));
    b.finalize(Some(1.0));
    a.write(&dir.path().join("a")).expect("write a");
    b.write(&dir.path().join("b")).expect("write b");
    let mut merged = Summary::new("merged", None);
    merged.merge(&Summary::read(&dir.path().join("a")).expect("read a"));
    merged.merge(&Summary::read(&dir.path().join("b")).expect("read b"));
    merged.finalize(None);
    whole.finalize(Some(2.0));
    assert_eq!(merged.stats, whole.stats);
    assert_eq!(merged.coverage, whole.coverage);
    assert_eq!(merged.faults, whole.faults);
    let page = std::fs::read_to_string(dir.path().join("a/index.html")).expect("page");
    assert!(page.contains("<svg") && page.contains("Fault × phase"));
}

/// The fault × phase matrix is enforced cell by cell: every cell a campaign's rates and I/O
/// make reachable fires, and about as often as its rates say (a fault model that skipped a
/// block kind or a phase would show here long before a gap in a real campaign).
#[test]
fn coverage_cells_fire_at_their_expected_rates() {
    let mut total = Summary::new("cells", None);
    for seed in 0..600 {
        total.add(&run(&RunConfig::new(seed)));
    }
    total.finalize(None);
    assert!(total.coverage_gaps.is_empty(), "{:?}", total.coverage_gaps);
    let enforced: Vec<_> = total
        .expected_cells
        .iter()
        .filter(|(_, e)| **e >= sim::report::REACHABLE_EXPECTED)
        .collect();
    assert!(enforced.len() >= 15, "only {} cells reachable", enforced.len());
    let phases: std::collections::BTreeSet<_> =
        enforced.iter().map(|(c, _)| (c.in_commit, c.snap_held)).collect();
    assert!(phases.len() >= 3, "reachable cells cover too few phases: {phases:?}");
    // Each draw of a cell's chance is a Bernoulli trial given the run so far, so a cell's
    // count minus its expectation is a martingale whose variance is at most the expectation:
    // five of its standard deviations is the band (a cell at 30 that never fires is out of
    // it; a fluctuation of one cell among dozens is not).
    for (cell, expected) in enforced {
        let seen = total.coverage.count(cell) as f64;
        let band = 5.0 * expected.sqrt();
        assert!(
            (expected - band..=expected + band).contains(&seen),
            "{cell:?}: expected about {expected:.0} (within {band:.0}), fired {seen}"
        );
    }
}

// The harness bugs a 30,000-seed campaign found (abort guessing its candidate under class B
// damage, lost writes forgotten while the cache masked them, check's panic on a leaf of the
// wrong value size, check skipping an unreadable bitmap) are kept as shrunk traces in
// corpus/regressions/ (0009-0014), replayed by tests/regressions.rs: seeds stop meaning
// anything once the generator changes, traces do not.

/// `thinsim run` prints the options before running (`runner::options_of`): they must be the
/// options the run then draws, with and without `--class-a-only`.
#[test]
fn options_printed_first_are_the_options_the_run_draws() {
    for seed in [0, 1, 7, 59, 3698] {
        for class_a_only in [false, true] {
            let cfg = RunConfig { steps: 20, class_a_only, ..RunConfig::new(seed) };
            assert_eq!(sim::runner::options_of(&cfg), sim::runner::run(&cfg).options, "{seed}");
        }
    }
}
