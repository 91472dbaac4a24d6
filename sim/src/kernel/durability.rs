//! The data-content oracle of crash mode: what the data device held, durably, when the
//! kernel published a mapping or told userspace that something was durable.
//!
//! The data device's writes are in the same log as the metadata's (`script`'s layout), in
//! the order they completed, with data-device flushes told apart by their sector. For each
//! data block this keeps the content of its first 4 KiB as last written (a [`Tag`] the
//! guest wrote, untagged bytes such as a copy's, or a discard) and whether that write is
//! durable (FUA, or a data flush logged after it).
//!
//! The rules, checked by `crash`:
//! 1. *Published data is durable.* A data block mapped by a commit and not by the previous
//!    one must, when the commit's superblock is written, hold a durable write tagged with
//!    its virtual block. The pool target flushes the data device before it commits (its
//!    pre-commit callback), so that holds for every write that completed before the commit
//!    began; a write still in flight when a periodic commit ran may legitimately miss it
//!    (with `skip_block_zeroing` a partial write is issued after its mapping is inserted).
//!    So a miss is carried to the next commits, and it is a finding only at a *quiescent*
//!    commit, one between a checkpoint's `ckpt` and `ckptend` marks, when nothing is in
//!    flight: every write the guest made has completed, and the commit must cover it.
//! 2. *An acknowledged promise holds.* At an `ack<i>` mark (op `i` returned success: a FUA
//!    write, a flush, a discard and its flush), the last durable commit maps what op `i`
//!    left mapped (for a FUA write, its blocks; for a flush or discard, the whole device)
//!    exactly as the model does after op `i`, and each of those data blocks holds a
//!    durable write tagged with its virtual block (for a FUA write, tagged with op `i`).
//!
//! The 2019 fixes this would have caught: data still in the volatile cache when its mapping
//! was committed (rule 1, at the next checkpoint), and a FUA write completed before its
//! mapping was committed (rule 2).

use super::guest::{read_tag, Tag, WRITE_BYTES};
use model::Model;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

const SECTOR: u64 = 512;
const TAG_SECTORS: u64 = WRITE_BYTES as u64 / SECTOR;

/// What the first 4 KiB of a data block hold, as last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Tagged(Tag),
    /// Written, but not with a tag (a copy of a block, or bytes of another layout).
    Untagged,
    /// Discarded: the device may return anything.
    Discarded,
}

/// A data block's last write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Last {
    pub content: Content,
    pub durable: bool,
}

/// The data device as the log has it so far.
#[derive(Clone, Debug, Default)]
pub struct DataState {
    last: BTreeMap<u64, Last>,
    /// Blocks whose last write is not yet durable.
    volatile: BTreeSet<u64>,
}

impl DataState {
    /// The blocks whose tag sectors `[sector, sector + sectors)` (relative to the data
    /// device) touch, each with whether the range covers its tag whole.
    fn touched(sector: u64, sectors: u64, block_sectors: u64) -> impl Iterator<Item = (u64, bool)> {
        let end = sector.saturating_add(sectors);
        let first = sector / block_sectors;
        let last = end.saturating_sub(1) / block_sectors;
        (first..=last).filter_map(move |d| {
            let tag = d * block_sectors..d * block_sectors + TAG_SECTORS;
            let overlaps = tag.start < end && sector < tag.end;
            overlaps.then_some((d, sector <= tag.start && tag.end <= end))
        })
    }

    /// A logged write of `data` at `sector` of the data device.
    pub fn write(&mut self, sector: u64, data: &[u8], fua: bool, block_sectors: u64) {
        let sectors = data.len() as u64 / SECTOR;
        for (d, whole) in Self::touched(sector, sectors, block_sectors) {
            let content = if whole {
                let at = ((d * block_sectors - sector) * SECTOR) as usize;
                read_tag(&data[at..]).map_or(Content::Untagged, Content::Tagged)
            } else {
                Content::Untagged
            };
            self.last.insert(d, Last { content, durable: fua });
            if fua {
                self.volatile.remove(&d);
            } else {
                self.volatile.insert(d);
            }
        }
    }

    /// A logged discard.
    pub fn discard(&mut self, sector: u64, sectors: u64, block_sectors: u64) {
        for (d, _) in Self::touched(sector, sectors, block_sectors) {
            self.last.insert(d, Last { content: Content::Discarded, durable: true });
            self.volatile.remove(&d);
        }
    }

    /// A data-device flush: every write logged before it is durable.
    pub fn flush(&mut self) {
        for d in std::mem::take(&mut self.volatile) {
            if let Some(l) = self.last.get_mut(&d) {
                l.durable = true;
            }
        }
    }

    pub fn last(&self, d: u64) -> Option<Last> {
        self.last.get(&d).copied()
    }
}

/// A promise userspace was given: op `op` returned success, and its `ack` mark follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub op: usize,
    pub dev: u64,
    /// The virtual blocks promised (a FUA write's); `None`: the whole device (a flush).
    pub vblocks: Option<Range<u64>>,
    /// The index of the model state after the op, among the emulation's points.
    pub point: usize,
}

/// The promises of a workload's ops that are expected to succeed.
pub fn acks(
    ops: &[super::workload::KOp],
    outcomes: &[super::emulate::Outcome],
    op_points: &[usize],
) -> Vec<Ack> {
    use super::emulate::Outcome;
    use super::workload::KOp;
    let mut out = Vec::new();
    for (op, ((k, o), &point)) in ops.iter().zip(outcomes).zip(op_points).enumerate() {
        if *o != Outcome::Ok || !k.promises_durability() {
            continue;
        }
        let (dev, vblocks) = match *k {
            KOp::Write { dev, vblock, blocks, .. } => (dev, Some(vblock..vblock + blocks)),
            KOp::Flush { dev } | KOp::Discard { dev, .. } => (dev, None),
            _ => continue,
        };
        out.push(Ack { op, dev, vblocks, point });
    }
    out
}

/// What a data check found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataProblem {
    /// The mapping promised is not in the durable commit as the model has it.
    MappingLost { dev: u64, vblock: u64, expected: Option<u64>, durable: Option<u64> },
    /// The block's last write is not durable.
    NotDurable { dev: u64, vblock: u64, data_block: u64 },
    /// Nothing was ever written to the block, and it is not one the pool started with.
    NeverWritten { dev: u64, vblock: u64, data_block: u64 },
    /// The block's durable content is not what the mapping names.
    Wrong { dev: u64, vblock: u64, data_block: u64, found: Content, expected_op: Option<u64> },
}

impl std::fmt::Display for DataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataProblem::MappingLost { dev, vblock, expected, durable } => write!(
                f,
                "device {dev} block {vblock}: durable mapping {durable:?}, the model's {expected:?}"
            ),
            DataProblem::NotDurable { dev, vblock, data_block } => write!(
                f,
                "device {dev} block {vblock} -> data block {data_block}: its data is not durable"
            ),
            DataProblem::NeverWritten { dev, vblock, data_block } => write!(
                f,
                "device {dev} block {vblock} -> data block {data_block}: no write ever reached it"
            ),
            DataProblem::Wrong { dev, vblock, data_block, found, expected_op } => write!(
                f,
                "device {dev} block {vblock} -> data block {data_block} holds {found:?}, expected the tag of block {vblock}{}",
                expected_op.map(|o| format!(" by op {o}")).unwrap_or_default()
            ),
        }
    }
}

/// The data block `dev`'s `v` maps to in `m`.
fn mapped(m: &Model, dev: u64, v: u64) -> Option<u64> {
    m.devices().get(&dev).and_then(|d| d.mappings.get(v)).map(|x| x.data_block)
}

/// Every data block mapped in `m`, with one (device, vblock) that maps it.
pub fn mapped_blocks(m: &Model) -> BTreeMap<u64, (u64, u64)> {
    let mut out = BTreeMap::new();
    for (dev, d) in m.devices() {
        for (v, x) in d.mappings.iter() {
            out.entry(x.data_block).or_insert((*dev, v));
        }
    }
    out
}

/// Rule 1 for data block `d`, mapped by `dev`'s `v`, against the data state `at` its
/// commit's superblock write: `Ok` when it holds a durable write tagged with `v`. A miss
/// is a finding only at a quiescent commit; at another the write may still be in flight.
pub fn published(at: &DataState, dev: u64, v: u64, d: u64) -> Result<(), DataProblem> {
    let (vblock, data_block) = (v, d);
    match at.last(d) {
        Some(Last { durable: true, content: Content::Tagged(t) }) if t.vblock == v => Ok(()),
        Some(Last { durable: true, content }) => {
            Err(DataProblem::Wrong { dev, vblock, data_block, found: content, expected_op: None })
        }
        Some(Last { durable: false, .. }) => {
            Err(DataProblem::NotDurable { dev, vblock, data_block })
        }
        None => Err(DataProblem::NeverWritten { dev, vblock, data_block }),
    }
}

/// Rule 2 for `ack`: `after` is the model after the op, `durable` the model state of the
/// last durable commit, `data` the data device at the mark, `initial` the data blocks the
/// pool started with (restored, never written by the workload).
pub fn check_ack(
    ack: &Ack,
    after: &Model,
    durable: &Model,
    data: &DataState,
    initial: &BTreeSet<u64>,
) -> Result<u64, DataProblem> {
    let vblocks: Vec<u64> = match &ack.vblocks {
        Some(r) => r.clone().collect(),
        None => {
            let of = |m: &Model| -> BTreeSet<u64> {
                m.devices().get(&ack.dev).map(|d| d.mappings.keys().collect()).unwrap_or_default()
            };
            of(after).union(&of(durable)).copied().collect()
        }
    };
    let fua_op = ack.vblocks.as_ref().map(|_| ack.op as u64);
    let mut checked = 0;
    for v in vblocks {
        let expected = mapped(after, ack.dev, v);
        let found = mapped(durable, ack.dev, v);
        if expected != found {
            return Err(DataProblem::MappingLost {
                dev: ack.dev,
                vblock: v,
                expected,
                durable: found,
            });
        }
        let Some(d) = expected else { continue };
        checked += 1;
        let (dev, vblock, data_block) = (ack.dev, v, d);
        match data.last(d) {
            None if initial.contains(&d) => {}
            None => return Err(DataProblem::NeverWritten { dev, vblock, data_block }),
            Some(Last { durable: false, .. }) => {
                return Err(DataProblem::NotDurable { dev, vblock, data_block })
            }
            Some(Last { content: Content::Tagged(t), .. })
                if t.vblock == v && fua_op.is_none_or(|o| o == t.op) => {}
            Some(Last { content, .. }) => {
                return Err(DataProblem::Wrong {
                    dev,
                    vblock,
                    data_block,
                    found: content,
                    expected_op: fua_op,
                })
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(v: u64, op: u64) -> Vec<u8> {
        let mut b = vec![0u8; WRITE_BYTES];
        b[..8].copy_from_slice(super::super::guest::TAG_MAGIC);
        b[8..16].copy_from_slice(&v.to_le_bytes());
        b[16..24].copy_from_slice(&op.to_le_bytes());
        b
    }

    #[test]
    fn a_write_is_durable_after_a_flush_or_when_fua() {
        let mut s = DataState::default();
        s.write(128, &tagged(7, 1), false, 128);
        assert_eq!(
            s.last(1),
            Some(Last { content: Content::Tagged(Tag { vblock: 7, op: 1 }), durable: false })
        );
        s.flush();
        assert!(s.last(1).expect("written").durable);
        s.write(256, &tagged(8, 2), true, 128);
        assert!(s.last(2).expect("written").durable, "FUA");
        s.write(256, &tagged(9, 3), false, 128);
        assert!(!s.last(2).expect("written").durable, "a newer volatile write");
        s.discard(0, 384, 128);
        assert_eq!(s.last(0).map(|l| l.content), Some(Content::Discarded));
    }

    #[test]
    fn a_whole_block_copy_is_untagged_or_tagged_by_its_first_bytes() {
        let mut s = DataState::default();
        let mut copy = tagged(3, 0);
        copy.resize(128 * 512, 0);
        s.write(3 * 128, &copy, false, 128);
        assert_eq!(s.last(3).map(|l| l.content), Some(Content::Tagged(Tag { vblock: 3, op: 0 })));
        // A write that covers only part of a block's tag sectors.
        s.write(4 * 128 + 4, &[0u8; 4096], false, 128);
        assert_eq!(s.last(4).map(|l| l.content), Some(Content::Untagged));
        assert_eq!(s.last(5), None);
    }

    #[test]
    fn rule_one_holds_only_for_a_durable_write_with_the_right_tag() {
        let mut s = DataState::default();
        assert!(matches!(published(&s, 0, 7, 1), Err(DataProblem::NeverWritten { .. })));
        s.write(128, &tagged(7, 1), false, 128);
        assert!(matches!(published(&s, 0, 7, 1), Err(DataProblem::NotDurable { .. })));
        s.flush();
        assert_eq!(published(&s, 0, 7, 1), Ok(()));
        assert!(matches!(published(&s, 0, 8, 1), Err(DataProblem::Wrong { .. })));
    }

    fn mapped_model(v: u64, d: u64) -> Model {
        let mut m = Model::new(10);
        m.create_thin(0).expect("create");
        let h = m.open_thin(0).expect("open");
        m.alloc_data_block_check(d).expect("free");
        m.insert_block(h, v, d).expect("insert");
        m
    }

    #[test]
    fn rule_two_needs_the_mapping_committed_and_the_data_durable_with_its_tag() {
        let after = mapped_model(7, 3);
        let ack = Ack { op: 5, dev: 0, vblocks: Some(7..8), point: 0 };
        let none = BTreeSet::new();
        let mut s = DataState::default();
        s.write(3 * 128, &tagged(7, 5), false, 128);
        let lost = check_ack(&ack, &after, &Model::new(10), &s, &none);
        assert!(
            matches!(
                lost,
                Err(DataProblem::MappingLost { vblock: 7, expected: Some(3), durable: None, .. })
            ),
            "{lost:?}"
        );
        let volatile = check_ack(&ack, &after, &after, &s, &none);
        assert!(
            matches!(volatile, Err(DataProblem::NotDurable { data_block: 3, .. })),
            "{volatile:?}"
        );
        s.flush();
        assert_eq!(check_ack(&ack, &after, &after, &s, &none), Ok(1));
        // A FUA write's data must be its own op's.
        let other_op = Ack { op: 6, ..ack.clone() };
        assert!(matches!(
            check_ack(&other_op, &after, &after, &s, &none),
            Err(DataProblem::Wrong { expected_op: Some(6), .. })
        ));
        // A flush promises the whole device; a block never written is fine only if the pool
        // started with it.
        let flush = Ack { op: 9, dev: 0, vblocks: None, point: 0 };
        let blank = DataState::default();
        assert!(matches!(
            check_ack(&flush, &after, &after, &blank, &none),
            Err(DataProblem::NeverWritten { .. })
        ));
        assert_eq!(check_ack(&flush, &after, &after, &blank, &BTreeSet::from([3])), Ok(1));
    }

    #[test]
    fn the_acks_of_a_workload_are_its_successful_promises() {
        use super::super::emulate::Outcome;
        use super::super::workload::KOp;
        let ops = [
            KOp::Write { dev: 1, vblock: 4, blocks: 2, fua: true },
            KOp::Write { dev: 1, vblock: 9, blocks: 1, fua: false },
            KOp::Flush { dev: 2 },
            KOp::Discard { dev: 1, begin: 0, end: 3 },
            KOp::Write { dev: 1, vblock: 0, blocks: 1, fua: true },
        ];
        let outcomes = [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Failed(model::Errno::ENOSPC),
        ];
        let a = acks(&ops, &outcomes, &[10, 11, 12, 13, 14]);
        assert_eq!(
            a,
            vec![
                Ack { op: 0, dev: 1, vblocks: Some(4..6), point: 10 },
                Ack { op: 2, dev: 2, vblocks: None, point: 12 },
                Ack { op: 3, dev: 1, vblocks: None, point: 13 },
            ]
        );
    }
}
