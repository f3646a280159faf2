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
    let live = || std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count()).unwrap_or(0);
    let too_many = Options::MAX_THREADS + 1;
    assert!(matches!(index.search_batch(&data[..16], 5, 0, too_many), Err(Error::InvalidArgument(_))));
    index.search_batch(&data[..16], 5, 0, 5).unwrap();
    let before = live();
    for round in 0..40 {
        let threads = if round % 2 == 0 { 5 } else { 3 };
        index.search_batch(&data[..16], 5, 0, threads).unwrap();
    }
    // The 5-thread pool was kept; only the 3-thread one is new.
    assert!(live() <= before + 3, "{before} threads before, {} after 40 batch searches", live());
}
