//! Seeded generators of thin_dump 0.9.0 XML, test and benchmark support (the tests include
//! this file as a module, and so does the `thinsim` binary for `bench-tools`):
//! - [`generate`]: random, self-consistent small pools for interop tests (below);
//! - [`write_bench_pool`]: one large pool of N mappings streamed to a file: four devices of
//!   N/4 mappings each, written as runs of 1–16 blocks with gaps and four different times;
//!   device 2 is a snapshot of device 1 with a fifth of its blocks rewritten, so data blocks
//!   are shared and the XML mixes singles and ranges like a real dump.
//!
//! The XML comes from replaying a random pool history on a tiny model (create thin, take a
//! snapshot, write runs, discard runs, delete, commit), following the kernel's time rules
//! (spec §5.4): the pool time starts at 0 and only a snapshot increments it; a new thin gets
//! `creation_time = snap_time = time`; a snapshot gets the incremented time for both and its
//! origin's `snap_time` becomes that time; every write records the current time.
//!
//! Invariants of every generated document (what makes `thin_restore` then `thin_dump` return it
//! byte for byte):
//! - devices in ascending id, ids < 2^24 and distinct; `mapped_blocks` = the actual count;
//! - per device, origins distinct and ascending; every data block < `nr_data_blocks`;
//! - data blocks are shared only between a snapshot and its origin (same block, same time),
//!   written blocks are fresh, so runs of consecutive writes become `range_mapping`s;
//! - every time ≤ the superblock time, `creation_time ≤ snap_time ≤ time` per device, and
//!   device transactions ≤ the superblock transaction;
//! - printed by [`DumpWriter`], so singles and ranges are merged exactly as the tool merges.
//!
//! Only `rand_chacha::ChaCha8Rng` seeded from `seed` and `BTreeMap`s drive the output: the
//! same seed always gives the same string.

use engine::tools::xml_write::{DumpFormat, DumpWriter};
use engine::tools::{XmlDevice, XmlSuperblock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// How big a history to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenSize {
    /// Pool operations replayed.
    pub steps: u32,
    /// Most devices alive at once.
    pub max_devices: usize,
    /// Virtual size of every device in blocks: origins are below it.
    pub virtual_blocks: u64,
    /// Longest single write, in blocks.
    pub max_run_blocks: u64,
}

impl GenSize {
    /// A handful of devices and mappings.
    pub const TINY: GenSize =
        GenSize { steps: 12, max_devices: 4, virtual_blocks: 64, max_run_blocks: 8 };
    /// Tens of devices, hundreds of mappings.
    pub const SMALL: GenSize =
        GenSize { steps: 60, max_devices: 12, virtual_blocks: 1024, max_run_blocks: 40 };
    /// Thousands of mappings: bottom-level trees get internal nodes.
    pub const MEDIUM: GenSize =
        GenSize { steps: 200, max_devices: 40, virtual_blocks: 20_000, max_run_blocks: 300 };
}

/// Device ids stay below the kernel's limit of 24 bits.
const DEV_ID_LIMIT: u64 = 1 << 24;

/// One mapping's target.
#[derive(Debug, Clone, Copy)]
struct Target {
    data: u64,
    time: u32,
}

#[derive(Debug, Clone)]
struct Device {
    transaction: u64,
    creation_time: u32,
    snap_time: u32,
    mappings: BTreeMap<u64, Target>,
}

/// The model pool whose history is replayed.
struct Pool {
    rng: ChaCha8Rng,
    size: GenSize,
    time: u32,
    transaction: u64,
    /// Next never-used data block; every written block is fresh.
    next_data: u64,
    devices: BTreeMap<u64, Device>,
}

/// A thin_dump 0.9.0 XML document for `seed`, self-consistent as described in the module
/// header.
pub fn generate(seed: u64, size: GenSize) -> String {
    let mut pool = Pool::new(seed, size);
    pool.create_thin();
    for _ in 0..size.steps {
        pool.step();
    }
    pool.render()
}

impl Pool {
    fn new(seed: u64, size: GenSize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let transaction = rng.random_range(0..8);
        let next_data = rng.random_range(0..32);
        Pool { rng, size, time: 0, transaction, next_data, devices: BTreeMap::new() }
    }

    fn step(&mut self) {
        let full = self.devices.len() >= self.size.max_devices;
        match self.rng.random_range(0..100) {
            0..=9 if !full => self.create_thin(),
            10..=24 if !full && !self.devices.is_empty() => self.snapshot(),
            25..=29 if self.devices.len() > 1 => self.delete(),
            30..=37 => self.discard(),
            38..=44 => self.transaction += self.rng.random_range(1..4),
            _ => self.write(),
        }
    }

    /// A fresh device id: mostly small ids, sometimes anywhere below 2^24.
    fn fresh_id(&mut self) -> u64 {
        loop {
            let id = if self.rng.random_bool(0.7) {
                self.rng.random_range(0..64)
            } else {
                self.rng.random_range(0..DEV_ID_LIMIT)
            };
            if !self.devices.contains_key(&id) {
                return id;
            }
        }
    }

    fn random_device(&mut self) -> Option<u64> {
        let count = self.devices.len();
        if count == 0 {
            return None;
        }
        let index = self.rng.random_range(0..count);
        self.devices.keys().nth(index).copied()
    }

    fn create_thin(&mut self) {
        let id = self.fresh_id();
        let device = Device {
            transaction: self.transaction,
            creation_time: self.time,
            snap_time: self.time,
            mappings: BTreeMap::new(),
        };
        self.devices.insert(id, device);
    }

    fn snapshot(&mut self) {
        let Some(origin_id) = self.random_device() else { return };
        let id = self.fresh_id();
        self.time += 1;
        let time = self.time;
        let transaction = self.transaction;
        let Some(origin) = self.devices.get_mut(&origin_id) else { return };
        origin.snap_time = time;
        let snap = Device {
            transaction,
            creation_time: time,
            snap_time: time,
            mappings: origin.mappings.clone(),
        };
        self.devices.insert(id, snap);
    }

    fn delete(&mut self) {
        if let Some(id) = self.random_device() {
            self.devices.remove(&id);
        }
    }

    /// A random run `[begin, begin + len)` inside the virtual size.
    fn random_run(&mut self) -> (u64, u64) {
        let virtual_blocks = self.size.virtual_blocks;
        let begin = self.rng.random_range(0..virtual_blocks);
        let longest = self.size.max_run_blocks.min(virtual_blocks - begin);
        let len = if self.rng.random_bool(0.3) { 1 } else { self.rng.random_range(1..=longest) };
        (begin, len)
    }

    /// Writes a run of fresh data blocks (consecutive, or scattered one by one).
    fn write(&mut self) {
        let Some(id) = self.random_device() else { return };
        let (begin, len) = self.random_run();
        let scattered = self.rng.random_bool(0.2);
        if self.rng.random_bool(0.3) {
            self.next_data += self.rng.random_range(1..50);
        }
        let mut targets = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for _ in 0..len {
            if scattered {
                self.next_data += self.rng.random_range(1..3);
            }
            targets.push(Target { data: self.next_data, time: self.time });
            self.next_data += 1;
        }
        let Some(device) = self.devices.get_mut(&id) else { return };
        for (origin, target) in (begin..begin + len).zip(targets) {
            device.mappings.insert(origin, target);
        }
    }

    fn discard(&mut self) {
        let Some(id) = self.random_device() else { return };
        let (begin, len) = self.random_run();
        let Some(device) = self.devices.get_mut(&id) else { return };
        let doomed: Vec<u64> = device.mappings.range(begin..begin + len).map(|(&o, _)| o).collect();
        for origin in doomed {
            device.mappings.remove(&origin);
        }
    }

    fn superblock(&mut self) -> XmlSuperblock {
        let slack = self.rng.random_range(1..2000);
        XmlSuperblock {
            uuid: String::new(),
            time: self.time,
            transaction: self.transaction,
            flags: u32::from(self.rng.random_bool(0.2)),
            version: self.rng.random_range(1..=2),
            data_block_size: 128 * self.rng.random_range(1..=16),
            nr_data_blocks: self.next_data + slack,
            metadata_snap: None,
        }
    }

    fn render(mut self) -> String {
        let sb = self.superblock();
        let mut out = DumpWriter::new(Vec::new(), DumpFormat::Xml);
        write_all(&mut out, &sb, &self.devices).expect(
            "devices and origins come from BTreeMaps (ascending) and writing to a Vec cannot fail",
        );
        let bytes = out.finish().expect("the dump was completed by write_all");
        String::from_utf8(bytes).expect("the writer emits ASCII only for an empty uuid")
    }
}

fn write_all(
    out: &mut DumpWriter<Vec<u8>>,
    sb: &XmlSuperblock,
    devices: &BTreeMap<u64, Device>,
) -> Result<(), engine::tools::xml_write::DumpError> {
    out.superblock(sb)?;
    for (&dev_id, device) in devices {
        out.begin_device(&XmlDevice {
            dev_id,
            mapped_blocks: device.mappings.len() as u64,
            transaction: device.transaction,
            creation_time: device.creation_time,
            snap_time: device.snap_time,
        })?;
        for (&origin, target) in &device.mappings {
            out.mapping(origin, target.data, target.time)?;
        }
        out.end_device()?;
    }
    out.end_superblock()
}

/// Writes the benchmark pool with `n` mappings as thin_dump XML.
pub fn write_bench_pool(path: &Path, n: u64) -> Result<u64, String> {
    let f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = DumpWriter::new(BufWriter::with_capacity(1 << 20, f), DumpFormat::Xml);
    let per_dev = n / 4;
    let nr_data_blocks = n * 2;
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let e = |x: engine::tools::xml_write::DumpError| x.to_string();
    w.superblock(&XmlSuperblock {
        uuid: String::new(),
        time: 4,
        transaction: 1,
        flags: 0,
        version: 2,
        data_block_size: 128,
        nr_data_blocks,
        metadata_snap: None,
    })
    .map_err(e)?;
    let mut next_data = 0u64;
    let mut dev1 = Vec::with_capacity(per_dev as usize);
    for dev in 1..=4u64 {
        let (creation, snap) = match dev {
            1 => (0, 1),
            2 => (1, 1),
            _ => (2, 2),
        };
        w.begin_device(&XmlDevice {
            dev_id: dev,
            mapped_blocks: per_dev,
            transaction: 1,
            creation_time: creation,
            snap_time: snap,
        })
        .map_err(e)?;
        let mut origin = 0u64;
        let mut written = 0u64;
        while written < per_dev {
            let run = rng.random_range(1..=16u64).min(per_dev - written);
            let time = rng.random_range(0..4u32).min(if dev == 1 { 0 } else { 4 });
            for i in 0..run {
                let data = if dev == 2 && !rng.random_bool(0.2) {
                    dev1[(written + i) as usize]
                } else {
                    next_data += 1;
                    next_data - 1
                };
                if dev == 1 {
                    dev1.push(data);
                }
                let t = if dev == 2
                    && data < per_dev * 2
                    && dev1.get((written + i) as usize) == Some(&data)
                {
                    0
                } else {
                    time
                };
                w.mapping(origin + i, data, t).map_err(e)?;
            }
            written += run;
            origin += run + rng.random_range(0..3u64);
            next_data += rng.random_range(0..2u64);
        }
        w.end_device().map_err(e)?;
    }
    w.end_superblock().map_err(e)?;
    w.finish().map_err(e)?;
    Ok(nr_data_blocks)
}
