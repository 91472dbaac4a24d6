//! Space-map index entries and the metadata space map's single index block.
//!
//! Index entry (16 bytes):
//! | off | size | field            |
//! |-----|------|------------------|
//! | 0   | 8    | blocknr (bitmap) |
//! | 8   | 4    | nr_free          |
//! | 12  | 4    | none_free_before |
//!
//! Metadata index block (4096 bytes, salt 160478):
//! | off        | size | field                 |
//! |------------|------|-----------------------|
//! | 0          | 4    | csum                  |
//! | 4          | 4    | padding (0)           |
//! | 8          | 8    | blocknr               |
//! | 16 + 16·i  | 16   | entry i, i < 255      |
//!
//! `nr_free` and `none_free_before` are hints: readers never trust them for correctness.

use super::ids::MetadataBlock;
use super::{le_u32, le_u64, put_u32, put_u64};
use crate::io::Block;
use crate::limits::{INDEX_ENTRY_BYTES, METADATA_INDEX_ENTRIES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    /// Where the bitmap is.
    pub blocknr: MetadataBlock,
    pub nr_free: u32,
    pub none_free_before: u32,
}

impl IndexEntry {
    pub fn pack(&self) -> [u8; INDEX_ENTRY_BYTES] {
        let mut b = [0u8; INDEX_ENTRY_BYTES];
        put_u64(&mut b, 0, self.blocknr.0);
        put_u32(&mut b, 8, self.nr_free);
        put_u32(&mut b, 12, self.none_free_before);
        b
    }

    pub fn unpack(b: &[u8]) -> Self {
        IndexEntry {
            blocknr: MetadataBlock(le_u64(b, 0)),
            nr_free: le_u32(b, 8),
            none_free_before: le_u32(b, 12),
        }
    }
}

const INDEX_BLOCK_ENTRIES_OFFSET: usize = 16;

/// Reads the `n` leading entries of a (checksum-verified) metadata index block.
pub fn unpack_metadata_index(block: &Block, n: usize) -> Vec<IndexEntry> {
    (0..n.min(METADATA_INDEX_ENTRIES))
        .map(|i| {
            let off = INDEX_BLOCK_ENTRIES_OFFSET + i * INDEX_ENTRY_BYTES;
            IndexEntry::unpack(&block[off..off + INDEX_ENTRY_BYTES])
        })
        .collect()
}

/// Writes a metadata index block body; entries past `entries.len()` are zero.
/// The caller seals it (location and checksum) at write-back.
pub fn pack_metadata_index(entries: &[IndexEntry]) -> Block {
    assert!(entries.len() <= METADATA_INDEX_ENTRIES, "at most 255 bitmaps by the format");
    let mut b = [0u8; 4096];
    for (i, e) in entries.iter().enumerate() {
        let off = INDEX_BLOCK_ENTRIES_OFFSET + i * INDEX_ENTRY_BYTES;
        b[off..off + INDEX_ENTRY_BYTES].copy_from_slice(&e.pack());
    }
    b
}
