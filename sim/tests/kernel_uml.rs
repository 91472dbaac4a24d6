//! The real kernel, end to end: one short workload run in Linux's dm-thin under user-mode
//! Linux (differential and crash mode must agree), and then the crash judge fed that run's
//! real log with the kernel's ordering broken in each way the judge exists to catch: it
//! must name each one.
//!
//! Needs a UML kernel this host can boot: the one `sim/kernel/build-uml.sh` built (cached
//! outside the clone), else Debian's (`apt-get install -y user-mode-linux dmsetup kmod`)
//! where the host allows (not on a host with AMX). Without one the test says so, in the
//! same words `thinsim kernel` uses, and passes, except under `CI=true`, where it fails: CI
//! installs and builds one, so its absence there is a broken CI, not a reason to skip.

use sim::kernel::crash::held_root_rule;
use sim::kernel::crash::CrashFinding;
use sim::kernel::defects::{Defect, DefectStatus};
use sim::kernel::differential::{judge_log, run_workload};
use sim::kernel::durability::DataProblem;
use sim::kernel::logwrites::{self, Entry, Log};
use sim::kernel::reopen::{reopen, ReopenFinding};
use sim::kernel::script::Layout;
use sim::kernel::uml::{KernelChoice, UmlError, UmlKernel};
use sim::kernel::{draw, workload::Workload};
use std::path::Path;

fn kernel() -> Option<UmlKernel> {
    match UmlKernel::choose(KernelChoice::Auto) {
        Ok(k) => Some(k),
        Err(e @ (UmlError::Missing(_) | UmlError::HostUnsupported { .. })) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no UML kernel this host can boot: {e}"
            );
            eprintln!("SKIPPED kernel_uml: {e}");
            None
        }
        Err(e) => panic!("finding the UML kernel: {e}"),
    }
}

/// `log` with `edit` applied to its entries, renumbered, written to `dir/name`.
fn mutant(
    dir: &Path,
    name: &str,
    log: &Log,
    edit: impl FnOnce(&mut Vec<Entry>),
) -> std::path::PathBuf {
    let mut entries = log.entries.clone();
    edit(&mut entries);
    for (i, e) in entries.iter_mut().enumerate() {
        e.index = i as u64;
    }
    let bytes = logwrites::encode(&Log { sector_size: log.sector_size, entries }).expect("encodes");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write mutant log");
    path
}

fn is_data(e: &Entry, l: &Layout) -> bool {
    !e.is_mark() && e.sector >= l.data_offset_sectors
}

fn is_meta_flush(e: &Entry, l: &Layout) -> bool {
    e.is_flush() && !e.is_mark() && e.nr_sectors == 0 && e.sector < l.data_offset_sectors
}

#[test]
fn the_kernel_agrees_and_every_broken_ordering_of_its_log_is_caught() {
    let Some(k) = kernel() else { return };
    // The first seed that starts from a blank pool (the kernel formats it).
    let w: Workload = (0..)
        .map(|seed| draw::draw(seed, 120).expect("draws"))
        .find(|w| w.shape.prepopulation.is_none())
        .expect("a blank pool");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_workload(&k, &w, dir.path(), Path::new(env!("CARGO_BIN_EXE_thinsim")), 4, None)
        .expect("the guest ran");
    assert!(run.difference.is_none(), "the kernel differs: {:?}", run.difference);
    assert_eq!(run.held_root, Defect::HeldRootOutsideCommit.status(&run.kernel));
    let c = run.crash.expect("crash mode ran");
    // The run kept what it started from: its log judges the same on its own, and as a
    // kernel with the held-root fix only if it showed no held-root-only superblock.
    let alone =
        sim::kernel::differential::judge_saved(dir.path(), 4, DefectStatus::Present, &run.kernel)
            .expect("the kept run judges");
    assert_eq!((alone.finding, alone.stats.commits), (None, c.commits));
    let as_fixed =
        sim::kernel::differential::judge_saved(dir.path(), 4, DefectStatus::Fixed, &run.kernel)
            .expect("the kept run judges");
    assert_eq!(as_fixed.finding, held_root_rule(DefectStatus::Fixed, &run.kernel, &alone.stats));
    assert!(c.commits > 10 && c.images > 40, "{c:?}");
    assert!(c.data_blocks_verified > 0 && c.quiescent_commits > 0, "{c:?}");
    assert!(c.acks_checked > 0 && c.ack_blocks_checked > 0, "{c:?}");

    let hints = sim::kernel::differential::saved_hints(dir.path(), &w).expect("results");
    let e = draw::expect_hinted(&w, true, &hints).expect("replays");
    // Every checkpoint image the kernel wrote was walked for its structure, and the walk
    // saw what the model holds there: the devices, and a mapping tree per device.
    assert_eq!(run.structure.images, e.checkpoints.len() as u64, "{:?}", run.structure);
    let most_devices = e.checkpoints.iter().map(|(_, m, _)| m.devices().len()).max();
    assert_eq!(Some(run.structure.gauges.devices as usize), most_devices);
    assert!(run.structure.gauges.mapping_leaves > 0 && run.structure.gauges.details_height >= 1);
    // The tools' -m read every checkpoint that held a metadata snapshot, with the live
    // metadata made unreadable (this workload holds one at 3 of its checkpoints).
    let holding =
        e.checkpoints.iter().filter(|(_, m, _)| m.held_snapshot_devices().is_some()).count();
    assert!(holding > 0, "the workload holds a metadata snapshot at a checkpoint");
    assert_eq!(run.held.checkpoints, holding as u64, "{:?}", run.held);
    assert!(run.held.live_blocks_damaged >= run.held.checkpoints, "{:?}", run.held);
    let layout = Layout::of(&w);
    let bytes = std::fs::read(dir.path().join("log.img")).expect("the run's log");
    let log = logwrites::parse(&bytes).expect("parses");
    let judge = |path: &Path| judge_log(&w, &e, path, None, 8, 0).expect("judged");

    // Crash images the engine passed, reopened in the kernel: they open there and agree.
    // Then the same images told a wrong state, and one image broken: both are caught.
    let sampled = judge_log(&w, &e, &dir.path().join("log.img"), None, 4, 3).expect("judged");
    assert_eq!(sampled.samples.len(), 3);
    let thinsim = Path::new(env!("CARGO_BIN_EXE_thinsim"));
    let r = reopen(&k, dir.path(), thinsim, &w, &sampled.samples, &e.points).expect("boots");
    assert_eq!((r.reopened, r.finding), (3, None));
    let mut wrong = sampled.samples.clone();
    for s in &mut wrong {
        s.point = e.points.len() - 1 - usize::from(s.point == e.points.len() - 1);
    }
    let r = reopen(&k, dir.path(), thinsim, &w, &wrong, &e.points).expect("boots");
    assert!(
        matches!(r.finding, Some(ReopenFinding::Status { .. } | ReopenFinding::Changed { .. })),
        "{r:?}"
    );
    let mut broken = sampled.samples.clone();
    broken[0].device.block_mut(0)[100] ^= 0xff; // the superblock's checksum no longer holds
    let r = reopen(&k, dir.path(), thinsim, &w, &broken[..1], &e.points).expect("boots");
    assert!(matches!(r.finding, Some(ReopenFinding::Refused { .. })), "{r:?}");

    // The log re-encoded as it is: still no finding (the encoder loses nothing).
    let same = mutant(dir.path(), "same.log", &log, |_| {});
    let v = judge(&same);
    assert_eq!(v.finding, None);
    assert_eq!(v.stats.commits, c.commits);

    // A pool target without its pre-commit flush (and no flush ever reaching the data
    // device): the data a commit publishes, or a flush promised, is not durable.
    let p = mutant(dir.path(), "no-data-flush.log", &log, |es| {
        es.retain(|e| !(e.is_flush() && e.nr_sectors == 0 && is_data(e, &layout)))
    });
    match judge(&p).finding {
        Some(CrashFinding::DataUnpublishable {
            problem: DataProblem::NotDurable { .. }, ..
        })
        | Some(CrashFinding::AckBroken { problem: DataProblem::NotDurable { .. }, .. }) => {}
        other => panic!("no data flush: {other:?}"),
    }

    // Each FUA data write completed only after the op that made it returned (its `ack`
    // mark): the promise was given before the data was written.
    let p = mutant(dir.path(), "fua-after-ack.log", &log, |es| {
        let mut out: Vec<Entry> = Vec::with_capacity(es.len());
        let mut held: Vec<Entry> = Vec::new();
        for e in es.drain(..) {
            let ack = e.mark.as_deref().is_some_and(|m| m.starts_with("ack"));
            if is_data(&e, &layout) && e.is_fua() && e.nr_sectors > 0 {
                held.push(e);
                continue;
            }
            out.push(e);
            if ack {
                out.append(&mut held);
            }
        }
        out.append(&mut held);
        *es = out;
    });
    match judge(&p).finding {
        Some(CrashFinding::AckBroken { problem, .. })
            if !matches!(problem, DataProblem::MappingLost { .. }) => {}
        other => panic!("FUA data after the ack: {other:?}"),
    }

    // Every promise acknowledged before the metadata flush that made its commit durable.
    let p = mutant(dir.path(), "ack-early.log", &log, |es| {
        let mut out: Vec<Entry> = Vec::with_capacity(es.len());
        for e in es.drain(..) {
            if e.mark.as_deref().is_some_and(|m| m.starts_with("ack")) {
                if let Some(f) = out.iter().rposition(|x| is_meta_flush(x, &layout)) {
                    out.insert(f, e);
                    continue;
                }
            }
            out.push(e);
        }
        *es = out;
    });
    match judge(&p).finding {
        Some(CrashFinding::AckBroken { problem: DataProblem::MappingLost { .. }, .. }) => {}
        other => panic!("ack before its commit: {other:?}"),
    }

    // The superblock written before the flush of the blocks it names (commit without
    // its first flush): some crash image holds it without them.
    let p = mutant(dir.path(), "superblock-early.log", &log, |es| {
        for i in 1..es.len() {
            let sb = !is_data(&es[i], &layout) && es[i].sector == 0 && es[i].nr_sectors == 8;
            if sb && is_meta_flush(&es[i - 1], &layout) {
                es.swap(i - 1, i);
            }
        }
    });
    match judge(&p).finding {
        Some(
            CrashFinding::ImageUnopenable { .. }
            | CrashFinding::ImageWrong { .. }
            | CrashFinding::UnknownSuperblock { .. },
        ) => {}
        other => panic!("superblock before its flush: {other:?}"),
    }
}

/// Fault windows and a metadata exhaustion in the real kernel: a blank seed with a window
/// of each kind and an exhaustion agrees (the failed commit, the abort, read-only and fail
/// mode, the heals; out-of-metadata-space and the growth that ends it), and the judges can
/// fail: a heal image without needs_check after read-only, a status line that is not the
/// expected mode, a failed tool check, an exhaustion never reached, one far from the
/// engine's count, and one whose status is not out-of-metadata-space's are each named.
#[test]
fn fault_windows_and_exhaustion_agree_and_wrong_ones_are_caught() {
    use sim::kernel::differential::{
        compare, exhaust_hints, fault_tally, Difference, ExhaustFinding, HealFinding,
    };
    use sim::kernel::emulate::{ExhaustHint, Outcome};
    use sim::kernel::faults::Degraded;
    use sim::kernel::held::HeldTally;
    use sim::kernel::structure::Structure;
    use sim::kernel::uml::{parse_results, RunDir};
    use sim::kernel::workload::{KOp, MetaFault};
    let Some(k) = kernel() else { return };
    let has = |w: &Workload, f: MetaFault| w.ops.contains(&KOp::FaultMeta { fault: f });
    let w: Workload = (0..)
        .map(|seed| draw::draw(seed, 120).expect("draws"))
        .find(|w| {
            w.shape.prepopulation.is_none()
                && has(w, MetaFault::ErrorWrites)
                && has(w, MetaFault::ErrorAll)
                && w.ops.iter().any(|o| matches!(o, KOp::ExhaustMeta { .. }))
        })
        .expect("a blank seed with both kinds of window and an exhaustion");
    let dir = tempfile::tempdir().expect("tempdir");
    let thinsim = Path::new(env!("CARGO_BIN_EXE_thinsim"));
    let run = run_workload(&k, &w, dir.path(), thinsim, 0, None).expect("the guest ran");
    assert!(run.difference.is_none(), "seed {}: {:?}", w.seed, run.difference);
    let rd = RunDir { dir: dir.path().to_path_buf() };
    let results = std::fs::read_to_string(dir.path().join("results")).expect("results");
    let g = parse_results(&results).expect("parses");
    let hints = exhaust_hints(&w, &g);
    let e = draw::expect_hinted(&w, false, &hints).expect("replays");
    assert_eq!(run.faults, fault_tally(&e, None));
    assert!(run.faults.missing_required().is_empty(), "{}", run.faults.line());
    let judge = |g: &sim::kernel::uml::GuestResults| {
        compare(&w, &e, g, &rd, &mut HeldTally::default(), &mut Structure::default())
    };
    assert_eq!(judge(&g), None, "the saved run judges the same");
    let (heal, _, _, _) =
        e.heals.iter().find(|h| h.2 == Some(Degraded::ReadOnly)).expect("a read-only heal");
    let heal = *heal;
    // The image of the checkpoint that opened the window: the same state, no needs_check.
    let opened = w.ops[..heal].iter().rposition(|o| *o == KOp::Checkpoint).expect("opened");
    let saved = std::fs::read(rd.heal(heal)).expect("heal image");
    std::fs::copy(rd.checkpoint(opened), rd.heal(heal)).expect("copies");
    assert!(
        matches!(judge(&g), Some(Difference::Metadata { op, .. }) if op == heal),
        "{:?}",
        judge(&g)
    );
    std::fs::write(rd.heal(heal), saved).expect("restores");
    let mut wrong = g.clone();
    let at = wrong.heals.iter().position(|h| h.0 == heal).expect("reported");
    wrong.heals[at].2 = wrong.heals[at].2.replace(" ro ", " rw ");
    assert!(
        matches!(judge(&wrong), Some(Difference::Heal { op, finding: HealFinding::Mode { .. } }) if op == heal),
        "{:?}",
        judge(&wrong)
    );
    let mut failed = g.clone();
    failed.heals[at].1 = 1;
    assert!(
        matches!(
            judge(&failed),
            Some(Difference::Heal { finding: HealFinding::ToolCheck { exit: 1, .. }, .. })
        ),
        "{:?}",
        judge(&failed)
    );

    // The exhaustion: never reached (the kernel created `limit` and refused nothing), far
    // from the engine's count, and a status line that is not out-of-metadata-space's.
    let (xi, x, _) = e.exhausts.first().expect("an exhaustion");
    let xi = *xi;
    let Some(KOp::ExhaustMeta { limit, .. }) = w.ops.get(xi).cloned() else { panic!("op {xi}") };
    let at = g.exhausts.iter().position(|h| h.0 == xi).expect("reported");
    let judge_with = |g: &sim::kernel::uml::GuestResults| {
        let e = draw::expect_hinted(&w, false, &exhaust_hints(&w, g)).expect("replays");
        compare(&w, &e, g, &rd, &mut HeldTally::default(), &mut Structure::default())
    };
    let mut never = g.clone();
    never.exhausts[at].1 = limit;
    never.outcomes[xi] = (Outcome::Ok, String::new());
    assert!(
        matches!(judge_with(&never), Some(Difference::Exhaustion { op, finding: ExhaustFinding::NotReached { .. } }) if op == xi),
        "{:?}",
        judge_with(&never)
    );
    let mut far = g.clone();
    far.exhausts[at].1 = x.created + draw::EXHAUST_DRIFT_BOUND + 8;
    assert!(
        matches!(
            judge_with(&far),
            Some(Difference::Exhaustion { finding: ExhaustFinding::Drift { .. }, .. })
        ),
        "{:?}",
        judge_with(&far)
    );
    let mut writable = g.clone();
    writable.exhausts[at].2 = writable.exhausts[at].2.replace(" ro ", " rw ");
    assert!(
        matches!(
            judge_with(&writable),
            Some(Difference::Exhaustion { finding: ExhaustFinding::Status { .. }, .. })
        ),
        "{:?}",
        judge_with(&writable)
    );
    assert_eq!(hints, vec![ExhaustHint { created: x.created, refused: true }]);
}
