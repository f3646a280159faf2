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

/// The best nodes found so far [W], closest first, at most `ef` of them: a sorted array of
/// `Scored` packed into one integer each (`pack_scored`), whose order is `Scored`'s. A sorted
/// array rather than a heap: a heap's sift paths mispredict a branch a level on every insertion,
/// and the array comes out sorted. The place of a new node is found by `rank`: in a beam of up
/// to 96, a count of the smaller keys, where a binary search was a chain of dependent loads (8%
/// of a 4-bit search on 10,000 vectors).
#[derive(Default)]
pub(crate) struct Beam {
    sorted: Vec<u64>,
    ef: usize,
}

/// `scored` as an integer that orders as `Scored` does: the distance's bits mapped to an
/// unsigned order equal to `f32::total_cmp`'s, above the node.
#[inline(always)]
fn pack_scored(scored: Scored) -> u64 {
    let bits = scored.distance.to_bits();
    let ordered = if bits >> 31 == 1 { !bits } else { bits | 1 << 31 };
    u64::from(ordered) << 32 | u64::from(scored.node)
}

/// How many of the ascending `sorted` keys are below `key`. Up to `COUNTED` keys, by counting
/// them: compares without branches, independent of each other (baseline x86-64 has no 64-bit
/// vector compare, so they stay scalar, four to an unrolled step); beyond, by a binary search,
/// whose chain of dependent loads costs less than reading every key (counting 400 keys lost 12%
/// at ef 400, 8-bit npm51k).
#[inline(always)]
fn rank(sorted: &[u64], key: u64) -> usize {
    const COUNTED: usize = 96;
    if sorted.len() <= COUNTED {
        sorted.iter().map(|&k| usize::from(k < key)).sum()
    } else {
        sorted.partition_point(|&k| k < key)
    }
}

/// The `Scored` that `pack_scored` packed.
#[inline(always)]
fn unpack_scored(key: u64) -> Scored {
    let ordered = (key >> 32) as u32;
    let bits = if ordered >> 31 == 1 { ordered & !(1 << 31) } else { !ordered };
    Scored { distance: f32::from_bits(bits), node: key as u32 }
}

impl Beam {
    /// Empties the beam for a search that keeps the best `ef`.
    pub fn start(&mut self, ef: usize) {
        self.sorted.clear();
        self.ef = ef;
    }

    /// The distance a node must beat to enter: the farthest node's once the beam is full,
    /// infinite before.
    #[inline]
    pub fn bound(&self) -> f32 {
        match self.sorted.last() {
            Some(&worst) if self.sorted.len() >= self.ef => unpack_scored(worst).distance,
            _ => f32::INFINITY,
        }
    }

    /// Whether a node at `distance` would enter (any node while the beam is not full).
    #[inline]
    pub fn keeps(&self, distance: f32) -> bool {
        self.sorted.len() < self.ef || distance < self.bound()
    }

    /// Adds `scored`, dropping the farthest when that would make more than `ef`.
    #[inline]
    pub fn insert(&mut self, scored: Scored) {
        let key = pack_scored(scored);
        let at = rank(&self.sorted, key);
        if at >= self.ef {
            return;
        }
        if self.sorted.len() >= self.ef {
            self.sorted.pop();
        }
        self.sorted.insert(at, key);
    }

    /// The nodes, closest first, moved out into `out`.
    pub fn drain_into(&mut self, out: &mut Vec<Scored>) {
        out.extend(self.sorted.drain(..).map(unpack_scored));
    }
}

/// Nodes still to expand [C], closest first: packed keys (`pack_scored`) sorted ascending, of
/// which those before `head` were taken. Taking the closest is a step of `head`, where a
/// binary heap's pop sifted down a path of unpredictable branches (5% of a 4-bit search on
/// 10,000 vectors); adding one finds its place by `rank`, as the beam does, and moves the
/// farther ones, which a beam search keeps few of (`drop_beyond`).
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

    /// The second closest, left in place.
    #[inline]
    pub fn peek_second(&self) -> Option<Scored> {
        self.sorted.get(self.head + 1).map(|&key| unpack_scored(key))
    }

    /// The closest, left in place.
    #[inline]
    pub fn peek(&self) -> Option<Scored> {
        self.sorted.get(self.head).map(|&key| unpack_scored(key))
    }

    /// Forgets the candidates farther than `bound`: a beam search whose bound only falls would
    /// stop before expanding them.
    #[inline]
    pub fn drop_beyond(&mut self, bound: f32) {
        while self.sorted.len() > self.head && unpack_scored(self.sorted[self.sorted.len() - 1]).distance > bound {
            self.sorted.pop();
        }
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
    pub candidates: Candidates,
    /// The best `ef` found so far during a layer search [W].
    pub beam: Beam,
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

    #[test]
    fn beam_keeps_the_closest_ef_in_order() {
        let mut state = 5u64;
        let scored: Vec<Scored> = (0..500u32)
            .map(|node| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Few distinct distances, so ties are broken by node as everywhere else.
                Scored { distance: (state >> 58) as f32, node }
            })
            .collect();
        for ef in [1, 7, 64, 600] {
            let mut beam = Beam::default();
            beam.start(ef);
            for &s in &scored {
                // As a search adds them: only nodes closer than the worst once the beam is full.
                if beam.keeps(s.distance) {
                    beam.insert(s);
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

    #[test]
    fn candidates_come_out_closest_first_as_from_a_heap() {
        let mut state = 9u64;
        let mut candidates = Candidates::default();
        let mut heap = BinaryHeap::new();
        // Pushes and pops interleaved, past the size where a place is found by binary search.
        for round in 0..3 {
            for node in 0..300u32 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let scored = Scored { distance: (state >> 56) as f32 - 100.0, node: node + 1000 * round };
                candidates.push(scored);
                heap.push(std::cmp::Reverse(scored));
                if node % 3 == 0 {
                    assert_eq!(candidates.pop(), heap.pop().map(|r| r.0));
                }
                assert_eq!(candidates.peek(), heap.peek().map(|r| r.0));
            }
        }
        // Dropping the farther ones leaves the closer ones in order.
        candidates.drop_beyond(0.0);
        let mut left = Vec::new();
        while let Some(c) = candidates.pop() {
            left.push(c);
        }
        let expected: Vec<Scored> =
            std::iter::from_fn(|| heap.pop().map(|r| r.0)).filter(|c| c.distance <= 0.0).collect();
        assert!(!expected.is_empty());
        assert_eq!(left, expected);
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
        let scored: Vec<Scored> =
            distances.iter().flat_map(|&distance| [0, 1, u32::MAX].map(|node| Scored { distance, node })).collect();
        for &a in &scored {
            let back = unpack_scored(pack_scored(a));
            assert_eq!((back.distance.to_bits(), back.node), (a.distance.to_bits(), a.node));
            for &b in &scored {
                assert_eq!(pack_scored(a).cmp(&pack_scored(b)), a.cmp(&b), "{a:?} {b:?}");
            }
        }
    }
}
