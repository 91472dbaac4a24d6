//! Drawing a crash from the disk's RNG, and the report of what a crash did.
//!
//! Invariants:
//! - A drawn plan is valid for the pending writes it was drawn for (one choice each, the
//!   order a permutation, tears within a block).
//! - A lost write is always dropped: it never reached the media, whatever a crash does.
//! - Tears respect the atomic unit unless sub-sector tears are enabled (class B); with a
//!   4 KiB unit and no sub-sector tears a "tear" degenerates to applying the write whole.

use super::config::{AtomicUnit, DiskConfig, PPM};
use super::coverage::{FaultClass, FaultKind, HitKind};
use super::image::{
    apply_validated, CrashPlan, MemoryImage, PendingWrite, SubsectorCut, Tear, WriteChoice,
    WriteFate, SECTORS_PER_BLOCK,
};
use engine::limits::SECTOR_SIZE;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeSet;

/// Draws a crash for `pending` under `config`'s crash policy.
pub(super) fn draw_plan<R: Rng + ?Sized>(
    rng: &mut R,
    pending: &[PendingWrite],
    config: &DiskConfig,
    subsector_tears: bool,
) -> CrashPlan {
    let policy = &config.crash;
    let choices = pending
        .iter()
        .map(|w| {
            if w.fate() == WriteFate::Lost {
                return WriteChoice::Drop;
            }
            let r = rng.random_range(0..PPM);
            if r < policy.apply_ppm {
                WriteChoice::Apply
            } else if r < policy.apply_ppm.saturating_add(policy.tear_ppm) {
                draw_tear(rng, config.atomic_unit, subsector_tears)
                    .map_or(WriteChoice::Apply, WriteChoice::Tear)
            } else {
                WriteChoice::Drop
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..pending.len()).collect();
    if policy.reorder {
        order.shuffle(rng);
    }
    CrashPlan { choices, order }
}

/// A crash image cut by the disk's crash model from outside a [`super::SimDisk`]: `durable`
/// with a plan for `pending` (issue order, seqs strictly increasing) drawn under `config`
/// applied. The kernel wing cuts the real kernel's logged writes with it, so the kernel's
/// crash images and the engine's come from one model. Returns the image and the plan.
pub fn cut<R: Rng + ?Sized>(
    rng: &mut R,
    durable: &MemoryImage,
    pending: &[PendingWrite],
    config: &DiskConfig,
) -> (MemoryImage, CrashPlan) {
    debug_assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq), "issue order");
    let plan = draw_plan(rng, pending, config, config.subsector_tears);
    debug_assert_eq!(plan.validate(pending.len()), Ok(()));
    let mut image = durable.clone();
    apply_validated(&mut image, pending, &plan);
    (image, plan)
}

/// A proper, non-empty subset of atomic units, plus (sub-sector mode, half the time) a cut
/// inside one old sector. `None` when the write cannot be torn (one unit, no sub-sector).
fn draw_tear<R: Rng + ?Sized>(rng: &mut R, unit: AtomicUnit, subsector: bool) -> Option<Tear> {
    let units = unit.units_per_block();
    let unit_mask: u32 = if units > 1 { rng.random_range(1..(1u32 << units) - 1) } else { 0 };
    let sectors_new = expand_unit_mask(unit_mask, unit);
    let want_cut = subsector && (units == 1 || rng.random_bool(0.5));
    let cut = if want_cut { Some(draw_cut(rng, sectors_new)) } else { None };
    if sectors_new == 0 && cut.is_none() {
        return None;
    }
    Some(Tear { sectors_new, cut })
}

/// A cut strictly inside one sector that the unit mask leaves old (there always is one: the
/// mask is a proper subset).
fn draw_cut<R: Rng + ?Sized>(rng: &mut R, sectors_new: u8) -> SubsectorCut {
    let old: Vec<u8> =
        (0..SECTORS_PER_BLOCK as u8).filter(|s| sectors_new & (1 << s) == 0).collect();
    let sector = old.get(rng.random_range(0..old.len().max(1))).copied().unwrap_or(0);
    let new_bytes = rng.random_range(1..SECTOR_SIZE as u16);
    SubsectorCut { sector, new_bytes }
}

/// Sector bitmap of the atomic units set in `unit_mask`.
pub(super) fn expand_unit_mask(unit_mask: u32, unit: AtomicUnit) -> u8 {
    let spu = unit.sectors_per_unit();
    let group = (1u32 << spu) - 1;
    let bits = (0..unit.units_per_block())
        .filter(|u| unit_mask & (1 << u) != 0)
        .fold(0u32, |acc, u| acc | (group << (u * spu)));
    (bits & 0xFF) as u8
}

/// What a crash did to one pending write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrashOutcome {
    pub seq: u64,
    /// The block the engine wrote.
    pub block: u64,
    pub fate: WriteFate,
    pub choice: WriteChoice,
    /// It landed after a newer write to the same block (an older version won).
    pub stale: bool,
    /// The fault this outcome injected (dropped, torn, sub-sector torn), if any.
    pub fault: Option<FaultKind>,
    /// The kind of block the write carried; classified only for outcomes with a fault.
    pub hit: Option<HitKind>,
}

/// Everything a crash did, for the failure message, the trace file and coverage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrashReport {
    /// The plan applied: replaying it with `SimDisk::crash_with` reproduces this crash.
    pub plan: CrashPlan,
    /// One per pending write, in issue order.
    pub outcomes: Vec<CrashOutcome>,
    /// The phase label at the crash.
    pub phase: &'static str,
}

impl CrashReport {
    /// Writes that reached the media whole (lost writes never do).
    pub fn applied(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.choice == WriteChoice::Apply && o.fate != WriteFate::Lost)
            .count()
    }

    /// Writes that left no trace (dropped, or lost whatever the choice).
    pub fn dropped(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.choice == WriteChoice::Drop || o.fate == WriteFate::Lost)
            .count()
    }

    /// Writes that reached the media in part.
    pub fn torn(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.choice, WriteChoice::Tear(_)) && o.fate != WriteFate::Lost)
            .count()
    }

    /// Writes that landed over a newer version of their block.
    pub fn stale_wins(&self) -> usize {
        self.outcomes.iter().filter(|o| o.stale).count()
    }

    /// Every outcome class this crash injected (empty: nothing was pending).
    pub fn classes(&self) -> BTreeSet<FaultClass> {
        let mut classes: BTreeSet<FaultClass> =
            self.outcomes.iter().filter_map(|o| o.fault).map(FaultKind::class).collect();
        if self.stale_wins() > 0 {
            classes.insert(FaultKind::StaleVersion.class());
        }
        classes
    }
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "crash in phase {:?}: {} pending, {} applied, {} torn, {} dropped, {} stale wins",
            self.phase,
            self.outcomes.len(),
            self.applied(),
            self.torn(),
            self.dropped(),
            self.stale_wins()
        )?;
        for o in &self.outcomes {
            writeln!(
                f,
                "  write #{} to block {} ({:?}): {:?}{}",
                o.seq,
                o.block,
                o.fate,
                o.choice,
                if o.stale { " [older version won]" } else { "" }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn unit_masks_expand_to_sector_groups() {
        assert_eq!(expand_unit_mask(0b101, AtomicUnit::Sector512), 0b101);
        assert_eq!(expand_unit_mask(0b10, AtomicUnit::Bytes1024), 0b1100);
        assert_eq!(expand_unit_mask(0b01, AtomicUnit::Bytes2048), 0b0000_1111);
        assert_eq!(expand_unit_mask(0b1, AtomicUnit::Block4096), 0xFF);
    }

    #[test]
    fn drawn_tears_respect_the_unit_unless_subsector() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for unit in [AtomicUnit::Sector512, AtomicUnit::Bytes1024, AtomicUnit::Bytes2048] {
            for _ in 0..200 {
                let t = draw_tear(&mut rng, unit, false).expect("a multi-unit block can tear");
                assert_eq!(t.fault_kind(unit), FaultKind::CrashTear);
                assert!(t.sectors_new != 0 && t.sectors_new != 0xFF);
            }
        }
        assert_eq!(draw_tear(&mut rng, AtomicUnit::Block4096, false), None);
        let mut cuts = 0;
        for _ in 0..200 {
            let t = draw_tear(&mut rng, AtomicUnit::Sector512, true).expect("tearable");
            if t.cut.is_some() {
                cuts += 1;
                assert_eq!(t.fault_kind(AtomicUnit::Sector512), FaultKind::SubsectorTear);
            }
        }
        assert!(cuts > 0);
        let t = draw_tear(&mut rng, AtomicUnit::Block4096, true).expect("sub-sector tear");
        assert_eq!(t.fault_kind(AtomicUnit::Block4096), FaultKind::SubsectorTear);
    }
}
