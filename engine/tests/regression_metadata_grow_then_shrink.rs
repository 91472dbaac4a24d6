//! Regression, fixed (found by the big-pool class of the swarm, `thinsim swarm --seeds
//! 0..400`, seeds 147 and 359 at the time): growing the metadata device by a bitmap and
//! shrinking it back within one transaction panicked at the next commit (index out of
//! bounds in `relocate_dirty_bitmaps`). The growth marked the new last bitmap dirty; the
//! shrink cut the dirty marks only when the map already *held* more bitmaps than the new
//! size, which a growth not yet committed never does, so the mark of a bitmap that no
//! longer existed survived into the commit.

use engine::io::MemoryDevice;
use engine::limits::ENTRIES_PER_BITMAP;
use engine::thin::{Pool, PoolOptions};
use engine::tools::check::check;

#[test]
fn grow_by_a_bitmap_then_shrink_back_commits() {
    let disk_blocks = 3 * ENTRIES_PER_BITMAP;
    let pool = Pool::open(Box::new(MemoryDevice::new(disk_blocks)), PoolOptions::new(128))
        .expect("format");
    pool.resize_data_dev(100).expect("data size");
    pool.resize_metadata_dev(ENTRIES_PER_BITMAP - 8).expect("one bitmap");
    pool.commit().expect("commit one bitmap");
    pool.resize_metadata_dev(2 * ENTRIES_PER_BITMAP + 8).expect("grow to three bitmaps");
    pool.resize_metadata_dev(ENTRIES_PER_BITMAP + 8).expect("shrink to two");
    pool.commit().expect("commit after grow and shrink");
    assert_eq!(pool.get_metadata_dev_size(), Ok(ENTRIES_PER_BITMAP + 8));
    let dev = pool.close().expect("close");
    let report = check(dev);
    assert!(report.is_clean(), "{report:?}");
}
