//! `tools::shape` reads the structure an image's writer reached: tree heights and node
//! counts by kind, sharing between snapshots, space-map bitmaps and overflow entries.

mod common;

use common::{fresh_pool, Observe};
use engine::thin::{DataBlock, ThinId, VBlock};
use engine::tools::shape::image_shape;

#[test]
fn a_fresh_pool_is_one_leaf_per_tree() {
    let (pool, dev) = fresh_pool(1024, 1000);
    pool.commit().unwrap();
    let s = image_shape(Box::new(dev.image().to_device())).unwrap();
    assert_eq!((s.details.max_height, s.details.leaves, s.details.entries), (1, 1, 0));
    assert_eq!((s.top.max_height, s.top.leaves, s.top.entries), (1, 1, 0));
    assert_eq!(s.mappings.trees, 0);
    assert_eq!((s.data.bitmaps, s.metadata.bitmaps), (1, 1));
    assert_eq!(s.unreadable, 0);
    assert!(!s.held_snapshot && !s.needs_check);
}

#[test]
fn splits_sharing_and_overflow_are_seen() {
    let (pool, dev) = fresh_pool(4096, 40_000);
    // 130 devices: more than a details leaf holds (127), so that tree has two levels.
    for id in 0..130 {
        pool.create_thin(ThinId(id)).unwrap();
    }
    let h = pool.open_thin_device(ThinId(0)).unwrap();
    for v in 0..600 {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), d).unwrap();
    }
    pool.close_thin_device(h);
    // Two snapshots of device 0 share its nodes; two more references to each of its
    // blocks take their counts to 3 (the overflow tree).
    pool.create_snap(ThinId(200), ThinId(0)).unwrap();
    pool.create_snap(ThinId(201), ThinId(0)).unwrap();
    pool.inc_data_range(DataBlock(0), DataBlock(600)).unwrap();
    pool.inc_data_range(DataBlock(0), DataBlock(600)).unwrap();
    pool.resize_data_dev(20_000).unwrap();
    pool.reserve_metadata_snap().unwrap();
    pool.commit().unwrap();
    let s = image_shape(Box::new(dev.image().to_device())).unwrap();
    assert_eq!(s.details.entries, 132);
    assert_eq!(s.details.max_height, 2, "{s:?}");
    assert!(s.details.internal_nodes >= 1 && s.details.leaves >= 2);
    assert_eq!(s.top.entries, 132);
    assert_eq!(s.top.max_height, 1, "a top-level leaf holds 254");
    assert_eq!(s.mappings.trees, 132);
    assert_eq!(s.mappings.max_height, 2, "600 mappings need three leaves");
    assert_eq!(s.mappings.entries, 600, "each distinct leaf once, whatever shares it");
    assert!(s.shared_mapping_nodes >= 1, "{s:?}");
    assert_eq!(s.data.overflow_entries, 600, "every block is held three times");
    assert_eq!(s.data.bitmaps, 2, "20,000 data blocks take two bitmaps");
    assert!(s.held_snapshot);
    assert_eq!(s.unreadable, 0);
}
