//! Bulk loading: builds a whole tree bottom-up from entries sorted by key, writing every node
//! once. Nodes at each level share the entries evenly, so every non-root node is at least
//! half full (well above the `max_entries / 3` fill rule).

use super::ValueKind;
use crate::error::{Error, Result};
use crate::format::checksum::BlockKind;
use crate::format::node::{self, INTERNAL, LEAF};
use crate::format::MetadataBlock;
use crate::transaction::TransactionManager;

/// Builds a tree of 8-byte values holding `entries` (strictly increasing keys)
/// and returns its root. Values' references are the caller's (no `inc`).
pub fn build(
    tm: &mut TransactionManager,
    vk: ValueKind,
    entries: &[(u64, u64)],
) -> Result<MetadataBlock> {
    debug_assert_eq!(vk.size(), 8, "bulk loading is for 8-byte values");
    if let Some(w) = entries.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Err(Error::Invalid(format!("bulk load keys not increasing at {}", w[1].0)));
    }
    let leaves = entries.iter().map(|&(k, v)| (k, v.to_le_bytes()));
    let mut level: Vec<(u64, MetadataBlock)> = write_level(tm, LEAF, vk.size(), leaves)?;
    let mut levels = 1;
    while level.len() > 1 {
        levels += 1;
        let children: Vec<(u64, MetadataBlock)> = std::mem::take(&mut level);
        level = write_level(tm, INTERNAL, 8, children.iter().map(|&(k, b)| (k, b.to_le_bytes())))?;
    }
    crate::events::height(vk.tree(), levels);
    Ok(level[0].1)
}

/// Writes one level of nodes; returns (first key, block) of each. An empty level is one
/// empty node (the empty tree).
fn write_level<V: AsRef<[u8]>>(
    tm: &mut TransactionManager,
    flags: u32,
    value_size: usize,
    entries: impl ExactSizeIterator<Item = (u64, V)>,
) -> Result<Vec<(u64, MetadataBlock)>> {
    let n = entries.len();
    let max = node::max_entries(value_size) as usize;
    let nodes = n.div_ceil(max).max(1);
    let mut out = Vec::with_capacity(nodes);
    let mut entries = entries.peekable();
    for i in 0..nodes {
        // Even shares: the first `n % nodes` nodes take one extra entry.
        let share = n / nodes + usize::from(i < n % nodes);
        let first = entries.peek().map(|(k, _)| *k).unwrap_or(0);
        let mut blk = [0u8; 4096];
        node::init(&mut blk, flags, value_size);
        for j in 0..share {
            let (k, v) = entries.next().expect("shares add up to n");
            node::set_key(&mut blk, j, k);
            node::set_value(&mut blk, j, v.as_ref());
        }
        node::set_nr_entries(&mut blk, share);
        let b = tm.new_block_with(BlockKind::Node, blk)?;
        out.push((first, b));
    }
    Ok(out)
}
