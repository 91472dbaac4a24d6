//! A kernel workload: what userspace does to a dm-thin pool, as values. Each [`KOp`] is one
//! thing the guest script does to the pool target (a message, a write through a thin
//! device, a discard, a flush, a table reload) and, on thinsim's side, the calls the pool
//! target makes for it (`emulate`). A workload is drawn from a seed against the emulation,
//! so it only names devices that exist when it runs, and it is stored as JSON, so a person
//! can read, edit and replay it without the generator.
//!
//! Invariants:
//! - Every thin device that exists is active in the guest (one `thin` target per device),
//!   except while the op that deletes it runs; so every write and discard has a device.
//! - A discard is always followed by a flush in the same op, and a data block freed by a
//!   delete is freed by a message, which commits. The kernel commits on its own as well
//!   (once a second while the pool changed), and blocks freed in a transaction are not
//!   allocatable until it commits; ending every freeing op with a commit makes the data
//!   block numbers the kernel chooses independent of when its periodic commits fall.
//! - Writes are whole data blocks or runs of them, each block one bio issued in order,
//!   so a periodic commit can only fall between two blocks, never inside one allocation.
//! - The serde names are the kernel trace format ([`FORMAT_VERSION`]).

use crate::runner::Prepopulation;
use serde::{Deserialize, Serialize};

/// Version of the kernel workload file format.
pub const FORMAT_VERSION: u32 = 1;

/// Largest thin id the pool target accepts (24 bits).
pub const MAX_THIN_ID: u64 = (1 << 24) - 1;

/// The pool's geometry, fixed for a workload except where its ops grow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolShape {
    /// Data block size in 512-byte sectors (the pool target's minimum, 64 KiB, is 128).
    pub data_block_sectors: u32,
    /// Data blocks at the start.
    pub data_blocks: u64,
    /// Metadata blocks (4 KiB) at the start.
    pub metadata_blocks: u64,
    /// Size of every thin device, in data blocks.
    pub virtual_blocks: u64,
    /// Largest data size any op grows to (the data image is made this big).
    pub max_data_blocks: u64,
    /// Largest metadata size any op grows to.
    pub max_metadata_blocks: u64,
    /// Start from this image, restored by thinsim (the kernel activates what thinsim wrote),
    /// instead of a blank metadata device the kernel formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepopulation: Option<Prepopulation>,
    /// The pool target's feature arguments (absent in a file: the defaults, what every
    /// workload had before features were drawn).
    #[serde(default, skip_serializing_if = "PoolFeatures::is_default")]
    pub features: PoolFeatures,
}

/// The pool target's feature arguments and the module's no-space timeout, drawn per seed.
/// None of them changes what the metadata holds; each changes how the kernel gets there
/// (when bios wait, what the data device is sent), which the judges must then agree with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFeatures {
    /// `error_if_no_space`: out of data space, a bio that needs a block fails at once.
    /// Without it the pool queues such bios and fails them with ENOSPC when
    /// `no_space_timeout_seconds` have passed since it entered out-of-data-space (or since
    /// its last resume), and fails at once from then on until it resumes: the same
    /// answers, later.
    pub error_if_no_space: bool,
    /// The `dm_thin_pool` module's `no_space_timeout` in seconds (used when queueing; at
    /// least 1: 0 would queue forever and hang the guest).
    pub no_space_timeout_seconds: u32,
    /// Zero the unwritten part of a newly provisioned block (no `skip_block_zeroing`):
    /// the data device sees a zeroing write of the whole block before the guest's write.
    pub zero_new_blocks: bool,
    /// Pass discards down to the data device (no `no_discard_passdown`).
    pub discard_passdown: bool,
}

impl Default for PoolFeatures {
    fn default() -> PoolFeatures {
        PoolFeatures {
            error_if_no_space: true,
            no_space_timeout_seconds: 60,
            zero_new_blocks: false,
            discard_passdown: true,
        }
    }
}

impl PoolFeatures {
    pub fn is_default(&self) -> bool {
        *self == PoolFeatures::default()
    }

    /// The feature arguments of the pool's table, after the block size and low water mark.
    pub fn table_args(&self) -> Vec<&'static str> {
        let mut a = Vec::new();
        if !self.zero_new_blocks {
            a.push("skip_block_zeroing");
        }
        if !self.discard_passdown {
            a.push("no_discard_passdown");
        }
        if self.error_if_no_space {
            a.push("error_if_no_space");
        }
        a
    }

    /// The words `dmsetup status` prints for the discard and no-space features.
    pub fn status_words(&self) -> (&'static str, &'static str) {
        (
            if self.discard_passdown { "discard_passdown" } else { "no_discard_passdown" },
            if self.error_if_no_space { "error_if_no_space" } else { "queue_if_no_space" },
        )
    }
}

/// One thing userspace does to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum KOp {
    /// `create_thin` message, then activate the device.
    CreateThin { dev: u64 },
    /// Suspend the origin, `create_snap` message, resume it, activate the snapshot.
    CreateSnap { dev: u64, origin: u64 },
    /// Deactivate the device (if active), then the `delete` message.
    Delete { dev: u64 },
    /// `set_transaction_id` message.
    SetTransactionId { current: u64, new: u64 },
    /// `reserve_metadata_snap` message.
    ReserveSnap,
    /// `release_metadata_snap` message.
    ReleaseSnap,
    /// Write the first 4 KiB of `blocks` data blocks from `vblock` on, one bio per block,
    /// in order; with `fua`, each bio is FUA (O_DSYNC), so each block that changed the
    /// device commits before its write completes.
    Write {
        dev: u64,
        vblock: u64,
        blocks: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fua: bool,
    },
    /// Discard the whole blocks `[begin, end)`, then flush through the same device.
    Discard { dev: u64, begin: u64, end: u64 },
    /// A flush through the device (fsync), which makes the pool commit.
    Flush { dev: u64 },
    /// Reload the pool's table with `blocks` data blocks and resume it.
    GrowData { blocks: u64 },
    /// Grow the metadata device to `blocks` metadata blocks and resume the pool.
    GrowMetadata { blocks: u64 },
    /// Suspend the pool (it commits), copy the metadata device out, compare, resume.
    Checkpoint,
    /// Put `fault` under the pool's metadata device (the `meta` window's table is swapped),
    /// until the next [`KOp::HealMeta`]. The pool's next commit fails: it aborts the
    /// transaction and enters read-only or fail mode ([`MetaFault`]).
    FaultMeta { fault: MetaFault },
    /// Restore the metadata device, then reopen the pool as an administrator does after a
    /// failure: tear the pool and its active thin devices down, copy the metadata out
    /// (judged: the last committed state, with needs_check as the kernel left it), clear
    /// needs_check with `thinsim check --clear-needs-check-flag`, create the pool again and
    /// reactivate the devices that were active. Outside a fault window it is a plain
    /// reopen of the pool.
    HealMeta,
    /// Fill the metadata device: `create_thin` messages for `first_dev`, `first_dev + 1`,
    /// … (the devices are never activated) until the pool refuses one, or `limit` were
    /// created. The pool target enters out-of-metadata-space at the commit after which its
    /// free metadata blocks, less the reserve (a tenth of the device, at most 4,096), are
    /// 0; that create succeeded, and the next message is refused with EOPNOTSUPP, which is
    /// the op's answer. The pool is then read-only without needs_check until a
    /// [`KOp::GrowMetadata`] gives it room (spec §5.6). How many were created is the
    /// kernel's to say (its btree nodes are not laid out as thinsim's): the expectation
    /// takes the count from the guest and judges the drift from the engine's own count.
    ExhaustMeta { first_dev: u64, limit: u64 },
}

/// A fault under the pool's metadata device, for a window of ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaFault {
    /// Every write and flush fails with EIO, reads still work (`flakey`, always down,
    /// `error_writes`): the failed commit's abort re-reads the last commit and succeeds,
    /// the target sets needs_check and goes read-only.
    ErrorWrites,
    /// Every bio fails (the `error` target): the abort cannot re-read the superblock,
    /// and the pool goes to fail mode.
    ErrorAll,
}

impl MetaFault {
    pub fn name(self) -> &'static str {
        match self {
            MetaFault::ErrorWrites => "error_writes",
            MetaFault::ErrorAll => "error_all",
        }
    }
}

impl KOp {
    /// The op's name in statistics.
    pub fn name(&self) -> &'static str {
        match self {
            KOp::CreateThin { .. } => "create_thin",
            KOp::CreateSnap { .. } => "create_snap",
            KOp::Delete { .. } => "delete",
            KOp::SetTransactionId { .. } => "set_transaction_id",
            KOp::ReserveSnap => "reserve_metadata_snap",
            KOp::ReleaseSnap => "release_metadata_snap",
            KOp::Write { .. } => "write",
            KOp::Discard { .. } => "discard",
            KOp::Flush { .. } => "flush",
            KOp::GrowData { .. } => "grow_data",
            KOp::GrowMetadata { .. } => "grow_metadata",
            KOp::Checkpoint => "checkpoint",
            KOp::FaultMeta { .. } => "fault_meta",
            KOp::HealMeta => "heal_meta",
            KOp::ExhaustMeta { .. } => "exhaust_meta",
        }
    }

    /// Whether success promises userspace that what the op did is durable (the guest marks
    /// the log after it): a FUA write, a flush, a discard (which ends with a flush).
    pub fn promises_durability(&self) -> bool {
        matches!(self, KOp::Write { fua: true, .. } | KOp::Flush { .. } | KOp::Discard { .. })
    }

    /// Whether the op is a pool message (answered by the `dmsetup message` exit status).
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            KOp::CreateThin { .. }
                | KOp::CreateSnap { .. }
                | KOp::Delete { .. }
                | KOp::SetTransactionId { .. }
                | KOp::ReserveSnap
                | KOp::ReleaseSnap
        )
    }
}

/// A workload: its seed, its pool and its ops, as written to and read from a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub format_version: u32,
    /// The seed it was drawn from (informative once the file is edited).
    pub seed: u64,
    pub shape: PoolShape,
    pub ops: Vec<KOp>,
}

/// Why a workload file could not be used.
#[derive(Debug)]
pub enum WorkloadError {
    Io { path: std::path::PathBuf, error: std::io::Error },
    Json { path: std::path::PathBuf, error: serde_json::Error },
    Version { path: std::path::PathBuf, found: u32 },
    Shape { path: std::path::PathBuf, problem: String },
}

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkloadError::Io { path, error } => {
                write!(f, "cannot read kernel workload {}: {error}", path.display())
            }
            WorkloadError::Json { path, error } => {
                write!(f, "{} is not a kernel workload: {error}", path.display())
            }
            WorkloadError::Version { path, found } => write!(
                f,
                "{} is kernel workload format {found}; this thinsim reads {FORMAT_VERSION}",
                path.display()
            ),
            WorkloadError::Shape { path, problem } => {
                write!(f, "{}: unusable pool shape: {problem}", path.display())
            }
        }
    }
}

impl std::error::Error for WorkloadError {}

impl PoolShape {
    /// What the pool target and the images need of the shape.
    pub fn validate(&self) -> Result<(), String> {
        if self.data_block_sectors < 128 || !self.data_block_sectors.is_power_of_two() {
            return Err(format!(
                "data block size {} sectors: the pool target needs a power of two of at least 128",
                self.data_block_sectors
            ));
        }
        if self.data_blocks == 0 || self.data_blocks > self.max_data_blocks {
            return Err(format!(
                "data blocks {} must be in 1..={}",
                self.data_blocks, self.max_data_blocks
            ));
        }
        if self.metadata_blocks < 64 || self.metadata_blocks > self.max_metadata_blocks {
            return Err(format!(
                "metadata blocks {} must be in 64..={}",
                self.metadata_blocks, self.max_metadata_blocks
            ));
        }
        if !self.features.error_if_no_space && self.features.no_space_timeout_seconds == 0 {
            return Err("queueing when out of data space with no timeout would hang".into());
        }
        if self.virtual_blocks == 0 {
            return Err("thin devices of 0 blocks".into());
        }
        if let Some(p) = &self.prepopulation {
            if p.data_blocks_used() > self.data_blocks || p.devices > MAX_THIN_ID {
                return Err(format!(
                    "the prepopulation uses {} data blocks of {} and {} devices",
                    p.data_blocks_used(),
                    self.data_blocks,
                    p.devices
                ));
            }
        }
        Ok(())
    }
}

impl Workload {
    pub fn read(path: &std::path::Path) -> Result<Workload, WorkloadError> {
        let p = path.to_path_buf();
        let text = std::fs::read_to_string(path)
            .map_err(|error| WorkloadError::Io { path: p.clone(), error })?;
        let w: Workload = serde_json::from_str(&text)
            .map_err(|error| WorkloadError::Json { path: p.clone(), error })?;
        if w.format_version != FORMAT_VERSION {
            return Err(WorkloadError::Version { path: p, found: w.format_version });
        }
        w.shape.validate().map_err(|problem| WorkloadError::Shape { path: p, problem })?;
        Ok(w)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a workload serialises")
    }
}
