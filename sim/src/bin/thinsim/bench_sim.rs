//! `thinsim bench-sim`: one seeded workload — a list of the runner's own ops — run on the
//! bare engine (memory device, no model, no checks), on the engine over the simulated disk,
//! and then by the real runner loop (`runner::replay` of the workload as a trace: the model
//! in lockstep comparing every answer, the verification after every commit, the final power
//! cut and reopen) with the default amortized verification — "all checking on", the row the
//! ≤ 1.5× target of issue 27 is about — and with the whole verification after every commit.
//! Also measures crash images reopened and compared per second (class A campaign). Writes
//! `reports/bench/sim.{json,md}`.
//!
//! The runner rows include what a run does besides the ops (format, recording the trace,
//! the final power cut with its full verification); the engine rows time the same ops from
//! an open pool. So the runner rows' overhead is, if anything, overstated.

use crate::median::{median, median_by};
use engine::io::{BlockDevice, MemoryDevice};
use engine::thin::{DataBlock, ThinId, VBlock};
use engine::thin::{Pool, PoolOptions, ThinHandle};
use rand::{Rng, SeedableRng};
use sim::disk::{DiskConfig, SimDisk};
use sim::runner::verify::VerifyMode;
use sim::runner::{self, shared::SharedDisk, Op, RunConfig, Step, Trace};
use std::collections::BTreeMap;
use std::time::Instant;

const META_BLOCKS: u64 = 16_384;
const DEVICES: u64 = 8;
const VBLOCKS: u64 = 20_000;
/// Seeds of the crash-image campaign.
const CRASH_SEEDS: u64 = 400;

/// The workload: mostly provisioning, some removes and snapshots, a commit every
/// ~`commit_every`; every device is opened once, right after it is made.
fn workload(ops: u64, commit_every: u64, seed: u64) -> Vec<Op> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![Op::CreateThin { dev: 0 }, Op::Open { dev: 0 }, Op::Commit];
    let mut next_id = 1;
    while (out.len() as u64) < ops {
        let dev = rng.random_range(0..next_id);
        match rng.random_range(0..100) {
            0 if next_id < DEVICES => {
                out.push(Op::CreateSnap { dev: next_id, origin: dev });
                out.push(Op::Open { dev: next_id });
                next_id += 1;
            }
            1..=10 => out.push(Op::RemoveBlock { dev, vblock: rng.random_range(0..VBLOCKS) }),
            11 => {
                let begin = rng.random_range(0..VBLOCKS);
                out.push(Op::RemoveRange { dev, begin, end: begin + rng.random_range(1..64) });
            }
            _ => out.push(Op::Provision { dev, vblock: rng.random_range(0..VBLOCKS) }),
        }
        if rng.random_range(0..commit_every) == 0 {
            out.push(Op::Commit);
        }
    }
    out.push(Op::Commit);
    out
}

fn data_blocks(ops: u64) -> u64 {
    ops * 2 + 1024
}

/// The workload as a trace for the runner: a fault-free pool of the bench's sizes.
fn trace(work: &[Op], data: u64, seed: u64, verify: VerifyMode) -> Trace {
    let mut options = runner::Options::draw(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    options.class = runner::RunClass::Small;
    options.metadata_disk_blocks = META_BLOCKS;
    options.metadata_blocks = META_BLOCKS;
    options.data_blocks = data;
    options.removal = None;
    options.prepopulate = None;
    options.disk = DiskConfig::none();
    options.crash_in_commit_ppm = 0;
    options.explore_images = 0;
    let steps = work.iter().map(|op| Step { op: op.clone(), faults: Vec::new() }).collect();
    Trace {
        build: runner::trace::build_id(),
        seed,
        canary: None,
        verify,
        options,
        expect: None,
        steps,
    }
}

/// The engine alone on `device`: the ops from an open, sized pool, unchecked.
fn engine_only(work: &[Op], data: u64, device: Box<dyn BlockDevice>) -> Result<f64, String> {
    let e = |x: engine::Error| x.to_string();
    let pool = Pool::open(device, PoolOptions::new(128)).map_err(e)?;
    pool.resize_data_dev(data).map_err(e)?;
    pool.commit().map_err(e)?;
    let mut handles: BTreeMap<u64, ThinHandle> = BTreeMap::new();
    let start = Instant::now();
    for op in work {
        engine_op(&pool, &mut handles, op)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The engine's side of one op. Only a remove of an unmapped block may fail.
fn engine_op(pool: &Pool, handles: &mut BTreeMap<u64, ThinHandle>, op: &Op) -> Result<(), String> {
    fn h(handles: &BTreeMap<u64, ThinHandle>, dev: u64) -> Result<&ThinHandle, String> {
        handles.get(&dev).ok_or_else(|| format!("device {dev} is not open"))
    }
    let r = match *op {
        Op::CreateThin { dev } => pool.create_thin(ThinId(dev)),
        Op::CreateSnap { dev, origin } => pool.create_snap(ThinId(dev), ThinId(origin)),
        Op::Open { dev } => {
            handles.insert(dev, pool.open_thin_device(ThinId(dev)).map_err(|x| x.to_string())?);
            Ok(())
        }
        Op::Provision { dev, vblock } => {
            let b = pool.alloc_data_block().map(u64::from).map_err(|x| x.to_string())?;
            pool.insert_block(h(handles, dev)?, VBlock(vblock), DataBlock(b))
        }
        Op::RemoveBlock { dev, vblock } => {
            let _ = pool.remove_block(h(handles, dev)?, VBlock(vblock));
            Ok(())
        }
        Op::RemoveRange { dev, begin, end } => {
            pool.remove_range(h(handles, dev)?, VBlock(begin), VBlock(end))
        }
        Op::Commit => pool.commit(),
        _ => return Err(format!("{op}: not in the bench workload")),
    };
    r.map_err(|x| format!("{op}: {x}"))
}

/// How a measured row runs the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// The engine on a memory device.
    Bare,
    /// The engine on the simulated disk (no faults), no model.
    DiskOnly,
    /// The runner loop (`runner::replay`), verifying in this mode.
    Runner(VerifyMode),
}

/// What a measured run did.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    seconds: f64,
    full: u64,
    incremental: u64,
}

fn measure(row: Row, work: &[Op], data: u64, seed: u64) -> Result<Measured, String> {
    match row {
        Row::Bare => {
            let seconds = engine_only(work, data, Box::new(MemoryDevice::new(META_BLOCKS)))?;
            Ok(Measured { seconds, ..Measured::default() })
        }
        Row::DiskOnly => {
            let disk = SharedDisk::new(
                SimDisk::new(META_BLOCKS, DiskConfig::none(), seed).map_err(|e| e.to_string())?,
            );
            let seconds = engine_only(work, data, disk.device())?;
            Ok(Measured { seconds, ..Measured::default() })
        }
        Row::Runner(verify) => {
            let t = trace(work, data, seed, verify);
            let start = Instant::now();
            let out = runner::replay(&t);
            let seconds = start.elapsed().as_secs_f64();
            if let Some(e) = out.invalid {
                return Err(e.to_string());
            }
            if let Some(f) = out.failure {
                return Err(f.to_string());
            }
            Ok(Measured {
                seconds,
                full: out.stats.commit_checks,
                incremental: out.stats.incremental_checks,
            })
        }
    }
}

/// The median of `n` measurements (runs are deterministic; only the clock varies).
fn median_of(
    n: usize,
    mut f: impl FnMut() -> Result<Measured, String>,
) -> Result<Measured, String> {
    let runs = (0..n.max(1)).map(|_| f()).collect::<Result<Vec<_>, _>>()?;
    median_by(runs, |m| m.seconds).ok_or_else(|| "no runs".to_string())
}

/// Crash images reopened and compared per second by a class A campaign of `seeds` seeds.
fn crash_rate(seeds: u64) -> (u64, f64) {
    let start = Instant::now();
    let images: u64 = (0..seeds)
        .map(|s| {
            runner::run(&RunConfig { class_a_only: true, ..RunConfig::new(s) })
                .stats
                .crash_images_checked
        })
        .sum();
    (images, start.elapsed().as_secs_f64())
}

/// One measured row alone, `repeats` times, for profiling (`bench-sim --only ROW`); prints
/// the median. Rows: `bare`, `disk`, `amortized`, `full`.
pub fn run_only(
    row: &str,
    ops: u64,
    commit_every: u64,
    seed: u64,
    repeats: usize,
) -> Result<String, String> {
    let work = workload(ops, commit_every, seed);
    let data = data_blocks(ops);
    let which = match row {
        "bare" => Row::Bare,
        "disk" => Row::DiskOnly,
        "amortized" => Row::Runner(VerifyMode::Amortized),
        "full" => Row::Runner(VerifyMode::Full),
        _ => return Err(format!("unknown row {row:?}: bare|disk|amortized|full")),
    };
    let m = median_of(repeats.max(1), || measure(which, &work, data, seed))?;
    Ok(format!(
        "{row}: {} ops in {:.3} s ({:.0} ops/s), {} full / {} incremental verifications",
        work.len(),
        m.seconds,
        work.len() as f64 / m.seconds,
        m.full,
        m.incremental
    ))
}

/// Runs everything and returns (JSON, Markdown). The bare engine and the three cheaper
/// checked rows run once per round, next to each other (the order rotates each round), and
/// each row's overhead is the median over rounds of its time divided by the bare time *of
/// the same round*: this machine's speed drifts by tens of percent from minute to minute,
/// and runs close in time drift together. The whole-verification row runs once.
pub fn run(
    ops: u64,
    commit_every: u64,
    seed: u64,
    rounds: usize,
) -> Result<(String, String), String> {
    let work = workload(ops, commit_every, seed);
    let data = data_blocks(ops);
    let n = work.len() as f64;
    let rounds = rounds.max(1);
    let rows: [(&str, Row); 3] = [
        ("bare engine (memory device)", Row::Bare),
        ("engine on the simulated disk (no faults), no model", Row::DiskOnly),
        (
            "**all checking on**: the runner loop (`runner::replay` of the workload): the model in lockstep, every answer compared, after every commit what changed, the whole state, ls and `check` amortized (`--verify amortized`, the default), the final power cut and reopen",
            Row::Runner(VerifyMode::Amortized),
        ),
    ];
    // seconds[row][round]: every round times every row once.
    let mut seconds = vec![Vec::with_capacity(rounds); rows.len()];
    let mut last = vec![Measured::default(); rows.len()];
    for round in 0..rounds {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let m = measure(rows[i].1, &work, data, seed)?;
            seconds[i].push(m.seconds);
            last[i] = m;
        }
    }
    let ratios: Vec<Vec<f64>> = seconds
        .iter()
        .map(|row| row.iter().zip(&seconds[0]).map(|(s, b)| s / b.max(1e-9)).collect())
        .collect();
    let full = measure(Row::Runner(VerifyMode::Full), &work, data, seed)?;
    let (images, crash_s) = crash_rate(CRASH_SEEDS);
    let bare_s = median(&seconds[0]);
    let all_on = median(&ratios[2]);
    let mut json_rows = Vec::new();
    let mut md_rows = String::from(
        "| run | seconds (median) | ops/s | × bare (median of rounds) | × bare (range) | full / incremental verifications |\n|---|---|---|---|---|---|\n",
    );
    for (i, (name, row)) in rows.iter().enumerate() {
        let (secs, ratio) = (median(&seconds[i]), median(&ratios[i]));
        let lo = ratios[i].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios[i].iter().copied().fold(0.0, f64::max);
        let run = format!("{row:?}");
        json_rows.push(format!(
            "    {{ \"run\": \"{run}\", \"seconds\": {secs:.3}, \"ops_per_s\": {:.0}, \"overhead\": {ratio:.2}, \"overhead_min\": {lo:.2}, \"overhead_max\": {hi:.2}, \"full_verifications\": {}, \"incremental_verifications\": {} }}",
            n / secs,
            last[i].full,
            last[i].incremental
        ));
        let counts = if matches!(row, Row::Runner(_)) {
            format!("{} / {}", last[i].full, last[i].incremental)
        } else {
            String::new()
        };
        md_rows.push_str(&format!(
            "| {name} | {secs:.3} | {:.0} | {ratio:.2} | {lo:.2}–{hi:.2} | {counts} |\n",
            n / secs
        ));
    }
    let full_ratio = full.seconds / bare_s.max(1e-9);
    json_rows.push(format!(
        "    {{ \"run\": \"Runner(Full)\", \"seconds\": {:.3}, \"ops_per_s\": {:.0}, \"overhead\": {full_ratio:.2}, \"full_verifications\": {}, \"incremental_verifications\": {} }}",
        full.seconds,
        n / full.seconds,
        full.full,
        full.incremental
    ));
    md_rows.push_str(&format!(
        "| the runner loop with the whole state, ls and `check` after every commit (`--verify full`; one run, against the median bare time) | {:.3} | {:.0} | {full_ratio:.2} | | {} / {} |\n",
        full.seconds,
        n / full.seconds,
        full.full,
        full.incremental
    ));
    let json = format!(
        "{{\n  \"ops\": {},\n  \"commit_every\": {commit_every},\n  \"seed\": {seed},\n  \"rounds\": {rounds},\n  \"bare_seconds\": {bare_s:.3},\n  \"bare_ops_per_s\": {:.0},\n  \"checking_overhead\": {all_on:.2},\n  \"runs\": [\n{}\n  ],\n  \"crash_images\": {images},\n  \"crash_images_per_s\": {:.0}\n}}\n",
        work.len(),
        n / bare_s,
        json_rows.join(",\n"),
        images as f64 / crash_s
    );
    let md = format!(
        "# Simulator benchmark\n\n{} ops (seed {seed}, a commit every ~{commit_every} ops), {rounds} rounds. \
         Each row adds to the one above; the runner rows run the workload as a trace through the real runner loop. Per round the first three rows run back to back (in rotating order); \
         a row's overhead is the median over rounds of its time over the same round's bare time, \
         because this machine's speed drifts between minutes.\n\n{md_rows}\n\
         Checking overhead with all checking on: **{all_on:.2}×** the bare engine (target ≤ 1.5×, issue 27).\n\n\
         Crash images reopened and compared (class A campaign, {CRASH_SEEDS} seeds): {images} in {crash_s:.2} s = **{:.0}/s**.\n",
        work.len(),
        images as f64 / crash_s
    );
    Ok((json, md))
}
