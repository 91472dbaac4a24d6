//! Block checksums: CRC-32C over bytes 4..4096, not finally inverted, XOR a per-kind salt.
//!
//! | off | size | field    |
//! |-----|------|----------|
//! | 0   | 4    | csum     |
//! | 4   | 4    | flags / not_used / padding |
//! | 8   | 8    | blocknr  |
//!
//! Every kind of checksummed block has its own location at offset 8; a writer sets it just
//! before computing the checksum ("seal"), a reader checks both ("verify").

use super::{le_u32, le_u64, put_u32, put_u64};
use crate::error::CorruptKind;
use crate::io::Block;

/// The four kinds of checksummed metadata block, by salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKind {
    Superblock,
    Node,
    Bitmap,
    Index,
}

impl BlockKind {
    pub const ALL: [BlockKind; 4] =
        [BlockKind::Superblock, BlockKind::Node, BlockKind::Bitmap, BlockKind::Index];

    /// The salt XORed into this kind's checksum.
    pub const fn salt(self) -> u32 {
        match self {
            BlockKind::Superblock => 160_774,
            BlockKind::Node => 121_107,
            BlockKind::Bitmap => 240_779,
            BlockKind::Index => 160_478,
        }
    }

    /// Classifies a block by its checksum salt (None: no kind matches).
    pub fn classify(block: &Block) -> Option<BlockKind> {
        let stored = le_u32(block, 0);
        Self::ALL.into_iter().find(|k| stored == checksum(block, *k))
    }
}

/// The checksum a block of `kind` with these contents must carry.
pub fn checksum(block: &Block, kind: BlockKind) -> u32 {
    crc32c::crc32c(&block[4..]) ^ 0xFFFF_FFFF ^ kind.salt()
}

/// Sets the block's own location and checksum, ready to be written at `location`.
pub fn seal(block: &mut Block, kind: BlockKind, location: u64) {
    put_u64(block, 8, location);
    let c = checksum(block, kind);
    put_u32(block, 0, c);
}

/// Checks the stored location and checksum, in the kernel's order (location first).
pub fn verify(block: &Block, kind: BlockKind, location: u64) -> Result<(), CorruptKind> {
    let stored_nr = le_u64(block, 8);
    if stored_nr != location {
        return Err(CorruptKind::BlockNr { stored: stored_nr });
    }
    verify_checksum(block, kind)
}

/// Checks the checksum only.
pub fn verify_checksum(block: &Block, kind: BlockKind) -> Result<(), CorruptKind> {
    let stored = le_u32(block, 0);
    let computed = checksum(block, kind);
    if stored != computed {
        return Err(CorruptKind::Checksum { stored, computed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_leaf(blocknr: u64, max: u32, value_size: u32) -> Block {
        let mut b = [0u8; 4096];
        put_u32(&mut b, 4, 2);
        put_u64(&mut b, 8, blocknr);
        put_u32(&mut b, 20, max);
        put_u32(&mut b, 24, value_size);
        b
    }

    #[test]
    fn crc_sanity_vector() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn empty_leaf_vectors_from_the_spec() {
        for (nr, max, vs, want) in
            [(6, 252, 8, 0xCB3D_DA35u32), (7, 126, 24, 0xB1C8_1346), (2, 336, 4, 0xC360_E452)]
        {
            let b = empty_leaf(nr, max, vs);
            assert_eq!(checksum(&b, BlockKind::Node), want, "leaf at {nr}");
        }
    }

    #[test]
    fn seal_then_verify_and_classify() {
        for kind in BlockKind::ALL {
            let mut b = empty_leaf(0, 252, 8);
            seal(&mut b, kind, 42);
            assert_eq!(verify(&b, kind, 42), Ok(()));
            assert_eq!(BlockKind::classify(&b), Some(kind));
            assert!(matches!(verify(&b, kind, 43), Err(CorruptKind::BlockNr { stored: 42 })));
            b[100] ^= 1;
            assert!(matches!(verify(&b, kind, 42), Err(CorruptKind::Checksum { .. })));
        }
    }
}
