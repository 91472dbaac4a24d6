//! The offline tools, one floor above the pool API: what thin-provisioning-tools 0.9.0 does
//! to a metadata image, byte for byte where it prints (spec §10). The pool code imports
//! nothing from here (`engine/tests/layering.rs` fails on an edge from `thin` or below).
//!
//! - [`check`]: the independent audit of an image (`thin_check`, and stricter: data
//!   reference counts, `mapped_blocks`). It reads blocks through the block manager and the
//!   format's decoders and walks every tree itself: it shares no tree-walking code with the
//!   engine it audits.
//! - [`repair`]: the salvage of a damaged image into a clean one (`thin_repair`).
//! - `tolerant`: the one tolerant reader `check` and `repair` walk damaged trees with (a
//!   visitor told each node's path and key range; bounded depth, a visited set, each failed
//!   block remembered). It uses nothing from `btree/`.
//! - [`dump`] and [`restore`]: `thin_dump` and `thin_restore` of an opened pool, through the
//!   pool's two seams for tools ([`crate::thin::Pool::visit`] to read the trees whole,
//!   [`crate::thin::Pool::bulk_load`] to build them bottom-up); `ls_rows` for `thin_ls`.
//! - The formats, pure text ⇄ values with no pool access: [`xml_write`] (the `thin_dump`
//!   writer, XML and `-f human_readable`, merging consecutive mappings into runs as the tool
//!   does), [`xml_read`] and [`xml_fast`] (the XML `thin_restore` accepts, every rejection a
//!   typed error with a 1-based line and column), [`ls`] (the `thin_ls` table).
//!
//! The value types in [`types`] hold what the XML holds, not the engine's types.

pub mod check;
pub mod defs;
pub mod dump;
mod error;
pub mod ls;
pub mod repair;
pub mod restore;
pub mod shape;
mod tolerant;
mod tracked;
pub mod types;
mod xml_error;
pub mod xml_fast;
pub mod xml_read;
pub mod xml_write;

pub use error::ToolError;
pub use types::{XmlDevice, XmlSuperblock};
