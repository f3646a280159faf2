//! Changing the contents: insert, upsert and delete. Each checks everything, logs, then applies
//! the whole change or nothing.

use std::borrow::Cow;
use std::sync::{MutexGuard, PoisonError, RwLock};

use super::ids::{IdMap, Location};
use super::{stays_on_caller, Engine, Index, Shared, Writer};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::segment::{Applied, Placement, SegmentSet};
use crate::storage::LogRecord;

/// What a batch does with an id already in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Present {
    /// Refuse the batch (`Error::DuplicateId`): an insert.
    Refuse,
    /// Delete the old vector and insert the new one: an upsert.
    Replace,
}

/// `vector`'s squared norm in f64, where the f32 sum overflows (components near f32::MAX) or
/// underflows (tiny ones).
fn squared_norm_f64(vector: &[f32]) -> f64 {
    vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

impl Engine {
    /// Checks every row (finite; non-zero under cosine) and returns the rows as the graph
    /// stores them: normalised for cosine, unchanged otherwise.
    pub(super) fn prepare<'a>(&self, vectors: &'a [f32]) -> Result<Cow<'a, [f32]>> {
        let dim = self.options.dim;
        for (row, vector) in vectors.chunks_exact(dim).enumerate() {
            // Without a branch a component (which vectorises), then the culprit if any: the scan
            // that stops at the first was two thirds of preparing a 384-d query.
            if vector.iter().fold(false, |found, x| found | !x.is_finite()) {
                if let Some(column) = vector.iter().position(|x| !x.is_finite()) {
                    return Err(Error::NonFinite { row, column, value: vector[column] });
                }
            }
            // Below f32::MAX / 4, every distance between two vectors stays finite: |a - b|² ≤
            // (|a| + |b|)² ≤ 4 max(|a|², |b|²), and |a · b| ≤ |a| |b|. Checked in f64 only when the
            // f32 sum comes near. Cosine normalises below instead.
            if self.options.metric != Metric::Cosine && self.layout.distance.norm_squared(vector) > f32::MAX / 8.0 {
                let squared_norm = squared_norm_f64(vector);
                if squared_norm > f64::from(f32::MAX) / 4.0 {
                    return Err(Error::NormOverflow { row, squared_norm });
                }
            }
        }
        if self.options.metric != Metric::Cosine {
            return Ok(Cow::Borrowed(vectors));
        }
        let mut normalised = vectors.to_vec();
        for (row, vector) in normalised.chunks_exact_mut(dim).enumerate() {
            let squared = self.layout.distance.norm_squared(vector);
            let norm = if squared.is_normal() { squared.sqrt() as f64 } else { squared_norm_f64(vector).sqrt() };
            if norm == 0.0 {
                return Err(Error::ZeroVector { row });
            }
            vector.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        }
        Ok(Cow::Owned(normalised))
    }

    /// Checks a batch against `set` and the ids in `map` (present ids are refused or not, as
    /// `present` says), hands the caller's rows to `log` (which may refuse them), then adds it to
    /// the segments on the index's threads. `None` for an empty batch; otherwise the new
    /// segments and what `log` returned, for [`publish`]. On any error nothing changed. The
    /// caller holds the writer lock (or owns `set` and `map`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_batch<L>(
        &self,
        map: &RwLock<IdMap>,
        set: &SegmentSet,
        next_ordinal: u32,
        ids: &[u64],
        vectors: &[f32],
        present: Present,
        log: impl FnOnce(&[u64], &[f32]) -> Result<L>,
    ) -> Result<Option<(Applied, L)>> {
        let dim = self.options.dim;
        if Some(vectors.len()) != ids.len().checked_mul(dim) {
            return Err(Error::DimensionMismatch(format!(
                "{} ids need {} floats at dim {dim}, got {}",
                ids.len(),
                ids.len().saturating_mul(dim),
                vectors.len()
            )));
        }
        if ids.is_empty() {
            return Ok(None);
        }
        match present {
            Present::Refuse => map.read().unwrap_or_else(PoisonError::into_inner).check_new(ids)?,
            Present::Replace => map.read().unwrap_or_else(PoisonError::into_inner).check_distinct(ids)?,
        }
        let prepared = self.prepare(vectors)?;
        set.check_room(&self.layout, next_ordinal, ids.len())?;
        // Every check has passed: from here on the batch is applied whole. The log keeps the
        // caller's rows (replay prepares them again); the graph stores the prepared ones.
        let logged = log(ids, vectors)?;
        let on_caller = stays_on_caller(ids.len(), self.pool.current_num_threads())
            .then(|| set.with_batch_on_caller(next_ordinal, ids, &prepared));
        let applied = on_caller
            .flatten()
            .unwrap_or_else(|| self.pool.install(|| set.with_batch(&self.layout, next_ordinal, ids, &prepared)));
        Ok(Some((applied, logged)))
    }
}

/// Makes an applied batch the index's, `new` (the set holding it) replacing `old`, with `map`
/// write-locked so that `Index::get` sees locations and segments change together: records where
/// `ids` went, lets searches return the batch's nodes in the growing segments (`Growing`), has
/// `swap` install `new`, and then deletes the old nodes of the ids it replaces (when `present`
/// is `Replace`). A search never returns an id that `get` does not find. During an upsert it
/// may find an id's old vector, its new one or both (`merge` keeps one hit per id); one that
/// overlaps this call may find neither, when it read the old node after its delete but the
/// segments without the new one.
pub(super) fn publish<R>(
    map: &RwLock<IdMap>,
    old: &SegmentSet,
    new: SegmentSet,
    ids: &[u64],
    placements: &[Placement],
    present: Present,
    swap: impl FnOnce(SegmentSet) -> R,
) -> R {
    let mut locked = map.write().unwrap_or_else(PoisonError::into_inner);
    let replaced: Vec<Location> = match present {
        Present::Replace => ids.iter().filter_map(|&id| locked.remove(id)).collect(),
        Present::Refuse => Vec::new(),
    };
    locked.record(ids, placements);
    // The batch's head was linked into the old growing segment, in place; the new one is
    // that segment, or was built by this batch, or is empty.
    old.growing.hold_all();
    new.growing.hold_all();
    let swapped = swap(new);
    for location in replaced {
        // The new set shares the deletion marks of every segment it keeps of the old one.
        delete_node(old, location);
    }
    swapped
}

/// Deletes the `ids` present in `map` from it and from `set`; how many were.
fn delete_locked(map: &mut IdMap, set: &SegmentSet, ids: &[u64]) -> usize {
    ids.iter().filter_map(|&id| map.remove(id)).filter(|&location| delete_node(set, location)).count()
}

/// Marks the node at `location` (every location in the map is a node of the current set)
/// deleted; false when it was already.
fn delete_node(set: &SegmentSet, location: Location) -> bool {
    set.tombstones(location.segment).is_some_and(|t| t.delete(location.node))
}

/// Deletes the `ids` present in `map` from `set`, after checking them and handing those present
/// to `log` (unless none is). Returns how many were present and what `log` returned. The caller
/// holds the writer lock (or owns `set` and `map`).
pub(super) fn apply_delete<L>(
    map: &RwLock<IdMap>,
    set: &SegmentSet,
    ids: &[u64],
    log: impl FnOnce(&[u64]) -> Result<L>,
) -> Result<(usize, Option<L>)> {
    let present: Vec<u64> = {
        let map = map.read().unwrap_or_else(PoisonError::into_inner);
        map.check_distinct(ids)?;
        ids.iter().copied().filter(|&id| map.get(id).is_some()).collect()
    };
    if present.is_empty() {
        return Ok((0, None));
    }
    let logged = log(&present)?;
    let removed = delete_locked(&mut map.write().unwrap_or_else(PoisonError::into_inner), set, &present);
    Ok((removed, Some(logged)))
}

impl Shared {
    pub(super) fn writer(&self) -> MutexGuard<'_, Writer> {
        // Writer state is changed only after every check passed and the segments were swapped
        // in, so a panic cannot leave it half-updated.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Index {
    /// Inserts one vector.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[id], vector)
    }

    /// Inserts `ids.len()` vectors stored row-major in `vectors`. All or nothing: on any error
    /// the index is unchanged. Linking runs in parallel on the index's threads, or for a batch
    /// of a few rows on the calling thread (`Options::threads`). An id already present is
    /// refused ([`Error::DuplicateId`]); [`Index::upsert`] replaces it instead.
    ///
    /// On an index from [`Index::open`] the batch is in the write-ahead log before this returns
    /// (and fsync'd, as `Options::durability` asks); concurrent inserts share one fsync.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.write_batch(ids, vectors, Present::Refuse)
    }

    /// Inserts `ids.len()` vectors as [`Index::insert_batch`] does, but an id already present has
    /// its vector replaced: its old node is deleted and never returned again. One atomic, durable
    /// change; an id repeated within `ids` is refused.
    pub fn upsert(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        self.write_batch(ids, vectors, Present::Replace)?;
        self.compact_if_due();
        Ok(())
    }

    fn write_batch(&self, ids: &[u64], vectors: &[f32], present: Present) -> Result<()> {
        let mut writer = self.shared.writer();
        if let Some(store) = &self.shared.store {
            store.check_writable()?;
        }
        let current = self.shared.snapshot();
        let log = |ids: &[u64], vectors: &[f32]| {
            let change = match present {
                Present::Refuse => LogRecord::Insert { ids, vectors },
                Present::Replace => LogRecord::Upsert { ids, vectors },
            };
            self.shared.store.as_ref().map(|store| store.log(change)).transpose()
        };
        let Some((applied, lsn)) = self.shared.engine.apply_batch(
            self.shared.ids(),
            &current,
            writer.next_ordinal,
            ids,
            vectors,
            present,
            log,
        )?
        else {
            return Ok(());
        };
        let Applied { set, next_ordinal, sealed_any, placements } = applied;
        publish(self.shared.ids(), &current, set, ids, &placements, present, |set| {
            *self.shared.segments.write().unwrap_or_else(PoisonError::into_inner) = std::sync::Arc::new(set);
        });
        writer.next_ordinal = next_ordinal;
        let Some(store) = &self.shared.store else { return Ok(()) };
        if sealed_any {
            // The batch is in the log already: a failed checkpoint loses nothing, and the next
            // one (seal, flush or close) retries it and reports the error.
            let _ = self.shared.checkpoint(store, &writer);
        }
        drop(writer);
        lsn.map_or(Ok(()), |lsn| store.sync(lsn))
    }

    /// Deletes every listed id that is present; returns how many were. Absent ids are not an
    /// error; an id listed twice is ([`Error::DuplicateId`]), and then nothing is deleted.
    /// Deleted vectors are never returned again; they stay in their segments' graphs, routing
    /// searches, until [`Index::compact`] rewrites those segments. Durable before it returns, as
    /// inserts are.
    pub fn delete(&self, ids: &[u64]) -> Result<usize> {
        let writer = self.shared.writer();
        if let Some(store) = &self.shared.store {
            store.check_writable()?;
        }
        let current = self.shared.snapshot();
        let log = |present: &[u64]| {
            self.shared.store.as_ref().map(|store| store.log(LogRecord::Delete { ids: present })).transpose()
        };
        let (removed, lsn) = apply_delete(self.shared.ids(), &current, ids, log)?;
        drop(writer);
        if let (Some(store), Some(lsn)) = (&self.shared.store, lsn.flatten()) {
            store.sync(lsn)?;
        }
        self.compact_if_due();
        Ok(removed)
    }

    /// Copies the stored vectors of `ids` (normalised ones under cosine) into `out`, row `i`
    /// for `ids[i]`, and sets `found[i]`; an absent id leaves its row zeroed and `found[i]`
    /// false. Returns how many were found. `out` holds `ids.len() * dim` floats and `found`
    /// `ids.len()` flags.
    pub fn get(&self, ids: &[u64], out: &mut [f32], found: &mut [bool]) -> Result<usize> {
        let dim = self.dim();
        if Some(out.len()) != ids.len().checked_mul(dim) || found.len() != ids.len() {
            return Err(Error::DimensionMismatch(format!(
                "{} ids need {} floats and {} flags, got {} and {}",
                ids.len(),
                ids.len().saturating_mul(dim),
                ids.len(),
                out.len(),
                found.len()
            )));
        }
        // The map is read-locked while the segments are read: a compaction moves vectors only
        // with the map write-locked, so every location resolves in this snapshot.
        let map = self.shared.ids().read().unwrap_or_else(PoisonError::into_inner);
        let set = self.shared.snapshot();
        let mut vector = Vec::with_capacity(dim);
        let mut count = 0;
        for ((&id, row), found) in ids.iter().zip(out.chunks_exact_mut(dim)).zip(found.iter_mut()) {
            *found = map.get(id).is_some_and(|at| set.vector_into(at.segment, at.node, &mut vector));
            if *found {
                row.copy_from_slice(&vector);
                count += 1;
            } else {
                row.fill(0.0);
            }
        }
        Ok(count)
    }
}
