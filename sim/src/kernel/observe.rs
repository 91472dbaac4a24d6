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
    let mode = if out_of_data_space { "out_of_data_space" } else { "rw" };
    compare_status_in(line, model, features, mode)
}

/// The pool's status line right after it ran out of metadata space: [`compare_status`]'s
/// fields with the mode `ro`, needs_check not set (nothing was aborted), and every
/// metadata block counted used (the status reports the reserve as used, and the pool
/// entered out-of-metadata-space because the free count less the reserve was 0).
pub fn compare_exhausted_status(
    line: &str,
    model: &model::Model,
    features: &PoolFeatures,
) -> Result<(), String> {
    let mut d: Vec<String> =
        compare_status_in(line, model, features, "ro").err().into_iter().collect();
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.get(10) != Some(&"-") {
        d.push(format!("needs_check {:?}, expected -", f.get(10)));
    }
    match f.get(4).and_then(|m| m.split_once('/')) {
        Some((used, total)) if used == total => {}
        other => d.push(format!("metadata {other:?}: expected every block counted used")),
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(d.join("; "))
    }
}

fn compare_status_in(
    line: &str,
    model: &model::Model,
    features: &PoolFeatures,
    mode: &str,
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

/// The pool's status line before a heal, against the mode the emulation says it is in:
/// `Fail` alone in fail mode; `ro` with `needs_check` in read-only mode (its transaction
/// id and usage are the aborted transaction's in core, [H3], so they are not compared);
/// otherwise not degraded.
pub fn compare_heal_status(
    line: &str,
    mode: Option<super::faults::Degraded>,
) -> Result<(), String> {
    use super::faults::Degraded;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 4 || f[2] != "thin-pool" {
        return Err(format!("unreadable status {line:?}"));
    }
    let found = match (f[3], f.get(7).copied()) {
        ("Fail", _) => Some(Degraded::Fail),
        (_, Some("ro")) if f.get(10) == Some(&"needs_check") => Some(Degraded::ReadOnly),
        (_, Some("ro")) => Some(Degraded::OutOfMetadataSpace),
        (_, Some(_)) => None,
        (_, None) => return Err(format!("unreadable status {line:?}")),
    };
    if found != mode {
        return Err(format!("pool mode {found:?} before the heal, expected {mode:?}: {line:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{compare_exhausted_status, compare_heal_status};
    use crate::kernel::faults::Degraded;
    use crate::kernel::workload::PoolFeatures;

    #[test]
    fn an_exhausted_pool_is_read_only_unflagged_and_full() {
        let m = model::Model::new(64);
        let f = PoolFeatures::default();
        let full = "0 8 thin-pool 0 1024/1024 0/64 - ro discard_passdown error_if_no_space - 256";
        assert_eq!(compare_exhausted_status(full, &m, &f), Ok(()));
        let room = full.replace("1024/1024", "1000/1024");
        let e = compare_exhausted_status(&room, &m, &f).unwrap_err();
        assert!(e.contains("every block counted used"), "{e}");
        let rw = full.replace(" ro ", " rw ");
        assert!(compare_exhausted_status(&rw, &m, &f).unwrap_err().contains("mode rw"));
        let flagged = full.replace(" - 256", " needs_check 256");
        assert!(compare_exhausted_status(&flagged, &m, &f).unwrap_err().contains("needs_check"));
        let tid = full.replace("thin-pool 0 ", "thin-pool 4 ");
        assert!(compare_exhausted_status(&tid, &m, &f).unwrap_err().contains("transaction id"));
    }

    #[test]
    fn the_heal_status_names_the_mode() {
        let ro =
            "0 8 thin-pool 3 20/1024 5/64 - ro discard_passdown error_if_no_space needs_check 256";
        let rw = "0 8 thin-pool 3 20/1024 5/64 - rw discard_passdown error_if_no_space - 256";
        let ro_unflagged = ro.replace("needs_check", "-");
        assert_eq!(compare_heal_status(ro, Some(Degraded::ReadOnly)), Ok(()));
        assert_eq!(compare_heal_status("0 8 thin-pool Fail", Some(Degraded::Fail)), Ok(()));
        assert_eq!(compare_heal_status(rw, None), Ok(()));
        assert!(compare_heal_status(rw, Some(Degraded::ReadOnly)).is_err());
        assert!(compare_heal_status(ro, Some(Degraded::Fail)).is_err());
        assert!(compare_heal_status("0 8 thin-pool Fail", None).is_err());
        assert!(compare_heal_status(&ro_unflagged, Some(Degraded::ReadOnly)).is_err());
        assert_eq!(compare_heal_status(&ro_unflagged, Some(Degraded::OutOfMetadataSpace)), Ok(()));
        assert!(compare_heal_status("garbage", None).is_err());
    }
}
