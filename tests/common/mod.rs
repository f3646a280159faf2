//! Shared test data: seeded clustered vectors, brute-force neighbours and recall.
#![allow(dead_code)]

use omendb::{Index, Metric};

/// Deterministic generator (splitmix64) so every failure can be replayed from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn gaussian(&mut self) -> f32 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// `n` vectors around `clusters` random centres: realistic structure (dense groups of
/// similar items) with a known seed.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    println!("clustered data: n={n} dim={dim} clusters={clusters} seed={seed}");
    let mut rng = Rng::new(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next_u64() % clusters as u64) as usize;
        data.extend((0..dim).map(|j| centres[c * dim + j] + 0.25 * rng.gaussian()));
    }
    data
}

pub fn exact_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum(),
        Metric::InnerProduct => -dot,
        Metric::Cosine => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

/// Exact top-k ids (row numbers mapped through `ids`) for each query, by brute force in f64.
pub fn brute_force(metric: Metric, dim: usize, base: &[f32], ids: &[u64], queries: &[f32], k: usize) -> Vec<Vec<u64>> {
    use rayon::prelude::*;
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            let mut all: Vec<(f64, u64)> =
                base.chunks_exact(dim).zip(ids).map(|(v, &id)| (exact_distance(metric, q, v), id)).collect();
            let k = k.min(all.len());
            all.select_nth_unstable_by(k.saturating_sub(1), |a, b| a.0.total_cmp(&b.0));
            all.truncate(k);
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            all.into_iter().map(|(_, id)| id).collect()
        })
        .collect()
}

/// Mean fraction of the true top-k found.
pub fn recall(found: &[Vec<u64>], truth: &[Vec<u64>], k: usize) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().take(k).filter(|id| t[..k.min(t.len())].contains(id)).count())
        .sum();
    hits as f64 / (truth.len() * k) as f64
}

/// Recall@k of `index` over `queries` at beam width `ef` (0 = the index default).
pub fn index_recall(index: &Index, queries: &[f32], truth: &[Vec<u64>], k: usize, ef: usize) -> f64 {
    let found: Vec<Vec<u64>> = index
        .search_batch(queries, k, ef, 0)
        .unwrap()
        .into_iter()
        .map(|hits| hits.into_iter().map(|h| h.id).collect())
        .collect();
    recall(&found, truth, k)
}
