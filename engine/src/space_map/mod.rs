//! Space maps: reference counts for metadata blocks ([`metadata`]) and data blocks ([`data`]).
//!
//! Both use the same on-disk low level: 2-bit bitmap entries plus an overflow btree holding
//! the full count of every block whose entry is 3. They differ in how bitmaps are indexed:
//! one index block for metadata, an index btree for data.
//!
//! Allocation rule shared by both (the "no reuse within a transaction" guarantee): a block
//! may be handed out only if its count is 0 in the current view *and* in the view of the last
//! commit, so nothing the committed superblock reaches is ever overwritten before the next
//! superblock lands.

use crate::btree::ValueKind;

pub mod data;
pub mod metadata;
pub mod metadata_commit;

/// Counts at or above this live in the overflow btree; the bitmap entry holds 3.
pub const OVERFLOW_THRESHOLD: u32 = 3;

/// Overflow trees hold u32 counts.
pub const OVERFLOW_VALUES: ValueKind<'static> =
    &crate::btree::Plain { size: 4, tree: crate::events::Tree::Overflow };
