//! A reader (and writer) of the log that Linux's `dm-log-writes` target keeps on its log
//! device: every write, flush, FUA write and discard that reached the logged device, in the
//! order the target logged them, plus the text marks userspace asked for
//! (`dmsetup message <dev> 0 mark <text>`). The facts below are from the kernel's
//! `drivers/md/dm-log-writes.c` (Linux 6.x, target version 1.1.0); the function each comes from
//! is named.
//!
//! The format. A *block* is `sector_size` bytes, where `sector_size` is the logical block size
//! of the logged device (`log_writes_ctr`), a power of two of at least 512. All integers are
//! little-endian.
//! - Block 0 holds the super block (`log_super`): magic `0x6a736677736872` (u64), version 1
//!   (u64), `nr_entries` (u64), `sectorsize` (u32) at bytes 0, 8, 16 and 24. Bytes 28..32 are
//!   the C struct's tail padding and are copied from the stack unzeroed, so they are not
//!   checked; the rest of the block is zero.
//! - Entries follow one after another from block 1 on (`log_writes_ctr` starts `next_sector`
//!   one block in; entry 0 is an ordinary entry, not a special one). Each entry is a header
//!   block holding `sector`, `nr_sectors`, `flags`, `data_len` (four u64 at bytes 0, 8, 16,
//!   24; `log_one_block`), then, unless it is a discard, `nr_sectors` blocks of the written
//!   data (`log_writes_kthread` advances by `1 + nr_sectors` blocks, or by 1 for a discard).
//! - `sector` and `nr_sectors` are in blocks of the logged device (`sector_size` units, not
//!   512-byte sectors: `log_writes_map` converts with `bio_to_dev_sectors`). They equal
//!   512-byte sectors only when `sector_size` is 512; see [`Entry::byte_offset`].
//! - Flags ([`LOG_FLUSH`] .. [`LOG_METADATA`]) come from the bio (`log_writes_map`): a flush
//!   with no data is an entry with `nr_sectors` 0 and FLUSH; a discard records its range but
//!   carries no data; a mark (`log_mark`) has only MARK, `sector` and `nr_sectors` 0, and its
//!   text (`data_len` bytes, no NUL, at most `sector_size - 33` of them) inside the header
//!   block straight after the 32 header bytes.
//! - `data_len` is 0 for writes, flushes and discards: only marks set it. (`log_one_block`
//!   still has an "inline data" path that stores `data_len` bytes sector-aligned after the
//!   header; nothing in this kernel uses it. A write whose `data_len` equals its data size,
//!   `nr_sectors * sector_size`, is accepted as that form; any other nonzero value is an
//!   error.)
//!
//! `nr_entries` lags. The target does not write the super block when it starts: it writes it
//! only after logging a FUA write or a mark (`log_writes_kthread`), counting that entry; the
//! destructor (`log_writes_dtr`) logs a last mark, `dm-log-writes-end`, so a cleanly removed
//! target leaves an exact count. Until then entries written after the last FUA or mark are on
//! the device but not counted, and a log that saw no FUA or mark has no super block at all
//! (a zeroed device then reads as [`LogError::BadMagic`]). The device is never cleared, and
//! there is no sequence number or checksum, so blocks past the counted entries may equally be
//! stale entries of an earlier use of the device. Hence:
//! - [`parse`] returns exactly the `nr_entries` counted entries and ignores whatever follows
//!   them (zeros, stale entries, garbage): the counted entries are the only ones the kernel
//!   vouched for.
//! - [`parse_with_tail`] also returns the uncounted entries that follow, decoded by the same
//!   rules and ending, without error, at the first block that is not a valid entry (an
//!   all-zero block is never one) or at the end of the bytes. They are trustworthy only when
//!   the log device was zeroed before the target was created.
//!
//! Entry and data bios are plain writes submitted without waiting, so a log cut short by a
//! crash of the machine doing the logging may hold counted entries whose blocks never landed.
//! Nothing in the format can detect that; read logs of targets that were removed cleanly.
//!
//! What is checked: the magic, the version, the sector size (a power of two, 512..=65536: the
//! header block is written from one page), that every counted entry and its data lie inside
//! the bytes, the flags (no bits beyond the five known ones; not all-zero with no sectors),
//! `data_len` against the entry's kind, and marks (no sectors, text fits the header block).
//! All arithmetic on values read from the bytes is checked, and data is copied only after its
//! range has been found inside the input, so no input panics, overflows or allocates more
//! than its own size.
//!
//! [`encode`] writes the same format (the super block counting every entry, `data_len` 0 for
//! writes, as the kernel does) and refuses a [`Log`] that [`parse`] would not give back, so
//! `parse(&encode(&log)?)? == log` whenever `encode` succeeds.

use std::fmt;

/// The super block's magic number.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The only format version there is.
pub const VERSION: u64 = 1;

/// The logged bio had REQ_PREFLUSH: everything logged before it is durable.
pub const LOG_FLUSH: u64 = 1 << 0;
/// The logged bio had REQ_FUA: its own data is durable when it completes.
pub const LOG_FUA: u64 = 1 << 1;
/// A discard of `nr_sectors` blocks at `sector`; no data in the log.
pub const LOG_DISCARD: u64 = 1 << 2;
/// A userspace mark; its text is in the header block.
pub const LOG_MARK: u64 = 1 << 3;
/// The logged bio had REQ_META.
pub const LOG_METADATA: u64 = 1 << 4;
/// Every flag bit the format defines.
pub const KNOWN_FLAGS: u64 = LOG_FLUSH | LOG_FUA | LOG_DISCARD | LOG_MARK | LOG_METADATA;

/// Smallest sector size accepted (a Linux logical block is never smaller).
pub const MIN_SECTOR_SIZE: u32 = 512;
/// Largest sector size accepted (the largest page size: the kernel writes the header block from
/// one page).
pub const MAX_SECTOR_SIZE: u32 = 65536;

/// Bytes of the super block that carry fields (magic, version, nr_entries, sectorsize).
const SUPER_FIELDS: usize = 28;
/// Bytes of an entry header (sector, nr_sectors, flags, data_len).
const ENTRY_HEADER: usize = 32;

/// One logged entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 0 (the first entry after the super block).
    pub index: u64,
    /// First block written or discarded, in `sector_size` units of the logged device (512-byte
    /// sectors only when `sector_size` is 512); 0 for marks; for a data-less flush, the
    /// sector its bio carried (a flush through a linear window of the logged device carries
    /// the window's start, so it names the device it was for).
    pub sector: u64,
    /// Length in `sector_size` units; 0 for marks and data-less flushes.
    pub nr_sectors: u64,
    /// The `LOG_*` bits.
    pub flags: u64,
    /// For a write, the `nr_sectors * sector_size` bytes written; for a mark, the raw bytes of
    /// its text; empty for discards and data-less flushes.
    pub data: Vec<u8>,
    /// For a mark, its text (`data` as UTF-8, invalid sequences replaced); `None` otherwise.
    pub mark: Option<String>,
}

impl Entry {
    /// Whether the entry is a flush (possibly one that also carries data).
    pub fn is_flush(&self) -> bool {
        self.flags & LOG_FLUSH != 0
    }

    /// Whether the entry is a FUA write.
    pub fn is_fua(&self) -> bool {
        self.flags & LOG_FUA != 0
    }

    /// Whether the entry is a discard.
    pub fn is_discard(&self) -> bool {
        self.flags & LOG_DISCARD != 0
    }

    /// Whether the entry is a mark.
    pub fn is_mark(&self) -> bool {
        self.flags & LOG_MARK != 0
    }

    /// Whether the logged bio was tagged as metadata.
    pub fn is_metadata(&self) -> bool {
        self.flags & LOG_METADATA != 0
    }

    /// The byte offset on the logged device of `sector`, given the log's sector size; `None`
    /// if it does not fit a u64.
    pub fn byte_offset(&self, sector_size: u32) -> Option<u64> {
        self.sector.checked_mul(u64::from(sector_size))
    }

    /// The number of bytes covered on the logged device; `None` if it does not fit a u64.
    pub fn byte_len(&self, sector_size: u32) -> Option<u64> {
        self.nr_sectors.checked_mul(u64::from(sector_size))
    }
}

/// A decoded log: the sector size from the super block and the entries it counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// The logged device's logical block size in bytes: the unit of the log's blocks and of
    /// every entry's `sector` and `nr_sectors`.
    pub sector_size: u32,
    /// The entries, `index` 0, 1, 2, ... in log order.
    pub entries: Vec<Entry>,
}

/// Why bytes are not a log (from [`parse`]), or a [`Log`] cannot be written (from [`encode`]).
/// `entry` is the index of the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// Fewer bytes than the super block needs (its fields, then its whole block).
    TooShort { len: usize, need: u64 },
    /// The super block's magic is not [`MAGIC`].
    BadMagic { found: u64 },
    /// The super block's version is not [`VERSION`].
    BadVersion { found: u64 },
    /// The sector size is not a power of two in `MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE`.
    BadSectorSize { found: u32 },
    /// A counted entry's header block or data runs past the end of the bytes (`need` is the
    /// byte offset it ends at).
    Truncated { entry: u64, need: u64, len: usize },
    /// An entry's data size, `nr_sectors * sector_size`, or its end offset overflows a u64.
    TooLarge { entry: u64, nr_sectors: u64 },
    /// Flag bits the format does not define.
    UnknownFlags { entry: u64, flags: u64 },
    /// No flags and no sectors: not an entry the kernel writes (an all-zero block reads so).
    EmptyEntry { entry: u64 },
    /// `data_len` (or, for `encode`, `data.len()`) does not fit the entry: a discard must
    /// have 0; a write must have its data size `expected` (or, when parsing, 0).
    DataLength { entry: u64, data_len: u64, expected: u64 },
    /// A mark's text does not fit in its header block after the 32 header bytes.
    MarkTooLong { entry: u64, data_len: u64, max: u64 },
    /// A mark with a nonzero `nr_sectors`.
    MarkWithSectors { entry: u64, nr_sectors: u64 },
    /// `encode` only: an entry's `index` is not its position.
    BadIndex { entry: u64, found: u64 },
    /// `encode` only: `mark` is not the text of `data` for a mark entry, or is set on another.
    MarkMismatch { entry: u64 },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::TooShort { len, need } => {
                write!(f, "log-writes log too short: {len} bytes, the super block needs {need}")
            }
            LogError::BadMagic { found } => {
                write!(f, "not a log-writes log: magic {found:#x}, expected {MAGIC:#x}")
            }
            LogError::BadVersion { found } => {
                write!(f, "log-writes log version {found}, only version {VERSION} is known")
            }
            LogError::BadSectorSize { found } => write!(
                f,
                "log-writes sector size {found} is not a power of two in \
                 {MIN_SECTOR_SIZE}..={MAX_SECTOR_SIZE}"
            ),
            LogError::Truncated { entry, need, len } => write!(
                f,
                "log-writes entry {entry} is truncated: it ends at byte {need}, the log has {len}"
            ),
            LogError::TooLarge { entry, nr_sectors } => write!(
                f,
                "log-writes entry {entry} is impossibly large: {nr_sectors} sectors overflow"
            ),
            LogError::UnknownFlags { entry, flags } => {
                write!(f, "log-writes entry {entry} has unknown flag bits: flags {flags:#x}")
            }
            LogError::EmptyEntry { entry } => {
                write!(f, "log-writes entry {entry} is empty (no flags, no sectors)")
            }
            LogError::DataLength { entry, data_len, expected } => write!(
                f,
                "log-writes entry {entry} has data length {data_len}, expected {expected}"
            ),
            LogError::MarkTooLong { entry, data_len, max } => write!(
                f,
                "log-writes mark entry {entry} has {data_len} bytes of text, at most {max} fit"
            ),
            LogError::MarkWithSectors { entry, nr_sectors } => {
                write!(f, "log-writes mark entry {entry} has {nr_sectors} sectors, expected 0")
            }
            LogError::BadIndex { entry, found } => {
                write!(f, "log entry at position {entry} has index {found}")
            }
            LogError::MarkMismatch { entry } => {
                write!(f, "log entry {entry}: `mark` does not match its flags and data")
            }
        }
    }
}

impl std::error::Error for LogError {}

/// Parse the log device's bytes: the super block and the `nr_entries` entries it counts.
/// Bytes after the last counted entry are ignored (see the module header for why).
pub fn parse(bytes: &[u8]) -> Result<Log, LogError> {
    decode(bytes, false).map(|(log, _)| log)
}

/// Like [`parse`], and also the uncounted entries after the counted ones (indices continuing
/// from `nr_entries`), up to the first block that is not a valid entry or the end of the bytes.
/// Only the super block and the counted entries can make this fail.
pub fn parse_with_tail(bytes: &[u8]) -> Result<(Log, Vec<Entry>), LogError> {
    decode(bytes, true)
}

fn decode(bytes: &[u8], want_tail: bool) -> Result<(Log, Vec<Entry>), LogError> {
    let len = bytes.len();
    let too_short = |need: u64| LogError::TooShort { len, need };
    let (Some(magic), Some(version), Some(nr_entries), Some(sector_size)) =
        (read_u64(bytes, 0), read_u64(bytes, 8), read_u64(bytes, 16), read_u32(bytes, 24))
    else {
        return Err(too_short(SUPER_FIELDS as u64));
    };
    if magic != MAGIC {
        return Err(LogError::BadMagic { found: magic });
    }
    if version != VERSION {
        return Err(LogError::BadVersion { found: version });
    }
    check_sector_size(sector_size)?;
    let block = u64::from(sector_size);
    let len64 = u64::try_from(len).unwrap_or(u64::MAX);
    if len64 < block {
        return Err(too_short(block));
    }

    // Every entry takes at least one block, so this bounds the allocation by the input.
    let fit = usize::try_from(nr_entries.min(len64 / block)).unwrap_or(0);
    let mut entries = Vec::with_capacity(fit);
    let mut at = block;
    for index in 0..nr_entries {
        let (entry, next) = decode_entry(bytes, at, sector_size, index)?;
        entries.push(entry);
        at = next;
    }

    let mut tail = Vec::new();
    if want_tail {
        let mut index = nr_entries;
        while at < len64 {
            match decode_entry(bytes, at, sector_size, index) {
                Ok((entry, next)) => {
                    tail.push(entry);
                    at = next;
                }
                Err(_) => break,
            }
            match index.checked_add(1) {
                Some(i) => index = i,
                None => break,
            }
        }
    }
    Ok((Log { sector_size, entries }, tail))
}

/// Decodes the entry whose header block starts at byte `at`; returns it and the byte offset of
/// the next entry.
fn decode_entry(
    bytes: &[u8],
    at: u64,
    sector_size: u32,
    index: u64,
) -> Result<(Entry, u64), LogError> {
    let len = bytes.len();
    let block = u64::from(sector_size);
    let truncated = |need: u64| LogError::Truncated { entry: index, need, len };

    let header_end = at.checked_add(block).ok_or(truncated(u64::MAX))?;
    let header = slice(bytes, at, header_end).ok_or(truncated(header_end))?;
    let field = |at: usize| read_u64(header, at).ok_or(truncated(header_end));
    let sector = field(0)?;
    let nr_sectors = field(8)?;
    let flags = field(16)?;
    let data_len = field(24)?;

    if flags & !KNOWN_FLAGS != 0 {
        return Err(LogError::UnknownFlags { entry: index, flags });
    }
    if flags == 0 && nr_sectors == 0 {
        return Err(LogError::EmptyEntry { entry: index });
    }

    let (data, mark, next) = if flags & LOG_MARK != 0 {
        if nr_sectors != 0 {
            return Err(LogError::MarkWithSectors { entry: index, nr_sectors });
        }
        let max = max_mark_len(sector_size);
        if data_len > max {
            return Err(LogError::MarkTooLong { entry: index, data_len, max });
        }
        // data_len <= max < sector_size, and the header slice is sector_size long.
        let text_end = ENTRY_HEADER as u64 + data_len;
        let text = slice(header, ENTRY_HEADER as u64, text_end).ok_or(truncated(header_end))?;
        let mark = String::from_utf8_lossy(text).into_owned();
        (text.to_vec(), Some(mark), header_end)
    } else if flags & LOG_DISCARD != 0 {
        if data_len != 0 {
            return Err(LogError::DataLength { entry: index, data_len, expected: 0 });
        }
        (Vec::new(), None, header_end)
    } else {
        let too_large = LogError::TooLarge { entry: index, nr_sectors };
        let size = nr_sectors.checked_mul(block).ok_or(too_large.clone())?;
        if data_len != 0 && data_len != size {
            return Err(LogError::DataLength { entry: index, data_len, expected: size });
        }
        let end = header_end.checked_add(size).ok_or(too_large)?;
        let data = slice(bytes, header_end, end).ok_or(truncated(end))?;
        (data.to_vec(), None, end)
    };
    Ok((Entry { index, sector, nr_sectors, flags, data, mark }, next))
}

/// Write `log` in the kernel's format: the super block counting every entry, then each entry's
/// header block and data. Refuses (with the error `parse` would give, or `BadIndex` or
/// `MarkMismatch`) a log that would not parse back to itself.
pub fn encode(log: &Log) -> Result<Vec<u8>, LogError> {
    let sector_size = log.sector_size;
    check_sector_size(sector_size)?;
    let block = sector_size as usize;
    let nr_entries = log.entries.len() as u64;

    let mut out = Vec::with_capacity(block);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&nr_entries.to_le_bytes());
    out.extend_from_slice(&sector_size.to_le_bytes());
    out.resize(block, 0);

    for (position, e) in log.entries.iter().enumerate() {
        let entry = position as u64;
        if e.index != entry {
            return Err(LogError::BadIndex { entry, found: e.index });
        }
        if e.flags & !KNOWN_FLAGS != 0 {
            return Err(LogError::UnknownFlags { entry, flags: e.flags });
        }
        if e.flags == 0 && e.nr_sectors == 0 {
            return Err(LogError::EmptyEntry { entry });
        }
        let expected_mark = e.is_mark().then(|| String::from_utf8_lossy(&e.data).into_owned());
        if e.mark != expected_mark {
            return Err(LogError::MarkMismatch { entry });
        }
        let data_len = e.data.len() as u64;
        let header_start = out.len();
        let header_field = if e.is_mark() {
            if e.nr_sectors != 0 {
                return Err(LogError::MarkWithSectors { entry, nr_sectors: e.nr_sectors });
            }
            let max = max_mark_len(sector_size);
            if data_len > max {
                return Err(LogError::MarkTooLong { entry, data_len, max });
            }
            data_len
        } else if e.is_discard() {
            if data_len != 0 {
                return Err(LogError::DataLength { entry, data_len, expected: 0 });
            }
            0
        } else {
            let too_large = LogError::TooLarge { entry, nr_sectors: e.nr_sectors };
            let size = e.nr_sectors.checked_mul(u64::from(sector_size)).ok_or(too_large)?;
            if data_len != size {
                return Err(LogError::DataLength { entry, data_len, expected: size });
            }
            0
        };
        out.extend_from_slice(&e.sector.to_le_bytes());
        out.extend_from_slice(&e.nr_sectors.to_le_bytes());
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&header_field.to_le_bytes());
        if e.is_mark() {
            out.extend_from_slice(&e.data);
            out.resize(header_start + block, 0);
        } else {
            out.resize(header_start + block, 0);
            out.extend_from_slice(&e.data);
        }
    }
    Ok(out)
}

fn check_sector_size(sector_size: u32) -> Result<(), LogError> {
    if sector_size.is_power_of_two() && (MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&sector_size) {
        Ok(())
    } else {
        Err(LogError::BadSectorSize { found: sector_size })
    }
}

/// The most text bytes a mark can have: the header block after the 32 header bytes. (The
/// kernel keeps one more byte free for a NUL, so it writes at most one fewer.)
fn max_mark_len(sector_size: u32) -> u64 {
    u64::from(sector_size).saturating_sub(ENTRY_HEADER as u64)
}

/// `bytes[start..end]`, or `None` if that is not inside `bytes`.
fn slice(bytes: &[u8], start: u64, end: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = usize::try_from(end).ok()?;
    bytes.get(start..end)
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(field))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(index: u64, sector: u64, flags: u64, nr_sectors: u64, sector_size: u32) -> Entry {
        let size = (nr_sectors * u64::from(sector_size)) as usize;
        let data = (0..size).map(|i| (i as u64 * 31 + index * 7 + sector) as u8).collect();
        Entry { index, sector, nr_sectors, flags, data, mark: None }
    }

    fn flush(index: u64) -> Entry {
        Entry { index, sector: 0, nr_sectors: 0, flags: LOG_FLUSH, data: vec![], mark: None }
    }

    fn discard(index: u64, sector: u64, nr_sectors: u64) -> Entry {
        Entry { index, sector, nr_sectors, flags: LOG_DISCARD, data: vec![], mark: None }
    }

    fn mark(index: u64, text: &str) -> Entry {
        Entry {
            index,
            sector: 0,
            nr_sectors: 0,
            flags: LOG_MARK,
            data: text.as_bytes().to_vec(),
            mark: Some(text.to_string()),
        }
    }

    fn sample(sector_size: u32) -> Log {
        Log {
            sector_size,
            entries: vec![
                write(0, 16, 0, 2, sector_size),
                write(1, 3, LOG_METADATA, 1, sector_size),
                flush(2),
                write(3, 0, LOG_FUA, 1, sector_size),
                discard(4, 100, 64),
                write(5, 7, LOG_FLUSH | LOG_FUA, 1, sector_size),
                mark(6, "dm-log-writes-end"),
            ],
        }
    }

    fn le(v: u64) -> [u8; 8] {
        v.to_le_bytes()
    }

    /// A super block built by hand, padded to its block.
    fn super_block(nr_entries: u64, sector_size: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&le(MAGIC));
        b.extend_from_slice(&le(VERSION));
        b.extend_from_slice(&le(nr_entries));
        b.extend_from_slice(&sector_size.to_le_bytes());
        b.resize(sector_size as usize, 0);
        b
    }

    /// An entry header block built by hand, `extra` right after the 32 header bytes.
    fn header_block(fields: [u64; 4], extra: &[u8], sector_size: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for f in fields {
            b.extend_from_slice(&le(f));
        }
        b.extend_from_slice(extra);
        b.resize(sector_size as usize, 0);
        b
    }

    fn set_nr_entries(bytes: &mut [u8], nr_entries: u64) {
        bytes[16..24].copy_from_slice(&le(nr_entries));
    }

    #[test]
    fn round_trips_every_kind_of_entry() {
        for sector_size in [512, 4096] {
            let log = sample(sector_size);
            let bytes = encode(&log).unwrap();
            assert_eq!(parse(&bytes).unwrap(), log);
            let (again, tail) = parse_with_tail(&bytes).unwrap();
            assert_eq!(again, log);
            assert!(tail.is_empty());
            let e = &log.entries;
            assert!(e[2].is_flush() && e[2].nr_sectors == 0 && e[2].data.is_empty());
            assert!(e[3].is_fua() && !e[3].is_flush());
            assert!(e[4].is_discard() && e[4].data.is_empty());
            assert!(e[5].is_flush() && e[5].is_fua());
            assert!(e[6].is_mark() && e[6].mark.as_deref() == Some("dm-log-writes-end"));
            assert!(e[1].is_metadata());
        }
    }

    #[test]
    fn layout_matches_the_kernel() {
        // 512-byte blocks: super at 0; entry 0 header at 512, its 2 blocks of data at 1024;
        // entry 1 header at 2048, data at 2560; flush header at 3072; FUA header at 3584,
        // data at 4096; discard header at 4608 (no data); FUA|FLUSH header at 5120, data at
        // 5632; mark header at 6144; end at 6656.
        let log = sample(512);
        let bytes = encode(&log).unwrap();
        assert_eq!(bytes.len(), 6656);
        assert_eq!(&bytes[0..8], b"rhswfsj\0"); // 0x6a736677736872, little-endian
        assert_eq!(&bytes[16..24], &le(7));
        assert_eq!(&bytes[24..28], &512u32.to_le_bytes());
        assert_eq!(&bytes[512..544], &[le(16), le(2), le(0), le(0)].concat()[..]);
        assert_eq!(&bytes[1024..2048], &log.entries[0].data[..]);
        assert_eq!(&bytes[3072..3104], &[le(0), le(0), le(LOG_FLUSH), le(0)].concat()[..]);
        assert_eq!(&bytes[4608..4640], &[le(100), le(64), le(LOG_DISCARD), le(0)].concat()[..]);
        assert_eq!(&bytes[6144..6176], &[le(0), le(0), le(LOG_MARK), le(17)].concat()[..]);
        assert_eq!(&bytes[6176..6193], b"dm-log-writes-end");
        assert!(bytes[6193..].iter().all(|&b| b == 0));

        // 4096-byte blocks: sector and nr_sectors count 4096-byte blocks.
        let log = sample(4096);
        let bytes = encode(&log).unwrap();
        assert_eq!(&bytes[4096..4128], &[le(16), le(2), le(0), le(0)].concat()[..]);
        assert_eq!(bytes.len(), 4096 * 13);
        assert_eq!(log.entries[0].byte_offset(4096), Some(16 * 4096));
        assert_eq!(log.entries[0].byte_len(4096), Some(2 * 4096));
    }

    #[test]
    fn reads_a_hand_built_log() {
        let mut bytes = super_block(3, 512);
        bytes[28..32].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // struct padding: not checked
        bytes.extend(header_block([9, 1, LOG_FUA, 0], &[], 512));
        bytes.extend(vec![0xab; 512]);
        bytes.extend(header_block([0, 0, LOG_MARK, 5], b"mkfs\xff", 512));
        // A write in the (unused) inline form: data_len equal to the data's size.
        bytes.extend(header_block([2, 1, 0, 512], &[], 512));
        bytes.extend(vec![0xcd; 512]);
        let log = parse(&bytes).unwrap();
        assert_eq!(log.sector_size, 512);
        assert_eq!(log.entries.len(), 3);
        assert_eq!(
            log.entries[0],
            Entry {
                index: 0,
                sector: 9,
                nr_sectors: 1,
                flags: LOG_FUA,
                data: vec![0xab; 512],
                mark: None
            }
        );
        assert_eq!(log.entries[1].data, b"mkfs\xff");
        assert_eq!(log.entries[1].mark.as_deref(), Some("mkfs\u{fffd}"));
        assert_eq!(log.entries[2].data, vec![0xcd; 512]);
        // It re-encodes (canonically) to a log that reads the same.
        assert_eq!(parse(&encode(&log).unwrap()).unwrap(), log);
    }

    #[test]
    fn rejects_a_bad_super_block() {
        let good = encode(&sample(512)).unwrap();
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert_eq!(parse(&bad), Err(LogError::BadMagic { found: MAGIC ^ 1 }));
        assert_eq!(parse(&[0u8; 4096]), Err(LogError::BadMagic { found: 0 }));
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(parse(&bad), Err(LogError::BadVersion { found: 2 }));
        for size in [0u32, 256, 1000, 131072] {
            let mut bad = good.clone();
            bad[24..28].copy_from_slice(&size.to_le_bytes());
            assert_eq!(parse(&bad), Err(LogError::BadSectorSize { found: size }));
        }
        assert_eq!(parse(&good[..27]), Err(LogError::TooShort { len: 27, need: 28 }));
        assert_eq!(parse(&good[..100]), Err(LogError::TooShort { len: 100, need: 512 }));
        assert_eq!(parse(&[]), Err(LogError::TooShort { len: 0, need: 28 }));
        // A super block alone is an empty log.
        assert_eq!(parse(&super_block(0, 512)).unwrap(), Log { sector_size: 512, entries: vec![] });
    }

    #[test]
    fn rejects_a_truncated_entry() {
        let bytes = encode(&sample(512)).unwrap();
        // Cut inside entry 0's data (it ends at 2048).
        assert_eq!(
            parse(&bytes[..2000]),
            Err(LogError::Truncated { entry: 0, need: 2048, len: 2000 })
        );
        // Cut inside the mark's header block.
        assert_eq!(
            parse(&bytes[..6200]),
            Err(LogError::Truncated { entry: 6, need: 6656, len: 6200 })
        );
        // A super block counting more entries than there are.
        let mut more = bytes.clone();
        set_nr_entries(&mut more, 8);
        assert_eq!(parse(&more), Err(LogError::Truncated { entry: 7, need: 7168, len: 6656 }));
        let mut huge = bytes;
        set_nr_entries(&mut huge, u64::MAX);
        assert!(matches!(parse(&huge), Err(LogError::Truncated { entry: 7, .. })));
    }

    #[test]
    fn rejects_a_data_len_that_does_not_fit() {
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 1, 0, 7], &[], 512));
        bytes.extend(vec![1; 512]);
        assert_eq!(
            parse(&bytes),
            Err(LogError::DataLength { entry: 0, data_len: 7, expected: 512 })
        );
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 8, LOG_DISCARD, 4096], &[], 512));
        assert_eq!(
            parse(&bytes),
            Err(LogError::DataLength { entry: 0, data_len: 4096, expected: 0 })
        );
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 0, LOG_MARK, 481], &[], 512));
        assert_eq!(parse(&bytes), Err(LogError::MarkTooLong { entry: 0, data_len: 481, max: 480 }));
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 1, LOG_MARK, 1], b"x", 512));
        bytes.extend(vec![0; 512]);
        assert_eq!(parse(&bytes), Err(LogError::MarkWithSectors { entry: 0, nr_sectors: 1 }));
    }

    #[test]
    fn rejects_impossible_entries() {
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 1, 1 << 5, 0], &[], 512));
        bytes.extend(vec![0; 512]);
        assert_eq!(parse(&bytes), Err(LogError::UnknownFlags { entry: 0, flags: 1 << 5 }));
        let mut bytes = super_block(1, 512);
        bytes.extend(vec![0; 512]);
        assert_eq!(parse(&bytes), Err(LogError::EmptyEntry { entry: 0 }));
        for nr in [u64::MAX, u64::MAX / 512 + 1] {
            let mut bytes = super_block(1, 512);
            bytes.extend(header_block([0, nr, 0, 0], &[], 512));
            assert_eq!(parse(&bytes), Err(LogError::TooLarge { entry: 0, nr_sectors: nr }));
        }
        // Large but representable: truncated, and nothing is allocated for it.
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([0, 1 << 40, 0, 0], &[], 512));
        assert!(matches!(parse(&bytes), Err(LogError::Truncated { entry: 0, .. })));
        // A huge discard is fine: it has no data.
        let mut bytes = super_block(1, 512);
        bytes.extend(header_block([5, u64::MAX, LOG_DISCARD, 0], &[], 512));
        assert_eq!(parse(&bytes).unwrap().entries, vec![discard(0, 5, u64::MAX)]);
    }

    #[test]
    fn ignores_trailing_bytes() {
        let log = sample(512);
        let mut bytes = encode(&log).unwrap();
        bytes.extend(vec![0; 10_000]);
        assert_eq!(parse(&bytes).unwrap(), log);
        assert!(parse_with_tail(&bytes).unwrap().1.is_empty());
        bytes.extend((0..3000u32).map(|i| (i * 7) as u8));
        assert_eq!(parse(&bytes).unwrap(), log);
    }

    #[test]
    fn a_lagging_count_leaves_a_tail() {
        let log = sample(512);
        let mut bytes = encode(&log).unwrap();
        set_nr_entries(&mut bytes, 3);
        bytes.extend(vec![0; 2048]);
        let counted = parse(&bytes).unwrap();
        assert_eq!(counted.entries, log.entries[..3]);
        let (counted, tail) = parse_with_tail(&bytes).unwrap();
        assert_eq!(counted.entries, log.entries[..3]);
        assert_eq!(tail, log.entries[3..]);
        // A tail stops at the first block that is not an entry, and at a cut-off entry.
        set_nr_entries(&mut bytes, 0);
        let (_, tail) = parse_with_tail(&bytes[..2000]).unwrap();
        assert!(tail.is_empty());
        let (_, tail) = parse_with_tail(&bytes[..3584]).unwrap();
        assert_eq!(tail, log.entries[..3]);
    }

    #[test]
    fn encode_refuses_what_parse_would_not_give() {
        let good = sample(512);
        let with = |i: usize, f: &dyn Fn(&mut Entry)| {
            let mut log = good.clone();
            f(&mut log.entries[i]);
            encode(&log)
        };
        assert_eq!(with(0, &|e| e.index = 9), Err(LogError::BadIndex { entry: 0, found: 9 }));
        assert_eq!(
            with(0, &|e| {
                e.data.pop();
            }),
            Err(LogError::DataLength { entry: 0, data_len: 1023, expected: 1024 })
        );
        assert_eq!(
            with(4, &|e| e.data.push(1)),
            Err(LogError::DataLength { entry: 4, data_len: 1, expected: 0 })
        );
        assert_eq!(with(6, &|e| e.mark = None), Err(LogError::MarkMismatch { entry: 6 }));
        assert_eq!(
            with(0, &|e| e.mark = Some("x".into())),
            Err(LogError::MarkMismatch { entry: 0 })
        );
        assert_eq!(
            with(6, &|e| *e = mark(6, &"m".repeat(481))),
            Err(LogError::MarkTooLong { entry: 6, data_len: 481, max: 480 })
        );
        assert_eq!(with(2, &|e| e.flags = 0), Err(LogError::EmptyEntry { entry: 2 }));
        assert_eq!(
            encode(&Log { sector_size: 768, entries: vec![] }),
            Err(LogError::BadSectorSize { found: 768 })
        );
        let longest = Log { sector_size: 512, entries: vec![mark(0, &"m".repeat(480))] };
        assert!(encode(&longest).is_ok());
    }

    #[test]
    fn errors_display() {
        let errors = [
            LogError::TooShort { len: 1, need: 28 },
            LogError::BadMagic { found: 0 },
            LogError::Truncated { entry: 3, need: 4096, len: 100 },
            LogError::DataLength { entry: 1, data_len: 7, expected: 512 },
        ];
        for e in errors {
            assert!(!e.to_string().is_empty());
            let _: &dyn std::error::Error = &e;
        }
    }

    fn arb_entry(sector_size: u32) -> impl Strategy<Value = Entry> {
        let block = sector_size as usize;
        let data_flags = prop::sample::select(vec![
            0,
            LOG_FUA,
            LOG_FLUSH,
            LOG_FLUSH | LOG_FUA,
            LOG_METADATA,
            LOG_FUA | LOG_METADATA,
        ]);
        prop_oneof![
            (any::<u64>(), data_flags, 1u64..4)
                .prop_flat_map(move |(sector, flags, nr)| {
                    let data = prop::collection::vec(any::<u8>(), nr as usize * block);
                    (Just(sector), Just(flags), Just(nr), data)
                })
                .prop_map(|(sector, flags, nr_sectors, data)| Entry {
                    index: 0,
                    sector,
                    nr_sectors,
                    flags,
                    data,
                    mark: None
                }),
            prop::sample::select(vec![LOG_FLUSH, LOG_FLUSH | LOG_FUA, LOG_FLUSH | LOG_METADATA])
                .prop_map(|flags| Entry { flags, ..flush(0) }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(s, n, meta)| Entry {
                flags: LOG_DISCARD | if meta { LOG_METADATA } else { 0 },
                ..discard(0, s, n)
            }),
            prop::collection::vec(any::<u8>(), 0..=block - ENTRY_HEADER).prop_map(|data| {
                let text = String::from_utf8_lossy(&data).into_owned();
                Entry { data, mark: Some(text), ..mark(0, "") }
            }),
        ]
    }

    fn arb_log() -> impl Strategy<Value = Log> {
        prop::sample::select(vec![512u32, 1024, 4096])
            .prop_flat_map(|size| (Just(size), prop::collection::vec(arb_entry(size), 0..12)))
            .prop_map(|(sector_size, mut entries)| {
                for (i, e) in entries.iter_mut().enumerate() {
                    e.index = i as u64;
                }
                Log { sector_size, entries }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_then_parse_round_trips(log in arb_log(), zeros in 0usize..5000) {
            let mut bytes = encode(&log).unwrap();
            prop_assert_eq!(&parse(&bytes).unwrap(), &log);
            bytes.extend(vec![0; zeros]);
            let (again, tail) = parse_with_tail(&bytes).unwrap();
            prop_assert_eq!(&again, &log);
            prop_assert!(tail.is_empty());
        }

        #[test]
        fn a_lagging_count_is_made_up_by_the_tail(
            log in arb_log(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&log).unwrap();
            let counted = cut.index(log.entries.len() + 1);
            set_nr_entries(&mut bytes, counted as u64);
            let (head, tail) = parse_with_tail(&bytes).unwrap();
            prop_assert_eq!(&head.entries[..], &log.entries[..counted]);
            prop_assert_eq!(&tail[..], &log.entries[counted..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
            let _ = parse(&bytes);
            let _ = parse_with_tail(&bytes);
        }

        #[test]
        fn a_valid_super_block_then_garbage_never_panics(
            nr_entries in prop_oneof![0u64..8, any::<u64>()],
            size in prop::sample::select(vec![512u32, 1024, 4096]),
            words in prop::collection::vec(
                prop_oneof![0u64..4, 0u64..32, 0u64..1000, any::<u64>()], 0..600),
        ) {
            let mut bytes = super_block(nr_entries, size);
            for w in words {
                bytes.extend_from_slice(&le(w));
            }
            check_no_panic_and_canonical(&bytes)?;
        }

        #[test]
        fn a_damaged_log_never_panics(
            log in arb_log(),
            hits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&log).unwrap();
            for (at, byte) in hits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let len = cut.index(bytes.len() + 1);
            check_no_panic_and_canonical(&bytes[..len])?;
            check_no_panic_and_canonical(&bytes)?;
        }
    }

    /// Whatever parses re-encodes, and the encoding parses back to the same log.
    fn check_no_panic_and_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
        let _ = parse_with_tail(bytes);
        if let Ok(log) = parse(bytes) {
            let again = encode(&log).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parse(&again).unwrap(), log);
        }
        Ok(())
    }
}
