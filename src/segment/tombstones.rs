//! Which nodes of a segment are deleted: a bitset of atomic words, set in place by the writer
//! and read by searches without locks. Deleted nodes stay in the graph, where they still route
//! searches, until a compaction rewrites the segment without them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::hnsw::Admit;

/// The deletion marks of one segment, allocated at its first deletion (a segment without any
/// costs one pointer and searches take the path without the check).
pub(crate) struct Tombstones {
    /// Nodes the segment can ever hold: its capacity while growing, its length once sealed.
    nodes: usize,
    words: OnceLock<Box<[AtomicU64]>>,
    count: AtomicUsize,
}

impl Tombstones {
    pub(crate) fn new(nodes: usize) -> Self {
        Tombstones { nodes, words: OnceLock::new(), count: AtomicUsize::new(0) }
    }

    /// Marks read from a deletion file: `words` holds `nodes` bits.
    pub(crate) fn from_words(nodes: usize, words: &[u64]) -> Self {
        let tombstones = Tombstones::new(nodes);
        for (at, &word) in words.iter().enumerate() {
            if word != 0 {
                tombstones.words()[at].store(word, Relaxed);
                tombstones.count.fetch_add(word.count_ones() as usize, Relaxed);
            }
        }
        tombstones
    }

    fn words(&self) -> &[AtomicU64] {
        self.words.get_or_init(|| (0..self.nodes.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    /// Deleted nodes.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    pub(crate) fn is_deleted(&self, node: u32) -> bool {
        self.words.get().is_some_and(|words| words[node as usize / 64].load(Relaxed) & (1 << (node % 64)) != 0)
    }

    /// Marks `node` deleted; false when it already was. Only the writer calls this.
    pub(crate) fn delete(&self, node: u32) -> bool {
        let bit = 1u64 << (node % 64);
        let fresh = self.words()[node as usize / 64].fetch_or(bit, Relaxed) & bit == 0;
        if fresh {
            self.count.fetch_add(1, Relaxed);
        }
        fresh
    }

    /// The marks of the first `nodes` nodes as plain words, for a deletion file.
    pub(crate) fn snapshot(&self, nodes: usize) -> Vec<u64> {
        let words = nodes.div_ceil(64);
        let mut out: Vec<u64> = match self.words.get() {
            Some(marks) => marks[..words].iter().map(|w| w.load(Relaxed)).collect(),
            None => vec![0; words],
        };
        if let Some(last) = out.last_mut().filter(|_| !nodes.is_multiple_of(64)) {
            *last &= (1 << (nodes % 64)) - 1;
        }
        out
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.get().map_or(0, |words| words.len() * 8)
    }
}

/// A search returns only nodes that are not deleted.
impl Admit for Tombstones {
    #[inline]
    fn admits(&self, node: u32) -> bool {
        !self.is_deleted(node)
    }
}
