//! `thinsim bench-tools`: restore, dump and check of large pools, thinsim side by side with
//! thin-provisioning-tools 0.9.0 in one run. Every operation runs as a child process, timed
//! by wall clock, with its peak resident memory from `wait4`. Results go to
//! `reports/bench/tools.{json,md}`.
//!
//! The pool is [`crate::xmlgen::write_bench_pool`]'s.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed child process.
#[derive(Debug, Clone)]
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_kib: i64,
}

/// Runs `cmd`, waits with `wait4` for its resource usage, and fails on a non-zero exit.
pub fn measure(cmd: &mut Command) -> Result<Measured, String> {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; `status` and `usage` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if r != pid {
        return Err(format!("{cmd:?}: wait4 failed"));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed with status {status}"));
    }
    Ok(Measured { seconds, peak_rss_kib: usage.ru_maxrss })
}

fn sized_image(path: &Path, n: u64) -> Result<(), String> {
    let blocks = (n / 120 + 8192).min(engine::limits::MAX_METADATA_BLOCKS);
    let f = File::create(path).map_err(|e| e.to_string())?;
    f.set_len(blocks * 4096).map_err(|e| e.to_string())
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub mappings: u64,
    pub op: &'static str,
    pub ours: Measured,
    pub theirs: Measured,
}

/// Runs the whole comparison for each pool size; returns the rows.
pub fn run(sizes: &[u64], dir: &Path, keep: bool, repeats: usize) -> Result<Vec<Row>, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &n in sizes {
        let xml = dir.join(format!("pool-{n}.xml"));
        crate::xmlgen::write_bench_pool(&xml, n)?;
        let (theirs_img, ours_img) =
            (dir.join(format!("theirs-{n}.img")), dir.join(format!("ours-{n}.img")));
        sized_image(&theirs_img, n)?;
        sized_image(&ours_img, n)?;
        let s = |p: &PathBuf| p.to_str().unwrap_or_default().to_string();
        let (x, ti, oi) = (s(&xml), s(&theirs_img), s(&ours_img));
        let pairs: [(&str, Vec<&str>, Vec<&str>, &str); 3] = [
            (
                "restore",
                vec!["-q", "-i", &x, "-o", &ti],
                vec!["restore", "-q", "-i", &x, "-o", &oi],
                "thin_restore",
            ),
            ("dump", vec![&ti], vec!["dump", &ti], "thin_dump"),
            ("check", vec!["-q", &ti], vec!["check", "-q", &ti], "thin_check"),
        ];
        for (op, their_args, our_args, tool) in pairs {
            let (ours, theirs) = interleaved(repeats, || {
                let theirs = measure(Command::new(tool).args(&their_args))?;
                let ours = measure(Command::new(&me).args(&our_args))?;
                Ok((ours, theirs))
            })?;
            rows.push(Row { mappings: n, op, ours, theirs });
        }
        if !keep {
            for p in [&xml, &theirs_img, &ours_img] {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    Ok(rows)
}

/// Runs `pair` (theirs then ours) `repeats` times, alternating so that both see the same
/// machine, and keeps the run of median wall clock of each side (peak memory from that run).
fn interleaved(
    repeats: usize,
    mut pair: impl FnMut() -> Result<(Measured, Measured), String>,
) -> Result<(Measured, Measured), String> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..repeats.max(1) {
        let (o, t) = pair()?;
        ours.push(o);
        theirs.push(t);
    }
    let median = |v: Vec<Measured>| {
        crate::median::median_by(v, |m| m.seconds).ok_or_else(|| "no runs".to_string())
    };
    Ok((median(ours)?, median(theirs)?))
}

/// Renders the rows as (JSON, Markdown).
pub fn render(rows: &[Row]) -> (String, String) {
    let mut md = String::from("# Tools benchmark: thinsim vs thin-provisioning-tools 0.9.0\n\n");
    md.push_str("Wall clock per run, child processes; each figure is the median of interleaved runs (thin-provisioning-tools, then thinsim, `--repeats` times, 5 by default); peak RSS from wait4 of that run.\n\n");
    md.push_str("| mappings | op | thinsim s | 0.9.0 s | speedup | thinsim Mmap/s | thinsim peak MiB | 0.9.0 peak MiB |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    let mut json = String::from("{\n  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let speedup = r.theirs.seconds / r.ours.seconds.max(1e-9);
        let rate = r.mappings as f64 / r.ours.seconds.max(1e-9) / 1e6;
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.1}× | {:.2} | {} | {} |\n",
            r.mappings,
            r.op,
            r.ours.seconds,
            r.theirs.seconds,
            speedup,
            rate,
            r.ours.peak_rss_kib / 1024,
            r.theirs.peak_rss_kib / 1024
        ));
        json.push_str(&format!(
            "    {{\"mappings\": {}, \"op\": \"{}\", \"thinsim_seconds\": {:.4}, \"tools_seconds\": {:.4}, \"speedup\": {:.2}, \"thinsim_peak_rss_kib\": {}, \"tools_peak_rss_kib\": {}}}{}\n",
            r.mappings, r.op, r.ours.seconds, r.theirs.seconds, speedup, r.ours.peak_rss_kib, r.theirs.peak_rss_kib,
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("  ]\n}\n");
    md.push_str("\nTargets (issue 4): restore ≥ 25×, dump ≥ 3×, check ≥ 7× faster than 0.9.0.\n");
    (json, md)
}
