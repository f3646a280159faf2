//! The `Index`: what a caller holds. This file builds one; `search` searches it, `insert` adds
//! and deletes, `open` keeps an index in a database directory, `compact` rewrites segments.

mod backup;
mod compact;
mod ids;
mod insert;
mod open;
mod search;
mod verify;

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::segment::{Growing, Layout, SegmentSet};
use crate::storage::{DroppedTail, Store};
use ids::IdMap;
pub use verify::{FileInfo, SegmentInfo, SegmentReport, Verification};

/// Disk and memory use of an index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments holding data (sealed ones, plus the growing one when it is not empty).
    pub segments: usize,
    /// Vectors that are not deleted (what searches can return).
    pub vectors: usize,
    /// Deleted vectors their segments still hold, until a compaction rewrites them.
    pub deleted: usize,
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
    /// Bytes the opening dropped from the end of the write-ahead log, as a crash during a write
    /// leaves them (moved aside, never deleted: see [`Index::recovery_notice`]). 0 when the log
    /// ended with a whole record.
    pub log_dropped_bytes: u64,
    /// Records in those bytes, as far as their heads tell.
    pub log_dropped_records: u64,
}

/// What is fixed when an index is made: its options, how segments are built, and its threads.
struct Engine {
    options: Options,
    layout: Layout,
    pool: Arc<rayon::ThreadPool>,
    /// Pools of other sizes that batch searches asked for, most recent first: kept, so a caller
    /// that passes the same count every time starts its threads once.
    batch_pools: Mutex<Vec<Arc<rayon::ThreadPool>>>,
}

/// How many pools of other sizes an index keeps for batch searches.
const KEPT_BATCH_POOLS: usize = 2;

/// Whether `items` pieces of work (rows to link, queries to search) finish sooner on the calling
/// thread than handed to a pool of `threads` threads. Handing work to a pool wakes a worker and
/// waits for it to finish: about 100 µs on a 2-core Intel Xeon VM (`benches/ab/small_batches.py`),
/// while linking a row into a small index costs 30 µs at 8-d and 130 µs at 384-d, and a search
/// less. So one thread never gains from a pool, and more gain only when the others take enough
/// of the work meanwhile: at two threads, from 3 rows of 384-d and about 6 of 8-d.
fn stays_on_caller(items: usize, threads: usize) -> bool {
    items.saturating_mul(threads.saturating_sub(1)) <= CALLER_ITEMS_TIMES_SPARE_THREADS
}

/// The most pieces of work kept on the caller, times the pool's other threads (whose help they
/// forgo): 2 at two threads, 1 at more, any number at one (`stays_on_caller`).
const CALLER_ITEMS_TIMES_SPARE_THREADS: usize = 2;

impl Engine {
    /// Checks `options` and starts the worker threads.
    fn new(options: Options) -> Result<Engine> {
        options.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("omendb-{i}"))
            .build()
            .map_err(|e| Error::Threads(e.to_string()))?;
        let layout = Layout::of(&options);
        Ok(Engine { options, layout, pool: Arc::new(pool), batch_pools: Mutex::new(Vec::new()) })
    }

    /// A pool of `threads` threads: the index's own for 0 or its size, else one kept from an
    /// earlier call, or a new one that is then kept in place of the least recently used.
    fn pool_of(&self, threads: usize) -> Result<Arc<rayon::ThreadPool>> {
        if threads == 0 || threads == self.pool.current_num_threads() {
            return Ok(self.pool.clone());
        }
        let mut pools = self.batch_pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = pools.iter().position(|pool| pool.current_num_threads() == threads) {
            let pool = pools.remove(at);
            pools.insert(0, pool.clone());
            return Ok(pool);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("omendb-search-{i}"))
            .build()
            .map_err(|e| Error::Threads(e.to_string()))?;
        let pool = Arc::new(pool);
        pools.insert(0, pool.clone());
        pools.truncate(KEPT_BATCH_POOLS);
        Ok(pool)
    }
}

/// Insert state owned by the single writer at a time.
struct Writer {
    next_ordinal: u32,
}

/// A segmented HNSW index. Every method takes `&self`: searches run concurrently with each other
/// and with inserts; inserts are serialised among themselves (each one is parallel inside).
pub struct Index {
    shared: Arc<Shared>,
    /// Compacts in the background once a segment's deleted fraction passes
    /// `Options::compact_threshold`; `None` when that is 0 or the database is read-only.
    compactor: Option<compact::Compactor>,
}

/// An index's state, shared with its background compactor.
struct Shared {
    engine: Engine,
    writer: Mutex<Writer>,
    /// Apart from `writer`, so `contains` never waits for a running insert. Built from the
    /// segments on first use after an open: searches never need it, and it costs about 40 ms a
    /// million vectors.
    ids: OnceLock<RwLock<IdMap>>,
    segments: RwLock<Arc<SegmentSet>>,
    /// The database directory behind an index from [`Index::open`].
    store: Option<Store>,
    compaction: compact::CompactionLock,
}

impl Shared {
    /// The id map, built from the segments if an open left it unbuilt. An insert asks for it
    /// before it swaps in new segments, so a map built meanwhile never misses its ids.
    fn ids(&self) -> &RwLock<IdMap> {
        self.ids.get_or_init(|| RwLock::new(IdMap::of(&self.snapshot())))
    }

    fn snapshot(&self) -> Arc<SegmentSet> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Index {
    /// An empty in-memory index.
    pub fn new(options: Options) -> Result<Index> {
        let engine = Engine::new(options)?;
        let segments = SegmentSet { sealed: Vec::new(), growing: Arc::new(Growing::new(&engine.layout, 0)) };
        Ok(Index::assemble(engine, segments, 1, Some(IdMap::default()), None))
    }

    /// The one constructor: every index, new or opened, is made whole here. `ids` is `None`
    /// when the id map is to be built from the segments on first use.
    fn assemble(
        engine: Engine,
        segments: SegmentSet,
        next_ordinal: u32,
        ids: Option<IdMap>,
        store: Option<Store>,
    ) -> Index {
        let read_only = store.as_ref().is_some_and(Store::read_only);
        let shared = Arc::new(Shared {
            engine,
            writer: Mutex::new(Writer { next_ordinal }),
            ids: ids.map_or_else(OnceLock::new, |map| OnceLock::from(RwLock::new(map))),
            segments: RwLock::new(Arc::new(segments)),
            store,
            compaction: Default::default(),
        });
        let threshold = shared.engine.options.compact_threshold;
        let compactor = (threshold > 0.0 && !read_only).then(|| compact::Compactor::start(&shared));
        Index { shared, compactor: compactor.flatten() }
    }

    pub fn options(&self) -> &Options {
        &self.shared.engine.options
    }

    pub fn dim(&self) -> usize {
        self.shared.engine.options.dim
    }

    pub fn metric(&self) -> Metric {
        self.shared.engine.options.metric
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.shared.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of non-empty segments (sealed ones plus the growing one if it holds data).
    pub fn segment_count(&self) -> usize {
        self.shared.snapshot().count()
    }

    /// True when `id` is in the index.
    pub fn contains(&self, id: u64) -> bool {
        self.shared.ids().read().unwrap_or_else(PoisonError::into_inner).get(id).is_some()
    }

    /// What opening this database dropped from the end of its write-ahead log, in words (`None`
    /// when nothing was dropped): how many bytes and records from which byte, why, and the file
    /// they were moved to. The log's last record is dropped when its bytes do not match its
    /// checksum or the file ends inside it, which is what a crash during its write leaves; the
    /// same damage to a record that was acknowledged cannot be told apart (docs/format.md).
    /// [`LogRecovery::Strict`](crate::options::LogRecovery) refuses such a log instead.
    pub fn recovery_notice(&self) -> Option<String> {
        self.dropped_tail().map(|tail| tail.to_string())
    }

    fn dropped_tail(&self) -> Option<&DroppedTail> {
        self.shared.store.as_ref().and_then(Store::dropped_tail)
    }

    /// Segments, vectors, and the bytes the index holds on disk and in memory.
    pub fn stats(&self) -> Stats {
        let set = self.shared.snapshot();
        let ids_heap =
            self.shared.ids.get().map_or(0, |ids| ids.read().unwrap_or_else(PoisonError::into_inner).heap_bytes());
        let mut stats = Stats {
            segments: set.count(),
            vectors: set.len(),
            deleted: set.deleted(),
            bytes_on_disk: self.shared.store.as_ref().map_or(0, |s| s.bytes_on_disk()),
            log_syncs: self.shared.store.as_ref().map_or(0, |s| s.log_syncs()),
            log_dropped_bytes: self.dropped_tail().map_or(0, |tail| tail.bytes),
            log_dropped_records: self.dropped_tail().map_or(0, |tail| tail.records),
            bytes_heap: (set.growing.heap_bytes() + ids_heap) as u64,
            ..Stats::default()
        };
        let growing = std::iter::once((set.growing.mapped_bytes(), 0));
        for ((mapped, resident), heap) in set.sealed.iter().map(|s| (s.mapped_bytes(), s.heap_bytes())).chain(growing) {
            stats.bytes_heap += heap as u64;
            stats.bytes_mapped += mapped as u64;
            stats.bytes_mapped_resident += resident as u64;
        }
        let per_vector = |bytes: u64| (bytes as f64 / stats.vectors.max(1) as f64).round() as u64;
        let options = &self.shared.engine.options;
        stats.code_bytes_per_vector = options.quantization.code_len(options.dim) as u64;
        stats.bytes_per_vector_on_disk = per_vector(stats.bytes_on_disk);
        stats.bytes_per_vector_resident = per_vector(stats.bytes_heap + stats.bytes_mapped_resident);
        stats
    }
}
