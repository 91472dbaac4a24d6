//! Insertion: shadow the path from the root, overwrite or insert at the leaf, and split full
//! nodes on the way back up. A split leaves both halves at least half full, so every
//! non-root node keeps the `max_entries / 3` fill thin_check demands.

use super::{read_node, shadow_node, ValueKind};
use crate::canary::Canary;
use crate::error::Result;
use crate::events::{self, BtreeEvent};
use crate::format::checksum::BlockKind;
use crate::format::node::{self, INTERNAL};
use crate::format::MetadataBlock;
use crate::limits::MAX_BTREE_DEPTH;
use crate::transaction::TransactionManager;

/// The result of inserting below one node: its new location, and a new right sibling
/// (with its first key) when it split.
struct Ins {
    block: MetadataBlock,
    split: Option<(u64, MetadataBlock)>,
    new_key: bool,
    /// Levels from this node down to the leaf, both included.
    levels: u64,
}

/// Stores `value` under `key`. Returns the new root and whether the key is new.
///
/// A new value's reference is the caller's (no `inc`); an overwritten value gets `dec`
/// unless the kind's `equal` says it is the same (a remapping to the same data block).
pub fn insert(
    tm: &mut TransactionManager,
    vk: ValueKind,
    root: MetadataBlock,
    key: u64,
    value: &[u8],
) -> Result<(MetadataBlock, bool)> {
    insert_with(tm, vk, root, key, value, true)
}

/// Stores `value` under `key` without running `dec` on a value it replaces: for parents of
/// nested trees whose child root moved because it was shadowed (the shadow already moved the
/// reference).
pub fn replace(
    tm: &mut TransactionManager,
    vk: ValueKind,
    root: MetadataBlock,
    key: u64,
    value: &[u8],
) -> Result<(MetadataBlock, bool)> {
    insert_with(tm, vk, root, key, value, false)
}

fn insert_with(
    tm: &mut TransactionManager,
    vk: ValueKind,
    root: MetadataBlock,
    key: u64,
    value: &[u8],
    dec_old: bool,
) -> Result<(MetadataBlock, bool)> {
    debug_assert_eq!(value.len(), vk.size());
    let r = insert_rec(tm, vk, root, key, value, dec_old, 0)?;
    let Some((split_key, right)) = r.split else {
        events::height(vk.tree(), r.levels);
        return Ok((r.block, r.new_key));
    };
    let left_first = node::key(&*tm.read(r.block, BlockKind::Node)?, 0);
    events::btree(vk.tree(), BtreeEvent::RootSplit);
    if r.new_key && left_first == key {
        events::btree(vk.tree(), BtreeEvent::RootSplitNewMin);
    }
    events::height(vk.tree(), r.levels + 1);
    let new_root = tm.new_block(BlockKind::Node)?;
    tm.modify(new_root, BlockKind::Node, |b| {
        node::init(b, INTERNAL, 8);
        node::insert_at(b, 0, left_first, &r.block.to_le_bytes());
        node::insert_at(b, 1, split_key, &right.to_le_bytes());
    })?;
    Ok((new_root, r.new_key))
}

fn insert_rec(
    tm: &mut TransactionManager,
    vk: ValueKind,
    b: MetadataBlock,
    key: u64,
    value: &[u8],
    dec_old: bool,
    depth: usize,
) -> Result<Ins> {
    if depth >= MAX_BTREE_DEPTH {
        return Err(super::depth_error(b));
    }
    let b = shadow_node(tm, b, vk)?;
    let n = read_node(tm, b, vk)?;
    if node::is_leaf(&n) {
        let i = node::upper_bound(&n, key);
        if i < node::nr_entries(&n) && node::key(&n, i) == key {
            let old = node::value(&n, i).to_vec();
            drop(n);
            if dec_old && !vk.equal(&old, value) {
                vk.dec(tm, &old)?;
            }
            tm.modify(b, BlockKind::Node, |blk| node::set_value(blk, i, value))?;
            return Ok(Ins { block: b, split: None, new_key: false, levels: 1 });
        }
        drop(n);
        let split = insert_entry(tm, vk, b, i, key, value, depth == 0)?;
        return Ok(Ins { block: b, split, new_key: true, levels: 1 });
    }
    // Below every key: the first child takes it and its lower bound drops to `key`.
    let (i, lowered) = match node::lower_bound(&n, key) {
        Some(i) => (i, false),
        None => (0, true),
    };
    let child = node::child(&n, i);
    drop(n);
    let r = insert_rec(tm, vk, child, key, value, dec_old, depth + 1)?;
    let lowered = lowered && !tm.canaries.on(Canary::NoLowerKeyOnNewMin);
    tm.modify(b, BlockKind::Node, |blk| {
        node::set_value(blk, i, &r.block.to_le_bytes());
        if lowered {
            node::set_key(blk, 0, key);
        }
    })?;
    let split = match r.split {
        None => None,
        Some((k, right)) => insert_entry(tm, vk, b, i + 1, k, &right.to_le_bytes(), depth == 0)?,
    };
    Ok(Ins { block: b, split, new_key: r.new_key, levels: r.levels + 1 })
}

/// Inserts (key, value) at slot `i` of the writable node `b`; a full node is split in two
/// first and the entry goes to whichever half covers slot `i`. A split of the root is
/// counted by the caller, which gives the tree its new root.
fn insert_entry(
    tm: &mut TransactionManager,
    vk: ValueKind,
    b: MetadataBlock,
    i: usize,
    key: u64,
    value: &[u8],
    is_root: bool,
) -> Result<Option<(u64, MetadataBlock)>> {
    let n = tm.read(b, BlockKind::Node)?;
    let count = node::nr_entries(&n);
    if count < node::max_entries_of(&n) {
        drop(n);
        tm.modify(b, BlockKind::Node, |blk| node::insert_at(blk, i, key, value))?;
        return Ok(None);
    }
    if !is_root {
        let e = if node::is_leaf(&n) { BtreeEvent::LeafSplit } else { BtreeEvent::InternalSplit };
        events::btree(vk.tree(), e);
    }
    let left_count = count / 2;
    let right = tm.new_block(BlockKind::Node)?;
    tm.modify(right, BlockKind::Node, |r| {
        node::init(r, node::flags(&n), node::value_size(&n));
        node::copy_entries(r, 0, &n, left_count, count - left_count);
        node::set_nr_entries(r, count - left_count);
    })?;
    drop(n);
    tm.modify(b, BlockKind::Node, |l| node::set_nr_entries(l, left_count))?;
    if i <= left_count {
        tm.modify(b, BlockKind::Node, |l| node::insert_at(l, i, key, value))?;
    } else {
        tm.modify(right, BlockKind::Node, |r| node::insert_at(r, i - left_count, key, value))?;
    }
    let split_key = node::key(&*tm.read(right, BlockKind::Node)?, 0);
    Ok(Some((split_key, right)))
}
