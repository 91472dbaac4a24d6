//! Target `image_bytes`: arbitrary damage to a valid metadata image (bytes overwritten,
//! optionally with the block's checksum recomputed so the damage reaches the decoders), then
//! `check`, `repair`, open, dump (live and held snapshot), ls, and a few writes with commit.
//!
//! Oracles: nothing panics or hangs, errors are typed; a repair refuses (typed) or writes an
//! image `check` calls clean; and when `check` calls the damaged image clean, the engine
//! must keep it clean through more writes and a commit.
//! Canary: a naive node reader that trusts `nr_entries` (it panics on damaged nodes).

use arbitrary::Arbitrary;
use engine::format::checksum::{self, BlockKind};
use engine::format::node;
use engine::io::{BlockDevice, MemoryDevice};
use engine::thin::Source;
use engine::thin::{Pool, PoolOptions};
use engine::thin::{ThinId, VBlock};
use engine::tools::xml_write::{DumpFormat, DumpWriter};
use std::sync::OnceLock;

#[derive(Debug, Arbitrary)]
struct Edit {
    block: u8,
    offset: u16,
    value: u8,
    reseal: bool,
}

/// The undamaged image: two devices, a snapshot, ~700 mappings, a held metadata snapshot.
pub fn base_image() -> &'static MemoryDevice {
    static BASE: OnceLock<MemoryDevice> = OnceLock::new();
    BASE.get_or_init(|| {
        let dev = crate::fuzzing::xml_restore::shared_memory(256);
        let pool = Pool::open(Box::new(dev.clone()), PoolOptions::new(128)).expect("format");
        pool.resize_data_dev(5000).expect("resize");
        pool.create_thin(ThinId(1)).expect("create");
        let h = pool.open_thin_device(ThinId(1)).expect("open");
        for v in 0..700 {
            let d = pool.alloc_data_block().expect("alloc");
            pool.insert_block(&h, VBlock(v * 3), d).expect("insert");
        }
        pool.close_thin_device(h);
        pool.create_snap(ThinId(2), ThinId(1)).expect("snap");
        pool.reserve_metadata_snap().expect("reserve");
        let h = pool.open_thin_device(ThinId(2)).expect("open");
        pool.remove_range(&h, VBlock(0), VBlock(300)).expect("remove");
        pool.close_thin_device(h);
        pool.commit().expect("commit");
        drop(pool);
        dev.copy()
    })
}

pub fn run(data: &[u8], canary: bool) -> Result<(), String> {
    let edits: Vec<Edit> = super::decode_all(data)?;
    let mut img = base_image().clone();
    for e in edits.iter().take(64) {
        let b = u64::from(e.block) % img.nr_blocks();
        let blk = img.block_mut(b);
        blk[usize::from(e.offset) % 4096] = e.value;
        if e.reseal {
            let kind = BlockKind::classify(blk).unwrap_or(BlockKind::Node);
            let c = checksum::checksum(blk, kind);
            blk[..4].copy_from_slice(&c.to_le_bytes());
        }
    }
    if canary {
        trusting_walk(&img);
    }
    let report = engine::tools::check::check(Box::new(img.clone()));
    repair_is_clean(&img)?;
    if let Ok(pool) = Pool::open_image(Box::new(img.clone())) {
        for source in [Source::Live, Source::MetadataSnap(None)] {
            let mut w = DumpWriter::new(std::io::sink(), DumpFormat::Xml);
            let _ = engine::tools::dump::dump(&pool, &mut w, source);
            let _ = engine::tools::dump::ls_rows(&pool, source);
        }
    }
    let Ok(pool) = Pool::open(Box::new(img.clone()), PoolOptions::new(128)) else { return Ok(()) };
    let shared = crate::fuzzing::xml_restore::Shared::new(img);
    drop(pool);
    let pool = match Pool::open(Box::new(shared.clone()), PoolOptions::new(128)) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    let wrote = write_some(&pool);
    if report.is_clean() && wrote.is_ok() {
        drop(pool);
        let after = engine::tools::check::check(Box::new(shared.copy()));
        if !after.is_clean() {
            return Err(format!(
                "a clean image became unclean after writes: {:?}",
                after.findings.first()
            ));
        }
    }
    Ok(())
}

/// Repair of any damage either refuses, typed, or writes an image `check` calls clean.
fn repair_is_clean(img: &MemoryDevice) -> Result<(), String> {
    let o = engine::tools::types::Overrides {
        transaction_id: Some(0),
        data_block_size: Some(128),
        nr_data_blocks: Some(5000),
    };
    let out = crate::fuzzing::xml_restore::shared_memory(img.nr_blocks());
    match engine::tools::repair::repair(Box::new(img.clone()), Box::new(out.clone()), o) {
        Ok(_) => {
            let after = engine::tools::check::check(Box::new(out.copy()));
            if !after.is_clean() {
                return Err(format!("a repaired image is not clean: {:?}", after.findings.first()));
            }
            Ok(())
        }
        Err(engine::tools::ToolError::Input(_)) => Ok(()),
        Err(e) => Err(format!("repair failed untyped: {e}")),
    }
}

fn write_some(pool: &Pool) -> engine::Result<()> {
    for id in [1u64, 2] {
        let h = pool.open_thin_device(ThinId(id))?;
        for v in 0..40 {
            let d = pool.alloc_data_block()?;
            pool.insert_block(&h, VBlock(5000 + v), d)?;
        }
        pool.remove_range(&h, VBlock(0), VBlock(100))?;
        pool.close_thin_device(h);
    }
    pool.commit()
}

/// The canary's bug: reads every node's keys up to `nr_entries` with no bound check.
fn trusting_walk(img: &MemoryDevice) {
    for b in 0..img.nr_blocks() {
        let Some(blk) = img.block(b) else { continue };
        if BlockKind::classify(blk) == Some(BlockKind::Node) {
            let n = node::nr_entries(blk);
            let last = 32 + 8 * n.saturating_sub(1);
            std::hint::black_box(&blk[last..last + 8]);
        }
    }
}
