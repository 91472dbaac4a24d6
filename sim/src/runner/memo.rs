//! Verified images remembered by what their verification read, so that an image that agrees
//! with one on every block that verification read is judged by it instead of again in full.
//! This is what makes a crash image cost what its crash changed: most crash images of one
//! crash point are the verified durable image plus writes to blocks no verification of it
//! read (copy-on-write shadows that the durable superblock does not reach), and most
//! recoveries reopen an image explored a moment before.
//!
//! Why it is sound: a full verification ([`super::recovery`]: open the pool, compare it with
//! each candidate model in order, `check` the image against the matched one, audit the
//! metadata space) is a deterministic function of the candidate models and of the bytes of
//! the blocks it reads: the engine and `check` use no clock, no randomness and no hash
//! order, and each read's block number is decided by the bytes read before it. Every read
//! goes through a [`ReadSet`] recorder. So a second image of the same size that holds the
//! same bytes in every recorded block makes the same reads in the same order, gets the same
//! bytes, and reaches the same verdict against the same candidates. The premise is checked
//! block by block, never assumed from the format: a copy-on-write bug that writes into a
//! block the verified state reaches changes a recorded block, misses the memo, and is
//! verified in full, where it is caught.
//!
//! Invariants:
//! - An entry holds the image, the set of blocks its verification read, the candidate list
//!   it was judged against and the verdict (the index of the first candidate it matched);
//!   only passing verifications are remembered. A candidate is kept as the part of the
//!   model a verification reads ([`ModelView`]: the current and committed states and
//!   needs_check), compared by value (shared leaves make equal ones cheap): two models that
//!   differ only in what no verification reads (open handles, the change log) are one
//!   candidate.
//! - An entry whose verification did not run `check` never stands in for one that must.
//! - Only [`super::VerifyMode::Amortized`] runs use the memo; `--verify full` verifies every
//!   image in full.
//! - At most [`CAPACITY`] entries, the oldest dropped first: a run's crash points move on, and
//!   a lookup costs a pass over each entry's read set.

use engine::io::{Block, BlockDevice, IoError, MemoryDevice};
use model::{Model, PoolState};
use std::sync::{Arc, Mutex};

/// Entries kept per run.
pub const CAPACITY: usize = 6;

/// The blocks read through some devices, as a bitmap (one bit per block of the device).
#[derive(Clone, Debug, Default)]
pub struct ReadSet(Arc<Mutex<Vec<u64>>>);

impl ReadSet {
    pub fn new() -> Self {
        ReadSet::default()
    }

    /// `device`, with every block read through it recorded here.
    pub fn wrap(&self, device: Box<dyn BlockDevice>) -> Box<dyn BlockDevice> {
        Box::new(Recording { inner: device, reads: self.clone() })
    }

    fn note(&self, block: u64) {
        let mut bits = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let word = (block / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (block % 64);
    }

    /// The recorded blocks, ascending.
    pub fn blocks(&self) -> Vec<u64> {
        let bits = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (w, &word) in bits.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let bit = rest.trailing_zeros() as u64;
                out.push(w as u64 * 64 + bit);
                rest &= rest - 1;
            }
        }
        out
    }
}

struct Recording {
    inner: Box<dyn BlockDevice>,
    reads: ReadSet,
}

impl BlockDevice for Recording {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }
    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        self.reads.note(block);
        self.inner.read(block, buf)
    }
    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.inner.write(block, buf)
    }
    fn write_fua(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.inner.write_fua(block, buf)
    }
    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        self.inner.write_run(first, blocks)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.inner.flush()
    }
}

/// What a full verification reads of a model (`runner::oracle`): `compare_pool` the
/// current state and the answers of needs_check and free_data_blocks, `check_image` the
/// committed state. A new read of the model there must be added here.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelView {
    committed: PoolState,
    current: PoolState,
    needs_check: Result<bool, model::Errno>,
    free_data_blocks: Result<u64, model::Errno>,
}

impl ModelView {
    fn of(m: &Model) -> ModelView {
        ModelView {
            committed: m.committed().clone(),
            current: m.current().clone(),
            needs_check: m.needs_check(),
            free_data_blocks: m.free_data_blocks(),
        }
    }

    fn is(&self, m: &Model) -> bool {
        self.needs_check == m.needs_check()
            && self.free_data_blocks == m.free_data_blocks()
            && self.current == *m.current()
            && self.committed == *m.committed()
    }
}

fn same_candidates(views: &[ModelView], cands: &[Model]) -> bool {
    views.len() == cands.len() && views.iter().zip(cands).all(|(v, m)| v.is(m))
}

struct Entry {
    image: MemoryDevice,
    /// Every block the verification read, ascending.
    reads: Vec<u64>,
    cands: Vec<ModelView>,
    matched: usize,
    checked: bool,
}

impl Entry {
    /// Whether `image` holds this entry's bytes in every block its verification read.
    fn agrees(&self, image: &MemoryDevice) -> bool {
        image.nr_blocks() == self.image.nr_blocks()
            && self.reads.iter().all(|&b| {
                match (image.shared(b as usize), self.image.shared(b as usize)) {
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x[..] == y[..],
                    (None, None) => true,
                    _ => false,
                }
            })
    }
}

/// The remembered verifications of one run, and how often they stood in for one.
#[derive(Default)]
pub struct Memo {
    entries: Vec<Entry>,
    /// Verifications answered by an entry.
    pub hits: u64,
}

impl Memo {
    /// The verdict a remembered verification gives `image` against `cands` (the index of the
    /// candidate it matches), if one agrees with it; `need_check`: only one that ran `check`.
    pub fn lookup(
        &mut self,
        image: &MemoryDevice,
        cands: &[Model],
        need_check: bool,
    ) -> Option<usize> {
        let found = self
            .entries
            .iter()
            .find(|e| {
                (e.checked || !need_check) && same_candidates(&e.cands, cands) && e.agrees(image)
            })
            .map(|e| e.matched);
        self.hits += u64::from(found.is_some());
        found
    }

    /// Remembers a passing verification of `image` against `cands` (it matched
    /// `cands[matched]`), which read the blocks in `reads`.
    pub fn remember(
        &mut self,
        image: &MemoryDevice,
        reads: &ReadSet,
        cands: &[Model],
        matched: usize,
        checked: bool,
    ) {
        debug_assert!(matched < cands.len());
        if self.entries.len() == CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            image: image.clone(),
            reads: reads.blocks(),
            cands: cands.iter().map(ModelView::of).collect(),
            matched,
            checked,
        });
    }

    /// Forgets everything (after a restore from backup: nothing verified before applies).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(blocks: &[(u64, u8)]) -> MemoryDevice {
        let mut d = MemoryDevice::new(300);
        for &(b, v) in blocks {
            d.block_mut(b)[0] = v;
        }
        d
    }

    #[test]
    fn the_read_set_records_every_block_read_and_only_those() {
        let r = ReadSet::new();
        let mut dev = r.wrap(Box::new(image_with(&[(5, 1)])));
        let mut buf = [0u8; 4096];
        for b in [5, 0, 200, 5, 64] {
            dev.read(b, &mut buf).expect("in range");
        }
        dev.write(7, &buf).expect("in range");
        assert_eq!(r.blocks(), vec![0, 5, 64, 200]);
    }

    #[test]
    fn an_image_agreeing_on_the_read_blocks_hits_and_one_write_into_them_misses() {
        let base = image_with(&[(0, 1), (10, 2)]);
        let reads = ReadSet::new();
        let mut dev = reads.wrap(Box::new(base.clone()));
        let mut buf = [0u8; 4096];
        dev.read(0, &mut buf).expect("read");
        dev.read(10, &mut buf).expect("read");
        let cands = vec![Model::new(10)];
        let mut memo = Memo::default();
        memo.remember(&base, &reads, &cands, 0, true);

        // Writes to blocks the verification never read (shadows): the same verdict.
        let mut shadowed = base.clone();
        shadowed.block_mut(11)[0] = 9;
        shadowed.block_mut(250)[7] = 9;
        assert_eq!(memo.lookup(&shadowed, &cands, true), Some(0));
        // The same bytes in a different buffer still agree.
        assert_eq!(memo.lookup(&image_with(&[(0, 1), (10, 2)]), &cands, true), Some(0));
        // A write into a block the verification read (a copy-on-write bug): a miss.
        let mut in_place = base.clone();
        in_place.block_mut(10)[100] = 1;
        assert_eq!(memo.lookup(&in_place, &cands, true), None);
        // Other candidates, or another size: a miss.
        assert_eq!(memo.lookup(&base, &[Model::new(11)], true), None);
        assert_eq!(memo.lookup(&MemoryDevice::new(301), &cands, true), None);
        assert_eq!(memo.hits, 2);
    }

    #[test]
    fn an_unchecked_verification_never_stands_in_for_a_checked_one_and_old_entries_go() {
        let base = image_with(&[(0, 1)]);
        let reads = ReadSet::new();
        let cands = vec![Model::new(10)];
        let mut memo = Memo::default();
        memo.remember(&base, &reads, &cands, 0, false);
        assert_eq!(memo.lookup(&base, &cands, true), None);
        assert_eq!(memo.lookup(&base, &cands, false), Some(0));
        for i in 0..CAPACITY {
            memo.remember(&base, &reads, &[Model::new(20 + i as u64)], 0, true);
        }
        assert_eq!(memo.lookup(&base, &cands, false), None, "the oldest entry was dropped");
        memo.clear();
        assert_eq!(memo.lookup(&base, &[Model::new(20 + CAPACITY as u64 - 1)], false), None);
    }

    /// A candidate differs from a remembered one if any part a verification reads differs:
    /// the current state alone, the committed state alone, or needs_check alone.
    #[test]
    fn candidates_differing_in_any_one_part_a_verification_reads_miss() {
        let base = image_with(&[(0, 1)]);
        let reads = ReadSet::new();
        let plain = Model::new(10);
        let mut memo = Memo::default();
        memo.remember(&base, &reads, std::slice::from_ref(&plain), 0, true);
        assert_eq!(memo.lookup(&base, std::slice::from_ref(&plain), true), Some(0));

        let mut current_only = plain.clone();
        current_only.create_thin(1).expect("create");
        assert_eq!(current_only.committed(), plain.committed());
        assert_ne!(current_only.current(), plain.current());

        let mut committed_only = plain.clone();
        committed_only.create_thin(1).and_then(|()| committed_only.commit()).expect("commit");
        committed_only.delete_thin(1).expect("delete");
        assert_ne!(committed_only.committed(), plain.committed());

        let mut needs_check = plain.clone();
        needs_check.set_needs_check().expect("set");
        assert_eq!(needs_check.current(), plain.current());

        for (what, m) in
            [("current", current_only), ("committed", committed_only), ("needs_check", needs_check)]
        {
            assert_eq!(memo.lookup(&base, &[m], true), None, "{what} differs: a miss");
        }
        // A list of another length is another candidate list.
        assert_eq!(memo.lookup(&base, &[plain.clone(), plain], true), None);
    }

    /// A read past the end is recorded too (its answer, an error, depends only on the
    /// size): an image of the same size still agrees.
    #[test]
    fn a_read_past_the_end_is_part_of_the_read_set_and_still_agrees() {
        let base = image_with(&[(0, 1)]);
        let reads = ReadSet::new();
        let mut dev = reads.wrap(Box::new(base.clone()));
        let mut buf = [0u8; 4096];
        dev.read(0, &mut buf).expect("read");
        assert!(dev.read(400, &mut buf).is_err(), "past the end of 300 blocks");
        assert_eq!(reads.blocks(), vec![0, 400]);
        let cands = vec![Model::new(10)];
        let mut memo = Memo::default();
        memo.remember(&base, &reads, &cands, 0, true);
        assert_eq!(memo.lookup(&base, &cands, true), Some(0));
    }
}
