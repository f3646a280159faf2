//! Segments: one growing segment takes inserts; a full one is sealed (compacted, immutable).
//! A query fans out over every segment and the per-segment top-k lists merge into one.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use std::path::Path;

use crate::distance::Distance;
use crate::hnsw::{with_scratch, Graph, Params};
use crate::storage::segment_file::{self, Section, SegmentFile};
use crate::storage::{Array, Mapping};

/// How wide a search looks: the beam width, and with codes how many candidates per result are
/// re-scored exactly (0: the code's default).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ef {
    pub ef: usize,
    pub oversample: usize,
}

/// One search hit with the caller's id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hit {
    pub distance: f32,
    pub id: u64,
}

/// How each segment's graph is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub dim: usize,
    pub capacity: usize,
    pub params: Params,
    pub distance: Distance,
}

impl Layout {
    /// Each segment draws its levels from its own stream, so segments built in parallel stay
    /// reproducible.
    fn graph(&self, ordinal: u32) -> Graph {
        let params =
            Params { seed: self.params.seed ^ u64::from(ordinal).wrapping_mul(0xD1B5_4A32_D192_ED03), ..self.params };
        Graph::new(self.dim, params, self.distance)
    }
}

struct GrowingState {
    graph: Graph,
    ids: Array<u64>,
    /// The snapshot file the arrays are read from, until the first insert copies them.
    mapping: Option<std::sync::Arc<Mapping>>,
}

/// The segment that takes inserts. Appending takes the write lock briefly; linking and searching
/// share the read lock, with per-node locks inside the graph.
pub(crate) struct Growing {
    ordinal: u32,
    capacity: usize,
    state: RwLock<GrowingState>,
    /// Vectors linked since the last reachability pass.
    unchecked: AtomicUsize,
}

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
            state: RwLock::new(GrowingState { graph: layout.graph(ordinal), ids: Array::default(), mapping: None }),
        }
    }

    pub(crate) fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.state).ids.len()
    }

    pub(crate) fn room(&self) -> usize {
        self.capacity - self.len()
    }

    /// Appends and links a batch, in parallel on the current rayon pool. The caller serialises
    /// calls and keeps the batch within `room()`.
    pub(crate) fn add(&self, ids: &[u64], vectors: &[f32]) {
        if ids.is_empty() {
            return;
        }
        let first = {
            let mut state = write(&self.state);
            let first = state.graph.len();
            state.graph.append(vectors);
            state.ids.vec_mut().extend_from_slice(ids);
            state.mapping = None;
            first
        };
        let state = read(&self.state);
        state.graph.insert_range(first as u32..(first + ids.len()) as u32);
        // Once 1/64 of the segment was linked since the last reachability pass, the next pass
        // is paid for (amortised O(1) a vector, whatever the batch sizes); sealing always runs one.
        let unchecked = self.unchecked.fetch_add(ids.len(), Relaxed) + ids.len();
        if unchecked * 64 >= state.graph.len() {
            state.graph.connect();
            self.unchecked.store(0, Relaxed);
        }
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
        Sealed::new(self.ordinal, graph, state.ids.to_vec())
    }

    /// Writes a snapshot of this segment to `path`; the caller keeps inserts out meanwhile.
    pub(crate) fn write(&self, path: &Path) -> crate::Result<()> {
        let state = read(&self.state);
        write_segment(path, self.ordinal, &state.graph, &state.ids)
    }

    /// The growing segment whose snapshot is `file`, searched from the mapping until the first
    /// insert copies it onto the heap (`add` appends through `Array::vec_mut`, which copies every
    /// array before anything is written).
    pub(crate) fn from_file(layout: &Layout, file: &SegmentFile) -> crate::Result<Growing> {
        let (graph, ids) = read_segment(layout, file)?;
        Ok(Growing {
            ordinal: file.header.ordinal,
            capacity: layout.capacity,
            unchecked: AtomicUsize::new(0),
            state: RwLock::new(GrowingState { graph, ids, mapping: Some(file.mapping().clone()) }),
        })
    }

    /// Calls `f(node, id)` for every vector, in node order.
    pub(crate) fn for_each_id(&self, mut f: impl FnMut(u32, u64)) {
        read(&self.state).ids.iter().enumerate().for_each(|(node, &id)| f(node as u32, id));
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let state = read(&self.state);
        state.graph.heap_bytes() + state.ids.heap_bytes()
    }

    /// (mapped bytes, of which resident) while the segment is read from its snapshot file.
    pub(crate) fn mapped_bytes(&self) -> (usize, usize) {
        mapped_bytes(read(&self.state).mapping.as_deref())
    }

    pub(crate) fn search(&self, query: &[f32], k: usize, ef: Ef, out: &mut Vec<Hit>) {
        let state = read(&self.state);
        search_graph(&state.graph, &state.ids, query, k, ef, out);
    }
}

/// A segment built from one slice of a batch: sealed when it reached capacity.
pub(crate) enum Built {
    Sealed(Sealed),
    Growing(Growing),
}

impl Built {
    /// Builds a new segment from `ids`/`vectors` (at most `layout.capacity` rows); a full one is
    /// sealed without copying its graph.
    pub(crate) fn new(layout: &Layout, ordinal: u32, ids: &[u64], vectors: &[f32]) -> Built {
        let growing = Growing::new(layout, ordinal);
        growing.add(ids, vectors);
        if ids.len() < layout.capacity {
            return Built::Growing(growing);
        }
        let state = growing.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        Built::Sealed(Sealed::new(ordinal, state.graph, state.ids))
    }
}

/// An immutable segment, on the heap or mapped from its file.
pub(crate) struct Sealed {
    ordinal: u32,
    graph: Graph,
    ids: Array<u64>,
    /// The file mapping the arrays live in, if they were read from one.
    mapping: Option<std::sync::Arc<Mapping>>,
}

impl Sealed {
    fn new(ordinal: u32, mut graph: Graph, ids: impl Into<Array<u64>>) -> Self {
        let mut ids = ids.into();
        graph.shrink_to_fit();
        ids.shrink_to_fit();
        Sealed { ordinal, graph, ids, mapping: None }
    }

    /// The sealed segment stored in `file`, searched straight from its mapping.
    pub(crate) fn from_file(layout: &Layout, file: &SegmentFile) -> crate::Result<Sealed> {
        let (graph, ids) = read_segment(layout, file)?;
        Ok(Sealed { ordinal: file.header.ordinal, graph, ids, mapping: Some(file.mapping().clone()) })
    }

    pub(crate) fn write(&self, path: &Path) -> crate::Result<()> {
        write_segment(path, self.ordinal, &self.graph, &self.ids)
    }

    pub(crate) fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.graph.heap_bytes() + self.ids.heap_bytes()
    }

    /// (mapped bytes, of which resident) for a segment read from a file.
    pub(crate) fn mapped_bytes(&self) -> (usize, usize) {
        mapped_bytes(self.mapping.as_deref())
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn search(&self, query: &[f32], k: usize, ef: Ef, out: &mut Vec<Hit>) {
        search_graph(&self.graph, &self.ids, query, k, ef, out);
    }
}

fn mapped_bytes(mapping: Option<&Mapping>) -> (usize, usize) {
    mapping.map_or((0, 0), |m| (m.bytes().len(), m.resident()))
}

fn write_segment(path: &Path, ordinal: u32, graph: &Graph, ids: &[u64]) -> crate::Result<()> {
    let ids_bytes: &[u8] = bytemuck::cast_slice(ids);
    let (graph_sections, codebook) = graph.sections();
    let mut sections = vec![(Section::Ids, ids_bytes)];
    sections.extend(graph_sections);
    if !codebook.is_empty() {
        sections.push((Section::Codebook, bytemuck::cast_slice(&codebook)));
    }
    segment_file::write(path, &graph.header(ordinal), &sections)
}

/// The graph and ids in `file`, checked against the index layout.
fn read_segment(layout: &Layout, file: &SegmentFile) -> crate::Result<(Graph, Array<u64>)> {
    let h = &file.header;
    if h.dim as usize != layout.dim {
        return Err(crate::Error::DimensionMismatch(format!(
            "{}: segment of {}-dimensional vectors, the database has {}",
            file.path().display(),
            h.dim,
            layout.dim
        )));
    }
    if h.metric != layout.distance.metric().code() {
        return Err(file.corrupt(format!("segment metric {} differs from the database's", h.metric)));
    }
    let graph = Graph::from_file(file, layout.distance)?;
    let ids = file.array(Section::Ids, graph.len())?;
    Ok((graph, ids))
}

fn search_graph(graph: &Graph, ids: &[u64], query: &[f32], k: usize, ef: Ef, out: &mut Vec<Hit>) {
    with_scratch(|s| {
        let found = graph.search(query, k, ef.ef, ef.oversample, s);
        out.extend(found.iter().map(|f| Hit { distance: f.distance, id: ids[f.node as usize] }));
    });
}

/// The segments a query sees: swapped as a whole by the writer, so a search holds one snapshot.
pub(crate) struct SegmentSet {
    pub sealed: Vec<Arc<Sealed>>,
    pub growing: Arc<Growing>,
}

impl SegmentSet {
    pub(crate) fn count(&self) -> usize {
        self.sealed.len() + usize::from(self.growing.len() > 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.sealed.iter().map(|s| s.len()).sum::<usize>() + self.growing.len()
    }

    /// Searches every segment one after another and merges into `out` (the best `k`, closest first).
    pub(crate) fn search(&self, query: &[f32], k: usize, ef: Ef, out: &mut Vec<Hit>) {
        out.clear();
        for segment in &self.sealed {
            segment.search(query, k, ef, out);
        }
        self.growing.search(query, k, ef, out);
        merge(out, k);
    }

    /// Searches the segments in parallel on the current rayon pool, then merges.
    pub(crate) fn par_search(&self, query: &[f32], k: usize, ef: Ef, out: &mut Vec<Hit>) {
        use rayon::prelude::*;
        if self.sealed.is_empty() {
            return self.search(query, k, ef, out);
        }
        let (mut hits, growing) = rayon::join(
            || {
                self.sealed
                    .par_iter()
                    .map(|segment| {
                        let mut hits = Vec::new();
                        segment.search(query, k, ef, &mut hits);
                        hits
                    })
                    .flatten_iter()
                    .collect::<Vec<_>>()
            },
            || {
                let mut hits = Vec::new();
                self.growing.search(query, k, ef, &mut hits);
                hits
            },
        );
        hits.extend(growing);
        merge(&mut hits, k);
        *out = hits;
    }
}

/// Keeps the `k` closest hits, sorted by distance then id (deterministic under ties).
fn merge(hits: &mut Vec<Hit>, k: usize) {
    hits.sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    hits.truncate(k);
}
