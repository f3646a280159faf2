//! omendb: an embeddable vector search engine built from segmented HNSW graphs.
//!
//! This is the Rust API; C, C++ and other runtimes use the same engine through [`ffi`] and the
//! generated `include/omendb.h`.
//!
//! ```
//! use omendb::{Index, Metric, Options};
//!
//! let index = Index::new(Options::new(3, Metric::L2)).unwrap();
//! index.insert_batch(&[10, 11], &[0.0, 0.0, 1.0, 5.0, 5.0, 5.0]).unwrap();
//! let hits = index.search(&[0.0, 0.0, 0.9], 1, 0).unwrap();
//! assert_eq!(hits[0].id, 10);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

pub mod distance;
pub mod ffi;
mod hnsw;
mod ids;
mod persist;
pub mod quant;
mod segment;
mod storage;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rayon::prelude::*;

use distance::Distance;
pub use distance::Metric;
use ids::{IdMap, Location};
pub use quant::Quantization;
use segment::{Built, Ef, Growing, Hit, Layout, SegmentSet};
pub use storage::{Durability, Stats};

/// Everything that can go wrong, each with the detail a caller needs to fix the input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of its documented range (k = 0, dim = 0, m too small, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A vector's length does not match the index dimension.
    #[error("dimension mismatch: {0}")]
    DimensionMismatch(String),
    /// A vector holds NaN or an infinity.
    #[error("vector {row} has a non-finite component ({value}) at position {column}")]
    NonFinite { row: usize, column: usize, value: f32 },
    /// A zero vector under the cosine metric, which has no direction to compare.
    #[error("vector {row} is all zeros, which the cosine metric cannot compare")]
    ZeroVector { row: usize },
    /// An id that is already in the index, or twice in one batch.
    #[error("id {id} {}", if *.in_batch { "appears more than once in the batch" } else { "is already in the index" })]
    DuplicateId { id: u64, in_batch: bool },
    /// The worker thread pool could not start.
    #[error("could not start worker threads: {0}")]
    Threads(String),
    /// A file operation failed (disk full, permissions, ...). Nothing acknowledged was lost.
    #[error("I/O error on {path}: {detail}")]
    Io { path: String, detail: String },
    /// A file fails its checksums or its structure is inconsistent.
    #[error("{path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    /// A file written by a newer (or unknown) format version.
    #[error("{path} has an unsupported format: {detail}")]
    Version { path: String, detail: String },
    /// Another process has the database open for writing.
    #[error("the database is locked by another process for writing (lock file {path})")]
    Locked { path: String },
    /// A write to a database opened read-only.
    #[error("the database {path} is open read-only")]
    ReadOnly { path: String },
    /// No database at the path, and `Options::create` was not set.
    #[error("no database at {path} (set create to make one)")]
    NotFound { path: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Threads that build graphs and serve batch searches; 0 = one per core.
    pub threads: usize,
    /// Seeds the level draw, so builds are reproducible.
    pub seed: u64,
    /// [`Index::open`]: create the database when the directory holds none. Default true.
    pub create: bool,
    /// [`Index::open`]: open without the write lock; inserts fail with [`Error::ReadOnly`].
    pub read_only: bool,
    /// [`Index::open`]: when inserts reach the disk. Default: fsync every batch.
    pub durability: Durability,
    /// Codes the graph walk reads instead of the vectors (1, 4 or 8 bits a dimension); the
    /// best candidates are re-scored with the exact vectors. Default `None`. Binary codes
    /// cannot serve the inner product.
    pub quantization: Quantization,
    /// Default for [`SearchParams::oversample`]; 0 = the code's own default.
    pub oversample: usize,
    /// [`Index::open`]: check every section checksum of every segment file while opening (reads
    /// each file once). Off, a sealed segment is only mapped (opening takes milliseconds) and
    /// damage inside its vectors or links gives wrong answers instead of an error, though never
    /// an out-of-bounds access. Default true.
    pub verify: bool,
}

/// cbindgen:ignore
impl Options {
    pub const DEFAULT_M: usize = 16;
    pub const DEFAULT_EF_CONSTRUCTION: usize = 100;
    pub const DEFAULT_EF_SEARCH: usize = 64;
    pub const DEFAULT_SEGMENT_CAPACITY: usize = 1 << 20;
    pub const MAX_DIM: usize = 1 << 16;
    pub const MAX_M: usize = 128;
    /// Node numbers and link offsets inside a segment are 32-bit.
    pub const MAX_SEGMENT_CAPACITY: usize = 1 << 28;
    pub const MAX_THREADS: usize = 4096;
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
        }
    }

    fn validate(&self) -> Result<()> {
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
            self.quantization.serves(self.metric),
            format!("{} quantization cannot serve the {} metric", self.quantization, self.metric),
        )?;
        check(
            self.threads <= Self::MAX_THREADS,
            format!("threads must be at most {}, got {}", Self::MAX_THREADS, self.threads),
        )
    }
}

/// `count * k` output slots, or an error when that overflows.
fn slots(count: usize, k: usize) -> Result<usize> {
    count.checked_mul(k).ok_or_else(|| Error::InvalidArgument(format!("{count} queries × k = {k} overflows")))
}

/// Writes `hits` into a row of output slots, padding the rest with `u64::MAX` / `+inf`; returns
/// the number of hits.
fn fill(hits: &[Hit], ids: &mut [u64], distances: &mut [f32]) -> usize {
    for (slot, (id, distance)) in ids.iter_mut().zip(distances.iter_mut()).enumerate() {
        let hit = hits.get(slot);
        *id = hit.map_or(u64::MAX, |h| h.id);
        *distance = hit.map_or(f32::INFINITY, |h| h.distance);
    }
    hits.len()
}

/// Per-query search settings; a plain number converts to `ef` with the default oversample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchParams {
    /// Beam width: 0 uses `Options::ef_search`; a value below `k` is raised to `k`.
    pub ef: usize,
    /// With quantized codes: candidates re-scored exactly per result. The beam is widened to
    /// at least `k * oversample` and the best `max(k * oversample, ef / 2)` are re-scored. 0 uses
    /// `Options::oversample`, whose 0 means the code's default (binary 20, 4-bit 2, 8-bit 2).
    /// Ignored without codes, where every candidate of the beam is re-scored.
    pub oversample: usize,
}

impl From<usize> for SearchParams {
    fn from(ef: usize) -> Self {
        SearchParams { ef, oversample: 0 }
    }
}

/// One neighbour of a query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchResult {
    pub id: u64,
    /// Distance under the index metric (smaller is closer).
    pub distance: f32,
}

/// Insert state owned by the single writer at a time.
struct Writer {
    next_ordinal: u32,
}

/// A segmented HNSW index. Every method takes `&self`: searches run concurrently with each other
/// and with inserts; inserts are serialised among themselves (each one is parallel inside).
pub struct Index {
    options: Options,
    layout: Layout,
    distance: Distance,
    pool: rayon::ThreadPool,
    writer: Mutex<Writer>,
    /// Apart from `writer`, so `contains` never waits for a running insert.
    ids: RwLock<IdMap>,
    /// False after an open until `index_ids` built `ids` from the segments: opening skips it,
    /// since searches never need it and it costs about 40 ms a million vectors.
    ids_ready: AtomicBool,
    segments: RwLock<Arc<SegmentSet>>,
    /// The database directory behind an index from [`Index::open`].
    store: Option<storage::Store>,
}

impl Index {
    /// An empty in-memory index.
    pub fn new(options: Options) -> Result<Index> {
        options.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("omendb-{i}"))
            .build()
            .map_err(|e| Error::Threads(e.to_string()))?;
        let distance = Distance::new(options.metric);
        let params = hnsw::Params {
            m: options.m,
            ef_construction: options.ef_construction,
            seed: options.seed,
            quantization: options.quantization,
        };
        let layout = Layout { dim: options.dim, capacity: options.segment_capacity, params, distance };
        let growing = Arc::new(Growing::new(&layout, 0));
        Ok(Index {
            segments: RwLock::new(Arc::new(SegmentSet { sealed: Vec::new(), growing })),
            writer: Mutex::new(Writer { next_ordinal: 1 }),
            ids: RwLock::new(IdMap::default()),
            ids_ready: AtomicBool::new(true),
            options,
            layout,
            distance,
            pool,
            store: None,
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn dim(&self) -> usize {
        self.options.dim
    }

    pub fn metric(&self) -> Metric {
        self.options.metric
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of non-empty segments (sealed ones plus the growing one if it holds data).
    pub fn segment_count(&self) -> usize {
        self.snapshot().count()
    }

    /// True when `id` is in the index.
    pub fn contains(&self, id: u64) -> bool {
        if !self.ids_ready.load(Acquire) {
            self.index_ids(&self.writer());
        }
        self.ids.read().unwrap_or_else(PoisonError::into_inner).get(id).is_some()
    }

    /// Builds the id map from the segments if an open left it unbuilt. Holding `writer` keeps
    /// inserts out meanwhile.
    fn index_ids(&self, _writer: &Writer) {
        if self.ids_ready.load(Acquire) {
            return;
        }
        let set = self.snapshot();
        let mut map = IdMap::with_capacity(set.len());
        for segment in &set.sealed {
            for (node, &id) in segment.ids().iter().enumerate() {
                map.insert(id, Location { segment: segment.ordinal(), node: node as u32 });
            }
        }
        set.growing.for_each_id(|node, id| {
            map.insert(id, Location { segment: set.growing.ordinal(), node });
        });
        *self.ids.write().unwrap_or_else(PoisonError::into_inner) = map;
        self.ids_ready.store(true, Release);
    }

    fn snapshot(&self) -> Arc<SegmentSet> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
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
    /// (and fsync'd, as [`Options::durability`] asks); concurrent inserts share one fsync.
    pub fn insert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        let mut writer = self.writer();
        if let Some(store) = &self.store {
            store.check_writable()?;
        }
        let Some((lsn, sealed)) = self.insert_locked(&mut writer, ids, vectors, self.store.as_ref())? else {
            return Ok(());
        };
        let Some(store) = &self.store else { return Ok(()) };
        if sealed {
            // The batch is in the log already: a failed checkpoint loses nothing, and the next
            // one (seal, flush or close) retries it and reports the error.
            let _ = store.checkpoint(&self.snapshot(), writer.next_ordinal);
        }
        drop(writer);
        lsn.map_or(Ok(()), |lsn| store.sync(lsn))
    }

    /// Checks, logs (when `log` is given) and applies a batch; returns `None` for an empty batch,
    /// else the log sequence number and whether a segment was sealed.
    fn insert_locked(
        &self,
        writer: &mut Writer,
        ids: &[u64],
        vectors: &[f32],
        log: Option<&storage::Store>,
    ) -> Result<Option<(Option<u64>, bool)>> {
        let dim = self.options.dim;
        if vectors.len() != ids.len() * dim {
            return Err(Error::DimensionMismatch(format!(
                "{} ids need {} floats at dim {dim}, got {}",
                ids.len(),
                ids.len() * dim,
                vectors.len()
            )));
        }
        if ids.is_empty() {
            return Ok(None);
        }
        self.index_ids(writer);
        self.ids.read().unwrap_or_else(PoisonError::into_inner).check_new(ids)?;
        // `raw` is what the log keeps (replay prepares it again); `vectors` what the graph stores.
        let (raw, vectors) = (vectors, self.prepare(vectors)?);

        let current = self.snapshot();
        let into_growing = current.growing.room().min(ids.len());
        let (head_ids, rest_ids) = ids.split_at(into_growing);
        let (head_vectors, rest_vectors) = vectors.split_at(into_growing * dim);
        let capacity = self.layout.capacity;
        let first_ordinal = writer.next_ordinal;
        // Ordinals this batch may use: one per full chunk plus one for a new growing segment.
        u32::try_from(rest_ids.len().div_ceil(capacity) + 1)
            .ok()
            .and_then(|n| first_ordinal.checked_add(n))
            .ok_or_else(|| Error::InvalidArgument("the index cannot hold more segments".into()))?;
        // Every check has passed: from here on the batch is applied whole.
        let lsn = log.map(|store| store.log(ids, raw)).transpose()?;
        let chunks: Vec<_> = rest_ids.chunks(capacity).zip(rest_vectors.chunks(capacity * dim)).collect();
        let growing_start = current.growing.len();

        let (_, built) = self.pool.install(|| {
            rayon::join(
                || current.growing.add(head_ids, head_vectors),
                || {
                    chunks
                        .par_iter()
                        .enumerate()
                        .map(|(i, (ids, vectors))| {
                            let ordinal = first_ordinal + i as u32;
                            Built::new(&self.layout, ordinal, ids, vectors)
                        })
                        .collect::<Vec<_>>()
                },
            )
        });

        let mut sealed = current.sealed.clone();
        let sealed_before = sealed.len();
        let mut growing = current.growing.clone();
        let mut next_ordinal = first_ordinal + chunks.len() as u32;
        if growing.room() == 0 {
            sealed.push(Arc::new(growing.seal()));
            growing = Arc::new(Growing::new(&self.layout, next_ordinal));
            next_ordinal += 1;
        }
        for segment in built {
            match segment {
                Built::Sealed(full) => sealed.push(Arc::new(full)),
                Built::Growing(partial) => growing = Arc::new(partial),
            }
        }
        let sealed_any = sealed.len() > sealed_before;
        let next_set = Arc::new(SegmentSet { sealed, growing });
        *self.segments.write().unwrap_or_else(PoisonError::into_inner) = next_set;

        writer.next_ordinal = next_ordinal;
        let mut map = self.ids.write().unwrap_or_else(PoisonError::into_inner);
        let head_ordinal = current.growing.ordinal();
        for (i, &id) in head_ids.iter().enumerate() {
            map.insert(id, Location { segment: head_ordinal, node: (growing_start + i) as u32 });
        }
        for (c, (chunk_ids, _)) in chunks.iter().enumerate() {
            for (i, &id) in chunk_ids.iter().enumerate() {
                map.insert(id, Location { segment: first_ordinal + c as u32, node: i as u32 });
            }
        }
        Ok(Some((lsn, sealed_any)))
    }

    /// Checks every row (finite; non-zero under cosine) and returns the rows as the graph
    /// stores them: normalised for cosine, unchanged otherwise.
    fn prepare<'a>(&self, vectors: &'a [f32]) -> Result<Cow<'a, [f32]>> {
        for (row, vector) in vectors.chunks_exact(self.options.dim).enumerate() {
            if let Some(column) = vector.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite { row, column, value: vector[column] });
            }
        }
        if self.options.metric != Metric::Cosine {
            return Ok(Cow::Borrowed(vectors));
        }
        let mut normalised = vectors.to_vec();
        for (row, vector) in normalised.chunks_exact_mut(self.options.dim).enumerate() {
            let squared = self.distance.norm_squared(vector);
            // f64 fallback: components near f32::MAX overflow the f32 sum, tiny ones underflow it.
            let norm = if squared.is_normal() {
                squared.sqrt() as f64
            } else {
                vector.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
            };
            if norm == 0.0 {
                return Err(Error::ZeroVector { row });
            }
            vector.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        }
        Ok(Cow::Owned(normalised))
    }

    fn check_search(&self, k: usize, params: impl Into<SearchParams>) -> Result<Ef> {
        if k == 0 {
            return Err(Error::InvalidArgument("k must be at least 1".into()));
        }
        let SearchParams { ef, oversample } = params.into();
        let ef = if ef == 0 { self.options.ef_search } else { ef };
        let oversample = if oversample == 0 { self.options.oversample } else { oversample };
        Ok(Ef { ef: ef.max(k), oversample })
    }

    /// The `k` nearest neighbours of `query`, closest first (fewer when the index holds fewer).
    /// `params` is the beam width `ef` (a plain number converts) or [`SearchParams`]: `ef` 0
    /// uses `Options::ef_search`, and a value below `k` is raised to `k`. Segments are searched
    /// in parallel on the index's threads.
    pub fn search(&self, query: &[f32], k: usize, params: impl Into<SearchParams>) -> Result<Vec<SearchResult>> {
        Ok(self
            .search_hits(query, k, params)?
            .iter()
            .map(|h| SearchResult { id: h.id, distance: h.distance })
            .collect())
    }

    /// [`Index::search`] into caller buffers of `k` slots each; returns the number of hits and
    /// pads the rest with id `u64::MAX` and distance `+inf`. On error nothing is written.
    pub fn search_into(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<SearchParams>,
        ids: &mut [u64],
        distances: &mut [f32],
    ) -> Result<usize> {
        if ids.len() != k || distances.len() != k {
            return Err(Error::InvalidArgument(format!(
                "output buffers must hold k = {k} slots, got {} ids and {} distances",
                ids.len(),
                distances.len()
            )));
        }
        Ok(fill(&self.search_hits(query, k, ef)?, ids, distances))
    }

    fn search_hits(&self, query: &[f32], k: usize, ef: impl Into<SearchParams>) -> Result<Vec<Hit>> {
        let ef = self.check_search(k, ef)?;
        let query = self.prepare_queries(query, 1)?;
        let set = self.snapshot();
        let mut hits = Vec::with_capacity(k.min(set.len()));
        // Handing a query to the pool costs tens of microseconds: worth it only when several
        // segments hold data (measured: a lone sealed segment searched 1.5x faster in place).
        if set.count() <= 1 {
            set.search(&query, k, ef, &mut hits);
        } else {
            self.pool.install(|| set.par_search(&query, k, ef, &mut hits));
        }
        Ok(hits)
    }

    fn prepare_queries<'a>(&self, queries: &'a [f32], count: usize) -> Result<Cow<'a, [f32]>> {
        let dim = self.options.dim;
        if queries.len() != count * dim {
            return Err(Error::DimensionMismatch(format!(
                "{count} queries need {} floats at dim {dim}, got {}",
                count * dim,
                queries.len()
            )));
        }
        self.prepare(queries)
    }

    /// Searches many queries (row-major in `queries`); see [`Index::search_batch_into`].
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: impl Into<SearchParams>,
        threads: usize,
    ) -> Result<Vec<Vec<SearchResult>>> {
        let ef = ef.into();
        self.check_search(k, ef)?;
        // No query can return more hits than the index holds: size the buffers for that, so a
        // huge `k` costs nothing.
        let k = k.min(self.len()).max(1);
        let count = queries.len() / self.options.dim;
        let slots = slots(count, k)?;
        let mut ids = vec![0; slots];
        let mut distances = vec![0.0; slots];
        let mut counts = vec![0; count];
        self.search_batch_into(queries, k, ef, threads, &mut ids, &mut distances, &mut counts)?;
        Ok((0..count)
            .map(|q| {
                (0..counts[q]).map(|j| SearchResult { id: ids[q * k + j], distance: distances[q * k + j] }).collect()
            })
            .collect())
    }

    /// Searches `counts.len()` queries and writes query `q`'s hits to `ids[q*k..]` and
    /// `distances[q*k..]`, their number to `counts[q]`; unused slots get id `u64::MAX` and
    /// distance `+inf`. `threads`: 1 runs on the calling thread, 0 on the index's threads, any
    /// other number on a pool of that size. On error nothing is written.
    #[allow(clippy::too_many_arguments)]
    pub fn search_batch_into(
        &self,
        queries: &[f32],
        k: usize,
        ef: impl Into<SearchParams>,
        threads: usize,
        ids: &mut [u64],
        distances: &mut [f32],
        counts: &mut [usize],
    ) -> Result<()> {
        let count = counts.len();
        let ef = self.check_search(k, ef)?;
        let slots = slots(count, k)?;
        if ids.len() != slots || distances.len() != slots {
            return Err(Error::InvalidArgument(format!(
                "output buffers must hold {count} × {k} = {slots} slots, got {} ids and {} distances",
                ids.len(),
                distances.len()
            )));
        }
        if threads > Options::MAX_THREADS {
            return Err(Error::InvalidArgument(format!(
                "threads must be at most {}, got {threads}",
                Options::MAX_THREADS
            )));
        }
        let queries = self.prepare_queries(queries, count)?;
        if count == 0 {
            return Ok(());
        }
        let set = self.snapshot();
        // Writes one query's hits into its row of the outputs; returns how many there are.
        let one = |query: &[f32], ids: &mut [u64], distances: &mut [f32], hits: &mut Vec<Hit>| {
            set.search(query, k, ef, hits);
            fill(hits, ids, distances)
        };
        let dim = self.options.dim;
        match threads {
            1 => {
                let mut hits = Vec::new();
                let rows = queries.chunks_exact(dim).zip(ids.chunks_exact_mut(k)).zip(distances.chunks_exact_mut(k));
                for (((query, ids), distances), count) in rows.zip(counts.iter_mut()) {
                    *count = one(query, ids, distances, &mut hits);
                }
            }
            _ => {
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
                if threads == 0 || threads == self.pool.current_num_threads() {
                    self.pool.install(run);
                } else {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| Error::Threads(e.to_string()))?
                        .install(run);
                }
            }
        }
        Ok(())
    }
}
