//! One lockstep: each pool call made on the engine and on the model, their two answers in
//! one shape ([`Both`]), and the one rule for when they agree ([`Both::agreement`]). The
//! runner (`runner::apply`), the kernel wing's emulation of the pool target
//! (`kernel::emulate`) and the state-machine test (`sim/tests/state_machine.rs`) all call the
//! engine and the model through here, so a call's newtype conversions, answer shape and
//! latitude are written once.
//!
//! Invariants:
//! - Each function calls the engine first, then the model, with the same arguments (the
//!   engine's newtypes made from the model's integers), and changes nothing else; a query
//!   takes the model shared, a call that changes it takes it mutably.
//! - Answers are compared in the model's shape: values for values, the engine's error by
//!   its errno ([`errno`]) against the model's.
//! - Latitude is the header's, and only where it says so ([`Latitude`]): [H4] a lookup that
//!   may not issue I/O may answer EWOULDBLOCK whatever the true answer; a sharing query the
//!   model cannot decide accepts any value.
//!
//! Adding a pool call: the engine's method, the model's, a function here; then its `Op` in
//! `op.rs` (with its `OpKind`), its draw in `draw.rs`, and one arm of [`plain`] (or, if
//! the runner has effects of its own around it, one arm of `Runner::apply`).

use super::op::Op;
use engine::thin::{DataBlock, Pool, ThinHandle, ThinId, TransactionId, VBlock};
use model::{Errno, Handle, Model};
use std::fmt::Debug;

/// The model's name for an engine error's errno.
pub fn errno(e: &engine::Error) -> Errno {
    use engine::Errno as E;
    match e.errno() {
        E::EEXIST => Errno::EEXIST,
        E::ENODATA => Errno::ENODATA,
        E::EINVAL => Errno::EINVAL,
        E::EBUSY => Errno::EBUSY,
        E::ENOSPC => Errno::ENOSPC,
        E::EWOULDBLOCK => Errno::EWOULDBLOCK,
        E::EPERM => Errno::EPERM,
        E::EIO => Errno::EIO,
        E::EILSEQ => Errno::EILSEQ,
        E::ENOTBLK => Errno::ENOTBLK,
        E::ENOMEM => Errno::ENOMEM,
    }
}

/// What the header lets the engine answer besides the model's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latitude {
    None,
    /// [H4] a lookup that may not issue I/O may answer EWOULDBLOCK, whatever the true
    /// answer (an unmapped block needs its leaf read as much as a mapped one).
    WouldBlock,
    /// The model cannot decide the value (a sharing query on a block it cannot count): any
    /// successful answer is right.
    AnyValue,
}

/// How two answers relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// The same value, or errors with the same errno.
    Same,
    /// Different, within the call's [`Latitude`].
    Excused,
    Differ,
}

/// The engine's and the model's answers to one call.
#[derive(Debug)]
pub struct Both<T> {
    /// The pool call, as the header names it.
    pub call: &'static str,
    pub engine: engine::Result<T>,
    pub model: Result<T, Errno>,
    pub latitude: Latitude,
}

impl<T: PartialEq + Debug> Both<T> {
    /// A pair with no latitude.
    pub fn new(call: &'static str, engine: engine::Result<T>, model: Result<T, Errno>) -> Self {
        Both { call, engine, model, latitude: Latitude::None }
    }

    /// The one rule ([`agreement_of`]) on this pair.
    pub fn agreement(&self) -> Agreement {
        let engine = self.engine.as_ref().map_err(errno);
        agreement_of(engine, self.model.as_ref().map_err(|e| *e), self.latitude)
    }

    /// [H4]: the engine declined to issue I/O, which the call allowed: there is nothing to
    /// judge (not even the disk's faults, which no I/O met).
    pub fn would_block_excused(&self) -> bool {
        self.latitude == Latitude::WouldBlock
            && matches!(&self.engine, Err(e) if errno(e) == Errno::EWOULDBLOCK)
    }

    /// The two answers as a person reads them.
    pub fn difference(&self) -> String {
        format!("engine answered {:?}\nmodel expected {:?}", self.engine, self.model)
    }

    /// The agreed answer in the model's shape, or the difference.
    pub fn agreed(self) -> Result<Result<T, Errno>, String> {
        match self.agreement() {
            Agreement::Differ => Err(self.difference()),
            _ => Ok(self.engine.map_err(|e| errno(&e))),
        }
    }
}

/// The one rule, on two answers in the model's shape (the engine's error as its errno): the
/// same value or the same errno agree; otherwise only the call's latitude excuses them. The
/// state-machine test, which keeps the engine's and the model's answers apart, judges by it
/// too.
pub fn agreement_of<T: PartialEq>(
    engine: Result<&T, Errno>,
    model: Result<&T, Errno>,
    latitude: Latitude,
) -> Agreement {
    match (engine, model, latitude) {
        (Ok(a), Ok(b), _) if a == b => Agreement::Same,
        (Err(e), Err(m), _) if e == m => Agreement::Same,
        (Ok(_), Ok(_), Latitude::AnyValue) => Agreement::Excused,
        (Err(Errno::EWOULDBLOCK), _, Latitude::WouldBlock) => Agreement::Excused,
        _ => Agreement::Differ,
    }
}

/// A thin device open on both sides.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub engine: &'a ThinHandle,
    pub model: Handle,
}

pub fn create_thin(pool: &Pool, m: &mut Model, dev: u64) -> Both<()> {
    Both::new("create_thin", pool.create_thin(ThinId(dev)), m.create_thin(dev))
}

pub fn create_snap(pool: &Pool, m: &mut Model, dev: u64, origin: u64) -> Both<()> {
    let eng = pool.create_snap(ThinId(dev), ThinId(origin));
    Both::new("create_snap", eng, m.create_snap(dev, origin))
}

pub fn delete_thin(pool: &Pool, m: &mut Model, dev: u64) -> Both<()> {
    Both::new("delete_thin_device", pool.delete_thin_device(ThinId(dev)), m.delete_thin(dev))
}

pub fn commit(pool: &Pool, m: &mut Model) -> Both<()> {
    Both::new("commit", pool.commit(), m.commit())
}

pub fn set_transaction_id(pool: &Pool, m: &mut Model, current: u64, new: u64) -> Both<()> {
    let eng = pool.set_transaction_id(TransactionId(current), TransactionId(new));
    Both::new("set_transaction_id", eng, m.set_transaction_id(current, new))
}

pub fn reserve_metadata_snap(pool: &Pool, m: &mut Model) -> Both<()> {
    Both::new("reserve_metadata_snap", pool.reserve_metadata_snap(), m.reserve_metadata_snap())
}

pub fn release_metadata_snap(pool: &Pool, m: &mut Model) -> Both<()> {
    Both::new("release_metadata_snap", pool.release_metadata_snap(), m.release_metadata_snap())
}

/// Opens device `dev` on both sides: the pair, and each side's handle if it opened.
pub fn open_thin(
    pool: &Pool,
    m: &mut Model,
    dev: u64,
) -> (Both<()>, Option<ThinHandle>, Option<Handle>) {
    let (eng, model) = (pool.open_thin_device(ThinId(dev)), m.open_thin(dev));
    let (eng, th) = match eng {
        Ok(th) => (Ok(()), Some(th)),
        Err(e) => (Err(e), None),
    };
    let mh = model.as_ref().ok().copied();
    (Both::new("open_thin_device", eng, model.map(drop)), th, mh)
}

/// Allocates a data block: the engine chooses, the model checks the choice (any free block
/// will do). `Ok(None)` on the model's side is "a block, any free one", when the engine
/// failed and the model expected success.
pub fn alloc_data_block(pool: &Pool, m: &mut Model) -> Both<Option<u64>> {
    match pool.alloc_data_block().map(u64::from) {
        Ok(b) => Both::new(
            "alloc_data_block",
            Ok(Some(b)),
            m.alloc_data_block_check(b).map(|()| Some(b)),
        ),
        Err(e) => Both::new("alloc_data_block", Err(e), m.alloc_data_block_expect().map(|()| None)),
    }
}

/// Resizes the metadata device. The model has no metadata size; a no-op compare-and-set
/// gives it the same entry rules (in service, EINVAL when poisoned or failed, EPERM
/// read-only) and changes nothing. A shrink that finds blocks in use is ENOSPC without
/// effect, like the entry rules' Ok.
pub fn resize_metadata_dev(pool: &Pool, m: &mut Model, new: u64) -> Both<()> {
    let cur = pool.get_metadata_dev_size().ok();
    let eng = match pool.resize_metadata_dev(new) {
        Err(engine::Error::NoSpace(engine::error::Space::Shrink))
            if cur.is_some_and(|c| new < c) =>
        {
            Ok(())
        }
        other => other,
    };
    let t = m.current().trans_id;
    Both::new("resize_metadata_dev", eng, m.set_transaction_id(t, t))
}

/// Closes a device on both sides (the engine's close cannot fail).
pub fn close_thin(pool: &Pool, m: &mut Model, th: ThinHandle, mh: Handle) -> Both<()> {
    pool.close_thin_device(th);
    Both::new("close_thin_device", Ok(()), m.close_thin(mh))
}

pub fn find_block(
    pool: &Pool,
    m: &Model,
    h: Handles<'_>,
    vblock: u64,
    can_issue_io: bool,
) -> Both<model::Lookup> {
    let eng = pool.find_block(h.engine, VBlock(vblock), can_issue_io);
    let eng = eng.map(|l| model::Lookup { data_block: l.data_block.0, shared: l.shared });
    let mut both = Both::new("find_block", eng, m.find_block(h.model, vblock));
    if !can_issue_io {
        both.latitude = Latitude::WouldBlock;
    }
    both
}

pub fn find_mapped_range(
    pool: &Pool,
    m: &Model,
    h: Handles<'_>,
    begin: u64,
    end: u64,
) -> Both<model::MappedRange> {
    let eng =
        pool.find_mapped_range(h.engine, VBlock(begin), VBlock(end)).map(|r| model::MappedRange {
            thin_begin: r.thin_begin.0,
            thin_end: r.thin_end.0,
            pool_begin: r.pool_begin.0,
            maybe_shared: r.maybe_shared,
        });
    Both::new("find_mapped_range", eng, m.find_mapped_range(h.model, begin, end))
}

pub fn insert_block(
    pool: &Pool,
    m: &mut Model,
    h: Handles<'_>,
    vblock: u64,
    data: u64,
) -> Both<()> {
    let eng = pool.insert_block(h.engine, VBlock(vblock), DataBlock(data));
    Both::new("insert_block", eng, m.insert_block(h.model, vblock, data))
}

pub fn remove_block(pool: &Pool, m: &mut Model, h: Handles<'_>, vblock: u64) -> Both<()> {
    let eng = pool.remove_block(h.engine, VBlock(vblock));
    Both::new("remove_block", eng, m.remove_block(h.model, vblock))
}

pub fn remove_range(pool: &Pool, m: &mut Model, h: Handles<'_>, begin: u64, end: u64) -> Both<()> {
    let eng = pool.remove_range(h.engine, VBlock(begin), VBlock(end));
    Both::new("remove_range", eng, m.remove_range(h.model, begin, end))
}

pub fn highest_mapped_block(pool: &Pool, m: &Model, h: Handles<'_>) -> Both<Option<u64>> {
    let eng = pool.get_highest_mapped_block(h.engine).map(|v| v.map(u64::from));
    Both::new("get_highest_mapped_block", eng, m.highest_mapped_block(h.model))
}

pub fn mapped_count(pool: &Pool, m: &Model, h: Handles<'_>) -> Both<u64> {
    Both::new("get_mapped_count", pool.get_mapped_count(h.engine), m.mapped_count(h.model))
}

pub fn thin_changed(pool: &Pool, m: &Model, h: Handles<'_>) -> Both<bool> {
    let eng = pool.thin_changed_this_transaction(h.engine);
    Both::new("thin_changed_this_transaction", Ok(eng), m.thin_changed(h.model))
}

pub fn aborted_changes(pool: &Pool, m: &Model, h: Handles<'_>) -> Both<bool> {
    let eng = pool.aborted_changes(h.engine);
    Both::new("aborted_changes", Ok(eng), m.aborted_changes(h.model))
}

pub fn changed_this_transaction(pool: &Pool, m: &Model) -> Both<bool> {
    let eng = pool.changed_this_transaction();
    Both::new("changed_this_transaction", eng, m.changed_this_transaction())
}

pub fn metadata_snap_held(pool: &Pool, m: &Model) -> Both<bool> {
    let eng = pool.get_metadata_snap().map(|b| b.is_some());
    Both::new("get_metadata_snap", eng, m.metadata_snap_held())
}

pub fn data_dev_size(pool: &Pool, m: &Model) -> Both<u64> {
    Both::new("get_data_dev_size", pool.get_data_dev_size(), m.data_dev_size())
}

pub fn free_block_count(pool: &Pool, m: &Model) -> Both<u64> {
    Both::new("get_free_block_count", pool.get_free_block_count(), m.free_data_blocks())
}

pub fn needs_check(pool: &Pool, m: &Model) -> Both<bool> {
    Both::new("needs_check", pool.needs_check(), m.needs_check())
}

pub fn transaction_id(pool: &Pool, m: &Model) -> Both<u64> {
    Both::new(
        "get_transaction_id",
        pool.get_transaction_id().map(u64::from),
        m.get_transaction_id(),
    )
}

pub fn block_is_shared(pool: &Pool, m: &Model, data: u64) -> Both<bool> {
    let eng = pool.block_is_shared(DataBlock(data));
    match m.block_is_shared(data) {
        Ok(None) => {
            // The model cannot count this block: any answer the engine gives is right, and
            // the model's side shows the engine's value so the two print alike.
            let shown = eng.as_ref().map(|b| *b).unwrap_or(false);
            Both { latitude: Latitude::AnyValue, ..Both::new("block_is_shared", eng, Ok(shown)) }
        }
        known => Both::new("block_is_shared", eng, known.map(|x| x.unwrap_or(false))),
    }
}

pub fn inc_data_range(pool: &Pool, m: &mut Model, begin: u64, end: u64) -> Both<()> {
    let eng = pool.inc_data_range(DataBlock(begin), DataBlock(end));
    Both::new("inc_data_range", eng, m.inc_data_range(begin, end))
}

pub fn dec_data_range(pool: &Pool, m: &mut Model, begin: u64, end: u64) -> Both<()> {
    let eng = pool.dec_data_range(DataBlock(begin), DataBlock(end));
    Both::new("dec_data_range", eng, m.dec_data_range(begin, end))
}

pub fn resize_data_dev(pool: &Pool, m: &mut Model, blocks: u64) -> Both<()> {
    Both::new("resize_data_dev", pool.resize_data_dev(blocks), m.resize_data_dev(blocks))
}

pub fn read_only(pool: &Pool, m: &mut Model) -> Both<()> {
    pool.metadata_read_only();
    Both::new("metadata_read_only", Ok(()), m.read_only())
}

pub fn read_write(pool: &Pool, m: &mut Model) -> Both<()> {
    pool.metadata_read_write();
    Both::new("metadata_read_write", Ok(()), m.read_write())
}

pub fn set_needs_check(pool: &Pool, m: &mut Model) -> Both<()> {
    Both::new("set_needs_check", pool.set_needs_check(), m.set_needs_check())
}

/// What judges a pair of answers: the runner, the kernel wing's emulation, a test.
pub trait Judge {
    type Out;
    /// The pool, the model and (for an op on a device) its handles on both sides.
    fn sides(&mut self, dev: Option<u64>) -> (&Pool, &mut Model, Option<Handles<'_>>);
    fn judge<T: PartialEq + Debug>(&mut self, both: Both<T>) -> Self::Out;
}

/// Runs `op` in lockstep when it is a plain call (one call on each side and nothing else:
/// no allocation, no handle to keep, no state of the caller's to update) and judges it;
/// `None` for every other op, which its caller runs itself.
pub fn plain<J: Judge>(j: &mut J, op: &Op) -> Option<J::Out> {
    macro_rules! on {
        ($dev:expr, |$p:ident, $m:ident, $h:ident| $call:expr) => {{
            let both = {
                let ($p, $m, h) = j.sides($dev);
                let Some($h) = h else { unreachable!("an op on a device has its handles") };
                $call
            };
            Some(j.judge(both))
        }};
        (|$p:ident, $m:ident| $call:expr) => {{
            let both = {
                let ($p, $m, _) = j.sides(None);
                $call
            };
            Some(j.judge(both))
        }};
    }
    match *op {
        Op::CreateThin { dev } => on!(|p, m| create_thin(p, m, dev)),
        Op::CreateSnap { dev, origin } => on!(|p, m| create_snap(p, m, dev, origin)),
        Op::Delete { dev } => on!(|p, m| delete_thin(p, m, dev)),
        Op::SetTransactionId { current, new } => {
            on!(|p, m| set_transaction_id(p, m, current, new))
        }
        Op::ReserveSnap => on!(|p, m| reserve_metadata_snap(p, m)),
        Op::ReleaseSnap => on!(|p, m| release_metadata_snap(p, m)),
        Op::FindBlock { dev, vblock, can_issue_io } => {
            on!(Some(dev), |p, m, h| find_block(p, m, h, vblock, can_issue_io))
        }
        Op::FindMappedRange { dev, begin, end } => {
            on!(Some(dev), |p, m, h| find_mapped_range(p, m, h, begin, end))
        }
        Op::RemoveBlock { dev, vblock } => on!(Some(dev), |p, m, h| remove_block(p, m, h, vblock)),
        Op::HighestMappedBlock { dev } => on!(Some(dev), |p, m, h| highest_mapped_block(p, m, h)),
        Op::MappedCount { dev } => on!(Some(dev), |p, m, h| mapped_count(p, m, h)),
        Op::ThinChanged { dev } => on!(Some(dev), |p, m, h| thin_changed(p, m, h)),
        Op::ChangedThisTransaction => on!(|p, m| changed_this_transaction(p, m)),
        Op::MetadataSnap => on!(|p, m| metadata_snap_held(p, m)),
        Op::DataDevSize => on!(|p, m| data_dev_size(p, m)),
        Op::FreeBlockCount => on!(|p, m| free_block_count(p, m)),
        Op::NeedsCheck => on!(|p, m| needs_check(p, m)),
        Op::TransactionId => on!(|p, m| transaction_id(p, m)),
        Op::BlockIsShared { data } => on!(|p, m| block_is_shared(p, m, data)),
        Op::IncRange { begin, end } => on!(|p, m| inc_data_range(p, m, begin, end)),
        Op::ReadOnly => on!(|p, m| read_only(p, m)),
        Op::ReadWrite => on!(|p, m| read_write(p, m)),
        Op::SetNeedsCheck => on!(|p, m| set_needs_check(p, m)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both<T: PartialEq + Debug>(
        e: engine::Result<T>,
        m: Result<T, Errno>,
        l: Latitude,
    ) -> Both<T> {
        Both { call: "t", engine: e, model: m, latitude: l }
    }

    #[test]
    fn the_rule_and_its_two_latitudes() {
        let would_block = || Err(engine::Error::WouldBlock { block: 7 });
        assert_eq!(both(Ok(3u64), Ok(3), Latitude::None).agreement(), Agreement::Same);
        assert_eq!(both(Ok(3u64), Ok(4), Latitude::None).agreement(), Agreement::Differ);
        assert_eq!(both(Ok(3u64), Ok(4), Latitude::AnyValue).agreement(), Agreement::Excused);
        let e: Both<u64> = both(would_block(), Err(Errno::ENODATA), Latitude::None);
        assert_eq!(e.agreement(), Agreement::Differ, "EWOULDBLOCK needs the [H4] latitude");
        let e: Both<u64> = both(would_block(), Err(Errno::ENODATA), Latitude::WouldBlock);
        assert_eq!(e.agreement(), Agreement::Excused);
        assert!(e.would_block_excused());
        let e: Both<u64> = both(would_block(), Ok(5), Latitude::AnyValue);
        assert_eq!(e.agreement(), Agreement::Differ, "any value, not any error");
        assert_eq!(
            both(Ok(()), Err(Errno::EINVAL), Latitude::None).agreed(),
            Err("engine answered Ok(())\nmodel expected Err(EINVAL)".to_string())
        );
    }
}
