//! The reference model of a dm-thin pool's metadata: the oracle the simulator runs in lockstep
//! with the engine. Plain ordered maps, pure, no I/O, no dependency on the engine. It implements
//! the **Contract** lines of `spec/dm-thin-api.md` (the [H#] and [R#] rules), not the kernel's
//! defects.
//!
//! # State
//! Two [`PoolState`]s, `committed` and `current`: devices (id → [`Device`]: mappings vblock →
//! [`Mapping`] {data block, time}, transaction_id, creation_time, snapshotted_time; mapped
//! blocks = number of mappings), time, trans_id, data size, the held metadata snapshot (the
//! device map as of its reserve's commit) and the caller's data references. `commit` makes
//! committed equal to current; `abort`, `crash` and `close` make current equal to committed
//! again. Outside the transaction:
//! needs_check (durable at once, [H7]), open handles (live or dead), `changed` per device,
//! aborted_changes per handle, and the in-service, read-only, fail-mode and poisoned flags.
//!
//! # Invariants
//! - Logical count of a data block = mappings to it over all devices + the held snapshot's
//!   mappings to it + caller references (spec §8 item 8). Caller references are never
//!   negative: a caller can only hand over (insert) or give back (dec) what it holds. So no
//!   count is ever negative, and every counted block is below the data size.
//! - `0 <= creation_time <= snapshotted_time <= time < 2^24` for every device; mapping times
//!   are `<= time`. Time moves only by +1 per successful `create_snap` ([R8]).
//! - A live handle's device exists; at most one live handle per id ([H1]).
//! - Not in service ⇒ current == committed.
//!
//! [`Model::check_invariants`] recomputes all of this from scratch.
//!
//! # How the maps stay cheap
//! Mappings and logical counts live in [`CowMap`]s: ordered maps with `BTreeMap`'s semantics
//! whose clones share their leaves, so the simulator's copies of a model (the state before a
//! commit, the last one found on disk) cost a pointer each, not a pass over the pool. Commit
//! and abort do not clone at all: every change to `current` is logged key by key
//! ([`Change`]), and commit copies just those keys into `committed` (abort copies them back),
//! so neither state's leaves become shared and later writes need not copy them. The same
//! log, via [`Model::take_changes`], tells the simulator which keys to verify. The model's
//! cost per call therefore does not grow with the pool; that is what keeps lockstep checking
//! cheap on big workloads. The random-ops test checks the log against full comparisons.
//!
//! # API (every call returns `Result<T, Errno>`; errors exactly as the Contract says)
//! | model call | spec | class |
//! |---|---|---|
//! | `Model::new(data_blocks)` | formatted, resized, committed; in service | |
//! | `create_thin(id)`, `create_snap(id, origin)`, `delete_thin(id)` | §3.3–3.5, [R3] [H2] | M |
//! | `commit()` | §3.6, [H11] | C |
//! | `abort()` | §3.7, [H3] | M |
//! | `set_transaction_id(current, new)` / `get_transaction_id()` | §3.8 | M / Q |
//! | `reserve_metadata_snap()`, `release_metadata_snap()` / `metadata_snap_held()` | §3.9 [H9] [R6] | M / Q |
//! | `open_thin(id) -> Handle`, `close_thin(h)`, `Handle::id()` | §3.10 [H1] | C |
//! | `find_block(h, v) -> Lookup`, `find_mapped_range(h, b, e) -> MappedRange` | §3.11–3.12 | Q |
//! | `alloc_data_block_check(block)` / `alloc_data_block_expect()` | §3.13 [H13] | M |
//! | `insert_block(h, v, block)`, `remove_block(h, v)`, `remove_range(h, b, e)` | §3.14–3.16 | M |
//! | `highest_mapped_block(h) -> Option<u64>`, `mapped_count(h)` | §3.17–3.18 | Q |
//! | `changed_this_transaction()`, `thin_changed(h)`, `aborted_changes(h)` | §3.19 | Q |
//! | `free_data_blocks()`, `data_dev_size()` | §3.20 [R5], §3.22 | Q |
//! | `block_is_shared(b) -> Option<bool>` | §3.23 | Q |
//! | `inc_data_range(b, e)`, `dec_data_range(b, e)` | §3.24 [R1] | M |
//! | `resize_data_dev(n)` | §3.25 [H5] [R7] | M |
//! | `read_only()`, `read_write()` | §3.26 [H8] | C |
//! | `set_needs_check()` / `needs_check()` | §3.29 [H7] | M / Q |
//! | `close()` | §3.2 [R2] [R9] | pool |
//! | `crash()`, `poison()`, `enter_fail_mode()` | runner events | |
//!
//! Entry rules, in this order:
//! - **M calls** put the pool in service first, even when they then fail (§2.4); then EINVAL
//!   in fail mode or when poisoned, then EPERM in read-only mode ([H8]: no side effects).
//!   `abort` is the exception: refused only in fail mode (it is the way out of a poisoned
//!   transaction, and works read-only).
//! - **commit**: EINVAL in fail mode; Ok without effect when not in service ([H11]); EINVAL
//!   when poisoned; EPERM when read-only.
//! - **Every other call** (Q and C, including `needs_check`, the changed queries,
//!   `read_only`/`read_write`) returns EINVAL in fail mode ([H6]). Only `close_thin`, `close`
//!   and `Handle::id` work there.
//! - Per-device calls: EINVAL for a handle that is not open (closed, or from before a crash);
//!   on a dead handle ENODATA, and false from `thin_changed`/`aborted_changes` ([H2]).
//!
//! # What the runner may assert
//! - Compare every result with the engine's errno for errno; `Lookup`, `MappedRange`,
//!   counts and ids for equality. For `find_block` with `can_issue_io = false`, EWOULDBLOCK
//!   is also acceptable ([H4]).
//! - `alloc_data_block`: on engine `Ok(b)` call `alloc_data_block_check(b)`, which must be
//!   Ok (EINVAL = the engine picked a block in use or out of range). On engine `Err(e)` call
//!   `alloc_data_block_expect()`; if it says Ok but the engine said ENOSPC, that may be
//!   metadata exhaustion: poison and abort as for any non-argument error.
//! - `block_is_shared`: `Some(x)` = the engine must answer `x`; `None` = the block's physical
//!   count depends on lazy sharing (§4.1) and either answer is right.
//! - `free_data_blocks` is exact: physical > 0 ⇔ logical > 0.
//! - `logical_refs()` equals the engine's per-device recount (no sharing); `ls()` equals
//!   thin_ls's per-device (mapped, exclusive, shared); after a commit, `committed()` is what
//!   any reopen must show; after a crash during a commit, clone the model before the commit
//!   and accept either.
//! - While `is_poisoned()`, only M-call/commit errors (EINVAL), `abort`, `close_thin` and
//!   `close` are specified.
//!
//! # Preconditions the engine cannot check (do not generate these)
//! - `insert_block` of a block the caller holds no reference to (from alloc or inc), unless
//!   the vblock already maps that very block: the model says EINVAL.
//! - `dec_data_range` of a block the caller holds no reference to: the model says EINVAL,
//!   while the engine, which counts physically, refuses only blocks at count 0.
//!
//! Device ids are not range-checked (the kernel does not; dm-thin limits them to 24 bits).

mod cow_map;
mod leaf_index;
mod model;
mod state;

pub use cow_map::CowMap;
pub use model::{Handle, Lookup, MappedRange, Model};
pub use state::{ls, Change, Device, Devices, LsRow, Mapping, PoolState, TIME_LIMIT};

/// Kernel errno names, the same variants as the engine's `Errno`. The model itself only
/// produces EEXIST, ENODATA, EINVAL, EBUSY, ENOSPC and EPERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    EEXIST,
    ENODATA,
    EINVAL,
    EBUSY,
    ENOSPC,
    EWOULDBLOCK,
    EPERM,
    EIO,
    EILSEQ,
    ENOTBLK,
    ENOMEM,
    /// Not an API call's: the pool target refuses messages with it in read-only and fail
    /// mode (the kernel wing's emulation of the target answers it).
    EOPNOTSUPP,
}
