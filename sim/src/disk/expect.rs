//! What a disk's configuration makes reachable: how often each fault kind should have
//! fired, given the I/O the disk saw, and how often each coverage cell should have. A
//! campaign whose expected count for a kind or a cell is large while its count is zero has
//! a fault that never fires (`report::coverage_gaps`).
//!
//! Everything here reads the fault kinds' own tables ([`FaultKind::drawn_on`],
//! [`FaultKind::rate`]), so a new fault kind drawn with a fixed chance is expected, and
//! enforced, without a line elsewhere.

use super::config::DiskConfig;
use super::coverage::{CoverageKey, ExposureKey, FaultKind, IoKind};
use super::trace_hash::IoStats;
use std::collections::BTreeMap;

/// How often each fault kind drawn per I/O call (reads, writes, flushes) should have fired
/// under `config` over `io` (the I/O while faults were on). Media faults (bit rot, latent
/// errors) are left out: which reads reach the media depends on the engine's cache; their
/// cells are expected from the exposure instead ([`expected_cells`]).
pub fn expected_faults(config: &DiskConfig, io: &IoStats) -> Vec<(FaultKind, f64)> {
    let writes = io.writes + io.fua_writes;
    FaultKind::ALL
        .iter()
        .filter_map(|&k| {
            let calls = match k.drawn_on()? {
                IoKind::Read => io.reads,
                IoKind::Write => writes,
                IoKind::Flush => io.flushes,
                IoKind::MediaRead | IoKind::CrashPending => return None,
            };
            Some((k, per_million(k.rate(config), calls)))
        })
        .collect()
}

/// How often each coverage cell should have fired: for every cell of exposure (draws of a
/// fault chance, by block kind and phase), the chance of each fault kind drawn there times
/// the draws. Kinds at rate 0 give no cell.
pub fn expected_cells(
    config: &DiskConfig,
    exposure: &BTreeMap<ExposureKey, u64>,
) -> Vec<(CoverageKey, f64)> {
    let mut out = Vec::new();
    for (e, n) in exposure {
        for k in FaultKind::ALL.into_iter().filter(|k| k.drawn_on() == Some(e.io)) {
            let ppm = k.rate(config);
            if ppm > 0 {
                let key = CoverageKey {
                    fault: k,
                    hit: e.hit,
                    in_commit: e.in_commit,
                    snap_held: e.snap_held,
                };
                out.push((key, per_million(ppm, *n)));
            }
        }
    }
    out
}

fn per_million(ppm: u32, n: u64) -> f64 {
    f64::from(ppm) / 1e6 * n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{FaultRates, HitKind};

    #[test]
    fn each_kind_is_expected_from_its_own_io_and_rate() {
        let mut config = DiskConfig::none();
        config.rates =
            FaultRates { lost_write_ppm: 1000, flush_eio_ppm: 500_000, ..FaultRates::ZERO };
        let io = IoStats {
            reads: 10_000,
            writes: 3000,
            fua_writes: 1000,
            flushes: 8,
            ..Default::default()
        };
        let e: BTreeMap<FaultKind, f64> = expected_faults(&config, &io).into_iter().collect();
        assert_eq!(e[&FaultKind::LostWrite], 4.0, "per write, FUA included");
        assert_eq!(e[&FaultKind::FlushEio], 4.0);
        assert_eq!(e[&FaultKind::ReadEio], 0.0);
        assert!(!e.contains_key(&FaultKind::BitRot), "media faults come from the exposure");
        let cell =
            |io| ExposureKey { io, hit: HitKind::LeafNode, in_commit: true, snap_held: false };
        let exposure =
            BTreeMap::from([(cell(IoKind::Write), 2000), (cell(IoKind::CrashPending), 10)]);
        let cells = expected_cells(&config, &exposure);
        let faults: Vec<FaultKind> = cells.iter().map(|(k, _)| k.fault).collect();
        assert_eq!(faults, [FaultKind::LostWrite, FaultKind::CrashDrop], "rate 0 gives no cell");
        assert_eq!(cells[0].1, 2.0);
        // DiskConfig::none() applies half the pending writes and tears a fifth: drops 30 %.
        assert!((cells[1].1 - 3.0).abs() < 1e-9, "{cells:?}");
    }
}
