//! The swarm's stopping rules, end to end through the binary: a seed that runs past
//! `--seed-timeout` ends the campaign with its replay line; `--fail-fast` stops at the first
//! failure (with a canary, which needs `--features canary`); `--class` keeps one class of seeds.

use std::process::Command;

fn swarm(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_thinsim"))
        .arg("swarm")
        .args(args)
        .output()
        .expect("the thinsim binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn a_seed_past_its_timeout_is_a_hang_with_a_replay_line() {
    let (code, text) = swarm(&["--seeds", "0..40", "--jobs", "2", "--seed-timeout", "0s"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("HUNG: still running after"), "{text}");
    assert!(text.contains("replay: cargo run --release -p thinsim -- run --seed"), "{text}");
}

#[test]
fn a_passing_range_passes_with_the_default_timeout() {
    let (code, text) = swarm(&["--seeds", "0..20", "--jobs", "2", "--fail-fast"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PASSED"), "{text}");
}

#[cfg(feature = "canary")]
#[test]
fn fail_fast_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, text) = swarm(&[
        "--seeds",
        "0..2000",
        "--jobs",
        "1",
        "--canary",
        "skip_data_dec_on_remove",
        "--fail-fast",
        "--traces",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches(" FAILED: ").count(), 1, "one failure, then stop: {text}");
    let ran: u64 = text
        .lines()
        .find(|l| l.contains(" of 2000 seeds"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary line starts with the seeds run: {text}"));
    assert!(ran < 2000, "stopped early: {ran} seeds ran");
}

/// Every distinct failure gets a trace (named in the failure text) and, with --shrink, a
/// shrunk one that still reproduces it.
#[cfg(feature = "canary")]
#[test]
fn failures_are_written_as_traces_and_shrunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = dir.path().join("t");
    let (code, text) = swarm(&[
        "--seeds",
        "0..4",
        "--canary",
        "abort_keeps_records",
        "--traces",
        traces.to_str().expect("utf-8 path"),
        "--shrink",
        "--shrink-budget",
        "20s",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("replay the trace: thinsim replay"), "{text}");
    let files: Vec<_> =
        std::fs::read_dir(&traces).expect("traces written").flatten().map(|e| e.path()).collect();
    let shrunk: Vec<_> =
        files.iter().filter(|p| p.to_string_lossy().ends_with(".shrunk.trace")).collect();
    assert!(!shrunk.is_empty() && files.len() == 2 * shrunk.len(), "{files:?}");
    for s in shrunk {
        let t = sim::runner::Trace::read(s).expect("parses");
        let out = sim::runner::replay(&t);
        let want = t.expect.as_ref().map(|e| e.signature.clone());
        assert_eq!(out.failure.map(|f| f.signature()), want, "{}", s.display());
        assert!(t.steps.len() <= 25, "{}: {} ops", s.display(), t.steps.len());
    }
}

/// `--class` keeps the seeds that draw that class (16, 20 and 26 of 0..30 draw big pools),
/// and an unknown class is a usage error that lists the classes.
#[test]
fn class_keeps_only_the_seeds_of_that_class() {
    let (code, text) = swarm(&["--seeds", "0..30", "--class", "big-pool"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 of 3 seeds"), "{text}");
    assert!(text.contains("class big_pool           3 runs"), "{text}");
    for other in ["class small", "class deep_tree", "class prepopulated"] {
        assert!(!text.contains(other), "{other} in {text}");
    }
    let (code, text) = swarm(&["--seeds", "0..30", "--class", "nope"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("a class is one of small, deep_tree, big_pool, prepopulated"), "{text}");
}
