//! thinsim's production engine: the Linux dm-thin pool metadata, in the kernel's on-disk
//! format, layer by layer as in `drivers/md/persistent-data`:
//!
//! `io` (blocks, devices) ← `format` (pure bytes) ← `block_manager` ←
//! `space_map::metadata` (the in-core metadata counts) ← `transaction` ← `btree` ←
//! {`space_map::metadata_commit`, `space_map::data`} (space maps read and written through
//! btrees) ← `thin` (the pool API) ← `tools` (the offline tools one floor up: check, dump,
//! restore, repair, ls and their formats; `check` and `repair` walk damaged trees with one
//! tolerant reader of their own, sharing no code with the btree they audit).
//!
//! Numbers are typed where they cross a floor: [`format::MetadataBlock`] (the transaction
//! manager's API, btree roots and child pointers, the superblock's and space maps' roots),
//! [`format::Time`] and [`format::TransactionId`] (the format's records and the pool API),
//! and the pool API's [`format::ThinId`], [`format::VBlock`] and [`format::DataBlock`]. Below
//! the transaction manager, the block manager and the metadata space map take the bare
//! block number the device does; the tools read untrusted images with bare numbers too.
//!
//! Each layer imports only layers below it; `tests/layering.rs` reads the imports from the
//! sources and fails on a cycle or an upward edge. The transaction manager knows the
//! metadata space map only as in-core counts: writing it at commit belongs to
//! `metadata_commit::pre_commit`, which then calls the manager's own half.
//!
//! The engine has no dependency on the model or the simulator; the block-device trait in
//! [`io`] is the only seam to storage.

/// Declares the pool's lower floors: public with the `internals` feature (the engine's own
/// integration tests and benchmarks turn it on), crate-private otherwise, so the simulator,
/// the fuzz targets and the CLI reach the engine only through [`thin`] and [`tools`] (plus
/// the leaf modules below: the format, the device trait, limits, errors and events).
macro_rules! lower_floors {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(feature = "internals")]
        pub mod $name;
        $(#[$doc])*
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}

lower_floors! {
    block_manager;
    btree;
    space_map;
    transaction;
}

pub mod canary;
pub mod error;
pub mod events;
pub mod format;
pub mod io;
pub mod limits;
mod sync;
pub mod thin;
pub mod tools;

pub use error::{Errno, Error, Result};
