//! `thinsim bench-shrink` (canary build): for every engine canary, the first seed that
//! catches it, its trace shrunk within the budget, and the table of lengths and times
//! (`reports/bench/shrink.md`). With `--regressions DIR` the shrunk traces are written there
//! as `NNNN-canary-NAME.trace`: regressions that must fail on the canary build and pass on
//! the real engine.

use clap::Args;
use sim::runner::{self, RunConfig, Trace};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchShrinkArgs {
    /// Budget of each shrink.
    #[arg(long, value_parser = super::args::parse_duration, default_value = "60s")]
    pub budget: Duration,
    /// Seeds searched for a catch, in order (they pass with the real engine:
    /// `tests/campaign_slice.rs`).
    #[arg(long, default_value_t = 600)]
    pub search: u64,
    /// Write the table here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the shrunk traces here.
    #[arg(long)]
    pub regressions: Option<PathBuf>,
    /// Number for a canary with no regression file yet (taken: the next free one).
    #[arg(long, default_value_t = 1)]
    pub first_number: u32,
    /// Canaries searched and shrunk at once, one thread each (each shrink's budget is its own
    /// thread's wall clock, so give each a core).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// End each shrink once it holds a trace of at most 25 ops (the target; what CI asks),
    /// instead of simplifying on until nothing shrinks or the budget is spent.
    #[arg(long)]
    pub stop_at_target: bool,
}

/// The target: every canary's failure shrinks to at most this many ops ...
const TARGET_OPS: usize = 25;
/// ... within this many seconds.
const TARGET_S: f64 = 60.0;

struct Row {
    canary: &'static str,
    seed: u64,
    signature: String,
    before: (usize, usize),
    after: (usize, usize),
    search_s: f64,
    shrink_s: f64,
    /// When the shrink first held a trace of at most [`TARGET_OPS`] ops (a shrink that goes
    /// on simplifying until its budget is spent still met the target then).
    to_target_s: Option<f64>,
    replays: u64,
    file: Option<String>,
}

pub fn bench_shrink(a: &BenchShrinkArgs) -> ExitCode {
    if !runner::CANARY_BUILD {
        eprintln!("bench-shrink needs the canaries: build with `--features canary`");
        return ExitCode::from(2);
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<Row, u8>)>> = Mutex::new(Vec::new());
    // Writing regression files takes the next free number: one canary at a time then.
    let jobs = if a.regressions.is_some() { 1 } else { a.jobs.max(1) };
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(canary) = runner::CANARIES.get(i) else { return };
        let r = one_canary(a, i, canary);
        done.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
    };
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(worker);
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    let mut ok = true;
    let mut rows = Vec::new();
    for (_, r) in done {
        match r {
            Ok(row) => {
                ok &= row.after.0 <= TARGET_OPS && row.to_target_s.is_some_and(|t| t <= TARGET_S);
                rows.push(row);
            }
            Err(2) => return ExitCode::from(2),
            Err(_) => ok = false,
        }
    }
    let table = table(&rows, a);
    if let Some(out) = &a.out {
        if let Err(e) = std::fs::write(out, &table) {
            eprintln!("{}: {e}", out.display());
            return ExitCode::from(2);
        }
    }
    out!("{table}");
    if ok {
        ExitCode::SUCCESS
    } else {
        outln!("FAILED: a canary was not caught, or did not shrink to {TARGET_OPS} ops within {TARGET_S} s");
        ExitCode::from(1)
    }
}

/// Finds the first seed that catches `canary` (number `i`) and shrinks its trace; prints
/// its line. `Err` carries the exit code: 1 when it was not caught or did not shrink, 2 when
/// its file could not be written (said on the way).
fn one_canary(a: &BenchShrinkArgs, i: usize, canary: &'static str) -> Result<Row, u8> {
    let began = Instant::now();
    let found = (0..a.search).find_map(|seed| {
        let cfg = RunConfig { canary: Some(canary.to_owned()), ..RunConfig::new(seed) };
        let out = runner::run(&cfg);
        out.failure.is_some().then(|| (seed, out.trace.expect("recorded")))
    });
    let search_s = began.elapsed().as_secs_f64();
    let Some((seed, trace)) = found else {
        outln!("{canary}: not caught by seeds 0..{}", a.search);
        return Err(1);
    };
    let began_shrink = Instant::now();
    let mut to_target_s = None;
    let mut watch = |p: &sim::shrink::Progress| {
        if p.ops <= TARGET_OPS && to_target_s.is_none() {
            to_target_s = Some(began_shrink.elapsed().as_secs_f64());
        }
    };
    let goal = a.stop_at_target.then_some(TARGET_OPS);
    let r = match sim::shrink::shrink_to_goal(&trace, a.budget, goal, &mut watch) {
        Ok(r) => r,
        Err(e) => {
            outln!("{canary}: {e}");
            return Err(1);
        }
    };
    let file = match &a.regressions {
        Some(dir) => {
            let n = regression_number(dir, canary, a.first_number + i as u32);
            match write_regression(dir, n, canary, seed, &r.trace) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("{e}");
                    return Err(2);
                }
            }
        }
        None => None,
    };
    let row = Row {
        canary,
        seed,
        signature: r.signature.clone(),
        before: (r.ops_before, r.faults_before),
        after: (r.trace.steps.len(), r.trace.fault_count()),
        search_s,
        shrink_s: r.seconds,
        to_target_s: to_target_s.or((r.trace.steps.len() <= TARGET_OPS).then_some(r.seconds)),
        replays: r.replays,
        file,
    };
    outln!(
        "{canary}: seed {seed} {} | {} -> {} ops, {} -> {} faults | {:.2} s, {} replays",
        row.signature,
        row.before.0,
        row.after.0,
        row.before.1,
        row.after.1,
        row.shrink_s,
        row.replays
    );
    Ok(row)
}

/// The number of `canary`'s regression file: the one it already has in `dir`, else
/// `wanted` if no file has that number, else the next number after every file's.
fn regression_number(dir: &std::path::Path, canary: &str, wanted: u32) -> u32 {
    let suffix = format!("-canary-{}.trace", canary.replace('_', "-"));
    let mut taken = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.get(..4).and_then(|d| d.parse::<u32>().ok()) else { continue };
        if name.ends_with(&suffix) {
            return n;
        }
        taken.push(n);
    }
    if taken.contains(&wanted) {
        taken.iter().max().map_or(wanted, |m| m + 1)
    } else {
        wanted
    }
}

fn write_regression(
    dir: &std::path::Path,
    n: u32,
    canary: &str,
    seed: u64,
    t: &Trace,
) -> Result<String, String> {
    let path = dir.join(format!("{n:04}-canary-{}.trace", canary.replace('_', "-")));
    let what = format!("broke: the engine canary {canary} (found by seed {seed}, then shrunk); fails on the canary build");
    let fixed = "fixed: the real engine does not have the broken rule; must pass there (cargo test replays both)";
    t.write(&path, &[&what, fixed]).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

fn table(rows: &[Row], a: &BenchShrinkArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Shrinking the canaries' failures\n");
    let _ = writeln!(
        s,
        "Made by `cargo run --release -p thinsim --features canary -- bench-shrink --budget {}s --out reports/bench/shrink.md --regressions corpus/regressions` \
         on this 2-core machine. For each engine canary: the first seed (of 0..{}, default options, 400 steps) whose run fails, \
         the length of its trace (ops, faults) before and after `thinsim shrink`, and the time the shrink took. \
         Target: every failure shrinks to at most 25 ops within 60 s (\"to ≤ 25 ops\": when the shrink first held such \
         a trace; it goes on simplifying until nothing shrinks or its budget is spent).\n",
        a.budget.as_secs(),
        a.search
    );
    if a.stop_at_target {
        let _ = writeln!(
            s,
            "Run with `--stop-at-target`: each shrink ended once it held ≤ 25 ops, so \"ops after\" \
             is that trace, not the smallest the budget allows.\n"
        );
    }
    let _ = writeln!(s, "| canary | seed | failure signature | ops before | ops after | faults before | faults after | search s | s to ≤ 25 ops | shrink s | replays |");
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} |",
            r.canary,
            r.seed,
            r.signature,
            r.before.0,
            r.after.0,
            r.before.1,
            r.after.1,
            r.search_s,
            r.to_target_s.map_or_else(|| "never".to_owned(), |t| format!("{t:.2}")),
            r.shrink_s,
            r.replays
        );
    }
    let files: Vec<&str> = rows.iter().filter_map(|r| r.file.as_deref()).collect();
    if !files.is_empty() {
        let _ = writeln!(
            s,
            "\nShrunk traces (regressions replayed by `cargo test`): {}",
            files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        );
    }
    s
}
