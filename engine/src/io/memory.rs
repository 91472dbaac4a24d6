//! The in-memory device: every write is immediately durable, flush is free. Tests, fuzz
//! targets, the tools' images and the simulator's disk images are all this type.
//!
//! Invariants:
//! - `nr_blocks` blocks, held in copy-on-write chunks ([`BlockVec`]) that start out sharing
//!   one zero block: a device costs a pointer per block plus the blocks written, not its
//!   size in bytes, and a clone (a snapshot of the disk, to test reopen or to keep a crash
//!   image) costs a pointer per chunk. Copies never see each other's writes.
//! - The contents are what a reopen would see; equality compares contents only.

use super::block_vec::BlockVec;
use super::{check_range, Block, BlockDevice, IoError, IoOp};
use crate::limits::BLOCK_SIZE;
use std::sync::Arc;

/// An in-memory device. Cloning it snapshots the disk.
#[derive(Clone)]
pub struct MemoryDevice {
    blocks: BlockVec,
    /// Number of writes issued so far (for tests that cut a commit at every write).
    pub writes_issued: u64,
}

impl MemoryDevice {
    /// A zero-filled device of `nr_blocks` 4 KiB blocks; every block shares one zero buffer.
    pub fn new(nr_blocks: u64) -> Self {
        let len = usize::try_from(nr_blocks).expect("a memory device fits in the address space");
        MemoryDevice { blocks: BlockVec::filled(len, &Arc::new([0; BLOCK_SIZE])), writes_issued: 0 }
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
        for b in self.blocks.iter() {
            out.extend_from_slice(&b[..]);
        }
        out
    }

    /// Block `block` to change in place (tests corrupt images through this).
    ///
    /// # Panics
    /// Beyond the end of the device: a test's mistake, not an I/O error.
    pub fn block_mut(&mut self, block: u64) -> &mut Block {
        let nr = self.blocks.len();
        usize::try_from(block)
            .ok()
            .and_then(|i| self.blocks.get_mut(i))
            .unwrap_or_else(|| panic!("block {block} is beyond the device's {nr} blocks"))
    }

    /// The bytes of block `block`, or `None` beyond the end.
    pub fn block(&self, block: u64) -> Option<&Block> {
        self.shared(usize::try_from(block).ok()?).map(|b| &**b)
    }

    /// Block `i` as the shared buffer it is kept in.
    pub fn shared(&self, i: usize) -> Option<&Arc<Block>> {
        self.blocks.get(i)
    }

    /// Replaces block `i` by a shared buffer (ignored beyond the end).
    pub fn set(&mut self, i: usize, data: Arc<Block>) {
        self.blocks.set(i, data);
    }

    /// Every block, shared (a copy costs a pointer per chunk).
    pub fn shared_blocks(&self) -> BlockVec {
        self.blocks.clone()
    }

    /// A boxed copy to open a pool on (it shares every block with `self` until written).
    pub fn to_device(&self) -> Box<dyn BlockDevice> {
        Box::new(self.clone())
    }

    /// Blocks whose contents differ from `other`'s (blocks beyond the shorter device count).
    pub fn differing_blocks(&self, other: &MemoryDevice) -> Vec<u64> {
        let longest = self.blocks.len().max(other.blocks.len());
        (0..longest as u64).filter(|&b| self.block(b) != other.block(b)).collect()
    }
}

impl BlockDevice for MemoryDevice {
    fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        check_range(IoOp::Read, block, self.nr_blocks())?;
        let data = self.blocks.get(block as usize).expect("in range: checked above");
        buf.copy_from_slice(&data[..]);
        Ok(())
    }

    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        check_range(IoOp::Write, block, self.nr_blocks())?;
        self.blocks.set(block as usize, Arc::new(*buf));
        self.writes_issued += 1;
        Ok(())
    }

    /// Keeps the engine's buffers (shared, never changed in place) instead of copying them.
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        for (block, data) in (first..).zip(blocks) {
            check_range(IoOp::Write, block, self.nr_blocks())?;
            self.blocks.set(block as usize, Arc::clone(data));
            self.writes_issued += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

impl PartialEq for MemoryDevice {
    fn eq(&self, other: &Self) -> bool {
        self.blocks.same_contents(&other.blocks)
    }
}

impl Eq for MemoryDevice {}

impl std::fmt::Debug for MemoryDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zero = [0u8; BLOCK_SIZE];
        let nonzero = self.blocks.iter().filter(|b| ***b != zero).count();
        write!(f, "MemoryDevice {{ nr_blocks: {}, nonzero_blocks: {nonzero} }}", self.nr_blocks())
    }
}
