//! Campaign reports: `summary.json` (schema below, version [`SCHEMA_VERSION`]) and a human
//! page `index.html` with SVG charts. Shard reports merge into one.
//!
//! # `summary.json` schema (version 1)
//! ```text
//! schema_version   1
//! name             campaign name
//! canary           engine canary the campaign ran, or null
//! seeds            { ranges: [[first, last_exclusive], ...], shards: ["K/N", ...], runs }
//! stats            RunStats: runs, steps, ops {OpKind: n}, commits, aborts, crashes,
//!                  crashes_in_commit, recoveries, crash_images_checked, image_checks,
//!                  commit_checks (full verifications), incremental_checks,
//!                  metadata_exhausted, data_full, metadata_resizes,
//!                  data_resizes, threshold_callbacks, outcomes {a_exact, a_new_state,
//!                  b_recovered, b_detected, b_undetectable, c_errors, c_aborts,
//!                  c_fail_modes, c_recovered}, undetectable_reasons {why: n}
//! coverage         the disk's fault × phase matrix: cells [{fault, hit, in_commit,
//!                  snap_held, count}], by_label {phase: n}, crash_points, crash_images
//! faults           {FaultKind: count}   (row totals of the matrix)
//! expected_faults  {FaultKind: expected count from the runs' rates and I/O}
//! expected_cells   [{fault, hit, in_commit, snap_held, count}]  expected count per cell
//! coverage_gaps    [reason]  (non-empty fails the campaign)
//! classes          {RunClass: {runs, steps, crash_images, run_seconds}}
//! structure        {name: count}  the engine's structural counters (`report::structure`)
//! structure_runs   {name: runs}   per enforced counter, the runs that reached it alone
//! structure_table  [{name, at_least, count, runs_reaching, classes, runs, min_runs, gap}]
//! structure_gaps   [reason]  (non-empty fails the campaign)
//! oracle_table     [{oracle, due_by, due, ran, fired, gap}]  every oracle (`report::oracles`)
//! oracle_gaps      [reason]  (non-empty fails the campaign)
//! failures         [{signature, count, seeds: [first few], first: Failure}]
//! wall_seconds     summed over shards
//! throughput       {runs_per_s, steps_per_s, crash_images_per_s}
//! ```
//!
//! # Reachability (when a zero count fails the campaign)
//! Conservative by design, so a gap is a real gap: a fault kind is *reachable* when the
//! runs' rates and measured I/O counts make its expected count at least
//! [`REACHABLE_EXPECTED`] (the chance of zero is then below e^-30, even allowing for the
//! steps run with faults off). Power loss is reachable once the campaign cut power inside
//! at least [`REACHABLE_EXPECTED`] commits; a crash drop once it crashed that often.
//! The same holds cell by cell (block kind × inside a commit or not × metadata snapshot held
//! or not) for every fault drawn with a fixed chance: per I/O call (read EIO; lost,
//! misdirected and EIO writes; flush EIO), per read that reached the media (latent errors,
//! bit rot) and per write pending at a crash (drops). The disk counts the draws per cell,
//! each run multiplies them by its rates (`expected_cells`), and a cell expected at least
//! [`REACHABLE_EXPECTED`] times that never fired is a gap. Tears and stale versions depend
//! on the atomic unit and on write order, not on one fixed chance, so they are enforced per
//! kind, as are power losses.

mod html;
pub mod oracles;
pub mod structure;

use crate::disk::{cells_as_list, CoverageKey, FaultCoverage, FaultKind};
use crate::runner::{Failure, RunClass, RunOutcome, RunStats};
use oracles::OracleRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use structure::{ClassStats, StructureCounts, StructureRow};

pub use html::render_html;

pub const SCHEMA_VERSION: u32 = 1;

/// Expected count above which a fault kind that never fired fails the campaign.
pub const REACHABLE_EXPECTED: f64 = 30.0;

/// Most seeds listed per failure signature.
const SEEDS_PER_FAILURE: usize = 10;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seeds {
    pub ranges: Vec<[u64; 2]>,
    pub shards: Vec<String>,
    pub runs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailureGroup {
    pub signature: String,
    pub count: u64,
    pub seeds: Vec<u64>,
    pub first: Failure,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub runs_per_s: f64,
    pub steps_per_s: f64,
    pub crash_images_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub name: String,
    pub canary: Option<String>,
    pub seeds: Seeds,
    pub stats: RunStats,
    pub coverage: FaultCoverage,
    pub faults: BTreeMap<FaultKind, u64>,
    pub expected_faults: BTreeMap<FaultKind, f64>,
    /// Expected count per coverage cell (same list form as the matrix).
    #[serde(default, with = "cells_as_list")]
    pub expected_cells: BTreeMap<CoverageKey, f64>,
    pub coverage_gaps: Vec<String>,
    /// Runs, crash images and run time per class of run.
    #[serde(default)]
    pub classes: BTreeMap<RunClass, ClassStats>,
    /// The engine's structural counters over the campaign (see [`structure`]).
    #[serde(default)]
    pub structure: StructureCounts,
    /// Per enforced counter, the runs that reached it on their own.
    #[serde(default)]
    pub structure_runs: BTreeMap<String, u64>,
    /// The enforced structural rows, and the reachable ones at zero (these fail the campaign).
    #[serde(default)]
    pub structure_table: Vec<StructureRow>,
    #[serde(default)]
    pub structure_gaps: Vec<String>,
    /// Every oracle with how often it was due, ran and fired (see [`oracles`]).
    #[serde(default)]
    pub oracle_table: Vec<OracleRow>,
    /// Oracles that were due and never ran (these fail the campaign).
    #[serde(default)]
    pub oracle_gaps: Vec<String>,
    pub failures: Vec<FailureGroup>,
    pub wall_seconds: f64,
    pub throughput: Throughput,
}

impl Summary {
    pub fn new(name: &str, canary: Option<String>) -> Summary {
        Summary {
            schema_version: SCHEMA_VERSION,
            name: name.to_owned(),
            canary,
            ..Summary::default()
        }
    }

    /// Adds one run (outcomes must be added in seed order for a deterministic report).
    pub fn add(&mut self, o: &RunOutcome) {
        self.add_timed(o, 0.0);
    }

    /// [`Summary::add`] with the seconds the run took (per-class throughput).
    pub fn add_timed(&mut self, o: &RunOutcome, run_seconds: f64) {
        let class = ClassStats {
            runs: 1,
            faulty_runs: u64::from(o.options.disk.injects_beyond_class_a()),
            steps: o.stats.steps,
            crash_images: o.stats.crash_images_checked,
            crash_images_memo: o.stats.crash_images_memo,
            run_seconds,
        };
        self.classes.entry(o.options.class).or_default().merge(&class);
        let run = StructureCounts::of_run(&o.structure, &o.crossings);
        for (k, n) in structure::reached_by_run(&run) {
            *self.structure_runs.entry(k).or_insert(0) += n;
        }
        self.structure.merge(&run);
        self.seeds.runs += 1;
        self.stats.merge(&o.stats);
        self.coverage.merge(&o.coverage);
        for (k, e) in &o.expected_faults {
            *self.expected_faults.entry(*k).or_insert(0.0) += e;
        }
        for (k, e) in &o.expected_cells {
            *self.expected_cells.entry(*k).or_insert(0.0) += e;
        }
        if let Some(f) = &o.failure {
            self.add_failure(f, 1, &[o.seed]);
        }
    }

    fn add_failure(&mut self, f: &Failure, count: u64, seeds: &[u64]) {
        let sig = f.signature();
        match self.failures.iter_mut().find(|g| g.signature == sig) {
            Some(g) => {
                g.count += count;
                for s in seeds {
                    if g.seeds.len() < SEEDS_PER_FAILURE {
                        g.seeds.push(*s);
                    }
                }
            }
            None => self.failures.push(FailureGroup {
                signature: sig,
                count,
                seeds: seeds.iter().copied().take(SEEDS_PER_FAILURE).collect(),
                first: f.clone(),
            }),
        }
    }

    /// Adds a shard's summary.
    pub fn merge(&mut self, o: &Summary) {
        self.seeds.ranges.extend(&o.seeds.ranges);
        self.seeds.shards.extend(o.seeds.shards.iter().cloned());
        self.seeds.runs += o.seeds.runs;
        self.stats.merge(&o.stats);
        self.coverage.merge(&o.coverage);
        for (k, e) in &o.expected_faults {
            *self.expected_faults.entry(*k).or_insert(0.0) += e;
        }
        for (k, e) in &o.expected_cells {
            *self.expected_cells.entry(*k).or_insert(0.0) += e;
        }
        for g in &o.failures {
            self.add_failure(&g.first, g.count, &g.seeds);
        }
        for (k, c) in &o.classes {
            self.classes.entry(*k).or_default().merge(c);
        }
        self.structure.merge(&o.structure);
        for (k, n) in &o.structure_runs {
            *self.structure_runs.entry(k.clone()).or_insert(0) += n;
        }
        self.wall_seconds += o.wall_seconds;
        if self.canary.is_none() {
            self.canary.clone_from(&o.canary);
        }
    }

    /// Derived fields: row totals, coverage gaps, throughput.
    pub fn finalize(&mut self, wall_seconds: Option<f64>) {
        if let Some(w) = wall_seconds {
            self.wall_seconds = w;
        }
        self.faults = FaultKind::ALL.iter().map(|k| (*k, self.coverage.total(*k))).collect();
        self.coverage_gaps = coverage_gaps(self);
        self.structure_table =
            structure::rows(&self.structure, &self.structure_runs, &self.classes);
        self.structure_gaps = structure::gaps(&self.structure_table);
        self.oracle_table = oracles::rows(self);
        self.oracle_gaps = oracles::gaps(&self.oracle_table);
        let w = self.wall_seconds.max(1e-9);
        self.throughput = Throughput {
            runs_per_s: self.stats.runs as f64 / w,
            steps_per_s: self.stats.steps as f64 / w,
            crash_images_per_s: self.stats.crash_images_checked as f64 / w,
        };
    }

    /// Whether the campaign passed: no failure, no fault-coverage gap, no structural gap,
    /// no oracle that was due and never ran.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
            && self.coverage_gaps.is_empty()
            && self.structure_gaps.is_empty()
            && self.oracle_gaps.is_empty()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("summary.json"), json + "\n")?;
        std::fs::write(dir.join("index.html"), render_html(self))
    }

    pub fn read(dir: &Path) -> Result<Summary, String> {
        let path = dir.join("summary.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s: Summary =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "{}: schema version {} (this thinsim reads {SCHEMA_VERSION})",
                path.display(),
                s.schema_version
            ));
        }
        Ok(s)
    }
}

/// Keys that hold wall-clock figures or the report's own name: everything else in a summary
/// is a function of the code and the seeds.
const NOT_DETERMINISTIC: [&str; 4] = ["name", "wall_seconds", "run_seconds", "throughput"];

impl Summary {
    /// Where `self` and `other` differ in what the code and the seeds decide (wall-clock
    /// figures and the name left out), as `path: ours vs theirs` lines; empty when the two
    /// are the same campaign on the same code. CI compares the campaigns it runs against
    /// the reports checked in under `reports/`, so a stale report fails it.
    pub fn differences(&self, other: &Summary) -> Vec<String> {
        let strip = |s: &Summary| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            drop_keys(&mut v);
            v
        };
        let mut out = Vec::new();
        diff_values("", &strip(self), &strip(other), &mut out);
        out
    }
}

fn drop_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !NOT_DETERMINISTIC.contains(&k.as_str()));
            m.values_mut().for_each(drop_keys);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_keys),
        _ => {}
    }
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let at = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_values(&at(k), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_values(&at(&i.to_string()), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

/// The reachable fault kinds that never fired (see the module doc).
pub fn coverage_gaps(s: &Summary) -> Vec<String> {
    let mut gaps = Vec::new();
    for (k, e) in &s.expected_faults {
        if *e >= REACHABLE_EXPECTED && s.coverage.total(*k) == 0 {
            gaps.push(format!("{k:?}: expected about {e:.0} from the rates, fired 0 times"));
        }
    }
    for (cell, e) in &s.expected_cells {
        if *e >= REACHABLE_EXPECTED && s.coverage.count(cell) == 0 {
            gaps.push(format!(
                "{:?} on {:?} blocks {} a commit, metadata snapshot {}: expected about {e:.0} \
                 from the rates and the I/O in that cell, fired 0 times",
                cell.fault,
                cell.hit,
                if cell.in_commit { "inside" } else { "outside" },
                if cell.snap_held { "held" } else { "not held" },
            ));
        }
    }
    let cut = s.stats.crashes_in_commit as f64;
    if cut >= REACHABLE_EXPECTED && s.coverage.total(FaultKind::PowerLoss) == 0 {
        gaps.push(format!("PowerLoss: {cut} crashes inside commits, no power loss recorded"));
    }
    let crashes = s.stats.crashes as f64;
    if crashes >= REACHABLE_EXPECTED * 10.0 && s.coverage.total(FaultKind::CrashDrop) == 0 {
        gaps.push(format!("CrashDrop: {crashes} crashes, no pending write ever dropped"));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{HitKind, Phase};

    fn cell(fault: FaultKind, in_commit: bool) -> CoverageKey {
        CoverageKey { fault, hit: HitKind::LeafNode, in_commit, snap_held: false }
    }

    #[test]
    fn a_reachable_cell_that_never_fired_is_a_gap() {
        let mut s = Summary::new("t", None);
        // Lost writes fired, but only outside commits; inside, 40 were expected.
        let outside = Phase { in_commit: false, ..Phase::IDLE };
        s.coverage.record(FaultKind::LostWrite, HitKind::LeafNode, &outside);
        s.expected_cells.insert(cell(FaultKind::LostWrite, false), 35.0);
        s.expected_cells.insert(cell(FaultKind::LostWrite, true), 40.0);
        // Below the reachability bound: not enforced.
        s.expected_cells.insert(cell(FaultKind::WriteEio, true), REACHABLE_EXPECTED - 1.0);
        s.finalize(Some(1.0));
        assert_eq!(s.coverage_gaps.len(), 1, "{:?}", s.coverage_gaps);
        assert!(s.coverage_gaps[0].contains("LostWrite on LeafNode blocks inside a commit"));
        assert!(!s.passed());
    }

    #[test]
    fn expected_cells_survive_json_and_merge() {
        let mut a = Summary::new("a", None);
        a.expected_cells.insert(cell(FaultKind::ReadEio, false), 12.5);
        let json = serde_json::to_string(&a).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expected_cells, a.expected_cells);
        let mut m = Summary::new("m", None);
        m.merge(&a);
        m.merge(&back);
        assert_eq!(m.expected_cells[&cell(FaultKind::ReadEio, false)], 25.0);
    }
}
