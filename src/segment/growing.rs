//! The growing segment: takes inserts, linked in parallel, with the reachability pass run as it
//! grows; sealed into an immutable copy when full.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::sealed::Sealed;
use super::{mapped_bytes, Layout, SearchResult, SegmentPlan, Threads, Tombstones, Wanted};
use crate::error::Result;
use crate::hnsw::{write_segment, Graph, GraphCheck, StoredSegment};
use crate::memory::{Array, Mapping};
use crate::options::{Filter, Plan};
use crate::storage::Source;

struct GrowingState {
    graph: Graph,
    ids: Array<u64>,
    /// The snapshot file the arrays are read from, until the first insert copies them.
    mapping: Option<Arc<Mapping>>,
}

/// The segment that takes inserts. Appending takes the write lock briefly; linking and searching
/// share the read lock, with per-node locks inside the graph.
///
/// A batch is linked in place while searches walk the graph, and its nodes help route them
/// at once; they become results when the writer holds them (`hold_all`), after their ids are
/// in the id map: a search never returns an id that `Index::get` does not find yet.
pub(crate) struct Growing {
    ordinal: u32,
    capacity: usize,
    state: RwLock<GrowingState>,
    /// The first nodes, which searches may return.
    held: AtomicUsize,
    /// Sized for the capacity, so the sealed segment made from this one shares it.
    tombstones: Arc<Tombstones>,
    /// Vectors linked since the last reachability pass.
    unchecked: AtomicUsize,
    /// Rows of the largest batch `add` took (all of them for a segment opened from its
    /// snapshot, whose batches are not known): see `filled_in_batches`.
    largest_batch: AtomicUsize,
}

impl GrowingState {
    /// The ids of the first `held` nodes (a node's id is appended before it is linked).
    fn held_ids(&self, held: usize) -> &[u64] {
        &self.ids[..held.min(self.ids.len())]
    }
}

/// The reachability pass (`Graph::connect`) runs once `1/CHECK_AFTER_PARTS` of the segment was
/// linked since the last one, whatever the batch sizes (sealing always runs one): amortised, a
/// pass costs `CHECK_AFTER_PARTS` list reads a vector. Until it runs, the few nodes pruning cut
/// off stay unfound: in a 1M build in batches of 1,000, 0.22% of insertions left one, so at
/// most about 140 nodes (0.014%) wait at once. At 64 parts, the pass took 12-18% of that build.
const CHECK_AFTER_PARTS: usize = 16;

/// Segments from this many nodes on that were filled in batches (`filled_in_batches`) are
/// rebuilt by a compaction as one batch.
///
/// One batch is linked in an order that keeps nearby vectors together (`LinkingOrder`) and then
/// renumbered breadth-first; a segment filled in batches has both only within each batch, and
/// under 8,192 rows neither. Searched side by side with one filled in one batch
/// (`benches/ab/batching.py`, clustered 128-d vectors in batches of 1,000, Intel Xeon model 207):
/// at 1M 0.83-0.90x the queries/s at equal ef and 0.019 less recall at ef 64, and 0.91-0.99x
/// with 0.006 less once compacted (103 s on the compaction's one thread); at 200K and 100K
/// 0.94-0.98x, within noise once compacted, so smaller segments are not worth the rebuild.
const REBUILD_FROM: usize = 1 << 18;

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Writers only append whole batches before any reader can see them; a panic during an
    // append leaves the old, consistent prefix, so a poisoned lock is still safe to read.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Growing {
    pub(crate) fn new(layout: &Layout, ordinal: u32) -> Self {
        Growing {
            ordinal,
            unchecked: AtomicUsize::new(0),
            capacity: layout.capacity,
            largest_batch: AtomicUsize::new(0),
            state: RwLock::new(GrowingState { graph: layout.graph(ordinal), ids: Array::default(), mapping: None }),
            held: AtomicUsize::new(0),
            tombstones: Arc::new(Tombstones::new(layout.capacity)),
        }
    }

    /// The growing segment whose snapshot is the file `source` (as `Sealed::open`), searched
    /// from the mapping until the first insert copies it onto the heap (`add` appends through
    /// `Array::vec_mut`, which copies every array before anything is written). `deleted` holds
    /// the marks of its deletion file, if it has one.
    pub(crate) fn open(
        layout: &Layout,
        source: &Source<'_>,
        verify: bool,
        count: u64,
        deleted: Option<&[u64]>,
    ) -> Result<Growing> {
        let StoredSegment { ordinal, graph, ids, mapping } = layout.read(source, verify, count)?;
        Ok(Growing {
            ordinal,
            capacity: layout.capacity,
            unchecked: AtomicUsize::new(0),
            largest_batch: AtomicUsize::new(ids.len()),
            held: AtomicUsize::new(ids.len()),
            state: RwLock::new(GrowingState { graph, ids, mapping: Some(mapping) }),
            tombstones: Arc::new(Tombstones::from_words(layout.capacity, deleted.unwrap_or_default())),
        })
    }

    pub(crate) fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// Nodes, deleted ones included, and those of a batch being linked.
    pub(crate) fn len(&self) -> usize {
        read(&self.state).ids.len()
    }

    /// Held nodes (see `Growing`), deleted ones included.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Acquire)
    }

    /// Holds every node linked so far: the caller recorded their ids in the id map.
    pub(crate) fn hold_all(&self) {
        self.held.store(self.len(), Release);
    }

    /// Held nodes that are not deleted (only a held node can be: a delete finds it by its id).
    pub(crate) fn live_len(&self) -> usize {
        self.held().saturating_sub(self.tombstones.count())
    }

    pub(crate) fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// `node`'s stored vector, into `out`.
    pub(crate) fn vector_into(&self, node: u32, out: &mut Vec<f32>) {
        read(&self.state).graph.vector_into(node, out);
    }

    pub(crate) fn room(&self) -> usize {
        self.capacity - self.len()
    }

    /// Whether a compaction should rebuild this segment as one batch: it holds `REBUILD_FROM`
    /// nodes or more, and no batch linked half of them.
    pub(crate) fn filled_in_batches(&self) -> bool {
        let len = self.len();
        len >= REBUILD_FROM && self.largest_batch.load(Relaxed) * 2 < len
    }

    /// Whether `add` can take `rows` vectors on the calling thread (`Threads::Caller`): they
    /// leave room in this segment (the one that fills it has it sealed, in parallel) and the graph
    /// takes them with no rayon call (`Graph::adds_on_caller`).
    pub(crate) fn takes_on_caller(&self, rows: usize) -> bool {
        rows < self.room() && read(&self.state).graph.adds_on_caller(rows)
    }

    /// Appends and links a batch, where `threads` says (`Caller` only when `takes_on_caller`
    /// holds), and numbers a large one breadth-first (`Graph::breadth_first_order`). Returns the
    /// batch's rows in the order of their nodes, or nothing when they kept the batch's order.
    /// The caller serialises calls and keeps the batch within `room()`.
    pub(crate) fn add(&self, ids: &[u64], vectors: &[f32], threads: Threads) -> Vec<u32> {
        if ids.is_empty() {
            return Vec::new();
        }
        self.largest_batch.fetch_max(ids.len(), Relaxed);
        let first = {
            let mut state = write(&self.state);
            let first = state.graph.len();
            state.graph.append(vectors);
            state.ids.vec_mut().extend_from_slice(ids);
            state.mapping = None;
            first
        };
        let state = read(&self.state);
        let nodes = first as u32..(first + ids.len()) as u32;
        match threads {
            Threads::Pool => state.graph.insert_range(nodes.clone()),
            Threads::Caller => state.graph.insert_on_caller(nodes.clone()),
        }
        let unchecked = self.unchecked.fetch_add(ids.len(), Relaxed) + ids.len();
        if unchecked * CHECK_AFTER_PARTS >= state.graph.len() {
            state.graph.connect();
            self.unchecked.store(0, Relaxed);
        }
        // Searches wait only while the rows move, not while the order is found.
        let Some(order) = state.graph.breadth_first_order(nodes.clone()) else { return Vec::new() };
        drop(state);
        let mut state = write(&self.state);
        state.graph.renumber(nodes.clone(), &order);
        state.ids.permute_rows(1, first, &order);
        order.iter().map(|&node| node - nodes.start).collect()
    }

    /// Checks the graph's structure (see `Graph::check`). Nodes linked since the last
    /// reachability pass may not be reachable yet.
    pub(crate) fn check(&self) -> GraphCheck {
        read(&self.state).graph.check()
    }

    /// Runs the reachability pass now (see `add`), e.g. after a replay.
    pub(crate) fn connect(&self) {
        read(&self.state).graph.connect();
        self.unchecked.store(0, Relaxed);
    }

    /// A sealed copy, for when searches may still hold this segment.
    pub(crate) fn seal(&self) -> Sealed {
        let state = read(&self.state);
        let graph = state.graph.compacted();
        graph.connect();
        let in_batches = self.filled_in_batches();
        Sealed::new(self.ordinal, graph, state.ids.to_vec(), self.tombstones.clone(), in_batches)
    }

    /// Seals this segment in place when nothing else holds it: no copy of the graph.
    pub(crate) fn into_sealed(self) -> Sealed {
        let in_batches = self.filled_in_batches();
        let state = self.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        Sealed::new(self.ordinal, state.graph, state.ids, self.tombstones, in_batches)
    }

    /// Writes a snapshot of this segment to `path`; the caller keeps inserts out meanwhile.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let state = read(&self.state);
        write_segment(path, self.ordinal, &state.graph, &state.ids)
    }

    /// Calls `f(node, id)` for every vector that is not deleted, in node order.
    pub(crate) fn for_each_id(&self, mut f: impl FnMut(u32, u64)) {
        let state = read(&self.state);
        let live = state.ids.iter().enumerate().filter(|&(node, _)| !self.tombstones.is_deleted(node as u32));
        live.for_each(|(node, &id)| f(node as u32, id));
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let state = read(&self.state);
        state.graph.heap_bytes() + state.ids.heap_bytes() + self.tombstones.heap_bytes()
    }

    /// (mapped bytes, of which resident) while the segment is read from its snapshot file.
    pub(crate) fn mapped_bytes(&self) -> (usize, usize) {
        mapped_bytes(read(&self.state).mapping.as_deref())
    }

    pub(crate) fn plan<'f>(
        &self,
        filter: &Filter<'f>,
        listed: Option<Vec<u32>>,
        wanted: Wanted,
        plan: Plan,
    ) -> SegmentPlan<'f> {
        // Planned over the nodes being linked too, which may be held by the time it searches.
        let state = read(&self.state);
        SegmentPlan::new(&self.tombstones, &state.ids, filter, listed, wanted, plan)
    }

    pub(crate) fn search(&self, query: &[f32], wanted: Wanted, plan: &SegmentPlan, out: &mut Vec<SearchResult>) {
        let state = read(&self.state);
        // Held now rather than when planned, which narrows the moment in which an upsert's id
        // may be missing (see `publish`).
        plan.search(&state.graph, state.held_ids(self.held()), &self.tombstones, query, wanted, out);
    }
}
