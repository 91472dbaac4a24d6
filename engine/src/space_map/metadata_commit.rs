//! Reading the metadata space map from disk at open, creating it at format, and writing it
//! back at commit with the fixpoint described in [`super::metadata`].
//!
//! This is the layer above the btree (the overflow counts live in one): the transaction
//! manager below holds the in-core map and never calls up here. A commit is
//! [`pre_commit`] (space map, body, flush) then `TransactionManager::commit` (superblock).

use super::metadata::MetadataSpaceMap;
use super::{OVERFLOW_THRESHOLD, OVERFLOW_VALUES};
use crate::btree;
use crate::error::{Error, Result};
use crate::events::{self, Map, SpaceEvent};
use crate::format::checksum::BlockKind;
use crate::format::index::{pack_metadata_index, unpack_metadata_index};
use crate::format::{bitmap, SmRoot};
use crate::limits::{ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS, METADATA_INDEX_ENTRIES};
use crate::transaction::TransactionManager;

fn nr_bitmaps(nr_blocks: u64) -> usize {
    nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize
}

/// A new metadata space map of `nr_blocks` in `tm`, over a blank device: block 0 is
/// reserved for the superblock, then the index block, the overflow root and the bitmaps, in
/// the kernel's order.
pub fn format(tm: &mut TransactionManager, nr_blocks: u64) -> Result<()> {
    tm.reset();
    tm.sm = MetadataSpaceMap::new_empty(nr_blocks);
    tm.sm.set_count(0, 1);
    tm.sm.index_block = tm.alloc_block()?;
    tm.sm.overflow_root = btree::empty(tm, OVERFLOW_VALUES)?;
    add_missing_bitmaps(tm)?;
    Ok(())
}

/// First half of a commit: write the metadata space map, then every dirty block, flush.
/// Returns the metadata space-map root for the superblock, which
/// [`TransactionManager::commit`] writes.
pub fn pre_commit(tm: &mut TransactionManager) -> Result<SmRoot> {
    write_space_map(tm)?;
    tm.write_body()
}

/// Replaces `tm`'s space map with the one described by `root` (validating every block it
/// reads). On error `tm` keeps an empty map; its device is never lost.
pub fn load(tm: &mut TransactionManager, root: &SmRoot) -> Result<()> {
    tm.reset();
    let dev_blocks = tm.bm.nr_blocks();
    if root.nr_blocks == 0 || root.nr_blocks > MAX_METADATA_BLOCKS || root.nr_blocks > dev_blocks {
        return Err(Error::structure(
            0u64,
            format!("metadata space map of {} blocks on a device of {dev_blocks}", root.nr_blocks),
        ));
    }
    let mut sm = MetadataSpaceMap::new_empty(root.nr_blocks);
    let index_b = root.bitmap_root;
    if index_b.0 >= root.nr_blocks {
        return Err(Error::structure(0u64, format!("metadata index block {index_b} out of range")));
    }
    let index = tm.bm.read(index_b.0, BlockKind::Index)?;
    let entries = unpack_metadata_index(&index, nr_bitmaps(root.nr_blocks));
    let mut overflow_marks = false;
    for (i, e) in entries.iter().enumerate() {
        if e.blocknr.0 >= root.nr_blocks {
            return Err(Error::structure(
                index_b,
                format!("bitmap {i} at block {} out of range", e.blocknr),
            ));
        }
        let bmp = tm.bm.read(e.blocknr.0, BlockKind::Bitmap).map_err(|e| {
            if i > 0 {
                events::space(Map::Metadata, SpaceEvent::LaterBitmapReadFailed);
            }
            e.via(index_b.0)
        })?;
        let base = i as u64 * ENTRIES_PER_BITMAP;
        let end = (base + ENTRIES_PER_BITMAP).min(root.nr_blocks);
        // Word by word: a small pool's bitmap is mostly zero words, skipped whole.
        for w in 0..(end - base).div_ceil(32) {
            let word = bitmap::word(&bmp, w);
            if word == 0 {
                continue;
            }
            let first = base + 32 * w;
            for j in 0..(end - first).min(32) {
                let v = bitmap::decode_entry(word, j);
                if v != 0 {
                    sm.load_entry(first + j, v);
                    overflow_marks |= v == OVERFLOW_THRESHOLD;
                }
            }
        }
        sm.bitmaps.push(e.blocknr);
        sm.bitmap_shadowed.push(false);
    }
    sm.index_block = index_b;
    sm.overflow_root = root.ref_count_root;
    tm.sm = sm;
    let loaded = load_overflow(tm, overflow_marks);
    if loaded.is_err() {
        tm.sm = MetadataSpaceMap::new_empty(0);
    }
    loaded?;
    tm.sm.mark_committed();
    Ok(())
}

/// Replaces every bitmap entry of 3 by the full count from the overflow tree
/// (`overflow_marks`: whether any bitmap entry is 3).
fn load_overflow(tm: &mut TransactionManager, overflow_marks: bool) -> Result<()> {
    let root = tm.sm.overflow_root;
    let mut found = Vec::new();
    btree::walk(tm, root, OVERFLOW_VALUES, &mut |b, v| {
        found.push((b, u32::from_le_bytes(v.try_into().expect("4-byte count"))));
        Ok(())
    })?;
    for (b, c) in found {
        if !tm.sm.load_overflow_count(b, c) {
            return Err(Error::structure(
                root,
                format!("overflow count {c} for metadata block {b} whose bitmap entry is not 3"),
            ));
        }
    }
    // An entry of 3 whose overflow entry is missing cannot be trusted either.
    let unmatched = match overflow_marks {
        true => tm.sm.first_count_of_three(),
        false => None,
    };
    if let Some(b) = unmatched {
        let v = btree::lookup(tm, root, OVERFLOW_VALUES, b, btree::ReadMode::Blocking)?;
        if v.is_none() {
            return Err(Error::structure(
                root,
                format!("metadata block {b} has no overflow count"),
            ));
        }
    }
    Ok(())
}

fn add_missing_bitmaps(tm: &mut TransactionManager) -> Result<bool> {
    let want = nr_bitmaps(tm.sm.nr_blocks());
    if want > METADATA_INDEX_ENTRIES {
        return Err(Error::Invalid(format!("{want} bitmaps exceed the index block's 255")));
    }
    let mut changed = false;
    while tm.sm.bitmaps.len() < want {
        let b = tm.alloc_block()?;
        tm.sm.bitmaps.push(b);
        tm.sm.bitmap_shadowed.push(true);
        tm.sm.dirty_bitmaps.insert(tm.sm.bitmaps.len() - 1);
        changed = true;
    }
    while tm.sm.bitmaps.len() > want {
        let b = tm.sm.bitmaps.pop().expect("len > want ≥ 0");
        tm.sm.bitmap_shadowed.pop();
        tm.dec(b)?;
        changed = true;
    }
    Ok(changed)
}

/// Writes the space map so the superblock can point at it: copy each changed bitmap and the
/// index once, sync the overflow tree, repeat until nothing new changes, then write contents.
fn write_space_map(tm: &mut TransactionManager) -> Result<()> {
    let mut any_change = false;
    loop {
        let mut progress = add_missing_bitmaps(tm)?;
        progress |= sync_overflow(tm)?;
        progress |= relocate_dirty_bitmaps(tm)?;
        any_change |= progress || !tm.sm.dirty_bitmaps.is_empty();
        if any_change && !tm.sm.index_shadowed {
            let old = tm.sm.index_block;
            tm.sm.index_block = tm.alloc_block()?;
            tm.sm.index_shadowed = true;
            tm.dec(old)?;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    if !any_change {
        return Ok(());
    }
    let dirty: Vec<usize> = tm.sm.dirty_bitmaps.iter().copied().collect();
    for i in dirty {
        tm.bm.put(tm.sm.bitmaps[i].0, BlockKind::Bitmap, tm.sm.render_bitmap(i))?;
    }
    let entries = tm.sm.index_entries();
    tm.bm.put(tm.sm.index_block.0, BlockKind::Index, pack_metadata_index(&entries))?;
    events::count_commit(Map::Metadata, entries.len() as u64);
    Ok(())
}

fn sync_overflow(tm: &mut TransactionManager) -> Result<bool> {
    let dirty = std::mem::take(&mut tm.sm.overflow_dirty);
    let progress = !dirty.is_empty();
    for b in dirty {
        let c = tm.sm.count_or_zero(b);
        let root = tm.sm.overflow_root;
        tm.sm.overflow_root = if c >= OVERFLOW_THRESHOLD {
            btree::insert(tm, OVERFLOW_VALUES, root, b, &c.to_le_bytes())?.0
        } else {
            btree::remove(tm, OVERFLOW_VALUES, root, b)?.0
        };
    }
    Ok(progress)
}

fn relocate_dirty_bitmaps(tm: &mut TransactionManager) -> Result<bool> {
    let pending: Vec<usize> =
        tm.sm.dirty_bitmaps.iter().copied().filter(|&i| !tm.sm.bitmap_shadowed[i]).collect();
    for &i in &pending {
        let old = tm.sm.bitmaps[i];
        tm.sm.bitmaps[i] = tm.alloc_block()?;
        tm.sm.bitmap_shadowed[i] = true;
        tm.dec(old)?;
    }
    Ok(!pending.is_empty())
}
