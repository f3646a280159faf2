//! An index kept in a database directory: open, flush, close and stats.

use std::path::Path;
use std::sync::{Arc, PoisonError};

use rayon::prelude::*;

use crate::segment::{Growing, Sealed, SegmentSet};
use crate::storage::segment_file::SegmentFile;
use crate::storage::{corrupt, Manifest, SegmentEntry, Stats, Store};
use crate::{Error, Index, Metric, Options, Quantization, Result};

/// The manifest of a new database made from `options`.
fn fresh_manifest(options: &Options) -> Result<Manifest> {
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
        growing: SegmentEntry { ordinal: 0, count: 0 },
    })
}

/// `options` with the structure stored in `manifest` (dim, metric, m, ef_construction, segment
/// capacity, seed: fixed when the database was created). A `dim` of 0 takes the stored one;
/// any other dim and the metric must match it.
fn stored_options(dir: &Path, options: &Options, manifest: &Manifest) -> Result<Options> {
    let metric = Metric::from_code(manifest.metric)
        .ok_or_else(|| corrupt(&dir.join("MANIFEST"), format!("unknown metric {}", manifest.metric)))?;
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
    let stored = Options {
        dim,
        metric,
        m: manifest.m as usize,
        ef_construction: manifest.ef_construction as usize,
        segment_capacity: usize::try_from(manifest.segment_capacity).unwrap_or(usize::MAX),
        seed: manifest.seed,
        quantization: Quantization::from_code(manifest.quantization)
            .ok_or_else(|| corrupt(&dir.join("MANIFEST"), format!("unknown quantization {}", manifest.quantization)))?,
        ..options.clone()
    };
    stored.validate().map_err(|e| corrupt(&dir.join("MANIFEST"), e.to_string()))?;
    Ok(stored)
}

impl Index {
    /// Opens the database in directory `path`, or creates it there when `options.create` is
    /// set and it holds none. Sealed segments are mapped from their files, the growing one is
    /// read back, and inserts logged since the last checkpoint are replayed.
    ///
    /// `options.dim` and `options.metric` must match a database's (a `dim` of 0 accepts any);
    /// `m`, `ef_construction`, `segment_capacity`, `seed` and `quantization` are fixed when a
    /// database is created, and the stored values win. The rest (`ef_search`, `threads`, `read_only`,
    /// `durability`, `verify`) apply to this opening.
    ///
    /// One process at a time may open a database for writing (an advisory lock on
    /// `path/LOCK`, [`Error::Locked`] otherwise); read-only openings are always allowed and see
    /// the database as it was when they opened.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Index> {
        let dir = path.as_ref();
        if !options.read_only {
            return Self::open_once(dir, &options);
        }
        let generation = || Manifest::read(dir).ok().flatten().map(|m| m.generation);
        let mut attempts = 0;
        loop {
            let before = generation();
            match Self::open_once(dir, &options) {
                // A writer's checkpoint replaced files while this opening read them: try again
                // with the new manifest.
                Err(Error::Io { .. } | Error::Corrupt { .. }) if attempts < 10 && generation() != before => {
                    attempts += 1
                }
                result => return result,
            }
        }
    }

    fn open_once(dir: &Path, options: &Options) -> Result<Index> {
        // dim 0 means "the stored one"; everything else must be valid before touching the disk.
        Options { dim: options.dim.max(1), ..options.clone() }.validate()?;
        let (store, manifest) =
            Store::open(dir, options.create, options.read_only, options.durability, || fresh_manifest(options))?;
        let mut index = Index::new(stored_options(dir, options, &manifest)?)?;
        let layout = index.layout;
        let verify = options.verify;

        let open = |path: &Path, expected: u64, verify: bool| -> Result<SegmentFile> {
            let file = SegmentFile::open(path, verify)?;
            if file.header.count != expected {
                return Err(file.corrupt(format!("holds {} vectors, the manifest says {expected}", file.header.count)));
            }
            Ok(file)
        };
        let sealed = index.pool.install(|| {
            manifest
                .sealed
                .par_iter()
                .map(|entry| {
                    let file = open(&store.segment_path(entry.ordinal), entry.count, verify)?;
                    Sealed::from_file(&layout, &file).map(Arc::new)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let growing = if manifest.growing.count > 0 {
            let file = open(&store.growing_path(&manifest), manifest.growing.count, verify)?;
            Growing::from_file(&layout, &file)?
        } else {
            Growing::new(&layout, manifest.growing.ordinal)
        };

        *index.ids_ready.get_mut() = false;
        *index.segments.get_mut().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(SegmentSet { sealed, growing: Arc::new(growing) });
        index.writer.get_mut().unwrap_or_else(PoisonError::into_inner).next_ordinal = manifest.next_ordinal;

        let mut store = store;
        let mut replayed = false;
        store.replay(|ids, vectors| {
            replayed = true;
            let mut writer = index.writer();
            index.insert_locked(&mut writer, ids, vectors, None).map(drop).map_err(|e| Error::Corrupt {
                path: dir.display().to_string(),
                detail: format!("the write-ahead log holds a batch that cannot be applied: {e}"),
            })
        })?;
        index.store = Some(store);
        if replayed {
            index.snapshot().growing.connect();
            if !options.read_only {
                index.flush()?;
            }
        }
        Ok(index)
    }

    /// Checkpoints: writes sealed segments not yet on disk and a snapshot of the growing segment,
    /// then empties the write-ahead log, so the next open replays nothing. Does nothing on an
    /// in-memory index; fails with [`Error::ReadOnly`] on a read-only one.
    pub fn flush(&self) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        if store.read_only() {
            return Err(Error::ReadOnly { path: store.dir().display().to_string() });
        }
        let writer = self.writer();
        store.checkpoint(&self.snapshot(), writer.next_ordinal)
    }

    /// Closes the index, checkpointing a database first (see [`Index::flush`]) and reporting
    /// what failed. Dropping an index does the same but cannot report errors.
    pub fn close(mut self) -> Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let result = if store.read_only() {
            Ok(())
        } else if store.has_log_records() {
            self.flush()
        } else {
            store.sync_all()
        };
        self.store = None;
        result
    }

    /// Segments, vectors, and the bytes the index holds on disk and in memory.
    pub fn stats(&self) -> Stats {
        let set = self.snapshot();
        let mut stats = Stats {
            segments: set.count(),
            vectors: set.len(),
            bytes_on_disk: self.store.as_ref().map_or(0, |s| s.bytes_on_disk()),
            log_syncs: self.store.as_ref().map_or(0, |s| s.log_syncs()),
            bytes_heap: (set.growing.heap_bytes()
                + self.ids.read().unwrap_or_else(PoisonError::into_inner).heap_bytes()) as u64,
            ..Stats::default()
        };
        let growing = std::iter::once((set.growing.mapped_bytes(), 0));
        for ((mapped, resident), heap) in set.sealed.iter().map(|s| (s.mapped_bytes(), s.heap_bytes())).chain(growing) {
            stats.bytes_heap += heap as u64;
            stats.bytes_mapped += mapped as u64;
            stats.bytes_mapped_resident += resident as u64;
        }
        let per_vector = |bytes: u64| (bytes as f64 / stats.vectors.max(1) as f64).round() as u64;
        stats.code_bytes_per_vector = self.options.quantization.code_len(self.options.dim) as u64;
        stats.bytes_per_vector_on_disk = per_vector(stats.bytes_on_disk);
        stats.bytes_per_vector_resident = per_vector(stats.bytes_heap + stats.bytes_mapped_resident);
        stats
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}
