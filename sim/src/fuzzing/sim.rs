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
use crate::runner::{self, Options, Prepopulation, RunClass, RunConfig, RunOutcome, Trace};
use rand::Rng;

/// Ops drawn per input (before a class's `steps_percent`): long enough to fill a leaf with
/// a provision_many, short enough that libFuzzer runs thousands of inputs a second.
pub const STEPS: u64 = 40;

/// A deep-tree input's ops, in percent of [`STEPS`]: 200. A deep-tree input starts from
/// [`Prepopulation::FUZZ_DEEP_START`], trees of two levels restored once per thread and
/// shared, so its ops split, merge and redistribute from the first one. (Grown from an
/// empty pool, a tree needed the swarm's 1,600 ops to pass one leaf: at 160, none of 91
/// inputs did, and those 1,600 ops were most of the target's time.)
pub const DEEP_TREE_STEPS_PERCENT: u64 = 500;

/// The sizes of a deep-tree input's pool: fixed, so the restored start is shared (the
/// per-thread cache keys on them). Metadata room for the restored trees, growth and
/// exhaustion in a long input; data blocks for the restored mappings and 2,000 more.
const DEEP_METADATA_DISK_BLOCKS: u64 = 1_024;
const DEEP_METADATA_BLOCKS: u64 = 640;
const DEEP_DATA_BLOCKS: u64 = 3_200;
/// Fresh keys are drawn from vblocks below this: the restored ones start at 10,000.
const DEEP_VBLOCKS: u64 = 20_000;

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

/// The options of a fuzz input: small pools two times in three, deep trees (from the
/// restored deep start) otherwise.
/// Big and pre-populated pools cost 15–30 ms a run (every full verification compares
/// thousands of mappings), a hundred small runs: the swarm covers them, the fuzzer runs
/// more inputs instead.
pub fn draw_options(rng: &mut Entropy) -> Options {
    let class = if rng.random_range(0..3u32) < 2 { RunClass::Small } else { RunClass::DeepTree };
    let mut o = Options::draw_class(rng, class);
    if class == RunClass::DeepTree {
        o.steps_percent = DEEP_TREE_STEPS_PERCENT;
        o.prepopulate = Some(Prepopulation::FUZZ_DEEP_START);
        o.dev_ids = o.dev_ids.max(Prepopulation::FUZZ_DEEP_START.devices + 1);
        o.vblocks = DEEP_VBLOCKS;
        o.metadata_disk_blocks = DEEP_METADATA_DISK_BLOCKS;
        o.metadata_blocks = DEEP_METADATA_BLOCKS;
        o.data_blocks = DEEP_DATA_BLOCKS;
        o.threshold_blocks = o.threshold_blocks.min(DEEP_METADATA_BLOCKS / 2);
        // The disk's drawn limits were for the drawn sizes: a backed volume stays below the
        // space map, so that a full metadata volume is still met.
        if o.disk.backed_blocks.is_some() {
            o.disk.backed_blocks = Some(DEEP_METADATA_BLOCKS * 3 / 4);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A deep-tree input starts from the shared, restored trees of two levels, with room
    /// below them for a new minimum, and runs its ops on them without a finding.
    #[test]
    fn deep_inputs_start_from_restored_two_level_trees() {
        // The input's first byte splits the rest into the generator's and the disk's streams.
        let deep = (0u8..=255).map(|b| [128, b, b, b]).find_map(|input| {
            let out = outcome(&input, None);
            let trace = out.trace.as_ref().expect("a drawn run records its trace");
            (trace.options.class == RunClass::DeepTree)
                .then(|| (out.clone(), trace.options.clone()))
        });
        let (out, o) = deep.expect("one input in three draws a deep tree");
        let start = Prepopulation::FUZZ_DEEP_START;
        assert_eq!(o.prepopulate.as_ref(), Some(&start));
        assert!(start.cacheable(), "restored once per thread, then shared");
        assert_eq!(o.validate(), Ok(()));
        assert!(o.dev_ids > start.devices, "room for a device grown from empty");
        assert!(start.data_blocks_used() < o.data_blocks);
        let (_, model) = runner::restored_prepopulation(
            &start,
            o.data_blocks,
            o.metadata_blocks,
            o.metadata_disk_blocks,
        )
        .expect("the deep start restores");
        let dev0 = &model.devices()[&0].mappings;
        // More than two full leaves (252 mappings each): a root node over leaves.
        assert_eq!(dev0.len() as u64, start.mappings);
        assert!(start.mappings > 2 * 252);
        let first = dev0.iter().next().map(|(v, _)| v);
        assert_eq!(first, Some(start.first_vblock), "keys below the restored ones are free");
        assert!(start.first_vblock < o.vblocks);
        assert!(out.failure.is_none(), "{:?}", out.failure);
        assert!(out.stats.steps >= STEPS * DEEP_TREE_STEPS_PERCENT / 100, "{}", out.stats.steps);
    }
}
