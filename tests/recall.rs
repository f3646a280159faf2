//! Recall against brute force on generated clustered data, for every metric, at dimensions 128
//! and 384, with one and with many segments, and batch-built against one-at-a-time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use omendb::{Error, Index, Metric, Options};

const N: usize = 20_000;
const QUERIES: usize = 200;
const K: usize = 10;

struct Data {
    base: Vec<f32>,
    queries: Vec<f32>,
    ids: Vec<u64>,
}

fn data(dim: usize, seed: u64) -> Data {
    data_with_queries(dim, seed, QUERIES)
}

fn data_with_queries(dim: usize, seed: u64, queries: usize) -> Data {
    let mut all = clustered(N + queries, dim, 64, seed);
    let queries = all.split_off(N * dim);
    // Non-contiguous ids, to prove results carry the caller's ids and not row numbers.
    let ids = (0..N as u64).map(|i| i * 3 + 1_000_000_007).collect();
    Data { base: all, queries, ids }
}

fn build(data: &Data, options: Options) -> Index {
    let index = Index::new(options).unwrap();
    index.insert_batch(&data.ids, &data.base).unwrap();
    assert_eq!(index.len(), N);
    index
}

#[test]
fn recall_at_default_ef_for_every_metric_at_dims_128_and_384() {
    for dim in [128, 384] {
        let data = data(dim, 7 + dim as u64);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let truth = brute_force(metric, dim, &data.base, &data.ids, &data.queries, K);
            let index = build(&data, Options::new(dim, metric));
            let recall = index_recall(&index, &data.queries, &truth, K, 0);
            println!("dim {dim} {metric}: recall@{K} = {recall:.4} at default ef");
            assert!(recall >= 0.95, "dim {dim} {metric}: recall {recall}");
        }
    }
}

#[test]
fn recall_holds_across_many_segments_and_uneven_batches() {
    let data = data(128, 99);
    let metric = Metric::L2;
    let truth = brute_force(metric, 128, &data.base, &data.ids, &data.queries, K);
    let options = Options { segment_capacity: 4_000, ..Options::new(128, metric) };
    let index = Index::new(options).unwrap();
    // Batches that end mid-segment, fill several segments at once, and top up a partial one.
    let cuts = [0, 1_500, 2_500, 13_000, 13_001, N];
    for w in cuts.windows(2) {
        index.insert_batch(&data.ids[w[0]..w[1]], &data.base[w[0] * 128..w[1] * 128]).unwrap();
    }
    assert_eq!(index.len(), N);
    assert_eq!(index.segment_count(), 5, "20,000 vectors at 4,000 per segment");
    let recall = index_recall(&index, &data.queries, &truth, K, 0);
    println!("5 segments: recall@{K} = {recall:.4}");
    assert!(recall >= 0.95, "recall {recall}");
    // Single searches fan out in parallel; they must agree with the batch path.
    let batch = index.search_batch(&data.queries[..10 * 128], K, 0, 1).unwrap();
    for (q, expected) in batch.iter().enumerate() {
        assert_eq!(&index.search(&data.queries[q * 128..(q + 1) * 128], K, 0).unwrap(), expected);
    }
}

#[test]
fn batch_build_matches_one_at_a_time_within_a_hundredth() {
    // 1,000 queries: at low ef, two graphs built in different orders differ by about 0.01 in
    // recall over 200 queries from chance alone.
    let data = data_with_queries(128, 3, 1_000);
    let metric = Metric::Cosine;
    let truth = brute_force(metric, 128, &data.base, &data.ids, &data.queries, K);
    let batch = build(&data, Options { threads: 2, ..Options::new(128, metric) });
    let sequential = Index::new(Options { threads: 1, ..Options::new(128, metric) }).unwrap();
    for (id, vector) in data.ids.iter().zip(data.base.chunks_exact(128)) {
        sequential.insert(*id, vector).unwrap();
    }
    for ef in [24, 0] {
        let parallel_recall = index_recall(&batch, &data.queries, &truth, K, ef);
        let sequential_recall = index_recall(&sequential, &data.queries, &truth, K, ef);
        println!("ef {ef}: batch {parallel_recall:.4} sequential {sequential_recall:.4}");
        assert!(parallel_recall >= sequential_recall - 0.01, "ef {ef}: {parallel_recall} vs {sequential_recall}");
    }
}

#[test]
fn every_vector_finds_itself_and_results_are_sorted() {
    let data = data(64, 5);
    let index = build(&data, Options { segment_capacity: 7_000, ..Options::new(64, Metric::L2) });
    let results = index.search_batch(&data.base, 3, 0, 0).unwrap();
    let found =
        results.iter().zip(&data.ids).filter(|(hits, id)| hits[0].id == **id && hits[0].distance == 0.0).count();
    println!("{found} of {N} vectors are their own nearest neighbour");
    assert!(found as f64 >= 0.999 * N as f64, "only {found} of {N} found themselves");
    for hits in &results {
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "unsorted: {hits:?}");
    }
}

#[test]
fn small_indexes_return_everything_they_hold() {
    let index = Index::new(Options::new(4, Metric::L2)).unwrap();
    assert!(index.search(&[0.0; 4], 5, 0).unwrap().is_empty());
    index.insert_batch(&[1, 2, 3], &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0]).unwrap();
    let hits = index.search(&[0.0, 0.0, 0.0, 2.1], 5, 1).unwrap();
    let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
    assert_eq!(ids, [2, 3, 1]);
    assert!((hits[0].distance - 0.01).abs() < 1e-5);
    // A huge k costs nothing: no query can return more hits than the index holds.
    assert_eq!(index.search(&[0.0; 4], usize::MAX, 0).unwrap().len(), 3);
    let batch = index.search_batch(&[0.0; 8], usize::MAX / 2, usize::MAX, 1).unwrap();
    assert_eq!(batch.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
    assert!(matches!(index.search_batch(&[0.0; 8], 1, 0, usize::MAX), Err(Error::InvalidArgument(_))));
    assert!(matches!(index.search_batch(&[0.0; 7], 1, 0, 1), Err(Error::DimensionMismatch(_))));
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let data = data(16, 11);
    let index = Index::new(Options { segment_capacity: 5_000, ..Options::new(16, Metric::Cosine) }).unwrap();
    index.insert_batch(&data.ids[..6_000], &data.base[..6_000 * 16]).unwrap();
    let query = &data.queries[..16];
    let before = index.search(query, K, 0).unwrap();

    let fresh = &data.ids[6_000..6_003];
    let rows = &data.base[6_000 * 16..6_003 * 16];
    let mut nan = rows.to_vec();
    nan[16 + 5] = f32::NAN;
    assert!(matches!(index.insert_batch(fresh, &nan), Err(Error::NonFinite { row: 1, column: 5, .. })));
    let mut zero = rows.to_vec();
    zero[32..48].fill(0.0);
    assert_eq!(index.insert_batch(fresh, &zero), Err(Error::ZeroVector { row: 2 }));
    assert!(matches!(index.insert_batch(fresh, &rows[..40]), Err(Error::DimensionMismatch(_))));
    let repeated = [fresh[0], fresh[1], fresh[0]];
    assert_eq!(index.insert_batch(&repeated, rows), Err(Error::DuplicateId { id: fresh[0], in_batch: true }));
    let existing = [fresh[0], data.ids[10], fresh[2]];
    assert_eq!(index.insert_batch(&existing, rows), Err(Error::DuplicateId { id: data.ids[10], in_batch: false }));
    assert!(matches!(index.search(query, 0, 0), Err(Error::InvalidArgument(_))));
    assert_eq!(index.search(&[0.0; 16], 1, 0), Err(Error::ZeroVector { row: 0 }));
    // u64::MAX marks empty result slots (OMEN_NO_ID): never a vector's id.
    let reserved = [fresh[0], u64::MAX, fresh[2]];
    assert!(matches!(index.insert_batch(&reserved, rows), Err(Error::InvalidArgument(_))));

    assert_eq!(index.len(), 6_000);
    assert!(!index.contains(fresh[0]));
    assert_eq!(index.search(query, K, 0).unwrap(), before);
    // The rejected ids are still free to use.
    index.insert_batch(fresh, rows).unwrap();
    assert_eq!(index.len(), 6_003);
}

#[test]
fn vectors_whose_distances_would_overflow_are_refused_and_no_distance_is_nan() {
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let index = Index::new(Options::new(4, metric)).unwrap();
        let huge = [f32::MAX / 2.0, 1.0, -1.0, 0.5];
        let refused = index.insert_batch(&[1, 2], &[[0.5, 0.5, 0.5, 0.5], huge].concat());
        if metric == Metric::Cosine {
            // Normalised on insert: any finite vector is fine.
            refused.unwrap();
            continue;
        }
        assert!(matches!(refused, Err(Error::NormOverflow { row: 1, .. })), "{metric}: {refused:?}");
        assert!(index.is_empty());
        // The largest vectors accepted keep every distance finite and ordered.
        let big = (f32::MAX / 4.0).sqrt() * 0.999;
        let rows = [[big, 0.0, 0.0, 0.0], [-big, 0.0, 0.0, 0.0], [0.0, big, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]];
        index.insert_batch(&[10, 11, 12, 13], rows.as_flattened()).unwrap();
        for query in rows {
            let hits = index.search(&query, 4, 0).unwrap();
            assert_eq!(hits.len(), 4, "{metric}");
            assert!(hits.iter().all(|h| h.distance.is_finite()), "{metric}: {hits:?}");
            assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{metric}: {hits:?}");
        }
        let refused = index.search(&huge, 1, 0);
        assert!(matches!(refused, Err(Error::NormOverflow { .. })), "{metric}: query {refused:?}");
    }
}

#[test]
fn invalid_options_are_refused() {
    for options in [
        Options::new(0, Metric::L2),
        Options { m: 1, ..Options::new(8, Metric::L2) },
        Options { segment_capacity: 0, ..Options::new(8, Metric::L2) },
        Options { ef_search: 0, ..Options::new(8, Metric::L2) },
    ] {
        assert!(matches!(Index::new(options), Err(Error::InvalidArgument(_))));
    }
}
