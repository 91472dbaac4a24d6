//! The checked-in images of `corpus/images` against the real tools and our formats:
//! `make.sh` re-creates them byte for byte, thin_check accepts them, and thin_dump / thin_ls
//! output is reproduced by our reader, writer and table formatter.
//!
//! Needs thin-provisioning-tools 0.9.0; set `THINSIM_SKIP_TOOLS=1` to skip where absent.

mod common;

use engine::tools::ls::{format_table, LsField, LsRow};
use engine::tools::xml_read::{parse_all, XmlEvent};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGES: [&str; 4] = ["spec-13-1", "mappings-2k", "devices-300", "data-4bitmaps"];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images")
}

fn tools_present() -> bool {
    common::tools::tool("thin_restore").is_some()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn reemit(events: &[XmlEvent], format: DumpFormat) -> String {
    let mut w = DumpWriter::new(Vec::new(), format);
    for event in events {
        match event {
            XmlEvent::Superblock(sb) => w.superblock(sb),
            XmlEvent::BeginDevice(dev) => w.begin_device(dev),
            &XmlEvent::Mapping { origin_begin, data_begin, length, time } => {
                w.mapping_run(origin_begin, data_begin, length, time)
            }
            XmlEvent::EndDevice => w.end_device(),
            XmlEvent::EndSuperblock => w.end_superblock(),
        }
        .unwrap();
    }
    String::from_utf8(w.finish().unwrap()).unwrap()
}

/// thin_ls rows from a parsed dump: exclusive = mappings whose data block is used once.
fn ls_rows(events: &[XmlEvent]) -> (u32, Vec<LsRow>) {
    let mut uses: BTreeMap<u64, u64> = BTreeMap::new();
    for event in events {
        if let &XmlEvent::Mapping { data_begin, length, .. } = event {
            for data in data_begin..data_begin + length {
                *uses.entry(data).or_default() += 1;
            }
        }
    }
    let mut block_size = 0;
    let mut rows: Vec<LsRow> = Vec::new();
    for event in events {
        match event {
            XmlEvent::Superblock(sb) => block_size = sb.data_block_size,
            XmlEvent::BeginDevice(d) => rows.push(LsRow {
                dev_id: d.dev_id,
                mapped_blocks: d.mapped_blocks,
                exclusive_blocks: 0,
                transaction: d.transaction,
                creation_time: d.creation_time,
                snap_time: d.snap_time,
                highest_block: None,
            }),
            &XmlEvent::Mapping { data_begin, length, .. } => {
                let row = rows.last_mut().unwrap();
                row.exclusive_blocks +=
                    (data_begin..data_begin + length).filter(|d| uses[d] == 1).count() as u64;
            }
            XmlEvent::EndDevice | XmlEvent::EndSuperblock => {}
        }
    }
    (block_size, rows)
}

#[test]
fn make_sh_recreates_every_image() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = corpus().join("make.sh");
    run("sh", &[script.to_str().unwrap(), dir.path().to_str().unwrap()]);
    for name in IMAGES {
        let fresh = std::fs::read(dir.path().join(format!("{name}.img"))).unwrap();
        let stored = std::fs::read(corpus().join(format!("{name}.img"))).unwrap();
        assert!(fresh == stored, "{name}.img differs from make.sh's output");
    }
}

#[test]
fn images_check_dump_and_list_like_the_tools() {
    if !tools_present() {
        return;
    }
    for name in IMAGES {
        let img = corpus().join(format!("{name}.img"));
        let img = img.to_str().unwrap();
        run("thin_check", &["-q", img]);
        let dump = run("thin_dump", &[img]);
        let events = parse_all(dump.as_bytes()).unwrap();
        assert_eq!(reemit(&events, DumpFormat::Xml), dump, "{name}: re-emitted dump");
        let human = run("thin_dump", &["-f", "human_readable", img]);
        assert_eq!(reemit(&events, DumpFormat::HumanReadable), human, "{name}: human_readable");

        let recipe = std::fs::read(corpus().join(format!("{name}.xml"))).unwrap();
        let recipe_events = parse_all(&recipe).unwrap();
        // The recipes differ from the dump at most in run merging (spec-13-1's device 5).
        assert_eq!(reemit(&recipe_events, DumpFormat::Xml), dump, "{name}: recipe vs dump");

        let (block_size, rows) = ls_rows(&events);
        let all: Vec<&str> = LsField::ALL.iter().map(|f| f.name()).collect();
        let listed = run("thin_ls", &["-o", &all.join(","), img]);
        assert_eq!(listed, format_table(&rows, block_size, &LsField::ALL, true), "{name}: thin_ls");
    }
}

/// `xml` (a 0.9.0 dump, one element a line) rewritten as thin_dump 1.x writes shared runs:
/// every device's runs from its second on go into a `<def>` named after the device (for odd
/// ids through a second def that the first names), and the device names it with `<ref>` in
/// their place.
fn as_1x_defs(xml: &str) -> String {
    let mut lines = xml.lines();
    let header = lines.next().unwrap();
    let (mut defs, mut devices) = (String::new(), String::new());
    let mut id = String::new();
    let mut runs: Vec<&str> = Vec::new();
    for line in lines {
        if line.starts_with("  <device ") {
            id = line.split('"').nth(1).unwrap().to_owned();
            devices += &format!("{line}\n");
            runs.clear();
        } else if line.starts_with("    <") {
            runs.push(line);
        } else if line == "  </device>" {
            if let Some((first, rest)) = runs.split_first() {
                devices += &format!("{first}\n    <ref name=\"{id}\"/>\n");
                let (head, tail) = if id.parse::<u64>().unwrap() % 2 == 1 && rest.len() > 1 {
                    rest.split_at(rest.len() / 2)
                } else {
                    (rest, &[][..])
                };
                if !tail.is_empty() {
                    defs += &format!("  <def name=\"{id}-tail\">\n{}\n  </def>\n", tail.join("\n"));
                }
                defs += &format!("  <def name=\"{id}\">\n");
                head.iter().for_each(|l| defs += &format!("{l}\n"));
                if !tail.is_empty() {
                    defs += &format!("    <ref name=\"{id}-tail\"/>\n");
                }
                defs += "  </def>\n";
            }
            devices += "  </device>\n";
        } else {
            assert_eq!(line, "</superblock>", "a 0.9.0 dump has one element a line");
        }
    }
    format!("{header}\n{defs}{devices}</superblock>\n")
}

/// 1.x's XML round-trips: every corpus image's XML, rewritten with `<def>`/`<ref>`, restores
/// to the pool the XML itself restores to (their dumps are equal byte for byte), and the
/// rewrite is no copy of the original.
#[test]
fn xml_with_1x_defs_and_refs_restores_to_the_same_pool() {
    use engine::io::MemoryDevice;
    use engine::thin::{Pool, PoolOptions, Source};
    let dump_of_restored = |name: &str, xml: &[u8]| {
        let dev = Box::new(MemoryDevice::new(4096));
        let restored = engine::tools::restore::restore(std::io::Cursor::new(xml), dev)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pool = Pool::open(restored, PoolOptions { may_format: false, ..PoolOptions::new(128) })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        engine::tools::dump::dump(&pool, &mut w, Source::Live).unwrap();
        String::from_utf8(w.finish().unwrap()).unwrap()
    };
    let mut nested = 0;
    for name in IMAGES {
        let xml = std::fs::read_to_string(corpus().join(format!("{name}.xml"))).unwrap();
        let defs = as_1x_defs(&xml);
        assert!(defs.contains("<ref name="), "{name}: the rewrite uses refs");
        nested += defs.matches("-tail\"/>").count();
        let want = dump_of_restored(name, xml.as_bytes());
        assert_eq!(dump_of_restored(name, defs.as_bytes()), want, "{name}");
    }
    assert!(nested > 0, "some def names another def");
}
