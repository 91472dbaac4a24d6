//! Helpers of the repair tests: a base pool with every shape repair must walk (an internal
//! root, a snapshot with broken sharing, a small device), what a pool maps flattened, and
//! repair run to a clean image (asserted) with what it kept: mappings, the whole dump, and
//! the salvage report.

use super::Observe;
use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::io::{BlockDevice, MemoryDevice};
use engine::thin::{Pool, Source, ThinId};
use engine::tools::repair::{repair, RootsFrom, SalvageReport};
use engine::tools::types::Overrides;
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use engine::tools::ToolError;
use std::collections::BTreeMap;

/// (device, vblock) → (data block, time).
pub type Flat = BTreeMap<(u64, u64), (u64, u32)>;

/// Metadata and data sizes of [`base`], in blocks.
pub const BASE_METADATA_BLOCKS: u64 = 512;
pub const BASE_DATA_BLOCKS: u64 = 20_000;

/// The index of `key` among a node's entries.
pub fn entry_of(n: &engine::io::Block, key: u64) -> usize {
    (0..node::nr_entries(n))
        .find(|&i| node::key(n, i) == key)
        .unwrap_or_else(|| panic!("key {key} is in the node"))
}

/// Where the top-level tree (a single leaf here) says device `dev`'s mapping tree is.
pub fn device_root(img: &MemoryDevice, dev: u64) -> u64 {
    let t = img.block(sb(img).data_mapping_root.0).unwrap();
    node::value_u64(t, entry_of(t, dev))
}

/// Device 1 with 700 mappings (an internal root), device 2 its snapshot with 50 blocks
/// rewritten (broken sharing), device 3 with 5 mappings; all committed, at pool time 1.
pub fn base() -> (MemoryDevice, Flat) {
    let (pool, dev) = super::fresh_pool(BASE_METADATA_BLOCKS, BASE_DATA_BLOCKS);
    pool.create_thin(ThinId(1)).unwrap();
    super::provision(&pool, ThinId(1), 0..700);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    super::provision(&pool, ThinId(2), 100..150);
    pool.create_thin(ThinId(3)).unwrap();
    super::provision(&pool, ThinId(3), (0..5).map(|v| v * 1000));
    pool.commit().unwrap();
    let flat = flat(&pool);
    drop(pool);
    (dev.image(), flat)
}

pub fn flat(pool: &Pool) -> Flat {
    let mut out = BTreeMap::new();
    for (id, maps) in super::logical(pool) {
        for (v, bt) in maps {
            out.insert((id, v), (bt.data_block.0, bt.time.0));
        }
    }
    out
}

/// What a repair left: the clean image's mappings and dump, and the salvage's report.
pub struct Repaired {
    pub flat: Flat,
    pub dump: String,
    pub report: SalvageReport,
    pub image: MemoryDevice,
}

/// Repairs `img` onto a device of its size and asserts the result checks clean.
pub fn repaired_whole(img: &MemoryDevice, o: Overrides) -> Result<Repaired, ToolError> {
    let out = MemoryDevice::new(img.nr_blocks());
    let (report, mut dev) = repair(img.to_device(), Box::new(out), o)?;
    let mut bytes = vec![0u8; 4096 * img.nr_blocks() as usize];
    for (b, chunk) in bytes.chunks_mut(4096).enumerate() {
        let mut block = [0u8; 4096];
        dev.read(b as u64, &mut block).unwrap();
        chunk.copy_from_slice(&block);
    }
    let image = MemoryDevice::from_bytes(&bytes);
    let audit = engine::tools::check::check(image.to_device());
    assert!(audit.is_clean(), "the repaired image is not clean: {:?}", audit.findings);
    let pool = Pool::open_image(image.to_device()).unwrap();
    Ok(Repaired { flat: flat(&pool), dump: dump(&pool), report, image })
}

/// Repairs `img` and returns what the clean result maps, with where the roots came from.
pub fn repaired(img: &MemoryDevice, o: Overrides) -> Result<(Flat, RootsFrom), ToolError> {
    repaired_whole(img, o).map(|r| (r.flat, r.report.roots_from))
}

/// The pool's live metadata as `dump` prints it.
pub fn dump(pool: &Pool) -> String {
    let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
    engine::tools::dump::dump(pool, &mut w, Source::Live).unwrap();
    String::from_utf8(w.finish().unwrap()).unwrap()
}

/// `dump` of a healthy image.
pub fn dump_image(img: &MemoryDevice) -> String {
    dump(&Pool::open_image(img.to_device()).unwrap())
}

pub fn assert_subset(kept: &Flat, had: &Flat) {
    for (k, v) in kept {
        assert_eq!(had.get(k), Some(v), "repair invented or moved mapping {k:?} -> {v:?}");
    }
}

pub fn sb(img: &MemoryDevice) -> Superblock {
    Superblock::unpack(img.block(0).unwrap(), 0).unwrap()
}

/// Writes `s` as block 0 and breaks its checksum: a damaged superblock whose fields are
/// exactly `s`'s.
pub fn put_damaged_superblock(img: &mut MemoryDevice, s: &Superblock) {
    *img.block_mut(0) = s.pack(0);
    img.block_mut(0)[0] ^= 0xff;
    assert!(Superblock::unpack(img.block(0).unwrap(), 0).is_err());
}

/// Seals node `b` again after an edit: damage no checksum can see.
pub fn reseal(img: &mut MemoryDevice, b: u64) {
    checksum::seal(img.block_mut(b), BlockKind::Node, b);
}

/// The superblock values [`base`] was made with, as a user would give them.
pub fn user_values() -> Overrides {
    Overrides {
        transaction_id: Some(0),
        data_block_size: Some(128),
        nr_data_blocks: Some(BASE_DATA_BLOCKS),
    }
}
