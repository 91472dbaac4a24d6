//! Property test: the two-level mapping tree (btree insert / remove / remove_range / lookup /
//! lower bound, nested trees, snapshots sharing subtrees) against `BTreeMap`s, with a full
//! `check` (node fill, key order, depth, every metadata and data reference recounted) after
//! every commit, and a reopen that must see exactly the committed mappings. A second
//! property test uses one or two devices and a small key space, so its trees split, merge
//! and redistribute (the engine's structural counters prove it), and the large sweep runs
//! 100,000 keys in ascending, descending and random orders.

mod common;
use common::Observe;
use engine::thin::{DataBlock, ThinId, VBlock};

use common::{assert_clean, fresh_pool, logical};
use engine::thin::{Pool, PoolOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Insert { dev: u8, vblock: u16 },
    Remove { dev: u8, vblock: u16 },
    RemoveRange { dev: u8, begin: u16, len: u16 },
    Lookup { dev: u8, vblock: u16 },
    MappedRange { dev: u8, begin: u16 },
    Snapshot { origin: u8 },
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..3u8, 0..4000u16).prop_map(|(dev, vblock)| Op::Insert { dev, vblock }),
        5 => (0..3u8, 0..4000u16).prop_map(|(dev, vblock)| Op::Remove { dev, vblock }),
        2 => (0..3u8, 0..4000u16, 0..600u16).prop_map(|(dev, begin, len)| Op::RemoveRange { dev, begin, len }),
        4 => (0..3u8, 0..4000u16).prop_map(|(dev, vblock)| Op::Lookup { dev, vblock }),
        2 => (0..3u8, 0..4000u16).prop_map(|(dev, begin)| Op::MappedRange { dev, begin }),
        1 => (0..3u8).prop_map(|origin| Op::Snapshot { origin }),
        2 => Just(Op::Commit),
    ]
}

struct Harness {
    pool: Pool,
    dev: common::SharedDevice,
    model: BTreeMap<u64, BTreeMap<u64, u64>>,
    committed: BTreeMap<u64, BTreeMap<u64, u64>>,
    next_snap: u64,
}

impl Harness {
    fn new() -> Self {
        let (pool, dev) = fresh_pool(2048, 200_000);
        for id in 0..3 {
            pool.create_thin(ThinId(id)).unwrap();
        }
        pool.commit().unwrap();
        let model: BTreeMap<u64, BTreeMap<u64, u64>> =
            (0..3).map(|i| (i, BTreeMap::new())).collect();
        Harness { pool, dev, committed: model.clone(), model, next_snap: 100 }
    }

    fn with_dev<T>(&self, id: u64, f: impl FnOnce(&engine::thin::ThinHandle) -> T) -> T {
        let h = self.pool.open_thin_device(ThinId(id)).unwrap();
        let r = f(&h);
        self.pool.close_thin_device(h);
        r
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { dev, vblock } => {
                let (id, v) = (u64::from(dev), u64::from(vblock));
                let d = self.pool.alloc_data_block().map(u64::from).unwrap();
                self.with_dev(id, |h| self.pool.insert_block(h, VBlock(v), DataBlock(d))).unwrap();
                self.model.get_mut(&id).unwrap().insert(v, d);
            }
            Op::Remove { dev, vblock } => {
                let (id, v) = (u64::from(dev), u64::from(vblock));
                let r = self.with_dev(id, |h| self.pool.remove_block(h, VBlock(v)));
                let expected = self.model.get_mut(&id).unwrap().remove(&v);
                assert_eq!(r.is_ok(), expected.is_some(), "remove {id}/{v}: {r:?}");
            }
            Op::RemoveRange { dev, begin, len } => {
                let (id, b, e) =
                    (u64::from(dev), u64::from(begin), u64::from(begin) + u64::from(len));
                self.with_dev(id, |h| self.pool.remove_range(h, VBlock(b), VBlock(e))).unwrap();
                self.model.get_mut(&id).unwrap().retain(|k, _| *k < b || *k >= e);
            }
            Op::Lookup { dev, vblock } => {
                let (id, v) = (u64::from(dev), u64::from(vblock));
                let r = self
                    .with_dev(id, |h| self.pool.find_block(h, VBlock(v), true))
                    .ok()
                    .map(|l| l.data_block.0);
                assert_eq!(r, self.model[&id].get(&v).copied(), "lookup {id}/{v}");
            }
            Op::MappedRange { dev, begin } => {
                let (id, b) = (u64::from(dev), u64::from(begin));
                let r = self
                    .with_dev(id, |h| self.pool.find_mapped_range(h, VBlock(b), VBlock(b + 500)));
                let first = self.model[&id].range(b..b + 500).next();
                match (r, first) {
                    (Ok(range), Some((&k, &d))) => {
                        assert_eq!((range.thin_begin, range.pool_begin), (VBlock(k), DataBlock(d)));
                    }
                    (Err(e), None) => assert_eq!(e.errno(), engine::Errno::ENODATA),
                    (r, f) => panic!("mapped range from {b}: engine {r:?}, model {f:?}"),
                }
            }
            Op::Snapshot { origin } => {
                let id = self.next_snap;
                self.next_snap += 1;
                self.pool.create_snap(ThinId(id), ThinId(u64::from(origin))).unwrap();
                let copy = self.model[&u64::from(origin)].clone();
                self.model.insert(id, copy);
            }
            Op::Commit => {
                self.pool.commit().unwrap();
                self.committed = self.model.clone();
                assert_clean(&self.dev);
            }
        }
    }

    /// The batched lookup answers every key as the model does: all mapped keys and every
    /// third vblock (mostly holes), ascending, and the same keys descending.
    fn check_lookup_mappings(&self) {
        for (id, want) in &self.model {
            let mut keys: Vec<u64> = (0..4100).step_by(3).chain(want.keys().copied()).collect();
            keys.sort_unstable();
            keys.dedup();
            let got = self.pool.lookup_mappings(ThinId(*id), &keys).unwrap();
            for (k, g) in keys.iter().zip(&got) {
                assert_eq!(
                    g.map(|bt| bt.data_block.0),
                    want.get(k).copied(),
                    "device {id} vblock {k}"
                );
            }
            keys.reverse();
            let mut descending = self.pool.lookup_mappings(ThinId(*id), &keys).unwrap();
            descending.reverse();
            assert_eq!(descending, got, "device {id}: descending keys");
        }
    }

    fn engine_view(pool: &Pool) -> BTreeMap<u64, BTreeMap<u64, u64>> {
        logical(pool)
            .into_iter()
            .map(|(id, m)| (id, m.into_iter().map(|(k, bt)| (k, bt.data_block.0)).collect()))
            .collect()
    }

    fn finish(self) {
        assert_eq!(Self::engine_view(&self.pool), self.model, "current state");
        self.check_lookup_mappings();
        self.pool.abort().unwrap();
        assert_eq!(Self::engine_view(&self.pool), self.committed, "after abort");
        drop(self.pool);
        let reopened = Pool::open(Box::new(self.dev.image()), PoolOptions::new(128)).unwrap();
        assert_eq!(Self::engine_view(&reopened), self.committed, "after reopen");
        assert_clean(&self.dev);
    }
}

/// Insert-heavy ops over devices 0..2 and vblocks 0..400: a device passes 253 mappings
/// (a leaf split) within a few hundred inserts, and removals then rebalance its leaves.
fn dense_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0..2u8, 0..400u16).prop_map(|(dev, vblock)| Op::Insert { dev, vblock }),
        2 => (0..2u8, 0..400u16).prop_map(|(dev, vblock)| Op::Remove { dev, vblock }),
        1 => (0..2u8, 0..400u16, 0..12u16).prop_map(|(dev, begin, len)| Op::RemoveRange { dev, begin, len }),
        3 => (0..2u8, 0..400u16).prop_map(|(dev, vblock)| Op::Lookup { dev, vblock }),
        1 => (0..2u8).prop_map(|origin| Op::Snapshot { origin }),
        1 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn mapping_trees_match_btreemap(ops in proptest::collection::vec(op(), 1..400)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn split_and_rebalanced_trees_match_btreemap(
        ops in proptest::collection::vec(dense_op(), 1500..2000)
    ) {
        use engine::events::{BtreeEvent as B, Tree};
        engine::events::take();
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        let largest = h.model.values().map(|m| m.len()).max().unwrap_or(0);
        h.finish();
        // ~1,500 inserts over two devices of 400 keys: a device passes one leaf (252).
        let c = engine::events::take();
        prop_assert!(largest > 252, "only {largest} mappings in the fullest device");
        prop_assert!(c.btree(Tree::Mapping, B::RootSplit) > 0, "no mapping tree split: {c:?}");
        prop_assert!(c.max_height(Tree::Mapping) >= 2);
    }
}

/// The order in which the large sweep inserts its keys.
#[derive(Clone, Copy, Debug)]
enum Order {
    Ascending,
    Descending,
    Random(u64),
}

/// Large sweep: 100,000 keys through one device and its snapshot, checked at each commit,
/// in every key order (random with two seeds). `THINSIM_TEST_SCALE` multiplies the key
/// count (CI uses 1).
#[test]
fn hundred_thousand_keys_in_every_order() {
    for order in [Order::Ascending, Order::Descending, Order::Random(7), Order::Random(8)] {
        sweep(order);
    }
}

fn sweep(order: Order) {
    use engine::events::{BtreeEvent as B, Tree};
    use rand::{Rng, SeedableRng};
    let scale: u64 =
        std::env::var("THINSIM_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let keys = 100_000 * scale;
    engine::events::take();
    let (pool, dev) = fresh_pool(16_384, keys * 2 + 16);
    pool.create_thin(ThinId(1)).unwrap();
    let h = pool.open_thin_device(ThinId(1)).unwrap();
    let mut model = BTreeMap::new();
    let seed = if let Order::Random(s) = order { s } else { 0 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in 0..keys {
        let v = match order {
            Order::Ascending => i * 3,
            Order::Descending => (keys - i) * 3,
            Order::Random(_) => rng.random_range(0..keys * 4),
        };
        let d = pool.alloc_data_block().map(u64::from).unwrap();
        pool.insert_block(&h, VBlock(v), DataBlock(d)).unwrap();
        model.insert(v, d);
        if i % 25_000 == 24_999 {
            pool.commit().unwrap();
        }
    }
    pool.commit().unwrap();
    assert_clean(&dev);
    let grown = engine::events::take();
    assert_eq!(grown.max_height(Tree::Mapping), 3, "{order:?}: 100,000 keys make three levels");
    assert!(grown.btree(Tree::Mapping, B::InternalSplit) > 0, "{order:?}: {grown:?}");
    if let Order::Descending = order {
        assert_eq!(
            grown.btree(Tree::Mapping, B::RootSplitNewMin),
            grown.btree(Tree::Mapping, B::RootSplit),
            "descending: every root split is by a new minimum"
        );
    }
    pool.create_snap(ThinId(2), ThinId(1)).unwrap();
    for _ in 0..keys / 4 {
        let v = rng.random_range(0..keys * 4);
        let r = pool.remove_block(&h, VBlock(v));
        assert_eq!(r.is_ok(), model.remove(&v).is_some());
    }
    pool.remove_range(&h, VBlock(keys), VBlock(keys * 2)).unwrap();
    model.retain(|k, _| *k < keys || *k >= keys * 2);
    pool.commit().unwrap();
    assert_clean(&dev);
    let got: BTreeMap<u64, u64> =
        pool.mappings(ThinId(1)).unwrap().into_iter().map(|(k, bt)| (k, bt.data_block.0)).collect();
    assert_eq!(got, model, "{order:?}");
    assert_eq!(pool.get_mapped_count(&h).unwrap(), model.len() as u64);
    let shrunk = engine::events::take();
    assert!(shrunk.btree(Tree::Mapping, B::Merge) > 0, "{order:?}: {shrunk:?}");
    assert!(shrunk.btree(Tree::Mapping, B::ShadowSharedLeaf) > 0, "{order:?}: {shrunk:?}");
    assert!(shrunk.btree(Tree::Mapping, B::RemoveRangeMultiLeaf) > 0, "{order:?}");
    pool.close_thin_device(h);
}
