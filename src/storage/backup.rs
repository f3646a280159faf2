//! Online backups: the files of one moment of a database, copied into a new directory while
//! inserts and searches go on.
//!
//! Segment, snapshot and deletion files never change once written, so the moment is fixed by the
//! manifest and the length of its log: `Store::freeze` opens every file the manifest names and
//! notes the log's length while appends are held off (microseconds), and the copy then reads
//! those open handles. A checkpoint that removes one of the files meanwhile only unlinks its
//! name; the handle still reads it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::sync_dir;
use crate::error::{io_error, Error, Result};

/// What a backup wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Files in the backup (the manifest included).
    pub files: usize,
    /// Bytes copied from the database.
    pub bytes_copied: u64,
    /// Bytes of unchanged files hard-linked from the earlier backup instead of copied.
    pub bytes_linked: u64,
}

/// One file of the frozen moment.
pub(crate) struct FrozenFile {
    pub name: String,
    pub file: File,
    /// Bytes that belong to the moment: all of an immutable file, the logged prefix of the log.
    pub len: u64,
    /// Whether the file never changes under its name (all but the log), so that an earlier
    /// backup's file of the same name and contents can stand in for it.
    pub immutable: bool,
}

/// A moment of a database: its manifest and its files, open.
pub(crate) struct Frozen {
    pub manifest: Manifest,
    pub files: Vec<FrozenFile>,
}

/// Bytes at the start of a file compared to tell whether an earlier backup holds the same one:
/// a segment file's header, which carries the checksum of every section, fits in its first page.
const COMPARED_PREFIX: u64 = 4096;

/// Bytes at the end compared as well: a deletion file ends with the checksum of all of it.
const COMPARED_SUFFIX: u64 = 4;

/// Writes `frozen` as a database in `dest`, which must not exist or be empty. Unchanged files of
/// the database at `previous` (an earlier backup) are hard-linked rather than copied. The
/// manifest is written last, so an interrupted backup leaves a directory that does not open as a
/// database; on failure what was written is removed again.
pub(crate) fn write_backup(frozen: &Frozen, dest: &Path, previous: Option<&Path>) -> Result<BackupReport> {
    if let Some(previous) = previous {
        // Refuse early what is not a database, rather than silently copying everything.
        Manifest::read(previous)?.ok_or_else(|| Error::NotFound { path: previous.display().to_string() })?;
    }
    let created = prepare_destination(dest)?;
    let mut written = Vec::new();
    let result = copy_files(frozen, dest, previous, &mut written);
    if result.is_err() {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        if created {
            let _ = std::fs::remove_dir(dest);
        }
    }
    result
}

/// Makes `dest` an empty directory (refusing one that holds anything); returns whether it
/// created it.
pub(crate) fn prepare_destination(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(Error::InvalidArgument(format!(
                "backup destination {} is not empty (a backup goes to a new directory)",
                dest.display()
            ))),
            None => Ok(false),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| io_error(dest, "create directory", &e))?;
            Ok(true)
        }
        Err(e) => Err(io_error(dest, "open", &e)),
    }
}

fn copy_files(
    frozen: &Frozen,
    dest: &Path,
    previous: Option<&Path>,
    written: &mut Vec<PathBuf>,
) -> Result<BackupReport> {
    let mut report = BackupReport::default();
    for file in &frozen.files {
        let target = dest.join(&file.name);
        written.push(target.clone());
        let earlier = previous.map(|p| p.join(&file.name)).filter(|_| file.immutable);
        if let Some(earlier) = earlier.filter(|earlier| same_file(file, earlier)) {
            if std::fs::hard_link(&earlier, &target).is_ok() {
                report.bytes_linked += file.len;
                report.files += 1;
                continue;
            }
        }
        copy_prefix(file, &target)?;
        report.bytes_copied += file.len;
        report.files += 1;
    }
    sync_dir(dest)?;
    written.push(Manifest::path(dest));
    frozen.manifest.write(dest)?;
    report.files += 1;
    Ok(report)
}

/// Whether `earlier` holds the same bytes as `file`: same length, same first page and same last
/// bytes, which between them carry the checksums of the whole file.
fn same_file(file: &FrozenFile, earlier: &Path) -> bool {
    let Ok(other) = File::open(earlier) else { return false };
    if other.metadata().map(|m| m.len()).ok() != Some(file.len) {
        return false;
    }
    let same_at = |at: u64, len: u64| {
        let (mut ours, mut theirs) = (vec![0u8; len as usize], vec![0u8; len as usize]);
        file.file.read_exact_at(&mut ours, at).is_ok() && other.read_exact_at(&mut theirs, at).is_ok() && ours == theirs
    };
    let suffix = file.len.min(COMPARED_SUFFIX);
    same_at(0, file.len.min(COMPARED_PREFIX)) && same_at(file.len - suffix, suffix)
}

/// Copies the first `file.len` bytes to `target` and makes them durable. `std::io::copy` between
/// files uses `copy_file_range`, which shares extents where the file system can (reflinks).
fn copy_prefix(file: &FrozenFile, target: &Path) -> Result<()> {
    let mut out =
        OpenOptions::new().write(true).create_new(true).open(target).map_err(|e| io_error(target, "create", &e))?;
    // From the start, whatever an earlier reader of a shared handle left the position at.
    (&file.file).seek(SeekFrom::Start(0)).map_err(|e| io_error(target, "seek the source of", &e))?;
    let mut source = (&file.file).take(file.len);
    let copied = std::io::copy(&mut source, &mut out).map_err(|e| io_error(target, "copy into", &e))?;
    if copied != file.len {
        return Err(Error::Io {
            path: target.display().to_string(),
            detail: format!("copied {copied} of {} bytes of {}: the source ended early", file.len, file.name),
        });
    }
    out.flush().and_then(|()| out.sync_all()).map_err(|e| io_error(target, "sync", &e))
}
