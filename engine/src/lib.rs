//! thinsim's production engine: the Linux dm-thin pool metadata, in the kernel's on-disk
//! format, layer by layer as in `drivers/md/persistent-data`:
//!
//! `format` (pure bytes) ← `io` ← `block_manager` ← `transaction` ← {`space_map`, `btree`}
//! ← `thin`.
//!
//! Each layer knows only the one below it. The engine has no dependency on the model or the
//! simulator; the block-device trait in [`io`] is the only seam to storage.

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
