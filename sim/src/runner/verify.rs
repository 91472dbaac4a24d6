//! How much is verified after a commit: everything the model changed every time, and the whole
//! state (mappings, `ls` numbers, `check` of the durable image) often enough that its cost
//! stays a bounded fraction of the run's.
//!
//! *Incremental* verification compares, against the model's current state: the pool values
//! (time, transaction id, data size, needs_check, free data blocks), every device's details,
//! and then only what the model's change log ([`Model::take_changes`]) names since the last
//! verification: every changed (device, vblock) mapping (read back in one descent per
//! device), every created device in full, the held snapshot in full when it changed, and the
//! engine's reference count of every data block whose logical count or caller references
//! changed (`0` exactly when the logical count is `0`, never above it: a shared node counts
//! its entries once, so the physical count may be lower). Its cost follows the change, not
//! the pool.
//!
//! *Full* verification is [`oracle::compare_pool`], [`oracle::compare_ls`] and `check` of the
//! durable image against the model's recount ([`oracle::check_image`]).
//!
//! Invariants:
//! - While `primed`, the engine's in-core state was verified equal to the model's current
//!   state as it was at the model's last `take_changes`, so the changes taken now are all
//!   that can differ. `primed` is false after the engine's in-core state was rebuilt (open,
//!   reopen, restore), which makes the next verification full; so does a model that kept
//!   too many changes to list them.
//! - In [`VerifyMode::Amortized`] a full verification is due once the ops since the last one
//!   reach [`full_cost`] × [`FULL_COST_PER_OP`]⁻¹ — a deterministic rule over op counts and the
//!   model's size, never a clock, so a seed replays the same verifications. Its cost, linear
//!   in the pool's size, is thereby spread over at least as many ops as the pool has mappings.
//! - An engine bug that corrupts state the model did not touch is still caught: by the next
//!   full verification, by every recovery (always full), and by the end-of-run power cut.

use super::oracle::{self, Diff};
use super::oracles::Oracle;
use engine::thin::ThinId;
use engine::thin::{Pool, PoolOptions};
use model::{Change, Model};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Committed images with more mappings than this are big: their undamaged repair runs in one
/// run of every [`CLEAN_REPAIR_BIG_EVERY`] only.
const CLEAN_REPAIR_BIG_MAPPINGS: u64 = 4_096;
const CLEAN_REPAIR_BIG_EVERY: u64 = 8;

/// Verification after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Full verification after every commit.
    Full,
    /// Incremental after every commit, full when its amortized budget allows (the default).
    #[default]
    Amortized,
}

/// Units of full-verification cost one op pays for: one unit is one mapping compared and
/// recounted. Measured (`thinsim bench-sim`, 100,000 ops): a full verification costs about
/// a sixth of a bare engine op per mapping, so at 1 the full verifications add about a sixth
/// to a run.
pub const FULL_COST_PER_OP: u64 = 1;

/// Cost units of a full verification of an empty pool (superblock, space maps, details).
const FULL_COST_FIXED: u64 = 256;

/// What a full verification of `model` costs, in mappings compared.
pub fn full_cost(model: &Model) -> u64 {
    let cur = model.current();
    let held = cur.held.iter().flat_map(|h| h.values());
    let mappings: u64 = cur.devices.values().chain(held).map(|d| d.mappings.len() as u64).sum();
    FULL_COST_FIXED + mappings
}

/// The verification schedule of one run.
#[derive(Debug, Clone)]
pub struct Verifier {
    mode: VerifyMode,
    primed: bool,
    ops_since_full: u64,
}

impl Verifier {
    pub fn new(mode: VerifyMode) -> Self {
        Verifier { mode, primed: false, ops_since_full: 0 }
    }

    /// One engine op was issued.
    pub fn count_op(&mut self) {
        self.ops_since_full += 1;
    }

    /// The engine's in-core state was rebuilt: the next verification is full.
    pub fn forget(&mut self) {
        self.primed = false;
    }

    /// Whether the next verification must be full.
    pub fn full_due(&self, model: &Model) -> bool {
        match self.mode {
            VerifyMode::Full => true,
            VerifyMode::Amortized => {
                !self.primed
                    || !model.changes_kept()
                    || self.ops_since_full.saturating_mul(FULL_COST_PER_OP) >= full_cost(model)
            }
        }
    }

    /// The engine was verified equal to `model`'s current state.
    pub fn verified(&mut self, model: &mut Model, full: bool) {
        model.take_changes();
        self.primed = true;
        if full {
            self.ops_since_full = 0;
        }
    }

    /// Incremental verification of what changed since the last one; a full state comparison
    /// ([`oracle::compare_pool`]) when that is not known.
    pub fn compare_changes(&self, pool: &Pool, model: &mut Model) -> Result<(), oracle::Mismatch> {
        match model.take_changes() {
            Some(changes) if self.primed => compare_changes(pool, model, &changes),
            _ => oracle::compare_pool(pool, model),
        }
    }
}

/// The incremental comparison of the module header; `changes` in any order, repeats allowed.
pub fn compare_changes(
    pool: &Pool,
    model: &Model,
    changes: &[Change],
) -> Result<(), oracle::Mismatch> {
    let mut d = Diff::default();
    let cur = model.current();
    oracle::compare_values(pool, model, &mut d)?;
    let details = pool.devices().map_err(oracle::e2s)?;
    for (id, dev) in cur.devices.iter() {
        match details.get(id) {
            Some(det) => oracle::diff_details("", *id, dev, det, &mut d),
            None => d.push(format!("device {id}: expected, missing in the engine")),
        }
    }
    for id in details.keys().filter(|&&id| !cur.devices.contains_key(&id)) {
        d.push(format!("device {id}: found in the engine, not expected"));
    }
    // Sorted per kind: plain integers sort much faster than the changes themselves.
    let mut created = BTreeSet::new();
    let mut vblocks: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut blocks = Vec::new();
    let mut held = false;
    for change in changes {
        match *change {
            Change::Device(id) if cur.devices.contains_key(&id) => {
                created.insert(id);
            }
            Change::Device(_) | Change::Details(_) => {}
            Change::Mapping(id, v) => vblocks.entry(id).or_default().push(v),
            Change::Refs(b) | Change::CallerRefs(b) => blocks.push(b),
            Change::Held => held = true,
        }
    }
    for &id in &created {
        let found = pool.mappings(ThinId(id)).map_err(oracle::e2s)?;
        oracle::diff_mappings("", id, &cur.devices[&id], &found, &mut d);
    }
    // Changed mappings, device by device, ascending; a device created (compared whole above)
    // or gone (its blocks' counts are checked below) is skipped.
    for (id, mut vblocks) in vblocks {
        let Some(dev) = cur.devices.get(&id).filter(|_| !created.contains(&id)) else {
            continue;
        };
        vblocks.sort_unstable();
        vblocks.dedup();
        let found = pool.lookup_mappings(ThinId(id), &vblocks).map_err(oracle::e2s)?;
        if found.len() != vblocks.len() {
            d.push(format!(
                "device {id}: {} vblocks looked up, {} answers (every key needs one)",
                vblocks.len(),
                found.len()
            ));
        }
        for (v, bt) in vblocks.into_iter().zip(found) {
            oracle::diff_mapping("", id, v, dev.mappings.get(v).copied(), bt, &mut d);
        }
    }
    if held {
        oracle::compare_held(pool, model, &mut d)?;
    }
    blocks.sort_unstable();
    blocks.dedup();
    blocks.retain(|&b| b < cur.data_blocks);
    let counts = pool.data_block_counts(&blocks).map_err(oracle::e2s)?;
    if counts.len() != blocks.len() {
        d.push(format!("{} data block counts asked for, {} given", blocks.len(), counts.len()));
    }
    for (block, physical) in blocks.into_iter().zip(counts) {
        let (logical, physical) = (cur.refs_of(block), u64::from(physical));
        if (physical == 0) != (logical == 0) || physical > logical {
            d.push(format!(
                "data block {block}: space map count {physical}, logical count {logical} \
                 (must be 0 together, and the space map's at most the logical)"
            ));
        }
    }
    d.into_result()
}

/// The verification after a commit, on the runner's state.
impl super::Runner {
    /// After a successful commit: what changed since the last verification, or (when due,
    /// see [`super::verify`], and always while class B damage may hide in the image) the whole
    /// in-core state, `check` on the durable image and an independent reopen of that image.
    pub(super) fn verify_committed(&mut self) -> super::Res<()> {
        // Faults the commit itself injected decide too: class B damage gets the full check.
        self.drain_faults();
        self.stats.ran(Oracle::MetadataSpaceAfterCommit);
        self.stats.ran(Oracle::StateAfterCommit);
        if let Err(d) = oracle::compare_metadata_counts(self.pool()) {
            return self.diverged(Oracle::MetadataSpaceAfterCommit, d);
        }
        if self.b_faults.is_empty() && !self.verifier.full_due(&self.model) {
            let pool = self.pool.as_ref().expect("the pool is open between recoveries");
            if let Err(d) = self.verifier.compare_changes(pool, &mut self.model) {
                return self.diverged(Oracle::StateAfterCommit, d);
            }
            self.stats.incremental_checks += 1;
            self.verifier.verified(&mut self.model, false);
            return Ok(());
        }
        // Taken first: the comparison's reads may rot blocks of the live disk.
        let image = self.disk.lock().durable_image();
        self.drain_faults();
        if let Err(d) = oracle::compare_pool(self.pool(), &self.model) {
            return self.diverged(Oracle::StateAfterCommit, d);
        }
        self.stats.ran(Oracle::LsAfterCommit);
        if let Err(d) = oracle::compare_ls(self.pool(), &self.model) {
            return self.diverged(Oracle::LsAfterCommit, d);
        }
        self.stats.commit_checks += 1;
        self.stats.ran(Oracle::CheckAfterCommit);
        self.stats.ran(Oracle::CheckPanic);
        let canaries = self.cfg.canaries();
        match oracle::check_image_with(&image, image.to_device(), &self.model, canaries) {
            Ok(leaked) => self.stats.check_leaks.record(leaked),
            Err(d) => return self.diverged(Oracle::CheckAfterCommit, d),
        }
        // Once a run, the undamaged committed image is repaired and must come back whole.
        // A big image costs a pre-populated run a tenth of its time, so those are repaired
        // in one run of every CLEAN_REPAIR_BIG_EVERY (by seed: the choice replays).
        let mapped: u64 = self.model.committed().devices.values().map(|d| d.mapped_blocks()).sum();
        let due = mapped > 0
            && (mapped <= CLEAN_REPAIR_BIG_MAPPINGS
                || self.cfg.seed.is_multiple_of(CLEAN_REPAIR_BIG_EVERY));
        if self.b_faults.is_empty() && self.stats.clean_repair.repaired == 0 && due {
            self.judge_clean_repair(&image)?;
        }
        if !self.b_faults.is_empty() {
            self.stats.ran(Oracle::ImageAfterCommit);
            let mut m = self.model.clone();
            m.crash();
            // The superblock's own fields too (metadata size, flags, held root): the model
            // does not know them all, but the pool that just committed does. A misdirected
            // superblock write that changed only the metadata size is caught here.
            let live = self.pool().summary().map_err(oracle::e2s);
            let reopened = Pool::open(image.to_device(), reopen_options())
                .map_err(oracle::e2s)
                .and_then(|p| {
                    oracle::compare_pool(&p, &m)?;
                    let (live, found) = (live?, p.summary().map_err(oracle::e2s)?);
                    if live == found {
                        Ok(())
                    } else {
                        let d = format!("superblock: committed {live:?}, reopened {found:?}");
                        Err(oracle::Mismatch::State(d))
                    }
                });
            if let Err(d) = reopened {
                return self.diverged(Oracle::ImageAfterCommit, d);
            }
        }
        self.mark_good(image, false);
        self.verifier.verified(&mut self.model, true);
        Ok(())
    }
}
/// How an image is reopened to be judged: never formatted, so a blank or unreadable
/// superblock is a finding rather than a fresh pool.
pub(super) fn reopen_options() -> PoolOptions {
    PoolOptions { may_format: false, ..PoolOptions::new(super::DATA_BLOCK_SECTORS) }
}
