//! Neutral values of the thin_dump XML: one struct per element that carries attributes.
//!
//! Field widths are those of the on-disk fields the tools read or write (spec §3.1, §5.1):
//! `time`, `creation_time` and `snap_time` are `u32`; block counts, transaction ids and device
//! ids are `u64` (thin_restore 0.9.0 itself only accepts device ids that fit a `u32`).

/// The `<superblock>` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlSuperblock {
    /// Printed verbatim (XML-escaped); thin_dump 0.9.0 always prints it empty.
    pub uuid: String,
    pub time: u32,
    pub transaction: u64,
    /// Raw superblock flags (bit 0 = NEEDS_CHECK). thin_restore's default is 0.
    pub flags: u32,
    /// Superblock version field. thin_restore's default is 1.
    pub version: u32,
    /// In 512-byte sectors.
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    /// thin_restore stores it into `held_root` verbatim; thin_dump never prints it.
    pub metadata_snap: Option<u64>,
}

/// The `<device>` element (one details-tree entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XmlDevice {
    pub dev_id: u64,
    /// As stored in the details entry; thin_restore 0.9.0 ignores it and recounts.
    pub mapped_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
}

/// Superblock values a user supplies in place of the image's or the document's: for a
/// superblock too damaged to give them (repair, `dump --repair`), or to change them
/// (restore, dump).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub transaction_id: Option<u64>,
    /// In 512-byte sectors.
    pub data_block_size: Option<u32>,
    pub nr_data_blocks: Option<u64>,
}
