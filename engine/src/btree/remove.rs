//! Removal: shadow the path, delete at the leaf, and on the way back up rebalance any child
//! that fell below `max_entries / 3` with a sibling — merge when the two fit comfortably
//! (fewer than 2·(T+1) entries, the kernel's threshold), otherwise share entries evenly.
//! A root left with a single child is replaced by that child.
//!
//! A missing key is found by a read-only lookup first, so it costs no shadowing and leaves
//! no trace ([R1]; the kernel's remove shadows before it knows).

use super::{lookup, lookup_ge, read_node, shadow_node, shadow_node_shared, ReadMode, ValueKind};
use crate::canary::Canary;
use crate::error::{Error, Result};
use crate::events::{self, BtreeEvent};
use crate::format::checksum::BlockKind;
use crate::format::node;
use crate::format::MetadataBlock;
use crate::limits::MAX_BTREE_DEPTH;
use crate::transaction::TransactionManager;

/// Removes `key`; returns the new root and the removed value (None: absent, tree untouched).
pub fn remove(
    tm: &mut TransactionManager,
    vk: ValueKind,
    root: MetadataBlock,
    key: u64,
) -> Result<(MetadataBlock, Option<Vec<u8>>)> {
    if lookup(tm, root, vk, key, ReadMode::Blocking)?.is_none() {
        return Ok((root, None));
    }
    let mut removed = None;
    let b = remove_rec(tm, vk, root, key, key + 1, &mut |v| removed = Some(v.to_vec()), 0)?;
    Ok((collapse_root(tm, vk, b)?, removed))
}

/// Removes every key in `[begin, end)`; returns the new root and how many were removed.
pub fn remove_range(
    tm: &mut TransactionManager,
    vk: ValueKind,
    root: MetadataBlock,
    begin: u64,
    end: u64,
) -> Result<(MetadataBlock, u64)> {
    let mut root = root;
    let mut total = 0u64;
    // Each pass empties the keys of one leaf.
    let mut leaves = 0u64;
    while let Some((k, _)) = lookup_ge(tm, root, vk, begin)? {
        if k >= end {
            break;
        }
        let mut n = 0u64;
        let b = remove_rec(tm, vk, root, k, end, &mut |_| n += 1, 0)?;
        root = collapse_root(tm, vk, b)?;
        if n == 0 {
            // Lookup-next found `k`, but the path a descent takes for `k` leads to a leaf
            // without it: the internal keys are wrong. Looping would never end.
            return Err(Error::structure(
                root,
                format!("key {k} is reachable by lookup-next but not by descent (internal keys out of order)"),
            ));
        }
        total += n;
        leaves += 1;
    }
    if leaves >= 2 {
        events::btree(vk.tree(), BtreeEvent::RemoveRangeMultiLeaf);
    }
    Ok((root, total))
}

/// Removes the keys in `[begin, end)` from the one leaf that holds `begin` (which exists).
fn remove_rec(
    tm: &mut TransactionManager,
    vk: ValueKind,
    b: MetadataBlock,
    begin: u64,
    end: u64,
    on_removed: &mut dyn FnMut(&[u8]),
    depth: usize,
) -> Result<MetadataBlock> {
    if depth >= MAX_BTREE_DEPTH {
        return Err(super::depth_error(b));
    }
    let b = shadow_node(tm, b, vk)?;
    let n = read_node(tm, b, vk)?;
    if node::is_leaf(&n) {
        let i = node::upper_bound(&n, begin);
        let mut j = i;
        while j < node::nr_entries(&n) && node::key(&n, j) < end {
            on_removed(node::value(&n, j));
            vk.dec(tm, node::value(&n, j))?;
            j += 1;
        }
        drop(n);
        tm.modify(b, BlockKind::Node, |blk| node::remove_range_at(blk, i, j))?;
        return Ok(b);
    }
    let i = node::lower_bound(&n, begin)
        .ok_or_else(|| Error::structure(b, format!("key {begin} below the node's first key")))?;
    let child = node::child(&n, i);
    drop(n);
    let c = remove_rec(tm, vk, child, begin, end, on_removed, depth + 1)?;
    tm.modify(b, BlockKind::Node, |blk| node::set_value(blk, i, &c.to_le_bytes()))?;
    rebalance_child(tm, vk, b, i)?;
    Ok(b)
}

/// A root that is an internal node with one child is replaced by the child. The root is this
/// transaction's own copy (count 1), so freeing it moves its reference to the child unchanged.
fn collapse_root(
    tm: &mut TransactionManager,
    vk: ValueKind,
    mut b: MetadataBlock,
) -> Result<MetadataBlock> {
    loop {
        let n = tm.read(b, BlockKind::Node)?;
        if node::is_leaf(&n) || node::nr_entries(&n) != 1 {
            return Ok(b);
        }
        let child = node::child(&n, 0);
        drop(n);
        events::btree(vk.tree(), BtreeEvent::RootCollapse);
        tm.dec(b)?;
        b = child;
    }
}

/// Restores the fill of child `i` of the writable internal node `parent`.
fn rebalance_child(
    tm: &mut TransactionManager,
    vk: ValueKind,
    parent: MetadataBlock,
    i: usize,
) -> Result<()> {
    let p = tm.read(parent, BlockKind::Node)?;
    let count = node::nr_entries(&p);
    let child = read_node(tm, node::child(&p, i), vk)?;
    let min_fill = node::max_entries_of(&child) / 3;
    if node::nr_entries(&child) >= min_fill || count < 2 {
        return Ok(());
    }
    let (li, ri) = if i > 0 { (i - 1, i) } else { (i, i + 1) };
    let (l_orig, r_orig) = (node::child(&p, li), node::child(&p, ri));
    drop((p, child));
    // Child `i` is this transaction's copy already; its sibling may still be shared.
    let (left, l_shared) = shadow_node_shared(tm, l_orig, vk)?;
    let (right, r_shared) = shadow_node_shared(tm, r_orig, vk)?;
    if l_shared || r_shared {
        events::btree(vk.tree(), BtreeEvent::RebalanceSharedSibling);
    }
    tm.modify(parent, BlockKind::Node, |blk| {
        node::set_value(blk, li, &left.to_le_bytes());
        node::set_value(blk, ri, &right.to_le_bytes());
    })?;
    let l = tm.read(left, BlockKind::Node)?;
    let r = tm.read(right, BlockKind::Node)?;
    let (nl, nr) = (node::nr_entries(&l), node::nr_entries(&r));
    if nl + nr < 2 * (min_fill + 1) {
        drop(l);
        tm.modify(left, BlockKind::Node, |lb| {
            node::copy_entries(lb, nl, &r, 0, nr);
            node::set_nr_entries(lb, nl + nr);
        })?;
        drop(r);
        tm.modify(parent, BlockKind::Node, |blk| node::remove_range_at(blk, ri, ri + 1))?;
        // The right copy's children are now the left's: only the block itself goes.
        tm.dec(right)?;
        events::btree(vk.tree(), BtreeEvent::Merge);
        return Ok(());
    }
    let target_left = (nl + nr) / 2;
    if nl > target_left {
        let k = nl - target_left;
        drop(r);
        tm.modify(right, BlockKind::Node, |rb| {
            node::shift_right(rb, k);
            node::copy_entries(rb, 0, &l, target_left, k);
        })?;
        drop(l);
        tm.modify(left, BlockKind::Node, |lb| node::set_nr_entries(lb, target_left))?;
    } else {
        let k = target_left - nl;
        drop(l);
        tm.modify(left, BlockKind::Node, |lb| {
            node::copy_entries(lb, nl, &r, 0, k);
            node::set_nr_entries(lb, target_left);
        })?;
        drop(r);
        tm.modify(right, BlockKind::Node, |rb| node::shift_left(rb, k))?;
    }
    let first = node::key(&*tm.read(right, BlockKind::Node)?, 0);
    if tm.canaries.on(Canary::RedistributeKeepsParentKey) {
        events::btree(vk.tree(), BtreeEvent::Redistribute);
        return Ok(());
    }
    tm.modify(parent, BlockKind::Node, |blk| node::set_key(blk, ri, first))?;
    events::btree(vk.tree(), BtreeEvent::Redistribute);
    Ok(())
}
