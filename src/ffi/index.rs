//! `omen_index`: create or open, insert, search, flush, inspect, close.

use super::error::{omen_error, omen_status, Failure};
use super::guard::{
    check_size, disjoint, guard, infallible, path_arg, require, size_field, slice, slice_mut, span, write_out,
    write_sized,
};
use std::ffi::{c_char, CString};

use super::options::omen_options;
use crate::index::Index;

/// An index handle. Opaque: make it with `omen_index_create` or `omen_index_open`, release it
/// with `omen_index_close` or `omen_index_free`.
pub struct omen_index {
    index: Index,
    /// `Index::recovery_notice` as a C string, made once at opening.
    recovery_notice: Option<CString>,
}

impl omen_index {
    fn new(index: Index) -> Box<omen_index> {
        // A notice names paths, which hold no NUL byte.
        let recovery_notice = index.recovery_notice().and_then(|notice| CString::new(notice).ok());
        Box::new(omen_index { index, recovery_notice })
    }
}

/// Borrows the index behind a handle.
///
/// # Safety
/// A non-NULL `handle` must come from `omen_index_create` and not be freed during `'a`.
pub(super) unsafe fn index<'a>(handle: *const omen_index) -> Result<&'a Index, Failure> {
    require(handle, "index")?;
    // SAFETY: non-NULL and aligned (checked); live by the caller's contract.
    Ok(unsafe { &(*handle).index })
}

pub(super) fn product(a: usize, b: usize, what: &str) -> Result<usize, Failure> {
    a.checked_mul(b).ok_or_else(|| Failure::invalid(format!("{what} overflows size_t")))
}

pub(super) fn check_dim(index: &Index, dim: usize) -> Result<(), Failure> {
    if dim == index.dim() {
        Ok(())
    } else {
        Err(Failure::new(
            omen_status::DimensionMismatch,
            format!("vectors have dimension {dim} but the index has dimension {}", index.dim()),
        ))
    }
}

/// Checks the arguments of an insert or upsert and hands the rows to `write`.
///
/// # Safety
/// `index` is NULL or live; `ids` holds `count` ids and `vectors` `count * dim` floats, both only
/// read during this call.
unsafe fn write_rows(
    index: *const omen_index,
    ids: *const u64,
    vectors: *const f32,
    count: usize,
    dim: usize,
    err: *mut *mut omen_error,
    write: fn(&Index, &[u64], &[f32]) -> crate::error::Result<()>,
) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (this function's contract).
        let index = unsafe { self::index(index) }?;
        check_dim(index, dim)?;
        let floats = product(count, dim, "count * dim")?;
        // SAFETY: `ids` holds `count` ids and `vectors` `count * dim` floats (this function's
        // contract), both only read during this call.
        let (ids, vectors) = unsafe { (slice(ids, count, "ids")?, slice(vectors, floats, "vectors")?) };
        write(index, ids, vectors)?;
        Ok(())
    })
}

/// Creates an empty in-memory index.
///
/// # Ownership
/// Borrows `options` (only during the call). On success `*out_index` receives a new index that
/// the caller owns and releases with `omen_index_free`; on failure `*out_index` is untouched.
///
/// # Thread safety
/// Safe from any thread.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT` for a NULL `options` or `out_index`;
/// `OMEN_STATUS_INVALID_ARGUMENT` for a wrong `options->size`, dim = 0, an unknown metric or a
/// parameter out of range; `OMEN_STATUS_RESOURCE_EXHAUSTED` when worker threads cannot start.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_create(
    options: *const omen_options,
    out_index: *mut *mut omen_index,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        require(options, "options")?;
        require(out_index, "out_index")?;
        // SAFETY: non-NULL and aligned (checked); a readable omen_options by the caller's contract.
        // Read as a copy, so a caller changing it later has no effect.
        let options = unsafe { omen_options::read(options) }?;
        let handle = omen_index::new(Index::new(options)?);
        // SAFETY: `out_index` is non-NULL and aligned (checked) and writable (caller's contract).
        unsafe { write_out(out_index, Box::into_raw(handle)) };
        Ok(())
    })
}

/// Opens the database in directory `path`, creating it when `options->create` is nonzero and
/// the directory holds none.
///
/// Sealed segments are memory-mapped, the growing segment is read back, and inserts logged since
/// the last checkpoint are replayed. A log whose last record is torn or damaged, as a crash
/// during its write leaves it, is handled as `options->log_recovery` says: by default the tail is
/// moved to a `.damaged` file beside the log and reported (`omen_index_recovery_notice`,
/// `omen_stats.log_dropped_bytes`).
/// `options->dim` and `options->metric` must match the database's, or dim may be 0 to accept
/// it; `m`, `ef_construction`, `segment_capacity` and `seed` are fixed at creation and the stored
/// values win; `ef_search`, `threads`, `read_only`, `verify`, `durability` and
/// `sync_interval_ms`, `log_recovery` apply to this opening. Only one process may open a database for writing;
/// read-only openings are always allowed and see it as it was when they opened.
///
/// # Ownership
/// Borrows `path` (a NUL-terminated file name, passed to the OS as bytes) and `options` during
/// the call. On success `*out_index` receives a new index that the caller owns and releases with
/// `omen_index_close` or `omen_index_free`; on failure `*out_index` is untouched.
///
/// # Thread safety
/// Safe from any thread.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT`; `OMEN_STATUS_INVALID_ARGUMENT` for bad options or a metric that
/// differs from the database's; `OMEN_STATUS_DIMENSION_MISMATCH` when dim differs from the
/// database's or a file's; `OMEN_STATUS_NOT_FOUND` when there is no database and `create` is 0
/// (or `read_only` is set); `OMEN_STATUS_LOCKED` when another process has it open for writing;
/// `OMEN_STATUS_CORRUPT` / `OMEN_STATUS_VERSION` for a damaged, foreign or newer file (the
/// message names it), also for a torn or damaged log tail under `OMEN_LOG_RECOVERY_STRICT`;
/// `OMEN_STATUS_IO` when a file cannot be read, created or locked.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_open(
    path: *const c_char,
    options: *const omen_options,
    out_index: *mut *mut omen_index,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: a NUL-terminated string, valid during the call (caller's contract).
        let path = unsafe { path_arg(path, "path") }?;
        require(options, "options")?;
        require(out_index, "out_index")?;
        // SAFETY: non-NULL and aligned (checked); a readable omen_options by the caller's contract.
        let options = unsafe { omen_options::read(options) }?;
        let handle = omen_index::new(Index::open(path, options)?);
        // SAFETY: `out_index` is non-NULL and aligned (checked) and writable (caller's contract).
        unsafe { write_out(out_index, Box::into_raw(handle)) };
        Ok(())
    })
}

/// Checkpoints a database: writes sealed segments not yet on disk and a snapshot of the growing
/// segment, and empties the write-ahead log, so the next open replays nothing. A no-op for an
/// in-memory index.
///
/// # Ownership
/// Borrows `index` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`;
/// waits for a running insert.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT`; `OMEN_STATUS_READ_ONLY` for a read-only database;
/// `OMEN_STATUS_IO` when a file cannot be written (everything acknowledged stays in the log).
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_flush(index: *const omen_index, err: *mut *mut omen_error) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (documented).
        unsafe { self::index(index) }?.flush()?;
        Ok(())
    })
}

/// Closes and frees an index, checkpointing a database first (as `omen_index_flush`) and
/// reporting what failed; `omen_index_free` does the same but cannot report.
///
/// # Ownership
/// Takes `index`: it is freed whatever the status and must not be used afterwards. NULL is
/// accepted and ignored.
///
/// # Thread safety
/// No other call may use `index` concurrently or afterwards.
///
/// # Errors
/// `OMEN_STATUS_IO` when the checkpoint fails (everything acknowledged stays in the log and is
/// replayed by the next open).
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_close(index: *mut omen_index, err: *mut *mut omen_error) -> omen_status {
    guard(err, || {
        if index.is_null() {
            return Ok(());
        }
        // SAFETY: a non-NULL handle came from `Box::into_raw` in this library and is freed once
        // (caller's contract).
        let handle = unsafe { Box::from_raw(index) };
        handle.index.close()?;
        Ok(())
    })
}

/// Disk and memory use of an index (`omen_index_stats`). All sizes in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct omen_stats {
    /// `sizeof(omen_stats)` as the caller compiled it; set it before the call.
    pub size: usize,
    /// Segments holding data (sealed ones, plus the growing one when it is not empty).
    pub segments: u64,
    /// Vectors that are not deleted (what searches can return).
    pub vectors: u64,
    /// Size of the files in the database directory (0 in memory).
    pub bytes_on_disk: u64,
    /// Heap memory: vectors, graphs and id maps not read from a mapping.
    pub bytes_heap: u64,
    /// Bytes of segment files mapped into memory.
    pub bytes_mapped: u64,
    /// Of those, bytes in this process's resident set (the pages searches have touched).
    pub bytes_mapped_resident: u64,
    /// fsyncs of the write-ahead log since the database was opened: fewer than the inserts when
    /// concurrent inserts shared them (group commit).
    pub log_syncs: u64,
    /// Bytes of quantized code a vector carries (0 without quantization).
    pub code_bytes_per_vector: u64,
    /// `bytes_on_disk / vectors`, rounded.
    pub bytes_per_vector_on_disk: u64,
    /// `(bytes_heap + bytes_mapped_resident) / vectors`, rounded.
    pub bytes_per_vector_resident: u64,
    /// Bytes the opening dropped from the end of the write-ahead log, as a crash during a write
    /// leaves them (moved aside, never deleted; see `omen_index_recovery_notice`). 0 when the
    /// log ended with a whole record.
    pub log_dropped_bytes: u64,
    /// Records in those bytes, as far as their heads tell.
    pub log_dropped_records: u64,
    /// Deleted vectors their segments still hold, until a compaction rewrites them.
    pub deleted: u64,
}

/// Older `omen_stats` layouts, still accepted (such callers get the fields they know): before
/// `log_dropped_bytes`, and before `deleted`.
const STATS_OLDER_SIZES: [usize; 2] = [88, 104];
const _: () = assert!(std::mem::offset_of!(omen_stats, log_dropped_bytes) == STATS_OLDER_SIZES[0]);
const _: () = assert!(std::mem::offset_of!(omen_stats, deleted) == STATS_OLDER_SIZES[1]);

/// Fills `*out_stats` with the index's segments, vectors and bytes on disk and in memory.
///
/// Set `out_stats->size = sizeof(omen_stats)` first: a size this library does not know fails
/// without writing.
///
/// # Ownership
/// Borrows `index`; writes into the caller's `*out_stats`.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT`; `OMEN_STATUS_INVALID_ARGUMENT` for an unknown `size`.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_stats(
    index: *const omen_index,
    out_stats: *mut omen_stats,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        // SAFETY: `omen_stats` starts with its size, which the caller set (documented).
        let size = unsafe { size_field(out_stats, "out_stats") }?;
        check_size::<omen_stats>(size, &STATS_OLDER_SIZES)?;
        let stats = index.stats();
        let stats = omen_stats {
            size,
            segments: stats.segments as u64,
            vectors: stats.vectors as u64,
            bytes_on_disk: stats.bytes_on_disk,
            bytes_heap: stats.bytes_heap,
            bytes_mapped: stats.bytes_mapped,
            bytes_mapped_resident: stats.bytes_mapped_resident,
            log_syncs: stats.log_syncs,
            code_bytes_per_vector: stats.code_bytes_per_vector,
            bytes_per_vector_on_disk: stats.bytes_per_vector_on_disk,
            bytes_per_vector_resident: stats.bytes_per_vector_resident,
            log_dropped_bytes: stats.log_dropped_bytes,
            log_dropped_records: stats.log_dropped_records,
            deleted: stats.deleted as u64,
        };
        // SAFETY: non-NULL and aligned (checked), `size` writable bytes, one of this library's
        // layouts (checked; caller's contract).
        unsafe { write_sized(out_stats, stats, size) };
        Ok(())
    })
}

/// Inserts `count` vectors with caller-chosen ids, all or nothing.
///
/// `vectors` is row-major: `count * dim` floats, row i belonging to `ids[i]`. `dim` must equal the
/// index dimension. Vectors are linked in parallel on the index's threads (a batch of a few
/// rows on the calling thread, where it costs less); the call returns when all are searchable.
/// `count = 0` is a successful no-op (`ids` and `vectors` may then be NULL).
///
/// # Ownership
/// Borrows `ids` and `vectors` during the call only; the index keeps copies.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`;
/// inserts are applied one at a time.
///
/// # Errors
/// On any error the index is unchanged. `OMEN_STATUS_NULL_ARGUMENT` for a NULL `index`, or NULL
/// `ids`/`vectors` with `count > 0`; `OMEN_STATUS_DIMENSION_MISMATCH` when `dim` differs from
/// the index; `OMEN_STATUS_NON_FINITE` for NaN or infinity; `OMEN_STATUS_ZERO_VECTOR` for a zero
/// vector under cosine; `OMEN_STATUS_DUPLICATE_ID` for an id already present or repeated in the
/// batch; `OMEN_STATUS_INVALID_ARGUMENT` for misaligned pointers or sizes that overflow.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_insert_batch(
    index: *const omen_index,
    ids: *const u64,
    vectors: *const f32,
    count: usize,
    dim: usize,
    err: *mut *mut omen_error,
) -> omen_status {
    // SAFETY: passed on (caller's contract, documented).
    unsafe { write_rows(index, ids, vectors, count, dim, err, Index::insert_batch) }
}

/// Inserts `count` vectors like `omen_index_insert_batch`, except that an id already present has
/// its vector replaced: the old one is deleted and never returned again. One atomic, durable
/// change (one log record).
///
/// # Ownership
/// Borrows `ids` and `vectors` during the call only; the index keeps copies.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`;
/// changes are applied one at a time.
///
/// # Errors
/// On any error the index is unchanged. As `omen_index_insert_batch`, except that
/// `OMEN_STATUS_DUPLICATE_ID` means an id repeated within `ids`; `OMEN_STATUS_READ_ONLY` for a
/// read-only database.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_upsert(
    index: *const omen_index,
    ids: *const u64,
    vectors: *const f32,
    count: usize,
    dim: usize,
    err: *mut *mut omen_error,
) -> omen_status {
    // SAFETY: passed on (caller's contract, documented).
    unsafe { write_rows(index, ids, vectors, count, dim, err, Index::upsert) }
}

/// Deletes every listed id that is present; `*out_removed` (may be NULL) receives how many were.
/// Absent ids are not an error. All or nothing, and durable before it returns (as inserts are,
/// under `options.durability`). Deleted vectors are never returned again; their space comes back
/// with `omen_index_compact`. `count = 0` is a successful no-op (`ids` may then be NULL).
///
/// # Ownership
/// Borrows `ids` during the call only; writes `*out_removed`.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`; a
/// search that starts after this returns never sees the deleted ids.
///
/// # Errors
/// On any error nothing is deleted. `OMEN_STATUS_NULL_ARGUMENT` for a NULL `index`, or NULL `ids`
/// with `count > 0`; `OMEN_STATUS_DUPLICATE_ID` for an id listed twice;
/// `OMEN_STATUS_READ_ONLY` for a read-only database; `OMEN_STATUS_IO` when the log cannot be
/// written.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_delete(
    index: *const omen_index,
    ids: *const u64,
    count: usize,
    out_removed: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        // SAFETY: `ids` holds `count` ids (caller's contract), only read during this call;
        // `out_removed`, when not NULL, one writable size_t; overlap is refused below.
        let (ids, out_removed) = unsafe {
            let out_removed =
                if out_removed.is_null() { None } else { Some(slice_mut(out_removed, 1, "out_removed")?) };
            (slice(ids, count, "ids")?, out_removed)
        };
        if let Some(out) = &out_removed {
            disjoint(&[span("ids", ids), span("out_removed", out)])?;
        }
        let removed = index.delete(ids)?;
        if let Some(out) = out_removed {
            out[0] = removed;
        }
        Ok(())
    })
}

/// Copies the stored vectors of `count` ids (normalised ones under cosine) into `out_vectors`,
/// row i for `ids[i]`, and sets `out_found[i]` to 1; an absent id leaves its row zeroed and
/// `out_found[i] = 0`. `out_vectors` holds `count * dim` floats, `out_found` `count` bytes.
///
/// # Ownership
/// Borrows `ids` during the call; writes the caller's `out_vectors` and `out_found`.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT` for a NULL pointer with `count > 0`;
/// `OMEN_STATUS_DIMENSION_MISMATCH` when `dim` differs from the index;
/// `OMEN_STATUS_INVALID_ARGUMENT` for overlapping buffers or sizes that overflow.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_get(
    index: *const omen_index,
    ids: *const u64,
    count: usize,
    out_vectors: *mut f32,
    dim: usize,
    out_found: *mut u8,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        check_dim(index, dim)?;
        let floats = product(count, dim, "count * dim")?;
        // SAFETY: `ids` holds `count` ids, `out_vectors` `count * dim` writable floats and
        // `out_found` `count` writable bytes (caller's contract); overlap is refused below.
        let (ids, out_vectors, out_found) = unsafe {
            (
                slice(ids, count, "ids")?,
                slice_mut(out_vectors, floats, "out_vectors")?,
                slice_mut(out_found, count, "out_found")?,
            )
        };
        disjoint(&[span("ids", ids), span("out_vectors", out_vectors), span("out_found", out_found)])?;
        let mut found = vec![false; count];
        index.get(ids, out_vectors, &mut found)?;
        out_found.iter_mut().zip(found).for_each(|(out, found)| *out = u8::from(found));
        Ok(())
    })
}

/// Rewrites every segment holding deleted vectors without them (and merges sealed segments less
/// than half full), rebuilds as one batch each segment of 262,144 vectors or more filled in
/// batches none of which held half of it (one batch is linked and numbered to keep nearby vectors
/// together: on 1M vectors inserted 1,000 at a time, searches gained 10-15%), then
/// checkpoints a database; returns when done. Searches keep running on the
/// old segments meanwhile; inserts and deletes wait. The old files are removed and their memory
/// returns once no running search holds them. A crash at any moment reopens to exactly the
/// acknowledged contents.
///
/// # Ownership
/// Borrows `index` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT`; `OMEN_STATUS_READ_ONLY` for a read-only database;
/// `OMEN_STATUS_IO` when a file cannot be written (the database stays as it was).
#[no_mangle]
#[must_use]
pub extern "C" fn omen_index_compact(index: *const omen_index, err: *mut *mut omen_error) -> omen_status {
    guard(err, || {
        // SAFETY: the caller passes a live handle (documented).
        unsafe { self::index(index) }?.compact()?;
        Ok(())
    })
}

/// What opening the database dropped from the end of its write-ahead log, in words: how many
/// bytes and records from which byte, why, and the file they were moved to. NULL when nothing was
/// dropped (always for an in-memory index) and for a NULL `index`.
///
/// The last record is dropped when its bytes do not match its checksum or the file ends inside
/// it, which is what a crash during its write leaves; the same damage to an acknowledged record
/// cannot be told apart (docs/format.md). `OMEN_LOG_RECOVERY_STRICT` refuses such a log instead.
///
/// # Ownership
/// The string belongs to the index: valid until `omen_index_close`/`free`; never free it.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
#[no_mangle]
pub extern "C" fn omen_index_recovery_notice(index: *const omen_index) -> *const c_char {
    infallible(std::ptr::null(), || {
        require(index, "index").ok().map_or(std::ptr::null(), |()| {
            // SAFETY: non-NULL and aligned (checked); live by the caller's contract.
            let handle = unsafe { &*index };
            handle.recovery_notice.as_ref().map_or(std::ptr::null(), |notice| notice.as_ptr())
        })
    })
}

/// Number of vectors in the index; 0 for a NULL `index`.
///
/// # Ownership
/// Borrows `index` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
#[no_mangle]
pub extern "C" fn omen_index_len(index: *const omen_index) -> usize {
    // SAFETY: the caller passes NULL or a live handle (documented).
    infallible(0, || unsafe { self::index(index) }.map_or(0, Index::len))
}

/// The index dimension; 0 for a NULL `index`.
///
/// # Ownership
/// Borrows `index` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
#[no_mangle]
pub extern "C" fn omen_index_dim(index: *const omen_index) -> usize {
    // SAFETY: the caller passes NULL or a live handle (documented).
    infallible(0, || unsafe { self::index(index) }.map_or(0, Index::dim))
}

/// Number of non-empty segments (sealed ones plus the growing one); 0 for a NULL `index`.
///
/// # Ownership
/// Borrows `index` during the call.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`.
#[no_mangle]
pub extern "C" fn omen_index_segment_count(index: *const omen_index) -> usize {
    // SAFETY: the caller passes NULL or a live handle (documented).
    infallible(0, || unsafe { self::index(index) }.map_or(0, Index::segment_count))
}

/// Frees an index and everything it holds.
///
/// # Ownership
/// Takes `index`; it must not be used afterwards. NULL is accepted and ignored.
///
/// # Thread safety
/// No other call may use `index` concurrently or afterwards.
#[no_mangle]
pub extern "C" fn omen_index_free(index: *mut omen_index) {
    infallible((), || {
        if !index.is_null() {
            // SAFETY: a non-NULL handle came from `Box::into_raw` in `omen_index_create` and is
            // freed once (caller's contract).
            drop(unsafe { Box::from_raw(index) });
        }
    })
}
