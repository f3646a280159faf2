//! A database directory: its lock, manifest and write-ahead log, durability (group commit) and
//! checkpoints that turn the log into segment files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::backup::{Frozen, FrozenFile};
use super::lock::{take_lock, WriterLock, LOCK_FILE};
use super::manifest::{
    deletions_name, growing_name, segment_name, wal_name, Manifest, SegmentEntry, FILE_NAME as MANIFEST_FILE,
};
use super::wal::{DroppedTail, LogRecord, Wal, DAMAGED_SUFFIX};
use super::{sync_dir, Source};
use crate::error::{io_error, Error, Result};
use crate::options::{Durability, LogRecovery};

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
    _lock: Option<WriterLock>,
    manifest: Mutex<Manifest>,
    /// `None` until the log was replayed, and always for a read-only store.
    wal: Mutex<Option<Wal>>,
    durable: Option<Arc<Durable>>,
    /// What opening dropped from the end of the log.
    dropped_tail: Option<DroppedTail>,
    /// Bytes of the log that opening replayed (what a read-only opening holds of it).
    replayed_log_len: u64,
    /// A read-only opening's handles on every file its manifest names, by name, taken when it
    /// read the manifest (`pin`): it reads those, and a backup of it copies them, even after a
    /// writer's checkpoint removed them.
    pinned: Vec<(String, File)>,
    syncer_thread: Option<(Sender<()>, JoinHandle<()>)>,
}

/// Whether `name` is a file a database keeps in its directory (besides the lock). Log tails
/// moved aside are not: they are kept for the user, never read or removed.
fn is_database_file(name: &str) -> bool {
    ["segment-", "growing-", "deleted-", "wal-", MANIFEST_FILE].iter().any(|prefix| name.starts_with(prefix))
        && !name.ends_with(DAMAGED_SUFFIX)
}

/// The names of the database files in `dir` that hold data, sorted. What a creation cut short
/// leaves (the first, empty log and a temporary manifest) holds none.
fn database_files(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "list", &e))?;
    let first_log = wal_name(0);
    let holds_data = |entry: &std::fs::DirEntry, name: &str| {
        let empty_first_log = name == first_log && entry.metadata().is_ok_and(|m| m.len() <= Wal::HEADER_LEN);
        is_database_file(name) && !empty_first_log && !name.ends_with(".tmp")
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry))
        .filter(|(name, entry)| holds_data(entry, name))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    Ok(names)
}

/// Checkpoints of a writer that a read-only opening lets interrupt its pinning (`pin`) before it
/// gives up. Each attempt opens the files of one manifest, a millisecond's work, so only a writer
/// checkpointing without pause can exhaust them.
const MAX_PIN_ATTEMPTS: usize = 1000;

/// Opens every file `manifest` (just read from `dir`) names, and returns them with the manifest
/// they belong to. A writer's checkpoint may replace the manifest and remove its files meanwhile:
/// the files are the manifest's only if it is still current once they are all open (generations
/// only grow), else pinning starts again from the new one. Afterwards the opening reads only
/// through these handles, so no later checkpoint can take a file away from it.
fn pin(dir: &Path, mut manifest: Manifest) -> Result<(Manifest, Vec<(String, File)>)> {
    let open = |name: String| {
        let path = dir.join(&name);
        File::open(&path).map(|file| (name, file)).map_err(|e| io_error(&path, "open", &e))
    };
    for _ in 0..MAX_PIN_ATTEMPTS {
        let opened: Result<Vec<(String, File)>> = manifest.files().into_iter().map(open).collect();
        let current = Manifest::read(dir)?.ok_or_else(|| Error::NotFound { path: dir.display().to_string() })?;
        if current.generation == manifest.generation {
            return Ok((manifest, opened?));
        }
        manifest = current;
    }
    Err(Error::Io {
        path: dir.display().to_string(),
        detail: format!(
            "a writer checkpointed {MAX_PIN_ATTEMPTS} times while this read-only opening read its manifest"
        ),
    })
}

/// The segments a database consists of after a checkpoint (`SegmentEntry::deletions` is the
/// store's to fill in).
pub(crate) struct Checkpoint {
    /// Every sealed segment, in order; those the manifest does not list yet are written.
    pub sealed: Vec<SegmentEntry>,
    /// The growing segment; a snapshot of it is written when it holds vectors.
    pub growing: SegmentEntry,
    pub next_ordinal: u32,
}

/// A file a checkpoint asks its caller to write.
pub(crate) enum NewFile {
    /// The sealed segment at this position of `Checkpoint::sealed`.
    Sealed(usize),
    /// The snapshot of the growing segment.
    Growing,
    /// The deletion file (`write_deletions`) of the segment with this ordinal, whose deletions
    /// changed since the manifest's.
    Deletions(u32),
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
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Io {
                path: dir.display().to_string(),
                detail: "is not a directory (a database is a directory)".into(),
            });
        }
        if create && !read_only {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create directory", &e))?;
        } else if !dir.is_dir() {
            return Err(missing());
        }
        let lock = if read_only { None } else { Some(take_lock(dir)?) };
        let manifest = match Manifest::read(dir)? {
            Some(manifest) => manifest,
            None => {
                // Never create a database over one whose manifest is gone: a fresh manifest would
                // make every segment and log of the old one leftovers, and the clean-up deletes them.
                let found = database_files(dir)?;
                if !found.is_empty() {
                    return Err(Error::Corrupt {
                        path: Manifest::path(dir).display().to_string(),
                        detail: format!(
                            "is missing, but the directory holds database files ({}); nothing was changed",
                            found.join(", ")
                        ),
                    });
                }
                if !create || read_only {
                    return Err(missing());
                }
                let manifest = fresh()?;
                Wal::create(&dir.join(wal_name(manifest.generation)), manifest.dim as usize, manifest.generation)?;
                manifest.write(dir)?;
                manifest
            }
        };
        let (manifest, pinned) = if read_only { pin(dir, manifest)? } else { (manifest, Vec::new()) };
        let store = Store {
            dir: dir.to_path_buf(),
            read_only,
            durability,
            _lock: lock,
            manifest: Mutex::new(manifest.clone()),
            wal: Mutex::new(None),
            durable: None,
            dropped_tail: None,
            replayed_log_len: 0,
            pinned,
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

    pub(crate) fn deletions_path(&self, entry: &SegmentEntry) -> PathBuf {
        self.dir.join(deletions_name(entry.ordinal, entry.deletions))
    }

    /// The file at `path` (one of the paths above) to read: through the handle pinned for it
    /// when read-only.
    pub(crate) fn source(&self, path: PathBuf) -> Source<'_> {
        let name = path.file_name().map(|name| name.to_string_lossy());
        let pinned =
            self.pinned.iter().find(|(pinned, _)| Some(pinned.as_str()) == name.as_deref()).map(|(_, file)| file);
        Source { path, pinned }
    }

    /// Passes every record of the log to `apply`, then (unless read-only) keeps the log open for
    /// appending and starts the background syncer if the durability mode has one. A torn or
    /// damaged tail is handled as `recovery` says; what was dropped is kept (`dropped_tail`).
    pub(crate) fn replay(
        &mut self,
        recovery: LogRecovery,
        apply: impl FnMut(LogRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        let manifest = lock(&self.manifest).clone();
        let path = self.dir.join(wal_name(manifest.generation));
        let strict = recovery == LogRecovery::Strict;
        let (wal, dropped) = Wal::open(
            &self.source(path.clone()),
            manifest.dim as usize,
            manifest.generation,
            !self.read_only,
            strict,
            apply,
        )?;
        self.dropped_tail = dropped;
        self.replayed_log_len = wal.len();
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

    /// Appends a change to the log; returns its sequence number for `sync`. On failure the log
    /// is unchanged.
    pub(crate) fn log(&self, change: LogRecord<'_>) -> Result<u64> {
        let mut wal = lock(&self.wal);
        let (Some(wal), Some(durable)) = (wal.as_mut(), &self.durable) else {
            return Err(Error::ReadOnly { path: self.dir.display().to_string() });
        };
        wal.append(change)?;
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

    /// Makes `next` the database: has `write` put every sealed segment the manifest does not
    /// list yet and a snapshot of the growing one at the paths it is given, starts an empty log
    /// and switches the manifest to them. The caller keeps inserts out meanwhile, so `next` is
    /// exactly what the log has recorded. Until the new manifest is in place, the old one with
    /// its log still describes everything acknowledged, so a failure at any step loses nothing.
    pub(crate) fn checkpoint(
        &self,
        next: Checkpoint,
        mut write: impl FnMut(NewFile, &Path) -> Result<()>,
    ) -> Result<()> {
        self.check_writable()?;
        let old = lock(&self.manifest).clone();
        let listed = |ordinal: u32| old.sealed.iter().any(|e| e.ordinal == ordinal);
        let unsaved = next.sealed.iter().any(|e| !listed(e.ordinal));
        // The old entry of a segment whose nodes and deletions are unchanged (deletions are only
        // ever added): its deletion file still holds.
        let unchanged = |e: &SegmentEntry| {
            old.entries().find(|o| (o.ordinal, o.count, o.deleted) == (e.ordinal, e.count, e.deleted)).copied()
        };
        let deletions_changed = next.sealed.iter().chain([&next.growing]).any(|e| unchanged(e).is_none());
        let same_growing = (old.growing.ordinal, old.growing.count) == (next.growing.ordinal, next.growing.count);
        if !unsaved && !deletions_changed && same_growing && !self.has_log_records() {
            return Ok(());
        }
        let generation = old.generation + 1;
        for (position, entry) in next.sealed.iter().enumerate().filter(|(_, e)| !listed(e.ordinal)) {
            write(NewFile::Sealed(position), &self.segment_path(entry.ordinal))?;
        }
        let mut next = Manifest {
            generation,
            next_ordinal: next.next_ordinal,
            sealed: next.sealed,
            growing: next.growing,
            ..old.clone()
        };
        if next.growing.count > 0 {
            write(NewFile::Growing, &self.growing_path(&next))?;
        }
        // A deletion file is kept while its segment is unchanged, else written anew.
        for entry in next.sealed.iter_mut().chain([&mut next.growing]) {
            entry.deletions = match unchanged(entry) {
                _ if entry.deleted == 0 => 0,
                Some(kept) => kept.deletions,
                None => {
                    let deletions = SegmentEntry { deletions: generation, ..*entry };
                    write(NewFile::Deletions(entry.ordinal), &self.deletions_path(&deletions))?;
                    generation
                }
            };
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
        // Both swap under the log's lock, so `freeze` sees the log and the manifest of one
        // generation.
        let mut current = lock(&self.wal);
        *current = Some(wal);
        *lock(&self.manifest) = next;
        drop(current);
        self.clean_up()
    }

    /// Fixes the moment a backup copies: the manifest, every file it names (open, so that a
    /// checkpoint removing one meanwhile cannot take it away) and the length of the log, while
    /// appends wait. A read-only opening's moment is what it read when it opened, from the
    /// handles it kept.
    pub(crate) fn freeze(&self) -> Result<Frozen> {
        let wal = lock(&self.wal);
        let manifest = lock(&self.manifest).clone();
        let log_len = wal.as_ref().map_or(self.replayed_log_len, Wal::len);
        let log = wal_name(manifest.generation);
        let files = manifest
            .files()
            .into_iter()
            .map(|name| {
                let path = self.dir.join(&name);
                let file = self.source(path.clone()).open()?;
                let len =
                    if name == log { log_len } else { file.metadata().map_err(|e| io_error(&path, "stat", &e))?.len() };
                Ok(FrozenFile { immutable: name != log, name, file, len })
            })
            .collect::<Result<Vec<_>>>()?;
        drop(wal);
        Ok(Frozen { manifest, files })
    }

    /// Removes files the manifest no longer lists: logs and snapshots a checkpoint replaced, and
    /// leftovers of a checkpoint that a crash interrupted. Best effort: a file that stays behind
    /// is removed at the next checkpoint or open.
    fn clean_up(&self) -> Result<()> {
        let manifest = lock(&self.manifest).clone();
        let mut keep = manifest.files();
        keep.extend([MANIFEST_FILE.to_string(), LOCK_FILE.to_string()]);
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, "list", &e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_database_file(&name) && !keep.contains(&name) {
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

    /// What opening dropped from the end of the log, if anything.
    pub(crate) fn dropped_tail(&self) -> Option<&DroppedTail> {
        self.dropped_tail.as_ref()
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
    use std::io::Read;

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

    /// A writer's store over a new database in `dir`, its (empty) log replayed.
    fn writer(dir: &Path) -> Store {
        let (mut store, _) =
            Store::open(dir, true, false, Durability::Never, || Ok(Manifest::new_for_tests())).unwrap();
        store.replay(LogRecovery::Strict, |_| Ok(())).unwrap();
        store
    }

    /// A checkpoint whose growing snapshot holds `count` vectors; the file written for it
    /// holds `contents`.
    fn checkpoint(store: &Store, count: u64, contents: &str) {
        let growing = SegmentEntry { ordinal: 1, count, ..SegmentEntry::default() };
        let next = Checkpoint { sealed: Vec::new(), growing, next_ordinal: 2 };
        store
            .checkpoint(next, |_, path| std::fs::write(path, contents).map_err(|e| io_error(path, "write", &e)))
            .unwrap();
    }

    #[test]
    fn a_read_only_store_reads_the_files_its_manifest_named_after_checkpoints_removed_them() {
        let dir = std::env::temp_dir().join(format!("omendb-pinned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let writer = writer(&dir);
        checkpoint(&writer, 1, "first snapshot");
        let vector = vec![0.5; 384];
        writer.log(LogRecord::Insert { ids: &[9], vectors: &vector }).unwrap();

        let (mut reader, manifest) = Store::open(&dir, false, true, Durability::Never, || unreachable!()).unwrap();
        let growing = reader.growing_path(&manifest);
        // The writer's next checkpoints replace the snapshot and the log the reader's
        // manifest names, and remove both.
        checkpoint(&writer, 2, "second snapshot");
        checkpoint(&writer, 3, "third snapshot");
        assert!(!growing.exists(), "the checkpoints removed the first snapshot");

        let mut snapshot = String::new();
        reader.source(growing).open().unwrap().read_to_string(&mut snapshot).unwrap();
        assert_eq!(snapshot, "first snapshot");
        let mut replayed = Vec::new();
        reader
            .replay(LogRecovery::Strict, |record| {
                if let LogRecord::Insert { ids, vectors } = record {
                    replayed.push((ids.to_vec(), vectors.to_vec()));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(replayed, vec![(vec![9], vector)], "the removed log's record");
        drop((reader, writer));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
