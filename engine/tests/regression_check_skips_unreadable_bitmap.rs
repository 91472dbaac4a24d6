//! Regression, fixed (found by the thinsim runner, e.g. `thinsim run --seed 672`): `check` skips a
//! space-map bitmap it cannot read (`let Ok(bmp) = ... else { continue }` in
//! `stored_counts`), so a corrupt data bitmap whose blocks are all free passes as clean.
//! The pool then fails later with EILSEQ on the first allocation that reads the bitmap:
//! damage the format detects, but `check` did not report.

use engine::format::{node, IndexEntry, Superblock};
use engine::io::{Block, BlockDevice, MemoryDevice};
use engine::thin::{Pool, PoolOptions};
use engine::tools::check::check;

#[test]
fn check_reports_a_corrupt_data_bitmap() {
    let pool = Pool::open(Box::new(MemoryDevice::new(64)), PoolOptions::new(128)).expect("format");
    pool.resize_data_dev(100).expect("resize");
    pool.commit().expect("commit");
    let mut dev = pool.close().expect("close");
    let mut b: Block = [0; 4096];
    dev.read(0, &mut b).expect("superblock");
    let sb = Superblock::unpack(&b, 0).expect("valid superblock");
    dev.read(sb.data_sm_root.bitmap_root.0, &mut b).expect("data index root");
    let bitmap = IndexEntry::unpack(node::value(&b, 0)).blocknr.0;
    dev.read(bitmap, &mut b).expect("data bitmap");
    b[100] ^= 0x40;
    dev.write(bitmap, &b).expect("corrupt the bitmap");
    dev.flush().expect("flush");
    let report = check(dev);
    assert!(!report.is_clean(), "check passed a data bitmap with a bad checksum (block {bitmap})");
}
