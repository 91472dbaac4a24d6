//! The engine's one error type. Every variant maps to the kernel errno a caller of
//! `dm-thin-metadata.h` would see, and says where the trouble is.

use crate::io::IoError;
use std::fmt;

/// Kernel errno names, for callers that mirror the kernel's return codes.
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
}

/// Which space ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Metadata,
    Data,
    /// The pool time would no longer fit a mapping's 24-bit stamp ([R8]).
    Time,
    /// A shrink would drop allocated blocks ([H5]).
    Shrink,
}

/// Why a block was judged corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptKind {
    /// Stored checksum does not match the contents (EILSEQ).
    Checksum { stored: u32, computed: u32 },
    /// Stored block number is not the block's location (ENOTBLK).
    BlockNr { stored: u64 },
    /// Superblock magic wrong (EILSEQ).
    Magic { stored: u64 },
    /// Anything else about the structure (EILSEQ / EINVAL in the kernel).
    Structure(String),
}

/// Everything that can go wrong, as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// EEXIST: the device id is taken.
    Exists(u64),
    /// ENODATA: no such device, mapping or snapshot.
    NoData(String),
    /// EINVAL: a bad argument, a stale compare-and-set, or a refused call.
    Invalid(String),
    /// EBUSY: the device or pool is in use, or a snapshot is already held.
    Busy(String),
    /// ENOSPC.
    NoSpace(Space),
    /// EWOULDBLOCK: a cache-only lookup needed I/O.
    WouldBlock { block: u64 },
    /// EPERM: the pool is read-only, or the device is blank and may not be formatted.
    ReadOnly(String),
    /// EINVAL (kernel `fail_io`): an abort failed; only close remains.
    FailMode,
    /// EINVAL under contract [R1]: an earlier error left the transaction half-done; abort.
    Poisoned,
    /// EIO.
    Io(IoError),
    /// EILSEQ / ENOTBLK: a block failed validation.
    Corrupt { block: u64, path: Vec<u64>, kind: CorruptKind },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno the kernel would return.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Exists(_) => Errno::EEXIST,
            Error::NoData(_) => Errno::ENODATA,
            Error::Invalid(_) | Error::FailMode | Error::Poisoned => Errno::EINVAL,
            Error::Busy(_) => Errno::EBUSY,
            Error::NoSpace(_) => Errno::ENOSPC,
            Error::WouldBlock { .. } => Errno::EWOULDBLOCK,
            Error::ReadOnly(_) => Errno::EPERM,
            Error::Io(_) => Errno::EIO,
            Error::Corrupt { kind: CorruptKind::BlockNr { .. }, .. } => Errno::ENOTBLK,
            Error::Corrupt { .. } => Errno::EILSEQ,
        }
    }

    /// True for the errors that cannot leave partial work behind ([R1]).
    pub fn is_argument_error(&self) -> bool {
        matches!(
            self,
            Error::Exists(_)
                | Error::NoData(_)
                | Error::Invalid(_)
                | Error::Busy(_)
                | Error::ReadOnly(_)
                | Error::FailMode
                | Error::Poisoned
                | Error::NoSpace(Space::Data | Space::Time | Space::Shrink)
        )
    }

    pub(crate) fn corrupt(block: u64, kind: CorruptKind) -> Self {
        Error::Corrupt { block, path: Vec::new(), kind }
    }

    pub(crate) fn structure(block: impl Into<u64>, what: impl Into<String>) -> Self {
        Error::corrupt(block.into(), CorruptKind::Structure(what.into()))
    }

    /// Prepends `parent` to the tree path of a corruption error.
    pub(crate) fn via(mut self, parent: u64) -> Self {
        if let Error::Corrupt { path, .. } = &mut self {
            path.insert(0, parent);
        }
        self
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptKind::Checksum { stored, computed } => {
                write!(f, "bad checksum (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptKind::BlockNr { stored } => write!(f, "bad block number {stored}"),
            CorruptKind::Magic { stored } => write!(f, "bad magic {stored}"),
            CorruptKind::Structure(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Exists(id) => write!(f, "EEXIST: device {id} already exists"),
            Error::NoData(s) => write!(f, "ENODATA: {s}"),
            Error::Invalid(s) => write!(f, "EINVAL: {s}"),
            Error::Busy(s) => write!(f, "EBUSY: {s}"),
            Error::NoSpace(s) => write!(f, "ENOSPC: out of {s:?} space"),
            Error::WouldBlock { block } => write!(f, "EWOULDBLOCK: block {block} is not cached"),
            Error::ReadOnly(s) => write!(f, "EPERM: {s}"),
            Error::FailMode => write!(f, "EINVAL: pool is in fail mode after a failed abort"),
            Error::Poisoned => write!(f, "EINVAL: transaction poisoned by an earlier error; abort"),
            Error::Io(e) => write!(f, "EIO: {e}"),
            Error::Corrupt { block, path, kind } => {
                write!(f, "{:?}: block {block}: {kind}", self.errno())?;
                if !path.is_empty() {
                    write!(f, " (path from root: {path:?})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}
