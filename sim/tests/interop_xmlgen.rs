//! Interop on random pools: seeded self-consistent thin_dump XML →
//! - `thin_restore` → our dump prints exactly what `thin_dump` prints;
//! - our restore → `thin_check` is clean, our own check is clean, and `thin_dump` prints the
//!   input XML byte for byte.
//!
//! Needs thin-provisioning-tools 0.9.0 (CI installs it); THINSIM_SKIP_TOOLS=1 skips.
//! THINSIM_INTEROP_SEEDS sets how many seeds (default 40).

use engine::io::FileDevice;
use engine::thin::Pool;
use engine::thin::Source;
use engine::tools::restore;
use engine::tools::xml_read::{parse_all, XmlEvent};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use std::process::Command;
use xmlgen::{generate, GenSize};

#[allow(dead_code)] // the benchmark's generator is the binary's
#[path = "support/xmlgen.rs"]
mod xmlgen;

fn run(cmd: &str, args: &[&str]) -> (i32, Vec<u8>, String) {
    let o = Command::new(cmd).args(args).output().expect("thin-provisioning-tools installed");
    (o.status.code().unwrap_or(-1), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn random_pools_round_trip_through_both_toolsets() {
    if std::env::var("THINSIM_SKIP_TOOLS").is_ok() {
        return;
    }
    let seeds: u64 =
        std::env::var("THINSIM_INTEROP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..seeds {
        let size = if seed % 4 == 3 { GenSize::MEDIUM } else { GenSize::SMALL };
        let xml = generate(seed, size);
        let xml_path = dir.path().join("in.xml");
        std::fs::write(&xml_path, &xml).unwrap();
        let theirs = dir.path().join("theirs.img");
        let ours = dir.path().join("ours.img");
        for p in [&theirs, &ours] {
            FileDevice::create(p, 4096).unwrap();
        }
        let (rc, _, err) = run(
            "thin_restore",
            &["-q", "-i", xml_path.to_str().unwrap(), "-o", theirs.to_str().unwrap()],
        );
        assert_eq!(rc, 0, "seed {seed}: thin_restore: {err}");
        let (_, reference, _) = run("thin_dump", &[theirs.to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&reference),
            xml,
            "seed {seed}: generator output is not a thin_dump fixpoint"
        );

        let pool = Pool::open_image(Box::new(FileDevice::open(&theirs, false).unwrap())).unwrap();
        let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        engine::tools::dump::dump(&pool, &mut w, Source::Live).unwrap();
        assert_eq!(
            String::from_utf8(w.finish().unwrap()).unwrap(),
            xml,
            "seed {seed}: our dump of thin_restore's image"
        );

        let input = std::io::BufReader::new(std::fs::File::open(&xml_path).unwrap());
        restore::restore(input, Box::new(FileDevice::open(&ours, true).unwrap())).unwrap();
        let (rc, out, err) = run("thin_check", &[ours.to_str().unwrap()]);
        assert_eq!(
            rc,
            0,
            "seed {seed}: thin_check of our restore: {err} {}",
            String::from_utf8_lossy(&out)
        );
        let (_, dumped, _) = run("thin_dump", &[ours.to_str().unwrap()]);
        assert_eq!(String::from_utf8_lossy(&dumped), xml, "seed {seed}: thin_dump of our restore");
        let report = engine::tools::check::check(Box::new(FileDevice::open(&ours, false).unwrap()));
        assert!(report.is_clean(), "seed {seed}: {:?}", report.findings);
    }
}

#[test]
fn same_seed_same_document() {
    assert_eq!(generate(7, GenSize::SMALL), generate(7, GenSize::SMALL));
    assert_ne!(generate(7, GenSize::SMALL), generate(8, GenSize::SMALL));
}

/// Every generated document parses, and its counts and times obey the header's rules.
#[test]
fn documents_are_self_consistent() {
    for seed in 0..50 {
        let xml = generate(seed, GenSize::SMALL);
        let events = parse_all(xml.as_bytes()).expect("generated XML parses");
        let Some(XmlEvent::Superblock(sb)) = events.first() else {
            panic!("seed {seed}: no superblock first");
        };
        let mut counted = 0;
        let mut declared = 0;
        for event in &events {
            match event {
                XmlEvent::BeginDevice(dev) => {
                    assert!(dev.creation_time <= dev.snap_time && dev.snap_time <= sb.time);
                    assert!(dev.transaction <= sb.transaction);
                    declared = dev.mapped_blocks;
                    counted = 0;
                }
                XmlEvent::Mapping { length, time, .. } => {
                    assert!(*time <= sb.time, "seed {seed}");
                    counted += length;
                }
                XmlEvent::EndDevice => assert_eq!(counted, declared, "seed {seed}"),
                _ => {}
            }
        }
    }
}
