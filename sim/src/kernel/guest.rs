//! What `thinsim kernel-guest` does inside the guest: writes, discards and flushes through a
//! thin device, with the calls the kernel sees from any program (O_DIRECT `pwrite`,
//! `BLKDISCARD`, `fsync`), so that one process does a whole run of blocks.
//!
//! A write puts 4 KiB at the start of each data block (with `skip_block_zeroing`, a partial
//! write provisions the whole block without zeroing it, so the host stores 4 KiB per block,
//! not 64), and the first bytes name what wrote it: [`TAG_MAGIC`], the block's virtual
//! number and the op's index, so that a crash image's data can be told apart later.
//!
//! On failure the last line of standard error is `errno <NAME>` (see [`errno_name`]), which
//! is what the result parser reads; the exit status is 1.

use std::ffi::CString;
use std::path::Path;

/// The first 8 bytes of every block a workload writes.
pub const TAG_MAGIC: &[u8; 8] = b"thinsim\0";

/// Bytes written at the start of each block.
pub const WRITE_BYTES: usize = 4096;

/// What a tag names: the virtual block and the op that wrote the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub vblock: u64,
    pub op: u64,
}

/// The tag at the start of `bytes`, if they start with one.
pub fn read_tag(bytes: &[u8]) -> Option<Tag> {
    if bytes.len() < 24 || &bytes[..8] != TAG_MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Some(Tag { vblock: word(8), op: word(16) })
}

fn put_tag(buf: &mut [u8], t: Tag) {
    buf[..8].copy_from_slice(TAG_MAGIC);
    buf[8..16].copy_from_slice(&t.vblock.to_le_bytes());
    buf[16..24].copy_from_slice(&t.op.to_le_bytes());
}

/// `BLKDISCARD`, `_IO(0x12, 119)`.
const BLKDISCARD: libc::c_ulong = 0x1277;

/// The errno names the result parser knows, from a raw OS error number.
pub fn errno_name(code: i32) -> &'static str {
    match code {
        libc::ENOSPC => "ENOSPC",
        libc::EIO => "EIO",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::ENODATA => "ENODATA",
        libc::EBUSY => "EBUSY",
        libc::EPERM => "EPERM",
        libc::ENOMEM => "ENOMEM",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENXIO => "ENXIO",
        libc::ENOENT => "ENOENT",
        _ => "EOTHER",
    }
}

/// A failed guest call: what it was doing and the OS error.
#[derive(Debug)]
pub struct GuestError {
    pub what: String,
    pub code: i32,
}

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}\nerrno {}",
            self.what,
            std::io::Error::from_raw_os_error(self.code),
            errno_name(self.code)
        )
    }
}

fn last_error(what: String) -> GuestError {
    GuestError { what, code: std::io::Error::last_os_error().raw_os_error().unwrap_or(0) }
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn open(dev: &Path, flags: libc::c_int) -> Result<Fd, GuestError> {
    let c = CString::new(dev.as_os_str().as_encoded_bytes()).map_err(|_| GuestError {
        what: format!("{}: NUL in path", dev.display()),
        code: libc::EINVAL,
    })?;
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(last_error(format!("open {}", dev.display())));
    }
    Ok(Fd(fd))
}

/// A 4 KiB-aligned buffer (O_DIRECT needs the memory aligned too).
#[repr(C, align(4096))]
struct Aligned([u8; WRITE_BYTES]);

/// Writes the first 4 KiB of blocks `vblock..vblock + blocks`, in order, stopping at the
/// first failure; with `fua` every write is O_DSYNC (a FUA bio: durable, mapping and
/// data, when it returns).
pub fn write(
    dev: &Path,
    block_bytes: u64,
    vblock: u64,
    blocks: u64,
    tag: u64,
    fua: bool,
) -> Result<(), GuestError> {
    let sync = if fua { libc::O_DSYNC } else { 0 };
    let fd = open(dev, libc::O_WRONLY | libc::O_DIRECT | sync)?;
    let mut buf = Box::new(Aligned([0u8; WRITE_BYTES]));
    for v in vblock..vblock.saturating_add(blocks) {
        put_tag(&mut buf.0, Tag { vblock: v, op: tag });
        let off = v
            .checked_mul(block_bytes)
            .ok_or(GuestError { what: format!("block {v} offset"), code: libc::EINVAL })?;
        // SAFETY: the buffer is WRITE_BYTES long and lives across the call.
        let n =
            unsafe { libc::pwrite(fd.0, buf.0.as_ptr().cast(), WRITE_BYTES, off as libc::off_t) };
        if n < 0 {
            return Err(last_error(format!("write block {v} of {}", dev.display())));
        }
        if n as usize != WRITE_BYTES {
            return Err(GuestError {
                what: format!("short write at block {v} of {}", dev.display()),
                code: libc::ENOSPC,
            });
        }
    }
    Ok(())
}

/// Discards blocks `vblock..vblock + blocks` in one request.
pub fn discard(dev: &Path, block_bytes: u64, vblock: u64, blocks: u64) -> Result<(), GuestError> {
    let fd = open(dev, libc::O_WRONLY)?;
    let range: [u64; 2] = [vblock * block_bytes, blocks * block_bytes];
    // SAFETY: BLKDISCARD reads two u64s from the pointer.
    let r = unsafe { libc::ioctl(fd.0, BLKDISCARD as _, range.as_ptr()) };
    if r < 0 {
        return Err(last_error(format!(
            "discard {} blocks at {vblock} of {}",
            blocks,
            dev.display()
        )));
    }
    Ok(())
}

/// A flush through the device.
pub fn flush(dev: &Path) -> Result<(), GuestError> {
    let fd = open(dev, libc::O_WRONLY)?;
    // SAFETY: a valid descriptor.
    if unsafe { libc::fsync(fd.0) } < 0 {
        return Err(last_error(format!("fsync {}", dev.display())));
    }
    Ok(())
}

/// `DM_TARGET_MSG`: `_IOWR(0xfd, 14, struct dm_ioctl)`, the struct being 312 bytes.
const DM_TARGET_MSG: libc::c_ulong = 0xC138_FD0E;

/// `struct dm_ioctl`'s size, and where its fields lie (`linux/dm-ioctl.h`).
const DM_IOCTL_BYTES: usize = 312;
const DM_DATA_SIZE_AT: usize = 12;
const DM_DATA_START_AT: usize = 16;
const DM_NAME_AT: usize = 48;
const DM_NAME_LEN: usize = 128;

/// One `DM_TARGET_MSG` request to sector 0 of `device`: the ioctl header, the message's
/// sector, the message, NUL, and room for the target's reply (create_thin has none).
fn dm_message(device: &str, message: &str) -> Vec<u8> {
    let data_start = DM_IOCTL_BYTES;
    let len = (data_start + 8 + message.len() + 1 + 256).next_multiple_of(8);
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&4u32.to_ne_bytes()); // interface version 4.0.0
    b[DM_DATA_SIZE_AT..DM_DATA_SIZE_AT + 4].copy_from_slice(&(len as u32).to_ne_bytes());
    b[DM_DATA_START_AT..DM_DATA_START_AT + 4].copy_from_slice(&(data_start as u32).to_ne_bytes());
    let name = &device.as_bytes()[..device.len().min(DM_NAME_LEN - 1)];
    b[DM_NAME_AT..DM_NAME_AT + name.len()].copy_from_slice(name);
    // The message's sector (0) is already zero; the text follows it.
    let text = data_start + 8;
    b[text..text + message.len()].copy_from_slice(message.as_bytes());
    b
}

/// `create_thin first`, `create_thin first + 1`, … sent to the pool `device` through
/// `/dev/mapper/control`, one ioctl each from this one process (a `dmsetup` per message
/// costs a process start, tens of milliseconds in user-mode Linux), until one fails or
/// `limit` succeeded. How many succeeded, and the failure if one ended it.
pub fn create_thins(device: &str, first: u64, limit: u64) -> (u64, Result<(), GuestError>) {
    let control = match open(Path::new("/dev/mapper/control"), libc::O_RDWR) {
        Ok(fd) => fd,
        Err(e) => return (0, Err(e)),
    };
    for n in 0..limit {
        let mut req = dm_message(device, &format!("create_thin {}", first + n));
        // SAFETY: the buffer is the size its header says, and lives across the call.
        let r = unsafe { libc::ioctl(control.0, DM_TARGET_MSG as _, req.as_mut_ptr()) };
        if r < 0 {
            return (n, Err(last_error(format!("message create_thin {} to {device}", first + n))));
        }
    }
    (limit, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dm_message_request_is_laid_out_as_the_kernel_reads_it() {
        // _IOWR: direction 3, the struct's size, type 0xfd, command 14.
        assert_eq!(
            DM_TARGET_MSG,
            (3 << 30) | ((DM_IOCTL_BYTES as libc::c_ulong) << 16) | (0xfd << 8) | 14
        );
        let b = dm_message("pool", "create_thin 7");
        let word = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(8)), (4, 0, 0));
        assert_eq!(word(DM_DATA_SIZE_AT) as usize, b.len());
        assert_eq!(word(DM_DATA_START_AT) as usize, DM_IOCTL_BYTES);
        assert_eq!(b.len() % 8, 0);
        assert_eq!(&b[DM_NAME_AT..DM_NAME_AT + 5], b"pool\0");
        assert_eq!(&b[DM_IOCTL_BYTES..DM_IOCTL_BYTES + 8], &[0u8; 8]);
        let text = &b[DM_IOCTL_BYTES + 8..];
        assert_eq!(&text[..14], b"create_thin 7\0");
    }
}
