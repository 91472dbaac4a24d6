//! The tools' `-m` on kernel-made images (issue 29, item 1). At every checkpoint whose model
//! holds a metadata snapshot, the kernel's committed image is read the way `dump -m`,
//! `ls -m` and `check -m` read a live pool ([`engine::thin::HeldSnapshot`], and `check`'s
//! `metadata_snapshot` option): through block 0's held root, the snapshot's superblock copy
//! and the trees it names, and nothing else.
//!
//! To prove that nothing else is read, each image is read twice: as the kernel wrote it, and
//! with the blocks only the live metadata needs made unreadable (one byte flipped, so the
//! checksum fails). Those blocks are the metadata space map's index (the snapshot never
//! names it, and every open of the whole pool reads it) and the live details and top-level
//! roots where they differ from the snapshot's (a root the live pool changed after the
//! snapshot is a shadow, allocated while the snapshot already held every block of its own
//! trees, so it is none of them).
//!
//! Verdicts, first one wins ([`HeldMismatch`]):
//! - the damage must reach the live metadata: the whole pool no longer opens;
//! - the snapshot read through `-m` from the damaged image holds exactly the model's held
//!   devices (details and every mapping), its `ls` numbers are the model's, and its dump
//!   is byte for byte the undamaged image's;
//! - `check -m` of the damaged image finds nothing and counts the model's devices and
//!   mappings.

use crate::runner::oracle::{self, Diff, Mismatch};
use engine::format::superblock::Superblock;
use engine::io::MemoryDevice;
use engine::thin::{HeldSnapshot, Pool, Source};
use engine::tools::check::{check_with, CheckOptions};
use engine::tools::dump::{collect, dump, ls_rows, DumpOptions};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use model::Model;
use std::collections::BTreeMap;

/// What the `-m` judge read over a run: checkpoints judged, and what they held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldTally {
    /// Checkpoints whose held snapshot was read through `-m` with the live metadata damaged.
    pub checkpoints: u64,
    pub live_blocks_damaged: u64,
    pub mappings: u64,
}

impl HeldTally {
    pub fn add(&mut self, r: &HeldRead) {
        self.checkpoints += 1;
        self.live_blocks_damaged += r.live_blocks_damaged;
        self.mappings += r.mappings;
    }
}

/// What the `-m` judge read at one checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldRead {
    /// Live-only metadata blocks made unreadable before the second read (1 to 3).
    pub live_blocks_damaged: u64,
    /// Devices and mappings the snapshot holds.
    pub devices: u64,
    pub mappings: u64,
}

/// Why `-m` read a kernel-made image wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldMismatch {
    /// The image holds no snapshot, or its superblock copy is unreadable.
    Unreadable(String),
    /// The whole pool still opened with its live metadata damaged: the damage missed what
    /// it was meant to hit, so the second read proves nothing.
    DamageMissed,
    /// The snapshot read through `-m` differs from the model's held snapshot.
    Content(Mismatch),
    /// `dump -m` of the damaged image differs from the undamaged one's (first differing line).
    Dump { line: usize },
    /// `check -m` of the damaged image reported findings, or counted a different snapshot.
    Check(String),
}

impl std::fmt::Display for HeldMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldMismatch::Unreadable(e) => write!(f, "the held snapshot does not read: {e}"),
            HeldMismatch::DamageMissed => {
                write!(f, "the pool still opens with its live metadata damaged")
            }
            HeldMismatch::Content(m) => write!(f, "-m reads a different snapshot:\n{m}"),
            HeldMismatch::Dump { line } => {
                write!(f, "dump -m differs once the live metadata is damaged (line {line})")
            }
            HeldMismatch::Check(e) => write!(f, "check -m: {e}"),
        }
    }
}

/// `image` with the blocks only its live metadata needs made unreadable, and how many.
pub fn damage_live_only(image: &MemoryDevice) -> Result<(MemoryDevice, u64), HeldMismatch> {
    let block = |b: u64| {
        image
            .block(b)
            .ok_or_else(|| HeldMismatch::Unreadable(format!("block {b} is past the image")))
    };
    let live = Superblock::unpack(block(0)?, 0).map_err(|e| unreadable(format!("{e:?}")))?;
    if live.held_root.0 == 0 {
        return Err(HeldMismatch::Unreadable("no snapshot is held".into()));
    }
    let held = Superblock::unpack_unchecked(block(live.held_root.0)?);
    let mut blocks = vec![live.metadata_sm_root.bitmap_root.0];
    if live.device_details_root != held.device_details_root {
        blocks.push(live.device_details_root.0);
    }
    if live.data_mapping_root != held.data_mapping_root {
        blocks.push(live.data_mapping_root.0);
    }
    let mut damaged = image.clone();
    for &b in &blocks {
        block(b)?;
        // Byte 100 lies past every node's and index's header: the checksum fails, nothing
        // else about the block is told.
        damaged.block_mut(b)[100] ^= 0x10;
    }
    Ok((damaged, blocks.len() as u64))
}

fn unreadable(e: impl std::fmt::Display) -> HeldMismatch {
    HeldMismatch::Unreadable(e.to_string())
}

/// Judges `-m` on the committed kernel image `image`, whose state is `model`'s current one.
/// `Ok(None)` when the model holds no snapshot (nothing to read).
pub fn judge(image: &MemoryDevice, model: &Model) -> Result<Option<HeldRead>, HeldMismatch> {
    let Some(want) = model.held_snapshot_devices() else { return Ok(None) };
    let (damaged, live_blocks_damaged) = damage_live_only(image)?;
    if Pool::open_image(damaged.to_device()).is_ok() {
        return Err(HeldMismatch::DamageMissed);
    }
    let snap = HeldSnapshot::open(damaged.to_device()).map_err(unreadable)?;
    let found =
        collect(&snap, Source::MetadataSnap(None), &DumpOptions::default()).map_err(unreadable)?;
    let found = found.devices.into_iter().map(|(id, d, maps)| (id, (d, maps))).collect();
    let mut d = Diff::default();
    oracle::diff_devices("held snapshot (-m): ", want, &found, &mut d);
    let (rows, _) = ls_rows(&snap, Source::MetadataSnap(None)).map_err(unreadable)?;
    let found_ls: BTreeMap<u64, (u64, u64, u64)> = rows
        .iter()
        .map(|r| (r.dev_id, (r.mapped_blocks, r.exclusive_blocks, r.shared_blocks())))
        .collect();
    let want_ls: BTreeMap<u64, (u64, u64, u64)> =
        model::ls(want).iter().map(|(id, r)| (*id, (r.mapped, r.exclusive, r.shared))).collect();
    if found_ls != want_ls {
        d.push(format!(
            "ls -m (mapped, exclusive, shared): expected {want_ls:?}, found {found_ls:?}"
        ));
    }
    d.into_result().map_err(HeldMismatch::Content)?;

    let whole = HeldSnapshot::open(image.to_device()).map_err(unreadable)?;
    let (a, b) = (dump_text(&whole)?, dump_text(&snap)?);
    if a != b {
        let line = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count() + 1;
        return Err(HeldMismatch::Dump { line });
    }

    let opts = CheckOptions { metadata_snapshot: true, ..CheckOptions::default() };
    let r = check_with(damaged.to_device(), &BTreeMap::new(), opts);
    let mappings: u64 = want.values().map(|dev| dev.mappings.len() as u64).sum();
    if !r.findings.is_empty() || (r.devices, r.mappings) != (want.len() as u64, mappings) {
        return Err(HeldMismatch::Check(format!(
            "{} findings, {} devices and {} mappings (the model holds {} and {mappings}); first: {:?}",
            r.findings.len(),
            r.devices,
            r.mappings,
            want.len(),
            r.findings.first().map(|f| f.what.as_str())
        )));
    }
    Ok(Some(HeldRead { live_blocks_damaged, devices: want.len() as u64, mappings }))
}

/// `dump -m` as XML text.
fn dump_text(snap: &HeldSnapshot) -> Result<String, HeldMismatch> {
    let mut w = DumpWriter::new(Vec::new(), DumpFormat::Xml);
    dump(snap, &mut w, Source::MetadataSnap(None)).map_err(unreadable)?;
    String::from_utf8(w.finish().map_err(unreadable)?).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::thin::{PoolOptions, ThinId, VBlock};

    /// An engine pool and the model in step: device 1 with 40 mappings, its snapshot 2,
    /// the metadata snapshot reserved (in the model before the mappings, with `hold_early`),
    /// then 20 of device 2's mappings removed and committed. The image and the model.
    fn pool_with_held(hold_early: bool) -> (MemoryDevice, Model) {
        let dev = crate::fuzzing::xml_restore::shared_memory(128);
        let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).expect("format");
        let mut m = Model::new(0);
        pool.resize_data_dev(500).and_then(|()| pool.commit()).expect("size");
        m.resize_data_dev(500).and_then(|()| m.commit()).expect("size");
        pool.create_thin(ThinId(1)).expect("create");
        m.create_thin(1).expect("create");
        if hold_early {
            // The model holds an older state than the pool does: the judge must see it.
            m.reserve_metadata_snap().expect("reserve");
        }
        let (h, mh) =
            (pool.open_thin_device(ThinId(1)).expect("open"), m.open_thin(1).expect("open"));
        for v in 0..40 {
            let d = pool.alloc_data_block().expect("alloc");
            m.alloc_data_block_check(d.0).expect("the model agrees");
            pool.insert_block(&h, VBlock(v), d).expect("insert");
            m.insert_block(mh, v, d.0).expect("insert");
        }
        pool.close_thin_device(h);
        m.close_thin(mh).expect("close");
        pool.create_snap(ThinId(2), ThinId(1)).expect("snap");
        m.create_snap(2, 1).expect("snap");
        pool.reserve_metadata_snap().expect("reserve");
        if !hold_early {
            m.reserve_metadata_snap().expect("reserve");
        }
        let (h, mh) =
            (pool.open_thin_device(ThinId(2)).expect("open"), m.open_thin(2).expect("open"));
        pool.remove_range(&h, VBlock(0), VBlock(20)).expect("remove");
        m.remove_range(mh, 0, 20).expect("remove");
        pool.close_thin_device(h);
        m.close_thin(mh).expect("close");
        pool.commit().expect("commit");
        m.commit().expect("commit");
        drop(pool);
        (dev.copy(), m)
    }

    #[test]
    fn the_held_snapshot_reads_through_m_with_the_live_metadata_unreadable() {
        let (img, m) = pool_with_held(false);
        let r = judge(&img, &m).expect("agrees").expect("a snapshot is held");
        assert_eq!((r.devices, r.mappings), (2, 80));
        assert_eq!(r.live_blocks_damaged, 3, "the space map's index and both live roots");
        let (damaged, n) = damage_live_only(&img).expect("damages");
        assert_eq!(img.differing_blocks(&damaged).len() as u64, n);
    }

    #[test]
    fn a_snapshot_other_than_the_models_is_a_content_mismatch() {
        let (img, m) = pool_with_held(true);
        match judge(&img, &m) {
            Err(HeldMismatch::Content(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_held_snapshot_nothing_is_read() {
        let (img, mut m) = pool_with_held(false);
        m.release_metadata_snap().expect("release");
        assert_eq!(judge(&img, &m), Ok(None));
        let mut blank = img.clone();
        *blank.block_mut(0) = [0; 4096];
        assert!(matches!(damage_live_only(&blank), Err(HeldMismatch::Unreadable(_))));
    }
}
