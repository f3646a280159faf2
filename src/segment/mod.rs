//! Segments: one growing segment takes inserts; a full one is sealed (compacted, immutable).
//! A batch fills the growing segment and builds new segments from the rest in parallel; a query
//! fans out over every segment and the per-segment top-k lists merge into one.

mod growing;
mod plan;
mod sealed;
mod tombstones;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

pub(crate) use crate::hnsw::GraphCheck;
pub(crate) use growing::Growing;
pub(crate) use plan::{SegmentPlan, Wanted};
pub(crate) use sealed::Sealed;
pub(crate) use tombstones::Tombstones;

use crate::distance::Distance;
use crate::error::{Error, Result};
use crate::hnsw::{read_segment, Graph, Params, StoredSegment};
use crate::memory::Mapping;
use crate::options::{Filter, Options, Plan};
use crate::storage::Source;

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

    /// Reads the segment file `source`, which the manifest says holds `count` vectors.
    fn read(&self, source: &Source<'_>, verify: bool, count: u64) -> Result<StoredSegment> {
        read_segment(source, verify, count, self.dim, self.distance)
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

/// Rows `rows` of a batch became nodes `first_node..` of segment `ordinal`: in their order, or
/// in that of `order` (offsets into `rows`) when the segment renumbered them.
pub(crate) struct Placement {
    pub ordinal: u32,
    pub first_node: u32,
    pub rows: Range<usize>,
    pub order: Vec<u32>,
}

impl Placement {
    fn new(ordinal: u32, first_node: u32, rows: Range<usize>) -> Placement {
        Placement { ordinal, first_node, rows, order: Vec::new() }
    }

    /// Each row placed here, with the node it became.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        (0..self.rows.len()).map(|at| {
            let row = self.order.get(at).map_or(at, |&offset| offset as usize);
            (self.rows.start + row, self.first_node + at as u32)
        })
    }
}

/// Where a batch is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// In parallel on the current rayon pool.
    Pool,
    /// On the calling thread alone, with no rayon call: a caller outside the index's pool would
    /// otherwise hand the work to rayon's global one.
    Caller,
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

/// Up to this fraction of a segment deleted, a compaction repairs its graph (`Graph::without`)
/// rather than rebuilding it: measured by `bench-deletes`, repair is the faster while few
/// lists lost a neighbour, and its recall matches a rebuild's.
const REPAIR_UP_TO: f64 = 0.4;

/// What a compaction rewrites: sealed segments whose graphs are repaired one by one, and sealed
/// segments pooled and rebuilt (those past `REPAIR_UP_TO` and the small ones merged), holding
/// `pooled_rows` live vectors.
pub(crate) struct CompactionPlan {
    pub repaired: Vec<u32>,
    pub pooled: Vec<u32>,
    pub pooled_rows: usize,
}

impl CompactionPlan {
    /// New segments the rewrite builds.
    pub(crate) fn segments(&self, layout: &Layout) -> usize {
        self.repaired.len() + self.pooled_rows.div_ceil(layout.capacity)
    }

    fn rewrites(&self, ordinal: u32) -> bool {
        self.repaired.contains(&ordinal) || self.pooled.contains(&ordinal)
    }
}

/// Segments a compaction built, and for each of their rows (in order) the id and the
/// (segment, node) it was copied from.
pub(crate) struct Rebuilt {
    pub segments: Vec<Arc<Sealed>>,
    pub ids: Vec<u64>,
    pub sources: Vec<(u32, u32)>,
    /// Rows of `ids` that became nodes of each new segment.
    pub placements: Vec<Placement>,
}

/// One segment of a set, growing or sealed, for what both answer alike.
#[derive(Clone, Copy)]
enum SegmentRef<'a> {
    Growing(&'a Growing),
    Sealed(&'a Sealed),
}

impl<'a> SegmentRef<'a> {
    fn len(self) -> usize {
        match self {
            SegmentRef::Growing(segment) => segment.len(),
            SegmentRef::Sealed(segment) => segment.len(),
        }
    }

    fn tombstones(self) -> &'a Tombstones {
        match self {
            SegmentRef::Growing(segment) => segment.tombstones(),
            SegmentRef::Sealed(segment) => segment.tombstones(),
        }
    }

    fn vector_into(self, node: u32, out: &mut Vec<f32>) {
        match self {
            SegmentRef::Growing(segment) => segment.vector_into(node, out),
            SegmentRef::Sealed(segment) => segment.vector_into(node, out),
        }
    }
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

    /// Vectors that are not deleted.
    pub(crate) fn len(&self) -> usize {
        self.sealed.iter().map(|s| s.live_len()).sum::<usize>() + self.growing.live_len()
    }

    /// Deleted vectors still held (until a compaction rewrites their segments).
    pub(crate) fn deleted(&self) -> usize {
        self.sealed.iter().map(|s| s.tombstones().count()).sum::<usize>() + self.growing.tombstones().count()
    }

    /// The segment with this ordinal, growing or sealed.
    fn find(&self, ordinal: u32) -> Option<SegmentRef<'_>> {
        if self.growing.ordinal() == ordinal {
            return Some(SegmentRef::Growing(&self.growing));
        }
        self.sealed.iter().find(|s| s.ordinal() == ordinal).map(|s| SegmentRef::Sealed(s))
    }

    /// The tombstones of the segment with this ordinal.
    pub(crate) fn tombstones(&self, ordinal: u32) -> Option<&Tombstones> {
        self.find(ordinal).map(|segment| segment.tombstones())
    }

    /// The node count of segment `ordinal` and its deletion marks, for its deletion file.
    pub(crate) fn deletion_marks(&self, ordinal: u32) -> (usize, Vec<u64>) {
        self.find(ordinal).map_or((0, Vec::new()), |segment| {
            let nodes = segment.len();
            (nodes, segment.tombstones().snapshot(nodes))
        })
    }

    /// Writes the stored vector of `node` in segment `ordinal` into `out`; false when this set
    /// has no such node (the caller's location is from a later set).
    pub(crate) fn vector_into(&self, ordinal: u32, node: u32, out: &mut Vec<f32>) -> bool {
        let held = self.find(ordinal).filter(|segment| (node as usize) < segment.len());
        held.map(|segment| segment.vector_into(node, out)).is_some()
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
        let mut placements = vec![Placement::new(self.growing.ordinal(), self.growing.len() as u32, 0..into_growing)];
        placements.extend((0..chunks.len()).map(|c| {
            let rows = into_growing + c * capacity..(into_growing + (c + 1) * capacity).min(ids.len());
            Placement::new(first_ordinal + c as u32, 0, rows)
        }));

        let (head_order, built) = rayon::join(
            || self.growing.add(head_ids, head_vectors, Threads::Pool),
            || {
                chunks
                    .par_iter()
                    .enumerate()
                    .map(|(i, (ids, vectors))| {
                        let segment = Growing::new(layout, first_ordinal + i as u32);
                        let order = segment.add(ids, vectors, Threads::Pool);
                        (segment, order)
                    })
                    .collect::<Vec<_>>()
            },
        );
        placements[0].order = head_order;

        let mut sealed = self.sealed.clone();
        let sealed_before = sealed.len();
        let mut growing = self.growing.clone();
        let mut next_ordinal = first_ordinal + chunks.len() as u32;
        if growing.room() == 0 {
            sealed.push(Arc::new(growing.seal()));
            growing = Arc::new(Growing::new(layout, next_ordinal));
            next_ordinal += 1;
        }
        for (placement, (segment, order)) in placements[1..].iter_mut().zip(built) {
            placement.order = order;
            if segment.room() == 0 {
                sealed.push(Arc::new(segment.into_sealed()));
            } else {
                growing = Arc::new(segment);
            }
        }
        let sealed_any = sealed.len() > sealed_before;
        Applied { set: SegmentSet { sealed, growing }, next_ordinal, sealed_any, placements }
    }

    /// Adds a checked batch on the calling thread, with no rayon call, when the growing segment
    /// can take it there (`Growing::takes_on_caller`); otherwise `None`, and nothing changed. For
    /// batches too small to repay a hand-off to the pool: the rest of `with_batch`'s work (new
    /// segments, sealing, learning codes) never happens to them. The caller serialises batches.
    pub(crate) fn with_batch_on_caller(&self, next_ordinal: u32, ids: &[u64], vectors: &[f32]) -> Option<Applied> {
        if !self.growing.takes_on_caller(ids.len()) {
            return None;
        }
        let mut placement = Placement::new(self.growing.ordinal(), self.growing.len() as u32, 0..ids.len());
        placement.order = self.growing.add(ids, vectors, Threads::Caller);
        let set = SegmentSet { sealed: self.sealed.clone(), growing: self.growing.clone() };
        Some(Applied { set, next_ordinal, sealed_any: false, placements: vec![placement] })
    }

    /// This set with its growing segment sealed (an empty one takes its place, as ordinal
    /// `next_ordinal`), so a compaction can rewrite it; node numbers and deletions stay.
    pub(crate) fn with_growing_sealed(&self, layout: &Layout, next_ordinal: u32) -> SegmentSet {
        let mut sealed = self.sealed.clone();
        sealed.push(Arc::new(self.growing.seal()));
        SegmentSet { sealed, growing: Arc::new(Growing::new(layout, next_ordinal)) }
    }

    /// The sealed segments a compaction rewrites: every one holding deleted vectors, those less
    /// than half full when there are two or more (merged), and those filled in batches
    /// (`Sealed::filled_in_batches`, rebuilt as one batch); `None` when none need it.
    pub(crate) fn compaction_plan(&self, layout: &Layout) -> Option<CompactionPlan> {
        let small = |s: &Sealed| s.live_len() * 2 < layout.capacity;
        let merge_small = self.sealed.iter().filter(|s| small(s)).count() >= 2;
        let mut plan = CompactionPlan { repaired: Vec::new(), pooled: Vec::new(), pooled_rows: 0 };
        for segment in &self.sealed {
            let deleted = segment.tombstones().count();
            let rebuilt = segment.filled_in_batches() || deleted as f64 > REPAIR_UP_TO * segment.len() as f64;
            if merge_small && small(segment) || rebuilt {
                plan.pooled.push(segment.ordinal());
                plan.pooled_rows += segment.live_len();
            } else if deleted > 0 {
                plan.repaired.push(segment.ordinal());
            }
        }
        (!plan.repaired.is_empty() || !plan.pooled.is_empty()).then_some(plan)
    }

    /// Builds the segments of `plan` from the live vectors of its segments in this set, pooled
    /// into segments of `layout.capacity` (sealed, ordinals from `first_ordinal` on), in
    /// parallel on the current rayon pool. Reads only this set, so changes made meanwhile go on.
    pub(crate) fn rebuild(&self, plan: &CompactionPlan, layout: &Layout, first_ordinal: u32) -> Rebuilt {
        let (mut ids, mut vectors, mut sources) = (Vec::new(), Vec::new(), Vec::new());
        let mut vector = Vec::with_capacity(layout.dim);
        // Repaired segments first, one new segment each, then the pooled rows.
        let repaired: Vec<&Sealed> =
            self.sealed.iter().filter(|s| plan.repaired.contains(&s.ordinal())).map(|s| &**s).collect();
        let mut placements = Vec::new();
        for (at, segment) in repaired.iter().enumerate() {
            let start = ids.len();
            for (node, &id) in
                segment.ids().iter().enumerate().filter(|&(n, _)| !segment.tombstones().is_deleted(n as u32))
            {
                ids.push(id);
                sources.push((segment.ordinal(), node as u32));
            }
            placements.push(Placement::new(first_ordinal + at as u32, 0, start..ids.len()));
        }
        let pooled_start = ids.len();
        for segment in self.sealed.iter().filter(|s| plan.pooled.contains(&s.ordinal())) {
            for (node, &id) in segment.ids().iter().enumerate() {
                if !segment.tombstones().is_deleted(node as u32) {
                    segment.vector_into(node as u32, &mut vector);
                    ids.push(id);
                    vectors.extend_from_slice(&vector);
                    sources.push((segment.ordinal(), node as u32));
                }
            }
        }
        let (capacity, dim) = (layout.capacity, layout.dim);
        let first_pooled = first_ordinal + repaired.len() as u32;
        placements.extend(
            (pooled_start..ids.len())
                .step_by(capacity)
                .enumerate()
                .map(|(c, start)| Placement::new(first_pooled + c as u32, 0, start..(start + capacity).min(ids.len()))),
        );
        let (segments, orders): (Vec<Arc<Sealed>>, Vec<Vec<u32>>) = placements
            .par_iter()
            .enumerate()
            .map(|(at, placement)| match repaired.get(at) {
                Some(segment) => {
                    let kept: Vec<u32> = sources[placement.rows.clone()].iter().map(|&(_, node)| node).collect();
                    (Arc::new(segment.repaired(placement.ordinal, &kept)), Vec::new())
                }
                None => {
                    let rows = placement.rows.clone();
                    let vectors = &vectors[(rows.start - pooled_start) * dim..(rows.end - pooled_start) * dim];
                    let segment = Growing::new(layout, placement.ordinal);
                    let order = segment.add(&ids[rows], vectors, Threads::Pool);
                    (Arc::new(segment.into_sealed()), order)
                }
            })
            .unzip();
        placements.iter_mut().zip(orders).for_each(|(placement, order)| placement.order = order);
        Rebuilt { segments, ids, sources, placements }
    }

    /// This set with the segments of `plan` replaced by `rebuilt`, whose nodes take the
    /// deletions their sources received since the rebuild read them. The caller keeps changes
    /// out meanwhile.
    pub(crate) fn with_rebuilt(&self, plan: &CompactionPlan, rebuilt: &Rebuilt) -> SegmentSet {
        for (placement, segment) in rebuilt.placements.iter().zip(&rebuilt.segments) {
            for (row, node) in placement.nodes() {
                let (ordinal, source) = rebuilt.sources[row];
                if self.tombstones(ordinal).is_some_and(|t| t.is_deleted(source)) {
                    segment.tombstones().delete(node);
                }
            }
        }
        let mut sealed: Vec<Arc<Sealed>> =
            self.sealed.iter().filter(|s| !plan.rewrites(s.ordinal())).cloned().collect();
        sealed.extend(rebuilt.segments.iter().cloned());
        SegmentSet { sealed, growing: self.growing.clone() }
    }

    /// Plans the search of every segment (sealed ones in order, then the growing one) for
    /// `filter`; `listed` holds, when the filter has an allow-list, the (ordinal, node) of each
    /// listed id this set holds.
    pub(crate) fn plan<'f>(
        &self,
        filter: &Filter<'f>,
        listed: Option<Vec<(u32, u32)>>,
        wanted: Wanted,
        plan: Plan,
    ) -> Vec<SegmentPlan<'f>> {
        let mut per_segment: Option<Vec<Vec<u32>>> = listed.map(|listed| {
            // Position of each sealed ordinal, looked up once per listed id (the growing segment
            // is last).
            let at: HashMap<u32, usize> = self.sealed.iter().enumerate().map(|(at, s)| (s.ordinal(), at)).collect();
            let mut nodes = vec![Vec::new(); self.sealed.len() + 1];
            for (ordinal, node) in listed {
                nodes[at.get(&ordinal).copied().unwrap_or(self.sealed.len())].push(node);
            }
            nodes
        });
        let mut take = |at: usize| per_segment.as_mut().map(|nodes| std::mem::take(&mut nodes[at]));
        let mut plans: Vec<_> =
            self.sealed.iter().enumerate().map(|(at, s)| s.plan(filter, take(at), wanted, plan)).collect();
        plans.push(self.growing.plan(filter, take(self.sealed.len()), wanted, plan));
        plans
    }

    /// Searches every segment as `plans` say, one after another, and merges into `out` (the
    /// best `k` or `limit`, closest first).
    pub(crate) fn search(&self, query: &[f32], wanted: Wanted, plans: &[SegmentPlan], out: &mut Vec<SearchResult>) {
        out.clear();
        for (segment, plan) in self.sealed.iter().zip(plans) {
            segment.search(query, wanted, plan, out);
        }
        self.growing.search(query, wanted, &plans[self.sealed.len()], out);
        merge(out, wanted.count());
    }

    /// [`SegmentSet::search`] with the segments searched in parallel on the current rayon pool.
    pub(crate) fn par_search(&self, query: &[f32], wanted: Wanted, plans: &[SegmentPlan], out: &mut Vec<SearchResult>) {
        if self.sealed.is_empty() {
            return self.search(query, wanted, plans, out);
        }
        let (mut hits, growing) = rayon::join(
            || {
                self.sealed
                    .par_iter()
                    .zip(plans)
                    .map(|(segment, plan)| {
                        let mut hits = Vec::new();
                        segment.search(query, wanted, plan, &mut hits);
                        hits
                    })
                    .flatten_iter()
                    .collect::<Vec<_>>()
            },
            || {
                let mut hits = Vec::new();
                self.growing.search(query, wanted, &plans[self.sealed.len()], &mut hits);
                hits
            },
        );
        hits.extend(growing);
        merge(&mut hits, wanted.count());
        *out = hits;
    }
}

/// Keeps the `k` closest hits, sorted by distance then id (deterministic under ties), one per
/// id: while an upsert is being applied, its id's old and new vectors may both be found.
fn merge(hits: &mut Vec<SearchResult>, k: usize) {
    hits.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.distance.total_cmp(&b.distance)));
    hits.dedup_by_key(|hit| hit.id);
    hits.sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    hits.truncate(k);
}
