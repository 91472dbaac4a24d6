//! Pre-populated pools: a run of the big-pool or pre-populated class starts from an image
//! restored from thin_dump XML (the engine's `restore`, as an operator would build one), so
//! scale costs no steps. The model is built from the layout through its ordinary calls.
//!
//! Invariants:
//! - The layout is a pure function of [`Prepopulation`]; the model is built from it and
//!   the XML restored is the model's rendering ([`super::model_dump`]): the same devices
//!   and mappings, every mapping at time 0 in transaction 0 (the pool's state after
//!   format), so the restored pool equals the model's committed state.
//! - Data blocks are used densely from 0 (device 0's mappings first), so a pool whose
//!   prefix ends just below a bitmap's end allocates across that boundary at once.
//! - Restoring happens on a fault-free disk of its own, before the run's disk exists; the
//!   run's disk starts from the restored image. So a seed's run is the same whether its
//!   image was restored or taken from the per-thread cache of the large fixed layouts.

use super::options::{Options, Prepopulation};
use super::shared::SharedDisk;
use super::DATA_BLOCK_SECTORS;
use crate::disk::{DiskConfig, MemoryImage, SimDisk};
use engine::thin::{Pool, PoolOptions};
use model::Model;
use std::cell::RefCell;

/// One device of the layout: (vblock, data block) in ascending vblock order.
struct LaidOut {
    id: u64,
    mappings: Vec<(u64, u64)>,
}

/// The devices and mappings a prepopulation describes.
fn layout(p: &Prepopulation) -> Vec<LaidOut> {
    // Device 0: vblocks skip one in every `hole_every` (none for 1), data blocks from 0.
    let hole = p.hole_every.max(1);
    let vblock = |i: u64| p.first_vblock + if hole > 1 { i + i / (hole - 1) } else { i };
    let first: Vec<(u64, u64)> = (0..p.mappings).map(|i| (vblock(i), i)).collect();
    let mut devices = Vec::with_capacity(p.devices as usize);
    let mut next_data = p.mappings;
    for id in 0..p.devices {
        let mappings = if id == 0 {
            first.clone()
        } else if id <= p.sharers {
            first.iter().copied().step_by(p.share_every.max(1) as usize).collect()
        } else {
            let m: Vec<(u64, u64)> =
                (0..p.mappings_per_other).map(|j| (j, next_data + j)).collect();
            next_data += p.mappings_per_other;
            m
        };
        devices.push(LaidOut { id, mappings });
    }
    debug_assert_eq!(next_data, p.data_blocks_used());
    devices
}

/// The restored image and the model of its state, for `p` on a pool of the run's sizes:
/// restored on a fault-free disk of its own (so the run's disk, its I/O counts and its trace
/// are the same whether the image was restored now or taken from the cache), then resized
/// to the run's metadata size, committed and closed. The model is as after a reopen:
/// committed, not in service ([H11]).
pub(super) fn prepared(p: &Prepopulation, o: &Options) -> Result<(MemoryImage, Model), String> {
    let key = (p.clone(), o.data_blocks, o.metadata_blocks, o.metadata_disk_blocks);
    if p.cacheable() {
        let hit =
            CACHE.with(|c| c.borrow().iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
        if let Some(found) = hit {
            return Ok(found);
        }
    }
    let made = restored(p, o.data_blocks, o.metadata_blocks, o.metadata_disk_blocks)?;
    if p.cacheable() {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= CACHE_ENTRIES {
                c.remove(0);
            }
            c.push((key, made.clone()));
        });
    }
    Ok(made)
}

type CacheKey = (Prepopulation, u64, u64, u64);

/// Fixed large layouts restored so far on this thread (a handful: see `cacheable`).
const CACHE_ENTRIES: usize = 4;

thread_local! {
    static CACHE: RefCell<Vec<(CacheKey, (MemoryImage, Model))>> = const { RefCell::new(Vec::new()) };
}

/// The image `p` describes, restored by the engine's `restore` on a fault-free disk of
/// `disk_blocks`, with a space map of `metadata_blocks` and `data_blocks` of data; and the
/// model of its state (committed, not in service). Also what `thinsim kernel` hands the
/// real kernel to start from.
pub fn restored(
    p: &Prepopulation,
    data_blocks: u64,
    metadata_blocks: u64,
    disk_blocks: u64,
) -> Result<(MemoryImage, Model), String> {
    let devices = layout(p);
    // The model first: the XML restored is its rendering, so the two cannot disagree.
    let mut model = Model::new(data_blocks);
    populate_model(&mut model, &devices)
        .map_err(|e| format!("the model refused the layout: {e:?}"))?;
    let doc = super::model_dump(&model, DATA_BLOCK_SECTORS);
    let sim = SimDisk::new(disk_blocks, DiskConfig::none(), 0).map_err(|e| e.to_string())?;
    let disk = SharedDisk::new(sim);
    let dev = engine::tools::restore::restore_slice(&doc, disk.device())
        .map_err(|e| format!("restoring the prepopulated image: {e}"))?;
    let opts = PoolOptions { may_format: false, ..PoolOptions::new(DATA_BLOCK_SECTORS) };
    let pool = Pool::open(dev, opts).map_err(|e| format!("opening the restored image: {e}"))?;
    if pool.get_metadata_dev_size().ok() != Some(metadata_blocks) {
        pool.resize_metadata_dev(metadata_blocks)
            .and_then(|()| pool.commit())
            .map_err(|e| format!("sizing the restored pool: {e}"))?;
    }
    pool.close().map_err(|_| "closing the restored pool failed".to_owned())?;
    let image = disk.lock().durable_image();
    model.crash();
    Ok((image, model))
}

/// The model's counterpart of the restore: create, map (sharing through a caller
/// reference, as a snapshot's blocks are shared), commit.
fn populate_model(m: &mut Model, devices: &[LaidOut]) -> Result<(), model::Errno> {
    for d in devices {
        m.create_thin(d.id)?;
        let h = m.open_thin(d.id)?;
        for &(v, b) in &d.mappings {
            if m.is_allocatable(b) {
                m.alloc_data_block_check(b)?;
            } else {
                m.inc_data_range(b, b + 1)?;
            }
            m.insert_block(h, v, b)?;
        }
        m.close_thin(h)?;
    }
    m.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_shares_and_leaves_holes_as_described() {
        let p = Prepopulation {
            devices: 4,
            mappings: 10,
            hole_every: 3,
            sharers: 2,
            share_every: 2,
            mappings_per_other: 5,
            first_vblock: 0,
        };
        let l = layout(&p);
        assert_eq!(l.len(), 4);
        let v0: Vec<u64> = l[0].mappings.iter().map(|m| m.0).collect();
        assert_eq!(v0, [0, 1, 3, 4, 6, 7, 9, 10, 12, 13], "every third vblock is a hole");
        assert_eq!(l[1].mappings, l[2].mappings);
        assert_eq!(l[1].mappings.len(), 5);
        assert!(l[1].mappings.iter().all(|m| l[0].mappings.contains(m)));
        let fresh: Vec<u64> = l[3].mappings.iter().map(|m| m.1).collect();
        assert_eq!(fresh, [10, 11, 12, 13, 14]);
        assert_eq!(p.data_blocks_used(), 15);
        let mut m = Model::new(100);
        populate_model(&mut m, &l).unwrap();
        let text = String::from_utf8(super::super::model_dump(&m, DATA_BLOCK_SECTORS)).unwrap();
        assert!(text.contains("nr_data_blocks=\"100\""));
        assert_eq!(text.matches("<device ").count(), 4);
    }
}
