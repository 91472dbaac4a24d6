//! `check`: an independent audit of a metadata image, stricter than thin_check 0.9.0.
//!
//! It re-derives every reference count by walking every tree from the superblock (and from a
//! held metadata snapshot) — metadata counts per pointer from a distinct parent block, data
//! counts per entry of each distinct leaf block — and compares them with both space maps. It
//! also checks node shape and fill, key order and parent/child key ranges, equal leaf depth,
//! value sizes, `mapped_blocks`, details/top-level key agreement, data blocks inside the data
//! device, and time stamps. It shares no tree code with the engine (a bug there must not hide
//! itself here): it walks with the tools' tolerant reader ([`super::tolerant`]) over the
//! format's decoders and the validating block reader.
//!
//! The audit in parts: this file holds the entry points, the options and the superblock's
//! fields; [`trees`] the tree walks (shape, devices, mappings, the held snapshot);
//! [`counts`] the space maps (their structure, the counts they store against the counts the
//! walks derived); [`report`] what is reported.
//!
//! Invariants: every walk is bounded (depth limit, visited set), so any bytes produce a report,
//! never a hang or a panic; findings are ordered deterministically.

mod counts;
mod report;
mod trees;

pub use report::{CheckReport, Finding, FindingKind, Severity, Space};

use super::tolerant::{Reader, Seen};
use crate::canary::Canaries;
use crate::format::checksum::BlockKind;
use crate::format::superblock::Superblock;
use crate::format::Time;
use crate::io::{Block, BlockDevice};
use crate::limits::SUPERBLOCK_MAGIC;
use counts::DataRefs;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Deliberately broken rules (the simulator's canaries; none outside a `canary` build).
    pub canaries: Canaries,
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
    let reader = Reader::new(dev);
    let mut report = CheckReport::default();
    let sb = match read_superblock(&reader) {
        Ok(sb) => sb,
        Err(what) => {
            report.findings.push(Finding {
                kind: FindingKind::Superblock,
                block: Some(0),
                path: Vec::new(),
                what,
            });
            return report;
        }
    };
    report.superblock_valid = true;
    report.transaction_id = sb.trans_id;
    report.needs_check = sb.needs_check();
    report.metadata_snap = (sb.held_root.0 != 0).then_some(sb.held_root.0);
    let msm = sb.metadata_sm_root;
    report.metadata_free_blocks = msm.nr_blocks.saturating_sub(msm.nr_allocated);
    report.metadata_nr_blocks = msm.nr_blocks;
    let meta_nr_blocks = sb.metadata_sm_root.nr_blocks.min(reader.nr_blocks());
    let mut c = Checker {
        reader,
        seen: Seen::default(),
        audit: Audit {
            meta_nr_blocks,
            data_nr_blocks: sb.data_sm_root.nr_blocks,
            sb_time: sb.time,
            skip_mappings: opts.skip_mappings,
            meta_expected: vec![0; usize::try_from(meta_nr_blocks).unwrap_or(0)],
            data_refs: DataRefs::new(sb.data_sm_root.nr_blocks),
            entries_below: BTreeMap::new(),
            findings: Vec::new(),
            canaries: opts.canaries,
        },
    };
    c.audit.check_superblock_fields(&sb);
    if opts.super_block_only {
        report.findings = c.audit.findings;
        return report;
    }
    for (&b, &n) in caller_refs {
        c.audit.data_refs.add(b, n);
    }
    c.audit.count(0, &[]);
    if opts.metadata_snapshot {
        // As thin_check 1.x's -m: a live pool's space maps and live trees change under the
        // reader, so only the snapshot's superblock copy and trees are read and checked.
        match c.walk_held_snapshot(&sb) {
            Some(found) => (report.devices, report.mappings) = found,
            None => {
                let what = "no metadata snapshot is held (-m needs one)".to_string();
                c.audit.error(FindingKind::Superblock, Some(0), &[], what);
            }
        }
        report.findings = c.audit.findings;
        return report;
    }
    (report.devices, report.mappings) =
        c.walk_pool(sb.device_details_root.0, sb.data_mapping_root.0);
    c.walk_held_snapshot(&sb);
    c.walk_space_map_structures(&sb);
    if opts.skip_mappings {
        // Counts from a partial walk would call every data block and every mapping-tree
        // node a leak: the comparison needs the whole walk.
        report.findings = c.audit.findings;
        return report;
    }
    report.metadata_blocks_used = c.compare_metadata_counts(&sb);
    report.data_blocks_used = c.compare_data_counts(&sb);
    report.findings = c.audit.findings;
    report
}

/// The superblock, validated, or why it cannot be used.
fn read_superblock(reader: &Reader) -> Result<Superblock, String> {
    let raw = reader.read_raw(0).map_err(|e| format!("cannot read the superblock: {e}"))?;
    Superblock::unpack(&raw, 0).map_err(|k| {
        if raw.iter().all(|&b| b == 0) {
            "superblock is all zeros: no metadata here (never formatted, or wiped)".into()
        } else if Superblock::unpack_unchecked(&raw).magic != SUPERBLOCK_MAGIC {
            "not dm-thin metadata: no thin superblock magic at block 0".into()
        } else {
            format!("superblock is corrupt: {k}")
        }
    })
}

/// The audit's state: what it derived from the walks so far, and what it found.
struct Audit {
    meta_nr_blocks: u64,
    data_nr_blocks: u64,
    sb_time: Time,
    /// Mapping trees are not walked (`--skip-mappings`).
    skip_mappings: bool,
    /// References to each metadata block, one per pointer from a distinct parent.
    meta_expected: Vec<u32>,
    /// Expected data counts, from every entry of every distinct bottom leaf.
    data_refs: DataRefs,
    /// Mappings under each bottom-tree node (shared subtrees are summed once each).
    entries_below: BTreeMap<u64, u64>,
    findings: Vec<Finding>,
    canaries: Canaries,
}

/// The audit and the reader it walks with, kept apart so a walk can borrow both.
struct Checker {
    reader: Reader,
    /// One for the whole image: each distinct node is audited once.
    seen: Seen,
    audit: Audit,
}

impl Audit {
    fn error(&mut self, kind: FindingKind, block: Option<u64>, path: &[u64], what: String) {
        debug_assert_ne!(kind.severity(), Severity::Warning, "warnings go through warn");
        self.findings.push(Finding { kind, block, path: path.to_vec(), what });
    }

    fn warn(&mut self, kind: FindingKind, block: Option<u64>, what: String) {
        debug_assert_eq!(kind.severity(), Severity::Warning);
        self.findings.push(Finding { kind, block, path: Vec::new(), what });
    }

    /// Block `b` failed to read or validate as `kind`.
    fn unreadable(&mut self, b: u64, kind: BlockKind, e: &crate::error::Error, path: &[u64]) {
        let what = match e {
            crate::error::Error::Corrupt { kind: why, .. } => {
                format!("{kind:?} block is corrupt: {why}")
            }
            other => other.to_string(),
        };
        self.error(FindingKind::Unreadable, Some(b), path, what);
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

    fn check_superblock_fields(&mut self, sb: &Superblock) {
        let mut bad = |what: String| self.error(FindingKind::Superblock, Some(0), &[], what);
        if sb.magic != SUPERBLOCK_MAGIC {
            bad(format!("bad magic {}", sb.magic));
        }
        if !crate::limits::SUPERBLOCK_VERSIONS.contains(&sb.version) {
            bad(format!("unsupported version {}", sb.version));
        }
        if sb.incompat_flags != 0 || sb.compat_ro_flags != 0 {
            bad("unsupported feature flags".into());
        }
        if sb.metadata_block_size != 8 {
            bad(format!("metadata_block_size {} (want 8)", sb.metadata_block_size));
        }
        if sb.data_block_size == 0 {
            bad("data_block_size is 0".into());
        } else if let Some(why) = crate::limits::data_block_size_refusal(sb.data_block_size) {
            // The kernel will not activate the pool: as unusable as a bad field.
            bad(why);
        }
    }
}

impl Checker {
    /// Block `b` validated as `kind`; a failure is a finding.
    fn read(&mut self, b: u64, kind: BlockKind, path: &[u64]) -> Option<Arc<Block>> {
        match self.reader.read(b, kind) {
            Ok(n) => Some(n),
            Err(e) => {
                self.audit.unreadable(b, kind, &e, path);
                None
            }
        }
    }
}
