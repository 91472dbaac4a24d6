//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use engine::format::BlockTime;
use engine::io::{Block, BlockDevice, IoError, MemoryDevice};
use engine::thin::{Pool, PoolOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A memory device shared between the pool under test and the test itself, which can be
/// told to fail reads or writes (EIO) and counts the writes it accepted.
#[derive(Clone)]
pub struct SharedDevice(pub Arc<Mutex<MemoryDevice>>, pub Arc<Mutex<Faults>>);

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
        SharedDevice(Arc::new(Mutex::new(MemoryDevice::new(nr_blocks))), Default::default())
    }

    pub fn set_faults(&self, fail_reads: bool, fail_writes: bool) {
        *self.1.lock().unwrap() = Faults { fail_reads, fail_writes };
    }

    pub fn writes(&self) -> u64 {
        self.0.lock().unwrap().writes_issued
    }

    /// An independent copy of the disk as it is now.
    pub fn image(&self) -> MemoryDevice {
        self.0.lock().unwrap().clone()
    }
}

impl BlockDevice for SharedDevice {
    fn nr_blocks(&self) -> u64 {
        self.0.lock().unwrap().nr_blocks()
    }
    fn read(&mut self, b: u64, buf: &mut Block) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_reads {
            return Err(eio(engine::io::IoOp::Read, Some(b)));
        }
        self.0.lock().unwrap().read(b, buf)
    }
    fn write(&mut self, b: u64, buf: &Block) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_writes {
            return Err(eio(engine::io::IoOp::Write, Some(b)));
        }
        self.0.lock().unwrap().write(b, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        if self.1.lock().unwrap().fail_writes {
            return Err(eio(engine::io::IoOp::Flush, None));
        }
        Ok(())
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
