//! `thinsim shrink FILE [--budget 60s] [-o OUT]`: the smallest trace that fails the same way
//! (see `sim::shrink`), written to OUT (default: FILE with `.shrunk.trace`).

use clap::Args;
use sim::runner::Trace;
use sim::shrink::{self, Progress};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// The failing trace.
    pub file: PathBuf,
    /// Wall-clock budget such as 60s or 5m.
    #[arg(long, value_parser = super::args::parse_duration, default_value = "60s")]
    pub budget: Duration,
    /// Where to write the smallest trace.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Where a shrunk trace of `file` goes by default.
pub fn default_output(file: &Path) -> PathBuf {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    file.with_file_name(format!("{stem}.shrunk.trace"))
}

pub fn shrink(a: &ShrinkArgs) -> ExitCode {
    let t = match super::read_trace(&a.file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let out = a.output.clone().unwrap_or_else(|| default_output(&a.file));
    match shrink_to(&t, a.budget, &out) {
        Ok(line) => {
            outln!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Shrinks `t` into `out` with a progress bar on a terminal; the summary line.
pub fn shrink_to(t: &Trace, budget: Duration, out: &Path) -> Result<String, String> {
    let bar = super::progress::bar(None, "{spinner} {msg} {elapsed}");
    let mut show = |p: &Progress| {
        bar.set_message(format!(
            "{}: {} ops, {} faults, {} replays",
            p.pass, p.ops, p.faults, p.replays
        ));
    };
    let r = shrink::shrink(t, budget, &mut show).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let comment = [
        format!(
            "shrunk from {} ops and {} faults to {} ops and {} faults",
            r.ops_before,
            r.faults_before,
            r.trace.steps.len(),
            r.trace.fault_count()
        ),
        format!("in {:.1} s, {} replays; failure {}", r.seconds, r.replays, r.signature),
    ];
    let refs: Vec<&str> = comment.iter().map(String::as_str).collect();
    r.trace.write(out, &refs).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(format!(
        "{}: {} -> {} ops, {} -> {} faults, {:.1} s, {} replays{}; reproduces {}\nreplay: thinsim replay {}",
        out.display(),
        r.ops_before,
        r.trace.steps.len(),
        r.faults_before,
        r.trace.fault_count(),
        r.seconds,
        r.replays,
        if r.budget_spent { " (budget spent)" } else { "" },
        r.signature,
        out.display()
    ))
}
