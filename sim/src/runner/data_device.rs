//! The data device, as far as ordering goes: what the pool target does around the engine's
//! commit. Before it inserts a mapping for a provisioned block, the pool target has written
//! the block's data (volatile, in the device's cache); before the engine writes any
//! metadata of a commit, it calls the pre-commit callback the pool target registered, which
//! flushes the data device (spec §5; `dm-thin.c`'s `metadata_pre_commit_callback`). A power
//! cut loses every write not yet flushed.
//!
//! The oracle (the engine-only twin of the kernel campaign's data rule): after any
//! recovery, every data block the recovered state maps and the run wrote holds, durably,
//! the last write made to it. A commit that wrote a superblock without the callback having
//! flushed the writes before it is caught at the next power cut that finds them volatile.
//!
//! Invariants: a block's writes are numbered by one counter (no RNG, no clock), so a seed
//! replays exactly and the data shadow changes no trajectory; `last[d]` is what the device
//! would return for `d` now, `durable[d]` what survives a power cut.

use model::Model;
use std::collections::{BTreeMap, BTreeSet};

/// The data device's writes and flushes.
#[derive(Debug, Default)]
pub struct DataShadow {
    /// Per data block, the number of the last write made to it.
    last: BTreeMap<u64, u64>,
    /// Per data block, the number of the last write that is durable.
    durable: BTreeMap<u64, u64>,
    /// Blocks with a write not yet durable.
    volatile: BTreeSet<u64>,
    writes: u64,
    pub flushes: u64,
}

/// A mapped block whose data did not survive: what was written, what the device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLost {
    pub dev: u64,
    pub vblock: u64,
    pub data_block: u64,
    pub written: u64,
    pub durable: Option<u64>,
}

impl std::fmt::Display for DataLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {} block {} maps data block {}, whose last write (#{}) did not survive the power cut (the device holds {}): a commit published it before the data device was flushed",
            self.dev,
            self.vblock,
            self.data_block,
            self.written,
            self.durable.map_or("nothing the run wrote".to_string(), |n| format!("write #{n}"))
        )
    }
}

impl DataShadow {
    /// The pool target writes a provisioned block's data (before its insert).
    pub fn write(&mut self, d: u64) {
        self.writes += 1;
        self.last.insert(d, self.writes);
        self.volatile.insert(d);
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The pre-commit callback: a data-device flush.
    pub fn flush(&mut self) {
        self.flushes += 1;
        for d in std::mem::take(&mut self.volatile) {
            if let Some(&n) = self.last.get(&d) {
                self.durable.insert(d, n);
            }
        }
    }

    /// Power is lost: unflushed writes are gone, the device returns what was durable.
    pub fn crash(&mut self) {
        for d in std::mem::take(&mut self.volatile) {
            match self.durable.get(&d) {
                Some(&n) => self.last.insert(d, n),
                None => self.last.remove(&d),
            };
        }
    }

    /// The metadata was put back from an older image (class B damage): the mappings it
    /// holds are older than the data, so nothing is known about their content any more.
    pub fn forget(&mut self) {
        self.last.clear();
        self.durable.clear();
        self.volatile.clear();
    }

    /// After a crash (`lost` the last writes before it): every block `m` maps that the run
    /// wrote must hold its last write before the crash. Returns the blocks checked.
    pub fn check(&self, m: &Model, lost: &BTreeMap<u64, u64>) -> Result<u64, DataLost> {
        let mut checked = 0;
        for (dev, d) in m.devices() {
            for (v, x) in d.mappings.iter() {
                let b = x.data_block;
                if let Some(&written) = lost.get(&b) {
                    return Err(DataLost {
                        dev: *dev,
                        vblock: v,
                        data_block: b,
                        written,
                        durable: self.durable.get(&b).copied(),
                    });
                }
                checked += u64::from(self.last.contains_key(&b));
            }
        }
        Ok(checked)
    }

    /// The writes a crash now would lose: block → its last write.
    pub fn unflushed(&self) -> BTreeMap<u64, u64> {
        self.volatile.iter().filter_map(|d| self.last.get(d).map(|&n| (*d, n))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_makes_writes_survive_and_a_crash_loses_the_rest() {
        let mut s = DataShadow::default();
        s.write(1);
        s.flush();
        s.write(1);
        s.write(2);
        let lost = s.unflushed();
        assert_eq!(lost, BTreeMap::from([(1, 2), (2, 3)]));
        s.crash();
        assert_eq!(s.last.get(&1), Some(&1), "the flushed write is back");
        assert_eq!(s.last.get(&2), None);
        assert!(s.unflushed().is_empty());
    }

    #[test]
    fn a_mapped_block_whose_write_was_lost_is_found() {
        let mut m = Model::new(10);
        m.create_thin(0).expect("create");
        let h = m.open_thin(0).expect("open");
        m.alloc_data_block_check(3).expect("free");
        m.insert_block(h, 7, 3).expect("insert");
        let mut s = DataShadow::default();
        s.write(3);
        assert_eq!(s.check(&m, &BTreeMap::new()), Ok(1), "written, and nothing lost");
        let lost = s.unflushed();
        s.crash();
        let e = s.check(&m, &lost).expect_err("lost");
        assert_eq!((e.dev, e.vblock, e.data_block, e.written, e.durable), (0, 7, 3, 1, None));
        s.write(3);
        s.flush();
        assert_eq!(s.check(&m, &s.unflushed()), Ok(1));
    }
}
