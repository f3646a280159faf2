//! Building one graph: appending nodes, linking them in parallel (search with `ef_construction`,
//! the neighbour-selection heuristic, pruned back-links), and the reachability pass.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering::*};

use rayon::prelude::*;

use super::order::{LinkingOrder, LOCALITY_FROM};
use super::renumber::RENUMBER_FROM;
use super::scratch::{with_scratch, Scored, Scratch};
use super::search::{CoarseWalk, Everyone, Reach};
use super::{lock, pack, unpack, zeroed, Graph, FLAGS, NO_ENTRY, RING};
use crate::distance::prefetch_all;
use crate::quant::{Codes, Quantization, ENCODE_PIECE};

/// Lists a breadth-first walk loads ahead of the one it reads (`Graph::walk_breadth_first`).
const WALK_AHEAD: usize = 8;

impl Graph {
    /// Adds `vectors` (row-major) as unlinked nodes; `insert` links them.
    pub(crate) fn append(&mut self, vectors: &[f32]) {
        let count = vectors.len() / self.dim;
        let stride0 = 1 + self.params.capacity(0);
        let stride = 1 + self.params.m;
        self.vectors.push(vectors);
        let total = self.vectors.len();
        let kind = self.params.quantization;
        if self.learns_codes(total) {
            // Learnt again from every vector whenever the segment has doubled (and at sealing),
            // so codes do not depend on how the caller batched its inserts.
            self.codes = Some(match self.codes {
                None => Codes::build(kind, self.dim, vectors),
                Some(_) => self.vectors.recode(kind),
            });
        } else if let Some(codes) = &mut self.codes {
            codes.push(vectors);
        }
        let (levels, layer0) = (self.levels.vec_mut(), self.layer0.vec_mut());
        let (upper, upper_start) = (self.upper.vec_mut(), self.upper_start.vec_mut());
        levels.reserve(count);
        layer0.reserve(count * stride0);
        upper_start.reserve(count);
        for _ in 0..count {
            let level = self.params.level_of(levels.len() as u64);
            levels.push(level as u8);
            layer0.extend(zeroed(stride0));
            // Fits: Options caps a segment at 2^28 nodes, and m >= 2 averages under 3 upper
            // slots a node.
            upper_start.push(upper.len() as u32);
            upper.extend(zeroed(level * stride));
        }
        self.rings.grow(total);
    }

    /// The heuristic: walk `candidates` (scored from `base`, closest first) and keep one only if
    /// it is closer to the base than to every neighbour already kept, up to `max` neighbours.
    ///
    /// Copies (equal high halves: the walk cannot tell them apart) are kept once at most, and
    /// never beside a copy of the base: every copy is exactly as close to the base as the next,
    /// so the plain rule keeps them all, and a group of copies then fills every list near it with
    /// itself and cuts off whatever links in behind it (hnswlib has this flaw). Rings of copies
    /// (`RING`) reach the copies instead. A copy scores as the node it copies, so equal scores
    /// (and `copy_distance`, the base's score for its own high halves) gate the comparison of
    /// the halves.
    pub(super) fn select(
        &self,
        base: u32,
        copy_distance: f32,
        candidates: &[Scored],
        max: usize,
        out: &mut Vec<Scored>,
        buffer: &mut Vec<f32>,
    ) {
        out.clear();
        let high = |node: u32| self.vectors.high(node);
        for &candidate in candidates {
            if out.len() >= max {
                break;
            }
            let copy_of = |other: u32| high(candidate.node) == high(other);
            if candidate.distance == copy_distance && copy_of(base) {
                continue;
            }
            if out.iter().any(|kept| kept.distance == candidate.distance && copy_of(kept.node)) {
                continue;
            }
            self.vectors.coarse_into(candidate.node, buffer);
            if out.iter().all(|kept| self.distance.coarse(buffer, high(kept.node)) >= candidate.distance) {
                out.push(candidate);
            }
        }
    }

    /// Links the appended nodes `nodes` into the graph, in parallel on the current rayon pool, in
    /// `linking_order`.
    pub(crate) fn insert_range(&self, nodes: Range<u32>) {
        self.link(&self.linking_order(nodes));
    }

    /// Whether `rows` more vectors can be appended and linked (`insert_on_caller`) and the
    /// batch numbered (`breadth_first_order`) with no rayon call: too few to encode in parallel,
    /// to order (`LOCALITY_FROM`) or to renumber (`RENUMBER_FROM`), and no codes to learn (again).
    pub(crate) fn adds_on_caller(&self, rows: usize) -> bool {
        rows < ENCODE_PIECE.min(LOCALITY_FROM).min(RENUMBER_FROM) && !self.learns_codes(self.len() + rows)
    }

    /// Whether appending up to `total` vectors learns the codes (`append`): the first batch of a
    /// quantized graph does, and so does each one that doubles the vectors they were learnt from.
    fn learns_codes(&self, total: usize) -> bool {
        match (&self.codes, self.params.quantization) {
            (_, Quantization::None) => false,
            (None, _) => true,
            (Some(codes), _) => codes.needs_training(total),
        }
    }

    /// Links the appended nodes `nodes` on the calling thread, one after another, with no rayon
    /// call: for batches that would cost more to hand to a pool than to link (`adds_on_caller`
    /// must hold). They are too few for a linking order, so this is the order `insert_range`
    /// links them in too.
    pub(crate) fn insert_on_caller(&self, nodes: Range<u32>) {
        with_scratch(|s| nodes.for_each(|node| self.insert(node, s)));
    }

    /// Links `order.skeleton`, then `order.rest`. Each thread takes a run of consecutive nodes of
    /// the order (rayon splits the slice in halves), so the order's locality holds per thread.
    pub(super) fn link(&self, order: &LinkingOrder) {
        for part in [&order.skeleton, &order.rest] {
            part.par_iter().for_each(|&node| with_scratch(|s| self.insert(node, s)));
        }
    }

    /// Links one appended node: descend to its level, then per layer search with
    /// `ef_construction`, select its neighbours and add (pruned) back-links.
    fn insert(&self, node: u32, s: &mut Scratch) {
        let level = self.levels[node as usize] as usize;
        let mut entry = self.entry.load(Acquire);
        // A node that will become the new top holds the entry lock for its whole insertion, so
        // two such nodes cannot both raise the top; this happens about log_m(n) times per graph.
        let _raising_top = if entry == NO_ENTRY || level > unpack(entry).1 {
            let guard = lock(&self.entry_lock);
            entry = self.entry.load(Acquire);
            if entry == NO_ENTRY {
                self.entry.store(pack(node, level), Release);
                return;
            }
            Some(guard).filter(|_| level > unpack(entry).1)
        } else {
            None
        };
        let top = unpack(entry).1;
        let mut query = std::mem::take(&mut s.query);
        self.vectors.exact_into(node, &mut query);
        let walk = CoarseWalk { graph: self, query: &query };
        let start = self.descend(&walk, level, entry, s);
        s.seeds.clear();
        s.seeds.push(start);
        let copy_distance = self.distance.coarse(&query, self.vectors.high(node));
        let mut in_ring = false;
        for l in (0..=level.min(top)).rev() {
            self.search_layer(&walk, &Everyone, self.params.ef_construction, l, Reach::FULL, s);
            // The node itself can be reached through a back-link added by a concurrent insert.
            s.found.retain(|c| c.node != node);
            self.select(node, copy_distance, &s.found, self.params.m, &mut s.selected, &mut s.vector);
            // On layer 0 a node that copies one already linked joins that one's ring.
            let copy = (l == 0).then(|| self.copy_among(node, copy_distance, &s.found)).flatten();
            {
                let _own = self.lock_node(node);
                if let Some(copy) = copy {
                    let _other = self.lock_node(copy);
                    self.splice_rings(node, copy, s);
                    in_ring = true;
                }
                self.write_list(node, l, &s.selected);
            }
            s.back_links.extend(s.selected.iter().map(|&n| (l, n)));
            std::mem::swap(&mut s.seeds, &mut s.found);
        }
        // Back-links make the node reachable. Adding them only now, lowest layer first, means a
        // search can never descend into this node on a layer where its own list is still empty.
        // A copy that joined a ring is reached through it: back-links would only crowd its
        // neighbours' lists with copies of one vector.
        if in_ring {
            s.back_links.clear();
        }
        s.back_links.sort_by_key(|&(l, _)| l);
        for i in 0..s.back_links.len() {
            let (l, neighbor) = s.back_links[i];
            self.link_back(neighbor, node, l, s);
        }
        s.back_links.clear();
        s.query = query;
        if level > top {
            self.entry.store(pack(node, level), Release);
        }
    }

    /// Makes every node reachable from the entry point on layer 0, and returns how many needed a
    /// new link. Pruning can drop a node's last incoming link (hnswlib has the same gap), and a
    /// node no list points to is never found. Each such node joins the ring of a reachable copy
    /// that a search finds, or else gets a link from the closest reachable node found (one with
    /// room if possible, else in place of that node's farthest link, which the next round
    /// re-checks). Costs one pass over the links, plus a search per repaired node. The caller
    /// serialises this with insertion.
    ///
    /// Reachability from the entry point is what a search needs: every layer-0 search starts
    /// from the entry point as well as from where the descent ended (`walk_layer0`), so an
    /// exhaustive one visits all that the entry point reaches.
    pub(crate) fn connect(&self) -> usize {
        let entry = self.entry.load(Acquire);
        if entry == NO_ENTRY {
            return 0;
        }
        let mut repaired = 0;
        for _round in 0..4 {
            let mut reached = vec![false; self.len()];
            let mut order = Vec::new();
            if self.mark_reachable(unpack(entry).0, &mut reached, &mut order) == reached.len() {
                break;
            }
            with_scratch(|s| {
                for node in 0..self.len() as u32 {
                    if reached[node as usize] {
                        continue;
                    }
                    let mut query = std::mem::take(&mut s.query);
                    self.vectors.exact_into(node, &mut query);
                    self.walk_layer0(
                        &CoarseWalk { graph: self, query: &query },
                        &Everyone,
                        self.params.ef_construction,
                        entry,
                        Reach::FULL,
                        s,
                    );
                    s.query = query;
                    let reachable = || s.found.iter().filter(|f| reached[f.node as usize] && f.node != node);
                    let copy_distance = self.distance.coarse(&s.query, self.vectors.high(node));
                    let copy = self.copy_among(node, copy_distance, reachable());
                    let with_room = reachable().find(|f| Self::count(self.list(f.node, 0)) < self.params.capacity(0));
                    if let Some(copy) = copy {
                        // Joining a reachable copy's ring reaches this node's whole ring.
                        let (_own, _other) = (self.lock_node(node), self.lock_node(copy));
                        self.splice_rings(node, copy, s);
                    } else if let Some(&from) = with_room.or_else(|| reachable().next()) {
                        self.link_replacing_farthest(from.node, node, s);
                    } else {
                        continue;
                    }
                    self.mark_reachable(node, &mut reached, &mut order);
                    repaired += 1;
                }
            });
        }
        repaired
    }

    /// Marks everything reachable from `start` on layer 0 that `reached` did not hold yet, and
    /// returns how many nodes that was; `order` is scratch.
    pub(super) fn mark_reachable(&self, start: u32, reached: &mut [bool], order: &mut Vec<u32>) -> usize {
        order.clear();
        self.walk_breadth_first(start, &(0..reached.len() as u32), reached, order);
        order.len()
    }

    /// Appends to `order` `start` and every node of `nodes` that its layer-0 links reach within
    /// `nodes`, in the order a breadth-first walk meets them, skipping and marking nodes as
    /// `met` (indexed from `nodes.start`) records them.
    ///
    /// Each step reads the list of a node queued long before, so the lists `WALK_AHEAD` places
    /// further on are loaded meanwhile. A depth-first walk reads the list it has just found and
    /// waits on memory a node: that made the reachability pass about a third of the time of a 1M
    /// build in batches of 1,000 (one thread walking, the other idle).
    pub(super) fn walk_breadth_first(&self, start: u32, nodes: &Range<u32>, met: &mut [bool], order: &mut Vec<u32>) {
        let at = |node: u32| (node - nodes.start) as usize;
        if std::mem::replace(&mut met[at(start)], true) {
            return;
        }
        let mut next = order.len();
        order.push(start);
        while let Some(&node) = order.get(next) {
            if let Some(&ahead) = order.get(next + WALK_AHEAD) {
                prefetch_all(self.list(ahead, 0));
            }
            next += 1;
            for neighbor in self.links(node, 0) {
                if nodes.contains(&neighbor) && !std::mem::replace(&mut met[at(neighbor)], true) {
                    order.push(neighbor);
                }
            }
        }
    }

    /// The first of `found` (scored from `node`) that is a copy of `node`: same high halves.
    fn copy_among<'f>(
        &self,
        node: u32,
        copy_distance: f32,
        found: impl IntoIterator<Item = &'f Scored>,
    ) -> Option<u32> {
        let high = self.vectors.high(node);
        found.into_iter().find(|f| f.distance == copy_distance && self.vectors.high(f.node) == high).map(|f| f.node)
    }

    /// Joins the rings of copies `a` and `b` (a node without a ring is a ring of one): swapping
    /// their ring links makes one circle of two disjoint ones. The caller holds both nodes' locks.
    fn splice_rings(&self, a: u32, b: u32, s: &mut Scratch) {
        let (after_a, after_b) = (self.ring_next(a).unwrap_or(a), self.ring_next(b).unwrap_or(b));
        self.set_ring_link(a, after_b, s);
        self.set_ring_link(b, after_a, s);
    }

    /// Points `node`'s ring link at `next`, first making room for one in its layer-0 list (the
    /// farthest link goes when it is full). The caller holds the node's lock.
    fn set_ring_link(&self, node: u32, next: u32, s: &mut Scratch) {
        let list = self.list(node, 0);
        let flags = list[0].load(Relaxed) & FLAGS;
        if flags & RING != 0 {
            list[1].store(next, Release);
            return;
        }
        let count = Self::count(list);
        let links: Vec<u32> = list[1..=count].iter().map(|slot| slot.load(Relaxed)).collect();
        let dropped = (count == self.params.capacity(0)).then(|| self.farthest_link(node, 1, s));
        // Shift the links up one slot behind the ring link; a reader meanwhile sees some link
        // twice or misses one, never an invalid node.
        let mut slot = 2;
        for (i, &link) in links.iter().enumerate() {
            if Some(i + 1) != dropped {
                list[slot].store(link, Relaxed);
                slot += 1;
            }
        }
        list[1].store(next, Relaxed);
        list[0].store((slot - 1) as u32 | flags | RING, Release);
        self.rings.insert(node);
    }

    /// The slot (from `first` on) of the farthest of `node`'s layer-0 links; an out-of-range link
    /// (a damaged, unverified file) counts as the farthest.
    fn farthest_link(&self, node: u32, first: usize, s: &mut Scratch) -> usize {
        let list = self.list(node, 0);
        let count = Self::count(list);
        self.vectors.exact_into(node, &mut s.base);
        let distance = |slot: usize| {
            let n = list[slot].load(Relaxed);
            if (n as usize) < self.len() {
                self.distance.coarse(&s.base, self.vectors.high(n))
            } else {
                f32::INFINITY
            }
        };
        (first..=count).max_by(|&a, &b| distance(a).total_cmp(&distance(b))).unwrap_or(count)
    }

    /// Appends `to` to a list with room, keeping its flag bits. The caller holds the node's lock.
    fn append_link(list: &[AtomicU32], to: u32) {
        let count = Self::count(list);
        list[1 + count].store(to, Relaxed);
        let flags = list[0].load(Relaxed) & FLAGS;
        list[0].store((count as u32 + 1) | flags, Release);
    }

    /// Adds `to` to `from`'s layer-0 list, in place of its farthest prunable link when the list
    /// is full.
    fn link_replacing_farthest(&self, from: u32, to: u32, s: &mut Scratch) {
        let _guard = self.lock_node(from);
        let list = self.list(from, 0);
        if Self::count(list) < self.params.capacity(0) {
            return Self::append_link(list, to);
        }
        let farthest = self.farthest_link(from, Self::first_link(list), s);
        list[farthest].store(to, Release);
    }

    /// Adds `new` to `neighbor`'s list on `level`; a full list is re-pruned with the heuristic
    /// (its ring link stays).
    fn link_back(&self, neighbor: Scored, new: u32, level: usize, s: &mut Scratch) {
        let _guard = self.lock_node(neighbor.node);
        let list = self.list(neighbor.node, level);
        let count = Self::count(list);
        if count < self.params.capacity(level) {
            return Self::append_link(list, new);
        }
        self.vectors.coarse_into(neighbor.node, &mut s.base);
        let distance = |n: u32| self.distance.coarse(&s.base, self.vectors.high(n));
        s.prune.clear();
        s.prune.push(Scored { distance: distance(new), node: new });
        // A link out of range can only come from a damaged file opened without verification:
        // drop it here rather than read out of bounds.
        let links = list[Self::first_link(list)..=count].iter().map(|slot| slot.load(Relaxed));
        s.hop.clear();
        s.hop.extend(links.filter(|&n| (n as usize) < self.len()));
        // The neighbour's links lie anywhere in the graph and few are in cache: keep the next
        // few vectors loading while each is scored, as the search does.
        const LOOKAHEAD: usize = 4;
        for &n in s.hop.iter().take(LOOKAHEAD) {
            prefetch_all(self.vectors.high(n));
        }
        for i in 0..s.hop.len() {
            if let Some(&ahead) = s.hop.get(i + LOOKAHEAD) {
                prefetch_all(self.vectors.high(ahead));
            }
            let n = s.hop[i];
            s.prune.push(Scored { distance: distance(n), node: n });
        }
        s.prune.sort_unstable();
        let room = self.room(neighbor.node, level);
        let copy_distance = distance(neighbor.node);
        self.select(neighbor.node, copy_distance, &s.prune, room, &mut s.pruned, &mut s.vector);
        self.write_list(neighbor.node, level, &s.pruned);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::distance::{Distance, Metric};
    use crate::hnsw::Params;
    use crate::options::SearchParams;

    /// `count` pseudo-random values in [0, 1).
    fn uniform(count: usize) -> Vec<f32> {
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..count).map(|_| next()).collect()
    }

    fn empty(dim: usize, quantization: Quantization) -> Graph {
        let params = Params { m: 8, ef_construction: 64, seed: 1, quantization };
        Graph::new(dim, params, Distance::new(Metric::L2))
    }

    pub(in crate::hnsw) fn graph(n: usize, dim: usize) -> Graph {
        let mut graph = empty(dim, Quantization::None);
        graph.append(&uniform(n * dim));
        graph.insert_range(0..n as u32);
        graph
    }

    #[test]
    fn linking_on_the_caller_links_as_a_one_thread_pool_does() {
        let (n, dim, batch) = (600, 8, 3);
        let data = uniform(n * dim);
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (mut on_caller, mut on_pool) = (empty(dim, Quantization::None), empty(dim, Quantization::None));
        for (b, rows) in data.chunks(batch * dim).enumerate() {
            let nodes = (b * batch) as u32..((b + 1) * batch) as u32;
            assert!(on_caller.adds_on_caller(batch));
            on_caller.append(rows);
            on_caller.insert_on_caller(nodes.clone());
            on_pool.append(rows);
            one_thread.install(|| on_pool.insert_range(nodes));
        }
        assert_eq!(on_caller.entry.load(Relaxed), on_pool.entry.load(Relaxed));
        for node in 0..n as u32 {
            for level in 0..=on_pool.levels[node as usize] as usize {
                let (a, b): (Vec<u32>, Vec<u32>) =
                    (on_caller.links(node, level).collect(), on_pool.links(node, level).collect());
                assert_eq!(a, b, "node {node}'s links on layer {level}");
            }
        }
    }

    #[test]
    fn only_batches_that_need_no_parallel_step_are_added_on_the_caller() {
        let dim = 8;
        let mut plain = empty(dim, Quantization::None);
        assert!(plain.adds_on_caller(1) && plain.adds_on_caller(ENCODE_PIECE - 1));
        assert!(!plain.adds_on_caller(ENCODE_PIECE), "encoded in parallel");
        plain.append(&uniform(100 * dim));
        assert!(plain.adds_on_caller(200), "no codes to learn");
        let mut coded = empty(dim, Quantization::Bits4);
        assert!(!coded.adds_on_caller(1), "the first batch learns the codes");
        coded.append(&uniform(100 * dim));
        assert!(coded.adds_on_caller(99));
        assert!(!coded.adds_on_caller(100), "200 vectors learn them again");
    }

    pub(in crate::hnsw) fn reachable(graph: &Graph) -> usize {
        let mut reached = vec![false; graph.len()];
        graph.mark_reachable(unpack(graph.entry.load(Acquire)).0, &mut reached, &mut Vec::new())
    }

    #[test]
    fn unvisited_links_are_taken_once_and_damaged_ones_skipped() {
        let graph = graph(300, 8);
        let mut visited = super::super::Visited::default();
        visited.begin(graph.len());
        let (a, b) = (5, 6);
        let mut a_links: Vec<u32> = graph.links(a, 0).collect();
        let b_links: Vec<u32> = graph.links(b, 0).collect();
        let mut taken = Vec::new();
        graph.take_unvisited_links(a, 0, &mut visited, &mut taken);
        graph.take_unvisited_links(b, 0, &mut visited, &mut taken);
        let mut wanted = a_links.clone();
        wanted.extend(b_links.iter().filter(|n| !a_links.contains(n)));
        assert_eq!(taken, wanted, "a's links, then b's that a did not have");
        // A link out of range (from a damaged file) is skipped; the others are taken.
        *a_links.last_mut().unwrap() = graph.len() as u32 + 7;
        let scored: Vec<Scored> = a_links.iter().map(|&node| Scored { distance: 0.0, node }).collect();
        graph.write_list(a, 0, &scored);
        visited.begin(graph.len());
        taken.clear();
        graph.take_unvisited_links(a, 0, &mut visited, &mut taken);
        assert_eq!(taken, a_links[..a_links.len() - 1]);
        // A new search forgot the first one's marks: only what it took is marked. (Whether b is
        // among a's links depends on the parallel build's timing.)
        for node in 0..graph.len() as u32 {
            assert_eq!(visited.insert(node), !taken.contains(&node), "node {node}");
        }
    }

    #[test]
    fn connect_relinks_nodes_that_lost_every_incoming_link() {
        let graph = graph(2_000, 8);
        assert_eq!(graph.connect(), 0, "a fresh graph is connected");
        let entry = unpack(graph.entry.load(Acquire)).0;
        // Cut every layer-0 link into nodes 10..20 (as pruning can), keeping the lists valid.
        let orphans: Vec<u32> = (10..20).filter(|&n| n != entry).collect();
        for node in 0..graph.len() as u32 {
            let list = graph.list(node, 0);
            let kept: Vec<Scored> = (Graph::first_link(list)..=Graph::count(list))
                .map(|slot| list[slot].load(Relaxed))
                .filter(|link| !orphans.contains(link))
                .map(|node| Scored { distance: 0.0, node })
                .collect();
            graph.write_list(node, 0, &kept);
        }
        assert_eq!(reachable(&graph), graph.len() - orphans.len());
        let repaired = graph.connect();
        assert!(repaired >= 1 && repaired <= orphans.len(), "repaired {repaired}");
        assert_eq!(reachable(&graph), graph.len());
        let mut query = Vec::new();
        for &orphan in &orphans {
            graph.vectors.exact_into(orphan, &mut query);
            let found = with_scratch(|s| {
                graph.search(&query, 1, SearchParams { ef: 32, ..SearchParams::default() }, &Everyone, s).to_vec()
            });
            assert_eq!(found[0].node, orphan, "orphan {orphan} is findable again");
        }
    }
}
