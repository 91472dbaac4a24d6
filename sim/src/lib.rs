//! thinsim: a deterministic simulation and model-checking harness for the dm-thin metadata
//! engine (`engine`), judged against the reference model (`model`).
//!
//! Layering, one way: `disk` (the simulated disk and its faults) and `entropy` (the one
//! source of choices) know nothing of the runner; `runner` draws and applies ops, faults and
//! crash cuts and holds the oracles; `shrink`, `explore`, `report` and `fuzzing` build on the
//! runner; `cli` and `tools_cli` (feature `cli`, on by default) are argument parsing and
//! printing only. The fuzz crate builds the library without `cli`, so without clap and
//! indicatif.
pub mod bench_sim;
pub mod bench_tools;
#[cfg(feature = "cli")]
pub mod cli;
pub mod disk;
pub mod entropy;
pub mod explore;
pub mod fnv;
pub mod fuzzing;
pub mod report;
pub mod runner;
pub mod shrink;
#[cfg(feature = "cli")]
pub mod tools_cli;
pub mod xmlgen;
