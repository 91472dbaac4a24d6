//! The completeness bound repair is judged by: every mapping that a tolerant walk from a
//! damaged image's own, validated superblock can still read through blocks that validate.
//! Repair may lose what damage took; it must keep at least this much.
//!
//! Written apart from the engine's tools: it shares only the format's decoders and
//! validators, so a salvage that drops what it could have kept is caught, whatever inside
//! the tools made it drop it.
//!
//! The walk keeps the rules repair documents (`engine::tools::repair`), and no others:
//! - a node counts when it validates as a node at its own location (checksum, header);
//! - a leaf counts only with its tree's value size (24 bytes for details, 8 for the two
//!   mapping levels); top-level and mapping leaves, both 8-byte, are told apart as repair
//!   tells them: a leaf whose every value could be a tree root (non-zero, below the metadata
//!   device's size) is a top-level one, the format keeps nothing else to tell them by;
//! - an entry outside the key range its parents give it does not count;
//! - a mapping past the data device, or stamped after the pool's time, does not count.
//!
//! Invariants: the walk ends on any bytes (a depth bound, a visited set per tree); with a
//! superblock that does not validate there is no bound ([`readable_mappings`] is `None`):
//! repair then takes its roots from fields nothing verifies, and the campaign judges only
//! that it invents nothing.

use crate::disk::MemoryImage;
use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::format::superblock::Superblock;
use engine::format::BlockTime;
use engine::io::{Block, BlockDevice};
use engine::limits::MAX_BTREE_DEPTH;
use std::collections::{BTreeMap, BTreeSet};

/// One mapping: (device, virtual block, data block, time).
pub(crate) type Readable = (u64, u64, u64, u32);

/// Every mapping the image still holds readable from its superblock's roots, ascending (by
/// device, then virtual block; each once), or `None` when the superblock does not validate.
pub(crate) fn readable_mappings(img: &MemoryImage) -> Option<Vec<Readable>> {
    let sb = Superblock::unpack(img.block(0)?, 0).ok()?;
    let w = Walk { img, nr_meta: img.nr_blocks() };
    let mut tops = BTreeMap::new();
    w.leaves(sb.data_mapping_root.0, Leaf::Top, &mut |k, v| {
        tops.insert(k, v);
    });
    let mut out = Vec::new();
    for (dev, root) in tops {
        // In-order, and each entry inside its key range: a device's keys ascend, once each.
        w.leaves(root, Leaf::Mappings, &mut |v, value| {
            let bt = BlockTime::unpack(value);
            if bt.data_block.0 < sb.data_sm_root.nr_blocks && bt.time <= sb.time {
                out.push((dev, v, bt.data_block.0, bt.time.0));
            }
        });
    }
    debug_assert!(out.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    Some(out)
}

/// Which 8-byte leaves a walk reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Top,
    Mappings,
}

struct Walk<'a> {
    img: &'a MemoryImage,
    nr_meta: u64,
}

impl Walk<'_> {
    /// A block that validates as a node at its own location.
    fn node(&self, b: u64) -> Option<&Block> {
        let blk = self.img.block(b)?;
        checksum::verify(blk, BlockKind::Node, b).ok()?;
        node::validate(blk).ok()?;
        Some(blk)
    }

    /// Calls `f(key, value)` for each entry of each leaf of `kind` under `root`, in range.
    fn leaves(&self, root: u64, kind: Leaf, f: &mut dyn FnMut(u64, u64)) {
        let mut seen = BTreeSet::new();
        self.rec(root, kind, (0, None), 0, &mut seen, f);
    }

    fn rec(
        &self,
        b: u64,
        kind: Leaf,
        (lo, hi): (u64, Option<u64>),
        depth: usize,
        seen: &mut BTreeSet<u64>,
        f: &mut dyn FnMut(u64, u64),
    ) {
        if depth >= MAX_BTREE_DEPTH || !seen.insert(b) {
            return;
        }
        let Some(n) = self.node(b) else { return };
        let count = node::nr_entries(n);
        let inside = |k: u64| k >= lo && hi.is_none_or(|h| k < h);
        if node::is_leaf(n) {
            if node::value_size(n) != 8 || !self.fits(n, kind) {
                return;
            }
            for i in (0..count).filter(|&i| inside(node::key(n, i))) {
                f(node::key(n, i), node::value_u64(n, i));
            }
            return;
        }
        for i in 0..count {
            let next = if i + 1 < count { Some(node::key(n, i + 1)) } else { None };
            let child_hi = match (next, hi) {
                (Some(a), Some(h)) => Some(a.min(h)),
                (a, h) => a.or(h),
            };
            let child_lo = node::key(n, i).max(lo);
            self.rec(node::value_u64(n, i), kind, (child_lo, child_hi), depth + 1, seen, f);
        }
    }

    /// Whether an 8-byte leaf belongs to a tree of `kind` (see the module's rules).
    fn fits(&self, n: &Block, kind: Leaf) -> bool {
        let root_like = |i| {
            let v = node::value_u64(n, i);
            v != 0 && v < self.nr_meta
        };
        let all_root_like = (0..node::nr_entries(n)).all(root_like);
        match kind {
            Leaf::Top => all_root_like,
            Leaf::Mappings => node::nr_entries(n) == 0 || !all_root_like,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::io::MemoryDevice;
    use engine::thin::{DataBlock, Pool, PoolOptions, ThinId, VBlock};

    fn pool_image() -> MemoryDevice {
        let dev = engine::io::Shared::new(MemoryDevice::new(64));
        let pool = Pool::open(dev.device(), PoolOptions::new(128)).expect("format");
        pool.resize_data_dev(1000).expect("resize");
        for id in [1, 2] {
            pool.create_thin(ThinId(id)).expect("create");
            let h = pool.open_thin_device(ThinId(id)).expect("open");
            for v in 0..300 {
                pool.insert_block(&h, VBlock(v), DataBlock(v + 300 * id)).expect("insert");
            }
            pool.close_thin_device(h);
        }
        pool.commit().expect("commit");
        drop(pool);
        dev.copy()
    }

    #[test]
    fn an_undamaged_image_reads_whole_and_a_damaged_leaf_loses_only_its_own() {
        let img = pool_image();
        let all = readable_mappings(&img).expect("the superblock validates");
        assert_eq!(all.len(), 600);
        assert!(all.contains(&(2, 299, 899, 0)));
        // Damage one leaf of device 1's tree (a byte past its header): its entries, and
        // only they, leave the bound.
        let sb = Superblock::unpack(img.block(0).unwrap(), 0).unwrap();
        let top = img.block(sb.data_mapping_root.0).unwrap();
        let root1 = node::value_u64(top, 0);
        let first_leaf = node::value_u64(img.block(root1).unwrap(), 0);
        let lost = node::nr_entries(img.block(first_leaf).unwrap());
        let mut damaged = img.clone();
        damaged.block_mut(first_leaf)[2000] ^= 1;
        let left = readable_mappings(&damaged).expect("the superblock still validates");
        assert_eq!(left.len(), 600 - lost);
        assert!(left.iter().all(|m| all.binary_search(m).is_ok()));
        assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending, each once");
        assert!(left.iter().all(|m| m.0 == 2 || m.1 >= lost as u64));
        // No valid superblock, no bound.
        damaged.block_mut(0)[100] ^= 1;
        assert_eq!(readable_mappings(&damaged), None);
    }
}
