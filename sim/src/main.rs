//! `thinsim`: argument parsing only; everything else is in the library (`sim::cli`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    sim::cli::main(sim::cli::Cli::parse())
}
