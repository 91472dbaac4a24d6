//! Repair judged under simulated damage: after every class B outcome (damage detected, or a
//! wrong answer the format cannot detect) the damaged image is repaired, as an operator
//! would with `thinsim repair`, before the run restores its last good image.
//!
//! Invariants (each a failure when broken):
//! - A repaired image passes `check` with no finding but warnings.
//! - Every mapping it keeps (device, virtual block → data block, time) is one the model had
//!   at the last commit (either candidate, when a superblock write was in flight). Repair
//!   may lose mappings; it must never invent or move one. Two excuses, each counted apart:
//!   a lost or misdirected write outstanding (an older block with a valid checksum and
//!   location stands where a newer one should be), and roots nothing could verify (taken
//!   from a superblock that failed validation, or found by a scan when block 0 holds no
//!   superblock at all): the format keeps no second copy of its roots, and an older tree
//!   can still be intact. With roots from a valid superblock, no excuse but the first.
//! - Even an excused mapping must be one the run once made: its (virtual block, data
//!   block, time) is in the run's history of every mapping the model ever held, committed
//!   or not (`Runner::ever_mapped`, seeded with the prepopulated ones). An older block can
//!   bring back the past; only a bug can bring back what never was.
//!
//! - Repair keeps at least every mapping a tolerant walk from the image's own roots can still
//!   read through blocks that validate (`runner::repair_bound`), when the superblock
//!   validates: losing one is [`Oracle::RepairIncomplete`]. Each run also repairs one
//!   undamaged committed image, which must come back whole: every committed mapping, no
//!   other.
//!
//! What comes back is tallied per fault kind ([`RepairTally`]): the share of committed
//! mappings recovered is the repair's measure, and the share of the bound it kept (100 %
//! unless the oracle fired) shows how much of the loss the damage itself decided. A repair that finds nothing to salvage on its
//! own is retried with the superblock values a user would give (`--data-block-size`,
//! `--nr-data-blocks`, `--transaction-id`); one that still finds nothing is counted as
//! refused, not failed (the damage may have taken every root).

use super::oracles::Oracle;
use super::repair_bound::{self, Readable};
use super::{Res, Runner, DATA_BLOCK_SECTORS};
use crate::disk::MemoryImage;
use engine::io::{BlockDevice, MemoryDevice, Shared};
use engine::thin::{Pool, ThinId};
use engine::tools::repair::{repair_with, RootsFrom};
use engine::tools::types::Overrides;
use engine::tools::ToolError;
use model::Model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What repair brought back after class B damage of one kind (or of all: key `all`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairTally {
    /// Damaged images repaired into a clean image.
    pub repaired: u64,
    /// Damaged images with nothing to salvage (no root survived): a typed refusal.
    pub refused: u64,
    /// Where the roots came from: the superblock, its unvalidated fields, a scan.
    pub from_superblock: u64,
    pub from_damaged_superblock: u64,
    pub from_scan: u64,
    /// The superblock's roots, one tree of which a scan found (it had not read). Absent
    /// from summaries written before it existed.
    #[serde(default)]
    pub from_lost_tree_found: u64,
    /// Repairs that needed the user's superblock values.
    pub needed_overrides: u64,
    /// Mappings the model had at the last commit, summed over repairs.
    pub committed_mappings: u64,
    /// Of those, the ones the repaired image kept.
    pub recovered_mappings: u64,
    /// Kept mappings the model did not have, excused by a lost or misdirected write.
    pub stale_mappings: u64,
    /// Kept mappings the model did not have, from roots nothing could verify (a superblock
    /// that failed validation, or a scan): an older tree, still intact.
    #[serde(default)]
    pub stale_from_unverified_roots: u64,
    /// Repairs judged against the completeness bound (the superblock validated).
    #[serde(default)]
    pub bound_judged: u64,
    /// Mappings the bound held, summed over those repairs; and the ones repair kept.
    #[serde(default)]
    pub bound_mappings: u64,
    #[serde(default)]
    pub bound_kept: u64,
    /// Committed mappings of an undamaged image lost to the one ambiguity repair documents
    /// (data block 0 in a leaf whose every value could be a tree root).
    #[serde(default)]
    pub lost_to_leaf_kind: u64,
}

impl RepairTally {
    pub fn merge(&mut self, o: &RepairTally) {
        self.repaired += o.repaired;
        self.refused += o.refused;
        self.from_superblock += o.from_superblock;
        self.from_damaged_superblock += o.from_damaged_superblock;
        self.from_scan += o.from_scan;
        self.from_lost_tree_found += o.from_lost_tree_found;
        self.needed_overrides += o.needed_overrides;
        self.committed_mappings += o.committed_mappings;
        self.recovered_mappings += o.recovered_mappings;
        self.stale_mappings += o.stale_mappings;
        self.stale_from_unverified_roots += o.stale_from_unverified_roots;
        self.bound_judged += o.bound_judged;
        self.bound_mappings += o.bound_mappings;
        self.bound_kept += o.bound_kept;
        self.lost_to_leaf_kind += o.lost_to_leaf_kind;
    }

    /// Kept over the bound, in percent (100 when no bound held a mapping).
    pub fn bound_kept_percent(&self) -> f64 {
        if self.bound_mappings == 0 {
            return 100.0;
        }
        100.0 * self.bound_kept as f64 / self.bound_mappings as f64
    }

    /// Recovered over committed, in percent (100 when nothing was committed).
    pub fn recovered_percent(&self) -> f64 {
        if self.committed_mappings == 0 {
            return 100.0;
        }
        100.0 * self.recovered_mappings as f64 / self.committed_mappings as f64
    }
}

/// The key of the all-kinds row.
pub const ALL_KINDS: &str = "all";

/// (device, vblock) → (data block, time): one state's live mappings, in key order.
type Mappings = Vec<((u64, u64), (u64, u32))>;

/// Whether `m` maps `key` as `val` (a lookup in the model's own maps: no copy of them).
fn model_has(m: &Model, key: (u64, u64), val: (u64, u32)) -> bool {
    m.current()
        .devices
        .get(&key.0)
        .and_then(|d| d.mappings.get(key.1))
        .map(|x| (x.data_block, x.time))
        == Some(val)
}

fn model_mapping_count(m: &Model) -> u64 {
    m.current().devices.values().map(|d| d.mappings.len() as u64).sum()
}

fn pool_mappings(pool: &Pool) -> Result<Mappings, engine::Error> {
    let mut out = Vec::new();
    for id in pool.devices()?.into_keys() {
        for (v, bt) in pool.mappings(ThinId(id))? {
            out.push(((id, v), (bt.data_block.0, bt.time.0)));
        }
    }
    Ok(out)
}

/// Every (virtual block, data block, time) `m` maps, on any device.
pub(super) fn mapped_triples(m: &Model) -> BTreeSet<(u64, u64, u32)> {
    let cur = m.current();
    cur.devices
        .values()
        .flat_map(|d| d.mappings.iter().map(|(v, x)| (v, x.data_block, x.time)))
        .collect()
}

impl Runner {
    /// Records a mapping the model just made (`m` is the model's answer to the insert).
    pub(super) fn note_mapped<T, E>(&mut self, vblock: u64, block: u64, m: &Result<T, E>) {
        if m.is_ok() {
            self.ever_mapped.insert((vblock, block, self.model.current().time));
        }
    }

    /// Repairs the damaged durable image and judges the result against `committed` (the
    /// crashed candidates). Called before the last good image is put back. The tools' work
    /// is not the workload's: the engine's structural counts leave it out.
    pub(super) fn judge_repair(&mut self, committed: &[Model]) -> Res<()> {
        engine::events::uncounted(|| self.repair_and_judge(committed))
    }

    fn repair_and_judge(&mut self, committed: &[Model]) -> Res<()> {
        let damaged = self.disk.lock().durable_image();
        let nr_blocks = damaged.nr_blocks();
        let kinds: Vec<String> =
            self.b_faults.iter().map(|k| format!("{k:?}")).chain([ALL_KINDS.to_owned()]).collect();
        let mut t = RepairTally::default();
        // The output is kept in memory and shared, so the repaired image is read back as
        // the blocks repair wrote (a pointer per chunk), never copied out byte by byte: big
        // pools have metadata devices of hundreds of MiB.
        let output = Shared::new(MemoryDevice::new(nr_blocks));
        let canaries = self.cfg.canaries();
        let attempt = |o: Overrides| {
            *output.lock() = MemoryDevice::new(nr_blocks);
            repair_with(damaged.to_device(), output.device(), o, canaries)
        };
        let user_values = Overrides {
            transaction_id: committed.last().map(|m| m.current().trans_id),
            data_block_size: Some(DATA_BLOCK_SECTORS),
            nr_data_blocks: committed.iter().map(|m| m.current().data_blocks).max(),
        };
        self.stats.ran(Oracle::Repair);
        let result = match attempt(Overrides::default()) {
            Err(ToolError::Input(_)) => {
                t.needed_overrides += 1;
                attempt(user_values)
            }
            r => r,
        };
        let (report, _written) = match result {
            Ok(r) => r,
            Err(ToolError::Input(_)) => {
                t.refused += 1;
                self.tally_repair(&kinds, &t);
                return Ok(());
            }
            Err(e) => return Err(self.fail(Oracle::Repair, format!("repair failed: {e}"))),
        };
        match report.roots_from {
            RootsFrom::Superblock => t.from_superblock += 1,
            RootsFrom::DamagedSuperblock => t.from_damaged_superblock += 1,
            RootsFrom::Scan => t.from_scan += 1,
            RootsFrom::LostTreeFound => t.from_lost_tree_found += 1,
        }
        let image = output.copy();
        self.stats.ran(Oracle::RepairUnclean);
        let audit = engine::tools::check::check(image.to_device());
        if !audit.is_clean() {
            let first: Vec<String> = audit.findings.iter().take(5).map(|f| f.to_string()).collect();
            return Err(self.fail(
                Oracle::RepairUnclean,
                format!("the repaired image fails check:\n{}", first.join("\n")),
            ));
        }
        let kept = Pool::open_image(image.to_device())
            .and_then(|p| pool_mappings(&p))
            .map_err(|e| self.fail(Oracle::RepairUnclean, format!("the repaired image: {e}")))?;
        self.stats.ran(Oracle::RepairInvented);
        // Judged against the candidate it matches best (the first of equals).
        let matches = |m: &Model| kept.iter().filter(|&&(k, v)| model_has(m, k, v)).count();
        let best = committed
            .iter()
            .map(|m| (matches(m), m))
            .fold(None, |b: Option<(usize, &Model)>, (n, m)| match b {
                Some((bn, _)) if bn >= n => b,
                _ => Some((n, m)),
            })
            .map(|(_, m)| m);
        let recovered = best.map_or(0, matches) as u64;
        let foreign: Vec<_> = kept
            .iter()
            .filter(|&&(k, v)| !best.is_some_and(|m| model_has(m, k, v)))
            .map(|(k, v)| (k, v))
            .collect();
        let stale_blocks = self.b_faults.iter().any(|k| k.leaves_older_block());
        // Roots from a superblock that failed validation or from a scan cannot be verified:
        // a flipped root pointer or a scan can land on an older tree that is still intact.
        let unverified_roots = report.roots_from != RootsFrom::Superblock;
        if !foreign.is_empty() && !stale_blocks && !unverified_roots {
            let (&(dev, v), &(b, time)) = foreign[0];
            return Err(self.fail(
                Oracle::RepairInvented,
                format!(
                    "repair kept {} mapping(s) the model never had at the last commit, first: \
                     device {dev} block {v} -> data {b} (time {time}); the model has {:?}; \
                     roots from {:?}, {} unreadable nodes, {} entries dropped",
                    foreign.len(),
                    best.and_then(|m| m.current().devices.get(&dev))
                        .and_then(|d| d.mappings.get(v))
                        .map(|x| (x.data_block, x.time)),
                    report.roots_from,
                    report.unreadable_nodes,
                    report.dropped_entries
                ),
            ));
        }
        // Excused or not, a kept mapping must be one the run once made.
        if let Some((&(dev, v), &(b, time))) = foreign
            .iter()
            .copied()
            .find(|(&(_, v), &(b, t))| !self.ever_mapped.contains(&(v, b, t)))
        {
            return Err(self.fail(
                Oracle::RepairInvented,
                format!(
                    "repair kept device {dev} block {v} -> data {b} (time {time}), a mapping \
                     the run never made; roots from {:?}",
                    report.roots_from
                ),
            ));
        }
        self.judge_bound(&damaged, &kept, &mut t)?;
        t.repaired += 1;
        t.committed_mappings += best.map_or(0, model_mapping_count);
        t.recovered_mappings += recovered;
        if stale_blocks {
            t.stale_mappings += foreign.len() as u64;
        } else {
            t.stale_from_unverified_roots += foreign.len() as u64;
        }
        self.tally_repair(&kinds, &t);
        Ok(())
    }

    /// Repair kept at least what a tolerant walk from the image's validated superblock still
    /// reads (no bound, and nothing judged, when the superblock does not validate).
    fn judge_bound(
        &mut self,
        image: &MemoryImage,
        kept: &Mappings,
        t: &mut RepairTally,
    ) -> Res<()> {
        let Some(bound) = repair_bound::readable_mappings(image) else { return Ok(()) };
        self.stats.ran(Oracle::RepairIncomplete);
        // Both ascend by (device, virtual block): one merge finds what the bound has and
        // repair did not keep.
        let mut kept = kept.iter().map(|&((d, v), (b, t))| (d, v, b, t)).peekable();
        let missing: Vec<Readable> = bound
            .iter()
            .filter(|&&m| {
                while kept.next_if(|&k| k < m).is_some() {}
                kept.next_if_eq(&m).is_none()
            })
            .copied()
            .collect();
        if let Some(&(dev, v, b, time)) = missing.first() {
            return Err(self.fail(
                Oracle::RepairIncomplete,
                format!(
                    "repair lost {} of the {} mapping(s) still readable through valid blocks from \
                     the superblock's roots, first: device {dev} block {v} -> data {b} (time {time})",
                    missing.len(),
                    bound.len()
                ),
            ));
        }
        t.bound_judged += 1;
        t.bound_mappings += bound.len() as u64;
        t.bound_kept += bound.len() as u64;
        Ok(())
    }

    /// Repairs `image`, a committed image with no damage, once per run: it must come back
    /// whole, every mapping of the model's committed state and no other.
    pub(super) fn judge_clean_repair(&mut self, image: &MemoryImage) -> Res<()> {
        engine::events::uncounted(|| self.clean_repair_and_judge(image))
    }

    fn clean_repair_and_judge(&mut self, image: &MemoryImage) -> Res<()> {
        let nr_blocks = image.nr_blocks();
        let output = Shared::new(MemoryDevice::new(nr_blocks));
        self.stats.ran(Oracle::Repair);
        let written = repair_with(
            image.to_device(),
            output.device(),
            Overrides::default(),
            self.cfg.canaries(),
        );
        if let Err(e) = written {
            return Err(self.fail(Oracle::Repair, format!("repair of an undamaged image: {e}")));
        }
        let kept = Pool::open_image(output.copy().to_device())
            .and_then(|p| pool_mappings(&p))
            .map_err(|e| self.fail(Oracle::RepairUnclean, format!("the repaired image: {e}")))?;
        self.stats.ran(Oracle::RepairIncomplete);
        let mut committed = self.model.clone();
        committed.crash();
        // The model's devices and mappings iterate in key order, as the pool's do.
        let want: Mappings = committed
            .current()
            .devices
            .iter()
            .flat_map(|(&d, dev)| {
                dev.mappings.iter().map(move |(vb, x)| ((d, vb), (x.data_block, x.time)))
            })
            .collect();
        debug_assert!(want.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
        let extra: Vec<_> = kept.iter().filter(|m| want.binary_search(m).is_err()).collect();
        if let Some(((dev, v), (b, time))) = extra.first() {
            return Err(self.fail(
                Oracle::RepairInvented,
                format!(
                    "repair of an undamaged image kept {} mapping(s) never committed, first: \
                     device {dev} block {v} -> data {b} (time {time})",
                    extra.len()
                ),
            ));
        }
        // Whole, but for the one loss repair documents: a mapping leaf whose every value
        // could be a tree root (data block 0 at a time below the metadata device's size) is
        // read as a top-level leaf; the format keeps nothing else to tell them apart.
        let lost: Vec<_> = want.iter().filter(|m| kept.binary_search(m).is_err()).collect();
        let bound = repair_bound::readable_mappings(image).unwrap_or_default();
        let unexcused = lost
            .iter()
            .find(|((d, v), (b, t))| *b != 0 || bound.binary_search(&(*d, *v, *b, *t)).is_ok());
        if let Some(((dev, v), (b, time))) = unexcused {
            return Err(self.fail(
                Oracle::RepairIncomplete,
                format!(
                    "repair of an undamaged image kept {} mappings of {}, and lost device {dev} \
                     block {v} -> data {b} (time {time}), which no rule of repair excuses",
                    kept.len(),
                    want.len()
                ),
            ));
        }
        let t = &mut self.stats.clean_repair;
        t.repaired += 1;
        t.from_superblock += 1;
        t.bound_judged += 1;
        t.committed_mappings += want.len() as u64;
        t.recovered_mappings += kept.len() as u64;
        t.lost_to_leaf_kind += lost.len() as u64;
        t.bound_mappings += bound.len() as u64;
        t.bound_kept += bound.len() as u64;
        Ok(())
    }

    fn tally_repair(&mut self, kinds: &[String], t: &RepairTally) {
        for k in kinds {
            self.stats.repair.entry(k.clone()).or_default().merge(t);
        }
    }
}
