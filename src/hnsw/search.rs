//! Searching one graph: greedy descent through the upper layers, then a beam of width `ef` on
//! layer 0, ranked by the bfloat16 halves or by quantized codes, and exact re-scoring of the best.

use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::atomic::Ordering::Acquire;

use super::scratch::{Beam, Rings, Scored, Scratch, Visited};
use super::{unpack, Graph, NO_ENTRY};
use crate::distance::{prefetch_all, Metric};
use crate::options::SearchParams;
use crate::quant::{self, CodeRows, QuantKernels, QueryCode};

/// How far ahead a walk loads what its distances read. Each distance reads a whole vector (or
/// code), and keeping the next few in flight overlaps their misses (measured on npm51k: +17-26%
/// queries/s over prefetching one line of each; fetching all of them at once floods the
/// line-fill buffers and is slower). Six ahead beat four by 2-4% with every code, on npm51k and
/// at 1M (interleaved in one process).
const LOOKAHEAD: usize = 6;

/// How many deviations of its error a binary code's estimate may lie above the k-th exact
/// distance before the candidate is ruled out unread. At 3, npm51k (oversample 5) lost 0.001-0.002
/// of recall; at 4 its recall held at every ef (one graph) while 1% of the candidates went, and
/// on 1536-d clustered vectors 79% went (+39% queries/s at the default oversample).
const ESTIMATE_DEVIATIONS: f32 = 4.0;

/// How many codes of one cache line each (binary codes up to 384-d, 4-bit codes up to 128-d) a
/// code walk keeps loading: an expansion's whole list of neighbours at once, as a list is about
/// this long and one line a code does not flood the line-fill buffers. Binary codes on npm51k:
/// +6.8% queries/s over `LOOKAHEAD` (one graph, both settings interleaved; within 2% at 1M and
/// in cache, where the codes miss every level or none); codes of three lines (4-bit at 384-d)
/// lost 2-7% at 10 or 21 ahead, so longer codes keep `LOOKAHEAD`.
const ONE_LINE_LOOKAHEAD: usize = 16;

/// How many codes of two lines each (8-bit codes up to 128-d, 4-bit up to 256-d) a code walk
/// keeps loading. 1M clustered 128-d, 8-bit, one graph, both orders (Intel Xeon): +0.1% and
/// +4.4% queries/s at ef 64, +1.8% and +1.9% at ef 96, +2.3% and +2.3% at ef 128 over
/// `LOOKAHEAD`; an earlier round on the AMD EPYC found ten within noise of six.
const TWO_LINE_LOOKAHEAD: usize = 10;

/// The bytes a layer-0 walk may read (for every node, what the walk ranks it by and its list)
/// from which it expands its two closest candidates at once, in one batch of distances: where
/// they are more than a large L3 holds, each expansion waits on memory, and a batch of two
/// overlaps the loads of both (a list's then its neighbours'). One graph, both settings
/// interleaved, AMD EPYC Zen 4 (32 MB L3): 1M clustered 128-d L2 searches, 4-bit +4.6% to +7.2%,
/// no codes +4.8% to +7.8%; 200K, 4-bit +6-8%; builds at 1M +15-19% with the same recall. Below
/// it, in cache, the second expansion often ranks nodes the first would have made needless:
/// npm51k 4-bit (16.5 MB) -2.2% to +0.6%, 10,000 vectors -4.8%.
pub(super) const PAIRED_FROM: usize = 32 << 20;

/// How a walk ranks the nodes it visits: cheaply, to choose where to go and what to re-score.
pub(super) trait Walk {
    fn distance(&self, node: u32) -> f32;
    /// The bytes `distance` reads for a node.
    fn bytes_per_node(&self) -> usize;
    /// Starts loading what `distance` will read for `node`.
    fn prefetch(&self, node: u32);

    /// The distances to `nodes`, in order, into `out`, each node's reads loading `LOOKAHEAD`
    /// nodes ahead.
    fn distances(&self, nodes: &[u32], out: &mut Vec<f32>) {
        one_by_one(self, nodes, out);
    }
}

/// What one expansion of a layer walk left to do.
#[derive(Clone, Copy, Debug)]
enum Step {
    Expanded,
    /// Every node in the beam lies within its bound, so the walk ends when all were expanded.
    Done,
    /// `reach.budget` distances were used up: the results are incomplete.
    OutOfBudget,
}

/// What a layer walk carries from one expansion to the next besides its scratch.
struct LayerWalk {
    budget: usize,
    rings: bool,
    paired: bool,
    two_hop: bool,
}

/// `Walk::distances` by one `distance` call a node.
fn one_by_one(walk: &(impl Walk + ?Sized), nodes: &[u32], out: &mut Vec<f32>) {
    out.clear();
    for &n in nodes.iter().take(LOOKAHEAD) {
        walk.prefetch(n);
    }
    for (i, &n) in nodes.iter().enumerate() {
        if let Some(&ahead) = nodes.get(i + LOOKAHEAD) {
            walk.prefetch(ahead);
        }
        out.push(walk.distance(n));
    }
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

/// How far a layer-0 walk may go, and how it steps past nodes it may not return.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reach {
    /// Distances the walk may compute before it gives up (the caller then scans instead).
    pub budget: usize,
    /// Steps over refused neighbours to their admitted neighbours instead of ranking them
    /// (ACORN-1, Patel et al. 2024): at low selectivity most neighbours are refused, and ranking
    /// them costs a vector read each where their links cost one line.
    pub two_hop: bool,
}

impl Reach {
    /// No limit, every neighbour ranked: building, and walks with few refusals.
    pub(crate) const FULL: Reach = Reach { budget: usize::MAX, two_hop: false };
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

    fn bytes_per_node(&self) -> usize {
        2 * self.graph.dim
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        prefetch_all(self.graph.vectors.high(node));
    }
}

/// Ranks by quantized codes.
struct CodeWalk<'a> {
    rows: CodeRows<'a>,
    query: &'a QueryCode,
    kernels: QuantKernels,
}

impl Walk for CodeWalk<'_> {
    #[inline]
    fn distance(&self, node: u32) -> f32 {
        self.query.distance(&self.kernels, self.rows.code(node), self.rows.norm(node))
    }

    fn bytes_per_node(&self) -> usize {
        self.rows.len + if self.rows.norms.is_empty() { 0 } else { 4 }
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        self.rows.prefetch(node);
    }

    fn distances(&self, nodes: &[u32], out: &mut Vec<f32>) {
        let ahead = match self.rows.len {
            0..=64 => ONE_LINE_LOOKAHEAD,
            65..=128 => TWO_LINE_LOOKAHEAD,
            _ => LOOKAHEAD,
        };
        if !self.query.distances(&self.kernels, self.rows, nodes, ahead, out) {
            one_by_one(self, nodes, out);
        }
    }
}

impl Graph {
    /// Greedy walk on one layer: move to the closest neighbour until none is closer.
    fn greedy(&self, walk: &impl Walk, mut current: Scored, level: usize, s: &mut Scratch) -> Scored {
        loop {
            self.copy_neighbors(current.node, level, &mut s.neighbors);
            let before = current.node;
            // One batch a list, as on layer 0: with codes, a kernel call a node cost about as
            // much as its sum (10,000 of npm51k, one graph, both interleaved: 4-bit +2.9%,
            // +3.2%; npm51k 4-bit +3.5%, 8-bit +3.9%; no codes within 2%).
            walk.distances(&s.neighbors, &mut s.distances);
            for (&n, &distance) in s.neighbors.iter().zip(&s.distances) {
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
    /// beam holds `ef` admitted nodes when it ends; with `reach.two_hop` they are not ranked
    /// at all, their admitted neighbours are taken in their place.
    ///
    /// On layer 0 of a graph whose walk may read `PAIRED_FROM` bytes or more, the two closest
    /// candidates (both within the beam's bound) are expanded at once, their neighbours ranked
    /// in one batch. False when the walk stopped at `reach.budget` distances, its results
    /// incomplete.
    pub(super) fn search_layer(
        &self,
        walk: &impl Walk,
        admit: &impl Admit,
        ef: usize,
        level: usize,
        reach: Reach,
        s: &mut Scratch,
    ) -> bool {
        let mut state = self.layer_start(walk, admit, ef, level, reach, s);
        loop {
            match self.layer_step(walk, admit, ef, level, &mut state, s) {
                Step::Expanded => continue,
                Step::OutOfBudget => return false,
                Step::Done => break,
            }
        }
        self.layer_finish(admit, s);
        true
    }

    /// Seeds the beam from `s.seeds`.
    fn layer_start(
        &self,
        walk: &impl Walk,
        admit: &impl Admit,
        ef: usize,
        level: usize,
        reach: Reach,
        s: &mut Scratch,
    ) -> LayerWalk {
        s.visited.begin(self.len());
        s.beam.start(ef);
        s.rings.copies.clear();
        s.rings.met.clear();
        let rings = level == 0 && self.rings.any();
        let list_bytes = 4 * (self.params.capacity(0) + 1);
        let paired =
            level == 0 && !reach.two_hop && self.len() * (walk.bytes_per_node() + list_bytes) >= self.paired_from;
        for &seed in &s.seeds {
            if s.visited.insert(seed.node) {
                s.beam.insert(seed, admit.admits(seed.node));
                if rings && self.rings.contains(seed.node) {
                    self.admit_ring(walk, seed, ef, &mut s.rings, &mut s.visited, &mut s.beam);
                }
            }
        }
        LayerWalk { budget: reach.budget, rings, paired, two_hop: reach.two_hop }
    }

    /// One expansion of the closest candidate (or of the two closest, paired).
    fn layer_step(
        &self,
        walk: &impl Walk,
        admit: &impl Admit,
        ef: usize,
        level: usize,
        state: &mut LayerWalk,
        s: &mut Scratch,
    ) -> Step {
        let Some(closest) = s.beam.pop() else { return Step::Done };
        let second = if state.paired { s.beam.pop() } else { None };
        if let Some(next) = s.beam.peek() {
            prefetch_all(self.list(next.node, level));
        }
        if second.is_some() {
            if let Some(after) = s.beam.peek_second() {
                prefetch_all(self.list(after.node, level));
            }
        }
        s.unvisited.clear();
        if state.two_hop {
            self.copy_neighbors(closest.node, level, &mut s.neighbors);
            self.admitted_within_two_hops(admit, level, s);
        } else {
            self.take_unvisited_links(closest.node, level, &mut s.visited, &mut s.unvisited);
            if let Some(second) = second {
                self.take_unvisited_links(second.node, level, &mut s.visited, &mut s.unvisited);
            }
        }
        if s.unvisited.len() > state.budget {
            return Step::OutOfBudget;
        }
        state.budget -= s.unvisited.len();
        walk.distances(&s.unvisited, &mut s.distances);
        self.prefetch_closer_list(level, s);
        for (&n, &distance) in s.unvisited.iter().zip(&s.distances) {
            if s.beam.keeps(distance) {
                let scored = Scored { distance, node: n };
                if state.rings
                    && self.rings.contains(n)
                    && !self.admit_ring(walk, scored, ef, &mut s.rings, &mut s.visited, &mut s.beam)
                {
                    continue;
                }
                s.beam.insert(scored, admit.admits(n));
            }
        }
        Step::Expanded
    }

    /// Leaves the beam in `s.found`.
    fn layer_finish(&self, admit: &impl Admit, s: &mut Scratch) {
        let bound = s.beam.bound();
        s.rings.copies.retain(|c| c.distance <= bound && admit.admits(c.node));
        s.found.clear();
        s.beam.drain_into(&mut s.found);
    }

    /// Starts loading the list of the node expanded next when it is one just ranked: the
    /// closest of `s.unvisited` (at `s.distances`) if it beats every queued candidate. The list
    /// prefetched at the top of the loop belongs to the candidate that was next before this
    /// expansion found a closer one. One graph, both settings interleaved: 1M clustered +2% to
    /// +4% (8-bit three runs: +7.8%, -2.3%, +2.3%), npm51k +1%.
    fn prefetch_closer_list(&self, level: usize, s: &Scratch) {
        let mut closest = None;
        let mut bound = s.beam.peek().map_or(f32::INFINITY, |c| c.distance);
        for (&node, &distance) in s.unvisited.iter().zip(&s.distances) {
            if distance < bound {
                (closest, bound) = (Some(node), distance);
            }
        }
        if let Some(node) = closest {
            prefetch_all(self.list(node, level));
        }
    }

    /// Fills `s.unvisited` from `s.neighbors` as ACORN-1 does: the unvisited neighbours that
    /// `admit` admits, then the unvisited admitted neighbours of those it refuses, up to as many
    /// as the node has neighbours (so an expansion costs what it costs unfiltered). When that
    /// finds none (the walk is among refused nodes, far from any it may return), the refused
    /// neighbours themselves, to be ranked and walked through as in a plain walk.
    fn admitted_within_two_hops(&self, admit: &impl Admit, level: usize, s: &mut Scratch) {
        s.refused.clear();
        for &n in &s.neighbors {
            if s.visited.insert(n) {
                if admit.admits(n) {
                    s.unvisited.push(n);
                } else {
                    s.refused.push(n);
                }
            }
        }
        let limit = s.neighbors.len();
        // The refused neighbours' lists are read one after another: start loading them.
        for &n in s.refused.iter().take(limit.saturating_sub(s.unvisited.len())) {
            prefetch_all(self.list(n, level));
        }
        for i in 0..s.refused.len() {
            if s.unvisited.len() >= limit {
                break;
            }
            self.copy_neighbors(s.refused[i], level, &mut s.hop);
            for &w in &s.hop {
                if s.unvisited.len() < limit && admit.admits(w) && s.visited.insert(w) {
                    s.unvisited.push(w);
                }
            }
        }
        if s.unvisited.is_empty() {
            s.unvisited.append(&mut s.refused);
        }
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
        beam: &mut Beam,
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
            beam.insert(copy, false);
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

    /// The `k` nearest nodes to `query`, closest first, with exact distances, walking the whole
    /// graph if need be (the tests' shorthand for `search_within`).
    #[cfg(test)]
    pub(crate) fn search<'s>(
        &self,
        query: &[f32],
        k: usize,
        params: SearchParams,
        admit: &impl Admit,
        s: &'s mut Scratch,
    ) -> &'s [Scored] {
        let complete = self.search_within(query, k, params, admit, Reach::FULL, s);
        debug_assert!(complete, "an unbounded walk always completes");
        &s.found
    }

    /// The `k` nearest nodes to `query` that `admit` admits, closest first, with exact
    /// distances, into `s.found`; false when the walk used up `reach.budget` first (`s.found`
    /// then holds nothing useful).
    ///
    /// Without codes the walk ranks by the bfloat16 halves with a beam of `max(ef, k)`, and the
    /// beam is re-scored exactly (only the part that can hold the k nearest:
    /// `keep_possible_results`). With codes it ranks by them, with a beam of
    /// `max(ef, k * oversample)`, and re-scores the best `max(k * oversample, ef / 2)`
    /// (`oversample` 0: the code's default): the best k exactly at once, the others by their
    /// halves first and exactly where they may still be among the k nearest. Binary codes rule
    /// out first the candidates their error bound puts behind those k (`rule_out_by_estimate_error`).
    pub(crate) fn search_within(
        &self,
        query: &[f32],
        k: usize,
        params: SearchParams,
        admit: &impl Admit,
        reach: Reach,
        s: &mut Scratch,
    ) -> bool {
        let SearchParams { ef, oversample, .. } = params;
        let entry = self.entry.load(Acquire);
        s.found.clear();
        s.rings.copies.clear();
        if entry == NO_ENTRY || k == 0 {
            return true;
        }
        let metric = self.distance.metric();
        let prepared = self
            .codes
            .as_ref()
            .map(|codes| (codes, QueryCode::new(&codes.codebook, metric, query, &quant::best_kernels())));
        let (complete, rescored) = match &prepared {
            None => {
                let walk = CoarseWalk { graph: self, query };
                let complete = self.walk_layer0(&walk, admit, ef.max(k), entry, reach, s);
                (complete, s.found.len())
            }
            Some((codes, prepared)) => {
                let oversample = if oversample == 0 { codes.codebook.kind.default_oversample() } else { oversample };
                let candidates = k.saturating_mul(oversample);
                let walk = CodeWalk { rows: codes.rows(metric), query: prepared, kernels: quant::best_kernels() };
                let complete = self.walk_layer0(&walk, admit, ef.max(candidates), entry, reach, s);
                // Half the beam at least, so a wider beam still raises recall where the codes
                // rank poorly (as re-scoring the whole beam does without codes).
                (complete, candidates.max(ef / 2).min(s.found.len()))
            }
        };
        if !complete {
            s.found.clear();
            return false;
        }
        // Copies join the walk's best when they rank among them: they must not take the places
        // of distinct candidates, or a thousand copies would push the answer out.
        s.found.truncate(rescored);
        let last = s.found.last().map_or(f32::INFINITY, |f| f.distance);
        s.rings.copies.retain(|c| c.distance <= last);
        s.rings.copies.truncate(ef.max(k));
        // The codes' best k (ahead of the copies) are nearly always among the results: ranking
        // them by their halves first read those halves twice. 4-bit and binary on npm51k, both
        // orders: +0.7% to +4.9%.
        let exact = if self.codes.is_some() { k.min(rescored) } else { 0 };
        s.found.append(&mut s.rings.copies);
        if exact > 0 {
            self.rescore(query, 0..exact, true, s);
            if let Some((codes, prepared)) = prepared.as_ref().filter(|(_, p)| exact == k && p.bounds_its_error()) {
                Self::rule_out_by_estimate_error(codes.rows(metric), prepared, metric, exact, s);
            }
            self.rank_coarsely(query, exact, s);
        }
        self.keep_exact_nearest(query, k, exact, s);
        true
    }

    /// Drops from `s.found[exact..]` the candidates whose code estimate lies more than
    /// `ESTIMATE_DEVIATIONS` deviations of its error (`QueryCode::deviation`) above the `exact`
    /// (= k) exactly re-scored first ones' farthest: k others beat them, but for a small chance,
    /// so their halves need not be read. Only for codes that bound their error (binary).
    fn rule_out_by_estimate_error(
        rows: CodeRows<'_>,
        prepared: &QueryCode,
        metric: Metric,
        exact: usize,
        s: &mut Scratch,
    ) {
        let farthest = s.found[..exact].iter().map(|f| f.distance).fold(f32::NEG_INFINITY, f32::max);
        let mut kept = exact;
        for i in exact..s.found.len() {
            let candidate = s.found[i];
            let least = candidate.distance - ESTIMATE_DEVIATIONS * prepared.deviation(metric, rows, candidate.node);
            if least.is_nan() || least <= farthest {
                s.found[kept] = candidate;
                kept += 1;
            }
        }
        s.found.truncate(kept);
    }

    /// Leaves in `s.found` its `k` nearest to `query`, closest first, with exact distances: the
    /// first `exact` already hold theirs; of the others, only those that may still be among the
    /// k nearest (`keep_possible_results`, by their bfloat16 distances) are re-scored.
    fn keep_exact_nearest(&self, query: &[f32], k: usize, exact: usize, s: &mut Scratch) {
        self.keep_possible_results(query, k, exact, s);
        let len = s.found.len();
        self.rescore(query, exact..len, false, s);
        s.found.sort_unstable();
        s.found.truncate(k);
    }

    /// Replaces the code estimates in `s.found` from `from` on by distances from the bfloat16
    /// halves. Codes cannot bound the exact distance, the halves can (`keep_possible_results`):
    /// ranking the candidates by them first spares re-scoring the low halves of those they rule
    /// out, where re-scoring every candidate read both halves of each.
    ///
    /// The walk's own loop, through its buffers (free once it ended): six loads ahead rather than
    /// the four a copy of that loop kept here, within noise (binary on npm51k, one graph, both
    /// interleaved: +4.4%, then -0.1% with the order reversed; two builds: +1.0%, -0.7%).
    fn rank_coarsely(&self, query: &[f32], from: usize, s: &mut Scratch) {
        let walk = CoarseWalk { graph: self, query };
        s.unvisited.clear();
        s.unvisited.extend(s.found[from..].iter().map(|found| found.node));
        walk.distances(&s.unvisited, &mut s.distances);
        for (found, &distance) in s.found[from..].iter_mut().zip(&s.distances) {
            found.distance = distance;
        }
    }

    /// Drops from `s.found` the candidates that cannot be among the `k` nearest, so that
    /// re-scoring reads fewer low halves. The first `exact` hold exact distances and stay; the
    /// others are ranked by the bfloat16 halves. Truncating a component to its high half changes
    /// it by less than 2^-7 of itself, so the stored vector `x` and its halves `x̃` differ by less
    /// than `2^-7 |x|`, and `|x| < |x̃| / (1 - 2^-7)`. Hence each exact distance lies in an
    /// interval around the coarse one: `±2^-7 |x|` for the L2 distance itself (the root of what
    /// the walk ranks by), `±2^-7 |q| |x|` for the inner product and cosine (whose vectors have
    /// length 1, so no norm is read); an exact distance is an interval of one point. A candidate
    /// whose interval starts above the k-th lowest interval end is beaten by k others. The
    /// results are those of re-scoring every candidate.
    fn keep_possible_results(&self, query: &[f32], k: usize, exact: usize, s: &mut Scratch) {
        if s.found.len() <= k {
            return;
        }
        // The truncation, and a margin for f32 rounding in the kernels and norms.
        const ERROR: f32 = 1.0 / 128.0 + 1e-4;
        let metric = self.distance.metric();
        let query_norm = self.distance.norm_squared(query).sqrt();
        // Each ranked candidate's distance becomes its interval's start (re-scoring replaces
        // it), and every interval's end is collected to find the k-th lowest.
        let ends = &mut s.interval_ends;
        ends.clear();
        let root = |distance: f32| if metric == Metric::L2 { distance.max(0.0).sqrt() } else { distance };
        ends.extend(s.found[..exact].iter().map(|found| root(found.distance)));
        for found in &mut s.found[exact..] {
            let length = if metric == Metric::Cosine {
                1.0
            } else {
                self.vectors.coarse_into(found.node, &mut s.vector);
                self.distance.norm_squared(&s.vector).sqrt() / (1.0 - 1.0 / 128.0)
            };
            let centre = root(found.distance);
            let spread = match metric {
                Metric::L2 => length * ERROR,
                _ => query_norm * length * ERROR,
            } + 1e-4 * centre.abs();
            found.distance = centre - spread;
            ends.push(centre + spread);
        }
        let (_, &mut bound, _) = ends.select_nth_unstable_by(k - 1, f32::total_cmp);
        let mut kept = exact;
        for i in exact..s.found.len() {
            if s.found[i].distance <= bound {
                s.found.swap(kept, i);
                kept += 1;
            }
        }
        s.found.truncate(kept);
    }

    /// The `k` nearest of `nodes` to `query`, closest first, with exact distances, into
    /// `s.found`: every node ranked by its bfloat16 halves and the best `max(ef, k)` re-scored
    /// exactly, so that the result is exact (the halves are within 0.4% of each value; the
    /// codes would not be).
    pub(crate) fn scan(&self, query: &[f32], k: usize, ef: usize, nodes: impl Iterator<Item = u32>, s: &mut Scratch) {
        let width = ef.max(k);
        let walk = CoarseWalk { graph: self, query };
        s.results.clear();
        for node in nodes {
            let distance = walk.distance(node);
            if s.results.len() < width {
                s.results.push(Scored { distance, node });
            } else if distance < s.results.peek().map_or(f32::INFINITY, |w| w.distance) {
                s.results.push(Scored { distance, node });
                s.results.pop();
            }
        }
        s.found.clear();
        s.found.extend(s.results.drain());
        self.keep_exact_nearest(query, k, 0, s);
    }

    /// Replaces the distances of `s.found[range]` by exact ones, the next few loading while
    /// each is re-scored, as in `search_layer`: their low halves, which nothing read yet, and with
    /// `unread` their high halves too.
    fn rescore(&self, query: &[f32], range: Range<usize>, unread: bool, s: &mut Scratch) {
        const LOOKAHEAD: usize = 4;
        let load = |node: u32| {
            if unread {
                prefetch_all(self.vectors.high(node));
            }
            self.vectors.prefetch_low(node);
        };
        let found = &mut s.found[range];
        for ahead in found.iter().take(LOOKAHEAD) {
            load(ahead.node);
        }
        for i in 0..found.len() {
            if let Some(ahead) = found.get(i + LOOKAHEAD) {
                load(ahead.node);
            }
            found[i].distance = self.exact_distance(query, found[i].node);
        }
    }

    /// The nodes `admit` admits within `radius` of `query` (exact distance), the closest
    /// `limit` of them, closest first, into `s.found`; false when the walk used up
    /// `budget` distances first.
    ///
    /// A walk by exact distances: a node is expanded while it lies within the radius, or
    /// within the best `ef` admitted nodes met so far (a beam that crosses the gaps between
    /// the nodes inside the radius); once `limit` nodes are inside, the `limit`-th closest
    /// replaces the radius.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_range(
        &self,
        query: &[f32],
        radius: f32,
        limit: usize,
        ef: usize,
        admit: &impl Admit,
        mut budget: usize,
        s: &mut Scratch,
    ) -> bool {
        s.found.clear();
        let entry = self.entry.load(Acquire);
        if entry == NO_ENTRY || limit == 0 {
            return true;
        }
        let (node, top) = unpack(entry);
        let coarse = CoarseWalk { graph: self, query };
        let start = self.descend_from(&coarse, 0, Scored { distance: coarse.distance(node), node }, top, s);
        s.visited.begin(self.len());
        s.candidates.clear();
        s.results.clear();
        s.within.clear();
        let bound = |within: &BinaryHeap<Scored>, beam: &BinaryHeap<Scored>| {
            let radius = if within.len() >= limit { within.peek().map_or(radius, |w| w.distance) } else { radius };
            let full = beam.len() >= ef + within.len();
            let beam = if full { beam.peek().map_or(f32::INFINITY, |w| w.distance) } else { f32::INFINITY };
            radius.max(beam)
        };
        for seed in [start.node, node] {
            if s.visited.insert(seed) {
                let scored = Scored { distance: self.exact_distance(query, seed), node: seed };
                s.candidates.push(scored);
                self.keep_in_range(scored, radius, limit, ef, admit, s);
            }
        }
        while let Some(closest) = s.candidates.pop() {
            if closest.distance > bound(&s.within, &s.results) {
                break;
            }
            s.unvisited.clear();
            self.take_unvisited_links(closest.node, 0, &mut s.visited, &mut s.unvisited);
            if s.unvisited.len() > budget {
                return false;
            }
            budget -= s.unvisited.len();
            for i in 0..s.unvisited.len() {
                let n = s.unvisited[i];
                let scored = Scored { distance: self.exact_distance(query, n), node: n };
                if scored.distance <= bound(&s.within, &s.results) {
                    s.candidates.push(scored);
                    self.keep_in_range(scored, radius, limit, ef, admit, s);
                }
            }
        }
        s.found.extend(s.within.drain());
        s.found.sort_unstable();
        true
    }

    /// Adds an admitted node to the beam of `search_range`, and to its results when it lies
    /// within `radius`.
    fn keep_in_range(&self, scored: Scored, radius: f32, limit: usize, ef: usize, admit: &impl Admit, s: &mut Scratch) {
        if !admit.admits(scored.node) {
            return;
        }
        s.results.push(scored);
        // `ef` beyond the results: a large neighbourhood has a long border to cross.
        if s.results.len() > ef + s.within.len() {
            s.results.pop();
        }
        if scored.distance <= radius {
            s.within.push(scored);
            if s.within.len() > limit {
                s.within.pop();
            }
        }
    }

    /// The nodes of `nodes` within `radius` of `query`, the closest `limit`, closest first, into
    /// `s.found`.
    pub(crate) fn scan_range(
        &self,
        query: &[f32],
        radius: f32,
        limit: usize,
        nodes: impl Iterator<Item = u32>,
        s: &mut Scratch,
    ) {
        s.within.clear();
        for node in nodes {
            let distance = self.exact_distance(query, node);
            if distance <= radius {
                s.within.push(Scored { distance, node });
                if s.within.len() > limit {
                    s.within.pop();
                }
            }
        }
        s.found.clear();
        s.found.extend(s.within.drain());
        s.found.sort_unstable();
    }

    /// Descends from `entry` and beam-searches layer 0 with `ef`, ranking by `walk`. The beam
    /// starts from the entry point too: then a beam as wide as the graph visits everything the
    /// entry point reaches, which is what the reachability pass (`connect`) guarantees, whatever
    /// node the descent ended at. (The descent scored the entry point already; a far one is
    /// never expanded.)
    pub(super) fn walk_layer0(
        &self,
        walk: &impl Walk,
        admit: &impl Admit,
        ef: usize,
        entry: u64,
        reach: Reach,
        s: &mut Scratch,
    ) -> bool {
        self.seed_layer0(walk, entry, s);
        self.search_layer(walk, admit, ef, 0, reach, s)
    }

    /// Descends from the packed `entry` and leaves the layer-0 seeds in `s.seeds`.
    fn seed_layer0(&self, walk: &impl Walk, entry: u64, s: &mut Scratch) {
        let (node, top) = unpack(entry);
        let at_entry = Scored { distance: walk.distance(node), node };
        let start = self.descend_from(walk, 0, at_entry, top, s);
        s.seeds.clear();
        s.seeds.push(start);
        if start.node != node {
            s.seeds.push(at_entry);
        }
    }
}

#[cfg(test)]
mod measurements;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Distance;
    use crate::hnsw::order::tests::{clustered, recall_at_10};
    use crate::hnsw::{with_scratch, Everyone, Params};
    use crate::quant::Quantization;

    /// Expanding the two closest candidates at once (in graphs past `PAIRED_FROM`, lowered here
    /// to every graph) builds and searches with the recall of one expansion at a time, with and
    /// without codes: a second expansion whose links were lost, or whose neighbours were ranked
    /// out of order, would cost far more than the margin.
    #[test]
    fn paired_expansions_keep_the_recall_of_single_ones() {
        let (n, dim, queries) = (6_000, 32, 200);
        let data = clustered(n + queries, dim, 60);
        let (base, queries) = data.split_at(n * dim);
        let distance = Distance::new(Metric::L2);
        for quantization in [Quantization::None, Quantization::Bits4] {
            let mut recalls = Vec::new();
            for paired_from in [usize::MAX, 0] {
                let params = Params { m: 8, ef_construction: 48, seed: 3, quantization };
                let mut graph = Graph::new(dim, params, distance);
                graph.paired_from = paired_from;
                graph.append(base);
                // One thread: the same graph on every run.
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                pool.install(|| graph.insert_range(0..n as u32));
                let params = SearchParams { ef: 24, oversample: 4, ..SearchParams::default() };
                recalls.push(recall_at_10(&graph, base, queries, params));
            }
            println!(
                "{quantization:?} recall@10 at ef 24, oversample 4: single {:.4}, paired {:.4}",
                recalls[0], recalls[1]
            );
            assert!(recalls[0] > 0.8 && recalls[1] >= recalls[0] - 0.01, "{quantization:?} recall {recalls:?}");
        }
    }

    /// Layer-0 walks of several queries taking turns an expansion each, into their scratches.
    fn interleaved<W: Walk>(graph: &Graph, walks: &[W], ef: usize, scratches: &mut [Scratch]) {
        let entry = graph.entry.load(Acquire);
        let mut states: Vec<Option<LayerWalk>> = walks
            .iter()
            .zip(scratches.iter_mut())
            .map(|(walk, s)| {
                graph.seed_layer0(walk, entry, s);
                Some(graph.layer_start(walk, &Everyone, ef, 0, Reach::FULL, s))
            })
            .collect();
        loop {
            let mut active = false;
            for ((walk, s), state) in walks.iter().zip(scratches.iter_mut()).zip(&mut states) {
                if let Some(st) = state {
                    match graph.layer_step(walk, &Everyone, ef, 0, st, s) {
                        Step::Expanded => active = true,
                        Step::Done => {
                            graph.layer_finish(&Everyone, s);
                            *state = None;
                        }
                        Step::OutOfBudget => unreachable!("a full reach has no budget"),
                    }
                }
            }
            if !active {
                break;
            }
        }
    }

    /// Walks that take turns an expansion each find exactly what they find one after another,
    /// with and without codes: the expansion steps keep all of a walk's state in its scratch.
    #[test]
    fn interleaved_walks_find_what_walks_in_turn_find() {
        compare_interleaved(3_000, 100, &[32], 1);
    }

    /// The measurement behind README's interleaving figures (1M clustered 128-d vectors, `N`
    /// to change; 4-bit codes, `CODE=8bit` for 8-bit): queries/s of layer-0 walks one after
    /// another and 2, 4, 8 at a time.
    #[test]
    #[ignore = "a measurement: cargo test --release --lib interleaved_walks_at_scale -- --ignored --nocapture"]
    fn interleaved_walks_at_scale() {
        let n = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        compare_interleaved(n, 1000, &[64, 96], 3);
    }

    fn compare_interleaved(n: usize, count: usize, efs: &[usize], rounds: usize) {
        let dim = 128;
        let data = clustered(n + count, dim, 1000);
        let (base, queries) = data.split_at(n * dim);
        let distance = Distance::new(Metric::L2);
        let quantization =
            if std::env::var("CODE").as_deref() == Ok("8bit") { Quantization::Bits8 } else { Quantization::Bits4 };
        let params = Params { m: 16, ef_construction: 100, seed: 3, quantization };
        let mut graph = Graph::new(dim, params, distance);
        graph.append(base);
        let t = std::time::Instant::now();
        graph.insert_range(0..n as u32);
        println!("built {n} in {:?}", t.elapsed());
        let codes = graph.codes.as_ref().unwrap();
        let kernels = quant::best_kernels();
        let prepared: Vec<QueryCode> =
            queries.chunks_exact(dim).map(|q| QueryCode::new(&codes.codebook, Metric::L2, q, &kernels)).collect();
        let coarse: Vec<CoarseWalk> =
            queries.chunks_exact(dim).map(|q| CoarseWalk { graph: &graph, query: q }).collect();
        let coded: Vec<CodeWalk> =
            prepared.iter().map(|p| CodeWalk { rows: codes.rows(Metric::L2), query: p, kernels }).collect();
        fn run<W: Walk>(graph: &Graph, walks: &[W], ef: usize, group: usize) -> (f64, Vec<Vec<Scored>>) {
            let mut scratches: Vec<Scratch> = (0..group).map(|_| Scratch::default()).collect();
            let mut found = Vec::new();
            let t = std::time::Instant::now();
            for chunk in walks.chunks(group) {
                if group == 1 {
                    let s = &mut scratches[0];
                    graph.walk_layer0(&chunk[0], &Everyone, ef, graph.entry.load(Acquire), Reach::FULL, s);
                    found.push(s.found.clone());
                } else {
                    interleaved(graph, chunk, ef, &mut scratches[..chunk.len()]);
                    found.extend(scratches[..chunk.len()].iter().map(|s| s.found.clone()));
                }
            }
            (walks.len() as f64 / t.elapsed().as_secs_f64(), found)
        }
        for &ef in efs {
            for round in 0..rounds {
                let mut line = format!("ef {ef} round {round}:");
                for (name, walks_are_coded) in [("f32", false), ("codes", true)] {
                    let mut base_qps = 0.0;
                    let mut reference = Vec::new();
                    for group in [1, 2, 4, 8] {
                        let (qps, found) = if walks_are_coded {
                            run(&graph, &coded, ef, group)
                        } else {
                            run(&graph, &coarse, ef, group)
                        };
                        if group == 1 {
                            base_qps = qps;
                            reference = found;
                        } else {
                            assert_eq!(found, reference, "{name} group {group}");
                        }
                        line += &format!(" {name}x{group} {:.0} ({:.2}x)", qps, qps / base_qps);
                    }
                }
                println!("{line}");
            }
        }
    }

    /// Only the candidates that can still be among the k nearest are re-scored; with the whole
    /// graph as the beam (and, with codes, as the candidates: the codes' best k re-scored at once,
    /// the others ranked by their halves first) the results must still be brute force's, ids and
    /// exact distances, under every metric and code, for vectors of many lengths and near-copies
    /// that differ only below the bfloat16 halves.
    #[test]
    fn pruned_rescoring_returns_the_exact_nearest() {
        for quantization in [Quantization::None, Quantization::Bits4, Quantization::Binary] {
            pruned_rescoring_returns_the_exact_nearest_with(quantization);
        }
    }

    fn pruned_rescoring_returns_the_exact_nearest_with(quantization: Quantization) {
        let (n, dim) = (1_200, 32);
        let mut state = 5u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for metric in [Metric::Cosine, Metric::L2, Metric::InnerProduct] {
            let (offset, spread) = if metric == Metric::Cosine { (0.0, 1.0) } else { (8.0, 0.02) };
            let mut data: Vec<f32> = Vec::with_capacity(n * dim);
            for i in 0..n {
                // Under L2 and the inner product, a common offset much longer than the spread
                // makes the truncation errors as large as the gaps between neighbours.
                let row: Vec<f32> = if i % 3 == 0 || i < 3 {
                    let scale = 0.2 + 4.0 * next().abs();
                    (0..dim).map(|_| offset + next() * scale * spread).collect()
                } else {
                    // A near-copy of an earlier row: equal high halves, different low ones.
                    let base = &data[(i / 3) * 3 * dim..][..dim];
                    base.iter().map(|&x| f32::from_bits(x.to_bits() ^ (next().to_bits() & 0x7FFF))).collect()
                };
                let norm = if metric == Metric::Cosine { row.iter().map(|x| x * x).sum::<f32>().sqrt() } else { 1.0 };
                data.extend(row.iter().map(|x| x / norm));
            }
            let params = Params { m: 8, ef_construction: 64, seed: 3, quantization };
            let mut graph = Graph::new(dim, params, Distance::new(metric));
            graph.append(&data);
            // One thread: the same graph on every run.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            pool.install(|| graph.insert_range(0..n as u32));
            // Every node reachable, as the segments make it: the whole graph is then the beam.
            graph.connect();
            let distance = Distance::new(metric);
            for q in 0..100 {
                // Unnormalised queries: the bounds scale with |q|.
                let query: Vec<f32> = (0..dim).map(|_| (offset + next() * spread) * (1.0 + q as f32)).collect();
                let mut exact: Vec<Scored> = (0..n as u32)
                    .map(|node| Scored { distance: distance.eval(&query, &data[node as usize * dim..][..dim]), node })
                    .collect();
                exact.sort_unstable();
                let params = SearchParams { ef: n, oversample: n / 10, ..SearchParams::default() };
                let found = with_scratch(|s| graph.search(&query, 10, params, &Everyone, s).to_vec());
                assert_eq!(found, exact[..10].to_vec(), "{metric} {quantization:?} query {q}");
            }
        }
    }
}
