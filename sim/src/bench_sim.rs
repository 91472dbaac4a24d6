//! `thinsim bench-sim`: the same seeded workload run on the bare engine (memory device, no
//! model, no checks) and under the simulator with all checking on (simulated disk, the model
//! in lockstep comparing every result, and after every commit the whole-state comparison,
//! the thin_ls comparison and a full `check` of the durable image). Also measures crash
//! images checked per second with the runner (class A campaign). Writes
//! `reports/bench/sim.{json,md}`.

use crate::disk::{DiskConfig, SimDisk};
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

#[derive(Debug, Clone, Copy)]
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
        match op {
            Op::Create(id) => pool.create_thin(id).map_err(e)?,
            Op::Snap(id, origin) => pool.create_snap(id, origin).map_err(e)?,
            Op::Provision(id, v) => {
                handle(&pool, &mut handles, id)?;
                let b = pool.alloc_data_block().map_err(e)?;
                pool.insert_block(&handles[&id], v, b).map_err(e)?;
            }
            Op::Remove(id, v) => {
                handle(&pool, &mut handles, id)?;
                let _ = pool.remove_block(&handles[&id], v);
            }
            Op::RemoveRange(id, b, end) => {
                handle(&pool, &mut handles, id)?;
                pool.remove_range(&handles[&id], b, end).map_err(e)?;
            }
            Op::Commit => pool.commit().map_err(e)?,
        }
    }
    Ok(start.elapsed().as_secs_f64())
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

/// Same workload, model in lockstep, everything compared; returns (seconds, commits verified).
fn checked(ops: &[Op], data: u64, seed: u64, verify_every: u64) -> Result<(f64, u64), String> {
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
    let start = Instant::now();
    let mut commits = 0;
    for &op in ops {
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
            Op::Commit => {
                same("commit", pool.commit(), m.commit())?;
                if verify_every > 0 && commits % verify_every == 0 {
                    oracle::compare_pool(&pool, &m)?;
                    oracle::compare_ls(&pool, &m)?;
                    oracle::check_image(&disk.lock().durable_image(), &m)?;
                }
                commits += 1;
            }
        }
    }
    Ok((start.elapsed().as_secs_f64(), commits))
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

/// Runs everything and returns (JSON, Markdown).
pub fn run(ops: u64, commit_every: u64, seed: u64) -> Result<(String, String), String> {
    let work = workload(ops, commit_every, seed);
    let data = data_blocks(ops);
    let bare_s = bare(&work, data)?;
    let (checked_s, commits) = checked(&work, data, seed, 1)?;
    let (lockstep_s, _) = checked(&work, data, seed, 0)?;
    let (images, crash_s) = crash_rate(200);
    let n = work.len() as f64;
    let overhead = checked_s / bare_s.max(1e-9);
    let lockstep_overhead = lockstep_s / bare_s.max(1e-9);
    let json = format!(
        "{{\n  \"ops\": {},\n  \"commit_every\": {commit_every},\n  \"commits_verified\": {commits},\n  \"bare_ops_per_s\": {:.0},\n  \"checked_ops_per_s\": {:.0},\n  \"checking_overhead\": {overhead:.2},\n  \"lockstep_only_ops_per_s\": {:.0},\n  \"lockstep_only_overhead\": {lockstep_overhead:.2},\n  \"crash_images\": {images},\n  \"crash_images_per_s\": {:.0}\n}}\n",
        work.len(),
        n / bare_s,
        n / checked_s,
        n / lockstep_s,
        images as f64 / crash_s
    );
    let md = format!(
        "# Simulator benchmark\n\n{} ops (seed {seed}, a commit every ~{commit_every} ops, {commits} commits verified).\n\n\
         | run | seconds | ops/s |\n|---|---|---|\n| bare engine (memory device) | {bare_s:.3} | {:.0} |\n\
         | under the simulator, all checking on | {checked_s:.3} | {:.0} |\n\
         | simulator + model lockstep, no per-commit verification | {lockstep_s:.3} | {:.0} |\n\n\
         Checking overhead: **{overhead:.2}×** with a full verification (state, ls, `check`) after \
         every commit; **{lockstep_overhead:.2}×** for the simulated disk and the per-call lockstep \
         alone (target ≤ 2×).\n\n\
         Crash images reopened and compared (class A campaign, 200 seeds): {images} in {crash_s:.1} s = **{:.0}/s**.\n",
        work.len(),
        n / bare_s,
        n / checked_s,
        n / lockstep_s,
        images as f64 / crash_s
    );
    Ok((json, md))
}
