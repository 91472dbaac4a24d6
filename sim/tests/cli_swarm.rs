//! The swarm's stopping rules, end to end through the binary: a seed that runs past
//! `--seed-timeout` ends the campaign with its replay line; `--fail-fast` stops at the first
//! failure (with a canary, which needs `--features canary`).

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
    let (code, text) = swarm(&[
        "--seeds",
        "0..2000",
        "--jobs",
        "1",
        "--canary",
        "skip_data_dec_on_remove",
        "--fail-fast",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches(" FAILED: ").count(), 1, "one failure, then stop: {text}");
    let ran: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary line starts with the seeds run: {text}"));
    assert!(ran < 2000, "stopped early: {ran} seeds ran");
}
