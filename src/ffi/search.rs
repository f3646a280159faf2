//! Searches: the k nearest neighbours of one query or a batch, and range searches, with the
//! per-call settings and filters of `omen_search_params`.

use std::ffi::c_void;

use super::error::{omen_error, omen_status, Failure};
use super::guard::{disjoint, guard, read_sized, require, slice, slice_mut, span};
use super::index::{check_dim, index, omen_index, product};
use crate::options::{Filter, Plan, SearchParams};

/// Finds the `k` nearest neighbours of one query, closest first.
///
/// `query` holds `dim` floats (`dim` must equal the index dimension). `ef` is the beam width:
/// 0 uses `options.ef_search`, and a value below `k` is raised to `k` (larger = better recall,
/// slower). `out_ids` and `out_distances` must each hold `k` slots; `*out_count` receives the
/// number of hits (less than `k` only when the index holds fewer vectors); the slots after it
/// are set to `OMEN_NO_ID` and `INFINITY`. Sealed segments are searched in parallel.
///
/// # Ownership
/// Borrows every pointer during the call only; writes the outputs only on success.
///
/// # Thread safety
/// May run concurrently with any call on the same index except `omen_index_free`/`close`; sees every
/// batch whose insert returned before the search started.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT` for a NULL pointer; `OMEN_STATUS_INVALID_ARGUMENT` for k = 0,
/// misaligned or overlapping buffers; `OMEN_STATUS_DIMENSION_MISMATCH`; `OMEN_STATUS_NON_FINITE`;
/// `OMEN_STATUS_ZERO_VECTOR` for a zero query under cosine.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search(
    index: *const omen_index,
    query: *const f32,
    dim: usize,
    k: usize,
    ef: usize,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_count: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    let params = omen_search_params { ef, ..omen_search_params::defaults() };
    omen_index_search_with(index, query, dim, k, &params, out_ids, out_distances, out_count, err)
}

/// How a search covers each segment (`omen_search_params.plan`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_search_plan {
    /// Per segment: an exact scan when few of its vectors may be returned (a filter or deletes
    /// leave few), else a graph walk that turns to an exact scan once it has visited more
    /// vectors than may be returned.
    Auto = 0,
    /// Every segment scanned exactly: every result is a true nearest neighbour (slow on large
    /// indexes; for ground truth and small filtered sets).
    Exact = 1,
    /// Always the graph walk, never a scan, to measure the walk alone: with a narrow filter it
    /// may return fewer results than exist.
    Graph = 2,
}

/// Accepts (returns true) or refuses an id for a filtered search; `context` is
/// `omen_search_params.predicate_context`.
///
/// It may be called from several threads at once, more than once for one id, and never for
/// an id the allow-list refused. It must return, must not unwind (no C++ exception may leave
/// it), and must not call back into the index.
pub type omen_predicate = Option<unsafe extern "C" fn(id: u64, context: *mut c_void) -> bool>;

/// Per-call search settings for `omen_index_search_with`, `omen_index_search_batch_with` and
/// `omen_index_search_range_with`.
///
/// Zero-fill it and set `size`: every zero field means the default. A filter (`allow_ids`,
/// `predicate`, or both: an id must pass both) makes a search return only the live ids that
/// pass, `min(k, their number)` of them; a batch shares one filter, resolved once.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct omen_search_params {
    /// `sizeof(omen_search_params)` as the caller compiled it; set it before the call. (Sizes
    /// of older headers, without the filter fields, are accepted.)
    pub size: usize,
    /// Beam width: 0 = `options.ef_search`; below k is raised to k. For a range search, how
    /// many of the vectors outside the radius the walk keeps in view to cross gaps.
    pub ef: usize,
    /// With quantized codes, candidates re-scored exactly per result: the beam widens to at
    /// least `k * oversample` and the best `max(k * oversample, ef / 2)` are re-scored. 0 =
    /// `options.oversample` (whose 0 is the code's default). Ignored without codes.
    pub oversample: usize,
    /// `omen_index_search_batch_with` only: as `threads` of `omen_index_search_batch`.
    pub threads: usize,
    /// Allowed ids, `allow_count` of them, any order, repeats allowed; ids not in the index
    /// are ignored. NULL with `allow_count` 0: no allow-list (every id passes); non-NULL with
    /// `allow_count` 0: nothing passes. Borrowed during the call; costs one hash lookup per id.
    pub allow_ids: *const u64,
    pub allow_count: usize,
    /// NULL, or called to accept or refuse ids (see `omen_predicate`). With an allow-list it is
    /// called once per allowed id per call; alone, for the ids a walk meets, or for every id of
    /// a segment that is scanned.
    pub predicate: omen_predicate,
    /// Passed to `predicate` unchanged.
    pub predicate_context: *mut c_void,
    /// One of `omen_search_plan`; 0 = `OMEN_SEARCH_PLAN_AUTO`.
    pub plan: u32,
}

/// `sizeof(omen_search_params)` before the filter fields: such callers search unfiltered.
const SIZE_BEFORE_FILTERS: usize = 4 * size_of::<usize>();
const _: () = assert!(std::mem::offset_of!(omen_search_params, allow_ids) == SIZE_BEFORE_FILTERS);

/// A caller's predicate with its context, callable from the search threads.
struct CPredicate {
    accepts: unsafe extern "C" fn(u64, *mut c_void) -> bool,
    context: *mut c_void,
}

// SAFETY: `omen_predicate`'s documented contract: it may be called from several threads at once
// with this context.
unsafe impl Sync for CPredicate {}

/// `omen_search_params` checked, its filter borrowed for the call.
struct CallParams<'a> {
    ef: usize,
    oversample: usize,
    threads: usize,
    allow: Option<&'a [u64]>,
    predicate: Option<CPredicate>,
    plan: Plan,
}

impl omen_search_params {
    pub(super) fn defaults() -> Self {
        omen_search_params {
            size: size_of::<omen_search_params>(),
            ef: 0,
            oversample: 0,
            threads: 0,
            allow_ids: std::ptr::null(),
            allow_count: 0,
            predicate: None,
            predicate_context: std::ptr::null_mut(),
            plan: omen_search_plan::Auto as u32,
        }
    }

    /// Reads and checks the caller's params.
    ///
    /// # Safety
    /// A non-NULL `params` is readable for the size its first field states; a non-NULL
    /// `allow_ids` holds `allow_count` ids that stay unchanged during `'a`.
    unsafe fn read<'a>(params: *const omen_search_params) -> Result<CallParams<'a>, Failure> {
        // SAFETY: repr(C), starts with its size, integers, pointers and an optional function
        // pointer (any bytes valid); the rest is the caller's contract.
        let params = unsafe { read_sized(params, "params", &[SIZE_BEFORE_FILTERS], Self::defaults()) }?;
        let allow = match (params.allow_ids.is_null(), params.allow_count) {
            (true, 0) => None,
            // SAFETY: `allow_ids` holds `allow_count` ids (caller's contract); NULL with a
            // nonzero count is refused inside.
            _ => Some(unsafe { slice(params.allow_ids, params.allow_count, "params->allow_ids") }?),
        };
        let plan = match params.plan {
            0 => Plan::Auto,
            1 => Plan::Exact,
            2 => Plan::Graph,
            other => {
                return Err(Failure::invalid(format!("unknown plan {other} (expected an omen_search_plan value)")))
            }
        };
        let predicate = params.predicate.map(|accepts| CPredicate { accepts, context: params.predicate_context });
        Ok(CallParams { ef: params.ef, oversample: params.oversample, threads: params.threads, allow, predicate, plan })
    }
}

/// A one-query search's arguments as slices: query, ids, distances, count.
type OneQuery<'a> = (&'a [f32], &'a mut [u64], &'a mut [f32], &'a mut [usize]);

/// The arguments of a one-query search as slices: `query` of `dim` floats, `slots` ids and
/// distances, one count; fails for a NULL, misaligned or overlapping one before any is written.
///
/// # Safety
/// Non-NULL pointers hold those sizes, readable (`query`) or writable (the rest), during `'a`.
unsafe fn one_query<'a>(
    query: *const f32,
    dim: usize,
    slots: usize,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_count: *mut usize,
) -> Result<OneQuery<'a>, Failure> {
    require(query, "query")?;
    // SAFETY: the sizes are the caller's contract; overlaps are rejected below before any write.
    let (query, ids, distances, count) = unsafe {
        (
            slice(query, dim, "query")?,
            slice_mut(out_ids, slots, "out_ids")?,
            slice_mut(out_distances, slots, "out_distances")?,
            slice_mut(out_count, 1, "out_count")?,
        )
    };
    disjoint(&[
        span("query", query),
        span("out_ids", ids),
        span("out_distances", distances),
        span("out_count", count),
    ])?;
    Ok((query, ids, distances, count))
}

impl CallParams<'_> {
    /// Runs `search` with these settings as `SearchParams`.
    fn with<R>(&self, search: impl FnOnce(SearchParams) -> R) -> R {
        let accepts = |id: u64| {
            self.predicate.as_ref().is_some_and(|p| {
                // SAFETY: the caller's predicate with its own context (`omen_predicate`).
                unsafe { (p.accepts)(id, p.context) }
            })
        };
        let predicate: Option<&(dyn Fn(u64) -> bool + Sync)> = self.predicate.as_ref().map(|_| &accepts as _);
        search(SearchParams {
            ef: self.ef,
            oversample: self.oversample,
            filter: Filter { allow: self.allow, predicate },
            plan: self.plan,
        })
    }
}

/// `omen_index_search` with per-call settings: `ef`, `oversample` for quantized indexes, a
/// filter and a plan. With a filter, `*out_count` is `min(k, live ids that pass)`.
///
/// # Ownership
/// As `omen_index_search`; `params` and its `allow_ids` are borrowed during the call.
///
/// # Thread safety
/// As `omen_index_search`; `params->predicate` may be called from several threads during the
/// call (and from none after it returns).
///
/// # Errors
/// As `omen_index_search`; `OMEN_STATUS_NULL_ARGUMENT` for a NULL `params`, or a NULL
/// `allow_ids` with a nonzero `allow_count`; `OMEN_STATUS_INVALID_ARGUMENT` for a wrong
/// `params->size` or an unknown `plan`.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search_with(
    index: *const omen_index,
    query: *const f32,
    dim: usize,
    k: usize,
    params: *const omen_search_params,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_count: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: `params` is checked for NULL, alignment and size inside, `allow_ids` for NULL
        // and alignment (caller's contract otherwise).
        let params = unsafe { omen_search_params::read(params) }?;
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        check_dim(index, dim)?;
        // SAFETY: as documented (caller's contract).
        let (query, ids, distances, count) = unsafe { one_query(query, dim, k, out_ids, out_distances, out_count) }?;
        count[0] = params.with(|params| index.search_into(query, k, params, ids, distances))?;
        Ok(())
    })
}

/// `omen_index_search_batch` with per-call settings (`ef`, `oversample`, `threads`, a filter
/// and a plan). The filter applies to every query and is resolved once for the batch.
///
/// # Ownership
/// As `omen_index_search_batch`; `params` and its `allow_ids` are borrowed during the call.
///
/// # Thread safety
/// As `omen_index_search_with`.
///
/// # Errors
/// As `omen_index_search_batch` and `omen_index_search_with`.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search_batch_with(
    index: *const omen_index,
    queries: *const f32,
    n_queries: usize,
    dim: usize,
    k: usize,
    params: *const omen_search_params,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_counts: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: `params` is checked for NULL, alignment and size inside, `allow_ids` for NULL
        // and alignment (caller's contract otherwise).
        let params = unsafe { omen_search_params::read(params) }?;
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        check_dim(index, dim)?;
        if k == 0 {
            return Err(Failure::invalid("k must be at least 1"));
        }
        let floats = product(n_queries, dim, "n_queries * dim")?;
        let slots = product(n_queries, k, "n_queries * k")?;
        // SAFETY: sizes as documented (caller's contract); overlaps are rejected below before
        // any write.
        let (queries, ids, distances, counts) = unsafe {
            (
                slice(queries, floats, "queries")?,
                slice_mut(out_ids, slots, "out_ids")?,
                slice_mut(out_distances, slots, "out_distances")?,
                slice_mut(out_counts, n_queries, "out_counts")?,
            )
        };
        disjoint(&[
            span("queries", queries),
            span("out_ids", ids),
            span("out_distances", distances),
            span("out_counts", counts),
        ])?;
        params.with(|search| index.search_batch_into(queries, k, search, params.threads, ids, distances, counts))?;
        Ok(())
    })
}

/// Searches `n_queries` queries at once, spread over `threads` threads.
///
/// `queries` is row-major, `n_queries * dim` floats. Query q's hits go to
/// `out_ids[q*k .. q*k+k]` and `out_distances[q*k .. q*k+k]`, their number to `out_counts[q]`;
/// unused slots are set to `OMEN_NO_ID` and `INFINITY`. `threads`: 1 searches on the calling
/// thread, 0 on the index's own threads, any other value up to 256 on a pool of that size that
/// the index keeps for later calls (the two most recently used sizes). A batch too small to
/// repay waking the pool's threads (one query; two at two threads) runs on the calling thread.
/// `ef` as in `omen_index_search`. `n_queries = 0` is a successful no-op.
///
/// # Ownership
/// Borrows every pointer during the call only; writes the outputs only on success.
///
/// # Thread safety
/// As `omen_index_search`.
///
/// # Errors
/// As `omen_index_search`, checked for every query before any search runs;
/// `OMEN_STATUS_INVALID_ARGUMENT` for more than 256 threads; `OMEN_STATUS_RESOURCE_EXHAUSTED`
/// when the requested threads cannot start.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search_batch(
    index: *const omen_index,
    queries: *const f32,
    n_queries: usize,
    dim: usize,
    k: usize,
    ef: usize,
    threads: usize,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_counts: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    let params = omen_search_params { ef, threads, ..omen_search_params::defaults() };
    omen_index_search_batch_with(index, queries, n_queries, dim, k, &params, out_ids, out_distances, out_counts, err)
}

/// Finds every vector within `radius` of one query, closest first, at most `max_results` of
/// them (the closest).
///
/// `radius` is a distance as searches report it: squared L2, 1 - cosine similarity, or the
/// negated inner product (which may be negative). The graph walk expands every vector it meets
/// inside the radius and, to cross gaps between them, the best `ef` outside it (0 =
/// `options.ef_search`; larger finds more of a scattered neighbourhood);
/// `OMEN_SEARCH_PLAN_EXACT` through `omen_index_search_range_with` finds all of them.
/// `out_ids` and `out_distances` must each hold `max_results` slots; `*out_count` receives the
/// number of hits, and the slots after it are set to `OMEN_NO_ID` and `INFINITY`.
///
/// # Ownership
/// Borrows every pointer during the call only; writes the outputs only on success.
///
/// # Thread safety
/// As `omen_index_search`.
///
/// # Errors
/// As `omen_index_search`; `OMEN_STATUS_INVALID_ARGUMENT` for `max_results` 0 or a radius that
/// is NaN, infinite, or (under L2 and cosine) negative.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search_range(
    index: *const omen_index,
    query: *const f32,
    dim: usize,
    radius: f32,
    max_results: usize,
    ef: usize,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_count: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    let params = omen_search_params { ef, ..omen_search_params::defaults() };
    omen_index_search_range_with(
        index,
        query,
        dim,
        radius,
        max_results,
        &params,
        out_ids,
        out_distances,
        out_count,
        err,
    )
}

/// `omen_index_search_range` with per-call settings (`ef`, a filter and a plan, as in
/// `omen_index_search_with`; `oversample` and `threads` are ignored).
///
/// # Ownership
/// As `omen_index_search_with`.
///
/// # Thread safety
/// As `omen_index_search_with`.
///
/// # Errors
/// As `omen_index_search_range` and `omen_index_search_with`.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn omen_index_search_range_with(
    index: *const omen_index,
    query: *const f32,
    dim: usize,
    radius: f32,
    max_results: usize,
    params: *const omen_search_params,
    out_ids: *mut u64,
    out_distances: *mut f32,
    out_count: *mut usize,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        // SAFETY: `params` is checked for NULL, alignment and size inside, `allow_ids` for NULL
        // and alignment (caller's contract otherwise).
        let params = unsafe { omen_search_params::read(params) }?;
        // SAFETY: the caller passes a live handle (documented).
        let index = unsafe { self::index(index) }?;
        check_dim(index, dim)?;
        if max_results == 0 {
            return Err(Failure::invalid("max_results must be at least 1"));
        }
        // SAFETY: as documented (caller's contract).
        let (query, ids, distances, count) =
            unsafe { one_query(query, dim, max_results, out_ids, out_distances, out_count) }?;
        count[0] = params.with(|params| index.search_range_into(query, radius, params, ids, distances))?;
        Ok(())
    })
}
