//! A device shared between the pool, which owns its device as a `Box<dyn BlockDevice>`, and
//! whoever watches it from outside (a simulator that crashes it, a test or fuzz target that
//! images it after a restore).
//!
//! Invariants: every clone names the same device; each call takes the lock for that call
//! only, so a holder that never calls into the pool while holding [`Shared::lock`] cannot
//! deadlock with it. A poisoned lock means only that an earlier panic unwound through a call;
//! the device's blocks are still the device's, so the lock is taken as is.

use super::{Block, BlockDevice, IoError};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Shared<D>(Arc<Mutex<D>>);

impl<D> Clone for Shared<D> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<D: BlockDevice + 'static> Shared<D> {
    pub fn new(device: D) -> Self {
        Shared(Arc::new(Mutex::new(device)))
    }

    /// The device itself, for the length of the guard.
    pub fn lock(&self) -> MutexGuard<'_, D> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An independent copy of the device as it is now.
    pub fn copy(&self) -> D
    where
        D: Clone,
    {
        self.lock().clone()
    }

    /// A boxed clone for `Pool::open`.
    pub fn device(&self) -> Box<dyn BlockDevice> {
        Box::new(self.clone())
    }
}

impl<D: BlockDevice + 'static> BlockDevice for Shared<D> {
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
