//! Disk images, pending writes, and the choices that turn pending writes into a crash image.
//!
//! Invariants:
//! - A [`MemoryImage`] shares unchanged blocks through `Arc` in copy-on-write chunks
//!   ([`engine::io::BlockVec`]), so cloning one costs a pointer per 256 blocks, never a 4 KiB copy; a
//!   block is replaced, never mutated in place.
//! - Applying a [`CrashPlan`] writes, for each pending write in the plan's order, the whole
//!   new block (Apply), nothing (Drop), or the new bytes of some sectors over whatever the
//!   image holds at that moment (Tear). So without sub-sector cuts every 512-byte sector of
//!   the result is that sector of the durable image or of one pending version of the block.
//! - A write's fate, drawn when it was issued, is not a crash choice: a lost write lands
//!   nowhere whatever the plan says; a misdirected one lands on its wrong block.

use super::config::AtomicUnit;
use super::coverage::FaultKind;
use super::trace_hash::hash_block;
use engine::io::{Block, BlockDevice};
use engine::limits::{BLOCK_SIZE, SECTOR_SIZE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Sectors in one 4 KiB block.
pub const SECTORS_PER_BLOCK: usize = BLOCK_SIZE / SECTOR_SIZE;

/// The contents of a whole device, block by block: the engine's in-memory device, whose
/// copy-on-write chunks make the invariant above hold (a clone costs a pointer per chunk).
pub type MemoryImage = engine::io::MemoryDevice;

/// A 64-bit hash of an image's contents (two equal images hash alike); names the image files
/// a failure leaves behind.
pub fn content_hash(image: &MemoryImage) -> u64 {
    (0..image.nr_blocks() as usize)
        .filter_map(|i| image.shared(i))
        .fold(image.nr_blocks(), |h, b| {
            (h.rotate_left(7) ^ hash_block(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        })
}

/// Where an accepted write will land when the cache destages it; drawn at issue time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteFate {
    /// On its own block.
    Normal,
    /// Nowhere: acknowledged, never persisted (class B).
    Lost,
    /// On block `to` instead of its own (class B).
    Misdirected { to: u64 },
}

impl WriteFate {
    /// Whether the write lands (if anywhere) on a block of a device of `nr_blocks`.
    pub fn lands_in(self, nr_blocks: u64) -> bool {
        match self {
            WriteFate::Normal | WriteFate::Lost => true,
            WriteFate::Misdirected { to } => to < nr_blocks,
        }
    }
}

/// A write accepted by the volatile cache and not yet destaged.
#[derive(Clone)]
pub struct PendingWrite {
    pub(super) seq: u64,
    pub(super) block: u64,
    pub(super) data: Arc<Block>,
    pub(super) fate: WriteFate,
}

impl PendingWrite {
    /// A write accepted on its own block, from outside a [`super::SimDisk`]: the kernel
    /// wing's writes, read from the real kernel's log, cut by the same crash model.
    pub fn accepted(seq: u64, block: u64, data: Arc<Block>) -> Self {
        PendingWrite { seq, block, data, fate: WriteFate::Normal }
    }

    /// Issue number: strictly increasing over every write the disk accepted.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The block the engine wrote to.
    pub fn block(&self) -> u64 {
        self.block
    }

    pub fn data(&self) -> &Block {
        &self.data
    }

    pub fn fate(&self) -> WriteFate {
        self.fate
    }

    /// The block the data reaches when destaged, if any.
    pub fn lands_at(&self) -> Option<u64> {
        match self.fate {
            WriteFate::Normal => Some(self.block),
            WriteFate::Lost => None,
            WriteFate::Misdirected { to } => Some(to),
        }
    }
}

impl std::fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingWrite")
            .field("seq", &self.seq)
            .field("block", &self.block)
            .field("fate", &self.fate)
            .field("data_hash", &format_args!("{:#018x}", hash_block(&self.data)))
            .finish()
    }
}

/// A power cut inside one sector: its first `new_bytes` bytes are new, the rest old.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsectorCut {
    /// Sector index within the block, 0..8.
    pub sector: u8,
    /// New bytes at the start of the sector, 0..=512.
    pub new_bytes: u16,
}

/// Which parts of a torn write reached the media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tear {
    /// Bit `s` set: sector `s` carries the new data.
    pub sectors_new: u8,
    /// An extra cut inside one sector that is otherwise old (class B).
    pub cut: Option<SubsectorCut>,
}

impl Tear {
    /// Old bytes overlaid with the new bytes this tear lets through.
    pub fn apply(&self, old: &Block, new: &Block) -> Block {
        let mut out = *old;
        for s in 0..SECTORS_PER_BLOCK {
            if self.sectors_new & (1 << s) != 0 {
                let r = s * SECTOR_SIZE..(s + 1) * SECTOR_SIZE;
                out[r.clone()].copy_from_slice(&new[r]);
            }
        }
        if let Some(cut) = self.cut {
            let start = usize::from(cut.sector) * SECTOR_SIZE;
            let end = start + usize::from(cut.new_bytes).min(SECTOR_SIZE);
            if let (Some(dst), Some(src)) = (out.get_mut(start..end), new.get(start..end)) {
                dst.copy_from_slice(src);
            }
        }
        out
    }

    /// The fault this tear injects on a device with atomic unit `unit`: a sub-atomic tear if
    /// it cuts inside a sector or splits an atomic unit, otherwise a plain crash tear.
    pub fn fault_kind(&self, unit: AtomicUnit) -> FaultKind {
        let spu = unit.sectors_per_unit();
        let group = (1u16 << spu) - 1;
        let splits_unit = (0..unit.units_per_block()).any(|u| {
            let bits = (u16::from(self.sectors_new) >> (u * spu)) & group;
            bits != 0 && bits != group
        });
        let cuts_sector = self.cut.is_some_and(|c| {
            c.new_bytes > 0
                && usize::from(c.new_bytes) < SECTOR_SIZE
                && self.sectors_new & (1 << c.sector) == 0
        });
        if splits_unit || cuts_sector {
            FaultKind::SubsectorTear
        } else {
            FaultKind::CrashTear
        }
    }

    pub(super) fn is_valid(&self) -> bool {
        match self.cut {
            None => true,
            Some(c) => {
                usize::from(c.sector) < SECTORS_PER_BLOCK && usize::from(c.new_bytes) <= SECTOR_SIZE
            }
        }
    }
}

/// What a crash does with one pending write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteChoice {
    Drop,
    Apply,
    Tear(Tear),
}

/// A complete crash: one choice per pending write (issue order) and the order of applying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashPlan {
    pub choices: Vec<WriteChoice>,
    /// A permutation of `0..choices.len()`: indices into the pending writes, applied first
    /// to last (a later write to the same block overwrites an earlier one).
    pub order: Vec<usize>,
}

impl CrashPlan {
    /// Choices applied in issue order.
    pub fn in_issue_order(choices: Vec<WriteChoice>) -> Self {
        let order = (0..choices.len()).collect();
        CrashPlan { choices, order }
    }

    /// Checks the plan against `pending` pending writes.
    pub fn validate(&self, pending: usize) -> Result<(), PlanError> {
        if self.choices.len() != pending || self.order.len() != pending {
            return Err(PlanError::WrongLength {
                choices: self.choices.len(),
                order: self.order.len(),
                pending,
            });
        }
        let mut seen = vec![false; pending];
        for &i in &self.order {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => return Err(PlanError::NotAPermutation { index: i }),
            }
        }
        let bad =
            self.choices.iter().position(|c| matches!(c, WriteChoice::Tear(t) if !t.is_valid()));
        match bad {
            Some(index) => Err(PlanError::BadTear { index }),
            None => Ok(()),
        }
    }
}

/// Why a crash plan or an image was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    WrongLength { choices: usize, order: usize, pending: usize },
    NotAPermutation { index: usize },
    BadTear { index: usize },
    SizeMismatch { image: u64, disk: u64 },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::WrongLength { choices, order, pending } => write!(
                f,
                "crash plan has {choices} choices and {order} order entries for {pending} \
                 pending writes"
            ),
            PlanError::NotAPermutation { index } => {
                write!(f, "crash plan order is not a permutation (at index {index})")
            }
            PlanError::BadTear { index } => write!(f, "crash plan tear {index} is out of range"),
            PlanError::SizeMismatch { image, disk } => {
                write!(f, "image has {image} blocks, the disk {disk}")
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Applies a validated plan to `image`. Returns, per pending write, whether it landed after
/// a newer write to the same block had landed (an older version won).
pub(super) fn apply_validated(
    image: &mut MemoryImage,
    pending: &[PendingWrite],
    plan: &CrashPlan,
) -> Vec<bool> {
    let mut stale = vec![false; pending.len()];
    let mut newest_landed: BTreeMap<u64, u64> = BTreeMap::new();
    for &i in &plan.order {
        let (Some(w), Some(choice)) = (pending.get(i), plan.choices.get(i)) else { continue };
        let Some(target) = w.lands_at().and_then(|t| usize::try_from(t).ok()) else { continue };
        let Some(old) = image.shared(target) else { continue };
        let data = match choice {
            WriteChoice::Drop => continue,
            WriteChoice::Apply => Arc::clone(&w.data),
            WriteChoice::Tear(t) => Arc::new(t.apply(old, &w.data)),
        };
        image.set(target, data);
        let seen = newest_landed.entry(target as u64).or_insert(w.seq);
        if w.seq < *seen {
            stale[i] = true;
        }
        *seen = (*seen).max(w.seq);
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(v: u8) -> Block {
        [v; BLOCK_SIZE]
    }

    #[test]
    fn tear_takes_new_sectors_and_cut_prefix() {
        let t =
            Tear { sectors_new: 0b0000_0101, cut: Some(SubsectorCut { sector: 1, new_bytes: 10 }) };
        let out = t.apply(&filled(1), &filled(2));
        assert!(out[..512].iter().all(|&b| b == 2));
        assert!(out[512..522].iter().all(|&b| b == 2));
        assert!(out[522..1024].iter().all(|&b| b == 1));
        assert!(out[1024..1536].iter().all(|&b| b == 2));
        assert!(out[1536..].iter().all(|&b| b == 1));
    }

    #[test]
    fn tear_classes() {
        let aligned = Tear { sectors_new: 0b0000_1111, cut: None };
        assert_eq!(aligned.fault_kind(AtomicUnit::Sector512), FaultKind::CrashTear);
        assert_eq!(aligned.fault_kind(AtomicUnit::Bytes2048), FaultKind::CrashTear);
        let split = Tear { sectors_new: 0b0000_0001, cut: None };
        assert_eq!(split.fault_kind(AtomicUnit::Bytes1024), FaultKind::SubsectorTear);
        let cut = Tear { sectors_new: 0, cut: Some(SubsectorCut { sector: 3, new_bytes: 100 }) };
        assert_eq!(cut.fault_kind(AtomicUnit::Sector512), FaultKind::SubsectorTear);
        assert_eq!(aligned.fault_kind(AtomicUnit::Block4096), FaultKind::SubsectorTear);
    }

    #[test]
    fn plan_validation() {
        let tear = Tear { sectors_new: 1, cut: Some(SubsectorCut { sector: 8, new_bytes: 1 }) };
        let plan = CrashPlan::in_issue_order(vec![WriteChoice::Apply, WriteChoice::Tear(tear)]);
        assert_eq!(plan.validate(2), Err(PlanError::BadTear { index: 1 }));
        assert!(matches!(plan.validate(3), Err(PlanError::WrongLength { .. })));
        let plan = CrashPlan { choices: vec![WriteChoice::Drop; 2], order: vec![1, 1] };
        assert_eq!(plan.validate(2), Err(PlanError::NotAPermutation { index: 1 }));
    }

    #[test]
    fn image_clone_shares_blocks_and_compares_by_content() {
        let a = MemoryImage::from_bytes(&[7u8; 5000]);
        assert_eq!(a.nr_blocks(), 2);
        assert_eq!(a.block(1).map(|b| (b[903], b[904])), Some((7, 0)));
        assert_eq!(a.block(2), None);
        let b = MemoryImage::from_bytes(&a.to_bytes());
        assert_eq!(a, b);
        assert_eq!(content_hash(&a), content_hash(&b));
        let mut c = a.clone();
        c.set(0, Arc::new(filled(9)));
        assert_eq!(c.differing_blocks(&a), vec![0]);
        // The engine's view writes copy on write: the image it was made from is unchanged.
        let mut dev = a.clone();
        let mut buf = [0u8; BLOCK_SIZE];
        dev.read(1, &mut buf).unwrap();
        assert_eq!(&buf, a.block(1).unwrap());
        dev.write(1, &filled(7)).unwrap();
        assert_eq!(dev.block(1), Some(&filled(7)));
        assert_ne!(a.block(1), Some(&filled(7)));
        assert!(dev.read(a.nr_blocks(), &mut buf).is_err());
    }
}
