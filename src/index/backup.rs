//! Online backups: a complete database directory holding one moment of an index, written while
//! inserts and searches go on.

use std::path::{Path, PathBuf};

use super::open::fresh_manifest;
use super::Index;
use crate::error::{io_error, Result};
use crate::options::{Durability, LogRecovery};
use crate::storage::{prepare_destination, write_backup, BackupReport, Store};

impl Index {
    /// Writes a complete database directory at `dest` (which must not exist, or be empty) holding
    /// exactly the batches this index had logged at one moment: every insert, upsert and delete
    /// that returned before the call, perhaps some that ran beside it, and nothing partial.
    /// Inserts and searches continue meanwhile; appends wait only while the moment is fixed.
    ///
    /// Segment files never change, so they are copied as they are (`copy_file_range`, which
    /// shares extents where the file system can), with the manifest, the deletion files and the
    /// log up to that moment. The manifest is written last: an interrupted backup leaves a
    /// directory that does not open as a database, never one that opens incomplete, and a
    /// failed one removes what it wrote. `dest` opens with [`Index::open`] like the original.
    ///
    /// An in-memory index is written as a new database instead (into `dest.partial`, renamed to
    /// `dest` when complete); its inserts wait meanwhile. A read-only opening backs up what it
    /// read when it opened (it keeps those files open, so a writer's checkpoint cannot take them
    /// away).
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_from(dest.as_ref(), None)
    }

    /// Like [`Index::backup`], but hard-links from the earlier backup `previous` every file it
    /// holds unchanged (same name, length and header, whose checksums cover the rest) instead of
    /// copying it, so a backup after a few inserts copies little more than the log. Both
    /// backups then share those files, which nothing ever writes again.
    pub fn backup_incremental(&self, dest: impl AsRef<Path>, previous: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_from(dest.as_ref(), Some(previous.as_ref()))
    }

    fn backup_from(&self, dest: &Path, previous: Option<&Path>) -> Result<BackupReport> {
        match &self.shared.store {
            Some(store) => write_backup(&store.freeze()?, dest, previous),
            None => self.write_database(dest),
        }
    }

    /// Writes an in-memory index as a new database at `dest`: a checkpoint into a fresh store in
    /// `dest.partial`, renamed to `dest` once complete.
    fn write_database(&self, dest: &Path) -> Result<BackupReport> {
        prepare_destination(dest)?;
        let mut staging = dest.as_os_str().to_owned();
        staging.push(".partial");
        let staging = PathBuf::from(staging);
        let options = self.options();
        let (mut store, _) = Store::open(&staging, true, false, Durability::EveryBatch, || fresh_manifest(options))?;
        store.replay(LogRecovery::Strict, |_| Ok(()))?;
        let writer = self.shared.writer();
        self.shared.checkpoint(&store, &writer)?;
        drop(writer);
        let report = BackupReport {
            files: store.freeze()?.files.len() + 1,
            bytes_copied: store.bytes_on_disk(),
            bytes_linked: 0,
        };
        drop(store);
        std::fs::rename(&staging, dest).map_err(|e| io_error(dest, "rename the finished backup to", &e))?;
        Ok(report)
    }
}
