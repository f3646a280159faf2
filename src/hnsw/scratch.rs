//! Per-thread search state, reused across queries so a search allocates nothing in steady state.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A node with its distance to the current query. Ordered by distance, then node, so that every
/// sort and heap is deterministic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub distance: f32,
    pub node: u32,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.node.cmp(&other.node))
    }
}

/// Visited marks stamped with a generation number, so clearing between searches is O(1)
/// (one full reset every 65,535 searches).
#[derive(Default)]
pub(crate) struct Visited {
    marks: Vec<u16>,
    stamp: u16,
}

impl Visited {
    /// Starts a new search over `len` nodes.
    pub fn begin(&mut self, len: usize) {
        if self.marks.len() < len {
            self.marks.resize(len, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
    }

    /// Marks `node`; true when it was not yet visited in this search.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.stamp;
        *mark = self.stamp;
        fresh
    }
}

/// What a layer-0 search keeps of the rings of copies it meets.
#[derive(Default)]
pub(crate) struct Rings {
    /// Copies reached through rings: kept apart from the beam, so the copies of one vector take
    /// one place in it rather than all of it.
    pub copies: Vec<Scored>,
    /// The first node met of each vector that has copies (copies score alike, so a distance
    /// picks the one to compare high halves with).
    pub met: Vec<Scored>,
}

/// Everything one search or one insertion needs (the paper's symbols in brackets).
#[derive(Default)]
pub(crate) struct Scratch {
    pub visited: Visited,
    /// Nodes still to expand, closest first [C].
    pub candidates: BinaryHeap<Reverse<Scored>>,
    /// The best `ef` found so far, farthest on top [W].
    pub results: BinaryHeap<Scored>,
    /// `results` drained in ascending order after a layer search (with the copies that tie them).
    pub found: Vec<Scored>,
    /// Copies met through rings during a layer-0 search.
    pub rings: Rings,
    /// Entry points for the next layer [ep].
    pub seeds: Vec<Scored>,
    /// Neighbours chosen by the heuristic.
    pub selected: Vec<Scored>,
    /// One node's neighbour list, copied out of the graph.
    pub neighbors: Vec<u32>,
    /// The neighbours of a refused neighbour, during a two-hop walk.
    pub hop: Vec<u32>,
    /// The refused neighbours of the node a two-hop walk expands.
    pub refused: Vec<u32>,
    /// A range search's results: the admitted nodes within the radius, farthest on top.
    pub within: BinaryHeap<Scored>,
    /// Neighbours not yet visited, waiting for their distances.
    pub unvisited: Vec<u32>,
    /// Candidates while re-pruning an overfull list.
    pub prune: Vec<Scored>,
    /// (layer, neighbour) pairs that still need a link back to the node being inserted.
    pub back_links: Vec<(usize, Scored)>,
    /// What the heuristic keeps of `prune`.
    pub pruned: Vec<Scored>,
    /// The ends of the candidates' distance intervals while pruning re-scoring.
    pub interval_ends: Vec<f32>,
    /// The exact vector of the node being inserted.
    pub query: Vec<f32>,
    /// The coarse vector of the node whose list is being re-pruned.
    pub base: Vec<f32>,
    /// One vector at a time: exact when re-scoring results, coarse for a heuristic candidate.
    pub vector: Vec<f32>,
}

impl Scratch {
    /// Marks `neighbors` visited and appends those that were not to `unvisited`.
    pub(crate) fn take_unvisited_neighbors(&mut self) {
        for &n in &self.neighbors {
            if self.visited.insert(n) {
                self.unvisited.push(n);
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        // Only reachable if a search were re-entered on one thread; stay correct, just slower.
        Err(_) => f(&mut Scratch::default()),
    })
}
