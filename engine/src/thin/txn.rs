//! Transactions: commit, abort, transaction ids, the held metadata snapshot, needs_check,
//! read-only mode and the callbacks.

use super::records::DETAILS_VALUES;
use super::{Pool, PoolInner, PreCommitFn};
use crate::btree;
use crate::canary::{Canaries, Canary};
use crate::error::{Error, Result};
use crate::format::checksum::BlockKind;
use crate::format::superblock::{SmRoot, Superblock, NEEDS_CHECK};
use crate::format::{MetadataBlock, TransactionId};

impl Pool {
    /// Makes every change since the last commit durable ([H11]: a no-op, without I/O or
    /// callback, while the pool has not been put in service).
    pub fn commit(&self) -> Result<()> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        if !p.in_service {
            return Ok(());
        }
        if p.poisoned {
            return Err(Error::Poisoned);
        }
        if p.read_only {
            return Err(Error::ReadOnly("pool metadata is read-only".into()));
        }
        p.commit_with_callback()
    }

    /// Discards every uncommitted change and re-reads the last commit ([H3]: a full roll-back;
    /// open handles stay open, those of devices that no longer exist become dead). A failure
    /// leaves the pool in fail mode ([H6]).
    pub fn abort(&self) -> Result<()> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        p.in_service = true;
        let r = p.abort_now();
        if r.is_err() {
            p.fail_io = true;
        }
        r
    }

    /// Compare-and-set of the userspace transaction id.
    pub fn set_transaction_id(&self, current: TransactionId, new: TransactionId) -> Result<()> {
        self.mutate(|p| {
            if p.trans_id != current {
                return Err(Error::Invalid(format!(
                    "transaction id is {}, not {current}",
                    p.trans_id
                )));
            }
            p.trans_id = new;
            Ok(())
        })
    }

    pub fn get_transaction_id(&self) -> Result<TransactionId> {
        self.query(|p| Ok(p.trans_id))
    }

    /// Commits, then takes a copy of the superblock that pins the committed trees ([H9]:
    /// the commit happens even when the call then fails with EBUSY).
    pub fn reserve_metadata_snap(&self) -> Result<()> {
        self.mutate(|p| {
            p.commit_with_callback()?;
            if p.held_root.0 != 0 {
                return Err(Error::Busy("a metadata snapshot is already held".into()));
            }
            let mut copy = p.sb.clone();
            copy.held_root = MetadataBlock(0);
            copy.data_sm_root = SmRoot::default();
            copy.metadata_sm_root = SmRoot::default();
            let n = p.tm.new_block(BlockKind::Superblock)?;
            p.tm.bm.put(n.0, BlockKind::Superblock, copy.pack(n.0))?;
            p.tm.inc(copy.data_mapping_root)?;
            p.tm.inc(copy.device_details_root)?;
            p.held_root = n;
            Ok(())
        })
    }

    /// Drops the held snapshot and every block only it referenced (EINVAL if none).
    pub fn release_metadata_snap(&self) -> Result<()> {
        self.mutate(|p| {
            if p.held_root.0 == 0 {
                return Err(Error::Invalid("no metadata snapshot is held".into()));
            }
            let n = p.held_root;
            let raw = p.tm.read(n, BlockKind::Superblock)?;
            let copy = Superblock::unpack_unchecked(&raw);
            btree::delete(&mut p.tm, &p.values, copy.data_mapping_root)?;
            btree::delete(&mut p.tm, DETAILS_VALUES, copy.device_details_root)?;
            p.tm.dec(n)?;
            p.held_root = MetadataBlock(0);
            p.apply_data_ops()
        })
    }

    /// The held snapshot's block, 0 when none (uncommitted reserve/release included).
    /// Where the held metadata snapshot is; `None` when none is held (the kernel's 0).
    pub fn get_metadata_snap(&self) -> Result<Option<crate::format::MetadataBlock>> {
        self.query(|p| Ok((p.held_root.0 != 0).then_some(p.held_root)))
    }

    /// Sets NEEDS_CHECK and makes it durable before returning ([H7]): the last committed
    /// superblock is rewritten with the flag (roots untouched, so safe mid-transaction).
    pub fn set_needs_check(&self) -> Result<()> {
        self.mutate(|p| {
            let mut sb = p.sb.clone();
            sb.flags |= NEEDS_CHECK;
            p.tm.bm.put(0, BlockKind::Superblock, sb.pack(0))?;
            p.tm.bm.flush()?;
            p.sb = sb;
            p.flags |= NEEDS_CHECK;
            Ok(())
        })
    }

    /// Clears NEEDS_CHECK durably, as `thin_check --clear-needs-check-flag` does after a
    /// clean check: the last committed superblock rewritten without the flag (roots
    /// untouched). A no-op, without I/O, when the flag is clear.
    pub fn clear_needs_check(&self) -> Result<()> {
        self.mutate(|p| {
            if p.sb.flags & NEEDS_CHECK == 0 {
                return Ok(());
            }
            let mut sb = p.sb.clone();
            sb.flags &= !NEEDS_CHECK;
            p.tm.bm.put(0, BlockKind::Superblock, sb.pack(0))?;
            p.tm.bm.flush()?;
            p.sb = sb;
            p.flags &= !NEEDS_CHECK;
            Ok(())
        })
    }

    /// Drops leaked references (counts the space maps store above what the trees hold, as
    /// `check` found them): `(block, n)` takes `n` references off, metadata then data, in
    /// the open transaction (a `commit` makes it durable, an `abort` forgets it). The tools'
    /// seam for `check --auto-repair`; EINVAL, with no effect, if a block holds fewer than
    /// `n`.
    pub fn release_leaks(&self, metadata: &[(u64, u32)], data: &[(u64, u32)]) -> Result<()> {
        self.mutate(|p| {
            for &(b, n) in metadata {
                if p.tm.ref_count(MetadataBlock(b))? < n {
                    return Err(Error::Invalid(format!("metadata block {b} holds fewer than {n}")));
                }
            }
            for &(b, n) in data {
                if b >= p.dsm.nr_blocks() || p.dsm.count(&mut p.tm, b)? < n {
                    return Err(Error::Invalid(format!("data block {b} holds fewer than {n}")));
                }
            }
            for &(b, n) in metadata {
                for _ in 0..n {
                    p.tm.dec(MetadataBlock(b))?;
                }
            }
            for &(b, n) in data {
                for _ in 0..n {
                    p.dsm.dec(&mut p.tm, b)?;
                }
            }
            Ok(())
        })
    }

    pub fn needs_check(&self) -> Result<bool> {
        self.query(|p| Ok(p.flags & NEEDS_CHECK != 0))
    }

    /// From now on every mutator and in-service commit fails with EPERM, with no effect ([H8]).
    pub fn metadata_read_only(&self) {
        self.control(|p| {
            p.read_only = true;
            p.tm.bm.set_read_only(true);
        })
    }

    pub fn metadata_read_write(&self) {
        self.control(|p| {
            p.read_only = false;
            p.tm.bm.set_read_only(false);
        })
    }

    /// Calls `callback` each time an allocation takes the raw free metadata count from above
    /// `threshold_blocks` to at or below it. Survives abort ([R4]).
    pub fn register_metadata_threshold(
        &self,
        threshold_blocks: u64,
        callback: crate::space_map::metadata::ThresholdFn,
    ) -> Result<()> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        p.tm.sm.register_threshold(threshold_blocks, callback);
        Ok(())
    }

    pub fn register_pre_commit_callback(&self, callback: PreCommitFn) -> Result<()> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        p.pre_commit = Some(callback);
        Ok(())
    }

    /// True iff some device was created, snapshotted, or had mappings changed since commit.
    pub fn changed_this_transaction(&self) -> Result<bool> {
        self.query(|p| Ok(p.records.values().any(|r| r.changed)))
    }

    /// Whether the pool is in fail mode (an abort failed).
    pub fn is_failed(&self) -> bool {
        self.read().fail_io
    }

    /// Whether a non-argument error poisoned the current transaction ([R1]).
    pub fn is_poisoned(&self) -> bool {
        self.read().poisoned
    }

    /// Switches deliberately broken behaviour on (only a `canary` build can make a
    /// non-empty set; see [`crate::canary`]).
    pub fn set_canaries(&self, c: Canaries) {
        self.control(|p| p.tm.canaries = c)
    }
}

impl PoolInner {
    fn commit_with_callback(&mut self) -> Result<()> {
        let skip = self.tm.canaries.on(crate::canary::Canary::SkipPreCommitCallback);
        if let Some(cb) = self.pre_commit.as_mut().filter(|_| !skip) {
            // A callback error stops the commit before any metadata I/O, with nothing changed.
            cb()?;
        }
        let r = self.commit_now();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// The last committed superblock with this transaction's values and roots: what a
    /// commit writes (once the space-map roots are set) and what the tools read as live.
    pub(super) fn live_superblock(&self) -> Superblock {
        let mut sb = self.sb.clone();
        sb.time = self.time;
        sb.trans_id = self.trans_id;
        sb.flags = self.flags;
        sb.held_root = self.held_root;
        sb.data_mapping_root = self.mapping_root;
        sb.device_details_root = self.details_root;
        sb
    }

    /// The commit protocol: details, data space map, metadata space map + every dirty block,
    /// flush, then the superblock, flush.
    pub(crate) fn commit_now(&mut self) -> Result<()> {
        self.write_changed_details()?;
        let data_root = self.dsm.pre_commit(&mut self.tm)?;
        let mut sb = self.live_superblock();
        sb.data_sm_root = data_root;
        sb.metadata_sm_root = crate::space_map::metadata_commit::pre_commit(&mut self.tm)?;
        self.tm.commit(&sb)?;
        self.dsm.mark_committed();
        self.sb = sb;
        self.records.retain(|_, r| r.open);
        for r in self.records.values_mut() {
            r.changed = false;
        }
        Ok(())
    }

    fn write_changed_details(&mut self) -> Result<()> {
        let changed: Vec<(u64, [u8; 24])> = self
            .records
            .iter()
            .filter(|(_, r)| r.changed)
            .map(|(id, r)| (*id, r.details.pack()))
            .collect();
        for (id, bytes) in changed {
            self.details_root =
                btree::insert(&mut self.tm, DETAILS_VALUES, self.details_root, id, &bytes)?.0;
        }
        Ok(())
    }

    fn abort_now(&mut self) -> Result<()> {
        let kept = self.tm.canaries.on(Canary::AbortKeepsRecords).then(|| self.records.clone());
        self.reload()?;
        self.poisoned = false;
        let open: Vec<u64> =
            self.records.iter().filter(|(_, r)| r.open).map(|(id, _)| *id).collect();
        self.records.retain(|_, r| r.open);
        for id in open {
            let details = self.committed_details(id)?;
            let r = self.records.get_mut(&id).expect("kept above");
            r.aborted_with_changes = r.changed;
            r.changed = false;
            match details {
                Some(d) => r.details = d,
                None => {
                    let gen = r.generation;
                    self.records.remove(&id);
                    self.dead.insert(gen);
                }
            }
        }
        if let Some(kept) = kept {
            self.records = kept;
        }
        Ok(())
    }
}
