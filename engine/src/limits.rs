//! Every limit of the on-disk format and of the engine, in one place, with the relations
//! between them checked at compile time.

/// Bytes in a metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes in a sector (the unit of `data_block_size`).
pub const SECTOR_SIZE: usize = 512;
/// Sectors per metadata block (superblock `metadata_block_size`).
pub const METADATA_BLOCK_SECTORS: u32 = (BLOCK_SIZE / SECTOR_SIZE) as u32;

/// Superblock magic (27022010).
pub const SUPERBLOCK_MAGIC: u64 = 27_022_010;
/// Superblock version written by this engine (the kernel's).
pub const SUPERBLOCK_VERSION: u32 = 2;

/// Superblock versions the format has (check refuses others, restore will not write them).
pub const SUPERBLOCK_VERSIONS: std::ops::RangeInclusive<u32> = 1..=SUPERBLOCK_VERSION;
/// Bytes of the packed superblock record; the rest of block 0 stays zero.
pub const SUPERBLOCK_RECORD_BYTES: usize = 364;

/// Bytes of a btree node header.
pub const NODE_HEADER_BYTES: usize = 32;
/// Bytes of a bitmap block header.
pub const BITMAP_HEADER_BYTES: usize = 16;
/// Space-map entries (2 bits each) per bitmap block.
pub const ENTRIES_PER_BITMAP: u64 = ((BLOCK_SIZE - BITMAP_HEADER_BYTES) * 4) as u64;
/// Index entries in the metadata space map's single index block.
pub const METADATA_INDEX_ENTRIES: usize = 255;
/// Bytes of one space-map index entry.
pub const INDEX_ENTRY_BYTES: usize = 16;
/// Largest metadata device the format can describe, in blocks.
pub const MAX_METADATA_BLOCKS: u64 = METADATA_INDEX_ENTRIES as u64 * ENTRIES_PER_BITMAP;

/// Bits of the time stamp in a packed mapping value.
pub const TIME_BITS: u32 = 24;
/// First time value that no longer fits a mapping ([R8]).
pub const TIME_LIMIT: u32 = 1 << TIME_BITS;
/// First data block number that no longer fits a mapping (40 bits).
pub const DATA_BLOCK_LIMIT: u64 = 1 << (64 - TIME_BITS);

/// Deepest btree accepted from disk. A tree respecting the fill rules at the largest metadata
/// device is about 5 levels deep; anything deeper is corruption (or a cycle).
pub const MAX_BTREE_DEPTH: usize = 16;

/// Metadata blocks hidden from the reported free count: min(4096, size / 10).
pub const METADATA_RESERVE_MAX_BLOCKS: u64 = 4096;

/// Default bound on cached metadata blocks (32 MiB).
pub const DEFAULT_CACHE_BLOCKS: usize = 8192;

/// Smallest metadata device that can be formatted: superblock, index, overflow root,
/// one bitmap, data-sm index root and overflow root, details root, top-level root,
/// plus room for the space map's own commit copies.
pub const MIN_METADATA_BLOCKS: u64 = 16;

const _: () = assert!(ENTRIES_PER_BITMAP == 16320);
const _: () = assert!(MAX_METADATA_BLOCKS == 4_161_600);
// The index block: a 16-byte header, then exactly 255 entries fill the block.
const _: () = assert!(16 + METADATA_INDEX_ENTRIES * INDEX_ENTRY_BYTES == BLOCK_SIZE);
const _: () = assert!(SUPERBLOCK_RECORD_BYTES <= SECTOR_SIZE);
const _: () = assert!(METADATA_BLOCK_SECTORS == 8);

/// Smallest data block the pool target takes, in 512-byte sectors (64 KiB); every size is a
/// multiple of it. The metadata layer only stores the value: this is the target's rule, which
/// the tools apply so they never make or pass an image the kernel refuses to activate.
pub const DATA_BLOCK_SECTORS_MIN: u32 = 128;
/// Largest data block the pool target takes, in sectors (1 GiB).
pub const DATA_BLOCK_SECTORS_MAX: u32 = 2_097_152;
/// Largest thin device id the pool target takes (ids are 24 bits in its messages).
pub const MAX_THIN_ID: u64 = (1 << 24) - 1;

/// Whether the pool target takes a data block of `sectors`.
pub const fn data_block_size_ok(sectors: u32) -> bool {
    sectors >= DATA_BLOCK_SECTORS_MIN
        && sectors <= DATA_BLOCK_SECTORS_MAX
        && sectors.is_multiple_of(DATA_BLOCK_SECTORS_MIN)
}

/// Why the pool target refuses a data block of `sectors`, or `None` when it takes it.
pub fn data_block_size_refusal(sectors: u32) -> Option<String> {
    (!data_block_size_ok(sectors)).then(|| {
        format!(
            "data block size {sectors} sectors: the pool target takes \
             {DATA_BLOCK_SECTORS_MIN}..={DATA_BLOCK_SECTORS_MAX} sectors, a multiple of \
             {DATA_BLOCK_SECTORS_MIN}"
        )
    })
}
