//! Each engine canary (a deliberately broken rule, `engine::canary`) must be caught by the
//! runner within a few seeds. Only seeds that pass with the correct engine count, so a catch
//! is the canary's doing. Run with `cargo test -p thinsim --features canary`.
#![cfg(feature = "canary")]

use sim::runner::{run, RunConfig, CANARIES};

/// Seeds that pass with the correct engine (see tests/runner.rs).
const PASSING: std::ops::Range<u64> = 5..25;

fn first_catch(canary: &str) -> Option<(u64, String)> {
    PASSING.into_iter().find_map(|seed| {
        let cfg = RunConfig { canary: Some(canary.to_owned()), ..RunConfig::new(seed) };
        run(&cfg).failure.map(|f| (seed, f.signature()))
    })
}

#[test]
fn every_canary_is_caught_within_the_passing_range() {
    let mut missed = Vec::new();
    for canary in CANARIES {
        match first_catch(canary) {
            Some((seed, sig)) => eprintln!("{canary}: caught at seed {seed} by {sig}"),
            None => missed.push(canary),
        }
    }
    assert!(missed.is_empty(), "canaries never caught: {missed:?}");
}
