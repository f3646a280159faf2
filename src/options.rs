//! What a caller chooses: index options with their limits, durability, and per-query search
//! parameters.

use std::time::Duration;

use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::quant::Quantization;

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

/// What opening a database does with a log whose end does not hold whole, intact records: the
/// remains of a write a crash interrupted, or damage that looks the same (see docs/format.md,
/// "What a damaged log looks like").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogRecovery {
    /// Drop the tail, as a crash leaves it: its bytes are moved aside to a `.damaged` file next
    /// to the log (never deleted), and the opening reports them (`Stats`
    /// `log_dropped_*`, `Index::recovery_notice`). The default.
    #[default]
    DropTail,
    /// Refuse such a log with [`Error::Corrupt`] and change nothing, as RocksDB's
    /// absolute-consistency mode does: for applications that would rather a person looked at
    /// any loss. A crash in the middle of an insert (never acknowledged) is refused too; opening
    /// once with `DropTail` then recovers.
    Strict,
}

/// Index configuration. [`Options::new`] fills every field but `dim` and `metric` with defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Dimension of every vector (1..=65,536).
    pub dim: usize,
    pub metric: Metric,
    /// Links per node on upper layers (layer 0 keeps 2·m); 2..=128, default 16.
    pub m: usize,
    /// Beam width while building; default 100.
    pub ef_construction: usize,
    /// Beam width of a search that passes `ef = 0`; default 64.
    pub ef_search: usize,
    /// Vectors per segment before it is sealed; default 1,048,576.
    pub segment_capacity: usize,
    /// Threads that build graphs and serve batch searches; 0 = one per core, at most
    /// [`Options::MAX_THREADS`]. A batch of a few rows (2 at two threads, 1 at more, up to 255
    /// at one) is linked on the inserting thread instead: waking a pool thread costs more.
    pub threads: usize,
    /// Seeds the level draw, so builds are reproducible.
    pub seed: u64,
    /// `Index::open`: create the database when the directory holds none. Default true.
    pub create: bool,
    /// `Index::open`: open without the write lock; inserts fail with [`Error::ReadOnly`].
    pub read_only: bool,
    /// `Index::open`: when inserts reach the disk. Default: fsync every batch.
    pub durability: Durability,
    /// Codes the graph walk reads instead of the vectors (1, 4 or 8 bits a dimension); the
    /// best candidates are re-scored with the exact vectors. Default `None`.
    pub quantization: Quantization,
    /// Default for [`SearchParams::oversample`]; 0 = the code's own default.
    pub oversample: usize,
    /// `Index::open`: check every section checksum of every segment file while opening (reads
    /// each file once). Off, a sealed segment is only mapped (opening takes milliseconds) and
    /// damage inside its vectors or links gives wrong answers instead of an error, though never
    /// an out-of-bounds access. Default true.
    pub verify: bool,
    /// `Index::open`: what to do with a log whose last record is torn or damaged.
    pub log_recovery: LogRecovery,
    /// A background thread compacts (`Index::compact`) once deletes and upserts leave more than
    /// this fraction of some segment's vectors deleted; 0 = only when `compact` is called.
    /// In 0..=1, default 0.2.
    pub compact_threshold: f64,
}

/// cbindgen:ignore
impl Options {
    pub const DEFAULT_M: usize = 16;
    pub const DEFAULT_EF_CONSTRUCTION: usize = 100;
    pub const DEFAULT_EF_SEARCH: usize = 64;
    pub const DEFAULT_SEGMENT_CAPACITY: usize = 1 << 20;
    pub const DEFAULT_COMPACT_THRESHOLD: f64 = 0.2;
    pub const MAX_DIM: usize = 1 << 16;
    pub const MAX_M: usize = 128;
    /// Node numbers and link offsets inside a segment are 32-bit.
    pub const MAX_SEGMENT_CAPACITY: usize = 1 << 28;
    /// Most threads an index or a batch search may ask for: far beyond any core count that
    /// helps, low enough that a mistaken value cannot start thousands of threads.
    pub const MAX_THREADS: usize = 256;
}

impl Options {
    /// Options with the defaults for everything but `dim` and `metric`.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Options {
            dim,
            metric,
            m: Self::DEFAULT_M,
            ef_construction: Self::DEFAULT_EF_CONSTRUCTION,
            ef_search: Self::DEFAULT_EF_SEARCH,
            segment_capacity: Self::DEFAULT_SEGMENT_CAPACITY,
            threads: 0,
            seed: 0x6f6d_656e_6462,
            create: true,
            read_only: false,
            durability: Durability::EveryBatch,
            verify: true,
            quantization: Quantization::None,
            oversample: 0,
            log_recovery: LogRecovery::DropTail,
            compact_threshold: Self::DEFAULT_COMPACT_THRESHOLD,
        }
    }

    /// Fails on the first field out of its documented range.
    pub(crate) fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(Error::InvalidArgument(what)) };
        check(
            (1..=Self::MAX_DIM).contains(&self.dim),
            format!("dim must be in 1..={}, got {}", Self::MAX_DIM, self.dim),
        )?;
        check((2..=Self::MAX_M).contains(&self.m), format!("m must be in 2..={}, got {}", Self::MAX_M, self.m))?;
        check(self.ef_construction >= 1, "ef_construction must be at least 1".into())?;
        check(self.ef_search >= 1, "ef_search must be at least 1".into())?;
        check(
            (1..=Self::MAX_SEGMENT_CAPACITY).contains(&self.segment_capacity),
            format!("segment_capacity must be in 1..={}, got {}", Self::MAX_SEGMENT_CAPACITY, self.segment_capacity),
        )?;
        check(
            (0.0..=1.0).contains(&self.compact_threshold),
            format!("compact_threshold must be in 0..=1, got {}", self.compact_threshold),
        )?;
        check_threads(self.threads)
    }

    /// `params` with every 0 replaced by this index's default and `ef` raised to at least `k`;
    /// fails for `k = 0`.
    pub(crate) fn resolve<'a>(&self, k: usize, params: SearchParams<'a>) -> Result<SearchParams<'a>> {
        if k == 0 {
            return Err(Error::InvalidArgument("k must be at least 1".into()));
        }
        let ef = if params.ef == 0 { self.ef_search } else { params.ef };
        let oversample = if params.oversample == 0 { self.oversample } else { params.oversample };
        Ok(SearchParams { ef: ef.max(k), oversample, ..params })
    }
}

/// Fails when `threads` exceeds [`Options::MAX_THREADS`].
pub(crate) fn check_threads(threads: usize) -> Result<()> {
    if threads <= Options::MAX_THREADS {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("threads must be at most {}, got {threads}", Options::MAX_THREADS)))
    }
}

/// Per-query search settings; a plain number converts to `ef` with the defaults for the rest.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchParams<'a> {
    /// Beam width: 0 uses `Options::ef_search`; a value below `k` is raised to `k`.
    pub ef: usize,
    /// With quantized codes: candidates re-scored exactly per result. The beam is widened to
    /// at least `k * oversample` and the best `max(k * oversample, ef / 2)` are re-scored. 0 uses
    /// `Options::oversample`, whose 0 means the code's default (binary 20, 4-bit 2, 8-bit 2).
    /// Ignored without codes, where every candidate of the beam is re-scored.
    pub oversample: usize,
    /// Which ids the search may return; the default allows every id.
    pub filter: Filter<'a>,
    /// How each segment is searched; the default lets the planner choose.
    pub plan: Plan,
}

impl From<usize> for SearchParams<'_> {
    fn from(ef: usize) -> Self {
        SearchParams { ef, ..SearchParams::default() }
    }
}

/// Which ids a search may return: those in `allow` (when given) that `predicate` (when given)
/// accepts. A filtered search returns `min(k, live ids that pass)` results, closest first.
///
/// Each segment is planned on its own: when few of its vectors pass (counted exactly for an
/// allow-list, estimated by sampling for a predicate alone) it is scanned exactly, otherwise
/// its graph is walked through the vectors that do not pass, without returning them.
#[derive(Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Allowed ids, in any order, repeats allowed; ids not in the index are ignored. Resolved
    /// once per call (a batch shares it), at a cost of one hash lookup per id.
    pub allow: Option<&'a [u64]>,
    /// Accepts or refuses an id. It may be called from several threads at once, more than once
    /// for one id, and for ids `allow` already refused is never called; it must not call back
    /// into the index. With an allow-list it is called once per allowed id per call; alone,
    /// for the ids a walk meets (or every id of a segment that is scanned). A panic in it
    /// propagates to the caller of the search.
    pub predicate: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
}

impl<'a> Filter<'a> {
    /// Allows only `ids`.
    pub fn allow(ids: &'a [u64]) -> Self {
        Filter { allow: Some(ids), predicate: None }
    }

    /// Allows the ids `predicate` accepts.
    pub fn predicate(predicate: &'a (dyn Fn(u64) -> bool + Sync)) -> Self {
        Filter { allow: None, predicate: Some(predicate) }
    }

    /// True when the filter allows every id.
    pub fn is_none(&self) -> bool {
        self.allow.is_none() && self.predicate.is_none()
    }
}

impl std::fmt::Debug for Filter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("allow", &self.allow.map(<[u64]>::len))
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

/// How a search covers each segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plan {
    /// Per segment, an exact scan when few of its vectors may be returned (a filter or deletes
    /// leave few), else a graph walk that turns to an exact scan once it has visited more
    /// vectors than may be returned.
    #[default]
    Auto,
    /// Every segment scanned exactly: every result is a true nearest neighbour (slow on large
    /// segments; for ground truth and small filtered sets).
    Exact,
    /// Always the graph walk, never a scan (to measure the walk alone).
    Graph,
}
