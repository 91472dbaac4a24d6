//! Random operation sequences never panic the model and always keep its invariants:
//! the recounted logical references (never negative), mapped_count == number of mappings,
//! `creation_time <= snapshotted_time <= time`, live handles on existing devices. And the
//! change log that commit, abort and verification rely on is complete: the committed state
//! moves only at commits (to exactly the current state), abort and crash bring back exactly
//! the committed state, and `take_changes` names every key that changed since the last call.

use model::{Change, Errno, Handle, Model, PoolState};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
enum Op {
    CreateThin(u64),
    CreateSnap(u64, u64),
    Delete(u64),
    Commit,
    Abort,
    Crash,
    Close,
    Open(u64),
    CloseThin(usize),
    /// Allocate the lowest allocatable block and map it: the dm-thin provisioning path.
    Provision(u64, u64),
    Insert(usize, u64, u64),
    Remove(u64, u64),
    RemoveRange(u64, u64, u64),
    Inc(u64, u64),
    Dec(u64, u64),
    Resize(u64),
    SetTransactionId(bool, u64),
    Reserve,
    Release,
    ReadOnly,
    ReadWrite,
    SetNeedsCheck,
    Poison,
    Fail,
    Query(usize, u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..3u64;
    let v = 0..16u64;
    let b = 0..24u64;
    // Modes that refuse most calls until cleared (read-only, poison, fail) stay rare, so that
    // sequences spend most of their steps where mutations succeed.
    prop_oneof![
        6 => id.clone().prop_map(Op::CreateThin),
        4 => (id.clone(), id.clone()).prop_map(|(a, o)| Op::CreateSnap(a, o)),
        2 => id.clone().prop_map(Op::Delete),
        6 => Just(Op::Commit),
        2 => Just(Op::Abort),
        1 => Just(Op::Crash),
        1 => Just(Op::Close),
        8 => id.clone().prop_map(Op::Open),
        2 => any::<usize>().prop_map(Op::CloseThin),
        20 => (id.clone(), v.clone()).prop_map(|(i, v)| Op::Provision(i, v)),
        3 => (any::<usize>(), v.clone(), b.clone()).prop_map(|(h, v, b)| Op::Insert(h, v, b)),
        4 => (id.clone(), v.clone()).prop_map(|(i, v)| Op::Remove(i, v)),
        3 => (id.clone(), v.clone(), v.clone()).prop_map(|(i, x, y)| Op::RemoveRange(i, x, y)),
        3 => (b.clone(), b.clone()).prop_map(|(x, y)| Op::Inc(x, y)),
        3 => (b.clone(), b.clone()).prop_map(|(x, y)| Op::Dec(x, y)),
        2 => b.clone().prop_map(Op::Resize),
        2 => (any::<bool>(), 0..3u64).prop_map(|(s, n)| Op::SetTransactionId(s, n)),
        2 => Just(Op::Reserve),
        2 => Just(Op::Release),
        1 => Just(Op::ReadOnly),
        3 => Just(Op::ReadWrite),
        1 => Just(Op::SetNeedsCheck),
        1 => Just(Op::Poison),
        1 => prop_oneof![Just(Op::Fail), Just(Op::Commit)],
        6 => (any::<usize>(), v.clone(), v).prop_map(|(h, x, y)| Op::Query(h, x, y)),
    ]
}

/// The `n`-th open handle (modulo), if any is open.
fn pick(m: &Model, n: usize) -> Option<Handle> {
    let handles = m.open_handles();
    (!handles.is_empty()).then(|| handles[n % handles.len()].0)
}

/// The live handle of device `id`, opening one if there is none.
fn handle_for(m: &mut Model, id: u64) -> Result<Handle, Errno> {
    match m.open_handles().into_iter().find(|&(h, live)| live && h.id() == id) {
        Some((h, _)) => Ok(h),
        None => m.open_thin(id),
    }
}

fn apply(m: &mut Model, op: &Op) {
    // Results are irrelevant here: refusals are part of the story.
    let _ = match *op {
        Op::CreateThin(id) => m.create_thin(id),
        Op::CreateSnap(id, origin) => m.create_snap(id, origin),
        Op::Delete(id) => m.delete_thin(id),
        Op::Commit => m.commit(),
        Op::Abort => m.abort(),
        Op::Crash => {
            m.crash();
            Ok(())
        }
        Op::Close => m.close(),
        Op::Open(id) => m.open_thin(id).map(|_| ()),
        Op::CloseThin(n) => pick(m, n).map_or(Ok(()), |h| m.close_thin(h)),
        Op::Provision(id, v) => provision(m, id, v),
        Op::Insert(n, v, b) => pick(m, n).map_or(Ok(()), |h| m.insert_block(h, v, b)),
        Op::Remove(id, v) => handle_for(m, id).and_then(|h| m.remove_block(h, v)),
        Op::RemoveRange(id, x, y) => handle_for(m, id).and_then(|h| m.remove_range(h, x, y)),
        Op::Inc(x, y) => m.inc_data_range(x, y),
        Op::Dec(x, y) => m.dec_data_range(x, y),
        Op::Resize(n) => m.resize_data_dev(n),
        Op::SetTransactionId(stale, new) => set_transaction_id(m, stale, new),
        Op::Reserve => m.reserve_metadata_snap(),
        Op::Release => m.release_metadata_snap(),
        Op::ReadOnly => m.read_only(),
        Op::ReadWrite => m.read_write(),
        Op::SetNeedsCheck => m.set_needs_check(),
        Op::Poison => {
            m.poison();
            Ok(())
        }
        Op::Fail => {
            m.enter_fail_mode();
            Ok(())
        }
        Op::Query(n, x, y) => query(m, n, x, y),
    };
}

fn provision(m: &mut Model, id: u64, vblock: u64) -> Result<(), Errno> {
    let h = handle_for(m, id)?;
    match m.first_allocatable_block() {
        Some(block) => {
            m.alloc_data_block_check(block)?;
            m.insert_block(h, vblock, block)
        }
        None => m.alloc_data_block_expect(),
    }
}

fn set_transaction_id(m: &mut Model, stale: bool, new: u64) -> Result<(), Errno> {
    let current = m.current().trans_id;
    m.set_transaction_id(if stale { current.wrapping_add(1) } else { current }, new)
}

/// Every query, for panics and for the answers that must agree with the state.
fn query(m: &Model, n: usize, x: u64, y: u64) -> Result<(), Errno> {
    let _ = m.free_data_blocks();
    let _ = m.block_is_shared(x);
    let _ = m.changed_this_transaction();
    let _ = (m.get_transaction_id(), m.metadata_snap_held(), m.data_dev_size(), m.needs_check());
    let Some(h) = pick(m, n) else { return Ok(()) };
    let _ = (m.find_block(h, x), m.thin_changed(h), m.aborted_changes(h));
    let _ = m.highest_mapped_block(h);
    if let Ok(run) = m.find_mapped_range(h, x, y) {
        assert!(x <= run.thin_begin && run.thin_begin < run.thin_end && run.thin_end <= y);
    }
    Ok(())
}

/// mapped_count agrees with the mappings for every live handle.
fn check_counts(m: &Model) {
    if m.is_failed() {
        return;
    }
    for (h, live) in m.open_handles() {
        let expected =
            if live { Ok(m.devices()[&h.id()].mappings.len() as u64) } else { Err(Errno::ENODATA) };
        assert_eq!(m.mapped_count(h), expected);
    }
    let free = m.free_data_blocks().unwrap();
    assert!(free <= m.committed().data_blocks);
}

proptest! {
    // A fixed seed keeps runs reproducible (STYLE: no unseeded randomness in tests);
    // PROPTEST_RNG_SEED cannot override it, so change the constant to explore further.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(20_251_126),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_ops_keep_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        // Two committed devices to start from, so that most steps reach a device.
        let mut m = Model::new(16);
        m.create_thin(0).unwrap();
        m.create_thin(1).unwrap();
        m.commit().unwrap();
        let mut mark = m.current().clone();
        m.take_changes();
        for op in &ops {
            let committed = m.committed().clone();
            apply(&mut m, op);
            if let Err(e) = m.check_invariants() {
                panic!("after {op:?}: {e}");
            }
            check_counts(&m);
            check_transaction(&m, op, &committed);
            let changes = m.take_changes().expect("few changes are all kept");
            if let Err(e) = covered(&mark, m.current(), &changes) {
                panic!("after {op:?}: {e}; changes {changes:?}");
            }
            mark = m.current().clone();
        }
    }
}

/// The committed state moves only when an op may commit, and then to the current state;
/// after abort and crash the current state is the committed one.
fn check_transaction(m: &Model, op: &Op, before: &PoolState) {
    let may_commit = matches!(op, Op::Commit | Op::Reserve | Op::Close);
    if !may_commit {
        assert_eq!(m.committed(), before, "{op:?} moved the committed state");
    } else if m.committed() != before {
        let (c, n) = (m.committed(), m.current());
        // Reserve takes its snapshot in the transaction after the commit ([R6]).
        let same = (&c.devices, c.time, c.trans_id, c.data_blocks, &c.caller_refs)
            == (&n.devices, n.time, n.trans_id, n.data_blocks, &n.caller_refs);
        assert!(same, "{op:?} committed something else: {c:?} vs current {n:?}");
        if !matches!(op, Op::Reserve) {
            assert_eq!(c, n, "{op:?} committed something else");
        }
    }
    if matches!(op, Op::Abort | Op::Crash) && !m.is_failed() {
        assert_eq!(m.current(), before, "{op:?} did not bring back the committed state");
    }
}

/// Every key where `old` and `new` differ is named in `changes`.
fn covered(old: &PoolState, new: &PoolState, changes: &[Change]) -> Result<(), String> {
    let named: BTreeSet<Change> = changes.iter().copied().collect();
    let need = |c: Change| if named.contains(&c) { Ok(()) } else { Err(format!("{c:?} missing")) };
    let ids: BTreeSet<u64> = old.devices.keys().chain(new.devices.keys()).copied().collect();
    for id in ids {
        match (old.devices.get(&id), new.devices.get(&id)) {
            (Some(a), Some(b)) if !named.contains(&Change::Device(id)) => {
                if (a.transaction_id, a.creation_time, a.snapshotted_time)
                    != (b.transaction_id, b.creation_time, b.snapshotted_time)
                {
                    need(Change::Details(id))?;
                }
                for (v, _, _) in a.mappings.diff(&b.mappings) {
                    need(Change::Mapping(id, v))?;
                }
            }
            (Some(_), Some(_)) => {}
            _ => need(Change::Device(id))?,
        }
    }
    for (b, _, _) in old.logical_refs().diff(new.logical_refs()) {
        need(Change::Refs(b))?;
    }
    let blocks: BTreeSet<u64> =
        old.caller_refs.keys().chain(new.caller_refs.keys()).copied().collect();
    for b in blocks.into_iter().filter(|b| old.caller_refs.get(b) != new.caller_refs.get(b)) {
        need(Change::CallerRefs(b))?;
    }
    if old.held != new.held {
        need(Change::Held)?;
    }
    Ok(())
}
