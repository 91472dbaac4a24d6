//! What the kernel leaves for the judges to read: a metadata image it wrote, opened
//! read-only in thinsim's engine, and its pool's `dmsetup status` line held against a model
//! state. The differential, the reopen check and the two-sided dumps all read through here,
//! so none of them imports another for it.

use engine::io::MemoryDevice;
use engine::thin::Pool;
use std::path::Path;

/// Opens a metadata image the kernel wrote, read-only, in memory.
pub fn open_kernel_image(path: &Path) -> Result<(MemoryDevice, Pool), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dev = MemoryDevice::from_bytes(&bytes);
    let pool = Pool::open_image(dev.to_device()).map_err(|e| e.to_string())?;
    Ok((dev, pool))
}

/// `dmsetup status` of a thin-pool: `start len thin-pool <trans id> <meta used>/<meta
/// total> <data used>/<data total> <held root or -> <mode> …`.
pub fn compare_status(line: &str, model: &model::Model) -> Result<(), String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 || f[2] != "thin-pool" {
        return Err(format!("unreadable status {line:?}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("unreadable status {line:?}"));
    let cur = model.current();
    let tid = num(f[3])?;
    let (used, total) =
        f[5].split_once('/').ok_or_else(|| format!("unreadable status {line:?}"))?;
    let (used, total) = (num(used)?, num(total)?);
    let free = model.free_data_blocks().map_err(|e| format!("model: {e:?}"))?;
    let mut d = Vec::new();
    if tid != cur.trans_id {
        d.push(format!("transaction id {tid}, expected {}", cur.trans_id));
    }
    if total != cur.data_blocks || used != total - free {
        d.push(format!(
            "data {used}/{total}, expected {}/{}",
            cur.data_blocks - free,
            cur.data_blocks
        ));
    }
    if (f[6] != "-") != cur.held.is_some() {
        d.push(format!(
            "held root {}, expected {}",
            f[6],
            if cur.held.is_some() { "one" } else { "none" }
        ));
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(d.join("; "))
    }
}
