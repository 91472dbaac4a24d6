//! Pure bytes ⇄ structs for every on-disk structure of the dm-thin metadata format.
//! No I/O here. All integers are little-endian. Each structure has one pack and one unpack;
//! unpack of untrusted bytes validates before it returns a trusted value.

pub mod bitmap;
pub mod block_time;
pub mod checksum;
pub mod details;
pub mod ids;
pub mod index;
pub mod node;
pub mod superblock;

pub use block_time::BlockTime;
pub use checksum::BlockKind;
pub use details::DeviceDetails;
pub use ids::{DataBlock, MetadataBlock, ThinId, Time, TransactionId, VBlock};
pub use index::IndexEntry;
pub use superblock::{SmRoot, Superblock};

#[inline]
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4-byte slice"))
}

#[inline]
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8-byte slice"))
}

#[inline]
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
