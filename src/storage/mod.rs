//! Files only: the manifest, the write-ahead log, segment files and the directory lock. What goes
//! into a segment file is the graph's business (`hnsw::file`); which segments a checkpoint writes
//! is the index's. This module makes each file durable and tells whether one is damaged.

mod backup;
mod bytes;
mod deletions;
mod lock;
mod manifest;
pub(crate) mod segment_file;
mod store;
mod wal;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub use backup::BackupReport;
pub(crate) use backup::{prepare_destination, write_backup};
pub(crate) use deletions::{read_deletions, write_deletions};
pub(crate) use manifest::{Manifest, SegmentEntry};
pub(crate) use store::{Checkpoint, NewFile, Store};
pub(crate) use wal::{DroppedTail, LogRecord};

use crate::error::{io_error, Result};

/// A database file to read: its path, and in a read-only opening the handle taken when the
/// manifest naming it was read (`Store::open`). Through that handle the file reads as it was
/// even after a writer's checkpoint removed its name.
pub(crate) struct Source<'a> {
    path: PathBuf,
    pinned: Option<&'a File>,
}

impl Source<'_> {
    /// The file at `path`, opened when read.
    #[cfg(test)]
    pub(crate) fn at(path: impl Into<PathBuf>) -> Source<'static> {
        Source { path: path.into(), pinned: None }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A handle of its own on the file, for reading.
    pub(crate) fn open(&self) -> Result<File> {
        self.pinned.map_or_else(|| File::open(&self.path), reopen).map_err(|e| io_error(&self.path, "open", &e))
    }
}

/// A new handle with its own file position on the file behind `file`, even if its name is gone
/// (through `/proc/self/fd`), so that readers of it at once do not share one position.
fn reopen(file: &File) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| file.try_clone())
}

/// Makes a directory's entries (new, renamed or removed files) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, "sync directory", &e))
}

/// Writes a whole file so that `path` holds either its old contents or all the new ones, never
/// a mix: write to `path.tmp`, fsync, rename over `path`, fsync the directory.
fn write_atomically(path: &Path, write: impl FnOnce(&File) -> std::io::Result<()>) -> Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let result = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temporary)
        .and_then(|file| {
            write(&file)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(temporary, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(temporary);
        return Err(io_error(path, "write", &e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
