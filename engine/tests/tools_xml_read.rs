//! The thin_dump XML parser on its own: accepted forms, every rejection with its exact line and
//! column, and a property test that arbitrary bytes never panic it.

use engine::tools::xml_read::{parse_all, ParseError, ParseErrorKind, XmlEvent, XmlReader};
use engine::tools::{XmlDevice, XmlSuperblock};
use proptest::prelude::*;

const SB: &str =
    r#"<superblock uuid="" time="3" transaction="7" data_block_size="128" nr_data_blocks="1000">"#;
const DEV: &str =
    r#"<device dev_id="1" mapped_blocks="0" transaction="2" creation_time="0" snap_time="1">"#;

fn error_of(xml: &str) -> ParseError {
    match parse_all(xml.as_bytes()) {
        Ok(events) => panic!("accepted {xml:?}: {events:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position and its full message.
fn assert_error(xml: &str, line: u64, column: u64, message: &str) {
    let e = error_of(xml);
    assert_eq!((e.line, e.column), (line, column), "{e} for {xml:?}");
    assert_eq!(e.to_string(), format!("line {line}, column {column}: {message}"));
}

fn doc(body: &str) -> String {
    format!("{SB}\n{body}\n</superblock>\n")
}

#[test]
fn defaults_and_ignored_things() {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<!-- c -->\n{}\n  {DEV}text<?pi x?><![CDATA[z]]>\n    \
         <single_mapping origin_block=\"5\" data_block=\"6\" time=\"1\" extra=\"x\"/>\n  \
         </device>\n<device dev_id=\"2\" mapped_blocks=\"9\" transaction=\"0\" \
         creation_time=\"0\" snap_time=\"0\"/>\n</superblock>\n<!-- after -->\n",
        SB.replace("uuid=\"\"", "uuid=\"a&amp;b\"")
    );
    let events = parse_all(xml.as_bytes()).unwrap();
    let sb = XmlSuperblock {
        uuid: "a&b".into(),
        time: 3,
        transaction: 7,
        flags: 0,
        version: 1,
        data_block_size: 128,
        nr_data_blocks: 1000,
        metadata_snap: None,
    };
    let dev1 =
        XmlDevice { dev_id: 1, mapped_blocks: 0, transaction: 2, creation_time: 0, snap_time: 1 };
    let dev2 = XmlDevice { dev_id: 2, mapped_blocks: 9, ..XmlDevice::default() };
    assert_eq!(
        events,
        vec![
            XmlEvent::Superblock(sb),
            XmlEvent::BeginDevice(dev1),
            XmlEvent::Mapping { origin_begin: 5, data_begin: 6, length: 1, time: 1 },
            XmlEvent::EndDevice,
            XmlEvent::BeginDevice(dev2),
            XmlEvent::EndDevice,
            XmlEvent::EndSuperblock,
        ]
    );
}

#[test]
fn optional_superblock_attributes() {
    let xml = r#"<superblock uuid="u" time="0" transaction="0" flags="1" version="2" data_block_size="1" nr_data_blocks="0" metadata_snap="12"/>"#;
    let events = parse_all(xml.as_bytes()).unwrap();
    let XmlEvent::Superblock(sb) = &events[0] else { panic!("{events:?}") };
    assert_eq!((sb.flags, sb.version, sb.metadata_snap), (1, 2, Some(12)));
    assert_eq!(events[1], XmlEvent::EndSuperblock);
    assert_eq!(events.len(), 2);
}

#[test]
fn range_limits() {
    let max = u64::MAX;
    let ok = doc(&format!(
        "{DEV}<range_mapping origin_begin=\"{}\" data_begin=\"998\" length=\"2\" time=\"4294967295\"/></device>",
        max - 1
    ));
    let events = parse_all(ok.as_bytes()).unwrap();
    assert_eq!(
        events[2],
        XmlEvent::Mapping { origin_begin: max - 1, data_begin: 998, length: 2, time: u32::MAX }
    );
}

#[test]
fn missing_attribute_points_at_the_element() {
    let xml = format!("{SB}\n  <!-- c -->\n    <device dev_id=\"1\" mapped_blocks=\"0\" creation_time=\"0\" snap_time=\"0\"/>\n</superblock>");
    assert_error(&xml, 3, 5, "device is missing attribute `transaction`");
    assert_error("<superblock time=\"0\"/>", 1, 1, "superblock is missing attribute `uuid`");
}

#[test]
fn bad_numbers_point_at_the_attribute() {
    let body = "  <device dev_id=\"1\" mapped_blocks=\"0\"\n     transaction=\"+2\" creation_time=\"0\" snap_time=\"0\"/>";
    assert_error(
        &doc(body),
        3,
        6,
        "device attribute `transaction` is not an unsigned decimal number: \"+2\"",
    );
    let body = "  <device dev_id=\"4294967296\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\"/>";
    assert_error(
        &doc(body),
        2,
        11,
        "device attribute `dev_id` = 4294967296 is larger than 4294967295",
    );
    let body = format!("{DEV}<single_mapping origin_block=\"18446744073709551616\" data_block=\"0\" time=\"0\"/></device>");
    assert_error(
        &doc(&body),
        2,
        102,
        "single_mapping attribute `origin_block` = 18446744073709551616 is larger than 18446744073709551615",
    );
    let body =
        format!("{DEV}<single_mapping origin_block=\"\" data_block=\"0\" time=\"0\"/></device>");
    let e = error_of(&doc(&body));
    assert!(matches!(e.kind, ParseErrorKind::NotANumber { attribute: "origin_block", .. }));
}

#[test]
fn run_errors() {
    let range = |o: &str, d: &str, l: &str| {
        doc(&format!(
            "{DEV}\n<range_mapping origin_begin=\"{o}\" data_begin=\"{d}\" length=\"{l}\" time=\"0\"/></device>"
        ))
    };
    assert_error(&range("0", "0", "0"), 3, 48, "range_mapping has length 0");
    assert_error(
        &range("18446744073709551615", "0", "2"),
        3,
        16,
        "range_mapping: `origin_begin` + length - 1 does not fit in 64 bits",
    );
    assert_error(
        &range("0", "18446744073709551615", "2"),
        3,
        33,
        "range_mapping: `data_begin` + length - 1 does not fit in 64 bits",
    );
    assert_error(
        &range("0", "990", "11"),
        3,
        33,
        "mapping beyond end of data device (1000 >= 1000)",
    );
    let single = doc(&format!(
        "{DEV}<single_mapping origin_block=\"0\" data_block=\"1000\" time=\"0\"/></device>"
    ));
    assert_error(&single, 2, 119, "mapping beyond end of data device (1000 >= 1000)");
}

#[test]
fn structure_errors() {
    assert_error(&doc("  <foo/>"), 2, 3, "unknown element `foo`");
    assert_error(
        &doc("  <single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"/>"),
        2,
        3,
        "`single_mapping` is not allowed directly inside `superblock`",
    );
    assert_error(
        &doc(&format!("{DEV}\n  {DEV}</device></device>")),
        3,
        3,
        "`device` is not allowed inside `device`",
    );
    assert_error(
        &doc(&format!("{DEV}<single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"><single_mapping origin_block=\"1\" data_block=\"1\" time=\"0\"/></single_mapping></device>")),
        2,
        143,
        "`single_mapping` is not allowed inside a mapping",
    );
    assert_error(DEV, 1, 1, "`device` is not allowed at the top level");
    assert_error(
        &format!("{SB}</superblock>\n {SB}</superblock>"),
        2,
        2,
        "`superblock` is not allowed after the superblock",
    );
    assert_error(
        &format!("{SB}</device>"),
        1,
        90,
        "closing tag `device` does not match the open `superblock`",
    );
    assert_error("</superblock>", 1, 1, "closing tag `superblock` without an open element");
    assert_error(&format!("{SB}</superblock>x"), 1, 103, "text outside the superblock element");
    assert_error(&format!("{SB}\n  {DEV}\n"), 3, 1, "input ends inside `device`");
    assert_error("  \n <!-- only a comment -->", 2, 25, "no superblock element");
    assert_error("", 1, 1, "no superblock element");
    assert_error(
        &format!(" <?xml version=\"1.0\"?>{SB}"),
        1,
        2,
        "XML declaration must come before the superblock",
    );
}

#[test]
fn duplicate_device_and_attribute() {
    let dup = doc(&format!("{DEV}</device>\n {DEV}</device>"));
    assert_error(&dup, 3, 10, "device 1 appears twice");
    let e = error_of(&doc("<device dev_id=\"1\" dev_id=\"2\"/>"));
    assert!(matches!(e.kind, ParseErrorKind::Syntax(_)), "{e}");
    assert_eq!((e.line, e.column), (2, 20), "{e}");
}

#[test]
fn malformed_xml_points_at_the_markup() {
    let e = error_of(&format!("{SB}\n  <device dev_id=\"1\""));
    assert!(matches!(e.kind, ParseErrorKind::Syntax(_)), "{e}");
    assert_eq!((e.line, e.column), (2, 3), "{e}");
    let e = error_of(&format!("{SB}\n <!-- a -- b -->"));
    assert!(matches!(e.kind, ParseErrorKind::Syntax(_)), "{e}");
    assert_eq!((e.line, e.column), (2, 2), "{e}");
}

#[test]
fn columns_count_characters_and_skip_a_bom() {
    assert_error("\u{FEFF}<foo/>", 1, 1, "unknown element `foo`");
    assert_error("<!-- é --><foo/>", 1, 11, "unknown element `foo`");
}

#[test]
fn errors_are_sticky_and_the_iterator_stops() {
    let mut reader = XmlReader::new(&b"<foo/>"[..]);
    let first = reader.next_event().unwrap_err();
    assert_eq!(reader.next_event().unwrap_err(), first);
    let items: Vec<_> = XmlReader::new(&b"<foo/>"[..]).collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
}

#[test]
fn positions_survive_small_input_chunks() {
    /// A reader that hands out one byte per read, to cross every buffer boundary.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else { return Ok(0) };
            if out.is_empty() {
                return Ok(0);
            }
            out[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }
    let xml = format!("{SB}\n  {DEV}\n    <bad/>");
    let e = XmlReader::new(Trickle(xml.as_bytes())).find_map(Result::err).unwrap();
    assert_eq!((e.line, e.column), (3, 5), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_all(&bytes);
    }

    /// Bytes spliced into a valid document, so that the parser gets deep before failing.
    #[test]
    fn mutated_documents_never_panic(
        at in 0usize..400,
        cut in 0usize..20,
        insert in proptest::collection::vec(
            prop_oneof![Just(b'<'), Just(b'>'), Just(b'"'), Just(b'/'), Just(b'&'), Just(b'\n'),
                        Just(b'1'), any::<u8>()],
            0..8),
    ) {
        let base = doc(&format!(
            "{DEV}<range_mapping origin_begin=\"1\" data_begin=\"2\" length=\"3\" time=\"0\"/></device>"
        ));
        let mut bytes = base.into_bytes();
        let at = at.min(bytes.len());
        let end = (at + cut).min(bytes.len());
        bytes.splice(at..end, insert);
        if let Err(e) = parse_all(&bytes) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

fn mapping(origin_begin: u64, data_begin: u64, length: u64, time: u32) -> XmlEvent {
    XmlEvent::Mapping { origin_begin, data_begin, length, time }
}

/// The mappings of each device, in document order.
fn device_mappings(xml: &str) -> Vec<(u64, Vec<XmlEvent>)> {
    let mut out: Vec<(u64, Vec<XmlEvent>)> = Vec::new();
    for e in parse_all(xml.as_bytes()).unwrap_or_else(|e| panic!("{e} in {xml}")) {
        match e {
            XmlEvent::BeginDevice(d) => out.push((d.dev_id, Vec::new())),
            m @ XmlEvent::Mapping { .. } => out.last_mut().expect("in a device").1.push(m),
            _ => {}
        }
    }
    out
}

/// thin_dump 1.x writes runs that several devices share once, as `<def name=…>`, and each
/// device names them with `<ref name=…/>` where they fall; a def may name earlier defs. The
/// reader gives the consumer every device's runs as if written out, in document order.
#[test]
fn defs_and_refs_of_1x_expand_in_place() {
    let xml = doc(&format!(
        "  <def name=\"0\">\n    \
           <range_mapping origin_begin=\"0\" data_begin=\"100\" length=\"4\" time=\"1\"/>\n  \
         </def>\n  \
         <def name=\"1\">\n    \
           <ref name=\"0\"/>\n    \
           <single_mapping origin_block=\"9\" data_block=\"200\" time=\"2\"/>\n  \
         </def>\n  \
         <def name=\"empty\"/>\n  \
         {DEV}\n    \
           <single_mapping origin_block=\"50\" data_block=\"7\" time=\"0\"/>\n    \
           <ref name=\"1\"/>\n    \
           <ref name=\"empty\"></ref>\n  \
         </device>\n  \
         {}\n    <ref name=\"0\"/>\n    <ref name=\"0\"/>\n  </device>",
        DEV.replace("dev_id=\"1\"", "dev_id=\"2\"")
    ));
    assert_eq!(
        device_mappings(&xml),
        vec![
            (1, vec![mapping(50, 7, 1, 0), mapping(0, 100, 4, 1), mapping(9, 200, 1, 2)]),
            (2, vec![mapping(0, 100, 4, 1), mapping(0, 100, 4, 1)]),
        ]
    );
    // A def emits nothing by itself: a document of defs alone has no mappings.
    let only_defs = doc(
        "<def name=\"a\"><single_mapping origin_block=\"1\" data_block=\"1\" time=\"0\"/></def>",
    );
    let events = parse_all(only_defs.as_bytes()).unwrap();
    assert_eq!(events.len(), 2, "superblock and its end: {events:?}");
}

#[test]
fn def_and_ref_errors_say_where_and_why() {
    let def_a = "<def name=\"a\"></def>";
    assert_error(&doc(&format!("{def_a}{def_a}")), 2, 26, "def `a` is defined twice");
    assert_error(
        &doc(&format!("{DEV}<ref name=\"b\"/></device>")),
        2,
        91,
        "ref to `b`, which no def before it defines",
    );
    // A def cannot name itself or a def after it: refs cannot loop.
    assert_error(
        &doc("<def name=\"s\"><ref name=\"s\"/></def>"),
        2,
        20,
        "ref to `s`, which no def before it defines",
    );
    assert_error(
        &doc("<ref name=\"a\"/>"),
        2,
        1,
        "`ref` is not allowed directly inside `superblock`",
    );
    assert_error(
        &doc(&format!("{DEV}<def name=\"a\"/></device>")),
        2,
        86,
        "`def` is not allowed inside `device`",
    );
    assert_error(
        &doc("<def name=\"a\"><def name=\"b\"/></def>"),
        2,
        15,
        "`def` is not allowed inside `def`",
    );
    assert_error(&doc("<def/>"), 2, 1, "def is missing attribute `name`");
    assert_error(&format!("{SB}\n<def name=\"a\">\n"), 3, 1, "input ends inside `def`");
    // Mappings inside a def are checked like a device's.
    assert_error(
        &doc("<def name=\"a\"><single_mapping origin_block=\"0\" data_block=\"1000\" time=\"0\"/></def>"),
        2,
        48,
        "mapping beyond end of data device (1000 >= 1000)",
    );
}

/// Def 0 holds one run; def k names def k - 1 twice, so it stands for 2^k runs.
fn doubling_defs(levels: u32) -> String {
    let mut body = String::from(
        "<def name=\"0\"><single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"/></def>\n",
    );
    for level in 1..=levels {
        let below = level - 1;
        body += &format!(
            "<def name=\"{level}\"><ref name=\"{below}\"/><ref name=\"{below}\"/></def>\n"
        );
    }
    body
}

/// Each nested def doubles the one before: 40 levels would stand for 2^40 runs from a few
/// kilobytes. The reader refuses once the defs would hold, or the refs emit, more than its
/// bounds, and holds no more than that meanwhile.
#[test]
fn nested_defs_that_double_are_refused_at_the_bound() {
    use engine::tools::xml_read::{MAX_REFERENCED_RUNS, MAX_SHARED_RUNS};
    let body = doubling_defs(40);
    let e = error_of(&doc(&body));
    assert_eq!(e.kind, ParseErrorKind::TooManySharedRuns { max: MAX_SHARED_RUNS }, "{e}");
    assert_eq!(e.line, 2 + 22, "def 22 would hold 2^22 runs, the 2^23rd in all: {e}");

    // Within the defs' bound, but refs from devices that expand past the emitting bound.
    let mut body = doubling_defs(20);
    body += DEV;
    for _ in 0..(MAX_REFERENCED_RUNS >> 20) + 1 {
        body += "<ref name=\"20\"/>";
    }
    body += "</device>";
    let text = doc(&body);
    let mut reader = XmlReader::new(text.as_bytes());
    let mut emitted = 0u64;
    let e = loop {
        match reader.next_event() {
            Ok(Some(XmlEvent::Mapping { .. })) => emitted += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("accepted {emitted} runs"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind, ParseErrorKind::TooManyReferencedRuns { max: MAX_REFERENCED_RUNS }, "{e}");
    assert_eq!(emitted, MAX_REFERENCED_RUNS, "every run up to the bound, none past it");
}
