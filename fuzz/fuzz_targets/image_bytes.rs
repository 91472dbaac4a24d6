//! cargo-fuzz entry for `image_bytes`; the body lives in `sim::fuzzing::image_bytes` so that `cargo test`
//! replays the same corpus (`corpus/image_bytes/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzzing::run("image_bytes", data, false) {
        panic!("image_bytes: {e}");
    }
});
