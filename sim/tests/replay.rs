//! A run from its seed and a run from its recorded trace are the same run: the same I/O
//! (trace hash), the same statistics and the same verdict, over every class of run, with
//! faults, crashes and power cuts; and the trace survives its text form.

use sim::runner::{self, Op, RunConfig, Step, Trace, TraceError};

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

fn recorded(seed: u64, steps: u64) -> Trace {
    runner::run(&RunConfig { steps, ..RunConfig::new(seed) }).trace.expect("recorded")
}

#[test]
fn another_format_version_is_refused_naming_both_versions() {
    let text = recorded(3, 20).to_text().replacen("\"thinsim_trace\":1", "\"thinsim_trace\":7", 1);
    let e = Trace::parse(&text).expect_err("version 7 is not this build's");
    assert_eq!(e, TraceError::Version { found: 7, supported: 1 });
    let msg = e.to_string();
    assert!(msg.contains("version 7") && msg.contains("version 1"), "{msg}");
    // Not a header at all, a broken op line, an empty file: each named.
    let e = Trace::parse("{\"seed\":1}\n").expect_err("no version");
    assert!(matches!(e, TraceError::Parse { line: 1, .. }), "{e}");
    let mut broken = recorded(3, 20).to_text();
    broken.push_str("# a comment line is fine\n{\"op\":\"provision\",\"dev\":0}\n");
    let lines = broken.lines().count();
    match Trace::parse(&broken).expect_err("vblock missing") {
        TraceError::Parse { line, error } => {
            assert_eq!(line, lines, "the bad line is named");
            assert!(error.contains("vblock"), "{error}");
        }
        e => panic!("{e}"),
    }
    assert_eq!(Trace::parse("# nothing\n\n"), Err(TraceError::Empty));
}

#[test]
fn an_op_that_cannot_run_is_an_invalid_trace_naming_its_step() {
    let mut t = recorded(3, 20);
    t.steps = vec![
        Step { op: Op::CreateThin { dev: 0 }, faults: vec![] },
        Step { op: Op::RemoveBlock { dev: 0, vblock: 1 }, faults: vec![] },
    ];
    let out = runner::replay(&t);
    assert!(out.failure.is_none());
    match out.invalid {
        Some(TraceError::InvalidStep { step, reason, .. }) => {
            assert_eq!(step, 2);
            assert!(reason.contains("device 0 has no open handle"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A dec of a block the caller holds no reference to.
    t.steps = vec![Step { op: Op::DecRange { begin: 5, end: 6 }, faults: vec![] }];
    let out = runner::replay(&t);
    assert!(
        matches!(out.invalid, Some(TraceError::InvalidStep { step: 1, .. })),
        "{:?}",
        out.invalid
    );
}

#[test]
fn deleting_any_line_of_a_trace_replays_or_is_refused_never_panics() {
    let t = recorded(11, 60);
    for i in 0..t.steps.len() {
        let mut cut = t.clone();
        cut.steps.remove(i);
        let out = runner::replay(&cut);
        if let Some(f) = &out.failure {
            assert_ne!(f.oracle, sim::runner::Oracle::Panic, "line {i}: {f}");
        }
    }
}

#[test]
fn replay_and_run_write_and_read_trace_files_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seed-4.trace");
    let bin = env!("CARGO_BIN_EXE_thinsim");
    let run = std::process::Command::new(bin)
        .args(["run", "--seed", "4", "--steps", "50", "--twice", "--trace-out"])
        .arg(&file)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("run, run again, replay of the trace"), "{text}");
    let hash = text.lines().find(|l| l.starts_with("trace hash")).expect("hash line").to_owned();
    let replay = std::process::Command::new(bin).arg("replay").arg(&file).output().expect("runs");
    let rtext = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{rtext}");
    assert!(rtext.contains(&hash), "the replay prints the run's {hash}:\n{rtext}");
    // An unreadable trace is a usage error (2), named.
    let missing = std::process::Command::new(bin)
        .args(["replay", "/nonexistent.trace"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read trace /nonexistent.trace")
    );
    // A passing trace has nothing to shrink.
    let shrink = std::process::Command::new(bin).arg("shrink").arg(&file).output().expect("runs");
    assert_eq!(shrink.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&shrink.stderr).contains("nothing to shrink"));
}

/// Options no run can honour are refused when the trace is read, naming the field — a
/// disk over the simulator's limit is not clamped to it, a rate over every event is not
/// taken as "always".
#[test]
fn impossible_options_in_a_trace_are_refused_naming_the_field() {
    let t = recorded(3, 20);
    let edit = |f: &dyn Fn(&mut sim::runner::Options)| {
        let mut t = t.clone();
        f(&mut t.options);
        Trace::parse(&t.to_text())
    };
    assert!(edit(&|_| {}).is_ok());
    type Edit<'a> = &'a dyn Fn(&mut sim::runner::Options);
    let cases: [(&str, Edit); 5] = [
        ("metadata_disk_blocks", &|o| o.metadata_disk_blocks = u64::MAX),
        ("metadata_blocks", &|o| o.metadata_blocks = o.metadata_disk_blocks + 1),
        ("disk", &|o| o.disk.rates.lost_write_ppm = 2_000_000),
        ("crash_in_commit_ppm", &|o| o.crash_in_commit_ppm = 1_000_001),
        ("vblocks", &|o| o.vblocks = 0),
    ];
    for (field, f) in cases {
        match edit(f) {
            Err(TraceError::Options { line, error }) => {
                assert_eq!((line, error.field), (1, field));
                assert!(error.to_string().contains(field), "{error}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}
