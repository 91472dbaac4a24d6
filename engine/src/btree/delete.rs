//! Releasing a whole tree: drop one reference to the root; a node whose count reaches zero
//! releases its children (internal) or its values (leaf) in turn. Shared nodes only lose the
//! one reference, so trees shared with snapshots are untouched below the shared point.

use super::{read_node, ValueKind};
use crate::error::Result;
use crate::format::node;
use crate::format::MetadataBlock;
use crate::limits::MAX_BTREE_DEPTH;
use crate::transaction::TransactionManager;

pub fn delete(tm: &mut TransactionManager, vk: ValueKind, root: MetadataBlock) -> Result<()> {
    delete_rec(tm, vk, root, 0)
}

fn delete_rec(
    tm: &mut TransactionManager,
    vk: ValueKind,
    b: MetadataBlock,
    depth: usize,
) -> Result<()> {
    if depth >= MAX_BTREE_DEPTH {
        return Err(super::depth_error(b));
    }
    if tm.ref_count(b)? > 1 {
        tm.dec(b)?;
        return Ok(());
    }
    // Read before the count drops: a freed block leaves the cache.
    let n = read_node(tm, b, vk)?;
    tm.dec(b)?;
    let count = node::nr_entries(&n);
    if node::is_leaf(&n) {
        for i in 0..count {
            vk.dec(tm, node::value(&n, i))?;
        }
    } else {
        for i in 0..count {
            delete_rec(tm, vk, node::child(&n, i), depth + 1)?;
        }
    }
    Ok(())
}
