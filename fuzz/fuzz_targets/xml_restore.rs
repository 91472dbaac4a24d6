//! cargo-fuzz entry for `xml_restore`; the body lives in `sim::fuzzing::xml_restore` so that `cargo test`
//! replays the same corpus (`corpus/xml_restore/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzzing::run("xml_restore", data, false) {
        panic!("xml_restore: {e}");
    }
});
