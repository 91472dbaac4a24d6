//! Every kernel-wing regression in `corpus/kernel-regressions/` holds: the emulation gives
//! its last op the recorded verdict, and every op before it replays (see
//! `sim::kernel::regression`). No kernel is needed: the bugs were in thinsim's
//! expectation of the kernel.

use sim::kernel::regression::{holds, KernelRegression, Verdict};
use std::path::{Path, PathBuf};

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/kernel-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn read(f: &Path) -> KernelRegression {
    let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}

#[test]
fn every_kernel_regression_holds() {
    let files = files();
    assert!(files.len() >= 4, "kernel regressions: {files:?}");
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.len() > 5 && name[..4].bytes().all(|b| b.is_ascii_digit()) && &name[4..5] == "-",
            "{name}: kernel regressions are named NNNN-slug.json"
        );
        let r = read(f);
        for (field, text) in [("broke", &r.broke), ("fixed", &r.fixed), ("found_by", &r.found_by)] {
            assert!(text.len() > 20, "{name}: say what {field}");
        }
        r.workload.shape.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        holds(&r.workload, &r.verdict).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Each verdict can fail: the same workloads with their last op changed (or, for a
/// checkpoint's mode, the op that set it removed) do not hold it (a regression that held
/// whatever the emulation said would pin nothing).
#[test]
fn a_changed_last_op_breaks_each_verdict() {
    for f in files() {
        let r = read(&f);
        let mut w = r.workload.clone();
        let last = w.ops.last_mut().expect("ops");
        match (&r.verdict, last) {
            (Verdict::FailsByItsFlush { .. }, sim::kernel::workload::KOp::Write { fua, .. }) => {
                *fua = false
            }
            (Verdict::ClockDependent { .. }, sim::kernel::workload::KOp::Discard { dev, .. }) => {
                *w.ops.last_mut().expect("ops") = sim::kernel::workload::KOp::Flush { dev: *dev }
            }
            // Without the exhaustion that replaced it, the pool stays out of data space.
            (Verdict::CheckpointMode { .. }, sim::kernel::workload::KOp::Checkpoint) => {
                w.ops.retain(|o| !matches!(o, sim::kernel::workload::KOp::ExhaustMeta { .. }))
            }
            (v, op) => panic!("{}: verdict {v:?} on {op:?}", f.display()),
        }
        assert!(holds(&w, &r.verdict).is_err(), "{}: held with its last op changed", f.display());
    }
}
