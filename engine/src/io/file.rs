//! File backend: positioned reads and writes, `fdatasync` on flush.
//!
//! Invariant: the device size is fixed at open (the file's length rounded down to whole
//! blocks); blocks past it are `OutOfRange`, never silently extended.

use super::{check_range, Block, BlockDevice, IoError, IoErrorKind, IoOp};
use crate::limits::BLOCK_SIZE;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::Arc;

/// A metadata device backed by a regular file or a block device node.
pub struct FileDevice {
    file: File,
    nr_blocks: u64,
    writable: bool,
    /// A run's blocks gathered for one positioned write; kept to reuse its allocation.
    run_bytes: Vec<u8>,
}

impl FileDevice {
    /// Opens `path`; `writable` false refuses every write and flush with `ReadOnly`.
    pub fn open(path: &Path, writable: bool) -> Result<Self, IoError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| os_error(IoOp::Read, None, &e))?;
        let meta = file.metadata().map_err(|e| os_error(IoOp::Read, None, &e))?;
        // A block device node's metadata says 0 bytes: its size is where its end is.
        let len_bytes = if meta.file_type().is_block_device() {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::End(0)).map_err(|e| os_error(IoOp::Read, None, &e))?
        } else {
            meta.len()
        };
        Ok(FileDevice {
            file,
            nr_blocks: len_bytes / BLOCK_SIZE as u64,
            writable,
            run_bytes: Vec::new(),
        })
    }

    /// Creates (or truncates) `path` as a zero-filled device of `nr_blocks` blocks.
    pub fn create(path: &Path, nr_blocks: u64) -> Result<Self, IoError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| os_error(IoOp::Write, None, &e))?;
        file.set_len(nr_blocks * BLOCK_SIZE as u64).map_err(|e| os_error(IoOp::Write, None, &e))?;
        Ok(FileDevice { file, nr_blocks, writable: true, run_bytes: Vec::new() })
    }

    fn refuse_if_read_only(&self, op: IoOp, block: Option<u64>) -> Result<(), IoError> {
        if self.writable {
            return Ok(());
        }
        Err(IoError { op, block, kind: IoErrorKind::ReadOnly, detail: "opened read-only".into() })
    }
}

fn os_error(op: IoOp, block: Option<u64>, e: &std::io::Error) -> IoError {
    IoError { op, block, kind: IoErrorKind::Device, detail: e.to_string() }
}

impl BlockDevice for FileDevice {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read(&mut self, block: u64, buf: &mut Block) -> Result<(), IoError> {
        check_range(IoOp::Read, block, self.nr_blocks)?;
        self.file
            .read_exact_at(buf, block * BLOCK_SIZE as u64)
            .map_err(|e| os_error(IoOp::Read, Some(block), &e))
    }

    fn write(&mut self, block: u64, buf: &Block) -> Result<(), IoError> {
        self.refuse_if_read_only(IoOp::Write, Some(block))?;
        check_range(IoOp::Write, block, self.nr_blocks)?;
        self.file
            .write_all_at(buf, block * BLOCK_SIZE as u64)
            .map_err(|e| os_error(IoOp::Write, Some(block), &e))
    }

    fn write_run(&mut self, first: u64, blocks: &[Arc<Block>]) -> Result<(), IoError> {
        self.refuse_if_read_only(IoOp::Write, Some(first))?;
        let n = blocks.len() as u64;
        if n == 0 {
            return Ok(());
        }
        check_range(IoOp::Write, first + n - 1, self.nr_blocks)?;
        // One positioned write for the whole run.
        self.run_bytes.clear();
        blocks.iter().for_each(|b| self.run_bytes.extend_from_slice(&b[..]));
        let offset = first * BLOCK_SIZE as u64;
        self.file
            .write_all_at(&self.run_bytes, offset)
            .map_err(|e| os_error(IoOp::Write, Some(first), &e))?;
        if n >= EARLY_WRITEBACK_MIN_BLOCKS {
            start_writeback(&self.file, offset, self.run_bytes.len() as u64);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.refuse_if_read_only(IoOp::Flush, None)?;
        self.file.sync_data().map_err(|e| os_error(IoOp::Flush, None, &e))
    }
}

/// Runs at least this long get their write-back started at once (see [`start_writeback`]).
const EARLY_WRITEBACK_MIN_BLOCKS: u64 = 64;

/// Asks the kernel to start writing `len` bytes at `offset` to the disk now, without waiting
/// (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that a bulk load's disk I/O overlaps
/// its computing and the flush at commit waits for little. A hint only: durability still
/// comes from `flush` (fdatasync), and a failure here is ignored (the flush reports errors).
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a plain syscall on an open descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}
