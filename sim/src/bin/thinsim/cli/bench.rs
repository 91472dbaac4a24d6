//! The `bench-tools` and `bench-sim` subcommands: arguments, and the report files they
//! write (`DIR/NAME.{json,md}`); the measurements are in `bench_tools` and `bench_sim`.

use super::fail;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BenchToolsArgs {
    /// Pool sizes in mappings, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub mappings: Vec<u64>,
    /// Scratch directory for XML and images (large: ~1.5 GB for 10^7 mappings).
    #[arg(long, default_value = "target/bench-tools")]
    pub scratch: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "reports/bench")]
    pub out: PathBuf,
    /// Keep the XML and images in the scratch directory (for profiling).
    #[arg(long)]
    pub keep: bool,
    /// Runs per operation and tool, interleaved; the median counts (the machine's speed
    /// drifts between runs, by ±30% on a shared VM).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

pub fn bench_tools(args: &BenchToolsArgs) -> ExitCode {
    let rows = match crate::bench_tools::run(&args.mappings, &args.scratch, args.keep, args.repeats)
    {
        Ok(r) => r,
        Err(e) => return fail(e, 1),
    };
    let (json, md) = crate::bench_tools::render(&rows);
    write_report(&args.out, "tools", &json, &md)
}

/// Writes `DIR/NAME.json` and `DIR/NAME.md` and prints the Markdown.
fn write_report(dir: &Path, name: &str, json: &str, md: &str) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(format!("{name}.json")), json))
        .and_then(|()| std::fs::write(dir.join(format!("{name}.md")), md))
    {
        return fail(format!("{}: {e}", dir.display()), 2);
    }
    out!("{md}");
    ExitCode::SUCCESS
}

#[derive(Debug, Args)]
pub struct BenchSimArgs {
    /// Workload length in operations.
    #[arg(long, default_value_t = 100_000)]
    pub ops: u64,
    /// Mean operations between commits.
    #[arg(long, default_value_t = 500)]
    pub commit_every: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "reports/bench")]
    pub out: PathBuf,
    /// Time one row alone and print it instead of writing the report (for profiling):
    /// bare, disk, lockstep, amortized or full.
    #[arg(long)]
    pub only: Option<String>,
    /// Runs of the `--only` row; the median is printed.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Rounds of the full benchmark (each runs the bare and the checked rows once).
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
}

pub fn bench_sim(args: &BenchSimArgs) -> ExitCode {
    if let Some(row) = &args.only {
        return match crate::bench_sim::run_only(
            row,
            args.ops,
            args.commit_every,
            args.seed,
            args.repeats,
        ) {
            Ok(line) => {
                outln!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e, 1),
        };
    }
    match crate::bench_sim::run(args.ops, args.commit_every, args.seed, args.rounds) {
        Ok((json, md)) => write_report(&args.out, "sim", &json, &md),
        Err(e) => fail(e, 1),
    }
}
