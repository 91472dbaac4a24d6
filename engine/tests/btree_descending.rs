//! Descending inserts, the order in which every key is a new minimum: each lands in the
//! leftmost leaf, each split leaves a half-full left node, and every root split is by a key
//! below the tree's minimum (the case the kernel's btree once mishandled by not lowering
//! the parent's first key). Virtual blocks go past two levels of splits (three levels, and
//! internal nodes splitting); device ids past two levels in the details tree (126 a leaf)
//! and one in the top level (252 a leaf). Details are written at commit in ascending id
//! order, as the kernel writes them, so only the top level sees the ids descend.
//! Each test proves what it reached with the engine's structural counters.

mod common;

use common::{assert_clean, fresh_pool};
use engine::events::{self, BtreeEvent as B, Tree};
use engine::thin::{DataBlock, ThinId, VBlock};
use std::collections::BTreeMap;

#[test]
fn descending_vblocks_split_past_two_levels() {
    events::take();
    let (pool, dev) = fresh_pool(4_096, 70_000);
    pool.create_thin(ThinId(7)).unwrap();
    let h = pool.open_thin_device(ThinId(7)).unwrap();
    let mut model = BTreeMap::new();
    // Half-full leaves (126) under one root fill at 252 × 126 keys; past it the root
    // splits, and past another 126 leaves the leftmost internal node splits too.
    for (i, v) in (0..60_000u64).rev().enumerate() {
        let d = pool.alloc_data_block().map(u64::from).unwrap();
        pool.insert_block(&h, VBlock(v * 2 + 1), DataBlock(d)).unwrap();
        model.insert(v * 2 + 1, d);
        if i % 10_000 == 9_999 {
            pool.commit().unwrap();
        }
    }
    pool.commit().unwrap();
    let c = events::take();
    assert_eq!(c.max_height(Tree::Mapping), 3);
    assert_eq!(c.btree(Tree::Mapping, B::RootSplit), 2, "one root split per new level");
    assert_eq!(c.btree(Tree::Mapping, B::RootSplitNewMin), 2);
    assert!(c.btree(Tree::Mapping, B::InternalSplit) > 0, "{c:?}");
    assert!(c.btree(Tree::Mapping, B::LeafSplit) > 400);
    // Every key answers, holes included, and the image is clean.
    for v in [0u64, 1, 2, 119_999, 120_000, 40_001] {
        let found = pool.find_block(&h, VBlock(v), true).ok().map(|l| l.data_block.0);
        assert_eq!(found, model.get(&v).copied(), "vblock {v}");
    }
    let got: BTreeMap<u64, u64> =
        pool.mappings(ThinId(7)).unwrap().into_iter().map(|(k, bt)| (k, bt.data_block.0)).collect();
    assert_eq!(got, model);
    assert_eq!(pool.get_highest_mapped_block(&h).unwrap(), Some(VBlock(119_999)));
    pool.close_thin_device(h);
    assert_clean(&dev);
}

#[test]
fn descending_device_ids_split_the_details_tree_twice() {
    events::take();
    // Every device costs its empty mapping root: 16,500 devices need ~17,000 blocks.
    let (pool, dev) = fresh_pool(20_480, 100);
    // Details leaves hold 126 (63 after a split): 252 × 63 ids fill two levels.
    let ids: Vec<u64> = (0..16_500u64).rev().map(|i| i * 5).collect();
    for (i, &id) in ids.iter().enumerate() {
        pool.create_thin(ThinId(id)).unwrap();
        if i % 4_000 == 3_999 {
            pool.commit().unwrap();
        }
    }
    pool.commit().unwrap();
    let c = events::take();
    assert_eq!(c.max_height(Tree::Details), 3, "{c:?}");
    assert_eq!(c.btree(Tree::Details, B::RootSplit), 2);
    assert_eq!(c.max_height(Tree::Top), 2);
    assert_eq!(c.btree(Tree::Top, B::RootSplitNewMin), 1, "the top level sees ids descend");
    let devices = pool.devices().unwrap();
    assert_eq!(devices.len(), ids.len());
    assert!(ids.iter().all(|id| devices.contains_key(id)));
    assert_eq!(pool.create_thin(ThinId(5)).map_err(|e| e.errno()), Err(engine::Errno::EEXIST));
    // Deleting the lowest ids first empties the leftmost leaves: they merge.
    for &id in ids.iter().rev().take(6_000) {
        pool.delete_thin_device(ThinId(id)).unwrap();
    }
    pool.commit().unwrap();
    let c = events::take();
    assert!(c.btree(Tree::Details, B::Merge) + c.btree(Tree::Details, B::Redistribute) > 0);
    assert!(c.btree(Tree::Top, B::Merge) + c.btree(Tree::Top, B::Redistribute) > 0, "{c:?}");
    assert_eq!(pool.devices().unwrap().len(), ids.len() - 6_000);
    assert_clean(&dev);
}
