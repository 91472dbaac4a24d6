//! `thinsim replay FILE`: runs a trace exactly (no RNG: its ops and its faults), prints the
//! outcome as `run` does, and exits 1 on a failure, 2 on a trace that cannot be read or run.

use clap::Args;
use sim::runner::{self, RunOutcome, Trace};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace file (JSON lines; see `runner::trace`).
    pub file: PathBuf,
}

pub fn replay(a: &ReplayArgs) -> ExitCode {
    let t = match super::read_trace(&a.file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    outln!(
        "trace {} ({} ops, {} faults, written by {}), seed {}",
        a.file.display(),
        t.steps.len(),
        t.fault_count(),
        t.build,
        t.seed
    );
    let out = runner::replay(&t);
    report(&t, &out, &a.file)
}

/// Prints a replay's outcome against the trace's expectation; the exit code.
pub fn report(t: &Trace, out: &RunOutcome, file: &Path) -> ExitCode {
    if let Some(e) = &out.invalid {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    super::run::print_stats(out);
    match (&out.failure, &t.expect) {
        (Some(f), expected) => {
            let mut f = f.clone();
            f.replay = format!("thinsim replay {}", file.display());
            outln!("{f}");
            match expected {
                Some(e) if e.signature == f.signature() => {
                    outln!("reproduced the expected failure {}", e.signature)
                }
                Some(e) => outln!("expected {} instead", e.signature),
                None => outln!("the trace expected no failure"),
            }
            ExitCode::from(1)
        }
        (None, Some(e)) => {
            outln!("PASS: the expected failure {} did not happen", e.signature);
            ExitCode::SUCCESS
        }
        (None, None) => {
            outln!("PASS");
            ExitCode::SUCCESS
        }
    }
}
