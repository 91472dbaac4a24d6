//! Plain memory backend for unit tests: every write is immediately durable, flush is free.
//!
//! Invariant: `blocks.len() == nr_blocks`; the contents are what a reopen would see.

use super::{check_range, Block, BlockDevice, IoError, IoOp};
use crate::limits::BLOCK_SIZE;

/// An in-memory device. Cloning it snapshots the disk (used to test reopen).
#[derive(Clone)]
pub struct MemoryDevice {
    blocks: Vec<Box<Block>>,
    /// Number of writes issued so far (for tests that cut a commit at every write).
    pub writes_issued: u64,
}

impl MemoryDevice {
    /// A zero-filled device of `nr_blocks` 4 KiB blocks.
    pub fn new(nr_blocks: u64) -> Self {
        let blocks = (0..nr_blocks).map(|_| Box::new([0u8; BLOCK_SIZE])).collect();
        MemoryDevice { blocks, writes_issued: 0 }
    }

    /// A device holding `bytes` (padded with zeros to a whole number of blocks).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let nr = bytes.len().div_ceil(BLOCK_SIZE);
        let mut dev = Self::new(nr as u64);
        for (i, chunk) in bytes.chunks(BLOCK_SIZE).enumerate() {
            dev.blocks[i][..chunk.len()].copy_from_slice(chunk);
        }
        dev
    }

    /// The whole device as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * BLOCK_SIZE);
        for b in &self.blocks {
            out.extend_from_slice(&b[..]);
        }
        out
    }

    /// Direct access to a block's bytes (tests corrupt images through this).
    pub fn block_mut(&mut self, block: u64) -> &mut Block {
        &mut self.blocks[block as usize]
    }

    /// Direct read access to a block's bytes.
    pub fn block(&self, block: u64) -> &Block {
        &self.blocks[block as usize]
    }
}

impl BlockDevice for MemoryDevice {
    fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        check_range(IoOp::Read, block, self.nr_blocks())?;
        buf.copy_from_slice(&self.blocks[block as usize][..]);
        Ok(())
    }

    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        check_range(IoOp::Write, block, self.nr_blocks())?;
        self.blocks[block as usize].copy_from_slice(buf);
        self.writes_issued += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}
