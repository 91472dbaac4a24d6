//! A table of corruptions, one per kind of damage and block type. Each must give a typed
//! error naming the damaged block — from `Pool::open`, from the first call that reads the
//! block, and as a finding of `check` — and none may panic or hang.

mod common;
use common::Observe;
use engine::thin::{DataBlock, ThinId, VBlock};
use engine::tools::check::{FindingKind, Space};

use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::io::MemoryDevice;
use engine::thin::{Pool, PoolOptions};
use engine::{Errno, Error};

/// A committed pool: device 1 with 700 mappings (an internal root), device 2 a snapshot.
/// Block `b` of `img`, which the test knows to be in range.
fn blk(img: &MemoryDevice, b: u64) -> &engine::io::Block {
    img.block(b).unwrap_or_else(|| panic!("block {b} beyond the image"))
}

fn base_image() -> MemoryDevice {
    let (pool, dev) = common::fresh_pool(512, 20_000);
    pool.create_thin(ThinId(1)).unwrap();
    common::provision(&pool, ThinId(1), 0..700);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    pool.commit().unwrap();
    drop(pool);
    dev.image()
}

fn sb(img: &MemoryDevice) -> Superblock {
    Superblock::unpack(blk(img, 0), 0).unwrap()
}

fn root_of_device(img: &MemoryDevice, id: u64) -> u64 {
    let top = blk(img, sb(img).data_mapping_root.0);
    (0..node::nr_entries(top))
        .find(|&i| node::key(top, i) == id)
        .map(|i| node::value_u64(top, i))
        .unwrap()
}

/// Edits a block and recomputes its checksum, so only the structural damage remains.
fn edit_sealed(img: &mut MemoryDevice, b: u64, kind: BlockKind, f: impl FnOnce(&mut [u8; 4096])) {
    let blk = img.block_mut(b);
    f(blk);
    let c = checksum::checksum(blk, kind);
    blk[0..4].copy_from_slice(&c.to_le_bytes());
}

/// Exercises the image through the pool: open, every lookup of both devices, alloc, commit.
fn exercise(img: MemoryDevice) -> Result<(), Error> {
    let pool = Pool::open(Box::new(img), PoolOptions::new(128))?;
    for id in [1, 2] {
        let h = pool.open_thin_device(ThinId(id))?;
        for v in 0..700 {
            pool.find_block(&h, VBlock(v), true)?;
        }
        pool.close_thin_device(h);
    }
    pool.alloc_data_block()?;
    pool.commit()
}

fn expect_block_error(name: &str, img: MemoryDevice, block: u64, errnos: &[Errno]) {
    let report = engine::tools::check::check(Box::new(img.clone()));
    assert!(!report.is_clean(), "{name}: check found nothing");
    assert!(
        report.findings.iter().any(|f| f.block == Some(block)),
        "{name}: no finding names block {block}: {:?}",
        report.findings
    );
    match exercise(img) {
        Err(e @ Error::Corrupt { block: b, .. }) => {
            assert_eq!(b, block, "{name}: error names the wrong block: {e}");
            assert!(errnos.contains(&e.errno()), "{name}: errno {:?}", e.errno());
        }
        other => panic!("{name}: expected a corruption error at block {block}, got {other:?}"),
    }
}

#[test]
fn flipped_byte_in_each_block_type() {
    let base = base_image();
    let s = sb(&base);
    let meta_index = s.metadata_sm_root.bitmap_root.0;
    let meta_bitmap =
        engine::format::index::unpack_metadata_index(blk(&base, meta_index), 1)[0].blocknr.0;
    let cases = [
        ("superblock", 0),
        ("metadata index", meta_index),
        ("metadata bitmap", meta_bitmap),
        ("details leaf", s.device_details_root.0),
        ("top-level leaf", s.data_mapping_root.0),
        ("mapping internal node", root_of_device(&base, 1)),
        ("data index btree", s.data_sm_root.bitmap_root.0),
    ];
    for (name, b) in cases {
        let mut img = base.clone();
        img.block_mut(b)[200] ^= 0x40;
        expect_block_error(name, img, b, &[Errno::EILSEQ]);
    }
}

#[test]
fn flipped_byte_in_a_mapping_leaf_and_data_bitmap() {
    let base = base_image();
    let root = root_of_device(&base, 1);
    let leaf = node::value_u64(blk(&base, root), 1);
    let mut img = base.clone();
    img.block_mut(leaf)[300] ^= 1;
    expect_block_error("mapping leaf", img, leaf, &[Errno::EILSEQ]);
}

#[test]
fn wrong_block_number() {
    let base = base_image();
    let root = root_of_device(&base, 1);
    let mut img = base.clone();
    edit_sealed(&mut img, root, BlockKind::Node, |b| {
        b[8..16].copy_from_slice(&9999u64.to_le_bytes())
    });
    expect_block_error("node blocknr", img, root, &[Errno::ENOTBLK]);
}

#[test]
fn nr_entries_past_max_entries() {
    let base = base_image();
    let root = root_of_device(&base, 1);
    let mut img = base.clone();
    edit_sealed(&mut img, root, BlockKind::Node, |b| {
        b[16..20].copy_from_slice(&253u32.to_le_bytes())
    });
    expect_block_error("nr_entries > max", img, root, &[Errno::EILSEQ]);
}

#[test]
fn keys_out_of_order() {
    let base = base_image();
    let leaf = node::value_u64(blk(&base, root_of_device(&base, 1)), 0);
    let mut img = base.clone();
    edit_sealed(&mut img, leaf, BlockKind::Node, |b| {
        let k1 = node::key(b, 1);
        node::set_key(b, 2, k1);
    });
    expect_block_error("keys out of order", img, leaf, &[Errno::EILSEQ]);
}

#[test]
fn cycle_is_an_error_not_a_hang() {
    let base = base_image();
    let root = root_of_device(&base, 1);
    let mut img = base.clone();
    // The internal root's second child now points back at the root itself.
    edit_sealed(&mut img, root, BlockKind::Node, |b| node::set_value(b, 1, &root.to_le_bytes()));
    let report = engine::tools::check::check(Box::new(img.clone()));
    assert!(!report.is_clean());
    assert!(report.findings.iter().any(|f| f.block == Some(root)), "{:?}", report.findings);
    // The batched lookup (verification's path) and lookup-next bound their depth too.
    let pool = Pool::open(Box::new(img.clone()), PoolOptions::new(128)).unwrap();
    let keys: Vec<u64> = (0..700).collect();
    let err = pool.lookup_mappings(ThinId(1), &keys).unwrap_err();
    assert_eq!(err.errno(), Errno::EILSEQ, "{err}");
    // Lookup-next from the second child's first key on walks into the cycle.
    let second = node::key(blk(&base, root), 1);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    let err = pool.remove_range(&h, VBlock(second), VBlock(second + 10)).unwrap_err();
    assert_eq!(err.errno(), Errno::EILSEQ, "lookup-next into the cycle: {err}");
    pool.close_thin_device(h);
    drop(pool);
    let err = exercise(img).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn random_damage_never_panics() {
    use rand::{Rng, SeedableRng};
    let base = base_image();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..200 {
        let mut img = base.clone();
        for _ in 0..rng.random_range(1..4) {
            let b = rng.random_range(0..64);
            let off = rng.random_range(0..4096);
            img.block_mut(b)[off] = rng.random();
            if rng.random_bool(0.5) {
                let kind = BlockKind::classify(blk(&img, b)).unwrap_or(BlockKind::Node);
                edit_sealed(&mut img, b, kind, |_| {});
            }
        }
        let _ = engine::tools::check::check(Box::new(img.clone()));
        let _ = exercise(img);
    }
}

/// Damage that every block validator accepts (checksums recomputed) but `check` must report.
/// The finding is matched by its kind; `needle` pins the words a person reads.
fn expect_finding(name: &str, img: MemoryDevice, kind: FindingKind, needle: &str) {
    let report = engine::tools::check::check(Box::new(img));
    assert!(!report.is_clean(), "{name}: check found nothing");
    assert!(
        report.findings.iter().any(|f| f.kind == kind && f.what.contains(needle)),
        "{name}: no finding mentions {needle:?}: {:?}",
        report.findings
    );
}

fn data_bitmap(img: &MemoryDevice) -> u64 {
    let index_root = sb(img).data_sm_root.bitmap_root.0;
    engine::format::IndexEntry::unpack(node::value(blk(img, index_root), 0)).blocknr.0
}

#[test]
fn semantic_damage_is_reported_by_check() {
    let base = base_image();
    // A data block's reference count 1 → 2.
    let mut img = base.clone();
    let bmp = data_bitmap(&img);
    edit_sealed(&mut img, bmp, BlockKind::Bitmap, |b| engine::format::bitmap::set(b, 0, 2));
    expect_finding(
        "data refcount",
        img,
        FindingKind::RefCount { space: Space::Data, stored: 2, expected: 1 },
        "data reference count 2, expected 1 (leaked)",
    );
    // mapped_blocks of device 1: 700 → 99.
    let mut img = base.clone();
    let details = sb(&img).device_details_root.0;
    edit_sealed(&mut img, details, BlockKind::Node, |b| {
        let mut d = engine::format::DeviceDetails::unpack(node::value(b, 0));
        d.mapped_blocks = 99;
        node::set_value(b, 0, &d.pack());
    });
    expect_finding(
        "mapped_blocks",
        img,
        FindingKind::DeviceDetails,
        "mapped_blocks 99 but 700 mappings",
    );
    // A mapping past the end of the data device.
    let mut img = base.clone();
    let leaf = node::value_u64(blk(&img, root_of_device(&img, 1)), 0);
    edit_sealed(&mut img, leaf, BlockKind::Node, |b| {
        let v = engine::format::BlockTime {
            data_block: DataBlock(1 << 30),
            time: engine::format::Time(0),
        }
        .pack()
        .unwrap();
        node::set_value(b, 0, &v.to_le_bytes());
    });
    expect_finding("past the data device", img, FindingKind::Mapping, "maps past the data device");
    // An underfull non-root leaf: all but 10 entries moved out (keys dropped).
    let mut img = base.clone();
    let leaf = node::value_u64(blk(&img, root_of_device(&img, 1)), 1);
    edit_sealed(&mut img, leaf, BlockKind::Node, |b| node::set_nr_entries(b, 10));
    expect_finding("underfull node", img, FindingKind::TreeShape, "too few entries");
    // A superblock whose checksum is fine but whose magic is not.
    let mut img = base.clone();
    edit_sealed(&mut img, 0, BlockKind::Superblock, |b| b[32] ^= 1);
    expect_finding("bad superblock", img, FindingKind::Superblock, "no thin superblock magic");
}

/// Regression (found when a structural canary left a parent's key stale and the swarm hung):
/// an internal key raised above its child's first key leaves that child's low keys
/// reachable by lookup-next but not by descent. `remove_range` looped forever; it now fails
/// with a typed error naming the tree, and `check` reports the key.
#[test]
fn internal_key_above_its_child_is_an_error_not_a_hang() {
    let base = base_image();
    let root = root_of_device(&base, 1);
    let mut img = base.clone();
    let (k1, k2) = (node::key(blk(&base, root), 1), node::key(blk(&base, root), 2));
    assert!(k1 + 50 < k2, "the edit keeps the root's own keys in order");
    edit_sealed(&mut img, root, BlockKind::Node, |b| node::set_key(b, 1, k1 + 50));
    let report = engine::tools::check::check(Box::new(img.clone()));
    assert!(!report.is_clean(), "check passes an internal key above its child's keys");
    let pool = Pool::open(Box::new(img), PoolOptions::new(128)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    let err = pool.remove_range(&h, VBlock(k1 + 4), VBlock(k1 + 14)).unwrap_err();
    assert_eq!(err.errno(), Errno::EILSEQ, "{err}");
}
