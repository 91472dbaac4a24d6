//! Drawing a kernel workload from a seed, against the emulation: each op is drawn from the
//! emulated pool's state (devices, mappings, free space, the held snapshot), then applied
//! to it, so the next draw sees its effect. The same seed always gives the same workload.
//! Every choice is a draw from an [`Entropy`]: a seed's ChaCha stream ([`draw`]), or a
//! fuzzer's bytes or any other stream ([`draw_from`]).
//!
//! Frees and allocation: a block freed in a transaction is allocatable only after the
//! commit, and the kernel also commits on its own clock, so a workload never allocates
//! while a free is uncommitted: whenever an op leaves one (a discard whose flush failed out
//! of data space, a write that broke sharing of a block nobody else holds — such a write
//! ends its run there), the next op is a checkpoint, which commits. The same rule keeps the
//! way out of out-of-data-space (a commit that finds free blocks) off the kernel's clock.
//!
//! What the mix reaches, on purpose: runs of writes long enough to split mapping leaves
//! (a leaf holds at most 252 mappings), writes over snapshotted blocks (breaking sharing),
//! small pools that run out of data space (then grow), snapshots of snapshots, deletes of
//! shared devices, the held metadata snapshot, and a few messages the kernel must refuse
//! (an existing id, a missing device, a wrong transaction id).

use super::emulate::{Divergence, Emulation, Outcome};
use super::workload::{KOp, PoolShape, Workload, FORMAT_VERSION, MAX_THIN_ID};
use crate::entropy::Entropy;
use crate::runner::Prepopulation;
use rand::Rng;

/// How many times a workload may grow the metadata device (each growth starts a new
/// dm-log-writes log, one image each).
pub const MAX_METADATA_GROWTHS: usize = 2;

/// Most devices a workload keeps at once.
const MAX_DEVICES: usize = 8;

/// The pool shape a seed draws. One seed in three starts from an image thinsim restored
/// (the kernel activates it and works on it): device 0 with 17,000 mappings, so its data
/// reaches past the first space-map bitmap (16,320 blocks) and the kernel's allocations
/// start in the second one; a sharer of every third of them; two small devices.
pub fn draw_shape(rng: &mut Entropy) -> PoolShape {
    if rng.random_ratio(1, 3) {
        let p = Prepopulation {
            devices: 4,
            mappings: 17_000,
            hole_every: 8,
            sharers: 1,
            share_every: 3,
            mappings_per_other: 200,
            first_vblock: 0,
        };
        let data_blocks =
            p.data_blocks_used() + *[40u64, 400, 4000].get(rng.random_range(0..3)).unwrap_or(&400);
        return PoolShape {
            data_block_sectors: 128,
            data_blocks,
            metadata_blocks: 1024,
            virtual_blocks: 1 << 15,
            max_data_blocks: data_blocks + 4000,
            max_metadata_blocks: 1024 * (1 + MAX_METADATA_GROWTHS as u64),
            prepopulation: Some(p),
        };
    }
    let data_blocks = *[48u64, 200, 1000, 4000].get(rng.random_range(0..4)).unwrap_or(&200);
    PoolShape {
        data_block_sectors: 128,
        data_blocks,
        metadata_blocks: 1024,
        virtual_blocks: 4096,
        max_data_blocks: data_blocks * 4,
        max_metadata_blocks: 1024 * (1 + MAX_METADATA_GROWTHS as u64),
        prepopulation: None,
    }
}

/// The stream a seed's workload is drawn from.
pub fn workload_entropy(seed: u64) -> Entropy {
    Entropy::seeded(seed ^ 0x6b65_726e_656c) // "kernel"
}

/// Draws a workload of `ops` ops from `seed` (a checkpoint every few dozen ops and at the
/// end). An engine/model divergence while drawing is returned: thinsim's own bug.
pub fn draw(seed: u64, ops: usize) -> Result<Workload, Box<(Workload, Divergence)>> {
    draw_from(seed, &mut workload_entropy(seed), ops)
}

/// [`draw`] with every choice taken from `rng` (a seed's stream, or a fuzzer's bytes);
/// `seed` only names the workload (and seeds its crash judgement, `Workload::seed`).
pub fn draw_from(
    seed: u64,
    rng: &mut Entropy,
    ops: usize,
) -> Result<Workload, Box<(Workload, Divergence)>> {
    let shape = draw_shape(rng);
    let mut w =
        Workload { format_version: FORMAT_VERSION, seed, shape: shape.clone(), ops: Vec::new() };
    let mut em = match Emulation::new(&shape) {
        Ok(em) => em,
        Err(d) => return Err(Box::new((w, d))),
    };
    let mut growths = 0usize;
    let mut since_checkpoint = 0usize;
    while w.ops.len() < ops {
        let op = if since_checkpoint >= 40 || em.uncommitted_frees() {
            KOp::Checkpoint
        } else {
            draw_op(rng, &em, &mut growths)
        };
        // A write that frees a block ends there (see `Emulation::write_would_free`); the
        // next op is then a checkpoint, which commits: no allocation, and no way out of
        // out-of-data-space, ever depends on the kernel's clock.
        let op = match op {
            KOp::Write { dev, vblock, blocks, fua } => {
                match (vblock..vblock + blocks).find(|&v| em.write_would_free(dev, v)) {
                    Some(v) => KOp::Write { dev, vblock, blocks: v + 1 - vblock, fua },
                    None => op,
                }
            }
            op => op,
        };
        since_checkpoint = if op == KOp::Checkpoint { 0 } else { since_checkpoint + 1 };
        let r = em.apply(&op);
        w.ops.push(op);
        if let Err(d) = r {
            return Err(Box::new((w, d)));
        }
    }
    if w.ops.last() != Some(&KOp::Checkpoint) {
        w.ops.push(KOp::Checkpoint);
        if let Err(d) = em.apply(&KOp::Checkpoint) {
            return Err(Box::new((w, d)));
        }
    }
    Ok(w)
}

fn new_id(rng: &mut Entropy, em: &Emulation) -> u64 {
    let devs = em.devices();
    loop {
        let id = if rng.random_ratio(1, 10) {
            MAX_THIN_ID - rng.random_range(0..4)
        } else {
            rng.random_range(0..32)
        };
        if !devs.contains(&id) {
            return id;
        }
    }
}

fn draw_op(rng: &mut Entropy, em: &Emulation, growths: &mut usize) -> KOp {
    let devs = em.devices();
    let model = em.model();
    if devs.is_empty() {
        return KOp::CreateThin { dev: new_id(rng, em) };
    }
    if em.out_of_data_space() && em.data_blocks() < em.shape().max_data_blocks {
        let room = em.shape().max_data_blocks - em.data_blocks();
        let least = room.min(64);
        return KOp::GrowData { blocks: em.data_blocks() + rng.random_range(least..=room) };
    }
    let dev = devs[rng.random_range(0..devs.len())];
    let virt = em.shape().virtual_blocks;
    let roll = rng.random_range(0..1000u32);
    match roll {
        0..=299 => {
            // One block, often over a mapped one (which may be shared with a snapshot).
            let mapped = em.mapped(dev);
            let vblock = if !mapped.is_empty() && rng.random_ratio(1, 2) {
                mapped[rng.random_range(0..mapped.len())]
            } else {
                rng.random_range(0..virt)
            };
            KOp::Write { dev, vblock, blocks: 1, fua: rng.random_ratio(1, 4) }
        }
        300..=479 => {
            let blocks = rng.random_range(2..=300u64).min(virt);
            let vblock = rng.random_range(0..=virt - blocks);
            KOp::Write { dev, vblock, blocks, fua: rng.random_ratio(1, 4) }
        }
        480..=559 => {
            let begin = rng.random_range(0..virt);
            let end = (begin + rng.random_range(1..=64)).min(virt);
            KOp::Discard { dev, begin, end }
        }
        560..=659 => KOp::Flush { dev },
        660..=719 if devs.len() < MAX_DEVICES => KOp::CreateThin { dev: new_id(rng, em) },
        720..=799 if devs.len() < MAX_DEVICES => {
            KOp::CreateSnap { dev: new_id(rng, em), origin: dev }
        }
        800..=839 if devs.len() > 1 => KOp::Delete { dev },
        840..=869 => {
            let t = model.current().trans_id;
            if rng.random_ratio(1, 8) {
                KOp::SetTransactionId { current: t + 1, new: t + 2 }
            } else {
                KOp::SetTransactionId { current: t, new: t + 1 }
            }
        }
        870..=899 => {
            if model.current().held.is_some() && rng.random_ratio(7, 8) {
                KOp::ReleaseSnap
            } else {
                KOp::ReserveSnap
            }
        }
        900..=919 if em.data_blocks() < em.shape().max_data_blocks => {
            let room = em.shape().max_data_blocks - em.data_blocks();
            KOp::GrowData { blocks: em.data_blocks() + rng.random_range(1..=room.min(1000)) }
        }
        920..=929 if *growths < MAX_METADATA_GROWTHS => {
            *growths += 1;
            KOp::GrowMetadata { blocks: em.metadata_blocks() + 1024 }
        }
        930..=944 => match rng.random_range(0..3) {
            // Messages the kernel must refuse.
            0 => KOp::CreateThin { dev },
            1 => KOp::Delete { dev: new_id(rng, em) },
            _ => KOp::CreateSnap { dev: new_id(rng, em), origin: new_id(rng, em) },
        },
        945..=969 => KOp::Checkpoint,
        _ => KOp::Flush { dev },
    }
}

/// Replays a workload on a fresh emulation: each op's expected outcome, and the model's
/// state at every checkpoint (cheap: the model's maps share their leaves).
pub struct Expected {
    pub outcomes: Vec<Outcome>,
    /// At each checkpoint: the op index, the model, and the metadata size in blocks.
    pub checkpoints: Vec<(usize, model::Model, u64)>,
    pub commits: u64,
    /// With `points`: every state between which a kernel commit may fall, in order (the
    /// formatted pool first).
    pub points: Vec<model::Model>,
    /// With `points`: for each op, the index in `points` of the state after it.
    pub op_points: Vec<usize>,
}

/// Runs `w` on the emulation alone; with `points`, keeps every intermediate state.
pub fn expect(w: &Workload, points: bool) -> Result<Expected, (usize, Divergence)> {
    let mut em = Emulation::new(&w.shape).map_err(|d| (0, d))?;
    if points {
        em.keep_points();
    }
    let mut out = Expected {
        outcomes: Vec::new(),
        checkpoints: Vec::new(),
        commits: 0,
        points: Vec::new(),
        op_points: Vec::new(),
    };
    for (i, op) in w.ops.iter().enumerate() {
        let o = em.apply(op).map_err(|d| (i, d))?;
        out.outcomes.push(o);
        if points {
            out.op_points.push(em.kept() - 1);
        }
        if *op == KOp::Checkpoint {
            out.checkpoints.push((i, em.model().clone(), em.metadata_blocks()));
        }
    }
    out.commits = em.commits;
    out.points = em.take_points();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_workload_and_it_replays_without_divergence() {
        for seed in 0..6 {
            let a = draw(seed, 300).expect("no divergence");
            let b = draw(seed, 300).expect("no divergence");
            assert_eq!(a, b, "seed {seed} is deterministic");
            assert_eq!(a.ops.last(), Some(&KOp::Checkpoint));
            let e = expect(&a, false).expect("replays");
            assert_eq!(e.outcomes.len(), a.ops.len());
            assert!(e.checkpoints.len() >= 7, "a checkpoint at least every 40 ops");
        }
    }

    /// The drawer takes any stream: a seed's is exactly [`draw`]'s, and a fuzzer's bytes
    /// decode into a workload that replays (the first byte picks the shape).
    #[test]
    fn bytes_drive_the_drawer_as_a_seed_does() {
        let by_stream = draw_from(3, &mut workload_entropy(3), 200).expect("no divergence");
        assert_eq!(by_stream, draw(3, 200).expect("no divergence"));
        let mut shapes = std::collections::BTreeSet::new();
        for first in [0u8, 0x60, 0xff] {
            let mut bytes = vec![first; 4];
            bytes.extend((0..64u8).map(|i| i.wrapping_mul(37)));
            let w = draw_from(0, &mut Entropy::from_bytes(&bytes), 120).expect("no divergence");
            assert_eq!(w, draw_from(0, &mut Entropy::from_bytes(&bytes), 120).expect("again"));
            expect(&w, false).expect("replays");
            shapes.insert(w.shape.prepopulation.is_some());
        }
        assert_eq!(shapes.len(), 2, "the bytes choose between a restored and a blank pool");
    }

    #[test]
    fn the_mix_reaches_splits_sharing_refusals_and_exhaustion() {
        let mut refused = 0;
        let mut enospc = 0;
        let mut snaps = 0;
        let mut most_mapped = 0;
        for seed in 0..12 {
            let w = draw(seed, 300).expect("no divergence");
            let e = expect(&w, true).expect("replays");
            for (op, o) in w.ops.iter().zip(&e.outcomes) {
                match (op, o) {
                    (KOp::Write { .. }, Outcome::Failed(model::Errno::ENOSPC)) => enospc += 1,
                    (op, Outcome::Failed(_)) if op.is_message() => refused += 1,
                    (KOp::CreateSnap { .. }, Outcome::Ok) => snaps += 1,
                    _ => {}
                }
            }
            let (_, last, _) = e.checkpoints.last().expect("a checkpoint");
            for d in last.devices().values() {
                most_mapped = most_mapped.max(d.mappings.len());
            }
        }
        assert!(refused > 0 && enospc > 0 && snaps > 0, "{refused} {enospc} {snaps}");
        assert!(
            most_mapped > 252,
            "a device with more mappings than one leaf holds: {most_mapped}"
        );
    }

    /// Regression (issue 30, seed 777 at 1,000 ops): out of data space, a FUA write to a
    /// mapped block of a device whose block 0 is unmapped: Linux 6.1 wrote and committed it
    /// and answered ENOSPC (the empty flush after an O_DSYNC write fails as every empty
    /// flush does there); the emulation said Ok, because it never applied its flush rule
    /// after a FUA write.
    #[test]
    fn a_fua_write_out_of_data_space_fails_as_its_flush_does() {
        let w = draw(777, 1000).expect("draws");
        assert!(
            matches!(w.ops[332], KOp::Write { fua: true, blocks: 1, .. }),
            "op 332 of seed 777 is the FUA write: {:?}",
            w.ops[332]
        );
        let e = expect(&w, false).expect("replays");
        assert_eq!(e.outcomes[332], Outcome::Failed(model::Errno::ENOSPC));
    }
}
