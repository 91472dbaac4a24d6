//! The superblock (metadata block 0, or a held metadata-snapshot copy).
//!
//! | off | size | field                   |
//! |-----|------|-------------------------|
//! | 0   | 4    | csum (salt 160774)      |
//! | 4   | 4    | flags (bit 0 NEEDS_CHECK) |
//! | 8   | 8    | blocknr                 |
//! | 16  | 16   | uuid                    |
//! | 32  | 8    | magic 27022010          |
//! | 40  | 4    | version                 |
//! | 44  | 4    | time                    |
//! | 48  | 8    | trans_id                |
//! | 56  | 8    | held_root               |
//! | 64  | 128  | data space-map root     |
//! | 192 | 128  | metadata space-map root |
//! | 320 | 8    | data_mapping_root       |
//! | 328 | 8    | device_details_root     |
//! | 336 | 4    | data_block_size (sectors) |
//! | 340 | 4    | metadata_block_size (8) |
//! | 344 | 8    | metadata_nr_blocks      |
//! | 352 | 4    | compat_flags            |
//! | 356 | 4    | compat_ro_flags         |
//! | 360 | 4    | incompat_flags          |
//! | 364 | 3732 | zero                    |
//!
//! Space-map root (first 32 bytes of each 128-byte field; the other 96 are written as zero and
//! accepted as anything, since kernel-written superblocks may carry stale memory there):
//! | off | size | field          |
//! |-----|------|----------------|
//! | 0   | 8    | nr_blocks      |
//! | 8   | 8    | nr_allocated   |
//! | 16  | 8    | bitmap_root    |
//! | 24  | 8    | ref_count_root |
//!
//! Invariant: everything we write lies in the first 512-byte sector (commit atomicity).

use super::checksum::{self, BlockKind};
use super::ids::{MetadataBlock, Time, TransactionId};
use super::{le_u32, le_u64, put_u32, put_u64};
use crate::error::CorruptKind;
use crate::io::Block;
use crate::limits::SUPERBLOCK_MAGIC;

pub const NEEDS_CHECK: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmRoot {
    pub nr_blocks: u64,
    pub nr_allocated: u64,
    pub bitmap_root: MetadataBlock,
    pub ref_count_root: MetadataBlock,
}

impl SmRoot {
    fn pack(&self, b: &mut [u8]) {
        put_u64(b, 0, self.nr_blocks);
        put_u64(b, 8, self.nr_allocated);
        put_u64(b, 16, self.bitmap_root.0);
        put_u64(b, 24, self.ref_count_root.0);
    }

    fn unpack(b: &[u8]) -> Self {
        SmRoot {
            nr_blocks: le_u64(b, 0),
            nr_allocated: le_u64(b, 8),
            bitmap_root: MetadataBlock(le_u64(b, 16)),
            ref_count_root: MetadataBlock(le_u64(b, 24)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Superblock {
    pub flags: u32,
    pub blocknr: u64,
    pub uuid: [u8; 16],
    pub magic: u64,
    pub version: u32,
    pub time: Time,
    pub trans_id: TransactionId,
    pub held_root: MetadataBlock,
    pub data_sm_root: SmRoot,
    pub metadata_sm_root: SmRoot,
    pub data_mapping_root: MetadataBlock,
    pub device_details_root: MetadataBlock,
    pub data_block_size: u32,
    pub metadata_block_size: u32,
    pub metadata_nr_blocks: u64,
    pub compat_flags: u32,
    pub compat_ro_flags: u32,
    pub incompat_flags: u32,
}

impl Superblock {
    pub fn needs_check(&self) -> bool {
        self.flags & NEEDS_CHECK != 0
    }

    /// Packs into a fresh block (zero tail) and seals it for `location`.
    pub fn pack(&self, location: u64) -> Block {
        let mut b = [0u8; 4096];
        put_u32(&mut b, 4, self.flags);
        b[16..32].copy_from_slice(&self.uuid);
        put_u64(&mut b, 32, self.magic);
        put_u32(&mut b, 40, self.version);
        put_u32(&mut b, 44, self.time.0);
        put_u64(&mut b, 48, self.trans_id.0);
        put_u64(&mut b, 56, self.held_root.0);
        self.data_sm_root.pack(&mut b[64..192]);
        self.metadata_sm_root.pack(&mut b[192..320]);
        put_u64(&mut b, 320, self.data_mapping_root.0);
        put_u64(&mut b, 328, self.device_details_root.0);
        put_u32(&mut b, 336, self.data_block_size);
        put_u32(&mut b, 340, self.metadata_block_size);
        put_u64(&mut b, 344, self.metadata_nr_blocks);
        put_u32(&mut b, 352, self.compat_flags);
        put_u32(&mut b, 356, self.compat_ro_flags);
        put_u32(&mut b, 360, self.incompat_flags);
        checksum::seal(&mut b, BlockKind::Superblock, location);
        b
    }

    /// Unpacks without any validation (used after `validate`, and by repair-minded tools).
    pub fn unpack_unchecked(b: &Block) -> Self {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        Superblock {
            flags: le_u32(b, 4),
            blocknr: le_u64(b, 8),
            uuid,
            magic: le_u64(b, 32),
            version: le_u32(b, 40),
            time: Time(le_u32(b, 44)),
            trans_id: TransactionId(le_u64(b, 48)),
            held_root: MetadataBlock(le_u64(b, 56)),
            data_sm_root: SmRoot::unpack(&b[64..192]),
            metadata_sm_root: SmRoot::unpack(&b[192..320]),
            data_mapping_root: MetadataBlock(le_u64(b, 320)),
            device_details_root: MetadataBlock(le_u64(b, 328)),
            data_block_size: le_u32(b, 336),
            metadata_block_size: le_u32(b, 340),
            metadata_nr_blocks: le_u64(b, 344),
            compat_flags: le_u32(b, 352),
            compat_ro_flags: le_u32(b, 356),
            incompat_flags: le_u32(b, 360),
        }
    }

    /// The kernel's superblock validator: location, then magic, then checksum.
    pub fn unpack(b: &Block, location: u64) -> Result<Self, CorruptKind> {
        let stored_nr = le_u64(b, 8);
        if stored_nr != location {
            return Err(CorruptKind::BlockNr { stored: stored_nr });
        }
        let magic = le_u64(b, 32);
        if magic != SUPERBLOCK_MAGIC {
            return Err(CorruptKind::Magic { stored: magic });
        }
        checksum::verify_checksum(b, BlockKind::Superblock)?;
        Ok(Self::unpack_unchecked(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_zero_tail() {
        let sb = Superblock {
            flags: 1,
            magic: SUPERBLOCK_MAGIC,
            version: 2,
            time: Time(3),
            trans_id: TransactionId(7),
            data_sm_root: SmRoot {
                nr_blocks: 1000,
                nr_allocated: 5,
                bitmap_root: MetadataBlock(4),
                ref_count_root: MetadataBlock(5),
            },
            metadata_sm_root: SmRoot {
                nr_blocks: 2048,
                nr_allocated: 12,
                bitmap_root: MetadataBlock(1),
                ref_count_root: MetadataBlock(2),
            },
            data_mapping_root: MetadataBlock(7),
            device_details_root: MetadataBlock(6),
            data_block_size: 128,
            metadata_block_size: 8,
            metadata_nr_blocks: 2048,
            ..Default::default()
        };
        let b = sb.pack(0);
        assert!(b[364..].iter().all(|&x| x == 0));
        assert_eq!(&b[32..40], &[0xba, 0x52, 0x9c, 0x01, 0, 0, 0, 0]);
        assert_eq!(Superblock::unpack(&b, 0).unwrap(), sb);
        assert!(matches!(Superblock::unpack(&b, 9), Err(CorruptKind::BlockNr { stored: 0 })));
    }
}
