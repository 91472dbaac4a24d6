//! Streaming parser of thin_dump / thin_restore XML (spec §10.3), built on quick-xml.
//!
//! Acceptance follows `thin_restore` 0.9.0 where that is sound, and is stricter where the tool
//! silently corrupts:
//! - Elements: only `superblock` (the one root), `device` (in `superblock`), `range_mapping`
//!   and `single_mapping` (in `device`, with no child elements). Anything else is an error.
//! - thin_dump 1.x's shared runs: a `def name="N"` (in `superblock`) holds mappings and
//!   `ref`s like a device does, and `ref name="N"` (in a `device` or a `def`) stands for the
//!   runs of the def of that name, in order, at its place. The reader expands each ref, so its
//!   consumers see a device's mappings as if they were written out. A name is defined once,
//!   and a ref may name only a def closed before it (so refs cannot loop). The defs' runs are
//!   held in memory, at most [`MAX_SHARED_RUNS`] (a ref inside a def counts as a copy), and the
//!   devices' refs expand to at most [`MAX_REFERENCED_RUNS`]: nested defs double at every
//!   level, and a document of a few kilobytes must not stand for 2^60 mappings.
//! - Attributes: the tool's required set; unknown attributes are ignored; `flags` defaults to 0,
//!   `version` to 1, `metadata_snap` to none. `mapped_blocks` is passed through as written.
//! - Numbers: plain unsigned decimal (leading zeros allowed), in range of the on-disk field.
//!   (The tool's `lexical_cast` also takes `+5` and wraps `-1`, and truncates 64-bit times and
//!   device ids; those are rejected here.)
//! - Runs: `length` ≥ 1 (the tool silently accepts 0) and the last origin and data block must
//!   fit `u64`; every data block must be `< nr_data_blocks`; a repeated `dev_id` is an error.
//! - Text and CDATA inside elements are ignored (as by the tool); non-blank text outside the
//!   root is an error. Comments and processing instructions are ignored anywhere; an XML
//!   declaration only as the very first thing, a DOCTYPE only before the root. Only the five
//!   predefined entities and character references are expanded.
//!
//! Not checked (left to the consumer, as the tool does): origin order and repeated origins
//! within a device (thin_restore keeps the last), `mapped_blocks` agreement, times versus the
//! superblock time.
//!
//! Every error is a [`ParseError`]: a [`ParseErrorKind`] plus the 1-based line and column (in
//! characters; lines end at `\n`) of the offending markup or attribute. The parser never panics
//! and holds at most one element's bytes, the set of device ids and the defs' runs in memory.

pub use super::tracked::Position;
use super::tracked::Tracked;
use super::types::{XmlDevice, XmlSuperblock};
use super::xml_error::at;
pub use super::xml_error::{ParseError, ParseErrorKind};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

/// Runs all `def`s together may hold (a ref inside a def counts as a copy of its runs): 128
/// MiB of them. 1.x writes a def per shared subtree, so this is terabytes of shared data.
pub const MAX_SHARED_RUNS: u64 = 1 << 22;

/// Runs the devices' `ref`s may expand to, all together.
pub const MAX_REFERENCED_RUNS: u64 = 1 << 26;

/// A mapping run kept in a def: (origin_begin, data_begin, length, time).
type SharedRun = (u64, u64, u64, u32);

/// One parsed item, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlEvent {
    Superblock(XmlSuperblock),
    BeginDevice(XmlDevice),
    /// `length` mappings `origin_begin + i → data_begin + i` at `time`; a `single_mapping` has
    /// length 1. Invariants: `length ≥ 1`, the run's last origin fits `u64`, and its last data
    /// block is `< nr_data_blocks` of the superblock.
    Mapping {
        origin_begin: u64,
        data_begin: u64,
        length: u64,
        time: u32,
    },
    EndDevice,
    EndSuperblock,
}

/// The elements of the format (`def` and `ref`: thin_dump 1.x's shared runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Superblock,
    Device,
    RangeMapping,
    SingleMapping,
    Def,
    Ref,
}

impl Element {
    fn from_name(name: &[u8]) -> Option<Element> {
        match name {
            b"superblock" => Some(Element::Superblock),
            b"device" => Some(Element::Device),
            b"range_mapping" => Some(Element::RangeMapping),
            b"single_mapping" => Some(Element::SingleMapping),
            b"def" => Some(Element::Def),
            b"ref" => Some(Element::Ref),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Element::Superblock => "superblock",
            Element::Device => "device",
            Element::RangeMapping => "range_mapping",
            Element::SingleMapping => "single_mapping",
            Element::Def => "def",
            Element::Ref => "ref",
        }
    }

    /// Whether this element may appear in `top` (`None`: the document root).
    fn allowed_in(self, top: Option<Element>) -> bool {
        match self {
            Element::Superblock => top.is_none(),
            Element::Device | Element::Def => top == Some(Element::Superblock),
            Element::RangeMapping | Element::SingleMapping | Element::Ref => {
                matches!(top, Some(Element::Device | Element::Def))
            }
        }
    }
}

/// What one tokenizer event amounts to.
enum Step {
    /// Nothing to report (whitespace, comments, a mapping's end tag, …).
    Nothing,
    Event(XmlEvent),
    /// The document ended well.
    End,
}

/// The streaming parser. Pull events with [`XmlReader::next_event`] or iterate.
pub struct XmlReader<R: Read> {
    xml: quick_xml::Reader<Tracked<R>>,
    buf: Vec<u8>,
    /// Open elements; at most 3 deep by the nesting rules.
    open: Vec<Element>,
    /// End event of an empty-element `device`/`superblock`, due next.
    pending: Option<XmlEvent>,
    nr_data_blocks: u64,
    dev_ids: BTreeSet<u64>,
    root_seen: bool,
    root_done: bool,
    any_event: bool,
    /// The previous event was text, whose read also consumed the next markup's `<`.
    after_text: bool,
    /// Set once the input ended or failed; returned again on every later call.
    finished: Option<Result<(), ParseError>>,
    /// Every closed `def` by name, its own refs already expanded.
    defs: BTreeMap<String, Arc<[SharedRun]>>,
    /// The `def` open now: its name and its runs so far.
    def: Option<(String, Vec<SharedRun>)>,
    /// A device's `ref` being emitted: the def's runs and the index of the next one.
    expanding: Option<(Arc<[SharedRun]>, usize)>,
    /// Runs held by the defs, and runs the devices' refs expanded to, so far.
    shared_runs: u64,
    referenced_runs: u64,
}

impl<R: Read> XmlReader<R> {
    /// A parser of `input`, which it buffers itself (pass an unbuffered reader).
    pub fn new(input: R) -> Self {
        let mut xml = quick_xml::Reader::from_reader(Tracked::new(input));
        let config = xml.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        XmlReader {
            xml,
            buf: Vec::with_capacity(256),
            open: Vec::with_capacity(3),
            pending: None,
            nr_data_blocks: 0,
            dev_ids: BTreeSet::new(),
            root_seen: false,
            root_done: false,
            any_event: false,
            after_text: false,
            finished: None,
            defs: BTreeMap::new(),
            def: None,
            expanding: None,
            shared_runs: 0,
            referenced_runs: 0,
        }
    }

    /// The next event; `Ok(None)` once the document ended well. After an error every call
    /// returns that error again.
    pub fn next_event(&mut self) -> Result<Option<XmlEvent>, ParseError> {
        if let Some(done) = &self.finished {
            return done.clone().map(|()| None);
        }
        let result = self.pull();
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => self.finished = Some(Ok(())),
            Err(e) => self.finished = Some(Err(e.clone())),
        }
        result
    }

    fn pull(&mut self) -> Result<Option<XmlEvent>, ParseError> {
        if let Some(event) = self.next_expanded() {
            return Ok(Some(event));
        }
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = loop {
            buf.clear();
            let start = self.markup_start();
            let event = self.xml.read_event_into(&mut buf);
            match self.on_event(event, start) {
                Ok(Step::Nothing) => continue,
                Ok(Step::Event(event)) => break Ok(Some(event)),
                Ok(Step::End) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        result
    }

    /// Where the next markup's `<` is: after a text event it was already consumed.
    fn markup_start(&self) -> Position {
        let mut at = self.xml.get_ref().at;
        if self.after_text {
            at.column = at.column.saturating_sub(1).max(1);
        }
        at
    }

    fn on_event(
        &mut self,
        event: quick_xml::Result<Event<'_>>,
        start: Position,
    ) -> Result<Step, ParseError> {
        let event = event.map_err(|e| self.tokenizer_error(&e, start))?;
        let was_first = !self.any_event;
        self.any_event = true;
        self.after_text = matches!(event, Event::Text(_));
        match event {
            Event::Start(tag) => {
                Ok(self.on_start(&tag, start, false)?.map_or(Step::Nothing, Step::Event))
            }
            Event::Empty(tag) => {
                Ok(self.on_start(&tag, start, true)?.map_or(Step::Nothing, Step::Event))
            }
            Event::End(tag) => {
                let closed = self.on_end(tag.name().as_ref(), start)?;
                Ok(closed.map_or(Step::Nothing, Step::Event))
            }
            Event::Text(text) => self.on_text(is_blank(&text), start).map(|()| Step::Nothing),
            Event::CData(_) => self.on_text(false, start).map(|()| Step::Nothing),
            Event::Comment(_) | Event::PI(_) => Ok(Step::Nothing),
            Event::Decl(_) if was_first => Ok(Step::Nothing),
            Event::Decl(_) => Err(at(start, ParseErrorKind::MisplacedProlog("XML declaration"))),
            Event::DocType(_) if !self.root_seen => Ok(Step::Nothing),
            Event::DocType(_) => Err(at(start, ParseErrorKind::MisplacedProlog("DOCTYPE"))),
            Event::Eof => self.on_eof().map(|()| Step::End),
        }
    }

    fn tokenizer_error(&self, error: &quick_xml::Error, start: Position) -> ParseError {
        match error {
            quick_xml::Error::Io(e) => at(start, ParseErrorKind::Io(e.to_string())),
            other => at(start, ParseErrorKind::Syntax(other.to_string())),
        }
    }

    /// Character data is ignored inside the root (as by the tool) and must be blank outside.
    fn on_text(&self, blank: bool, start: Position) -> Result<(), ParseError> {
        if self.open.is_empty() && !blank {
            return Err(at(start, ParseErrorKind::TextOutsideSuperblock));
        }
        Ok(())
    }

    fn on_eof(&mut self) -> Result<(), ParseError> {
        let end = self.xml.get_ref().at;
        if let Some(open) = self.open.last() {
            return Err(at(end, ParseErrorKind::UnexpectedEof { open: open.name() }));
        }
        if !self.root_done {
            return Err(at(end, ParseErrorKind::NoSuperblock));
        }
        Ok(())
    }

    /// The event a start tag gives, if any: a mapping inside a `def` is kept, not emitted,
    /// and a device's `ref` emits its def's first run (the rest follow from `pull`).
    fn on_start(
        &mut self,
        tag: &BytesStart<'_>,
        start: Position,
        empty: bool,
    ) -> Result<Option<XmlEvent>, ParseError> {
        let name = tag.name();
        let Some(element) = Element::from_name(name.as_ref()) else {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            return Err(at(start, ParseErrorKind::UnknownElement(name)));
        };
        self.check_placement(element, start)?;
        let attrs = Attrs { tag, start, element: element.name() };
        let event = match element {
            Element::Superblock => Some(self.superblock(&attrs)?),
            Element::Device => Some(self.device(&attrs)?),
            Element::RangeMapping => self.keep_in_def(self.range_mapping(&attrs)?, &attrs)?,
            Element::SingleMapping => self.keep_in_def(self.single_mapping(&attrs)?, &attrs)?,
            Element::Def => {
                self.begin_def(&attrs)?;
                None
            }
            Element::Ref => self.reference(&attrs)?,
        };
        if empty {
            self.pending = self.close(element);
        } else {
            self.open.push(element);
        }
        Ok(event)
    }

    fn check_placement(&mut self, element: Element, start: Position) -> Result<(), ParseError> {
        let top = self.open.last().copied();
        if element.allowed_in(top) && !(top.is_none() && self.root_seen) {
            if element == Element::Superblock {
                self.root_seen = true;
            }
            return Ok(());
        }
        let context = match top {
            None if self.root_seen => "after the superblock",
            None => "at the top level",
            Some(Element::Superblock) => "directly inside `superblock`",
            Some(Element::Device) => "inside `device`",
            Some(Element::Def) => "inside `def`",
            Some(Element::RangeMapping | Element::SingleMapping) => "inside a mapping",
            Some(Element::Ref) => "inside `ref`",
        };
        Err(at(start, ParseErrorKind::Misplaced { element: element.name(), context }))
    }

    fn on_end(&mut self, name: &[u8], start: Position) -> Result<Option<XmlEvent>, ParseError> {
        let open = self.open.last().copied();
        match open {
            Some(element) if element.name().as_bytes() == name => {
                self.open.pop();
                Ok(self.close(element))
            }
            _ => {
                let found = String::from_utf8_lossy(name).into_owned();
                let open = open.map(Element::name);
                Err(at(start, ParseErrorKind::MismatchedEnd { open, found }))
            }
        }
    }

    /// The event (if any) that closing `element` produces.
    fn close(&mut self, element: Element) -> Option<XmlEvent> {
        match element {
            Element::Superblock => {
                self.root_done = true;
                Some(XmlEvent::EndSuperblock)
            }
            Element::Device => Some(XmlEvent::EndDevice),
            Element::Def => {
                if let Some((name, runs)) = self.def.take() {
                    self.defs.insert(name, runs.into());
                }
                None
            }
            Element::RangeMapping | Element::SingleMapping | Element::Ref => None,
        }
    }

    /// A `def` opens: its name must be new.
    fn begin_def(&mut self, attrs: &Attrs<'_, '_>) -> Result<(), ParseError> {
        let [name] = attrs.collect(["name"])?;
        let name_attr = attrs.required(name, "name")?;
        let name = attrs.text(&name_attr)?;
        if self.defs.contains_key(&name) {
            return Err(at(attrs.position_of(&name_attr), ParseErrorKind::DuplicateDef(name)));
        }
        self.def = Some((name, Vec::new()));
        Ok(())
    }

    /// A mapping: kept when it is inside a `def` (within [`MAX_SHARED_RUNS`]), else emitted.
    fn keep_in_def(
        &mut self,
        event: XmlEvent,
        attrs: &Attrs<'_, '_>,
    ) -> Result<Option<XmlEvent>, ParseError> {
        let XmlEvent::Mapping { origin_begin, data_begin, length, time } = event else {
            return Ok(Some(event));
        };
        if self.def.is_none() {
            return Ok(Some(event));
        }
        self.count_shared(1, attrs.start)?;
        if let Some((_, runs)) = &mut self.def {
            runs.push((origin_begin, data_begin, length, time));
        }
        Ok(None)
    }

    fn count_shared(&mut self, runs: u64, start: Position) -> Result<(), ParseError> {
        self.shared_runs = self.shared_runs.saturating_add(runs);
        if self.shared_runs > MAX_SHARED_RUNS {
            return Err(at(start, ParseErrorKind::TooManySharedRuns { max: MAX_SHARED_RUNS }));
        }
        Ok(())
    }

    /// A `ref`: inside a `def` its runs are copied into the def; inside a device they are
    /// emitted in order, the first now.
    fn reference(&mut self, attrs: &Attrs<'_, '_>) -> Result<Option<XmlEvent>, ParseError> {
        let [name] = attrs.collect(["name"])?;
        let name_attr = attrs.required(name, "name")?;
        let name = attrs.text(&name_attr)?;
        let Some(runs) = self.defs.get(&name).cloned() else {
            return Err(at(attrs.position_of(&name_attr), ParseErrorKind::UnknownDef(name)));
        };
        let n = runs.len() as u64;
        if self.def.is_some() {
            self.count_shared(n, attrs.start)?;
            if let Some((_, into)) = &mut self.def {
                into.extend_from_slice(&runs);
            }
            return Ok(None);
        }
        self.referenced_runs = self.referenced_runs.saturating_add(n);
        if self.referenced_runs > MAX_REFERENCED_RUNS {
            let kind = ParseErrorKind::TooManyReferencedRuns { max: MAX_REFERENCED_RUNS };
            return Err(at(attrs.start, kind));
        }
        self.expanding = Some((runs, 0));
        Ok(self.next_expanded())
    }

    /// The next run of the `ref` being emitted, if any.
    fn next_expanded(&mut self) -> Option<XmlEvent> {
        let (runs, next) = self.expanding.as_mut()?;
        let run = runs.get(*next).copied();
        *next += 1;
        if *next >= runs.len() {
            self.expanding = None;
        }
        run.map(|(origin_begin, data_begin, length, time)| XmlEvent::Mapping {
            origin_begin,
            data_begin,
            length,
            time,
        })
    }

    fn superblock(&mut self, attrs: &Attrs<'_, '_>) -> Result<XmlEvent, ParseError> {
        let [uuid, time, transaction, flags, version, data_block_size, nr_data_blocks, snap] =
            attrs.collect([
                "uuid",
                "time",
                "transaction",
                "flags",
                "version",
                "data_block_size",
                "nr_data_blocks",
                "metadata_snap",
            ])?;
        let sb = XmlSuperblock {
            uuid: attrs.text(&attrs.required(uuid, "uuid")?)?,
            time: attrs.u32(&attrs.required(time, "time")?)?,
            transaction: attrs.u64(&attrs.required(transaction, "transaction")?)?,
            flags: flags.as_ref().map(|v| attrs.u32(v)).transpose()?.unwrap_or(0),
            version: version.as_ref().map(|v| attrs.u32(v)).transpose()?.unwrap_or(1),
            data_block_size: attrs.u32(&attrs.required(data_block_size, "data_block_size")?)?,
            nr_data_blocks: attrs.u64(&attrs.required(nr_data_blocks, "nr_data_blocks")?)?,
            metadata_snap: snap.as_ref().map(|v| attrs.u64(v)).transpose()?,
        };
        self.nr_data_blocks = sb.nr_data_blocks;
        Ok(XmlEvent::Superblock(sb))
    }

    fn device(&mut self, attrs: &Attrs<'_, '_>) -> Result<XmlEvent, ParseError> {
        let [dev_id, mapped_blocks, transaction, creation_time, snap_time] = attrs.collect([
            "dev_id",
            "mapped_blocks",
            "transaction",
            "creation_time",
            "snap_time",
        ])?;
        let dev_id_attr = attrs.required(dev_id, "dev_id")?;
        let dev = XmlDevice {
            dev_id: attrs.u32(&dev_id_attr)?.into(),
            mapped_blocks: attrs.u64(&attrs.required(mapped_blocks, "mapped_blocks")?)?,
            transaction: attrs.u64(&attrs.required(transaction, "transaction")?)?,
            creation_time: attrs.u32(&attrs.required(creation_time, "creation_time")?)?,
            snap_time: attrs.u32(&attrs.required(snap_time, "snap_time")?)?,
        };
        if !self.dev_ids.insert(dev.dev_id) {
            let position = attrs.position_of(&dev_id_attr);
            return Err(at(position, ParseErrorKind::DuplicateDevice(dev.dev_id)));
        }
        Ok(XmlEvent::BeginDevice(dev))
    }

    fn range_mapping(&self, attrs: &Attrs<'_, '_>) -> Result<XmlEvent, ParseError> {
        let [origin, data, length, time] =
            attrs.collect(["origin_begin", "data_begin", "length", "time"])?;
        let origin = attrs.required(origin, "origin_begin")?;
        let data = attrs.required(data, "data_begin")?;
        let length = attrs.required(length, "length")?;
        let origin_begin = attrs.u64(&origin)?;
        let data_begin = attrs.u64(&data)?;
        let length_value = attrs.u64(&length)?;
        let time = attrs.u32(&attrs.required(time, "time")?)?;
        let Some(extent) = length_value.checked_sub(1) else {
            return Err(at(attrs.position_of(&length), ParseErrorKind::ZeroLength));
        };
        for (begin, attr) in [(origin_begin, &origin), (data_begin, &data)] {
            if begin.checked_add(extent).is_none() {
                let kind = ParseErrorKind::RunOverflow { attribute: attr.name };
                return Err(at(attrs.position_of(attr), kind));
            }
        }
        self.check_data_end(data_begin, extent, attrs.position_of(&data))?;
        Ok(XmlEvent::Mapping { origin_begin, data_begin, length: length_value, time })
    }

    fn single_mapping(&self, attrs: &Attrs<'_, '_>) -> Result<XmlEvent, ParseError> {
        let [origin, data, time] = attrs.collect(["origin_block", "data_block", "time"])?;
        let origin_begin = attrs.u64(&attrs.required(origin, "origin_block")?)?;
        let data = attrs.required(data, "data_block")?;
        let data_begin = attrs.u64(&data)?;
        let time = attrs.u32(&attrs.required(time, "time")?)?;
        self.check_data_end(data_begin, 0, attrs.position_of(&data))?;
        Ok(XmlEvent::Mapping { origin_begin, data_begin, length: 1, time })
    }

    /// thin_restore's check: every data block of the run is `< nr_data_blocks`.
    fn check_data_end(
        &self,
        begin: u64,
        extent: u64,
        position: Position,
    ) -> Result<(), ParseError> {
        // The caller checked that begin + extent fits.
        let last = begin + extent;
        if last < self.nr_data_blocks {
            return Ok(());
        }
        let data_block = begin.max(self.nr_data_blocks);
        let kind =
            ParseErrorKind::BeyondDataDevice { data_block, nr_data_blocks: self.nr_data_blocks };
        Err(at(position, kind))
    }
}

impl<R: Read> Iterator for XmlReader<R> {
    type Item = Result<XmlEvent, ParseError>;

    /// Yields each event, then at most one error; `None` after the end or an error.
    fn next(&mut self) -> Option<Self::Item> {
        if self.finished.is_some() {
            return None;
        }
        self.next_event().transpose()
    }
}

/// Parses a whole document held in memory.
pub fn parse_all(text: &[u8]) -> Result<Vec<XmlEvent>, ParseError> {
    XmlReader::new(text).collect()
}

/// One attribute's raw value and its byte offset inside the tag (after the `<`).
struct AttrValue<'a> {
    name: &'static str,
    raw: Cow<'a, [u8]>,
    offset: usize,
}

/// Attribute access for one element, with positions for error messages.
struct Attrs<'t, 'a> {
    tag: &'t BytesStart<'a>,
    /// Position of the tag's `<`.
    start: Position,
    element: &'static str,
}

impl<'t, 'a> Attrs<'t, 'a> {
    /// The values of `names`, in that order; other attributes are ignored.
    fn collect<const N: usize>(
        &self,
        names: [&'static str; N],
    ) -> Result<[Option<AttrValue<'t>>; N], ParseError> {
        let mut values: [Option<AttrValue<'t>>; N] = std::array::from_fn(|_| None);
        for attr in self.tag.attributes() {
            let attr = attr.map_err(|e| self.attr_error(&e))?;
            let key = attr.key.as_ref();
            if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
                let offset = offset_in(self.tag, key);
                values[i] = Some(AttrValue { name: names[i], raw: attr.value, offset });
            }
        }
        Ok(values)
    }

    fn required(
        &self,
        value: Option<AttrValue<'t>>,
        attribute: &'static str,
    ) -> Result<AttrValue<'t>, ParseError> {
        value.ok_or_else(|| {
            at(self.start, ParseErrorKind::MissingAttribute { element: self.element, attribute })
        })
    }

    fn position_of(&self, value: &AttrValue<'_>) -> Position {
        self.position_at(value.offset)
    }

    /// Position of byte `offset` of the tag content (which starts after the `<`).
    fn position_at(&self, offset: usize) -> Position {
        let content: &[u8] = self.tag;
        let offset = offset.min(content.len());
        let after_lt = Position { column: self.start.column + 1, ..self.start };
        after_lt.advanced(&content[..offset])
    }

    fn attr_error(&self, error: &AttrError) -> ParseError {
        let offset = match *error {
            AttrError::ExpectedEq(p)
            | AttrError::ExpectedValue(p)
            | AttrError::UnquotedValue(p)
            | AttrError::ExpectedQuote(p, _)
            | AttrError::Duplicated(p, _) => p,
        };
        at(self.position_at(offset), ParseErrorKind::Syntax(error.to_string()))
    }

    fn text(&self, value: &AttrValue<'_>) -> Result<String, ParseError> {
        let syntax = |msg: String| at(self.position_of(value), ParseErrorKind::Syntax(msg));
        let raw = std::str::from_utf8(&value.raw).map_err(|e| syntax(e.to_string()))?;
        let text = quick_xml::escape::unescape(raw).map_err(|e| syntax(e.to_string()))?;
        Ok(text.into_owned())
    }

    fn u32(&self, value: &AttrValue<'_>) -> Result<u32, ParseError> {
        let n = self.number(value, u32::MAX.into())?;
        // number() checked n <= u32::MAX.
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn u64(&self, value: &AttrValue<'_>) -> Result<u64, ParseError> {
        self.number(value, u64::MAX)
    }

    /// Plain unsigned decimal, at most `max`; entity references are expanded first.
    fn number(&self, value: &AttrValue<'_>, max: u64) -> Result<u64, ParseError> {
        let text: Cow<'_, [u8]> = if value.raw.contains(&b'&') {
            Cow::Owned(self.text(value)?.into_bytes())
        } else {
            Cow::Borrowed(&value.raw)
        };
        let shown = || String::from_utf8_lossy(&text).into_owned();
        let (element, attribute) = (self.element, value.name);
        match parse_decimal(&text) {
            Some(n) if n <= max => Ok(n),
            Some(_) | None if is_decimal(&text) => {
                let kind = ParseErrorKind::OutOfRange { element, attribute, value: shown(), max };
                Err(at(self.position_of(value), kind))
            }
            _ => {
                let kind = ParseErrorKind::NotANumber { element, attribute, value: shown() };
                Err(at(self.position_of(value), kind))
            }
        }
    }
}

/// Byte offset of `part` (a sub-slice of the tag) within the tag content.
fn offset_in(tag: &BytesStart<'_>, part: &[u8]) -> usize {
    let content: &[u8] = tag;
    (part.as_ptr() as usize).saturating_sub(content.as_ptr() as usize).min(content.len())
}

/// XML whitespace only.
fn is_blank(text: &[u8]) -> bool {
    text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn is_decimal(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(u8::is_ascii_digit)
}

/// The value of a non-empty all-digit string, or `None` if not decimal or above `u64::MAX`.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if !is_decimal(text) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing_bounds() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b" 1"), None);
    }
}
