//! Crash mode: the kernel's real write stream, as dm-log-writes recorded it, cut by the
//! simulated disk's crash model, and every crash image judged; and the data device's
//! content judged against what the metadata published and what userspace was promised.
//!
//! The stream. One log holds the writes to the metadata and the data device (`script`'s
//! layout: a write's sector says which), in the order they completed; a flush entry is
//! logged after the writes that completed before it was issued, and its sector says which
//! device it flushed. So the metadata writes form a sequence of flush *epochs*: the writes
//! between two metadata flushes were volatile together. A FUA write is durable from its
//! entry on. A commit is a write of block 0 (the superblock); the state it publishes is the
//! image at the end of its epoch (dm-thin writes the superblock alone between two flushes).
//!
//! The judgement, for a run:
//! 1. Every commit's image opens in thinsim's engine and equals a model state at a block or
//!    op boundary, at or after the previous commit's (`points` of the emulation): the kernel
//!    committed what the ops did, in order. (A commit may fall between two blocks of one
//!    write run: the kernel's periodic commit.)
//! 2. For each epoch, `images_per_epoch` crash images: the durable image before the epoch,
//!    then a cut inside it (FUA writes before the cut land), and the epoch's other writes,
//!    block by block, as the simulated disk's crash model ([`crate::disk::cut`] under
//!    [`kernel_disk`]) leaves pending writes: each applied whole, dropped or torn at
//!    512-byte sectors, in a random order. Each image must
//!    open, its superblock must be one the kernel wrote, its state must equal that commit's
//!    model state, and that commit must be no older than the last one whose flush had
//!    returned before the epoch (no durable commit lost).
//! 3. The data rules of [`super::durability`]: a commit publishes only durable data (a
//!    finding at a quiescent commit), and every `ack` mark's promise holds. Every expected
//!    `ack` mark must be in the log, and a run that wrote data must verify some.
//!
//! Every choice comes from one [`Entropy`] (a seed's ChaCha stream by default,
//! [`crash_entropy`]; a fuzzer's bytes or any stream otherwise): the cuts, and a seed for
//! the sampling of passing images drawn from it first, so sampling changes no crash image.

use super::defects::{Defect, DefectStatus};
use super::durability::{check_ack, mapped_blocks, published, Ack, DataProblem, DataState};
use super::logwrites::{self, Entry, LogError};
use super::script::Layout;
use crate::disk::{self, DiskConfig, PendingWrite, WriteChoice};
use crate::entropy::Entropy;
use crate::runner::oracle::{self, Mismatch};
use engine::io::{Block, MemoryDevice};
use engine::thin::Pool;
use model::Model;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BLOCK: u64 = 4096;
const SECTOR: u64 = 512;

/// What crash mode found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashFinding {
    LogUnreadable {
        log: PathBuf,
        error: String,
    },
    /// A logged write the metadata device could not have taken (misaligned, beyond its end).
    BadWrite {
        entry: u64,
        detail: String,
    },
    /// A commit's image did not open in the engine.
    CommitUnreadable {
        commit: usize,
        error: String,
    },
    /// A commit equals no model state from the previous commit's on.
    CommitUnmatched {
        commit: usize,
        from_point: usize,
        mismatch: Mismatch,
    },
    /// A crash image did not open.
    ImageUnopenable {
        epoch: usize,
        image: usize,
        error: String,
    },
    /// A crash image's superblock is none the kernel wrote.
    UnknownSuperblock {
        epoch: usize,
        image: usize,
    },
    /// A crash image's state differs from its commit's.
    ImageWrong {
        epoch: usize,
        image: usize,
        commit: usize,
        mismatch: Mismatch,
    },
    /// A crash image went back past a commit whose flush had returned.
    CommitLost {
        epoch: usize,
        image: usize,
        found: usize,
        durable: usize,
    },
    /// The logs held no commit or gave no crash image: crash mode judged nothing.
    NothingJudged {
        entries: u64,
    },
    /// A quiescent commit published a data block whose data was not durable, or wrong.
    DataUnpublishable {
        commit: usize,
        problem: DataProblem,
    },
    /// Op `op` returned success with a durability promise the log shows broken.
    AckBroken {
        op: usize,
        problem: DataProblem,
    },
    /// An op expected to succeed with a promise left no `ack` mark.
    AckMissing {
        op: usize,
    },
    /// An `ack` mark for an op that made no promise.
    AckUnexpected {
        mark: String,
    },
    /// Data was written, and the data rules verified no block: they judged nothing.
    DataUnjudged {
        data_writes: u64,
    },
    /// A known defect's symptom on a kernel known to have its fix: the defect is back.
    FixedDefectSeen {
        defect: Defect,
        kernel: String,
        /// Superblocks showing it, and crash images that opened at one.
        superblocks: u64,
        images: u64,
    },
}

/// The regression rule for the held-root defect: on a kernel that has the fix
/// ([`DefectStatus::Fixed`]) a superblock that changed only the held root fails the run;
/// where the defect is present or its status unknown it is counted (in `stats`) only.
pub fn held_root_rule(
    status: DefectStatus,
    kernel: &str,
    stats: &CrashStats,
) -> Option<CrashFinding> {
    (status == DefectStatus::Fixed && stats.held_only_superblocks > 0).then(|| {
        CrashFinding::FixedDefectSeen {
            defect: Defect::HeldRootOutsideCommit,
            kernel: kernel.to_string(),
            superblocks: stats.held_only_superblocks,
            images: stats.images_at_held_only_superblock,
        }
    })
}

impl std::fmt::Display for CrashFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashFinding::LogUnreadable { log, error } => {
                write!(f, "log {} unreadable: {error}", log.display())
            }
            CrashFinding::BadWrite { entry, detail } => write!(f, "log entry {entry}: {detail}"),
            CrashFinding::CommitUnreadable { commit, error } => {
                write!(f, "the kernel's commit {commit} does not open: {error}")
            }
            CrashFinding::CommitUnmatched { commit, from_point, mismatch } => write!(
                f,
                "the kernel's commit {commit} equals no model state from point {from_point} on; against the nearest:\n{mismatch}"
            ),
            CrashFinding::ImageUnopenable { epoch, image, error } => {
                write!(f, "crash image {image} of epoch {epoch} does not open: {error}")
            }
            CrashFinding::UnknownSuperblock { epoch, image } => write!(
                f,
                "crash image {image} of epoch {epoch} has a superblock the kernel never wrote"
            ),
            CrashFinding::ImageWrong { epoch, image, commit, mismatch } => write!(
                f,
                "crash image {image} of epoch {epoch} (commit {commit}) differs:\n{mismatch}"
            ),
            CrashFinding::NothingJudged { entries } => write!(
                f,
                "crash mode judged nothing: {entries} log entries, no commit or no crash image"
            ),
            CrashFinding::DataUnpublishable { commit, problem } => write!(
                f,
                "the kernel's commit {commit}, made with nothing in flight, published data that was not durable: {problem}"
            ),
            CrashFinding::AckBroken { op, problem } => write!(
                f,
                "op {op} returned success, and what it promised is not durable: {problem}"
            ),
            CrashFinding::AckMissing { op } => write!(f, "op {op} left no ack mark in the log"),
            CrashFinding::AckUnexpected { mark } => {
                write!(f, "the log has a mark {mark:?} for an op that promised nothing")
            }
            CrashFinding::DataUnjudged { data_writes } => write!(
                f,
                "the data rules verified no block although the log has {data_writes} data writes"
            ),
            CrashFinding::FixedDefectSeen { defect, kernel, superblocks, images } => write!(
                f,
                "{superblocks} superblocks changed only the held root ({images} crash images opened at one): \
                 the defect {} ({}) is back on {kernel}, a kernel that has its fix",
                defect.name(),
                defect.report()
            ),
            CrashFinding::CommitLost { epoch, image, found, durable } => write!(
                f,
                "crash image {image} of epoch {epoch} opened at commit {found}, but commit {durable} was durable"
            ),
        }
    }
}

/// What crash mode did (every count must be non-zero on a run that wrote anything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CrashStats {
    pub entries: u64,
    pub flushes: u64,
    pub fua_writes: u64,
    pub epochs: u64,
    pub commits: u64,
    pub images: u64,
    /// Block writes a crash image dropped or tore (each logged write counts per block).
    pub writes_dropped: u64,
    pub writes_torn: u64,
    /// Crash images that opened at the epoch's own new commit, not the previous one.
    pub images_at_new_commit: u64,
    /// Superblocks the kernel made durable that changed only the held root (the known
    /// defect, reports/kernel/held-root-outside-commit.md): not commits, so not matched.
    pub held_only_superblocks: u64,
    /// Crash images that opened at such a superblock: counted, not judged.
    pub images_at_held_only_superblock: u64,
    pub data_writes: u64,
    pub data_flushes: u64,
    /// Published data blocks found durable with their tag (rule 1).
    pub data_blocks_verified: u64,
    /// Times a published block's data was not yet durable at a commit that was not
    /// quiescent (carried to the next commit).
    pub data_pending_at_commit: u64,
    pub quiescent_commits: u64,
    /// `ack` marks checked (rule 2), and the mapped blocks they covered.
    pub acks_checked: u64,
    pub ack_blocks_checked: u64,
}

/// What crash mode found: its counts, and the first finding if any.
#[derive(Debug, Clone)]
pub struct CrashVerdict {
    pub stats: CrashStats,
    pub finding: Option<CrashFinding>,
    /// Crash images that passed, chosen uniformly (a reservoir), to reopen in the kernel.
    pub samples: Vec<Sample>,
}

/// A crash image that passed, and the model state it opened at.
#[derive(Debug, Clone)]
pub struct Sample {
    pub epoch: usize,
    pub image: usize,
    pub point: usize,
    pub device: MemoryDevice,
    /// The sizes its superblock records, in metadata and data blocks.
    pub metadata_blocks: u64,
    pub data_blocks: u64,
}

/// A logged metadata write: whole 4 KiB blocks from `block` on.
struct Write {
    block: u64,
    blocks: Vec<Arc<Block>>,
    fua: bool,
}

impl Write {
    fn new(block: u64, data: &[u8], fua: bool) -> Self {
        let blocks = data
            .chunks_exact(BLOCK as usize)
            .map(|c| Arc::new(Block::try_from(c).expect("a whole block")))
            .collect();
        Write { block, blocks, fua }
    }
}

/// One flush epoch: the metadata writes between two metadata flushes.
#[derive(Default)]
struct Epoch {
    writes: Vec<Write>,
}

fn read_log(path: &Path) -> Result<Vec<Entry>, CrashFinding> {
    let unreadable = |error: String| CrashFinding::LogUnreadable { log: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    // SAFETY: the log file is the harness's own and nothing writes it while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| unreadable(e.to_string()))?;
    let log = logwrites::parse(&map).map_err(|e: LogError| unreadable(e.to_string()))?;
    if log.sector_size as u64 > BLOCK || !BLOCK.is_multiple_of(log.sector_size as u64) {
        return Err(unreadable(format!("sector size {}", log.sector_size)));
    }
    let ss = log.sector_size as u64;
    // Store offsets in 512-byte sectors from here on.
    Ok(log
        .entries
        .into_iter()
        .map(|mut e| {
            e.sector *= ss / SECTOR;
            e.nr_sectors *= ss / SECTOR;
            e
        })
        .collect())
}

fn apply(img: &mut MemoryDevice, w: &Write) {
    for (i, b) in w.blocks.iter().enumerate() {
        img.set(w.block as usize + i, Arc::clone(b));
    }
}

/// The disk the kernel's metadata device is cut as: 512-byte sectors are atomic, and a
/// crash keeps any subset of the pending writes, whole or torn at sectors, in any order
/// (class A; the kernel's own device model, nothing injected besides the power cut).
pub fn kernel_disk() -> DiskConfig {
    DiskConfig::none()
}

/// The stream a seed's crash judgement draws from.
pub fn crash_entropy(seed: u64) -> Entropy {
    Entropy::seeded(seed ^ 0x0063_7261_7368) // "crash"
}

fn superblock(img: &MemoryDevice) -> Vec<u8> {
    img.block(0).map(|b| b.to_vec()).unwrap_or_else(|| vec![0; BLOCK as usize])
}

fn open(img: &MemoryDevice) -> Result<Pool, String> {
    Pool::open_image(img.to_device()).map_err(|e| e.to_string())
}

/// Writes a crash image that failed into `keep` (if given), for the bug report.
fn keep_image(keep: Option<&Path>, epoch: usize, image: usize, img: &MemoryDevice) {
    if let Some(dir) = keep {
        let _ = std::fs::write(
            dir.join(format!("crash-epoch{epoch}-image{image}.img")),
            img.to_bytes(),
        );
    }
}

/// What crash mode judges.
pub struct CrashInput<'a> {
    /// The run's log of the metadata and data devices.
    pub log: &'a Path,
    /// Where a crash image that fails is written, as `crash-epoch<K>-image<I>.img`.
    pub keep: Option<&'a Path>,
    /// The metadata device before the run (blank, or the image the kernel started from).
    pub initial: &'a MemoryDevice,
    /// The emulation's states, in order.
    pub points: &'a [Model],
    /// The promises userspace was given, in op order.
    pub acks: &'a [Ack],
    pub layout: Layout,
    /// Where the cuts and the sampling come from ([`crash_entropy`] of the workload's seed,
    /// unless a fuzzer or a trace drives them).
    pub entropy: Entropy,
    pub images_per_epoch: usize,
    /// How many passing crash images to keep as [`Sample`]s.
    pub samples: usize,
}

/// Judges a run's log.
pub fn judge(input: &CrashInput) -> CrashVerdict {
    let mut rng = input.entropy.clone();
    let sample_seed = rng.next_u64();
    let mut j = Judge {
        input,
        stats: CrashStats::default(),
        rng,
        durable: input.initial.clone(),
        commits: Vec::new(),
        next_point: 0,
        last_point: None,
        epoch: Epoch::default(),
        epoch_index: 0,
        data: DataState::default(),
        at_superblock: None,
        quiescent: false,
        published: BTreeMap::new(),
        published_before: BTreeSet::new(),
        initial_blocks: BTreeSet::new(),
        acks_seen: BTreeSet::new(),
        samples: Vec::new(),
        offered: 0,
        sample_rng: ChaCha8Rng::seed_from_u64(sample_seed),
    };
    let finding = j.run().err();
    CrashVerdict { stats: j.stats, finding, samples: j.samples }
}

/// The judge's state while it reads the log.
struct Judge<'a> {
    input: &'a CrashInput<'a>,
    stats: CrashStats,
    rng: Entropy,
    /// The metadata device as of the last flush.
    durable: MemoryDevice,
    /// Each superblock the kernel made durable: its bytes and the model point its state
    /// equals; `None` for a superblock that only changed the held root (the defect).
    commits: Vec<(Vec<u8>, Option<usize>)>,
    /// Where the next commit's match starts.
    next_point: usize,
    /// The point of the last durable commit.
    last_point: Option<usize>,
    epoch: Epoch,
    epoch_index: usize,
    data: DataState,
    /// The data device when the epoch's last superblock write was logged, and whether that
    /// was in a quiescent window.
    at_superblock: Option<(DataState, bool)>,
    /// Between a `ckpt` and its `ckptend` mark: nothing in flight.
    quiescent: bool,
    /// Published data blocks not yet found durable: block → (device, vblock).
    published: BTreeMap<u64, (u64, u64)>,
    /// The data blocks the last durable commit maps.
    published_before: BTreeSet<u64>,
    /// The data blocks the pool started with (a restored image's): never written.
    initial_blocks: BTreeSet<u64>,
    acks_seen: BTreeSet<usize>,
    samples: Vec<Sample>,
    /// Passing images offered to the reservoir so far.
    offered: u64,
    /// Its own stream (seeded by the first draw), so that sampling changes no crash image.
    sample_rng: ChaCha8Rng,
}

impl Judge<'_> {
    /// Offers a passing image to the reservoir of samples.
    fn offer(&mut self, epoch: usize, image: usize, point: usize, img: &MemoryDevice, pool: &Pool) {
        let Ok(summary) = pool.summary() else { return };
        let (metadata_blocks, data_blocks) = (summary.metadata_nr_blocks, summary.data_nr_blocks);
        let n = self.offered;
        self.offered += 1;
        let want = self.input.samples;
        let sample =
            || Sample { epoch, image, point, device: img.clone(), metadata_blocks, data_blocks };
        if self.samples.len() < want {
            self.samples.push(sample());
        } else if want > 0 {
            let j = self.sample_rng.random_range(0..=n) as usize;
            if j < want {
                self.samples[j] = sample();
            }
        }
    }

    fn run(&mut self) -> Result<(), CrashFinding> {
        let input = self.input;
        let entries = read_log(input.log)?;
        // A restored image the kernel started from is the first commit.
        let sb = superblock(&self.durable);
        if sb.iter().any(|&b| b != 0) {
            let pool = open(&self.durable)
                .map_err(|error| CrashFinding::CommitUnreadable { commit: 0, error })?;
            let p = match_point(&pool, input.points, 0).map_err(|mismatch| {
                CrashFinding::CommitUnmatched { commit: 0, from_point: 0, mismatch }
            })?;
            self.next_point = p;
            self.last_point = Some(p);
            self.initial_blocks = mapped_blocks(&input.points[p]).into_keys().collect();
            self.published_before = self.initial_blocks.clone();
            self.commits.push((sb, Some(p)));
        }
        let (data_at, data_len) = (input.layout.data_offset_sectors, input.layout.data_sectors);
        let bs = input.layout.data_block_sectors;
        for e in entries {
            self.stats.entries += 1;
            if e.is_mark() {
                self.mark(e.mark.as_deref().unwrap_or(""))?;
                continue;
            }
            let data = e.sector >= data_at;
            let bad = |detail: String| CrashFinding::BadWrite { entry: e.index, detail };
            if data && e.sector - data_at + e.nr_sectors > data_len {
                return Err(bad(format!("sector {} beyond the data device", e.sector)));
            }
            if e.is_discard() {
                if data {
                    self.data.discard(e.sector - data_at, e.nr_sectors, bs);
                }
                continue;
            }
            if e.is_flush() {
                if data {
                    self.stats.data_flushes += 1;
                    self.data.flush();
                } else {
                    self.stats.flushes += 1;
                    self.end_epoch()?;
                }
            }
            if e.nr_sectors == 0 {
                continue;
            }
            if data {
                self.stats.data_writes += 1;
                self.data.write(e.sector - data_at, &e.data, e.is_fua(), bs);
                continue;
            }
            if e.sector % (BLOCK / SECTOR) != 0 || e.nr_sectors % (BLOCK / SECTOR) != 0 {
                return Err(bad(format!(
                    "sector {} + {} is not whole 4 KiB blocks",
                    e.sector, e.nr_sectors
                )));
            }
            let block = e.sector / (BLOCK / SECTOR);
            let meta_blocks = engine::io::BlockDevice::nr_blocks(input.initial);
            if block + e.nr_sectors / (BLOCK / SECTOR) > meta_blocks {
                return Err(bad(format!("block {block} beyond the metadata device")));
            }
            let fua = e.is_fua();
            self.stats.fua_writes += fua as u64;
            if block == 0 {
                self.at_superblock = Some((self.data.clone(), self.quiescent));
            }
            self.epoch.writes.push(Write::new(block, &e.data, fua));
        }
        self.end_epoch()?;
        if let Some(a) = input.acks.iter().find(|a| !self.acks_seen.contains(&a.op)) {
            return Err(CrashFinding::AckMissing { op: a.op });
        }
        if self.stats.data_writes > 0 && self.stats.data_blocks_verified == 0 {
            return Err(CrashFinding::DataUnjudged { data_writes: self.stats.data_writes });
        }
        Ok(())
    }

    fn mark(&mut self, text: &str) -> Result<(), CrashFinding> {
        let op = |prefix: &str| text.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok());
        if op("ckptend").is_some() {
            self.quiescent = false;
        } else if op("ckpt").is_some() {
            self.quiescent = true;
        } else if let Some(i) = op("ack") {
            let input = self.input;
            let ack = input
                .acks
                .iter()
                .find(|a| a.op == i)
                .ok_or_else(|| CrashFinding::AckUnexpected { mark: text.to_string() })?;
            self.acks_seen.insert(i);
            let after = &input.points[ack.point];
            let durable = match self.last_point {
                Some(p) => &input.points[p],
                None => &input.points[0],
            };
            let n = check_ack(ack, after, durable, &self.data, &self.initial_blocks)
                .map_err(|problem| CrashFinding::AckBroken { op: i, problem })?;
            self.stats.acks_checked += 1;
            self.stats.ack_blocks_checked += n;
        }
        Ok(())
    }

    /// The current epoch ends (a metadata flush, or the end of the log): its crash images
    /// are judged, its writes become durable, and its commit, if any, is matched.
    fn end_epoch(&mut self) -> Result<(), CrashFinding> {
        let epoch = std::mem::take(&mut self.epoch);
        let k = self.epoch_index;
        self.epoch_index += 1;
        self.stats.epochs += 1;
        let input = self.input;
        let (keep, points) = (input.keep, input.points);
        let durable_sb = superblock(&self.durable);
        let durable_commit = self.commits.len().checked_sub(1);
        // Crash images of this epoch that opened at its own new commit: judged once that
        // commit's state is matched, at the end of the epoch.
        let mut own_commit: Vec<(usize, Pool, MemoryDevice)> = Vec::new();
        let images = if epoch.writes.is_empty() { 0 } else { input.images_per_epoch };
        for image in 0..images {
            let img = cut(&self.durable, &epoch, &mut self.rng, &mut self.stats);
            self.stats.images += 1;
            let sb = superblock(&img);
            if durable_commit.is_none() && sb.iter().all(|&b| b == 0) {
                continue; // not formatted yet: a blank device, which the pool formats anew
            }
            let own = epoch.writes.iter().any(|w| w.block == 0 && w.blocks[0][..] == sb[..]);
            let candidate = self.commits.iter().rposition(|(s, _)| *s == sb);
            if (own && held_only(&durable_sb, &sb))
                || candidate.is_some_and(|c| self.commits[c].1.is_none())
            {
                self.stats.images_at_held_only_superblock += 1;
                continue;
            }
            let found = match (candidate, own) {
                (_, true) => self.commits.len(),
                (Some(c), false) => c,
                (None, false) => {
                    keep_image(keep, k, image, &img);
                    return Err(CrashFinding::UnknownSuperblock { epoch: k, image });
                }
            };
            if let Some(d) = durable_commit {
                if found < d {
                    keep_image(keep, k, image, &img);
                    return Err(CrashFinding::CommitLost { epoch: k, image, found, durable: d });
                }
            }
            let pool = match open(&img) {
                Ok(p) => p,
                Err(error) => {
                    keep_image(keep, k, image, &img);
                    return Err(CrashFinding::ImageUnopenable { epoch: k, image, error });
                }
            };
            match self.commits.get(found) {
                Some((_, Some(point))) => {
                    let point = *point;
                    if let Err(mismatch) = oracle::compare_pool(&pool, &points[point]) {
                        keep_image(keep, k, image, &img);
                        return Err(CrashFinding::ImageWrong {
                            epoch: k,
                            image,
                            commit: found,
                            mismatch,
                        });
                    }
                    self.offer(k, image, point, &img, &pool);
                }
                _ => {
                    self.stats.images_at_new_commit += 1;
                    own_commit.push((image, pool, img));
                }
            }
        }
        // The epoch ends: all its writes are durable.
        for w in &epoch.writes {
            apply(&mut self.durable, w);
        }
        let Some((data_at_sb, quiescent)) = self.at_superblock.take() else {
            return Ok(());
        };
        let c = self.commits.len();
        let sb = superblock(&self.durable);
        if held_only(&durable_sb, &sb) {
            self.stats.held_only_superblocks += 1;
            self.commits.push((sb, None));
            return Ok(());
        }
        self.stats.commits += 1;
        let pool = match open(&self.durable) {
            Ok(p) => p,
            Err(error) => return Err(CrashFinding::CommitUnreadable { commit: c, error }),
        };
        let p = match match_point(&pool, points, self.next_point) {
            Ok(p) => p,
            Err(mismatch) => {
                return Err(CrashFinding::CommitUnmatched {
                    commit: c,
                    from_point: self.next_point,
                    mismatch,
                })
            }
        };
        self.next_point = p;
        self.last_point = Some(p);
        self.commits.push((sb, Some(p)));
        for (image, pool, img) in &own_commit {
            if let Err(mismatch) = oracle::compare_pool(pool, &points[p]) {
                keep_image(keep, k, *image, img);
                return Err(CrashFinding::ImageWrong {
                    epoch: k,
                    image: *image,
                    commit: c,
                    mismatch,
                });
            }
        }
        self.judge_published(c, &points[p], &data_at_sb, quiescent)
    }

    /// Rule 1 of [`super::durability`] at commit `c`, whose state is `state`.
    fn judge_published(
        &mut self,
        c: usize,
        state: &Model,
        at: &DataState,
        quiescent: bool,
    ) -> Result<(), CrashFinding> {
        self.stats.quiescent_commits += quiescent as u64;
        let now = mapped_blocks(state);
        for (d, dv) in &now {
            if !self.published_before.contains(d) {
                self.published.insert(*d, *dv);
            }
        }
        let mut pending = BTreeMap::new();
        for d in std::mem::take(&mut self.published).into_keys() {
            // No longer mapped: nothing to judge. Else judge it as mapped now.
            let Some(&(dev, v)) = now.get(&d) else { continue };
            match published(at, dev, v, d) {
                Ok(()) => self.stats.data_blocks_verified += 1,
                Err(problem) if quiescent => {
                    return Err(CrashFinding::DataUnpublishable { commit: c, problem })
                }
                Err(_) => {
                    self.stats.data_pending_at_commit += 1;
                    pending.insert(d, (dev, v));
                }
            }
        }
        self.published = pending;
        self.published_before = now.into_keys().collect();
        Ok(())
    }
}

/// One crash image cut inside `epoch`: the durable image, the FUA writes before a random
/// cut, and the epoch's other writes, block by block, left to the disk's crash model (each
/// applied whole, dropped or torn, in random order: an older version of a block may land
/// over a newer one).
fn cut(
    durable: &MemoryDevice,
    epoch: &Epoch,
    rng: &mut Entropy,
    stats: &mut CrashStats,
) -> MemoryDevice {
    let mut base = durable.clone();
    let at = rng.random_range(0..=epoch.writes.len());
    let mut pending = Vec::new();
    for (i, w) in epoch.writes.iter().enumerate() {
        if w.fua && i < at {
            apply(&mut base, w);
            continue;
        }
        for (j, b) in w.blocks.iter().enumerate() {
            let seq = pending.len() as u64;
            pending.push(PendingWrite::accepted(seq, w.block + j as u64, Arc::clone(b)));
        }
    }
    let (img, plan) = disk::cut(rng, &base, &pending, &kernel_disk());
    for c in &plan.choices {
        match c {
            WriteChoice::Apply => {}
            WriteChoice::Drop => stats.writes_dropped += 1,
            WriteChoice::Tear(_) => stats.writes_torn += 1,
        }
    }
    img
}

/// Whether superblock `b` differs from `a` in nothing but its held root (and checksum):
/// what the kernel writes when reserve or release of the metadata snapshot dirties the
/// superblock outside its commit protocol (reports/kernel/held-root-outside-commit.md).
fn held_only(a: &[u8], b: &[u8]) -> bool {
    const CSUM: std::ops::Range<usize> = 0..4;
    const HELD_ROOT: std::ops::Range<usize> = 56..64;
    a != b
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| x == y || CSUM.contains(&i) || HELD_ROOT.contains(&i))
}

/// The first point from `from` on whose model equals the pool; else the difference from
/// the point at `from`.
fn match_point(pool: &Pool, points: &[Model], from: usize) -> Result<usize, Mismatch> {
    let summary = pool.summary().map_err(|e| Mismatch::Query(e.to_string()))?;
    let mut first = None;
    for (i, m) in points.iter().enumerate().skip(from) {
        let cur = m.current();
        // Cheap filters first: the pool values and every device's mapped count.
        if cur.trans_id != summary.transaction_id.0
            || cur.time != summary.time.0
            || cur.data_blocks != summary.data_nr_blocks
        {
            continue;
        }
        match oracle::compare_pool(pool, m) {
            Ok(()) => return Ok(i),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| match points.get(from) {
        Some(m) => {
            oracle::compare_pool(pool, m).err().unwrap_or(Mismatch::State("no later state".into()))
        }
        None => Mismatch::State("no model state left".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_root_only_superblock_fails_only_on_a_kernel_that_has_the_fix() {
        let seen = CrashStats {
            held_only_superblocks: 2,
            images_at_held_only_superblock: 5,
            ..CrashStats::default()
        };
        assert_eq!(held_root_rule(DefectStatus::Present, "6.1.176", &seen), None);
        assert_eq!(held_root_rule(DefectStatus::Unknown, "6.6.1", &seen), None);
        assert_eq!(held_root_rule(DefectStatus::Fixed, "6.12.118", &CrashStats::default()), None);
        let f = held_root_rule(DefectStatus::Fixed, "6.12.118", &seen).expect("a regression");
        assert_eq!(
            f,
            CrashFinding::FixedDefectSeen {
                defect: Defect::HeldRootOutsideCommit,
                kernel: "6.12.118".into(),
                superblocks: 2,
                images: 5
            }
        );
        assert!(f.to_string().contains("is back on 6.12.118"), "{f}");
    }

    #[test]
    fn held_only_means_a_superblock_that_differs_in_the_held_root_and_checksum_alone() {
        let a = vec![0u8; 512];
        let mut b = a.clone();
        b[56] = 9;
        b[0] = 1;
        assert!(held_only(&a, &b));
        assert!(!held_only(&a, &a), "an unchanged superblock is no held-only one");
        b[64] = 1;
        assert!(!held_only(&a, &b), "a change past the held root is a commit");
    }
}
