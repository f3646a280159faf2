//! An index kept in a database directory: open (read the segments, replay the log), checkpoint,
//! flush and close.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

use super::ids::IdMap;
use super::insert::{apply_delete, publish, Present};
use super::{Engine, Index, Shared, Writer};
use crate::distance::Metric;
use crate::error::{corrupt, Error, Result};
use crate::options::Options;
use crate::quant::Quantization;
use crate::segment::{Growing, Sealed, SegmentSet};
use crate::storage::{read_deletions, write_deletions, Checkpoint, LogRecord, Manifest, NewFile, SegmentEntry, Store};

/// The manifest of a new database made from `options`.
pub(super) fn fresh_manifest(options: &Options) -> Result<Manifest> {
    options.validate()?;
    Ok(Manifest {
        dim: options.dim as u32,
        metric: options.metric.code(),
        m: options.m as u32,
        ef_construction: options.ef_construction as u32,
        segment_capacity: options.segment_capacity as u64,
        seed: options.seed,
        generation: 0,
        next_ordinal: 1,
        quantization: options.quantization.code(),
        sealed: Vec::new(),
        growing: SegmentEntry::default(),
    })
}

/// `options` with the structure stored in `manifest` (dim, metric, m, ef_construction, segment
/// capacity, seed: fixed when the database was created). A `dim` of 0 takes the stored one;
/// any other dim and the metric must match it.
fn stored_options(dir: &Path, options: &Options, manifest: &Manifest) -> Result<Options> {
    let damaged = |detail: String| corrupt(&Manifest::path(dir), detail);
    let metric =
        Metric::from_code(manifest.metric).ok_or_else(|| damaged(format!("unknown metric {}", manifest.metric)))?;
    let dim = manifest.dim as usize;
    if options.dim != 0 && options.dim != dim {
        return Err(Error::DimensionMismatch(format!(
            "the database {} holds {dim}-dimensional vectors, the options ask for {}",
            dir.display(),
            options.dim
        )));
    }
    if options.dim != 0 && options.metric != metric {
        return Err(Error::InvalidArgument(format!(
            "the database {} uses the {metric} metric, the options ask for {}",
            dir.display(),
            options.metric
        )));
    }
    let quantization = Quantization::from_code(manifest.quantization)
        .ok_or_else(|| damaged(format!("unknown quantization {}", manifest.quantization)))?;
    // `None` asks for nothing (the stored codes are used); other codes must be the stored ones.
    if options.quantization != Quantization::None && options.quantization != quantization {
        return Err(Error::InvalidArgument(format!(
            "the database {} uses {quantization} codes, the options ask for {} (codes are fixed when a database is created)",
            dir.display(),
            options.quantization
        )));
    }
    let stored = Options {
        dim,
        metric,
        m: manifest.m as usize,
        ef_construction: manifest.ef_construction as usize,
        segment_capacity: usize::try_from(manifest.segment_capacity).unwrap_or(usize::MAX),
        seed: manifest.seed,
        quantization,
        ..options.clone()
    };
    stored.validate().map_err(|e| damaged(e.to_string()))?;
    Ok(stored)
}

impl Index {
    /// Opens the database in directory `path`, or creates it there when `options.create` is
    /// set and it holds none. Sealed segments are mapped from their files, the growing one is
    /// read back, and inserts logged since the last checkpoint are replayed.
    ///
    /// `options.dim` and `options.metric` must match a database's (a `dim` of 0 accepts any);
    /// `m`, `ef_construction`, `segment_capacity`, `seed` and `quantization` are fixed when a
    /// database is created, and the stored values win (a `quantization` other than `None` that
    /// differs from the stored one is refused with [`Error::InvalidArgument`]). The rest (`ef_search`, `threads`, `read_only`,
    /// `durability`, `verify`) apply to this opening.
    ///
    /// One process at a time may open a database for writing (an advisory lock on
    /// `path/LOCK`, [`Error::Locked`] otherwise); read-only openings are always allowed and see
    /// the database as it was when they opened: they open every file of its manifest first,
    /// so a writer's checkpoint meanwhile cannot take one away.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Index> {
        let (dir, options) = (path.as_ref(), &options);
        // dim 0 means "the stored one"; everything else must be valid before touching the disk.
        Options { dim: options.dim.max(1), ..options.clone() }.validate()?;
        let (mut store, manifest) =
            Store::open(dir, options.create, options.read_only, options.durability, || fresh_manifest(options))?;
        let engine = Engine::new(stored_options(dir, options, &manifest)?)?;
        let (layout, verify) = (&engine.layout, options.verify);
        let deletions = |e: &SegmentEntry| {
            let read = || read_deletions(&store.source(store.deletions_path(e)), e.ordinal, e.count, e.deleted);
            (e.deleted > 0).then(read).transpose()
        };
        let sealed = engine.pool.install(|| {
            manifest
                .sealed
                .par_iter()
                .map(|e| {
                    let deleted = deletions(e)?;
                    Sealed::open(
                        layout,
                        &store.source(store.segment_path(e.ordinal)),
                        verify,
                        e.count,
                        deleted.as_deref(),
                    )
                    .map(Arc::new)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let growing = if manifest.growing.count > 0 {
            let (source, deleted) = (store.source(store.growing_path(&manifest)), deletions(&manifest.growing)?);
            // Its sections are checked in parallel: on the index's threads, as the sealed ones'.
            engine
                .pool
                .install(|| Growing::open(layout, &source, verify, manifest.growing.count, deleted.as_deref()))?
        } else {
            Growing::new(layout, manifest.growing.ordinal)
        };

        // Replay the log onto the segments before the index exists, so it is made whole once.
        let mut set = SegmentSet { sealed, growing: Arc::new(growing) };
        let mut next_ordinal = manifest.next_ordinal;
        let mut ids: Option<RwLock<IdMap>> = None;
        store.replay(options.log_recovery, |change| {
            let map = ids.get_or_insert_with(|| RwLock::new(IdMap::of(&set)));
            let unusable = |e: Error| Error::Corrupt {
                path: dir.display().to_string(),
                detail: format!("the write-ahead log holds a change that cannot be applied: {e}"),
            };
            let (batch_ids, vectors, present) = match change {
                LogRecord::Insert { ids, vectors } => (ids, vectors, Present::Refuse),
                LogRecord::Upsert { ids, vectors } => (ids, vectors, Present::Replace),
                LogRecord::Delete { ids } => {
                    return apply_delete(map, &set, ids, |_| Ok(())).map(drop).map_err(unusable)
                }
            };
            let applied = engine.apply_batch(map, &set, next_ordinal, batch_ids, vectors, present, |_, _| Ok(()));
            if let Some((applied, ())) = applied.map_err(unusable)? {
                set = publish(map, &set, applied.set, batch_ids, &applied.placements, present, |new| new);
                next_ordinal = applied.next_ordinal;
            }
            Ok(())
        })?;
        let replayed = ids.is_some();
        if replayed {
            set.growing.connect();
        }
        let ids = ids.map(|map| map.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
        let index = Index::assemble(engine, set, next_ordinal, ids, Some(store));
        if replayed && !options.read_only {
            index.flush()?;
        }
        Ok(index)
    }

    /// Checkpoints: writes sealed segments not yet on disk and a snapshot of the growing segment,
    /// then empties the write-ahead log, so the next open replays nothing. Does nothing on an
    /// in-memory index; fails with [`Error::ReadOnly`] on a read-only one.
    pub fn flush(&self) -> Result<()> {
        let Some(store) = &self.shared.store else { return Ok(()) };
        if store.read_only() {
            return Err(Error::ReadOnly { path: store.dir().display().to_string() });
        }
        let writer = self.shared.writer();
        self.shared.checkpoint(store, &writer)
    }

    /// Closes the index, checkpointing a database first (see [`Index::flush`]) and reporting
    /// what failed. Dropping an index does the same but cannot report errors.
    pub fn close(mut self) -> Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<()> {
        if let Some(compactor) = self.compactor.take() {
            compactor.stop();
        }
        let Some(store) = &self.shared.store else { return Ok(()) };
        let result = if store.read_only() {
            Ok(())
        } else if store.has_log_records() {
            self.flush()
        } else {
            store.sync_all()
        };
        // The compactor, the only other owner, has stopped: the store closes now, not again.
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.store = None;
        }
        result
    }
}

impl Shared {
    /// Makes the current segments the database's (see `Store::checkpoint`). Holding `writer`
    /// keeps inserts out, so the segments are exactly what the log recorded.
    pub(super) fn checkpoint(&self, store: &Store, writer: &Writer) -> Result<()> {
        let set = self.snapshot();
        let entry = |ordinal: u32, count: usize, deleted: usize| SegmentEntry {
            ordinal,
            count: count as u64,
            deleted: deleted as u64,
            deletions: 0,
        };
        let next = Checkpoint {
            sealed: set.sealed.iter().map(|s| entry(s.ordinal(), s.len(), s.tombstones().count())).collect(),
            growing: entry(set.growing.ordinal(), set.growing.len(), set.growing.tombstones().count()),
            next_ordinal: writer.next_ordinal,
        };
        store.checkpoint(next, |file, path| match file {
            NewFile::Sealed(position) => set.sealed[position].write(path),
            NewFile::Growing => set.growing.write(path),
            NewFile::Deletions(ordinal) => {
                let (nodes, marks) = set.deletion_marks(ordinal);
                write_deletions(path, ordinal, nodes as u64, &marks)
            }
        })
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}
