//! Crashes and recoveries: power cuts (between ops or inside one), exploration of the crash
//! images reachable from a crash point, reopening, and the class A/B/C verdicts.
//!
//! Invariants:
//! - After a crash the reopened pool must equal one of the allowed committed states: the
//!   model's committed state, or for a superblock write in flight the state before it.
//! - Explored images are only judged while no class B fault is outstanding (then every
//!   image must open and match exactly: class A).
//! - `good` is always an image that was reopened (or committed) and matched the model with a
//!   clean `check`; it is what undetectable class B damage is repaired from.

use super::memo::ReadSet;
use super::oracle::{self, Mismatch};
use super::oracles::Oracle;
use super::verify::{reopen_options, VerifyMode};
use super::{Good, Res, Runner};
use crate::disk::{ExploreOptions, FaultKind, MemoryImage, TearSet};
use engine::canary::Canaries;
use engine::thin::Pool;
use model::Model;

/// Index of the first candidate the pool matches, or the diff against each. With an image,
/// `check` must agree too: caller references are visible only there, and they can be all
/// that tells the old state from the new one. `check` runs with the run's `canaries`.
pub(super) fn match_candidate(
    pool: &Pool,
    cands: &[Model],
    image: Option<&MemoryImage>,
    canaries: Canaries,
) -> Result<usize, Mismatch> {
    match_candidate_reading(pool, cands, image, None, canaries)
}

/// [`match_candidate`], with `check`'s reads recorded in `reads`.
fn match_candidate_reading(
    pool: &Pool,
    cands: &[Model],
    image: Option<&MemoryImage>,
    reads: Option<&ReadSet>,
    canaries: Canaries,
) -> Result<usize, Mismatch> {
    let mut diffs = Vec::new();
    for (i, m) in cands.iter().enumerate() {
        let judged = oracle::compare_pool(pool, m).and_then(|()| match image {
            Some(img) => {
                let dev = match reads {
                    Some(r) => r.wrap(img.to_device()),
                    None => img.to_device(),
                };
                oracle::check_image_with(img, dev, m, canaries).map(drop)
            }
            None => Ok(()),
        });
        match judged {
            Ok(()) => return Ok(i),
            Err(d) => diffs.push((candidate_name(i, cands.len()), d)),
        }
    }
    Err(Mismatch::Candidates(diffs))
}

/// What a wrong state after class B damage means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum BVerdict {
    /// `check` panicked: an engine bug whatever the damage.
    CheckPanicked,
    /// The damage surfaced as a typed error or a `check` finding.
    Detected,
    /// A lost or misdirected write left an older block with a valid checksum and location:
    /// the format cannot tell.
    Undetectable(FaultKind),
    /// A wrong answer after damage the format detects (checksums): a lie.
    Lie,
}

/// Judges a mismatch met after class B faults `b_faults` were injected.
pub(super) fn classify_b(
    m: &Mismatch,
    b_faults: &std::collections::BTreeSet<FaultKind>,
) -> BVerdict {
    if m.check_panicked() {
        return BVerdict::CheckPanicked;
    }
    if m.detected() {
        return BVerdict::Detected;
    }
    match b_faults.iter().find(|k| k.leaves_older_block()) {
        Some(k) => BVerdict::Undetectable(*k),
        None => BVerdict::Lie,
    }
}

fn candidate_name(i: usize, n: usize) -> &'static str {
    match (i, n) {
        (0, 1) => "the committed state",
        (0, _) => "the state before the in-flight superblock write",
        _ => "the state after it",
    }
}

impl Runner {
    /// Power is lost now: explore crash images, crash the disk, reopen, judge.
    pub(super) fn power_cut(&mut self) -> Res<()> {
        // Faults injected by the interrupted op decide whether exploring is class A.
        self.drain_faults();
        if engine::events::snapshot().reshapes() > self.reshapes_durable {
            self.crossings.crash_with_reshape_pending += 1;
        }
        let mut cands = Vec::with_capacity(2);
        if let Some(pre) = self.pre.take() {
            cands.push(pre);
        }
        cands.push(self.model.clone());
        for m in &mut cands {
            m.crash();
        }
        cands.dedup();
        self.pool = None;
        self.handles.clear();
        self.aborted_changes_unspecified = false;
        if cands.len() > 1 {
            self.stats.crashes_in_commit += 1;
        }
        if self.b_faults.is_empty() && (self.opts.explore_images > 0 || self.cfg.explore.is_some())
        {
            self.explore(&cands)?;
        }
        self.disk.lock().crash();
        {
            let mut d = self.data.lock().expect("the data shadow is never poisoned");
            self.data_lost = d.unflushed();
            d.crash();
        }
        self.stats.crashes += 1;
        self.drain_faults();
        self.recover_on_disk(cands, true)
    }

    /// Materialises crash images from the pending writes and checks each reopens right.
    fn explore(&mut self, cands: &[Model]) -> Res<()> {
        let tears = if self.opts.tears() { TearSet::Prefixes } else { TearSet::Whole };
        let bounds = self.cfg.explore;
        let opts = ExploreOptions {
            tears: bounds.map_or(tears, |b| b.tears),
            max_images: bounds.map_or(self.opts.explore_images, |b| b.max_states),
            // Derived, not drawn: a replayed trace has no RNG and samples the same images.
            sample_seed: self.cfg.seed
                ^ (self.stats.crashes + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        let check_every = if bounds.is_some() { 1 } else { self.opts.check_every_image };
        let mut d = self.disk.lock();
        let pending_writes = d.pending_writes().len();
        let states = d.explore(&opts);
        drop(d);
        if bounds.is_some() {
            let (reachable, judged) = (states.total(), states.planned());
            let sampled = reachable != Some(judged);
            self.crash_points.push(super::CrashPoint {
                step: self.step,
                pending_writes,
                reachable,
                judged,
                sampled,
            });
        }
        let memo = self.memo_enabled();
        for (i, st) in states.enumerate() {
            let check = (i as u64).is_multiple_of(check_every);
            self.stats.crash_images_checked += 1;
            // A remembered verification is this oracle's judgement too (`runner::memo`).
            self.stats.ran(Oracle::CrashImage);
            if memo && self.memo.lookup(&st.image, cands, check).is_some() {
                self.stats.crash_images_memo += 1;
                continue;
            }
            let reads = ReadSet::new();
            let pool =
                Pool::open(reads.wrap(st.image.to_device()), reopen_options()).map_err(|e| {
                    self.fail(
                        Oracle::CrashImage,
                        format!("crash image {i} ({:?}) does not open: {e}", st.choices),
                    )
                })?;
            let image = check.then_some(&st.image);
            let canaries = self.cfg.canaries();
            let c = match_candidate_reading(&pool, cands, image, Some(&reads), canaries);
            let c = c.map_err(|d| {
                self.fail(
                    Oracle::CrashImage,
                    format!("crash image {i} ({:?}) is no committed state:\n{d}", st.choices),
                )
            })?;
            oracle::compare_metadata_space(&pool)
                .map_err(|d| self.fail(Oracle::CrashImage, d.to_string()))?;
            self.stats.image_checks += u64::from(check);
            if check {
                self.stats.ran(Oracle::CheckPanic);
            }
            debug_assert!(c < cands.len());
            drop(pool);
            if memo {
                self.memo.remember(&st.image, &reads, cands, c, check);
            }
        }
        Ok(())
    }

    /// Whether remembered verifications may stand in for full ones (`runner::memo`): in
    /// amortized mode, never under `--verify full` or an exploration bound (`explore`).
    fn memo_enabled(&self) -> bool {
        self.cfg.verify == VerifyMode::Amortized && self.cfg.explore.is_none()
    }

    /// Reopens the disk with faults stopped and requires one of `cands` (crashed models).
    pub(super) fn recover_on_disk(&mut self, mut cands: Vec<Model>, crashed: bool) -> Res<()> {
        let had_c = self.c_seen;
        self.set_faults(false);
        // A power cut armed for the op that led here must not hit the reopen.
        self.disk.lock().clear_crash_at();
        for m in &mut cands {
            m.crash();
        }
        self.stats.recoveries += 1;
        self.stats.ran(Oracle::Recovery);
        let pool = match Pool::open(self.disk.device(), reopen_options()) {
            Ok(p) => p,
            Err(e) if !self.b_faults.is_empty() => {
                self.fold(&format!("reopen detected {e}"));
                self.stats.outcomes.b_detected += 1;
                return self.restore_good(&cands);
            }
            Err(e) => return Err(self.fail(Oracle::Recovery, format!("reopen failed: {e}"))),
        };
        let image = self.disk.lock().durable_image();
        let remembered =
            if self.memo_enabled() { self.memo.lookup(&image, &cands, true) } else { None };
        let verdict = match remembered {
            Some(i) => {
                self.stats.recoveries_memo += 1;
                Ok(i)
            }
            None => {
                self.stats.commit_checks += 1;
                self.stats.ran(Oracle::CheckPanic);
                match_candidate(&pool, &cands, Some(&image), self.cfg.canaries())
                    .and_then(|i| oracle::compare_metadata_space(&pool).map(|()| i))
            }
        };
        match verdict {
            Ok(i) => {
                self.fold(&format!("recovered to candidate {i}"));
                let o = &mut self.stats.outcomes;
                match (self.b_faults.is_empty(), crashed) {
                    (false, _) => o.b_recovered += 1,
                    (true, true) => o.a_exact += 1,
                    (true, false) => {}
                }
                o.a_new_state += u64::from(cands.len() > 1 && i + 1 == cands.len());
                o.c_recovered += u64::from(had_c);
                self.model = cands.swap_remove(i);
                let lost = std::mem::take(&mut self.data_lost);
                self.stats.ran(Oracle::DataDurability);
                let judged = self.data.lock().expect("never poisoned").check(&self.model, &lost);
                match judged {
                    Ok(n) => self.stats.data_blocks_verified += n,
                    Err(e) => return Err(self.fail(Oracle::DataDurability, e.to_string())),
                }
                self.install(pool)?;
                self.mark_good(image, true);
                self.verifier.verified(&mut self.model, true);
                self.set_faults(true);
                Ok(())
            }
            Err(d) if !self.b_faults.is_empty() => self.b_wrong_answer(d, &cands),
            Err(d) => Err(self.fail(Oracle::Recovery, format!("after the crash:\n{d}"))),
        }
    }

    /// A reopen after class B damage gave a wrong state: undetectable only if a lost or
    /// misdirected write could leave an older, self-consistent block behind.
    fn b_wrong_answer(&mut self, diff: Mismatch, committed: &[Model]) -> Res<()> {
        self.stats.ran(Oracle::ClassBLie);
        match classify_b(&diff, &self.b_faults) {
            BVerdict::CheckPanicked => Err(self.fail(Oracle::CheckPanic, diff.to_string())),
            BVerdict::Detected => {
                self.fold("b detected by check or a typed error");
                self.stats.outcomes.b_detected += 1;
                self.restore_good(committed)
            }
            BVerdict::Undetectable(k) => {
                let why = format!(
                    "{k:?}: an acknowledged write never reached its block, which kept an older \
                     block with a valid checksum and location; the format cannot tell"
                );
                self.stats.outcomes.b_undetectable += 1;
                *self.stats.undetectable_reasons.entry(why).or_insert(0) += 1;
                self.fold("b undetectable");
                self.restore_good(committed)
            }
            BVerdict::Lie => Err(self.fail(
                Oracle::ClassBLie,
                format!("wrong answer after damage the format detects (checksums):\n{diff}"),
            )),
        }
    }

    /// Repairs the damaged image and judges the repair (`runner::repair`), then puts the last
    /// good image back (a restore from backup) and continues from its model.
    fn restore_good(&mut self, committed: &[Model]) -> Res<()> {
        self.judge_repair(committed)?;
        self.stats.ran(Oracle::Restore);
        self.pool = None;
        self.handles.clear();
        let image = self.good.image.clone();
        self.disk
            .lock()
            .restore_durable(image)
            .map_err(|e| self.fail(Oracle::Restore, format!("{e:?}")))?;
        self.model = self.good.model.clone();
        self.model.crash();
        self.b_faults.clear();
        self.memo.clear();
        self.data.lock().expect("the data shadow is never poisoned").forget();
        self.data_lost.clear();
        let pool = Pool::open(self.disk.device(), reopen_options()).map_err(|e| {
            self.fail(Oracle::Restore, format!("the last good image does not open: {e}"))
        })?;
        oracle::compare_pool(&pool, &self.model).map_err(|d: Mismatch| {
            self.fail(Oracle::Restore, format!("the last good image reopened wrong:\n{d}"))
        })?;
        self.install(pool)?;
        // The reopened pool was just compared whole, and its image passed `check` when it
        // became the restore point: a full verification, so the next one may be incremental.
        self.verifier.verified(&mut self.model, true);
        self.set_faults(true);
        Ok(())
    }

    /// `image` was verified against the model: it becomes the restore point. Class B faults
    /// injected while verifying (bit rot met by the verification's own reads) stay
    /// outstanding: they changed the disk after `image` was taken. So do lost and misdirected
    /// writes unless the pool was just reopened from the disk (`reopened`): the live pool's
    /// cache still holds what it believes it wrote, and a later superblock may point at a
    /// block whose write never landed, damage that only a reopen can show.
    pub(super) fn mark_good(&mut self, image: MemoryImage, reopened: bool) {
        self.b_faults.retain(|k| !reopened && k.leaves_older_block());
        self.drain_faults();
        self.good = Good { image, model: self.model.clone() };
    }

    /// The engine and the model disagree. With class B damage outstanding this may be the
    /// damage: power-cycle and judge the reopen. Otherwise it is a failure.
    pub(super) fn diverged(&mut self, which: Oracle, detail: Mismatch) -> Res<()> {
        // The comparison itself reads the disk and may have met a fault, or the power cut
        // armed for this op (when the op failed before reaching that I/O).
        self.drain_faults();
        if self.disk.lock().is_powered_off() {
            self.fold(&format!("power lost while comparing ({which})"));
            return self.power_cut();
        }
        if detail.check_panicked() {
            return Err(self.fail(Oracle::CheckPanic, detail.to_string()));
        }
        if self.c_seen && detail.query_failed() {
            // Class C: an inspection read failed. Stop the faults, power-cycle, and judge.
            self.stats.outcomes.c_errors += 1;
            self.fold(&format!("query failed while comparing ({which})"));
            return self.power_cut();
        }
        if self.b_faults.is_empty() {
            return Err(self.fail(which, detail.to_string()));
        }
        self.fold(&format!("b divergence {which}"));
        // An op that writes a superblock keeps its two candidates (`pre`) for the cut.
        self.power_cut()
    }

    /// End of run: faults stop, power is cut, and the pool must reopen at its last commit.
    pub(super) fn final_recovery(&mut self) -> Res<()> {
        self.current = super::Op::FinalPowerCut;
        self.doing = super::Doing::Op;
        self.set_faults(false);
        self.pre = None;
        self.power_cut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{DiskConfig, SimDisk};
    use crate::runner::shared::SharedDisk;
    use crate::runner::DATA_BLOCK_SECTORS;
    use engine::thin::PoolOptions;
    use std::collections::BTreeSet;

    /// The diff line `needs_check: expected …, found …` contains the text `check: `, which
    /// an earlier substring test took for a `check` finding: a wrong needs_check after bit
    /// rot counted as detected damage. It is a lie, and only typed findings are detections.
    #[test]
    fn a_wrong_needs_check_after_bit_rot_is_a_lie_not_a_detection() {
        let disk = SharedDisk::new(SimDisk::new(256, DiskConfig::none(), 1).expect("a valid disk"));
        let pool = Pool::open(disk.device(), PoolOptions::new(DATA_BLOCK_SECTORS)).expect("format");
        pool.resize_data_dev(100).and_then(|()| pool.commit()).expect("size");
        let model = Model::new(100);
        oracle::compare_pool(&pool, &model).expect("the fresh pool matches the fresh model");
        pool.set_needs_check().and_then(|()| pool.commit()).expect("set needs_check");
        let m = oracle::compare_pool(&pool, &model).expect_err("needs_check differs");
        let text = m.to_string();
        assert!(text.contains("needs_check: expected"), "{text}");
        assert!(text.contains("check: "), "the text that fooled the substring test");
        assert!(matches!(m, Mismatch::State(_)), "{m:?}");
        let rot = BTreeSet::from([FaultKind::BitRot]);
        assert_eq!(classify_b(&m, &rot), BVerdict::Lie);
        let lost = BTreeSet::from([FaultKind::LostWrite, FaultKind::BitRot]);
        assert_eq!(classify_b(&m, &lost), BVerdict::Undetectable(FaultKind::LostWrite));
        // What is a detection: a check finding or a failed query, in any candidate.
        let found = Mismatch::CheckFindings(vec!["bad checksum".into()]);
        assert_eq!(classify_b(&found, &rot), BVerdict::Detected);
        let either =
            Mismatch::Candidates(vec![("old", m.clone()), ("new", Mismatch::Query("EIO".into()))]);
        assert_eq!(classify_b(&either, &rot), BVerdict::Detected);
        let panicked = Mismatch::Candidates(vec![("old", Mismatch::CheckPanicked("x".into()))]);
        assert_eq!(classify_b(&panicked, &rot), BVerdict::CheckPanicked);
    }
}
