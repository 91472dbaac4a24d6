//! `dump` (thin_dump 0.9.0's XML, byte for byte) and `ls` (thin_ls 0.9.0's numbers) of an
//! opened pool, from its current state or from its held metadata snapshot. Both read the
//! pool only through its public visit ([`Pool::visit`]).

use super::error::ToolError;
use super::ls::LsRow;
use super::repair::Salvage;
use super::types::Overrides;
use super::xml_write::{DumpError, DumpWriter};
use super::{XmlDevice, XmlSuperblock};
use crate::format::{BlockTime, DeviceDetails};
use crate::thin::{Source, TreeHeader, TreeVisitor, Trees, VisitError};
use std::collections::BTreeSet;
use std::io::Write;
use std::ops::ControlFlow;

/// What `dump` leaves out or replaces (thin_dump's `--skip-mappings`, `--dev-id` and
/// superblock overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// Devices only, no mapping lines.
    pub skip_mappings: bool,
    /// Only these devices (all when None).
    pub dev_ids: Option<BTreeSet<u64>>,
    /// Printed in place of the superblock's values.
    pub overrides: Overrides,
}

impl DumpOptions {
    /// Whether device `id` is dumped.
    pub(super) fn wants(&self, id: u64) -> bool {
        self.dev_ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// The superblock line of a visit's header, with the overrides in place of its values.
pub(super) fn superblock_of(h: &TreeHeader, o: &Overrides) -> XmlSuperblock {
    XmlSuperblock {
        uuid: String::new(),
        time: h.time.0,
        transaction: o.transaction_id.unwrap_or(h.trans_id.0),
        flags: h.flags,
        version: h.version,
        data_block_size: o.data_block_size.unwrap_or(h.data_block_size),
        nr_data_blocks: o.nr_data_blocks.unwrap_or(h.nr_data_blocks),
        metadata_snap: None,
    }
}

/// A device line from its details.
pub(super) fn device_of(id: u64, d: &DeviceDetails) -> XmlDevice {
    XmlDevice {
        dev_id: id,
        mapped_blocks: d.mapped_blocks,
        transaction: d.transaction_id.0,
        creation_time: d.creation_time.0,
        snap_time: d.snapshotted_time.0,
    }
}

/// One device as a visit reports it: id, details, and mappings ascending.
pub type CollectedDevice = (u64, DeviceDetails, Vec<(u64, BlockTime)>);

/// A whole visit held in memory: the header, and every device `opts` selects.
#[derive(Debug, Clone)]
pub struct Collected {
    pub header: TreeHeader,
    pub devices: Vec<CollectedDevice>,
}

/// Visits `source` of `pool` and keeps it all (for what cannot stream: the shared runs of
/// `dump --shared-defs`, comparisons with a model).
pub fn collect(
    pool: &dyn Trees,
    source: Source,
    opts: &DumpOptions,
) -> Result<Collected, ToolError> {
    let mut c = Collect { opts, header: None, devices: Vec::new(), taking: false };
    pool.visit_trees(source, &mut c)?;
    let header = c.header.ok_or_else(|| ToolError::Input("the visit gave no superblock".into()))?;
    Ok(Collected { header, devices: c.devices })
}

/// The visitor of [`collect`].
struct Collect<'a> {
    opts: &'a DumpOptions,
    header: Option<TreeHeader>,
    devices: Vec<CollectedDevice>,
    /// The current device is kept (its mappings go to the last one pushed).
    taking: bool,
}

impl TreeVisitor for Collect<'_> {
    fn header(&mut self, h: &TreeHeader) -> ControlFlow<()> {
        self.header = Some(h.clone());
        ControlFlow::Continue(())
    }
    fn device(&mut self, id: u64, d: &DeviceDetails) -> ControlFlow<()> {
        self.taking = self.opts.wants(id);
        if self.taking {
            self.devices.push((id, *d, Vec::new()));
        }
        ControlFlow::Continue(())
    }
    fn mapping(&mut self, vblock: u64, bt: BlockTime) -> ControlFlow<()> {
        if let Some(dev) = self.devices.last_mut().filter(|_| self.taking) {
            dev.2.push((vblock, bt));
        }
        ControlFlow::Continue(())
    }
    fn end_device(&mut self) -> ControlFlow<()> {
        self.taking = false;
        ControlFlow::Continue(())
    }
}

/// Writes the pool as thin_dump XML (or its human-readable form) through `w`.
pub fn dump<W: Write>(
    pool: &dyn Trees,
    w: &mut DumpWriter<W>,
    source: Source,
) -> Result<(), ToolError> {
    dump_with(pool, w, source, &DumpOptions::default())
}

/// [`dump`] narrowed by `opts`.
pub fn dump_with<W: Write>(
    pool: &dyn Trees,
    w: &mut DumpWriter<W>,
    source: Source,
    opts: &DumpOptions,
) -> Result<(), ToolError> {
    let mut v = Dumper { w, failed: None, opts, skipping: false };
    let r = pool.visit_trees(source, &mut v);
    if let Some(e) = v.failed {
        return Err(ToolError::Output(e));
    }
    r?;
    v.w.end_superblock()?;
    Ok(())
}

/// The visitor of [`dump`]: every event straight to the writer; the first output error
/// stops the visit and is kept.
struct Dumper<'a, W: Write> {
    w: &'a mut DumpWriter<W>,
    failed: Option<DumpError>,
    opts: &'a DumpOptions,
    /// The current device is filtered out.
    skipping: bool,
}

impl<W: Write> Dumper<'_, W> {
    fn out(&mut self, r: Result<(), DumpError>) -> ControlFlow<()> {
        match r {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

impl<W: Write> TreeVisitor for Dumper<'_, W> {
    fn header(&mut self, h: &TreeHeader) -> ControlFlow<()> {
        let r = self.w.superblock(&superblock_of(h, &self.opts.overrides));
        self.out(r)
    }

    fn device(&mut self, id: u64, d: &DeviceDetails) -> ControlFlow<()> {
        self.skipping = !self.opts.wants(id);
        if self.skipping {
            return ControlFlow::Continue(());
        }
        let r = self.w.begin_device(&device_of(id, d));
        self.out(r)
    }

    fn mapping(&mut self, vblock: u64, bt: BlockTime) -> ControlFlow<()> {
        if self.skipping || self.opts.skip_mappings {
            return ControlFlow::Continue(());
        }
        let r = self.w.mapping(vblock, bt.data_block.0, bt.time.0);
        self.out(r)
    }

    fn end_device(&mut self) -> ControlFlow<()> {
        if self.skipping {
            return ControlFlow::Continue(());
        }
        let r = self.w.end_device();
        self.out(r)
    }
}

/// Writes what a salvage kept (`dump --repair`), filtered by `opts` as [`dump_with`] is
/// (its overrides were the salvage's).
pub fn dump_salvage<W: Write>(
    s: &Salvage,
    w: &mut DumpWriter<W>,
    opts: &DumpOptions,
) -> Result<(), ToolError> {
    w.superblock(&s.sb)?;
    for (d, mappings) in &s.devices {
        if opts.dev_ids.as_ref().is_some_and(|ids| !ids.contains(&d.dev_id)) {
            continue;
        }
        w.begin_device(d)?;
        if !opts.skip_mappings {
            for &(v, b, t) in mappings {
                w.mapping(v, b, t)?;
            }
        }
        w.end_device()?;
    }
    w.end_superblock()?;
    Ok(())
}

/// thin_ls rows: mapped (as stored), exclusive (data block mapped exactly once among all
/// devices listed), transaction and times; plus the data block size. Two visits: every
/// mapped data block first, then each device's exclusive count against them.
pub fn ls_rows(pool: &dyn Trees, source: Source) -> Result<(Vec<LsRow>, u32), ToolError> {
    let mut blocks = Blocks::default();
    pool.visit_trees(source, &mut blocks)?;
    let mut all = std::mem::take(&mut blocks.all);
    all.sort_unstable();
    let mut rows = Rows { all, rows: Vec::new() };
    pool.visit_trees(source, &mut rows)?;
    Ok((rows.rows, blocks.data_block_size))
}

/// Pass 1 of [`ls_rows`]: every mapped data block, and the data block size.
#[derive(Default)]
struct Blocks {
    all: Vec<u64>,
    data_block_size: u32,
}

impl TreeVisitor for Blocks {
    fn header(&mut self, h: &TreeHeader) -> ControlFlow<()> {
        self.data_block_size = h.data_block_size;
        ControlFlow::Continue(())
    }
    fn device(&mut self, _: u64, _: &DeviceDetails) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn mapping(&mut self, _: u64, bt: BlockTime) -> ControlFlow<()> {
        self.all.push(bt.data_block.0);
        ControlFlow::Continue(())
    }
    fn end_device(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Pass 2 of [`ls_rows`]: one row per device, its exclusive blocks counted against `all`
/// (sorted).
struct Rows {
    all: Vec<u64>,
    rows: Vec<LsRow>,
}

impl TreeVisitor for Rows {
    fn header(&mut self, _: &TreeHeader) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn device(&mut self, id: u64, d: &DeviceDetails) -> ControlFlow<()> {
        self.rows.push(LsRow {
            dev_id: id,
            mapped_blocks: d.mapped_blocks,
            exclusive_blocks: 0,
            transaction: d.transaction_id.0,
            creation_time: d.creation_time.0,
            snap_time: d.snapshotted_time.0,
            highest_block: None,
        });
        ControlFlow::Continue(())
    }
    fn mapping(&mut self, vblock: u64, bt: BlockTime) -> ControlFlow<()> {
        if let Some(row) = self.rows.last_mut() {
            row.highest_block = Some(row.highest_block.map_or(vblock, |h| h.max(vblock)));
        }
        let b = bt.data_block.0;
        let lo = self.all.partition_point(|&x| x < b);
        let once = self.all.get(lo + 1).is_none_or(|&x| x != b);
        if let Some(row) = self.rows.last_mut() {
            row.exclusive_blocks += u64::from(once);
        }
        ControlFlow::Continue(())
    }
    fn end_device(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl From<VisitError> for ToolError {
    fn from(e: VisitError) -> Self {
        match e {
            VisitError::Engine(e) => ToolError::Engine(e),
            other => ToolError::Input(other.to_string()),
        }
    }
}
