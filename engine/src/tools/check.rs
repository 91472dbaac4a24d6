//! `check`: an independent audit of a metadata image, stricter than thin_check 0.9.0.
//!
//! It re-derives every reference count by walking every tree from the superblock (and from a
//! held metadata snapshot) — metadata counts per pointer from a distinct parent block, data
//! counts per entry of each distinct leaf block — and compares them with both space maps. It
//! also checks node shape and fill, key order and parent/child key ranges, equal leaf depth,
//! value sizes, `mapped_blocks`, details/top-level key agreement, data blocks inside the data
//! device, and time stamps. It shares no tree code with the engine (a bug there must not hide
//! itself here); it uses only the format decoders and the validating block reader.
//!
//! Invariants: every walk is bounded (depth limit, visited set), so any bytes produce a report,
//! never a hang or a panic; findings are ordered deterministically.

use crate::block_manager::BlockManager;
use crate::error::Error;
use crate::format::checksum::BlockKind;
use crate::format::index::unpack_metadata_index;
use crate::format::node;
use crate::format::superblock::Superblock;
use crate::format::{bitmap, BlockTime, DeviceDetails, IndexEntry};
use crate::io::{Block, BlockDevice};
use crate::limits::{ENTRIES_PER_BITMAP, MAX_BTREE_DEPTH, SUPERBLOCK_MAGIC};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// How bad a finding is, in thin-provisioning-tools 1.x's terms: `Error` findings are fatal
/// (the metadata cannot be trusted); `NonFatal` ones are leaks, which waste space but lose
/// nothing (`--auto-repair` fixes them, `--ignore-non-fatal-errors` passes them); warnings
/// are hints and tool quirks the kernel accepts, which never fail a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    NonFatal,
    Error,
}

/// The space map a reference count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    Metadata,
    Data,
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Space::Metadata => "metadata",
            Space::Data => "data",
        })
    }
}

/// What kind of problem a finding is: its severity follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The superblock cannot be read, fails validation, or has impossible fields.
    Superblock,
    /// A block failed to read or to validate (checksum, location, kind).
    Unreadable,
    /// A pointer past the end of the metadata device.
    PointerOutOfRange,
    /// Node shape: value size, capacity, fill, key order and ranges, leaf depth, cycles.
    TreeShape,
    /// Details and mapping trees disagree, a wrong `mapped_blocks`, device times out of order.
    DeviceDetails,
    /// A mapping past the data device or stamped after the pool time.
    Mapping,
    /// A stored reference count that differs from the references the trees hold: above them
    /// it is a leak (non-fatal), below them a block in use could be handed out again (fatal).
    RefCount { space: Space, stored: u32, expected: u32 },
    /// Space map structure: the bitmap count, a missing overflow count, allocated totals.
    SpaceMap,
    /// Hints the kernel keeps loose (index `nr_free`, the metadata root's allocated count).
    Hint,
}

impl FindingKind {
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::RefCount { stored, expected, .. } if stored > expected => {
                Severity::NonFatal
            }
            FindingKind::Hint => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// One problem, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The block at fault, when there is one (for a reference count: the counted block).
    pub block: Option<u64>,
    /// Blocks from the root of the tree to the parent of `block`.
    pub path: Vec<u64>,
    pub what: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }

    /// A leak: (space, block, stored count, referenced count), stored above referenced.
    pub fn leak(&self) -> Option<(Space, u64, u32, u32)> {
        match (self.kind, self.block) {
            (FindingKind::RefCount { space, stored, expected }, Some(b)) if stored > expected => {
                Some((space, b, stored, expected))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity() {
            Severity::Error => "error",
            Severity::NonFatal => "non-fatal",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let Some(b) = self.block {
            write!(f, "block {b}: ")?;
        }
        write!(f, "{}", self.what)?;
        if !self.path.is_empty() {
            write!(f, " (path {:?})", self.path)?;
        }
        Ok(())
    }
}

/// What was checked, and what was found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub devices: u64,
    pub mappings: u64,
    pub metadata_blocks_used: u64,
    pub data_blocks_used: u64,
    pub transaction_id: u64,
    /// The superblock's NEEDS_CHECK flag.
    pub needs_check: bool,
    /// Where the held metadata snapshot is, if one is.
    pub metadata_snap: Option<u64>,
    /// Free metadata blocks as the metadata space map's root records them (thin_check's
    /// METADATA_FREE_BLOCKS).
    pub metadata_free_blocks: u64,
    /// The metadata device's size in blocks, as the superblock's space map records it.
    pub metadata_nr_blocks: u64,
    /// The superblock validated (the other numbers mean something).
    pub superblock_valid: bool,
}

impl CheckReport {
    /// No fatal and no non-fatal finding: what the simulator holds every image to (a leak is
    /// an engine bug even if it loses nothing).
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.severity() == Severity::Warning)
    }

    /// No fatal finding (leaks and warnings allowed): thin_check 1.x's pass.
    pub fn is_sound(&self) -> bool {
        self.findings.iter().all(|f| f.severity() < Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity() == severity).count()
    }

    /// Every leak found, in finding order.
    pub fn leaks(&self) -> Vec<(Space, u64, u32, u32)> {
        self.findings.iter().filter_map(Finding::leak).collect()
    }
}

/// Which tree a node belongs to: decides value size and what values reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Details,
    Top,
    Bottom,
    MetaOverflow,
    DataIndex,
    DataOverflow,
}

impl Tree {
    fn value_size(self) -> usize {
        match self {
            Tree::Details => 24,
            Tree::Top | Tree::Bottom => 8,
            Tree::MetaOverflow | Tree::DataOverflow => 4,
            Tree::DataIndex => 16,
        }
    }
}

/// Called once per distinct leaf: (checker, block, node, path from the root).
type LeafVisitor<'a> = dyn FnMut(&mut Checker, u64, &Block, &[u64]) + 'a;

/// Expected data counts: dense (one counter per data block) for data devices of up to
/// `DENSE_DATA_BLOCKS_MAX` blocks, otherwise a list of references sorted at the end.
enum DataRefs {
    Dense(Vec<u32>),
    Sparse(Vec<u64>),
}

const DENSE_DATA_BLOCKS_MAX: u64 = 1 << 26;

impl DataRefs {
    fn new(nr_data_blocks: u64) -> Self {
        if nr_data_blocks <= DENSE_DATA_BLOCKS_MAX {
            DataRefs::Dense(vec![0; nr_data_blocks as usize])
        } else {
            DataRefs::Sparse(Vec::new())
        }
    }

    /// Records one reference (blocks past the data device are reported elsewhere).
    fn add(&mut self, b: u64, n: u32) {
        match self {
            DataRefs::Dense(v) => {
                if let Some(c) = v.get_mut(b as usize) {
                    *c = c.saturating_add(n);
                }
            }
            DataRefs::Sparse(v) => v.extend(std::iter::repeat_n(b, n as usize)),
        }
    }
}

struct Checker {
    bm: BlockManager,
    meta_nr_blocks: u64,
    data_nr_blocks: u64,
    sb_time: u32,
    /// Mapping trees are not walked (`--skip-mappings`).
    skip_mappings: bool,
    meta_expected: Vec<u32>,
    /// Expected data counts, from every entry of every distinct bottom leaf.
    data_refs: DataRefs,
    visited: BTreeSet<u64>,
    /// Height of each visited node above its leaves (shared subtrees are expanded once).
    depths: BTreeMap<u64, usize>,
    /// Mappings under each bottom-tree node (memo for per-device counts).
    entries_below: BTreeMap<u64, u64>,
    findings: Vec<Finding>,
}

/// What to check: everything by default; the options narrow it as thin_check's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Validate the superblock only (`--super-block-only`).
    pub super_block_only: bool,
    /// Walk the details and top-level trees but not the mapping trees under them, and
    /// skip the reference-count comparisons they would feed (`--skip-mappings`).
    pub skip_mappings: bool,
    /// Check the held metadata snapshot only (`-m`, as thin_check 1.x): its superblock copy
    /// and its trees, nothing of the live trees or the space maps (a live pool's change under
    /// the reader). No snapshot held is a fatal finding.
    pub metadata_snapshot: bool,
}

/// Checks the metadata on `dev`. Never panics on any bytes.
pub fn check(dev: Box<dyn BlockDevice>) -> CheckReport {
    check_with(dev, &BTreeMap::new(), CheckOptions::default())
}

/// Like [`check`], with data references held outside the trees (allocated-not-inserted
/// blocks, explicit `inc_data_range`s) added to the expected data counts.
pub fn check_with_refs(dev: Box<dyn BlockDevice>, caller_refs: &BTreeMap<u64, u32>) -> CheckReport {
    check_with(dev, caller_refs, CheckOptions::default())
}

/// [`check_with_refs`] narrowed by `opts`.
pub fn check_with(
    dev: Box<dyn BlockDevice>,
    caller_refs: &BTreeMap<u64, u32>,
    opts: CheckOptions,
) -> CheckReport {
    // A small cache: the walk reads each block once (sharing is tracked by the checker, not
    // the cache), and reusing evicted buffers avoids a page fault per block read.
    let bm = BlockManager::new(dev, 1024);
    let mut report = CheckReport::default();
    let raw = match bm.read_raw(0) {
        Ok(r) => r,
        Err(e) => {
            let what = format!("cannot read the superblock: {e}");
            report.findings.push(err(FindingKind::Superblock, Some(0), what));
            return report;
        }
    };
    let sb = match Superblock::unpack(&raw, 0) {
        Ok(sb) => sb,
        Err(k) => {
            let what = if raw.iter().all(|&b| b == 0) {
                "superblock is all zeros: no metadata here (never formatted, or wiped)".into()
            } else if Superblock::unpack_unchecked(&raw).magic != SUPERBLOCK_MAGIC {
                "not dm-thin metadata: no thin superblock magic at block 0".into()
            } else {
                format!("superblock is corrupt: {k}")
            };
            report.findings.push(err(FindingKind::Superblock, Some(0), what));
            return report;
        }
    };
    report.superblock_valid = true;
    report.transaction_id = sb.trans_id;
    report.needs_check = sb.needs_check();
    report.metadata_snap = (sb.held_root != 0).then_some(sb.held_root);
    let msm = sb.metadata_sm_root;
    report.metadata_free_blocks = msm.nr_blocks.saturating_sub(msm.nr_allocated);
    report.metadata_nr_blocks = msm.nr_blocks;
    let meta_nr_blocks = sb.metadata_sm_root.nr_blocks.min(bm.nr_blocks());
    let mut c = Checker {
        bm,
        meta_nr_blocks,
        data_nr_blocks: sb.data_sm_root.nr_blocks,
        sb_time: sb.time,
        skip_mappings: opts.skip_mappings,
        meta_expected: vec![0; usize::try_from(meta_nr_blocks).unwrap_or(0)],
        data_refs: DataRefs::new(sb.data_sm_root.nr_blocks),
        visited: BTreeSet::new(),
        depths: BTreeMap::new(),
        entries_below: BTreeMap::new(),
        findings: Vec::new(),
    };
    c.check_superblock_fields(&sb);
    if opts.super_block_only {
        report.findings = c.findings;
        return report;
    }
    for (&b, &n) in caller_refs {
        c.data_refs.add(b, n);
    }
    c.count(0, &[]);
    if opts.metadata_snapshot {
        // As thin_check 1.x's -m: a live pool's space maps and live trees change under the
        // reader, so only the snapshot's superblock copy and trees are read and checked.
        match c.walk_held_snapshot(&sb) {
            Some(found) => (report.devices, report.mappings) = found,
            None => {
                let what = "no metadata snapshot is held (-m needs one)".to_string();
                c.error(FindingKind::Superblock, Some(0), &[], what);
            }
        }
        report.findings = c.findings;
        return report;
    }
    (report.devices, report.mappings) = c.walk_pool(sb.device_details_root, sb.data_mapping_root);
    c.walk_held_snapshot(&sb);
    c.walk_space_map_structures(&sb);
    if opts.skip_mappings {
        // Counts from a partial walk would call every data block and every mapping-tree
        // node a leak: the comparison needs the whole walk.
        report.findings = c.findings;
        return report;
    }
    report.metadata_blocks_used = c.compare_metadata_counts(&sb);
    report.data_blocks_used = c.compare_data_counts(&sb);
    report.findings = c.findings;
    report
}

fn err(kind: FindingKind, block: Option<u64>, what: String) -> Finding {
    Finding { kind, block, path: Vec::new(), what }
}

impl Checker {
    fn error(&mut self, kind: FindingKind, block: Option<u64>, path: &[u64], what: String) {
        debug_assert_ne!(kind.severity(), Severity::Warning, "warnings go through warn");
        self.findings.push(Finding { kind, block, path: path.to_vec(), what });
    }

    fn warn(&mut self, kind: FindingKind, block: Option<u64>, what: String) {
        debug_assert_eq!(kind.severity(), Severity::Warning);
        self.findings.push(Finding { kind, block, path: Vec::new(), what });
    }

    /// Block `b` of `space` stores `stored` references where the trees hold `expected`.
    fn count_mismatch(&mut self, space: Space, b: u64, stored: u32, expected: u32) {
        let what = if stored > expected {
            format!("{space} reference count {stored}, expected {expected} (leaked)")
        } else {
            format!("{space} reference count {stored}, expected {expected}")
        };
        self.error(FindingKind::RefCount { space, stored, expected }, Some(b), &[], what);
    }

    fn check_superblock_fields(&mut self, sb: &Superblock) {
        if sb.magic != SUPERBLOCK_MAGIC {
            self.error(FindingKind::Superblock, Some(0), &[], format!("bad magic {}", sb.magic));
        }
        if !crate::limits::SUPERBLOCK_VERSIONS.contains(&sb.version) {
            self.error(
                FindingKind::Superblock,
                Some(0),
                &[],
                format!("unsupported version {}", sb.version),
            );
        }
        if sb.incompat_flags != 0 || sb.compat_ro_flags != 0 {
            self.error(FindingKind::Superblock, Some(0), &[], "unsupported feature flags".into());
        }
        if sb.metadata_block_size != 8 {
            self.error(
                FindingKind::Superblock,
                Some(0),
                &[],
                format!("metadata_block_size {} (want 8)", sb.metadata_block_size),
            );
        }
        if sb.data_block_size == 0 {
            self.error(FindingKind::Superblock, Some(0), &[], "data_block_size is 0".into());
        } else if let Some(why) = crate::limits::data_block_size_refusal(sb.data_block_size) {
            // The kernel will not activate the pool: as unusable as a bad field.
            self.error(FindingKind::Superblock, Some(0), &[], why);
        }
    }

    /// Records one reference to metadata block `b`; false if `b` is out of range.
    fn count(&mut self, b: u64, path: &[u64]) -> bool {
        match self.meta_expected.get_mut(b as usize) {
            Some(c) => {
                *c = c.saturating_add(1);
                true
            }
            None => {
                self.error(
                    FindingKind::PointerOutOfRange,
                    Some(b),
                    path,
                    format!("pointer past the metadata device ({} blocks)", self.meta_nr_blocks),
                );
                false
            }
        }
    }

    fn read(&mut self, b: u64, kind: BlockKind, path: &[u64]) -> Option<Arc<Block>> {
        match self.bm.read(b, kind) {
            Ok(n) => Some(n),
            Err(e) => {
                let what = match e {
                    Error::Corrupt { kind: why, .. } => format!("{kind:?} block is corrupt: {why}"),
                    other => other.to_string(),
                };
                self.error(FindingKind::Unreadable, Some(b), path, what);
                None
            }
        }
    }

    /// Walks a tree from `root`, counting metadata references and checking shape. Calls
    /// `leaf` once per distinct leaf block. Returns the depth of its leaves (None: broken).
    fn walk_tree(
        &mut self,
        root: u64,
        tree: Tree,
        path: &mut Vec<u64>,
        bounds: (u64, Option<u64>),
        is_root: bool,
        leaf: &mut LeafVisitor<'_>,
    ) -> Option<usize> {
        if !self.count(root, path) {
            return None;
        }
        if !self.visited.insert(root) {
            return self.depths.get(&root).copied();
        }
        if path.len() >= MAX_BTREE_DEPTH {
            self.error(FindingKind::TreeShape, Some(root), path, "tree too deep (cycle?)".into());
            return None;
        }
        let n = self.read(root, BlockKind::Node, path)?;
        self.check_node_shape(root, &n, tree, is_root, bounds, path);
        let count = node::nr_entries(&n);
        if node::is_leaf(&n) {
            // A leaf with the wrong value size was reported above; its values mean nothing.
            if node::value_size(&n) == tree.value_size() {
                leaf(self, root, &n, path);
            }
            self.depths.insert(root, 0);
            return Some(0);
        }
        path.push(root);
        let mut depth = None;
        for i in 0..count {
            let lo = node::key(&n, i);
            let hi = if i + 1 < count { Some(node::key(&n, i + 1)) } else { bounds.1 };
            let child = node::value_u64(&n, i);
            let d = self.walk_tree(child, tree, path, (lo, hi), false, leaf);
            match (depth, d) {
                (None, Some(d)) => depth = Some(d),
                (Some(a), Some(b)) if a != b => {
                    self.error(
                        FindingKind::TreeShape,
                        Some(child),
                        path,
                        "leaves at different depths".into(),
                    );
                }
                _ => {}
            }
        }
        path.pop();
        let depth = depth.map(|d| d + 1);
        if let Some(d) = depth {
            self.depths.insert(root, d);
        }
        depth
    }

    fn check_node_shape(
        &mut self,
        b: u64,
        n: &Block,
        tree: Tree,
        is_root: bool,
        bounds: (u64, Option<u64>),
        path: &[u64],
    ) {
        let vs = if node::is_leaf(n) { tree.value_size() } else { 8 };
        if node::value_size(n) != vs {
            self.error(
                FindingKind::TreeShape,
                Some(b),
                path,
                format!("value size {} in a {tree:?} node (want {vs})", node::value_size(n)),
            );
        }
        let max = node::max_entries_of(n);
        if max != node::max_entries(vs) as usize {
            self.error(
                FindingKind::TreeShape,
                Some(b),
                path,
                format!("max_entries {max} (want {})", node::max_entries(vs)),
            );
        }
        let count = node::nr_entries(n);
        if !is_root && count < max / 3 {
            self.error(
                FindingKind::TreeShape,
                Some(b),
                path,
                format!("too few entries: {count} of {max}"),
            );
        }
        if count > 0 {
            let (first, last) = (node::key(n, 0), node::key(n, count - 1));
            if first < bounds.0 || bounds.1.is_some_and(|hi| last >= hi) {
                self.error(
                    FindingKind::TreeShape,
                    Some(b),
                    path,
                    format!("keys {first}..={last} outside the parent's range {bounds:?}"),
                );
            }
        }
    }

    /// Live trees (or a held snapshot's): details and the two-level mapping tree. Returns
    /// (devices, mappings).
    fn walk_pool(&mut self, details_root: u64, mapping_root: u64) -> (u64, u64) {
        let details = self.collect_details(details_root);
        let tops = self.collect_top(mapping_root);
        for id in details.keys() {
            if !tops.contains_key(id) {
                self.error(
                    FindingKind::DeviceDetails,
                    None,
                    &[],
                    format!("device {id} has details but no mapping tree"),
                );
            }
        }
        let mut mappings = 0;
        for (&id, &root) in &tops {
            let Some(d) = details.get(&id) else {
                self.error(
                    FindingKind::DeviceDetails,
                    Some(root),
                    &[],
                    format!("device {id} has a mapping tree but no details"),
                );
                continue;
            };
            let n = self.entries_below.get(&root).copied().unwrap_or(0);
            mappings += n;
            if d.mapped_blocks != n && !self.skip_mappings {
                self.error(
                    FindingKind::DeviceDetails,
                    None,
                    &[],
                    format!("device {id}: mapped_blocks {} but {n} mappings", d.mapped_blocks),
                );
            }
            if d.creation_time > d.snapshotted_time || d.snapshotted_time > self.sb_time {
                self.error(
                    FindingKind::DeviceDetails,
                    None,
                    &[],
                    format!(
                        "device {id}: times {} / {} / pool {}",
                        d.creation_time, d.snapshotted_time, self.sb_time
                    ),
                );
            }
        }
        (tops.len() as u64, mappings)
    }

    fn collect_details(&mut self, root: u64) -> BTreeMap<u64, DeviceDetails> {
        let mut out = BTreeMap::new();
        self.walk_tree(root, Tree::Details, &mut Vec::new(), (0, None), true, &mut |_, _, n, _| {
            for i in 0..node::nr_entries(n) {
                out.insert(node::key(n, i), DeviceDetails::unpack(node::value(n, i)));
            }
        });
        out
    }

    /// Walks the top level and every bottom tree under it; returns device → bottom root.
    fn collect_top(&mut self, root: u64) -> BTreeMap<u64, u64> {
        let mut tops = BTreeMap::new();
        self.walk_tree(root, Tree::Top, &mut Vec::new(), (0, None), true, &mut |_, _, n, _| {
            for i in 0..node::nr_entries(n) {
                tops.insert(node::key(n, i), node::value_u64(n, i));
            }
        });
        if !self.skip_mappings {
            for (&id, &b) in &tops {
                self.walk_bottom(id, b);
            }
        }
        tops
    }

    fn walk_bottom(&mut self, id: u64, root: u64) {
        let first_visit = !self.visited.contains(&root);
        self.walk_tree(
            root,
            Tree::Bottom,
            &mut Vec::new(),
            (0, None),
            true,
            &mut |c, b, n, path| {
                let count = node::nr_entries(n);
                c.entries_below.insert(b, count as u64);
                for i in 0..count {
                    let bt = BlockTime::unpack(node::value_u64(n, i));
                    if bt.data_block.0 >= c.data_nr_blocks {
                        c.error(
                            FindingKind::Mapping,
                            Some(b),
                            path,
                            format!(
                                "device {id}: block {} maps past the data device ({})",
                                bt.data_block, c.data_nr_blocks
                            ),
                        );
                    }
                    if bt.time > c.sb_time {
                        c.error(
                            FindingKind::Mapping,
                            Some(b),
                            path,
                            format!(
                                "device {id}: mapping time {} after pool time {}",
                                bt.time, c.sb_time
                            ),
                        );
                    }
                    c.data_refs.add(bt.data_block.0, 1);
                }
            },
        );
        if first_visit {
            self.sum_entries(root, 0);
        }
    }

    /// Mappings below a bottom-tree node (memoised; shared subtrees are summed once each).
    fn sum_entries(&mut self, b: u64, depth: usize) -> u64 {
        if let Some(&n) = self.entries_below.get(&b) {
            return n;
        }
        if depth >= MAX_BTREE_DEPTH {
            return 0;
        }
        let Ok(n) = self.bm.read(b, BlockKind::Node) else { return 0 };
        let total = (0..node::nr_entries(&n))
            .map(|i| self.sum_entries(node::value_u64(&n, i), depth + 1))
            .sum();
        self.entries_below.insert(b, total);
        total
    }

    /// The held snapshot's trees, when one is held: (devices, mappings) as it records them.
    /// The walk counts references and checks shape only where the snapshot does not share
    /// nodes with the live trees (those were walked already), so the details/mapping
    /// agreement is not judged here; the counts are read from the snapshot's top level and
    /// the per-node mapping totals the walk memoised.
    fn walk_held_snapshot(&mut self, sb: &Superblock) -> Option<(u64, u64)> {
        let held = sb.held_root;
        if held == 0 || !self.count(held, &[0]) {
            return None;
        }
        let raw = self.read(held, BlockKind::Superblock, &[0])?;
        let copy = Superblock::unpack_unchecked(&raw);
        self.collect_details(copy.device_details_root);
        self.collect_top(copy.data_mapping_root);
        let mut roots = Vec::new();
        for_each_leaf_entry(&self.bm, copy.data_mapping_root, 8, &mut |_, v| {
            roots.push(u64::from_le_bytes(v.try_into().expect("value size checked: 8 bytes")));
        });
        let mappings = roots.iter().map(|r| self.entries_below.get(r).copied().unwrap_or(0)).sum();
        Some((roots.len() as u64, mappings))
    }

    fn walk_space_map_structures(&mut self, sb: &Superblock) {
        let m = sb.metadata_sm_root;
        if self.count(m.bitmap_root, &[0]) {
            if let Some(idx) = self.read(m.bitmap_root, BlockKind::Index, &[0]) {
                for e in
                    unpack_metadata_index(&idx, m.nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize)
                {
                    self.count(e.blocknr, &[m.bitmap_root]);
                }
            }
        }
        self.walk_tree(
            m.ref_count_root,
            Tree::MetaOverflow,
            &mut Vec::new(),
            (0, None),
            true,
            &mut |_, _, _, _| {},
        );
        let d = sb.data_sm_root;
        let mut bitmaps = Vec::new();
        self.walk_tree(
            d.bitmap_root,
            Tree::DataIndex,
            &mut Vec::new(),
            (0, None),
            true,
            &mut |_, b, n, _| {
                for i in 0..node::nr_entries(n) {
                    bitmaps.push((b, IndexEntry::unpack(node::value(n, i)).blocknr));
                }
            },
        );
        for (parent, bmp) in bitmaps {
            self.count(bmp, &[parent]);
        }
        self.walk_tree(
            d.ref_count_root,
            Tree::DataOverflow,
            &mut Vec::new(),
            (0, None),
            true,
            &mut |_, _, _, _| {},
        );
    }

    /// Reads the counts a space map stores, from its bitmaps and overflow tree.
    /// The counts a space map stores (bitmaps + overflow tree), ascending by block.
    fn stored_counts(
        &mut self,
        bitmaps: &[(u64, u64)],
        nr_blocks: u64,
        overflow_root: u64,
    ) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        self.for_each_stored(bitmaps, nr_blocks, overflow_root, &mut |_, b, c| out.push((b, c)));
        out
    }

    /// Calls `f(checker, block, count)` for every block with a non-zero stored count, ascending.
    fn for_each_stored(
        &mut self,
        bitmaps: &[(u64, u64)],
        nr_blocks: u64,
        overflow_root: u64,
        f: &mut dyn FnMut(&mut Checker, u64, u32),
    ) {
        let mut overflow = BTreeMap::new();
        collect_overflow(&self.bm, overflow_root, &mut overflow);
        let mut sorted = bitmaps.to_vec();
        sorted.sort_unstable();
        for (i, blocknr) in sorted {
            // An unreadable bitmap is a finding (its counts are unknown), never skipped quietly.
            let Some(bmp) = self.read(blocknr, BlockKind::Bitmap, &[]) else { continue };
            let base = i * ENTRIES_PER_BITMAP;
            let limit = ENTRIES_PER_BITMAP.min(nr_blocks.saturating_sub(base));
            let mut e = 0;
            while e < limit {
                // Whole words of free entries are skipped at once.
                if e % 32 == 0 && bitmap::word_is_zero(&bmp, e) {
                    e += 32;
                    continue;
                }
                let v = bitmap::get(&bmp, e);
                let b = base + e;
                e += 1;
                if v == 0 {
                    continue;
                }
                let c = if v == 3 {
                    overflow.get(&b).copied().unwrap_or_else(|| {
                        self.error(
                            FindingKind::SpaceMap,
                            Some(blocknr),
                            &[],
                            format!("block {b} marked 3 without an overflow count"),
                        );
                        3
                    })
                } else {
                    v
                };
                f(self, b, c);
            }
        }
    }

    /// The metadata index's entries should count their bitmaps' free entries: the kernel
    /// trusts `nr_free` to skip full bitmaps. A mismatch is a warning, as thin_restore 0.9.0
    /// leaves `nr_free` one off after freeing a block (and its root's allocated count too);
    /// the simulator holds the engine's own images to no warning at all. Two conventions
    /// exist for the last, partial bitmap (thin_restore counts only entries inside the
    /// device; the engine, like a bitmap the kernel adds whole, also those past its end), so
    /// either is accepted.
    /// `none_free_before` is a hint that real images leave loose (thin_restore 0.9.0 writes
    /// values past freed entries), so it is not judged.
    fn compare_index_hints(&mut self, entries: &[IndexEntry], nr_blocks: u64, index: u64) {
        for (i, e) in entries.iter().enumerate() {
            let Some(bmp) = self.read(e.blocknr, BlockKind::Bitmap, &[]) else { continue };
            let base = i as u64 * ENTRIES_PER_BITMAP;
            let limit = ENTRIES_PER_BITMAP.min(nr_blocks.saturating_sub(base));
            let free = (0..limit).filter(|&x| bitmap::get(&bmp, x) == 0).count() as u64;
            let with_tail = free + (ENTRIES_PER_BITMAP - limit);
            let nr_free = u64::from(e.nr_free);
            if nr_free != free && nr_free != with_tail {
                self.warn(
                    FindingKind::Hint,
                    Some(index),
                    format!("metadata index entry {i}: nr_free {nr_free}, bitmap has {free} free"),
                );
            }
        }
    }

    fn compare_metadata_counts(&mut self, sb: &Superblock) -> u64 {
        let m = sb.metadata_sm_root;
        let Ok(idx) = self.bm.read(m.bitmap_root, BlockKind::Index) else { return 0 };
        let entries =
            unpack_metadata_index(&idx, m.nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize);
        let bitmaps: Vec<(u64, u64)> =
            entries.iter().enumerate().map(|(i, e)| (i as u64, e.blocknr)).collect();
        self.compare_index_hints(&entries, self.meta_nr_blocks, m.bitmap_root);
        let stored = self.stored_counts(&bitmaps, self.meta_nr_blocks, m.ref_count_root);
        let expected: Vec<(u64, u32)> = self
            .meta_expected
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| (b as u64, c))
            .collect();
        self.compare(Space::Metadata, expected.into_iter(), &stored);
        if m.nr_allocated != stored.len() as u64 {
            self.warn(
                FindingKind::Hint,
                None,
                format!(
                    "metadata space map root says {} allocated, bitmaps say {}",
                    m.nr_allocated,
                    stored.len()
                ),
            );
        }
        stored.len() as u64
    }

    fn compare_data_counts(&mut self, sb: &Superblock) -> u64 {
        let d = sb.data_sm_root;
        let mut bitmaps = Vec::new();
        collect_index(&self.bm, d.bitmap_root, &mut bitmaps);
        let want_bitmaps = d.nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
        if bitmaps.len() as u64 != want_bitmaps {
            self.error(
                FindingKind::SpaceMap,
                Some(d.bitmap_root),
                &[],
                format!("data space map has {} bitmaps, needs {want_bitmaps}", bitmaps.len()),
            );
        }
        let refs = std::mem::replace(&mut self.data_refs, DataRefs::Sparse(Vec::new()));
        let stored_len = match refs {
            DataRefs::Dense(mut expected) => {
                let mut n = 0u64;
                self.for_each_stored(&bitmaps, d.nr_blocks, d.ref_count_root, &mut |c, b, s| {
                    n += 1;
                    let e = std::mem::take(&mut expected[b as usize]);
                    if e != s {
                        c.count_mismatch(Space::Data, b, s, e);
                    }
                });
                for (b, &e) in expected.iter().enumerate().filter(|(_, &e)| e > 0) {
                    self.count_mismatch(Space::Data, b as u64, 0, e);
                }
                n
            }
            DataRefs::Sparse(mut refs) => {
                let stored = self.stored_counts(&bitmaps, d.nr_blocks, d.ref_count_root);
                refs.sort_unstable();
                let expected: Vec<(u64, u32)> =
                    refs.chunk_by(|a, b| a == b).map(|run| (run[0], run.len() as u32)).collect();
                self.compare(Space::Data, expected.into_iter(), &stored);
                stored.len() as u64
            }
        };
        if d.nr_allocated != stored_len {
            self.error(
                FindingKind::SpaceMap,
                None,
                &[],
                format!(
                    "data space map root says {} allocated, bitmaps say {stored_len}",
                    d.nr_allocated
                ),
            );
        }
        stored_len
    }

    /// Merges two ascending (block, count) lists and reports every block where they differ.
    fn compare(
        &mut self,
        which: Space,
        expected: impl Iterator<Item = (u64, u32)>,
        stored: &[(u64, u32)],
    ) {
        let mut exp = expected.peekable();
        let mut sto = stored.iter().copied().peekable();
        loop {
            let (b, e, s) = match (exp.peek().copied(), sto.peek().copied()) {
                (None, None) => break,
                (Some((b, e)), Some((b2, s))) if b == b2 => {
                    exp.next();
                    sto.next();
                    (b, e, s)
                }
                (Some((b, e)), Some((b2, _))) if b < b2 => {
                    exp.next();
                    (b, e, 0)
                }
                (Some((b, e)), None) => {
                    exp.next();
                    (b, e, 0)
                }
                (_, Some((b, s))) => {
                    sto.next();
                    (b, 0, s)
                }
            };
            if e != s {
                self.count_mismatch(which, b, s, e);
            }
        }
    }
}

/// Visits every leaf entry (key, value) of a tree, tolerating damage: unreadable nodes, cycles
/// and excess depth end that branch quietly (the main walk reports them). Leaves whose value
/// size is not `value_size` are skipped.
fn for_each_leaf_entry(
    bm: &BlockManager,
    root: u64,
    value_size: usize,
    f: &mut dyn FnMut(u64, &[u8]),
) {
    fn rec(
        bm: &BlockManager,
        b: u64,
        vs: usize,
        seen: &mut BTreeSet<u64>,
        depth: usize,
        f: &mut dyn FnMut(u64, &[u8]),
    ) {
        if depth >= MAX_BTREE_DEPTH || !seen.insert(b) {
            return;
        }
        let Ok(n) = bm.read(b, BlockKind::Node) else { return };
        let leaf = node::is_leaf(&n);
        if leaf && node::value_size(&n) != vs {
            return;
        }
        for i in 0..node::nr_entries(&n) {
            if leaf {
                f(node::key(&n, i), node::value(&n, i));
            } else {
                rec(bm, node::value_u64(&n, i), vs, seen, depth + 1, f);
            }
        }
    }
    rec(bm, root, value_size, &mut BTreeSet::new(), 0, f);
}

fn collect_overflow(bm: &BlockManager, root: u64, out: &mut BTreeMap<u64, u32>) {
    for_each_leaf_entry(bm, root, 4, &mut |k, v| {
        out.insert(k, u32::from_le_bytes(v.try_into().expect("value size checked: 4 bytes")));
    });
}

fn collect_index(bm: &BlockManager, root: u64, out: &mut Vec<(u64, u64)>) {
    for_each_leaf_entry(bm, root, 16, &mut |k, v| out.push((k, IndexEntry::unpack(v).blocknr)));
}
