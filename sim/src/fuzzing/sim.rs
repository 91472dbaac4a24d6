//! Target `sim`: the whole simulator. The fuzzer's bytes are the run's choices (options,
//! ops with their arguments, faults, crash cuts; see [`crate::entropy`]), drawn by the
//! swarm's own generator and judged by the swarm's own runner and oracles, so the target
//! reaches what the swarm reaches and a finding is a swarm failure like any other.
//!
//! Invariants:
//! - A run is bounded: [`STEPS`] drawn ops (a class's share of them), then the final power
//!   cut; crash images per power cut are capped by [`MAX_EXPLORE_IMAGES`].
//! - The engine canary comes from `THINSIM_CANARY` (a `--features canary` build), so one
//!   fuzz binary hunts any of them; without the variable the real engine runs.
//! - [`trace_of`] turns any input into the trace of its run: a crash the fuzzer saved replays
//!   with `thinsim replay` and shrinks with `thinsim shrink` (`thinsim fuzz-trace`).

use crate::entropy::Entropy;
use crate::runner::{self, Options, RunClass, RunConfig, RunOutcome, Trace};
use rand::Rng;

/// Ops drawn per input (before a class's `steps_percent`): long enough to fill a leaf with
/// a provision_many, short enough that libFuzzer runs thousands of inputs a second.
pub const STEPS: u64 = 40;

/// A deep-tree input's ops, in percent of [`STEPS`]: 1600, the swarm's own deep-tree run
/// (400 % of 400). At the swarm's 400 % of 40 (160 ops) no mapping tree passed one leaf in
/// 91 of 91 deep-tree inputs, so the structural canaries (trees of two levels) were out of
/// reach; the swarm's length grows two-level trees in most deep-tree runs.
pub const DEEP_TREE_STEPS_PERCENT: u64 = 4000;

/// Crash images reopened per power cut: the swarm's draw of up to 64 costs more than the
/// rest of a short run, and the fuzzer finds more by running more inputs.
pub const MAX_EXPLORE_IMAGES: u64 = 4;

/// The configuration every input runs under (`canary`: an engine canary's name).
pub fn config(data: &[u8], canary: Option<String>) -> RunConfig {
    RunConfig { steps: STEPS, canary, ..RunConfig::new(crate::fnv::Fnv::of(data)) }
}

/// The engine canary the environment names, if any.
pub fn canary_from_env() -> Option<String> {
    std::env::var("THINSIM_CANARY").ok().filter(|s| !s.is_empty())
}

/// Runs `data` as a simulation: the outcome, with the trace it recorded.
pub fn outcome(data: &[u8], canary: Option<String>) -> RunOutcome {
    runner::run_bytes(&config(data, canary), data, draw_options)
}

/// The options of a fuzz input: small pools two times in three, deep trees otherwise.
/// Big and pre-populated pools cost 15–30 ms a run (every full verification compares
/// thousands of mappings), a hundred small runs: the swarm covers them, the fuzzer runs
/// more inputs instead.
pub fn draw_options(rng: &mut Entropy) -> Options {
    let class = if rng.random_range(0..3u32) < 2 { RunClass::Small } else { RunClass::DeepTree };
    let mut o = Options::draw_class(rng, class);
    if class == RunClass::DeepTree {
        o.steps_percent = DEEP_TREE_STEPS_PERCENT;
    }
    o.explore_images = o.explore_images.min(MAX_EXPLORE_IMAGES);
    o
}

/// The target: `Err` with the failure text when an oracle fails (an engine panic included).
pub fn run(data: &[u8], canary: Option<String>) -> Result<(), String> {
    match outcome(data, canary).failure {
        None => Ok(()),
        Some(f) => Err(format!(
            "{f}\nconvert the input to a trace: thinsim fuzz-trace <input> -o failure.trace"
        )),
    }
}

/// The trace of `data`'s run, with the failure it expects (if any).
pub fn trace_of(data: &[u8], canary: Option<String>) -> Trace {
    outcome(data, canary).trace.expect("a drawn run records its trace")
}
