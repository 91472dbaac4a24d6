//! The audit's tree walks: every node's shape, the devices (details against mapping trees),
//! every mapping, and the held snapshot's trees.
//!
//! Invariants: each distinct node is audited once (the checker's one [`Seen`] spans every
//! tree of the image, so a subtree a snapshot shares is met as a revisit), and every pointer
//! to it is counted as a metadata reference; a leaf's values are read only when its value
//! size is its tree's (a wrong one is a finding, its bytes mean nothing).

use super::{Audit, Checker, FindingKind};
use crate::format::checksum::BlockKind;
use crate::format::node;
use crate::format::superblock::Superblock;
use crate::format::{BlockTime, DeviceDetails};
use crate::io::Block;
use crate::tools::tolerant::{self, Go, KeyRange, Place, TreeKind, Visitor};
use std::collections::BTreeMap;

/// Called once per distinct leaf whose value size fits its tree.
type LeafAudit<'a> = dyn FnMut(&mut Audit, u64, &Block, Place<'_>) + 'a;

/// The audit's visitor for one tree: counts pointers, judges shapes, hands leaves on.
struct TreeAudit<'a, 'l> {
    audit: &'a mut Audit,
    tree: TreeKind,
    leaf: &'a mut LeafAudit<'l>,
}

impl Visitor for TreeAudit<'_, '_> {
    fn pointer(&mut self, b: u64, at: Place<'_>) -> Go {
        if self.audit.count(b, at.path) {
            Go::Enter
        } else {
            Go::Skip
        }
    }

    fn unreadable(&mut self, b: u64, e: &crate::error::Error, at: Place<'_>) {
        self.audit.unreadable(b, BlockKind::Node, e, at.path);
    }

    fn too_deep(&mut self, b: u64, at: Place<'_>) {
        let what = "tree too deep (cycle?)".into();
        self.audit.error(FindingKind::TreeShape, Some(b), at.path, what);
    }

    fn node(&mut self, b: u64, n: &Block, at: Place<'_>) -> Go {
        self.audit.check_node_shape(b, n, self.tree, at);
        // A leaf with the wrong value size was reported above; its values mean nothing.
        let fits = !node::is_leaf(n) || node::value_size(n) == self.tree.value_size();
        if fits {
            Go::Enter
        } else {
            Go::Skip
        }
    }

    fn leaf(&mut self, b: u64, n: &Block, at: Place<'_>) {
        (self.leaf)(self.audit, b, n, at);
    }

    fn internal_done(&mut self, b: u64, n: &Block, _at: Place<'_>) {
        if self.tree == TreeKind::Bottom {
            let below = &self.audit.entries_below;
            let total = (0..node::nr_entries(n))
                .map(|i| below.get(&node::value_u64(n, i)).copied().unwrap_or(0))
                .sum();
            self.audit.entries_below.insert(b, total);
        }
    }

    fn uneven(&mut self, child: u64, path: &[u64]) {
        let what = "leaves at different depths".into();
        self.audit.error(FindingKind::TreeShape, Some(child), path, what);
    }
}

impl Audit {
    fn check_node_shape(&mut self, b: u64, n: &Block, tree: TreeKind, at: Place<'_>) {
        let vs = if node::is_leaf(n) { tree.value_size() } else { 8 };
        let mut bad = |what: String| self.error(FindingKind::TreeShape, Some(b), at.path, what);
        if node::value_size(n) != vs {
            bad(format!("value size {} in a {tree:?} node (want {vs})", node::value_size(n)));
        }
        let max = node::max_entries_of(n);
        if max != node::max_entries(vs) as usize {
            bad(format!("max_entries {max} (want {})", node::max_entries(vs)));
        }
        let count = node::nr_entries(n);
        if !at.is_root() && count < max / 3 {
            bad(format!("too few entries: {count} of {max}"));
        }
        if count > 0 {
            let (first, last) = (node::key(n, 0), node::key(n, count - 1));
            let KeyRange { lo, hi } = at.range;
            if first < lo || hi.is_some_and(|hi| last >= hi) {
                bad(format!("keys {first}..={last} outside the parent's range ({lo}, {hi:?})"));
            }
        }
    }
}

impl Checker {
    /// Walks one tree from `root`, auditing every node not audited yet; `leaf` sees each
    /// distinct leaf that fits the tree. Returns the depth of its leaves (None: broken).
    pub(super) fn walk_tree(
        &mut self,
        root: u64,
        tree: TreeKind,
        leaf: &mut LeafAudit<'_>,
    ) -> Option<usize> {
        let mut v = TreeAudit { audit: &mut self.audit, tree, leaf };
        tolerant::walk(&mut self.reader, &mut self.seen, root, KeyRange::ALL, &mut v)
    }

    /// Live trees (or a held snapshot's): details and the two-level mapping tree. Returns
    /// (devices, mappings).
    pub(super) fn walk_pool(&mut self, details_root: u64, mapping_root: u64) -> (u64, u64) {
        let details = self.collect_details(details_root);
        let tops = self.collect_top(mapping_root);
        let a = &mut self.audit;
        for id in details.keys().filter(|id| !tops.contains_key(id)) {
            let what = format!("device {id} has details but no mapping tree");
            a.error(FindingKind::DeviceDetails, None, &[], what);
        }
        let mut mappings = 0;
        for (&id, &root) in &tops {
            let Some(d) = details.get(&id) else {
                let what = format!("device {id} has a mapping tree but no details");
                a.error(FindingKind::DeviceDetails, Some(root), &[], what);
                continue;
            };
            let n = a.entries_below.get(&root).copied().unwrap_or(0);
            mappings += n;
            if d.mapped_blocks != n && !a.skip_mappings {
                let what =
                    format!("device {id}: mapped_blocks {} but {n} mappings", d.mapped_blocks);
                a.error(FindingKind::DeviceDetails, None, &[], what);
            }
            if d.creation_time > d.snapshotted_time || d.snapshotted_time > a.sb_time {
                let what = format!(
                    "device {id}: times {} / {} / pool {}",
                    d.creation_time, d.snapshotted_time, a.sb_time
                );
                a.error(FindingKind::DeviceDetails, None, &[], what);
            }
        }
        (tops.len() as u64, mappings)
    }

    fn collect_details(&mut self, root: u64) -> BTreeMap<u64, DeviceDetails> {
        let mut out = BTreeMap::new();
        self.walk_tree(root, TreeKind::Details, &mut |_, _, n, _| {
            for i in 0..node::nr_entries(n) {
                out.insert(node::key(n, i), DeviceDetails::unpack(node::value(n, i)));
            }
        });
        out
    }

    /// Walks the top level and every bottom tree under it; returns device → bottom root.
    fn collect_top(&mut self, root: u64) -> BTreeMap<u64, u64> {
        let mut tops = BTreeMap::new();
        self.walk_tree(root, TreeKind::Top, &mut |_, _, n, _| {
            for i in 0..node::nr_entries(n) {
                tops.insert(node::key(n, i), node::value_u64(n, i));
            }
        });
        if !self.audit.skip_mappings {
            for (&id, &b) in &tops {
                self.walk_bottom(id, b);
            }
        }
        tops
    }

    fn walk_bottom(&mut self, id: u64, root: u64) {
        self.walk_tree(root, TreeKind::Bottom, &mut |a, b, n, at| {
            let count = node::nr_entries(n);
            a.entries_below.insert(b, count as u64);
            for i in 0..count {
                let bt = BlockTime::unpack(node::value_u64(n, i));
                if bt.data_block.0 >= a.data_nr_blocks {
                    let what = format!(
                        "device {id}: block {} maps past the data device ({})",
                        bt.data_block, a.data_nr_blocks
                    );
                    a.error(FindingKind::Mapping, Some(b), at.path, what);
                }
                if bt.time > a.sb_time {
                    let what = format!(
                        "device {id}: mapping time {} after pool time {}",
                        bt.time, a.sb_time
                    );
                    a.error(FindingKind::Mapping, Some(b), at.path, what);
                }
                a.data_refs.add(bt.data_block.0, 1);
            }
        });
    }

    /// The held snapshot's trees, when one is held: (devices, mappings) as it records them.
    /// The walk counts references and checks shape only where the snapshot does not share
    /// nodes with the live trees (those were walked already), so the details/mapping
    /// agreement is not judged here; the counts are read from the snapshot's top level and
    /// the per-node mapping totals the walk derived.
    pub(super) fn walk_held_snapshot(&mut self, sb: &Superblock) -> Option<(u64, u64)> {
        let held = sb.held_root.0;
        if held == 0 || !self.audit.count(held, &[0]) {
            return None;
        }
        let raw = self.read(held, BlockKind::Superblock, &[0])?;
        let copy = Superblock::unpack_unchecked(&raw);
        self.collect_details(copy.device_details_root.0);
        self.collect_top(copy.data_mapping_root.0);
        let mut roots = Vec::new();
        tolerant::for_each_leaf_entry(
            &mut self.reader,
            copy.data_mapping_root.0,
            TreeKind::Top,
            &mut |_, v| {
                roots.push(u64::from_le_bytes(v.try_into().expect("value size checked: 8 bytes")));
            },
        );
        let below = &self.audit.entries_below;
        let mappings = roots.iter().map(|r| below.get(r).copied().unwrap_or(0)).sum();
        Some((roots.len() as u64, mappings))
    }
}
