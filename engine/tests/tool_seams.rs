//! The pool's two seams for the offline tools, tested at the seam (the tools' own tests go
//! through them with well-formed pools only): `Pool::bulk_load` refuses any pool but a fresh
//! one and sorts what it is given; `Pool::visit` stops when its visitor stops, tells a stop
//! from a read error, and checks the held snapshot it is asked for.

use engine::error::Error;
use engine::format::{node, BlockKind, BlockTime, DeviceDetails, Superblock};
use engine::io::BlockDevice;
use engine::io::MemoryDevice;
use engine::thin::{
    BulkSuperblock, DataBlock, MetadataBlock, Pool, PoolOptions, Source, ThinId, Time,
    TransactionId, TreeHeader, TreeVisitor, VBlock, VisitError,
};
use std::ops::ControlFlow;

fn fresh() -> Pool {
    Pool::open(Box::new(MemoryDevice::new(512)), PoolOptions::new(128)).expect("formats")
}

fn packed(data: u64, time: u32) -> u64 {
    BlockTime { data_block: DataBlock(data), time: Time(time) }.pack().expect("in range")
}

const SB: BulkSuperblock = BulkSuperblock {
    time: Time(3),
    trans_id: TransactionId(9),
    flags: 0,
    version: 2,
    uuid: [0; 16],
};

#[test]
fn bulk_load_sorts_its_input_and_commits_whole() {
    let pool = fresh();
    pool.bulk_load(|b| -> Result<(), Error> {
        b.resize_data(100)?;
        // Out of order on purpose: restore takes XML whose origins need not ascend.
        let mut m = vec![(40, packed(7, 1)), (2, packed(5, 1)), (17, packed(6, 2))];
        b.add_device(1, TransactionId(4), Time(0), Time(1), &mut m)?;
        b.add_data_counts(&[(5, 1), (6, 1), (7, 1)])?;
        b.finish(&SB)
    })
    .expect("loads");
    let got: Vec<(u64, u64)> =
        pool.mappings(ThinId(1)).unwrap().into_iter().map(|(v, bt)| (v, bt.data_block.0)).collect();
    assert_eq!(got, vec![(2, 5), (17, 6), (40, 7)]);
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for (v, d) in [(2, 5), (17, 6), (40, 7)] {
        assert_eq!(pool.find_block(&h, VBlock(v), true).unwrap().data_block, DataBlock(d));
    }
    assert_eq!(pool.get_mapped_count(&h).unwrap(), 3);
    pool.close_thin_device(h);
    assert_eq!(pool.get_transaction_id().unwrap(), TransactionId(9));
    assert_eq!(pool.get_free_block_count().unwrap(), 97);
}

#[test]
fn bulk_load_refuses_a_pool_that_is_not_fresh_and_leaves_it_alone() {
    // A device, no data blocks.
    let pool = fresh();
    pool.create_thin(ThinId(3)).unwrap();
    pool.commit().unwrap();
    let mut ran = false;
    let r = pool.bulk_load(|_| -> Result<(), Error> {
        ran = true;
        Ok(())
    });
    let refused = |r: &Result<(), Error>| matches!(r, Err(Error::Invalid(m)) if m.contains("freshly formatted pool"));
    assert!(refused(&r), "{r:?}");
    assert!(!ran, "the load must not run");
    assert!(pool.devices().unwrap().contains_key(&3), "the pool is untouched");
    pool.create_thin(ThinId(4)).expect("and still in service");

    // Data blocks, no device.
    let pool = fresh();
    pool.resize_data_dev(10).unwrap();
    pool.commit().unwrap();
    let r = pool.bulk_load(|_| -> Result<(), Error> { Ok(()) });
    assert!(refused(&r), "{r:?}");
    assert_eq!(pool.get_data_dev_size().unwrap(), 10);
}

#[test]
fn a_failed_bulk_load_leaves_an_unformatted_device() {
    let pool = fresh();
    let r = pool.bulk_load(|b| -> Result<(), Error> {
        b.resize_data(10)?;
        Err(Error::Invalid("the input was bad".into()))
    });
    assert!(r.is_err());
    assert!(pool.create_thin(ThinId(1)).is_err(), "the pool fails every later call");
}

/// Stops after `limit` mappings (or at the first device, or the header).
struct StopAfter {
    at: &'static str,
    limit: usize,
    mappings: usize,
}

impl TreeVisitor for StopAfter {
    fn header(&mut self, _: &TreeHeader) -> ControlFlow<()> {
        if self.at == "header" {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn device(&mut self, _: u64, _: &DeviceDetails) -> ControlFlow<()> {
        if self.at == "device" {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn mapping(&mut self, _: u64, _: BlockTime) -> ControlFlow<()> {
        self.mappings += 1;
        if self.at == "mapping" && self.mappings == self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn end_device(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

fn pool_with_mappings(n: u64) -> Pool {
    let pool = fresh();
    pool.resize_data_dev(n).unwrap();
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for v in 0..n {
        let b = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), b).unwrap();
    }
    pool.close_thin_device(h);
    pool.commit().unwrap();
    pool
}

#[test]
fn a_visit_stops_where_its_visitor_stops() {
    let pool = pool_with_mappings(10);
    for (at, seen) in [("header", 0), ("device", 0), ("mapping", 3)] {
        let mut v = StopAfter { at, limit: 3, mappings: 0 };
        let r = pool.visit(Source::Live, &mut v);
        assert!(matches!(r, Err(VisitError::Stopped)), "{at}: {r:?}");
        assert_eq!(v.mappings, seen, "{at}: nothing is read after the stop");
    }
    let mut all = StopAfter { at: "never", limit: 0, mappings: 0 };
    pool.visit(Source::Live, &mut all).expect("a full visit");
    assert_eq!(all.mappings, 10);
}

#[test]
fn a_read_error_during_a_visit_is_not_a_stop() {
    let pool = pool_with_mappings(300);
    // Corrupt the root of device 1's own mapping tree alone: the pool opens, the visit lists
    // the device (the top-level trees are intact), and its walk of the device's mappings
    // fails the checksum: an engine error met while the visitor had not stopped.
    let mut dev = pool.close().unwrap_or_else(|_| panic!("closes"));
    let mut img = MemoryDevice::new(dev.nr_blocks());
    let mut buf = [0u8; 4096];
    for b in 0..dev.nr_blocks() {
        dev.read(b, &mut buf).unwrap();
        img.block_mut(b).copy_from_slice(&buf);
    }
    let sb = Superblock::unpack(img.block(0).expect("block 0"), 0).expect("a superblock");
    let top = img.block(sb.data_mapping_root.0).expect("in range");
    assert_eq!(node::nr_entries(top), 1, "one device");
    let root = node::value_u64(top, 0);
    assert_eq!(BlockKind::classify(img.block(root).expect("in range")), Some(BlockKind::Node));
    img.block_mut(root)[100] ^= 0xff;
    let pool = Pool::open_image(Box::new(img)).expect("the superblock and space maps are intact");
    let mut v = StopAfter { at: "never", limit: 0, mappings: 0 };
    match pool.visit(Source::Live, &mut v) {
        Err(VisitError::Engine(_)) => assert_eq!(v.mappings, 0),
        other => panic!("a checksum failure is an engine error, not {other:?}"),
    }
}

#[test]
fn the_held_snapshot_is_checked_before_it_is_read() {
    let pool = pool_with_mappings(4);
    let mut v = StopAfter { at: "never", limit: 0, mappings: 0 };
    let r = pool.visit(Source::MetadataSnap(None), &mut v);
    assert!(matches!(r, Err(VisitError::NoHeldSnapshot)), "{r:?}");
    assert_eq!(VisitError::NoHeldSnapshot.to_string(), "no current metadata snap");
    pool.reserve_metadata_snap().unwrap();
    pool.commit().unwrap();
    let held = pool.get_metadata_snap().unwrap().expect("held");
    pool.visit(Source::MetadataSnap(Some(held)), &mut v).expect("at the block asked for");
    assert_eq!(v.mappings, 4);
    let elsewhere = MetadataBlock(held.0 + 1);
    match pool.visit(Source::MetadataSnap(Some(elsewhere)), &mut v) {
        Err(e @ VisitError::HeldElsewhere { asked, held: h }) => {
            assert_eq!((asked, h), (elsewhere, held));
            assert!(e.to_string().starts_with("metadata snapshot does not match"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
