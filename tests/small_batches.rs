//! Batches of a few rows (or queries) are linked (searched) on the calling thread rather than
//! handed to the index's pool (`stays_on_caller`). None of their work may reach rayon's global
//! pool, which the index does not own, and an index filled a row or a few at a time, through
//! codes learnt again, seals and a replayed log, finds what one filled in a single batch finds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use omendb::{Index, Metric, Options, Quantization};

const DIM: usize = 24;
const ROWS: usize = 3_000;
const K: usize = 10;
const EF: usize = 12;

/// The batch sizes an index is filled in, in turn: at two threads batches of up to two rows are
/// linked on the caller, so both paths take turns.
const SIZES: [usize; 6] = [1, 2, 3, 4, 1, 7];

fn options(threads: usize, quantization: Quantization) -> Options {
    // Segments of 1,200 rows: small batches fill and seal two of them (on the pool).
    Options { threads, quantization, segment_capacity: 1_200, ..Options::new(DIM, Metric::L2) }
}

fn fill(index: &Index, data: &[f32]) {
    let (mut row, mut turn) = (0, 0);
    while row < ROWS {
        let size = SIZES[turn % SIZES.len()].min(ROWS - row);
        let ids: Vec<u64> = (row as u64..(row + size) as u64).collect();
        index.insert_batch(&ids, &data[row * DIM..(row + size) * DIM]).unwrap();
        (row, turn) = (row + size, turn + 1);
    }
}

/// Every row of `data` is in `index` as given, and recall@K is at least 0.85 and within 0.02 of what the same
/// options give for one batch.
fn check(index: &Index, data: &[f32], queries: &[f32], truth: &[Vec<u64>], label: &str) {
    let ids: Vec<u64> = (0..ROWS as u64).collect();
    let (mut out, mut found) = (vec![0f32; ROWS * DIM], vec![false; ROWS]);
    assert_eq!(index.get(&ids, &mut out, &mut found).unwrap(), ROWS, "{label}: every row is there");
    assert_eq!(out, data, "{label}: every row as it was inserted");
    let in_one = Index::new(index.options().clone()).unwrap();
    in_one.insert_batch(&ids, data).unwrap();
    // Batch searches of one or two queries run on the caller too, and find what single ones do.
    for count in [1, 2] {
        let batch = index.search_batch(&queries[..count * DIM], K, EF, 0).unwrap();
        let singles: Vec<_> = queries[..count * DIM].chunks(DIM).map(|q| index.search(q, K, EF).unwrap()).collect();
        assert_eq!(batch, singles, "{label}: a batch of {count} queries");
    }
    let (small, one) = (index_recall(index, queries, truth, K, EF), index_recall(&in_one, queries, truth, K, EF));
    println!("{label}: recall@{K} at ef {EF}: {small:.4} in small batches, {one:.4} in one");
    assert!(small >= 0.85 && small >= one - 0.02, "{label}: recall {small:.4} in small batches, {one:.4} in one");
}

/// Results of `queries` searched exhaustively, printable: a graph built on other threads finds
/// the same.
fn exhaustive(index: &Index, queries: &[f32]) -> Vec<String> {
    let results = index.search_batch(queries, K, ROWS, 0).unwrap();
    results
        .iter()
        .map(|hits| format!("{:?}", hits.iter().map(|h| (h.id, h.distance.to_bits())).collect::<Vec<_>>()))
        .collect()
}

fn database_options() -> Options {
    Options { create: true, ..options(2, Quantization::Bits8) }
}

#[test]
#[ignore = "entry point for the child process of the test below"]
fn child_fills_a_database_and_exits_without_a_checkpoint() {
    let Ok(dir) = std::env::var("OMENDB_SMALL_BATCHES_DIR") else { return };
    let index = Index::open(&dir, database_options()).unwrap();
    fill(&index, &clustered(ROWS, DIM, 30, 11));
    for line in exhaustive(&index, &clustered(100, DIM, 30, 12)) {
        println!("@{line}");
    }
    // No destructor runs: the small batches stay in the log, for the parent to replay.
    std::process::exit(0);
}

#[test]
fn small_batches_stay_off_rayons_global_pool_and_find_what_one_batch_finds() {
    // One thread, kept busy below once the brute-force neighbours are found on it.
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().unwrap();
    let data = clustered(ROWS, DIM, 30, 11);
    let queries = clustered(100, DIM, 30, 12);
    let ids: Vec<u64> = (0..ROWS as u64).collect();
    let truth = brute_force(Metric::L2, DIM, &data, &ids, &queries, K);
    let dir = std::env::temp_dir().join(format!("omendb-small-batches-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_fills_a_database_and_exits_without_a_checkpoint", "--nocapture"])
        .env("OMENDB_SMALL_BATCHES_DIR", &dir)
        .output()
        .unwrap();
    assert!(child.status.success(), "the child failed: {}", String::from_utf8_lossy(&child.stderr));
    let stdout = String::from_utf8(child.stdout).unwrap();
    let before: Vec<String> = stdout.lines().filter_map(|l| Some(l.split_once('@')?.1.to_string())).collect();
    assert_eq!(before.len(), queries.len() / DIM, "the child printed its results");

    // From here the global pool's one thread is kept busy: work handed to it would wait until
    // the test gives up, rather than run.
    let (release, blocked) = mpsc::channel::<()>();
    rayon::spawn(move || {
        let _released = blocked.recv();
    });

    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        for (threads, quantization) in [(1, Quantization::None), (2, Quantization::None), (2, Quantization::Bits4)] {
            let index = Index::new(options(threads, quantization)).unwrap();
            fill(&index, &data);
            check(&index, &data, &queries, &truth, &format!("{threads} threads, {quantization:?}"));
        }
        // Opening the database replays the child's small batches from its log.
        let index = Index::open(&dir, database_options()).unwrap();
        assert_eq!(exhaustive(&index, &queries), before, "the same results after replaying the log");
        check(&index, &data, &queries, &truth, "replayed database, 2 threads, Bits8");
        drop(index);
        // Closed with a checkpoint, the growing segment opens mapped from its snapshot; a row
        // linked on the caller moves it to the heap first.
        let index = Index::open(&dir, database_options()).unwrap();
        for (i, row) in queries.chunks(DIM).take(5).enumerate() {
            let id = (ROWS + i) as u64;
            index.insert_batch(&[id], row).unwrap();
            assert_eq!(index.search(row, 1, ROWS).unwrap()[0].id, id, "a row inserted into the reopened database");
        }
        // What else an application calls between small inserts stays off the global pool too.
        index.upsert(&[0], &queries[..DIM]).unwrap();
        assert_eq!(index.delete(&[1]).unwrap(), 1);
        assert!(index.contains(0) && !index.contains(1));
        index.compact().unwrap();
        let copy = dir.with_extension("backup");
        index.backup(&copy).unwrap();
        drop(index);
        for checked in [&dir, &copy] {
            assert_eq!(Index::verify(checked).unwrap().problems, Vec::<String>::new(), "{}", checked.display());
        }
        std::fs::remove_dir_all(&copy).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        done.send(()).unwrap();
    });
    let outcome = finished.recv_timeout(Duration::from_secs(120));
    drop(release);
    match outcome {
        Ok(()) => worker.join().unwrap(),
        // A failed check dropped the sender: report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the inserts did not finish: work waited on rayon's global pool")
        }
    }
}
