//! Ordered traversal of a tree's leaves, and of its nodes (for checkers and dumps).
//! Depth-bounded so a corrupt tree ends in an error.

use super::{read_node, ValueKind};
use crate::error::Result;
use crate::format::node;
use crate::format::MetadataBlock;
use crate::io::Block;
use crate::limits::MAX_BTREE_DEPTH;
use crate::transaction::TransactionManager;

/// Calls `f(key, value)` for every entry in ascending key order.
pub fn walk(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    walk_nodes(tm, root, vk, &mut |_, _, n| {
        if node::is_leaf(n) {
            for i in 0..node::nr_entries(n) {
                f(node::key(n, i), node::value(n, i))?;
            }
        }
        Ok(())
    })
}

/// Calls `f(block, depth, node)` for every node, parents before children, left to right.
pub fn walk_nodes(
    tm: &TransactionManager,
    root: MetadataBlock,
    vk: ValueKind,
    f: &mut dyn FnMut(MetadataBlock, usize, &Block) -> Result<()>,
) -> Result<()> {
    walk_rec(tm, root, vk, 0, f)
}

fn walk_rec(
    tm: &TransactionManager,
    b: MetadataBlock,
    vk: ValueKind,
    depth: usize,
    f: &mut dyn FnMut(MetadataBlock, usize, &Block) -> Result<()>,
) -> Result<()> {
    if depth >= MAX_BTREE_DEPTH {
        return Err(super::depth_error(b));
    }
    let n = read_node(tm, b, vk)?;
    f(b, depth, &n)?;
    if !node::is_leaf(&n) {
        for i in 0..node::nr_entries(&n) {
            walk_rec(tm, node::child(&n, i), vk, depth + 1, f).map_err(|e| e.via(b.0))?;
        }
    }
    Ok(())
}
