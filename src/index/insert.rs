//! Adding batches: check everything, log, then apply the whole batch or nothing.

use std::borrow::Cow;
use std::sync::{MutexGuard, PoisonError, RwLock};

use super::ids::IdMap;
use super::{Engine, Index, Writer};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::segment::{Applied, SegmentSet};

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
            if let Some(column) = vector.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite { row, column, value: vector[column] });
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

    /// Checks a batch against `set` and the ids in `map`, hands the caller's rows to `log`
    /// (which may refuse them), then applies it on the index's threads and records where each id
    /// went. `None` for an empty batch; otherwise the new segments and what `log` returned. On
    /// any error nothing changed. The caller holds the writer lock (or owns `set` and `map`).
    pub(super) fn apply_batch<L>(
        &self,
        map: &RwLock<IdMap>,
        set: &SegmentSet,
        next_ordinal: u32,
        ids: &[u64],
        vectors: &[f32],
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
        map.read().unwrap_or_else(PoisonError::into_inner).check_new(ids)?;
        let prepared = self.prepare(vectors)?;
        set.check_room(&self.layout, next_ordinal, ids.len())?;
        // Every check has passed: from here on the batch is applied whole. The log keeps the
        // caller's rows (replay prepares them again); the graph stores the prepared ones.
        let logged = log(ids, vectors)?;
        let applied = self.pool.install(|| set.with_batch(&self.layout, next_ordinal, ids, &prepared));
        map.write().unwrap_or_else(PoisonError::into_inner).record(ids, &applied.placements);
        Ok(Some((applied, logged)))
    }
}

impl Index {
    pub(super) fn writer(&self) -> MutexGuard<'_, Writer> {
        // Writer state is changed only after every check passed and the segments were swapped
        // in, so a panic cannot leave it half-updated.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts one vector.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[id], vector)
    }

    /// Inserts `ids.len()` vectors stored row-major in `vectors`. All or nothing: on any error
    /// the index is unchanged. Linking runs in parallel on the index's threads.
    ///
    /// On an index from [`Index::open`] the batch is in the write-ahead log before this returns
    /// (and fsync'd, as `Options::durability` asks); concurrent inserts share one fsync.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        let mut writer = self.writer();
        if let Some(store) = &self.store {
            store.check_writable()?;
        }
        let current = self.snapshot();
        let log = |ids: &[u64], vectors: &[f32]| self.store.as_ref().map(|store| store.log(ids, vectors)).transpose();
        let Some((applied, lsn)) =
            self.engine.apply_batch(self.ids(), &current, writer.next_ordinal, ids, vectors, log)?
        else {
            return Ok(());
        };
        *self.segments.write().unwrap_or_else(PoisonError::into_inner) = std::sync::Arc::new(applied.set);
        writer.next_ordinal = applied.next_ordinal;
        let Some(store) = &self.store else { return Ok(()) };
        if applied.sealed_any {
            // The batch is in the log already: a failed checkpoint loses nothing, and the next
            // one (seal, flush or close) retries it and reports the error.
            let _ = self.checkpoint(store, &writer);
        }
        drop(writer);
        lsn.map_or(Ok(()), |lsn| store.sync(lsn))
    }
}
