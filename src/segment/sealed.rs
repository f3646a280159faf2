//! A sealed segment: immutable, compacted, on the heap or mapped from its file.

use std::path::Path;
use std::sync::Arc;

use super::{mapped_bytes, Layout, SearchResult, SegmentPlan, Tombstones, Wanted};
use crate::error::Result;
use crate::hnsw::{write_segment, Graph, GraphCheck, StoredSegment};
use crate::memory::{Array, Mapping};
use crate::options::{Filter, Plan};
use crate::storage::Source;

pub(crate) struct Sealed {
    ordinal: u32,
    graph: Graph,
    ids: Array<u64>,
    /// Shared with the growing segment this one was sealed from, which searches may still hold.
    tombstones: Arc<Tombstones>,
    /// The file mapping the arrays live in, if they were read from one.
    mapping: Option<Arc<Mapping>>,
    /// Sealed from a growing segment filled in batches (`Growing::filled_in_batches`), which a
    /// compaction rebuilds as one batch. False for a segment read from a file, whose batches are
    /// not recorded.
    in_batches: bool,
}

impl Sealed {
    pub(super) fn new(
        ordinal: u32,
        mut graph: Graph,
        ids: impl Into<Array<u64>>,
        tombstones: Arc<Tombstones>,
        in_batches: bool,
    ) -> Self {
        let mut ids = ids.into();
        graph.shrink_to_fit();
        ids.shrink_to_fit();
        Sealed { ordinal, graph, ids, tombstones, mapping: None, in_batches }
    }

    /// The sealed segment in the file `source` (holding `count` vectors, as the manifest
    /// says), searched straight from its mapping. `verify` checks every section checksum.
    /// `deleted` holds the marks of its deletion file, if it has one.
    pub(crate) fn open(
        layout: &Layout,
        source: &Source<'_>,
        verify: bool,
        count: u64,
        deleted: Option<&[u64]>,
    ) -> Result<Sealed> {
        let StoredSegment { ordinal, graph, ids, mapping } = layout.read(source, verify, count)?;
        let tombstones = Arc::new(Tombstones::from_words(ids.len(), deleted.unwrap_or_default()));
        Ok(Sealed { ordinal, graph, ids, tombstones, mapping: Some(mapping), in_batches: false })
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        write_segment(path, self.ordinal, &self.graph, &self.ids)
    }

    /// Checks the graph's structure (see `Graph::check`).
    pub(crate) fn check(&self) -> GraphCheck {
        self.graph.check()
    }

    pub(crate) fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.graph.heap_bytes() + self.ids.heap_bytes() + self.tombstones.heap_bytes()
    }

    /// (mapped bytes, of which resident) for a segment read from a file.
    pub(crate) fn mapped_bytes(&self) -> (usize, usize) {
        mapped_bytes(self.mapping.as_deref())
    }

    /// Nodes, deleted ones included.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn live_len(&self) -> usize {
        self.len() - self.tombstones.count()
    }

    pub(crate) fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Whether a compaction should rebuild this segment as one batch (see `in_batches`).
    pub(crate) fn filled_in_batches(&self) -> bool {
        self.in_batches
    }

    /// `node`'s stored vector, into `out`.
    pub(crate) fn vector_into(&self, node: u32, out: &mut Vec<f32>) {
        self.graph.vector_into(node, out);
    }

    /// This segment with only the nodes `kept` (ascending), as segment `ordinal`: the graph
    /// repaired (`Graph::without`), their ids in order, nothing deleted. The caller lists the
    /// nodes once, as deletes may go on meanwhile. Parallel on the current rayon pool.
    pub(crate) fn repaired(&self, ordinal: u32, kept: &[u32]) -> Sealed {
        let mut keep = vec![false; self.len()];
        kept.iter().for_each(|&node| keep[node as usize] = true);
        let deleted = |node: u32| !keep[node as usize];
        let graph = self.graph.without(&deleted);
        let ids: Vec<u64> =
            self.ids.iter().enumerate().filter(|&(node, _)| !deleted(node as u32)).map(|(_, &id)| id).collect();
        let tombstones = Arc::new(Tombstones::new(ids.len()));
        // A compaction pools the segments filled in batches instead of repairing them.
        Sealed::new(ordinal, graph, ids, tombstones, false)
    }

    pub(crate) fn plan<'f>(
        &self,
        filter: &Filter<'f>,
        listed: Option<Vec<u32>>,
        wanted: Wanted,
        plan: Plan,
    ) -> SegmentPlan<'f> {
        SegmentPlan::new(&self.tombstones, &self.ids, filter, listed, wanted, plan)
    }

    pub(crate) fn search(&self, query: &[f32], wanted: Wanted, plan: &SegmentPlan, out: &mut Vec<SearchResult>) {
        plan.search(&self.graph, &self.ids, &self.tombstones, query, wanted, out);
    }
}
