//! A graph with its segment's ids as the sections of a segment file: the one place that knows
//! which arrays a segment file holds and how they are checked when read back.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Acquire};
use std::sync::{Arc, Mutex};

use super::vectors::SplitVectors;
use super::{unpack, Graph, Params, RingMembers, MAX_LEVEL, NO_ENTRY};
use crate::distance::Distance;
use crate::error::{Error, Result};
use crate::memory::{Array, Mapping};
use crate::options::Options;
use crate::quant::{Codebook, Codes, Quantization};
use crate::storage::segment_file::{self, Section, SegmentFile, SegmentHeader};
use crate::storage::Source;

/// Bit of the flags section's first word: some node has a ring link (layer-0 count words with
/// `RING`). The words after it, when there are any, are the ring members' bits (`RingMembers`).
const FLAG_RINGS: u64 = 1;

/// A segment read from its file: arrays viewed in place in `mapping`.
pub(crate) struct StoredSegment {
    pub ordinal: u32,
    pub graph: Graph,
    pub ids: Array<u64>,
    pub mapping: Arc<Mapping>,
}

/// Writes segment `ordinal` (its graph and the ids of its nodes) to `path`. Call it only while
/// no insert runs on `graph`, so no lock bit is set.
pub(crate) fn write_segment(path: &Path, ordinal: u32, graph: &Graph, ids: &[u64]) -> Result<()> {
    let mut sections = graph_sections(graph, ids);
    let codebook = graph.codes.as_ref().map_or(Vec::new(), |codes| {
        sections.push((Section::Codes, codes.bytes.bytes()));
        sections.push((Section::CodeNorms, codes.norms.bytes()));
        codes.codebook.to_words()
    });
    if !codebook.is_empty() {
        sections.push((Section::Codebook, bytemuck::cast_slice(&codebook)));
    }
    let mut flags = vec![0u64];
    if graph.rings.any() {
        flags[0] |= FLAG_RINGS;
        flags.extend(graph.rings.to_words());
    }
    sections.push((Section::Flags, bytemuck::cast_slice(&flags)));
    let rabitq =
        graph.codes.as_ref().is_some_and(|c| c.codebook.kind == Quantization::Binary && !c.codebook.is_outdated());
    let header = SegmentHeader {
        version: if rabitq { segment_file::FORMAT_VERSION } else { segment_file::VERSION_WITHOUT_BINARY_CODES },
        dim: graph.dim as u32,
        metric: graph.distance.metric().code(),
        m: graph.params.m as u32,
        ef_construction: graph.params.ef_construction as u32,
        count: graph.len() as u64,
        seed: graph.params.seed,
        entry: graph.entry.load(Acquire),
        ordinal,
    };
    segment_file::write(path, &header, &sections)
}

/// The sections every segment file holds: the ids, the vectors and the links.
fn graph_sections<'a>(graph: &'a Graph, ids: &'a [u64]) -> Vec<(Section, &'a [u8])> {
    let (high, low) = graph.vectors.halves();
    vec![
        (Section::Ids, bytemuck::cast_slice(ids)),
        (Section::Levels, graph.levels.bytes()),
        (Section::High, high.bytes()),
        (Section::Low, low.bytes()),
        (Section::Layer0, graph.layer0.bytes()),
        (Section::UpperStart, graph.upper_start.bytes()),
        (Section::Upper, graph.upper.bytes()),
    ]
}

/// Reads the segment file `source`, which must hold `count` vectors of dimension `dim` under
/// `distance`'s metric (what the manifest says of it). `verify` checks every section checksum.
pub(crate) fn read_segment(
    source: &Source<'_>,
    verify: bool,
    count: u64,
    dim: usize,
    distance: Distance,
) -> Result<StoredSegment> {
    let file = SegmentFile::open(source, verify)?;
    let h = &file.header;
    if h.count != count {
        return Err(file.corrupt(format!("holds {} vectors, the manifest says {count}", h.count)));
    }
    if h.dim as usize != dim {
        return Err(Error::DimensionMismatch(format!(
            "{}: segment of {}-dimensional vectors, the database has {dim}",
            file.path().display(),
            h.dim,
        )));
    }
    if h.metric != distance.metric().code() {
        return Err(file.corrupt(format!("segment metric {} differs from the database's", h.metric)));
    }
    let graph = Graph::from_file(&file, distance)?;
    let ids = file.array(Section::Ids, graph.len())?;
    Ok(StoredSegment { ordinal: h.ordinal, graph, ids, mapping: file.mapping().clone() })
}

impl Graph {
    /// The graph stored in `file`, viewed in place. Checks everything a search relies on to stay
    /// in bounds (levels, where upper lists start, the entry point); links are bounds-checked
    /// as they are read (`copy_neighbors`).
    fn from_file(file: &SegmentFile, distance: Distance) -> Result<Graph> {
        let h = &file.header;
        let fail = |detail: &str| file.corrupt(detail.to_string());
        let len = usize::try_from(h.count).ok().filter(|&n| n <= Options::MAX_SEGMENT_CAPACITY);
        let len = len.ok_or_else(|| fail("node count out of range"))?;
        let (dim, m) = (h.dim as usize, h.m as usize);
        if !(1..=Options::MAX_DIM).contains(&dim) || !(2..=Options::MAX_M).contains(&m) {
            return Err(fail("dimension or m out of range"));
        }
        // Files before version 3 have no flags section, and no rings.
        let flags = file.optional_array::<u64>(Section::Flags)?;
        let flags = flags.as_deref().unwrap_or(&[]);
        let has_rings = flags.first().is_some_and(|&w| w & FLAG_RINGS != 0);
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
        let layer0: Array<AtomicU32> = file.array(Section::Layer0, len * (2 * m + 1))?;
        let rings = match flags.get(1..).unwrap_or(&[]) {
            _ if !has_rings => RingMembers::default(),
            // Written before the member bits were: read them off the count words.
            [] => RingMembers::of_lists(&layer0, 2 * m + 1),
            words if words.len() == len.div_ceil(64) => RingMembers::from_words(words),
            _ => return Err(fail("the ring members do not match the node count")),
        };
        let vectors = SplitVectors::from_halves(
            dim,
            len,
            file.array(Section::High, len * dim)?,
            file.array(Section::Low, len * dim)?,
        )
        .ok_or_else(|| fail("vector sections have the wrong size"))?;
        let codes = Self::codes_from_file(file, dim, len, &vectors)?;
        let quantization = codes.as_ref().map_or(Quantization::None, |c| c.codebook.kind);
        let params = Params { m, ef_construction: h.ef_construction.max(1) as usize, seed: h.seed, quantization };
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
            rings,
            paired_from: super::search::PAIRED_FROM,
        })
    }

    /// The codes in `file`, if it has a codebook section. Binary codes from before RaBitQ are
    /// computed again from `vectors`: their sign bits cannot give its estimate.
    fn codes_from_file(file: &SegmentFile, dim: usize, len: usize, vectors: &SplitVectors) -> Result<Option<Codes>> {
        let Some(words) = file.optional_array::<u32>(Section::Codebook)? else { return Ok(None) };
        let codebook =
            Codebook::from_words(&words, dim).ok_or_else(|| file.corrupt("the codebook is malformed".into()))?;
        if codebook.is_outdated() {
            return Ok(Some(vectors.recode(Quantization::Binary)));
        }
        let code_len = codebook.kind.code_len(dim);
        let norms = if codebook.kind == Quantization::Binary { 0 } else { len };
        Ok(Some(Codes {
            bytes: file.array(Section::Codes, len * code_len)?,
            norms: file.array(Section::CodeNorms, norms)?,
            code_len,
            codebook,
            // Stored codebooks were learnt from the segment as it was written (sealed: all of
            // it; a growing snapshot: at least half of it).
            trained_on: len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::hnsw::build::tests::graph;
    use crate::hnsw::{with_scratch, Everyone};
    use crate::options::SearchParams;

    /// A segment written before RaBitQ (version 3): binary codes as sign bits of `x - mean`, a
    /// codebook of the mean alone. It opens with codes computed again, and searches as a
    /// segment built today does.
    #[test]
    fn binary_codes_from_before_rabitq_are_recomputed_on_open() {
        let (n, dim) = (1_500, 24);
        let mut built = graph(n, dim);
        let today = built.vectors.recode(Quantization::Binary);
        let mut old_words = vec![Quantization::Binary.code(), dim as u32];
        old_words.extend(today.codebook.lower.iter().map(|x| x.to_bits()));
        built.codes = Some(Codes {
            codebook: Codebook::from_words(&old_words, dim).unwrap(),
            code_len: dim.div_ceil(64) * 8,
            bytes: vec![0u8; n * dim.div_ceil(64) * 8].into(),
            norms: Array::default(),
            trained_on: n,
        });
        let dir = std::env::temp_dir().join(format!("omendb-old-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment.omen");
        let ids: Vec<u64> = (0..n as u64).collect();
        write_segment(&path, 0, &built, &ids).unwrap();
        assert_eq!(
            SegmentFile::open(&Source::at(&path), true).unwrap().header.version,
            3,
            "no RaBitQ codebook: version 3"
        );
        let read = read_segment(&Source::at(&path), true, n as u64, dim, Distance::new(Metric::L2)).unwrap().graph;
        let codes = read.codes.as_ref().unwrap();
        assert!(!codes.codebook.is_outdated());
        assert_eq!(&codes.bytes[..], &today.bytes[..], "the codes a segment built today has");
        built.codes = Some(today);
        let mut query = Vec::new();
        for node in [0u32, 700, 1_499] {
            read.vector_into(node, &mut query);
            let params = SearchParams { ef: 64, ..SearchParams::default() };
            let found = with_scratch(|s| read.search(&query, 5, params, &Everyone, s).to_vec());
            let expected = with_scratch(|s| built.search(&query, 5, params, &Everyone, s).to_vec());
            assert_eq!(found, expected);
            assert_eq!(found[0].node, node);
        }
        write_segment(&path, 0, &built, &ids).unwrap();
        assert_eq!(SegmentFile::open(&Source::at(&path), true).unwrap().header.version, segment_file::FORMAT_VERSION);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A graph with rings of copies keeps its ring member bits through compaction, repair and
    /// its file, also a file written before the bits were (read off the count words then); a
    /// flags section whose bits do not fit the node count is damage.
    #[test]
    fn ring_members_survive_compaction_repair_and_files() {
        let (distinct, dim) = (600, 8);
        let mut data = Vec::new();
        let mut state = 5u64;
        for _ in 0..distinct * dim {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            data.push((state >> 40) as f32 / (1u64 << 24) as f32);
        }
        // Every tenth row copied four times.
        for row in (0..distinct).step_by(10) {
            for _ in 0..4 {
                data.extend_from_within(row * dim..(row + 1) * dim);
            }
        }
        let n = data.len() / dim;
        let params = Params { m: 8, ef_construction: 64, seed: 1, quantization: Quantization::None };
        let mut built = Graph::new(dim, params, Distance::new(Metric::L2));
        built.append(&data);
        built.insert_range(0..n as u32);
        let members = |g: &Graph| (0..g.len() as u32).filter(|&node| g.rings.contains(node)).count();
        assert!(members(&built) >= 4 * distinct / 10, "the copies are in rings: {}", members(&built));
        let compacted = built.compacted();
        let repaired = built.without(&|node| node % 7 == 3);
        for (graph, case) in [(&built, "built"), (&compacted, "compacted"), (&repaired, "repaired")] {
            let check = graph.check();
            assert!(check.problems.is_empty(), "{case}: {check:?}");
        }
        assert_eq!(members(&compacted), members(&built));
        assert!(members(&repaired) > 0);

        let dir = std::env::temp_dir().join(format!("omendb-ring-members-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment.omen");
        let ids: Vec<u64> = (0..n as u64).collect();
        let read = |path: &Path| read_segment(&Source::at(path), true, n as u64, dim, Distance::new(Metric::L2));
        write_segment(&path, 0, &built, &ids).unwrap();
        let reopened = read(&path).unwrap().graph;
        assert_eq!(reopened.rings.to_words(), built.rings.to_words());

        // Before the member bits: the flags section holds its first word alone.
        let flags = [FLAG_RINGS];
        let mut sections = graph_sections(&built, &ids);
        sections.push((Section::Flags, bytemuck::cast_slice(&flags[..])));
        let header = SegmentFile::open(&Source::at(&path), true).unwrap().header;
        segment_file::write(&path, &header, &sections).unwrap();
        let older = read(&path).unwrap().graph;
        assert_eq!(older.rings.to_words(), built.rings.to_words());
        assert!(older.check().problems.is_empty());

        let too_few = [FLAG_RINGS, u64::MAX];
        sections.last_mut().unwrap().1 = bytemuck::cast_slice(&too_few[..]);
        segment_file::write(&path, &header, &sections).unwrap();
        assert!(matches!(read(&path), Err(Error::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
