//! Plain memory backend for unit tests and fuzzing: every write is immediately durable,
//! flush is free.
//!
//! Invariants: `blocks.len() == nr_blocks`; the contents are what a reopen would see; a
//! block never written (`None`) reads as zeros, so a device costs memory for the blocks
//! written, not for its size (a fuzz input opens a 4,096-block device and writes a few).

use super::{check_range, Block, BlockDevice, IoError, IoOp};
use crate::limits::BLOCK_SIZE;

static ZERO: Block = [0; BLOCK_SIZE];

/// An in-memory device. Cloning it snapshots the disk (used to test reopen).
#[derive(Clone)]
pub struct MemoryDevice {
    blocks: Vec<Option<Box<Block>>>,
    /// Number of writes issued so far (for tests that cut a commit at every write).
    pub writes_issued: u64,
}

impl MemoryDevice {
    /// A zero-filled device of `nr_blocks` 4 KiB blocks.
    pub fn new(nr_blocks: u64) -> Self {
        let blocks = (0..nr_blocks).map(|_| None).collect();
        MemoryDevice { blocks, writes_issued: 0 }
    }

    /// A device holding `bytes` (padded with zeros to a whole number of blocks).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let nr = bytes.len().div_ceil(BLOCK_SIZE);
        let mut dev = Self::new(nr as u64);
        for (i, chunk) in bytes.chunks(BLOCK_SIZE).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                dev.block_mut(i as u64)[..chunk.len()].copy_from_slice(chunk);
            }
        }
        dev
    }

    /// The whole device as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * BLOCK_SIZE);
        for b in &self.blocks {
            out.extend_from_slice(b.as_deref().unwrap_or(&ZERO));
        }
        out
    }

    /// Direct access to a block's bytes (tests corrupt images through this).
    pub fn block_mut(&mut self, block: u64) -> &mut Block {
        self.blocks[block as usize].get_or_insert_with(|| Box::new([0; BLOCK_SIZE]))
    }

    /// Direct read access to a block's bytes.
    pub fn block(&self, block: u64) -> &Block {
        self.blocks[block as usize].as_deref().unwrap_or(&ZERO)
    }
}

impl BlockDevice for MemoryDevice {
    fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        check_range(IoOp::Read, block, self.nr_blocks())?;
        buf.copy_from_slice(self.block(block));
        Ok(())
    }

    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        check_range(IoOp::Write, block, self.nr_blocks())?;
        self.block_mut(block).copy_from_slice(buf);
        self.writes_issued += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}
