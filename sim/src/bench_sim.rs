//! `thinsim bench-sim`: one seeded workload run on the bare engine (memory device, no model,
//! no checks) and then under more and more of the simulator, in one process: the simulated
//! disk; the model in lockstep comparing every answer; the runner's default verification
//! after every commit (what changed every time, the whole state, thin_ls numbers and a
//! `check` of the durable image amortized, see `runner::verify`) — "all checking on", the
//! row the ≤ 2× target is about; and the whole verification after every commit. Also
//! measures crash images reopened and compared per second (class A campaign). Writes
//! `reports/bench/sim.{json,md}`.

use crate::disk::{DiskConfig, SimDisk};
use crate::runner::verify::{Verifier, VerifyMode};
use crate::runner::{self, oracle, shared::SharedDisk, RunConfig};
use engine::io::MemoryDevice;
use engine::thin::{Pool, PoolOptions, ThinHandle};
use model::Model;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

const META_BLOCKS: u64 = 16_384;
const DEVICES: u64 = 8;
const VBLOCKS: u64 = 20_000;
/// Seeds of the crash-image campaign.
const CRASH_SEEDS: u64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create(u64),
    Snap(u64, u64),
    Provision(u64, u64),
    Remove(u64, u64),
    RemoveRange(u64, u64, u64),
    Commit,
}

/// The workload: mostly provisioning, some removes and snapshots, a commit every ~`commit_every`.
fn workload(ops: u64, commit_every: u64, seed: u64) -> Vec<Op> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![Op::Create(0), Op::Commit];
    let mut next_id = 1;
    while (out.len() as u64) < ops {
        let dev = rng.random_range(0..next_id);
        let op = match rng.random_range(0..100) {
            0 if next_id < DEVICES => {
                next_id += 1;
                Op::Snap(next_id - 1, dev)
            }
            1..=10 => Op::Remove(dev, rng.random_range(0..VBLOCKS)),
            11 => {
                let b = rng.random_range(0..VBLOCKS);
                Op::RemoveRange(dev, b, b + rng.random_range(1..64))
            }
            _ => Op::Provision(dev, rng.random_range(0..VBLOCKS)),
        };
        out.push(op);
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

fn handle(pool: &Pool, handles: &mut BTreeMap<u64, ThinHandle>, id: u64) -> Result<(), String> {
    if let std::collections::btree_map::Entry::Vacant(v) = handles.entry(id) {
        v.insert(pool.open_thin_device(id).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn bare(ops: &[Op], data: u64) -> Result<f64, String> {
    let e = |x: engine::Error| x.to_string();
    let pool =
        Pool::open(Box::new(MemoryDevice::new(META_BLOCKS)), PoolOptions::new(128)).map_err(e)?;
    pool.resize_data_dev(data).map_err(e)?;
    pool.commit().map_err(e)?;
    let mut handles = BTreeMap::new();
    let start = Instant::now();
    for &op in ops {
        engine_op(&pool, &mut handles, op)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The engine's side of one op, unchecked. Only a remove of an unmapped block may fail.
fn engine_op(pool: &Pool, handles: &mut BTreeMap<u64, ThinHandle>, op: Op) -> Result<(), String> {
    let r = match op {
        Op::Create(id) => pool.create_thin(id),
        Op::Snap(id, origin) => pool.create_snap(id, origin),
        Op::Provision(id, v) => {
            handle(pool, handles, id)?;
            let b = pool.alloc_data_block().map_err(|x| x.to_string())?;
            pool.insert_block(&handles[&id], v, b)
        }
        Op::Remove(id, v) => {
            handle(pool, handles, id)?;
            let _ = pool.remove_block(&handles[&id], v);
            Ok(())
        }
        Op::RemoveRange(id, b, end) => {
            handle(pool, handles, id)?;
            pool.remove_range(&handles[&id], b, end)
        }
        Op::Commit => pool.commit(),
    };
    r.map_err(|x| format!("{op:?}: {x}"))
}

fn model_handle(
    m: &mut Model,
    handles: &mut BTreeMap<u64, model::Handle>,
    id: u64,
) -> Result<model::Handle, String> {
    if let Some(h) = handles.get(&id) {
        return Ok(*h);
    }
    let h = m.open_thin(id).map_err(|x| format!("model open {id}: {x:?}"))?;
    handles.insert(id, h);
    Ok(h)
}

/// How much of the simulator a measured run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checking {
    /// The engine on the simulated disk (no faults), no model.
    DiskOnly,
    /// Plus the model in lockstep, every answer compared; nothing verified at commits.
    Lockstep,
    /// Plus the runner's verification after every commit, in this mode.
    Verify(VerifyMode),
}

/// What a measured run did.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    seconds: f64,
    full: u64,
    incremental: u64,
}

/// The same workload on the simulated disk, checked as `checking` says.
fn checked(ops: &[Op], data: u64, seed: u64, checking: Checking) -> Result<Measured, String> {
    let e = |x: engine::Error| x.to_string();
    let disk = SharedDisk::new(SimDisk::new(META_BLOCKS, DiskConfig::none(), seed));
    let pool = Pool::open(disk.device(), PoolOptions::new(128)).map_err(e)?;
    pool.resize_data_dev(data).map_err(e)?;
    pool.commit().map_err(e)?;
    let mut m = Model::new(data);
    let (mut handles, mut mh) = (BTreeMap::new(), BTreeMap::new());
    // As the runner compares: errno for errno, nothing formatted unless they differ.
    let same = |what: &str, a: Result<(), engine::Error>, b: Result<(), model::Errno>| {
        let a = a.map_err(|x| runner::errno(&x));
        if a == b {
            Ok(())
        } else {
            Err(format!("{what}: engine {a:?}, model {b:?}"))
        }
    };
    let mut verifier = match checking {
        Checking::Verify(mode) => Some(Verifier::new(mode)),
        _ => None,
    };
    let mut out = Measured::default();
    let start = Instant::now();
    for &op in ops {
        if checking == Checking::DiskOnly {
            engine_op(&pool, &mut handles, op)?;
            continue;
        }
        match op {
            Op::Create(id) => same("create", pool.create_thin(id), m.create_thin(id))?,
            Op::Snap(id, o) => same("snap", pool.create_snap(id, o), m.create_snap(id, o))?,
            Op::Provision(id, v) => {
                handle(&pool, &mut handles, id)?;
                let h = model_handle(&mut m, &mut mh, id)?;
                let b = pool.alloc_data_block().map_err(e)?;
                m.alloc_data_block_check(b).map_err(|x| format!("alloc {b}: model says {x:?}"))?;
                same("insert", pool.insert_block(&handles[&id], v, b), m.insert_block(h, v, b))?;
            }
            Op::Remove(id, v) | Op::RemoveRange(id, v, _) => {
                handle(&pool, &mut handles, id)?;
                let h = model_handle(&mut m, &mut mh, id)?;
                match op {
                    Op::Remove(..) => {
                        same("remove", pool.remove_block(&handles[&id], v), m.remove_block(h, v))?
                    }
                    Op::RemoveRange(_, b, end) => same(
                        "remove_range",
                        pool.remove_range(&handles[&id], b, end),
                        m.remove_range(h, b, end),
                    )?,
                    _ => unreachable!("matched above"),
                }
            }
            Op::Commit => same("commit", pool.commit(), m.commit())?,
        }
        let Some(v) = verifier.as_mut() else { continue };
        v.count_op();
        if op != Op::Commit {
            continue;
        }
        if v.full_due(&m) {
            oracle::compare_pool(&pool, &m).map_err(|d| d.to_string())?;
            oracle::compare_ls(&pool, &m).map_err(|d| d.to_string())?;
            oracle::check_image(&disk.lock().durable_image(), &m).map_err(|d| d.to_string())?;
            v.verified(&mut m, true);
            out.full += 1;
        } else {
            v.compare_changes(&pool, &mut m).map_err(|d| d.to_string())?;
            v.verified(&mut m, false);
            out.incremental += 1;
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

/// The median of `n` measurements (runs are deterministic; only the clock varies).
fn median_of(
    n: usize,
    mut f: impl FnMut() -> Result<Measured, String>,
) -> Result<Measured, String> {
    let mut runs = (0..n).map(|_| f()).collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(runs[runs.len() / 2])
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
/// the median. Rows: `bare`, `disk`, `lockstep`, `amortized`, `full`.
pub fn run_only(
    row: &str,
    ops: u64,
    commit_every: u64,
    seed: u64,
    repeats: usize,
) -> Result<String, String> {
    let work = workload(ops, commit_every, seed);
    let data = data_blocks(ops);
    let checking = match row {
        "bare" => None,
        "disk" => Some(Checking::DiskOnly),
        "lockstep" => Some(Checking::Lockstep),
        "amortized" => Some(Checking::Verify(VerifyMode::Amortized)),
        "full" => Some(Checking::Verify(VerifyMode::Full)),
        _ => return Err(format!("unknown row {row:?}: bare|disk|lockstep|amortized|full")),
    };
    let m = median_of(repeats.max(1), || match checking {
        None => Ok(Measured { seconds: bare(&work, data)?, ..Measured::default() }),
        Some(c) => checked(&work, data, seed, c),
    })?;
    Ok(format!(
        "{row}: {} ops in {:.3} s ({:.0} ops/s), {} full / {} incremental verifications",
        work.len(),
        m.seconds,
        work.len() as f64 / m.seconds,
        m.full,
        m.incremental
    ))
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    let rows: [(&str, Option<Checking>); 4] = [
        ("bare engine (memory device)", None),
        ("engine on the simulated disk (no faults), no model", Some(Checking::DiskOnly)),
        ("+ model in lockstep, every answer compared", Some(Checking::Lockstep)),
        (
            "**all checking on**: + after every commit what changed, the whole state, ls and `check` amortized (`--verify amortized`, the default)",
            Some(Checking::Verify(VerifyMode::Amortized)),
        ),
    ];
    // seconds[row][round]: every round times every row once.
    let mut seconds = vec![Vec::with_capacity(rounds); rows.len()];
    let mut last = vec![Measured::default(); rows.len()];
    for round in 0..rounds {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let m = match rows[i].1 {
                None => Measured { seconds: bare(&work, data)?, ..Measured::default() },
                Some(checking) => checked(&work, data, seed, checking)?,
            };
            seconds[i].push(m.seconds);
            last[i] = m;
        }
    }
    let ratios: Vec<Vec<f64>> = seconds
        .iter()
        .map(|row| row.iter().zip(&seconds[0]).map(|(s, b)| s / b.max(1e-9)).collect())
        .collect();
    let full = checked(&work, data, seed, Checking::Verify(VerifyMode::Full))?;
    let (images, crash_s) = crash_rate(CRASH_SEEDS);
    let bare_s = median(&seconds[0]);
    let all_on = median(&ratios[3]);
    let mut json_rows = Vec::new();
    let mut md_rows = String::from(
        "| run | seconds (median) | ops/s | × bare (median of rounds) | × bare (range) | full / incremental verifications |\n|---|---|---|---|---|---|\n",
    );
    for (i, (name, checking)) in rows.iter().enumerate() {
        let (secs, ratio) = (median(&seconds[i]), median(&ratios[i]));
        let lo = ratios[i].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios[i].iter().copied().fold(0.0, f64::max);
        let run = checking.map_or("Bare".to_string(), |c| format!("{c:?}"));
        json_rows.push(format!(
            "    {{ \"run\": \"{run}\", \"seconds\": {secs:.3}, \"ops_per_s\": {:.0}, \"overhead\": {ratio:.2}, \"overhead_min\": {lo:.2}, \"overhead_max\": {hi:.2}, \"full_verifications\": {}, \"incremental_verifications\": {} }}",
            n / secs,
            last[i].full,
            last[i].incremental
        ));
        let counts = if checking.is_some() {
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
        "    {{ \"run\": \"Verify(Full)\", \"seconds\": {:.3}, \"ops_per_s\": {:.0}, \"overhead\": {full_ratio:.2}, \"full_verifications\": {}, \"incremental_verifications\": {} }}",
        full.seconds,
        n / full.seconds,
        full.full,
        full.incremental
    ));
    md_rows.push_str(&format!(
        "| + the whole state, ls and `check` after every commit (`--verify full`; one run, against the median bare time) | {:.3} | {:.0} | {full_ratio:.2} | | {} / {} |\n",
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
         Each row adds to the one above. Per round the first four rows run back to back (in rotating order); \
         a row's overhead is the median over rounds of its time over the same round's bare time, \
         because this machine's speed drifts between minutes.\n\n{md_rows}\n\
         Checking overhead with all checking on: **{all_on:.2}×** the bare engine (target ≤ 2×).\n\n\
         Crash images reopened and compared (class A campaign, {CRASH_SEEDS} seeds): {images} in {crash_s:.2} s = **{:.0}/s**.\n",
        work.len(),
        images as f64 / crash_s
    );
    Ok((json, md))
}
