//! A fast path for the one XML layout that matters for speed: thin_dump 0.9.0's own output,
//! byte for byte (fixed indentation, attribute order, `\n` line ends). It recognises that
//! layout line by line and emits the same events [`super::xml_read::XmlReader`] would.
//!
//! It never rejects anything: on the first line that is not exactly canonical (other spacing,
//! attribute order, entities, a uuid, leading zeros, a number out of range, a zero-length or
//! overflowing run, a run past the data device, a repeated device) it stops with
//! `Ok(false)`, and the caller parses the whole document again with the full reader, which
//! accepts every layout and reports errors with line and column.

use super::xml_read::XmlEvent;
use super::{XmlDevice, XmlSuperblock};
use std::collections::BTreeSet;

/// Feeds the events of `doc` to `f` if the whole document is canonical; `Ok(false)` when it
/// is not (events may already have been fed: the caller restarts from scratch). Errors are
/// `f`'s own.
pub fn parse<E>(doc: &[u8], f: &mut dyn FnMut(XmlEvent) -> Result<(), E>) -> Result<bool, E> {
    let Some((sb, body)) = header(doc) else { return Ok(false) };
    let nr_data_blocks = sb.nr_data_blocks;
    f(XmlEvent::Superblock(sb))?;
    parse_part(body, nr_data_blocks, true, &mut BTreeSet::new(), f)
}

/// A canonical-looking document cut in two at a device line, so the halves can be parsed on
/// two threads: `head` holds whole device elements, `tail` the rest up to `</superblock>`.
pub struct Halves<'a> {
    pub sb: XmlSuperblock,
    pub head: &'a [u8],
    pub tail: &'a [u8],
}

/// Cuts `doc` at the first device line at or after its middle; None when the first line is no
/// canonical superblock or there is no such device line. The parts are checked by
/// [`parse_part`], which rejects a cut that did not fall between device elements.
pub fn split(doc: &[u8]) -> Option<Halves<'_>> {
    let (sb, body) = header(doc)?;
    let start = doc.len() - body.len();
    let mid = (doc.len() / 2).max(start);
    let at = mid + memchr::memmem::find(&doc[mid..], b"\n  <device ")? + 1;
    (at > start).then(|| Halves { sb, head: &doc[start..at], tail: &doc[at..] })
}

/// The superblock line and the rest of the document after it.
fn header(doc: &[u8]) -> Option<(XmlSuperblock, &[u8])> {
    let end = memchr::memchr(b'\n', doc).unwrap_or(doc.len());
    let sb = superblock(&doc[..end])?;
    Some((sb, doc.get(end + 1..).unwrap_or_default()))
}

/// Parses device elements (and, when `last`, the closing `</superblock>` and at most a final
/// newline; otherwise the part must end right after a device element's line). Device ids
/// seen go into `ids`; a repeated one is not canonical. See [`parse`] for the result.
pub fn parse_part<E>(
    part: &[u8],
    nr_data_blocks: u64,
    last: bool,
    ids: &mut BTreeSet<u64>,
    f: &mut dyn FnMut(XmlEvent) -> Result<(), E>,
) -> Result<bool, E> {
    // memchr finds line ends many bytes at a time; pieces as `split` would give them.
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', part).chain(std::iter::once(part.len()));
    let lines = std::iter::from_fn(move || {
        let end = ends.next()?;
        let line = &part[start..end];
        start = end + 1;
        Some(line)
    });
    let mut in_device = false;
    let mut ended = false;
    let mut lines = lines.peekable();
    while let Some(line) = lines.next() {
        if ended {
            // Only the final newline may follow `</superblock>`: one empty last piece.
            return Ok(line.is_empty() && lines.peek().is_none());
        }
        if in_device {
            if line == b"  </device>" {
                in_device = false;
                f(XmlEvent::EndDevice)?;
            } else if let Some(ev) = mapping(line, nr_data_blocks) {
                f(ev)?;
            } else {
                return Ok(false);
            }
        } else if last && line == b"</superblock>" {
            ended = true;
            f(XmlEvent::EndSuperblock)?;
        } else if !last && line.is_empty() && lines.peek().is_none() {
            return Ok(true);
        } else if let Some(d) = device(line) {
            if !ids.insert(d.dev_id) {
                return Ok(false);
            }
            in_device = true;
            f(XmlEvent::BeginDevice(d))?;
        } else {
            return Ok(false);
        }
    }
    Ok(ended)
}

/// Parses `name="digits"` at the start of `s`, returning the number and the rest.
fn attr<'a>(s: &'a [u8], name: &[u8], max: u64) -> Option<(u64, &'a [u8])> {
    let s = s.strip_prefix(name)?.strip_prefix(b"=\"")?;
    // One pass: digits up to the closing quote; no leading zero unless the number is 0.
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && s[0] == b'0') || s.get(digits) != Some(&b'"') {
        return None;
    }
    let mut n: u64 = 0;
    for &d in &s[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    (n <= max).then_some((n, &s[digits + 1..]))
}

const U32: u64 = u32::MAX as u64;

fn superblock(line: &[u8]) -> Option<XmlSuperblock> {
    let s = line.strip_prefix(b"<superblock uuid=\"\" ")?;
    let (time, s) = attr(s, b"time", U32)?;
    let (transaction, s) = attr(s.strip_prefix(b" ")?, b"transaction", u64::MAX)?;
    let (flags, s) = attr(s.strip_prefix(b" ")?, b"flags", U32)?;
    let (version, s) = attr(s.strip_prefix(b" ")?, b"version", U32)?;
    let (data_block_size, s) = attr(s.strip_prefix(b" ")?, b"data_block_size", U32)?;
    let (nr_data_blocks, s) = attr(s.strip_prefix(b" ")?, b"nr_data_blocks", u64::MAX)?;
    (s == b">").then(|| XmlSuperblock {
        uuid: String::new(),
        time: time as u32,
        transaction,
        flags: flags as u32,
        version: version as u32,
        data_block_size: data_block_size as u32,
        nr_data_blocks,
        metadata_snap: None,
    })
}

fn device(line: &[u8]) -> Option<XmlDevice> {
    let s = line.strip_prefix(b"  <device ")?;
    let (dev_id, s) = attr(s, b"dev_id", u64::MAX)?;
    let (mapped_blocks, s) = attr(s.strip_prefix(b" ")?, b"mapped_blocks", u64::MAX)?;
    let (transaction, s) = attr(s.strip_prefix(b" ")?, b"transaction", u64::MAX)?;
    let (creation_time, s) = attr(s.strip_prefix(b" ")?, b"creation_time", U32)?;
    let (snap_time, s) = attr(s.strip_prefix(b" ")?, b"snap_time", U32)?;
    (s == b">").then_some(XmlDevice {
        dev_id,
        mapped_blocks,
        transaction,
        creation_time: creation_time as u32,
        snap_time: snap_time as u32,
    })
}

fn mapping(line: &[u8], nr_data_blocks: u64) -> Option<XmlEvent> {
    let (origin_begin, data_begin, length, s) =
        if let Some(s) = line.strip_prefix(b"    <range_mapping ") {
            let (o, s) = attr(s, b"origin_begin", u64::MAX)?;
            let (d, s) = attr(s.strip_prefix(b" ")?, b"data_begin", u64::MAX)?;
            let (l, s) = attr(s.strip_prefix(b" ")?, b"length", u64::MAX)?;
            (o, d, l, s)
        } else {
            let s = line.strip_prefix(b"    <single_mapping ")?;
            let (o, s) = attr(s, b"origin_block", u64::MAX)?;
            let (d, s) = attr(s.strip_prefix(b" ")?, b"data_block", u64::MAX)?;
            (o, d, 1, s)
        };
    let (time, s) = attr(s.strip_prefix(b" ")?, b"time", U32)?;
    // Leave every doubtful run to the full reader, which reports it precisely.
    let fits = length >= 1
        && origin_begin.checked_add(length - 1).is_some()
        && data_begin.checked_add(length).is_some_and(|end| end <= nr_data_blocks);
    (s == b"/>" && fits).then_some(XmlEvent::Mapping {
        origin_begin,
        data_begin,
        length,
        time: time as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::xml_read::parse_all;

    fn fast(doc: &str) -> Option<Vec<XmlEvent>> {
        let mut out = Vec::new();
        let ok = parse::<()>(doc.as_bytes(), &mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        ok.then_some(out)
    }

    const DOC: &str = "<superblock uuid=\"\" time=\"3\" transaction=\"7\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"1000\">\n  <device dev_id=\"1\" mapped_blocks=\"5\" transaction=\"2\" creation_time=\"0\" snap_time=\"1\">\n    <range_mapping origin_begin=\"0\" data_begin=\"10\" length=\"3\" time=\"0\"/>\n    <single_mapping origin_block=\"10\" data_block=\"20\" time=\"1\"/>\n  </device>\n  <device dev_id=\"5\" mapped_blocks=\"0\" transaction=\"3\" creation_time=\"1\" snap_time=\"1\">\n  </device>\n</superblock>\n";

    #[test]
    fn canonical_documents_give_the_full_readers_events() {
        assert_eq!(fast(DOC).unwrap(), parse_all(DOC.as_bytes()).unwrap());
        let no_newline = DOC.trim_end();
        assert_eq!(fast(no_newline).unwrap(), parse_all(no_newline.as_bytes()).unwrap());
    }

    #[test]
    fn halves_give_the_whole_documents_events() {
        let h = split(DOC.as_bytes()).expect("DOC has a second device");
        let mut out = vec![XmlEvent::Superblock(h.sb.clone())];
        let mut ids = BTreeSet::new();
        for (part, last) in [(h.head, false), (h.tail, true)] {
            let ok = parse_part::<()>(part, h.sb.nr_data_blocks, last, &mut ids, &mut |e| {
                out.push(e);
                Ok(())
            });
            assert_eq!(ok, Ok(true));
        }
        assert_eq!(out, fast(DOC).unwrap());
        assert!(std::str::from_utf8(h.tail).unwrap().starts_with("  <device dev_id=\"5\""));
        // A head that stops inside a device element is not canonical.
        let cut = DOC.find("    <single").unwrap();
        let head = &DOC.as_bytes()[DOC.find('\n').unwrap() + 1..cut];
        let r = parse_part::<()>(head, 1000, false, &mut BTreeSet::new(), &mut |_| Ok(()));
        assert_eq!(r, Ok(false));
    }

    #[test]
    fn anything_unusual_falls_back() {
        for (from, to) in [
            ("time=\"3\"", "time=\"03\""),
            ("uuid=\"\"", "uuid=\"x\""),
            ("length=\"3\"", "length=\"0\""),
            ("data_begin=\"10\"", "data_begin=\"999\""),
            ("dev_id=\"5\"", "dev_id=\"1\""),
            ("  </device>\n  <device", "  </device>\n <device"),
            ("</superblock>\n", "</superblock>\n<x/>\n"),
            ("time=\"1\"/>", "time=\"4294967296\"/>"),
            ("\n  </device>\n  <device", "\n  </device>\n\n  <device"),
        ] {
            let doc = DOC.replacen(from, to, 1);
            assert!(fast(&doc).is_none(), "{from} -> {to} should fall back");
        }
        assert!(fast(&DOC[..DOC.len() - 20]).is_none(), "truncated");
    }
}
