//! Segments: one growing segment takes inserts; a full one is sealed (compacted, immutable).
//! A batch fills the growing segment and builds new segments from the rest in parallel; a query
//! fans out over every segment and the per-segment top-k lists merge into one.

mod growing;
mod sealed;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

pub(crate) use growing::Growing;
pub(crate) use sealed::Sealed;

use crate::distance::Distance;
use crate::error::{Error, Result};
use crate::hnsw::{read_segment, with_scratch, Graph, Params, StoredSegment};
use crate::memory::Mapping;
use crate::options::{Options, SearchParams};

/// One neighbour of a query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchResult {
    pub id: u64,
    /// Distance under the index metric (smaller is closer).
    pub distance: f32,
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
    /// The layout `options` ask for.
    pub(crate) fn of(options: &Options) -> Layout {
        let params = Params {
            m: options.m,
            ef_construction: options.ef_construction,
            seed: options.seed,
            quantization: options.quantization,
        };
        Layout { dim: options.dim, capacity: options.segment_capacity, params, distance: Distance::new(options.metric) }
    }

    /// Reads the segment file at `path`, which the manifest says holds `count` vectors.
    fn read(&self, path: &Path, verify: bool, count: u64) -> Result<StoredSegment> {
        read_segment(path, verify, count, self.dim, self.distance)
    }

    /// Each segment draws its levels from its own stream, so segments built in parallel stay
    /// reproducible.
    fn graph(&self, ordinal: u32) -> Graph {
        let params =
            Params { seed: self.params.seed ^ u64::from(ordinal).wrapping_mul(0xD1B5_4A32_D192_ED03), ..self.params };
        Graph::new(self.dim, params, self.distance)
    }
}

fn mapped_bytes(mapping: Option<&Mapping>) -> (usize, usize) {
    mapping.map_or((0, 0), |m| (m.bytes().len(), m.resident()))
}

fn search_graph(
    graph: &Graph,
    ids: &[u64],
    query: &[f32],
    k: usize,
    params: SearchParams,
    out: &mut Vec<SearchResult>,
) {
    with_scratch(|s| {
        let found = graph.search(query, k, params, s);
        out.extend(found.iter().map(|f| SearchResult { distance: f.distance, id: ids[f.node as usize] }));
    });
}

/// Rows `rows` of a batch became nodes `first_node..` of segment `ordinal`.
pub(crate) struct Placement {
    pub ordinal: u32,
    pub first_node: u32,
    pub rows: Range<usize>,
}

/// The segments after a batch, and where its rows went.
pub(crate) struct Applied {
    pub set: SegmentSet,
    /// The ordinal the next new segment takes.
    pub next_ordinal: u32,
    /// Whether a segment was sealed (a checkpoint then writes it).
    pub sealed_any: bool,
    pub placements: Vec<Placement>,
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

    /// Fails unless a batch of `rows` vectors can take segment ordinals from `next_ordinal` on:
    /// one per full segment it builds plus one for a new growing segment.
    pub(crate) fn check_room(&self, layout: &Layout, next_ordinal: u32, rows: usize) -> Result<()> {
        let rest = rows - self.growing.room().min(rows);
        u32::try_from(rest.div_ceil(layout.capacity) + 1)
            .ok()
            .and_then(|n| next_ordinal.checked_add(n))
            .map(drop)
            .ok_or_else(|| Error::InvalidArgument("the index cannot hold more segments".into()))
    }

    /// Adds a checked batch (`check_room` passed), in parallel on the current rayon pool: the
    /// growing segment takes what it has room for, in place; the rest becomes new segments of
    /// `layout.capacity` vectors built side by side, sealed when full. A growing segment that
    /// fills up is sealed and replaced by an empty one. The caller serialises batches.
    pub(crate) fn with_batch(&self, layout: &Layout, next_ordinal: u32, ids: &[u64], vectors: &[f32]) -> Applied {
        let dim = layout.dim;
        let capacity = layout.capacity;
        let into_growing = self.growing.room().min(ids.len());
        let (head_ids, rest_ids) = ids.split_at(into_growing);
        let (head_vectors, rest_vectors) = vectors.split_at(into_growing * dim);
        let chunks: Vec<_> = rest_ids.chunks(capacity).zip(rest_vectors.chunks(capacity * dim)).collect();
        let first_ordinal = next_ordinal;
        let mut placements = vec![Placement {
            ordinal: self.growing.ordinal(),
            first_node: self.growing.len() as u32,
            rows: 0..into_growing,
        }];
        placements.extend((0..chunks.len()).map(|c| Placement {
            ordinal: first_ordinal + c as u32,
            first_node: 0,
            rows: into_growing + c * capacity..(into_growing + (c + 1) * capacity).min(ids.len()),
        }));

        let (_, built) = rayon::join(
            || self.growing.add(head_ids, head_vectors),
            || {
                chunks
                    .par_iter()
                    .enumerate()
                    .map(|(i, (ids, vectors))| {
                        let segment = Growing::new(layout, first_ordinal + i as u32);
                        segment.add(ids, vectors);
                        segment
                    })
                    .collect::<Vec<_>>()
            },
        );

        let mut sealed = self.sealed.clone();
        let sealed_before = sealed.len();
        let mut growing = self.growing.clone();
        let mut next_ordinal = first_ordinal + chunks.len() as u32;
        if growing.room() == 0 {
            sealed.push(Arc::new(growing.seal()));
            growing = Arc::new(Growing::new(layout, next_ordinal));
            next_ordinal += 1;
        }
        for segment in built {
            if segment.room() == 0 {
                sealed.push(Arc::new(segment.into_sealed()));
            } else {
                growing = Arc::new(segment);
            }
        }
        let sealed_any = sealed.len() > sealed_before;
        Applied { set: SegmentSet { sealed, growing }, next_ordinal, sealed_any, placements }
    }

    /// Searches every segment one after another and merges into `out` (the best `k`, closest first).
    pub(crate) fn search(&self, query: &[f32], k: usize, params: SearchParams, out: &mut Vec<SearchResult>) {
        out.clear();
        for segment in &self.sealed {
            segment.search(query, k, params, out);
        }
        self.growing.search(query, k, params, out);
        merge(out, k);
    }

    /// Searches the segments in parallel on the current rayon pool, then merges.
    pub(crate) fn par_search(&self, query: &[f32], k: usize, params: SearchParams, out: &mut Vec<SearchResult>) {
        if self.sealed.is_empty() {
            return self.search(query, k, params, out);
        }
        let (mut hits, growing) = rayon::join(
            || {
                self.sealed
                    .par_iter()
                    .map(|segment| {
                        let mut hits = Vec::new();
                        segment.search(query, k, params, &mut hits);
                        hits
                    })
                    .flatten_iter()
                    .collect::<Vec<_>>()
            },
            || {
                let mut hits = Vec::new();
                self.growing.search(query, k, params, &mut hits);
                hits
            },
        );
        hits.extend(growing);
        merge(&mut hits, k);
        *out = hits;
    }
}

/// Keeps the `k` closest hits, sorted by distance then id (deterministic under ties).
fn merge(hits: &mut Vec<SearchResult>, k: usize) {
    hits.sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    hits.truncate(k);
}
