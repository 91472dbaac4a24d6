//! Exhaustive (or, above a bound, sampled) enumeration of the crash images reachable from
//! one point: every choice for every pending write, applied in issue order.
//!
//! Why issue order is enough: with whole writes, "an older version wins" is the same image
//! as "the newer version was dropped", which the enumeration already contains; so issue
//! order with every subset covers every image a reordering crash can make from whole writes.
//! Tears are enumerated at atomic-unit granularity only (class A); sub-sector tears are
//! class B and left to random crashes.
//!
//! Invariants: the iterator owns `Arc` clones of the durable image and pending writes, so
//! it is independent of the disk afterwards; it yields exactly `planned()` images, each for
//! a different set of choices (the sampled mode draws without replacement, so a campaign's
//! count of crash images counts no state twice); the sampled mode draws from its own seeded
//! RNG, so a bound and a seed fix the sample.

use super::config::AtomicUnit;
use super::crash::expand_unit_mask;
use super::image::WriteFate;
use super::image::{apply_validated, CrashPlan, MemoryImage, PendingWrite, Tear, WriteChoice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which tears to enumerate per pending write, besides dropping and applying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TearSet {
    /// None: whole writes only.
    Whole,
    /// The first k or the last k atomic units new, for every k (14 tears with 512-byte
    /// units): the shapes a sequential transfer cut by power loss leaves.
    Prefixes,
    /// Every proper, non-empty subset of atomic units (254 with 512-byte units).
    AllMasks,
}

/// Bounds of one exploration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExploreOptions {
    pub tears: TearSet,
    /// Above this many crash states, sample this many instead of enumerating.
    pub max_images: u64,
    /// Seed of the sampler.
    pub sample_seed: u64,
}

/// One crash state: the choices made and the image they give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashState {
    /// One per pending write, issue order (a [`CrashPlan::in_issue_order`] plan).
    pub choices: Vec<WriteChoice>,
    pub image: MemoryImage,
}

enum Mode {
    /// Mixed-radix counter over the per-write options; `None` when exhausted.
    Exhaustive(Option<Vec<usize>>),
    /// Boxed: the RNG state is large and only the sampled mode needs it. Drawn without
    /// replacement: `seen` holds every state yielded, so each counts once.
    Sampled(Box<ChaCha8Rng>, BTreeSet<Vec<usize>>),
}

/// Iterator over the crash states of one crash point.
pub struct CrashStates {
    durable: MemoryImage,
    pending: Vec<PendingWrite>,
    options: Vec<Vec<WriteChoice>>,
    total: Option<u64>,
    planned: u64,
    produced: u64,
    mode: Mode,
}

impl CrashStates {
    pub(super) fn new(
        durable: MemoryImage,
        pending: Vec<PendingWrite>,
        unit: AtomicUnit,
        opts: &ExploreOptions,
    ) -> Self {
        let options: Vec<Vec<WriteChoice>> =
            pending.iter().map(|w| write_options(w, unit, opts.tears)).collect();
        let total = options.iter().try_fold(1u64, |acc, o| acc.checked_mul(o.len() as u64));
        let exhaustive = total.is_some_and(|t| t <= opts.max_images);
        let (planned, mode) = match total {
            Some(t) if exhaustive => (t, Mode::Exhaustive(Some(vec![0; options.len()]))),
            _ => (
                opts.max_images,
                Mode::Sampled(
                    Box::new(ChaCha8Rng::seed_from_u64(opts.sample_seed)),
                    BTreeSet::new(),
                ),
            ),
        };
        CrashStates { durable, pending, options, total, planned, produced: 0, mode }
    }

    /// Every crash state there is (`None`: more than `u64::MAX`).
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// How many states this iterator yields.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// Whether every state is yielded (no sampling).
    pub fn is_exhaustive(&self) -> bool {
        matches!(self.mode, Mode::Exhaustive(_))
    }

    fn next_digits(&mut self) -> Option<Vec<usize>> {
        let total = self.total;
        match &mut self.mode {
            Mode::Exhaustive(counter) => {
                let current = counter.take()?;
                *counter = increment(&current, &self.options);
                Some(current)
            }
            Mode::Sampled(rng, seen) => {
                // The two extremes first (nothing survived, everything survived), then random
                // states not yielded before. Sampling happens only above `max_images` states,
                // so there is always one left and the redraws end.
                debug_assert!(total.is_none_or(|t| (seen.len() as u64) < t), "a state is left");
                loop {
                    let digits: Vec<usize> = match seen.len() {
                        0 => vec![0; self.options.len()],
                        1 => self.options.iter().map(|o| usize::from(o.len() > 1)).collect(),
                        _ => self.options.iter().map(|o| rng.random_range(0..o.len())).collect(),
                    };
                    if seen.insert(digits.clone()) {
                        return Some(digits);
                    }
                }
            }
        }
    }
}

impl Iterator for CrashStates {
    type Item = CrashState;

    fn next(&mut self) -> Option<CrashState> {
        if self.produced >= self.planned {
            return None;
        }
        let digits = self.next_digits()?;
        self.produced += 1;
        let choices: Vec<WriteChoice> = digits
            .iter()
            .zip(&self.options)
            .map(|(&d, o)| o.get(d).copied().unwrap_or(WriteChoice::Drop))
            .collect();
        let plan = CrashPlan::in_issue_order(choices);
        let mut image = self.durable.clone();
        apply_validated(&mut image, &self.pending, &plan);
        Some(CrashState { choices: plan.choices, image })
    }
}

/// The next counter value, or `None` after the last.
fn increment(digits: &[usize], options: &[Vec<WriteChoice>]) -> Option<Vec<usize>> {
    let mut next = digits.to_vec();
    for (d, o) in next.iter_mut().zip(options) {
        *d += 1;
        if *d < o.len() {
            return Some(next);
        }
        *d = 0;
    }
    None
}

/// Drop, apply, then the tears of `set`; a lost write has one outcome only (dropped).
fn write_options(w: &PendingWrite, unit: AtomicUnit, set: TearSet) -> Vec<WriteChoice> {
    if w.fate() == WriteFate::Lost {
        return vec![WriteChoice::Drop];
    }
    let mut options = vec![WriteChoice::Drop, WriteChoice::Apply];
    options.extend(
        unit_masks(unit, set)
            .into_iter()
            .map(|m| WriteChoice::Tear(Tear { sectors_new: expand_unit_mask(m, unit), cut: None })),
    );
    options
}

/// Proper, non-empty unit masks of the tear set, without duplicates, ascending.
fn unit_masks(unit: AtomicUnit, set: TearSet) -> Vec<u32> {
    let units = unit.units_per_block();
    let full = (1u32 << units) - 1;
    let mut masks: Vec<u32> = match set {
        TearSet::Whole => Vec::new(),
        TearSet::Prefixes => (1..units)
            .flat_map(|k| [(1u32 << k) - 1, full & !((1u32 << (units - k)) - 1)])
            .collect(),
        TearSet::AllMasks => (1..full).collect(),
    };
    masks.sort_unstable();
    masks.dedup();
    masks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tear_sets_have_the_documented_sizes() {
        assert_eq!(unit_masks(AtomicUnit::Sector512, TearSet::Whole).len(), 0);
        assert_eq!(unit_masks(AtomicUnit::Sector512, TearSet::Prefixes).len(), 14);
        assert_eq!(unit_masks(AtomicUnit::Sector512, TearSet::AllMasks).len(), 254);
        assert_eq!(unit_masks(AtomicUnit::Bytes2048, TearSet::Prefixes), vec![1, 2]);
        assert!(unit_masks(AtomicUnit::Block4096, TearSet::AllMasks).is_empty());
    }

    #[test]
    fn counter_visits_every_combination_once() {
        let options = vec![vec![WriteChoice::Drop; 2], vec![WriteChoice::Drop; 3]];
        let mut digits = Some(vec![0, 0]);
        let mut seen = Vec::new();
        while let Some(d) = digits {
            digits = increment(&d, &options);
            seen.push(d);
        }
        assert_eq!(seen.len(), 6);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }
}
