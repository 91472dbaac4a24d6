//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use engine::format::BlockTime;
use engine::io::{Block, BlockDevice, IoError, MemoryDevice};
use engine::thin::{Pool, PoolOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The device shared between the pool under test and the test itself: memory by default, a
/// real file when `THINSIM_BACKEND=file` (CI runs the contract tests both ways). It can be
/// told to fail reads or writes (EIO) and counts the writes it accepted.
#[derive(Clone)]
pub struct SharedDevice(pub Arc<Mutex<Backend>>, pub Arc<Mutex<Faults>>);

pub struct Backend {
    dev: Box<dyn BlockDevice>,
    writes: u64,
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

impl SharedDevice {
    pub fn new(nr_blocks: u64) -> Self {
        let backend = if std::env::var("THINSIM_BACKEND").as_deref() == Ok("file") {
            let dir = tempfile::tempdir().unwrap();
            let dev = engine::io::FileDevice::create(&dir.path().join("meta"), nr_blocks).unwrap();
            Backend { dev: Box::new(dev), writes: 0, _dir: Some(dir) }
        } else {
            Backend { dev: Box::new(MemoryDevice::new(nr_blocks)), writes: 0, _dir: None }
        };
        SharedDevice(Arc::new(Mutex::new(backend)), Default::default())
    }

    /// An independent in-memory copy of the disk as it is now.
    pub fn image(&self) -> MemoryDevice {
        let mut g = self.0.lock().unwrap();
        let n = g.dev.nr_blocks();
        let mut img = MemoryDevice::new(n);
        let mut buf = [0u8; 4096];
        for b in 0..n {
            g.dev.read(b, &mut buf).unwrap();
            img.block_mut(b).copy_from_slice(&buf);
        }
        img
    }

    pub fn set_faults(&self, fail_reads: bool, fail_writes: bool) {
        *self.1.lock().unwrap() = Faults { fail_reads, fail_writes };
    }

    pub fn writes(&self) -> u64 {
        self.0.lock().unwrap().writes
    }
}

impl BlockDevice for SharedDevice {
    fn nr_blocks(&self) -> u64 {
        self.0.lock().unwrap().dev.nr_blocks()
    }
    fn read(&mut self, b: u64, buf: &mut Block) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_reads {
            return Err(eio(engine::io::IoOp::Read, Some(b)));
        }
        self.0.lock().unwrap().dev.read(b, buf)
    }
    fn write(&mut self, b: u64, buf: &Block) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_writes {
            return Err(eio(engine::io::IoOp::Write, Some(b)));
        }
        let mut g = self.0.lock().unwrap();
        g.writes += 1;
        g.dev.write(b, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_writes {
            return Err(eio(engine::io::IoOp::Flush, None));
        }
        self.0.lock().unwrap().dev.flush()
    }
}

/// Every device's mappings, as the pool sees them now.
pub type Logical = BTreeMap<u64, BTreeMap<u64, BlockTime>>;

pub fn logical(pool: &Pool) -> Logical {
    let mut out = BTreeMap::new();
    for id in pool.devices().unwrap().keys() {
        out.insert(*id, pool.mappings(*id).unwrap().into_iter().collect());
    }
    out
}

/// Opens a fresh pool with `data_blocks` on a shared memory device of `meta_blocks`.
pub fn fresh_pool(meta_blocks: u64, data_blocks: u64) -> (Pool, SharedDevice) {
    let dev = SharedDevice::new(meta_blocks);
    let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).unwrap();
    pool.resize_data_dev(data_blocks).unwrap();
    pool.commit().unwrap();
    (pool, dev)
}

/// Runs `check` on the current disk image and panics with every finding if it is not clean.
pub fn assert_clean(dev: &SharedDevice) {
    let report = engine::thin::check::check(Box::new(dev.image()));
    let listing: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(report.is_clean(), "check found:\n{}", listing.join("\n"));
}
