//! `repair` on damaged images: what each kind of damage costs, and the two promises that
//! hold whatever the damage — the repaired image is clean, and every mapping it keeps is one
//! the pool had (repair loses, never invents or moves).

mod common;
use common::salvage::*;
use common::Observe;
use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::tools::repair::{salvage, RootsFrom};
use engine::tools::types::Overrides;
use engine::tools::ToolError;

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
    let details = sb(&img).device_details_root.0;
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
