//! The thin-pool metadata: a counterpart of every call in the kernel's `dm-thin-metadata.h`,
//! with the semantics of `spec/dm-thin-api.md` (the header's contract where it and the code
//! differ; each such place cites its [H#] or [R#]).
//!
//! Invariants:
//! - One reader/writer lock per pool: queries take it shared, everything else exclusive.
//! - Argument errors (EEXIST, ENODATA, EINVAL, EBUSY, EPERM, data/time/shrink ENOSPC) are
//!   decided before any change and leave no trace ([R1]); any other error from a mutator
//!   poisons the transaction: every later mutator and commit fails until abort.
//! - After a failed abort the pool is in fail mode: every call but close fails ([H6]).
//! - The held metadata-snapshot root is transactional state written by commit ([R6]).
//! - `needs_check` is durable when `set_needs_check` returns ([H7]).

mod bulk;
mod devices;
mod inspect;
mod mapping;
mod open;
mod records;
mod space;
mod txn;
mod values;
mod visit;

pub use crate::format::{DataBlock, MetadataBlock, ThinId, Time, TransactionId, VBlock};
pub use bulk::{BulkLoad, BulkSuperblock};
pub use inspect::PoolSummary;
pub use open::{CloseError, HeldSnapshot, PoolOptions};
pub use records::ThinHandle;
pub use visit::{Source, TreeHeader, TreeVisitor, Trees, VisitError};

use crate::canary::Canary;
use crate::error::{Error, Result};
use crate::format::superblock::Superblock;
use crate::space_map::data::DataSpaceMap;
use crate::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::transaction::TransactionManager;
use records::Record;
use std::collections::{BTreeMap, BTreeSet};
use values::{DataRefOp, SubtreeRoots};

/// Called at the start of every effective commit (dm-thin flushes the data device here).
pub type PreCommitFn = Box<dyn FnMut() -> Result<()> + Send + Sync>;

/// The answer of `find_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub data_block: DataBlock,
    /// The mapping predates the device's last snapshot (time-stamp test, not refcounts).
    pub shared: bool,
}

/// The answer of `find_mapped_range`: virtual `[thin_begin, thin_end)` maps to data blocks
/// from `pool_begin` on, all with the same `maybe_shared` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedRange {
    pub thin_begin: VBlock,
    pub thin_end: VBlock,
    pub pool_begin: DataBlock,
    pub maybe_shared: bool,
}

pub(crate) struct PoolInner {
    tm: TransactionManager,
    dsm: DataSpaceMap,
    /// The superblock as last committed (fields a commit does not set are kept from it).
    sb: Superblock,
    time: Time,
    trans_id: TransactionId,
    flags: u32,
    mapping_root: MetadataBlock,
    details_root: MetadataBlock,
    held_root: MetadataBlock,
    records: BTreeMap<u64, Record>,
    /// Handles whose device was deleted (or rolled back) while they were open ([H2]).
    dead: BTreeSet<u64>,
    next_generation: u64,
    fail_io: bool,
    in_service: bool,
    read_only: bool,
    poisoned: bool,
    pre_commit: Option<PreCommitFn>,
    /// The mapping tree's value types (and the data-reference changes their hooks queue).
    values: SubtreeRoots,
}

/// An open pool. `Send + Sync`; calls may come from any thread.
pub struct Pool {
    inner: RwLock<PoolInner>,
}

impl Pool {
    fn read(&self) -> RwLockReadGuard<'_, PoolInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, PoolInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A query: shared lock, refused in fail mode.
    fn query<T>(&self, f: impl FnOnce(&PoolInner) -> Result<T>) -> Result<T> {
        let p = self.read();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        f(&p)
    }

    /// A query that needs to update caches (space-map entries): exclusive lock.
    fn query_mut<T>(&self, f: impl FnOnce(&mut PoolInner) -> Result<T>) -> Result<T> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        f(&mut p)
    }

    /// A mutator: exclusive lock, puts the pool in service, refused in fail, poisoned and
    /// read-only states; a non-argument error poisons the transaction ([R1]).
    fn mutate<T>(&self, f: impl FnOnce(&mut PoolInner) -> Result<T>) -> Result<T> {
        let mut p = self.write();
        if p.fail_io {
            return Err(Error::FailMode);
        }
        p.in_service = true;
        if p.poisoned {
            return Err(Error::Poisoned);
        }
        if p.read_only {
            return Err(Error::ReadOnly("pool metadata is read-only".into()));
        }
        let r = f(&mut p);
        if let Err(e) = &r {
            if !e.is_argument_error() {
                p.poisoned = true;
            }
        }
        debug_assert!(
            r.is_err() || p.values.mappings.nothing_queued(),
            "data references left unapplied"
        );
        r
    }

    /// In-core control calls: exclusive lock, no service/fail checks.
    fn control<T>(&self, f: impl FnOnce(&mut PoolInner) -> T) -> T {
        f(&mut self.write())
    }
}

impl PoolInner {
    /// Applies the data-block reference changes queued by btree value hooks.
    fn apply_data_ops(&mut self) -> Result<()> {
        let ops = self.values.mappings.take_queued();
        for op in ops {
            match op {
                DataRefOp::Inc(b) => self.dsm.inc(&mut self.tm, b)?,
                DataRefOp::Dec(b) => {
                    if self.tm.canaries.on(Canary::SkipDataDecOnRemove) {
                        continue;
                    }
                    self.dsm.dec(&mut self.tm, b)?
                }
            }
        }
        Ok(())
    }
}

// Static guarantee the DESIGN asks for: the pool can be shared between threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool>();
};

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.read();
        f.debug_struct("Pool")
            .field("time", &p.time)
            .field("trans_id", &p.trans_id)
            .field("devices_touched", &p.records.len())
            .field("fail_io", &p.fail_io)
            .field("poisoned", &p.poisoned)
            .field("read_only", &p.read_only)
            .finish_non_exhaustive()
    }
}
