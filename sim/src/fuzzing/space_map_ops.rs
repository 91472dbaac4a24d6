//! Target `space_map_ops`: data-block references through the pool against a `Vec<u32>`.
//! Canary: the model ignores decrements of blocks whose count is ≥ 3 (the overflow tree).

use arbitrary::{Arbitrary, Unstructured};
use engine::io::MemoryDevice;
use engine::thin::DataBlock;
use engine::thin::{Pool, PoolOptions};

const BLOCKS: u64 = 40_000;

#[derive(Debug)]
enum Op {
    Inc { block: u16, len: u8 },
    Dec { block: u16, len: u8 },
    Alloc,
    Commit,
    Abort,
}

/// Weighted decoding: increments and decrements dominate so counts climb past 3 between the
/// rarer commits and aborts.
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let kind: u8 = u.arbitrary()?;
        Ok(match kind {
            0..=109 => Op::Inc { block: u.arbitrary()?, len: u.arbitrary()? },
            110..=199 => Op::Dec { block: u.arbitrary()?, len: u.arbitrary()? },
            200..=239 => Op::Alloc,
            240..=251 => Op::Commit,
            _ => Op::Abort,
        })
    }
}

pub fn run(data: &[u8], canary: bool) -> Result<(), String> {
    let ops: Vec<Op> = super::decode_all(data)?;
    let pool = Pool::open(Box::new(MemoryDevice::new(2048)), PoolOptions::new(128))
        .map_err(|e| e.to_string())?;
    pool.resize_data_dev(BLOCKS).map_err(|e| e.to_string())?;
    pool.commit().map_err(|e| e.to_string())?;
    let mut cur = vec![0u32; BLOCKS as usize];
    let mut committed = cur.clone();
    // Blocks whose count changed since the last commit or abort: settling copies only those
    // (a whole copy of the 40,000 counts at every commit cost the harness a quarter of its time).
    let mut touched: Vec<usize> = Vec::new();
    for op in ops.iter().take(2000) {
        match *op {
            Op::Inc { block, len } => {
                let (b, e) = range(block, len);
                pool.inc_data_range(DataBlock(b), DataBlock(e)).map_err(|e| e.to_string())?;
                for (x, c) in cur.iter_mut().enumerate().take(e as usize).skip(b as usize) {
                    *c += 1;
                    touched.push(x);
                }
            }
            Op::Dec { block, len } => {
                let (b, e) = range(block, len);
                let ok = (b..e).all(|x| cur[x as usize] > 0);
                let r = pool.dec_data_range(DataBlock(b), DataBlock(e));
                if r.is_ok() != ok {
                    return Err(format!("dec [{b},{e}): engine {r:?}, model ok={ok}"));
                }
                if ok {
                    for (x, c) in cur.iter_mut().enumerate().take(e as usize).skip(b as usize) {
                        if !(canary && *c >= 3) {
                            *c -= 1;
                            touched.push(x);
                        }
                    }
                }
            }
            Op::Alloc => {
                if let Ok(b) = pool.alloc_data_block().map(u64::from) {
                    if cur[b as usize] != 0 || committed[b as usize] != 0 {
                        return Err(format!(
                            "allocated block {b} in use now or at the last commit"
                        ));
                    }
                    cur[b as usize] = 1;
                    touched.push(b as usize);
                }
            }
            Op::Commit => {
                pool.commit().map_err(|e| e.to_string())?;
                touched.drain(..).for_each(|x| committed[x] = cur[x]);
            }
            Op::Abort => {
                pool.abort().map_err(|e| e.to_string())?;
                touched.drain(..).for_each(|x| cur[x] = committed[x]);
            }
        }
    }
    for (b, &want) in cur.iter().enumerate() {
        if want == 0 {
            continue;
        }
        let got = pool.data_block_count(b as u64).map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("block {b}: engine count {got}, model {want}"));
        }
    }
    Ok(())
}

fn range(block: u16, len: u8) -> (u64, u64) {
    // A small window makes repeated references to one block (counts past 3) likely.
    let b = u64::from(block) % 64;
    (b, (b + u64::from(len % 4)).min(BLOCKS))
}
