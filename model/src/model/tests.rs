//! One short example per semantic point of the Contract. Each test ends with the invariant
//! check, so every story also exercises the recount.

use super::*;
use crate::Errno::{EBUSY, EEXIST, EINVAL, ENODATA, ENOSPC, EPERM};

/// A pool of `data_blocks` with thin device 1 created, committed and open.
fn pool_with_thin(data_blocks: u64) -> (Model, Handle) {
    let mut m = Model::new(data_blocks);
    m.create_thin(1).unwrap();
    m.commit().unwrap();
    let h = m.open_thin(1).unwrap();
    (m, h)
}

/// Allocates the lowest free block and maps it at `vblock`; returns the block.
fn provision(m: &mut Model, h: Handle, vblock: u64) -> u64 {
    let block = m.first_allocatable_block().expect("test pools are large enough");
    m.alloc_data_block_check(block).unwrap();
    m.insert_block(h, vblock, block).unwrap();
    block
}

fn ok(m: &Model) {
    m.check_invariants().unwrap();
}

#[test]
fn commit_makes_current_durable() {
    let (mut m, h) = pool_with_thin(8);
    let b = provision(&mut m, h, 3);
    assert_eq!(m.committed_devices()[&1].mappings.len(), 0);
    m.commit().unwrap();
    assert_eq!(m.committed(), m.current());
    assert_eq!(m.committed_devices()[&1].mappings[&3], Mapping { data_block: b, time: 0 });
    assert!(!m.changed_this_transaction().unwrap());
    ok(&m);
}

#[test]
fn abort_rolls_back_everything_and_reports_changes() {
    let (mut m, h1) = pool_with_thin(8);
    m.create_thin(2).unwrap();
    let h2 = m.open_thin(2).unwrap();
    provision(&mut m, h1, 0);
    m.create_snap(3, 1).unwrap();
    m.set_transaction_id(0, 7).unwrap();
    m.set_needs_check().unwrap();
    m.abort().unwrap();
    assert_eq!(m.current(), m.committed());
    assert_eq!((m.time(), m.get_transaction_id().unwrap()), (0, 0));
    assert!(m.aborted_changes(h1).unwrap(), "device 1 lost an insert");
    assert_eq!(m.mapped_count(h1), Ok(0), "open record reloaded from committed details");
    assert_eq!(m.mapped_count(h2), Err(ENODATA), "device 2 did not exist at the last commit");
    assert!(!m.aborted_changes(h2).unwrap());
    assert!(m.needs_check().unwrap(), "needs_check is not transactional [H7]");
    assert!(!m.changed_this_transaction().unwrap());
    ok(&m);
}

#[test]
fn abort_sets_aborted_changes_to_the_latest_abort() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    m.abort().unwrap();
    assert!(m.aborted_changes(h).unwrap());
    m.abort().unwrap();
    assert!(!m.aborted_changes(h).unwrap(), "nothing had changed at the second abort");
}

#[test]
fn crash_returns_to_committed_and_forgets_handles() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    m.set_needs_check().unwrap();
    m.read_only().unwrap();
    m.crash();
    assert_eq!(m.current(), m.committed());
    assert_eq!(m.mapped_count(h), Err(EINVAL), "handles from before the crash are unknown");
    assert!(!m.is_in_service() && !m.is_read_only());
    assert!(m.needs_check().unwrap());
    assert!(m.open_thin(1).is_ok());
    ok(&m);
}

#[test]
fn snapshot_of_snapshot_copies_mappings_and_stamps_times() {
    let (mut m, h) = pool_with_thin(8);
    let b = provision(&mut m, h, 5);
    m.create_snap(2, 1).unwrap();
    m.create_snap(3, 2).unwrap();
    assert_eq!(m.time(), 2);
    let d = m.devices();
    assert_eq!((d[&1].creation_time, d[&1].snapshotted_time), (0, 1));
    assert_eq!((d[&2].creation_time, d[&2].snapshotted_time), (1, 2));
    assert_eq!((d[&3].creation_time, d[&3].snapshotted_time), (2, 2));
    assert_eq!(d[&3].mappings, d[&1].mappings);
    assert_eq!(m.logical_refs()[&b], 3);
    assert!(m.changed.contains(&1) && m.changed.contains(&2) && m.changed.contains(&3));
    ok(&m);
}

#[test]
fn shared_flag_is_the_time_stamp_rule() {
    let (mut m, h1) = pool_with_thin(8);
    provision(&mut m, h1, 0);
    assert!(!m.find_block(h1, 0).unwrap().shared);
    m.create_snap(2, 1).unwrap();
    let h2 = m.open_thin(2).unwrap();
    assert!(m.find_block(h1, 0).unwrap().shared);
    assert!(m.find_block(h2, 0).unwrap().shared);
    provision(&mut m, h1, 0); // breaking sharing: new block, stamped with the new time
    assert!(!m.find_block(h1, 0).unwrap().shared);
    m.delete_thin(2).unwrap();
    provision(&mut m, h1, 1);
    assert!(!m.find_block(h1, 1).unwrap().shared);
    assert_eq!(m.find_block(h1, 2), Err(ENODATA));
    ok(&m);
}

#[test]
fn find_mapped_range_edges() {
    let (mut m, h) = pool_with_thin(32);
    for v in [2, 3, 4] {
        provision(&mut m, h, v); // blocks 0, 1, 2
    }
    assert_eq!(m.find_mapped_range(h, 3, 3), Err(ENODATA), "begin == end");
    assert_eq!(m.find_mapped_range(h, 4, 3), Err(ENODATA), "end < begin");
    assert_eq!(m.find_mapped_range(h, 5, 100), Err(ENODATA), "nothing at or after begin");
    assert_eq!(m.find_mapped_range(h, 0, 2), Err(ENODATA), "first mapping at or past end");
    let run = m.find_mapped_range(h, 0, 100).unwrap();
    assert_eq!(run, MappedRange { thin_begin: 2, thin_end: 5, pool_begin: 0, maybe_shared: false });
    assert_eq!(m.find_mapped_range(h, 3, 4).unwrap().thin_end, 4, "clipped by end");
    ok(&m);
}

#[test]
fn find_mapped_range_breaks_on_discontinuity_and_shared_flag() {
    let (mut m, h1) = pool_with_thin(32);
    m.alloc_data_block_check(10).unwrap();
    m.alloc_data_block_check(11).unwrap();
    m.alloc_data_block_check(13).unwrap();
    m.insert_block(h1, 0, 10).unwrap();
    m.insert_block(h1, 1, 11).unwrap();
    m.insert_block(h1, 2, 13).unwrap(); // data discontinuity
    assert_eq!(m.find_mapped_range(h1, 0, 10).unwrap().thin_end, 2);

    m.create_snap(2, 1).unwrap(); // 0..3 now shared
    m.alloc_data_block_check(12).unwrap();
    m.insert_block(h1, 2, 12).unwrap(); // contiguous with 10, 11 but not shared
    assert_eq!(m.find_mapped_range(h1, 0, 10).unwrap().thin_end, 2, "shared flag changes");
}

#[test]
fn find_mapped_range_ignores_time_differences() {
    let mut m = Model::new(32);
    m.create_thin(1).unwrap();
    m.create_thin(9).unwrap();
    let h = m.open_thin(1).unwrap();
    m.alloc_data_block_check(0).unwrap();
    m.insert_block(h, 0, 0).unwrap(); // time 0
    m.create_snap(10, 9).unwrap(); // time 1; device 1 not snapshotted
    m.alloc_data_block_check(1).unwrap();
    m.insert_block(h, 1, 1).unwrap(); // time 1
    let times: Vec<u32> = m.devices()[&1].mappings.values().map(|m| m.time).collect();
    assert_eq!(times, [0, 1]);
    let run = m.find_mapped_range(h, 0, 10).unwrap();
    assert_eq!(run, MappedRange { thin_begin: 0, thin_end: 2, pool_begin: 0, maybe_shared: false });
    m.create_snap(2, 1).unwrap(); // both older than the snapshot now: one shared run
    let run = m.find_mapped_range(h, 0, 10).unwrap();
    assert_eq!(run, MappedRange { thin_begin: 0, thin_end: 2, pool_begin: 0, maybe_shared: true });
    ok(&m);
}

#[test]
fn inc_dec_ranges() {
    let mut m = Model::new(8);
    m.inc_data_range(2, 4).unwrap();
    m.inc_data_range(3, 3).unwrap(); // empty range: Ok, nothing changes
    assert_eq!(m.logical_refs().iter().collect::<Vec<_>>(), [(2, 1), (3, 1)]);
    assert_eq!(m.inc_data_range(4, 3), Err(EINVAL), "begin > end");
    assert_eq!(m.inc_data_range(7, 9), Err(EINVAL), "end > size");
    let before = m.clone();
    assert_eq!(m.dec_data_range(1, 4), Err(EINVAL), "block 1 is at 0");
    assert_eq!(m, before, "no side effects [R1]");
    m.dec_data_range(2, 4).unwrap();
    assert!(m.logical_refs().is_empty());
    assert_eq!(m.free_data_blocks(), Ok(8));
    ok(&m);
}

#[test]
fn dec_of_a_mapped_block_without_caller_reference_is_refused() {
    let (mut m, h) = pool_with_thin(8);
    let b = provision(&mut m, h, 0);
    assert_eq!(m.dec_data_range(b, b + 1), Err(EINVAL));
    assert_eq!(m.insert_block(h, 1, 5), Err(EINVAL), "no reference to hand over");
    m.inc_data_range(b, b + 1).unwrap();
    m.insert_block(h, 1, b).unwrap(); // the inc'd reference moves into the new mapping
    assert_eq!(m.logical_refs()[&b], 2);
    assert_eq!(m.block_is_shared(b), Ok(Some(true)), "two mappings in one tree");
    ok(&m);
}

#[test]
fn insert_overwrite_moves_references() {
    let (mut m, h) = pool_with_thin(8);
    let old = provision(&mut m, h, 0);
    m.commit().unwrap();
    let new = provision(&mut m, h, 0);
    assert_ne!(old, new);
    assert_eq!(m.mapped_count(h), Ok(1));
    assert_eq!(m.logical_refs().keys().collect::<Vec<_>>(), [new]);
    assert!(!m.is_allocatable(old), "freed this transaction, still committed");
    assert_eq!(m.free_data_blocks(), Ok(7), "but it counts as free at once (§3.20)");
    m.commit().unwrap();
    assert!(m.is_allocatable(old));
    ok(&m);
}

#[test]
fn remove_block_and_range() {
    let (mut m, h) = pool_with_thin(8);
    for v in 0..4 {
        provision(&mut m, h, v);
    }
    m.commit().unwrap();
    let before = m.clone();
    assert_eq!(m.remove_block(h, 9), Err(ENODATA));
    assert_eq!(m, before, "no side effects [R1]");
    m.remove_block(h, 0).unwrap();
    m.remove_range(h, 2, 10).unwrap();
    assert_eq!(m.highest_mapped_block(h), Ok(Some(1)));
    m.commit().unwrap();
    m.remove_range(h, 5, 3).unwrap(); // nothing in range, still a change (§3.16)
    assert!(m.thin_changed(h).unwrap());
    m.remove_range(h, 0, 2).unwrap();
    assert_eq!(m.highest_mapped_block(h), Ok(None));
    assert_eq!(m.mapped_count(h), Ok(0));
    ok(&m);
}

#[test]
fn alloc_respects_both_views_and_enospc() {
    let mut m = Model::new(2);
    m.alloc_data_block_check(0).unwrap();
    assert_eq!(m.alloc_data_block_check(0), Err(EINVAL), "already in use");
    assert_eq!(m.alloc_data_block_check(2), Err(EINVAL), "out of range");
    m.commit().unwrap();
    m.dec_data_range(0, 1).unwrap();
    m.alloc_data_block_check(1).unwrap();
    assert!(!m.data_block_available(), "block 0 is free now but committed in use");
    assert_eq!(m.alloc_data_block_expect(), Err(ENOSPC));
    assert_eq!(m.free_data_blocks(), Ok(1));
    m.commit().unwrap();
    assert_eq!(m.first_allocatable_block(), Some(0));
    ok(&m);
}

#[test]
fn resize_grow_and_shrink() {
    let mut m = Model::new(4);
    m.resize_data_dev(10).unwrap();
    assert_eq!(m.data_dev_size(), Ok(4), "the query reports the committed size");
    m.resize_data_dev(12).unwrap();
    assert_eq!(m.current().data_blocks, 12, "grows are relative to the current size [R7]");
    assert_eq!(m.free_data_blocks(), Ok(4));
    m.alloc_data_block_check(9).unwrap();
    m.commit().unwrap();
    assert_eq!(m.resize_data_dev(9), Err(ENOSPC), "block 9 in use");
    m.dec_data_range(9, 10).unwrap();
    assert_eq!(m.resize_data_dev(9), Err(ENOSPC), "still in use in the committed view");
    m.commit().unwrap();
    m.resize_data_dev(12).unwrap();
    m.resize_data_dev(9).unwrap();
    m.commit().unwrap();
    assert_eq!(m.data_dev_size(), Ok(9));
    ok(&m);
}

#[test]
fn free_count_saturates() {
    let mut m = Model::new(2);
    m.resize_data_dev(5).unwrap();
    m.inc_data_range(0, 5).unwrap();
    assert_eq!(m.free_data_blocks(), Ok(0), "committed size 2 − 5 in use saturates [R5]");
}

#[test]
fn transaction_id_is_compare_and_set() {
    let mut m = Model::new(1);
    m.set_transaction_id(0, 5).unwrap();
    assert_eq!(m.set_transaction_id(0, 6), Err(EINVAL), "stale current");
    m.set_transaction_id(5, 6).unwrap();
    assert_eq!(m.get_transaction_id(), Ok(6));
    assert_eq!(m.committed().trans_id, 0);
    m.create_thin(1).unwrap();
    assert_eq!(m.devices()[&1].transaction_id, 6);
}

#[test]
fn held_snapshot_commits_first_and_stays_frozen() {
    let (mut m, h) = pool_with_thin(8);
    let b = provision(&mut m, h, 0);
    m.reserve_metadata_snap().unwrap();
    assert_eq!(m.committed_devices()[&1].mappings.len(), 1, "reserve committed first [H9]");
    assert_eq!(m.committed().held, None, "the reserve itself is in the new transaction [R6]");
    m.commit().unwrap();
    let frozen = m.held_snapshot_devices().unwrap().clone();
    m.delete_thin(1).unwrap();
    assert_eq!(m.logical_refs()[&b], 1, "the snapshot keeps the block");
    assert_eq!(m.held_snapshot_devices(), Some(&frozen));
    m.create_thin(2).unwrap();
    assert_eq!(m.reserve_metadata_snap(), Err(EBUSY));
    assert!(m.committed_devices().contains_key(&2), "committed even though EBUSY");
    m.release_metadata_snap().unwrap();
    assert!(m.logical_refs().is_empty());
    assert_eq!(m.release_metadata_snap(), Err(EINVAL));
    m.abort().unwrap();
    assert_eq!(m.metadata_snap_held(), Ok(true), "release rolled back");
    ok(&m);
}

#[test]
fn abort_reverts_a_reserve() {
    let mut m = Model::new(4);
    m.reserve_metadata_snap().unwrap();
    m.abort().unwrap();
    assert_eq!(m.metadata_snap_held(), Ok(false));
}

#[test]
fn fail_mode_refuses_all_but_closes() {
    let (mut m, h) = pool_with_thin(8);
    m.enter_fail_mode();
    assert_eq!(m.abort(), Err(EINVAL));
    assert_eq!(m.commit(), Err(EINVAL));
    assert_eq!(m.find_block(h, 0), Err(EINVAL));
    assert_eq!(m.needs_check(), Err(EINVAL));
    assert_eq!(m.changed_this_transaction(), Err(EINVAL));
    assert_eq!(m.aborted_changes(h), Err(EINVAL));
    assert_eq!(m.read_write(), Err(EINVAL));
    assert_eq!(m.open_thin(1), Err(EINVAL));
    assert_eq!(m.create_thin(2), Err(EINVAL));
    assert_eq!(h.id(), 1);
    m.close_thin(h).unwrap();
    m.close().unwrap();
    assert!(!m.is_failed(), "the next open starts afresh");
    ok(&m);
}

#[test]
fn read_only_refuses_mutators_without_side_effects() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    m.read_only().unwrap();
    let before = m.clone();
    assert_eq!(m.create_thin(2), Err(EPERM));
    assert_eq!(m.set_transaction_id(0, 1), Err(EPERM), "in-core only, still refused [H8]");
    assert_eq!(m.set_needs_check(), Err(EPERM));
    assert_eq!(m.alloc_data_block_expect(), Err(EPERM));
    assert_eq!(m.remove_block(h, 0), Err(EPERM));
    assert_eq!(m.commit(), Err(EPERM));
    assert_eq!(m, before);
    assert!(m.find_block(h, 0).is_ok());
    m.close_thin(h).unwrap();
    let h = m.open_thin(1).unwrap();
    m.abort().unwrap(); // abort works read-only
    assert_eq!(m.mapped_count(h), Ok(0));
    m.read_write().unwrap();
    m.create_thin(2).unwrap();
    ok(&m);
}

#[test]
fn commit_is_a_no_op_until_in_service() {
    let mut m = Model::new(4);
    m.crash();
    m.read_only().unwrap();
    assert_eq!(m.commit(), Ok(()), "not in service: nothing to write [H11]");
    let h_err = m.open_thin(1);
    assert_eq!(h_err, Err(ENODATA), "open is class C");
    assert!(!m.is_in_service());
    assert_eq!(m.create_thin(1), Err(EPERM));
    assert!(m.is_in_service(), "a refused M call still puts the pool in service (§2.4)");
    assert_eq!(m.commit(), Err(EPERM));
}

#[test]
fn double_open_is_ebusy() {
    let (mut m, h) = pool_with_thin(8);
    assert_eq!(m.open_thin(1), Err(EBUSY));
    m.close_thin(h).unwrap();
    assert_eq!(m.close_thin(h), Err(EINVAL), "already closed");
    m.open_thin(1).unwrap();
}

#[test]
fn delete_while_open_leaves_a_dead_handle() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    m.delete_thin(1).unwrap();
    assert_eq!(m.find_block(h, 0), Err(ENODATA));
    assert_eq!(m.insert_block(h, 0, 0), Err(ENODATA));
    assert_eq!(m.thin_changed(h), Ok(false));
    assert!(!m.changed_this_transaction().unwrap(), "deleting is not a change (§3.19)");
    m.create_thin(1).unwrap();
    let h2 = m.open_thin(1).unwrap(); // a dead handle does not count for [H1]
    assert_eq!(m.mapped_count(h), Err(ENODATA), "a new device with the same id is another device");
    assert_eq!(m.mapped_count(h2), Ok(0));
    m.abort().unwrap();
    assert_eq!(m.mapped_count(h), Err(ENODATA), "dead stays dead");
    assert_eq!(m.close(), Err(EBUSY), "h2 is live: device 1 exists again after the abort");
    m.close_thin(h2).unwrap();
    m.close().unwrap(); // the dead handle names no device, so it does not hold the pool
    assert_eq!(m.close_thin(h), Err(EINVAL), "forgotten with the pool object");
    ok(&m);
}

#[test]
fn existence_checks_use_the_current_state() {
    let mut m = Model::new(4);
    m.create_thin(1).unwrap();
    assert_eq!(m.create_thin(1), Err(EEXIST), "created this transaction [R3]");
    assert_eq!(m.create_snap(1, 1), Err(EEXIST));
    assert_eq!(m.create_snap(2, 9), Err(ENODATA));
    m.delete_thin(1).unwrap();
    assert_eq!(m.delete_thin(1), Err(ENODATA));
    assert_eq!(m.open_thin(1), Err(ENODATA));
    m.create_thin(1).unwrap();
    assert_eq!(m.time(), 0, "failed snapshots do not move time");
    ok(&m);
}

#[test]
fn time_limit_refuses_snapshots() {
    let mut m = Model::new(4);
    m.create_thin(1).unwrap();
    m.current.time = TIME_LIMIT - 2;
    m.create_snap(2, 1).unwrap();
    let before = m.clone();
    assert_eq!(m.create_snap(3, 1), Err(ENOSPC), "time would reach 2^24 [R8]");
    assert_eq!(m, before);
    ok(&m);
}

#[test]
fn poison_blocks_mutators_until_abort() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    m.poison();
    assert_eq!(m.create_thin(2), Err(EINVAL));
    assert_eq!(m.commit(), Err(EINVAL));
    m.abort().unwrap();
    assert!(!m.is_poisoned());
    m.create_thin(2).unwrap();
    ok(&m);
}

#[test]
fn close_commits_or_refuses() {
    let (mut m, h) = pool_with_thin(8);
    provision(&mut m, h, 0);
    let before = m.clone();
    assert_eq!(m.close(), Err(EBUSY));
    assert_eq!(m, before, "no change on EBUSY [R9]");
    m.close_thin(h).unwrap();
    m.close().unwrap();
    assert_eq!(m.committed_devices()[&1].mappings.len(), 1, "close committed [R2]");
    m.create_thin(2).unwrap();
    m.read_only().unwrap();
    m.close().unwrap();
    assert!(!m.committed_devices().contains_key(&2), "read-only close skips the commit");
    m.create_thin(3).unwrap();
    m.poison();
    assert_eq!(m.close(), Err(EINVAL), "the commit's error is returned");
    assert!(!m.devices().contains_key(&3));
}

#[test]
fn ls_counts_exclusive_and_shared() {
    let (mut m, h) = pool_with_thin(8);
    let a = provision(&mut m, h, 0);
    provision(&mut m, h, 1);
    m.inc_data_range(a, a + 1).unwrap();
    m.insert_block(h, 2, a).unwrap(); // a mapped twice within device 1
    m.create_snap(2, 1).unwrap();
    let h2 = m.open_thin(2).unwrap();
    provision(&mut m, h2, 1);
    let rows = m.ls();
    assert_eq!(rows[&1], LsRow { mapped: 3, exclusive: 1, shared: 2 });
    assert_eq!(rows[&2], LsRow { mapped: 3, exclusive: 1, shared: 2 });
    ok(&m);
}

#[test]
fn block_is_shared_bounds() {
    let (mut m, h) = pool_with_thin(8);
    let b = provision(&mut m, h, 0);
    assert_eq!(m.block_is_shared(b), Ok(Some(false)));
    assert_eq!(m.block_is_shared(8), Err(EINVAL));
    m.create_snap(2, 1).unwrap();
    assert_eq!(m.block_is_shared(b), Ok(None), "one shared leaf or two copies: lazy (§4.1)");
    m.inc_data_range(b, b + 1).unwrap();
    assert_eq!(m.block_is_shared(b), Ok(Some(true)), "caller ref + a mapping");
}

#[test]
fn changes_are_listed_until_too_many_pile_up() {
    let mut m = Model::new(100_000);
    m.inc_data_range(0, 3).unwrap();
    let open = m.take_changes().expect("a few changes are kept");
    assert!(open.contains(&Change::Refs(2)) && open.contains(&Change::CallerRefs(0)));
    assert_eq!(m.take_changes(), Some(open), "the open transaction's are listed until it ends");
    m.commit().unwrap();
    assert_eq!(m.take_changes().map(|c| c.len()), Some(6), "then once more");
    assert_eq!(m.take_changes(), Some(Vec::new()));
    // More than the cap, never taken: forgotten, so a verifier must compare everything.
    m.inc_data_range(0, 40_000).unwrap();
    m.commit().unwrap();
    assert!(!m.changes_kept());
    assert_eq!(m.take_changes(), None);
    assert!(m.changes_kept(), "listing starts again after a take");
    m.dec_data_range(0, 1).unwrap();
    assert_eq!(m.take_changes().map(|c| c.len()), Some(2));
    ok(&m);
}
