//! The simulated disk shared between the engine (which owns its device as a
//! `Box<dyn BlockDevice>`) and the runner (which crashes it, reads its pending writes and
//! labels its phases).
//!
//! Invariant: every clone names the same [`SimDisk`]; the engine's pool and the runner
//! never hold the lock across a call into each other, so it cannot deadlock.

use crate::disk::SimDisk;
use engine::io::{Block, BlockDevice, IoError};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
pub struct SharedDisk(Arc<Mutex<SimDisk>>);

impl SharedDisk {
    pub fn new(disk: SimDisk) -> Self {
        SharedDisk(Arc::new(Mutex::new(disk)))
    }

    /// The disk itself. A poisoned lock only means an earlier panic; the data is still
    /// the disk's, so it is used as is.
    pub fn lock(&self) -> MutexGuard<'_, SimDisk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A boxed device for `Pool::open`.
    pub fn device(&self) -> Box<dyn BlockDevice> {
        Box::new(self.clone())
    }
}

impl BlockDevice for SharedDisk {
    fn nr_blocks(&self) -> u64 {
        self.lock().nr_blocks()
    }
    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        self.lock().read(block, buf)
    }
    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.lock().write(block, buf)
    }
    fn write_fua(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.lock().write_fua(block, buf)
    }
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        self.lock().write_run(first, blocks)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.lock().flush()
    }
}
