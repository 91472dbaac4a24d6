//! The audit's space maps: their structure (index, bitmaps, overflow trees) counted as
//! metadata references, and the counts they store compared block by block with the counts
//! the tree walks derived.
//!
//! Invariants: a stored count above the derived one is a leak (non-fatal), below it a block in
//! use could be handed out again (fatal); every block with a non-zero count on either side is
//! compared, in ascending order, so findings are deterministic. An unreadable bitmap is a
//! finding (its counts are unknown), never skipped quietly.

use super::{Checker, FindingKind, Space};
use crate::canary::Canary;
use crate::format::checksum::BlockKind;
use crate::format::index::unpack_metadata_index;
use crate::format::superblock::Superblock;
use crate::format::{bitmap, node, IndexEntry};
use crate::limits::ENTRIES_PER_BITMAP;
use crate::tools::tolerant::{self, Reader, TreeKind};
use std::collections::BTreeMap;

/// Expected data counts: dense (one counter per data block) for data devices of up to
/// `DENSE_DATA_BLOCKS_MAX` blocks, otherwise a list of references sorted at the end.
pub(super) enum DataRefs {
    Dense(Vec<u32>),
    Sparse(Vec<u64>),
}

const DENSE_DATA_BLOCKS_MAX: u64 = 1 << 26;

impl DataRefs {
    pub(super) fn new(nr_data_blocks: u64) -> Self {
        if nr_data_blocks <= DENSE_DATA_BLOCKS_MAX {
            DataRefs::Dense(vec![0; nr_data_blocks as usize])
        } else {
            DataRefs::Sparse(Vec::new())
        }
    }

    /// Records `n` references to data block `b` (blocks past the data device are reported
    /// by the mapping walk).
    pub(super) fn add(&mut self, b: u64, n: u32) {
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

impl super::Audit {
    /// Block `b` of `space` stores `stored` references where the trees hold `expected`.
    fn count_mismatch(&mut self, space: Space, b: u64, stored: u32, expected: u32) {
        if space == Space::Data
            && stored > expected
            && self.canaries.on(Canary::CheckMissesDataLeaks)
        {
            return;
        }
        let what = if stored > expected {
            format!("{space} reference count {stored}, expected {expected} (leaked)")
        } else {
            format!("{space} reference count {stored}, expected {expected}")
        };
        self.error(FindingKind::RefCount { space, stored, expected }, Some(b), &[], what);
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

impl Checker {
    /// Counts the space maps' own blocks as metadata references and audits the shape of
    /// their trees.
    pub(super) fn walk_space_map_structures(&mut self, sb: &Superblock) {
        let m = sb.metadata_sm_root;
        if self.audit.count(m.bitmap_root.0, &[0]) {
            if let Some(idx) = self.read(m.bitmap_root.0, BlockKind::Index, &[0]) {
                let nr_bitmaps = m.nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize;
                for e in unpack_metadata_index(&idx, nr_bitmaps) {
                    self.audit.count(e.blocknr.0, &[m.bitmap_root.0]);
                }
            }
        }
        self.walk_tree(m.ref_count_root.0, TreeKind::MetaOverflow, &mut |_, _, _, _| {});
        let d = sb.data_sm_root;
        let mut bitmaps = Vec::new();
        self.walk_tree(d.bitmap_root.0, TreeKind::DataIndex, &mut |_, b, n, _| {
            for i in 0..node::nr_entries(n) {
                bitmaps.push((b, IndexEntry::unpack(node::value(n, i)).blocknr.0));
            }
        });
        for (parent, bmp) in bitmaps {
            self.audit.count(bmp, &[parent]);
        }
        self.walk_tree(d.ref_count_root.0, TreeKind::DataOverflow, &mut |_, _, _, _| {});
    }

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
        let overflow = overflow_counts(&mut self.reader, overflow_root);
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
                        let what = format!("block {b} marked 3 without an overflow count");
                        self.audit.error(FindingKind::SpaceMap, Some(blocknr), &[], what);
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
            let Some(bmp) = self.read(e.blocknr.0, BlockKind::Bitmap, &[]) else { continue };
            let base = i as u64 * ENTRIES_PER_BITMAP;
            let limit = ENTRIES_PER_BITMAP.min(nr_blocks.saturating_sub(base));
            let free = (0..limit).filter(|&x| bitmap::get(&bmp, x) == 0).count() as u64;
            let with_tail = free + (ENTRIES_PER_BITMAP - limit);
            let nr_free = u64::from(e.nr_free);
            if nr_free != free && nr_free != with_tail {
                self.audit.warn(
                    FindingKind::Hint,
                    Some(index),
                    format!("metadata index entry {i}: nr_free {nr_free}, bitmap has {free} free"),
                );
            }
        }
    }

    pub(super) fn compare_metadata_counts(&mut self, sb: &Superblock) -> u64 {
        let m = sb.metadata_sm_root;
        let Ok(idx) = self.reader.read(m.bitmap_root.0, BlockKind::Index) else { return 0 };
        let entries =
            unpack_metadata_index(&idx, m.nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize);
        let bitmaps: Vec<(u64, u64)> =
            entries.iter().enumerate().map(|(i, e)| (i as u64, e.blocknr.0)).collect();
        let meta_nr_blocks = self.audit.meta_nr_blocks;
        self.compare_index_hints(&entries, meta_nr_blocks, m.bitmap_root.0);
        let stored = self.stored_counts(&bitmaps, meta_nr_blocks, m.ref_count_root.0);
        let expected: Vec<(u64, u32)> = self
            .audit
            .meta_expected
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| (b as u64, c))
            .collect();
        self.audit.compare(Space::Metadata, expected.into_iter(), &stored);
        if m.nr_allocated != stored.len() as u64 {
            self.audit.warn(
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

    pub(super) fn compare_data_counts(&mut self, sb: &Superblock) -> u64 {
        let d = sb.data_sm_root;
        let mut bitmaps = Vec::new();
        tolerant::for_each_leaf_entry(
            &mut self.reader,
            d.bitmap_root.0,
            TreeKind::DataIndex,
            &mut |k, v| {
                bitmaps.push((k, IndexEntry::unpack(v).blocknr.0));
            },
        );
        let want_bitmaps = d.nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
        if bitmaps.len() as u64 != want_bitmaps {
            self.audit.error(
                FindingKind::SpaceMap,
                Some(d.bitmap_root.0),
                &[],
                format!("data space map has {} bitmaps, needs {want_bitmaps}", bitmaps.len()),
            );
        }
        let refs = std::mem::replace(&mut self.audit.data_refs, DataRefs::Sparse(Vec::new()));
        let stored_len = match refs {
            DataRefs::Dense(mut expected) => {
                let mut n = 0u64;
                self.for_each_stored(&bitmaps, d.nr_blocks, d.ref_count_root.0, &mut |c, b, s| {
                    n += 1;
                    let e = std::mem::take(&mut expected[b as usize]);
                    if e != s {
                        c.audit.count_mismatch(Space::Data, b, s, e);
                    }
                });
                for (b, &e) in expected.iter().enumerate().filter(|(_, &e)| e > 0) {
                    self.audit.count_mismatch(Space::Data, b as u64, 0, e);
                }
                n
            }
            DataRefs::Sparse(mut refs) => {
                let stored = self.stored_counts(&bitmaps, d.nr_blocks, d.ref_count_root.0);
                refs.sort_unstable();
                let expected: Vec<(u64, u32)> =
                    refs.chunk_by(|a, b| a == b).map(|run| (run[0], run.len() as u32)).collect();
                self.audit.compare(Space::Data, expected.into_iter(), &stored);
                stored.len() as u64
            }
        };
        if d.nr_allocated != stored_len {
            self.audit.error(
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
}

/// The counts an overflow tree holds (blocks whose bitmap entry is 3), quietly: the
/// structure walk reports the tree's damage. Both space maps' overflow trees hold 4-byte
/// counts, so one leaf kind reads either.
fn overflow_counts(reader: &mut Reader, root: u64) -> BTreeMap<u64, u32> {
    let mut out = BTreeMap::new();
    tolerant::for_each_leaf_entry(reader, root, TreeKind::MetaOverflow, &mut |k, v| {
        out.insert(k, u32::from_le_bytes(v.try_into().expect("value size checked: 4 bytes")));
    });
    out
}
