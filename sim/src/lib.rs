//! The `sim` library: a deterministic simulation and model-checking harness for the dm-thin
//! metadata engine (`engine`), judged step by step against the reference model (`model`).
//!
//! What is here, one way down:
//! - `fnv` and `entropy`: the trace hash, and the one source of choices (a seeded ChaCha8 RNG,
//!   or a fuzzer's bytes); no clock, no hash order.
//! - `disk`: the simulated disk — pending writes, flush epochs, power cuts, torn writes and the
//!   class B/C faults of DESIGN §5, a fault plan that replays exactly, and coverage counts.
//!   It knows nothing of the runner.
//! - `runner`: ops as values (draw, apply), traces and replay, the oracles (typed verdicts:
//!   state diff, typed error, check finding, check panic), the verification schedule, the
//!   recovery judgement after every crash, and the memo of verified images (`runner::memo`)
//!   that lets a crash image cost what its crash changed.
//! - `shrink` and `explore`: reduce a failing trace; enumerate the crash states of a short one.
//! - `report`: campaign summaries (JSON and HTML), structural and fault coverage, gaps.
//! - `fuzzing`: the bodies of the cargo-fuzz targets, so the fuzz crate, `cargo test`'s
//!   corpus replay and `thinsim fuzz-trace` run the same code.
//! - `kernel`: the real kernel as a second engine — workloads, the emulated pool target, the
//!   UML guest (which kernel, and whether this host can boot it: `kernel::host`), the
//!   differential, dm-log-writes' log and crash mode, and the kernel defects it knows
//!   (`kernel::defects`). It uses `runner`'s oracles; nothing below it uses `kernel`. Behind
//!   the cargo feature `kernel` (on by default, so for the binary and the tests; off in the
//!   fuzz crate).
//!
//! The front end — the `thinsim` command line, the offline tools' commands and the benchmarks
//! — is the binary (`src/bin/thinsim/`). Feature `cli` only adds clap's derives to the
//! library's option enums; the fuzz crate builds without it, so without clap or indicatif,
//! and without `kernel`, so without the kernel wing and its log reader.

pub mod disk;
pub mod entropy;
pub mod explore;
pub mod fnv;
pub mod fuzzing;
#[cfg(feature = "kernel")]
pub mod kernel;
pub mod report;
pub mod runner;
pub mod shrink;
