//! Persistent btrees with functional roots: every mutation takes a root and returns the new
//! one; the old root stays valid (and unchanged on disk) until the transaction commits.
//!
//! Values are fixed-size byte strings known to the tree only through [`ValueType`]'s hooks:
//! `inc` when a shared leaf is copied, `dec` when a value is overwritten, removed or its leaf
//! released, `equal` to decide whether an overwrite changes references. Nested trees (the
//! two-level mapping tree) are trees whose values are the roots of other trees.
//!
//! Invariants of every tree written here (what thin_check demands):
//! - keys strictly increase within a node; an internal key is ≤ every key of its child and
//!   > every key of the previous child;
//! - every non-root node holds at least `max_entries / 3` entries; roots may hold any number;
//! - all leaves are at the same depth; an empty tree is one empty leaf;
//! - internal nodes have value size 8 and max 252; leaves have the tree's value size.
//!
//! Reads of untrusted trees are bounded by `MAX_BTREE_DEPTH` and check value sizes, so a
//! corrupt or cyclic tree is an error, never a hang.

mod build;
mod delete;
mod insert;
mod remove;
mod walk;

pub use build::build;
pub use delete::delete;
pub use insert::{insert, replace};
pub use remove::{remove, remove_range};
pub use walk::walk;

use crate::canary::Canary;
use crate::error::{Error, Result};
use crate::events::{self, BtreeEvent, Tree};
use crate::format::checksum::BlockKind;
use crate::format::node::{self, INTERNAL, LEAF};
use crate::format::MetadataBlock;
use crate::io::Block;
use crate::limits::MAX_BTREE_DEPTH;
use crate::transaction::TransactionManager;
use std::sync::Arc;

/// What a tree's values are and what their references mean: the kernel's
/// `dm_btree_value_type`. The btree calls the hooks and knows nothing else of the bytes;
/// each value type is implemented where its values live (thin's mappings and subtree roots
/// in `thin::values`, plain values here).
pub trait ValueType {
    /// Bytes per value in a leaf.
    fn size(&self) -> usize;
    /// Which of the pool's trees holds these values (for structural counts).
    fn tree(&self) -> Tree;
    /// A shared leaf was copied: each of its values gains a reference.
    fn inc(&self, _tm: &mut TransactionManager, _value: &[u8]) -> Result<()> {
        Ok(())
    }
    /// A value was overwritten or removed, or the last reference to its leaf went.
    fn dec(&self, _tm: &mut TransactionManager, _value: &[u8]) -> Result<()> {
        Ok(())
    }
    /// Whether overwriting `a` by `b` leaves every reference as it was.
    fn equal(&self, a: &[u8], b: &[u8]) -> bool {
        a == b
    }
}

/// How the btree functions take a value type (a reference: `Copy`, cheap to pass down).
pub type ValueKind<'a> = &'a dyn ValueType;

/// Values that hold no references (details, space-map index entries, overflow counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plain {
    pub size: usize,
    pub tree: Tree,
}

impl ValueType for Plain {
    fn size(&self) -> usize {
        self.size
    }
    fn tree(&self) -> Tree {
        self.tree
    }
}

pub(crate) fn le(v: &[u8]) -> u64 {
    u64::from_le_bytes(v[..8].try_into().expect("8-byte value"))
}

/// Reads a node and checks it belongs to a tree of `vk` values.
pub(crate) fn read_node(
    tm: &TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
) -> Result<Arc<Block>> {
    let n = tm.read(b, BlockKind::Node)?;
    check_value_size(&n, b, vk)?;
    Ok(n)
}

fn check_value_size(n: &Block, b: MetadataBlock, vk: ValueKind) -> Result<()> {
    let want = if node::is_leaf(n) { vk.size() } else { 8 };
    if node::value_size(n) != want {
        return Err(Error::structure(
            b,
            format!("node value size {} where the tree needs {want}", node::value_size(n)),
        ));
    }
    if node::max_entries_of(n) != node::max_entries(want) as usize {
        return Err(Error::structure(
            b,
            format!(
                "max_entries {} where value size {want} needs {}",
                node::max_entries_of(n),
                node::max_entries(want)
            ),
        ));
    }
    Ok(())
}

fn depth_error(b: MetadataBlock) -> Error {
    Error::structure(b, format!("btree deeper than {MAX_BTREE_DEPTH} levels (cycle?)"))
}

/// Creates an empty tree (one empty leaf) and returns its root.
pub fn empty(tm: &mut TransactionManager, vk: ValueKind) -> Result<MetadataBlock> {
    let b = tm.new_block(BlockKind::Node)?;
    tm.modify(b, BlockKind::Node, |blk| node::init(blk, LEAF, vk.size()))?;
    Ok(b)
}

/// How a read may get its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Read from the device when needed.
    Blocking,
    /// Cache only: an uncached block is `WouldBlock`.
    CacheOnly,
}

fn read_mode(
    tm: &TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
    mode: ReadMode,
) -> Result<Arc<Block>> {
    match mode {
        ReadMode::Blocking => read_node(tm, b, vk),
        ReadMode::CacheOnly => {
            let n = tm.try_read(b, BlockKind::Node)?;
            check_value_size(&n, b, vk)?;
            Ok(n)
        }
    }
}

/// The value stored under `key`, if any.
pub fn lookup(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    key: u64,
    mode: ReadMode,
) -> Result<Option<Vec<u8>>> {
    let mut b = root;
    for _ in 0..MAX_BTREE_DEPTH {
        let n = read_mode(tm, b, vk, mode)?;
        let Some(i) = node::lower_bound(&n, key) else { return Ok(None) };
        if node::is_leaf(&n) {
            return Ok((node::key(&n, i) == key).then(|| node::value(&n, i).to_vec()));
        }
        b = node::child(&n, i);
    }
    Err(depth_error(root))
}

/// The 8-byte value under `key` as a u64 (mapping and top-level trees), without allocating.
pub fn lookup_u64(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    key: u64,
    mode: ReadMode,
) -> Result<Option<u64>> {
    debug_assert_eq!(vk.size(), 8);
    let mut b = root;
    for _ in 0..MAX_BTREE_DEPTH {
        let n = read_mode(tm, b, vk, mode)?;
        let Some(i) = node::lower_bound(&n, key) else { return Ok(None) };
        if node::is_leaf(&n) {
            return Ok((node::key(&n, i) == key).then(|| node::value_u64(&n, i)));
        }
        b = node::child(&n, i);
    }
    Err(depth_error(root))
}

/// [`lookup_u64`] of many keys in one descent: each node on the way is read once, and every
/// key takes the path `lookup_u64` would take, so the answers are the same (`out[i]` for
/// `keys[i]`). Keys sorted ascending keep each node's keys together; other orders are still
/// answered correctly, only with more node reads.
pub fn lookup_many_u64(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    keys: &[u64],
    mode: ReadMode,
) -> Result<Vec<Option<u64>>> {
    debug_assert_eq!(vk.size(), 8);
    let mut out = vec![None; keys.len()];
    lookup_many_rec(tm, root, vk, keys, &mut out, mode, 0)?;
    Ok(out)
}

fn lookup_many_rec(
    tm: &TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
    keys: &[u64],
    out: &mut [Option<u64>],
    mode: ReadMode,
    depth: usize,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    if depth >= MAX_BTREE_DEPTH {
        return Err(depth_error(b));
    }
    let n = read_mode(tm, b, vk, mode)?;
    let leaf = node::is_leaf(&n);
    let mut start = 0;
    while start < keys.len() {
        let slot = node::lower_bound(&n, keys[start]);
        // The run of keys that go the same way from this node.
        let end =
            start + keys[start..].iter().take_while(|&&k| node::lower_bound(&n, k) == slot).count();
        match slot {
            None => {} // below the node's first key: absent
            Some(i) if leaf => {
                for (k, o) in keys[start..end].iter().zip(&mut out[start..end]) {
                    *o = (node::key(&n, i) == *k).then(|| node::value_u64(&n, i));
                }
            }
            Some(i) => {
                let child = node::child(&n, i);
                lookup_many_rec(
                    tm,
                    child,
                    vk,
                    &keys[start..end],
                    &mut out[start..end],
                    mode,
                    depth + 1,
                )?;
            }
        }
        start = end;
    }
    Ok(())
}

/// The first entry with key ≥ `key` ("lookup next").
pub fn lookup_ge(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    key: u64,
) -> Result<Option<(u64, Vec<u8>)>> {
    lookup_ge_rec(tm, root, vk, key, 0)
}

fn lookup_ge_rec(
    tm: &TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
    key: u64,
    depth: usize,
) -> Result<Option<(u64, Vec<u8>)>> {
    if depth >= MAX_BTREE_DEPTH {
        return Err(depth_error(b));
    }
    let n = read_node(tm, b, vk)?;
    let count = node::nr_entries(&n);
    if node::is_leaf(&n) {
        let i = node::upper_bound(&n, key);
        return Ok((i < count).then(|| (node::key(&n, i), node::value(&n, i).to_vec())));
    }
    let start = match node::lower_bound(&n, key) {
        Some(i) => i,
        None => {
            events::btree(vk.tree(), BtreeEvent::LookupNextBelowFirst);
            0
        }
    };
    for i in start..count {
        if let Some(found) = lookup_ge_rec(tm, node::child(&n, i), vk, key, depth + 1)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The highest key in the tree, if any.
pub fn highest_key(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
) -> Result<Option<u64>> {
    let mut b = root;
    for _ in 0..MAX_BTREE_DEPTH {
        let n = read_node(tm, b, vk)?;
        let count = node::nr_entries(&n);
        if count == 0 {
            return Ok(None);
        }
        if node::is_leaf(&n) {
            return Ok(Some(node::key(&n, count - 1)));
        }
        b = node::child(&n, count - 1);
    }
    Err(depth_error(root))
}

/// After shadowing a shared node, the copy holds new references to everything it names.
pub(crate) fn inc_children(
    tm: &mut TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
) -> Result<()> {
    let n = tm.read(b, BlockKind::Node)?;
    let count = node::nr_entries(&n);
    if node::flags(&n) == INTERNAL {
        for i in 0..count {
            tm.inc(node::child(&n, i))?;
        }
    } else {
        for i in 0..count {
            vk.inc(tm, node::value(&n, i))?;
        }
    }
    Ok(())
}

/// Shadows `b` and, if it was shared, increments what the copy points to.
pub(crate) fn shadow_node(
    tm: &mut TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
) -> Result<MetadataBlock> {
    shadow_node_shared(tm, b, vk).map(|(copy, _)| copy)
}

/// [`shadow_node`], also telling whether the node was shared.
pub(crate) fn shadow_node_shared(
    tm: &mut TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
) -> Result<(MetadataBlock, bool)> {
    let leaf = node::is_leaf(&*read_node(tm, b, vk)?);
    let (copy, shared) = tm.shadow(b, BlockKind::Node)?;
    if shared {
        let e = if leaf { BtreeEvent::ShadowSharedLeaf } else { BtreeEvent::ShadowSharedInternal };
        events::btree(vk.tree(), e);
    }
    if tm.canaries.on(Canary::NoIncOnSharedShadow) {
        return Ok((copy, shared));
    }
    if shared {
        inc_children(tm, copy, vk)?;
    }
    Ok((copy, shared))
}
