//! Duplicate-heavy data: exact copies and near copies (plus noise of 1e-6) of a few vectors among
//! distinct ones, at every share of duplicates from none to 99%. Every vector must stay findable:
//! a search for it at the default ef finds something at least as close as the vector itself, and
//! an exhaustive search returns everything; for every metric, with and without codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{clustered, exact_distance, Rng};
use omendb::{Index, Metric, Options, Quantization, SearchParams};

const DIM: usize = 16;

/// `distinct` clustered rows followed by copies of the first `groups` of them (near copies: plus
/// noise), as many as make up `share` of all rows. The distinct rows are the same at every share,
/// so only the copies differ from the data without them.
fn with_duplicates(distinct: usize, share: f64, groups: usize, near: bool, seed: u64) -> Vec<f32> {
    let mut data = clustered(distinct, DIM, 20, seed);
    let mut rng = Rng::new(seed ^ 0xD0D0);
    let copies = (distinct as f64 * share / (1.0 - share)).round() as usize;
    for _ in 0..copies {
        let original = (rng.next_u64() % groups as u64) as usize;
        for j in 0..DIM {
            let noise = if near { 1e-6 * rng.gaussian() } else { 0.0 };
            data.push(data[original * DIM + j] + noise);
        }
    }
    data
}

/// Checks that every row is findable in `index` (built from `data` with ids 0..n): an
/// exhaustive search returns every id, and a search for each row at the default ef finds
/// something at least as close as the row itself (under L2 and cosine its own id, or a copy).
/// Under the inner product a vector need not be its own nearest neighbour, and the graph of
/// large-norm vectors is sparse (some are found only at a larger ef, duplicates or not), so
/// there the rows' recall@10 against brute force is checked instead.
fn check_findable(index: &Index, data: &[f32], metric: Metric, case: &str) {
    let n = data.len() / DIM;
    let everything = index.search(&data[..DIM], n, SearchParams::from(n)).unwrap();
    let mut ids: Vec<u64> = everything.iter().map(|h| h.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "{case}: an exhaustive search returns {} of {n}", ids.len());

    let results = index.search_batch(data, 10, 0, 0).unwrap();
    if metric == Metric::InnerProduct {
        let all: Vec<u64> = (0..n as u64).collect();
        // Every 7th row, to keep the brute force small.
        let rows: Vec<usize> = (0..n).step_by(7).collect();
        let queries: Vec<f32> = rows.iter().flat_map(|&r| data[r * DIM..(r + 1) * DIM].to_vec()).collect();
        let truth = common::brute_force(metric, DIM, data, &all, &queries, 10);
        let found: Vec<Vec<u64>> = rows.iter().map(|&r| results[r].iter().map(|h| h.id).collect()).collect();
        let distance_of =
            |id: u64, q: &[f32]| exact_distance(metric, q, &data[id as usize * DIM..(id as usize + 1) * DIM]);
        // Ties (copies) make ids interchangeable: count a hit as right when it is as close as the
        // truth's hit at the same rank.
        let mut right = 0;
        for ((f, t), q) in found.iter().zip(&truth).zip(queries.chunks_exact(DIM)) {
            right += f.iter().zip(t).filter(|(&a, &b)| distance_of(a, q) <= distance_of(b, q) + 1e-5).count();
        }
        let recall = right as f64 / (truth.len() * 10) as f64;
        assert!(recall >= 0.95, "{case}: recall@10 {recall:.3}");
        return;
    }
    let mut lost = Vec::new();
    for (row, hits) in results.iter().enumerate() {
        let vector = &data[row * DIM..(row + 1) * DIM];
        let own = exact_distance(metric, vector, vector);
        let best = hits.first().map_or(f64::INFINITY, |h| h.distance as f64);
        if !hits.iter().any(|h| h.id == row as u64) && best > own + 1e-4 * (1.0 + own.abs()) {
            lost.push(row);
        }
    }
    let example = &lost[..lost.len().min(10)];
    assert!(
        lost.is_empty(),
        "{case}: {} of {n} rows find nothing as close as themselves, e.g. {example:?}",
        lost.len()
    );
}

fn build(data: &[f32], metric: Metric, quantization: Quantization) -> Index {
    let options = Options { quantization, ..Options::new(DIM, metric) };
    let index = Index::new(options).unwrap();
    let ids: Vec<u64> = (0..(data.len() / DIM) as u64).collect();
    index.insert_batch(&ids, data).unwrap();
    index
}

#[test]
fn every_vector_stays_findable_at_any_share_of_exact_or_near_duplicates() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        for share in [0.0, 0.1, 0.23, 0.5, 0.9, 0.99] {
            for near in [false, true] {
                // 1,000 distinct rows (200 at 99%: 20,000 rows in all).
                let distinct = if share > 0.95 { 200 } else { 1_000 };
                let data = with_duplicates(distinct, share, 1, near, 17);
                let kind = if near { "near" } else { "exact" };
                let case = format!("{metric}, {:.0}% {kind} copies of one vector", share * 100.0);
                check_findable(&build(&data, metric, Quantization::None), &data, metric, &case);
            }
        }
    }
}

#[test]
fn duplicates_of_many_vectors_with_codes_and_after_sealing() {
    for (metric, quantization) in [
        (Metric::L2, Quantization::Bits8),
        (Metric::Cosine, Quantization::Bits4),
        (Metric::InnerProduct, Quantization::Bits8),
        (Metric::L2, Quantization::Binary),
    ] {
        for near in [false, true] {
            let data = with_duplicates(2_000, 0.5, 10, near, 23);
            let case =
                format!("{metric} {quantization}, 50% {} copies of ten vectors", if near { "near" } else { "exact" });
            check_findable(&build(&data, metric, quantization), &data, metric, &case);
        }
    }
    // Sealing copies and re-connects each graph: a segment of 1,000 holds 500 copies.
    let data = with_duplicates(2_000, 0.5, 3, false, 29);
    let options = Options { segment_capacity: 1_000, ..Options::new(DIM, Metric::L2) };
    let index = Index::new(options).unwrap();
    let ids: Vec<u64> = (0..4_000).collect();
    index.insert_batch(&ids, &data).unwrap();
    assert_eq!(index.segment_count(), 4);
    check_findable(&index, &data, Metric::L2, "sealed segments, 50% copies");
}

#[test]
fn a_vector_inserted_after_many_copies_is_found() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let index = Index::new(Options::new(DIM, metric)).unwrap();
        let copy: Vec<f32> = (0..DIM).map(|j| 0.1 + j as f32 * 0.01).collect();
        let copies: Vec<f32> = copy.iter().copied().cycle().take(100 * DIM).collect();
        index.insert_batch(&(0..100).collect::<Vec<u64>>(), &copies).unwrap();
        let distinct: Vec<f32> = (0..DIM).map(|j| 0.5 - j as f32 * 0.02).collect();
        index.insert(100, &distinct).unwrap();
        let hits = index.search(&distinct, 1, 0).unwrap();
        assert_eq!(hits[0].id, 100, "{metric}: the distinct vector is not found: {hits:?}");
        let all = index.search(&copy, 101, SearchParams::from(101)).unwrap();
        assert_eq!(all.len(), 101, "{metric}: an exhaustive search returns {}", all.len());
        // And batches of one copy at a time stay findable too.
        for id in 101..200u64 {
            index.insert(id, &copy).unwrap();
        }
        let all = index.search(&copy, 200, SearchParams::from(200)).unwrap();
        assert_eq!(all.len(), 200, "{metric}: after single-copy batches, an exhaustive search returns {}", all.len());
        assert_eq!(index.search(&distinct, 1, 0).unwrap()[0].id, 100, "{metric}");
    }
}
