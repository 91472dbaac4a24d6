//! `thinsim`, the front end of the `sim` library: the command line (`cli`, every subcommand's
//! arguments and handler), the offline tools' front ends (`cli::tools`) and the two
//! benchmarks (`bench_sim`, `bench_tools`). What a run is — the simulated disk, the runner,
//! its oracles, shrink, explore and the reports — is in the library; nothing here decides a
//! verdict.

#[macro_use]
mod out;
mod bench_sim;
mod bench_tools;
mod cli;
mod median;
// Test and benchmark support, shared with the tests (each user takes part of it).
#[allow(dead_code)]
#[path = "../../../tests/support/xmlgen.rs"]
mod xmlgen;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Named thin_check, thin_dump, … (a symlink or a copy): that tool, as pdata_tools is.
    if let Some(tool) = cli::tools::multi_call_tool(std::env::args_os().next().as_ref()) {
        let code = cli::tools::run_as(tool);
        out::flush();
        return code;
    }
    let code = cli::main(cli::Cli::parse());
    out::flush();
    code
}
