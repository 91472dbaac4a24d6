//! placeholder
pub mod bench_sim;
pub mod bench_tools;
pub mod cli;
pub mod disk;
pub mod entropy;
pub mod explore;
pub mod fnv;
pub mod fuzzing;
pub mod report;
pub mod runner;
pub mod shrink;
pub mod tools_cli;
pub mod xmlgen;
