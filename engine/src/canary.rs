//! Deliberately broken behaviours, compiled only with the `canary` feature, so the simulator
//! can prove it catches each class of bug. Never enabled in release builds (`.ci/run` checks).
//!
//! Each flag breaks exactly one rule the engine otherwise keeps.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Canary {
    /// Write the superblock before the other dirty blocks are written and flushed.
    pub superblock_before_nodes: bool,
    /// Skip the flush between the body of a commit and its superblock.
    pub no_flush_before_superblock: bool,
    /// Allocate blocks freed in this transaction (ignore the committed view).
    pub reuse_freed_in_transaction: bool,
    /// Do not increment children when shadowing a shared node.
    pub no_inc_on_shared_shadow: bool,
    /// Abort keeps the in-core device records instead of reloading them.
    pub abort_keeps_records: bool,
    /// remove_block / remove_range skip the data-block decrement.
    pub skip_data_dec_on_remove: bool,
    /// An insert below an internal node's first key does not lower that key (the child's
    /// new minimum is then unreachable): needs trees of two levels or more.
    pub no_lower_key_on_new_min: bool,
    /// A redistribution between two siblings leaves the parent's key for the right one
    /// unchanged (lookups near the boundary go to the wrong child).
    pub redistribute_keeps_parent_key: bool,
}
