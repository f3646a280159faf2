//! Measurements of search designs tried and not adopted, kept so that README's figures for them
//! can be reproduced: ignored tests, run one at a time with
//! `cargo test --release --lib NAME -- --ignored --nocapture`.

use std::cell::Cell;

use rayon::prelude::*;

use super::*;
use crate::distance::{self, Distance};
use crate::hnsw::order::tests::clustered;
use crate::hnsw::{Everyone, Params};
use crate::memory::AlignedVec;
use crate::quant::{Codebook, Quantization};

/// Each node's neighbours' codes copied beside each other (their norms after them), one block
/// a node: an expansion reads its block as one stream instead of one code a neighbour.
struct NeighbourBlocks {
    words: AlignedVec<f32>,
    capacity: usize,
    code_len: usize,
    /// Words a block, a whole number of cache lines.
    stride: usize,
    norms: bool,
}

impl NeighbourBlocks {
    fn new(graph: &Graph, rows: CodeRows<'_>) -> Self {
        let capacity = graph.params.capacity(0);
        let code_words = (capacity * rows.len).div_ceil(4);
        let stride = (code_words + capacity).next_multiple_of(16);
        let mut words = AlignedVec::new();
        words.resize(graph.len() * stride, 0.0f32);
        for v in 0..graph.len() {
            let (codes, norms) = words[v * stride..(v + 1) * stride].split_at_mut(code_words);
            let codes: &mut [u8] = bytemuck::cast_slice_mut(codes);
            for (i, n) in graph.links(v as u32, 0).enumerate() {
                codes[i * rows.len..(i + 1) * rows.len].copy_from_slice(rows.code(n));
                norms[i] = rows.norm(n);
            }
        }
        NeighbourBlocks { words, capacity, code_len: rows.len, stride, norms: !rows.norms.is_empty() }
    }

    fn block(&self, node: u32) -> &[f32] {
        &self.words[node as usize * self.stride..(node as usize + 1) * self.stride]
    }

    /// The block of `node` as code rows: its neighbours' codes by their place in its list.
    fn rows(&self, node: u32) -> CodeRows<'_> {
        let block = self.block(node);
        let code_words = (self.capacity * self.code_len).div_ceil(4);
        let norms = if self.norms { &block[code_words..code_words + self.capacity] } else { &[][..] };
        CodeRows { bytes: bytemuck::cast_slice(&block[..code_words]), len: self.code_len, norms }
    }

    /// Starts loading the first `lines` cache lines of `node`'s block.
    fn prefetch(&self, node: u32, lines: usize) {
        for line in self.block(node).chunks(16).take(lines) {
            distance::prefetch(line);
        }
    }
}

/// `layer_step` on layer 0 (no rings, no refusals) with every neighbour's estimate read from
/// the expanded node's block.
#[allow(clippy::too_many_arguments)]
fn block_step(
    graph: &Graph,
    blocks: &NeighbourBlocks,
    query: &QueryCode,
    kernels: &QuantKernels,
    paired: bool,
    lines: usize,
    (positions, part): (&mut Vec<u32>, &mut Vec<f32>),
    s: &mut Scratch,
) -> Step {
    let Some(closest) = s.beam.pop() else { return Step::Done };
    let second = if paired { s.beam.pop() } else { None };
    let load = |node: u32| {
        prefetch_all(graph.list(node, 0));
        blocks.prefetch(node, lines);
    };
    if let Some(next) = s.beam.peek() {
        load(next.node);
    }
    if let (Some(_), Some(after)) = (second, s.beam.peek_second()) {
        load(after.node);
    }
    s.unvisited.clear();
    s.distances.clear();
    for expanded in [Some(closest), second].into_iter().flatten() {
        positions.clear();
        for (i, n) in graph.links(expanded.node, 0).enumerate() {
            if graph.may_link(n, 0) && s.visited.insert(n) {
                s.unvisited.push(n);
                positions.push(i as u32);
            }
        }
        assert!(query.distances(kernels, blocks.rows(expanded.node), positions, ONE_LINE_LOOKAHEAD, part));
        s.distances.extend_from_slice(part);
    }
    let mut closer = None;
    let mut bound = s.beam.peek().map_or(f32::INFINITY, |c| c.distance);
    for (&node, &distance) in s.unvisited.iter().zip(&s.distances) {
        if distance < bound {
            (closer, bound) = (Some(node), distance);
        }
    }
    if let Some(node) = closer {
        load(node);
    }
    for (&n, &distance) in s.unvisited.iter().zip(&s.distances) {
        if s.beam.keeps(distance) {
            s.beam.insert(Scored { distance, node: n }, true);
        }
    }
    Step::Expanded
}

/// Layer-0 walks at 1M clustered 128-d vectors (`N` to change) ranked by 4-bit codes (`CODE=8bit`
/// or `binary` for those), each neighbour's code read where it lies against read from the
/// expanded node's block of neighbour codes (the first `LINES` lines of it loaded with the
/// list, comma-separated): queries/s, and the same results.
#[test]
#[ignore = "a measurement: cargo test --release --lib neighbour_blocks_at_scale -- --ignored --nocapture"]
fn neighbour_blocks_at_scale() {
    let n = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let (dim, count) = (128, 1000);
    let data = clustered(n + count, dim, 1000);
    let (base, queries) = data.split_at(n * dim);
    let quantization = match std::env::var("CODE").as_deref() {
        Ok("8bit") => Quantization::Bits8,
        Ok("binary") => Quantization::Binary,
        _ => Quantization::Bits4,
    };
    let params = Params { m: 16, ef_construction: 100, seed: 3, quantization };
    let mut graph = Graph::new(dim, params, Distance::new(Metric::L2));
    graph.append(base);
    graph.insert_range(0..n as u32);
    assert!(!graph.rings.any());
    let codes = graph.codes.as_ref().unwrap();
    let rows = codes.rows(Metric::L2);
    let blocks = NeighbourBlocks::new(&graph, rows);
    println!("{quantization:?}: {} bytes of codes a node, {} bytes a block", rows.len, blocks.stride * 4);
    let kernels = quant::best_kernels();
    let prepared: Vec<QueryCode> =
        queries.chunks_exact(dim).map(|q| QueryCode::new(&codes.codebook, Metric::L2, q, &kernels)).collect();
    let entry = graph.entry.load(Acquire);
    let lines_tried: Vec<usize> = std::env::var("LINES")
        .map(|v| v.split(',').map(|x| x.parse().expect("LINES: numbers")).collect())
        .unwrap_or(vec![2, 8, 64]);
    let mut s = Scratch::default();
    let (mut positions, mut part) = (Vec::new(), Vec::new());
    for ef in [64, 96, 128] {
        for round in 0..3 {
            let mut line = format!("ef {ef} round {round}:");
            let t = std::time::Instant::now();
            let mut reference = Vec::new();
            for q in &prepared {
                let walk = CodeWalk { rows, query: q, kernels };
                graph.walk_layer0(&walk, &Everyone, ef, entry, Reach::FULL, &mut s);
                reference.push(s.found.clone());
            }
            let base_qps = prepared.len() as f64 / t.elapsed().as_secs_f64();
            line += &format!(" rows {base_qps:.0}");
            for &lines in &lines_tried {
                let t = std::time::Instant::now();
                let mut found = Vec::new();
                for q in &prepared {
                    let walk = CodeWalk { rows, query: q, kernels };
                    graph.seed_layer0(&walk, entry, &mut s);
                    let state = graph.layer_start(&walk, &Everyone, ef, 0, Reach::FULL, &mut s);
                    let paired = state.paired;
                    let mut step = || {
                        let scratch = (&mut positions, &mut part);
                        block_step(&graph, &blocks, q, &kernels, paired, lines, scratch, &mut s)
                    };
                    while let Step::Expanded = step() {}
                    graph.layer_finish(&Everyone, &mut s);
                    found.push(s.found.clone());
                }
                let qps = prepared.len() as f64 / t.elapsed().as_secs_f64();
                assert_eq!(found, reference, "lines {lines}");
                line += &format!(" blocks/{lines} {qps:.0} ({:.2}x)", qps / base_qps);
            }
            println!("{line}");
        }
    }
}

/// The rows of an `.fvecs` file (TEXMEX: each row its dimension as an i32, then its floats),
/// and their dimension.
fn read_fvecs(path: &str) -> (Vec<f32>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let rows = bytes
        .chunks_exact(4 * (dim + 1))
        .flat_map(|row| row[4..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())))
        .collect();
    (rows, dim)
}

/// `count` centres of `sample`: k-means++ seeds (each drawn in proportion to its squared
/// distance from those before), then Lloyd's iterations.
fn kmeans(sample: &[f32], dim: usize, count: usize, iterations: usize) -> Vec<f32> {
    let dot = distance::best_kernels().dot;
    let l2 = |a: &[f32], b: &[f32]| dot(a, a) - 2.0 * dot(a, b) + dot(b, b);
    let mut state = 7u64;
    let mut uniform = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut centres = sample[..dim].to_vec();
    let mut closest: Vec<f32> = sample.chunks_exact(dim).map(|row| l2(row, &centres)).collect();
    for _ in 1..count {
        let mut pick = uniform() * closest.iter().map(|&d| f64::from(d.max(0.0))).sum::<f64>();
        let chosen = closest
            .iter()
            .position(|&d| {
                pick -= f64::from(d.max(0.0));
                pick <= 0.0
            })
            .unwrap_or(closest.len() - 1);
        let centre = sample[chosen * dim..][..dim].to_vec();
        closest.par_iter_mut().zip(sample.par_chunks_exact(dim)).for_each(|(c, row)| *c = c.min(l2(row, &centre)));
        centres.extend(centre);
    }
    for _ in 0..iterations {
        let mut sums = vec![0f64; centres.len()];
        let mut members = vec![0usize; count];
        for (row, j) in sample.chunks_exact(dim).zip(nearest_centres(sample, &centres, dim)) {
            members[j as usize] += 1;
            for (sum, &x) in sums[j as usize * dim..][..dim].iter_mut().zip(row) {
                *sum += f64::from(x);
            }
        }
        for ((centre, sums), &members) in centres.chunks_exact_mut(dim).zip(sums.chunks_exact(dim)).zip(&members) {
            if members > 0 {
                centre.iter_mut().zip(sums).for_each(|(c, s)| *c = (s / members as f64) as f32);
            }
        }
    }
    centres
}

/// The nearest of `centres` to each row.
fn nearest_centres(rows: &[f32], centres: &[f32], dim: usize) -> Vec<u16> {
    let dot = distance::best_kernels().dot;
    let norms: Vec<f32> = centres.chunks_exact(dim).map(|c| dot(c, c)).collect();
    rows.par_chunks_exact(dim)
        .map(|row| {
            let distances = centres.chunks_exact(dim).zip(&norms).map(|(c, norm)| norm - 2.0 * dot(row, c));
            distances.enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).map_or(0, |(j, _)| j as u16)
        })
        .collect()
}

/// Ranks by 4-bit codes of each vector's residual to its k-means centre: the kernel's estimate
/// of `|q - c_j - r̂|²` with the codes' norms holding `|c_j + r̂|²`, plus the query's term for
/// the centre, `-2 q · c_j`, computed when a walk first meets the centre.
struct CentredWalk<'a> {
    rows: CodeRows<'a>,
    query: &'a QueryCode,
    query_f32: &'a [f32],
    kernels: QuantKernels,
    centres: &'a [f32],
    centre_of: &'a [u16],
    /// `-2 q · c_j` by centre, NaN until first needed.
    centre_terms: &'a [Cell<f32>],
}

impl CentredWalk<'_> {
    #[inline]
    fn centre_term(&self, node: u32) -> f32 {
        let j = self.centre_of[node as usize] as usize;
        let term = self.centre_terms[j].get();
        if !term.is_nan() {
            return term;
        }
        let dim = self.query_f32.len();
        let term = -2.0 * (distance::best_kernels().dot)(self.query_f32, &self.centres[j * dim..][..dim]);
        self.centre_terms[j].set(term);
        term
    }
}

impl Walk for CentredWalk<'_> {
    fn distance(&self, node: u32) -> f32 {
        self.query.distance(&self.kernels, self.rows.code(node), self.rows.norm(node)) + self.centre_term(node)
    }

    fn bytes_per_node(&self) -> usize {
        self.rows.len + 4
    }

    fn prefetch(&self, node: u32) {
        self.rows.prefetch(node);
    }

    fn distances(&self, nodes: &[u32], out: &mut Vec<f32>) {
        assert!(self.query.distances(&self.kernels, self.rows, nodes, ONE_LINE_LOOKAHEAD, out));
        for (distance, &n) in out.iter_mut().zip(nodes) {
            *distance += self.centre_term(n);
        }
    }
}

/// Recall@10 and queries/s of searches ranked by the bfloat16 halves, by 4-bit codes and by
/// 4-bit codes of the residuals to `CENTRES` k-means centres (default 2,048), on one graph of
/// `PREFIX_base.fvecs` searched for the first 500 of `PREFIX_query.fvecs` (L2; make them with
/// `benches/peers/gen_clustered.py`), re-scored alike: the 4-bit path of `search_within`. Also
/// the share of the true 10 in the walk's beam, and how many of those it missed the walk never
/// reached.
#[test]
#[ignore = "a measurement: PREFIX=build/tight200k cargo test --release --lib residual_codes_at_scale -- --ignored --nocapture"]
fn residual_codes_at_scale() {
    let prefix = std::env::var("PREFIX").unwrap_or("build/tight200k".into());
    let count: usize = std::env::var("CENTRES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    let (base, dim) = read_fvecs(&format!("{prefix}_base.fvecs"));
    let (queries, _) = read_fvecs(&format!("{prefix}_query.fvecs"));
    let queries = &queries[..queries.len().min(500 * dim)];
    let n = base.len() / dim;
    let params = Params { m: 16, ef_construction: 100, seed: 3, quantization: Quantization::Bits4 };
    let mut graph = Graph::new(dim, params, Distance::new(Metric::L2));
    graph.append(&base);
    graph.insert_range(0..n as u32);
    let truth: Vec<Vec<u32>> = queries
        .par_chunks_exact(dim)
        .map(|q| {
            let mut all: Vec<Scored> =
                (0..n as u32).map(|node| Scored { distance: graph.exact_distance(q, node), node }).collect();
            all.select_nth_unstable(10);
            all[..10].iter().map(|s| s.node).collect()
        })
        .collect();
    let sample: Vec<f32> = base.chunks_exact(dim).step_by((n / 20_000).max(1)).flatten().copied().collect();
    let centres = kmeans(&sample, dim, count, 8);
    let centre_of = nearest_centres(&base, &centres, dim);
    let centre = |node: usize| &centres[centre_of[node] as usize * dim..][..dim];
    let residuals: Vec<f32> = base
        .chunks_exact(dim)
        .enumerate()
        .flat_map(|(node, row)| row.iter().zip(centre(node)).map(|(x, c)| x - c))
        .collect();
    let codebook = Codebook::train(Quantization::Bits4, dim, &residuals);
    let code_len = Quantization::Bits4.code_len(dim);
    let mut bytes = vec![0u8; n * code_len];
    let mut norms = vec![0f32; n];
    for (node, (out, norm)) in bytes.chunks_exact_mut(code_len).zip(&mut norms).enumerate() {
        let residual = &residuals[node * dim..][..dim];
        codebook.encode(residual, out);
        // |c + r̂|², with r̂ rounded as `encode` rounds it.
        let decoded = residual
            .iter()
            .zip(&codebook.lower)
            .zip(&codebook.step)
            .zip(centre(node))
            .map(|(((&x, &lower), &step), &c)| c + lower + ((x - lower) / step).round().clamp(0.0, 15.0) * step);
        *norm = decoded.map(|v| v * v).sum();
    }
    let mean_residual = residuals.chunks_exact(dim).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).sum::<f32>();
    println!("{n} vectors, {count} centres, mean |o - c| {:.3}", mean_residual / n as f32);
    let residual_rows = CodeRows { bytes: &bytes, len: code_len, norms: &norms };
    let codes = graph.codes.as_ref().unwrap();
    let kernels = quant::best_kernels();
    let entry = graph.entry.load(Acquire);
    let (k, candidates) = (10, 10 * Quantization::Bits4.default_oversample());
    let centre_terms = vec![Cell::new(f32::NAN); count];
    let mut s = Scratch::default();
    let share = |hits: usize| hits as f64 / (queries.len() / dim * k) as f64;
    for ef in [24, 32, 48, 64, 80, 96, 128, 160, 256] {
        let mut line = format!("ef {ef:>3}:");
        for system in ["f32", "4-bit", "residual 4-bit"] {
            let (mut hits, mut in_beam, mut never_reached) = (0, 0, 0);
            let t = std::time::Instant::now();
            for (q, truth) in queries.chunks_exact(dim).zip(&truth) {
                match system {
                    "f32" => {
                        let walk = CoarseWalk { graph: &graph, query: q };
                        graph.walk_layer0(&walk, &Everyone, ef.max(k), entry, Reach::FULL, &mut s);
                    }
                    "4-bit" => {
                        let prepared = QueryCode::new(&codes.codebook, Metric::L2, q, &kernels);
                        let walk = CodeWalk { rows: codes.rows(Metric::L2), query: &prepared, kernels };
                        graph.walk_layer0(&walk, &Everyone, ef.max(candidates), entry, Reach::FULL, &mut s);
                    }
                    _ => {
                        let prepared = QueryCode::new(&codebook, Metric::L2, q, &kernels);
                        centre_terms.iter().for_each(|t| t.set(f32::NAN));
                        let walk = CentredWalk {
                            rows: residual_rows,
                            query: &prepared,
                            query_f32: q,
                            kernels,
                            centres: &centres,
                            centre_of: &centre_of,
                            centre_terms: &centre_terms,
                        };
                        graph.walk_layer0(&walk, &Everyone, ef.max(candidates), entry, Reach::FULL, &mut s);
                    }
                }
                for &t in truth {
                    if s.found.iter().any(|f| f.node == t) {
                        in_beam += 1;
                    } else if s.visited.insert(t) {
                        never_reached += 1;
                    }
                }
                if system == "f32" {
                    graph.keep_exact_nearest(q, k, 0, &mut s);
                } else {
                    let rescored = candidates.max(ef / 2).min(s.found.len());
                    s.found.truncate(rescored);
                    let exact = k.min(rescored);
                    graph.rescore(q, 0..exact, true, &mut s);
                    graph.rank_coarsely(q, exact, &mut s);
                    graph.keep_exact_nearest(q, k, exact, &mut s);
                }
                hits += s.found.iter().filter(|f| truth.contains(&f.node)).count();
            }
            let qps = (queries.len() / dim) as f64 / t.elapsed().as_secs_f64();
            line += &format!(
                "  {system} {:.3}/{qps:.0} (beam {:.3}, unreached {:.3})",
                share(hits),
                share(in_beam),
                share(never_reached)
            );
        }
        println!("{line}");
    }
}
