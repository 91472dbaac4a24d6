//! `thinsim bench-campaign`: the main job's throughput per class of run, this build against
//! a baseline build, side by side on the same seeds (reports/bench/campaign.md).
//!
//! Each round runs the same seed range as a `swarm` subprocess of the baseline binary and of
//! this one, in turn (A B A B …), so drift in the machine's speed falls on both; each side's
//! figures are read from its `summary.json` (per class: runs, run seconds summed over
//! threads, crash images and the ones judged by a remembered verification) and the page
//! quotes each figure's median over rounds. Without `--baseline` only this build is run.
//!
//! Exit codes: 0 written; 1 a swarm failed (its output is printed); 2 usage or I/O.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Debug, Args)]
pub struct BenchCampaignArgs {
    /// The seed range each side runs.
    #[arg(long, value_parser = super::args::parse_range, default_value = "0..4000")]
    pub seeds: (u64, u64),
    /// Worker threads per side.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Rounds (each runs both sides once).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A thinsim binary built from the code to compare against (e.g. the previous commit).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// A name for the baseline on the page (e.g. its commit).
    #[arg(long, default_value = "baseline")]
    pub baseline_name: String,
    /// Where the page goes.
    #[arg(long, default_value = "reports/bench/campaign.md")]
    pub out: PathBuf,
}

/// One class's figures from one swarm.
#[derive(Clone, Debug, Default)]
struct Class {
    name: String,
    runs: u64,
    /// Seconds its runs took, summed over threads.
    run_seconds: f64,
    crash_images: u64,
    crash_images_memo: u64,
}

/// One side's figures from one round.
#[derive(Clone, Debug, Default)]
struct Side {
    wall_seconds: f64,
    crash_images: u64,
    classes: Vec<Class>,
    recoveries: u64,
    recoveries_memo: u64,
}

fn swarm(bin: &Path, a: &BenchCampaignArgs, dir: &Path) -> Result<Side, String> {
    let report = dir.join("report");
    let out = Command::new(bin)
        .args(["swarm", "--seeds", &format!("{}..{}", a.seeds.0, a.seeds.1)])
        .args(["--jobs", &a.jobs.to_string(), "--report"])
        .arg(&report)
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} swarm failed:\n{}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(report.join("summary.json"))
        .map_err(|e| format!("{}: {e}", report.display()))?;
    let s: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let classes = s["classes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, c)| Class {
            name: k.clone(),
            runs: n(&c["runs"]),
            run_seconds: c["run_seconds"].as_f64().unwrap_or(0.0),
            crash_images: n(&c["crash_images"]),
            crash_images_memo: n(&c["crash_images_memo"]),
        })
        .collect();
    Ok(Side {
        wall_seconds: s["wall_seconds"].as_f64().unwrap_or(0.0),
        crash_images: n(&s["stats"]["crash_images_checked"]),
        classes,
        recoveries: n(&s["stats"]["recoveries"]),
        recoveries_memo: n(&s["stats"]["recoveries_memo"]),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn bench_campaign(a: &BenchCampaignArgs) -> ExitCode {
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return super::fail(format!("cannot find this thinsim binary: {e}"), 2),
    };
    // The swarms' reports, removed at the end (a process id names it: two benches at once
    // do not share it).
    let tmp = std::env::temp_dir().join(format!("thinsim-bench-campaign-{}", std::process::id()));
    let code = rounds(a, &me, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    code
}

fn rounds(a: &BenchCampaignArgs, me: &Path, tmp: &Path) -> ExitCode {
    let (mut base, mut cur) = (Vec::new(), Vec::new());
    for round in 0..a.rounds.max(1) {
        if let Some(b) = &a.baseline {
            match swarm(b, a, &tmp.join(format!("base-{round}"))) {
                Ok(s) => base.push(s),
                Err(e) => return super::fail(e, 1),
            }
        }
        match swarm(me, a, &tmp.join(format!("cur-{round}"))) {
            Ok(s) => cur.push(s),
            Err(e) => return super::fail(e, 1),
        }
        eprintln!("round {} of {} done", round + 1, a.rounds.max(1));
    }
    let page = page(a, &base, &cur, &std::env::args().collect::<Vec<_>>());
    if let Err(e) = std::fs::write(&a.out, &page) {
        return super::fail(format!("{}: {e}", a.out.display()), 2);
    }
    out!("{page}");
    ExitCode::SUCCESS
}

/// Medians over rounds of: crash images/s overall, and per class runs/s a core, crash images
/// per core-second and the share remembered.
struct Figures {
    crash_images_per_s: f64,
    classes: Vec<(String, u64, f64, f64, f64)>,
    recoveries_memo_share: f64,
}

fn figures(sides: &[Side]) -> Option<Figures> {
    let first = sides.first()?;
    let per = |n: f64, d: f64| if d > 0.0 { n / d } else { 0.0 };
    let classes = first
        .classes
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let col = |f: &dyn Fn(&Class) -> f64| {
                median(sides.iter().filter_map(|s| s.classes.get(i)).map(f).collect())
            };
            (
                first.name.clone(),
                first.runs,
                col(&|c| per(c.runs as f64, c.run_seconds)),
                col(&|c| per(c.crash_images as f64, c.run_seconds)),
                100.0 * per(first.crash_images_memo as f64, first.crash_images as f64),
            )
        })
        .collect();
    Some(Figures {
        crash_images_per_s: median(
            sides.iter().map(|s| per(s.crash_images as f64, s.wall_seconds)).collect(),
        ),
        classes,
        recoveries_memo_share: 100.0 * per(first.recoveries_memo as f64, first.recoveries as f64),
    })
}

fn page(a: &BenchCampaignArgs, base: &[Side], cur: &[Side], argv: &[String]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let cmd: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let _ = writeln!(o, "# Campaign throughput per class of run\n");
    let _ = writeln!(
        o,
        "Written by `thinsim {}`: seeds {}..{} with {} jobs, {} round(s), each side a `swarm`\n\
         subprocess in turn; medians over rounds. \"Per core-second\" divides by the seconds\n\
         the class's runs took summed over threads. \"Remembered\" is the share of crash images\n\
         judged by a remembered verification (`runner::memo`) instead of in full.\n",
        cmd.join(" "),
        a.seeds.0,
        a.seeds.1,
        a.jobs,
        a.rounds.max(1)
    );
    let (Some(c), b) = (figures(cur), figures(base)) else { return o };
    let _ = writeln!(
        o,
        "| class | runs | {0} runs / core-s | this build runs / core-s | {0} crash images / core-s | this build crash images / core-s | × | {0} remembered | this build remembered |",
        a.baseline_name
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, (name, runs, rps, ips, memo)) in c.classes.iter().enumerate() {
        let old = b.as_ref().and_then(|b| b.classes.get(i));
        let _ = writeln!(
            o,
            "| {name} | {runs} | {} | {rps:.1} | {} | **{ips:.0}** | {} | {} | {memo:.0}% |",
            old.map_or("–".into(), |x| format!("{:.1}", x.2)),
            old.map_or("–".into(), |x| format!("{:.0}", x.3)),
            old.map_or("–".into(), |x| format!("{:.1}×", ips / x.3.max(1e-9))),
            old.map_or("–".into(), |x| format!("{:.0}%", x.4)),
        );
    }
    let _ = writeln!(
        o,
        "\n- **Crash images per second, whole campaign:** {} → **{:.0}**.\n\
         - Recoveries judged by a remembered verification: {} → {:.0}%.\n\n\
         Where each class's time goes, against the targets, and the next steps: \
         [cost-profile.md](cost-profile.md).",
        b.as_ref().map_or("–".into(), |b| format!("{:.0}", b.crash_images_per_s)),
        c.crash_images_per_s,
        b.as_ref().map_or("–".into(), |b| format!("{:.0}%", b.recoveries_memo_share)),
        c.recoveries_memo_share
    );
    o
}
