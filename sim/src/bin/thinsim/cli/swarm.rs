//! `thinsim swarm --seeds A..B [--jobs J] [--shard K/N] [--budget 60s] [--steps S]
//! [--canary NAME] [--report reports/NAME]`.
//!
//! Seeds run in parallel on `jobs` threads; results are folded into the report in seed
//! order, so the report of a seed set does not depend on scheduling. `--budget` stops
//! *starting* seeds after the wall-clock budget (the report lists the seeds that ran);
//! `--fail-fast` and `--max-failures N` stop starting seeds once that many failed (which
//! seeds had started by then depends on the threads; each failure's replay line does not).
//! A watchdog ends the campaign when a seed runs past `--seed-timeout` (a hang), printing
//! the seed's replay line.

use super::args::{parse_class, parse_duration, parse_range, parse_shard};
use super::run::RunOptions;
use clap::Args;
use sim::report::Summary;
use sim::runner::{self, RunClass, RunConfig, RunOutcome};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// Seed range A..B (B exclusive).
    #[arg(long, value_parser = parse_range)]
    pub seeds: (u64, u64),
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Run only shard K of N (1-based): the seeds s with (s - A) % N == K - 1.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Run only the seeds that draw this class of run (repeatable): small, deep-tree,
    /// big-pool, prepopulated. A seed's class is drawn first from its seed, so the seeds
    /// kept run exactly as they do in a campaign of every class.
    #[arg(long, value_parser = parse_class)]
    pub class: Vec<RunClass>,
    /// Wall-clock budget such as 60s or 5m: no seed starts after it.
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    #[command(flatten)]
    pub run: RunOptions,
    /// Report directory (summary.json, index.html).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Fail the campaign unless at least this many crash images were reopened and compared
    /// (so a budget cut cannot make a thin campaign look green).
    #[arg(long, default_value_t = 0)]
    pub min_crash_images: u64,
    /// Write the final recovered image of passing seeds here (`seed-N.img`), for judging by
    /// external tools such as thin_check.
    #[arg(long)]
    pub export_images: Option<PathBuf>,
    /// With --export-images: export every K-th seed only.
    #[arg(long, default_value_t = 10)]
    pub export_every: u64,
    /// Stop at the first failure (same as --max-failures 1): print its replay line and fail,
    /// without spending the budget on a seed range that has already failed.
    #[arg(long)]
    pub fail_fast: bool,
    /// Stop starting seeds once this many have failed.
    #[arg(long)]
    pub max_failures: Option<u64>,
    /// A seed still running after this long is a hang: print its replay line and exit 1
    /// (a thread cannot be stopped, so the campaign ends there).
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    pub seed_timeout: Duration,
    /// Where to write one trace per distinct failure (default: `traces/` in the report
    /// directory, else `thinsim-traces/`).
    #[arg(long)]
    pub traces: Option<PathBuf>,
    /// After the campaign, shrink each distinct failure's trace (`NAME.shrunk.trace`).
    #[arg(long)]
    pub shrink: bool,
    /// With --shrink: the budget of each shrink.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub shrink_budget: Duration,
}

/// What the workers need besides the seeds.
struct Plan<'a> {
    jobs: usize,
    run: &'a RunOptions,
    budget: Option<Duration>,
    export: Option<(&'a std::path::Path, u64)>,
    /// Stop starting seeds once this many failed.
    max_failures: Option<u64>,
    seed_timeout: Duration,
}

/// The seeds a swarm runs, in order.
pub fn seeds_of(range: (u64, u64), shard: Option<(u64, u64)>) -> Vec<u64> {
    let (k, n) = shard.unwrap_or((1, 1));
    (range.0..range.1).filter(|s| (s - range.0) % n == k - 1).collect()
}

/// Runs every seed on `jobs` threads; returns the outcomes (with the seconds each run took)
/// in seed order.
fn run_seeds(seeds: &[u64], plan: &Plan<'_>) -> Vec<(RunOutcome, f64)> {
    let Plan { jobs, run, budget, export, max_failures, seed_timeout } = *plan;
    let start = Instant::now();
    // What each worker is running and since when, for the watchdog.
    let running: Mutex<Vec<Option<(u64, Instant)>>> = Mutex::new(vec![None; jobs.max(1)]);
    let workers_left = AtomicU64::new(jobs.max(1) as u64);
    let next = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let stop = || max_failures.is_some_and(|m| failed.load(Ordering::Relaxed) >= m);
    let results: Mutex<Vec<Option<(RunOutcome, f64)>>> = Mutex::new(vec![None; seeds.len()]);
    let bar = progress_bar(seeds.len() as u64);
    std::thread::scope(|scope| {
        scope.spawn(|| watchdog(&running, &workers_left, seed_timeout, run));
        for w in 0..jobs.max(1) {
            let (running, workers_left, next, failed) = (&running, &workers_left, &next, &failed);
            let (bar, results, stop) = (&bar, &results, &stop);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= seeds.len() || budget.is_some_and(|b| start.elapsed() > b) || stop() {
                    workers_left.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
                lock(running)[w] = Some((seeds[i], Instant::now()));
                let exporting = export.filter(|(_, every)| seeds[i].is_multiple_of(*every.max(&1)));
                let cfg =
                    RunConfig { keep_final_image: exporting.is_some(), ..run.config(seeds[i]) };
                let began = Instant::now();
                let mut out = runner::run(&cfg);
                let seconds = began.elapsed().as_secs_f64();
                lock(running)[w] = None;
                if let (Some((dir, _)), Some(img)) = (exporting, out.final_image.take()) {
                    let path = dir.join(format!("seed-{}.img", seeds[i]));
                    if let Err(e) = std::fs::write(&path, img.to_bytes()) {
                        eprintln!("{}: {e}", path.display());
                    }
                }
                if let Some(f) = &out.failure {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let line =
                        format!("seed {} FAILED: {}\nreplay: {}", f.seed, f.signature(), f.replay);
                    match bar {
                        Some(b) => b.println(line),
                        None => eprintln!("{line}"),
                    }
                }
                if let Some(b) = bar {
                    b.inc(1);
                }
                if out.failure.is_none() {
                    // Only failures need their trace; a campaign keeps every outcome.
                    out.trace = None;
                }
                lock(results)[i] = Some((out, seconds));
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends the process when a seed runs past `timeout`: a hang is a finding, and its replay
/// line is all a person needs to reproduce it.
fn watchdog(
    running: &Mutex<Vec<Option<(u64, Instant)>>>,
    workers_left: &AtomicU64,
    timeout: Duration,
    run: &RunOptions,
) {
    while workers_left.load(Ordering::Relaxed) > 0 {
        std::thread::sleep(Duration::from_millis(100));
        let hung = lock(running).iter().flatten().find(|(_, t)| t.elapsed() > timeout).copied();
        if let Some((seed, t)) = hung {
            eprintln!(
                "seed {seed} HUNG: still running after {:.0} s\nreplay: {}",
                t.elapsed().as_secs_f64(),
                run.config(seed).replay_line()
            );
            std::process::exit(1);
        }
    }
}

fn progress_bar(n: u64) -> Option<indicatif::ProgressBar> {
    let bar = super::progress::bar(Some(n), "{bar:40} {pos}/{len} seeds {elapsed} eta {eta}");
    (!bar.is_hidden()).then_some(bar)
}

pub fn swarm(a: &SwarmArgs) -> ExitCode {
    if let Err(e) = super::check_canary(a.run.canary.as_deref()) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let mut seeds = seeds_of(a.seeds, a.shard);
    if !a.class.is_empty() {
        seeds.retain(|&s| a.class.contains(&runner::options_of(&a.run.config(s)).class));
    }
    // Panics are caught per run and reported as failures; one line each is enough here.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let start = Instant::now();
    if let Some(dir) = &a.export_images {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let plan = Plan {
        jobs: a.jobs,
        run: &a.run,
        budget: a.budget,
        export: a.export_images.as_deref().map(|d| (d, a.export_every)),
        max_failures: if a.fail_fast { Some(1) } else { a.max_failures },
        seed_timeout: a.seed_timeout,
    };
    let mut outcomes = run_seeds(&seeds, &plan);
    let traces = a.traces.clone().unwrap_or_else(|| match &a.report {
        Some(dir) => dir.join("traces"),
        None => PathBuf::from("thinsim-traces"),
    });
    if let Err(e) =
        write_failure_traces(&mut outcomes, &traces, a.shrink.then_some(a.shrink_budget))
    {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let name = a
        .report
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "swarm".into());
    let mut summary = Summary::new(&name, a.run.canary.clone());
    summary.seeds.ranges.push([a.seeds.0, a.seeds.1]);
    let (k, n) = a.shard.unwrap_or((1, 1));
    summary.seeds.shards.push(format!("{k}/{n}"));
    for (o, seconds) in &outcomes {
        summary.add_timed(o, *seconds);
    }
    summary.finalize(Some(start.elapsed().as_secs_f64()));
    print_summary(&summary, seeds.len());
    if let Some(dir) = &a.report {
        if let Err(e) = summary.write(dir) {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::from(2);
        }
        outln!("report: {}/summary.json, {}/index.html", dir.display(), dir.display());
    }
    if summary.stats.crash_images_checked < a.min_crash_images {
        outln!(
            "FAILED: only {} crash images checked, the campaign needs {}",
            summary.stats.crash_images_checked,
            a.min_crash_images
        );
        return ExitCode::from(1);
    }
    // A check must prove it ran: provisions wrote data and recoveries happened, so the
    // data-durability oracle (runner::data_device) must have judged some mapped block.
    let st = &summary.stats;
    if st.data_writes > 0 && st.recoveries > 0 && st.data_blocks_verified == 0 {
        outln!(
            "FAILED: {} data writes and {} recoveries, and the data-durability oracle verified no block",
            st.data_writes, st.recoveries
        );
        return ExitCode::from(1);
    }
    // Likewise the memo: every remembered verification was first made in full, so crash
    // images all judged by memory mean the full verification never ran.
    if st.crash_images_checked > 0 && st.crash_images_memo >= st.crash_images_checked {
        outln!(
            "FAILED: all {} crash images were judged by a remembered verification, none in full",
            st.crash_images_checked
        );
        return ExitCode::from(1);
    }
    // Likewise repair: every class B outcome that restores the last good image repairs the
    // damaged one first (runner::repair), so outcomes without repairs mean it never ran.
    let b_outcomes = st.outcomes.b_detected + st.outcomes.b_undetectable;
    let all = st.repair.get(sim::runner::repair::ALL_KINDS);
    if b_outcomes > 0 && all.is_none_or(|t| t.repaired + t.refused == 0) {
        outln!("FAILED: {b_outcomes} class B outcomes, and repair was judged on none");
        return ExitCode::from(1);
    }
    // The leak judge proves itself only on images that had leaks to report, and every run
    // that verified a committed image with mappings repairs one undamaged image.
    let l = &st.check_leaks;
    if l.images >= 1_000 && l.images_with_leaks == 0 {
        outln!(
            "FAILED: check's findings judged on {} images, none with a leak to report",
            l.images
        );
        return ExitCode::from(1);
    }
    if st.commit_checks >= 30 && st.clean_repair.repaired == 0 {
        outln!(
            "FAILED: {} full verifications after commits, and no undamaged image was repaired",
            st.commit_checks
        );
        return ExitCode::from(1);
    }
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One trace per distinct failure signature (the first seed's, in seed order), with the
/// count and seeds that hit it in its header; every failure names its signature's file.
/// With a shrink budget, each is shrunk too.
fn write_failure_traces(
    outcomes: &mut [(RunOutcome, f64)],
    dir: &std::path::Path,
    shrink: Option<Duration>,
) -> Result<(), String> {
    let mut groups: Vec<(String, usize, Vec<u64>)> = Vec::new();
    for (i, (o, _)) in outcomes.iter().enumerate() {
        let Some(f) = &o.failure else { continue };
        let sig = f.signature();
        match groups.iter_mut().find(|g| g.0 == sig) {
            Some(g) => g.2.push(o.seed),
            None => groups.push((sig, i, vec![o.seed])),
        }
    }
    for (n, (sig, first, seeds)) in groups.iter().enumerate() {
        let o = &outcomes[*first].0;
        let (Some(t), Some(f)) = (&o.trace, &o.failure) else { continue };
        let slug: String = sig
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect();
        let path = dir.join(format!("{:03}-{slug}.trace", n + 1));
        let shown: Vec<String> = seeds.iter().take(20).map(u64::to_string).collect();
        let header = [
            format!(
                "failure {sig}: {} seeds ({}{})",
                seeds.len(),
                shown.join(", "),
                if seeds.len() > 20 { ", ..." } else { "" }
            ),
            format!("first seed {}: {}", o.seed, f.replay),
        ];
        let refs: Vec<&str> = header.iter().map(String::as_str).collect();
        t.write(&path, &refs).map_err(|e| format!("{}: {e}", path.display()))?;
        outln!("trace of {sig} ({} seeds): thinsim replay {}", seeds.len(), path.display());
        if let Some(budget) = shrink {
            let out = super::shrink::default_output(&path);
            match super::shrink::shrink_to(t, budget, &out) {
                Ok(line) => outln!("{line}"),
                Err(e) => outln!("shrink of {}: {e}", path.display()),
            }
        }
        let file = path.display().to_string();
        for (o, _) in outcomes.iter_mut() {
            if let Some(f) = o.failure.as_mut().filter(|f| f.signature() == *sig) {
                f.trace_file = Some(file.clone());
            }
        }
    }
    Ok(())
}

fn print_summary(s: &Summary, planned: usize) {
    let st = &s.stats;
    outln!(
        "{} of {planned} seeds, {} steps, {} commits, {} crashes ({} in commit), {} recoveries, \
         {} crash images checked ({} with check) in {:.1}s: {:.1} runs/s, {:.0} steps/s, {:.0} \
         crash images/s",
        s.seeds.runs,
        st.steps,
        st.commits,
        st.crashes,
        st.crashes_in_commit,
        st.recoveries,
        st.crash_images_checked,
        st.image_checks,
        s.wall_seconds,
        s.throughput.runs_per_s,
        s.throughput.steps_per_s,
        s.throughput.crash_images_per_s
    );
    outln!("outcomes {:?}", st.outcomes);
    outln!(
        "verification: {} crash images and {} recoveries judged by a remembered verification \
         (an image with the same bytes in every block it read; runner::memo), the rest in full",
        st.crash_images_memo,
        st.recoveries_memo
    );
    outln!(
        "data device: {} writes, {} pre-commit flushes, {} mapped blocks found durable after recoveries",
        st.data_writes, st.data_flushes, st.data_blocks_verified
    );
    for (kind, t) in &st.repair {
        outln!(
            "repair after {kind}: {} repaired ({} refused), {} of {} committed mappings recovered ({:.1}%), {} stale after a lost/misdirected write, {} from unverified roots; roots from superblock/damaged superblock/scan/lost tree found {}/{}/{}/{}; {} judged against the bound, {} of {} bound mappings kept ({:.1}%)",
            t.repaired,
            t.refused,
            t.recovered_mappings,
            t.committed_mappings,
            t.recovered_percent(),
            t.stale_mappings,
            t.stale_from_unverified_roots,
            t.from_superblock,
            t.from_damaged_superblock,
            t.from_scan,
            t.from_lost_tree_found,
            t.bound_judged,
            t.bound_kept,
            t.bound_mappings,
            t.bound_kept_percent()
        );
    }
    let c = &st.clean_repair;
    outln!(
        "repair of undamaged images: {} repaired, {} of {} committed mappings recovered ({:.1}%), {} lost to the leaf-kind ambiguity repair documents",
        c.repaired,
        c.recovered_mappings,
        c.committed_mappings,
        c.recovered_percent(),
        c.lost_to_leaf_kind
    );
    let l = &st.check_leaks;
    outln!(
        "check's findings: {} images judged after commits, {} with leaks, {} leaked data blocks reported exactly",
        l.images,
        l.images_with_leaks,
        l.leaked_blocks
    );
    for (class, c) in &s.classes {
        outln!(
            "class {:<13} {:>6} runs {:>9} steps {:>9} crash images ({:>3.0}% remembered), {:>7.0} crash images/s a core",
            class.name(),
            c.runs,
            c.steps,
            c.crash_images,
            100.0 * c.crash_images_memo as f64 / c.crash_images.max(1) as f64,
            c.crash_images_per_core_s()
        );
    }
    for g in &s.coverage_gaps {
        outln!("COVERAGE GAP: {g}");
    }
    for g in &s.structure_gaps {
        outln!("STRUCTURE GAP: {g}");
    }
    for g in &s.oracle_gaps {
        outln!("ORACLE GAP: {g}");
    }
    for g in &s.failures {
        outln!("FAILURE {} x{} seeds {:?}\n{}", g.signature, g.count, g.seeds, g.first);
    }
    outln!("{}", if s.passed() { "PASSED" } else { "FAILED" });
}
