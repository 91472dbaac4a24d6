//! The tools' one tolerant reader of damaged trees: `check` audits with it, `repair` salvages
//! with it, and every quiet side walk (an overflow tree, the data space map's index) uses it.
//!
//! A walk reads nodes only through the format's validators ([`crate::format::node`] and the
//! block manager's checksum and location checks); it uses nothing from `btree/`, so a bug in
//! the engine's trees cannot hide itself from the tools that judge them. The walk knows the
//! format's structure (a node's pointers, its keys, its leaves' depth); what a tree's values
//! mean, and what counts as damage worth reporting, belongs to the [`Visitor`].
//!
//! Invariants:
//! - Every walk ends on any bytes: at most one visit per block per [`Seen`] (a cycle or a
//!   shared subtree is met as a revisit), and no path longer than [`MAX_BTREE_DEPTH`].
//! - A block that fails to read or validate is read once per kind: the [`Reader`] remembers
//!   the failure, so a second pointer to it costs nothing and reports the same error.
//! - A child's key range is its parent's slot intersected with the parent's own range, so a
//!   leaf entry inside its range lies inside every ancestor's.
//! - Callbacks run in a fixed order (depth first, entries in node order): a walk's findings
//!   are deterministic.

use crate::block_manager::BlockManager;
use crate::error::Error;
use crate::format::checksum::BlockKind;
use crate::format::node;
use crate::io::{Block, BlockDevice};
use crate::limits::MAX_BTREE_DEPTH;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The trees a pool's metadata holds, by what their leaves' values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeKind {
    /// Device id → device details (24 bytes).
    Details,
    /// Device id → the root of its mapping tree (a metadata block).
    Top,
    /// Virtual block → packed data block and time (one device's mappings).
    Bottom,
    /// Metadata block → its reference count above 2.
    MetaOverflow,
    /// Bitmap index → the data space map's index entry (16 bytes).
    DataIndex,
    /// Data block → its reference count above 2.
    DataOverflow,
}

impl TreeKind {
    /// The size of a leaf value in bytes (internal nodes always hold 8-byte block numbers).
    pub(crate) const fn value_size(self) -> usize {
        match self {
            TreeKind::Details => 24,
            TreeKind::Top | TreeKind::Bottom => 8,
            TreeKind::MetaOverflow | TreeKind::DataOverflow => 4,
            TreeKind::DataIndex => 16,
        }
    }
}

/// The keys a node may hold: `lo..hi`, `hi` open when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub lo: u64,
    pub hi: Option<u64>,
}

impl KeyRange {
    pub(crate) const ALL: KeyRange = KeyRange { lo: 0, hi: None };

    pub(crate) fn contains(self, key: u64) -> bool {
        key >= self.lo && self.hi.is_none_or(|h| key < h)
    }

    /// The range of the child in slot `lo..next` of a node with this range: the slot
    /// intersected with the node's own range.
    fn child(self, lo: u64, next: Option<u64>) -> KeyRange {
        let hi = match (next, self.hi) {
            (Some(a), Some(h)) => Some(a.min(h)),
            (a, h) => a.or(h),
        };
        KeyRange { lo: lo.max(self.lo), hi }
    }
}

/// Where a node sits: the blocks from its tree's root to its parent, and its key range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'p> {
    pub path: &'p [u64],
    pub range: KeyRange,
}

impl Place<'_> {
    pub(crate) fn is_root(&self) -> bool {
        self.path.is_empty()
    }
}

/// Whether to go on into a node's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Go {
    Enter,
    Skip,
}

/// What a walk tells its owner. Every method has a quiet default.
pub(crate) trait Visitor {
    /// A pointer to `b` is about to be followed (every pointer, also one to a block this walk
    /// has seen): `Skip` ends the branch here.
    fn pointer(&mut self, _b: u64, _at: Place<'_>) -> Go {
        Go::Enter
    }
    /// `b` failed to read or validate as a node.
    fn unreadable(&mut self, _b: u64, _e: &Error, _at: Place<'_>) {}
    /// `b` lies deeper than any real tree can reach.
    fn too_deep(&mut self, _b: u64, _at: Place<'_>) {}
    /// `b` read and validated as a node: judge its shape. `Skip` leaves its entries unread
    /// (a leaf still counts as a leaf for the depth rule).
    fn node(&mut self, _b: u64, _n: &Block, _at: Place<'_>) -> Go {
        Go::Enter
    }
    /// A leaf the visitor entered.
    fn leaf(&mut self, _b: u64, _n: &Block, _at: Place<'_>) {}
    /// After every child of internal node `b` was walked (post-order).
    fn internal_done(&mut self, _b: u64, _n: &Block, _at: Place<'_>) {}
    /// Two children of `parent`'s subtree have leaves at different depths; `child` is the
    /// first whose depth disagrees. `path` runs from the root to `parent`, inclusive.
    fn uneven(&mut self, _child: u64, _path: &[u64]) {}
}

/// The validating block reader the walks share. It remembers each failure (block and kind),
/// so a damaged block is read once however many pointers lead to it.
pub(crate) struct Reader {
    bm: BlockManager,
    failed: BTreeMap<(u64, BlockKind), Error>,
}

impl Reader {
    /// A small cache is enough: a walk reads each block about once (sharing is tracked by
    /// [`Seen`], not the cache), and reusing evicted buffers avoids a page fault per read.
    pub(crate) fn new(dev: Box<dyn BlockDevice>) -> Self {
        Reader { bm: BlockManager::new(dev, 1024), failed: BTreeMap::new() }
    }

    pub(crate) fn nr_blocks(&self) -> u64 {
        self.bm.nr_blocks()
    }

    /// Block `b` validated as `kind`, or the error it failed with (the same error every time).
    pub(crate) fn read(&mut self, b: u64, kind: BlockKind) -> Result<Arc<Block>, Error> {
        if let Some(e) = self.failed.get(&(b, kind)) {
            return Err(e.clone());
        }
        self.bm.read(b, kind).inspect_err(|e| {
            self.failed.insert((b, kind), e.clone());
        })
    }

    /// Like [`Reader::read`], without remembering a failure: for a scan that tries every
    /// block and expects most not to be nodes.
    pub(crate) fn probe(&self, b: u64, kind: BlockKind) -> Option<Arc<Block>> {
        self.bm.read(b, kind).ok()
    }

    /// Block `b`'s bytes, unvalidated (the superblock, before it is judged).
    pub(crate) fn read_raw(&self, b: u64) -> Result<Block, Error> {
        self.bm.read_raw(b)
    }

    /// The first leaf under `b`, following first children, if every node on the way reads.
    pub(crate) fn first_leaf(&self, b: u64) -> Option<u64> {
        let mut b = b;
        for _ in 0..MAX_BTREE_DEPTH {
            let n = self.probe(b, BlockKind::Node)?;
            if node::is_leaf(&n) {
                return Some(b);
            }
            if node::nr_entries(&n) == 0 {
                return None;
            }
            b = node::value_u64(&n, 0);
        }
        None
    }
}

/// The blocks a walk (or a series of walks) has entered, with the depth of the leaves below
/// each. Walks that share a `Seen` enter a shared subtree once: `check` shares one over the
/// whole image (each distinct node is audited once, as reference counts demand); `repair`
/// takes a fresh one per device (each device needs every mapping under its root).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    entered: BTreeSet<u64>,
    /// Height above its leaves of each entered node whose subtree is even.
    heights: BTreeMap<u64, usize>,
}

/// Walks the tree under `root`, depth first. Returns the depth of its leaves below `root`
/// (0: `root` is a leaf), or `None` when that is unknown: the branch ended in damage, or
/// leaves lie at different depths.
pub(crate) fn walk(
    reader: &mut Reader,
    seen: &mut Seen,
    root: u64,
    range: KeyRange,
    v: &mut dyn Visitor,
) -> Option<usize> {
    walk_from(reader, seen, root, &mut Vec::new(), range, v)
}

fn walk_from(
    reader: &mut Reader,
    seen: &mut Seen,
    b: u64,
    path: &mut Vec<u64>,
    range: KeyRange,
    v: &mut dyn Visitor,
) -> Option<usize> {
    let at = Place { path, range };
    if v.pointer(b, at) == Go::Skip {
        return None;
    }
    if !seen.entered.insert(b) {
        return seen.heights.get(&b).copied();
    }
    if path.len() >= MAX_BTREE_DEPTH {
        v.too_deep(b, at);
        return None;
    }
    let n = match reader.read(b, BlockKind::Node) {
        Ok(n) => n,
        Err(e) => {
            v.unreadable(b, &e, at);
            return None;
        }
    };
    let go = v.node(b, &n, at);
    if node::is_leaf(&n) {
        if go == Go::Enter {
            v.leaf(b, &n, at);
        }
        seen.heights.insert(b, 0);
        return Some(0);
    }
    if go == Go::Skip {
        return None;
    }
    let count = node::nr_entries(&n);
    path.push(b);
    let mut depth = None;
    for i in 0..count {
        let next = if i + 1 < count { Some(node::key(&n, i + 1)) } else { None };
        let child = node::value_u64(&n, i);
        let child_range = range.child(node::key(&n, i), next);
        match (depth, walk_from(reader, seen, child, path, child_range, v)) {
            (None, Some(d)) => depth = Some(d),
            (Some(a), Some(d)) if a != d => v.uneven(child, path),
            _ => {}
        }
    }
    path.pop();
    v.internal_done(b, &n, Place { path, range });
    let depth = depth.map(|d| d + 1);
    if let Some(d) = depth {
        seen.heights.insert(b, d);
    }
    depth
}

/// Visits every leaf entry (key, value bytes) of the tree under `root` whose leaf holds
/// `kind`'s values, quietly: damage ends its branch without a word (the audit that needs to
/// report it walks the same tree with its own visitor).
pub(crate) fn for_each_leaf_entry(
    reader: &mut Reader,
    root: u64,
    kind: TreeKind,
    f: &mut dyn FnMut(u64, &[u8]),
) {
    struct Entries<'f> {
        kind: TreeKind,
        f: &'f mut dyn FnMut(u64, &[u8]),
    }
    impl Visitor for Entries<'_> {
        fn node(&mut self, _b: u64, n: &Block, _at: Place<'_>) -> Go {
            let fits = !node::is_leaf(n) || node::value_size(n) == self.kind.value_size();
            if fits {
                Go::Enter
            } else {
                Go::Skip
            }
        }
        fn leaf(&mut self, _b: u64, n: &Block, _at: Place<'_>) {
            for i in 0..node::nr_entries(n) {
                (self.f)(node::key(n, i), node::value(n, i));
            }
        }
    }
    walk(reader, &mut Seen::default(), root, KeyRange::ALL, &mut Entries { kind, f });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::checksum;
    use crate::io::{IoError, MemoryDevice};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A device that counts the reads of each block.
    struct Counting {
        inner: MemoryDevice,
        reads: Arc<Vec<AtomicU64>>,
    }

    impl BlockDevice for Counting {
        fn nr_blocks(&self) -> u64 {
            self.inner.nr_blocks()
        }
        fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
            self.reads[block as usize].fetch_add(1, Ordering::Relaxed);
            self.inner.read(block, buf)
        }
        fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
            self.inner.write(block, buf)
        }
        fn flush(&mut self) -> Result<(), IoError> {
            Ok(())
        }
    }

    /// Writes a sealed node at `b`: a leaf of 8-byte values (`children` empty) with `keys`,
    /// or an internal node pointing at `children`.
    fn put_node(dev: &mut MemoryDevice, b: u64, keys: &[u64], children: &[u64]) {
        let blk = dev.block_mut(b);
        let leaf = children.is_empty();
        node::init(blk, if leaf { node::LEAF } else { node::INTERNAL }, 8);
        node::set_nr_entries(blk, keys.len());
        for (i, &k) in keys.iter().enumerate() {
            node::set_key(blk, i, k);
            let v = if leaf { k * 100 } else { children[i] };
            node::set_value(blk, i, &v.to_le_bytes());
        }
        checksum::seal(blk, BlockKind::Node, b);
    }

    /// Records what a walk tells its visitor, in order.
    #[derive(Default)]
    struct Log {
        events: Vec<String>,
    }

    impl Visitor for Log {
        fn unreadable(&mut self, b: u64, _e: &Error, at: Place<'_>) {
            self.events.push(format!("unreadable {b} path {:?}", at.path));
        }
        fn too_deep(&mut self, b: u64, _at: Place<'_>) {
            self.events.push(format!("too deep {b}"));
        }
        fn leaf(&mut self, b: u64, _n: &Block, at: Place<'_>) {
            self.events.push(format!("leaf {b} range {}..{:?}", at.range.lo, at.range.hi));
        }
        fn internal_done(&mut self, b: u64, _n: &Block, _at: Place<'_>) {
            self.events.push(format!("done {b}"));
        }
        fn uneven(&mut self, child: u64, path: &[u64]) {
            self.events.push(format!("uneven {child} path {path:?}"));
        }
    }

    fn reader(dev: MemoryDevice) -> (Reader, Arc<Vec<AtomicU64>>) {
        let reads: Arc<Vec<AtomicU64>> =
            Arc::new((0..dev.nr_blocks()).map(|_| AtomicU64::new(0)).collect());
        (Reader::new(Box::new(Counting { inner: dev, reads: reads.clone() })), reads)
    }

    #[test]
    fn a_child_range_is_the_slot_inside_the_parents_range() {
        let parent = KeyRange { lo: 10, hi: Some(100) };
        assert_eq!(parent.child(5, Some(50)), KeyRange { lo: 10, hi: Some(50) });
        assert_eq!(parent.child(20, Some(200)), KeyRange { lo: 20, hi: Some(100) });
        assert_eq!(parent.child(20, None), KeyRange { lo: 20, hi: Some(100) });
        assert_eq!(KeyRange::ALL.child(7, None), KeyRange { lo: 7, hi: None });
        assert!(parent.contains(10) && parent.contains(99));
        assert!(!parent.contains(9) && !parent.contains(100));
    }

    #[test]
    fn a_walk_gives_each_leaf_its_range_and_reports_uneven_depths() {
        let mut dev = MemoryDevice::new(8);
        // 1 → [2 (leaf), 3 → [4 (leaf)]]: leaves at depths 1 and 2.
        put_node(&mut dev, 1, &[0, 50], &[2, 3]);
        put_node(&mut dev, 2, &[1, 2], &[]);
        put_node(&mut dev, 3, &[50], &[4]);
        put_node(&mut dev, 4, &[60], &[]);
        let (mut r, _) = reader(dev);
        let mut log = Log::default();
        let depth = walk(&mut r, &mut Seen::default(), 1, KeyRange::ALL, &mut log);
        assert_eq!(depth, Some(1), "the first child's depth stands");
        assert_eq!(
            log.events,
            [
                "leaf 2 range 0..Some(50)",
                "leaf 4 range 50..None",
                "done 3",
                "uneven 3 path [1]",
                "done 1"
            ]
        );
    }

    #[test]
    fn a_cycle_ends_as_a_revisit_and_a_shared_subtree_is_entered_once() {
        let mut dev = MemoryDevice::new(8);
        // 1 → [2, 3]; 2 → [1] (a cycle back to the root); 3 → [4]; 4 is a leaf.
        put_node(&mut dev, 1, &[0, 10], &[2, 3]);
        put_node(&mut dev, 2, &[0], &[1]);
        put_node(&mut dev, 3, &[10], &[4]);
        put_node(&mut dev, 4, &[10, 11], &[]);
        let (mut r, reads) = reader(dev);
        let mut seen = Seen::default();
        let mut log = Log::default();
        walk(&mut r, &mut seen, 1, KeyRange::ALL, &mut log);
        // Walking 3 again with the same `Seen` is a revisit: no event, its height known.
        let again = walk(&mut r, &mut seen, 3, KeyRange::ALL, &mut log);
        assert_eq!(again, Some(1));
        assert_eq!(log.events, ["done 2", "leaf 4 range 10..None", "done 3", "done 1"]);
        assert!(reads.iter().all(|n| n.load(Ordering::Relaxed) <= 1), "each block read once");
    }

    #[test]
    fn a_failed_block_is_read_once_however_many_walks_meet_it() {
        let mut dev = MemoryDevice::new(8);
        put_node(&mut dev, 1, &[0, 10], &[5, 2]);
        put_node(&mut dev, 2, &[10], &[]);
        dev.block_mut(5)[100] = 1; // block 5 was never sealed: it fails validation
        let (mut r, reads) = reader(dev);
        for _ in 0..3 {
            let mut log = Log::default();
            walk(&mut r, &mut Seen::default(), 1, KeyRange::ALL, &mut log);
            assert_eq!(log.events, ["unreadable 5 path [1]", "leaf 2 range 10..None", "done 1"]);
        }
        assert_eq!(reads[5].load(Ordering::Relaxed), 1, "the failure is remembered");
    }

    #[test]
    fn a_path_past_the_depth_bound_ends() {
        let n = MAX_BTREE_DEPTH as u64 + 2;
        let mut dev = MemoryDevice::new(n + 2);
        // A chain of distinct internal nodes 1 → 2 → … → n, longer than any real tree.
        for b in 1..n {
            put_node(&mut dev, b, &[0], &[b + 1]);
        }
        put_node(&mut dev, n, &[0], &[]);
        let (mut r, _) = reader(dev);
        let mut log = Log::default();
        assert_eq!(walk(&mut r, &mut Seen::default(), 1, KeyRange::ALL, &mut log), None);
        let deep = MAX_BTREE_DEPTH as u64 + 1;
        assert_eq!(
            log.events.first().map(String::as_str),
            Some(format!("too deep {deep}").as_str())
        );
    }
}
