//! One HNSW graph (Malkov & Yashunin, 2016): layered proximity graph, greedy descent, beam search
//! with `ef`, and the neighbour-selection heuristic for both new links and pruned back-links.
//!
//! Concurrency: neighbour lists are arrays of `AtomicU32` (`[count, links...]`), so searches read
//! them without locks while builders rewrite them. Builders serialise writes to a node's lists with
//! a lock bit in its layer-0 count word (no separate lock array, and the lock shares a cache line
//! with the list it guards). Every slot always holds some valid node id (new lists start zeroed,
//! and node 0 exists before any list does), so a reader racing a writer sees a possibly stale but
//! valid list.

//!
//! The graph is laid out and locked here; `search` walks it, `build` links new nodes into it
//! (in the order `order` chooses), `renumber` numbers a large batch of them breadth-first, and
//! `file` reads and writes it as the sections of a segment file.

mod build;
mod check;
mod file;
mod order;
mod renumber;
mod repair;
mod scratch;
mod search;
mod vectors;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::distance::Distance;
use crate::memory::{AlignedVec, Array};
use crate::quant::{Codes, Quantization};
pub(crate) use check::GraphCheck;
pub(crate) use file::{read_segment, write_segment, StoredSegment};
use scratch::Visited;
pub(crate) use scratch::{with_scratch, Scored, Scratch};
pub(crate) use search::{Admit, Everyone, Reach};
use vectors::SplitVectors;

/// Highest layer a node can be assigned: with m >= 2 the chance to exceed it is below 2^-15.
const MAX_LEVEL: usize = 15;

/// Packed entry point: node in the low 32 bits, its level above. `NO_ENTRY` while empty.
const NO_ENTRY: u64 = u64::MAX;

/// Bit 31 of a node's layer-0 count word: set while a builder rewrites any of the node's lists.
const LOCKED: u32 = 1 << 31;

/// Bit 30 of a node's layer-0 count word: slot 1 of its layer-0 list is its ring link, to the next
/// node of the circle of copies it belongs to (nodes whose high halves are equal, so the walk
/// cannot tell them apart). Neighbour selection keeps one copy at most in any list, so the ring is
/// what reaches the others; pruning never touches it.
const RING: u32 = 1 << 30;

/// The flag bits of a count word.
const FLAGS: u32 = LOCKED | RING;

/// Holds a node's lock bit; clears it when dropped (also on unwind).
struct NodeGuard<'a> {
    word: &'a AtomicU32,
}

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        self.word.fetch_and(!LOCKED, Release);
    }
}

fn pack(node: u32, level: usize) -> u64 {
    (level as u64) << 32 | node as u64
}

fn unpack(entry: u64) -> (u32, usize) {
    (entry as u32, (entry >> 32) as usize)
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Construction parameters of one graph.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Links per node on upper layers; layer 0 keeps up to `2 * m`.
    pub m: usize,
    pub ef_construction: usize,
    /// Seeds the level draw; with the node's position it fixes the node's level.
    pub seed: u64,
    /// The codes searches walk on (`None`: the bfloat16 halves).
    pub quantization: Quantization,
}

impl Params {
    fn capacity(&self, level: usize) -> usize {
        if level == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    /// Draws a level with P(level >= l) = m^-l (mL = 1/ln m), from a hash of seed and position.
    fn level_of(&self, position: u64) -> usize {
        let z = mix(self.seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
        let level = -uniform.ln() / (self.m as f64).ln();
        (level as usize).min(MAX_LEVEL)
    }
}

/// SplitMix64's finaliser: every bit of `z` flips about half of the result's bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Vectors and links of one graph.
pub(crate) struct Graph {
    dim: usize,
    params: Params,
    distance: Distance,
    vectors: SplitVectors,
    levels: Array<u8>,
    /// Per node `[count | LOCKED | RING, 2m links]` (with `RING`, the first link is the ring's).
    layer0: Array<AtomicU32>,
    /// For each node with level > 0, `[count, m links]` for levels 1..=level, back to back.
    upper: Array<AtomicU32>,
    /// Where each node's upper lists start in `upper` (4 bytes a node rather than a pointer).
    upper_start: Array<u32>,
    entry: AtomicU64,
    /// Held by an insertion that raises the top level (see `insert`).
    entry_lock: Mutex<()>,
    /// Quantized codes of the vectors, when `params.quantization` asks for them.
    codes: Option<Codes>,
    /// The nodes with a ring link.
    rings: RingMembers,
    /// Working-set bytes from which layer-0 walks expand two candidates at once
    /// (`search::PAIRED_FROM`; tests lower it).
    paired_from: usize,
}

/// Which nodes have a ring link (`RING`), one bit a node. A layer-0 search tests each node that
/// enters its beam: the bit lies in a small array that stays cached, where the node's count word
/// would cost one more line a node visited (and copies are rare).
#[derive(Default)]
struct RingMembers {
    /// Set once any node has a ring link: searches of a graph without copies skip the tests.
    any: AtomicBool,
    words: Vec<AtomicU64>,
}

impl RingMembers {
    /// The members `words` hold (bit `node % 64` of word `node / 64`).
    fn from_words(words: &[u64]) -> RingMembers {
        RingMembers {
            any: AtomicBool::new(words.iter().any(|&w| w != 0)),
            words: words.iter().map(|&w| AtomicU64::new(w)).collect(),
        }
    }

    /// The members of a layer-0 array: the nodes whose count word has `RING`.
    fn of_lists(layer0: &[AtomicU32], stride: usize) -> RingMembers {
        let mut members = RingMembers::default();
        members.grow(layer0.len() / stride);
        for (node, list) in layer0.chunks_exact(stride).enumerate() {
            if list[0].load(Relaxed) & RING != 0 {
                members.insert(node as u32);
            }
        }
        members
    }

    /// Makes room for nodes `0..len`.
    fn grow(&mut self, len: usize) {
        self.words.resize_with(len.div_ceil(64), Default::default);
    }

    /// Marks `node` (within `grow`'s room), after its `RING` flag was published: a search that
    /// sees the bit finds the ring link.
    fn insert(&self, node: u32) {
        self.words[node as usize / 64].fetch_or(1 << (node % 64), Release);
        self.any.store(true, Release);
    }

    #[inline]
    fn contains(&self, node: u32) -> bool {
        self.words.get(node as usize / 64).is_some_and(|w| w.load(Acquire) & (1 << (node % 64)) != 0)
    }

    #[inline]
    fn any(&self) -> bool {
        self.any.load(Acquire)
    }

    fn to_words(&self) -> Vec<u64> {
        self.words.iter().map(|w| w.load(Acquire)).collect()
    }

    fn heap_bytes(&self) -> usize {
        self.words.capacity() * size_of::<AtomicU64>()
    }
}

fn zeroed(len: usize) -> impl Iterator<Item = AtomicU32> {
    (0..len).map(|_| AtomicU32::new(0))
}

impl Graph {
    pub(crate) fn new(dim: usize, params: Params, distance: Distance) -> Self {
        Graph {
            dim,
            params,
            distance,
            vectors: SplitVectors::new(dim),
            levels: Array::default(),
            layer0: Array::default(),
            upper: Array::default(),
            upper_start: Array::default(),
            entry: AtomicU64::new(NO_ENTRY),
            entry_lock: Mutex::new(()),
            codes: None,
            rings: RingMembers::default(),
            paired_from: search::PAIRED_FROM,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    /// `node`'s stored vector (exact: the two halves joined), written into `out`.
    pub(crate) fn vector_into(&self, node: u32, out: &mut Vec<f32>) {
        self.vectors.exact_into(node, out);
    }

    /// The exact distance from `query` to `node`'s stored vector, read from its two halves.
    #[inline]
    pub(crate) fn exact_distance(&self, query: &[f32], node: u32) -> f32 {
        self.distance.exact(query, self.vectors.high(node), self.vectors.low(node))
    }

    /// A lock-free copy that no longer reserves room for growth: the sealed form of this graph.
    pub(crate) fn compacted(&self) -> Graph {
        let copy = |list: &[AtomicU32]| {
            let mut copy = AlignedVec::new();
            copy.reserve(list.len());
            copy.extend(list.iter().map(|a| AtomicU32::new(a.load(Relaxed) & !LOCKED)));
            Array::from(copy)
        };
        Graph {
            dim: self.dim,
            params: self.params,
            distance: self.distance,
            vectors: self.vectors.compacted(),
            levels: AlignedVec::copy_of(&self.levels).into(),
            layer0: copy(&self.layer0),
            upper: copy(&self.upper),
            upper_start: AlignedVec::copy_of(&self.upper_start).into(),
            entry: AtomicU64::new(self.entry.load(Acquire)),
            entry_lock: Mutex::new(()),
            codes: self.codes.as_ref().map(|codes| self.vectors.recode(codes.codebook.kind)),
            rings: RingMembers::from_words(&self.rings.to_words()),
            paired_from: self.paired_from,
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.vectors.shrink_to_fit();
        self.levels.shrink_to_fit();
        self.layer0.shrink_to_fit();
        self.upper.shrink_to_fit();
        self.upper_start.shrink_to_fit();
        self.rings.words.shrink_to_fit();
    }

    /// Heap bytes held (arrays read from a mapping count nothing).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.codes.as_ref().map_or(0, Codes::heap_bytes)
            + self.vectors.heap_bytes()
            + self.levels.heap_bytes()
            + self.layer0.heap_bytes()
            + self.upper.heap_bytes()
            + self.upper_start.heap_bytes()
            + self.rings.heap_bytes()
    }

    #[inline]
    fn list(&self, node: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let stride = 1 + self.params.capacity(0);
            &self.layer0[node as usize * stride..(node as usize + 1) * stride]
        } else {
            let stride = 1 + self.params.m;
            let start = self.upper_start[node as usize] as usize + (level - 1) * stride;
            &self.upper[start..start + stride]
        }
    }

    /// Takes the node's lock bit, spinning (then yielding) while another builder holds it.
    fn lock_node(&self, node: u32) -> NodeGuard<'_> {
        let word = &self.list(node, 0)[0];
        let mut spins = 0u32;
        loop {
            let current = word.load(Relaxed);
            if current & LOCKED == 0 && word.compare_exchange_weak(current, current | LOCKED, Acquire, Relaxed).is_ok()
            {
                return NodeGuard { word };
            }
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Number of links in a list (the ring link included), without the flag bits.
    #[inline]
    fn count(list: &[AtomicU32]) -> usize {
        ((list[0].load(Acquire) & !FLAGS) as usize).min(list.len() - 1)
    }

    /// The slot of a list's first prunable link: 2 after a ring link, else 1.
    #[inline]
    fn first_link(list: &[AtomicU32]) -> usize {
        if list[0].load(Acquire) & RING != 0 {
            2
        } else {
            1
        }
    }

    /// The next node in `node`'s ring of copies, if it has one.
    fn ring_next(&self, node: u32) -> Option<u32> {
        let list = self.list(node, 0);
        (Self::first_link(list) == 2).then(|| list[1].load(Relaxed))
    }

    /// Copies a node's links on `level` into `out`. Skips links that could not be in a valid
    /// graph (a node out of range, or below `level`): a damaged file read without verification
    /// then gives wrong answers, never an out-of-bounds read.
    #[inline]
    fn copy_neighbors(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend(self.links(node, level).filter(|&n| self.may_link(n, level)));
    }

    /// Appends to `unvisited` the links of `node` on `level` that `visited` did not hold yet,
    /// marking them; skips links as `copy_neighbors` does. One pass over the list, without a
    /// branch on the visited check (a coin toss to the predictor: +6-8% queries/s with 4-bit
    /// codes on npm51k) and without copying the list first.
    #[inline]
    fn take_unvisited_links(&self, node: u32, level: usize, visited: &mut Visited, unvisited: &mut Vec<u32>) {
        // The count word is read once: a builder may change it meanwhile.
        let links = self.links(node, level);
        let mut len = unvisited.len();
        unvisited.resize(len + links.len(), 0);
        for n in links {
            unvisited[len] = n;
            len += usize::from(self.may_link(n, level) && visited.insert(n));
        }
        unvisited.truncate(len);
    }

    /// The links of `node` on `level`, as stored.
    #[inline]
    fn links(&self, node: u32, level: usize) -> impl ExactSizeIterator<Item = u32> + '_ {
        let list = self.list(node, level);
        list[1..=Self::count(list)].iter().map(|slot| slot.load(Relaxed))
    }

    /// Whether a list on `level` may hold `n`: a node that exists on that layer.
    #[inline]
    fn may_link(&self, n: u32, level: usize) -> bool {
        if level == 0 {
            (n as usize) < self.len()
        } else {
            self.levels.get(n as usize).is_some_and(|&l| l as usize >= level)
        }
    }

    /// Replaces a node's prunable links on `level` with `links` (at most `room` of them); a ring
    /// link stays. The caller holds the node's lock.
    fn write_list(&self, node: u32, level: usize, links: &[Scored]) {
        let list = self.list(node, level);
        let first = Self::first_link(list);
        for (slot, link) in list[first..].iter().zip(links) {
            slot.store(link.node, Relaxed);
        }
        // Keep the lock and ring bits while publishing the new count.
        let flags = list[0].load(Relaxed) & FLAGS;
        list[0].store((first - 1 + links.len().min(list.len() - first)) as u32 | flags, Release);
    }

    /// How many prunable links a node's list on `level` can hold (one fewer beside a ring link).
    fn room(&self, node: u32, level: usize) -> usize {
        self.params.capacity(level) + 1 - Self::first_link(self.list(node, level))
    }
}
