//! Distance kernels: every implementation this CPU supports, at typical embedding sizes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omendb::distance::available_kernels;

fn kernels(c: &mut Criterion) {
    for dim in [128usize, 384, 768, 1536] {
        let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut group = c.benchmark_group(format!("distance/{dim}"));
        group.throughput(Throughput::Elements(dim as u64));
        for k in available_kernels() {
            group.bench_function(format!("{}/dot", k.name), |bench| {
                bench.iter(|| (k.dot)(black_box(&a), black_box(&b)))
            });
            group.bench_function(format!("{}/l2sq", k.name), |bench| {
                bench.iter(|| (k.l2sq)(black_box(&a), black_box(&b)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
