//! `thinsim kernel`: the real kernel as a second engine (the library's `kernel` module).
//! `--seed N` or `--seeds A..B` draws workloads and runs each three ways (Linux dm-thin in
//! user-mode Linux, thinsim's engine through the pool target's calls, the model);
//! `--workload FILE` replays a saved one. Every seed's workload is saved in its run
//! directory (`workload.json`), and a difference prints the op, both sides and the replay
//! command. `thinsim kernel-guest` is what the guest script runs; it is not for people.
//!
//! Exit codes: 0 no difference; 1 a difference; 2 usage, I/O or a missing kernel (a
//! missing kernel is a failure, never a silent pass).

use super::args::parse_range;
use clap::{Args, Subcommand};
use sim::kernel::defects::{Defect, DefectStatus};
use sim::kernel::differential::{self, KernelRun};
use sim::kernel::draw;
use sim::kernel::faults::FaultTally;
use sim::kernel::structure::{ShapeEvent, Structure};
use sim::kernel::uml::{KernelChoice, Origin, UmlError, UmlKernel};
use sim::kernel::workload::Workload;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// One seed.
    #[arg(long, conflicts_with_all = ["seeds", "workload", "judge"])]
    pub seed: Option<u64>,
    /// A range of seeds, A..B (B exclusive).
    #[arg(long, value_parser = parse_range, conflicts_with_all = ["workload", "judge"])]
    pub seeds: Option<(u64, u64)>,
    /// Replay a saved workload (a run directory's workload.json).
    #[arg(long, conflicts_with = "judge")]
    pub workload: Option<PathBuf>,
    /// Judge a kept run directory's log on its own, with no kernel: its workload.json, the
    /// initial.img it started from and its log.img.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// Ops per drawn workload.
    #[arg(long, default_value_t = 200)]
    pub ops: usize,
    /// Which kernel: auto (the newest one sim/kernel/build-uml.sh built, else Debian's where
    /// this host can boot it), built, or debian. Repeat to run the same seeds on each, side
    /// by side (run directories then go under DIR/<kernel release>/).
    #[arg(long = "kernel", value_name = "auto|built|debian")]
    pub kernels: Vec<KernelChoice>,
    /// A UML kernel binary (instead of --kernel).
    #[arg(long)]
    pub linux: Option<PathBuf>,
    /// Its modules directory (default: its directory's modules/<release>/, else Debian's).
    #[arg(long, requires = "linux")]
    pub modules: Option<PathBuf>,
    /// A kernel this host cannot boot (Debian's 6.1 on a host with AMX) is reported as
    /// skipped instead of failing the campaign; one kernel must still run.
    #[arg(long)]
    pub skip_unbootable: bool,
    /// Whether the kernel carries the held-root defect (present: its symptom is counted;
    /// fixed: its symptom fails the run). Default: from the kernel's version.
    #[arg(long, value_name = "present|fixed")]
    pub held_root_defect: Option<DefectStatus>,
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

/// The kernels to run, and the ones skipped with why.
fn kernels(a: &KernelArgs) -> Result<(Vec<UmlKernel>, Vec<serde_json::Value>), UmlError> {
    if let Some(linux) = &a.linux {
        return Ok((
            vec![UmlKernel::find(KernelChoice::Auto, Some(linux), a.modules.as_deref())?],
            vec![],
        ));
    }
    let choices = if a.kernels.is_empty() { vec![KernelChoice::Auto] } else { a.kernels.clone() };
    let (mut run, mut skipped) = (Vec::<UmlKernel>::new(), Vec::new());
    for c in choices {
        match UmlKernel::choose(c) {
            Ok(k) if run.iter().any(|r| r.linux == k.linux) => {}
            Ok(k) => run.push(k),
            Err(e @ UmlError::HostUnsupported { .. }) if a.skip_unbootable => {
                outln!("kernel: skipped {c:?}: {e}");
                skipped.push(serde_json::json!({ "kernel": format!("{c:?}").to_lowercase(), "reason": e.to_string() }));
            }
            Err(e) => return Err(e),
        }
    }
    if run.is_empty() {
        return Err(UmlError::Missing(
            "no kernel that this host can boot (sim/kernel/build-uml.sh builds one)".into(),
        ));
    }
    Ok((run, skipped))
}

pub fn kernel(a: &KernelArgs) -> ExitCode {
    if let Some(dir) = &a.judge {
        return judge(a, dir);
    }
    let (kernels, skipped) = match kernels(a) {
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
    let nested = kernels.len() > 1;
    // Each kernel's campaign on its own thread: a UML guest runs on one host core, so two
    // kernels side by side take the time of one on a machine with two cores. The results
    // come back in the order the kernels were named.
    let results: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = kernels
            .iter()
            .map(|k| {
                let dir = if nested { a.dir.join(k.version()) } else { a.dir.clone() };
                let (workloads, thinsim, skipped) = (&workloads, &thinsim, &skipped);
                s.spawn(move || campaign(a, k, workloads, &dir, thinsim, skipped))
            })
            .collect();
        runs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut summaries = Vec::new();
    let mut differences = 0;
    for r in results {
        match r {
            Ok((summary, d)) => {
                differences += d;
                summaries.push(summary);
            }
            Err(code) => return code,
        }
    }
    if nested {
        let all = serde_json::json!({
            "format_version": 2,
            "kernels": summaries,
            "skipped": skipped,
            "differences": differences,
        });
        let path = a.dir.join("summary.json");
        if let Err(e) = std::fs::write(&path, format!("{all:#}\n")) {
            return super::fail(format!("{}: {e}", path.display()), 2);
        }
        outln!("{}", side_by_side(&summaries).trim_end());
    }
    if let Some(b) = &a.bench {
        let page = bench_page(&summaries, &skipped, &std::env::args().collect::<Vec<_>>());
        if let Err(e) = std::fs::write(b, page) {
            return super::fail(format!("{}: {e}", b.display()), 2);
        }
    }
    if differences > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--judge DIR`: crash mode on a kept run's own files.
fn judge(a: &KernelArgs, dir: &Path) -> ExitCode {
    let record: serde_json::Value = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let kernel = record["kernel"].as_str().unwrap_or("unknown").to_string();
    let status =
        a.held_root_defect.unwrap_or_else(|| Defect::HeldRootOutsideCommit.status(&kernel));
    match differential::judge_saved(dir, a.crash_images.max(1), status, &kernel) {
        Err(e) => super::fail(e, 2),
        Ok(v) => {
            let c = &v.stats;
            outln!(
                "judged {} (kernel {kernel}, held-root defect {}): {} log entries, {} commits matched, {} crash images judged, {} held-root-only superblocks",
                dir.display(),
                status.name(),
                c.entries,
                c.commits,
                c.images,
                c.held_only_superblocks
            );
            match v.finding {
                None if c.commits > 0 && c.images > 0 => {
                    outln!("no finding");
                    ExitCode::SUCCESS
                }
                None => super::fail("crash mode judged nothing (no commit or no crash image)", 1),
                Some(f) => {
                    outln!("FINDING: {f}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// One kernel's campaign in `dir`: its summary (written there) and how many seeds differed;
/// `Err` is the exit code of a run that could not be made.
fn campaign(
    a: &KernelArgs,
    k: &UmlKernel,
    workloads: &[Result<Workload, String>],
    dir: &Path,
    thinsim: &Path,
    skipped: &[serde_json::Value],
) -> Result<(serde_json::Value, usize), ExitCode> {
    outln!(
        "kernel: {} ({}, {}), modules {}",
        k.linux.display(),
        k.version(),
        k.origin.name(),
        k.modules.display()
    );
    let started = Instant::now();
    let (mut differences, mut ops, mut checkpoints) = (0usize, 0usize, 0usize);
    let mut runs: Vec<serde_json::Value> = Vec::new();
    for w in workloads {
        let w = match w {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                differences += 1;
                continue;
            }
        };
        let seed_dir = dir.join(format!("seed-{}", w.seed));
        if let Err(e) = std::fs::create_dir_all(&seed_dir)
            .and_then(|()| std::fs::write(seed_dir.join("workload.json"), w.to_json()))
        {
            return Err(super::fail(format!("{}: {e}", seed_dir.display()), 2));
        }
        let t = Instant::now();
        let run = match differential::run_workload(
            k,
            w,
            &seed_dir,
            thinsim,
            a.crash_images,
            a.held_root_defect,
        ) {
            Ok(r) => r,
            Err(e) => return Err(super::fail(format!("seed {}: {e}", w.seed), 2)),
        };
        ops += run.ops;
        checkpoints += run.checkpoints;
        print_run(&run, w, &seed_dir, t.elapsed().as_secs_f64(), &replay_args(a, k));
        let record = run_record(&run, w);
        if let Err(e) = std::fs::write(seed_dir.join("run.json"), format!("{record:#}\n")) {
            return Err(super::fail(format!("{}: {e}", seed_dir.display()), 2));
        }
        runs.push(record);
        if run.difference.is_some() {
            differences += 1;
        } else if !a.keep {
            remove_images(&seed_dir);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = summary(k, a, &runs, differences, secs, skipped);
    let path = dir.join("summary.json");
    if let Err(e) = std::fs::write(&path, format!("{summary:#}\n")) {
        return Err(super::fail(format!("{}: {e}", path.display()), 2));
    }
    outln!(
        "{} workloads, {ops} ops, {checkpoints} checkpoints compared, {differences} with a difference, {:.1} s ({:.1} seeds/min); crash mode judged {} images, {:.0} per second of judging; {}",
        workloads.len(),
        secs,
        workloads.len() as f64 * 60.0 / secs.max(1e-9),
        summary["totals"]["crash_images"],
        summary["totals"]["crash_images_per_judge_second"].as_f64().unwrap_or(0.0),
        path.display()
    );
    Ok((summary, differences))
}

/// The arguments that replay a run on the same kernel with the same rule.
fn replay_args(a: &KernelArgs, k: &UmlKernel) -> String {
    let mut s = k.args();
    if let Some(h) = a.held_root_defect {
        s.push_str(&format!(" --held-root-defect {}", h.name()));
    }
    s
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
        "held_snapshot_read_with_m": {
            "checkpoints": run.held.checkpoints,
            "live_blocks_damaged": run.held.live_blocks_damaged,
            "mappings": run.held.mappings,
        },
        "structure": run.structure.to_json(),
        "faults": run.faults.to_json(),
        "exhaustions": run.exhaustions.iter().map(|x| serde_json::json!({
            "created": x.created,
            "refused": x.refused,
            "engine_full_at": x.engine_full_at,
            "engine_free_after_blocks": x.engine_free_after_blocks,
            "drift": x.drift(),
        })).collect::<Vec<_>>(),
        "features": serde_json::to_value(w.shape.features).unwrap_or_default(),
        "held_root_defect": run.held_root.name(),
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
    skipped: &[serde_json::Value],
) -> serde_json::Value {
    let sum = |f: &dyn Fn(&serde_json::Value) -> f64| runs.iter().map(f).sum::<f64>();
    let images: u64 = runs.iter().map(|r| r["crash"]["images"].as_u64().unwrap_or(0)).sum();
    let reopened: u64 = runs.iter().map(|r| r["reopened_in_kernel"].as_u64().unwrap_or(0)).sum();
    let judge = sum(&|r| r["judge_seconds"].as_f64().unwrap_or(0.0));
    let m_read: u64 = runs
        .iter()
        .map(|r| r["held_snapshot_read_with_m"]["checkpoints"].as_u64().unwrap_or(0))
        .sum();
    let guest = sum(&|r| r["guest_seconds"].as_f64().unwrap_or(0.0));
    let mut structure = Structure::default();
    let mut faults = FaultTally::default();
    for r in runs {
        structure.merge(&Structure::from_json(&r["structure"]));
        faults.merge(&FaultTally::from_json(&r["faults"]));
    }
    let per = |n: f64, d: f64| if d > 0.0 { n / d } else { 0.0 };
    let exhaustions: Vec<&serde_json::Value> =
        runs.iter().filter_map(|r| r["exhaustions"].as_array()).flatten().collect();
    let max_drift = exhaustions.iter().filter_map(|x| x["drift"].as_u64()).max().unwrap_or(0);
    let held: u64 =
        runs.iter().map(|r| r["crash"]["held_only_superblocks"].as_u64().unwrap_or(0)).sum();
    let held_images: u64 = runs
        .iter()
        .map(|r| r["crash"]["images_at_held_only_superblock"].as_u64().unwrap_or(0))
        .sum();
    let status =
        a.held_root_defect.unwrap_or_else(|| Defect::HeldRootOutsideCommit.status(&k.version()));
    let (source, build_seconds) = match &k.origin {
        Origin::Built { source, build_seconds } => (source.clone(), *build_seconds),
        Origin::Debian => ("Debian user-mode-linux".to_string(), None),
        Origin::Given => ("--linux".to_string(), None),
    };
    serde_json::json!({
        "format_version": 1,
        "kernel": {
            "version": k.version(),
            "origin": k.origin.name(),
            "source": source,
            "build_seconds": build_seconds,
            "linux": k.linux.display().to_string(),
            "modules": k.modules.display().to_string(),
        },
        "known_defects": {
            Defect::HeldRootOutsideCommit.name(): {
                "status": status.name(),
                "report": Defect::HeldRootOutsideCommit.report(),
                "held_only_superblocks": held,
                "images_at_held_only_superblock": held_images,
            },
        },
        "skipped_kernels": skipped,
        "ops_per_workload": a.ops,
        "crash_images_per_epoch": a.crash_images,
        "seeds": runs.len(),
        "differences": differences,
        "runs": runs,
        "structure": structure.to_json(),
        "faults": faults.to_json(),
        "totals": {
            "seconds": secs,
            "guest_seconds": guest,
            "judge_seconds": judge,
            "seeds_per_minute": per(runs.len() as f64 * 60.0, secs),
            "crash_images": images,
            "crash_images_reopened_in_kernel": reopened,
            "held_snapshots_read_with_m": m_read,
            "crash_images_per_seed": per(images as f64, runs.len() as f64),
            "crash_images_per_minute": per(images as f64 * 60.0, secs),
            "crash_images_per_judge_second": per(images as f64, judge),
            "metadata_exhaustions": exhaustions.len(),
            "metadata_exhaustion_most_drift": max_drift,
        },
    })
}

/// The table of seeds × kernels: each kernel's verdict, guest seconds, crash images judged
/// and held-root-only superblocks (with the defect's status on that kernel).
fn side_by_side(summaries: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    o.push_str("| seed |");
    for s in summaries {
        let _ = write!(
            o,
            " {} ({}; held-root defect {}) |",
            s["kernel"]["version"].as_str().unwrap_or("?"),
            s["kernel"]["origin"].as_str().unwrap_or("?"),
            s["known_defects"][Defect::HeldRootOutsideCommit.name()]["status"]
                .as_str()
                .unwrap_or("?"),
        );
    }
    o.push_str("\n|---:|");
    o.push_str(&"---|".repeat(summaries.len()));
    o.push('\n');
    let seeds: Vec<u64> = summaries
        .first()
        .and_then(|s| s["runs"].as_array())
        .map(|r| r.iter().filter_map(|r| r["seed"].as_u64()).collect())
        .unwrap_or_default();
    for seed in seeds {
        let _ = write!(o, "| {seed} |");
        for s in summaries {
            let run = s["runs"].as_array().and_then(|r| r.iter().find(|r| r["seed"] == seed));
            match run {
                Some(r) => {
                    let _ = write!(
                        o,
                        " {}, {:.0} s, {} crash images, {} held-root-only superblocks |",
                        r["verdict"].as_str().unwrap_or("?"),
                        r["guest_seconds"].as_f64().unwrap_or(0.0)
                            + r["judge_seconds"].as_f64().unwrap_or(0.0),
                        r["crash"]["images"],
                        r["crash"]["held_only_superblocks"],
                    );
                }
                None => o.push_str(" not run |"),
            }
        }
        o.push('\n');
    }
    o
}

/// The throughput page of a campaign (one or more kernels), from its summaries.
fn bench_page(
    summaries: &[serde_json::Value],
    skipped: &[serde_json::Value],
    argv: &[String],
) -> String {
    use std::fmt::Write as _;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let mut o = String::new();
    let names: Vec<&str> =
        summaries.iter().map(|s| s["kernel"]["version"].as_str().unwrap_or("?")).collect();
    let _ = writeln!(
        o,
        "# `thinsim kernel`: throughput against Linux {} under user-mode Linux\n",
        names.join(" and ")
    );
    let cmd: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let concurrent = if summaries.len() > 1 {
        " The kernels ran side by side, one thread each (a guest uses one host core), so each\n\
         kernel's seconds are measured while the other ran."
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "Written by `thinsim {}` (the figures are this run's; wall-clock figures vary with the\n\
         machine). Each seed is one UML boot for its ops and one for reopening crash images,\n\
         then the differential, crash mode and the data rules on the host.{concurrent}\n",
        cmd.join(" ")
    );
    if summaries.len() > 1 {
        o.push_str("## Side by side: the same seeds on each kernel\n\n");
        o.push_str(&side_by_side(summaries));
        o.push('\n');
    }
    for sk in skipped {
        let _ = writeln!(
            o,
            "- Skipped on this host: {}: {}\n",
            sk["kernel"].as_str().unwrap_or("?"),
            sk["reason"].as_str().unwrap_or("?")
        );
    }
    for s in summaries {
        let t = &s["totals"];
        let kern = &s["kernel"];
        let defect = &s["known_defects"][Defect::HeldRootOutsideCommit.name()];
        let _ = writeln!(
            o,
            "## Linux {} ({}: {})\n",
            kern["version"].as_str().unwrap_or("?"),
            kern["origin"].as_str().unwrap_or("?"),
            kern["source"].as_str().unwrap_or("?"),
        );
        if let Some(b) = kern["build_seconds"].as_u64() {
            let _ = writeln!(o, "Built by `sim/kernel/build-uml.sh` in {b} s on this machine (cached after that).\n");
        }
        o.push_str("| seed | start | ops | checkpoints | guest s | judge s | log entries | commits matched | crash images judged | data blocks verified | acks held | reopened in the kernel | held-root-only superblocks | verdict |\n");
        o.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in s["runs"].as_array().into_iter().flatten() {
            let c = &r["crash"];
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
                c["held_only_superblocks"],
                r["verdict"].as_str().unwrap_or("?"),
            );
        }
        let _ = writeln!(
            o,
            "\n### What the kernel's images show it reached\n\n{}\nCounted from committed checkpoint images\n\
             only, so a lower bound: a split undone before the next checkpoint is not seen.\n",
            structure_table(&Structure::from_json(&s["structure"]))
        );
        let _ = writeln!(
            o,
            "\n### Pool modes and error paths reached\n\n{}\nA metadata fault window (`flakey error_writes`\n\
             or the `error` target under the pool's metadata device) opens after a checkpoint; its\n\
             failing commit, the abort, the ops in read-only or fail mode, and the heal (the metadata\n\
             taken out and judged, needs_check cleared, the pool reopened) are counted as far as the\n\
             kernel answered as the emulation expected. A metadata exhaustion (`create_thin` messages\n\
             until the pool runs out of metadata space and refuses one) and the metadata growth that\n\
             ends it are counted the same way.\n",
            FaultTally::from_json(&s["faults"]).table()
        );
        let _ = writeln!(
            o,
            "\n- **Kernel seeds per minute:** {:.1} ({} seeds in {:.1} s; the guest took {:.1} s of it).\n\
             - **Crash images:** {} judged, {:.0} per seed, {:.0} per minute of the campaign, {:.0} per\n  \
             second of judging ({:.1} s); {} reopened in the kernel itself.\n\
             - **Held snapshots read with `-m`:** {} checkpoints held one; each was read by `dump -m`,\n  \
             `ls -m` and `check -m` with the live metadata made unreadable, and matched the model.\n\
             - **Held-root defect** ({}): {} on this kernel; {} superblocks changed only the held\n  \
             root, {} crash images opened at one ({}).\n\
             - **Metadata exhaustions:** {}; the kernel's count of creates was at most {} off the\n  \
             engine's own (the bound is {}).\n\
             - The guest's ops dominate: each op costs about one process start under UML's ptrace.\n\
             - The log's length varies between runs of the same seed (the kernel's one-second commit\n  \
             clock), so the counts do; the verdict does not.\n",
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
            t["held_snapshots_read_with_m"],
            Defect::HeldRootOutsideCommit.report(),
            defect["status"].as_str().unwrap_or("?"),
            defect["held_only_superblocks"],
            defect["images_at_held_only_superblock"],
            match defect["status"].as_str() {
                Some("fixed") => "any would have failed the run: the defect is fixed here",
                Some("present") => "counted and explained: the kernel has the defect",
                _ => "counted: whether this kernel has the fix is not known",
            },
            t["metadata_exhaustions"],
            t["metadata_exhaustion_most_drift"],
            sim::kernel::draw::EXHAUST_DRIFT_BOUND,
        );
    }
    o
}

fn print_run(run: &KernelRun, w: &Workload, dir: &Path, secs: f64, replay: &str) {
    // One write for the whole record, so that kernels run side by side never interleave
    // inside one seed's lines.
    let mut t = String::new();
    match &run.difference {
        None => {
            let _ = writeln!(
                t,
                "seed {}: agreed ({} ops, {} checkpoints, kernel {}, {secs:.1} s)",
                run.seed, run.ops, run.checkpoints, run.kernel
            );
            if let Some(c) = &run.crash {
                let _ = writeln!(
                t,
                    "  crash mode: {} log entries, {} flush epochs, {} commits matched, {} crash images judged ({} at the epoch's new commit; {} writes dropped, {} torn; {} at one of {} held-root-only superblocks; held-root defect {} on this kernel)",
                    c.entries, c.epochs, c.commits, c.images, c.images_at_new_commit, c.writes_dropped, c.writes_torn, c.images_at_held_only_superblock, c.held_only_superblocks, run.held_root.name()
                );
                let _ = writeln!(
                t,
                    "  data: {} writes, {} flushes; {} published blocks found durable ({} still in flight at a commit, {} quiescent commits); {} acks held, covering {} blocks; {} crash images reopened in the kernel",
                    c.data_writes, c.data_flushes, c.data_blocks_verified, c.data_pending_at_commit, c.quiescent_commits, c.acks_checked, c.ack_blocks_checked, run.reopened
                );
            }
            let _ = writeln!(t, "  structure: {}", structure_line(&run.structure));
            if !run.faults.is_empty() {
                let _ = writeln!(t, "  faults: {}", run.faults.line());
            }
            for x in &run.exhaustions {
                let _ = writeln!(
                    t,
                    "  metadata exhaustion: {} devices created, then {}; the engine's own count is {} off",
                    x.created,
                    if x.refused { "out of metadata space" } else { "none refused" },
                    x.drift()
                );
            }
            if run.held.checkpoints > 0 {
                let _ = writeln!(
                    t,
                    "  -m: {} checkpoints' held snapshots ({} mappings) read by dump/ls/check -m with {} live-only blocks made unreadable",
                    run.held.checkpoints, run.held.mappings, run.held.live_blocks_damaged
                );
            }
        }
        Some(d) => {
            let _ = writeln!(t, "seed {}: DIFFERENCE at {d}", run.seed);
            let lo = d.op().saturating_sub(3);
            for (i, op) in w.ops.iter().enumerate().skip(lo).take(d.op() + 1 - lo) {
                let _ = writeln!(t, "  op {i}: {}", serde_json::to_string(op).unwrap_or_default());
            }
            match &run.sides {
                Some(Ok(s)) => {
                    let _ = writeln!(
                        t,
                        "  both sides: {} and {}",
                        s.model.display(),
                        s.kernel.display()
                    );
                    for line in s.excerpt.lines() {
                        let _ = writeln!(t, "    {line}");
                    }
                }
                Some(Err(e)) => {
                    let _ = writeln!(t, "  both sides: not written ({e})");
                }
                None => {}
            }
            let _ = writeln!(t, "  run directory: {}", dir.display());
            let _ = writeln!(
                t,
                "  replay: thinsim kernel --workload {} {replay}",
                dir.join("workload.json").display()
            );
        }
    }
    out!("{t}");
}

/// One line of what the kernel's checkpoint images show: the gauges, then every event seen
/// (an event not listed was not seen).
fn structure_line(s: &Structure) -> String {
    let g = &s.gauges;
    let seen: Vec<String> = ShapeEvent::ALL
        .iter()
        .filter(|&&e| s.count(e) > 0)
        .map(|&e| format!("{} {}", e.name(), s.count(e)))
        .collect();
    format!(
        "{} images; at most {} devices, heights details {} top {} mapping {}, {} mapping leaves, {} shared nodes, bitmaps data {} metadata {}, {} metadata blocks used, overflow entries data {} metadata {}; events: {}",
        s.images,
        g.devices,
        g.details_height,
        g.top_height,
        g.mapping_height,
        g.mapping_leaves,
        g.shared_mapping_nodes,
        g.data_bitmaps,
        g.metadata_bitmaps,
        g.metadata_blocks_used,
        g.data_overflow_entries,
        g.metadata_overflow_entries,
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    )
}

/// The campaign's structure table (markdown): each event's count between consecutive
/// checkpoint images, and the gauges' maxima.
fn structure_table(s: &Structure) -> String {
    let mut o = String::from(
        "| structural event (between consecutive checkpoint images) | count |\n|---|---:|\n",
    );
    for e in ShapeEvent::ALL {
        let _ = writeln!(o, "| `{}` | {} |", e.name(), s.count(e));
    }
    let _ = writeln!(o, "\n{}", structure_line(s));
    o
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
    /// `create_thin` messages to a pool from `--first` on, until one fails or `--limit`
    /// succeeded; prints how many succeeded.
    CreateThins {
        pool: String,
        #[arg(long)]
        first: u64,
        #[arg(long)]
        limit: u64,
    },
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
        GuestCommand::CreateThins { pool, first, limit } => {
            let (created, r) = guest::create_thins(pool, *first, *limit);
            println!("{created}");
            r
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(e, 1),
    }
}
