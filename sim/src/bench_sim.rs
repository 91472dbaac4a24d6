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
/// Timed runs per row (the median counts).
const REPEATS: usize = 3;
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
    let same = |what: &str, a: Result<(), engine::Error>, b: Result<(), model::Errno>| {
        let a = a.map_err(|x| format!("{:?}", x.errno()));
        let b = b.map_err(|x| format!("{x:?}"));
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
            oracle::compare_pool(&pool, &m)?;
            oracle::compare_ls(&pool, &m)?;
            oracle::check_image(&disk.lock().durable_image(), &m)?;
            v.verified(&mut m, true);
            out.full += 1;
        } else {
            v.compare_changes(&pool, &mut m)?;
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

/// Runs everything and returns (JSON, Markdown).
pub fn run(ops: u64, commit_every: u64, seed: u64) -> Result<(String, String), String> {
    let work = workload(ops, commit_every, seed);
    let data = data_blocks(ops);
    let n = work.len() as f64;
    let bare =
        median_of(REPEATS, || Ok(Measured { seconds: bare(&work, data)?, ..Measured::default() }))?;
    let rows = [
        ("engine on the simulated disk (no faults), no model", Checking::DiskOnly, REPEATS),
        ("+ model in lockstep, every answer compared", Checking::Lockstep, REPEATS),
        (
            "**all checking on**: + after every commit what changed, the whole state, ls and `check` amortized (`--verify amortized`, the default)",
            Checking::Verify(VerifyMode::Amortized),
            REPEATS,
        ),
        (
            "+ the whole state, ls and `check` after every commit (`--verify full`)",
            Checking::Verify(VerifyMode::Full),
            1,
        ),
    ];
    let mut measured = Vec::new();
    for (name, checking, repeats) in rows {
        measured.push((
            name,
            checking,
            median_of(repeats, || checked(&work, data, seed, checking))?,
        ));
    }
    let (images, crash_s) = crash_rate(CRASH_SEEDS);
    let ratio = |m: &Measured| m.seconds / bare.seconds.max(1e-9);
    let all_on = measured
        .iter()
        .find(|(_, c, _)| *c == Checking::Verify(VerifyMode::Amortized))
        .map(|(_, _, m)| *m)
        .unwrap_or_default();
    let mut json_rows = Vec::new();
    let mut md_rows = format!(
        "| run | seconds | ops/s | × bare | full / incremental verifications |\n|---|---|---|---|---|\n\
         | bare engine (memory device) | {:.3} | {:.0} | 1.00 | |\n",
        bare.seconds,
        n / bare.seconds
    );
    for (name, checking, m) in &measured {
        json_rows.push(format!(
            "    {{ \"run\": \"{checking:?}\", \"seconds\": {:.3}, \"ops_per_s\": {:.0}, \"overhead\": {:.2}, \"full_verifications\": {}, \"incremental_verifications\": {} }}",
            m.seconds,
            n / m.seconds,
            ratio(m),
            m.full,
            m.incremental
        ));
        md_rows.push_str(&format!(
            "| {name} | {:.3} | {:.0} | {:.2} | {} / {} |\n",
            m.seconds,
            n / m.seconds,
            ratio(m),
            m.full,
            m.incremental
        ));
    }
    let json = format!(
        "{{\n  \"ops\": {},\n  \"commit_every\": {commit_every},\n  \"seed\": {seed},\n  \"bare_seconds\": {:.3},\n  \"bare_ops_per_s\": {:.0},\n  \"checking_overhead\": {:.2},\n  \"runs\": [\n{}\n  ],\n  \"crash_images\": {images},\n  \"crash_images_per_s\": {:.0}\n}}\n",
        work.len(),
        bare.seconds,
        n / bare.seconds,
        ratio(&all_on),
        json_rows.join(",\n"),
        images as f64 / crash_s
    );
    let md = format!(
        "# Simulator benchmark\n\n{} ops (seed {seed}, a commit every ~{commit_every} ops; \
         times are the median of {REPEATS} runs except the last row). Each row adds to the one above.\n\n{md_rows}\n\
         Checking overhead with all checking on: **{:.2}×** the bare engine (target ≤ 2×).\n\n\
         Crash images reopened and compared (class A campaign, {CRASH_SEEDS} seeds): {images} in {crash_s:.2} s = **{:.0}/s**.\n",
        work.len(),
        ratio(&all_on),
        images as f64 / crash_s
    );
    Ok((json, md))
}
