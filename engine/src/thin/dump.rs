//! `dump` (thin_dump 0.9.0's XML, byte for byte) and `ls` (thin_ls 0.9.0's numbers) of an
//! opened pool, from its current state or from its held metadata snapshot.

use super::records::DETAILS_VALUES;
use super::tool_error::ToolError;
use super::{Pool, PoolInner};
use crate::btree;
use crate::format::checksum::BlockKind;
use crate::format::superblock::Superblock;
use crate::format::{BlockTime, DeviceDetails};
use crate::tools::ls::LsRow;
use crate::tools::xml_write::DumpWriter;
use crate::tools::{XmlDevice, XmlSuperblock};
use std::collections::BTreeMap;
use std::io::Write;

/// Which trees to read: the live ones, or the held metadata snapshot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Live,
    /// The held snapshot (`-m`); with `Some(b)` it must be at block `b`.
    MetadataSnap(Option<u64>),
}

struct Roots {
    sb: Superblock,
    nr_data_blocks: u64,
}

impl PoolInner {
    fn roots(&self, source: Source) -> Result<Roots, ToolError> {
        match source {
            Source::Live => {
                let mut sb = self.sb.clone();
                sb.data_mapping_root = self.mapping_root;
                sb.device_details_root = self.details_root;
                sb.time = self.time;
                sb.trans_id = self.trans_id;
                sb.flags = self.flags;
                Ok(Roots { sb, nr_data_blocks: self.dsm.nr_blocks() })
            }
            Source::MetadataSnap(want) => {
                if self.held_root == 0 {
                    return Err(ToolError::Input("no current metadata snap".into()));
                }
                if want.is_some_and(|b| b != self.held_root) {
                    return Err(ToolError::Input(
                        "metadata snapshot does not match that in superblock".into(),
                    ));
                }
                let raw = self.tm.read(self.held_root, BlockKind::Superblock)?;
                // The copy describes no space maps: tools print nr_data_blocks 0 for it.
                Ok(Roots { sb: Superblock::unpack_unchecked(&raw), nr_data_blocks: 0 })
            }
        }
    }

    /// (device, details, bottom root) in ascending id, from the top-level tree.
    fn device_list(&self, sb: &Superblock) -> Result<Vec<(u64, DeviceDetails, u64)>, ToolError> {
        let mut details = BTreeMap::new();
        btree::walk(&self.tm, sb.device_details_root, DETAILS_VALUES, &mut |id, v| {
            details.insert(id, DeviceDetails::unpack(v));
            Ok(())
        })?;
        let mut out = Vec::new();
        let mut missing = None;
        btree::walk(&self.tm, sb.data_mapping_root, &self.values, &mut |id, v| {
            match details.get(&id) {
                Some(d) => out.push((id, *d, btree::le(v))),
                None => missing = missing.or(Some(id)),
            }
            Ok(())
        })?;
        if let Some(id) = missing {
            return Err(ToolError::Input(format!(
                "mappings present for device {id}, but it isn't present in device tree"
            )));
        }
        Ok(out)
    }
}

impl Pool {
    /// Writes the pool as thin_dump XML (or its human-readable form) through `w`.
    pub fn dump<W: Write>(&self, w: &mut DumpWriter<W>, source: Source) -> Result<(), ToolError> {
        let p = self.read();
        let roots = p.roots(source)?;
        let sb = &roots.sb;
        w.superblock(&XmlSuperblock {
            uuid: String::new(),
            time: sb.time,
            transaction: sb.trans_id,
            flags: sb.flags,
            version: sb.version,
            data_block_size: sb.data_block_size,
            nr_data_blocks: roots.nr_data_blocks,
            metadata_snap: None,
        })?;
        for (id, d, root) in p.device_list(sb)? {
            w.begin_device(&XmlDevice {
                dev_id: id,
                mapped_blocks: d.mapped_blocks,
                transaction: d.transaction_id,
                creation_time: d.creation_time,
                snap_time: d.snapshotted_time,
            })?;
            let mut out_err = None;
            btree::walk(&p.tm, root, &p.values.mappings, &mut |k, v| {
                let bt = BlockTime::unpack(btree::le(v));
                if let Err(e) = w.mapping(k, bt.data_block, bt.time) {
                    out_err = Some(e);
                    return Err(crate::Error::Invalid("dump output failed".into()));
                }
                Ok(())
            })
            .map_err(|e| out_err.take().map(ToolError::Output).unwrap_or(ToolError::Engine(e)))?;
            w.end_device()?;
        }
        w.end_superblock()?;
        Ok(())
    }

    /// thin_ls rows: mapped (as stored), exclusive (data block mapped exactly once among all
    /// devices listed), transaction and times; plus the data block size.
    pub fn ls_rows(&self, source: Source) -> Result<(Vec<LsRow>, u32), ToolError> {
        let p = self.read();
        let roots = p.roots(source)?;
        let devices = p.device_list(&roots.sb)?;
        let mut all: Vec<u64> = Vec::new();
        for &(_, _, root) in &devices {
            btree::walk(&p.tm, root, &p.values.mappings, &mut |_, v| {
                all.push(BlockTime::unpack(btree::le(v)).data_block);
                Ok(())
            })?;
        }
        all.sort_unstable();
        let once = |b: u64| {
            let lo = all.partition_point(|&x| x < b);
            let hi = all.partition_point(|&x| x <= b);
            hi - lo == 1
        };
        let mut rows = Vec::with_capacity(devices.len());
        for (id, d, root) in devices {
            let mut exclusive = 0u64;
            btree::walk(&p.tm, root, &p.values.mappings, &mut |_, v| {
                exclusive += u64::from(once(BlockTime::unpack(btree::le(v)).data_block));
                Ok(())
            })?;
            rows.push(LsRow {
                dev_id: id,
                mapped_blocks: d.mapped_blocks,
                exclusive_blocks: exclusive,
                transaction: d.transaction_id,
                creation_time: d.creation_time,
                snap_time: d.snapshotted_time,
            });
        }
        Ok((rows, roots.sb.data_block_size))
    }
}
