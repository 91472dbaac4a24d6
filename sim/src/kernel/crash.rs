//! Crash mode: the kernel's real metadata write stream, as dm-log-writes recorded it, cut
//! by the simulated disk's crash model, and every crash image judged.
//!
//! The stream. Entries of the run's logs, in order (a metadata growth starts the next log).
//! dm-log-writes logs a write when it completes, and a flush after the writes that completed
//! before the flush was issued, so the log is a sequence of flush *epochs*: the writes
//! between two flush entries were volatile together. A FUA write is durable from its entry
//! on. A commit is a write of block 0 (the superblock); the state it publishes is the image
//! at the end of its epoch (dm-thin writes the superblock alone between two flushes).
//!
//! The judgement, for a run:
//! 1. Every commit's image opens in thinsim's engine and equals a model state at a block or
//!    op boundary, at or after the previous commit's (`points` of the emulation): the kernel
//!    committed what the ops did, in order. (A commit may fall between two blocks of one
//!    write run: the kernel's periodic commit.)
//! 2. For each epoch, `images_per_epoch` crash images: the durable image before the epoch,
//!    then a cut inside it (FUA writes before the cut land), each other write of the epoch
//!    applied whole, dropped or torn at 512-byte sectors, in a random order. Each image must
//!    open, its superblock must be one the kernel wrote, its state must equal that commit's
//!    model state, and that commit must be no older than the last one whose flush had
//!    returned before the epoch (no durable commit lost).
//!
//! Every choice comes from one ChaCha stream seeded with the run's seed.

use super::logwrites::{self, Entry, LogError};
use crate::runner::oracle::{self, Mismatch};
use engine::io::MemoryDevice;
use engine::thin::Pool;
use model::Model;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

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
            CrashFinding::CommitLost { epoch, image, found, durable } => write!(
                f,
                "crash image {image} of epoch {epoch} opened at commit {found}, but commit {durable} was durable"
            ),
        }
    }
}

/// What crash mode did (every count must be non-zero on a run that wrote anything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashStats {
    pub entries: u64,
    pub flushes: u64,
    pub fua_writes: u64,
    pub epochs: u64,
    pub commits: u64,
    pub images: u64,
    pub writes_dropped: u64,
    pub writes_torn: u64,
    /// Crash images that opened at the epoch's own new commit, not the previous one.
    pub images_at_new_commit: u64,
    /// Superblocks the kernel made durable that changed only the held root (the known
    /// defect, reports/kernel/held-root-outside-commit.md): not commits, so not matched.
    pub held_only_superblocks: u64,
    /// Crash images that opened at such a superblock: counted, not judged.
    pub images_at_held_only_superblock: u64,
}

/// What crash mode found: its counts, and the first finding if any.
#[derive(Debug, Clone)]
pub struct CrashVerdict {
    pub stats: CrashStats,
    pub finding: Option<CrashFinding>,
}

/// A logged metadata write: whole 4 KiB blocks from `block` on.
struct Write {
    block: u64,
    data: Vec<u8>,
    fua: bool,
}

/// One flush epoch: the writes between two flushes.
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

/// The epochs of the concatenated logs.
fn epochs(
    logs: &[PathBuf],
    meta_blocks: u64,
    stats: &mut CrashStats,
) -> Result<Vec<Epoch>, CrashFinding> {
    let mut out = vec![Epoch::default()];
    for log in logs {
        for e in read_log(log)? {
            stats.entries += 1;
            if e.is_mark() || e.is_discard() {
                continue;
            }
            if e.is_flush() {
                stats.flushes += 1;
                out.push(Epoch::default());
            }
            if e.nr_sectors == 0 {
                continue;
            }
            let bad = |detail: String| CrashFinding::BadWrite { entry: e.index, detail };
            if e.sector % (BLOCK / SECTOR) != 0 || e.nr_sectors % (BLOCK / SECTOR) != 0 {
                return Err(bad(format!(
                    "sector {} + {} is not whole 4 KiB blocks",
                    e.sector, e.nr_sectors
                )));
            }
            let block = e.sector / (BLOCK / SECTOR);
            if block + e.nr_sectors / (BLOCK / SECTOR) > meta_blocks {
                return Err(bad(format!("block {block} beyond the metadata device")));
            }
            let fua = e.is_fua();
            stats.fua_writes += fua as u64;
            let last = out.last_mut().expect("one epoch at least");
            last.writes.push(Write { block, data: e.data, fua });
        }
    }
    stats.epochs = out.len() as u64;
    Ok(out)
}

fn apply(img: &mut MemoryDevice, w: &Write) {
    for (i, chunk) in w.data.chunks(BLOCK as usize).enumerate() {
        img.block_mut(w.block + i as u64)[..chunk.len()].copy_from_slice(chunk);
    }
}

fn tear(img: &mut MemoryDevice, w: &Write, rng: &mut ChaCha8Rng) {
    for (i, chunk) in w.data.chunks(BLOCK as usize).enumerate() {
        let b = img.block_mut(w.block + i as u64);
        for (s, sector) in chunk.chunks(SECTOR as usize).enumerate() {
            if rng.random_bool(0.5) {
                let at = s * SECTOR as usize;
                b[at..at + sector.len()].copy_from_slice(sector);
            }
        }
    }
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

/// Judges the logs of a run: `points` are the emulation's states in order. A crash image
/// that fails is written to `keep` as `crash-epoch<K>-image<I>.img`.
pub fn judge(
    logs: &[PathBuf],
    keep: Option<&Path>,
    initial: &MemoryDevice,
    points: &[Model],
    seed: u64,
    images_per_epoch: usize,
) -> CrashVerdict {
    let mut stats = CrashStats::default();
    let finding = judge_into(logs, keep, initial, points, seed, images_per_epoch, &mut stats).err();
    CrashVerdict { stats, finding }
}

fn judge_into(
    logs: &[PathBuf],
    keep: Option<&Path>,
    initial: &MemoryDevice,
    points: &[Model],
    seed: u64,
    images_per_epoch: usize,
    stats: &mut CrashStats,
) -> Result<(), CrashFinding> {
    let epochs = epochs(logs, engine::io::BlockDevice::nr_blocks(initial), stats)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0063_7261_7368); // "crash"
    let mut durable = initial.clone();
    // Each superblock the kernel made durable: its bytes and the model point its state
    // equals; `None` for a superblock that only changed the held root (the defect).
    let mut commits: Vec<(Vec<u8>, Option<usize>)> = Vec::new();
    let mut next_point = 0usize;
    // A restored image the kernel started from is the first commit.
    let sb = superblock(&durable);
    if sb.iter().any(|&b| b != 0) {
        let pool =
            open(&durable).map_err(|error| CrashFinding::CommitUnreadable { commit: 0, error })?;
        next_point = match_point(&pool, points, 0).map_err(|mismatch| {
            CrashFinding::CommitUnmatched { commit: 0, from_point: 0, mismatch }
        })?;
        commits.push((sb, Some(next_point)));
    }
    for (k, epoch) in epochs.iter().enumerate() {
        let durable_sb = superblock(&durable);
        let durable_commit = commits.len().checked_sub(1);
        // Crash images of this epoch that opened at its own new commit: judged once that
        // commit's state is matched, at the end of the epoch.
        let mut own_commit: Vec<(usize, Pool, MemoryDevice)> = Vec::new();
        let images = if epoch.writes.is_empty() { 0 } else { images_per_epoch };
        for image in 0..images {
            let img = cut(&durable, epoch, &mut rng, stats);
            stats.images += 1;
            let sb = superblock(&img);
            if durable_commit.is_none() && sb.iter().all(|&b| b == 0) {
                continue; // not formatted yet: a blank device, which the pool formats anew
            }
            let own =
                epoch.writes.iter().any(|w| w.block == 0 && w.data[..BLOCK as usize] == sb[..]);
            let candidate = commits.iter().rposition(|(s, _)| *s == sb);
            if (own && held_only(&durable_sb, &sb))
                || candidate.is_some_and(|c| commits[c].1.is_none())
            {
                stats.images_at_held_only_superblock += 1;
                continue;
            }
            let found = match (candidate, own) {
                (_, true) => commits.len(),
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
            match commits.get(found) {
                Some((_, Some(point))) => {
                    if let Err(mismatch) = oracle::compare_pool(&pool, &points[*point]) {
                        keep_image(keep, k, image, &img);
                        return Err(CrashFinding::ImageWrong {
                            epoch: k,
                            image,
                            commit: found,
                            mismatch,
                        });
                    }
                }
                _ => {
                    stats.images_at_new_commit += 1;
                    own_commit.push((image, pool, img));
                }
            }
        }
        // The epoch ends: all its writes are durable.
        for w in &epoch.writes {
            apply(&mut durable, w);
        }
        if !epoch.writes.iter().any(|w| w.block == 0) {
            continue;
        }
        let c = commits.len();
        let sb = superblock(&durable);
        if held_only(&durable_sb, &sb) {
            stats.held_only_superblocks += 1;
            commits.push((sb, None));
            continue;
        }
        stats.commits += 1;
        let pool = match open(&durable) {
            Ok(p) => p,
            Err(error) => return Err(CrashFinding::CommitUnreadable { commit: c, error }),
        };
        let p = match match_point(&pool, points, next_point) {
            Ok(p) => p,
            Err(mismatch) => {
                return Err(CrashFinding::CommitUnmatched {
                    commit: c,
                    from_point: next_point,
                    mismatch,
                })
            }
        };
        next_point = p;
        commits.push((sb, Some(p)));
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
    }
    Ok(())
}

/// One crash image cut inside `epoch`: the durable image, the FUA writes before a random
/// cut, and each other write of the epoch applied whole, dropped or torn, in random order
/// (an older version of a block may land over a newer one).
fn cut(
    durable: &MemoryDevice,
    epoch: &Epoch,
    rng: &mut ChaCha8Rng,
    stats: &mut CrashStats,
) -> MemoryDevice {
    let mut img = durable.clone();
    let at = rng.random_range(0..=epoch.writes.len());
    let mut pending: Vec<&Write> = Vec::new();
    for (i, w) in epoch.writes.iter().enumerate() {
        if w.fua && i < at {
            apply(&mut img, w);
        } else {
            pending.push(w);
        }
    }
    for i in (1..pending.len()).rev() {
        pending.swap(i, rng.random_range(0..=i));
    }
    for w in pending {
        match rng.random_range(0..3) {
            0 => apply(&mut img, w),
            1 => stats.writes_dropped += 1,
            _ => {
                stats.writes_torn += 1;
                tear(&mut img, w, rng);
            }
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
        if cur.trans_id != summary.transaction_id
            || cur.time != summary.time
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
