//! The `sim` library: a deterministic simulation and model-checking harness for the dm-thin
//! metadata engine (`engine`), judged step by step against the reference model (`model`).
//!
//! What is here, one way down:
//! - `fnv` and `entropy`: the trace hash, and the one source of choices (a seeded ChaCha8 RNG,
//!   or a fuzzer's bytes); no clock, no hash order.
//! - `disk`: the simulated disk — pending writes, flush epochs, power cuts, torn writes and the
//!   class B/C faults of DESIGN §5, a fault plan that replays exactly, and coverage counts.
//!   It knows nothing of the runner.
//! - `runner`: ops as values (draw, apply), the lockstep of engine and model
//!   (`runner::lockstep`), traces and replay, the oracles by name (`runner::oracles`;
//!   typed verdicts: state diff, typed error, check finding, check panic), the verification
//!   schedule, the recovery judgement after every crash, and the memo of verified images
//!   (`runner::memo`) that lets a crash image cost what its crash changed.
//! - `shrink` and `explore`: reduce a failing trace; enumerate the crash states of a short one.
//! - `report`: campaign summaries (JSON and HTML), structural and fault coverage, every
//!   oracle with how often it was due, ran and fired, and the gaps.
//! - `fuzzing`: the bodies of the cargo-fuzz targets, so the fuzz crate, `cargo test`'s
//!   corpus replay and `thinsim fuzz-trace` run the same code.
//! - `kernel`: the real kernel as a second engine — workloads, the emulated pool target, the
//!   UML guest (which kernel, and whether this host can boot it: `kernel::host`), the
//!   differential, dm-log-writes' log and crash mode, and the kernel defects it knows
//!   (`kernel::defects`). It uses `runner`'s oracles; nothing below it uses `kernel`. Behind
//!   the cargo feature `kernel` (on by default, so for the binary and the tests; off in the
//!   fuzz crate).
//!
//! The floors are checked, with no import circle anywhere in the workspace, by
//! `sim/tests/layering.rs`.
//!
//! # Adding to the house
//! - **A pool call**: the engine's method on `Pool` and the model's on `Model`; one function
//!   in `runner::lockstep` that makes the call on both (engine first) and returns the two
//!   answers in the model's shape, with the header's latitude if it grants one; an `Op`
//!   variant and its `OpKind` in `runner::op` (`OpKind::ALL`, its label); how it is drawn
//!   from the model's state in `runner::draw`; and one arm of `lockstep::plain` (or of
//!   `Runner::apply` if the runner has effects of its own around the call). The kernel
//!   wing's emulation and the state-machine test use the same lockstep function and rule.
//! - **A fault kind**: in `disk/` only. A `FaultKind` variant (with its place in
//!   `FaultKind::ALL`, its class, the I/O it is drawn on and whether it can leave an older
//!   block), its rate field in `FaultRates` (serde default 0, so old traces still read; its
//!   slot in `FaultRates::of_mut`; drawn in `DiskConfig::draw`), its `Planned` decision, and
//!   where the disk injects it. Expected counts, coverage cells, reports and the runner's
//!   class A/B/C judgement follow from those tables (`ZeroedSector` was added this way).
//! - **An oracle**: a variant of `runner::oracles::Oracle` with its name (never renamed:
//!   trace signatures carry it) and the count that makes it due (`Due`); the runner calls
//!   `stats.ran(Oracle::X)` where it judges and `fail(Oracle::X, ..)` where it fires. The
//!   report's oracle table lists it, and fails a campaign where it was due and never ran.
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
