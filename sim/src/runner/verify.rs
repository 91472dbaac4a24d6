//! How much is verified after a commit: everything the model changed every time, and the whole
//! state (mappings, `ls` numbers, `check` of the durable image) often enough that its cost
//! stays a bounded fraction of the run's.
//!
//! *Incremental* verification compares, against the model's current state: the pool values
//! (time, transaction id, data size, needs_check, free data blocks), every device's details,
//! every (device, vblock) whose mapping changed since `base` (found with the persistent maps'
//! structural diff, which skips shared nodes, so its cost follows the change, not the pool),
//! every device that is new since `base` in full, the held snapshot in full when it changed,
//! and the engine's reference count of every data block whose logical count changed
//! (`0` exactly when the logical count is `0`, never above it: a shared node counts its
//! entries once, so the physical count may be lower).
//!
//! *Full* verification is [`oracle::compare_pool`], [`oracle::compare_ls`] and `check` of the
//! durable image against the model's recount ([`oracle::check_image`]).
//!
//! Invariants:
//! - `base` is a model state the engine's in-core state was verified equal to. It is `None`
//!   after the engine's in-core state was rebuilt (open, reopen, restore), which makes the
//!   next verification full.
//! - In [`VerifyMode::Amortized`] a full verification is due once the ops since the last one
//!   reach [`full_cost`] × [`FULL_COST_PER_OP`]⁻¹ — a deterministic rule over op counts and the
//!   model's size, never a clock, so a seed replays the same verifications. Its cost, linear
//!   in the pool's size, is thereby spread over at least as many ops as the pool has mappings.
//! - An engine bug that corrupts state the model did not touch is still caught: by the next
//!   full verification, by every recovery (always full), and by the end-of-run power cut.

use super::oracle::{self, Diff};
use engine::thin::Pool;
use model::{Model, PoolState};
use serde::{Deserialize, Serialize};

/// Verification after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Full verification after every commit.
    Full,
    /// Incremental after every commit, full when its amortized budget allows (the default).
    Amortized,
}

/// Units of full-verification cost one op pays for: one unit is one mapping compared and
/// recounted. Measured (`thinsim bench-sim`): a full verification costs about a third of a
/// bare engine op per mapping, so at 1 the full verifications add about a third to a run.
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
    base: Option<PoolState>,
    ops_since_full: u64,
}

impl Verifier {
    pub fn new(mode: VerifyMode) -> Self {
        Verifier { mode, base: None, ops_since_full: 0 }
    }

    /// One engine op was issued.
    pub fn count_op(&mut self) {
        self.ops_since_full += 1;
    }

    /// The engine's in-core state was rebuilt: the next verification is full.
    pub fn forget(&mut self) {
        self.base = None;
    }

    /// Whether the next verification must be full.
    pub fn full_due(&self, model: &Model) -> bool {
        match (self.mode, &self.base) {
            (VerifyMode::Full, _) | (_, None) => true,
            (VerifyMode::Amortized, Some(_)) => {
                self.ops_since_full.saturating_mul(FULL_COST_PER_OP) >= full_cost(model)
            }
        }
    }

    /// The engine was verified equal to `model`'s current state.
    pub fn verified(&mut self, model: &Model, full: bool) {
        self.base = Some(model.current().clone());
        if full {
            self.ops_since_full = 0;
        }
    }

    /// Incremental verification against the last verified state; a full state comparison
    /// ([`oracle::compare_pool`]) when there is none.
    pub fn compare_changes(&self, pool: &Pool, model: &Model) -> Result<(), String> {
        match &self.base {
            Some(base) => compare_changes(pool, base, model),
            None => oracle::compare_pool(pool, model),
        }
    }
}

/// The incremental comparison of the module header.
pub fn compare_changes(pool: &Pool, base: &PoolState, model: &Model) -> Result<(), String> {
    let mut d = Diff::default();
    let cur = model.current();
    oracle::compare_values(pool, model, &mut d)?;
    let details = pool.devices().map_err(oracle::e2s)?;
    // Data blocks whose logical count may have changed: those of changed mappings and
    // caller references (the held snapshot's are compared in full when it changes).
    let mut blocks = Vec::new();
    for (id, dev) in cur.devices.iter() {
        let Some(det) = details.get(id) else {
            d.push(format!("device {id}: expected, missing in the engine"));
            continue;
        };
        oracle::diff_details("", *id, dev, det, &mut d);
        match base.devices.get(id) {
            None => {
                let found = pool.mappings(*id).map_err(oracle::e2s)?;
                oracle::diff_mappings("", *id, dev, &found, &mut d);
                blocks.extend(dev.mappings.values().map(|m| m.data_block));
            }
            Some(old) if old.mappings.ptr_eq(&dev.mappings) => {}
            Some(old) => {
                let changed = old.mappings.diff(&dev.mappings);
                let vblocks: Vec<u64> = changed.iter().map(|&(v, _, _)| v).collect();
                let found = pool.lookup_mappings(*id, &vblocks).map_err(oracle::e2s)?;
                for ((v, old, new), bt) in changed.into_iter().zip(found) {
                    blocks.extend(old.into_iter().chain(new).map(|m| m.data_block));
                    oracle::diff_mapping("", *id, v, new, bt, &mut d);
                }
            }
        }
    }
    for id in details.keys().filter(|&&id| !cur.devices.contains_key(&id)) {
        d.push(format!("device {id}: found in the engine, not expected"));
    }
    for (_, gone) in base.devices.iter().filter(|(&id, _)| !cur.devices.contains_key(&id)) {
        blocks.extend(gone.mappings.values().map(|m| m.data_block));
    }
    // Cheap when unchanged: the held devices' mappings are still the same versions.
    if base.held != cur.held {
        oracle::compare_held(pool, model, &mut d)?;
        for held in [&base.held, &cur.held].into_iter().flatten() {
            blocks
                .extend(held.values().flat_map(|dev| dev.mappings.values()).map(|m| m.data_block));
        }
    }
    blocks.extend(base.caller_refs.diff(&cur.caller_refs).into_iter().map(|(b, _, _)| b));
    blocks.sort_unstable();
    blocks.dedup();
    for block in blocks.into_iter().filter(|&b| b < cur.data_blocks) {
        let logical = cur.refs_of(block);
        let physical = u64::from(pool.data_block_count(block).map_err(oracle::e2s)?);
        if (physical == 0) != (logical == 0) || physical > logical {
            d.push(format!(
                "data block {block}: space map count {physical}, logical count {logical} \
                 (must be 0 together, and the space map's at most the logical)"
            ));
        }
    }
    d.into_result()
}
