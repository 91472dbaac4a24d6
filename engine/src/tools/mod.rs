//! Userspace tool formats (thin_dump XML, thin_ls tables): pure text ⇄ values, no pool access.
//!
//! Everything here targets thin-provisioning-tools **0.9.0** byte for byte (spec §10):
//! - [`xml_write`]: the `thin_dump` writer (XML and `-f human_readable`), which merges
//!   consecutive mappings into runs exactly as the tool does.
//! - [`xml_read`]: a streaming parser of the XML `thin_restore` accepts, with every rejection a
//!   typed error carrying a 1-based line and column.
//! - [`ls`]: the `thin_ls` table (fields, human units, alignment).
//!
//! The value types in [`types`] are neutral: they hold what the XML holds, not the engine's
//! newtypes, so that this module depends on nothing else in the crate.

pub mod ls;
mod tracked;
pub mod types;
mod xml_error;
pub mod xml_fast;
pub mod xml_read;
pub mod xml_write;

pub use types::{XmlDevice, XmlSuperblock};
