//! Interop with the real thin-provisioning-tools 0.9.0 binaries (CI installs them; the one
//! skip switch is `THINSIM_SKIP_TOOLS=1`, see `common/tools.rs`), in two parts:
//! - [`formats`]: hand-built logical pools through `thin_restore`, against our dump and ls;
//! - [`images`]: the corpus images and engine-written pools, against thin_check, thin_dump
//!   and thin_ls.

mod common;

mod formats {
    //! The tool formats against the real thin-provisioning-tools 0.9.0 binaries.
    //!
    //! Each case is a small logical pool. It is written as deliberately "untidy" XML (every mapping
    //! a `single_mapping`, wrong `mapped_blocks`, optional attributes left out), restored with
    //! `thin_restore` into an 8 MiB image, and then:
    //! - `thin_dump` (XML and `-f human_readable`) must equal our [`DumpWriter`] fed from the
    //!   logical pool after the tool's normalisations (uuid emptied, `mapped_blocks` recounted,
    //!   `flags`/`version` defaults made explicit), and also our writer fed with our parser's
    //!   reading of the tool's own dump;
    //! - `thin_ls` with every field, with the default fields and with `--no-headers` must equal our
    //!   [`format_table`] over rows computed from the logical pool.

    use engine::tools::ls::{format_table, LsField, LsRow};
    use engine::tools::xml_read::{parse_all, XmlEvent};
    use engine::tools::xml_write::{DumpFormat, DumpWriter};
    use engine::tools::{XmlDevice, XmlSuperblock};
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    use std::path::Path;
    use std::process::Command;

    /// One device of a logical pool: details plus `origin → (data, time)`.
    struct Device {
        details: XmlDevice,
        mappings: BTreeMap<u64, (u64, u32)>,
    }

    struct Pool {
        sb: XmlSuperblock,
        devices: Vec<Device>,
    }

    use super::common::tools::tool as require;

    fn run(program: &Path, args: &[&str]) -> String {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Untidy XML for `pool`: singles only, `mapped_blocks` off by 3, defaults left out.
    fn untidy_xml(pool: &Pool) -> String {
        let sb = &pool.sb;
        let mut xml = format!(
            "<superblock uuid=\"some-uuid\" time=\"{}\" transaction=\"{}\"",
            sb.time, sb.transaction
        );
        if sb.flags != 0 {
            write!(xml, " flags=\"{}\"", sb.flags).unwrap();
        }
        if sb.version != 1 {
            write!(xml, " version=\"{}\"", sb.version).unwrap();
        }
        writeln!(
            xml,
            " data_block_size=\"{}\" nr_data_blocks=\"{}\">",
            sb.data_block_size, sb.nr_data_blocks
        )
        .unwrap();
        for dev in &pool.devices {
            let d = &dev.details;
            writeln!(
                xml,
                "<device dev_id=\"{}\" mapped_blocks=\"{}\" transaction=\"{}\" creation_time=\"{}\" snap_time=\"{}\">",
                d.dev_id, dev.mappings.len() + 3, d.transaction, d.creation_time, d.snap_time
            )
            .unwrap();
            // Descending order on purpose: the tool sorts through its btree.
            for (origin, (data, time)) in dev.mappings.iter().rev() {
                writeln!(
                    xml,
                    "<single_mapping origin_block=\"{origin}\" data_block=\"{data}\" time=\"{time}\"/>"
                )
                .unwrap();
            }
            xml.push_str("</device>\n");
        }
        xml.push_str("</superblock>\n");
        xml
    }

    /// What thin_dump prints for `pool`, produced by our writer.
    fn expected_dump(pool: &Pool, format: DumpFormat) -> String {
        let mut w = DumpWriter::new(Vec::new(), format);
        w.superblock(&XmlSuperblock { uuid: String::new(), ..pool.sb.clone() }).unwrap();
        for dev in &pool.devices {
            let mapped_blocks = dev.mappings.len() as u64;
            w.begin_device(&XmlDevice { mapped_blocks, ..dev.details }).unwrap();
            for (&origin, &(data, time)) in &dev.mappings {
                w.mapping(origin, data, time).unwrap();
            }
            w.end_device().unwrap();
        }
        w.end_superblock().unwrap();
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    /// Our writer fed with our parser's reading of `xml`.
    fn reemit(xml: &str, format: DumpFormat) -> String {
        let mut w = DumpWriter::new(Vec::new(), format);
        for event in parse_all(xml.as_bytes()).unwrap() {
            match event {
                XmlEvent::Superblock(sb) => w.superblock(&sb),
                XmlEvent::BeginDevice(dev) => w.begin_device(&dev),
                XmlEvent::Mapping { origin_begin, data_begin, length, time } => {
                    w.mapping_run(origin_begin, data_begin, length, time)
                }
                XmlEvent::EndDevice => w.end_device(),
                XmlEvent::EndSuperblock => w.end_superblock(),
            }
            .unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    /// thin_ls rows: exclusive = this device's mappings whose data block is mapped once overall.
    fn ls_rows(pool: &Pool) -> Vec<LsRow> {
        let mut uses: BTreeMap<u64, u64> = BTreeMap::new();
        for dev in &pool.devices {
            for &(data, _) in dev.mappings.values() {
                *uses.entry(data).or_default() += 1;
            }
        }
        pool.devices
            .iter()
            .map(|dev| LsRow {
                dev_id: dev.details.dev_id,
                mapped_blocks: dev.mappings.len() as u64,
                exclusive_blocks: dev.mappings.values().filter(|(data, _)| uses[data] == 1).count()
                    as u64,
                transaction: dev.details.transaction,
                creation_time: dev.details.creation_time,
                snap_time: dev.details.snap_time,
                highest_block: dev.mappings.keys().next_back().copied(),
            })
            .collect()
    }

    /// Restores `pool` and compares every output; returns false if the tools are missing.
    fn check_pool(name: &str, pool: &Pool) -> bool {
        let (Some(restore), Some(dump), Some(ls)) =
            (require("thin_restore"), require("thin_dump"), require("thin_ls"))
        else {
            return false;
        };
        let dir = tempfile::tempdir().unwrap();
        let xml_path = dir.path().join("in.xml");
        let img = dir.path().join("meta.img");
        std::fs::write(&xml_path, untidy_xml(pool)).unwrap();
        std::fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let img_s = img.to_str().unwrap();
        run(&restore, &["-q", "-i", xml_path.to_str().unwrap(), "-o", img_s]);

        let xml = run(&dump, &[img_s]);
        assert_eq!(xml, expected_dump(pool, DumpFormat::Xml), "{name}: thin_dump XML");
        assert_eq!(reemit(&xml, DumpFormat::Xml), xml, "{name}: parse + re-emit");
        let human = run(&dump, &["-f", "human_readable", img_s]);
        assert_eq!(human, expected_dump(pool, DumpFormat::HumanReadable), "{name}: human_readable");
        assert_eq!(reemit(&xml, DumpFormat::HumanReadable), human, "{name}: re-emit human");

        let rows = ls_rows(pool);
        let dbs = pool.sb.data_block_size;
        let all: Vec<&str> = LsField::ALL.iter().map(|f| f.name()).collect();
        let all = all.join(",");
        assert_eq!(run(&ls, &["-o", &all, img_s]), format_table(&rows, dbs, &LsField::ALL, true));
        assert_eq!(run(&ls, &[img_s]), format_table(&rows, dbs, &LsField::DEFAULT, true));
        let some = [LsField::SharedBytes, LsField::Dev, LsField::Exclusive, LsField::Dev];
        assert_eq!(
            run(&ls, &["--no-headers", "-o", "SHARED_BYTES,DEV,EXCLUSIVE,DEV", img_s]),
            format_table(&rows, dbs, &some, false),
            "{name}: thin_ls --no-headers"
        );
        true
    }

    fn superblock(time: u32, flags: u32, version: u32, dbs: u32, nr: u64) -> XmlSuperblock {
        XmlSuperblock {
            uuid: String::new(),
            time,
            transaction: 7,
            flags,
            version,
            data_block_size: dbs,
            nr_data_blocks: nr,
            metadata_snap: None,
        }
    }

    fn device(dev_id: u64, creation_time: u32, snap_time: u32, maps: &[(u64, u64, u32)]) -> Device {
        Device {
            details: XmlDevice {
                dev_id,
                mapped_blocks: 0,
                transaction: dev_id + 1,
                creation_time,
                snap_time,
            },
            mappings: maps.iter().map(|&(o, d, t)| (o, (d, t))).collect(),
        }
    }

    /// `len` mappings `origin + i → data + i`, time changing every `time_every` blocks.
    fn run_of(origin: u64, data: u64, len: u64, time_every: u64) -> Vec<(u64, u64, u32)> {
        (0..len).map(|i| (origin + i, data + i, u32::try_from(i / time_every).unwrap())).collect()
    }

    #[test]
    fn spec_reference_pool() {
        let pool = Pool {
            sb: superblock(3, 0, 2, 128, 1000),
            devices: vec![
                device(1, 0, 1, &[(0, 10, 0), (1, 11, 0), (2, 12, 0), (10, 20, 1), (11, 30, 2)]),
                device(5, 1, 1, &[(0, 10, 0), (1, 11, 0)]),
            ],
        };
        check_pool("spec", &pool);
    }

    #[test]
    fn empty_pool_and_empty_devices() {
        let empty = Pool { sb: superblock(0, 0, 1, 128, 0), devices: vec![] };
        check_pool("no devices", &empty);
        let hollow = Pool {
            sb: superblock(9, 1, 1, 256, 100),
            devices: vec![
                device(0, 0, 0, &[]),
                device(17, 2, 9, &[]),
                device(4_000_000, 9, 9, &[]),
            ],
        };
        check_pool("empty devices", &hollow);
    }

    #[test]
    fn long_runs_across_many_leaves() {
        let mut steady = run_of(0, 100, 2000, u64::MAX);
        steady.extend(run_of(5000, 3000, 600, 100));
        // Same times but a gap in data, then a gap in origin.
        steady.extend(run_of(6000, 4000, 300, u64::MAX));
        steady.extend(run_of(6300, 4301, 300, u64::MAX));
        steady.extend(run_of(6601, 4601, 300, u64::MAX));
        let pool = Pool {
            sb: superblock(6, 0, 2, 128, 10_000),
            devices: vec![device(3, 0, 6, &steady), device(8, 6, 6, &run_of(0, 100, 700, 70))],
        };
        check_pool("long runs", &pool);
    }

    #[test]
    fn times_flags_and_versions() {
        for (flags, version) in [(0, 1), (1, 1), (0, 2), (1, 2), (6, 7)] {
            let maps: Vec<_> =
                (0..40u64).map(|i| (i * 3, 500 - i, u32::try_from(i % 5).unwrap())).collect();
            let pool = Pool {
                sb: superblock(5, flags, version, 1024, 501),
                devices: vec![device(2, 0, 3, &maps), device(9, 3, 5, &maps[10..])],
            };
            check_pool(&format!("flags {flags} version {version}"), &pool);
        }
    }

    #[test]
    fn sharing_within_and_across_devices() {
        let pool = Pool {
            sb: superblock(2, 0, 2, 128, 64),
            devices: vec![
                // Block 7 twice in one device: shared although no other device maps it.
                device(1, 0, 2, &[(0, 7, 0), (1, 7, 0), (2, 8, 0), (3, 9, 1)]),
                device(2, 1, 2, &[(0, 9, 1), (5, 10, 1)]),
                device(3, 2, 2, &[(0, 9, 1), (1, 11, 2), (2, 12, 2)]),
            ],
        };
        check_pool("sharing", &pool);
    }

    #[test]
    fn human_units_from_bytes_to_pib() {
        // (data_block_size, mapped blocks): 512 B, 8192 B, 8704 B → 9KiB, ~1000MiB, TiB, PiB.
        let cases: [(u32, u64); 7] =
            [(1, 1), (16, 1), (17, 1), (1024, 2000), (2048, 1), (u32::MAX, 300), (u32::MAX, 5000)];
        for (dbs, blocks) in cases {
            let pool = Pool {
                sb: superblock(0, 0, 2, dbs, blocks + 10),
                devices: vec![
                    device(1, 0, 0, &run_of(0, 0, blocks, u64::MAX)),
                    device(2, 0, 0, &[]),
                ],
            };
            check_pool(&format!("units {dbs}x{blocks}"), &pool);
        }
    }
}

mod images {
    //! Interop with thin-provisioning-tools 0.9.0 (CI installs it): our dump and ls print exactly
    //! what thin_dump and thin_ls print for the same image, our restore writes images thin_check
    //! accepts and thin_dump prints back, and pools the engine writes pass thin_check.

    use super::common;
    use engine::io::{FileDevice, MemoryDevice};
    use engine::thin::Pool;
    use engine::thin::Source;
    use engine::thin::{ThinId, VBlock};
    use engine::tools::ls::{format_table, LsField};
    use engine::tools::restore;
    use engine::tools::xml_write::{DumpFormat, DumpWriter};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn tools_available() -> bool {
        common::tools::tool("thin_check").is_some()
    }

    fn corpus() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "img"))
            .collect();
        v.sort();
        assert!(v.len() >= 4, "corpus images missing");
        v
    }

    fn run(cmd: &str, args: &[&str]) -> (i32, Vec<u8>, String) {
        let o = Command::new(cmd).args(args).output().unwrap();
        (o.status.code().unwrap_or(-1), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
    }

    fn our_dump(path: &Path, format: DumpFormat, source: Source) -> Vec<u8> {
        let pool = Pool::open_image(Box::new(FileDevice::open(path, false).unwrap())).unwrap();
        let mut w = DumpWriter::new(Vec::new(), format);
        engine::tools::dump::dump(&pool, &mut w, source).unwrap();
        w.finish().unwrap()
    }

    const ALL_FIELDS: &str = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME";

    #[test]
    fn corpus_images_check_dump_and_ls_like_the_tools() {
        if !tools_available() {
            return;
        }
        for img in corpus() {
            let p = img.to_str().unwrap();
            let report =
                engine::tools::check::check(Box::new(FileDevice::open(&img, false).unwrap()));
            assert!(report.is_clean(), "{p}: {:?}", report.findings);
            let (rc, theirs, err) = run("thin_dump", &[p]);
            assert_eq!(rc, 0, "{err}");
            assert_eq!(
                String::from_utf8(our_dump(&img, DumpFormat::Xml, Source::Live)).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{p}: dump differs"
            );
            let (_, theirs_h, _) = run("thin_dump", &["-f", "human_readable", p]);
            assert_eq!(
                our_dump(&img, DumpFormat::HumanReadable, Source::Live),
                theirs_h,
                "{p}: human dump differs"
            );
            let (rc, theirs_ls, err) = run("thin_ls", &["-o", ALL_FIELDS, p]);
            assert_eq!(rc, 0, "{err}");
            let pool = Pool::open_image(Box::new(FileDevice::open(&img, false).unwrap())).unwrap();
            let (rows, bs) = engine::tools::dump::ls_rows(&pool, Source::Live).unwrap();
            let fields = engine::tools::ls::parse_fields(ALL_FIELDS).unwrap();
            assert_eq!(
                format_table(&rows, bs, &fields, true),
                String::from_utf8(theirs_ls).unwrap(),
                "{p}: ls differs"
            );
            let _ = LsField::DEFAULT;
        }
    }

    #[test]
    fn our_restore_of_corpus_xml_passes_thin_check_and_dumps_back() {
        if !tools_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for img in corpus() {
            let xml = img.with_extension("xml");
            let out = dir.path().join(img.file_name().unwrap());
            FileDevice::create(&out, 1024).unwrap();
            let f = std::io::BufReader::new(std::fs::File::open(&xml).unwrap());
            restore::restore(f, Box::new(FileDevice::open(&out, true).unwrap())).unwrap();
            let (rc, _, err) = run("thin_check", &[out.to_str().unwrap()]);
            assert_eq!(rc, 0, "{}: thin_check: {err}", xml.display());
            let (_, ours, _) = run("thin_dump", &[out.to_str().unwrap()]);
            let (_, reference, _) = run("thin_dump", &[img.to_str().unwrap()]);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(reference).unwrap(),
                "{}",
                xml.display()
            );
            let report =
                engine::tools::check::check(Box::new(FileDevice::open(&out, false).unwrap()));
            assert!(report.is_clean(), "{:?}", report.findings);
        }
    }

    #[test]
    fn bad_xml_leaves_the_output_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.img");
        FileDevice::create(&out, 256).unwrap();
        let good = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images/spec-13-1.xml"),
        )
        .unwrap();
        restore::restore(
            std::io::Cursor::new(good.clone()),
            Box::new(FileDevice::open(&out, true).unwrap()),
        )
        .unwrap();
        let before = std::fs::read(&out).unwrap();
        let mut bad = String::from_utf8(good).unwrap();
        bad = bad.replacen(
            "<single_mapping origin_block=\"10\"",
            "<single_mapping origin_block=\"x\"",
            1,
        );
        let err = restore::restore(
            std::io::Cursor::new(bad.into_bytes()),
            Box::new(FileDevice::open(&out, true).unwrap()),
        )
        .err()
        .expect("bad XML must be refused");
        let msg = err.to_string();
        assert!(msg.contains("line 4"), "{msg}");
        assert_eq!(std::fs::read(&out).unwrap(), before, "output changed");
    }

    /// Well-formed XML that describes an impossible pool is refused in pass 1, before any
    /// write, on both entry points (streamed and in memory), with a message naming the problem.
    #[test]
    fn impossible_pools_are_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.img");
        FileDevice::create(&out, 256).unwrap();
        let before = std::fs::read(&out).unwrap();
        let good = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/images/spec-13-1.xml"),
        )
        .unwrap();
        let cases = [
            // A run ending past the data device (thin_restore 0.9.0 writes such an image).
            ("nr_data_blocks=\"1000\"", "nr_data_blocks=\"12\"", "beyond end of data device"),
            // Two runs covering one origin.
            ("origin_block=\"10\"", "origin_block=\"1\"", "mapped twice"),
            // A mapping written after the pool's time.
            ("data_block=\"20\" time=\"1\"", "data_block=\"20\" time=\"9\"", "after pool time"),
            // A version the format does not have (the xml_restore fuzzer's find: restore wrote
            // it and check then called the image corrupt).
            ("version=\"2\"", "version=\"0\"", "not 1 or 2"),
            ("data_block_size=\"128\"", "data_block_size=\"000\"", "data_block_size is 0"),
            // Sizes the pool target refuses (128..=2097152 sectors, a multiple of 128), and
            // a thin id past its 24 bits: images the kernel would not activate (issue 29).
            ("data_block_size=\"128\"", "data_block_size=\"1\"", "pool target takes"),
            ("data_block_size=\"128\"", "data_block_size=\"127\"", "pool target takes"),
            ("data_block_size=\"128\"", "data_block_size=\"4194304\"", "pool target takes"),
            ("dev_id=\"1\"", "dev_id=\"16777216\"", "24 bits"),
        ];
        for (from, to, why) in cases {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1).into_bytes();
            let dev = || Box::new(FileDevice::open(&out, true).unwrap());
            let streamed = restore::restore(std::io::Cursor::new(bad.clone()), dev()).err();
            let in_memory = restore::restore_slice(&bad, dev()).err();
            for err in [streamed, in_memory] {
                let msg = err.expect("an impossible pool must be refused").to_string();
                assert!(msg.contains(why), "{from} -> {to}: {msg}");
            }
            assert_eq!(std::fs::read(&out).unwrap(), before, "{from} -> {to}: output changed");
        }
    }

    #[test]
    fn engine_workloads_pass_thin_check_and_dump_agrees() {
        if !tools_available() {
            return;
        }
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        for seed in 0..6u64 {
            let path = dir.path().join(format!("w{seed}.img"));
            FileDevice::create(&path, 2048).unwrap();
            let pool = Pool::open(
                Box::new(FileDevice::open(&path, true).unwrap()),
                engine::thin::PoolOptions::new(128),
            )
            .unwrap();
            pool.resize_data_dev(30_000).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut ids = vec![];
            for step in 0..3000 {
                match rng.random_range(0..100) {
                    0..=2 => {
                        let id = step as u64 + 1000;
                        pool.create_thin(ThinId(id)).unwrap();
                        ids.push(id);
                    }
                    3 if !ids.is_empty() => {
                        let id = step as u64 + 1000;
                        pool.create_snap(ThinId(id), ThinId(ids[rng.random_range(0..ids.len())]))
                            .unwrap();
                        ids.push(id);
                    }
                    4 if ids.len() > 1 => {
                        let id = ids.swap_remove(rng.random_range(0..ids.len()));
                        pool.delete_thin_device(ThinId(id)).unwrap();
                    }
                    5 => pool.commit().unwrap(),
                    6 if seed % 2 == 0 && pool.get_metadata_snap().unwrap().is_none() => {
                        pool.reserve_metadata_snap().unwrap()
                    }
                    7 if pool.get_metadata_snap().unwrap().is_some() => {
                        pool.release_metadata_snap().unwrap()
                    }
                    _ if !ids.is_empty() => {
                        let h = pool
                            .open_thin_device(ThinId(ids[rng.random_range(0..ids.len())]))
                            .unwrap();
                        let v = rng.random_range(0..2000);
                        if rng.random_bool(0.8) {
                            let d = pool.alloc_data_block().unwrap();
                            pool.insert_block(&h, VBlock(v), d).unwrap();
                        } else {
                            let _ = pool.remove_range(
                                &h,
                                VBlock(v),
                                VBlock(v + rng.random_range(1..50)),
                            );
                        }
                        pool.close_thin_device(h);
                    }
                    _ => {}
                }
            }
            pool.commit().unwrap();
            let held = pool.get_metadata_snap().unwrap().is_some();
            drop(pool);
            let p = path.to_str().unwrap();
            let (rc, theirs, err) = run("thin_check", &[p]);
            assert_eq!(
                rc,
                0,
                "seed {seed}: thin_check: {err} {}",
                String::from_utf8_lossy(&theirs)
            );
            let (_, theirs, _) = run("thin_dump", &[p]);
            assert_eq!(
                our_dump(&path, DumpFormat::Xml, Source::Live),
                theirs,
                "seed {seed}: dump differs"
            );
            if held {
                let (_, theirs_m, err) = run("thin_dump", &["-m", p]);
                assert_eq!(
                    our_dump(&path, DumpFormat::Xml, Source::MetadataSnap(None)),
                    theirs_m,
                    "seed {seed}: -m dump differs {err}"
                );
            }
            let report =
                engine::tools::check::check(Box::new(FileDevice::open(&path, false).unwrap()));
            assert!(report.is_clean(), "seed {seed}: {:?}", report.findings);
            let _ = MemoryDevice::new(1);
        }
    }
}
