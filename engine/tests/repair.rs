//! `repair` on damaged images: what each kind of damage costs, and the two promises that
//! hold whatever the damage — the repaired image is clean, and every mapping it keeps is one
//! the pool had (repair loses, never invents or moves).

mod common;
use common::Observe;
use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::io::MemoryDevice;
use engine::thin::{Pool, ThinId};
use engine::tools::repair::{repair, salvage, RootsFrom};
use engine::tools::types::Overrides;
use engine::tools::ToolError;
use std::collections::BTreeMap;

/// (device, vblock) → (data block, time).
type Flat = BTreeMap<(u64, u64), (u64, u32)>;

/// Where the top-level tree (a single leaf here) says device `dev`'s mapping tree is.
fn device_root(img: &MemoryDevice, dev: u64) -> u64 {
    let t = img.block(sb(img).data_mapping_root).unwrap();
    (0..node::nr_entries(t))
        .find(|&i| node::key(t, i) == dev)
        .map(|i| node::value_u64(t, i))
        .unwrap_or_else(|| panic!("device {dev} is in the top-level leaf"))
}

/// Device 1 with 700 mappings (an internal root), device 2 its snapshot with 50 blocks
/// rewritten (broken sharing), device 3 with 5 mappings; all committed, at pool time 1.
fn base() -> (MemoryDevice, Flat) {
    let (pool, dev) = common::fresh_pool(512, 20_000);
    pool.create_thin(ThinId(1)).unwrap();
    common::provision(&pool, ThinId(1), 0..700);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    common::provision(&pool, ThinId(2), 100..150);
    pool.create_thin(ThinId(3)).unwrap();
    common::provision(&pool, ThinId(3), (0..5).map(|v| v * 1000));
    pool.commit().unwrap();
    let flat = flat(&pool);
    drop(pool);
    (dev.image(), flat)
}

fn flat(pool: &Pool) -> Flat {
    let mut out = BTreeMap::new();
    for (id, maps) in common::logical(pool) {
        for (v, bt) in maps {
            out.insert((id, v), (bt.data_block.0, bt.time));
        }
    }
    out
}

/// Repairs `img` and returns what the clean result maps, with where the roots came from.
fn repaired(img: &MemoryDevice, o: Overrides) -> Result<(Flat, RootsFrom), ToolError> {
    let out = MemoryDevice::new(img.block_count());
    let (report, dev) = repair(img.to_device(), Box::new(out), o)?;
    let mut bytes = vec![0u8; 4096 * img.block_count() as usize];
    let mut dev = dev;
    for (b, chunk) in bytes.chunks_mut(4096).enumerate() {
        let mut block = [0u8; 4096];
        dev.read(b as u64, &mut block).unwrap();
        chunk.copy_from_slice(&block);
    }
    let image = MemoryDevice::from_bytes(&bytes);
    let audit = engine::tools::check::check(image.to_device());
    assert!(audit.is_clean(), "the repaired image is not clean: {:?}", audit.findings);
    let pool = Pool::open_image(image.to_device()).unwrap();
    Ok((flat(&pool), report.roots_from))
}

fn assert_subset(kept: &Flat, had: &Flat) {
    for (k, v) in kept {
        assert_eq!(had.get(k), Some(v), "repair invented or moved mapping {k:?} -> {v:?}");
    }
}

fn sb(img: &MemoryDevice) -> Superblock {
    Superblock::unpack(img.block(0).unwrap(), 0).unwrap()
}

fn user_values() -> Overrides {
    Overrides { transaction_id: Some(0), data_block_size: Some(128), nr_data_blocks: Some(20_000) }
}

trait Blocks {
    fn block_count(&self) -> u64;
}

impl Blocks for MemoryDevice {
    fn block_count(&self) -> u64 {
        use engine::io::BlockDevice;
        self.nr_blocks()
    }
}

#[test]
fn healthy_metadata_comes_back_whole() {
    let (img, had) = base();
    let (kept, from) = repaired(&img, Overrides::default()).unwrap();
    assert_eq!(from, RootsFrom::Superblock);
    assert_eq!(kept, had);
}

#[test]
fn a_zeroed_superblock_needs_the_users_values_then_a_scan_finds_everything() {
    let (mut img, had) = base();
    *img.block_mut(0) = [0u8; 4096];
    let e = salvage(img.to_device(), Overrides::default()).unwrap_err();
    assert!(matches!(&e, ToolError::Input(s) if s.contains("--data-block-size")), "{e}");
    let (kept, from) = repaired(&img, user_values()).unwrap();
    assert_eq!(from, RootsFrom::Scan);
    assert_eq!(kept, had, "the newest trees are the ones whose devices agree");
}

#[test]
fn a_superblock_with_a_bad_checksum_still_gives_its_roots() {
    let (mut img, had) = base();
    img.block_mut(0)[0] ^= 0xff;
    assert!(Superblock::unpack(img.block(0).unwrap(), 0).is_err());
    let (kept, from) = repaired(&img, Overrides::default()).unwrap();
    assert_eq!(from, RootsFrom::DamagedSuperblock);
    assert_eq!(kept, had);
}

#[test]
fn a_damaged_leaf_loses_its_mappings_and_nothing_else() {
    let (mut img, had) = base();
    let dev1_root = device_root(&img, 1);
    let r = img.block(dev1_root).unwrap();
    assert!(!node::is_leaf(r), "device 1's root is internal");
    let leaf = node::value_u64(r, 1);
    img.block_mut(leaf)[100] ^= 1; // checksum now wrong
    let (kept, _) = repaired(&img, Overrides::default()).unwrap();
    assert_subset(&kept, &had);
    let lost = had.len() - kept.len();
    assert!(lost > 0, "the leaf's mappings are gone");
    // Device 2 shares that leaf (sharing broken only for 100..150): it loses the same.
    assert!(lost < 700, "only that leaf's mappings are lost ({lost})");
    assert!(kept.keys().any(|k| k.0 == 3), "device 3 is untouched");
}

#[test]
fn damaged_details_are_recreated_from_the_mapping_trees() {
    let (mut img, had) = base();
    let details = sb(&img).device_details_root;
    img.block_mut(details)[200] ^= 1;
    let s = salvage(img.to_device(), Overrides::default()).unwrap();
    assert_eq!(s.report.unmatched_devices, 3);
    assert_eq!(s.devices.len(), 3);
    let (kept, _) = repaired(&img, Overrides::default()).unwrap();
    assert_eq!(kept, had);
}

#[test]
fn an_empty_pool_repairs_to_an_empty_pool() {
    let (pool, dev) = common::fresh_pool(64, 100);
    drop(pool);
    let (kept, _) = repaired(&dev.image(), Overrides::default()).unwrap();
    assert!(kept.is_empty());
    let mut img = dev.image();
    *img.block_mut(0) = [0u8; 4096];
    let e = repaired(&img, user_values());
    assert!(matches!(e, Ok(_) | Err(ToolError::Input(_))), "typed either way: {e:?}");
}

/// Damage that breaks checksums (every kind the format detects), in random blocks: repair
/// gives a clean image that keeps only mappings the pool had, or a typed refusal.
#[test]
fn detected_damage_anywhere_never_invents_a_mapping() {
    use rand::{Rng, SeedableRng};
    let (base, had) = base();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    let mut repaired_images = 0;
    for _ in 0..150 {
        let mut img = base.clone();
        for _ in 0..rng.random_range(1..5) {
            let b = rng.random_range(0..64);
            let off = rng.random_range(0..4096);
            img.block_mut(b)[off] ^= 1 << rng.random_range(0..8);
        }
        match repaired(&img, user_values()) {
            Ok((kept, _)) => {
                assert_subset(&kept, &had);
                repaired_images += 1;
            }
            Err(ToolError::Input(_)) => {}
            Err(e) => panic!("untyped failure: {e}"),
        }
    }
    assert!(repaired_images > 100, "most damaged images repair ({repaired_images})");
}

/// A node damaged and then resealed is valid to every validator: repair keeps what it
/// says, as the kernel would. This pins that such damage is the one way a mapping can move,
/// which is why the simulator excuses only lost and misdirected writes.
#[test]
fn resealed_damage_is_beyond_any_checksum() {
    let (mut img, had) = base();
    let dev3_root = device_root(&img, 3);
    let blk = img.block_mut(dev3_root);
    // The first value's data block (bits 24..) gains one: a moved mapping.
    let off = node::value(blk, 0).as_ptr() as usize - blk.as_ptr() as usize;
    blk[off + 3] ^= 1;
    checksum::seal(blk, BlockKind::Node, dev3_root);
    let (kept, _) = repaired(&img, Overrides::default()).unwrap();
    assert_ne!(kept, had);
}

/// Top-level and mapping leaves both hold 8-byte values. After a lost write an older
/// top-level leaf can stand where a device's mapping leaf belongs, valid at its place; read
/// as mappings its roots would be data block 0 at small times. Repair must take it for what
/// it is and lose that device's mappings, never keep them (found by the swarm: seed 15).
#[test]
fn an_older_top_level_leaf_where_mappings_belong_is_not_read_as_mappings() {
    let (mut img, had) = base();
    let dev3_root = device_root(&img, 3);
    let blk = img.block_mut(dev3_root);
    assert!(node::is_leaf(blk), "device 3's five mappings fit one leaf");
    // Every value a metadata block number: what a top-level leaf holds. Block 1 at time
    // 1 would pass every range check a mapping gets.
    for i in 0..node::nr_entries(blk) {
        let off = node::value(blk, i).as_ptr() as usize - blk.as_ptr() as usize;
        blk[off..off + 8].copy_from_slice(&1u64.to_le_bytes());
    }
    checksum::seal(blk, BlockKind::Node, dev3_root);
    let (kept, _) = repaired(&img, Overrides::default()).unwrap();
    assert_subset(&kept, &had);
    assert!(!kept.keys().any(|k| k.0 == 3), "device 3's leaf is not mappings: {kept:?}");
    let others = had.keys().filter(|k| k.0 != 3).count();
    assert_eq!(kept.len(), others, "every other device comes back whole");
}
