//! Planning the search of one segment: which of its nodes the search may return (the live ones
//! that pass the caller's filter), how many, and whether to walk its graph through the others
//! or to scan those nodes exactly.
//!
//! The walk's cost grows as the share of nodes it may return shrinks (it steps through the
//! others to reach them), the scan's with their number: the planner scans when few pass, and
//! a walk that has computed more distances than there are nodes to scan stops and scans them
//! instead (Lucene's guard), so a search never costs much more than the cheaper of the two.

use super::{SearchResult, Tombstones};
use crate::hnsw::{with_scratch, Admit, Everyone, Graph, Reach, Scratch};
use crate::options::{Filter, Plan, SearchParams};

/// The caller's predicate over ids.
type Predicate<'f> = &'f (dyn Fn(u64) -> bool + Sync);

/// What a search asks of every segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wanted<'p> {
    /// The `k` nearest, with `params` resolved (`ef >= k`).
    Nearest { k: usize, params: SearchParams<'p> },
    /// Those within `radius`, the closest `limit`, the walk crossing gaps with a beam of `ef`.
    Range { radius: f32, limit: usize, ef: usize },
}

impl Wanted<'_> {
    /// How many results at most.
    pub(crate) fn count(&self) -> usize {
        match *self {
            Wanted::Nearest { k, .. } => k,
            Wanted::Range { limit, .. } => limit,
        }
    }

    fn ef(&self) -> usize {
        match *self {
            Wanted::Nearest { params, .. } => params.ef,
            Wanted::Range { ef, .. } => ef,
        }
    }
}

/// Scan when at most `sqrt(SCAN_FACTOR * ef * len)` of a segment's `len` nodes may be returned.
///
/// A walk with beam `ef` that may return a share `p` of the nodes ranks about `c * ef / p` of
/// them (it passes about `1/p` refused nodes per admitted one); a scan ranks `p * len`, each
/// cheaper (read in order, no links). They cost the same at `p * len = sqrt(c' * ef * len)`.
/// Measured on npm51k (384-d) by timing both plans alone (`benches/peers/filtered.py`, plans
/// "graph" and "exact"): at 10% allowed (5,000 nodes) the walk is faster up to ef 24 and slower
/// from ef 32 (5.7K q/s at ef 10, 2.6K at ef 24 and 0.9K at ef 64 against 2.0K for the scan),
/// at 3% slower from ef 10 (2.5K against 10K): a factor of 18. Checked on 1M generated 128-d
/// vectors, where it predicts the crossover at 3% allowed at ef 50: the walk was faster at ef 10
/// (4.3K q/s against about 1.8K) and slower at ef 64 (0.7K).
const SCAN_FACTOR: f64 = 18.0;

/// Below this share of admitted nodes a walk steps over refused neighbours to their admitted
/// neighbours (ACORN-1) rather than ranking them. Compared at equal recall (ef 10-64 swept,
/// both kinds of walk forced), ranking them won wherever the planner walks: at 30% and 10% of
/// npm51k (10.5K against 4.4K and 5.9K against 4.9K queries/s at recall 0.95) and at 10%, 5% and
/// 3% of 1M generated 128-d vectors (about 7.0K against 3.0K, 5.3K against 2.5K, 4.3K against
/// 2.3K); stepping over them won only at 5% of npm51k (5.2K against 3.9K), which the planner
/// scans. So only walks the planner would not choose step over them (`Plan::Graph`, and
/// predicates whose estimate was low), where ranking every refused neighbour would reach few
/// admitted ones.
const TWO_HOP_BELOW: f64 = 0.03;

/// How many live nodes a predicate is tried on to estimate how many it accepts.
const SAMPLES: usize = 256;

/// True when scanning the `admitted` of `len` nodes costs less than a walk with beam `ef`.
fn scan_is_cheaper(admitted: usize, len: usize, ef: usize) -> bool {
    (admitted as f64).powi(2) <= SCAN_FACTOR * ef as f64 * len as f64
}

/// Which nodes of a segment a search may return.
enum Passing<'f> {
    /// Every live node.
    Live,
    /// The live nodes of an allow-list (the predicate already applied), sorted, and as bits
    /// when the segment is walked.
    Listed { nodes: Vec<u32>, bits: Vec<u64> },
    /// The live nodes whose ids the predicate accepts.
    Accepted(Predicate<'f>),
}

enum How {
    /// Nothing in the segment may be returned.
    Skip,
    Scan,
    Walk(Reach),
}

/// How one segment is searched, decided once per call (a batch shares it).
pub(crate) struct SegmentPlan<'f> {
    passing: Passing<'f>,
    /// Nodes that may be returned: counted, or for a predicate alone, estimated.
    admitted: usize,
    counted: bool,
    how: How,
}

impl<'f> SegmentPlan<'f> {
    /// Plans the search of a segment whose nodes `ids` names: `listed` holds its nodes that an
    /// allow-list names (the filter has an allow-list exactly when it is given).
    pub(crate) fn new(
        tombstones: &Tombstones,
        ids: &[u64],
        filter: &Filter<'f>,
        listed: Option<Vec<u32>>,
        wanted: Wanted,
        plan: Plan,
    ) -> Self {
        let len = ids.len();
        let live = len - tombstones.count().min(len);
        let (mut passing, admitted, counted) = match (listed, filter.predicate) {
            (Some(mut nodes), predicate) => {
                nodes.sort_unstable();
                nodes.dedup();
                nodes.retain(|&n| {
                    (n as usize) < len
                        && !tombstones.is_deleted(n)
                        && predicate.is_none_or(|accepts| accepts(ids[n as usize]))
                });
                let count = nodes.len();
                (Passing::Listed { nodes, bits: Vec::new() }, count, true)
            }
            (None, Some(accepts)) => (Passing::Accepted(accepts), estimate(len, live, tombstones, ids, accepts), false),
            (None, None) => (Passing::Live, live, true),
        };
        let two_hop = (admitted as f64) < TWO_HOP_BELOW * len as f64;
        // Nothing filtered or deleted: the plain walk, as fast as before filters existed.
        let everyone = matches!(passing, Passing::Live) && admitted == len;
        let how = match plan {
            _ if counted && admitted == 0 => How::Skip,
            Plan::Exact => How::Scan,
            Plan::Graph => How::Walk(Reach { budget: usize::MAX, two_hop }),
            Plan::Auto if everyone => How::Walk(Reach::FULL),
            Plan::Auto if scan_is_cheaper(admitted, len, wanted.ef()) => How::Scan,
            // An estimate may be low: give the walk room before it turns to a scan.
            Plan::Auto => How::Walk(Reach { budget: if counted { admitted } else { 2 * admitted }, two_hop }),
        };
        if let (How::Walk(_), Passing::Listed { nodes, bits }) = (&how, &mut passing) {
            *bits = vec![0; len.div_ceil(64)];
            for &n in nodes.iter() {
                bits[n as usize / 64] |= 1 << (n % 64);
            }
        }
        SegmentPlan { passing, admitted, counted, how }
    }

    /// Searches the segment (`graph`, the `ids` of its held nodes, and its `tombstones`) as
    /// planned and appends what it finds to `out`, of the held nodes only (see `Growing`).
    pub(crate) fn search(
        &self,
        graph: &Graph,
        ids: &[u64],
        tombstones: &Tombstones,
        query: &[f32],
        wanted: Wanted,
        out: &mut Vec<SearchResult>,
    ) {
        with_scratch(|s| {
            match self.how {
                How::Skip => return,
                How::Scan => self.scan(graph, ids, tombstones, query, wanted, s),
                How::Walk(reach) => {
                    let walk = Walk { graph, held: ids.len(), query, wanted, reach };
                    let complete = match &self.passing {
                        // Nothing deleted: the walk without the check, as fast as before
                        // deletes existed.
                        Passing::Live if tombstones.count() == 0 => walk.run(&Everyone, s),
                        Passing::Live => walk.run(tombstones, s),
                        Passing::Listed { bits, .. } => walk.run(&Bits(bits), s),
                        Passing::Accepted(accepts) => walk.run(&LiveAccepted { tombstones, ids, accepts: *accepts }, s),
                    };
                    // A two-hop walk can strand itself where too few admitted nodes lie near
                    // each other: then the scan finds what it missed.
                    let short = match wanted {
                        Wanted::Nearest { k, .. } if self.counted => s.found.len() < k.min(self.admitted),
                        Wanted::Nearest { k, .. } => s.found.len() < k,
                        Wanted::Range { .. } => false,
                    };
                    if !complete || short && reach.budget != usize::MAX {
                        self.scan(graph, ids, tombstones, query, wanted, s);
                    }
                }
            }
            out.extend(s.found.iter().map(|f| SearchResult { distance: f.distance, id: ids[f.node as usize] }));
        });
    }

    /// Scores exactly every node the search may return.
    fn scan(
        &self,
        graph: &Graph,
        ids: &[u64],
        tombstones: &Tombstones,
        query: &[f32],
        wanted: Wanted,
        s: &mut Scratch,
    ) {
        let live = (0..ids.len() as u32).filter(|&n| !tombstones.is_deleted(n));
        match &self.passing {
            Passing::Live => scan(graph, query, wanted, live, s),
            Passing::Listed { nodes, .. } => scan(graph, query, wanted, nodes.iter().copied(), s),
            Passing::Accepted(accepts) => scan(graph, query, wanted, live.filter(|&n| accepts(ids[n as usize])), s),
        }
    }
}

/// Estimates how many of a segment's `live` nodes `accepts` accepts, from up to `SAMPLES` live
/// nodes spread evenly over it.
fn estimate(len: usize, live: usize, tombstones: &Tombstones, ids: &[u64], accepts: Predicate) -> usize {
    let step = len.div_ceil(SAMPLES).max(1);
    let (mut tried, mut passed) = (0usize, 0usize);
    for n in (0..len).step_by(step).filter(|&n| !tombstones.is_deleted(n as u32)) {
        tried += 1;
        passed += usize::from(accepts(ids[n]));
    }
    if tried == 0 {
        0
    } else {
        (live as f64 * passed as f64 / tried as f64).ceil() as usize
    }
}

/// One segment's walk, as planned.
struct Walk<'a> {
    graph: &'a Graph,
    /// The search returns only nodes below this: the held ones (the graph's first).
    held: usize,
    query: &'a [f32],
    wanted: Wanted<'a>,
    reach: Reach,
}

impl Walk<'_> {
    /// Walks the graph, returning the held nodes `admit` admits; false when it used up its
    /// reach.
    #[inline(always)]
    fn run<A: Admit>(&self, admit: &A, s: &mut Scratch) -> bool {
        if self.held < self.graph.len() {
            return self.run_held(admit, s);
        }
        self.run_admitting(admit, s)
    }

    /// `run` while a batch is being linked past the held nodes: walked through, never returned.
    /// Rare (a search beside an insert), so one walk, out of line, serves every kind of `admit`
    /// through a pointer, and the common walk's code stays as it was.
    #[cold]
    #[inline(never)]
    fn run_held(&self, admit: &dyn Admit, s: &mut Scratch) -> bool {
        self.run_admitting(&Held { below: self.held as u32, admit }, s)
    }

    #[inline(always)]
    fn run_admitting(&self, admit: &impl Admit, s: &mut Scratch) -> bool {
        let Walk { graph, query, reach, .. } = *self;
        match self.wanted {
            Wanted::Nearest { k, params } => graph.search_within(query, k, params, admit, reach, s),
            Wanted::Range { radius, limit, ef } => graph.search_range(query, radius, limit, ef, admit, reach.budget, s),
        }
    }
}

fn scan(graph: &Graph, query: &[f32], wanted: Wanted, nodes: impl Iterator<Item = u32>, s: &mut Scratch) {
    match wanted {
        Wanted::Nearest { k, params } => graph.scan(query, k, params.ef, nodes, s),
        Wanted::Range { radius, limit, .. } => graph.scan_range(query, radius, limit, nodes, s),
    }
}

/// Admits what `admit` admits among the nodes below `below`.
struct Held<'a> {
    below: u32,
    admit: &'a dyn Admit,
}

impl Admit for Held<'_> {
    #[inline]
    fn admits(&self, node: u32) -> bool {
        node < self.below && self.admit.admits(node)
    }
}

/// Admits the nodes whose bits are set.
struct Bits<'a>(&'a [u64]);

impl Admit for Bits<'_> {
    #[inline]
    fn admits(&self, node: u32) -> bool {
        self.0.get(node as usize / 64).is_some_and(|word| word & (1 << (node % 64)) != 0)
    }
}

/// Admits the live nodes whose ids a predicate accepts.
struct LiveAccepted<'a> {
    tombstones: &'a Tombstones,
    ids: &'a [u64],
    accepts: Predicate<'a>,
}

impl Admit for LiveAccepted<'_> {
    #[inline]
    fn admits(&self, node: u32) -> bool {
        !self.tombstones.is_deleted(node) && self.ids.get(node as usize).is_some_and(|&id| (self.accepts)(id))
    }
}
