//! `restore`: builds a pool from thin_dump XML, like thin_restore, in two passes.
//!
//! Pass 1 parses and validates the whole input without touching the output, so bad XML is
//! reported with line and column and the output device is left exactly as it was. Pass 2
//! formats the device and bulk-loads every tree (each node written once). If pass 2 fails
//! (the metadata device is too small, an I/O error) block 0 is zeroed, as thin_restore does,
//! so the device reads as unformatted rather than as a half-built pool.
//!
//! Stricter than thin_restore 0.9.0: duplicate origins in a device, mapping times that do not
//! fit 24 bits or lie after the pool time, and details with creation > snap > pool time are
//! refused. `mapped_blocks` is recounted (as 0.9.0 does); `metadata_snap` is not restored (as
//! 1.x does: a bare block number without its copy would be corrupt).

use super::records::DETAILS_VALUES;
use super::tool_error::ToolError;
use super::{Pool, PoolInner, PoolOptions};
use crate::btree::{self, ValueKind};
use crate::format::{BlockTime, DeviceDetails};
use crate::io::BlockDevice;
use crate::limits::TIME_LIMIT;
use crate::tools::xml_read::{XmlEvent, XmlReader};
use crate::tools::{XmlDevice, XmlSuperblock};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};

/// Restores the XML in `input` onto `dev` (whatever it held before). Returns the device.
pub fn restore<R: Read + Seek>(
    mut input: R,
    mut dev: Box<dyn BlockDevice>,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    let (sb, kept) = validate_any(&mut input)?;
    if kept.is_none() {
        rewind(&mut input)?;
    }
    dev.write(0, &[0u8; 4096]).map_err(crate::Error::from)?;
    dev.flush().map_err(crate::Error::from)?;
    let opts = PoolOptions {
        data_block_size: sb.data_block_size,
        may_format: true,
        cache_blocks: 1 << 15,
    };
    let pool = Pool::open(dev, opts)?;
    let built = pool.control(|p| build(p, &sb, kept, input));
    let result = built.and_then(|()| {
        pool.close().map_err(|e| match e {
            super::CloseError::CommitFailed { error, .. } => ToolError::Engine(error),
            super::CloseError::Busy(_) => ToolError::Input("pool busy after restore".into()),
        })
    });
    match result {
        Ok(dev) => Ok(dev),
        Err(e) => Err(e),
    }
}

fn rewind<R: Seek>(input: &mut R) -> Result<(), ToolError> {
    input
        .seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|e| ToolError::Input(format!("cannot rewind input: {e}")))
}

/// Inputs up to this size are read whole and tried on the canonical fast path first.
const FAST_PATH_MAX_BYTES: u64 = 1 << 31;

/// Pass 1 through the canonical fast path when the input is thin_dump's own layout, else
/// (or when it is too large to hold) through the full streaming reader.
#[allow(clippy::type_complexity)]
fn validate_any<R: Read + Seek>(
    input: &mut R,
) -> Result<(XmlSuperblock, Option<Vec<(XmlDevice, Vec<Run>)>>), ToolError> {
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|e| ToolError::Input(format!("cannot size input: {e}")))?;
    rewind(input)?;
    if len <= FAST_PATH_MAX_BYTES {
        let mut doc = Vec::with_capacity(len as usize);
        input
            .read_to_end(&mut doc)
            .map_err(|e| ToolError::Input(format!("cannot read input: {e}")))?;
        if let Some(found) = validate(|f| crate::tools::xml_fast::parse(&doc, f))? {
            return Ok(found);
        }
        rewind(input)?;
    }
    validate(|f| reader_events(&mut *input, f).map(|()| true))?
        .ok_or_else(|| ToolError::Input("the XML reader stopped early".into()))
}

fn reader_events<R: Read>(
    input: R,
    f: &mut dyn FnMut(XmlEvent) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let mut reader = XmlReader::new(input);
    while let Some(ev) = reader.next_event()? {
        f(ev)?;
    }
    Ok(())
}

/// A mapping run as parsed: (origin, data, length, time).
type Run = (u64, u64, u64, u32);

/// Runs kept from pass 1 so pass 2 need not parse again; past this many, pass 2 re-reads the
/// input instead (memory stays bounded for huge documents of single mappings).
const KEEP_RUNS_MAX: usize = 8 << 20;

/// Pass 1: everything that can be wrong with the input, found before any write. `events`
/// feeds the document's events and returns false if it gave up (fast path: not canonical).
/// Returns the superblock and, when the document is not too large, every device with its
/// runs; None when `events` gave up.
#[allow(clippy::type_complexity)]
fn validate(
    events: impl FnOnce(&mut dyn FnMut(XmlEvent) -> Result<(), ToolError>) -> Result<bool, ToolError>,
) -> Result<Option<(XmlSuperblock, Option<Vec<(XmlDevice, Vec<Run>)>>)>, ToolError> {
    let mut sb: Option<XmlSuperblock> = None;
    let mut ids = BTreeSet::new();
    let mut dev: Option<(XmlDevice, Vec<(u64, u64)>)> = None;
    let mut kept: Option<Vec<(XmlDevice, Vec<Run>)>> = Some(Vec::new());
    let mut kept_runs = 0usize;
    let complete = events(&mut |ev| {
        match ev {
            XmlEvent::Superblock(s) => sb = Some(s),
            XmlEvent::BeginDevice(d) => {
                let s = sb.as_ref().expect("the reader nests devices in a superblock");
                if !ids.insert(d.dev_id) {
                    return Err(ToolError::Input(format!("device {} appears twice", d.dev_id)));
                }
                if d.creation_time > d.snap_time || d.snap_time > s.time {
                    return Err(ToolError::Input(format!(
                        "device {}: creation time {} / snap time {} / pool time {} out of order",
                        d.dev_id, d.creation_time, d.snap_time, s.time
                    )));
                }
                dev = Some((d, Vec::new()));
                if let Some(k) = kept.as_mut() {
                    k.push((d, Vec::new()));
                }
            }
            XmlEvent::Mapping { origin_begin, data_begin, length, time } => {
                let s = sb.as_ref().expect("nested");
                let (d, runs) = dev.as_mut().expect("the reader nests mappings in a device");
                if time >= TIME_LIMIT || time > s.time {
                    return Err(ToolError::Input(format!(
                        "device {}: mapping time {time} does not fit or is after pool time {}",
                        d.dev_id, s.time
                    )));
                }
                runs.push((origin_begin, length));
                kept_runs += 1;
                if kept_runs > KEEP_RUNS_MAX {
                    kept = None;
                }
                if let Some((_, r)) = kept.as_mut().and_then(|k| k.last_mut()) {
                    r.push((origin_begin, data_begin, length, time));
                }
            }
            XmlEvent::EndDevice => {
                let (d, mut runs) = dev.take().expect("nested");
                if !runs.is_sorted() {
                    runs.sort_unstable();
                }
                if let Some(w) = runs.windows(2).find(|w| w[0].0 + w[0].1 > w[1].0) {
                    return Err(ToolError::Input(format!(
                        "device {}: origin {} mapped twice",
                        d.dev_id, w[1].0
                    )));
                }
            }
            XmlEvent::EndSuperblock => {}
        }
        Ok(())
    })?;
    if !complete {
        return Ok(None);
    }
    let sb = sb.ok_or_else(|| ToolError::Input("no superblock element".into()))?;
    Ok(Some((sb, kept)))
}

/// Pass 2: format-time state, then every device bulk-loaded, then commit.
fn build<R: Read>(
    p: &mut PoolInner,
    sb: &XmlSuperblock,
    kept: Option<Vec<(XmlDevice, Vec<Run>)>>,
    input: R,
) -> Result<(), ToolError> {
    p.in_service = true;
    let r = build_inner(p, sb, kept, input);
    if r.is_err() {
        // Leave no half-built pool behind: the device reads as unformatted.
        let _ = p.tm.bm.put(0, crate::format::BlockKind::Superblock, [0u8; 4096]);
        p.tm.bm.invalidate_all();
        let _ = p.tm.bm.with_device(|d| d.write(0, &[0u8; 4096]).and_then(|()| d.flush()));
        p.fail_io = true;
    }
    r
}

fn expand(runs: &[Run]) -> Vec<(u64, u64)> {
    let mut m = Vec::with_capacity(runs.iter().map(|r| r.2 as usize).sum());
    for &(origin, data, length, time) in runs {
        for i in 0..length {
            let bt = BlockTime { data_block: data + i, time };
            m.push((origin + i, bt.pack().expect("validated in pass 1")));
        }
    }
    m
}

fn build_inner<R: Read>(
    p: &mut PoolInner,
    sb: &XmlSuperblock,
    kept: Option<Vec<(XmlDevice, Vec<Run>)>>,
    input: R,
) -> Result<(), ToolError> {
    p.dsm.resize(&mut p.tm, sb.nr_data_blocks)?;
    match kept {
        Some(devices) => {
            for (d, runs) in devices {
                add_device(p, &d, expand(&runs))?;
            }
        }
        None => reparse_devices(p, input)?,
    }
    finish_superblock(p, sb)
}

fn reparse_devices<R: Read>(p: &mut PoolInner, input: R) -> Result<(), ToolError> {
    let mut current: Option<(XmlDevice, Vec<(u64, u64)>)> = None;
    reader_events(input, &mut |ev| {
        match ev {
            XmlEvent::BeginDevice(d) => current = Some((d, Vec::new())),
            XmlEvent::Mapping { origin_begin, data_begin, length, time } => {
                let (_, m) = current.as_mut().expect("nested");
                m.extend(expand(&[(origin_begin, data_begin, length, time)]));
            }
            XmlEvent::EndDevice => {
                let (d, m) = current.take().expect("nested");
                add_device(p, &d, m)?;
            }
            XmlEvent::Superblock(_) | XmlEvent::EndSuperblock => {}
        }
        Ok(())
    })
}

fn finish_superblock(p: &mut PoolInner, sb: &XmlSuperblock) -> Result<(), ToolError> {
    p.time = sb.time;
    p.trans_id = sb.transaction;
    p.flags = sb.flags;
    p.sb.version = sb.version;
    let uuid = sb.uuid.as_bytes();
    let n = uuid.len().min(16);
    p.sb.uuid = [0; 16];
    p.sb.uuid[..n].copy_from_slice(&uuid[..n]);
    p.commit_now()?;
    Ok(())
}

/// Adds one reference per item to the data space map, bitmap by bitmap: references are
/// bucketed by bitmap and counted in a 16320-entry array, so no sort is needed.
fn add_data_refs(p: &mut PoolInner, blocks: impl Iterator<Item = u64>) -> Result<(), ToolError> {
    use crate::limits::ENTRIES_PER_BITMAP;
    let mut buckets: std::collections::BTreeMap<u64, Vec<u16>> = Default::default();
    let mut last: Option<(u64, Vec<u16>)> = None;
    for b in blocks {
        let (i, off) = (b / ENTRIES_PER_BITMAP, (b % ENTRIES_PER_BITMAP) as u16);
        match &mut last {
            Some((j, v)) if *j == i => v.push(off),
            _ => {
                if let Some((j, v)) = last.take() {
                    buckets.entry(j).or_default().extend(v);
                }
                last = Some((i, vec![off]));
            }
        }
    }
    if let Some((j, v)) = last {
        buckets.entry(j).or_default().extend(v);
    }
    let mut counts = vec![0u32; ENTRIES_PER_BITMAP as usize];
    for (i, offsets) in buckets {
        for &o in &offsets {
            counts[usize::from(o)] += 1;
        }
        let base = i * ENTRIES_PER_BITMAP;
        let runs: Vec<(u64, u32)> = counts
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(o, c)| (base + o as u64, std::mem::take(c)))
            .collect();
        p.dsm.add_counts(&mut p.tm, &runs)?;
    }
    Ok(())
}

fn add_device(
    p: &mut PoolInner,
    d: &XmlDevice,
    mut mappings: Vec<(u64, u64)>,
) -> Result<(), ToolError> {
    // Dumps list origins in order: only sort when the input did not.
    if !mappings.is_sorted_by_key(|m| m.0) {
        mappings.sort_unstable_by_key(|m| m.0);
    }
    let root = btree::build(&mut p.tm, ValueKind::Mapping, &mappings)?;
    // Every mapping holds one reference to its data block (each leaf is distinct).
    add_data_refs(p, mappings.iter().map(|&(_, v)| BlockTime::unpack(v).data_block))?;
    p.mapping_root = btree::insert(
        &mut p.tm,
        ValueKind::SubtreeRoot,
        p.mapping_root,
        d.dev_id,
        &root.to_le_bytes(),
    )?
    .0;
    let details = DeviceDetails {
        mapped_blocks: mappings.len() as u64,
        transaction_id: d.transaction,
        creation_time: d.creation_time,
        snapshotted_time: d.snap_time,
    };
    p.details_root =
        btree::insert(&mut p.tm, DETAILS_VALUES, p.details_root, d.dev_id, &details.pack())?.0;
    Ok(())
}
