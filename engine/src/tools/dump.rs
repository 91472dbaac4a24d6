//! `dump` (thin_dump 0.9.0's XML, byte for byte) and `ls` (thin_ls 0.9.0's numbers) of an
//! opened pool, from its current state or from its held metadata snapshot. Both read the
//! pool only through its public visit ([`Pool::visit`]).

use super::error::ToolError;
use super::ls::LsRow;
use super::xml_write::{DumpError, DumpWriter};
use super::{XmlDevice, XmlSuperblock};
use crate::format::{BlockTime, DeviceDetails};
use crate::thin::{Pool, Source, TreeHeader, TreeVisitor, VisitError};
use std::io::Write;
use std::ops::ControlFlow;

/// Writes the pool as thin_dump XML (or its human-readable form) through `w`.
pub fn dump<W: Write>(pool: &Pool, w: &mut DumpWriter<W>, source: Source) -> Result<(), ToolError> {
    let mut v = Dumper { w, failed: None };
    let r = pool.visit(source, &mut v);
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
        let r = self.w.superblock(&XmlSuperblock {
            uuid: String::new(),
            time: h.time,
            transaction: h.trans_id,
            flags: h.flags,
            version: h.version,
            data_block_size: h.data_block_size,
            nr_data_blocks: h.nr_data_blocks,
            metadata_snap: None,
        });
        self.out(r)
    }

    fn device(&mut self, id: u64, d: &DeviceDetails) -> ControlFlow<()> {
        let r = self.w.begin_device(&XmlDevice {
            dev_id: id,
            mapped_blocks: d.mapped_blocks,
            transaction: d.transaction_id,
            creation_time: d.creation_time,
            snap_time: d.snapshotted_time,
        });
        self.out(r)
    }

    fn mapping(&mut self, vblock: u64, bt: BlockTime) -> ControlFlow<()> {
        let r = self.w.mapping(vblock, bt.data_block.0, bt.time);
        self.out(r)
    }

    fn end_device(&mut self) -> ControlFlow<()> {
        let r = self.w.end_device();
        self.out(r)
    }
}

/// thin_ls rows: mapped (as stored), exclusive (data block mapped exactly once among all
/// devices listed), transaction and times; plus the data block size. Two visits: every
/// mapped data block first, then each device's exclusive count against them.
pub fn ls_rows(pool: &Pool, source: Source) -> Result<(Vec<LsRow>, u32), ToolError> {
    let mut blocks = Blocks::default();
    pool.visit(source, &mut blocks)?;
    let mut all = std::mem::take(&mut blocks.all);
    all.sort_unstable();
    let mut rows = Rows { all, rows: Vec::new() };
    pool.visit(source, &mut rows)?;
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
            transaction: d.transaction_id,
            creation_time: d.creation_time,
            snap_time: d.snapshotted_time,
        });
        ControlFlow::Continue(())
    }
    fn mapping(&mut self, _: u64, bt: BlockTime) -> ControlFlow<()> {
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
