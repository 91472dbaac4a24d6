//! What the kernel leaves for the judges to read: a metadata image it wrote, opened
//! read-only in thinsim's engine, and its pool's `dmsetup status` line held against a model
//! state. The differential, the reopen check and the two-sided dumps all read through here,
//! so none of them imports another for it.

use super::workload::PoolFeatures;
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
/// total> <data used>/<data total> <held root or -> <mode> <discard feature> <no-space
/// feature> …`. The mode must be `out_of_data_space` exactly when the emulation is out of
/// data space, else `rw`. The features must be the table's, except where the kernel
/// changes them on its own: it turns discard passdown off when the data device cannot
/// discard, and a queueing pool reports `error_if_no_space` once its timeout has fired
/// (until it resumes), so those two are only held to what the kernel cannot choose.
pub fn compare_status(
    line: &str,
    model: &model::Model,
    features: &PoolFeatures,
    out_of_data_space: bool,
) -> Result<(), String> {
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
    let mode = if out_of_data_space { "out_of_data_space" } else { "rw" };
    if f[7] != mode {
        d.push(format!("mode {}, expected {mode}", f[7]));
    }
    let (discard, no_space) = features.status_words();
    let discard_ok = f.get(8).is_some_and(|w| *w == discard || *w == "no_discard_passdown");
    let no_space_ok = f.get(9).is_some_and(|w| {
        *w == no_space || (!features.error_if_no_space && *w == "error_if_no_space")
    });
    if !discard_ok || !no_space_ok {
        d.push(format!(
            "features {:?} {:?}, expected {discard} and {no_space}",
            f.get(8),
            f.get(9)
        ));
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(d.join("; "))
    }
}
