//! Single-query search latency at several beam widths on 20,000 clustered 128-d vectors, with
//! the recall of each setting printed beside it (speed means nothing without the recall).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use omendb::{Index, Metric, Options};

const N: usize = 20_000;
const DIM: usize = 128;
const QUERIES: usize = 200;

fn clustered(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let centres: Vec<f32> = (0..64 * DIM).map(|_| next() * 2.0 - 1.0).collect();
    let mut data = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let c = (next() * 64.0) as usize % 64;
        data.extend((0..DIM).map(|j| centres[c * DIM + j] + 0.5 * (next() - 0.5)));
    }
    data
}

fn exact(base: &[f32], query: &[f32], k: usize) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = base
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum(), i as u64))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn search(c: &mut Criterion) {
    let data = clustered(N + QUERIES, 42);
    let (base, queries) = data.split_at(N * DIM);
    let index = Index::new(Options::new(DIM, Metric::L2)).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<u64> = (0..N as u64).collect();
    index.insert_batch(&ids, base).unwrap_or_else(|e| panic!("{e}"));
    let truth: Vec<Vec<u64>> = queries.chunks_exact(DIM).map(|q| exact(base, q, 10)).collect();

    let mut group = c.benchmark_group("search/20k x 128 l2 k=10");
    for ef in [16, 32, 64, 128] {
        let found = index.search_batch(queries, 10, ef, 1).unwrap_or_else(|e| panic!("{e}"));
        let hits: usize = found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|h| t.contains(&h.id)).count()).sum();
        println!("ef {ef}: recall@10 = {:.3}", hits as f64 / (QUERIES * 10) as f64);
        let mut q = 0;
        group.bench_function(format!("ef={ef}"), |bench| {
            bench.iter(|| {
                q = (q + 1) % QUERIES;
                index.search(black_box(&queries[q * DIM..(q + 1) * DIM]), 10, ef)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
