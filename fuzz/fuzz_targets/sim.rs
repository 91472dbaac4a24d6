//! cargo-fuzz entry for `sim`, the whole simulator: the bytes are the run's choices (see
//! `sim::fuzzing::sim`). `THINSIM_CANARY=NAME` with `--features canary` hunts an engine
//! canary. Turn a crash into a trace with `thinsim fuzz-trace <crash-file>`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static CANARY: Option<String> = sim::fuzzing::sim::canary_from_env();
    }
    if let Err(e) = CANARY.with(|c| sim::fuzzing::sim::run(data, c.clone())) {
        panic!("sim: {e}");
    }
});
