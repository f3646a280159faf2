//! Recall on real data: 50,000 sentence embeddings (384-d, cosine) from ../shared/data, with
//! exact ground truth. The data sits beside the project only in CI and dev checkouts, so the
//! test is ignored by a plain `cargo test` and run by `make test-npm51k` (part of `make test`),
//! which reports it as skipped without the data, and fails in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use omendb::{Index, Metric, Options};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// IEEE half precision to single (all cases: normal, subnormal, zero, inf, NaN).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let magnitude = match exponent {
        0 => return f32::from_bits(sign) + if sign == 0 { 1.0 } else { -1.0 } * mantissa as f32 * 2f32.powi(-24),
        0x1f => 0xff << 23 | mantissa << 13,
        _ => (exponent + 112) << 23 | mantissa << 13,
    };
    f32::from_bits(sign | magnitude)
}

/// TEXMEX .fvecs/.ivecs rows: an i32 dimension, then that many 4-byte values.
fn read_vecs(path: &Path) -> (usize, Vec<[u8; 4]>) {
    let bytes = std::fs::read(path).unwrap();
    let dim = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let words: Vec<[u8; 4]> = bytes.chunks_exact(4).map(|w| w.try_into().unwrap()).collect();
    let values = words.chunks_exact(dim + 1).flat_map(|row| row[1..].to_vec()).collect();
    (dim, values)
}

#[test]
#[ignore = "needs ../shared/data/npm51k_*: run with `make test-npm51k`"]
fn npm51k_recall_at_10_is_at_least_095() {
    let dir = data_dir();
    let base_path = dir.join("npm51k_base.f16");
    assert!(base_path.exists(), "{} not found: the test needs the shared data set", base_path.display());
    let (dim, queries) = read_vecs(&dir.join("npm51k_query.fvecs"));
    let queries: Vec<f32> = queries.into_iter().map(f32::from_le_bytes).collect();
    let (width, truth) = read_vecs(&dir.join("npm51k_groundtruth.ivecs"));
    let truth: Vec<i32> = truth.into_iter().map(i32::from_le_bytes).collect();
    let base: Vec<f32> = std::fs::read(&base_path)
        .unwrap()
        .chunks_exact(2)
        .map(|h| f16_to_f32(u16::from_le_bytes([h[0], h[1]])))
        .collect();
    let n = base.len() / dim;
    assert_eq!((n, dim), (50_000, 384));

    let index = Index::new(Options::new(dim, Metric::Cosine)).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    index.insert_batch(&ids, &base).unwrap();
    let results = index.search_batch(&queries, 10, 0, 0).unwrap();
    let hits: usize = results
        .iter()
        .zip(truth.chunks_exact(width))
        .map(|(found, exact)| found.iter().filter(|h| exact[..10].contains(&(h.id as i32))).count())
        .sum();
    let recall = hits as f64 / (results.len() * 10) as f64;
    println!("npm51k: recall@10 = {recall:.4} at the default ef over {} queries", results.len());
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn half_precision_conversion_is_exact() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
}
