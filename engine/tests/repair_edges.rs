//! `repair` at its edges, each test aimed at one decision of the salvage that the damage
//! tests of `repair.rs` do not pin (written from a `cargo mutants` run on
//! `engine/src/tools/repair.rs`, reports/bench/mutants.md): the whole state (details,
//! times, transaction id, sizes — not only mappings) from every source of roots, internal
//! roots of the details and top-level trees behind a damaged superblock, the uuid, the
//! superblock values a damaged superblock cannot give, every leaf entry the salvage must
//! drop (and count), a child pointing back at its parent, and which trees a scan prefers.

mod common;
use common::salvage::*;
use common::Observe;
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::io::MemoryDevice;
use engine::limits::TIME_LIMIT;
use engine::thin::{ThinId, TransactionId};
use engine::tools::repair::{salvage, RootsFrom};
use engine::tools::types::Overrides;
use engine::tools::ToolError;

#[test]
fn the_whole_state_comes_back_from_each_source_of_roots() {
    let (img, had) = base();
    let want = dump_image(&img);
    let mut damaged = img.clone();
    damaged.block_mut(0)[0] ^= 0xff;
    let mut zeroed = img.clone();
    *zeroed.block_mut(0) = [0u8; 4096];
    for (what, image, o, from) in [
        ("valid", &img, Overrides::default(), RootsFrom::Superblock),
        ("bad checksum", &damaged, Overrides::default(), RootsFrom::DamagedSuperblock),
        ("zeroed", &zeroed, user_values(), RootsFrom::Scan),
    ] {
        let r = repaired_whole(image, o).unwrap();
        assert_eq!(r.report.roots_from, from, "{what}");
        assert_eq!(r.dump, want, "{what}: details, times and sizes come back too");
        assert_eq!(r.flat, had, "{what}");
        let rep = &r.report;
        assert_eq!((rep.devices, rep.mappings), (3, had.len() as u64), "{what}");
        assert_eq!(
            (rep.unreadable_nodes, rep.dropped_entries, rep.unmatched_devices),
            (0, 0, 0),
            "{what}: nothing lost"
        );
        assert_eq!(rep.nodes_scanned > 0, from == RootsFrom::Scan, "{what}");
    }
}

/// 300 devices: the details tree (127 entries a leaf) and the top-level tree (252) both
/// have internal roots, which a damaged superblock's roots must still be recognised as.
#[test]
fn internal_roots_behind_a_damaged_superblock_are_kept() {
    let (pool, dev) = common::fresh_pool(1024, 1000);
    for id in 0..300 {
        pool.create_thin(ThinId(id)).unwrap();
        common::provision(&pool, ThinId(id), [id * 3]);
    }
    pool.commit().unwrap();
    let had = flat(&pool);
    drop(pool);
    let mut img = dev.image();
    let s = sb(&img);
    for root in [s.device_details_root.0, s.data_mapping_root.0] {
        assert!(!node::is_leaf(img.block(root).unwrap()), "root {root} is internal");
    }
    let want = dump_image(&img);
    put_damaged_superblock(&mut img, &s);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    assert_eq!(r.report.roots_from, RootsFrom::DamagedSuperblock);
    assert_eq!(r.flat, had);
    assert_eq!(r.dump, want);
}

#[test]
fn the_uuid_is_kept_up_to_its_first_nul() {
    let (mut img, _) = base();
    let mut s = sb(&img);
    s.uuid = *b"pool-7\0trailing!";
    *img.block_mut(0) = s.pack(0);
    let kept = salvage(img.to_device(), Overrides::default()).unwrap();
    assert_eq!(kept.sb.uuid, "pool-7");
    put_damaged_superblock(&mut img, &s);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    let out = Superblock::unpack(r.image.block(0).unwrap(), 0).unwrap();
    assert_eq!(&out.uuid[..7], b"pool-7\0", "the repaired superblock carries it");
    s.uuid = [b'u'; 16];
    *img.block_mut(0) = s.pack(0);
    let kept = salvage(img.to_device(), Overrides::default()).unwrap();
    assert_eq!(kept.sb.uuid, "u".repeat(16), "no NUL: all 16 bytes");
}

#[test]
fn a_damaged_superblock_without_a_data_block_size_asks_for_it() {
    let (mut img, had) = base();
    let want = dump_image(&img);
    let mut s = sb(&img);
    s.data_block_size = 0;
    put_damaged_superblock(&mut img, &s);
    let e = salvage(img.to_device(), Overrides::default()).unwrap_err();
    assert!(matches!(&e, ToolError::Input(m) if m.contains("--data-block-size")), "{e}");
    let o = Overrides { data_block_size: Some(128), ..Overrides::default() };
    let r = repaired_whole(&img, o).unwrap();
    assert_eq!((r.flat, r.dump), (had, want));
}

#[test]
fn a_damaged_superblocks_time_past_the_format_is_capped() {
    let (mut img, had) = base();
    let mut s = sb(&img);
    s.time = engine::format::Time(u32::MAX);
    put_damaged_superblock(&mut img, &s);
    let kept = salvage(img.to_device(), Overrides::default()).unwrap();
    assert_eq!(kept.sb.time, TIME_LIMIT - 1, "the largest time a mapping can hold");
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    assert_eq!(r.flat, had);
}

/// Device 3's five mappings live in its root leaf. Values only a resealed (or older) leaf
/// can hold: past the data device, after the pool's time. Each is dropped and counted; the
/// last data block and the pool's own time are kept.
#[test]
fn mappings_past_the_data_device_or_after_the_pool_time_are_dropped_and_counted() {
    let (mut img, mut had) = base();
    let leaf = device_root(&img, 3);
    let blk = img.block_mut(leaf);
    assert!(node::is_leaf(blk) && node::nr_entries(blk) == 5);
    let pack = |data: u64, time: u64| ((data << 24) | time).to_le_bytes();
    node::set_value(blk, 0, &pack(BASE_DATA_BLOCKS, 0)); // one past the last data block
    node::set_value(blk, 1, &pack(17, 2)); // the pool's time is 1
    node::set_value(blk, 2, &pack(BASE_DATA_BLOCKS - 1, 1)); // the last block, at time 1
    reseal(&mut img, leaf);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    assert_eq!(r.report.dropped_entries, 2);
    had.remove(&(3, 0));
    had.remove(&(3, 1000));
    had.insert((3, 2000), (BASE_DATA_BLOCKS - 1, 1));
    assert_eq!(r.flat, had);
}

/// Device 1's root is internal over three leaves. Keys a leaf cannot hold in its place: one
/// below its parent's key (it belongs to the previous leaf) and one equal to the next
/// leaf's first key. Both are dropped and counted; the leaves that own those keys keep them.
#[test]
fn keys_outside_their_parents_range_are_dropped_and_counted() {
    let (mut img, mut had) = base();
    let root = device_root(&img, 1);
    let r = img.block(root).unwrap();
    assert!(!node::is_leaf(r) && node::nr_entries(r) >= 3);
    let (k1, k2, mid) = (node::key(r, 1), node::key(r, 2), node::value_u64(r, 1));
    let leaf = img.block_mut(mid);
    let n = node::nr_entries(leaf);
    let (first, last) = (node::key(leaf, 0), node::key(leaf, n - 1));
    assert_eq!((first, last + 1), (k1, k2), "the middle leaf holds [k1, k2)");
    node::set_key(leaf, 0, k1 - 1);
    node::set_key(leaf, n - 1, k2);
    reseal(&mut img, mid);
    let out = repaired_whole(&img, Overrides::default()).unwrap();
    assert_eq!(out.report.dropped_entries, 2);
    had.remove(&(1, first));
    had.remove(&(1, last));
    assert_eq!(out.flat, had);
}

/// A child pointer aimed back at its own parent (a cycle): that child's mappings are lost,
/// the walk ends, and every other leaf is read once (nothing is counted as dropped).
#[test]
fn a_child_pointing_back_at_its_parent_loses_that_child_only() {
    let (mut img, mut had) = base();
    let root = device_root(&img, 1);
    let r = img.block(root).unwrap();
    let (mid, k1, k2) = (node::value_u64(r, 1), node::key(r, 1), node::key(r, 2));
    assert!(node::is_leaf(img.block(mid).unwrap()));
    node::set_value(img.block_mut(root), 1, &root.to_le_bytes());
    reseal(&mut img, root);
    let out = repaired_whole(&img, Overrides::default()).unwrap();
    assert_eq!(out.report.dropped_entries, 0);
    had.retain(|&(d, v), _| d != 1 || !(k1..k2).contains(&v));
    assert_eq!(out.flat, had);
}

/// A top-level leaf holds metadata block numbers; one value at the metadata device's size
/// (one past its last block) makes the whole leaf a mapping leaf in the wrong place: every
/// device's mappings are lost, its details kept.
#[test]
fn a_top_level_value_at_the_metadata_size_is_not_a_top_level_leaf() {
    let (mut img, _) = base();
    let top = sb(&img).data_mapping_root.0;
    let t = img.block(top).unwrap();
    let i = entry_of(t, 3);
    node::set_value(img.block_mut(top), i, &BASE_METADATA_BLOCKS.to_le_bytes());
    reseal(&mut img, top);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    assert!(r.flat.is_empty(), "{} mappings kept", r.flat.len());
    assert_eq!((r.report.devices, r.report.unreadable_nodes), (3, 1));
}

/// An older state's trees survive beside the newest ones (their blocks are free but not yet
/// reused). With no superblock, the scan must take the newest pair: the mapping tree with
/// the most recent mappings (device 3, a snapshot, has them at time 1), then the details
/// tree that matches it. Here the older trees hold a *higher* transaction id
/// (set_transaction_id may go down), so only the time tells them apart.
#[test]
fn a_scan_takes_the_agreeing_trees_then_the_newest_by_time() {
    let (pool, dev) = common::fresh_pool(BASE_METADATA_BLOCKS, BASE_DATA_BLOCKS);
    pool.create_thin(ThinId(1)).unwrap();
    common::provision(&pool, ThinId(1), 0..300);
    pool.set_transaction_id(TransactionId(0), TransactionId(100)).unwrap();
    pool.create_thin(ThinId(2)).unwrap();
    common::provision(&pool, ThinId(2), 0..20);
    pool.commit().unwrap();
    let older = (flat(&pool), dump(&pool));
    pool.set_transaction_id(TransactionId(100), TransactionId(5)).unwrap();
    pool.delete_thin_device(ThinId(2)).unwrap();
    pool.create_snap(ThinId(3), ThinId(1)).unwrap();
    pool.commit().unwrap();
    let newer = (flat(&pool), dump(&pool));
    drop(pool);
    assert_ne!(older, newer);
    let mut img: MemoryDevice = dev.image();
    *img.block_mut(0) = [0u8; 4096];
    let o = Overrides { transaction_id: Some(5), ..user_values() };
    let r = repaired_whole(&img, o).unwrap();
    assert_eq!(r.report.roots_from, RootsFrom::Scan);
    assert_eq!((r.flat, r.dump), newer);
}

/// A device whose only mapping is data block 0 at time 0: its leaf's one value is 0, which
/// no top-level leaf can hold (block 0 is the superblock), so it is read as the mapping it
/// is. The other way round, a top-level leaf naming block 0 is not one.
#[test]
fn a_lone_mapping_of_data_block_0_is_kept_and_a_top_level_leaf_naming_block_0_is_not() {
    let (pool, dev) = common::fresh_pool(64, 100);
    pool.create_thin(ThinId(1)).unwrap();
    common::provision(&pool, ThinId(1), [5]);
    pool.create_thin(ThinId(2)).unwrap();
    common::provision(&pool, ThinId(2), [9]);
    pool.commit().unwrap();
    let had = flat(&pool);
    drop(pool);
    assert_eq!(had.get(&(1, 5)), Some(&(0, 0)));
    let mut img = dev.image();
    assert_eq!(repaired_whole(&img, Overrides::default()).unwrap().flat, had);
    let top = sb(&img).data_mapping_root.0;
    node::set_value(img.block_mut(top), 1, &0u64.to_le_bytes());
    reseal(&mut img, top);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    assert!(r.flat.is_empty() && r.report.unreadable_nodes == 1, "{:?}", r.flat);
}

/// Details that say a device was created after its last snapshot (damage beyond the
/// checksum): the creation time is brought down to the snapshot time, the order every
/// device's times keep, so the repaired image checks clean.
#[test]
fn a_creation_time_after_the_snapshot_time_is_brought_down_to_it() {
    use engine::format::DeviceDetails;
    let (mut img, had) = base();
    let leaf = sb(&img).device_details_root.0;
    let blk = img.block_mut(leaf);
    let i = entry_of(blk, 3);
    let mut d = DeviceDetails::unpack(node::value(blk, i));
    assert_eq!((d.creation_time.0, d.snapshotted_time.0), (1, 1));
    d.snapshotted_time = engine::format::Time(0);
    node::set_value(blk, i, &d.pack());
    reseal(&mut img, leaf);
    let kept = salvage(img.to_device(), Overrides::default()).unwrap();
    let (x, _) = kept.devices.iter().find(|(x, _)| x.dev_id == 3).unwrap();
    assert_eq!((x.creation_time, x.snap_time), (0, 0));
    let others: Vec<_> = kept.devices.iter().filter(|(x, _)| x.dev_id != 3).collect();
    assert!(others.iter().all(|(x, _)| x.creation_time <= x.snap_time), "untouched");
    assert_eq!(repaired_whole(&img, Overrides::default()).unwrap().flat, had);
}

/// A chain of internal nodes deeper than any tree the format allows, ending at a real leaf:
/// the walk stops at the depth limit (a bound on its recursion whatever the bytes), and the
/// device behind the chain loses its mappings, nothing else.
#[test]
fn a_chain_past_the_depth_limit_is_not_followed() {
    use engine::limits::MAX_BTREE_DEPTH;
    let (mut img, mut had) = base();
    let leaf = device_root(&img, 3);
    // Free blocks at the end of the metadata device (the base pool uses the first few).
    let chain: Vec<u64> = (0..MAX_BTREE_DEPTH as u64 + 4).map(|i| 400 + i).collect();
    for (i, &b) in chain.iter().enumerate() {
        let child = chain.get(i + 1).copied().unwrap_or(leaf);
        let blk = img.block_mut(b);
        *blk = [0u8; 4096];
        node::init(blk, node::INTERNAL, 8);
        node::insert_at(blk, 0, 0, &child.to_le_bytes());
        reseal(&mut img, b);
    }
    let top = sb(&img).data_mapping_root.0;
    let t = img.block(top).unwrap();
    let i = entry_of(t, 3);
    node::set_value(img.block_mut(top), i, &chain[0].to_le_bytes());
    reseal(&mut img, top);
    let r = repaired_whole(&img, Overrides::default()).unwrap();
    had.retain(|&(d, _), _| d != 3);
    assert_eq!(r.flat, had);
    assert_eq!(r.report.devices, 3, "device 3 is kept, empty");
}

/// No superblock and no details tree that reads: the scan still takes the mapping trees,
/// and every device comes back with its mappings (its details recreated).
#[test]
fn a_scan_without_any_details_tree_keeps_the_mappings() {
    let (mut img, had) = base();
    let details = sb(&img).device_details_root.0;
    // Every details leaf ever written: the live one and the older ones beside it.
    let leaves: Vec<u64> = (1..BASE_METADATA_BLOCKS)
        .filter(|&b| {
            let n = img.block(b).unwrap();
            engine::format::checksum::verify(n, engine::format::BlockKind::Node, b).is_ok()
                && node::is_leaf(n)
                && node::value_size(n) == 24
        })
        .collect();
    assert!(leaves.contains(&details), "{leaves:?}");
    for b in leaves {
        img.block_mut(b)[100] ^= 1;
    }
    *img.block_mut(0) = [0u8; 4096];
    let r = repaired_whole(&img, user_values()).unwrap();
    assert_eq!(r.report.roots_from, RootsFrom::Scan);
    assert_eq!(r.flat, had);
    assert_eq!(r.report.unmatched_devices, 3, "found in the mapping tree only");
}

/// A damaged superblock's data block size that the pool target refuses (100 sectors) is not
/// kept: repair asks for one, and refuses an override the target would refuse too. `check`
/// calls a superblock with such a size fatal (issue 29: it passed 100 and u32::MAX).
#[test]
fn a_data_block_size_the_pool_target_refuses_is_neither_kept_nor_accepted_nor_passed() {
    let (mut img, had) = base();
    let want = dump_image(&img);
    let mut s = sb(&img);
    for bad in [100, 127, u32::MAX] {
        s.data_block_size = bad;
        put_damaged_superblock(&mut img, &s);
        let e = salvage(img.to_device(), Overrides::default()).unwrap_err();
        assert!(matches!(&e, ToolError::Input(m) if m.contains("--data-block-size")), "{e}");
        let o = Overrides { data_block_size: Some(bad), ..Overrides::default() };
        let e = salvage(img.to_device(), o).unwrap_err();
        assert!(matches!(&e, ToolError::Input(m) if m.contains("pool target takes")), "{e}");
    }
    let o = Overrides { data_block_size: Some(128), ..Overrides::default() };
    let r = repaired_whole(&img, o).unwrap();
    assert_eq!((r.flat, r.dump), (had, want));
    // An intact superblock (checksum right) with the refused size: a fatal `check` finding.
    let (mut img, _) = base();
    let mut s = sb(&img);
    s.data_block_size = 100;
    *img.block_mut(0) = s.pack(0);
    let report = engine::tools::check::check(Box::new(img));
    let text = format!("{:?}", report.findings);
    assert!(text.contains("pool target takes"), "{text}");
    assert!(!report.is_sound(), "{text}");
}

/// A superblock's time is the pool's, and repair keeps it whenever it can be read: a
/// validated one, or a damaged one whose magic survives. Here the time is ahead of every
/// entry the trees record (snapshots were taken and deleted since), so nothing but the
/// superblock knows it; a pool rebuilt at an earlier time would give new mappings times that
/// old ones already hold, and break the sharing every later snapshot relies on.
#[test]
fn a_superblocks_time_ahead_of_every_entry_is_kept() {
    let (img, had) = base();
    let latest = salvage(img.to_device(), Overrides::default()).unwrap().sb.time;
    assert_eq!(latest, sb(&img).time.0, "the base pool's entries record its time");
    let mut s = sb(&img);
    s.time = engine::format::Time(latest + 5);
    let mut valid = img.clone();
    *valid.block_mut(0) = s.pack(0);
    let mut damaged = img.clone();
    put_damaged_superblock(&mut damaged, &s);
    for (what, image) in [("validated", &valid), ("damaged", &damaged)] {
        let r = repaired_whole(image, Overrides::default()).unwrap();
        assert_eq!(r.flat, had, "{what}");
        assert_eq!(sb(&r.image).time.0, latest + 5, "{what}: the superblock's time is kept");
    }
    // With no superblock, the latest time an entry records is all there is.
    let mut gone = img.clone();
    *gone.block_mut(0) = [0u8; 4096];
    let r = repaired_whole(&gone, user_values()).unwrap();
    assert_eq!((r.flat, sb(&r.image).time.0), (had, latest));
}

/// A stale superblock: a damaged one from before the last snapshot and the last growth of
/// the data device (its time and size are behind what the trees now hold). Its values are
/// floors, not bounds: no mapping made after its time or past its size is dropped for them,
/// the later time wins, and the size is inferred from the mappings (and reported).
#[test]
fn a_stale_damaged_superblock_bounds_nothing() {
    use engine::tools::repair::Inferred;
    let (img, had) = base();
    let now = sb(&img).time.0;
    assert!(now > 0 && had.values().any(|&(_, t)| t == now), "entries at the pool's time");
    let highest = had.values().map(|&(d, _)| d).max().unwrap();
    let mut s = sb(&img);
    s.time = engine::format::Time(now - 1);
    s.data_sm_root.nr_blocks = highest - 10;
    let mut damaged = img.clone();
    put_damaged_superblock(&mut damaged, &s);
    let r = repaired_whole(&damaged, Overrides::default()).unwrap();
    let lost = had.keys().filter(|k| !r.flat.contains_key(k)).count();
    assert_eq!(lost, 0, "{lost} of {} mappings lost", had.len());
    assert_eq!(r.flat, had);
    assert_eq!(sb(&r.image).time.0, now);
    assert_eq!(sb(&r.image).data_sm_root.nr_blocks, highest + 1);
    assert_eq!(r.report.inferred, vec![Inferred::NrDataBlocks(highest + 1)]);
    // A damaged superblock whose values are ahead of the trees' keeps them (floors).
    let mut s = sb(&img);
    s.data_sm_root.nr_blocks = BASE_DATA_BLOCKS + 7;
    s.trans_id = TransactionId(40);
    let mut ahead = img.clone();
    put_damaged_superblock(&mut ahead, &s);
    let r = repaired_whole(&ahead, Overrides::default()).unwrap();
    assert_eq!(r.flat, had);
    assert_eq!(sb(&r.image).data_sm_root.nr_blocks, BASE_DATA_BLOCKS + 7);
    assert_eq!(sb(&r.image).trans_id, TransactionId(40));
    assert!(r.report.inferred.is_empty(), "{:?}", r.report.inferred);
}

/// The superblock validates but one of the trees it names does not read. Device 9 was
/// created and deleted since the state the older trees on disk record, so an older details
/// tree and an older top-level tree with exactly the surviving devices and mapped counts
/// are still on disk: a scan finds the lost one and nothing is lost. With no such tree
/// (the older ones damaged too), the lost tree stays lost: the devices come back from the
/// surviving tree, with no mappings (details recreated), never from an older tree that
/// differs.
#[test]
fn a_tree_the_superblock_names_that_does_not_read_is_found_by_a_scan_when_one_matches() {
    let (pool, dev) = common::fresh_pool(BASE_METADATA_BLOCKS, BASE_DATA_BLOCKS);
    pool.create_thin(ThinId(1)).unwrap();
    common::provision(&pool, ThinId(1), 0..700);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    common::provision(&pool, ThinId(2), 100..150);
    pool.commit().unwrap();
    pool.create_thin(ThinId(9)).unwrap();
    pool.commit().unwrap();
    pool.delete_thin_device(ThinId(9)).unwrap();
    pool.commit().unwrap();
    let (had, want) = (flat(&pool), dump(&pool));
    drop(pool);
    let img: MemoryDevice = dev.image();
    let s = sb(&img);
    for (lost, root) in [("top-level", s.data_mapping_root.0), ("details", s.device_details_root.0)]
    {
        let mut damaged = img.clone();
        damaged.block_mut(root)[100] ^= 0x10;
        let r = repaired_whole(&damaged, Overrides::default()).unwrap();
        assert_eq!(r.report.roots_from, RootsFrom::LostTreeFound, "{lost}");
        assert_eq!((&r.flat, &r.dump), (&had, &want), "{lost}: the whole state comes back");
    }
    // Every other tree of the lost kind damaged as well: nothing matches, nothing is taken.
    let mut damaged = img.clone();
    for b in 1..BASE_METADATA_BLOCKS {
        let n = damaged.block(b).unwrap();
        let valid = engine::format::checksum::verify(n, engine::format::BlockKind::Node, b).is_ok();
        if valid && node::is_leaf(n) && node::value_size(n) == 8 && node::nr_entries(n) == 2 {
            let first = node::value_u64(n, 0);
            if first < BASE_METADATA_BLOCKS && first != 0 {
                damaged.block_mut(b)[100] ^= 0x10; // a top-level leaf of devices 1 and 2
            }
        }
    }
    let r = repaired_whole(&damaged, Overrides::default()).unwrap();
    assert_eq!(r.report.roots_from, RootsFrom::Superblock);
    assert!(r.flat.is_empty(), "no mapping from a tree that does not match");
    assert_eq!(r.report.devices, 2, "the devices the details record");
}

/// A stale internal node (an older tree's, left on disk) whose slot names a block since freed
/// and reused as the live top-level root: its keys do not fit the slot, so it is no parent of
/// that root, and the scan still finds the live trees. (Counting every pointer of every valid
/// internal node as a parent hid live roots and brought back older trees: on 46 kernel-made
/// images with the superblock zeroed, 9,788 stale mappings against 7,150 now.)
#[test]
fn a_stale_internal_node_naming_a_reused_block_does_not_hide_a_live_root() {
    let (mut img, had) = base();
    let s = sb(&img);
    let free = BASE_METADATA_BLOCKS - 1;
    for (b, child) in [(free, s.data_mapping_root.0), (free - 1, s.device_details_root.0)] {
        let blk = img.block_mut(b);
        *blk = [0u8; 4096];
        node::init(blk, node::INTERNAL, 8);
        node::insert_at(blk, 0, 1_000_000, &child.to_le_bytes());
        reseal(&mut img, b);
    }
    *img.block_mut(0) = [0u8; 4096];
    let r = repaired_whole(&img, user_values()).unwrap();
    assert_eq!(r.report.roots_from, RootsFrom::Scan);
    assert_eq!(r.flat, had, "the live trees, not an older state");
}
