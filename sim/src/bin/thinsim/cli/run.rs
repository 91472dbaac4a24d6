//! `thinsim run --seed N [--steps S] [--crash-at PHASE|io:N] [--canary NAME] [--twice]`.

use sim::runner::verify::VerifyMode;
use sim::runner::{self, CrashAt, RunConfig, DEFAULT_STEPS};

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// The options `run` and `swarm` share: how each seed is run.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunOptions {
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: u64,
    /// Run a deliberately broken engine (build with `--features canary`).
    #[arg(long)]
    pub canary: Option<String>,
    /// Inject class A faults only (crashes and tears within the atomic unit).
    #[arg(long)]
    pub class_a_only: bool,
    /// Verification after each commit: `full` (whole state, ls and `check` every time) or
    /// `amortized` (what changed every time, the whole state often enough to cost a bounded
    /// share of the run).
    #[arg(long, value_enum, default_value_t = VerifyMode::Amortized)]
    pub verify: VerifyMode,
}

impl RunOptions {
    /// The run of `seed` with these options.
    pub fn config(&self, seed: u64) -> RunConfig {
        RunConfig {
            steps: self.steps,
            canary: self.canary.clone(),
            class_a_only: self.class_a_only,
            verify: self.verify,
            ..RunConfig::new(seed)
        }
    }
}

#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunArgs {
    #[arg(long)]
    pub seed: u64,
    #[command(flatten)]
    pub run: RunOptions,
    /// Cut power inside the first op of a kind (commit, reserve_snap, set_needs_check, ...)
    /// or at the N-th disk I/O (io:N).
    #[arg(long)]
    pub crash_at: Option<CrashAt>,
    /// Run twice and require equal trace hashes (and replay the recorded trace: the same).
    #[arg(long)]
    pub twice: bool,
    /// On a failure, write its trace into this directory.
    #[arg(long, default_value = "thinsim-traces")]
    pub traces: PathBuf,
    /// Write the run's trace here, pass or fail.
    #[arg(long)]
    pub trace_out: Option<PathBuf>,
}

impl RunArgs {
    pub fn config(&self) -> RunConfig {
        RunConfig { crash_at: self.crash_at, ..self.run.config(self.seed) }
    }
}

pub fn run(a: &RunArgs) -> ExitCode {
    if let Err(e) = super::check_canary(a.run.canary.as_deref()) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let cfg = a.config();
    // First, and flushed: a run that hangs or kills the process still shows its options.
    let options = runner::options_of(&cfg);
    outln!("seed {} options {}", cfg.seed, serde_json::to_string(&options).unwrap_or_default());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut out = runner::run(&cfg);
    if let Err(e) = write_traces(a, &mut out) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    print_outcome(&out);
    if a.twice {
        let again = runner::run(&cfg);
        if again.trace_hash != out.trace_hash {
            outln!(
                "NONDETERMINISM: trace hash {:#018x} then {:#018x}",
                out.trace_hash,
                again.trace_hash
            );
            return ExitCode::from(1);
        }
        let replayed = out.trace.as_ref().map(runner::replay);
        if let Some(r) = replayed.filter(|r| r.trace_hash != out.trace_hash) {
            outln!(
                "NONDETERMINISM: the recorded trace replays with hash {:#018x}, not {:#018x}",
                r.trace_hash,
                out.trace_hash
            );
            return ExitCode::from(1);
        }
        outln!("twice: trace hashes equal (run, run again, replay of the trace)");
    }
    if out.failure.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--trace-out`, and on a failure the trace in `--traces`; names the file in the failure.
fn write_traces(a: &RunArgs, out: &mut runner::RunOutcome) -> Result<(), String> {
    let Some(t) = &out.trace else { return Ok(()) };
    if let Some(path) = &a.trace_out {
        t.write(path, &[]).map_err(|e| format!("{}: {e}", path.display()))?;
        outln!("trace written to {}", path.display());
    }
    if let Some(f) = out.failure.as_mut() {
        let path = a.traces.join(format!("seed-{}.trace", a.seed));
        let comment = format!("seed {} failed: {}", a.seed, f.signature());
        t.write(&path, &[&comment, &f.replay]).map_err(|e| format!("{}: {e}", path.display()))?;
        f.trace_file = Some(path.display().to_string());
    }
    Ok(())
}

fn print_outcome(out: &runner::RunOutcome) {
    print_stats(out);
    match &out.failure {
        Some(f) => outln!("{f}"),
        None => outln!("PASS"),
    }
}

/// The statistics lines of a run or a replay.
pub(super) fn print_stats(out: &runner::RunOutcome) {
    let s = &out.stats;
    outln!(
        "steps {} commits {} aborts {} crashes {} (in commit {}) recoveries {} crash images {} \
         verifications full {} incremental {} image checks {} outcomes {:?}",
        s.steps,
        s.commits,
        s.aborts,
        s.crashes,
        s.crashes_in_commit,
        s.recoveries,
        s.crash_images_checked,
        s.commit_checks,
        s.incremental_checks,
        s.image_checks,
        s.outcomes
    );
    outln!("trace hash {:#018x}", out.trace_hash);
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;
    use sim::runner::verify::VerifyMode;
    use sim::runner::{CrashAt, OpKind, RunConfig};

    /// The replay line a failure prints parses back into the same run.
    #[test]
    fn replay_line_round_trips() {
        let configs = [
            RunConfig::new(7),
            RunConfig { steps: 31, crash_at: Some(CrashAt::Io(99)), ..RunConfig::new(u64::MAX) },
            RunConfig { crash_at: Some(CrashAt::Phase(OpKind::ReserveSnap)), ..RunConfig::new(3) },
            RunConfig { canary: Some("abort_keeps_records".into()), ..RunConfig::new(5) },
            RunConfig { class_a_only: true, steps: 9, ..RunConfig::new(0) },
            RunConfig { verify: VerifyMode::Full, ..RunConfig::new(11) },
        ];
        for cfg in configs {
            let line = cfg.replay_line();
            let args = line.split_once(" -- ").expect("cargo separator").1;
            let argv = std::iter::once("thinsim").chain(args.split_whitespace());
            let Command::Run(a) = Cli::try_parse_from(argv).expect("replay line parses").command
            else {
                panic!("replay line is not a run command: {line}");
            };
            assert_eq!(a.config(), cfg, "{line}");
        }
    }
}
