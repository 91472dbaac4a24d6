//! `thinsim fuzz-trace INPUT [-o OUT]`: turns an input of the `sim` fuzz target (a crash
//! libFuzzer saved, a corpus file) into the trace of its run, so that `replay` reproduces
//! it and `shrink` shrinks it. The run is judged as the target judged it; the trace holds
//! the failure it expects. Exit 0 when the input passes, 1 when it fails (trace written in
//! both cases), 2 when the input cannot be read or the trace written.

use clap::Args;
use sim::fuzzing::sim;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct FuzzTraceArgs {
    /// The fuzz input (raw bytes).
    pub input: PathBuf,
    /// Where to write the trace (default: INPUT.trace).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Run an engine canary, as `THINSIM_CANARY` did for the fuzzer (needs `--features canary`).
    #[arg(long)]
    pub canary: Option<String>,
}

pub fn fuzz_trace(a: &FuzzTraceArgs) -> ExitCode {
    if let Err(e) = super::check_canary(a.canary.as_deref()) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let data = match std::fs::read(&a.input) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read fuzz input {}: {e}", a.input.display());
            return ExitCode::from(2);
        }
    };
    let out = sim::outcome(&data, a.canary.clone());
    let trace = out.trace.expect("a drawn run records its trace");
    let path = a.out.clone().unwrap_or_else(|| {
        let mut p = a.input.clone().into_os_string();
        p.push(".trace");
        p.into()
    });
    let from = format!("from sim fuzz input {} ({} bytes)", a.input.display(), data.len());
    if let Err(e) = trace.write(&path, &[&from]) {
        eprintln!("cannot write trace {}: {e}", path.display());
        return ExitCode::from(2);
    }
    outln!("trace {} ({} ops, {} faults)", path.display(), trace.steps.len(), trace.fault_count());
    match out.failure {
        Some(mut f) => {
            f.replay = format!("thinsim replay {}", path.display());
            outln!("{f}");
            ExitCode::from(1)
        }
        None => {
            outln!("PASS");
            ExitCode::SUCCESS
        }
    }
}
