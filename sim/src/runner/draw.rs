//! Drawing the next op from the model's state (swarm testing): the run's weights, the
//! relief ops after exhaustion, the key orders of deep-tree runs, the removal phase.
//!
//! Invariants:
//! - Only [`Drawer`]'s RNG is consumed, and only what the model, the options and the open
//!   handles say is read: the engine is never asked (its answers are judged, not used to
//!   choose), apart from the metadata size, which the model does not keep.
//! - A drawn op respects the preconditions the engine cannot check (an insert only of a
//!   block the caller holds; a dec only of a caller reference; an op on a handle only when
//!   one is open).

use super::op::Op;
use super::op::OpKind;
use super::options::{KeyOrder, Options};
use crate::disk::PPM;
use crate::entropy::Entropy;
use model::Model;
use rand::Rng;
use std::collections::BTreeMap;

/// What the last answers said the pool is short of: recovery ops are drawn first then.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pressure {
    pub metadata: bool,
    pub data: bool,
}

/// What drawing needs beyond the model and the options.
pub(super) struct View<'a> {
    pub model: &'a Model,
    pub opts: &'a Options,
    /// Thin ids of the open handles, in handle order.
    pub open: &'a [u64],
    pub pressure: Pressure,
    /// Asked for its metadata size only (the model does not keep it).
    pub pool: Option<&'a engine::thin::Pool>,
}

/// The generator: the run's RNG and the key-order state.
pub(super) struct Drawer {
    pub rng: Entropy,
    /// Per device, the last fresh key handed out in the run's key order.
    fresh_keys: BTreeMap<u64, u64>,
    /// In the removal phase (deep-tree and pre-populated runs): the removal weights.
    pub in_removal: bool,
}

impl Drawer {
    pub fn new(rng: Entropy) -> Self {
        Drawer { rng, fresh_keys: BTreeMap::new(), in_removal: false }
    }

    /// The next op.
    pub fn draw(&mut self, v: &View<'_>) -> Op {
        let kind = self.choose_kind(v);
        self.op_of(kind, v)
    }

    /// The start of the removal phase: two snapshots (a root is shared three ways when the
    /// next commit makes it durable: a metadata count in the overflow tree that the reopen at
    /// the end must read back), then a held metadata snapshot. Drawn one at a time, since
    /// each depends on the state the last one left.
    pub fn removal_op(&mut self, i: usize, v: &View<'_>) -> Option<Op> {
        self.in_removal = true;
        match i {
            0 | 1 if !v.model.devices().is_empty() => {
                let dev = fresh_dev_id(v.model);
                Some(Op::CreateSnap { dev, origin: self.pick_dev(v) })
            }
            2 => Some(Op::ReserveSnap),
            _ => None,
        }
    }

    /// A power cut inside an op of `kind` that writes a superblock, at this many I/O calls
    /// from its start (`crash_in_commit_ppm`); `forced` arms one whatever the rate.
    pub fn crash_offset(
        &mut self,
        kind: OpKind,
        opts: &Options,
        last_commit_ios: u64,
        forced: bool,
    ) -> Option<u64> {
        let random =
            kind.writes_superblock() && self.rng.random_range(0..PPM) < opts.crash_in_commit_ppm;
        (forced || random).then(|| self.rng.random_range(1..=last_commit_ios + 1))
    }

    fn choose_kind(&mut self, v: &View<'_>) -> OpKind {
        let kind = self.draw_kind(v);
        if needs_handle(kind) && v.open.is_empty() {
            // Open needs a device: with none, create one (else whole phases are spent on
            // opens that can only fail).
            if v.model.devices().is_empty() && v.model.is_in_service() {
                return OpKind::CreateThin;
            }
            return OpKind::Open;
        }
        kind
    }

    /// After exhaustion, recovery ops come first half the time; else the run's weights.
    fn draw_kind(&mut self, v: &View<'_>) -> OpKind {
        if v.pressure.metadata && self.rng.random_bool(0.5) {
            return OpKind::ResizeMetadata;
        }
        if v.pressure.data && self.rng.random_bool(0.5) {
            let relief = [OpKind::ResizeData, OpKind::RemoveRange, OpKind::Delete];
            return relief[self.rng.random_range(0..relief.len())];
        }
        let weights = match (&v.opts.removal, self.in_removal) {
            (Some(r), true) => &r.weights,
            _ => &v.opts.weights,
        };
        let total: u32 = weights.values().sum();
        let mut pick = self.rng.random_range(0..total.max(1));
        for (k, w) in weights {
            if pick < *w {
                return *k;
            }
            pick -= w;
        }
        OpKind::Commit
    }

    fn op_of(&mut self, kind: OpKind, v: &View<'_>) -> Op {
        let model = v.model;
        match kind {
            OpKind::CreateThin => {
                // A third of creates take a free id, so device trees grow.
                let dev =
                    if self.rng.random_bool(0.3) { fresh_dev_id(model) } else { self.pick_dev(v) };
                Op::CreateThin { dev }
            }
            OpKind::CreateSnap => {
                let dev = self.rng.random_range(0..v.opts.dev_ids);
                Op::CreateSnap { dev, origin: self.pick_dev(v) }
            }
            OpKind::Delete => Op::Delete { dev: self.pick_dev_to_delete(v) },
            OpKind::Commit => Op::Commit,
            OpKind::Abort => Op::Abort,
            OpKind::SetTransactionId => {
                let current = model.current().trans_id + u64::from(self.rng.random_bool(0.1));
                Op::SetTransactionId { current, new: current + 1 }
            }
            OpKind::ReserveSnap => Op::ReserveSnap,
            OpKind::ReleaseSnap => Op::ReleaseSnap,
            OpKind::Open => Op::Open { dev: self.pick_dev(v) },
            OpKind::CloseThin => Op::CloseThin { dev: self.pick_handle(v) },
            OpKind::FindBlock => {
                let dev = self.pick_handle(v);
                let vblock = self.pick_vblock(dev, v);
                Op::FindBlock { dev, vblock, can_issue_io: self.rng.random_bool(0.9) }
            }
            OpKind::FindMappedRange => {
                let dev = self.pick_handle(v);
                let begin = self.pick_vblock(dev, v);
                Op::FindMappedRange { dev, begin, end: begin + self.rng.random_range(0..40u64) }
            }
            OpKind::Provision => self.provision(v),
            OpKind::Alloc => Op::Alloc,
            OpKind::RemoveBlock => {
                let dev = self.pick_handle(v);
                Op::RemoveBlock { dev, vblock: self.pick_vblock(dev, v) }
            }
            OpKind::RemoveRange => {
                let dev = self.pick_handle(v);
                let begin = self.pick_vblock(dev, v);
                // Up to a few leaves' worth (a leaf holds 252), never the whole key space.
                let len = self.rng.random_range(0..(v.opts.vblocks / 2 + 2).min(1_200));
                Op::RemoveRange { dev, begin, end: begin + len }
            }
            OpKind::Query => self.query(v),
            OpKind::BlockIsShared => Op::BlockIsShared { data: self.pick_data_block(model) },
            OpKind::IncRange => {
                let begin = self.pick_data_block(model);
                let end = (begin + self.rng.random_range(0..3u64)).min(model.current().data_blocks);
                Op::IncRange { begin, end }
            }
            OpKind::DecRange => {
                let held: Vec<u64> = model.current().caller_refs.keys().copied().collect();
                if held.is_empty() {
                    return self.query(v);
                }
                let b = held[self.rng.random_range(0..held.len())];
                Op::DecRange { begin: b, end: b + 1 }
            }
            OpKind::ResizeData => {
                let cur = model.current().data_blocks;
                let grow = v.pressure.data || self.rng.random_bool(0.7);
                let blocks = if grow {
                    cur + self.rng.random_range(1..=v.opts.resize_data_step.max(1))
                } else {
                    cur - self.rng.random_range(0..=cur / 4)
                };
                Op::ResizeData { blocks }
            }
            OpKind::ResizeMetadata => {
                let cur = v.pool.and_then(|p| p.get_metadata_dev_size().ok());
                let Some(cur) = cur else { return self.query(v) };
                let disk = v.opts.metadata_disk_blocks;
                let grow = v.pressure.metadata || self.rng.random_bool(0.8);
                let step = v.opts.resize_metadata_step.max(1);
                let blocks = if grow {
                    (cur + self.rng.random_range(1..=step)).min(disk)
                } else {
                    cur.saturating_sub(self.rng.random_range(1..=step / 4 + 1)).max(16)
                };
                Op::ResizeMetadata { blocks }
            }
            OpKind::ReadOnly => {
                if !model.is_read_only() && self.rng.random_bool(0.5) {
                    Op::ReadOnly
                } else {
                    Op::ReadWrite
                }
            }
            OpKind::SetNeedsCheck => Op::SetNeedsCheck,
            OpKind::PowerCut => Op::PowerCut,
            OpKind::CloseReopen => Op::CloseReopen,
        }
    }

    /// alloc + insert; one provision in ten with a caller reference held (from
    /// inc_data_range) inserts that block instead, half the time over a vblock that already
    /// maps it: the remap the btree's `equal` hook exists for (the old value's reference must
    /// not be dropped).
    fn provision(&mut self, v: &View<'_>) -> Op {
        if self.rng.random_bool(0.1) {
            let held: Vec<u64> = v.model.current().caller_refs.keys().copied().collect();
            if !held.is_empty() {
                let data = held[self.rng.random_range(0..held.len())];
                let dev = self.pick_handle(v);
                // A vblock of this device that maps `data` already (small devices: a scan).
                let same =
                    v.model.devices().get(&dev).filter(|d| d.mappings.len() <= 4096).and_then(
                        |d| d.mappings.iter().find(|(_, m)| m.data_block == data).map(|(vb, _)| vb),
                    );
                let vblock = match same {
                    Some(vb) if self.rng.random_bool(0.5) => vb,
                    _ => self.pick_vblock(dev, v),
                };
                return Op::InsertHeld { dev, vblock, data };
            }
        }
        let dev = self.pick_handle(v);
        Op::Provision { dev, vblock: self.pick_provision_vblock(dev, v) }
    }

    fn query(&mut self, v: &View<'_>) -> Op {
        let dev = (!v.open.is_empty()).then(|| self.pick_handle(v));
        match (self.rng.random_range(0..10u32), dev) {
            (0, Some(dev)) => Op::HighestMappedBlock { dev },
            (1, Some(dev)) => Op::MappedCount { dev },
            (2, Some(dev)) => Op::ThinChanged { dev },
            (3, Some(dev)) => Op::AbortedChanges { dev },
            (4, _) => Op::ChangedThisTransaction,
            (5, _) => Op::MetadataSnap,
            (6, _) => Op::DataDevSize,
            (7, _) => Op::FreeBlockCount,
            (8, _) => Op::NeedsCheck,
            _ => Op::TransactionId,
        }
    }

    /// The thin id of a random open handle (there is one: see `choose_kind`).
    fn pick_handle(&mut self, v: &View<'_>) -> u64 {
        v.open[self.rng.random_range(0..v.open.len())]
    }

    fn pick_dev(&mut self, v: &View<'_>) -> u64 {
        let ids: Vec<u64> = v.model.devices().keys().copied().collect();
        if !ids.is_empty() && self.rng.random_bool(0.8) {
            ids[self.rng.random_range(0..ids.len())]
        } else {
            self.rng.random_range(0..v.opts.dev_ids)
        }
    }

    /// A device to delete: in the removal phase three times in four the lowest id, so deletes
    /// empty one leaf of the top-level and details trees and make them rebalance.
    fn pick_dev_to_delete(&mut self, v: &View<'_>) -> u64 {
        if self.in_removal && self.rng.random_bool(0.75) {
            if let Some(&id) = v.model.devices().keys().next() {
                return id;
            }
        }
        self.pick_dev(v)
    }

    /// The vblock a provision maps: in a run with a key order, mostly the next fresh key of
    /// the device in that order; otherwise as [`Drawer::pick_vblock`].
    fn pick_provision_vblock(&mut self, dev: u64, v: &View<'_>) -> u64 {
        let order = v.opts.key_order;
        if order == KeyOrder::Random {
            return self.pick_vblock(dev, v);
        }
        if self.rng.random_bool(0.15) {
            // An overwrite: a key out of order would end the order (a random key below a
            // descending run would be the minimum every later key stays above).
            let mapped = v.model.devices().get(&dev).map_or(0, |d| d.mappings.len());
            if mapped > 0 {
                let i = self.rng.random_range(0..mapped);
                return v.model.devices()[&dev].mappings.nth_key(i).expect("i < mapped");
            }
        }
        let n = v.opts.vblocks.max(1);
        let last = self.fresh_keys.get(&dev).copied();
        let next = match (order, last) {
            (KeyOrder::Descending, None) => n - 1 - self.rng.random_range(0..n / 8 + 1),
            (KeyOrder::Descending, Some(k)) => k.checked_sub(1).unwrap_or(n - 1),
            (KeyOrder::Clustered, Some(k)) if (k + 1) % 32 != 0 => k + 1,
            (KeyOrder::Ascending, Some(k)) => k + 1,
            _ => self.rng.random_range(0..n),
        } % n;
        self.fresh_keys.insert(dev, next);
        next
    }

    /// A mapped vblock of the device (mostly) or any in the run's key space.
    fn pick_vblock(&mut self, dev: u64, v: &View<'_>) -> u64 {
        let mapped: Option<u64> = v.model.devices().get(&dev).and_then(|d| {
            let n = d.mappings.len();
            (n > 0).then(|| d.mappings.nth_key(self.rng.random_range(0..n)).expect("n > 0"))
        });
        match mapped {
            Some(vb) if self.rng.random_bool(0.6) => vb,
            _ => self.rng.random_range(0..v.opts.vblocks),
        }
    }

    /// A data block in use (mostly) or any block of the current data device.
    fn pick_data_block(&mut self, model: &Model) -> u64 {
        let refs = model.logical_refs();
        let n = refs.len();
        if n > 0 && self.rng.random_bool(0.8) {
            let i = self.rng.random_range(0..n);
            return refs.nth_key(i).expect("i < n");
        }
        self.rng.random_range(0..model.current().data_blocks.max(1))
    }
}

fn needs_handle(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::CloseThin
            | OpKind::FindBlock
            | OpKind::FindMappedRange
            | OpKind::Provision
            | OpKind::RemoveBlock
            | OpKind::RemoveRange
    )
}

/// The smallest id no device has (a snapshot that cannot collide).
fn fresh_dev_id(model: &Model) -> u64 {
    let ids = model.devices();
    (0..).find(|id| !ids.contains_key(id)).expect("fewer than 2^64 devices")
}
