//! Steps: choosing an op from the model's state, running it on engine and model, and judging
//! the two answers.
//!
//! Invariants:
//! - Generated calls respect the model's preconditions the engine cannot check (an insert
//!   only of a block the caller holds; a dec only of a caller reference).
//! - Every engine answer goes through [`Runner::judge`]: equal answers (errno for errno)
//!   pass; a non-argument error passes only when a fault or metadata exhaustion explains it,
//!   and is then followed by what dm-thin does (abort; fail mode if the abort fails).

use super::options::OpKind;
use super::{Res, Runner};
use crate::disk::PPM;
use engine::error::Space;
use engine::thin::CloseError;
use model::Errno;
use rand::Rng;
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
pub(crate) fn errno(e: &engine::Error) -> Errno {
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

impl Runner {
    pub(super) fn one_step(&mut self) -> Res<()> {
        let kind = self.choose_kind();
        self.step_as(kind)
    }

    /// The removal phase of a deep-tree or pre-populated run: a snapshot (so removals
    /// shadow shared nodes) and a held metadata snapshot first, then the removal weights.
    pub(super) fn begin_removal(&mut self) -> Res<()> {
        self.in_removal = true;
        // Two snapshots, so a root is shared three ways when the next commit makes it durable
        // (a metadata count in the overflow tree that the reopen at the end must read back).
        for _ in 0..2 {
            if !self.model.devices().is_empty() {
                self.step_as(OpKind::CreateSnap)?;
            }
        }
        self.step_as(OpKind::ReserveSnap)
    }

    /// One op of the given kind, with its phase label and crash arming.
    fn step_as(&mut self, kind: OpKind) -> Res<()> {
        self.kind = kind;
        self.stats.op(kind);
        let held = self.model.current().held.is_some();
        self.disk.lock().set_phase(crate::disk::Phase {
            in_commit: kind.writes_superblock(),
            metadata_snap_held: held,
            label: kind.label(),
        });
        let armed = self.arm_crash(kind);
        self.pre = kind.writes_superblock().then(|| self.model.clone());
        let r = self.execute(kind);
        self.pre = None;
        if armed {
            self.disk.lock().clear_crash_at();
        }
        self.disk.lock().set_phase(crate::disk::Phase::IDLE);
        r
    }

    fn choose_kind(&mut self) -> OpKind {
        let kind = self.draw_kind();
        if needs_handle(kind) && self.handles.is_empty() {
            // Open needs a device: with none, create one (else whole phases are spent on
            // opens that can only fail).
            if self.model.devices().is_empty() && self.model.is_in_service() {
                return OpKind::CreateThin;
            }
            return OpKind::Open;
        }
        kind
    }

    /// After exhaustion, recovery ops come first half the time; else the run's weights.
    fn draw_kind(&mut self) -> OpKind {
        if self.meta_pressure && self.rng.random_bool(0.5) {
            return OpKind::ResizeMetadata;
        }
        if self.data_pressure && self.rng.random_bool(0.5) {
            let relief = [OpKind::ResizeData, OpKind::RemoveRange, OpKind::Delete];
            return relief[self.rng.random_range(0..relief.len())];
        }
        let weights = match (&self.opts.removal, self.in_removal) {
            (Some(r), true) => &r.weights,
            _ => &self.opts.weights,
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

    /// Arms power loss inside this op when the run asks for it; true if armed here.
    fn arm_crash(&mut self, kind: OpKind) -> bool {
        let by_phase = matches!(self.cfg.crash_at, Some(super::CrashAt::Phase(k)) if k == kind)
            && !self.crash_at_armed;
        let random = kind.writes_superblock()
            && self.rng.random_range(0..PPM) < self.opts.crash_in_commit_ppm;
        if !(by_phase || random) {
            return false;
        }
        self.crash_at_armed |= by_phase;
        let offset = self.rng.random_range(1..=self.last_commit_ios + 1);
        let mut d = self.disk.lock();
        let at = d.stats().io_calls() + offset;
        d.set_crash_at_io(at);
        true
    }

    fn pick_dev(&mut self) -> u64 {
        let ids: Vec<u64> = self.model.devices().keys().copied().collect();
        if !ids.is_empty() && self.rng.random_bool(0.8) {
            ids[self.rng.random_range(0..ids.len())]
        } else {
            self.rng.random_range(0..self.opts.dev_ids)
        }
    }

    /// A device to delete: in the removal phase three times in four the lowest id, so deletes
    /// empty one leaf of the top-level and details trees and make them rebalance.
    fn pick_dev_to_delete(&mut self) -> u64 {
        if self.in_removal && self.rng.random_bool(0.75) {
            if let Some(&id) = self.model.devices().keys().next() {
                return id;
            }
        }
        self.pick_dev()
    }

    /// The smallest id no device has (a snapshot that cannot collide).
    fn fresh_dev_id(&self) -> u64 {
        let ids = self.model.devices();
        (0..).find(|id| !ids.contains_key(id)).expect("fewer than 2^64 devices")
    }

    /// The vblock a provision maps: in a run with a key order, mostly the next fresh key of
    /// the device in that order; otherwise as [`Runner::pick_vblock`].
    fn pick_provision_vblock(&mut self, h: usize) -> u64 {
        let order = self.opts.key_order;
        if order == super::KeyOrder::Random {
            return self.pick_vblock(h);
        }
        let id = self.handles[h].0.id();
        if self.rng.random_bool(0.15) {
            // An overwrite: a key out of order would end the order (a random key below a
            // descending run would be the minimum every later key stays above).
            let mapped = self.model.devices().get(&id).map_or(0, |d| d.mappings.len());
            if mapped > 0 {
                let i = self.rng.random_range(0..mapped);
                let d = &self.model.devices()[&id];
                return d.mappings.nth_key(i).expect("i < mapped");
            }
        }
        let n = self.opts.vblocks.max(1);
        let last = self.fresh_keys.get(&id).copied();
        let next = match (order, last) {
            (super::KeyOrder::Descending, None) => n - 1 - self.rng.random_range(0..n / 8 + 1),
            (super::KeyOrder::Descending, Some(k)) => k.checked_sub(1).unwrap_or(n - 1),
            (super::KeyOrder::Clustered, Some(k)) if (k + 1) % 32 != 0 => k + 1,
            (super::KeyOrder::Ascending, Some(k)) => k + 1,
            _ => self.rng.random_range(0..n),
        } % n;
        self.fresh_keys.insert(id, next);
        next
    }

    fn pick_vblock(&mut self, h: usize) -> u64 {
        let id = self.handles[h].0.id();
        let mapped: Option<u64> = self.model.devices().get(&id).and_then(|d| {
            let n = d.mappings.len();
            (n > 0).then(|| d.mappings.nth_key(self.rng.random_range(0..n)).expect("n > 0"))
        });
        match mapped {
            Some(v) if self.rng.random_bool(0.6) => v,
            _ => self.rng.random_range(0..self.opts.vblocks),
        }
    }

    /// A data block in use (mostly) or any block of the current data device.
    fn pick_data_block(&mut self) -> u64 {
        let refs = self.model.logical_refs();
        let n = refs.len();
        if n > 0 && self.rng.random_bool(0.8) {
            let i = self.rng.random_range(0..n);
            return refs.nth_key(i).expect("i < n");
        }
        self.rng.random_range(0..self.model.current().data_blocks.max(1))
    }

    /// Judges an answer pair; see the module invariants.
    pub(super) fn judge<T: PartialEq + Debug>(
        &mut self,
        eng: engine::Result<T>,
        model: Result<T, Errno>,
    ) -> Res<Judged> {
        self.fold(&format!("{eng:?}|{model:?}"));
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
        self.diverged("result", detail)?;
        Ok(Judged::Handled)
    }

    /// Whether a fault or a legitimate exhaustion explains a non-argument error.
    fn explained(&mut self, e: &engine::Error) -> bool {
        match (e, errno(e)) {
            (engine::Error::NoSpace(Space::Metadata), _) => {
                self.stats.metadata_exhausted += 1;
                self.meta_pressure = true;
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
                return Err(self.fail("abort", format!("abort failed with no fault injected: {e}")));
            }
            self.model.enter_fail_mode();
            self.stats.outcomes.c_fail_modes += 1;
            let q = self.pool().get_transaction_id().map_err(|e| errno(&e));
            if q != self.model.get_transaction_id() {
                return Err(self.fail(
                    "fail-mode",
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
            m.abort().map_err(|e| self.fail("abort", format!("model refused abort: {e:?}")))?;
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
        match super::recovery::match_candidate(self.pool(), &cands, image.as_ref()) {
            Ok(i) => {
                self.model = cands.swap_remove(i);
                Ok(())
            }
            Err(d) => {
                // Keep both candidates for the power cut that may follow.
                self.model = cands.pop().expect("one candidate at least");
                self.pre = cands.pop();
                self.diverged("state-after-abort", d)
            }
        }
    }

    fn execute(&mut self, kind: OpKind) -> Res<()> {
        self.op_text = format!("{kind:?}");
        match kind {
            OpKind::CreateThin => {
                // A third of creates take a free id, so device trees grow.
                let id =
                    if self.rng.random_bool(0.3) { self.fresh_dev_id() } else { self.pick_dev() };
                self.op_text = format!("create_thin({id})");
                let eng = self.pool().create_thin(id);
                let m = self.model.create_thin(id);
                self.judge(eng, m).map(drop)
            }
            OpKind::CreateSnap => {
                let id = if self.step == self.removal_at.unwrap_or(0) {
                    self.fresh_dev_id()
                } else {
                    self.rng.random_range(0..self.opts.dev_ids)
                };
                let origin = self.pick_dev();
                self.op_text = format!("create_snap({id}, origin {origin})");
                let eng = self.pool().create_snap(id, origin);
                let m = self.model.create_snap(id, origin);
                self.judge(eng, m).map(drop)
            }
            OpKind::Delete => {
                let id = self.pick_dev_to_delete();
                self.op_text = format!("delete_thin_device({id})");
                let eng = self.pool().delete_thin_device(id);
                let m = self.model.delete_thin(id);
                self.judge(eng, m).map(drop)
            }
            OpKind::Commit => self.commit_op(),
            OpKind::Abort => self.do_abort(false),
            OpKind::SetTransactionId => {
                let cur = self.model.current().trans_id + u64::from(self.rng.random_bool(0.1));
                self.op_text = format!("set_transaction_id({cur}, {})", cur + 1);
                let eng = self.pool().set_transaction_id(cur, cur + 1);
                let m = self.model.set_transaction_id(cur, cur + 1);
                self.judge(eng, m).map(drop)
            }
            OpKind::ReserveSnap => {
                let eng = self.pool().reserve_metadata_snap();
                let m = self.model.reserve_metadata_snap();
                self.judge(eng, m).map(drop)
            }
            OpKind::ReleaseSnap => {
                let eng = self.pool().release_metadata_snap();
                let m = self.model.release_metadata_snap();
                self.judge(eng, m).map(drop)
            }
            OpKind::Open => self.open_op(),
            OpKind::CloseThin => {
                let i = self.rng.random_range(0..self.handles.len());
                let (mh, th) = self.handles.swap_remove(i);
                self.op_text = format!("close_thin_device({})", mh.id());
                self.pool().close_thin_device(th);
                let m = self.model.close_thin(mh);
                self.judge(Ok(()), m).map(drop)
            }
            OpKind::FindBlock => self.find_block_op(),
            OpKind::FindMappedRange => {
                let h = self.rng.random_range(0..self.handles.len());
                let b = self.pick_vblock(h);
                let e = b + self.rng.random_range(0..40u64);
                self.op_text =
                    format!("find_mapped_range(dev {}, {b}..{e})", self.handles[h].0.id());
                let eng = self.pool().find_mapped_range(&self.handles[h].1, b, e).map(|r| {
                    model::MappedRange {
                        thin_begin: r.thin_begin,
                        thin_end: r.thin_end,
                        pool_begin: r.pool_begin,
                        maybe_shared: r.maybe_shared,
                    }
                });
                let m = self.model.find_mapped_range(self.handles[h].0, b, e);
                self.judge(eng, m).map(drop)
            }
            OpKind::Provision => self.provision_op(true),
            OpKind::Alloc => self.provision_op(false),
            OpKind::RemoveBlock => {
                let h = self.rng.random_range(0..self.handles.len());
                let v = self.pick_vblock(h);
                self.op_text = format!("remove_block(dev {}, vblock {v})", self.handles[h].0.id());
                let eng = self.pool().remove_block(&self.handles[h].1, v);
                let m = self.model.remove_block(self.handles[h].0, v);
                self.judge(eng, m).map(drop)
            }
            OpKind::RemoveRange => {
                let h = self.rng.random_range(0..self.handles.len());
                let b = self.pick_vblock(h);
                // Up to a few leaves' worth (a leaf holds 252), never the whole key space.
                let e = b + self.rng.random_range(0..(self.opts.vblocks / 2 + 2).min(1_200));
                self.op_text = format!("remove_range(dev {}, {b}..{e})", self.handles[h].0.id());
                let eng = self.pool().remove_range(&self.handles[h].1, b, e);
                let m = self.model.remove_range(self.handles[h].0, b, e);
                if self.judge(eng, m)? == Judged::Agree {
                    self.data_pressure = false;
                }
                Ok(())
            }
            OpKind::Query => self.query_op(),
            OpKind::BlockIsShared => {
                let b = self.pick_data_block();
                self.op_text = format!("block_is_shared({b})");
                let eng = self.pool().block_is_shared(b);
                match self.model.block_is_shared(b) {
                    Ok(None) => self.judge(eng.map(drop), Ok(())).map(drop),
                    m => self.judge(eng, m.map(|x| x.unwrap_or(false))).map(drop),
                }
            }
            OpKind::IncRange => {
                let b = self.pick_data_block();
                let e = (b + self.rng.random_range(0..3u64)).min(self.model.current().data_blocks);
                self.op_text = format!("inc_data_range({b}..{e})");
                let eng = self.pool().inc_data_range(b, e);
                let m = self.model.inc_data_range(b, e);
                self.judge(eng, m).map(drop)
            }
            OpKind::DecRange => self.dec_op(),
            OpKind::ResizeData => self.resize_data_op(),
            OpKind::ResizeMetadata => self.resize_metadata_op(),
            OpKind::ReadOnly => {
                let ro = !self.model.is_read_only() && self.rng.random_bool(0.5);
                self.op_text = if ro { "metadata_read_only" } else { "metadata_read_write" }.into();
                let m = if ro {
                    self.pool().metadata_read_only();
                    self.model.read_only()
                } else {
                    self.pool().metadata_read_write();
                    self.model.read_write()
                };
                self.judge(Ok(()), m).map(drop)
            }
            OpKind::SetNeedsCheck => {
                let eng = self.pool().set_needs_check();
                let m = self.model.set_needs_check();
                self.judge(eng, m).map(drop)
            }
            OpKind::PowerCut => {
                self.pre = None;
                self.power_cut()
            }
            OpKind::CloseReopen => self.close_reopen_op(),
        }
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

    fn open_op(&mut self) -> Res<()> {
        let id = self.pick_dev();
        self.op_text = format!("open_thin_device({id})");
        let eng = self.pool().open_thin_device(id);
        let m = self.model.open_thin(id);
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

    fn find_block_op(&mut self) -> Res<()> {
        let h = self.rng.random_range(0..self.handles.len());
        let v = self.pick_vblock(h);
        let io = self.rng.random_bool(0.9);
        self.op_text =
            format!("find_block(dev {}, vblock {v}, can_issue_io {io})", self.handles[h].0.id());
        let eng = self.pool().find_block(&self.handles[h].1, v, io);
        let m = self.model.find_block(self.handles[h].0, v);
        let eng = eng.map(|l| model::Lookup { data_block: l.data_block, shared: l.shared });
        // [H4]: without I/O the engine may say EWOULDBLOCK instead.
        if !io && matches!(&eng, Err(e) if errno(e) == Errno::EWOULDBLOCK) {
            return self.judge(Ok(()), m.map(drop)).map(drop);
        }
        self.judge(eng, m).map(drop)
    }

    /// alloc_data_block, then (for a provision) insert_block of the new block. One
    /// provision in ten with a caller reference held (from inc_data_range) inserts that block
    /// instead, half the time over a vblock that already maps it: the remap the btree's
    /// `equal` hook exists for (the old value's reference must not be dropped).
    fn provision_op(&mut self, insert: bool) -> Res<()> {
        if insert && !self.handles.is_empty() && self.rng.random_bool(0.1) {
            let held: Vec<u64> = self.model.current().caller_refs.keys().copied().collect();
            if !held.is_empty() {
                let block = held[self.rng.random_range(0..held.len())];
                return self.insert_held(block);
            }
        }
        self.op_text = "alloc_data_block".into();
        let eng = self.pool().alloc_data_block();
        let block = match eng {
            Ok(b) => {
                let m = self.model.alloc_data_block_check(b).map(|()| b);
                if self.judge(Ok(b), m)? != Judged::Agree {
                    return Ok(());
                }
                b
            }
            Err(e) => {
                let nospace = errno(&e) == Errno::ENOSPC;
                let m = self.model.alloc_data_block_expect();
                if self.judge(Err::<(), _>(e), m)? == Judged::Agree && nospace {
                    self.stats.data_full += 1;
                    self.data_pressure = true;
                }
                return Ok(());
            }
        };
        if !insert || self.handles.is_empty() {
            return Ok(());
        }
        let h = self.rng.random_range(0..self.handles.len());
        let v = self.pick_provision_vblock(h);
        self.op_text =
            format!("insert_block(dev {}, vblock {v}, data {block})", self.handles[h].0.id());
        let eng = self.pool().insert_block(&self.handles[h].1, v, block);
        let m = self.model.insert_block(self.handles[h].0, v, block);
        self.judge(eng, m).map(drop)
    }

    /// insert_block of a data block the caller holds a reference to.
    fn insert_held(&mut self, block: u64) -> Res<()> {
        let h = self.rng.random_range(0..self.handles.len());
        let id = self.handles[h].0.id();
        // A vblock of this device that maps `block` already (small devices only: a scan).
        let same =
            self.model.devices().get(&id).filter(|d| d.mappings.len() <= 4096).and_then(|d| {
                d.mappings.iter().find(|(_, m)| m.data_block == block).map(|(v, _)| v)
            });
        let v = match same {
            Some(v) if self.rng.random_bool(0.5) => v,
            _ => self.pick_vblock(h),
        };
        self.op_text = format!("insert_block(dev {id}, vblock {v}, held data {block})");
        let eng = self.pool().insert_block(&self.handles[h].1, v, block);
        let m = self.model.insert_block(self.handles[h].0, v, block);
        self.judge(eng, m).map(drop)
    }

    fn query_op(&mut self) -> Res<()> {
        let h = (!self.handles.is_empty()).then(|| self.rng.random_range(0..self.handles.len()));
        let which = self.rng.random_range(0..10u32);
        match (which, h) {
            (0, Some(h)) => {
                self.op_text = format!("get_highest_mapped_block(dev {})", self.handles[h].0.id());
                let eng = self.pool().get_highest_mapped_block(&self.handles[h].1);
                let m = self.model.highest_mapped_block(self.handles[h].0);
                self.judge(eng, m).map(drop)
            }
            (1, Some(h)) => {
                self.op_text = format!("get_mapped_count(dev {})", self.handles[h].0.id());
                let eng = self.pool().get_mapped_count(&self.handles[h].1);
                let m = self.model.mapped_count(self.handles[h].0);
                self.judge(eng, m).map(drop)
            }
            (2, Some(h)) => {
                self.op_text =
                    format!("thin_changed_this_transaction(dev {})", self.handles[h].0.id());
                let eng = self.pool().thin_changed_this_transaction(&self.handles[h].1);
                let m = self.model.thin_changed(self.handles[h].0);
                self.judge(Ok(eng), m).map(drop)
            }
            (3, Some(h)) => {
                self.op_text = format!("aborted_changes(dev {})", self.handles[h].0.id());
                let eng = self.pool().aborted_changes(&self.handles[h].1);
                let m = self.model.aborted_changes(self.handles[h].0);
                if self.aborted_changes_unspecified {
                    self.fold(&format!("unspecified after a failed op: {eng:?}|{m:?}"));
                    return Ok(());
                }
                self.judge(Ok(eng), m).map(drop)
            }
            (4, _) => {
                self.op_text = "changed_this_transaction".into();
                let eng = self.pool().changed_this_transaction();
                let m = self.model.changed_this_transaction();
                self.judge(eng, m).map(drop)
            }
            (5, _) => {
                self.op_text = "get_metadata_snap".into();
                let eng = self.pool().get_metadata_snap().map(|b| b != 0);
                let m = self.model.metadata_snap_held();
                self.judge(eng, m).map(drop)
            }
            (6, _) => {
                self.op_text = "get_data_dev_size".into();
                let eng = self.pool().get_data_dev_size();
                let m = self.model.data_dev_size();
                self.judge(eng, m).map(drop)
            }
            (7, _) => {
                self.op_text = "get_free_block_count".into();
                let eng = self.pool().get_free_block_count();
                let m = self.model.free_data_blocks();
                self.judge(eng, m).map(drop)
            }
            (8, _) => {
                self.op_text = "needs_check".into();
                let eng = self.pool().needs_check();
                let m = self.model.needs_check();
                self.judge(eng, m).map(drop)
            }
            _ => {
                self.op_text = "get_transaction_id".into();
                let eng = self.pool().get_transaction_id();
                let m = self.model.get_transaction_id();
                self.judge(eng, m).map(drop)
            }
        }
    }

    fn dec_op(&mut self) -> Res<()> {
        let held: Vec<u64> = self.model.current().caller_refs.keys().copied().collect();
        if held.is_empty() {
            return self.query_op();
        }
        let b = held[self.rng.random_range(0..held.len())];
        self.op_text = format!("dec_data_range({b}..{})", b + 1);
        let eng = self.pool().dec_data_range(b, b + 1);
        let m = self.model.dec_data_range(b, b + 1);
        self.judge(eng, m).map(drop)
    }

    fn resize_data_op(&mut self) -> Res<()> {
        let cur = self.model.current().data_blocks;
        let grow = self.data_pressure || self.rng.random_bool(0.7);
        let new = if grow {
            cur + self.rng.random_range(1..=self.opts.resize_data_step.max(1))
        } else {
            cur - self.rng.random_range(0..=cur / 4)
        };
        self.op_text = format!("resize_data_dev({cur} -> {new})");
        self.stats.data_resizes += 1;
        let eng = self.pool().resize_data_dev(new);
        let m = self.model.resize_data_dev(new);
        if self.judge(eng, m)? == Judged::Agree {
            self.data_pressure = false;
        }
        Ok(())
    }

    /// The model has no metadata size; a no-op compare-and-set gives it the same entry rules
    /// (in service, EINVAL when poisoned or failed, EPERM read-only) and changes nothing.
    fn resize_metadata_op(&mut self) -> Res<()> {
        let Ok(cur) = self.pool().get_metadata_dev_size() else {
            return self.query_op();
        };
        let disk = self.opts.metadata_disk_blocks;
        let grow = self.meta_pressure || self.rng.random_bool(0.8);
        let step = self.opts.resize_metadata_step.max(1);
        let new = if grow {
            (cur + self.rng.random_range(1..=step)).min(disk)
        } else {
            cur.saturating_sub(self.rng.random_range(1..=step / 4 + 1)).max(16)
        };
        self.op_text = format!("resize_metadata_dev({cur} -> {new})");
        self.stats.metadata_resizes += 1;
        let eng = self.pool().resize_metadata_dev(new);
        // A shrink may find blocks in use: ENOSPC without effect, like the entry rules' Ok.
        let eng = match eng {
            Err(engine::Error::NoSpace(Space::Shrink)) if new < cur => Ok(()),
            other => other,
        };
        let t = self.model.current().trans_id;
        let m = self.model.set_transaction_id(t, t);
        if self.judge(eng, m)? == Judged::Agree {
            self.meta_pressure = false;
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
        self.op_text = "close pool".into();
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
        if self.pool.is_some() {
            return Err(self.fail("close", "close refused with no thin device open".into()));
        }
        let m = self.model.close();
        if self.disk.lock().is_powered_off() || eng.is_err() {
            // The final commit failed or lost power: the disk holds the old or new state.
            if let Err(e) = &eng {
                if !self.disk.lock().is_powered_off() && !self.explained(e) {
                    return Err(self.fail("close", format!("close failed: {e}, model {m:?}")));
                }
            }
            return self.power_cut();
        }
        self.pre = None;
        self.recover_on_disk(vec![self.model.clone()], false)
    }
}
