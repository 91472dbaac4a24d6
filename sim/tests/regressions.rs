//! Every regression in `corpus/regressions/` replays: a trace per bug found, each opening
//! with two comment lines (what broke, what fixed it). On the real engine every one must
//! pass; a canary regression (its trace names an engine canary) must also fail with its
//! recorded signature on the canary build (`cargo test --features canary`), so the
//! regression is known to still catch what it was made for.
//!
//! And the `explore` workloads of `corpus/explore/` judge every crash state they reach.

use sim::runner::{self, Trace};
use std::path::{Path, PathBuf};

fn traces(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_regression_passes_on_the_real_engine() {
    let files = traces("corpus/regressions");
    assert!(files.len() >= 8, "regressions: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        let comments: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            comments.len() >= 2,
            "{}: needs two comment lines (what broke, what fixed it)",
            f.display()
        );
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.len() > 5
                && name[..4].bytes().all(|b| b.is_ascii_digit())
                && name.as_bytes()[4] == b'-',
            "{name}: regressions are named NNNN-slug.trace"
        );
        let mut t = Trace::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        t.canary = None;
        let out = runner::replay(&t);
        assert!(out.invalid.is_none(), "{}: {:?}", f.display(), out.invalid);
        if let Some(fail) = out.failure {
            panic!("{}: fails on the real engine:\n{fail}", f.display());
        }
    }
}

#[cfg(feature = "canary")]
#[test]
fn every_canary_regression_fails_on_the_canary_build() {
    let mut seen = std::collections::BTreeSet::new();
    for f in traces("corpus/regressions") {
        let t = Trace::read(&f).expect("parses");
        let Some(canary) = t.canary.clone() else { continue };
        let expect = t.expect.clone().expect("a canary regression records its failure");
        let out = runner::replay(&t);
        let got = out.failure.map(|f| f.signature());
        assert_eq!(got.as_deref(), Some(expect.signature.as_str()), "{}", f.display());
        seen.insert(canary);
    }
    let all: std::collections::BTreeSet<String> =
        runner::CANARIES.iter().map(|c| c.to_string()).collect();
    assert_eq!(seen, all, "every canary has a regression");
}

/// Passing is not enough for a class B regression: the damage its trace plants must be
/// seen. A harness that misses it (the failure this regression was made for) passes too.
#[test]
fn a_misdirected_superblock_write_after_a_metadata_resize_is_detected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let t =
        Trace::read(&dir.join("0015-harness-misdirected-superblock-after-metadata-resize.trace"))
            .expect("parses");
    let out = runner::replay(&t);
    assert!(out.failure.is_none() && out.invalid.is_none(), "{:?}", out.failure);
    assert_eq!(out.coverage.total(sim::disk::FaultKind::MisdirectedWrite), 1, "the fault landed");
    let o = &out.stats.outcomes;
    assert_eq!(
        (o.b_recovered + o.b_detected, o.b_undetectable),
        (1, 0),
        "the stale superblock is detected once: {o:?}"
    );
}

#[test]
fn explore_workloads_judge_their_crash_states() {
    let files = traces("corpus/explore");
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let t = Trace::read(&f).expect("parses");
        let r = sim::explore::explore(&t, 256, None, |_, _| {}).expect("runs");
        assert!(r.failures.is_empty(), "{}: {:?}", f.display(), r.failures);
        // The exploration must have met crash points where order and subsets matter.
        assert!(r.nontrivial_points() >= 2, "{}: {:?}", f.display(), r.points);
        assert!(r.states() >= 200, "{}: only {} states", f.display(), r.states());
    }
}

/// A commit's own class B fault decides its verification: the lost leaf write of 0016 makes
/// the commit that wrote it verify in full (durable image, `check`, reopen) and be detected
/// there. The same trace without the fault verifies that commit incrementally, so the full
/// verification is the fault's doing, not the schedule's.
#[test]
fn a_commits_own_lost_write_makes_its_verification_full() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let path = dir.join("0016-harness-incremental-verify-ignored-commit-faults.trace");
    let t = Trace::read(&path).expect("parses");
    let out = runner::replay(&t);
    assert!(out.failure.is_none() && out.invalid.is_none(), "{:?}", out.failure);
    assert_eq!(out.coverage.total(sim::disk::FaultKind::LostWrite), 1, "the fault landed");
    let o = &out.stats.outcomes;
    assert_eq!((o.b_detected, o.b_undetectable), (1, 0), "detected: {o:?}");
    // Both commits: the first (no faults yet) incremental, the faulted one full.
    assert_eq!((out.stats.commits, out.stats.incremental_checks), (2, 1), "{:?}", out.stats);

    let text = std::fs::read_to_string(&path).expect("readable");
    let clean: String = text
        .lines()
        .map(|l| l.replace(r#", "faults": [{"io": 3, "fault": "lost_write"}]"#, "") + "\n")
        .collect();
    assert_ne!(clean, text, "the fault was removed");
    let out = runner::replay(&Trace::parse(&clean).expect("parses"));
    assert!(out.failure.is_none() && out.invalid.is_none(), "{:?}", out.failure);
    assert_eq!(out.stats.outcomes.b_detected, 0);
    assert_eq!((out.stats.commits, out.stats.incremental_checks), (2, 2), "{:?}", out.stats);
}

/// 0018 is judged by repair: the bit-rotten superblock is repaired from its own fields (not
/// a scan, which brought an older tree back), and what the repair keeps is only what the
/// model had.
#[test]
fn a_damaged_superblock_is_repaired_from_its_own_roots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let t = Trace::read(&dir.join("0018-repair-scan-picked-older-tree.trace")).expect("parses");
    let out = runner::replay(&t);
    assert!(out.failure.is_none() && out.invalid.is_none(), "{:?}", out.failure);
    let tally = out.stats.repair.get("BitRot").expect("repair ran after the bit rot");
    assert!(tally.repaired >= 1, "{tally:?}");
    assert_eq!(tally.from_scan, 0, "no scan while the superblock has its magic: {tally:?}");
    assert!(tally.from_damaged_superblock >= 1, "{tally:?}");
    assert_eq!(tally.stale_from_unverified_roots, 0, "nothing older came back: {tally:?}");
}
