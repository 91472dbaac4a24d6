//! The model's state in thin_dump's XML: what `dump` must print for it — the superblock's
//! time, transaction id, flags (NEEDS_CHECK) and data size, every device's details in id
//! order and its mappings in vblock order, runs coalesced by the engine's own dump writer.
//! The prepopulated pools are restored from it (so the XML restored and the model compared
//! are one value), and `thinsim kernel` prints it beside the kernel's dump when they differ.
//!
//! Invariant: for a model equal to a pool, this equals the engine's `dump` of that pool
//! byte for byte (pinned by the tests of `kernel::sides`, on every checkpoint of drawn
//! workloads and on a restored 17,000-mapping image).

use engine::tools::xml_write::{DumpFormat, DumpWriter};
use engine::tools::{XmlDevice, XmlSuperblock};
use model::Model;

/// The model's state as thin_dump would print it, on a pool of `data_block_sectors`.
pub fn model_dump(model: &Model, data_block_sectors: u32) -> Vec<u8> {
    let cur = model.current();
    let needs_check = model.needs_check().unwrap_or(false);
    let mut out = DumpWriter::new(Vec::new(), DumpFormat::Xml);
    let written = (|| {
        out.superblock(&XmlSuperblock {
            uuid: String::new(),
            time: cur.time,
            transaction: cur.trans_id,
            flags: u32::from(needs_check),
            // What the kernel and the engine write (the format's version 2).
            version: 2,
            data_block_size: data_block_sectors,
            nr_data_blocks: cur.data_blocks,
            metadata_snap: None,
        })?;
        for (&id, d) in &cur.devices {
            out.begin_device(&XmlDevice {
                dev_id: id,
                mapped_blocks: d.mappings.len() as u64,
                transaction: d.transaction_id,
                creation_time: d.creation_time,
                snap_time: d.snapshotted_time,
            })?;
            for (vblock, m) in d.mappings.iter() {
                out.mapping(vblock, m.data_block, m.time)?;
            }
            out.end_device()?;
        }
        out.end_superblock()
    })();
    // Ids and vblocks come out of ordered maps, and a Vec cannot fail to take bytes.
    written.expect("the model's devices and vblocks ascend");
    out.finish().expect("the dump was completed")
}
