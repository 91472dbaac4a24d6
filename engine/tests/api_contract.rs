//! The API contract of spec/dm-thin-api.md, one test per header-vs-code choice [H1]–[H15] and
//! per rule [R1]–[R9], plus each call's errors and the space-exhaustion paths.

mod common;

use common::{assert_clean, fresh_pool, logical, shared_device, Observe, SharedDevice};
use engine::thin::{DataBlock, ThinId, TransactionId, VBlock};
use engine::thin::{Pool, PoolOptions};
use engine::{Errno, Error};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn errno<T: std::fmt::Debug>(r: engine::Result<T>) -> Errno {
    r.expect_err("expected an error").errno()
}

/// A pool with device 1 holding `n` mappings 0..n, committed.
fn pool_with(n: u64) -> (Pool, SharedDevice) {
    let (pool, dev) = fresh_pool(1024, 10_000);
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for v in 0..n {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), d).unwrap();
    }
    pool.close_thin_device(h);
    pool.commit().unwrap();
    (pool, dev)
}

fn reopen(dev: &SharedDevice) -> Pool {
    Pool::open(Box::new(dev.image()), PoolOptions::new(128)).unwrap()
}

#[test]
fn h1_second_open_is_ebusy_until_close() {
    let (pool, _) = pool_with(1);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.open_thin_device(ThinId(1))), Errno::EBUSY);
    pool.close_thin_device(h);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    assert_eq!(pool.dev_id(&h), ThinId(1));
    assert_eq!(errno(pool.open_thin_device(ThinId(99))), Errno::ENODATA);
    pool.close_thin_device(h);
}

#[test]
fn h2_delete_while_open_leaves_a_dead_handle() {
    let (pool, _) = pool_with(3);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.delete_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.find_block(&h, VBlock(0), true)), Errno::ENODATA);
    assert_eq!(errno(pool.insert_block(&h, VBlock(0), DataBlock(5))), Errno::ENODATA);
    assert_eq!(errno(pool.get_mapped_count(&h)), Errno::ENODATA);
    assert!(!pool.thin_changed_this_transaction(&h));
    assert!(!pool.aborted_changes(&h));
    assert_eq!(pool.dev_id(&h), ThinId(1));
    // A new device with the same id is a different device; the old handle stays dead.
    pool.create_thin(ThinId(1)).unwrap();
    let h2 = pool.open_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.find_block(&h, VBlock(0), true)), Errno::ENODATA);
    assert_eq!(pool.get_mapped_count(&h2).unwrap(), 0);
    pool.close_thin_device(h);
    pool.close_thin_device(h2);
    // Every data block of the deleted device was released.
    assert_eq!(pool.get_free_block_count().unwrap(), 10_000);
}

#[test]
fn h3_abort_rolls_everything_back() {
    let (pool, dev) = pool_with(5);
    let before = logical(&pool);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    pool.create_thin(ThinId(3)).unwrap();
    let h3 = pool.open_thin_device(ThinId(3)).unwrap();
    pool.insert_block(&h, VBlock(0), pool.alloc_data_block().unwrap()).unwrap();
    pool.set_transaction_id(TransactionId(0), TransactionId(9)).unwrap();
    pool.resize_data_dev(20_000).unwrap();
    pool.reserve_metadata_snap().unwrap(); // commits everything above first ([H9])
    let after_reserve = logical(&pool);
    pool.insert_block(&h, VBlock(1), pool.alloc_data_block().unwrap()).unwrap();
    pool.create_thin(ThinId(4)).unwrap();
    let h4 = pool.open_thin_device(ThinId(4)).unwrap();
    pool.release_metadata_snap().unwrap();
    pool.abort().unwrap();
    assert_eq!(logical(&pool), after_reserve);
    assert_ne!(after_reserve, before);
    // The snapshot copy was made after reserve's commit, in the aborted transaction ([R6]).
    assert_eq!(pool.get_metadata_snap().unwrap(), None, "uncommitted reserve rolled back");
    assert_eq!(pool.get_transaction_id().unwrap(), TransactionId(9));
    assert!(pool.aborted_changes(&h));
    assert!(!pool.aborted_changes(&h3));
    assert_eq!(errno(pool.get_mapped_count(&h4)), Errno::ENODATA, "device 4 never committed");
    assert_eq!(pool.get_mapped_count(&h).unwrap(), 5);
    for x in [h, h3, h4] {
        pool.close_thin_device(x);
    }
    assert_clean(&dev);
}

#[test]
fn h4_cache_only_lookup_would_block_until_prefetched() {
    let (pool, dev) = pool_with(600);
    drop(pool);
    let pool = reopen(&dev);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.find_block(&h, VBlock(300), false)), Errno::EWOULDBLOCK);
    let blocking = pool.find_block(&h, VBlock(300), true).unwrap();
    assert_eq!(pool.find_block(&h, VBlock(300), false).unwrap(), blocking);
    // Another leaf: not cached until the prefetch queue is drained.
    let miss = pool.find_block(&h, VBlock(10), false);
    if miss.is_err() {
        pool.issue_prefetches();
    }
    assert_eq!(
        pool.find_block(&h, VBlock(10), false).unwrap(),
        pool.find_block(&h, VBlock(10), true).unwrap()
    );
    pool.close_thin_device(h);
}

#[test]
fn h5_resize_rules() {
    let (pool, _) = pool_with(0);
    pool.resize_data_dev(10_000).unwrap(); // equal: no-op
    pool.resize_data_dev(50_000).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.get_data_dev_size().unwrap(), 50_000);
    pool.inc_data_range(DataBlock(40_000), DataBlock(40_001)).unwrap();
    assert_eq!(errno(pool.resize_data_dev(30_000)), Errno::ENOSPC);
    assert_eq!(pool.summary().unwrap().data_nr_blocks, 50_000, "refused shrink changed nothing");
    pool.resize_data_dev(40_001).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.get_data_dev_size().unwrap(), 40_001);
    let meta = pool.get_metadata_dev_size().unwrap();
    assert_eq!(errno(pool.resize_metadata_dev(meta + 1)), Errno::EINVAL, "past the device");
    pool.resize_metadata_dev(meta - 10).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.get_metadata_dev_size().unwrap(), meta - 10);
}

#[test]
fn h6_failed_abort_enters_fail_mode() {
    let (pool, dev) = pool_with(3);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    dev.set_faults(true, true);
    assert!(pool.abort().is_err());
    assert!(pool.is_failed());
    dev.set_faults(false, false);
    for e in [
        errno(pool.commit()),
        errno(pool.abort()),
        errno(pool.create_thin(ThinId(5))),
        errno(pool.find_block(&h, VBlock(0), true)),
        errno(pool.get_transaction_id()),
        errno(pool.get_free_block_count()),
        errno(pool.alloc_data_block()),
        errno(pool.open_thin_device(ThinId(1))),
        errno(pool.needs_check()),
        errno(pool.block_is_shared(DataBlock(0))),
    ] {
        assert_eq!(e, Errno::EINVAL);
    }
    pool.close_thin_device(h);
    assert!(pool.close().is_ok(), "close still works in fail mode");
}

#[test]
fn h7_needs_check_is_durable_at_once() {
    let (pool, dev) = pool_with(2);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.insert_block(&h, VBlock(9), pool.alloc_data_block().unwrap()).unwrap();
    pool.set_needs_check().unwrap();
    let crashed = reopen(&dev);
    assert!(crashed.needs_check().unwrap());
    assert_eq!(
        crashed.mappings(ThinId(1)).unwrap().len(),
        2,
        "uncommitted insert not made durable"
    );
    pool.abort().unwrap();
    assert!(pool.needs_check().unwrap(), "survives abort");
    pool.close_thin_device(h);
}

#[test]
fn h8_read_only_refuses_every_mutator_without_effect() {
    let (pool, dev) = pool_with(2);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.metadata_read_only();
    let image = dev.image().to_bytes();
    let before = logical(&pool);
    for e in [
        errno(pool.create_thin(ThinId(2))),
        errno(pool.create_snap(ThinId(2), ThinId(1))),
        errno(pool.delete_thin_device(ThinId(1))),
        errno(pool.insert_block(&h, VBlock(5), DataBlock(5))),
        errno(pool.remove_block(&h, VBlock(0))),
        errno(pool.remove_range(&h, VBlock(0), VBlock(9))),
        errno(pool.alloc_data_block()),
        errno(pool.set_transaction_id(TransactionId(0), TransactionId(1))),
        errno(pool.reserve_metadata_snap()),
        errno(pool.inc_data_range(DataBlock(0), DataBlock(1))),
        errno(pool.resize_data_dev(20_000)),
        errno(pool.set_needs_check()),
        errno(pool.commit()),
    ] {
        assert_eq!(e, Errno::EPERM);
    }
    assert_eq!(logical(&pool), before);
    assert_eq!(pool.get_transaction_id().unwrap(), TransactionId(0));
    assert!(pool.find_block(&h, VBlock(0), true).is_ok());
    pool.abort().unwrap();
    assert_eq!(dev.image().to_bytes(), image, "read-only mode wrote to the device");
    pool.metadata_read_write();
    pool.create_thin(ThinId(2)).unwrap();
    pool.close_thin_device(h);
}

#[test]
fn h9_reserve_commits_even_when_busy() {
    let (pool, dev) = pool_with(1);
    pool.reserve_metadata_snap().unwrap();
    pool.create_thin(ThinId(7)).unwrap();
    assert_eq!(errno(pool.reserve_metadata_snap()), Errno::EBUSY);
    assert!(reopen(&dev).devices().unwrap().contains_key(&7), "the implicit commit happened");
    assert_clean(&dev);
}

#[test]
fn h10_snapshot_of_an_open_device_is_allowed() {
    let (pool, _) = pool_with(4);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    let s = pool.open_thin_device(ThinId(2)).unwrap();
    assert!(pool.find_block(&s, VBlock(3), true).unwrap().shared);
    assert!(pool.find_block(&h, VBlock(3), true).unwrap().shared);
    pool.close_thin_device(h);
    pool.close_thin_device(s);
}

#[test]
fn h11_commit_out_of_service_writes_nothing() {
    let (pool, dev) = pool_with(1);
    drop(pool);
    let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    pool.register_pre_commit_callback(Box::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }))
    .unwrap();
    let writes = dev.writes();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.find_block(&h, VBlock(0), true).unwrap();
    pool.close_thin_device(h);
    pool.commit().unwrap();
    assert_eq!(dev.writes(), writes);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    pool.create_thin(ThinId(2)).unwrap();
    pool.commit().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(dev.writes() > writes);
}

#[test]
fn h12_find_mapped_range_edges() {
    let (pool, _) = pool_with(0);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for (v, d) in [(10, 100), (11, 101), (12, 103), (13, 104)] {
        pool.inc_data_range(DataBlock(d), DataBlock(d + 1)).unwrap();
        pool.insert_block(&h, VBlock(v), DataBlock(d)).unwrap();
    }
    assert_eq!(errno(pool.find_mapped_range(&h, VBlock(10), VBlock(10))), Errno::ENODATA);
    assert_eq!(errno(pool.find_mapped_range(&h, VBlock(12), VBlock(11))), Errno::ENODATA);
    assert_eq!(errno(pool.find_mapped_range(&h, VBlock(0), VBlock(10))), Errno::ENODATA);
    let r = pool.find_mapped_range(&h, VBlock(0), VBlock(100)).unwrap();
    assert_eq!(
        (r.thin_begin, r.thin_end, r.pool_begin, r.maybe_shared),
        (VBlock(10), VBlock(12), DataBlock(100), false)
    );
    let r = pool.find_mapped_range(&h, VBlock(11), VBlock(13)).unwrap();
    assert_eq!((r.thin_begin, r.thin_end, r.pool_begin), (VBlock(11), VBlock(12), DataBlock(101)));
    pool.close_thin_device(h);
}

#[test]
fn h13_freed_blocks_are_not_reused_before_commit() {
    let (pool, _) = fresh_pool(256, 4);
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for v in 0..4 {
        pool.insert_block(&h, VBlock(v), pool.alloc_data_block().unwrap()).unwrap();
    }
    pool.commit().unwrap();
    pool.remove_range(&h, VBlock(0), VBlock(2)).unwrap();
    assert_eq!(pool.get_free_block_count().unwrap(), 2);
    assert_eq!(errno(pool.alloc_data_block()), Errno::ENOSPC);
    pool.commit().unwrap();
    pool.alloc_data_block().unwrap();
    pool.close_thin_device(h);
}

#[test]
fn h15_remove_of_an_unmapped_block_is_enodata_and_harmless() {
    let (pool, dev) = pool_with(3);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.remove_block(&h, VBlock(50))), Errno::ENODATA);
    pool.remove_block(&h, VBlock(1)).unwrap();
    assert_eq!(pool.get_mapped_count(&h).unwrap(), 2);
    pool.commit().unwrap();
    assert_clean(&dev);
    pool.close_thin_device(h);
}

#[test]
fn r1_argument_errors_leave_no_trace_other_errors_poison() {
    let (pool, dev) = pool_with(3);
    pool.create_thin(ThinId(2)).unwrap();
    pool.commit().unwrap();
    let image = dev.image().to_bytes();
    assert_eq!(errno(pool.create_thin(ThinId(1))), Errno::EEXIST);
    assert_eq!(errno(pool.create_snap(ThinId(3), ThinId(99))), Errno::ENODATA);
    assert_eq!(errno(pool.delete_thin_device(ThinId(99))), Errno::ENODATA);
    assert_eq!(errno(pool.set_transaction_id(TransactionId(5), TransactionId(6))), Errno::EINVAL);
    assert_eq!(errno(pool.dec_data_range(DataBlock(9_000), DataBlock(9_001))), Errno::EINVAL);
    assert_eq!(errno(pool.inc_data_range(DataBlock(5), DataBlock(4))), Errno::EINVAL);
    assert_eq!(errno(pool.release_metadata_snap()), Errno::EINVAL);
    assert!(!pool.changed_this_transaction().unwrap());
    pool.commit().unwrap();
    assert_eq!(dev.image().to_bytes(), image, "argument errors changed the image");
    // An I/O error in the middle of a mutator poisons the transaction until abort.
    drop(pool);
    let pool = Pool::open(
        Box::new(dev.clone()),
        PoolOptions { cache_blocks: 64, ..PoolOptions::new(128) },
    )
    .unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    dev.set_faults(true, true);
    let r = pool.insert_block(&h, VBlock(77), DataBlock(77));
    dev.set_faults(false, false);
    if let Err(e) = r {
        assert_eq!(e.errno(), Errno::EIO);
        assert!(pool.is_poisoned());
        assert!(matches!(pool.create_thin(ThinId(8)), Err(Error::Poisoned)));
        assert!(matches!(pool.commit(), Err(Error::Poisoned)));
        pool.abort().unwrap();
        pool.create_thin(ThinId(8)).unwrap();
    }
    pool.close_thin_device(h);
}

#[test]
fn r2_close_commits_pending_work() {
    let (pool, dev) = pool_with(1);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.insert_block(&h, VBlock(5), pool.alloc_data_block().unwrap()).unwrap();
    pool.close_thin_device(h);
    pool.create_thin(ThinId(2)).unwrap();
    assert!(pool.close().is_ok());
    let p = reopen(&dev);
    assert_eq!(p.devices().unwrap().len(), 2);
    assert_eq!(p.devices().unwrap()[&1].mapped_blocks, 2);
    assert_clean(&dev);
}

#[test]
fn r3_existence_is_the_current_state() {
    let (pool, _) = pool_with(0);
    pool.create_thin(ThinId(2)).unwrap();
    assert_eq!(errno(pool.create_thin(ThinId(2))), Errno::EEXIST);
    pool.delete_thin_device(ThinId(2)).unwrap();
    pool.create_thin(ThinId(2)).unwrap();
    pool.delete_thin_device(ThinId(1)).unwrap();
    assert_eq!(errno(pool.create_snap(ThinId(3), ThinId(1))), Errno::ENODATA);
    pool.commit().unwrap();
    assert_eq!(pool.devices().unwrap().keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn r4_threshold_fires_once_per_crossing_and_survives_abort() {
    let (pool, _) = pool_with(0);
    let fired = Arc::new(AtomicU32::new(0));
    let f = fired.clone();
    let free = pool.get_raw_free_metadata_block_count().unwrap();
    pool.register_metadata_threshold(
        free - 5,
        Box::new(move || {
            f.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0, "not at registration");
    pool.abort().unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for v in 0..3000 {
        pool.insert_block(&h, VBlock(v * 300), pool.alloc_data_block().unwrap()).unwrap();
    }
    assert_eq!(fired.load(Ordering::SeqCst), 1, "exactly once per downward crossing");
    pool.abort().unwrap();
    pool.insert_block(&h, VBlock(0), pool.alloc_data_block().unwrap()).unwrap();
    for v in 0..3000 {
        pool.insert_block(&h, VBlock(v * 300), pool.alloc_data_block().unwrap()).unwrap();
    }
    assert_eq!(fired.load(Ordering::SeqCst), 2, "re-armed after the abort freed blocks");
    pool.close_thin_device(h);
}

#[test]
fn r5_free_data_count_saturates() {
    let (pool, _) = fresh_pool(256, 10);
    for _ in 0..10 {
        pool.alloc_data_block().unwrap();
    }
    pool.resize_data_dev(30).unwrap();
    for _ in 0..5 {
        pool.alloc_data_block().unwrap();
    }
    assert_eq!(pool.get_free_block_count().unwrap(), 0);
    pool.commit().unwrap();
    assert_eq!(pool.get_free_block_count().unwrap(), 15);
}

#[test]
fn r6_held_root_is_transactional() {
    let (pool, dev) = pool_with(2);
    pool.reserve_metadata_snap().unwrap();
    let held = pool.get_metadata_snap().unwrap();
    assert!(held.is_some());
    assert_eq!(reopen(&dev).get_metadata_snap().unwrap(), None, "not durable before commit");
    pool.abort().unwrap();
    assert_eq!(pool.get_metadata_snap().unwrap(), None);
    pool.reserve_metadata_snap().unwrap();
    pool.commit().unwrap();
    assert!(reopen(&dev).get_metadata_snap().unwrap().is_some());
    pool.release_metadata_snap().unwrap();
    pool.abort().unwrap();
    assert!(pool.get_metadata_snap().unwrap().is_some(), "release rolled back");
    pool.release_metadata_snap().unwrap();
    pool.commit().unwrap();
    assert_clean(&dev);
}

#[test]
fn r7_grows_are_relative_to_the_current_size() {
    let (pool, _) = fresh_pool(256, 100);
    pool.resize_data_dev(200).unwrap();
    pool.resize_data_dev(300).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.get_data_dev_size().unwrap(), 300);
}

#[test]
fn r8_time_cannot_outgrow_24_bits() {
    let xml = format!(
        "<superblock uuid=\"\" time=\"{}\" transaction=\"1\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"10\">\n  <device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n  </device>\n</superblock>\n",
        (1u32 << 24) - 1
    );
    let dev = shared_device(256);
    engine::tools::restore::restore(std::io::Cursor::new(xml), Box::new(dev.clone())).unwrap();
    let pool = reopen(&dev);
    assert_eq!(errno(pool.create_snap(ThinId(2), ThinId(1))), Errno::ENOSPC);
    assert_eq!(pool.summary().unwrap().time.0, (1 << 24) - 1);
    assert!(!pool.devices().unwrap().contains_key(&2));
}

#[test]
fn r9_close_with_an_open_device_changes_nothing() {
    let (pool, dev) = pool_with(1);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.create_thin(ThinId(2)).unwrap();
    let writes = dev.writes();
    let pool = match pool.close() {
        Err(engine::thin::CloseError::Busy(p)) => *p,
        Err(other) => panic!("expected EBUSY, got {other:?}"),
        Ok(_) => panic!("expected EBUSY, close succeeded"),
    };
    assert_eq!(dev.writes(), writes);
    assert!(pool.devices().unwrap().contains_key(&2));
    pool.close_thin_device(h);
}

#[test]
fn full_data_device_then_abort_and_grow() {
    let (pool, dev) = fresh_pool(512, 50);
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    let mut v = 0;
    loop {
        match pool.alloc_data_block().map(u64::from) {
            Ok(d) => pool.insert_block(&h, VBlock(v), DataBlock(d)).unwrap(),
            Err(e) => {
                assert_eq!(e.errno(), Errno::ENOSPC);
                break;
            }
        }
        v += 1;
    }
    assert_eq!(v, 50);
    assert!(!pool.is_poisoned(), "data ENOSPC is decided before any change");
    pool.commit().unwrap();
    pool.resize_data_dev(80).unwrap();
    pool.commit().unwrap();
    pool.insert_block(&h, VBlock(v), pool.alloc_data_block().unwrap()).unwrap();
    pool.commit().unwrap();
    pool.close_thin_device(h);
    assert_clean(&dev);
}

#[test]
fn full_metadata_device_then_abort_and_grow() {
    let dev = shared_device(512);
    let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).unwrap();
    pool.resize_metadata_dev(64).unwrap();
    pool.resize_data_dev(100_000).unwrap();
    pool.commit().unwrap();
    pool.create_thin(ThinId(1)).unwrap();
    pool.commit().unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    let mut v = 0;
    let err = loop {
        match pool
            .alloc_data_block()
            .map(u64::from)
            .and_then(|d| pool.insert_block(&h, VBlock(v * 1000), DataBlock(d)))
        {
            Ok(()) => v += 1,
            Err(e) => break e,
        }
        if v % 500 == 0 {
            if let Err(e) = pool.commit() {
                break e;
            }
        }
    };
    assert_eq!(err, Error::NoSpace(engine::error::Space::Metadata), "{err}");
    assert!(pool.is_poisoned());
    pool.abort().unwrap();
    pool.resize_metadata_dev(512).unwrap();
    pool.commit().unwrap();
    for i in 0..200 {
        pool.insert_block(&h, VBlock(10_000_000 + i), pool.alloc_data_block().unwrap()).unwrap();
    }
    pool.commit().unwrap();
    pool.close_thin_device(h);
    assert_clean(&dev);
}

#[test]
fn snapshots_of_snapshots_and_deleting_origins() {
    let (pool, dev) = pool_with(300);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    pool.create_snap(ThinId(3), ThinId(2)).unwrap();
    let h2 = pool.open_thin_device(ThinId(2)).unwrap();
    for v in 0..50 {
        pool.insert_block(&h2, VBlock(v), pool.alloc_data_block().unwrap()).unwrap();
    }
    pool.commit().unwrap();
    assert_eq!(pool.summary().unwrap().time.0, 2);
    pool.delete_thin_device(ThinId(1)).unwrap();
    pool.commit().unwrap();
    assert_clean(&dev);
    let h3 = pool.open_thin_device(ThinId(3)).unwrap();
    assert_eq!(pool.get_mapped_count(&h3).unwrap(), 300);
    assert!(pool.find_block(&h3, VBlock(10), true).unwrap().shared);
    pool.delete_thin_device(ThinId(2)).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.mappings(ThinId(3)).unwrap().len(), 300);
    assert_eq!(pool.get_free_block_count().unwrap(), 10_000 - 300);
    pool.close_thin_device(h2);
    pool.close_thin_device(h3);
    assert_clean(&dev);
}

#[test]
fn held_snapshot_survives_commits_and_reopen() {
    let (pool, dev) = pool_with(100);
    pool.reserve_metadata_snap().unwrap();
    let frozen = logical(&pool);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    pool.remove_range(&h, VBlock(0), VBlock(50)).unwrap();
    pool.commit().unwrap();
    pool.close_thin_device(h);
    drop(pool);
    let pool = reopen(&dev);
    let held = pool.held_snapshot().unwrap().unwrap();
    assert_eq!(held[&1].1.len(), 100);
    assert_eq!(frozen[&1].len(), 100);
    assert_eq!(pool.mappings(ThinId(1)).unwrap().len(), 50);
    assert_clean(&dev);
    pool.release_metadata_snap().unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.get_free_block_count().unwrap(), 10_000 - 50);
    assert_clean(&dev);
}

#[test]
fn file_backend_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let dev = engine::io::FileDevice::create(&path, 512).unwrap();
    let pool = Pool::open(Box::new(dev), PoolOptions::new(256)).unwrap();
    pool.resize_data_dev(100).unwrap();
    pool.create_thin(ThinId(4)).unwrap();
    let h = pool.open_thin_device(ThinId(4)).unwrap();
    pool.insert_block(&h, VBlock(3), pool.alloc_data_block().unwrap()).unwrap();
    pool.close_thin_device(h);
    pool.close().unwrap();
    let dev = engine::io::FileDevice::open(&path, true).unwrap();
    assert_eq!(
        errno(Pool::open(Box::new(dev), PoolOptions::new(128))),
        Errno::EINVAL,
        "block size"
    );
    let dev = engine::io::FileDevice::open(&path, true).unwrap();
    let pool =
        Pool::open(Box::new(dev), PoolOptions { may_format: false, ..PoolOptions::new(256) })
            .unwrap();
    assert_eq!(pool.mappings(ThinId(4)).unwrap().len(), 1);
    let blank = engine::io::FileDevice::create(&dir.path().join("blank"), 64).unwrap();
    assert_eq!(
        errno(Pool::open(
            Box::new(blank),
            PoolOptions { may_format: false, ..PoolOptions::new(128) }
        )),
        Errno::EPERM
    );
}
