//! Snapshot tests (insta) of the text formats the engine prints for a fixed image: the
//! spec §13.1 pool as thin_dump XML, in human-readable form, as a thin_ls table with every
//! field, and the findings `check` lists for a known corruption. Any change to these bytes
//! is a change to interop and must be reviewed (`cargo insta review`).

use engine::io::FileDevice;
use engine::thin::Pool;
use engine::thin::Source;
use engine::tools::ls::{format_table, LsField};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use std::path::Path;

fn image() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images/spec-13-1.img")
}

fn dump(format: DumpFormat) -> String {
    let pool = Pool::open_image(Box::new(FileDevice::open(&image(), false).unwrap())).unwrap();
    let mut w = DumpWriter::new(Vec::new(), format);
    engine::tools::dump::dump(&pool, &mut w, Source::Live).unwrap();
    String::from_utf8(w.finish().unwrap()).unwrap()
}

#[test]
fn spec_pool_as_xml() {
    insta::assert_snapshot!(dump(DumpFormat::Xml));
}

#[test]
fn spec_pool_human_readable() {
    insta::assert_snapshot!(dump(DumpFormat::HumanReadable));
}

#[test]
fn spec_pool_ls_every_field() {
    let pool = Pool::open_image(Box::new(FileDevice::open(&image(), false).unwrap())).unwrap();
    let (rows, bs) = engine::tools::dump::ls_rows(&pool, Source::Live).unwrap();
    insta::assert_snapshot!(format_table(&rows, bs, &LsField::ALL, true));
}

#[test]
fn check_findings_for_a_wrong_data_count() {
    let mut bytes = std::fs::read(image()).unwrap();
    // Block 9 is the data bitmap (spec §13.1): give data block 12 a count of 2, reseal.
    let mut blk: [u8; 4096] = bytes[9 * 4096..10 * 4096].try_into().unwrap();
    engine::format::bitmap::set(&mut blk, 12, 2);
    engine::format::checksum::seal(&mut blk, engine::format::BlockKind::Bitmap, 9);
    bytes[9 * 4096..10 * 4096].copy_from_slice(&blk);
    let report =
        engine::tools::check::check(Box::new(engine::io::MemoryDevice::from_bytes(&bytes)));
    let lines: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    insta::assert_snapshot!(lines.join("\n"));
}
