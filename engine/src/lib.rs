//! thinsim's production engine: the Linux dm-thin pool metadata, in the kernel's on-disk
//! format, layer by layer as in `drivers/md/persistent-data`:
//!
//! `io` (blocks, devices) ← `format` (pure bytes) ← `block_manager` ←
//! `space_map::metadata` (the in-core metadata counts) ← `transaction` ← `btree` ←
//! {`space_map::metadata_commit`, `space_map::data`} (space maps read and written through
//! btrees) ← `thin` (the pool API) ← `tools` (the offline tools one floor up: check, dump,
//! restore, ls and their formats; `check` walks the trees itself, sharing no code with the
//! btree it audits).
//!
//! Each layer imports only layers below it; `tests/layering.rs` reads the imports from the
//! sources and fails on a cycle or an upward edge. The transaction manager knows the
//! metadata space map only as in-core counts: writing it at commit belongs to
//! `metadata_commit::pre_commit`, which then calls the manager's own half.
//!
//! The engine has no dependency on the model or the simulator; the block-device trait in
//! [`io`] is the only seam to storage.

pub mod block_manager;
pub mod btree;
pub mod canary;
pub mod error;
pub mod events;
pub mod format;
pub mod io;
pub mod limits;
pub mod space_map;
mod sync;
pub mod thin;
pub mod tools;
pub mod transaction;

pub use error::{Errno, Error, Result};
