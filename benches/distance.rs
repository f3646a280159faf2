//! Distance kernels: every implementation this CPU supports, at typical embedding sizes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omendb::distance::available_kernels;
use omendb::quant::available as available_code_kernels;
use omendb::quant::{BitEstimate, CodeRows};

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
            let high: Vec<u16> = b.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
            group.bench_function(format!("{}/dot_bf16", k.name), |bench| {
                bench.iter(|| (k.dot_coarse)(black_box(&a), black_box(&high)))
            });
            let low: Vec<u16> = b.iter().map(|x| x.to_bits() as u16).collect();
            group.bench_function(format!("{}/dot_halves", k.name), |bench| {
                bench.iter(|| (k.dot_halves)(black_box(&a), black_box(&high), black_box(&low)))
            });
        }
        // Code kernels: 8-bit and 4-bit weighted sums, binary codes against a query's 4 bit planes.
        let bytes: Vec<u8> = (0..dim).map(|i| (i * 37 % 251) as u8).collect();
        let planes: Vec<u64> =
            (0..4 * dim.div_ceil(64)).map(|i| 0x9E37_79B9_7F4A_7C15u64.rotate_left(i as u32)).collect();
        for k in available_code_kernels() {
            group.bench_function(format!("{}/dot_u8", k.name), |bench| {
                bench.iter(|| (k.dot_u8)(black_box(&a), black_box(&bytes)))
            });
            group.bench_function(format!("{}/dot_u4", k.name), |bench| {
                bench.iter(|| (k.dot_u4)(black_box(&a), black_box(&bytes[..dim / 2])))
            });
            // One binary code (its bits, then 16 bytes of factors), as a batch of one.
            let code = &bytes[..dim.div_ceil(64) * 8 + 16];
            let rows = CodeRows { bytes: code, len: code.len(), norms: &[] };
            let mut out = [0f32];
            group.bench_function(format!("{}/bit_planes", k.name), |bench| {
                bench.iter(|| {
                    (k.bit_planes)(black_box(&planes), black_box(rows), &[0], 0, BitEstimate::default(), &mut out)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
