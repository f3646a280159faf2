//! The directory lock: one writer per database at a time, across processes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{io_error, Error, Result};

pub(crate) const LOCK_FILE: &str = "LOCK";

/// Held while a database is open for writing; released when dropped (the files close).
pub(crate) struct WriterLock {
    /// The directory itself: it cannot be unlinked from under the writer, as a lock file can
    /// (a second writer would then lock a new file and get in).
    _directory: File,
    /// The lock file, which earlier versions of the library lock: held too, so that they and
    /// this one keep each other out.
    _file: File,
}

/// Takes the exclusive lock on `path` (an open file or directory): `Locked` while another
/// process holds it. A lock just released can look held for a moment: a process that forks
/// shares its open files with the child until the child's exec closes them. So a held lock is
/// tried again for up to 100 ms before `Locked`.
fn lock_exclusively(file: &File, path: &Path, lock_path: &Path) -> Result<()> {
    for attempt in 0..20 {
        // SAFETY: flock on a descriptor the caller owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io_error(path, "lock", &e));
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    Err(Error::Locked { path: lock_path.display().to_string() })
}

/// Locks database directory `dir` for writing; fails with `Locked` while another process
/// holds it.
pub(crate) fn take_lock(dir: &Path) -> Result<WriterLock> {
    let path = dir.join(LOCK_FILE);
    let directory = File::open(dir).map_err(|e| io_error(dir, "open directory", &e))?;
    lock_exclusively(&directory, dir, &path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, "create lock file", &e))?;
    lock_exclusively(&file, &path, &path)?;
    Ok(WriterLock { _directory: directory, _file: file })
}
