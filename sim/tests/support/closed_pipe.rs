//! A pipe whose read end is already closed, for running a command whose reader went away.
//! The read end is closed before the child is spawned: closed after the spawn, another test's
//! fork (between its fork and exec) can hold it open while the child writes, and the write
//! then succeeds.

use std::os::fd::{FromRawFd, OwnedFd};

/// The write end of a fresh pipe whose read end is closed.
pub fn write_end_without_reader() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}
