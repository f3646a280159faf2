//! `omen_index_backup`: a consistent copy of a database, taken while it is in use.

use std::ffi::c_char;

use super::error::{omen_error, omen_status};
use super::guard::{check_size, guard, path_arg, size_field, write_sized};
use super::index::{index, omen_index};

/// What a backup wrote (`omen_index_backup_incremental`). Set `size = sizeof(omen_backup_report)`
/// before the call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct omen_backup_report {
    /// `sizeof(omen_backup_report)`, set by the caller: later versions may append fields.
    pub size: usize,
    /// Files in the backup, the manifest included.
    pub files: u64,
    /// Bytes copied from the database.
    pub bytes_copied: u64,
    /// Bytes of unchanged files hard-linked from the earlier backup instead of copied.
    pub bytes_linked: u64,
}

/// Writes a complete database directory at `dest_path` (which must not exist, or be empty)
/// holding exactly the batches the index had logged at one moment: every insert, upsert and
/// delete that returned before the call, perhaps some running beside it, nothing partial.
/// Inserts and searches continue meanwhile (appends wait only while the moment is fixed).
///
/// Segment files never change, so they are copied as they are, with the manifest, the deletion
/// files and the log up to that moment. The manifest is written last: an interrupted backup
/// leaves a directory that does not open as a database, never one that opens incomplete, and a
/// failed one removes what it wrote. The copy opens with `omen_index_open` like the original.
/// An in-memory index is written as a new database (inserts wait meanwhile).
///
/// # Ownership
/// Borrows `index` and `dest_path` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT`; `OMEN_STATUS_INVALID_ARGUMENT` when `dest_path` holds files;
/// `OMEN_STATUS_IO` when it cannot be created or written (what was written is removed). A
/// read-only opening backs up what it read when it opened.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_backup(
    index: *const omen_index,
    dest_path: *const c_char,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: a live handle and a NUL-terminated path, valid during the call (documented).
        let (index, dest) = unsafe { (self::index(index)?, path_arg(dest_path, "dest_path")?) };
        index.backup(dest)?;
        Ok(())
    })
}

/// As `omen_index_backup`, but every file that the earlier backup at `previous_path` holds
/// unchanged (same name, length and checksummed header) is hard-linked from it instead of
/// copied, so a backup after a few changes copies little more than the log. `previous_path`
/// NULL makes a full backup. `*out_report` (may be NULL) receives what was copied and linked.
///
/// # Ownership
/// Borrows `index`, the paths and `out_report` during the call.
///
/// # Thread safety
/// As `omen_index_backup`.
///
/// # Errors
/// As `omen_index_backup`; `OMEN_STATUS_NOT_FOUND` when `previous_path` holds no database;
/// `OMEN_STATUS_INVALID_ARGUMENT` for an unknown `out_report->size`.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_backup_incremental(
    index: *const omen_index,
    dest_path: *const c_char,
    previous_path: *const c_char,
    out_report: *mut omen_backup_report,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: a live handle and NUL-terminated paths, valid during the call (documented).
        let (index, dest) = unsafe { (self::index(index)?, path_arg(dest_path, "dest_path")?) };
        let size = if out_report.is_null() {
            None
        } else {
            // SAFETY: `omen_backup_report` starts with its size, which the caller set (documented).
            let size = unsafe { size_field(out_report, "out_report") }?;
            check_size::<omen_backup_report>(size, &[])?;
            Some(size)
        };
        let report = if previous_path.is_null() {
            index.backup(dest)?
        } else {
            // SAFETY: non-NULL, NUL-terminated and valid during the call (documented).
            index.backup_incremental(dest, unsafe { path_arg(previous_path, "previous_path") }?)?
        };
        if let Some(size) = size {
            let report = omen_backup_report {
                size,
                files: report.files as u64,
                bytes_copied: report.bytes_copied,
                bytes_linked: report.bytes_linked,
            };
            // SAFETY: non-NULL and aligned (checked), `size` writable bytes of this library's
            // layout (checked; caller's contract).
            unsafe { write_sized(out_report, report, size) };
        }
        Ok(())
    })
}
