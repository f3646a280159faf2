//! The directory lock: one writer per database at a time, across processes.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{io_error, Error, Result};

pub(crate) const LOCK_FILE: &str = "LOCK";

/// The lock file, taken exclusively; fails with `Locked` while another process holds it. The
/// lock lasts as long as the returned file stays open.
pub(crate) fn take_lock(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, "create lock file", &e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked { path: path.display().to_string() }
        } else {
            io_error(&path, "lock", &e)
        });
    }
    Ok(file)
}
