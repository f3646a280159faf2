//! A database directory: its lock, manifest and write-ahead log, durability (group commit) and
//! checkpoints that turn the log into segment files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::manifest::{growing_name, segment_name, wal_name, Manifest, SegmentEntry};
use super::wal::Wal;
use super::{io_error, sync_dir};
use crate::segment::SegmentSet;
use crate::{Error, Result};

/// When an acknowledged insert reaches the disk. A process crash (kill -9) loses nothing in any
/// mode, because the log is written before `insert_batch` returns; the modes differ only on an
/// operating-system crash or power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync before `insert_batch` returns; concurrent inserts share one fsync. Nothing
    /// acknowledged is ever lost. The default.
    #[default]
    EveryBatch,
    /// fsync in the background at this interval: a power loss can lose the inserts of the last
    /// interval.
    Interval(Duration),
    /// fsync only at checkpoints (seal, flush, close): a power loss can lose every insert since.
    Never,
}

pub(crate) const LOCK_FILE: &str = "LOCK";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data consistent before anything can panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Durability shared with the background syncer.
struct Durable {
    /// Records appended so far (a log sequence number).
    written: AtomicU64,
    /// fsyncs of the log so far.
    syncs: AtomicU64,
    sync: Mutex<Syncer>,
}

struct Syncer {
    /// A handle on the current log, for fsync while appends continue.
    file: File,
    path: PathBuf,
    /// Records known durable.
    synced: u64,
    /// Set when an fsync failed: what reached the disk is then unknown (the kernel may have
    /// dropped the dirty pages), so no later write may be acknowledged.
    failure: Option<String>,
}

impl Durable {
    /// Makes records up to `lsn` durable; one fsync serves every caller waiting at that time.
    fn sync_to(&self, lsn: u64) -> Result<()> {
        let mut syncer = lock(&self.sync);
        if let Some(failure) = &syncer.failure {
            return Err(Error::Io { path: syncer.path.display().to_string(), detail: failure.clone() });
        }
        if syncer.synced >= lsn {
            return Ok(());
        }
        let target = self.written.load(SeqCst);
        self.syncs.fetch_add(1, SeqCst);
        match syncer.file.sync_data() {
            Ok(()) => {
                syncer.synced = target;
                Ok(())
            }
            Err(e) => {
                let detail = format!("fsync failed ({e}); reopen the database to see what is durable");
                syncer.failure = Some(detail.clone());
                Err(Error::Io { path: syncer.path.display().to_string(), detail })
            }
        }
    }
}

/// An open database directory.
pub(crate) struct Store {
    dir: PathBuf,
    read_only: bool,
    durability: Durability,
    /// Held (flock) while open for writing; released when the file closes.
    _lock: Option<File>,
    manifest: Mutex<Manifest>,
    /// `None` until the log was replayed, and always for a read-only store.
    wal: Mutex<Option<Wal>>,
    durable: Option<Arc<Durable>>,
    syncer_thread: Option<(Sender<()>, JoinHandle<()>)>,
}

/// The lock file, taken exclusively; fails with `Locked` while another process holds it.
fn take_lock(dir: &Path) -> Result<File> {
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

/// Disk and memory use of an index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments holding data (sealed ones, plus the growing one when it is not empty).
    pub segments: usize,
    pub vectors: usize,
    /// Size of the files in the database directory (0 in memory).
    pub bytes_on_disk: u64,
    /// Heap memory the index holds: vectors, graphs and id maps not read from a mapping.
    pub bytes_heap: u64,
    /// Bytes of segment files mapped into memory.
    pub bytes_mapped: u64,
    /// Of those, the bytes in this process's resident set (the pages searches have touched).
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
}

impl Store {
    /// Opens (or, with `create`, creates) the database directory `dir`. Returns the store and its
    /// manifest; `fresh` is the manifest to write when the directory holds no database yet.
    pub(crate) fn open(
        dir: &Path,
        create: bool,
        read_only: bool,
        durability: Durability,
        fresh: impl FnOnce() -> Result<Manifest>,
    ) -> Result<(Store, Manifest)> {
        let missing = || Error::NotFound { path: dir.display().to_string() };
        if create && !read_only {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create directory", &e))?;
        } else if !dir.is_dir() {
            return Err(missing());
        }
        let lock = if read_only { None } else { Some(take_lock(dir)?) };
        let manifest = match Manifest::read(dir)? {
            Some(manifest) => manifest,
            None if create && !read_only => {
                let manifest = fresh()?;
                Wal::create(&dir.join(wal_name(manifest.generation)), manifest.dim as usize, manifest.generation)?;
                manifest.write(dir)?;
                manifest
            }
            None => return Err(missing()),
        };
        let store = Store {
            dir: dir.to_path_buf(),
            read_only,
            durability,
            _lock: lock,
            manifest: Mutex::new(manifest.clone()),
            wal: Mutex::new(None),
            durable: None,
            syncer_thread: None,
        };
        Ok((store, manifest))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn segment_path(&self, ordinal: u32) -> PathBuf {
        self.dir.join(segment_name(ordinal))
    }

    pub(crate) fn growing_path(&self, manifest: &Manifest) -> PathBuf {
        self.dir.join(growing_name(manifest.growing.ordinal, manifest.generation))
    }

    /// Passes every record of the log to `apply`, then (unless read-only) keeps the log open for
    /// appending and starts the background syncer if the durability mode has one.
    pub(crate) fn replay(&mut self, apply: impl FnMut(&[u64], &[f32]) -> Result<()>) -> Result<()> {
        let manifest = lock(&self.manifest).clone();
        let path = self.dir.join(wal_name(manifest.generation));
        let wal = Wal::open(&path, manifest.dim as usize, manifest.generation, !self.read_only, apply)?;
        if self.read_only {
            return Ok(());
        }
        let durable = Arc::new(Durable {
            written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync: Mutex::new(Syncer { file: wal.sync_handle()?, path, synced: 0, failure: None }),
        });
        *lock(&self.wal) = Some(wal);
        if let Durability::Interval(interval) = self.durability {
            let (stop, stopped) = mpsc::channel::<()>();
            let durable = durable.clone();
            let thread = std::thread::Builder::new()
                .name("omendb-sync".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                        // A failure is kept in `durable` and reported by the next insert.
                        let _ = durable.sync_to(durable.written.load(SeqCst));
                    }
                })
                .map_err(|e| Error::Threads(e.to_string()))?;
            self.syncer_thread = Some((stop, thread));
        }
        self.durable = Some(durable);
        self.clean_up()
    }

    /// Fails when writes are refused: read-only, or an earlier fsync failed.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.display().to_string() });
        }
        let durable = self.durable.as_ref().ok_or_else(|| Error::ReadOnly { path: self.dir.display().to_string() })?;
        let syncer = lock(&durable.sync);
        match &syncer.failure {
            Some(failure) => Err(Error::Io { path: syncer.path.display().to_string(), detail: failure.clone() }),
            None => Ok(()),
        }
    }

    /// Appends a batch to the log; returns its sequence number for `sync`. On failure the log is
    /// unchanged.
    pub(crate) fn log(&self, ids: &[u64], vectors: &[f32]) -> Result<u64> {
        let mut wal = lock(&self.wal);
        let (Some(wal), Some(durable)) = (wal.as_mut(), &self.durable) else {
            return Err(Error::ReadOnly { path: self.dir.display().to_string() });
        };
        wal.append(ids, vectors)?;
        Ok(durable.written.fetch_add(1, SeqCst) + 1)
    }

    /// Makes the batch logged as `lsn` durable, as the durability mode asks.
    pub(crate) fn sync(&self, lsn: u64) -> Result<()> {
        match (&self.durable, self.durability) {
            (Some(durable), Durability::EveryBatch) => durable.sync_to(lsn),
            _ => Ok(()),
        }
    }

    /// Whether the log holds records a checkpoint would fold into files.
    pub(crate) fn has_log_records(&self) -> bool {
        lock(&self.wal).as_ref().is_some_and(|wal| !wal.is_empty())
    }

    /// Writes every sealed segment not yet on disk and a snapshot of the growing one, starts an
    /// empty log and switches the manifest to them. The caller holds the writer lock, so `set`
    /// is exactly what the log has recorded. Until the new manifest is in place, the old one with
    /// its log still describes everything acknowledged, so a failure at any step loses nothing.
    pub(crate) fn checkpoint(&self, set: &SegmentSet, next_ordinal: u32) -> Result<()> {
        self.check_writable()?;
        let old = lock(&self.manifest).clone();
        let unsaved = set.sealed.iter().any(|s| !old.sealed.iter().any(|e| e.ordinal == s.ordinal()));
        let growing_saved =
            old.growing.ordinal == set.growing.ordinal() && old.growing.count == set.growing.len() as u64;
        if !unsaved && growing_saved && !self.has_log_records() {
            return Ok(());
        }
        let generation = old.generation + 1;
        let mut sealed = old.sealed.clone();
        for segment in &set.sealed {
            if !sealed.iter().any(|e| e.ordinal == segment.ordinal()) {
                segment.write(&self.segment_path(segment.ordinal()))?;
                sealed.push(SegmentEntry { ordinal: segment.ordinal(), count: segment.len() as u64 });
            }
        }
        let growing = SegmentEntry { ordinal: set.growing.ordinal(), count: set.growing.len() as u64 };
        let next = Manifest { generation, next_ordinal, sealed, growing, ..old.clone() };
        if growing.count > 0 {
            set.growing.write(&self.growing_path(&next))?;
        }
        let wal_path = self.dir.join(wal_name(generation));
        let wal = Wal::create(&wal_path, old.dim as usize, generation)?;
        sync_dir(&self.dir)?;
        next.write(&self.dir)?;

        // The new state is durable; switch to it and drop what it replaced.
        if let Some(durable) = &self.durable {
            let mut syncer = lock(&durable.sync);
            syncer.file = wal.sync_handle()?;
            syncer.path = wal_path;
            syncer.synced = durable.written.load(SeqCst);
        }
        *lock(&self.wal) = Some(wal);
        *lock(&self.manifest) = next;
        self.clean_up()
    }

    /// Removes files the manifest no longer lists: logs and snapshots a checkpoint replaced, and
    /// leftovers of a checkpoint that a crash interrupted. Best effort: a file that stays behind
    /// is removed at the next checkpoint or open.
    fn clean_up(&self) -> Result<()> {
        let manifest = lock(&self.manifest).clone();
        let mut keep = vec![
            super::manifest::FILE_NAME.to_string(),
            LOCK_FILE.to_string(),
            wal_name(manifest.generation),
            growing_name(manifest.growing.ordinal, manifest.generation),
        ];
        keep.extend(manifest.sealed.iter().map(|e| segment_name(e.ordinal)));
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, "list", &e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["segment-", "growing-", "wal-", "MANIFEST"].iter().any(|p| name.starts_with(p));
            if ours && !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Total size of the files in the directory.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    pub(crate) fn log_syncs(&self) -> u64 {
        self.durable.as_ref().map_or(0, |d| d.syncs.load(SeqCst))
    }

    /// Makes everything logged durable (used at close, whatever the durability mode).
    pub(crate) fn sync_all(&self) -> Result<()> {
        match &self.durable {
            Some(durable) => durable.sync_to(durable.written.load(SeqCst)),
            None => Ok(()),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.syncer_thread.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fsync_covers_every_record_written_before_it() {
        let path = std::env::temp_dir().join(format!("omendb-durable-{}", std::process::id()));
        let durable = Durable {
            written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync: Mutex::new(Syncer {
                file: File::create(&path).unwrap(),
                path: path.clone(),
                synced: 0,
                failure: None,
            }),
        };
        // Three inserts log their records, then all wait for durability: the first fsync
        // covers all three, so the others return without one.
        durable.written.store(3, SeqCst);
        for lsn in 1..=3 {
            durable.sync_to(lsn).unwrap();
        }
        assert_eq!(durable.syncs.load(SeqCst), 1);
        durable.written.store(4, SeqCst);
        durable.sync_to(4).unwrap();
        assert_eq!(durable.syncs.load(SeqCst), 2);
        let _ = std::fs::remove_file(path);
    }
}
