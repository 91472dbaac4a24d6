//! Target `xml_restore`: arbitrary bytes as thin_dump XML through `restore` onto a small
//! memory device. Oracles: no panic; a refusal is a typed error (with line and column for
//! parse errors); an accepted input gives an image `check` calls clean whose devices hold
//! exactly as many mappings as the XML listed.
//! Canary: the harness counts a `range_mapping` as one mapping.

use engine::io::{Block, BlockDevice, IoError, MemoryDevice};
use engine::thin::restore;
use engine::tools::xml_read::{XmlEvent, XmlReader};
use std::sync::{Arc, Mutex};

/// A memory device the harness keeps a handle to while the pool owns a clone.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<MemoryDevice>>);

pub fn shared_memory(nr_blocks: u64) -> Shared {
    Shared(Arc::new(Mutex::new(MemoryDevice::new(nr_blocks))))
}

pub fn shared_from(img: MemoryDevice) -> Shared {
    Shared(Arc::new(Mutex::new(img)))
}

impl Shared {
    pub fn image(&self) -> MemoryDevice {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn with<R>(&self, f: impl FnOnce(&mut MemoryDevice) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl BlockDevice for Shared {
    fn nr_blocks(&self) -> u64 {
        self.with(|d| d.nr_blocks())
    }
    fn read(&mut self, b: u64, buf: &mut Block) -> Result<(), IoError> {
        self.with(|d| d.read(b, buf))
    }
    fn write(&mut self, b: u64, buf: &Block) -> Result<(), IoError> {
        self.with(|d| d.write(b, buf))
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

pub fn run(data: &[u8], canary: bool) -> Result<(), String> {
    let dev = shared_memory(512);
    let Ok(_) = restore::restore(std::io::Cursor::new(data), Box::new(dev.clone())) else {
        return Ok(());
    };
    let report = engine::thin::check::check(Box::new(dev.image()));
    if !report.is_clean() {
        return Err(format!("restored image is not clean: {:?}", report.findings.first()));
    }
    let listed = count_mappings(data, canary)?;
    let pool = engine::thin::Pool::open_image(Box::new(dev.image())).map_err(|e| e.to_string())?;
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
