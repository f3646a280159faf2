//! Per-thread search state, reused across queries so a search allocates nothing in steady state.

use std::cell::RefCell;
use std::cmp::Ordering;
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

/// Visited marks. Up to `BITS_UP_TO` nodes, one bit a node: 128 KiB at 1M nodes, which stay in
/// L2 where stamps of 16 bits a node (2 MiB) missed it (an expansion reads 2m marks at random,
/// and at 1M those misses took 10% of a 4-bit search); a new search clears them with a `memset`,
/// at 1M a microsecond against the hundred the search takes. Beyond, a 16-bit stamp a node,
/// whose search starts in O(1) (one full reset every 65,535 searches) where clearing bits would
/// cost more than the search.
#[derive(Default)]
pub(crate) struct Visited {
    bits: Vec<u64>,
    /// Words of `bits` in use by the current search.
    words: usize,
    stamps: Vec<u16>,
    stamp: u16,
    stamped: bool,
}

/// Nodes up to which marks are bits: 2M.
const BITS_UP_TO: usize = 1 << 21;

impl Visited {
    /// Starts a new search over `len` nodes.
    pub fn begin(&mut self, len: usize) {
        self.bits[..self.words].fill(0);
        self.stamped = len > BITS_UP_TO;
        if self.stamped {
            self.words = 0;
            if self.stamps.len() < len {
                self.stamps.resize(len, 0);
            }
            self.stamp = self.stamp.wrapping_add(1);
            if self.stamp == 0 {
                self.stamps.fill(0);
                self.stamp = 1;
            }
        } else {
            self.words = len.div_ceil(64);
            if self.bits.len() < self.words {
                self.bits.resize(self.words, 0);
            }
        }
    }

    /// Marks `node`; true when it was not yet visited in this search.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        if self.stamped {
            let mark = &mut self.stamps[node as usize];
            let fresh = *mark != self.stamp;
            *mark = self.stamp;
            return fresh;
        }
        let (word, bit) = (&mut self.bits[node as usize / 64], 1u64 << (node % 64));
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// A layer search's beam: the best `ef` nodes it may return found so far [W], closest first,
/// and the nodes still to expand [C], in one sorted array of keys (`pack_scored`, with the two
/// flags below in its low bits), as DiskANN's `NeighborPriorityQueue` keeps them. A node that
/// enters takes one place (found by `rank`, the farther keys moved), where W and C apart placed
/// it twice (one placing fewer: +4-16% queries/s, more at 1M than in cache); a node that falls
/// out of W leaves C with it, as a bound that only falls would stop the search before expanding
/// it. `cursor` is the closest node not yet expanded: all before it were. Nodes walked through
/// but never returned (refused, or copies met through rings) stay among the others flagged
/// `TRANSIT`, uncounted, and leave once farther than the `ef`-th counted node.
///
/// A sorted array rather than heaps: a heap's sift paths mispredict a branch a level on every
/// insertion, and the array comes out sorted; taking the closest is a step of `cursor`.
#[derive(Default)]
pub(crate) struct Beam {
    sorted: Vec<u64>,
    ef: usize,
    /// The keys not flagged `TRANSIT`, at most `ef`.
    results: usize,
    /// The index of the closest key not flagged `EXPANDED`; `sorted.len()` when there is none.
    cursor: usize,
    /// The distance of the last key once there are `ef` results, infinite before: kept rather
    /// than unpacked from the array for every distance the walk compares with it.
    bound: f32,
}

/// A key's flag: the node was expanded.
const EXPANDED: u64 = 1;
/// A key's flag: the node is walked through but is not a result.
const TRANSIT: u64 = 2;

/// `scored` as an integer that orders as `Scored` does: the distance's bits mapped to an
/// unsigned order equal to `f32::total_cmp`'s, above the node, above two bits left for flags
/// (nodes are below 2^28, `Options::MAX_SEGMENT_CAPACITY`). Nodes are distinct within a search,
/// so the flags never decide an order.
#[inline(always)]
fn pack_scored(scored: Scored) -> u64 {
    debug_assert!(scored.node < 1 << 30, "node {} leaves no room for flags", scored.node);
    let bits = scored.distance.to_bits();
    let ordered = if bits >> 31 == 1 { !bits } else { bits | 1 << 31 };
    u64::from(ordered) << 32 | u64::from(scored.node) << 2
}

/// How many of the ascending `sorted` keys are below `key`: halving steps without branches (the
/// next half chosen by a conditional move) until `COUNTED` keys are left, then a count of those,
/// compares without branches and independent of each other (baseline x86-64 has no 64-bit
/// vector compare, so they stay scalar, four to an unrolled step). A binary search that
/// branched mispredicted a step in two (8% of a 4-bit search on 10,000 vectors); counting every
/// key of a beam of 64 chained an add a pair of keys (6% of a 1M 4-bit search).
#[inline(always)]
fn rank(sorted: &[u64], key: u64) -> usize {
    const COUNTED: usize = 16;
    let (mut base, mut len) = (0, sorted.len());
    // All keys before `base` are below `key`; those from `base + len` on are not.
    while len > COUNTED {
        let half = len / 2;
        // A plain `if` compiled to a branch (rustc 1.95), mispredicted every other step.
        base = std::hint::select_unpredictable(sorted[base + half] < key, base + half, base);
        len -= half;
    }
    base + sorted[base..base + len].iter().map(|&k| usize::from(k < key)).sum::<usize>()
}

/// The `Scored` that `pack_scored` packed, whatever its flags.
#[inline(always)]
fn unpack_scored(key: u64) -> Scored {
    let ordered = (key >> 32) as u32;
    let bits = if ordered >> 31 == 1 { ordered & !(1 << 31) } else { !ordered };
    Scored { distance: f32::from_bits(bits), node: (key as u32) >> 2 }
}

impl Beam {
    /// Empties the beam for a search that keeps the best `ef`.
    pub fn start(&mut self, ef: usize) {
        self.sorted.clear();
        self.ef = ef;
        self.results = 0;
        self.cursor = 0;
        self.bound = f32::INFINITY;
    }

    /// The distance a node must beat to enter: the farthest result's once there are `ef`
    /// (then the last key, as nothing stays beyond it), infinite before.
    #[inline]
    pub fn bound(&self) -> f32 {
        self.bound
    }

    /// Whether a node at `distance` would enter (any node while there are fewer than `ef`
    /// results).
    #[inline]
    pub fn keeps(&self, distance: f32) -> bool {
        self.results < self.ef || distance < self.bound()
    }

    /// Adds `scored`, to be expanded, and to be returned when `result`: then, when that makes
    /// more than `ef` results, the farthest leaves with the nodes in transit beyond it. A node
    /// beyond a full beam does not enter.
    #[inline]
    pub fn insert(&mut self, scored: Scored, result: bool) {
        let key = pack_scored(scored) | if result { 0 } else { TRANSIT };
        let at = rank(&self.sorted, key);
        if at == self.sorted.len() && self.results >= self.ef {
            return;
        }
        if result && self.results == self.ef {
            // A full beam's new result pushes out the farthest, its last key (nothing stays
            // beyond it once the beam is full), and the nodes in transit between the two. They
            // leave, and the new bound is read, before the others move: read from the tail right
            // after the move, the bound waited on the move's stores (a fifth of this function's
            // samples, 1M 4-bit).
            debug_assert!(self.sorted.last().is_some_and(|&key| key & TRANSIT == 0));
            self.sorted.pop();
            while self.sorted.len() > at && self.sorted.last().is_some_and(|&key| key & TRANSIT != 0) {
                self.sorted.pop();
            }
            let last = if at == self.sorted.len() { key } else { self.sorted[self.sorted.len() - 1] };
            self.bound = unpack_scored(last).distance;
            self.sorted.insert(at, key);
            self.cursor = self.cursor.min(at);
            return;
        }
        self.sorted.insert(at, key);
        self.cursor = self.cursor.min(at);
        if result {
            self.results += 1;
            if self.results == self.ef {
                while self.sorted.last().is_some_and(|&key| key & TRANSIT != 0) {
                    self.sorted.pop();
                }
                self.bound = self.sorted.last().map_or(f32::INFINITY, |&key| unpack_scored(key).distance);
            }
        }
    }

    /// Takes the closest node not yet expanded, which stays in the beam.
    #[inline]
    pub fn pop(&mut self) -> Option<Scored> {
        let key = self.sorted.get_mut(self.cursor)?;
        *key |= EXPANDED;
        let closest = unpack_scored(*key);
        self.cursor += 1;
        while self.sorted.get(self.cursor).is_some_and(|&key| key & EXPANDED != 0) {
            self.cursor += 1;
        }
        Some(closest)
    }

    /// The closest node not yet expanded.
    #[inline]
    pub fn peek(&self) -> Option<Scored> {
        self.sorted.get(self.cursor).map(|&key| unpack_scored(key))
    }

    /// The second closest node not yet expanded.
    #[inline]
    pub fn peek_second(&self) -> Option<Scored> {
        let after = self.sorted.get(self.cursor + 1..)?;
        after.iter().find(|&&key| key & EXPANDED == 0).map(|&key| unpack_scored(key))
    }

    /// The results, closest first, moved out into `out`.
    pub fn drain_into(&mut self, out: &mut Vec<Scored>) {
        out.extend(self.sorted.drain(..).filter(|&key| key & TRANSIT == 0).map(unpack_scored));
        self.results = 0;
        self.cursor = 0;
        self.bound = f32::INFINITY;
    }
}

/// A range search's nodes still to expand, closest first: packed keys (`pack_scored`) sorted
/// ascending, of which those before `head` were taken. Taking the closest is a step of `head`,
/// where a binary heap's pop sifted down a path of unpredictable branches; adding one finds its
/// place by `rank`, as the beam does.
#[derive(Default)]
pub(crate) struct Candidates {
    sorted: Vec<u64>,
    head: usize,
}

impl Candidates {
    pub fn clear(&mut self) {
        self.sorted.clear();
        self.head = 0;
    }

    #[inline]
    pub fn push(&mut self, scored: Scored) {
        let key = pack_scored(scored);
        let at = self.head + rank(&self.sorted[self.head..], key);
        self.sorted.insert(at, key);
    }

    /// Takes the closest.
    #[inline]
    pub fn pop(&mut self) -> Option<Scored> {
        let key = *self.sorted.get(self.head)?;
        self.head += 1;
        Some(unpack_scored(key))
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
    /// A layer search's best `ef` so far [W] and nodes still to expand [C].
    pub beam: Beam,
    /// A range search's nodes still to expand, closest first.
    pub candidates: Candidates,
    /// A scan's or a range search's best so far, farthest on top.
    pub results: BinaryHeap<Scored>,
    /// `beam` drained in ascending order after a layer search (with the copies that tie them).
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
    /// The distances to `unvisited`, in its order.
    pub distances: Vec<f32>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_marks_each_node_once_a_search() {
        let mut visited = Visited::default();
        visited.begin(130);
        for node in [0, 63, 64, 127, 129] {
            assert!(visited.insert(node), "{node} is new");
            assert!(!visited.insert(node), "{node} was marked");
        }
        assert!(visited.insert(1) && visited.insert(65) && visited.insert(128));
        visited.begin(200);
        assert!((0..200).all(|node| visited.insert(node)), "a new search starts unmarked");
        assert!((0..200).all(|node| !visited.insert(node)));
        // Beyond `BITS_UP_TO` nodes, stamps: across their wrap, and between the two kinds.
        let large = BITS_UP_TO as u32 + 70;
        for search in 0..70_000u32 {
            visited.begin(large as usize);
            let node = [0, 1, large - 1][search as usize % 3];
            assert!(visited.insert(node) && !visited.insert(node), "search {search}");
            assert!(visited.insert(2 + search % (large - 3)), "search {search}");
        }
        visited.begin(200);
        assert!((0..200).all(|node| visited.insert(node)), "bits after stamps start unmarked");
        visited.begin(large as usize);
        assert!([0, 1, 199, large - 1].iter().all(|&node| visited.insert(node)));
    }

    /// Scores with few distinct distances, so ties are broken by node as everywhere else.
    fn random_scores(count: u32, seed: u64) -> Vec<Scored> {
        let mut state = seed;
        (0..count)
            .map(|node| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                Scored { distance: (state >> 58) as f32, node }
            })
            .collect()
    }

    #[test]
    fn beam_keeps_the_closest_ef_in_order() {
        let scored = random_scores(500, 5);
        for ef in [1, 7, 64, 600] {
            let mut beam = Beam::default();
            beam.start(ef);
            for &s in &scored {
                // As a search adds them: only nodes closer than the worst once the beam is full.
                if beam.keeps(s.distance) {
                    beam.insert(s, true);
                }
            }
            let mut expected = scored.clone();
            expected.sort_unstable();
            expected.truncate(ef);
            let mut got = Vec::new();
            beam.drain_into(&mut got);
            assert_eq!(got, expected, "ef {ef}");
        }
    }

    /// The beam is the paper's W and C in one array: checked against them kept apart, W the
    /// best `ef` results so far and C a heap of the nodes to expand (results and nodes in
    /// transit), from which nodes beyond W's worst are dropped as they can no longer enter.
    #[test]
    fn beam_expands_in_the_order_of_w_and_c_kept_apart() {
        use std::cmp::Reverse;
        for (ef, seed) in [(1, 1), (5, 2), (16, 3), (40, 4), (120, 5)] {
            let scored = random_scores(2_000, seed);
            let mut beam = Beam::default();
            beam.start(ef);
            let mut w: Vec<Scored> = Vec::new();
            let mut c: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
            let (mut pops, mut transits) = (0, 0);
            for (i, &s) in scored.iter().enumerate() {
                // Every third node in transit (refused, or a copy met through a ring).
                let result = i % 3 != 0;
                let full = w.len() >= ef;
                let worst = w.last().copied();
                if !full || Some(s) < worst {
                    if result {
                        let at = w.partition_point(|&x| x < s);
                        w.insert(at, s);
                        w.truncate(ef);
                    } else {
                        transits += 1;
                    }
                    c.push(Reverse(s));
                    if w.len() >= ef {
                        let worst = *w.last().unwrap();
                        c.retain(|&Reverse(x)| x <= worst);
                    }
                }
                assert_eq!(beam.keeps(s.distance), !full || s.distance < worst.unwrap().distance, "ef {ef} node {i}");
                // The beam refuses what lies beyond it on its own, as the walk asks `keeps` first.
                beam.insert(s, result);
                let bound = if w.len() >= ef { w.last().unwrap().distance } else { f32::INFINITY };
                assert_eq!(beam.bound(), bound, "ef {ef} node {i}");
                let mut expected = c.clone().into_sorted_vec().into_iter().rev().map(|Reverse(x)| x);
                assert_eq!(beam.peek(), expected.next(), "ef {ef} node {i}");
                assert_eq!(beam.peek_second(), expected.next(), "ef {ef} node {i}");
                if i % 4 == 1 {
                    assert_eq!(beam.pop(), c.pop().map(|Reverse(x)| x), "ef {ef} node {i}");
                    pops += 1;
                }
            }
            while let Some(Reverse(x)) = c.pop() {
                assert_eq!(beam.pop(), Some(x), "ef {ef}");
            }
            assert_eq!(beam.pop(), None, "ef {ef}");
            assert!(pops > 400 && transits > 0, "ef {ef}: the walk exercised both kinds");
            let mut got = Vec::new();
            beam.drain_into(&mut got);
            assert_eq!(got, w, "ef {ef}: the results, closest first, without the nodes in transit");
        }
    }

    #[test]
    fn candidates_come_out_closest_first_as_from_a_heap() {
        let mut candidates = Candidates::default();
        let mut heap = BinaryHeap::new();
        // Pushes and pops interleaved, past the size where a place is found by binary search.
        for round in 0..3 {
            for (node, scored) in random_scores(300, 9 + round).into_iter().enumerate() {
                let scored = Scored { distance: scored.distance - 30.0, node: node as u32 + 1000 * round as u32 };
                candidates.push(scored);
                heap.push(std::cmp::Reverse(scored));
                if node % 3 == 0 {
                    assert_eq!(candidates.pop(), heap.pop().map(|r| r.0));
                }
            }
        }
        while let Some(std::cmp::Reverse(expected)) = heap.pop() {
            assert_eq!(candidates.pop(), Some(expected));
        }
        assert_eq!(candidates.pop(), None);
        candidates.clear();
        assert_eq!(candidates.pop(), None);
    }

    #[test]
    fn packed_scores_order_as_scores_and_unpack_bit_for_bit() {
        let distances = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.25,
            7.0,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        let scored: Vec<Scored> = distances
            .iter()
            .flat_map(|&distance| [0, 1, (1 << 30) - 1].map(|node| Scored { distance, node }))
            .collect();
        for &a in &scored {
            let back = unpack_scored(pack_scored(a));
            assert_eq!((back.distance.to_bits(), back.node), (a.distance.to_bits(), a.node));
            for &b in &scored {
                assert_eq!(pack_scored(a).cmp(&pack_scored(b)), a.cmp(&b), "{a:?} {b:?}");
            }
        }
    }
}
