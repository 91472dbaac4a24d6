//! Block devices: the engine's only seam to storage.
//!
//! Invariants:
//! - Every device is addressed in whole 4 KiB metadata blocks; `nr_blocks` never changes while
//!   a device is open through this trait.
//! - A `write` is durable only after a later `flush` returns `Ok` (volatile write cache);
//!   `write_fua` is durable when it returns `Ok`.
//! - Reads see the newest data written, durable or not.
//! - Errors are values ([`IoError`]); no backend panics on an out-of-range block.

mod block_vec;
mod file;
mod memory;
mod shared;

pub use block_vec::{BlockVec, CHUNK_BLOCKS};
pub use file::FileDevice;
pub use memory::MemoryDevice;
pub use shared::Shared;

use crate::limits::BLOCK_SIZE;
use std::sync::Arc;

/// One 4 KiB metadata block.
pub type Block = [u8; BLOCK_SIZE];

/// What went wrong at the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoErrorKind {
    /// The block lies beyond the end of the device.
    OutOfRange,
    /// The device reported an error (EIO).
    Device,
    /// The device refuses writes (opened read-only).
    ReadOnly,
}

/// A typed I/O error naming the operation and, where there is one, the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError {
    pub op: IoOp,
    pub block: Option<u64>,
    pub kind: IoErrorKind,
    pub detail: String,
}

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
    Flush,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.block {
            Some(b) => {
                write!(f, "{:?} of block {b} failed: {:?} {}", self.op, self.kind, self.detail)
            }
            None => write!(f, "{:?} failed: {:?} {}", self.op, self.kind, self.detail),
        }
    }
}

impl std::error::Error for IoError {}

impl IoError {
    pub fn out_of_range(op: IoOp, block: u64, nr_blocks: u64) -> Self {
        IoError {
            op,
            block: Some(block),
            kind: IoErrorKind::OutOfRange,
            detail: format!("device has {nr_blocks} blocks"),
        }
    }
}

/// A device of 4 KiB blocks with a volatile write cache.
///
/// `Send` so that a pool can move between threads; the pool serialises access itself.
pub trait BlockDevice: Send {
    /// Size of the device in 4 KiB blocks.
    fn nr_blocks(&self) -> u64;
    /// Reads block `block` into `buf`.
    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError>;
    /// Writes `buf` to block `block`; durable after the next successful flush.
    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError>;
    /// Writes `buf` and makes that write durable before returning (forced unit access).
    fn write_fua(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.write(block, buf)?;
        self.flush()
    }
    /// Writes consecutive blocks starting at `first` (one call for a contiguous run; backends
    /// that can, do it in one I/O). Same durability as `write`. The blocks come as the
    /// block manager's shared buffers, so a backend that keeps blocks in memory may keep
    /// these very buffers instead of copying them (the block manager copies before it
    /// changes a buffer someone else holds).
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        for (i, b) in blocks.iter().enumerate() {
            self.write(first + i as u64, b)?;
        }
        Ok(())
    }
    /// Makes every write that returned before this call durable.
    fn flush(&mut self) -> Result<(), IoError>;
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn nr_blocks(&self) -> u64 {
        (**self).nr_blocks()
    }
    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        (**self).read(block, buf)
    }
    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        (**self).write(block, buf)
    }
    fn write_fua(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        (**self).write_fua(block, buf)
    }
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        (**self).write_run(first, blocks)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
}

/// `Ok` when `block` is on a device of `nr_blocks` blocks, else the out-of-range error every
/// backend returns.
pub fn check_range(op: IoOp, block: u64, nr_blocks: u64) -> Result<(), IoError> {
    if block >= nr_blocks {
        return Err(IoError::out_of_range(op, block, nr_blocks));
    }
    Ok(())
}
