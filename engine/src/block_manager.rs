//! Block manager: a bounded cache of metadata blocks over a [`BlockDevice`], with the
//! kernel's validators run on every read from the device and before every write.
//!
//! Invariants:
//! - A cached block has been validated for exactly one [`BlockKind`]; asking for it as
//!   another kind is an error (the kernel's "validator mismatch"), never a silent reinterpretation.
//! - Dirty blocks are sealed (own location + checksum) only when written back, so in-memory
//!   edits never need to keep checksums current.
//! - Write-back happens in ascending block order (deterministic), at `flush` or when the cache
//!   is over capacity; the caller guarantees early write-back is harmless (every dirty block
//!   except the superblock lives where the committed metadata does not look).
//! - Read-only mode refuses every new dirty block and every flush with `ReadOnly`.
//! - Readers share blocks as `Arc`s; a writer copies a block only while a reader still holds it.

use crate::error::{Error, Result};
use crate::format::checksum::{self, BlockKind};
use crate::format::node;
use crate::format::superblock::Superblock;
use crate::io::{Block, BlockDevice};
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Deterministic, cheap hasher for block numbers (no per-process random keys).
#[derive(Default)]
pub struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

type BlockMap<V> = HashMap<u64, V, BuildHasherDefault<BlockHasher>>;

struct Entry {
    data: Arc<Block>,
    kind: BlockKind,
    dirty: bool,
    last_use: u64,
}

struct Inner {
    dev: Box<dyn BlockDevice>,
    cache: BlockMap<Entry>,
    dirty: BTreeSet<u64>,
    capacity_blocks: usize,
    tick: u64,
    read_only: bool,
    /// Blocks a cache-only lookup wanted; read ahead by `issue_prefetches`.
    prefetch: BTreeSet<u64>,
}

/// I/O counters, for benchmarks and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BmStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub cache_hits: u64,
}

pub struct BlockManager {
    inner: Mutex<Inner>,
    stats: Mutex<BmStats>,
}

/// Longest run of consecutive blocks written in one call (1 MiB).
const WRITE_RUN_MAX_BLOCKS: usize = 256;

/// Most blocks queued for prefetch; beyond it requests are dropped (a hint, like the kernel's).
const PREFETCH_QUEUE_MAX: usize = 128;

impl BlockManager {
    pub fn new(dev: Box<dyn BlockDevice>, capacity_blocks: usize) -> Self {
        BlockManager {
            inner: Mutex::new(Inner {
                dev,
                cache: BlockMap::default(),
                dirty: BTreeSet::new(),
                capacity_blocks: capacity_blocks.max(64),
                tick: 0,
                read_only: false,
                prefetch: BTreeSet::new(),
            }),
            stats: Mutex::new(BmStats::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug elsewhere; the data is still sound
        // because every mutation below completes before it can fail.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut BmStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn stats(&self) -> BmStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Size of the device in blocks.
    pub fn nr_blocks(&self) -> u64 {
        self.lock().dev.nr_blocks()
    }

    pub fn set_read_only(&self, ro: bool) {
        self.lock().read_only = ro;
    }

    pub fn is_read_only(&self) -> bool {
        self.lock().read_only
    }

    /// Reads `block` as `kind`, from the cache or the device (validated on the way in).
    pub fn read(&self, block: u64, kind: BlockKind) -> Result<Arc<Block>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(e) = inner.cache.get_mut(&block) {
            if e.kind != kind {
                return Err(validator_mismatch(block, e.kind, kind));
            }
            e.last_use = tick;
            let data = Arc::clone(&e.data);
            drop(inner);
            self.bump(|s| s.cache_hits += 1);
            return Ok(data);
        }
        let mut buf: Block = [0u8; 4096];
        inner.dev.read(block, &mut buf)?;
        self.bump(|s| s.reads += 1);
        validate(&buf, kind, block)?;
        let data = Arc::new(buf);
        inner
            .insert(block, Entry { data: Arc::clone(&data), kind, dirty: false, last_use: tick })?;
        drop(inner);
        Ok(data)
    }

    /// Like `read`, but never issues I/O: an uncached block is `WouldBlock` and is queued for
    /// prefetch (the kernel's non-blocking transaction-manager clone).
    pub fn try_read(&self, block: u64, kind: BlockKind) -> Result<Arc<Block>> {
        let mut inner = self.lock();
        match inner.cache.get(&block) {
            Some(e) if e.kind == kind => Ok(Arc::clone(&e.data)),
            Some(e) => Err(validator_mismatch(block, e.kind, kind)),
            None => {
                if inner.prefetch.len() < PREFETCH_QUEUE_MAX {
                    inner.prefetch.insert(block);
                }
                Err(Error::WouldBlock { block })
            }
        }
    }

    /// Reads every queued prefetch block; errors are ignored (a later real read reports them).
    pub fn issue_prefetches(&self, kind: BlockKind) {
        let queued = std::mem::take(&mut self.lock().prefetch);
        for b in queued {
            let _ = self.read(b, kind);
        }
    }

    /// Reads raw bytes of `block` from the device, bypassing cache and validation.
    pub fn read_raw(&self, block: u64) -> Result<Block> {
        let mut inner = self.lock();
        if let Some(e) = inner.cache.get(&block) {
            return Ok(*e.data);
        }
        let mut buf: Block = [0u8; 4096];
        inner.dev.read(block, &mut buf)?;
        self.bump(|s| s.reads += 1);
        Ok(buf)
    }

    /// Installs `data` as the new contents of `block` (dirty, kind `kind`).
    pub fn put(&self, block: u64, kind: BlockKind, data: Block) -> Result<()> {
        let mut inner = self.lock();
        inner.refuse_if_read_only()?;
        inner.tick += 1;
        let tick = inner.tick;
        inner.dirty.insert(block);
        inner.insert(block, Entry { data: Arc::new(data), kind, dirty: true, last_use: tick })
    }

    /// Runs `f` on the cached contents of `block`, which must already be cached as `kind`
    /// (the caller read or created it in this transaction), and marks it dirty.
    pub fn modify<R>(
        &self,
        block: u64,
        kind: BlockKind,
        f: impl FnOnce(&mut Block) -> R,
    ) -> Result<R> {
        let mut inner = self.lock();
        inner.refuse_if_read_only()?;
        if !inner.cache.contains_key(&block) {
            drop(inner);
            self.read(block, kind)?;
            inner = self.lock();
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.dirty.insert(block);
        let e = inner.cache.get_mut(&block).ok_or_else(|| {
            Error::Invalid(format!("block {block} vanished from the cache while being modified"))
        })?;
        if e.kind != kind {
            return Err(validator_mismatch(block, e.kind, kind));
        }
        e.dirty = true;
        e.last_use = tick;
        Ok(f(Arc::make_mut(&mut e.data)))
    }

    /// Drops `block` from the cache without writing it (it was freed).
    pub fn discard(&self, block: u64) {
        let mut inner = self.lock();
        inner.cache.remove(&block);
        inner.dirty.remove(&block);
    }

    /// Drops every cached block, dirty or not (abort: nothing uncommitted may survive).
    pub fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.cache.clear();
        inner.dirty.clear();
        inner.prefetch.clear();
    }

    /// Writes back every dirty block in ascending order, then flushes the device cache.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.refuse_if_read_only()?;
        let n = inner.write_back_dirty()?;
        inner.dev.flush()?;
        drop(inner);
        self.bump(|s| {
            s.writes += n;
            s.flushes += 1;
        });
        Ok(())
    }

    /// Writes back every dirty block without flushing the device (canary use only: a commit
    /// must flush before its superblock).
    pub(crate) fn write_back(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.refuse_if_read_only()?;
        let n = inner.write_back_dirty()?;
        drop(inner);
        self.bump(|s| s.writes += n);
        Ok(())
    }

    /// Number of dirty blocks (tests and reports).
    pub fn dirty_count(&self) -> usize {
        self.lock().dirty.len()
    }

    /// Runs `f` with the device (tools that need the raw device, e.g. resizing checks).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut dyn BlockDevice) -> R) -> R {
        f(self.lock().dev.as_mut())
    }

    /// Takes the device back (pool close).
    pub fn into_device(self) -> Box<dyn BlockDevice> {
        self.inner.into_inner().unwrap_or_else(|p| p.into_inner()).dev
    }
}

impl Inner {
    fn refuse_if_read_only(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly("metadata is read-only".into()));
        }
        Ok(())
    }

    fn insert(&mut self, block: u64, e: Entry) -> Result<()> {
        self.cache.insert(block, e);
        if self.cache.len() > self.capacity_blocks {
            self.evict()?;
        }
        Ok(())
    }

    /// Evicts the least recently used clean blocks down to 7/8 of capacity, writing dirty
    /// blocks back first when clean ones are not enough (as dm-bufio does under pressure).
    fn evict(&mut self) -> Result<()> {
        let target = self.capacity_blocks - self.capacity_blocks / 8;
        let clean = self.cache.len() - self.dirty.len();
        if clean < self.cache.len() - target && !self.read_only {
            self.write_back_dirty()?;
        }
        let mut victims: Vec<(u64, u64)> =
            self.cache.iter().filter(|(_, e)| !e.dirty).map(|(b, e)| (e.last_use, *b)).collect();
        victims.sort_unstable();
        let excess = self.cache.len().saturating_sub(target);
        for (_, b) in victims.into_iter().take(excess) {
            self.cache.remove(&b);
        }
        Ok(())
    }

    /// Writes every dirty block in ascending order, consecutive blocks in one `write_run`.
    fn write_back_dirty(&mut self) -> Result<u64> {
        let dirty: Vec<u64> = self.dirty.iter().copied().collect();
        let mut n = 0;
        let mut run: Vec<Arc<Block>> = Vec::new();
        let mut run_start = 0u64;
        for b in dirty {
            if !self.cache.contains_key(&b) {
                self.dirty.remove(&b);
                continue;
            }
            if !run.is_empty() && run_start + run.len() as u64 != b {
                self.flush_run(run_start, &mut run)?;
            }
            let e = self.cache.get_mut(&b).expect("checked above");
            if run.is_empty() {
                run_start = b;
            }
            let kind = e.kind;
            checksum::seal(Arc::make_mut(&mut e.data), kind, b);
            run.push(Arc::clone(&e.data));
            n += 1;
            if run.len() >= WRITE_RUN_MAX_BLOCKS {
                self.flush_run(run_start, &mut run)?;
            }
        }
        self.flush_run(run_start, &mut run)?;
        Ok(n)
    }

    /// Writes a run of sealed blocks and marks them clean (they stay dirty on error).
    fn flush_run(&mut self, first: u64, run: &mut Vec<Arc<Block>>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        self.dev.write_run(first, run)?;
        for b in first..first + run.len() as u64 {
            if let Some(e) = self.cache.get_mut(&b) {
                e.dirty = false;
            }
            self.dirty.remove(&b);
        }
        run.clear();
        Ok(())
    }
}

fn validator_mismatch(block: u64, had: BlockKind, want: BlockKind) -> Error {
    Error::structure(block, format!("block read as {want:?} but already validated as {had:?}"))
}

/// The kernel's validators, by kind.
pub fn validate(buf: &Block, kind: BlockKind, location: u64) -> Result<()> {
    match kind {
        BlockKind::Superblock => Superblock::unpack(buf, location).map(|_| ()),
        BlockKind::Node => checksum::verify(buf, kind, location).and_then(|()| node::validate(buf)),
        BlockKind::Bitmap | BlockKind::Index => checksum::verify(buf, kind, location),
    }
    .map_err(|k| Error::corrupt(location, k))
}
