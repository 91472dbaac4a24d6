//! `thinsim kernel`: the real kernel as a second engine (the library's `kernel` module).
//! `--seed N` or `--seeds A..B` draws workloads and runs each three ways (Linux dm-thin in
//! user-mode Linux, thinsim's engine through the pool target's calls, the model);
//! `--workload FILE` replays a saved one. Every seed's workload is saved in its run
//! directory (`workload.json`), and a difference prints the op, both sides and the replay
//! command. `thinsim kernel-guest` is what the guest script runs; it is not for people.
//!
//! Exit codes: 0 no difference; 1 a difference; 2 usage, I/O or a missing kernel (a
//! missing kernel is a failure, never a silent pass).

use super::swarm::parse_range;
use clap::{Args, Subcommand};
use sim::kernel::differential::{self, KernelRun};
use sim::kernel::draw;
use sim::kernel::uml::UmlKernel;
use sim::kernel::workload::Workload;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// One seed.
    #[arg(long, conflicts_with_all = ["seeds", "workload"])]
    pub seed: Option<u64>,
    /// A range of seeds, A..B (B exclusive).
    #[arg(long, value_parser = parse_range, conflicts_with = "workload")]
    pub seeds: Option<(u64, u64)>,
    /// Replay a saved workload (a run directory's workload.json).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Ops per drawn workload.
    #[arg(long, default_value_t = 200)]
    pub ops: usize,
    /// The UML kernel binary (default: Debian's /usr/bin/linux.uml).
    #[arg(long)]
    pub linux: Option<PathBuf>,
    /// Its modules directory (default: the one under /usr/lib/uml/modules/).
    #[arg(long)]
    pub modules: Option<PathBuf>,
    /// Where the run directories go (one per seed: seed-N/).
    #[arg(long, default_value = "target/kernel-runs")]
    pub dir: PathBuf,
    /// Crash images judged per flush epoch of the kernel's logged metadata writes (0: no
    /// crash mode).
    #[arg(long, default_value_t = 4)]
    pub crash_images: usize,
    /// Keep the images of seeds without a difference (they are removed otherwise).
    #[arg(long)]
    pub keep: bool,
    /// Also write the campaign's throughput page (markdown) here (reports/bench/kernel.md).
    #[arg(long)]
    pub bench: Option<PathBuf>,
}

pub fn kernel(a: &KernelArgs) -> ExitCode {
    let k = match UmlKernel::find(a.linux.as_deref(), a.modules.as_deref()) {
        Ok(k) => k,
        Err(e) => return super::fail(e, 2),
    };
    let thinsim = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return super::fail(format!("cannot find this thinsim binary: {e}"), 2),
    };
    let workloads: Vec<Result<Workload, String>> = if let Some(p) = &a.workload {
        vec![Workload::read(p).map_err(|e| e.to_string())]
    } else {
        let (lo, hi) = a.seeds.or(a.seed.map(|s| (s, s + 1))).unwrap_or((0, 1));
        (lo..hi)
            .map(|s| {
                draw::draw(s, a.ops).map_err(|b| format!("seed {s}: drawing the workload: {}", b.1))
            })
            .collect()
    };
    println!("kernel: {} ({}), modules {}", k.linux.display(), k.version(), k.modules.display());
    let started = Instant::now();
    let (mut differences, mut ops, mut checkpoints) = (0usize, 0usize, 0usize);
    let mut runs: Vec<serde_json::Value> = Vec::new();
    for w in &workloads {
        let w = match w {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                differences += 1;
                continue;
            }
        };
        let dir = a.dir.join(format!("seed-{}", w.seed));
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("workload.json"), w.to_json()))
        {
            return super::fail(format!("{}: {e}", dir.display()), 2);
        }
        let t = Instant::now();
        let run = match differential::run_workload(&k, w, &dir, &thinsim, a.crash_images) {
            Ok(r) => r,
            Err(e) => return super::fail(format!("seed {}: {e}", w.seed), 2),
        };
        ops += run.ops;
        checkpoints += run.checkpoints;
        print_run(&run, w, &dir, t.elapsed().as_secs_f64());
        let record = run_record(&run, w);
        if let Err(e) = std::fs::write(dir.join("run.json"), format!("{record:#}\n")) {
            return super::fail(format!("{}: {e}", dir.display()), 2);
        }
        runs.push(record);
        if run.difference.is_some() {
            differences += 1;
        } else if !a.keep {
            remove_images(&dir);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = summary(&k, a, &runs, differences, secs);
    let path = a.dir.join("summary.json");
    if let Err(e) = std::fs::write(&path, format!("{summary:#}\n")) {
        return super::fail(format!("{}: {e}", path.display()), 2);
    }
    if let Some(b) = &a.bench {
        if let Err(e) =
            std::fs::write(b, bench_page(&summary, &std::env::args().collect::<Vec<_>>()))
        {
            return super::fail(format!("{}: {e}", b.display()), 2);
        }
    }
    println!(
        "{} workloads, {ops} ops, {checkpoints} checkpoints compared, {differences} with a difference, {:.1} s ({:.1} seeds/min); crash mode judged {} images, {:.0} per second of judging; {}",
        workloads.len(),
        secs,
        workloads.len() as f64 * 60.0 / secs.max(1e-9),
        summary["totals"]["crash_images"],
        summary["totals"]["crash_images_per_judge_second"].as_f64().unwrap_or(0.0),
        path.display()
    );
    if differences > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One seed's record in `run.json` and `summary.json`.
fn run_record(run: &KernelRun, w: &Workload) -> serde_json::Value {
    serde_json::json!({
        "seed": run.seed,
        "kernel": run.kernel,
        "prepopulated": w.shape.prepopulation.is_some(),
        "ops": run.ops,
        "checkpoints": run.checkpoints,
        "emulated_commits": run.emulated_commits,
        "verdict": if run.difference.is_some() { "difference" } else { "agreed" },
        "difference": run.difference.as_ref().map(|d| serde_json::json!({
            "kind": d.kind(),
            "op": d.op(),
            "detail": d.to_string(),
        })),
        "crash": run.crash,
        "reopened_in_kernel": run.reopened,
        "guest_seconds": run.guest_seconds,
        "judge_seconds": run.judge_seconds,
    })
}

/// The campaign's `summary.json`: the kernel, every seed, and the rates.
fn summary(
    k: &UmlKernel,
    a: &KernelArgs,
    runs: &[serde_json::Value],
    differences: usize,
    secs: f64,
) -> serde_json::Value {
    let sum = |f: &dyn Fn(&serde_json::Value) -> f64| runs.iter().map(f).sum::<f64>();
    let images: u64 = runs.iter().map(|r| r["crash"]["images"].as_u64().unwrap_or(0)).sum();
    let reopened: u64 = runs.iter().map(|r| r["reopened_in_kernel"].as_u64().unwrap_or(0)).sum();
    let judge = sum(&|r| r["judge_seconds"].as_f64().unwrap_or(0.0));
    let guest = sum(&|r| r["guest_seconds"].as_f64().unwrap_or(0.0));
    let per = |n: f64, d: f64| if d > 0.0 { n / d } else { 0.0 };
    serde_json::json!({
        "format_version": 1,
        "kernel": {
            "version": k.version(),
            "linux": k.linux.display().to_string(),
            "modules": k.modules.display().to_string(),
        },
        "ops_per_workload": a.ops,
        "crash_images_per_epoch": a.crash_images,
        "seeds": runs.len(),
        "differences": differences,
        "runs": runs,
        "totals": {
            "seconds": secs,
            "guest_seconds": guest,
            "judge_seconds": judge,
            "seeds_per_minute": per(runs.len() as f64 * 60.0, secs),
            "crash_images": images,
            "crash_images_reopened_in_kernel": reopened,
            "crash_images_per_seed": per(images as f64, runs.len() as f64),
            "crash_images_per_minute": per(images as f64 * 60.0, secs),
            "crash_images_per_judge_second": per(images as f64, judge),
        },
    })
}

/// The throughput page of a campaign, from its summary.
fn bench_page(s: &serde_json::Value, argv: &[String]) -> String {
    use std::fmt::Write as _;
    let t = &s["totals"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# `thinsim kernel`: throughput against Linux {} under user-mode Linux\n",
        s["kernel"]["version"].as_str().unwrap_or("?")
    );
    let cmd: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let _ = writeln!(
        o,
        "Written by `thinsim {}` (the figures are this run's; wall-clock figures vary with the\n\
         machine). Each seed is one UML boot for its ops and one for reopening crash images,\n\
         then the differential, crash mode and the data rules on the host.\n",
        cmd.join(" ")
    );
    o.push_str("| seed | start | ops | checkpoints | guest s | judge s | log entries | commits matched | crash images judged | data blocks verified | acks held | reopened in the kernel | verdict |\n");
    o.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in s["runs"].as_array().into_iter().flatten() {
        let c = &r["crash"];
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            r["seed"],
            if r["prepopulated"].as_bool() == Some(true) { "restored image" } else { "blank" },
            r["ops"],
            r["checkpoints"],
            f(&r["guest_seconds"]),
            f(&r["judge_seconds"]),
            c["entries"],
            c["commits"],
            c["images"],
            c["data_blocks_verified"],
            c["acks_checked"],
            r["reopened_in_kernel"],
            r["verdict"].as_str().unwrap_or("?"),
        );
    }
    let _ = writeln!(
        o,
        "\n- **Kernel seeds per minute:** {:.1} ({} seeds in {:.1} s; the guest took {:.1} s of it).\n\
         - **Crash images:** {} judged, {:.0} per seed, {:.0} per minute of the campaign, {:.0} per\n  \
         second of judging ({:.1} s); {} reopened in the kernel itself.\n\
         - The guest's ops dominate: each op costs about one process start under UML's ptrace.\n\
         - The log's length varies between runs of the same seed (the kernel's one-second commit\n  \
         clock), so the counts do; the verdict does not.",
        f(&t["seeds_per_minute"]),
        s["seeds"],
        f(&t["seconds"]),
        f(&t["guest_seconds"]),
        t["crash_images"],
        f(&t["crash_images_per_seed"]),
        f(&t["crash_images_per_minute"]),
        f(&t["crash_images_per_judge_second"]),
        f(&t["judge_seconds"]),
        t["crash_images_reopened_in_kernel"],
    );
    o
}

fn print_run(run: &KernelRun, w: &Workload, dir: &Path, secs: f64) {
    match &run.difference {
        None => {
            println!(
                "seed {}: agreed ({} ops, {} checkpoints, kernel {}, {secs:.1} s)",
                run.seed, run.ops, run.checkpoints, run.kernel
            );
            if let Some(c) = &run.crash {
                println!(
                    "  crash mode: {} log entries, {} flush epochs, {} commits matched, {} crash images judged ({} at the epoch's new commit; {} writes dropped, {} torn; {} at one of {} held-root-only superblocks, the kernel's defect)",
                    c.entries, c.epochs, c.commits, c.images, c.images_at_new_commit, c.writes_dropped, c.writes_torn, c.images_at_held_only_superblock, c.held_only_superblocks
                );
                println!(
                    "  data: {} writes, {} flushes; {} published blocks found durable ({} still in flight at a commit, {} quiescent commits); {} acks held, covering {} blocks; {} crash images reopened in the kernel",
                    c.data_writes, c.data_flushes, c.data_blocks_verified, c.data_pending_at_commit, c.quiescent_commits, c.acks_checked, c.ack_blocks_checked, run.reopened
                );
            }
        }
        Some(d) => {
            println!("seed {}: DIFFERENCE at {d}", run.seed);
            let lo = d.op().saturating_sub(3);
            for (i, op) in w.ops.iter().enumerate().skip(lo).take(d.op() + 1 - lo) {
                println!("  op {i}: {}", serde_json::to_string(op).unwrap_or_default());
            }
            match &run.sides {
                Some(Ok(s)) => {
                    println!("  both sides: {} and {}", s.model.display(), s.kernel.display());
                    for line in s.excerpt.lines() {
                        println!("    {line}");
                    }
                }
                Some(Err(e)) => println!("  both sides: not written ({e})"),
                None => {}
            }
            println!("  run directory: {}", dir.display());
            println!("  replay: thinsim kernel --workload {}", dir.join("workload.json").display());
        }
    }
}

fn remove_images(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "img") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct GuestArgs {
    #[command(subcommand)]
    pub what: GuestCommand,
}

#[derive(Debug, Subcommand)]
pub enum GuestCommand {
    /// Write the first 4 KiB of each block of a run.
    Write {
        dev: PathBuf,
        #[arg(long)]
        block_bytes: u64,
        #[arg(long)]
        vblock: u64,
        #[arg(long)]
        blocks: u64,
        #[arg(long)]
        tag: u64,
        /// Each write O_DSYNC (FUA).
        #[arg(long)]
        fua: bool,
    },
    /// Discard a run of blocks.
    Discard {
        dev: PathBuf,
        #[arg(long)]
        block_bytes: u64,
        #[arg(long)]
        vblock: u64,
        #[arg(long)]
        blocks: u64,
        /// Then flush through the device.
        #[arg(long)]
        flush: bool,
    },
    /// fsync the device.
    Flush { dev: PathBuf },
}

pub fn guest(a: &GuestArgs) -> ExitCode {
    use sim::kernel::guest;
    let r = match &a.what {
        GuestCommand::Write { dev, block_bytes, vblock, blocks, tag, fua } => {
            guest::write(dev, *block_bytes, *vblock, *blocks, *tag, *fua)
        }
        GuestCommand::Discard { dev, block_bytes, vblock, blocks, flush } => {
            guest::discard(dev, *block_bytes, *vblock, *blocks).and_then(|()| {
                if *flush {
                    guest::flush(dev)
                } else {
                    Ok(())
                }
            })
        }
        GuestCommand::Flush { dev } => guest::flush(dev),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(e, 1),
    }
}
