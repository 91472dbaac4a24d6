//! Opening (and formatting) a pool, and closing it.

use super::values::SubtreeRoots;
use super::{Pool, PoolInner};
use crate::block_manager::BlockManager;
use crate::btree;
use crate::error::{CorruptKind, Error, Result, Space};
use crate::format::superblock::Superblock;
use crate::io::BlockDevice;
use crate::limits::{
    DEFAULT_CACHE_BLOCKS, MAX_METADATA_BLOCKS, METADATA_BLOCK_SECTORS, MIN_METADATA_BLOCKS,
    SUPERBLOCK_MAGIC, SUPERBLOCK_VERSION,
};
use crate::space_map::data::DataSpaceMap;
use crate::space_map::metadata_commit;
use crate::sync::RwLock;
use crate::transaction::TransactionManager;
use std::collections::{BTreeMap, BTreeSet};

use super::records::DETAILS_VALUES;

/// How to open a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Data block size in 512-byte sectors; must equal the stored one.
    pub data_block_size: u32,
    /// Format a blank (all-zero block 0) device instead of failing with EPERM.
    pub may_format: bool,
    /// Bound on cached metadata blocks.
    pub cache_blocks: usize,
}

impl PoolOptions {
    pub fn new(data_block_size: u32) -> Self {
        PoolOptions { data_block_size, may_format: true, cache_blocks: DEFAULT_CACHE_BLOCKS }
    }
}

/// Why `close` did not simply succeed.
pub enum CloseError {
    /// A thin device is still open; nothing changed and the pool is handed back ([R9]).
    Busy(Box<Pool>),
    /// The final commit failed; the pool is gone, here is its device ([R2]).
    CommitFailed { error: Error, device: Box<dyn BlockDevice> },
}

impl std::fmt::Debug for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseError::Busy(_) => write!(f, "EBUSY: a thin device is still open"),
            CloseError::CommitFailed { error, .. } => {
                write!(f, "close: final commit failed: {error}")
            }
        }
    }
}

impl Pool {
    /// Opens the pool on `dev`, formatting it if block 0 is all zeros and `may_format`.
    pub fn open(dev: Box<dyn BlockDevice>, opts: PoolOptions) -> Result<Pool> {
        let bm = BlockManager::new(dev, opts.cache_blocks);
        let raw = bm.read_raw(0)?;
        let inner = if raw.iter().all(|&b| b == 0) {
            if !opts.may_format {
                return Err(Error::ReadOnly(
                    "metadata device is blank and formatting is not allowed".into(),
                ));
            }
            format(bm, opts.data_block_size)?
        } else {
            open_existing(bm, opts.data_block_size)?
        };
        Ok(Pool { inner: RwLock::new(inner) })
    }

    /// Closes the pool: EBUSY (pool handed back, nothing changed) while a device is open;
    /// otherwise commits when writable and not failed, then releases the device ([R2]).
    pub fn close(self) -> std::result::Result<Box<dyn BlockDevice>, CloseError> {
        if self.read().records.values().any(|r| r.open) {
            return Err(CloseError::Busy(Box::new(self)));
        }
        let (fail_io, read_only) = {
            let p = self.read();
            (p.fail_io, p.read_only)
        };
        let result = if fail_io || read_only { Ok(()) } else { self.commit() };
        let inner = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        let device = inner.tm.bm.into_device();
        match result {
            Ok(()) => Ok(device),
            Err(error) => Err(CloseError::CommitFailed { error, device }),
        }
    }
}

fn format(bm: BlockManager, data_block_size: u32) -> Result<PoolInner> {
    let nr_blocks = bm.nr_blocks().min(MAX_METADATA_BLOCKS);
    if nr_blocks < MIN_METADATA_BLOCKS {
        return Err(Error::NoSpace(Space::Metadata));
    }
    let mut tm = TransactionManager::new(bm);
    metadata_commit::format(&mut tm, nr_blocks)?;
    let dsm = DataSpaceMap::format(&mut tm)?;
    let mapping_root = btree::empty(&mut tm, &SubtreeRoots::default())?;
    let details_root = btree::empty(&mut tm, DETAILS_VALUES)?;
    let sb = Superblock {
        magic: SUPERBLOCK_MAGIC,
        version: SUPERBLOCK_VERSION,
        data_block_size,
        metadata_block_size: METADATA_BLOCK_SECTORS,
        metadata_nr_blocks: nr_blocks,
        data_mapping_root: mapping_root,
        device_details_root: details_root,
        ..Default::default()
    };
    let mut inner = new_inner(tm, dsm, sb);
    // Formatting always writes, with the full commit protocol (superblock last).
    inner.in_service = true;
    inner.commit_now()?;
    inner.in_service = false;
    Ok(inner)
}

fn open_existing(bm: BlockManager, data_block_size: u32) -> Result<PoolInner> {
    let sb = read_superblock(&bm)?;
    if sb.data_block_size != data_block_size {
        return Err(Error::Invalid(format!(
            "changing the data block size (from {} to {data_block_size}) is not supported",
            sb.data_block_size
        )));
    }
    check_features(&sb, !bm.is_read_only())?;
    let mut tm = TransactionManager::new(bm);
    metadata_commit::load(&mut tm, &sb.metadata_sm_root)?;
    let dsm = DataSpaceMap::open(&sb.data_sm_root);
    Ok(new_inner(tm, dsm, sb))
}

/// Reads and validates block 0 as a superblock (location, magic, checksum).
pub(crate) fn read_superblock(bm: &BlockManager) -> Result<Superblock> {
    let raw = bm.read_raw(0)?;
    Superblock::unpack(&raw, 0).map_err(|k| Error::corrupt(0, k))
}

fn check_features(sb: &Superblock, writable: bool) -> Result<()> {
    if sb.incompat_flags != 0 {
        return Err(Error::Invalid(format!(
            "unsupported incompatible features {:#x}",
            sb.incompat_flags
        )));
    }
    if writable && sb.compat_ro_flags != 0 {
        return Err(Error::Invalid(format!(
            "unsupported read-only features {:#x}",
            sb.compat_ro_flags
        )));
    }
    Ok(())
}

fn new_inner(
    tm: crate::transaction::TransactionManager,
    dsm: DataSpaceMap,
    sb: Superblock,
) -> PoolInner {
    PoolInner {
        tm,
        dsm,
        time: sb.time,
        trans_id: sb.trans_id,
        flags: sb.flags,
        mapping_root: sb.data_mapping_root,
        details_root: sb.device_details_root,
        held_root: sb.held_root,
        sb,
        records: BTreeMap::new(),
        dead: BTreeSet::new(),
        next_generation: 0,
        fail_io: false,
        in_service: false,
        read_only: false,
        poisoned: false,
        pre_commit: None,
        values: SubtreeRoots::default(),
    }
}

impl PoolInner {
    /// Re-reads the committed state from disk (abort): superblock, both space maps, roots.
    pub(crate) fn reload(&mut self) -> Result<()> {
        self.tm.bm.invalidate_all();
        // What we re-read must be durable, or a crash could later show something else.
        self.tm.bm.with_device(|d| d.flush())?;
        let sb = read_superblock(&self.tm.bm)?;
        check_features(&sb, true)?;
        // What a failed operation queued refers to the state being dropped.
        self.values.mappings.take_queued();
        let threshold = self.tm.sm.threshold.take();
        let loaded = metadata_commit::load(&mut self.tm, &sb.metadata_sm_root);
        // The registration survives abort whatever happens ([R4]).
        self.tm.sm.adopt_threshold(threshold);
        loaded?;
        self.dsm = DataSpaceMap::open(&sb.data_sm_root);
        self.time = sb.time;
        self.trans_id = sb.trans_id;
        self.flags |= sb.flags;
        self.mapping_root = sb.data_mapping_root;
        self.details_root = sb.device_details_root;
        self.held_root = sb.held_root;
        self.sb = sb;
        Ok(())
    }
}

impl From<CorruptKind> for Error {
    fn from(k: CorruptKind) -> Self {
        Error::corrupt(0, k)
    }
}

/// A pool opened to read its held metadata snapshot and nothing else (the tools' `-m` on a
/// live pool, as thin_dump, thin_ls and thin_check 1.x read it): block 0 is read for the
/// snapshot's location, then only the snapshot's superblock copy and the trees it names. The
/// space maps are not read (a live pool's are changing under the reader, and may be what is
/// damaged), nor the live trees; so this type offers the snapshot's trees and nothing else.
///
/// Invariant: the pool inside is read-only and its metadata space map was never loaded (it
/// only bounds block numbers by the superblock's metadata size), so no query of the space
/// maps is reachable through this type.
pub struct HeldSnapshot {
    pub(super) pool: Pool,
}

impl HeldSnapshot {
    /// Opens `dev` for its held snapshot. Fails when block 0 is no valid superblock or names
    /// features this engine cannot read; no snapshot held is found by the visit.
    pub fn open(dev: Box<dyn BlockDevice>) -> Result<HeldSnapshot> {
        let bm = BlockManager::new(dev, DEFAULT_CACHE_BLOCKS);
        let sb = read_superblock(&bm)?;
        check_features(&sb, false)?;
        bm.set_read_only(true);
        let nr_blocks = sb.metadata_sm_root.nr_blocks.min(bm.nr_blocks()).min(MAX_METADATA_BLOCKS);
        let mut tm = TransactionManager::new(bm);
        tm.sm = crate::space_map::metadata::MetadataSpaceMap::new_empty(nr_blocks);
        let dsm = DataSpaceMap::open(&sb.data_sm_root);
        let mut inner = new_inner(tm, dsm, sb);
        inner.read_only = true;
        Ok(HeldSnapshot { pool: Pool { inner: RwLock::new(inner) } })
    }
}

impl Pool {
    /// Opens an existing pool for the tools (dump, ls): the data block size is taken from the
    /// superblock, blank devices are refused, and the pool is read-only.
    pub fn open_image(dev: Box<dyn BlockDevice>) -> Result<Pool> {
        let bm = BlockManager::new(dev, DEFAULT_CACHE_BLOCKS);
        let sb = read_superblock(&bm)?;
        let pool = Pool::open(
            bm.into_device(),
            PoolOptions {
                data_block_size: sb.data_block_size,
                may_format: false,
                cache_blocks: DEFAULT_CACHE_BLOCKS,
            },
        )?;
        pool.metadata_read_only();
        Ok(pool)
    }
}
