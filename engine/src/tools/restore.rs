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
//! refused, all in pass 1 (the XML reader itself refuses data blocks past `nr_data_blocks`). `mapped_blocks` is recounted (as 0.9.0 does); `metadata_snap` is not restored (as
//! 1.x does: a bare block number without its copy would be corrupt).

use super::error::ToolError;
use super::types::Overrides;
use super::xml_read::{XmlEvent, XmlReader};
use super::{XmlDevice, XmlSuperblock};
use crate::format::{BlockTime, Time, TransactionId};
use crate::io::BlockDevice;
use crate::limits::TIME_LIMIT;
use crate::thin::{BulkLoad, BulkSuperblock, CloseError, Pool, PoolOptions};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};

/// Restores the XML in `input` onto `dev` (whatever it held before). Returns the device.
/// Inputs up to [`FAST_PATH_MAX_BYTES`] are read whole and restored by [`restore_slice`].
pub fn restore<R: Read + Seek>(
    input: R,
    dev: Box<dyn BlockDevice>,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    restore_with(input, dev, Overrides::default())
}

/// [`restore`] with superblock values replaced by `o` (thin_restore's `--transaction-id`,
/// `--data-block-size`, `--nr-data-blocks`); mappings past an overridden data device size
/// are refused, typed, before the device is formatted.
pub fn restore_with<R: Read + Seek>(
    mut input: R,
    dev: Box<dyn BlockDevice>,
    o: Overrides,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|e| ToolError::Input(format!("cannot size input: {e}")))?;
    rewind(&mut input)?;
    if len <= FAST_PATH_MAX_BYTES {
        let mut doc = Vec::with_capacity(len as usize);
        input
            .read_to_end(&mut doc)
            .map_err(|e| ToolError::Input(format!("cannot read input: {e}")))?;
        return restore_slice_with(&doc, dev, o);
    }
    let (sb, kept) = validate(None, |f| reader_events(&mut input, f).map(|()| true))?
        .ok_or_else(|| ToolError::Input("the XML reader stopped early".into()))?;
    let sb = overridden(sb, o, kept.as_deref())?;
    if kept.is_none() {
        rewind(&mut input)?;
    }
    write_pool(&sb, kept, input, dev)
}

/// Restores the XML document `doc` (for instance a memory-mapped file): pass 1 through the
/// canonical fast path when `doc` is thin_dump's own layout, else through the full reader.
pub fn restore_slice(
    doc: &[u8],
    dev: Box<dyn BlockDevice>,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    restore_slice_with(doc, dev, Overrides::default())
}

/// [`restore_slice`] with the overrides of [`restore_with`].
pub fn restore_slice_with(
    doc: &[u8],
    dev: Box<dyn BlockDevice>,
    o: Overrides,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    let found = match validate_fast(doc)? {
        Some(found) => found,
        None => validate(None, |f| reader_events(doc, f).map(|()| true))?
            .ok_or_else(|| ToolError::Input("the XML reader stopped early".into()))?,
    };
    let (sb, kept) = found;
    let sb = overridden(sb, o, kept.as_deref())?;
    write_pool(&sb, kept, doc, dev)
}

/// `sb` with `o`'s values; refuses a data device too small for a kept mapping (pass 2
/// refuses the rest, typed, for documents too large to keep).
fn overridden(
    mut sb: XmlSuperblock,
    o: Overrides,
    kept: Option<&[(XmlDevice, Vec<Run>)]>,
) -> Result<XmlSuperblock, ToolError> {
    if let Some(t) = o.transaction_id {
        sb.transaction = t;
    }
    if let Some(n) = o.data_block_size {
        if let Some(why) = crate::limits::data_block_size_refusal(n) {
            return Err(ToolError::Input(why));
        }
        sb.data_block_size = n;
    }
    if let Some(n) = o.nr_data_blocks {
        let end = kept
            .into_iter()
            .flatten()
            .flat_map(|(_, runs)| runs.iter().map(|r| r.1 + r.2))
            .max()
            .unwrap_or(0);
        if end > n {
            return Err(ToolError::Input(format!(
                "--nr-data-blocks {n} is too small: the document maps data block {}",
                end - 1
            )));
        }
        sb.nr_data_blocks = n;
    }
    Ok(sb)
}

/// Pass 2 onto `dev`; `input` is parsed again only when pass 1 kept no runs.
fn write_pool<R: Read>(
    sb: &XmlSuperblock,
    kept: Option<Vec<(XmlDevice, Vec<Run>)>>,
    input: R,
    mut dev: Box<dyn BlockDevice>,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    dev.write(0, &[0u8; 4096]).map_err(crate::Error::from)?;
    dev.flush().map_err(crate::Error::from)?;
    let opts = PoolOptions {
        data_block_size: sb.data_block_size,
        may_format: true,
        // Small: every block is written once, so a big cache only costs fresh memory (page
        // faults); evicted blocks are written back early, which the transaction allows.
        cache_blocks: 2048,
    };
    let pool = Pool::open(dev, opts)?;
    pool.bulk_load(|b| build(b, sb, kept, input))?;
    pool.close().map_err(|e| match e {
        CloseError::CommitFailed { error, .. } => ToolError::Engine(error),
        CloseError::Busy(_) => ToolError::Input("pool busy after restore".into()),
    })
}

/// Writes `devices` (already valid: sorted, disjoint runs inside the data device, times no
/// later than the pool's) onto `dev` as a fresh pool: the seam `repair` writes through.
pub(crate) fn write_devices(
    sb: &XmlSuperblock,
    devices: Vec<(XmlDevice, Vec<Run>)>,
    dev: Box<dyn BlockDevice>,
) -> Result<Box<dyn BlockDevice>, ToolError> {
    write_pool(sb, Some(devices), std::io::empty(), dev)
}

fn rewind<R: Seek>(input: &mut R) -> Result<(), ToolError> {
    input
        .seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|e| ToolError::Input(format!("cannot rewind input: {e}")))
}

/// Inputs up to this size are read whole and tried on the canonical fast path first.
pub const FAST_PATH_MAX_BYTES: u64 = 1 << 31;

/// Documents from this size on are validated in two halves on two threads.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// What pass 1 found: the superblock and, unless the document was too large, every device
/// with its runs.
type Found = (XmlSuperblock, Option<Vec<(XmlDevice, Vec<Run>)>>);

/// Pass 1 on the canonical fast path; None when `doc` is not canonical. Large documents are
/// cut in two at a device line ([`xml_fast::split`]) and the halves validated on two threads.
/// The result is what the sequential pass gives: the head's error comes first, a device id in
/// both halves sends the document to the full reader (which reports it where it occurs), and
/// the kept devices are the head's then the tail's.
fn validate_fast(doc: &[u8]) -> Result<Option<Found>, ToolError> {
    validate_fast_from(doc, PARALLEL_MIN_BYTES)
}

/// [`validate_fast`], splitting documents of at least `parallel_min_bytes`.
fn validate_fast_from(doc: &[u8], parallel_min_bytes: usize) -> Result<Option<Found>, ToolError> {
    use crate::tools::xml_fast;
    let halves = if doc.len() >= parallel_min_bytes { xml_fast::split(doc) } else { None };
    let Some(h) = halves else { return validate(None, |f| xml_fast::parse(doc, f)) };
    let nr = h.sb.nr_data_blocks;
    let (mut head_ids, mut tail_ids) = (BTreeSet::new(), BTreeSet::new());
    let part = |bytes: &[u8], last: bool, ids: &mut BTreeSet<u64>| {
        validate(Some(h.sb.clone()), |f| xml_fast::parse_part(bytes, nr, last, ids, f))
    };
    let (head, tail) = std::thread::scope(|s| {
        let tail = s.spawn(|| part(h.tail, true, &mut tail_ids));
        let head = part(h.head, false, &mut head_ids);
        (head, tail.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    let Some((sb, head_kept)) = head? else { return Ok(None) };
    if head_ids.intersection(&tail_ids).next().is_some() {
        return Ok(None);
    }
    let Some((_, tail_kept)) = tail? else { return Ok(None) };
    let runs = |k: &Vec<(XmlDevice, Vec<Run>)>| k.iter().map(|(_, r)| r.len()).sum::<usize>();
    let kept = match (head_kept, tail_kept) {
        (Some(mut a), Some(b)) if runs(&a) + runs(&b) <= KEEP_RUNS_MAX => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    };
    Ok(Some((sb, kept)))
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
pub(crate) type Run = (u64, u64, u64, u32);

/// Runs kept from pass 1 so pass 2 need not parse again; past this many, pass 2 re-reads the
/// input instead (memory stays bounded for huge documents of single mappings).
const KEEP_RUNS_MAX: usize = 8 << 20;

/// Pass 1: everything that can be wrong with the input, found before any write. `events`
/// feeds the document's events and returns false if it gave up (fast path: not canonical).
/// Returns the superblock and, when the document is not too large, every device with its
/// runs; None when `events` gave up. `sb` is the superblock when `events` starts after it
/// (the second half of a split document).
fn validate(
    sb: Option<XmlSuperblock>,
    events: impl FnOnce(&mut dyn FnMut(XmlEvent) -> Result<(), ToolError>) -> Result<bool, ToolError>,
) -> Result<Option<Found>, ToolError> {
    let mut sb = sb;
    let mut ids = BTreeSet::new();
    let mut dev: Option<(XmlDevice, Vec<Run>)> = None;
    let mut kept: Option<Vec<(XmlDevice, Vec<Run>)>> = Some(Vec::new());
    let mut kept_runs = 0usize;
    let complete = events(&mut |ev| {
        match ev {
            XmlEvent::Superblock(s) => sb = Some(s),
            XmlEvent::BeginDevice(d) => {
                let s = sb.as_ref().expect("the reader nests devices in a superblock");
                if d.dev_id > crate::limits::MAX_THIN_ID {
                    return Err(ToolError::Input(format!(
                        "device {}: the pool target's thin ids are 24 bits (at most {})",
                        d.dev_id,
                        crate::limits::MAX_THIN_ID
                    )));
                }
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
                runs.push((origin_begin, data_begin, length, time));
            }
            XmlEvent::EndDevice => {
                let (d, mut runs) = dev.take().expect("nested");
                if !runs.is_sorted() {
                    runs.sort_unstable();
                }
                if let Some(w) = runs.windows(2).find(|w| w[0].0 + w[0].2 > w[1].0) {
                    return Err(ToolError::Input(format!(
                        "device {}: origin {} mapped twice",
                        d.dev_id, w[1].0
                    )));
                }
                kept_runs += runs.len();
                if kept_runs > KEEP_RUNS_MAX {
                    kept = None;
                }
                if let Some(k) = kept.as_mut() {
                    k.push((d, runs));
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
    // What `check` rejects in a superblock must not be restored: the image would be one this
    // engine calls corrupt (both found by the xml_restore fuzzer). The format has versions 1
    // and 2 only, and a data block holds at least one sector.
    if !crate::limits::SUPERBLOCK_VERSIONS.contains(&sb.version) {
        return Err(ToolError::Input(format!("superblock version {} is not 1 or 2", sb.version)));
    }
    if sb.data_block_size == 0 {
        return Err(ToolError::Input("data_block_size is 0".into()));
    }
    // The pool target's limits (1.x's restore refuses the same): an image the kernel will
    // not activate is no restore.
    if let Some(why) = crate::limits::data_block_size_refusal(sb.data_block_size) {
        return Err(ToolError::Input(why));
    }
    Ok(Some((sb, kept)))
}

/// Appends the mappings of `runs` to `m` as (vblock, packed block-time) pairs, and tallies
/// the reference each one holds on its data block.
fn expand(runs: &[Run], m: &mut Vec<(u64, u64)>, tally: &mut DataTally) -> Result<(), ToolError> {
    m.reserve(runs.iter().map(|r| r.2 as usize).sum());
    for &(origin, data, length, time) in runs {
        for i in 0..length {
            let bt = BlockTime { data_block: crate::format::DataBlock(data + i), time: Time(time) };
            m.push((origin + i, bt.pack().expect("validated in pass 1")));
            tally.add(data + i)?;
        }
    }
    Ok(())
}

/// Pass 2 (inside [`Pool::bulk_load`], which leaves nothing behind on an error): the data
/// device sized, every device bulk-loaded, the references added, then commit.
fn build<R: Read>(
    p: &mut BulkLoad<'_>,
    sb: &XmlSuperblock,
    kept: Option<Vec<(XmlDevice, Vec<Run>)>>,
    input: R,
) -> Result<(), ToolError> {
    p.resize_data(sb.nr_data_blocks)?;
    let mut tally = DataTally::new(sb.nr_data_blocks)?;
    match kept {
        Some(devices) => {
            // One buffer for every device: a device's mappings are built and dropped in turn.
            let mut m = Vec::new();
            for (d, runs) in devices {
                m.clear();
                expand(&runs, &mut m, &mut tally)?;
                add_device(p, &d, &mut m)?;
            }
        }
        None => reparse_devices(p, &mut tally, input)?,
    }
    tally.apply(p)?;
    finish_superblock(p, sb)
}

fn reparse_devices<R: Read>(
    p: &mut BulkLoad<'_>,
    tally: &mut DataTally,
    input: R,
) -> Result<(), ToolError> {
    let mut current: Option<(XmlDevice, Vec<(u64, u64)>)> = None;
    reader_events(input, &mut |ev| {
        match ev {
            XmlEvent::BeginDevice(d) => current = Some((d, Vec::new())),
            XmlEvent::Mapping { origin_begin, data_begin, length, time } => {
                let (_, m) = current.as_mut().expect("nested");
                expand(&[(origin_begin, data_begin, length, time)], m, tally)?;
            }
            XmlEvent::EndDevice => {
                let (d, mut m) = current.take().expect("nested");
                add_device(p, &d, &mut m)?;
            }
            XmlEvent::Superblock(_) | XmlEvent::EndSuperblock => {}
        }
        Ok(())
    })
}

fn finish_superblock(p: &mut BulkLoad<'_>, sb: &XmlSuperblock) -> Result<(), ToolError> {
    let text = sb.uuid.as_bytes();
    let mut uuid = [0; 16];
    let n = text.len().min(16);
    uuid[..n].copy_from_slice(&text[..n]);
    p.finish(&BulkSuperblock {
        time: Time(sb.time),
        trans_id: TransactionId(sb.transaction),
        flags: sb.flags,
        version: sb.version,
        uuid,
    })?;
    Ok(())
}

/// References to data blocks, tallied over the whole restore and added to the data space
/// map once at the end, one bitmap edit per bitmap. A byte per data block, in one array per
/// bitmap's worth of blocks, allocated when a block in it is first referenced: memory follows
/// the blocks in use, not the data device's size (which may be huge and mostly free). The
/// rare counts past 254 live in `overflow`.
struct DataTally {
    nr_blocks: u64,
    chunks: Vec<Option<Box<[u8]>>>,
    overflow: std::collections::BTreeMap<u64, u32>,
}

/// Blocks per tally chunk: one bitmap's worth.
const CHUNK_BLOCKS: u64 = crate::limits::ENTRIES_PER_BITMAP;

impl DataTally {
    /// `nr_data_blocks` is already known to fit the metadata device (the data space map was
    /// resized to it), so the chunk table (a pointer per bitmap) is bounded by it too.
    fn new(nr_data_blocks: u64) -> Result<Self, ToolError> {
        let n = usize::try_from(nr_data_blocks.div_ceil(CHUNK_BLOCKS))
            .map_err(|_| ToolError::Input(format!("{nr_data_blocks} data blocks do not fit")))?;
        let mut chunks = Vec::new();
        chunks.resize_with(n, || None);
        Ok(DataTally { nr_blocks: nr_data_blocks, chunks, overflow: Default::default() })
    }

    /// One reference to block `b`. The XML reader refuses blocks past the data device; this
    /// check keeps a bug there a typed error rather than a panic.
    fn add(&mut self, b: u64) -> Result<(), ToolError> {
        if b >= self.nr_blocks {
            let n = self.nr_blocks;
            return Err(ToolError::Input(format!(
                "data block {b} is past the data device ({n} blocks)"
            )));
        }
        let chunk = self.chunks[(b / CHUNK_BLOCKS) as usize]
            .get_or_insert_with(|| vec![0; CHUNK_BLOCKS as usize].into_boxed_slice());
        let c = &mut chunk[(b % CHUNK_BLOCKS) as usize];
        if *c == u8::MAX {
            *self.overflow.entry(b).or_insert(0) += 1;
        } else {
            *c += 1;
        }
        Ok(())
    }

    /// Adds every tallied reference to the data space map, bitmap by bitmap.
    fn apply(self, p: &mut BulkLoad<'_>) -> Result<(), ToolError> {
        let mut runs = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk else { continue };
            let base = i as u64 * CHUNK_BLOCKS;
            runs.clear();
            for (o, &c) in chunk.iter().enumerate().filter(|(_, c)| **c > 0) {
                let b = base + o as u64;
                runs.push((b, u32::from(c) + self.overflow.get(&b).copied().unwrap_or(0)));
            }
            p.add_data_counts(&runs)?;
        }
        Ok(())
    }
}

/// Bulk-loads one device's mapping tree (the caller tallied the data references: each
/// mapping holds one, every leaf being distinct) with its details.
fn add_device(
    p: &mut BulkLoad<'_>,
    d: &XmlDevice,
    mappings: &mut [(u64, u64)],
) -> Result<(), ToolError> {
    let (transaction, created, snapped) =
        (TransactionId(d.transaction), Time(d.creation_time), Time(d.snap_time));
    p.add_device(d.dev_id, transaction, created, snapped, mappings)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canonical document of `devices` devices (ids 1..), each with runs and singles.
    fn doc(devices: u64) -> String {
        let mut s = String::from("<superblock uuid=\"\" time=\"5\" transaction=\"1\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"100000\">\n");
        for d in 1..=devices {
            s += &format!("  <device dev_id=\"{d}\" mapped_blocks=\"0\" transaction=\"1\" creation_time=\"1\" snap_time=\"2\">\n");
            for i in 0..20 {
                let (o, b) = (i * 10, d * 1000 + i * 10);
                s += &format!("    <range_mapping origin_begin=\"{o}\" data_begin=\"{b}\" length=\"4\" time=\"{}\"/>\n", i % 3);
                s += &format!(
                    "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"2\"/>\n",
                    o + 5,
                    b + 5
                );
            }
            s += "  </device>\n";
        }
        s + "</superblock>\n"
    }

    fn outcome(r: Result<Option<Found>, ToolError>) -> String {
        format!("{r:?}")
    }

    /// The tally's memory follows the blocks in use: a data device of 10^10 blocks with
    /// three references allocates two chunks (a dense array would need 10 GB).
    #[test]
    fn tally_memory_follows_the_blocks_in_use() {
        let mut t = DataTally::new(10_000_000_000).unwrap();
        for b in [5, 6, 9_999_999_999] {
            t.add(b).unwrap();
        }
        for _ in 0..300 {
            t.add(6).unwrap(); // past a byte's range: the overflow keeps the rest
        }
        assert_eq!(t.chunks.iter().filter(|c| c.is_some()).count(), 2);
        assert_eq!(t.overflow.get(&6), Some(&(301 - 255)));
        assert!(t.add(10_000_000_000).is_err(), "past the device: a typed error");
    }

    /// Splitting (threshold 0) gives exactly the sequential pass's result, valid or not:
    /// the same devices and runs, the head's error first, a device id in both halves and a
    /// non-canonical line left to the full reader.
    #[test]
    fn split_pass_one_equals_the_sequential_one() {
        let good = doc(6);
        let mid = good.len() / 2;
        let late = |from: &str, to: &str| {
            let at = mid + good[mid..].find(from).expect("pattern in the tail");
            format!("{}{}", &good[..at], good[at..].replacen(from, to, 1))
        };
        let early = |from: &str, to: &str| good.replacen(from, to, 1);
        let cases = [
            good.clone(),
            // A device id of the head again in the tail.
            late("dev_id=\"5\"", "dev_id=\"1\""),
            // A mapping after the pool time in the tail, and also one in the head.
            late("time=\"2\"/>", "time=\"9\"/>"),
            early("time=\"2\"/>", "time=\"8\"/>").replacen("dev_id=\"6\"", "dev_id=\"7\"", 1),
            // Overlapping runs in the head; a non-canonical line in the tail.
            early("origin_block=\"5\"", "origin_block=\"2\""),
            late("    <single", "   <single"),
            // A document whose head error and tail error both exist: the head's wins.
            late("time=\"2\"/>", "time=\"9\"/>").replacen(
                "origin_block=\"5\"",
                "origin_block=\"2\"",
                1,
            ),
        ];
        // What each case must give: kept devices, the full reader's turn (None), or an error.
        let want = [
            "Ok(Some",
            "Ok(None)",
            "after pool time",
            "after pool time",
            "mapped twice",
            "Ok(None)",
            "mapped twice",
        ];
        for (i, d) in cases.iter().enumerate() {
            assert!(crate::tools::xml_fast::split(d.as_bytes()).is_some(), "case {i} splits");
            let seq = outcome(validate_fast_from(d.as_bytes(), usize::MAX));
            let par = outcome(validate_fast_from(d.as_bytes(), 0));
            assert_eq!(par, seq, "case {i}");
            assert!(par.contains(want[i]), "case {i}: {par:.200}");
        }
        // The valid document is kept whole, in order.
        let (_, kept) = validate_fast_from(good.as_bytes(), 0).unwrap().unwrap();
        let ids: Vec<u64> = kept.unwrap().iter().map(|(d, _)| d.dev_id).collect();
        assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    }
}
