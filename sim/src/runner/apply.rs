//! Applying an op: running it on engine and model, and judging the two answers.
//!
//! Invariants:
//! - An op from a trace that breaks a precondition the engine cannot check (an insert of a
//!   block the caller does not hold, a dec of no caller reference, a device with no open
//!   handle) stops the run as an invalid trace naming the step; it is never run.
//! - Every engine answer goes through [`Runner::judge`]: equal answers (errno for errno)
//!   pass; a non-argument error passes only when a fault or metadata exhaustion explains it,
//!   and is then followed by what dm-thin does (abort; fail mode if the abort fails).

use super::op::Op;
use super::oracles::Oracle;
use super::{Res, Runner};
use engine::error::Space;
use engine::thin::CloseError;
use engine::thin::{DataBlock, ThinId, VBlock};
use model::Errno;
use std::fmt::Debug;

/// What became of one engine/model answer pair.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Judged {
    /// Same answer: the op may go on.
    Agree,
    /// Anything else (already handled: recovery, abort, resync): the op stops.
    Handled,
}

/// The model's name for an engine error's errno.
pub fn errno(e: &engine::Error) -> Errno {
    use engine::Errno as E;
    match e.errno() {
        E::EEXIST => Errno::EEXIST,
        E::ENODATA => Errno::ENODATA,
        E::EINVAL => Errno::EINVAL,
        E::EBUSY => Errno::EBUSY,
        E::ENOSPC => Errno::ENOSPC,
        E::EWOULDBLOCK => Errno::EWOULDBLOCK,
        E::EPERM => Errno::EPERM,
        E::EIO => Errno::EIO,
        E::EILSEQ => Errno::EILSEQ,
        E::ENOTBLK => Errno::ENOTBLK,
        E::ENOMEM => Errno::ENOMEM,
    }
}

impl Runner {
    /// Judges an answer pair; see the module invariants.
    pub(super) fn judge<T: PartialEq + Debug>(
        &mut self,
        eng: engine::Result<T>,
        model: Result<T, Errno>,
    ) -> Res<Judged> {
        self.fold_fmt(format_args!("{eng:?}|{model:?}"));
        self.stats.ran(Oracle::Result);
        if self.disk.lock().is_powered_off() {
            self.power_cut()?;
            return Ok(Judged::Handled);
        }
        self.drain_faults();
        if let Err(e) = &eng {
            if !e.is_argument_error() && self.explained(e) {
                let e = e.clone();
                self.after_error(&e)?;
                return Ok(Judged::Handled);
            }
        }
        match (&eng, &model) {
            (Ok(a), Ok(b)) if a == b => return Ok(Judged::Agree),
            (Err(e), Err(m)) if errno(e) == *m => return Ok(Judged::Agree),
            _ => {}
        }
        let detail = format!("engine answered {eng:?}\nmodel expected {model:?}");
        self.diverged(Oracle::Result, super::oracle::Mismatch::State(detail))?;
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
            let q = self.pool().get_transaction_id().map_err(|e| errno(&e));
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
        match super::recovery::match_candidate(self.pool(), &cands, image.as_ref()) {
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

    /// Runs `op` on engine and model and judges the answers.
    pub(super) fn apply(&mut self, op: &Op) -> Res<()> {
        self.current = op.clone();
        self.doing = super::Doing::Op;
        let h = match op.handle_dev() {
            Some(dev) => Some(self.handle_of(dev)?),
            None => None,
        };
        // The handle pair of the op's device (the first open one).
        macro_rules! th {
            () => {
                &self.handles[h.expect("an op with a device has its handle")].1
            };
        }
        macro_rules! mh {
            () => {
                self.handles[h.expect("an op with a device has its handle")].0
            };
        }
        match *op {
            Op::FaultsOn => {
                self.faults_phase = true;
                self.set_faults(true);
                Ok(())
            }
            Op::CreateThin { dev } => {
                let eng = self.pool().create_thin(ThinId(dev));
                let m = self.model.create_thin(dev);
                self.judge(eng, m).map(drop)
            }
            Op::CreateSnap { dev, origin } => {
                let eng = self.pool().create_snap(ThinId(dev), ThinId(origin));
                let m = self.model.create_snap(dev, origin);
                self.judge(eng, m).map(drop)
            }
            Op::Delete { dev } => {
                let eng = self.pool().delete_thin_device(ThinId(dev));
                let m = self.model.delete_thin(dev);
                self.judge(eng, m).map(drop)
            }
            Op::Commit => self.commit_op(),
            Op::Abort => self.do_abort(false),
            Op::SetTransactionId { current, new } => {
                let eng = self.pool().set_transaction_id(current, new);
                let m = self.model.set_transaction_id(current, new);
                self.judge(eng, m).map(drop)
            }
            Op::ReserveSnap => {
                let eng = self.pool().reserve_metadata_snap();
                let m = self.model.reserve_metadata_snap();
                self.judge(eng, m).map(drop)
            }
            Op::ReleaseSnap => {
                let eng = self.pool().release_metadata_snap();
                let m = self.model.release_metadata_snap();
                self.judge(eng, m).map(drop)
            }
            Op::Open { dev } => self.open_op(dev),
            Op::CloseThin { .. } => {
                let (mh, th) = self.handles.remove(h.expect("close names an open handle"));
                self.pool().close_thin_device(th);
                let m = self.model.close_thin(mh);
                self.judge(Ok(()), m).map(drop)
            }
            Op::FindBlock { vblock, can_issue_io, .. } => {
                let eng = self.pool().find_block(th!(), VBlock(vblock), can_issue_io);
                let m = self.model.find_block(mh!(), vblock);
                let eng =
                    eng.map(|l| model::Lookup { data_block: l.data_block.0, shared: l.shared });
                // [H4]: without I/O the engine may say EWOULDBLOCK instead of the true answer,
                // whatever that answer is: an unmapped block (ENODATA) needs its leaf read as
                // much as a mapped one. (This once required the model to answer Ok, which held
                // only while full verifications left every leaf cached.)
                if !can_issue_io && matches!(&eng, Err(e) if errno(e) == Errno::EWOULDBLOCK) {
                    return Ok(());
                }
                self.judge(eng, m).map(drop)
            }
            Op::FindMappedRange { begin, end, .. } => {
                let eng =
                    self.pool().find_mapped_range(th!(), VBlock(begin), VBlock(end)).map(|r| {
                        model::MappedRange {
                            thin_begin: r.thin_begin.0,
                            thin_end: r.thin_end.0,
                            pool_begin: r.pool_begin.0,
                            maybe_shared: r.maybe_shared,
                        }
                    });
                let m = self.model.find_mapped_range(mh!(), begin, end);
                self.judge(eng, m).map(drop)
            }
            Op::Provision { dev, vblock } => {
                let Some(block) = self.alloc_op()? else { return Ok(()) };
                self.write_data(block);
                self.doing = super::Doing::Insert { dev, vblock, data: block };
                let eng = self.pool().insert_block(th!(), VBlock(vblock), DataBlock(block));
                let m = self.model.insert_block(mh!(), vblock, block);
                self.note_mapped(vblock, block, &m);
                self.judge(eng, m).map(drop)
            }
            Op::ProvisionMany { dev, ref vblocks } => {
                for &vblock in vblocks {
                    let Some(block) = self.alloc_op()? else { return Ok(()) };
                    self.write_data(block);
                    self.doing = super::Doing::Insert { dev, vblock, data: block };
                    let eng = self.pool().insert_block(th!(), VBlock(vblock), DataBlock(block));
                    let m = self.model.insert_block(mh!(), vblock, block);
                    self.note_mapped(vblock, block, &m);
                    if self.judge(eng, m)? != Judged::Agree {
                        return Ok(());
                    }
                }
                Ok(())
            }
            Op::Alloc => self.alloc_op().map(drop),
            Op::InsertHeld { vblock, data, .. } => {
                if !self.model.current().caller_refs.contains_key(&data) {
                    return Err(
                        self.invalid(format!("the caller holds no reference to data block {data}"))
                    );
                }
                let eng = self.pool().insert_block(th!(), VBlock(vblock), DataBlock(data));
                let m = self.model.insert_block(mh!(), vblock, data);
                self.note_mapped(vblock, data, &m);
                self.judge(eng, m).map(drop)
            }
            Op::RemoveBlock { vblock, .. } => {
                let eng = self.pool().remove_block(th!(), VBlock(vblock));
                let m = self.model.remove_block(mh!(), vblock);
                self.judge(eng, m).map(drop)
            }
            Op::RemoveRange { begin, end, .. } => {
                let eng = self.pool().remove_range(th!(), VBlock(begin), VBlock(end));
                let m = self.model.remove_range(mh!(), begin, end);
                if self.judge(eng, m)? == Judged::Agree {
                    self.pressure.data = false;
                }
                Ok(())
            }
            Op::HighestMappedBlock { .. } => {
                let eng = self.pool().get_highest_mapped_block(th!()).map(|v| v.map(u64::from));
                let m = self.model.highest_mapped_block(mh!());
                self.judge(eng, m).map(drop)
            }
            Op::MappedCount { .. } => {
                let eng = self.pool().get_mapped_count(th!());
                let m = self.model.mapped_count(mh!());
                self.judge(eng, m).map(drop)
            }
            Op::ThinChanged { .. } => {
                let eng = self.pool().thin_changed_this_transaction(th!());
                let m = self.model.thin_changed(mh!());
                self.judge(Ok(eng), m).map(drop)
            }
            Op::AbortedChanges { .. } => {
                let eng = self.pool().aborted_changes(th!());
                let m = self.model.aborted_changes(mh!());
                if self.aborted_changes_unspecified {
                    self.fold(&format!("unspecified after a failed op: {eng:?}|{m:?}"));
                    return Ok(());
                }
                self.judge(Ok(eng), m).map(drop)
            }
            Op::ChangedThisTransaction => {
                let eng = self.pool().changed_this_transaction();
                let m = self.model.changed_this_transaction();
                self.judge(eng, m).map(drop)
            }
            Op::MetadataSnap => {
                let eng = self.pool().get_metadata_snap().map(|b| b.is_some());
                let m = self.model.metadata_snap_held();
                self.judge(eng, m).map(drop)
            }
            Op::DataDevSize => {
                let eng = self.pool().get_data_dev_size();
                let m = self.model.data_dev_size();
                self.judge(eng, m).map(drop)
            }
            Op::FreeBlockCount => {
                let eng = self.pool().get_free_block_count();
                let m = self.model.free_data_blocks();
                self.judge(eng, m).map(drop)
            }
            Op::NeedsCheck => {
                let eng = self.pool().needs_check();
                let m = self.model.needs_check();
                self.judge(eng, m).map(drop)
            }
            Op::TransactionId => {
                let eng = self.pool().get_transaction_id();
                let m = self.model.get_transaction_id();
                self.judge(eng, m).map(drop)
            }
            Op::BlockIsShared { data } => {
                let eng = self.pool().block_is_shared(DataBlock(data));
                match self.model.block_is_shared(data) {
                    Ok(None) => self.judge(eng.map(drop), Ok(())).map(drop),
                    m => self.judge(eng, m.map(|x| x.unwrap_or(false))).map(drop),
                }
            }
            Op::IncRange { begin, end } => {
                let eng = self.pool().inc_data_range(DataBlock(begin), DataBlock(end));
                let m = self.model.inc_data_range(begin, end);
                self.judge(eng, m).map(drop)
            }
            Op::DecRange { begin, end } => {
                let refs = &self.model.current().caller_refs;
                if let Some(b) = (begin..end).find(|b| !refs.contains_key(b)) {
                    return Err(
                        self.invalid(format!("the caller holds no reference to data block {b}"))
                    );
                }
                let eng = self.pool().dec_data_range(DataBlock(begin), DataBlock(end));
                let m = self.model.dec_data_range(begin, end);
                self.judge(eng, m).map(drop)
            }
            Op::ResizeData { blocks } => {
                self.stats.data_resizes += 1;
                let eng = self.pool().resize_data_dev(blocks);
                let m = self.model.resize_data_dev(blocks);
                if self.judge(eng, m)? == Judged::Agree {
                    self.pressure.data = false;
                }
                Ok(())
            }
            Op::ResizeMetadata { blocks } => self.resize_metadata_op(blocks),
            Op::ReadOnly => {
                self.pool().metadata_read_only();
                let m = self.model.read_only();
                self.judge(Ok(()), m).map(drop)
            }
            Op::ReadWrite => {
                self.pool().metadata_read_write();
                let m = self.model.read_write();
                self.judge(Ok(()), m).map(drop)
            }
            Op::SetNeedsCheck => {
                let eng = self.pool().set_needs_check();
                let m = self.model.set_needs_check();
                self.judge(eng, m).map(drop)
            }
            Op::PowerCut => {
                self.pre = None;
                self.power_cut()
            }
            Op::CloseReopen => self.close_reopen_op(),
            Op::FinalPowerCut => self.final_recovery(),
        }
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
        let eng = self.pool().commit();
        let m = self.model.commit();
        let ok = eng.is_ok();
        if self.judge(eng, m)? == Judged::Agree && ok {
            self.stats.commits += 1;
            self.reshapes_durable = engine::events::snapshot().reshapes();
            self.last_commit_ios = (self.disk.lock().stats().io_calls() - before).max(2);
            self.verify_committed()?;
        }
        Ok(())
    }

    fn open_op(&mut self, dev: u64) -> Res<()> {
        let eng = self.pool().open_thin_device(ThinId(dev));
        let m = self.model.open_thin(dev);
        match (eng, m) {
            (Ok(th), Ok(mh)) => {
                self.fold("open ok");
                self.handles.push((mh, th));
                Ok(())
            }
            (eng, m) => {
                let model_handle = m.as_ref().ok().copied();
                let judged = self.judge(eng.map(drop), m.map(drop))?;
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
        match self.pool().alloc_data_block().map(u64::from) {
            Ok(b) => {
                let m = self.model.alloc_data_block_check(b).map(|()| b);
                Ok((self.judge(Ok(b), m)? == Judged::Agree).then_some(b))
            }
            Err(e) => {
                let nospace = errno(&e) == Errno::ENOSPC;
                let m = self.model.alloc_data_block_expect();
                if self.judge(Err::<(), _>(e), m)? == Judged::Agree && nospace {
                    self.stats.data_full += 1;
                    self.pressure.data = true;
                }
                Ok(None)
            }
        }
    }

    /// The model has no metadata size; a no-op compare-and-set gives it the same entry rules
    /// (in service, EINVAL when poisoned or failed, EPERM read-only) and changes nothing.
    fn resize_metadata_op(&mut self, new: u64) -> Res<()> {
        let cur = self.pool().get_metadata_dev_size().ok();
        self.stats.metadata_resizes += 1;
        let eng = self.pool().resize_metadata_dev(new);
        // A shrink may find blocks in use: ENOSPC without effect, like the entry rules' Ok.
        let eng = match eng {
            Err(engine::Error::NoSpace(Space::Shrink)) if cur.is_some_and(|c| new < c) => Ok(()),
            other => other,
        };
        let t = self.model.current().trans_id;
        let m = self.model.set_transaction_id(t, t);
        if self.judge(eng, m)? == Judged::Agree {
            self.pressure.metadata = false;
        }
        Ok(())
    }

    fn close_reopen_op(&mut self) -> Res<()> {
        while let Some((mh, th)) = self.handles.pop() {
            self.pool().close_thin_device(th);
            let m = self.model.close_thin(mh);
            if self.judge(Ok(()), m)? != Judged::Agree {
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
