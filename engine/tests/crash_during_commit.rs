//! A commit cut at every write: keep a prefix of the commit's writes, drop the rest, reopen.
//! The pool must come back at the old or the new transaction, never anything else, and the
//! image must pass `check`.

mod common;

use common::{logical, Logical};
use engine::io::{Block, BlockDevice, IoError, MemoryDevice, Shared};
use engine::thin::{DataBlock, ThinId, VBlock};
use engine::thin::{Pool, PoolOptions};

/// Applies the first `keep` writes issued after `arm()`, silently drops the rest
/// (the power went out; the engine does not know yet).
struct Cut {
    dev: MemoryDevice,
    keep: Option<u64>,
}

/// The test's side and the pool's side of one cut device.
type CutDevice = Shared<Cut>;

fn arm(dev: &CutDevice, keep: u64) {
    dev.lock().keep = Some(keep);
}

fn image(dev: &CutDevice) -> MemoryDevice {
    dev.lock().dev.clone()
}

impl BlockDevice for Cut {
    fn nr_blocks(&self) -> u64 {
        self.dev.nr_blocks()
    }
    fn read(&mut self, b: u64, buf: &mut Block) -> Result<(), IoError> {
        self.dev.read(b, buf)
    }
    fn write(&mut self, b: u64, buf: &Block) -> Result<(), IoError> {
        match &mut self.keep {
            Some(0) => Ok(()),
            Some(n) => {
                *n -= 1;
                self.dev.write(b, buf)
            }
            None => self.dev.write(b, buf),
        }
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// Builds a pool with history, then a pending transaction that touches every structure.
fn scenario(dev: &CutDevice) -> (Pool, Logical) {
    let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).unwrap();
    pool.resize_data_dev(40_000).unwrap();
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    for v in 0..600 {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), d).unwrap();
    }
    pool.commit().unwrap();
    let old = logical(&pool);
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    for v in 300..900 {
        let d = pool.alloc_data_block().unwrap();
        pool.insert_block(&h, VBlock(v), d).unwrap();
    }
    pool.remove_range(&h, VBlock(0), VBlock(100)).unwrap();
    pool.inc_data_range(DataBlock(39_000), DataBlock(39_010)).unwrap();
    pool.resize_data_dev(60_000).unwrap();
    pool.close_thin_device(h);
    (pool, old)
}

#[test]
fn commit_cut_at_every_write_reopens_old_or_new() {
    // Measure how many writes the commit issues.
    let probe = CutDevice::new(Cut { dev: MemoryDevice::new(1024), keep: None });
    let (pool, _) = scenario(&probe);
    let before = image(&probe).writes_issued;
    pool.commit().unwrap();
    let new = logical(&pool);
    let commit_writes = image(&probe).writes_issued - before;
    assert!(commit_writes > 10, "the commit should write many blocks, wrote {commit_writes}");

    let (mut saw_old, mut saw_new) = (0, 0);
    for keep in 0..=commit_writes {
        let dev = CutDevice::new(Cut { dev: MemoryDevice::new(1024), keep: None });
        let (pool, old) = scenario(&dev);
        arm(&dev, keep);
        pool.commit().unwrap();
        drop(pool);
        let image = image(&dev);
        // Old or new, the ten explicit references are the caller's: only the new state has them.
        let refs: std::collections::BTreeMap<u64, u32> = (39_000..39_010).map(|b| (b, 1)).collect();
        let clean_with = |r: &std::collections::BTreeMap<u64, u32>| {
            engine::tools::check::check_with_refs(Box::new(image.clone()), r)
        };
        let report =
            if keep == commit_writes { clean_with(&refs) } else { clean_with(&Default::default()) };
        assert!(report.is_clean(), "keep {keep}: {:?}", report.findings);
        let reopened = Pool::open(Box::new(image), PoolOptions::new(128)).unwrap();
        let got = logical(&reopened);
        if got == old {
            saw_old += 1;
        } else if got == new {
            saw_new += 1;
        } else {
            panic!("keep {keep} of {commit_writes}: reopened state is neither old nor new");
        }
    }
    // Only the full commit (superblock last) shows the new state.
    assert_eq!(saw_new, 1);
    assert_eq!(saw_old, commit_writes as usize);
}
