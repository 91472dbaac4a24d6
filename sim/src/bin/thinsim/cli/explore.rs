//! `thinsim explore FILE | --seed N [--steps S] [--max-states K]`: every crash state of a
//! short workload at every flush epoch, judged by the swarm's oracle (see `sim::explore`).
//! Exits 1 when a state fails, or when no crash point had more than one pending write (the
//! exploration would prove nothing).

use clap::Args;
use sim::runner::{self, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// A trace whose ops are the workload (its faults are ignored).
    pub file: Option<PathBuf>,
    /// Or the workload of this seed's run.
    #[arg(long, conflicts_with = "file")]
    pub seed: Option<u64>,
    /// Steps of the seed's run.
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
    /// Crash states per power cut above which a sample of this many is judged.
    #[arg(long, default_value_t = 4096)]
    pub max_states: u64,
    /// Cut at the first K flushes only.
    #[arg(long)]
    pub max_cuts: Option<usize>,
    /// Write the counts as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn explore(a: &ExploreArgs) -> ExitCode {
    let t = match (&a.file, a.seed) {
        (Some(f), _) => match super::read_trace(f) {
            Ok(t) => t,
            Err(code) => return code,
        },
        (None, Some(seed)) => {
            let out = runner::run(&RunConfig { steps: a.steps, ..RunConfig::new(seed) });
            out.trace.expect("every run records its trace")
        }
        (None, None) => {
            eprintln!("explore needs a trace file or --seed N");
            return ExitCode::from(2);
        }
    };
    let w = sim::explore::workload(&t);
    outln!(
        "workload: {} ops, tears {:?}, at most {} states per cut",
        w.steps.len(),
        sim::explore::tears_for(&w),
        a.max_states
    );
    let r = match sim::explore::explore(&t, a.max_states, a.max_cuts, |_, _| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let max_pending = r.points.iter().map(|p| p.pending_writes).max().unwrap_or(0);
    outln!(
        "{} power cuts, {} crash points ({} with more than one pending write, at most {} pending), {} crash states judged, {} points sampled",
        r.cuts,
        r.points.len(),
        r.nontrivial_points(),
        max_pending,
        r.states(),
        r.sampled_points()
    );
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "ops": w.steps.len(),
            "cuts": r.cuts,
            "crash_points": r.points.len(),
            "nontrivial_points": r.nontrivial_points(),
            "max_pending_writes": max_pending,
            "states": r.states(),
            "sampled_points": r.sampled_points(),
            "failures": r.failures.len(),
        });
        if let Err(e) = std::fs::write(path, format!("{json:#}\n")) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    for (cut, f) in &r.failures {
        match cut {
            Some((step, io)) => outln!("power cut at I/O {io} of op {step}:"),
            None => outln!("the workload's own power cuts:"),
        }
        outln!("{f}");
    }
    if !r.failures.is_empty() {
        outln!("FAILED: {} crash points failed", r.failures.len());
        return ExitCode::from(1);
    }
    if r.nontrivial_points() == 0 {
        outln!("FAILED: no crash point had more than one pending write; nothing was explored");
        return ExitCode::from(1);
    }
    outln!("PASSED");
    ExitCode::SUCCESS
}
