//! Streaming `thin_dump` 0.9.0 writer: XML and `-f human_readable` (spec §10.1), byte for byte.
//!
//! Call order: `superblock`, then for each device (strictly ascending id) `begin_device`, its
//! mappings in strictly ascending origin order, `end_device`; finally `end_superblock` and
//! `finish`. Calls out of that order, ids or origins that do not ascend and runs that overflow
//! `u64` are [`DumpError`]s, never panics; a rejected call writes nothing and changes nothing
//! (after an I/O error the output is simply incomplete).
//!
//! Run merging (the tool's rule): a pending run absorbs the next mapping while
//! `origin == run.origin + run.len`, `data == run.data + run.len` and `time == run.time`. Runs
//! continue across calls and across [`DumpWriter::mapping_run`] pieces, so feeding a run as
//! singles or as ranges gives the same bytes. A run of length 1 prints as `single_mapping`,
//! longer ones as `range_mapping`. (The tool adds without overflow checks; data blocks are
//! < 2^40 in any real pool, so the checked form here prints the same for every real input.)
//!
//! Output lines, XML (two spaces of indentation per level, `\n` line ends):
//! ```text
//! <superblock uuid="U" time="T" transaction="X" flags="F" version="V" data_block_size="S" nr_data_blocks="N">
//!   <device dev_id="D" mapped_blocks="M" transaction="X" creation_time="C" snap_time="P">
//!     <range_mapping origin_begin="O" data_begin="B" length="L" time="t"/>
//!     <single_mapping origin_block="O" data_block="B" time="t"/>
//!   </device>
//! </superblock>
//! ```
//! `metadata_snap="M"` follows `nr_data_blocks` only when [`XmlSuperblock::metadata_snap`] is
//! set; thin_dump itself never sets it, nor a non-empty uuid.
//!
//! thin_dump 1.x's shared runs (XML only, and only when asked: 0.9.0 never writes them):
//! before the first device, `begin_def`, the def's mappings (ascending, merged into runs as
//! in a device), `end_def`; inside a device, `reference` stands for a def's runs at its
//! place, so the device's origins still ascend across it:
//! ```text
//!   <def name="N">
//!     <range_mapping …/>
//!   </def>
//!   <device …>
//!     <ref name="N"/>
//!   </device>
//! ```

use super::types::{XmlDevice, XmlSuperblock};
use std::fmt;
use std::io::{self, BufWriter, Write};

/// Output flavour, as `thin_dump -f {xml|human_readable}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    Xml,
    HumanReadable,
}

/// Why a dump could not be written.
#[derive(Debug)]
pub enum DumpError {
    Io(io::Error),
    /// `call` is not allowed in `state` (e.g. a mapping outside a device).
    OutOfOrder {
        call: &'static str,
        state: &'static str,
    },
    /// Device ids must strictly ascend.
    DeviceNotAscending {
        previous: u64,
        dev_id: u64,
    },
    /// Origins must strictly ascend within a device.
    OriginNotAscending {
        previous: u64,
        origin: u64,
    },
    /// Shared runs (`def`/`ref`) asked of the human-readable format, which has none.
    XmlOnly {
        call: &'static str,
    },
    /// A run of length 0, or one whose last origin or data block does not fit in `u64`.
    BadRun {
        origin_begin: u64,
        data_begin: u64,
        length: u64,
    },
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "dump output failed: {e}"),
            DumpError::OutOfOrder { call, state } => {
                write!(f, "dump writer: `{call}` called while {state}")
            }
            DumpError::DeviceNotAscending { previous, dev_id } => {
                write!(f, "dump writer: device {dev_id} does not follow device {previous}")
            }
            DumpError::OriginNotAscending { previous, origin } => {
                write!(f, "dump writer: origin {origin} does not follow {previous}")
            }
            DumpError::XmlOnly { call } => {
                write!(f, "dump writer: `{call}` has no human-readable form")
            }
            DumpError::BadRun { origin_begin, data_begin, length } => write!(
                f,
                "dump writer: bad run origin {origin_begin}, data {data_begin}, length {length}"
            ),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        DumpError::Io(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    InSuperblock,
    InDevice,
    /// Inside a `def` (before any device).
    InDef,
    Done,
}

impl State {
    fn describe(self) -> &'static str {
        match self {
            State::Start => "before the superblock",
            State::InSuperblock => "inside the superblock, outside any device",
            State::InDevice => "inside a device",
            State::InDef => "inside a def",
            State::Done => "after the end of the superblock",
        }
    }
}

/// A pending run of mappings; `len >= 1`, and `origin + len - 1`, `data + len - 1` fit `u64`.
#[derive(Debug, Clone, Copy)]
struct Run {
    origin: u64,
    data: u64,
    len: u64,
    time: u32,
}

impl Run {
    /// True if the mapping run `next` continues this one (the tool's merge rule).
    fn continued_by(&self, next: &Run) -> bool {
        next.time == self.time
            && self.origin.checked_add(self.len) == Some(next.origin)
            && self.data.checked_add(self.len) == Some(next.data)
    }

    fn last_origin(&self) -> u64 {
        // Invariant of Run: origin + len - 1 fits.
        self.origin + (self.len - 1)
    }
}

/// The streaming writer. Output goes through a `BufWriter`; call [`DumpWriter::finish`] to
/// flush and get the inner writer back.
pub struct DumpWriter<W: Write> {
    out: BufWriter<W>,
    format: DumpFormat,
    state: State,
    run: Option<Run>,
    /// Last device id begun.
    last_dev_id: Option<u64>,
    /// Last origin written (or pending) in the current device.
    last_origin: Option<u64>,
    /// One output line, reused to avoid allocation per line.
    line: Vec<u8>,
}

impl<W: Write> DumpWriter<W> {
    /// A writer of `format` onto `inner` (buffered here; pass an unbuffered writer).
    pub fn new(inner: W, format: DumpFormat) -> Self {
        DumpWriter {
            out: BufWriter::with_capacity(1 << 16, inner),
            format,
            state: State::Start,
            run: None,
            last_dev_id: None,
            last_origin: None,
            line: Vec::with_capacity(160),
        }
    }

    /// Opens the superblock; must be the first call.
    pub fn superblock(&mut self, sb: &XmlSuperblock) -> Result<(), DumpError> {
        self.expect(State::Start, "superblock")?;
        self.line.clear();
        match self.format {
            DumpFormat::Xml => xml_superblock(&mut self.line, sb),
            DumpFormat::HumanReadable => human_superblock(&mut self.line, sb),
        }
        self.emit_line()?;
        self.state = State::InSuperblock;
        Ok(())
    }

    /// Opens a device; ids must strictly ascend (the tool walks the top-level btree).
    pub fn begin_device(&mut self, dev: &XmlDevice) -> Result<(), DumpError> {
        self.expect(State::InSuperblock, "begin_device")?;
        if let Some(previous) = self.last_dev_id {
            if dev.dev_id <= previous {
                return Err(DumpError::DeviceNotAscending { previous, dev_id: dev.dev_id });
            }
        }
        self.last_dev_id = Some(dev.dev_id);
        self.line.clear();
        match self.format {
            DumpFormat::Xml => xml_device(&mut self.line, dev),
            DumpFormat::HumanReadable => human_device(&mut self.line, dev),
        }
        self.emit_line()?;
        self.state = State::InDevice;
        self.last_origin = None;
        Ok(())
    }

    /// One mapping `origin → data_block` written at `time`.
    pub fn mapping(&mut self, origin: u64, data_block: u64, time: u32) -> Result<(), DumpError> {
        self.mapping_run(origin, data_block, 1, time)
    }

    /// `length` consecutive mappings `origin_begin + i → data_begin + i`, all at `time`.
    pub fn mapping_run(
        &mut self,
        origin_begin: u64,
        data_begin: u64,
        length: u64,
        time: u32,
    ) -> Result<(), DumpError> {
        if self.state != State::InDef {
            self.expect(State::InDevice, "mapping")?;
        }
        let bad_run = DumpError::BadRun { origin_begin, data_begin, length };
        let Some(extent) = length.checked_sub(1) else { return Err(bad_run) };
        if origin_begin.checked_add(extent).is_none() || data_begin.checked_add(extent).is_none() {
            return Err(bad_run);
        }
        if let Some(previous) = self.last_origin {
            if origin_begin <= previous {
                return Err(DumpError::OriginNotAscending { previous, origin: origin_begin });
            }
        }
        let next = Run { origin: origin_begin, data: data_begin, len: length, time };
        self.last_origin = Some(next.last_origin());
        match &mut self.run {
            Some(run) if run.continued_by(&next) => {
                // Cannot overflow: the merged run ends at next's last origin, which fits.
                run.len += length;
                Ok(())
            }
            _ => {
                self.flush_run()?;
                self.run = Some(next);
                Ok(())
            }
        }
    }

    /// Opens shared def `name` (1.x's `<def>`): only before the first device, in XML.
    pub fn begin_def(&mut self, name: u64) -> Result<(), DumpError> {
        self.expect(State::InSuperblock, "begin_def")?;
        if self.format != DumpFormat::Xml {
            return Err(DumpError::XmlOnly { call: "begin_def" });
        }
        if self.last_dev_id.is_some() {
            return Err(DumpError::OutOfOrder { call: "begin_def", state: "after a device" });
        }
        self.line.clear();
        push_attr(&mut self.line, b"  <def name=\"", name);
        self.line.extend_from_slice(b"\">\n");
        self.emit_line()?;
        self.state = State::InDef;
        self.last_origin = None;
        Ok(())
    }

    /// Closes the current def (printing any pending run first).
    pub fn end_def(&mut self) -> Result<(), DumpError> {
        self.expect(State::InDef, "end_def")?;
        self.flush_run()?;
        self.line.clear();
        self.line.extend_from_slice(b"  </def>\n");
        self.emit_line()?;
        self.state = State::InSuperblock;
        Ok(())
    }

    /// In a device, the runs of def `name`, whose origins span `first..=last` (checked to
    /// follow the device's previous origin, so origins still ascend).
    pub fn reference(&mut self, name: u64, first: u64, last: u64) -> Result<(), DumpError> {
        self.expect(State::InDevice, "reference")?;
        if let Some(previous) = self.last_origin {
            if first <= previous {
                return Err(DumpError::OriginNotAscending { previous, origin: first });
            }
        }
        if last < first {
            return Err(DumpError::OriginNotAscending { previous: first, origin: last });
        }
        self.flush_run()?;
        self.last_origin = Some(last);
        self.line.clear();
        push_attr(&mut self.line, b"    <ref name=\"", name);
        self.line.extend_from_slice(b"\"/>\n");
        self.emit_line()
    }

    /// Closes the current device (printing any pending run first).
    pub fn end_device(&mut self) -> Result<(), DumpError> {
        self.expect(State::InDevice, "end_device")?;
        self.flush_run()?;
        self.line.clear();
        match self.format {
            DumpFormat::Xml => self.line.extend_from_slice(b"  </device>\n"),
            DumpFormat::HumanReadable => self.line.push(b'\n'),
        }
        self.emit_line()?;
        self.state = State::InSuperblock;
        Ok(())
    }

    /// Closes the superblock; no further calls but [`DumpWriter::finish`].
    pub fn end_superblock(&mut self) -> Result<(), DumpError> {
        self.expect(State::InSuperblock, "end_superblock")?;
        self.line.clear();
        match self.format {
            DumpFormat::Xml => self.line.extend_from_slice(b"</superblock>\n"),
            DumpFormat::HumanReadable => self.line.extend_from_slice(b"end superblock\n"),
        }
        self.emit_line()?;
        self.state = State::Done;
        Ok(())
    }

    /// Flushes and returns the inner writer; the dump must be complete.
    pub fn finish(self) -> Result<W, DumpError> {
        self.expect(State::Done, "finish")?;
        self.out.into_inner().map_err(|e| DumpError::Io(e.into_error()))
    }

    fn expect(&self, state: State, call: &'static str) -> Result<(), DumpError> {
        if self.state == state {
            Ok(())
        } else {
            Err(DumpError::OutOfOrder { call, state: self.state.describe() })
        }
    }

    fn flush_run(&mut self) -> Result<(), DumpError> {
        let Some(run) = self.run.take() else { return Ok(()) };
        self.line.clear();
        match self.format {
            DumpFormat::Xml => xml_run(&mut self.line, &run),
            DumpFormat::HumanReadable => human_run(&mut self.line, &run),
        }
        self.emit_line()
    }

    fn emit_line(&mut self) -> Result<(), DumpError> {
        self.out.write_all(&self.line)?;
        Ok(())
    }
}

fn xml_superblock(line: &mut Vec<u8>, sb: &XmlSuperblock) {
    line.extend_from_slice(b"<superblock uuid=\"");
    push_escaped(line, &sb.uuid);
    push_attr(line, b"\" time=\"", sb.time.into());
    push_attr(line, b"\" transaction=\"", sb.transaction);
    push_attr(line, b"\" flags=\"", sb.flags.into());
    push_attr(line, b"\" version=\"", sb.version.into());
    push_attr(line, b"\" data_block_size=\"", sb.data_block_size.into());
    push_attr(line, b"\" nr_data_blocks=\"", sb.nr_data_blocks);
    if let Some(snap) = sb.metadata_snap {
        push_attr(line, b"\" metadata_snap=\"", snap);
    }
    line.extend_from_slice(b"\">\n");
}

fn xml_device(line: &mut Vec<u8>, dev: &XmlDevice) {
    push_attr(line, b"  <device dev_id=\"", dev.dev_id);
    push_attr(line, b"\" mapped_blocks=\"", dev.mapped_blocks);
    push_attr(line, b"\" transaction=\"", dev.transaction);
    push_attr(line, b"\" creation_time=\"", dev.creation_time.into());
    push_attr(line, b"\" snap_time=\"", dev.snap_time.into());
    line.extend_from_slice(b"\">\n");
}

fn xml_run(line: &mut Vec<u8>, run: &Run) {
    if run.len == 1 {
        push_attr(line, b"    <single_mapping origin_block=\"", run.origin);
        push_attr(line, b"\" data_block=\"", run.data);
    } else {
        push_attr(line, b"    <range_mapping origin_begin=\"", run.origin);
        push_attr(line, b"\" data_begin=\"", run.data);
        push_attr(line, b"\" length=\"", run.len);
    }
    push_attr(line, b"\" time=\"", run.time.into());
    line.extend_from_slice(b"\"/>\n");
}

fn human_superblock(line: &mut Vec<u8>, sb: &XmlSuperblock) {
    line.extend_from_slice(b"begin superblock: \"");
    line.extend_from_slice(sb.uuid.as_bytes());
    push_attr(line, b"\", ", sb.time.into());
    push_attr(line, b", ", sb.transaction);
    push_attr(line, b", ", sb.flags.into());
    push_attr(line, b", ", sb.version.into());
    push_attr(line, b", ", sb.data_block_size.into());
    push_attr(line, b", ", sb.nr_data_blocks);
    if let Some(snap) = sb.metadata_snap {
        push_attr(line, b", ", snap);
    }
    line.push(b'\n');
}

fn human_device(line: &mut Vec<u8>, dev: &XmlDevice) {
    push_attr(line, b"device: ", dev.dev_id);
    push_attr(line, b"\nmapped_blocks: ", dev.mapped_blocks);
    push_attr(line, b"\ntransaction: ", dev.transaction);
    push_attr(line, b"\ncreation time: ", dev.creation_time.into());
    push_attr(line, b"\nsnap time: ", dev.snap_time.into());
    line.push(b'\n');
}

fn human_run(line: &mut Vec<u8>, run: &Run) {
    if run.len == 1 {
        push_attr(line, b"    ", run.origin);
        push_attr(line, b" -> ", run.data);
    } else {
        // Ranges are printed inclusive; the Run invariant keeps both ends in range.
        let extent = run.len - 1;
        push_attr(line, b"    (", run.origin);
        push_attr(line, b"..", run.origin + extent);
        push_attr(line, b") -> (", run.data);
        push_attr(line, b"..", run.data + extent);
        line.push(b')');
    }
    push_attr(line, b", ", run.time.into());
    line.push(b'\n');
}

/// Appends `prefix` then `value` in decimal.
fn push_attr(line: &mut Vec<u8>, prefix: &[u8], value: u64) {
    line.extend_from_slice(prefix);
    push_u64(line, value);
}

/// Appends `value` in decimal without allocating.
fn push_u64(line: &mut Vec<u8>, mut value: u64) {
    // Two digits per division; u64::MAX has 20 decimal digits.
    const PAIRS: [u8; 200] = {
        let mut table = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            table[2 * i] = b'0' + (i / 10) as u8;
            table[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        table
    };
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while value >= 100 {
        // value % 100 < 100, so the index is in range and the cast lossless.
        let pair = (value % 100) as usize * 2;
        value /= 100;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if value >= 10 {
        let pair = value as usize * 2;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        start -= 1;
        // value < 10 here.
        digits[start] = b'0' + value as u8;
    }
    line.extend_from_slice(&digits[start..]);
}

/// Appends `text` with the five XML special characters escaped.
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    for b in text.bytes() {
        match b {
            b'&' => line.extend_from_slice(b"&amp;"),
            b'<' => line.extend_from_slice(b"&lt;"),
            b'>' => line.extend_from_slice(b"&gt;"),
            b'"' => line.extend_from_slice(b"&quot;"),
            b'\'' => line.extend_from_slice(b"&apos;"),
            _ => line.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> XmlSuperblock {
        XmlSuperblock {
            uuid: String::new(),
            time: 3,
            transaction: 7,
            flags: 0,
            version: 2,
            data_block_size: 128,
            nr_data_blocks: 1000,
            metadata_snap: None,
        }
    }

    fn dev(dev_id: u64) -> XmlDevice {
        XmlDevice { dev_id, mapped_blocks: 0, transaction: 0, creation_time: 0, snap_time: 0 }
    }

    #[test]
    fn push_u64_formats_extremes() {
        for v in (0..100_000).chain([u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000_000]) {
            let mut line = Vec::new();
            push_u64(&mut line, v);
            assert_eq!(line, v.to_string().into_bytes());
        }
    }

    #[test]
    fn runs_merge_across_calls_and_pieces() {
        let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        w.superblock(&sb()).unwrap();
        w.begin_device(&dev(1)).unwrap();
        w.mapping(0, 10, 0).unwrap();
        w.mapping_run(1, 11, 2, 0).unwrap();
        w.mapping(3, 13, 1).unwrap();
        w.mapping(5, 14, 1).unwrap();
        w.end_device().unwrap();
        w.end_superblock().unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            r#"    <range_mapping origin_begin="0" data_begin="10" length="3" time="0"/>"#
        );
        assert_eq!(lines[3], r#"    <single_mapping origin_block="3" data_block="13" time="1"/>"#);
        assert_eq!(lines[4], r#"    <single_mapping origin_block="5" data_block="14" time="1"/>"#);
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        assert!(matches!(w.begin_device(&dev(1)), Err(DumpError::OutOfOrder { .. })));
        w.superblock(&sb()).unwrap();
        assert!(matches!(w.mapping(0, 0, 0), Err(DumpError::OutOfOrder { .. })));
        w.begin_device(&dev(1)).unwrap();
        w.mapping(5, 0, 0).unwrap();
        assert!(matches!(w.mapping(5, 1, 0), Err(DumpError::OriginNotAscending { .. })));
        assert!(matches!(w.mapping_run(9, 0, 0, 0), Err(DumpError::BadRun { .. })));
        assert!(matches!(w.mapping_run(u64::MAX, 0, 2, 0), Err(DumpError::BadRun { .. })));
        assert!(matches!(w.end_superblock(), Err(DumpError::OutOfOrder { .. })));
        w.end_device().unwrap();
        assert!(matches!(w.begin_device(&dev(1)), Err(DumpError::DeviceNotAscending { .. })));
    }

    #[test]
    fn uuid_is_escaped_in_xml_only() {
        let special = XmlSuperblock { uuid: "a\"<&".into(), ..sb() };
        let mut x = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        x.superblock(&special).unwrap();
        x.end_superblock().unwrap();
        let x = String::from_utf8(x.finish().unwrap()).unwrap();
        assert!(x.starts_with("<superblock uuid=\"a&quot;&lt;&amp;\" time=\"3\""), "{x}");
        let mut h = DumpWriter::new(Vec::new(), DumpFormat::HumanReadable);
        h.superblock(&special).unwrap();
        h.end_superblock().unwrap();
        let h = String::from_utf8(h.finish().unwrap()).unwrap();
        assert_eq!(h, "begin superblock: \"a\"<&\", 3, 7, 0, 2, 128, 1000\nend superblock\n");
    }
}
