//! Filtered and range search against brute force: allow-lists from half of the index down to a
//! single id, spread at random or gathered in one region far from the queries, under every
//! metric, with and without codes, across several segments; predicates; deletes; bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{clustered, exact_distance, Rng};
use omendb::{Filter, Index, Metric, Options, Plan, Quantization, SearchParams, SearchResult};

const DIM: usize = 32;
const N: usize = 6000;
const K: usize = 10;

/// An index over `N` clustered vectors in three segments (two sealed, one growing).
fn build(metric: Metric, quantization: Quantization, seed: u64) -> (Index, Vec<f32>, Vec<u64>) {
    let data = clustered(N, DIM, 24, seed);
    let ids: Vec<u64> = (0..N as u64).map(|i| i * 7 + 3).collect();
    let options = Options { segment_capacity: 2500, quantization, ..Options::new(DIM, metric) };
    let index = Index::new(options).unwrap();
    for (ids, rows) in ids.chunks(1000).zip(data.chunks(1000 * DIM)) {
        index.insert_batch(ids, rows).unwrap();
    }
    assert_eq!(index.segment_count(), 3);
    (index, data, ids)
}

/// The exact `k` nearest of the rows `allowed` admits, as (distance, id), closest first.
fn truth(
    metric: Metric,
    data: &[f32],
    ids: &[u64],
    query: &[f32],
    k: usize,
    allowed: &HashSet<u64>,
) -> Vec<(f64, u64)> {
    let mut all: Vec<(f64, u64)> = data
        .chunks_exact(DIM)
        .zip(ids)
        .filter(|(_, id)| allowed.contains(id))
        .map(|(v, &id)| (exact_distance(metric, query, v), id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

/// Checks one filtered search: exactly `min(k, allowed)` results, closest first, all allowed;
/// returns how many of the true `k` nearest it found.
fn check(hits: &[SearchResult], truth: &[(f64, u64)], allowed: &HashSet<u64>, what: &str) -> usize {
    assert_eq!(hits.len(), truth.len(), "{what}: result count");
    assert!(hits.iter().all(|h| allowed.contains(&h.id)), "{what}: a result the filter refuses");
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{what}: not closest first");
    let unique: HashSet<u64> = hits.iter().map(|h| h.id).collect();
    assert_eq!(unique.len(), hits.len(), "{what}: an id twice");
    hits.iter().filter(|h| truth.iter().any(|t| t.1 == h.id)).count()
}

/// The allow-lists of the test: shares of the ids chosen at random, or the share of them
/// closest to one far point (queries come from the opposite side), and a single id.
fn allow_lists(data: &[f32], ids: &[u64], rng: &mut Rng) -> Vec<(String, Vec<u64>)> {
    let mut lists = Vec::new();
    // A point far from the data's mean: the region around it is where the allowed items lie.
    let anchor: Vec<f32> = data[..DIM].iter().map(|x| x * 3.0).collect();
    let mut by_anchor: Vec<(f64, u64)> =
        data.chunks_exact(DIM).zip(ids).map(|(v, &id)| (exact_distance(Metric::L2, &anchor, v), id)).collect();
    by_anchor.sort_by(|a, b| a.0.total_cmp(&b.0));
    for share in [0.5, 0.1, 0.01, 0.001] {
        let count = ((N as f64 * share) as usize).max(1);
        let mut random: Vec<u64> = ids.iter().copied().filter(|_| rng.uniform() < share as f32).collect();
        // Repeats are allowed and change nothing.
        random.extend(random.clone().iter().take(3));
        lists.push((format!("random {share}"), random));
        lists.push((format!("region {share}"), by_anchor[..count].iter().map(|p| p.1).collect()));
    }
    lists.push(("one id".into(), vec![ids[N / 2]]));
    lists
}

#[test]
fn filtered_search_finds_the_nearest_allowed_at_every_selectivity() {
    let mut rng = Rng::new(14);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        for quantization in [Quantization::None, Quantization::Bits8] {
            let (index, data, ids) = build(metric, quantization, 1400 + metric.code() as u64);
            // Queries from the side of the data opposite the allowed region.
            let queries: Vec<f32> = (0..40)
                .flat_map(|q| {
                    let row = &data[(N - 1 - q * 37) * DIM..(N - q * 37) * DIM];
                    row.iter().zip(&data[..DIM]).map(|(x, a)| x - 1.5 * a).collect::<Vec<_>>()
                })
                .collect();
            for (name, list) in allow_lists(&data, &ids, &mut rng) {
                let allowed: HashSet<u64> = list.iter().copied().collect();
                let filter = Filter::allow(&list);
                let params = SearchParams { ef: 64, filter, ..SearchParams::default() };
                let batch = index.search_batch(&queries, K, params, 0).unwrap();
                let walk = SearchParams { plan: Plan::Graph, ..params };
                let walked = index.search_batch(&queries, K, walk, 0).unwrap();
                let (mut found, mut wanted, mut found_walking) = (0, 0, 0);
                for ((q, hits), walked) in queries.chunks_exact(DIM).zip(&batch).zip(&walked) {
                    let truth = truth(metric, &data, &ids, q, K, &allowed);
                    let what = format!("{metric} {quantization} {name}");
                    found += check(hits, &truth, &allowed, &what);
                    wanted += truth.len();
                    // The walk alone (the planner scans most of these small segments).
                    if allowed.len() >= N / 100 {
                        found_walking += check(walked, &truth, &allowed, &format!("{what} walk"));
                    }
                    // One query alone plans the same way as the batch.
                    let single = index.search(q, K, params).unwrap();
                    assert_eq!(&single, hits, "{what}: single and batch differ");
                    let exact = index.search(q, K, SearchParams { plan: Plan::Exact, ..params }).unwrap();
                    assert_eq!(check(&exact, &truth, &allowed, &what), truth.len(), "{what}: the exact plan");
                }
                let recall = found as f64 / wanted as f64;
                let walk_recall = found_walking as f64 / wanted as f64;
                println!(
                    "{metric} {quantization} {name}: {} allowed, recall@{K} {recall:.4}, walk alone {walk_recall:.4}",
                    allowed.len()
                );
                if allowed.len() >= N / 100 {
                    assert!(walk_recall >= 0.95, "{metric} {quantization} {name}: walk recall {walk_recall}");
                }
                // Few allowed (0.1%, one id): the planner scans, and the scan is exact.
                let minimum = if allowed.len() <= 10 { 1.0 } else { 0.95 };
                assert!(recall >= minimum, "{metric} {quantization} {name}: recall {recall} < {minimum}");
            }
        }
    }
}

#[test]
fn a_predicate_and_the_equal_allow_list_give_the_same_results() {
    let (index, data, ids) = build(Metric::L2, Quantization::None, 15);
    let queries = &data[..20 * DIM];
    for modulus in [2u64, 53] {
        let list: Vec<u64> = ids.iter().copied().filter(|id| id.is_multiple_of(modulus)).collect();
        let accepts = |id: u64| id.is_multiple_of(modulus);
        for plan in [Plan::Exact, Plan::Graph, Plan::Auto] {
            let by_list = SearchParams { ef: 64, filter: Filter::allow(&list), plan, ..SearchParams::default() };
            let by_predicate = SearchParams { filter: Filter::predicate(&accepts), ..by_list };
            let both = SearchParams { filter: Filter { allow: Some(&list), predicate: Some(&accepts) }, ..by_list };
            let a = index.search_batch(queries, K, by_list, 0).unwrap();
            let b = index.search_batch(queries, K, by_predicate, 0).unwrap();
            let c = index.search_batch(queries, K, both, 0).unwrap();
            assert_eq!(a, c, "modulus {modulus}, {plan:?}: list and list+predicate");
            if plan != Plan::Auto {
                // Auto plans a predicate from a sample, a list from its count: they may choose
                // differently (both find the nearest, as the other tests check).
                assert_eq!(a, b, "modulus {modulus}, {plan:?}: list and predicate");
            }
            for hits in &b {
                assert_eq!(hits.len(), K);
                assert!(hits.iter().all(|h| accepts(h.id)));
            }
        }
    }
    // Both: an id must pass the list and the predicate.
    let list: Vec<u64> = ids.iter().copied().filter(|id| id.is_multiple_of(2)).collect();
    let odd = |id: u64| !id.is_multiple_of(2);
    let none = SearchParams { filter: Filter { allow: Some(&list), predicate: Some(&odd) }, ..SearchParams::default() };
    assert!(index.search(&data[..DIM], K, none).unwrap().is_empty());
}

#[test]
fn predicates_that_refuse_everything_or_panic_leave_the_index_working() {
    let (index, data, _) = build(Metric::Cosine, Quantization::None, 16);
    let query = &data[..DIM];
    let never = |_: u64| false;
    for plan in [Plan::Auto, Plan::Exact, Plan::Graph] {
        let params = SearchParams { filter: Filter::predicate(&never), plan, ..SearchParams::default() };
        assert!(index.search(query, K, params).unwrap().is_empty(), "{plan:?}");
        assert!(index.search_range(query, 2.0, 100, params).unwrap().is_empty(), "{plan:?}");
    }
    let empty: [u64; 0] = [];
    assert!(index
        .search(query, K, SearchParams { filter: Filter::allow(&empty), ..Default::default() })
        .unwrap()
        .is_empty());
    let absent = [u64::MAX - 1, 5];
    assert!(index
        .search(query, K, SearchParams { filter: Filter::allow(&absent), ..Default::default() })
        .unwrap()
        .is_empty());

    let panics = |id: u64| -> bool { panic!("predicate refuses to answer for {id}") };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        index.search_batch(
            &data[..8 * DIM],
            K,
            SearchParams { filter: Filter::predicate(&panics), ..Default::default() },
            0,
        )
    }));
    assert!(outcome.is_err(), "the predicate's panic reaches the caller");
    let after = index.search(query, K, 64).unwrap();
    assert_eq!(after.len(), K, "the index still answers after a predicate panicked");
}

#[test]
fn deleted_ids_never_pass_a_filter_and_heavy_deletion_still_returns_k() {
    let (index, data, ids) = build(Metric::L2, Quantization::None, 17);
    // Delete 99%: every search must still return min(k, live) results, the exact ones.
    let doomed: Vec<u64> = ids.iter().copied().filter(|id| id % 100 != 3).collect();
    index.delete(&doomed).unwrap();
    let live: HashSet<u64> = ids.iter().copied().filter(|id| id % 100 == 3).collect();
    assert_eq!(index.len(), live.len());
    for q in data.chunks_exact(DIM).step_by(301) {
        let truth = truth(Metric::L2, &data, &ids, q, K, &live);
        let hits = index.search(q, K, 64).unwrap();
        assert_eq!(check(&hits, &truth, &live, "99% deleted"), truth.len(), "99% deleted: exact");
        // An allow-list naming deleted ids returns only the live ones among them.
        let list: Vec<u64> = ids.iter().copied().filter(|id| id % 10 == 3).collect();
        let allowed: HashSet<u64> = list.iter().copied().filter(|id| live.contains(id)).collect();
        let hits = index.search(q, K, SearchParams { filter: Filter::allow(&list), ..Default::default() }).unwrap();
        let truth = self::truth(Metric::L2, &data, &ids, q, K, &allowed);
        assert_eq!(check(&hits, &truth, &allowed, "filter over deletes"), truth.len());
    }
}

#[test]
fn range_search_finds_everything_within_the_radius() {
    let mut rng = Rng::new(18);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let (index, data, ids) = build(metric, Quantization::None, 1800 + metric.code() as u64);
        let everyone: HashSet<u64> = ids.iter().copied().collect();
        let (mut found, mut wanted) = (0, 0);
        for q in data.chunks_exact(DIM).step_by(397) {
            // A radius around the 1st..200th neighbour's distance.
            let nth = 1 + (rng.next_u64() % 200) as usize;
            let ranked = truth(metric, &data, &ids, q, nth, &everyone);
            let radius = ranked[nth - 1].0 as f32;
            let inside: Vec<u64> = truth(metric, &data, &ids, q, N, &everyone)
                .into_iter()
                .filter(|t| (t.0 as f32) <= radius)
                .map(|t| t.1)
                .collect();
            let exact =
                index.search_range(q, radius, N, SearchParams { plan: Plan::Exact, ..Default::default() }).unwrap();
            let walked = index.search_range(q, radius, N, 64).unwrap();
            for (hits, plan) in [(&exact, "exact"), (&walked, "walk")] {
                assert!(hits.iter().all(|h| h.distance <= radius), "{metric} {plan}: a result outside the radius");
                assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "{metric} {plan}: order");
            }
            // Distances computed in f32 and f64 may disagree at the boundary itself.
            let exact_ids: HashSet<u64> = exact.iter().map(|h| h.id).collect();
            let missed = inside.iter().filter(|id| !exact_ids.contains(id)).count();
            assert!(
                missed <= 1 && exact.len() <= inside.len() + 1,
                "{metric}: exact range {} vs {}",
                exact.len(),
                inside.len()
            );
            found += walked.iter().filter(|h| exact_ids.contains(&h.id)).count();
            wanted += exact.len();
            // max_results keeps the closest.
            let few =
                index.search_range(q, radius, 3, SearchParams { plan: Plan::Exact, ..Default::default() }).unwrap();
            assert_eq!(few, exact[..exact.len().min(3)]);
            // A filter applies to range searches too.
            let list: Vec<u64> = exact.iter().map(|h| h.id).step_by(2).collect();
            let filtered = index
                .search_range(q, radius, N, SearchParams { filter: Filter::allow(&list), ..Default::default() })
                .unwrap();
            assert!(filtered.iter().all(|h| list.contains(&h.id)));
        }
        let recall = found as f64 / wanted as f64;
        println!("{metric}: range walk found {found} of {wanted} ({recall:.4})");
        // Under the inner product a neighbourhood is a half-space, not a ball: its vectors
        // are less often each other's graph neighbours, and a wider beam (`ef`) finds more.
        let minimum = if metric == Metric::InnerProduct { 0.95 } else { 0.99 };
        assert!(recall >= minimum, "{metric}: range walk recall {recall}");
    }
}

#[test]
fn range_search_refuses_bad_radii_and_limits() {
    let (index, data, _) = build(Metric::L2, Quantization::None, 19);
    let q = &data[..DIM];
    for radius in [f32::NAN, -1.0, f32::INFINITY] {
        assert!(index.search_range(q, radius, 10, 0).is_err(), "radius {radius}");
    }
    assert!(index.search_range(q, 1.0, 0, 0).is_err(), "max_results 0");
    assert!(index.search_range(&q[1..], 1.0, 10, 0).is_err(), "wrong dimension");
    assert_eq!(index.search_range(q, 0.0, 10, 0).unwrap()[0].id, 3, "radius 0 finds the vector itself");
    let ip = Index::new(Options::new(DIM, Metric::InnerProduct)).unwrap();
    ip.insert_batch(&[1], q).unwrap();
    assert_eq!(ip.search_range(q, -0.5, 10, 0).unwrap().len(), 1, "inner-product distances may be negative");
}
