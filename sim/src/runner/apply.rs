//! Applying an op: running it on engine and model, and judging the two answers.
//!
//! Invariants:
//! - An op from a trace that breaks a precondition the engine cannot check (an insert of a
//!   block the caller does not hold, a dec of no caller reference, a device with no open
//!   handle) stops the run as an invalid trace naming the step; it is never run.
//! - Every engine answer goes through [`Runner::judge`]: equal answers (errno for errno)
//!   pass; a non-argument error passes only when a fault or metadata exhaustion explains it,
//!   and is then followed by what dm-thin does (abort; fail mode if the abort fails).

use super::lockstep::{self, errno, Agreement, Both, Handles};
use super::op::Op;
use super::oracles::Oracle;
use super::{Res, Runner};
use engine::error::Space;
use engine::thin::{CloseError, Pool};
use model::{Errno, Model};
use std::fmt::Debug;

/// What became of one engine/model answer pair.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Judged {
    /// Same answer: the op may go on.
    Agree,
    /// Anything else (already handled: recovery, abort, resync): the op stops.
    Handled,
}

impl Runner {
    /// Judges an answer pair; see the module invariants.
    pub(super) fn judge<T: PartialEq + Debug>(&mut self, both: Both<T>) -> Res<Judged> {
        if both.would_block_excused() {
            return Ok(Judged::Agree);
        }
        self.fold_fmt(format_args!("{:?}|{:?}", both.engine, both.model));
        self.stats.ran(Oracle::Result);
        if self.disk.lock().is_powered_off() {
            self.power_cut()?;
            return Ok(Judged::Handled);
        }
        self.drain_faults();
        if let Err(e) = &both.engine {
            if !e.is_argument_error() && self.explained(e) {
                let e = e.clone();
                self.after_error(&e)?;
                return Ok(Judged::Handled);
            }
        }
        if both.agreement() != Agreement::Differ {
            return Ok(Judged::Agree);
        }
        self.diverged(Oracle::Result, super::oracle::Mismatch::State(both.difference()))?;
        Ok(Judged::Handled)
    }

    /// Whether a fault or a legitimate exhaustion explains a non-argument error.
    fn explained(&mut self, e: &engine::Error) -> bool {
        match (e, errno(e)) {
            (engine::Error::NoSpace(Space::Metadata), _) => {
                self.stats.metadata_exhausted += 1;
                self.pressure.metadata = true;
                true
            }
            (_, Errno::EIO) => self.c_seen,
            (_, Errno::EILSEQ | Errno::ENOTBLK) => !self.b_faults.is_empty(),
            _ => false,
        }
    }

    /// What dm-thin does after a metadata operation failed: abort; fail mode if that fails.
    fn after_error(&mut self, e: &engine::Error) -> Res<()> {
        match errno(e) {
            Errno::EIO => self.stats.outcomes.c_errors += 1,
            Errno::EILSEQ | Errno::ENOTBLK => self.stats.outcomes.b_detected += 1,
            _ => {}
        }
        if self.pool().is_poisoned() {
            self.model.poison();
        }
        // The model ran the op to completion, the engine stopped part-way: which devices
        // count as changed for `aborted_changes` is unspecified until the next clean abort.
        self.aborted_changes_unspecified = true;
        self.do_abort(true)
    }

    /// Aborts engine and model and compares the result (the recovery path and the op).
    pub(super) fn do_abort(&mut self, after_error: bool) -> Res<()> {
        let eng = self.pool().abort();
        self.stats.aborts += 1;
        self.stats.ran(Oracle::Abort);
        if eng.is_ok() {
            // Uncommitted reshapes are gone with the transaction.
            self.reshapes_durable = engine::events::snapshot().reshapes();
        }
        if after_error {
            self.stats.outcomes.c_aborts += 1;
        }
        self.fold(&format!("abort {eng:?}"));
        if self.disk.lock().is_powered_off() {
            return self.power_cut();
        }
        self.drain_faults();
        if let Err(e) = eng {
            if !self.c_seen && self.b_faults.is_empty() {
                return Err(
                    self.fail(Oracle::Abort, format!("abort failed with no fault injected: {e}"))
                );
            }
            self.model.enter_fail_mode();
            self.stats.outcomes.c_fail_modes += 1;
            self.stats.ran(Oracle::FailMode);
            let q = self.pool().get_transaction_id().map(u64::from).map_err(|e| errno(&e));
            if q != self.model.get_transaction_id() {
                return Err(self.fail(
                    Oracle::FailMode,
                    format!("query in fail mode answered {q:?}, expected EINVAL"),
                ));
            }
            return self.power_cut();
        }
        // A failed superblock write leaves the old or the new committed state behind.
        let mut cands: Vec<model::Model> =
            if after_error { self.pre.take().into_iter().collect() } else { Vec::new() };
        cands.push(self.model.clone());
        for m in &mut cands {
            m.abort()
                .map_err(|e| self.fail(Oracle::Abort, format!("model refused abort: {e:?}")))?;
        }
        cands.dedup();
        if !after_error {
            self.aborted_changes_unspecified = false;
        }
        // With class B damage outstanding the comparison may meet it; `diverged` then
        // power-cycles and judges the reopen against both candidates (kept in `pre`). Picking
        // a candidate without comparing would guess wrong whenever the commit did not land.
        // The reload flushed: the durable image is the committed state, and its check tells
        // candidates apart that differ only in caller references.
        let image = (cands.len() > 1).then(|| self.disk.lock().durable_image());
        self.stats.ran(Oracle::StateAfterAbort);
        let canaries = self.cfg.canaries();
        match super::recovery::match_candidate(self.pool(), &cands, image.as_ref(), canaries) {
            Ok(i) => {
                self.model = cands.swap_remove(i);
                Ok(())
            }
            Err(d) => {
                // Keep both candidates for the power cut that may follow.
                self.model = cands.pop().expect("one candidate at least");
                self.pre = cands.pop();
                self.diverged(Oracle::StateAfterAbort, d)
            }
        }
    }

    /// Runs `op` on engine and model and judges the answers: a plain call through the
    /// lockstep ([`lockstep::plain`]), every other op with the runner's own effects around
    /// its calls.
    pub(super) fn apply(&mut self, op: &Op) -> Res<()> {
        self.current = op.clone();
        self.doing = super::Doing::Op;
        if let Some(dev) = op.handle_dev() {
            self.handle_of(dev)?;
        }
        if let Some(judged) = lockstep::plain(self, op) {
            return judged.map(drop);
        }
        match *op {
            Op::FaultsOn => {
                self.faults_phase = true;
                self.set_faults(true);
                Ok(())
            }
            Op::Commit => self.commit_op(),
            Op::Abort => self.do_abort(false),
            Op::Open { dev } => self.open_op(dev),
            Op::CloseThin { dev } => self.close_thin_op(dev),
            Op::Provision { dev, vblock } => self.provision(dev, &[vblock]),
            Op::ProvisionMany { dev, ref vblocks } => self.provision(dev, vblocks),
            Op::Alloc => self.alloc_op().map(drop),
            Op::InsertHeld { dev, vblock, data } => self.insert_held_op(dev, vblock, data),
            Op::RemoveRange { dev, begin, end } => {
                let both =
                    self.on_device(dev, |p, m, h| lockstep::remove_range(p, m, h, begin, end));
                if self.judge(both)? == Judged::Agree {
                    self.pressure.data = false;
                }
                Ok(())
            }
            Op::AbortedChanges { dev } => {
                let both = self.on_device(dev, |p, m, h| lockstep::aborted_changes(p, m, h));
                if self.aborted_changes_unspecified {
                    self.fold(&format!(
                        "unspecified after a failed op: {:?}|{:?}",
                        both.engine, both.model
                    ));
                    return Ok(());
                }
                self.judge(both).map(drop)
            }
            Op::DecRange { begin, end } => {
                let refs = &self.model.current().caller_refs;
                if let Some(b) = (begin..end).find(|b| !refs.contains_key(b)) {
                    return Err(
                        self.invalid(format!("the caller holds no reference to data block {b}"))
                    );
                }
                let both = self.on_pool(|p, m| lockstep::dec_data_range(p, m, begin, end));
                self.judge(both).map(drop)
            }
            Op::ResizeData { blocks } => {
                self.stats.data_resizes += 1;
                let both = self.on_pool(|p, m| lockstep::resize_data_dev(p, m, blocks));
                if self.judge(both)? == Judged::Agree {
                    self.pressure.data = false;
                }
                Ok(())
            }
            Op::ResizeMetadata { blocks } => self.resize_metadata_op(blocks),
            Op::PowerCut => {
                self.pre = None;
                self.power_cut()
            }
            Op::CloseReopen => self.close_reopen_op(),
            Op::FinalPowerCut => self.final_recovery(),
            _ => unreachable!("{op:?} is a plain call: lockstep::plain ran it"),
        }
    }

    /// The pool and the model, for one call.
    fn on_pool<T>(&mut self, call: impl FnOnce(&Pool, &mut Model) -> T) -> T {
        let (pool, model, _) = lockstep::Judge::sides(self, None);
        call(pool, model)
    }

    /// The pool, the model and the handles of device `dev` (first open one), for one call.
    fn on_device<T>(
        &mut self,
        dev: u64,
        call: impl FnOnce(&Pool, &mut Model, Handles<'_>) -> T,
    ) -> T {
        let (pool, model, h) = lockstep::Judge::sides(self, Some(dev));
        call(pool, model, h.expect("the op's device has an open handle"))
    }

    /// Inserts a mapping per vblock to a newly allocated block whose data the pool target
    /// wrote first; stops at the first insert that does not agree.
    fn provision(&mut self, dev: u64, vblocks: &[u64]) -> Res<()> {
        for &vblock in vblocks {
            let Some(block) = self.alloc_op()? else { return Ok(()) };
            self.write_data(block);
            self.doing = super::Doing::Insert { dev, vblock, data: block };
            let both =
                self.on_device(dev, |p, m, h| lockstep::insert_block(p, m, h, vblock, block));
            self.note_mapped(vblock, block, &both.model);
            if self.judge(both)? != Judged::Agree {
                return Ok(());
            }
        }
        Ok(())
    }

    /// An insert of a block the caller holds (an inc'd range): a trace that names one it
    /// does not hold is invalid.
    fn insert_held_op(&mut self, dev: u64, vblock: u64, data: u64) -> Res<()> {
        if !self.model.current().caller_refs.contains_key(&data) {
            return Err(self.invalid(format!("the caller holds no reference to data block {data}")));
        }
        let both = self.on_device(dev, |p, m, h| lockstep::insert_block(p, m, h, vblock, data));
        self.note_mapped(vblock, data, &both.model);
        self.judge(both).map(drop)
    }

    fn close_thin_op(&mut self, dev: u64) -> Res<()> {
        let i = self.handle_of(dev)?;
        let (mh, th) = self.handles.remove(i);
        let both = self.on_pool(|p, m| lockstep::close_thin(p, m, th, mh));
        self.judge(both).map(drop)
    }

    /// The index of the first open handle of thin device `dev`.
    fn handle_of(&self, dev: u64) -> Res<usize> {
        self.handles
            .iter()
            .position(|(mh, _)| mh.id() == dev)
            .ok_or_else(|| self.invalid(format!("device {dev} has no open handle at this step")))
    }

    /// The pool target writes a new block's data before it inserts the mapping.
    fn write_data(&mut self, block: u64) {
        self.data.lock().expect("the data shadow is never poisoned").write(block);
    }

    fn commit_op(&mut self) -> Res<()> {
        let before = self.disk.lock().stats().io_calls();
        let both = self.on_pool(lockstep::commit);
        let ok = both.engine.is_ok();
        if self.judge(both)? == Judged::Agree && ok {
            self.stats.commits += 1;
            self.reshapes_durable = engine::events::snapshot().reshapes();
            self.last_commit_ios = (self.disk.lock().stats().io_calls() - before).max(2);
            self.verify_committed()?;
        }
        Ok(())
    }

    fn open_op(&mut self, dev: u64) -> Res<()> {
        match self.on_pool(|p, m| lockstep::open_thin(p, m, dev)) {
            (_, Some(th), Some(mh)) => {
                self.fold("open ok");
                self.handles.push((mh, th));
                Ok(())
            }
            (both, _, model_handle) => {
                let judged = self.judge(both)?;
                if let (Some(mh), Judged::Handled) = (model_handle, judged) {
                    // The engine has no handle for it: forget the model's too.
                    let _ = self.model.close_thin(mh);
                }
                Ok(())
            }
        }
    }

    /// alloc_data_block on both sides: the new block when they agree.
    fn alloc_op(&mut self) -> Res<Option<u64>> {
        self.doing = super::Doing::Alloc;
        let both = self.on_pool(lockstep::alloc_data_block);
        let nospace = matches!(&both.engine, Err(e) if errno(e) == Errno::ENOSPC);
        let block = both.engine.as_ref().ok().copied().flatten();
        if self.judge(both)? != Judged::Agree {
            return Ok(None);
        }
        if nospace {
            self.stats.data_full += 1;
            self.pressure.data = true;
        }
        Ok(block)
    }

    fn resize_metadata_op(&mut self, new: u64) -> Res<()> {
        self.stats.metadata_resizes += 1;
        let both = self.on_pool(|p, m| lockstep::resize_metadata_dev(p, m, new));
        if self.judge(both)? == Judged::Agree {
            self.pressure.metadata = false;
        }
        Ok(())
    }

    fn close_reopen_op(&mut self) -> Res<()> {
        while let Some((mh, th)) = self.handles.pop() {
            let both = self.on_pool(|p, m| lockstep::close_thin(p, m, th, mh));
            if self.judge(both)? != Judged::Agree {
                return Ok(());
            }
        }
        self.doing = super::Doing::ClosePool;
        let pool = self.pool.take().expect("the pool is open between recoveries");
        let eng = match pool.close() {
            Ok(_device) => Ok(()),
            Err(CloseError::Busy(p)) => {
                self.pool = Some(*p);
                Err(engine::Error::Busy("a thin device is still open".into()))
            }
            Err(CloseError::CommitFailed { error, .. }) => Err(error),
        };
        self.fold(&format!("close {eng:?}"));
        self.drain_faults();
        self.stats.ran(Oracle::Close);
        if self.pool.is_some() {
            return Err(self.fail(Oracle::Close, "close refused with no thin device open".into()));
        }
        let m = self.model.close();
        if self.disk.lock().is_powered_off() || eng.is_err() {
            // The final commit failed or lost power: the disk holds the old or new state.
            if let Err(e) = &eng {
                if !self.disk.lock().is_powered_off() && !self.explained(e) {
                    return Err(self.fail(Oracle::Close, format!("close failed: {e}, model {m:?}")));
                }
            }
            return self.power_cut();
        }
        self.pre = None;
        self.recover_on_disk(vec![self.model.clone()], false)
    }
}

/// The runner judges the lockstep's plain calls like every other answer pair.
impl lockstep::Judge for Runner {
    type Out = Res<Judged>;

    fn sides(&mut self, dev: Option<u64>) -> (&Pool, &mut Model, Option<Handles<'_>>) {
        let pool = self.pool.as_ref().expect("the pool is open between recoveries");
        let h = dev.and_then(|d| self.handles.iter().find(|(mh, _)| mh.id() == d));
        let h = h.map(|(mh, th)| Handles { engine: th, model: *mh });
        (pool, &mut self.model, h)
    }

    fn judge<T: PartialEq + Debug>(&mut self, both: Both<T>) -> Res<Judged> {
        Runner::judge(self, both)
    }
}
