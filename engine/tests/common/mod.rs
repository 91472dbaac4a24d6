//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod salvage;
pub mod tools;

use engine::format::BlockTime;
use engine::io::{Block, BlockDevice, IoError, MemoryDevice, Shared};
use engine::thin::{Pool, PoolOptions, ThinId, VBlock};
use std::collections::BTreeMap;

/// The device shared between the pool under test and the test itself
/// ([`engine::io::Shared`]): memory by default, a real file when `THINSIM_BACKEND=file` (CI
/// runs the contract tests both ways). It can be told to fail reads or writes (EIO) and
/// counts the writes it accepted; [`Observe`] is the test's side of it.
pub type SharedDevice = Shared<Backend>;

pub struct Backend {
    dev: Box<dyn BlockDevice>,
    writes: u64,
    faults: Faults,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Faults {
    pub fail_reads: bool,
    pub fail_writes: bool,
}

fn eio(op: engine::io::IoOp, block: Option<u64>) -> IoError {
    IoError { op, block, kind: engine::io::IoErrorKind::Device, detail: "injected".into() }
}

/// A fresh shared device of `nr_blocks` on the backend `THINSIM_BACKEND` names.
pub fn shared_device(nr_blocks: u64) -> SharedDevice {
    let (dev, dir): (Box<dyn BlockDevice>, _) =
        if std::env::var("THINSIM_BACKEND").as_deref() == Ok("file") {
            let dir = tempfile::tempdir().unwrap();
            let dev = engine::io::FileDevice::create(&dir.path().join("meta"), nr_blocks).unwrap();
            (Box::new(dev), Some(dir))
        } else {
            (Box::new(MemoryDevice::new(nr_blocks)), None)
        };
    Shared::new(Backend { dev, writes: 0, faults: Faults::default(), _dir: dir })
}

/// What a test does with its side of a [`SharedDevice`].
pub trait Observe {
    /// An independent in-memory copy of the disk as it is now.
    fn image(&self) -> MemoryDevice;
    fn set_faults(&self, fail_reads: bool, fail_writes: bool);
    /// Writes accepted so far.
    fn writes(&self) -> u64;
}

impl Observe for SharedDevice {
    fn image(&self) -> MemoryDevice {
        let mut g = self.lock();
        let n = g.dev.nr_blocks();
        let mut img = MemoryDevice::new(n);
        let mut buf = [0u8; 4096];
        for b in 0..n {
            g.dev.read(b, &mut buf).unwrap();
            img.block_mut(b).copy_from_slice(&buf);
        }
        img
    }

    fn set_faults(&self, fail_reads: bool, fail_writes: bool) {
        self.lock().faults = Faults { fail_reads, fail_writes };
    }

    fn writes(&self) -> u64 {
        self.lock().writes
    }
}

impl BlockDevice for Backend {
    fn nr_blocks(&self) -> u64 {
        self.dev.nr_blocks()
    }
    fn read(&mut self, b: u64, buf: &mut Block) -> Result<(), IoError> {
        if self.faults.fail_reads {
            return Err(eio(engine::io::IoOp::Read, Some(b)));
        }
        self.dev.read(b, buf)
    }
    fn write(&mut self, b: u64, buf: &Block) -> Result<(), IoError> {
        if self.faults.fail_writes {
            return Err(eio(engine::io::IoOp::Write, Some(b)));
        }
        self.writes += 1;
        self.dev.write(b, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        if self.faults.fail_writes {
            return Err(eio(engine::io::IoOp::Flush, None));
        }
        self.dev.flush()
    }
}

/// Every device's mappings, as the pool sees them now.
pub type Logical = BTreeMap<u64, BTreeMap<u64, BlockTime>>;

pub fn logical(pool: &Pool) -> Logical {
    let mut out = BTreeMap::new();
    for id in pool.devices().unwrap().keys() {
        out.insert(*id, pool.mappings(ThinId(*id)).unwrap().into_iter().collect());
    }
    out
}

/// Opens a fresh pool with `data_blocks` on a shared memory device of `meta_blocks`.
pub fn fresh_pool(meta_blocks: u64, data_blocks: u64) -> (Pool, SharedDevice) {
    let dev = shared_device(meta_blocks);
    let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).unwrap();
    pool.resize_data_dev(data_blocks).unwrap();
    pool.commit().unwrap();
    (pool, dev)
}

/// Maps each of `vblocks` of thin device `thin` to a freshly allocated data block, in order.
pub fn provision(pool: &Pool, thin: ThinId, vblocks: impl IntoIterator<Item = u64>) {
    let h = pool.open_thin_device(thin).unwrap();
    for v in vblocks {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), d).unwrap();
    }
    pool.close_thin_device(h);
}

/// Runs `check` on the current disk image and panics with every finding if it is not clean.
pub fn assert_clean(dev: &SharedDevice) {
    let report = engine::tools::check::check(Box::new(dev.image()));
    let listing: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(report.is_clean(), "check found:\n{}", listing.join("\n"));
}
