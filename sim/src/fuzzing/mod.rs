//! Fuzz target bodies, shared by the cargo-fuzz crate (`fuzz/`, coverage-guided, nightly or
//! `RUSTC_BOOTSTRAP`) and by `cargo test` on stable, which replays every file under
//! `corpus/<target>/` through the same function.
//!
//! Every target takes raw bytes, decodes them with `arbitrary` into structured input, and
//! returns `Err(description)` when an oracle fails. A panic anywhere is also a failure.
//! Each target has a canary: the same harness with a known bug switched on, which the corpus
//! must catch (proving the corpus reaches the code the bug lives in).

pub mod btree_ops;
pub mod image_bytes;
pub mod sim;
pub mod space_map_ops;
pub mod xml_restore;

/// The fuzz targets, by corpus directory name.
pub const TARGETS: [&str; 5] = ["btree_ops", "image_bytes", "sim", "space_map_ops", "xml_restore"];

/// The targets whose canary is a bug in their own oracle (`run(name, data, true)`); the
/// `sim` target's canaries are the engine's (`--features canary`, `THINSIM_CANARY`).
pub const ORACLE_CANARY_TARGETS: [&str; 4] =
    ["btree_ops", "image_bytes", "space_map_ops", "xml_restore"];

/// Runs target `name` on `data`; `canary` switches on the target's deliberate bug (for
/// `sim`, the engine canary `THINSIM_CANARY` names is on whenever the build has canaries).
pub fn run(name: &str, data: &[u8], canary: bool) -> Result<(), String> {
    match name {
        "sim" => sim::run(data, sim::canary_from_env().filter(|_| canary)),
        "btree_ops" => btree_ops::run(data, canary),
        "image_bytes" => image_bytes::run(data, canary),
        "space_map_ops" => space_map_ops::run(data, canary),
        "xml_restore" => xml_restore::run(data, canary),
        other => Err(format!("unknown fuzz target {other}")),
    }
}

/// Decodes elements one after another until the input runs out (every byte counts, unlike
/// `Vec::arbitrary`, which stops at its first "no more" byte).
pub(crate) fn decode_all<'a, T: arbitrary::Arbitrary<'a>>(
    data: &'a [u8],
) -> Result<Vec<T>, String> {
    let mut u = arbitrary::Unstructured::new(data);
    let mut out = Vec::new();
    while !u.is_empty() {
        out.push(T::arbitrary(&mut u).map_err(|e| format!("decode: {e}"))?);
    }
    Ok(out)
}
