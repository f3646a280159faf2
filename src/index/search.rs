//! Searching an index: the k nearest neighbours of one query or of a batch, and every vector
//! within a radius, each optionally filtered. A call plans every segment once (what its filter
//! lets through, and whether to walk or scan it) and then searches them in parallel.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError};

use rayon::prelude::*;

use super::{stays_on_caller, Index};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::options::{check_threads, SearchParams};
use crate::segment::{SearchResult, SegmentPlan, SegmentSet, Wanted};

impl Index {
    /// The `k` nearest neighbours of `query`, closest first (fewer when the index holds fewer).
    /// `params` is the beam width `ef` (a plain number converts) or [`SearchParams`]: `ef` 0
    /// uses `Options::ef_search`, and a value below `k` is raised to `k`; its `filter` limits
    /// the ids that may be returned (then `min(k, live ids that pass)` are). Segments are
    /// searched in parallel on the index's threads.
    pub fn search<'f>(
        &self,
        query: &[f32],
        k: usize,
        params: impl Into<SearchParams<'f>>,
    ) -> Result<Vec<SearchResult>> {
        let params = self.shared.engine.options.resolve(k, params.into())?;
        self.search_one(query, Wanted::Nearest { k, params }, params)
    }

    /// [`Index::search`] into caller buffers of `k` slots each; returns the number of hits and
    /// pads the rest with id `u64::MAX` and distance `+inf`. On error nothing is written.
    pub fn search_into<'f>(
        &self,
        query: &[f32],
        k: usize,
        params: impl Into<SearchParams<'f>>,
        ids: &mut [u64],
        distances: &mut [f32],
    ) -> Result<usize> {
        check_buffers(k, ids, distances)?;
        Ok(fill(&self.search(query, k, params)?, ids, distances))
    }

    /// Every vector within `radius` of `query` (a distance under the index metric, as search
    /// results report it), closest first, at most `max_results` of them (the closest). The walk
    /// expands every vector it meets inside the radius and, to cross the gaps between them,
    /// the best `ef` of those outside (`params.ef`, 0 = `Options::ef_search`): a larger `ef`
    /// finds more of a scattered neighbourhood. `params.plan` = [`Plan::Exact`] finds all of
    /// them. Filters apply as in [`Index::search`].
    ///
    /// [`Plan::Exact`]: crate::options::Plan::Exact
    pub fn search_range<'f>(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
        params: impl Into<SearchParams<'f>>,
    ) -> Result<Vec<SearchResult>> {
        let metric = self.shared.engine.options.metric;
        // Inner-product distances are negative dot products, so a negative radius makes sense
        // there; under L2 and cosine no distance is below 0.
        let valid = radius.is_finite() && (radius >= 0.0 || metric == Metric::InnerProduct);
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "radius must be finite and, under {metric}, at least 0; got {radius}"
            )));
        }
        if max_results == 0 {
            return Err(Error::InvalidArgument("max_results must be at least 1".into()));
        }
        let params = self.shared.engine.options.resolve(1, params.into())?;
        self.search_one(query, Wanted::Range { radius, limit: max_results, ef: params.ef }, params)
    }

    /// [`Index::search_range`] into caller buffers of `max_results` slots each, padded as in
    /// [`Index::search_into`]; returns the number of hits. On error nothing is written.
    pub fn search_range_into<'f>(
        &self,
        query: &[f32],
        radius: f32,
        params: impl Into<SearchParams<'f>>,
        ids: &mut [u64],
        distances: &mut [f32],
    ) -> Result<usize> {
        let max_results = ids.len();
        check_buffers(max_results, ids, distances)?;
        Ok(fill(&self.search_range(query, radius, max_results, params)?, ids, distances))
    }

    fn search_one(&self, query: &[f32], wanted: Wanted, params: SearchParams) -> Result<Vec<SearchResult>> {
        let query = self.prepare_queries(query, 1)?;
        let (set, plans) = self.plan(wanted, params);
        let mut hits = Vec::new();
        // Handing a query to the pool costs tens of microseconds: worth it only when several
        // segments hold data (measured: a lone sealed segment searched 1.5x faster in place) and
        // the pool has threads to search them side by side (two segments of 20,000 128-d
        // vectors: 235 µs a query handed to a pool of one thread, 119 µs in place). At two
        // threads two segments searched in place won on tiny ones (2,000 8-d vectors each: 47
        // against 76 µs) and tied at 20,000 and 100,000 128-d vectors each; searches of larger
        // ones outlast the hand-off, so the pool keeps them (`stays_on_caller` is not used).
        if set.count() <= 1 || self.shared.engine.pool.current_num_threads() == 1 {
            set.search(&query, wanted, &plans, &mut hits);
        } else {
            self.shared.engine.pool.install(|| set.par_search(&query, wanted, &plans, &mut hits));
        }
        Ok(hits)
    }

    /// A snapshot of the segments, each one's search planned for `params.filter`.
    fn plan<'f>(&self, wanted: Wanted, params: SearchParams<'f>) -> (Arc<SegmentSet>, Vec<SegmentPlan<'f>>) {
        let filter = params.filter;
        let Some(allow) = filter.allow else {
            let set = self.shared.snapshot();
            let plans = set.plan(&filter, None, wanted, params.plan);
            return (set, plans);
        };
        // The map is read-locked while the segments are read: a compaction moves vectors only
        // with the map write-locked, so every location resolves in this snapshot.
        let map = self.shared.ids().read().unwrap_or_else(PoisonError::into_inner);
        let set = self.shared.snapshot();
        let listed = allow.iter().filter_map(|&id| map.get(id)).map(|at| (at.segment, at.node)).collect();
        drop(map);
        let plans = set.plan(&filter, Some(listed), wanted, params.plan);
        (set, plans)
    }

    fn prepare_queries<'a>(&self, queries: &'a [f32], count: usize) -> Result<Cow<'a, [f32]>> {
        let dim = self.dim();
        if queries.len() != count * dim {
            return Err(Error::DimensionMismatch(format!(
                "{count} queries need {} floats at dim {dim}, got {}",
                count * dim,
                queries.len()
            )));
        }
        self.shared.engine.prepare(queries)
    }

    /// Searches many queries (row-major in `queries`); see [`Index::search_batch_into`].
    pub fn search_batch<'f>(
        &self,
        queries: &[f32],
        k: usize,
        params: impl Into<SearchParams<'f>>,
        threads: usize,
    ) -> Result<Vec<Vec<SearchResult>>> {
        let params = params.into();
        self.shared.engine.options.resolve(k, params)?;
        // No query can return more hits than the index holds: size the buffers for that, so a
        // huge `k` costs nothing.
        let k = k.min(self.len()).max(1);
        let count = queries.len() / self.dim();
        let slots = slots(count, k)?;
        let mut ids = vec![0; slots];
        let mut distances = vec![0.0; slots];
        let mut counts = vec![0; count];
        self.search_batch_into(queries, k, params, threads, &mut ids, &mut distances, &mut counts)?;
        Ok((0..count)
            .map(|q| {
                (0..counts[q]).map(|j| SearchResult { id: ids[q * k + j], distance: distances[q * k + j] }).collect()
            })
            .collect())
    }

    /// Searches `counts.len()` queries and writes query `q`'s hits to `ids[q*k..]` and
    /// `distances[q*k..]`, their number to `counts[q]`; unused slots get id `u64::MAX` and
    /// distance `+inf`. `threads`: 1 runs on the calling thread, 0 on the index's threads, any
    /// other number (up to [`Options::MAX_THREADS`]) on a pool of that size, which the index
    /// keeps for the next call (two such pools at most). A batch too small to repay waking the
    /// pool's threads (one query; two at two threads) runs on the calling thread. The filter is
    /// planned once for the whole batch. On error nothing is written.
    ///
    /// [`Options::MAX_THREADS`]: crate::options::Options::MAX_THREADS
    #[allow(clippy::too_many_arguments)]
    pub fn search_batch_into<'f>(
        &self,
        queries: &[f32],
        k: usize,
        params: impl Into<SearchParams<'f>>,
        threads: usize,
        ids: &mut [u64],
        distances: &mut [f32],
        counts: &mut [usize],
    ) -> Result<()> {
        let count = counts.len();
        let params = self.shared.engine.options.resolve(k, params.into())?;
        let slots = slots(count, k)?;
        if ids.len() != slots || distances.len() != slots {
            return Err(Error::InvalidArgument(format!(
                "output buffers must hold {count} × {k} = {slots} slots, got {} ids and {} distances",
                ids.len(),
                distances.len()
            )));
        }
        check_threads(threads)?;
        let queries = self.prepare_queries(queries, count)?;
        if count == 0 {
            return Ok(());
        }
        let wanted = Wanted::Nearest { k, params };
        let (set, plans) = self.plan(wanted, params);
        // Writes one query's hits into its row of the outputs; returns how many there are.
        let one = |query: &[f32], ids: &mut [u64], distances: &mut [f32], hits: &mut Vec<SearchResult>| {
            set.search(query, wanted, &plans, hits);
            fill(hits, ids, distances)
        };
        let dim = self.dim();
        let engine = &self.shared.engine;
        let pool_size = if threads == 0 { engine.pool.current_num_threads() } else { threads };
        if stays_on_caller(count, pool_size) {
            let mut hits = Vec::new();
            let rows = queries.chunks_exact(dim).zip(ids.chunks_exact_mut(k)).zip(distances.chunks_exact_mut(k));
            for (((query, ids), distances), count) in rows.zip(counts.iter_mut()) {
                *count = one(query, ids, distances, &mut hits);
            }
        } else {
            let run = || {
                queries
                    .par_chunks_exact(dim)
                    .zip(ids.par_chunks_exact_mut(k))
                    .zip(distances.par_chunks_exact_mut(k))
                    .zip(counts.par_iter_mut())
                    .for_each_init(Vec::new, |hits, (((query, ids), distances), count)| {
                        *count = one(query, ids, distances, hits)
                    })
            };
            engine.pool_of(threads)?.install(run);
        }
        Ok(())
    }
}

/// Fails unless both output buffers hold `slots` entries.
fn check_buffers(slots: usize, ids: &[u64], distances: &[f32]) -> Result<()> {
    if ids.len() == slots && distances.len() == slots {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "output buffers must hold {slots} slots, got {} ids and {} distances",
        ids.len(),
        distances.len()
    )))
}

/// `count * k` output slots, or an error when that overflows.
fn slots(count: usize, k: usize) -> Result<usize> {
    count.checked_mul(k).ok_or_else(|| Error::InvalidArgument(format!("{count} queries × k = {k} overflows")))
}

/// Writes `hits` into a row of output slots, padding the rest with `u64::MAX` / `+inf`; returns
/// the number of hits.
fn fill(hits: &[SearchResult], ids: &mut [u64], distances: &mut [f32]) -> usize {
    for (slot, (id, distance)) in ids.iter_mut().zip(distances.iter_mut()).enumerate() {
        let hit = hits.get(slot);
        *id = hit.map_or(u64::MAX, |h| h.id);
        *distance = hit.map_or(f32::INFINITY, |h| h.distance);
    }
    hits.len()
}
