//! placeholder
pub mod disk;
pub mod tools_cli;
pub mod xmlgen;
pub mod runner;
pub mod cli;
pub mod report;
pub mod fuzzing;
pub mod bench_tools;
