//! Replays every fuzz corpus file (`corpus/<target>/*`) through its target on stable Rust,
//! so CI needs no nightly, and proves each target's canary is caught by its corpus.
//!
//! The checked-in corpora are `libFuzzer -merge=1` minimisations (what `cargo fuzz cmin`
//! runs) of the fuzzers' own corpora, plus `regression-*` (bugs fuzzing found) and
//! `corpus/sim/canary-*`. `THINSIM_WRITE_CORPUS=1 cargo test -p thinsim --test fuzz_corpus --
//! --ignored` writes deterministic starting sets (seeded ChaCha8 inputs, kept until each
//! canary is hit) for a fresh campaign.

use rand::{Rng, SeedableRng};
use sim::fuzzing::{self, ORACLE_CANARY_TARGETS, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[allow(dead_code)] // the benchmark's generator is the binary's
#[path = "support/xmlgen.rs"]
mod xmlgen;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target)
}

fn files(target: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Err or panic both count as "the target failed".
fn fails(target: &str, data: &[u8], canary: bool) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| fuzzing::run(target, data, canary))) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("panic".into()),
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    for target in TARGETS {
        let files = files(target);
        assert!(files.len() >= 4, "corpus/{target} has only {} files", files.len());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if let Some(e) = fails(target, &data, false) {
                panic!("{}: {e}", f.display());
            }
        }
    }
}

#[test]
fn every_canary_is_caught_by_its_corpus() {
    // Canaries are expected to panic; keep their messages out of the test output.
    std::panic::set_hook(Box::new(|_| {}));
    for target in ORACLE_CANARY_TARGETS {
        let caught =
            files(target).iter().any(|f| fails(target, &std::fs::read(f).unwrap(), true).is_some());
        assert!(caught, "no corpus file of {target} catches its canary");
    }
}

fn random_input(rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    let len = rng.random_range(64..2048);
    (0..len).map(|_| rng.random()).collect()
}

#[test]
#[ignore = "regenerates corpus/; run with THINSIM_WRITE_CORPUS=1"]
fn regenerate_corpus() {
    if std::env::var("THINSIM_WRITE_CORPUS").is_err() {
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    for target in ["btree_ops", "image_bytes", "space_map_ops"] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x7415);
        let (mut plain, mut canaries) = (0, 0);
        for i in 0..3_000 {
            let data = random_input(&mut rng);
            if let Some(e) = fails(target, &data, false) {
                let _ = std::panic::take_hook();
                panic!("{target}: seed input {i} fails the real target: {e}");
            }
            let keep = if fails(target, &data, true).is_some() && canaries < 2 {
                canaries += 1;
                true
            } else if plain < 9 {
                plain += 1;
                true
            } else {
                false
            };
            if keep {
                std::fs::write(dir.join(format!("seed-{i:05}")), &data).unwrap();
            }
            if plain == 9 && canaries == 2 {
                break;
            }
        }
        eprintln!("{target}: kept {plain} plain and {canaries} canary-catching inputs");
        if canaries < 2 {
            let _ = std::panic::take_hook();
            panic!("{target}: canary hit only {canaries} times");
        }
    }
    let dir = corpus_dir("xml_restore");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 0..6 {
        let xml = xmlgen::generate(seed, xmlgen::GenSize::SMALL);
        std::fs::write(dir.join(format!("xmlgen-{seed}.xml")), &xml).unwrap();
        let truncated = &xml[..xml.len() / 2];
        std::fs::write(dir.join(format!("truncated-{seed}.xml")), truncated).unwrap();
    }
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images");
    for name in ["spec-13-1", "mappings-2k"] {
        std::fs::copy(images.join(format!("{name}.xml")), dir.join(format!("{name}.xml"))).unwrap();
    }
    std::fs::write(dir.join("bad-attr.xml"), "<superblock uuid=\"\" time=\"x\" transaction=\"1\" data_block_size=\"128\" nr_data_blocks=\"10\">\n</superblock>\n").unwrap();
}

/// The `sim` target's canaries are the engine's: each must be caught by some file of
/// `corpus/sim/` (the inputs the fuzzer found hunting it, `THINSIM_CANARY=NAME`).
#[cfg(feature = "canary")]
#[test]
fn every_engine_canary_is_caught_by_the_sim_corpus() {
    let inputs: Vec<Vec<u8>> = files("sim").iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut missed = Vec::new();
    for canary in sim::runner::CANARIES {
        // The input kept for this canary first: the others cost a whole run each.
        let own = std::fs::read(corpus_dir("sim").join(format!("canary-{canary}"))).ok();
        let caught = own
            .iter()
            .chain(&inputs)
            .any(|d| sim::fuzzing::sim::run(d, Some(canary.to_string())).is_err());
        if !caught {
            missed.push(canary);
        }
    }
    assert!(missed.is_empty(), "no corpus/sim file catches {missed:?}");
}

/// Regenerates `corpus/sim/canary-*`: for each engine canary, the first seeded input (in a
/// fixed ChaCha8 order) that the real engine passes and the canary fails, and prints how many inputs each one took.
/// Deterministic, so the files it writes are the files it wrote last time on the same build.
#[cfg(feature = "canary")]
#[test]
#[ignore = "regenerates corpus/sim/canary-*; run with THINSIM_WRITE_CORPUS=1"]
fn regenerate_sim_canary_corpus() {
    if std::env::var("THINSIM_WRITE_CORPUS").is_err() {
        return;
    }
    let dir = corpus_dir("sim");
    for canary in sim::runner::CANARIES {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x51a);
        let found = (0..20_000u32).find_map(|i| {
            let data = random_input(&mut rng);
            // Only an input the real engine passes counts: the catch is the canary's doing.
            let caught = sim::fuzzing::sim::run(&data, Some(canary.to_string())).is_err()
                && sim::fuzzing::sim::run(&data, None).is_ok();
            caught.then_some((i, data))
        });
        let (i, data) = found.unwrap_or_else(|| panic!("{canary}: not caught in 20000 inputs"));
        eprintln!("{canary}: caught by input {i}");
        std::fs::write(dir.join(format!("canary-{canary}")), &data).unwrap();
    }
}
