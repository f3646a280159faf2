//! Searches running while another thread inserts: every result valid, nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use omendb::{Error, Index, Metric, Options};

const DIM: usize = 32;
const BATCHES: usize = 24;
const BATCH: usize = 500;

#[test]
fn index_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Index>();
}

#[test]
fn searches_run_while_batches_are_inserted_and_sealed() {
    let n = BATCHES * BATCH;
    let data = Arc::new(clustered(n, DIM, 20, 2024));
    // Small segments, so seals and segment swaps happen while searches run.
    let index = Arc::new(Index::new(Options { segment_capacity: 1_700, ..Options::new(DIM, Metric::L2) }).unwrap());
    let inserted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let searchers: Vec<_> = (0..3)
        .map(|t| {
            let (index, data, inserted, done) = (index.clone(), data.clone(), inserted.clone(), done.clone());
            std::thread::spawn(move || {
                let mut searches = 0usize;
                let mut q = t;
                while !done.load(Ordering::Acquire) || searches == 0 {
                    // Every batch acknowledged before this search started must be visible.
                    let visible = inserted.load(Ordering::Acquire);
                    let query = &data[(q % n) * DIM..(q % n + 1) * DIM];
                    let hits = index.search(query, 10, 32).unwrap();
                    assert!(hits.len() >= visible.min(10), "{} hits with {visible} vectors inserted", hits.len());
                    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "unsorted");
                    assert!(hits.iter().all(|h| (h.id as usize) < n), "unknown id");
                    let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    assert_eq!(ids.len(), hits.len(), "duplicate ids in one result");
                    if (q % n) < visible {
                        assert_eq!(hits[0].id, (q % n) as u64, "acknowledged vector {} not found", q % n);
                    }
                    q += 7919;
                    searches += 1;
                }
                searches
            })
        })
        .collect();

    for b in 0..BATCHES {
        let ids: Vec<u64> = (b * BATCH..(b + 1) * BATCH).map(|i| i as u64).collect();
        index.insert_batch(&ids, &data[b * BATCH * DIM..(b + 1) * BATCH * DIM]).unwrap();
        inserted.store((b + 1) * BATCH, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let searches: usize = searchers.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{searches} searches ran during {BATCHES} inserts; {} segments", index.segment_count());
    assert!(index.segment_count() >= 7);

    let results = index.search_batch(&data, 10, 100, 0).unwrap();
    let missing: Vec<usize> = (0..n).filter(|&i| !results[i].iter().any(|h| h.id == i as u64)).collect();
    assert!(missing.is_empty(), "ids not findable after the inserts: {missing:?}");
}

#[test]
fn concurrent_inserts_from_many_threads_all_land() {
    let index =
        Arc::new(Index::new(Options { segment_capacity: 900, ..Options::new(8, Metric::InnerProduct) }).unwrap());
    let data = Arc::new(clustered(4 * 1_000, 8, 10, 77));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (index, data) = (index.clone(), data.clone());
            std::thread::spawn(move || {
                for chunk in 0..10 {
                    let start = t * 1_000 + chunk * 100;
                    let ids: Vec<u64> = (start..start + 100).map(|i| i as u64).collect();
                    index.insert_batch(&ids, &data[start * 8..(start + 100) * 8]).unwrap();
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(index.len(), 4_000);
    assert!((0..4_000).all(|id| index.contains(id)));
}

#[test]
fn batch_searches_reuse_their_pools_and_cap_the_threads() {
    let index = Index::new(Options { threads: 2, ..Options::new(8, Metric::L2) }).unwrap();
    let data = clustered(500, 8, 4, 3);
    index.insert_batch(&(0..500).collect::<Vec<u64>>(), &data).unwrap();
    // Batch-search pools' threads only: the other tests in this process start and end threads
    // of their own meanwhile.
    let live = || {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task lists this process's threads");
        let name = |task: &std::fs::DirEntry| std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        tasks.filter_map(|task| task.ok()).filter(|task| name(task).starts_with("omendb-search")).count()
    };
    let too_many = Options::MAX_THREADS + 1;
    assert!(matches!(index.search_batch(&data[..16], 5, 0, too_many), Err(Error::InvalidArgument(_))));
    index.search_batch(&data[..16], 5, 0, 5).unwrap();
    // A new thread names itself once it runs: wait for the 5-thread pool's to be counted.
    let named = std::time::Instant::now();
    while live() < 5 && named.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = live();
    assert_eq!(before, 5, "the 5-thread pool's threads are counted");
    for round in 0..40 {
        let threads = if round % 2 == 0 { 5 } else { 3 };
        index.search_batch(&data[..16], 5, 0, threads).unwrap();
    }
    // The 5-thread pool was kept; only the 3-thread one is new.
    assert!(live() <= before + 3, "{before} threads before, {} after 40 batch searches", live());
}

/// Searches and gets while other threads delete, upsert and compact: no search returns an id
/// whose delete returned before it started, every hit is a stored vector at its true distance,
/// and nothing crashes (the ASan suite runs this too).
#[test]
fn searches_run_while_others_delete_upsert_and_compact() {
    const N: usize = 6_000;
    let data = Arc::new(clustered(N, DIM, 20, 77));
    let options = Options { segment_capacity: 1_000, ..Options::new(DIM, Metric::L2) };
    let index = Arc::new(Index::new(options).unwrap());
    let ids: Vec<u64> = (0..N as u64).collect();
    index.insert_batch(&ids, &data).unwrap();
    // Ids below `deleted_below` (of the first half) are deleted, in order; the second half is
    // upserted with the vectors it already has, so its hits keep their distances.
    let deleted_below = Arc::new(AtomicUsize::new(0));
    // Set before each delete starts: ids below it may be gone by the time a get returns.
    let deleting_below = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let searchers: Vec<_> = (0..2)
        .map(|t| {
            let (index, data, deleted_below, done) = (index.clone(), data.clone(), deleted_below.clone(), done.clone());
            let deleting_below = deleting_below.clone();
            std::thread::spawn(move || {
                let (mut searches, mut q) = (0usize, t * 7);
                while !done.load(Ordering::Acquire) || searches == 0 {
                    let floor = deleted_below.load(Ordering::Acquire) as u64;
                    let query = &data[(q % N) * DIM..(q % N + 1) * DIM];
                    for hit in index.search(query, 10, 64).unwrap() {
                        assert!(hit.id >= floor, "search returned id {} deleted before it started ({floor})", hit.id);
                        let row = &data[hit.id as usize * DIM..(hit.id as usize + 1) * DIM];
                        let exact = exact_distance(Metric::L2, query, row) as f32;
                        assert!((hit.distance - exact).abs() <= 1e-3 * exact.max(1.0), "hit {hit:?} vs {exact}");
                    }
                    let (mut out, mut found) = (vec![0f32; DIM], [false]);
                    let id = (q * 31 % N) as u64;
                    index.get(&[id], &mut out, &mut found).unwrap();
                    assert!(!found[0] || out == data[id as usize * DIM..(id as usize + 1) * DIM], "get({id})");
                    assert!(found[0] || id < deleting_below.load(Ordering::Acquire) as u64, "get({id}) lost a live id");
                    searches += 1;
                    q += 13;
                }
                searches
            })
        })
        .collect();
    let deleter = {
        let (index, deleted_below, deleting_below) = (index.clone(), deleted_below.clone(), deleting_below.clone());
        std::thread::spawn(move || {
            for start in (0..N / 2).step_by(100) {
                let ids: Vec<u64> = (start as u64..start as u64 + 100).collect();
                deleting_below.store(start + 100, Ordering::Release);
                assert_eq!(index.delete(&ids).unwrap(), 100);
                deleted_below.store(start + 100, Ordering::Release);
            }
        })
    };
    let upserter = {
        let (index, data) = (index.clone(), data.clone());
        std::thread::spawn(move || {
            for start in (N / 2..N).step_by(150) {
                let ids: Vec<u64> = (start as u64..start as u64 + 150).collect();
                index.upsert(&ids, &data[start * DIM..(start + 150) * DIM]).unwrap();
            }
        })
    };
    let compactor = {
        let index = index.clone();
        std::thread::spawn(move || {
            for _ in 0..6 {
                index.compact().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    deleter.join().unwrap();
    upserter.join().unwrap();
    compactor.join().unwrap();
    done.store(true, Ordering::Release);
    let searches: usize = searchers.into_iter().map(|s| s.join().unwrap()).sum();
    index.compact().unwrap();
    assert_eq!(index.len(), N / 2);
    assert_eq!(index.stats().deleted, 0);
    println!("{searches} searches ran beside the changes");
}

/// Batches of 8,192 or more are renumbered in their segment after linking, while searches and
/// gets run: every hit must come with the distance of its own id's vector, and get must find
/// every id a search returned, with that vector (a node paired with another's id would fail
/// both; a node returned while its batch is still being linked fails the first).
#[test]
fn searches_and_gets_see_each_id_with_its_vector_while_large_batches_are_renumbered() {
    const DIM: usize = 8;
    const BATCH: usize = 9_000;
    const BATCHES: usize = 4;
    let n = BATCH * BATCHES;
    let data = Arc::new(clustered(n, DIM, 30, 77));
    let index = Arc::new(Index::new(Options::new(DIM, Metric::L2)).unwrap());
    let inserted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let checkers: Vec<_> = (0..2)
        .map(|t| {
            let (index, data, inserted, done) = (index.clone(), data.clone(), inserted.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut checked, mut rng) = (0usize, Rng::new(t));
                while !done.load(Ordering::Acquire) || checked == 0 {
                    let visible = inserted.load(Ordering::Acquire);
                    let query: Vec<f32> = (0..DIM).map(|_| rng.uniform() - 0.5).collect();
                    let hits = index.search(&query, 10, 32).unwrap();
                    assert!(hits.len() >= visible.min(10), "{} hits with {visible} inserted", hits.len());
                    for hit in &hits {
                        let row = &data[hit.id as usize * DIM..][..DIM];
                        let exact = exact_distance(Metric::L2, &query, row);
                        assert!((f64::from(hit.distance) - exact).abs() < 1e-4, "{hit:?}: {exact}");
                    }
                    let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    let (mut out, mut found) = (vec![0f32; ids.len() * DIM], vec![false; ids.len()]);
                    index.get(&ids, &mut out, &mut found).unwrap();
                    for ((id, row), &found) in ids.iter().zip(out.chunks_exact(DIM)).zip(&found) {
                        // A batch is walked while it is linked, but returned only once its ids
                        // are in the map: every id a search returns, get finds.
                        assert!(found, "search returned id {id}, which get does not find");
                        assert_eq!(row, &data[*id as usize * DIM..][..DIM], "get({id})");
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    for b in 0..BATCHES {
        // Ids in reverse, so that neither order nor renumbering matches them by chance.
        let ids: Vec<u64> = (b * BATCH..(b + 1) * BATCH).rev().map(|i| i as u64).collect();
        let rows: Vec<f32> = ids.iter().flat_map(|&id| &data[id as usize * DIM..][..DIM]).copied().collect();
        index.insert_batch(&ids, &rows).unwrap();
        inserted.store((b + 1) * BATCH, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let checked: usize = checkers.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{checked} searches and gets checked during {BATCHES} batches of {BATCH}");
    let results = index.search_batch(&data, 1, 64, 0).unwrap();
    let found = (0..n).filter(|&i| results[i][0].id == i as u64).count();
    assert!(found as f64 >= 0.99 * n as f64, "{found} of {n} vectors find themselves");
}
