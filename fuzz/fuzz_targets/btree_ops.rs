//! cargo-fuzz entry for `btree_ops`; the body lives in `sim::fuzzing::btree_ops` so that `cargo test`
//! replays the same corpus (`corpus/btree_ops/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzzing::run("btree_ops", data, false) {
        panic!("btree_ops: {e}");
    }
});
