//! Searching one graph: greedy descent through the upper layers, then a beam of width `ef` on
//! layer 0, ranked by the bfloat16 halves or by quantized codes, and exact re-scoring of the best.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering::Acquire;

use super::scratch::{Rings, Scored, Scratch, Visited};
use super::{unpack, Graph, NO_ENTRY};
use crate::distance::prefetch_all;
use crate::options::SearchParams;
use crate::quant::{self, Codes, QuantKernels, QueryCode};

/// How a walk ranks the nodes it visits: cheaply, to choose where to go and what to re-score.
pub(super) trait Walk {
    fn distance(&self, node: u32) -> f32;
    /// Starts loading what `distance` will read for `node`.
    fn prefetch(&self, node: u32);
}

/// Which nodes a search may return. Nodes it refuses (deleted ones) are still walked through, as
/// they still route, but never enter the beam's results, and the beam keeps going until it holds
/// `ef` admitted nodes (or has visited everything it reaches).
pub(crate) trait Admit {
    fn admits(&self, node: u32) -> bool;
}

/// Admits every node: the path of a graph with nothing deleted, compiled without the check.
pub(crate) struct Everyone;

impl Admit for Everyone {
    #[inline(always)]
    fn admits(&self, _node: u32) -> bool {
        true
    }
}

/// Ranks by the bfloat16 high halves of the vectors (building, and searches without codes).
pub(super) struct CoarseWalk<'a> {
    pub graph: &'a Graph,
    pub query: &'a [f32],
}

impl Walk for CoarseWalk<'_> {
    #[inline]
    fn distance(&self, node: u32) -> f32 {
        self.graph.distance.coarse(self.query, self.graph.vectors.high(node))
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        prefetch_all(self.graph.vectors.high(node));
    }
}

/// Ranks by quantized codes.
struct CodeWalk<'a> {
    codes: &'a Codes,
    query: &'a QueryCode,
    kernels: QuantKernels,
}

impl Walk for CodeWalk<'_> {
    #[inline]
    fn distance(&self, node: u32) -> f32 {
        let norm = self.codes.norms.get(node as usize).copied().unwrap_or(0.0);
        self.query.distance(&self.kernels, self.codes.code(node), norm)
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        prefetch_all(self.codes.code(node));
    }
}

impl Graph {
    /// Greedy walk on one layer: move to the closest neighbour until none is closer.
    fn greedy(&self, walk: &impl Walk, mut current: Scored, level: usize, s: &mut Scratch) -> Scored {
        loop {
            self.copy_neighbors(current.node, level, &mut s.neighbors);
            let before = current.node;
            for &n in &s.neighbors {
                let distance = walk.distance(n);
                if distance < current.distance {
                    current = Scored { distance, node: n };
                }
            }
            if current.node == before {
                return current;
            }
        }
    }

    /// Beam search on one layer from `s.seeds`; leaves the best `ef` in `s.found`, closest first,
    /// and on layer 0 the copies that tie them in `s.rings.copies`.
    ///
    /// On layer 0, when a node enters the beam, its ring of copies is walked and marked visited:
    /// the copies are expanded in turn, but kept apart from the beam (`s.rings.copies`, up to `ef` of
    /// them) and joined to the results only at the end. Copies of one vector then take one
    /// place in the beam; a beam full of copies at one distance would end the search there,
    /// since nothing else could beat the worst of them.
    ///
    /// Nodes `admit` refuses are expanded like the others but kept out of the results [W], so the
    /// beam holds `ef` admitted nodes when it ends.
    pub(super) fn search_layer(&self, walk: &impl Walk, admit: &impl Admit, ef: usize, level: usize, s: &mut Scratch) {
        s.visited.begin(self.len());
        s.candidates.clear();
        s.results.clear();
        s.rings.copies.clear();
        s.rings.met.clear();
        let rings = level == 0 && self.has_rings.load(Acquire);
        for &seed in &s.seeds {
            if s.visited.insert(seed.node) {
                s.candidates.push(Reverse(seed));
                if admit.admits(seed.node) {
                    s.results.push(seed);
                }
                if rings {
                    self.admit_ring(walk, seed, ef, &mut s.rings, &mut s.visited, &mut s.candidates);
                }
            }
        }
        while s.results.len() > ef {
            s.results.pop();
        }
        while let Some(Reverse(closest)) = s.candidates.pop() {
            let worst = s.results.peek().map_or(f32::INFINITY, |w| w.distance);
            if closest.distance > worst && s.results.len() >= ef {
                break;
            }
            if let Some(Reverse(next)) = s.candidates.peek() {
                prefetch_all(self.list(next.node, level));
            }
            self.copy_neighbors(closest.node, level, &mut s.neighbors);
            // Mark first, then compute while the next vectors load: each distance reads a whole
            // vector, and keeping the next LOOKAHEAD of them in flight overlaps their misses
            // (measured on npm51k: +17-26% queries/s over prefetching one line of each; fetching
            // all of them at once floods the line-fill buffers and is slower).
            const LOOKAHEAD: usize = 4;
            s.unvisited.clear();
            for &n in &s.neighbors {
                if s.visited.insert(n) {
                    s.unvisited.push(n);
                }
            }
            for &n in s.unvisited.iter().take(LOOKAHEAD) {
                walk.prefetch(n);
            }
            for (i, &n) in s.unvisited.iter().enumerate() {
                if let Some(&ahead) = s.unvisited.get(i + LOOKAHEAD) {
                    walk.prefetch(ahead);
                }
                let distance = walk.distance(n);
                let full = s.results.len() >= ef;
                if !full || distance < s.results.peek().map_or(f32::INFINITY, |w| w.distance) {
                    let scored = Scored { distance, node: n };
                    if rings && !self.admit_ring(walk, scored, ef, &mut s.rings, &mut s.visited, &mut s.candidates) {
                        continue;
                    }
                    s.candidates.push(Reverse(scored));
                    if admit.admits(n) {
                        s.results.push(scored);
                        if full {
                            s.results.pop();
                        }
                    }
                }
            }
        }
        let full = s.results.len() >= ef;
        let worst = s.results.peek().map_or(f32::INFINITY, |w| if full { w.distance } else { f32::INFINITY });
        s.rings.copies.retain(|c| c.distance <= worst && admit.admits(c.node));
        s.found.clear();
        s.found.extend(s.results.drain());
        s.found.sort_unstable();
    }

    /// Decides where `scored`, about to enter the beam on layer 0, goes: false when it is a copy
    /// of a ring member met before (equal high halves), which then joins `s.rings.copies` instead,
    /// unexpanded. The first node met of each vector enters the beam. Either way the copies
    /// after it in its ring are walked (until `ef` copies were collected in all), marked visited
    /// and queued, to be expanded in turn; one vector's copies may lie in several rings (copies
    /// inserted at once that did not see each other), and each ring is walked when first met.
    fn admit_ring(
        &self,
        walk: &impl Walk,
        scored: Scored,
        ef: usize,
        rings: &mut Rings,
        visited: &mut Visited,
        candidates: &mut BinaryHeap<Reverse<Scored>>,
    ) -> bool {
        let Some(mut next) = self.ring_next(scored.node) else { return true };
        let high = self.vectors.high(scored.node);
        let met = rings.met.iter().any(|met| met.distance == scored.distance && self.vectors.high(met.node) == high);
        if met {
            rings.copies.push(scored);
        } else {
            rings.met.push(scored);
        }
        while rings.copies.len() < ef {
            if !visited.insert(next) {
                break;
            }
            let copy = Scored { distance: walk.distance(next), node: next };
            rings.copies.push(copy);
            candidates.push(Reverse(copy));
            match self.ring_next(next) {
                Some(after) => next = after,
                None => break,
            }
        }
        !met
    }

    /// Greedy descent from the packed `entry` down to layer `level + 1`.
    pub(super) fn descend(&self, walk: &impl Walk, level: usize, entry: u64, s: &mut Scratch) -> Scored {
        let (node, top) = unpack(entry);
        self.descend_from(walk, level, Scored { distance: walk.distance(node), node }, top, s)
    }

    /// Greedy descent from `current` (on layer `top`) down to layer `level + 1`.
    fn descend_from(&self, walk: &impl Walk, level: usize, mut current: Scored, top: usize, s: &mut Scratch) -> Scored {
        for l in (level + 1..=top).rev() {
            current = self.greedy(walk, current, l, s);
        }
        current
    }

    /// The `k` nearest nodes to `query`, closest first, with exact distances.
    ///
    /// Without codes the walk ranks by the bfloat16 halves with a beam of `max(ef, k)`, and all
    /// of the beam is re-scored exactly. With codes it ranks by them, with a beam of
    /// `max(ef, k * oversample)`, and re-scores the best `max(k * oversample, ef / 2)`
    /// (`oversample` 0: the code's default).
    /// Only nodes `admit` admits are returned.
    pub(crate) fn search<'s>(
        &self,
        query: &[f32],
        k: usize,
        params: SearchParams,
        admit: &impl Admit,
        s: &'s mut Scratch,
    ) -> &'s [Scored] {
        let SearchParams { ef, oversample } = params;
        let entry = self.entry.load(Acquire);
        s.found.clear();
        if entry == NO_ENTRY || k == 0 {
            return &s.found;
        }
        let rescored = match &self.codes {
            None => {
                let walk = CoarseWalk { graph: self, query };
                self.walk_layer0(&walk, admit, ef.max(k), entry, s);
                s.found.len()
            }
            Some(codes) => {
                let oversample = if oversample == 0 { codes.codebook.kind.default_oversample() } else { oversample };
                let candidates = k.saturating_mul(oversample);
                let kernels = quant::best_kernels();
                let prepared = QueryCode::new(&codes.codebook, self.distance.metric(), query, &kernels);
                let walk = CodeWalk { codes, query: &prepared, kernels };
                self.walk_layer0(&walk, admit, ef.max(candidates), entry, s);
                // Half the beam at least, so a wider beam still raises recall where the codes
                // rank poorly (as re-scoring the whole beam does without codes).
                candidates.max(ef / 2).min(s.found.len())
            }
        };
        // Copies join the walk's best when they rank among them: they must not take the places
        // of distinct candidates, or a thousand copies would push the answer out.
        s.found.truncate(rescored);
        let last = s.found.last().map_or(f32::INFINITY, |f| f.distance);
        s.rings.copies.retain(|c| c.distance <= last);
        s.rings.copies.truncate(ef.max(k));
        s.found.append(&mut s.rings.copies);
        // Rank them exactly. Their low halves (with codes, all of them) were never read: keep
        // the next few loading while each is re-scored, as in `search_layer`.
        const LOOKAHEAD: usize = 4;
        let prefetch = |node| match self.codes {
            None => self.vectors.prefetch_low(node),
            Some(_) => self.vectors.prefetch_exact(node),
        };
        for found in s.found.iter().take(LOOKAHEAD) {
            prefetch(found.node);
        }
        for i in 0..s.found.len() {
            if let Some(ahead) = s.found.get(i + LOOKAHEAD) {
                prefetch(ahead.node);
            }
            self.vectors.exact_into(s.found[i].node, &mut s.vector);
            s.found[i].distance = self.distance.eval(query, &s.vector);
        }
        s.found.sort_unstable();
        s.found.truncate(k);
        &s.found
    }

    /// Descends from `entry` and beam-searches layer 0 with `ef`, ranking by `walk`. The beam
    /// starts from the entry point too: then a beam as wide as the graph visits everything the
    /// entry point reaches, which is what the reachability pass (`connect`) guarantees, whatever
    /// node the descent ended at. (The descent scored the entry point already; a far one is
    /// never expanded.)
    pub(super) fn walk_layer0(&self, walk: &impl Walk, admit: &impl Admit, ef: usize, entry: u64, s: &mut Scratch) {
        let (node, top) = unpack(entry);
        let at_entry = Scored { distance: walk.distance(node), node };
        let start = self.descend_from(walk, 0, at_entry, top, s);
        s.seeds.clear();
        s.seeds.push(start);
        if start.node != node {
            s.seeds.push(at_entry);
        }
        self.search_layer(walk, admit, ef, 0, s);
    }
}
