//! Target `btree_ops`: mapping-tree operations through the pool against `BTreeMap`s.
//! Canary: the model forgets every remove_range, so any input that removes a range of
//! mapped blocks must be caught.

use arbitrary::Arbitrary;
use engine::io::MemoryDevice;
use engine::thin::{DataBlock, ThinId, VBlock};
use engine::thin::{Pool, PoolOptions};
use std::collections::BTreeMap;

/// Data blocks: one space-map bitmap, more than an input's 2,000 ops can allocate.
const DATA_BLOCKS: u64 = engine::limits::ENTRIES_PER_BITMAP;

#[derive(Debug, Arbitrary)]
enum Op {
    Insert { dev: bool, vblock: u16 },
    Remove { dev: bool, vblock: u16 },
    RemoveRange { dev: bool, begin: u16, len: u8 },
    Lookup { dev: bool, vblock: u16 },
    Snapshot,
    Commit,
    Abort,
}

pub fn run(data: &[u8], canary: bool) -> Result<(), String> {
    let ops: Vec<Op> = super::decode_all(data)?;
    let pool = Pool::open(Box::new(MemoryDevice::new(4096)), PoolOptions::new(128))
        .map_err(|e| e.to_string())?;
    // One data bitmap: an input inserts at most 2,000 blocks, and each commit then renders
    // one data bitmap, not the 65 a 2^20-block device has.
    pool.resize_data_dev(DATA_BLOCKS).map_err(|e| e.to_string())?;
    for id in 0..2 {
        pool.create_thin(ThinId(id)).map_err(|e| e.to_string())?;
    }
    pool.commit().map_err(|e| e.to_string())?;
    let mut cur: BTreeMap<u64, BTreeMap<u64, u64>> = (0..2).map(|i| (i, BTreeMap::new())).collect();
    let mut committed = cur.clone();
    let mut next_snap = 10;
    for op in ops.iter().take(2000) {
        step(&pool, op, &mut cur, &mut committed, &mut next_snap, canary)?;
    }
    for (id, want) in &cur {
        let got: BTreeMap<u64, u64> = pool
            .mappings(ThinId(*id))
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, bt)| (k, bt.data_block.0))
            .collect();
        if &got != want {
            return Err(format!(
                "device {id}: engine has {} mappings, model {}",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

fn step(
    pool: &Pool,
    op: &Op,
    cur: &mut BTreeMap<u64, BTreeMap<u64, u64>>,
    committed: &mut BTreeMap<u64, BTreeMap<u64, u64>>,
    next_snap: &mut u64,
    canary: bool,
) -> Result<(), String> {
    let id = |d: bool| u64::from(d);
    // Small key windows make inserts, removes and lookups meet each other.
    let key = |v: u16| u64::from(v % 1024);
    let with = |dev: u64,
                f: &dyn Fn(&engine::thin::ThinHandle) -> engine::Result<()>|
     -> engine::Result<()> {
        let h = pool.open_thin_device(ThinId(dev))?;
        let r = f(&h);
        pool.close_thin_device(h);
        r
    };
    match *op {
        Op::Insert { dev, vblock } => {
            let vblock = key(vblock);
            let d = pool.alloc_data_block().map(u64::from).map_err(|e| e.to_string())?;
            with(id(dev), &|h| pool.insert_block(h, VBlock(vblock), DataBlock(d)))
                .map_err(|e| e.to_string())?;
            cur.entry(id(dev)).or_default().insert(vblock, d);
        }
        Op::Remove { dev, vblock } => {
            let vblock = key(vblock);
            let r = with(id(dev), &|h| pool.remove_block(h, VBlock(vblock)));
            let m = cur.entry(id(dev)).or_default().remove(&vblock);
            if r.is_ok() != m.is_some() {
                return Err(format!("remove {vblock}: engine {r:?}, model {m:?}"));
            }
        }
        Op::RemoveRange { dev, begin, len } => {
            let (b, e) = (key(begin), key(begin) + u64::from(len));
            with(id(dev), &|h| pool.remove_range(h, VBlock(b), VBlock(e)))
                .map_err(|e| e.to_string())?;
            if !canary {
                cur.entry(id(dev)).or_default().retain(|k, _| *k < b || *k >= e);
            }
        }
        Op::Lookup { dev, vblock } => {
            let vblock = key(vblock);
            let h = pool.open_thin_device(ThinId(id(dev))).map_err(|e| e.to_string())?;
            let got = pool.find_block(&h, VBlock(vblock), true).ok().map(|l| l.data_block.0);
            pool.close_thin_device(h);
            let want = cur.get(&id(dev)).and_then(|m| m.get(&vblock)).copied();
            if got != want {
                return Err(format!("lookup {vblock}: engine {got:?}, model {want:?}"));
            }
        }
        Op::Snapshot => {
            pool.create_snap(ThinId(*next_snap), ThinId(0)).map_err(|e| e.to_string())?;
            let copy = cur.get(&0).cloned().unwrap_or_default();
            cur.insert(*next_snap, copy);
            *next_snap += 1;
        }
        Op::Commit => {
            pool.commit().map_err(|e| e.to_string())?;
            *committed = cur.clone();
        }
        Op::Abort => {
            pool.abort().map_err(|e| e.to_string())?;
            *cur = committed.clone();
        }
    }
    Ok(())
}
