//! One HNSW graph (Malkov & Yashunin, 2016): layered proximity graph, greedy descent, beam search
//! with `ef`, and the neighbour-selection heuristic for both new links and pruned back-links.
//!
//! Concurrency: neighbour lists are arrays of `AtomicU32` (`[count, links...]`), so searches read
//! them without locks while builders rewrite them. Builders serialise writes to a node's lists with
//! a lock bit in its layer-0 count word (no separate lock array, and the lock shares a cache line
//! with the list it guards). Every slot always holds some valid node id (new lists start zeroed,
//! and node 0 exists before any list does), so a reader racing a writer sees a possibly stale but
//! valid list.

mod scratch;
mod vectors;

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use crate::distance::{prefetch_all, Distance};
use crate::quant::{self, Codebook, Codes, QuantKernels, Quantization, QueryCode};
use crate::storage::segment_file::{Section, SegmentFile, SegmentHeader};
use crate::storage::{reserve_huge, Array};
pub(crate) use scratch::{with_scratch, Scored, Scratch};
use vectors::SplitVectors;

/// Highest layer a node can be assigned: with m >= 2 the chance to exceed it is below 2^-15.
const MAX_LEVEL: usize = 15;

/// Packed entry point: node in the low 32 bits, its level above. `NO_ENTRY` while empty.
const NO_ENTRY: u64 = u64::MAX;

/// Bit 31 of a node's layer-0 count word: set while a builder rewrites any of the node's lists.
const LOCKED: u32 = 1 << 31;

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

/// How a walk ranks the nodes it visits: cheaply, to choose where to go and what to re-score.
pub(crate) trait Walk {
    fn distance(&self, node: u32) -> f32;
    /// Starts loading what `distance` will read for `node`.
    fn prefetch(&self, node: u32);
}

/// Ranks by the bfloat16 high halves of the vectors (building, and searches without codes).
struct CoarseWalk<'a> {
    graph: &'a Graph,
    query: &'a [f32],
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
        let mut z = self.seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
        let level = -uniform.ln() / (self.m as f64).ln();
        (level as usize).min(MAX_LEVEL)
    }
}

/// Vectors and links of one graph.
pub(crate) struct Graph {
    dim: usize,
    params: Params,
    distance: Distance,
    vectors: SplitVectors,
    levels: Array<u8>,
    /// Per node `[count | LOCKED, 2m links]`.
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
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    /// Adds `vectors` (row-major) as unlinked nodes; `insert` links them.
    pub(crate) fn append(&mut self, vectors: &[f32]) {
        let count = vectors.len() / self.dim;
        let stride0 = 1 + self.params.capacity(0);
        let stride = 1 + self.params.m;
        self.vectors.push(vectors);
        match (&mut self.codes, self.params.quantization) {
            (_, Quantization::None) => {}
            // The first batch teaches the codebook; sealing learns it again from every vector.
            (None, kind) => self.codes = Some(Codes::build(kind, self.dim, vectors)),
            (Some(codes), _) => codes.push(vectors),
        }
        let (levels, layer0) = (self.levels.vec_mut(), self.layer0.vec_mut());
        let (upper, upper_start) = (self.upper.vec_mut(), self.upper_start.vec_mut());
        levels.reserve(count);
        reserve_huge(layer0, count * stride0);
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
    }

    /// A lock-free copy that no longer reserves room for growth: the sealed form of this graph.
    pub(crate) fn compacted(&self) -> Graph {
        let copy = |list: &[AtomicU32]| {
            let mut copy = Vec::new();
            reserve_huge(&mut copy, list.len());
            copy.extend(list.iter().map(|a| AtomicU32::new(a.load(Relaxed) & !LOCKED)));
            Array::from(copy)
        };
        Graph {
            dim: self.dim,
            params: self.params,
            distance: self.distance,
            vectors: self.vectors.compacted(),
            levels: self.levels.to_vec().into(),
            layer0: copy(&self.layer0),
            upper: copy(&self.upper),
            upper_start: self.upper_start.to_vec().into(),
            entry: AtomicU64::new(self.entry.load(Acquire)),
            entry_lock: Mutex::new(()),
            codes: self.codes.as_ref().map(|codes| self.vectors.recode(codes.codebook.kind)),
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.vectors.shrink_to_fit();
        self.levels.shrink_to_fit();
        self.layer0.shrink_to_fit();
        self.upper.shrink_to_fit();
        self.upper_start.shrink_to_fit();
    }

    /// The graph's arrays as segment file sections (besides the ids, which the segment owns),
    /// and the codebook's words when it has codes. Call it only while no insert runs, so no
    /// lock bit is set.
    pub(crate) fn sections(&self) -> (Vec<(Section, &[u8])>, Vec<u32>) {
        let (high, low) = self.vectors.halves();
        let mut sections = vec![
            (Section::Levels, self.levels.bytes()),
            (Section::High, high.bytes()),
            (Section::Low, low.bytes()),
            (Section::Layer0, self.layer0.bytes()),
            (Section::UpperStart, self.upper_start.bytes()),
            (Section::Upper, self.upper.bytes()),
        ];
        let codebook = self.codes.as_ref().map_or(Vec::new(), |codes| {
            sections.push((Section::Codes, codes.bytes.bytes()));
            sections.push((Section::CodeNorms, codes.norms.bytes()));
            codes.codebook.to_words()
        });
        (sections, codebook)
    }

    /// The header fields that describe this graph.
    pub(crate) fn header(&self, ordinal: u32) -> SegmentHeader {
        SegmentHeader {
            dim: self.dim as u32,
            metric: self.distance.metric().code(),
            m: self.params.m as u32,
            ef_construction: self.params.ef_construction as u32,
            count: self.len() as u64,
            seed: self.params.seed,
            entry: self.entry.load(Acquire),
            ordinal,
        }
    }

    /// The graph stored in `file`, viewed in place. Checks everything a search relies on to stay
    /// in bounds (levels, where upper lists start, the entry point); links are bounds-checked
    /// as they are read (`copy_neighbors`).
    pub(crate) fn from_file(file: &SegmentFile, distance: Distance) -> crate::Result<Graph> {
        let h = &file.header;
        let fail = |detail: &str| file.corrupt(detail.to_string());
        let len = usize::try_from(h.count).ok().filter(|&n| n <= crate::Options::MAX_SEGMENT_CAPACITY);
        let len = len.ok_or_else(|| fail("node count out of range"))?;
        let (dim, m) = (h.dim as usize, h.m as usize);
        if !(1..=crate::Options::MAX_DIM).contains(&dim) || !(2..=crate::Options::MAX_M).contains(&m) {
            return Err(fail("dimension or m out of range"));
        }
        let codes = Self::codes_from_file(file, dim, len)?;
        let quantization = codes.as_ref().map_or(Quantization::None, |c| c.codebook.kind);
        let params = Params { m, ef_construction: h.ef_construction.max(1) as usize, seed: h.seed, quantization };
        let levels: Array<u8> = file.array(Section::Levels, len)?;
        if levels.iter().any(|&l| l as usize > MAX_LEVEL) {
            return Err(fail("a node level is out of range"));
        }
        let upper_start: Array<u32> = file.array(Section::UpperStart, len)?;
        let upper_len =
            upper_start.last().map_or(0, |&s| s as usize) + levels.last().map_or(0, |&l| l as usize) * (m + 1);
        let upper: Array<AtomicU32> = file.array(Section::Upper, upper_len)?;
        let mut expected_start = 0usize;
        for (&start, &level) in upper_start.iter().zip(levels.iter()) {
            if start as usize != expected_start {
                return Err(fail("upper-layer lists are out of order"));
            }
            expected_start += level as usize * (m + 1);
        }
        let layer0 = file.array(Section::Layer0, len * (2 * m + 1))?;
        let vectors = SplitVectors::from_halves(
            dim,
            len,
            file.array(Section::High, len * dim)?,
            file.array(Section::Low, len * dim)?,
        )
        .ok_or_else(|| fail("vector sections have the wrong size"))?;
        let entry = h.entry;
        let valid_entry = match (entry == NO_ENTRY, len) {
            (true, 0) => true,
            (false, 1..) => {
                let (node, level) = unpack(entry);
                levels.get(node as usize).is_some_and(|&l| l as usize == level)
            }
            _ => false,
        };
        if !valid_entry {
            return Err(fail("entry point is not a node of the graph"));
        }
        Ok(Graph {
            dim,
            params,
            distance,
            vectors,
            levels,
            layer0,
            upper,
            upper_start,
            entry: AtomicU64::new(entry),
            entry_lock: Mutex::new(()),
            codes,
        })
    }

    /// The codes in `file`, if it has a codebook section.
    fn codes_from_file(file: &SegmentFile, dim: usize, len: usize) -> crate::Result<Option<Codes>> {
        let Some(words) = file.optional_array::<u32>(Section::Codebook)? else { return Ok(None) };
        let codebook =
            Codebook::from_words(&words, dim).ok_or_else(|| file.corrupt("the codebook is malformed".into()))?;
        let code_len = codebook.kind.code_len(dim);
        let norms = if codebook.kind == Quantization::Binary { 0 } else { len };
        Ok(Some(Codes {
            bytes: file.array(Section::Codes, len * code_len)?,
            norms: file.array(Section::CodeNorms, norms)?,
            code_len,
            codebook,
        }))
    }

    /// Heap bytes held (arrays read from a mapping count nothing).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.codes.as_ref().map_or(0, Codes::heap_bytes)
            + self.vectors.heap_bytes()
            + self.levels.heap_bytes()
            + self.layer0.heap_bytes()
            + self.upper.heap_bytes()
            + self.upper_start.heap_bytes()
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

    /// Number of links in a list, without the lock bit.
    #[inline]
    fn count(list: &[AtomicU32]) -> usize {
        ((list[0].load(Acquire) & !LOCKED) as usize).min(list.len() - 1)
    }

    /// Copies a node's links on `level` into `out`. Skips links that could not be in a valid
    /// graph (a node out of range, or below `level`): a damaged file read without verification
    /// then gives wrong answers, never an out-of-bounds read.
    #[inline]
    fn copy_neighbors(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        let list = self.list(node, level);
        let count = Self::count(list);
        out.clear();
        let links = list[1..=count].iter().map(|slot| slot.load(Relaxed));
        if level == 0 {
            out.extend(links.filter(|&n| (n as usize) < self.len()));
        } else {
            out.extend(links.filter(|&n| self.levels.get(n as usize).is_some_and(|&l| l as usize >= level)));
        }
    }

    fn write_list(&self, node: u32, level: usize, links: &[Scored]) {
        let list = self.list(node, level);
        for (slot, link) in list[1..].iter().zip(links) {
            slot.store(link.node, Relaxed);
        }
        // The caller holds the node's lock: keep the bit while publishing the new count.
        let locked = list[0].load(Relaxed) & LOCKED;
        list[0].store(links.len() as u32 | locked, Release);
    }

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

    /// Beam search on one layer from `s.seeds`; leaves the best `ef` in `s.found`, closest first.
    fn search_layer(&self, walk: &impl Walk, ef: usize, level: usize, s: &mut Scratch) {
        s.visited.begin(self.len());
        s.candidates.clear();
        s.results.clear();
        for &seed in &s.seeds {
            if s.visited.insert(seed.node) {
                s.candidates.push(std::cmp::Reverse(seed));
                s.results.push(seed);
            }
        }
        while s.results.len() > ef {
            s.results.pop();
        }
        while let Some(std::cmp::Reverse(closest)) = s.candidates.pop() {
            let worst = s.results.peek().map_or(f32::INFINITY, |w| w.distance);
            if closest.distance > worst && s.results.len() >= ef {
                break;
            }
            if let Some(std::cmp::Reverse(next)) = s.candidates.peek() {
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
                    s.candidates.push(std::cmp::Reverse(scored));
                    s.results.push(scored);
                    if full {
                        s.results.pop();
                    }
                }
            }
        }
        s.found.clear();
        s.found.extend(s.results.drain());
        s.found.sort_unstable();
    }

    /// The heuristic: walk `candidates` closest first and keep one only if it is closer to the
    /// base node than to every neighbour already kept, up to `max` neighbours.
    /// `buffer` holds each candidate's (coarse) vector while it is compared.
    fn select(&self, candidates: &[Scored], max: usize, out: &mut Vec<Scored>, buffer: &mut Vec<f32>) {
        out.clear();
        for &candidate in candidates {
            if out.len() >= max {
                break;
            }
            self.vectors.coarse_into(candidate.node, buffer);
            if out.iter().all(|kept| self.distance.coarse(buffer, self.vectors.high(kept.node)) >= candidate.distance) {
                out.push(candidate);
            }
        }
    }

    /// Greedy descent from the packed `entry` down to layer `level + 1`.
    fn descend(&self, walk: &impl Walk, level: usize, entry: u64, s: &mut Scratch) -> Scored {
        let (node, top) = unpack(entry);
        let mut current = Scored { distance: walk.distance(node), node };
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
    pub(crate) fn search<'s>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        oversample: usize,
        s: &'s mut Scratch,
    ) -> &'s [Scored] {
        let entry = self.entry.load(Acquire);
        s.found.clear();
        if entry == NO_ENTRY || k == 0 {
            return &s.found;
        }
        let rescored = match &self.codes {
            None => {
                let walk = CoarseWalk { graph: self, query };
                self.walk_layer0(&walk, ef.max(k), entry, s);
                s.found.len()
            }
            Some(codes) => {
                let oversample = if oversample == 0 { codes.codebook.kind.default_oversample() } else { oversample };
                let candidates = k.saturating_mul(oversample);
                let kernels = quant::best_kernels();
                let prepared = QueryCode::new(&codes.codebook, self.distance.metric(), query, &kernels);
                let walk = CodeWalk { codes, query: &prepared, kernels };
                self.walk_layer0(&walk, ef.max(candidates), entry, s);
                // Half the beam at least, so a wider beam still raises recall where the codes
                // rank poorly (as re-scoring the whole beam does without codes).
                candidates.max(ef / 2).min(s.found.len())
            }
        };
        // Rank the walk's best exactly. Their low halves (with codes, all of them) were never
        // read: keep the next few loading while each is re-scored, as in `search_layer`.
        const LOOKAHEAD: usize = 4;
        s.found.truncate(rescored);
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

    /// Descends from `entry` and beam-searches layer 0 with `ef`, ranking by `walk`.
    fn walk_layer0(&self, walk: &impl Walk, ef: usize, entry: u64, s: &mut Scratch) {
        let start = self.descend(walk, 0, entry, s);
        s.seeds.clear();
        s.seeds.push(start);
        self.search_layer(walk, ef, 0, s);
    }

    /// Links the appended nodes `nodes` into the graph, in parallel on the current rayon pool.
    pub(crate) fn insert_range(&self, nodes: Range<u32>) {
        nodes.into_par_iter().for_each(|node| with_scratch(|s| self.insert(node, s)));
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
        for l in (0..=level.min(top)).rev() {
            self.search_layer(&walk, self.params.ef_construction, l, s);
            // The node itself can be reached through a back-link added by a concurrent insert.
            s.found.retain(|c| c.node != node);
            self.select(&s.found, self.params.m, &mut s.selected, &mut s.vector);
            {
                let _own = self.lock_node(node);
                self.write_list(node, l, &s.selected);
            }
            s.back_links.extend(s.selected.iter().map(|&n| (l, n)));
            std::mem::swap(&mut s.seeds, &mut s.found);
        }
        // Back-links make the node reachable. Adding them only now, lowest layer first, means a
        // search can never descend into this node on a layer where its own list is still empty.
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
    /// node no list points to is never found. Each such node gets a link from the closest
    /// reachable node that a search finds (one with room if possible, else in place of that
    /// node's farthest link, which the next round re-checks). Costs one pass over the links, plus
    /// a search per repaired node. The caller serialises this with insertion.
    pub(crate) fn connect(&self) -> usize {
        let entry = self.entry.load(Acquire);
        if entry == NO_ENTRY {
            return 0;
        }
        let mut repaired = 0;
        for _round in 0..4 {
            let mut reached = vec![false; self.len()];
            let mut neighbors = Vec::new();
            self.mark_reachable(unpack(entry).0, &mut reached, &mut neighbors);
            if reached.iter().all(|&r| r) {
                break;
            }
            with_scratch(|s| {
                for node in 0..self.len() as u32 {
                    if reached[node as usize] {
                        continue;
                    }
                    let mut query = std::mem::take(&mut s.query);
                    self.vectors.exact_into(node, &mut query);
                    self.walk_layer0(&CoarseWalk { graph: self, query: &query }, self.params.ef_construction, entry, s);
                    s.query = query;
                    let reachable = || s.found.iter().filter(|f| reached[f.node as usize] && f.node != node);
                    let with_room = reachable().find(|f| Self::count(self.list(f.node, 0)) < self.params.capacity(0));
                    if let Some(&from) = with_room.or_else(|| reachable().next()) {
                        self.link_replacing_farthest(from.node, node, s);
                        self.mark_reachable(node, &mut reached, &mut neighbors);
                        repaired += 1;
                    }
                }
            });
        }
        repaired
    }

    /// Marks everything reachable from `start` on layer 0.
    fn mark_reachable(&self, start: u32, reached: &mut [bool], neighbors: &mut Vec<u32>) {
        if reached[start as usize] {
            return;
        }
        reached[start as usize] = true;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            self.copy_neighbors(node, 0, neighbors);
            for &next in neighbors.iter() {
                if !reached[next as usize] {
                    reached[next as usize] = true;
                    stack.push(next);
                }
            }
        }
    }

    /// Adds `to` to `from`'s layer-0 list, in place of its farthest link when the list is full.
    fn link_replacing_farthest(&self, from: u32, to: u32, s: &mut Scratch) {
        let _guard = self.lock_node(from);
        let list = self.list(from, 0);
        let count = Self::count(list);
        if count < self.params.capacity(0) {
            list[1 + count].store(to, Relaxed);
            let locked = list[0].load(Relaxed) & LOCKED;
            list[0].store((count as u32 + 1) | locked, Release);
            return;
        }
        self.vectors.coarse_into(from, &mut s.base);
        let farthest = (1..=count)
            .max_by(|&a, &b| {
                // An out-of-range link (a damaged, unverified file) is the first to go.
                let distance = |slot: usize| {
                    let n = list[slot].load(Relaxed);
                    if (n as usize) < self.len() {
                        self.distance.coarse(&s.base, self.vectors.high(n))
                    } else {
                        f32::INFINITY
                    }
                };
                distance(a).total_cmp(&distance(b))
            })
            .unwrap_or(count);
        list[farthest].store(to, Release);
    }

    /// Adds `new` to `neighbor`'s list on `level`; a full list is re-pruned with the heuristic.
    fn link_back(&self, neighbor: Scored, new: u32, level: usize, s: &mut Scratch) {
        let capacity = self.params.capacity(level);
        let _guard = self.lock_node(neighbor.node);
        let list = self.list(neighbor.node, level);
        let count = Self::count(list);
        if count < capacity {
            list[1 + count].store(new, Relaxed);
            let locked = list[0].load(Relaxed) & LOCKED;
            list[0].store((count as u32 + 1) | locked, Release);
            return;
        }
        self.vectors.coarse_into(neighbor.node, &mut s.base);
        s.prune.clear();
        s.prune.push(Scored { distance: neighbor.distance, node: new });
        // A link out of range can only come from a damaged file opened without verification:
        // drop it here rather than read out of bounds.
        for n in list[1..=count].iter().map(|slot| slot.load(Relaxed)).filter(|&n| (n as usize) < self.len()) {
            s.prune.push(Scored { distance: self.distance.coarse(&s.base, self.vectors.high(n)), node: n });
        }
        s.prune.sort_unstable();
        self.select(&s.prune, capacity, &mut s.pruned, &mut s.vector);
        self.write_list(neighbor.node, level, &s.pruned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;

    fn graph(n: usize, dim: usize) -> Graph {
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let data: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        let params = Params { m: 8, ef_construction: 64, seed: 1, quantization: Quantization::None };
        let mut graph = Graph::new(dim, params, Distance::new(Metric::L2));
        graph.append(&data);
        graph.insert_range(0..n as u32);
        graph
    }

    fn reachable(graph: &Graph) -> usize {
        let mut reached = vec![false; graph.len()];
        graph.mark_reachable(unpack(graph.entry.load(Acquire)).0, &mut reached, &mut Vec::new());
        reached.iter().filter(|&&r| r).count()
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
            let kept: Vec<Scored> = (1..=Graph::count(list))
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
            let found = with_scratch(|s| graph.search(&query, 1, 32, 0, s).to_vec());
            assert_eq!(found[0].node, orphan, "orphan {orphan} is findable again");
        }
    }
}
