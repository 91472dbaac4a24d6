//! Target `xml_restore`: arbitrary bytes as thin_dump XML through `restore` onto a small
//! memory device. Oracles: no panic; a refusal is a typed error (with line and column for
//! parse errors); an accepted input gives an image `check` calls clean whose devices hold
//! exactly as many mappings as the XML listed.
//! Canary: the harness counts a `range_mapping` as one mapping.

use engine::io::MemoryDevice;
use engine::tools::restore;
use engine::tools::xml_read::{XmlEvent, XmlReader};

/// A memory device the harness keeps a handle to while the pool owns a clone.
pub type Shared = engine::io::Shared<MemoryDevice>;

pub fn shared_memory(nr_blocks: u64) -> Shared {
    Shared::new(MemoryDevice::new(nr_blocks))
}

pub fn run(data: &[u8], canary: bool) -> Result<(), String> {
    let dev = shared_memory(512);
    let Ok(_) = restore::restore(std::io::Cursor::new(data), Box::new(dev.clone())) else {
        return Ok(());
    };
    let report = engine::tools::check::check(Box::new(dev.copy()));
    if !report.is_clean() {
        return Err(format!("restored image is not clean: {:?}", report.findings.first()));
    }
    let listed = count_mappings(data, canary)?;
    let pool = engine::thin::Pool::open_image(Box::new(dev.copy())).map_err(|e| e.to_string())?;
    let restored: u64 =
        pool.devices().map_err(|e| e.to_string())?.values().map(|d| d.mapped_blocks).sum();
    if restored != listed {
        return Err(format!("XML lists {listed} mappings, restored pool has {restored}"));
    }
    Ok(())
}

fn count_mappings(data: &[u8], canary: bool) -> Result<u64, String> {
    let mut reader = XmlReader::new(data);
    let mut n = 0u64;
    while let Some(ev) = reader.next_event().map_err(|e| e.to_string())? {
        if let XmlEvent::Mapping { length, .. } = ev {
            n += if canary { 1 } else { length };
        }
    }
    Ok(n)
}
