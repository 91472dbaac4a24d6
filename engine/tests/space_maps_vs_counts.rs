//! Property tests: both space maps against a plain `Vec<u32>` of counts — increments past 3
//! and back (overflow tree), allocation, extension and shrinking, commit and reopen — and
//! allocation never handing out a block freed in the current transaction.

mod common;
use common::Observe;
use engine::thin::DataBlock;

use engine::block_manager::BlockManager;
use engine::format::BlockKind;
use engine::io::MemoryDevice;
use engine::space_map::metadata_commit;
use engine::thin::{Pool, PoolOptions};
use engine::transaction::TransactionManager;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum DataOp {
    Inc(u16, u8),
    Dec(u16, u8),
    Alloc,
    Commit,
    Abort,
    Grow(u16),
    Shrink(u16),
}

fn data_op() -> impl Strategy<Value = DataOp> {
    prop_oneof![
        8 => (0..2000u16, 1..6u8).prop_map(|(b, n)| DataOp::Inc(b, n)),
        6 => (0..2000u16, 1..6u8).prop_map(|(b, n)| DataOp::Dec(b, n)),
        6 => Just(DataOp::Alloc),
        2 => Just(DataOp::Commit),
        1 => Just(DataOp::Abort),
        1 => (1..20000u16).prop_map(DataOp::Grow),
        1 => (1..20000u16).prop_map(DataOp::Shrink),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn data_space_map_matches_counts(ops in proptest::collection::vec(data_op(), 1..300)) {
        let (pool, dev) = common::fresh_pool(1024, 2000);
        let mut cur: Vec<u32> = vec![0; 2000];
        let mut committed = cur.clone();
        for op in ops {
            match op {
                DataOp::Inc(b, n) => {
                    let (b, e) = (u64::from(b), (u64::from(b) + u64::from(n)).min(cur.len() as u64));
                    let r = pool.inc_data_range(DataBlock(b), DataBlock(e));
                    prop_assert_eq!(r.is_ok(), b <= e);
                    if r.is_ok() { (b..e).for_each(|x| cur[x as usize] += 1); }
                }
                DataOp::Dec(b, n) => {
                    let (b, e) = (u64::from(b), (u64::from(b) + u64::from(n)).min(cur.len() as u64));
                    let ok = b <= e && (b..e).all(|x| cur[x as usize] > 0);
                    prop_assert_eq!(pool.dec_data_range(DataBlock(b), DataBlock(e)).is_ok(), ok);
                    if ok { (b..e).for_each(|x| cur[x as usize] -= 1); }
                }
                DataOp::Alloc => match pool.alloc_data_block().map(u64::from) {
                    Ok(b) => {
                        let i = b as usize;
                        prop_assert!(i < cur.len() && cur[i] == 0, "allocated a block in use");
                        prop_assert!(committed.get(i).copied().unwrap_or(0) == 0, "reused block {} freed in this transaction", b);
                        cur[i] = 1;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.errno(), engine::Errno::ENOSPC);
                        let free = (0..cur.len()).any(|i| cur[i] == 0 && committed.get(i).copied().unwrap_or(0) == 0);
                        prop_assert!(!free, "ENOSPC with an allocatable block");
                    }
                },
                DataOp::Commit => {
                    pool.commit().unwrap();
                    committed = cur.clone();
                }
                DataOp::Abort => {
                    pool.abort().unwrap();
                    cur = committed.clone();
                }
                DataOp::Grow(n) => {
                    let n = cur.len() + usize::from(n);
                    pool.resize_data_dev(n as u64).unwrap();
                    cur.resize(n, 0);
                }
                DataOp::Shrink(n) => {
                    let n = cur.len().saturating_sub(usize::from(n)).max(1);
                    let lost = (n..cur.len()).any(|i| cur[i] > 0 || committed.get(i).copied().unwrap_or(0) > 0);
                    let r = pool.resize_data_dev(n as u64);
                    prop_assert_eq!(r.is_err(), lost);
                    if !lost { cur.truncate(n); }
                }
            }
            let free = (pool.get_data_dev_size().unwrap() as usize).saturating_sub(cur.iter().filter(|&&c| c > 0).count());
            prop_assert_eq!(pool.get_free_block_count().unwrap() as usize, free);
        }
        for (b, &c) in cur.iter().enumerate() {
            prop_assert_eq!(pool.data_block_count(b as u64).unwrap(), c, "block {}", b);
        }
        let all: Vec<u64> = (0..cur.len() as u64).rev().collect();
        let mut batched = pool.data_block_counts(&all).unwrap();
        batched.reverse();
        prop_assert_eq!(&batched, &cur, "batched counts");
        pool.commit().unwrap();
        let refs = cur.iter().enumerate().filter(|(_, &c)| c > 0).map(|(b, &c)| (b as u64, c)).collect();
        let report = engine::tools::check::check_with_refs(Box::new(dev.image()), &refs);
        prop_assert!(report.is_clean(), "{:?}", report.findings);
        drop(pool);
        let reopened = Pool::open(Box::new(dev.image()), PoolOptions::new(128)).unwrap();
        for (b, &c) in cur.iter().enumerate() {
            prop_assert_eq!(reopened.data_block_count(b as u64).unwrap(), c);
        }
    }
}

#[derive(Debug, Clone)]
enum MetaOp {
    Inc(u16),
    Dec(u16),
    Alloc,
    Commit,
}

fn meta_op() -> impl Strategy<Value = MetaOp> {
    prop_oneof![
        5 => any::<u16>().prop_map(MetaOp::Inc),
        5 => any::<u16>().prop_map(MetaOp::Dec),
        4 => Just(MetaOp::Alloc),
        1 => Just(MetaOp::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The metadata space map on its own, driven directly: blocks we allocate are ours to
    /// count up (past 3: overflow tree) and down; the map's own blocks move at every commit.
    /// Allocation must never return a block in use at the last commit or freed since.
    #[test]
    fn metadata_space_map_matches_counts(ops in proptest::collection::vec(meta_op(), 1..400)) {
        const SIZE: u64 = 1_000;
        let dev = common::shared_device(SIZE);
        let bm = BlockManager::new(Box::new(dev.clone()), 4096);
        let mut tm = TransactionManager::new(bm);
    metadata_commit::format(&mut tm, SIZE).unwrap();
        let commit = |tm: &mut engine::transaction::TransactionManager| {
            let root = metadata_commit::pre_commit(tm).unwrap();
            let sb = engine::format::Superblock { metadata_sm_root: root, magic: engine::limits::SUPERBLOCK_MAGIC, ..Default::default() };
            tm.commit(&sb).unwrap();
            let used: Vec<bool> = (0..SIZE).map(|b| tm.sm.count(b).unwrap() > 0).collect();
            (root, used)
        };
        let (_, mut committed_used) = commit(&mut tm);
        let mut owned: std::collections::BTreeMap<u64, u32> = Default::default();
        for op in ops {
            match op {
                MetaOp::Inc(i) | MetaOp::Dec(i) if !owned.is_empty() => {
                    let b = *owned.keys().nth(usize::from(i) % owned.len()).unwrap();
                    let c = owned.get_mut(&b).unwrap();
                    if matches!(op, MetaOp::Inc(_)) {
                        tm.sm.inc(b).unwrap();
                        *c += 1;
                    } else {
                        let r = tm.sm.dec(b);
                        prop_assert_eq!(r.is_ok(), *c > 0);
                        *c = c.saturating_sub(1);
                    }
                }
                MetaOp::Alloc => match tm.new_block(BlockKind::Node) {
                    Ok(engine::format::MetadataBlock(b)) => {
                        prop_assert!(!committed_used[b as usize], "block {} was in use at the last commit", b);
                        prop_assert_eq!(owned.get(&b).copied().unwrap_or(0), 0, "block {} is in use", b);
                        owned.insert(b, 1);
                    }
                    Err(e) => prop_assert_eq!(e.errno(), engine::Errno::ENOSPC),
                },
                MetaOp::Commit => (_, committed_used) = commit(&mut tm),
                _ => {}
            }
            for (&b, &c) in &owned {
                prop_assert_eq!(tm.sm.count(b).unwrap(), c);
            }
        }
        let (root, _) = commit(&mut tm);
        drop(tm);
        let bm = BlockManager::new(Box::new(dev.clone()), 4096);
        let mut reopened = TransactionManager::new(bm);
    metadata_commit::load(&mut reopened, &root).unwrap();
        for (&b, &c) in &owned {
            prop_assert_eq!(reopened.sm.count(b).unwrap(), c, "block {}", b);
        }
        let _ = MemoryDevice::new(1);
    }
}

/// Metadata allocation across a bitmap boundary (a campaign would need 16,320 allocations in
/// one pool lifetime to get there): allocate past the end of the first bitmap, commit, and
/// reopen; every count survives, the search crossed into the second bitmap, and the commit
/// wrote an index of two entries.
#[test]
fn metadata_allocation_crosses_a_bitmap_boundary() {
    use engine::events::{self, Map, SpaceEvent};
    use engine::limits::ENTRIES_PER_BITMAP;
    let size = ENTRIES_PER_BITMAP + 2_000;
    let dev = common::shared_device(size);
    let bm = BlockManager::new(Box::new(dev.clone()), 4096);
    let mut tm = TransactionManager::new(bm);
    metadata_commit::format(&mut tm, size).unwrap();
    let commit = |tm: &mut engine::transaction::TransactionManager| {
        let root = metadata_commit::pre_commit(tm).unwrap();
        let sb = engine::format::Superblock {
            metadata_sm_root: root,
            magic: engine::limits::SUPERBLOCK_MAGIC,
            ..Default::default()
        };
        tm.commit(&sb).unwrap();
        root
    };
    commit(&mut tm);
    events::take();
    let mut owned = Vec::new();
    for i in 0..ENTRIES_PER_BITMAP + 500 {
        owned.push(tm.new_block(BlockKind::Node).unwrap().0);
        if i % 4_000 == 3_999 {
            commit(&mut tm);
        }
    }
    let root = commit(&mut tm);
    let c = events::take();
    assert!(c.space(Map::Metadata, SpaceEvent::AllocCrossesBitmap) >= 1, "{c:?}");
    assert!(c.space(Map::Metadata, SpaceEvent::MultiBitmapCommit) >= 1);
    assert_eq!(c.max_bitmaps(Map::Metadata), 2);
    assert!(owned.iter().any(|&b| b >= ENTRIES_PER_BITMAP), "a block of the second bitmap");
    drop(tm);
    let bm = BlockManager::new(Box::new(dev.clone()), 4096);
    let mut reopened = TransactionManager::new(bm);
    metadata_commit::load(&mut reopened, &root).unwrap();
    for &b in &owned {
        assert_eq!(reopened.sm.count(b).unwrap(), 1, "block {b}");
    }
}
