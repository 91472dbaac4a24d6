//! Mean time per input of each fuzz target over its checked-in corpus, in an ordinary build
//! (no sanitizer, no coverage tracing): the engine's own cost per input, which bounds what
//! libFuzzer can reach. `cargo run --release -p thinsim --example fuzz_native [ROUNDS [TARGET]]`;
//! with `EMPTY=1`, the cost of an empty input instead (each target's fixed set-up).

use sim::fuzzing::{self, TARGETS};
use std::path::Path;
use std::time::Instant;

fn main() {
    let rounds: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let only = std::env::args().nth(2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    if std::env::var_os("EMPTY").is_some() {
        for target in TARGETS {
            let t = Instant::now();
            for _ in 0..200 {
                let _ = fuzzing::run(target, &[], false);
            }
            println!("{target}: empty input {:.0} µs", t.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        return;
    }
    println!("| target | inputs | native µs / input |");
    println!("|---|---:|---:|");
    for target in TARGETS.into_iter().filter(|t| only.as_deref().is_none_or(|o| o == *t)) {
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(root.join(target))
            .unwrap_or_else(|e| panic!("corpus/{target}: {e}"))
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter(|e| !e.file_name().to_string_lossy().starts_with("canary-"))
            .map(|e| std::fs::read(e.path()).expect("a readable corpus file"))
            .collect();
        inputs.sort();
        let began = Instant::now();
        for _ in 0..rounds {
            for data in &inputs {
                // Failures are the tests' business (fuzz_corpus); here only the time counts.
                let _ = fuzzing::run(target, data, false);
            }
        }
        let runs = f64::from(rounds) * inputs.len() as f64;
        let micros = began.elapsed().as_secs_f64() * 1e6 / runs.max(1.0);
        println!("| `{target}` | {} | {micros:.0} |", inputs.len());
    }
}
