//! The values of thin's two-level mapping tree, with the reference hooks the btree calls.
//!
//! - A leaf of a device's tree holds a packed `block_time`; each holds one reference to a
//!   data block. The data space map is itself kept in metadata btrees, so a hook cannot
//!   change it in the middle of a btree operation: [`Mappings`] queues the changes and the
//!   pool applies them once the operation returns (`PoolInner::apply_data_ops`).
//! - A leaf of the top-level tree holds the root of a device's tree; each holds one
//!   reference to that metadata block, and dropping the last deletes the subtree.
//!
//! Invariant: the queue is empty between pool calls (asserted by `Pool::mutate`) and after
//! a reload (which drops what a failed operation left).

use crate::btree::{self, le, ValueType};
use crate::error::Result;
use crate::events::Tree;
use crate::format::{BlockTime, MetadataBlock};
use crate::transaction::TransactionManager;
use std::sync::Mutex;

/// A queued change to a data block's reference count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataRefOp {
    Inc(u64),
    Dec(u64),
}

/// Mapping values (`block_time`). The queue's lock is only ever taken under the pool's
/// write lock, so it never waits; it is there so the pool stays `Sync`.
#[derive(Debug, Default)]
pub(crate) struct Mappings {
    queued: Mutex<Vec<DataRefOp>>,
}

impl Mappings {
    fn queue(&self, op: DataRefOp) {
        self.queued.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// The queued changes, in the order the hooks made them; the queue is left empty.
    pub(crate) fn take_queued(&self) -> Vec<DataRefOp> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn nothing_queued(&self) -> bool {
        self.queued.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

fn data_block(v: &[u8]) -> u64 {
    BlockTime::unpack(le(v)).data_block.0
}

impl ValueType for Mappings {
    fn size(&self) -> usize {
        8
    }
    fn tree(&self) -> Tree {
        Tree::Mapping
    }
    fn inc(&self, _tm: &mut TransactionManager, v: &[u8]) -> Result<()> {
        self.queue(DataRefOp::Inc(data_block(v)));
        Ok(())
    }
    fn dec(&self, _tm: &mut TransactionManager, v: &[u8]) -> Result<()> {
        self.queue(DataRefOp::Dec(data_block(v)));
        Ok(())
    }
    /// The kernel's rule: mappings are equal when they name the same data block (a new
    /// time alone changes no reference).
    fn equal(&self, a: &[u8], b: &[u8]) -> bool {
        data_block(a) == data_block(b)
    }
}

/// Top-level values: roots of device trees, whose leaves are [`Mappings`].
#[derive(Debug, Default)]
pub(crate) struct SubtreeRoots {
    pub(crate) mappings: Mappings,
}

impl ValueType for SubtreeRoots {
    fn size(&self) -> usize {
        8
    }
    fn tree(&self) -> Tree {
        Tree::Top
    }
    fn inc(&self, tm: &mut TransactionManager, v: &[u8]) -> Result<()> {
        tm.inc(MetadataBlock(le(v))).map(drop)
    }
    fn dec(&self, tm: &mut TransactionManager, v: &[u8]) -> Result<()> {
        btree::delete(tm, &self.mappings, MetadataBlock(le(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{DataBlock, Time};

    #[test]
    fn mappings_compare_by_data_block_and_queue_in_order() {
        let m = Mappings::default();
        let a = BlockTime { data_block: DataBlock(7), time: Time(1) }
            .pack()
            .expect("in range")
            .to_le_bytes();
        let b = BlockTime { data_block: DataBlock(7), time: Time(2) }
            .pack()
            .expect("in range")
            .to_le_bytes();
        let c = BlockTime { data_block: DataBlock(8), time: Time(1) }
            .pack()
            .expect("in range")
            .to_le_bytes();
        assert!(m.equal(&a, &b) && !m.equal(&a, &c));
        assert!(m.nothing_queued());
        m.queue(DataRefOp::Inc(7));
        m.queue(DataRefOp::Dec(8));
        assert_eq!(m.take_queued(), vec![DataRefOp::Inc(7), DataRefOp::Dec(8)]);
        assert!(m.nothing_queued());
    }
}
