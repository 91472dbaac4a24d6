//! cargo-fuzz entry for `space_map_ops`; the body lives in `sim::fuzzing::space_map_ops` so that `cargo test`
//! replays the same corpus (`corpus/space_map_ops/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzzing::run("space_map_ops", data, false) {
        panic!("space_map_ops: {e}");
    }
});
