//! `repair` (thin_repair, and `dump --repair`): salvage what survives of damaged metadata
//! and write it as a clean image.
//!
//! The salvage reads the damaged image only through the format's validators, never through
//! the pool (whose open refuses damage). It finds the roots of the two trees a pool is made
//! of — the device-details tree and the two-level mapping tree — then walks them with the
//! tools' tolerant reader ([`super::tolerant`], the walker `check` audits with): an
//! unreadable or misplaced node loses the mappings below it, nothing more.
//!
//! Finding the roots, in order of trust:
//! 1. The superblock, when it validates.
//! 2. Its fields read without validation (a torn or bit-rotten superblock usually still
//!    holds the right roots), when the magic is right: each root is kept if it reads as a
//!    root of its tree's kind, and is a lost (empty) tree otherwise — never replaced by a
//!    scanned tree, which may be an older one.
//! 3. With no superblock magic at all, a scan of every metadata block: every valid node is
//!    classified by what its leaves hold, and nodes no valid internal node is a parent of
//!    are roots (a parent whose slot's key range the child's keys do not fit — a stale node
//!    whose child block was reused — is none). The top-level tree whose mappings are the
//!    most recent is taken (the latest time, then how many mappings hold it, then the next
//!    time down, as thin_repair 1.x ranks them), then the details tree that matches it
//!    best (exactly: the same devices with the same mapped counts; then on the most
//!    devices; then the newest entries). Ties go to the higher block. Nothing on disk tells
//!    the newest trees from older ones still intact, so a scan can bring back an older
//!    state: the format keeps no second copy of its roots.
//!
//! When the superblock names one tree that does not read and the other reads, a scan looks
//! for a tree of the lost kind that matches the surviving one exactly
//! ([`RootsFrom::LostTreeFound`]); an older tree that differs is never taken.
//!
//! The superblock's values come from the caller's overrides or a validated superblock, and
//! bound what is kept (mappings past the data device or after the pool's time are dropped).
//! A superblock read without validation (the magic is right) may be stale — an older one a
//! lost write left behind — so its number of data blocks, transaction id and time are only
//! floors, and bound nothing. Otherwise the number of data blocks and the transaction id are
//! inferred from what survives, as thin_repair 1.x infers them (the highest data block
//! mapped + 1; the highest device transaction id + 1), and the report says so. The data
//! block size is recorded nowhere else and must be given. The time is the later of the
//! superblock's and the latest one the surviving entries record.
//!
//! Invariants: the salvage never invents a mapping — every one it returns was read from a
//! valid leaf, lies inside its parents' key ranges, and maps inside the data device at a
//! time no later than the pool's; each virtual block is kept once. Every walk is bounded
//! (depth limit, visited set), so any bytes give a result or a typed error, never a hang.

use super::error::ToolError;
use super::restore::{write_devices, Run};
use super::tolerant::{self, Go, KeyRange, Place, Reader, Seen, TreeKind, Visitor};
pub use super::types::Overrides;
use super::{XmlDevice, XmlSuperblock};
use crate::canary::{Canaries, Canary};
use crate::format::checksum::BlockKind;
use crate::format::node;
use crate::format::superblock::Superblock;
use crate::format::{BlockTime, DeviceDetails, Time, TransactionId};
use crate::io::{Block, BlockDevice};
use crate::limits::{SUPERBLOCK_MAGIC, TIME_LIMIT};
use std::collections::{BTreeMap, BTreeSet};

/// Where the salvage found its roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootsFrom {
    /// The superblock validated.
    Superblock,
    /// The superblock failed validation; its unvalidated roots read as the right nodes.
    DamagedSuperblock,
    /// A scan of every metadata block.
    Scan,
    /// The superblock's (validated or damaged) roots, one of whose trees did not read: a
    /// scan found a tree of that kind matching the surviving one exactly (the same devices,
    /// each with as many mappings as its details record).
    LostTreeFound,
}

/// What the salvage found and what it had to leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    pub roots_from: RootsFrom,
    /// Valid nodes seen by the scan (0 when no scan was needed).
    pub nodes_scanned: u64,
    pub devices: u64,
    pub mappings: u64,
    /// Nodes that could not be read or validated: everything below them is lost.
    pub unreadable_nodes: u64,
    /// Leaf entries dropped: outside their parents' key range, past the data device, after
    /// the pool time, or a virtual block already kept.
    pub dropped_entries: u64,
    /// Devices found in one tree only (kept: details are recreated, or the device is empty).
    pub unmatched_devices: u64,
    /// Superblock values neither the superblock nor an override gave, inferred from the
    /// surviving trees (as thin_repair 1.x does).
    pub inferred: Vec<Inferred>,
}

/// A superblock value taken from the surviving trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inferred {
    /// The highest data block a kept mapping names, plus one.
    NrDataBlocks(u64),
    /// The highest transaction id the kept details record, plus one (the superblock's is
    /// ahead of every device's); 1 with no details.
    TransactionId(u64),
}

impl std::fmt::Display for Inferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inferred::NrDataBlocks(n) => {
                write!(f, "number of data blocks {n}: the highest data block mapped, plus one")
            }
            Inferred::TransactionId(t) => {
                write!(f, "transaction id {t}: the highest a device's details record, plus one")
            }
        }
    }
}

/// One salvaged mapping: (virtual block, data block, time).
pub type Mapping = (u64, u64, u32);
/// One salvaged device: its details and its mappings, ascending by virtual block.
pub type SalvagedDevice = (XmlDevice, Vec<Mapping>);
/// How a scan ranks a details tree against the mapping tree it chose: an exact match, the
/// devices both agree on, the newest (time, transaction id) the details record, then the
/// root itself so the choice is deterministic.
type DetailsScore = (bool, u64, (Time, TransactionId), u64);
/// (details root, top-level mapping root).
type RootPair = (u64, u64);
/// How many of a top-level tree's mappings hold each time, the latest time first: the
/// greater is the more recent tree.
type Recency = Vec<(u32, u64)>;

/// What survives: a superblock and every device with its mappings (vblock, data, time),
/// ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvage {
    pub sb: XmlSuperblock,
    pub devices: Vec<SalvagedDevice>,
    pub report: SalvageReport,
}

/// Salvages `dev` (read only). Fails, typed, when nothing can be salvaged: no data block size
/// (from the superblock or an override; nothing else records it), or no tree root anywhere.
/// With no superblock and no override for them, the number of data blocks and the
/// transaction id are inferred from what survives ([`Inferred`]).
pub fn salvage(dev: Box<dyn BlockDevice>, o: Overrides) -> Result<Salvage, ToolError> {
    salvage_with(dev, o, Canaries::NONE)
}

/// [`salvage`] with the simulator's canaries (deliberately broken rules; none outside a
/// `canary` build).
pub fn salvage_with(
    dev: Box<dyn BlockDevice>,
    o: Overrides,
    canaries: Canaries,
) -> Result<Salvage, ToolError> {
    let reader = Reader::new(dev);
    let raw = reader.read_raw(0).map_err(ToolError::Engine)?;
    let valid = Superblock::unpack(&raw, 0).ok();
    let hint = valid.clone().or_else(|| {
        let sb = Superblock::unpack_unchecked(&raw);
        (sb.magic == SUPERBLOCK_MAGIC).then_some(sb)
    });
    let need = |what: &str, flag: &str| {
        ToolError::Input(format!(
            "the superblock is unreadable, so the {what} is unknown: give it with {flag}"
        ))
    };
    if let Some(why) = o.data_block_size.and_then(crate::limits::data_block_size_refusal) {
        return Err(ToolError::Input(why));
    }
    // A damaged superblock's size is kept only when the pool target would take it.
    let data_block_size = o
        .data_block_size
        .or(hint
            .as_ref()
            .map(|s| s.data_block_size)
            .filter(|&n| crate::limits::data_block_size_ok(n)))
        .ok_or_else(|| need("data block size", "--data-block-size"))?;
    // Known: the caller's values, else a validated superblock's; they bound what is kept.
    // A damaged superblock's values are only floors: it may be stale (a lost write left an
    // older one), and a stale size or time would drop the newer mappings past them. Unknown:
    // every data block a valid leaf names is kept, and the size inferred from them.
    let known_nr_data_blocks =
        o.nr_data_blocks.or(valid.as_ref().map(|s| s.data_sm_root.nr_blocks));
    let known_transaction = o.transaction_id.or(valid.as_ref().map(|s| s.trans_id.0));
    let floors = hint.as_ref().filter(|_| valid.is_none());
    let mut s = Salvager {
        reader,
        nr_data_blocks: known_nr_data_blocks.unwrap_or(u64::MAX),
        // With no validated superblock the pool's time is unknown: any time the format
        // can hold (the time written is the later of the damaged one's and the entries').
        max_time: valid.as_ref().map_or(Time(u32::MAX), |s| s.time),
        unreadable: BTreeSet::new(),
        dropped: 0,
    };
    let hinted = hint.as_ref().map(|h| (h.device_details_root.0, h.data_mapping_root.0));
    let (roots, roots_from, nodes_scanned) = match hinted {
        Some(r) if valid.is_some() => (r, RootsFrom::Superblock, 0),
        // A damaged superblock's roots are kept one by one where they read as their
        // tree's root; one that does not is a lost tree, never replaced by a scanned one
        // (an older tree would bring back mappings the pool no longer has).
        Some((d, t)) => {
            let d = if s.leaf_value_size(d) == Some(24) { d } else { 0 };
            let t = if s.leaf_value_size(t) == Some(8) { t } else { 0 };
            ((d, t), RootsFrom::DamagedSuperblock, 0)
        }
        None => {
            let (r, n) = s.scan_roots()?;
            (r, RootsFrom::Scan, n)
        }
    };
    // One tree the superblock names lost, the other intact: a scan may find the lost one.
    let (roots, roots_from, nodes_scanned) = match roots_from {
        RootsFrom::Scan => (roots, roots_from, nodes_scanned),
        _ => {
            let details_read = s.leaf_value_size(roots.0) == Some(24);
            let top_read = s.leaf_value_size(roots.1) == Some(8);
            let lost = match (details_read, top_read) {
                (true, false) => Some(TreeKind::Top),
                (false, true) => Some(TreeKind::Details),
                _ => None,
            };
            match lost.and_then(|t| s.rescue(roots, t)) {
                Some((found, n)) => (found, RootsFrom::LostTreeFound, n),
                None => (roots, roots_from, nodes_scanned),
            }
        }
    };
    let details = s.details(roots.0);
    let tops = s.top(roots.1);
    let mut devices = Vec::new();
    let ids: BTreeSet<u64> = details.keys().chain(tops.keys()).copied().collect();
    let mut unmatched = 0;
    let mut latest = 0u32;
    for id in ids {
        let d = details.get(&id).copied();
        let mut mappings = match tops.get(&id) {
            Some(&root) => s.mappings(root),
            None => Vec::new(),
        };
        if canaries.on(Canary::RepairDropsLastMapping) {
            mappings.pop();
        }
        unmatched += u64::from(d.is_none() || !tops.contains_key(&id));
        latest = mappings.iter().map(|m| m.2).fold(latest, u32::max);
        let d = d.unwrap_or_default();
        let mut x = XmlDevice {
            dev_id: id,
            mapped_blocks: mappings.len() as u64,
            transaction: d.transaction_id.0,
            creation_time: d.creation_time.0,
            snap_time: d.snapshotted_time.0,
        };
        if x.creation_time > x.snap_time {
            x.creation_time = x.snap_time;
        }
        latest = latest.max(x.snap_time);
        devices.push((x, mappings));
    }
    let hinted_time = hint.as_ref().map_or(0, |h| h.time.0.min(TIME_LIMIT - 1));
    let time = hinted_time.max(latest);
    let mut inferred = Vec::new();
    let nr_data_blocks = known_nr_data_blocks.unwrap_or_else(|| {
        let highest = devices.iter().flat_map(|d| d.1.iter().map(|m| m.1)).max().unwrap_or(0);
        let n = highest.saturating_add(1);
        match floors.map(|f| f.data_sm_root.nr_blocks) {
            Some(floor) if floor >= n => floor,
            _ => {
                inferred.push(Inferred::NrDataBlocks(n));
                n
            }
        }
    });
    let transaction = known_transaction.unwrap_or_else(|| {
        let highest = devices.iter().map(|d| d.0.transaction).max();
        let t = highest.map_or(1, |t| t.saturating_add(1));
        // A superblock's id is at least every device's (equal when nothing changed since).
        match floors.map(|f| f.trans_id.0) {
            Some(floor) if highest.is_none_or(|h| floor >= h) => floor,
            _ => {
                inferred.push(Inferred::TransactionId(t));
                t
            }
        }
    });
    let uuid = hint.as_ref().map(|h| uuid_text(&h.uuid)).unwrap_or_default();
    let report = SalvageReport {
        roots_from,
        nodes_scanned,
        devices: devices.len() as u64,
        mappings: devices.iter().map(|d| d.1.len() as u64).sum(),
        unreadable_nodes: s.unreadable.len() as u64,
        dropped_entries: s.dropped,
        unmatched_devices: unmatched,
        inferred,
    };
    let sb = XmlSuperblock {
        uuid,
        time,
        transaction,
        // Repaired metadata needs no check; the held snapshot is not carried over (its
        // copy would point into trees the rebuild does not keep).
        flags: 0,
        version: 2,
        data_block_size,
        nr_data_blocks,
        metadata_snap: None,
    };
    Ok(Salvage { sb, devices, report })
}

/// Salvages `input` and writes the result onto `output` as a fresh image.
pub fn repair(
    input: Box<dyn BlockDevice>,
    output: Box<dyn BlockDevice>,
    o: Overrides,
) -> Result<(SalvageReport, Box<dyn BlockDevice>), ToolError> {
    repair_with(input, output, o, Canaries::NONE)
}

/// [`repair`] with the simulator's canaries.
pub fn repair_with(
    input: Box<dyn BlockDevice>,
    output: Box<dyn BlockDevice>,
    o: Overrides,
    canaries: Canaries,
) -> Result<(SalvageReport, Box<dyn BlockDevice>), ToolError> {
    let s = salvage_with(input, o, canaries)?;
    let devices = s
        .devices
        .into_iter()
        .map(|(d, m)| (d, m.into_iter().map(|(v, b, t)| (v, b, 1, t)).collect::<Vec<Run>>()))
        .collect();
    let dev = write_devices(&s.sb, devices, output)?;
    Ok((s.report, dev))
}

/// The uuid bytes as thin_dump prints them: the text up to the first NUL.
fn uuid_text(b: &[u8; 16]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// What a valid node's leaves hold, judged from the node alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Details,
    /// 8-byte values: top-level (bottom roots) or bottom (block-times); told apart later.
    Words,
    Other,
}

/// The newest (time, transaction id) a details tree's entries record.
fn newest(d: &BTreeMap<u64, DeviceDetails>) -> (Time, TransactionId) {
    d.values()
        .map(|x| (x.snapshotted_time.max(x.creation_time), x.transaction_id))
        .max()
        .unwrap_or_default()
}

struct Salvager {
    reader: Reader,
    nr_data_blocks: u64,
    max_time: Time,
    unreadable: BTreeSet<u64>,
    dropped: u64,
}

/// The salvage's visitor for one tree: damage is a loss (counted), never a finding; an entry
/// outside its parents' key range is dropped.
struct Gather<'a> {
    tree: TreeKind,
    nr_meta_blocks: u64,
    unreadable: &'a mut BTreeSet<u64>,
    dropped: &'a mut u64,
    entry: &'a mut dyn FnMut(u64, &[u8]) -> Keep,
}

/// Whether the salvage keeps a leaf entry inside its key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    /// Dropped: it fails the tree's own rule (past the data device, after the pool's time,
    /// a virtual block already kept).
    No,
}

impl Visitor for Gather<'_> {
    fn unreadable(&mut self, b: u64, _e: &crate::error::Error, _at: Place<'_>) {
        self.unreadable.insert(b);
    }

    fn node(&mut self, b: u64, n: &Block, _at: Place<'_>) -> Go {
        let fits = !node::is_leaf(n)
            || (node::value_size(n) == self.tree.value_size() && self.leaf_fits(n));
        if !fits {
            self.unreadable.insert(b);
            return Go::Skip;
        }
        Go::Enter
    }

    fn leaf(&mut self, _b: u64, n: &Block, at: Place<'_>) {
        for i in 0..node::nr_entries(n) {
            let k = node::key(n, i);
            let kept = at.range.contains(k) && (self.entry)(k, node::value(n, i)) == Keep::Yes;
            *self.dropped += u64::from(!kept);
        }
    }
}

impl Gather<'_> {
    /// Whether a leaf of the right value size can belong to the tree. Top-level and mapping
    /// leaves both hold 8-byte values and nothing in a node tells them apart, and after a
    /// lost or misdirected write an older block of the other kind can stand where one was
    /// expected. A top-level leaf's values are all metadata block numbers, so a mapping leaf
    /// read as one gives roots past the device. A mapping value below the metadata device's
    /// block count is data block 0 with that value as its time: a leaf whose every value is
    /// such is taken as a top-level one (the roots it held may since have been reused, so
    /// they cannot be checked) — unless one value is 0, data block 0 at time 0: block 0 is
    /// the superblock and never a tree's root, so no top-level leaf holds it. A real mapping
    /// of data block 0 at a later time, alone in its leaf, is lost this way — lost, never
    /// invented.
    fn leaf_fits(&self, n: &Block) -> bool {
        let nr_meta = self.nr_meta_blocks;
        let mut values = (0..node::nr_entries(n)).map(|i| node::value_u64(n, i));
        let root_like = |v: u64| v != 0 && v < nr_meta;
        match self.tree {
            TreeKind::Top => values.all(root_like),
            TreeKind::Bottom => node::nr_entries(n) == 0 || values.any(|v| !root_like(v)),
            _ => true,
        }
    }
}

impl Salvager {
    /// The value size of the first leaf under `b`, if `b` reads as a tree's root.
    fn leaf_value_size(&mut self, b: u64) -> Option<usize> {
        let leaf = self.reader.first_leaf(b)?;
        self.reader.probe(leaf, BlockKind::Node).map(|n| node::value_size(&n))
    }

    /// Hands `entry` every leaf entry (key, value bytes) under `root` that lies in its
    /// parents' ranges; an entry it refuses is counted as dropped. Each call walks afresh
    /// (a snapshot's device needs the mappings it shares with its origin too). Root 0 is the
    /// superblock's place: no tree (a scan that found none).
    fn leaves(&mut self, root: u64, tree: TreeKind, entry: &mut dyn FnMut(u64, &[u8]) -> Keep) {
        if root == 0 {
            return;
        }
        let mut v = Gather {
            tree,
            nr_meta_blocks: self.reader.nr_blocks(),
            unreadable: &mut self.unreadable,
            dropped: &mut self.dropped,
            entry,
        };
        tolerant::walk(&mut self.reader, &mut Seen::default(), root, KeyRange::ALL, &mut v);
    }

    fn details(&mut self, root: u64) -> BTreeMap<u64, DeviceDetails> {
        let mut out = BTreeMap::new();
        self.leaves(root, TreeKind::Details, &mut |k, v| {
            out.insert(k, DeviceDetails::unpack(v));
            Keep::Yes
        });
        out
    }

    fn top(&mut self, root: u64) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        self.leaves(root, TreeKind::Top, &mut |k, v| {
            out.insert(k, u64::from_le_bytes(v.try_into().expect("value size 8 checked")));
            Keep::Yes
        });
        out
    }

    /// One device's surviving mappings, ascending by virtual block.
    fn mappings(&mut self, root: u64) -> Vec<Mapping> {
        let mut out: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
        let (nr, max_time) = (self.nr_data_blocks, self.max_time);
        self.leaves(root, TreeKind::Bottom, &mut |k, v| {
            let bt = BlockTime::unpack(u64::from_le_bytes(v.try_into().expect("size 8")));
            let ok = bt.data_block.0 < nr && bt.time <= max_time && !out.contains_key(&k);
            if !ok {
                return Keep::No;
            }
            out.insert(k, (bt.data_block.0, bt.time.0));
            Keep::Yes
        });
        out.into_iter().map(|(v, (b, t))| (v, b, t)).collect()
    }

    /// Scans every block for valid nodes and picks the details and mapping roots.
    fn scan_roots(&mut self) -> Result<((u64, u64), u64), ToolError> {
        let (details_cands, top_cands, nodes_scanned) = self.candidates();
        if details_cands.is_empty() && top_cands.is_empty() {
            return Err(ToolError::Input(
                "no device-details or mapping tree survives anywhere on the metadata device".into(),
            ));
        }
        // The mapping tree first: the one whose mappings are the most recent (the latest
        // time any holds, then how many hold it, then the next time down), as thin_repair
        // 1.x ranks them; a pool's time only grows, and the newest tree holds the newest
        // mappings. Then the details tree that matches it best: exactly (the same devices,
        // each with as many mappings as its details record), then on the most devices, then
        // the newest entries. Ties go to the higher block, so the choice is deterministic.
        let mut memo = BTreeMap::new();
        let mut ranked: Option<(Recency, u64)> = None;
        for &r in &top_cands {
            let t = self.top(r);
            let (recency, _) = self.profile(&t, &mut memo);
            if ranked.as_ref().is_none_or(|(rb, b)| (&recency, r) > (rb, *b)) {
                ranked = Some((recency, r));
            }
        }
        let top_root = ranked.map_or(0, |(_, r)| r);
        let top = self.top(top_root);
        let (_, counts) = self.profile(&top, &mut memo);
        let mut best: Option<(DetailsScore, u64)> = None;
        for &r in &details_cands {
            let d = self.details(r);
            let exact = !d.is_empty()
                && d.keys().eq(counts.keys())
                && d.iter().all(|(id, x)| counts[id] == x.mapped_blocks);
            let agree = d.keys().filter(|k| top.contains_key(k)).count() as u64;
            let score = (exact, agree, newest(&d), r);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, r));
            }
        }
        let roots = (best.map_or(0, |(_, r)| r), top_root);
        // The unreadable set so far holds the scan's misses: they are not losses.
        self.unreadable.clear();
        self.dropped = 0;
        Ok((roots, nodes_scanned))
    }

    /// The superblock named both trees and one of them does not read (`lost`): a scan for
    /// a tree of that kind that matches the other exactly — the same device ids, and every
    /// device's mapped count in the details equal to the mappings its bottom tree holds.
    /// Such a tree holds the state the other one records (an older tree that differs in
    /// anything the two trees record is refused, so nothing is brought back that the pool
    /// since changed in a way the surviving tree shows). Among several, the details tree
    /// with the newest entries, or the mapping tree with the latest mapping time; then
    /// the higher block. `None` when no tree matches, or the surviving one is empty.
    fn rescue(&mut self, roots: RootPair, lost: TreeKind) -> Option<(RootPair, u64)> {
        let (details_cands, top_cands, nodes_scanned) = self.candidates();
        let found = match lost {
            TreeKind::Top => {
                let details = self.details(roots.0);
                // (latest mapping time, root): the greatest wins.
                let mut best: Option<(u32, u64)> = None;
                for r in top_cands {
                    let top = self.top(r);
                    if details.is_empty() || !top.keys().eq(details.keys()) {
                        continue;
                    }
                    let mut latest = 0u32;
                    let same = top.iter().all(|(id, &bottom)| {
                        let m = self.mappings(bottom);
                        latest = m.iter().map(|x| x.2).fold(latest, u32::max);
                        details[id].mapped_blocks == m.len() as u64
                    });
                    if same && best.is_none_or(|b| (latest, r) > b) {
                        best = Some((latest, r));
                    }
                }
                best.map(|(_, r)| (roots.0, r))
            }
            _ => {
                let top = self.top(roots.1);
                let counts: BTreeMap<u64, u64> =
                    top.iter().map(|(&id, &b)| (id, self.mappings(b).len() as u64)).collect();
                // (newest entry, root): the greatest wins.
                let mut best: Option<((Time, TransactionId), u64)> = None;
                for r in details_cands {
                    let d = self.details(r);
                    let same = !d.is_empty()
                        && d.keys().eq(counts.keys())
                        && d.iter().all(|(id, x)| counts[id] == x.mapped_blocks);
                    if same && best.is_none_or(|b| (newest(&d), r) > b) {
                        best = Some((newest(&d), r));
                    }
                }
                best.map(|(_, r)| (r, roots.1))
            }
        };
        // The scan's and the candidates' misses are not losses of the trees kept.
        self.unreadable.clear();
        self.dropped = 0;
        found.map(|r| (r, nodes_scanned))
    }

    /// A top-level tree's recency — how many of its mappings hold each time, latest time
    /// first — and each device's mapping count. `memo` keeps each bottom tree's walk.
    fn profile(
        &mut self,
        top: &BTreeMap<u64, u64>,
        memo: &mut BTreeMap<u64, (u64, BTreeMap<u32, u64>)>,
    ) -> (Recency, BTreeMap<u64, u64>) {
        let mut times: BTreeMap<u32, u64> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (&id, &bottom) in top {
            let (n, per_time) = match memo.entry(bottom) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut per_time = BTreeMap::new();
                    let m = self.mappings(bottom);
                    for x in &m {
                        *per_time.entry(x.2).or_insert(0u64) += 1;
                    }
                    e.insert((m.len() as u64, per_time))
                }
            };
            counts.insert(id, *n);
            for (&t, &c) in per_time.iter() {
                *times.entry(t).or_insert(0) += c;
            }
        }
        (times.into_iter().rev().collect(), counts)
    }

    /// Every valid node that no valid internal node points to, classified: roots of
    /// details trees, and roots of top-level mapping trees; and how many valid nodes there
    /// are.
    fn candidates(&mut self) -> (Vec<u64>, Vec<u64>, u64) {
        let mut holds = BTreeMap::new();
        // Each valid node's key range (first, last key; none when empty), and each internal
        // node's (key, child) slots.
        let mut ranges: BTreeMap<u64, Option<(u64, u64)>> = BTreeMap::new();
        let mut slots: Vec<Vec<(u64, u64)>> = Vec::new();
        // A leaf's first value (a bottom root, if the leaf is a top-level one).
        let mut first_words = BTreeMap::new();
        for b in 1..self.reader.nr_blocks() {
            let Some(n) = self.reader.probe(b, BlockKind::Node) else { continue };
            let leaf = node::is_leaf(&n);
            let count = node::nr_entries(&n);
            ranges.insert(b, (count > 0).then(|| (node::key(&n, 0), node::key(&n, count - 1))));
            if !leaf {
                slots
                    .push((0..count).map(|i| (node::key(&n, i), node::value_u64(&n, i))).collect());
            }
            let h = match (leaf, node::value_size(&n)) {
                (true, 24) => Holds::Details,
                (true, 8) => Holds::Words,
                (true, _) => Holds::Other,
                (false, _) => {
                    // An internal node holds what its first leaf holds (found below).
                    Holds::Other
                }
            };
            if h == Holds::Words && count > 0 {
                first_words.insert(b, node::value_u64(&n, 0));
            }
            holds.insert(b, (h, leaf));
        }
        let nodes_scanned = holds.len() as u64;
        // A node is another's child only where the parent's slot fits it: the child is a
        // valid node whose keys lie in the slot's range. A stale internal node whose child
        // block was freed and reused for another tree does not hide that tree's root.
        let mut children = BTreeSet::new();
        for s in &slots {
            for (i, &(low, child)) in s.iter().enumerate() {
                let high = s.get(i + 1).map(|x| x.0);
                let fits = match ranges.get(&child) {
                    Some(Some((first, last))) => *first >= low && high.is_none_or(|h| *last < h),
                    Some(None) => true,
                    None => false,
                };
                if fits {
                    children.insert(child);
                }
            }
        }
        let roots: Vec<u64> = holds.keys().copied().filter(|b| !children.contains(b)).collect();
        let mut details_cands = Vec::new();
        let mut top_cands = Vec::new();
        for &r in &roots {
            match self.leaf_kind(r, &holds) {
                Some(Holds::Details) => details_cands.push(r),
                Some(Holds::Words) => {
                    // A top-level tree's leaf values are bottom roots: valid nodes.
                    let leaf = self.reader.first_leaf(r);
                    let is_top = leaf
                        .and_then(|l| first_words.get(&l))
                        .is_some_and(|v| holds.contains_key(v));
                    if is_top {
                        top_cands.push(r);
                    }
                }
                _ => {}
            }
        }
        (details_cands, top_cands, nodes_scanned)
    }

    fn leaf_kind(&mut self, b: u64, holds: &BTreeMap<u64, (Holds, bool)>) -> Option<Holds> {
        let leaf = self.reader.first_leaf(b)?;
        holds.get(&leaf).map(|h| h.0)
    }
}
