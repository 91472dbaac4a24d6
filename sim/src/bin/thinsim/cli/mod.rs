//! The `thinsim` command line, all of it: `main.rs` only parses and calls [`main`]; each
//! subcommand's arguments and handler live in one module here. To add a subcommand, add a
//! variant to [`Command`] with its `Args` struct and one arm in [`main`].
//!
//! Exit codes: 0 success; 1 a failed run or campaign; 2 usage or I/O errors.

mod args;
mod bench;
mod bench_campaign;
mod bench_shrink;
mod explore;
mod fuzz_trace;
mod kernel;
mod progress;
mod replay;
mod report;
mod run;
mod shrink;
mod swarm;
pub mod tools;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub use explore::ExploreArgs;
pub use replay::ReplayArgs;
pub use report::ReportArgs;
pub use run::RunArgs;
pub use shrink::ShrinkArgs;
pub use swarm::SwarmArgs;

#[derive(Debug, Parser)]
#[command(
    name = "thinsim",
    version,
    propagate_version = true,
    about = "Deterministic crash and fault simulation for dm-thin metadata"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one seed (options are drawn from the seed and printed first).
    Run(RunArgs),
    /// Run a range of seeds in parallel and write a campaign report.
    Swarm(SwarmArgs),
    /// Replay a trace file exactly: its ops and faults, no RNG.
    Replay(ReplayArgs),
    /// Shrink a failing trace to the smallest one that fails the same way.
    Shrink(ShrinkArgs),
    /// Judge every crash state of a short workload at every flush epoch.
    Explore(ExploreArgs),
    /// Turn an input of the `sim` fuzz target into the trace of its run.
    FuzzTrace(fuzz_trace::FuzzTraceArgs),
    /// Merge shard reports into one.
    Report(ReportArgs),
    /// Audit a metadata image (stricter than thin_check: data counts, mapped_blocks, …).
    Check(tools::CheckArgs),
    /// Print a metadata image as thin_dump XML (byte-identical to thin_dump 0.9.0).
    Dump(tools::DumpArgs),
    /// Write a metadata image from thin_dump XML.
    Restore(tools::RestoreArgs),
    /// List devices with mapped / exclusive / shared counts (as thin_ls 0.9.0).
    Ls(tools::LsArgs),
    /// Rebuild damaged metadata from what survives (as thin_repair).
    Repair(tools::RepairArgs),
    /// Run workloads three ways: Linux dm-thin under user-mode Linux, the engine, the model.
    Kernel(kernel::KernelArgs),
    /// What the kernel run's guest script calls (writes, discards, flushes); not for people.
    #[command(hide = true)]
    KernelGuest(kernel::GuestArgs),
    /// Benchmark restore, dump and check against thin-provisioning-tools 0.9.0.
    BenchTools(bench::BenchToolsArgs),
    /// Benchmark the engine bare vs under the simulator with all checking on.
    BenchSim(bench::BenchSimArgs),
    /// Shrink every canary's first failure and tabulate lengths and times (canary build).
    BenchShrink(bench_shrink::BenchShrinkArgs),
    /// Campaign throughput per class of run, this build against a baseline build.
    BenchCampaign(bench_campaign::BenchCampaignArgs),
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(a) => run::run(&a),
        Command::Swarm(a) => swarm::swarm(&a),
        Command::Replay(a) => replay::replay(&a),
        Command::Shrink(a) => shrink::shrink(&a),
        Command::Explore(a) => explore::explore(&a),
        Command::FuzzTrace(a) => fuzz_trace::fuzz_trace(&a),
        Command::Report(a) => report::report(&a),
        Command::Check(a) => tools::check(&a, tools::Flavour::Thinsim),
        Command::Dump(a) => tools::dump(&a, tools::Flavour::Thinsim),
        Command::Restore(a) => tools::restore(&a, tools::Flavour::Thinsim),
        Command::Ls(a) => tools::ls(&a, tools::Flavour::Thinsim),
        Command::Repair(a) => tools::repair(&a, tools::Flavour::Thinsim),
        Command::Kernel(a) => kernel::kernel(&a),
        Command::KernelGuest(a) => kernel::guest(&a),
        Command::BenchTools(a) => bench::bench_tools(&a),
        Command::BenchSim(a) => bench::bench_sim(&a),
        Command::BenchShrink(a) => bench_shrink::bench_shrink(&a),
        Command::BenchCampaign(a) => bench_campaign::bench_campaign(&a),
    }
}

/// Checks a `--canary` name against the build.
fn check_canary(name: Option<&str>) -> Result<(), String> {
    let Some(name) = name else { return Ok(()) };
    if !sim::runner::CANARY_BUILD {
        return Err("this thinsim was built without canaries: add `--features canary`".into());
    }
    if !sim::runner::CANARIES.contains(&name) {
        return Err(format!("unknown canary {name:?}; one of {:?}", sim::runner::CANARIES));
    }
    Ok(())
}

/// Prints `msg` on standard error; the exit code is `code`.
fn fail(msg: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(code)
}

/// Reads a trace file for a subcommand; the error is printed and becomes exit code 2.
fn read_trace(path: &std::path::Path) -> Result<sim::runner::Trace, ExitCode> {
    sim::runner::Trace::read(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}
