//! Durable storage against memory, side by side in one run:
//! - insert throughput: in-memory vs a database with the log fsync'd every batch of 1,000;
//! - open time and resident memory right after opening a database of `OMENDB_BENCH_N` vectors
//!   (default 1,000,000, 128-d), with and without checksum verification, each in a fresh process;
//! - queries/s on the reopened (mapped) database vs the same graphs on the heap, with recall.
//!
//! Run: `make bench-storage` (or `cargo bench --bench storage`; OMENDB_BENCH_N for the size).

use std::path::{Path, PathBuf};
use std::time::Instant;

use omendb::{Index, Metric, Options};

const DIM: usize = 128;
const BATCH: usize = 1000;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` clustered vectors (1,000 clusters), rows `first..first + n` of one fixed stream.
fn data(first: usize, n: usize) -> Vec<f32> {
    let uniform = |s: &mut u64| (splitmix(s) >> 40) as f32 / (1u64 << 24) as f32;
    let mut out = Vec::with_capacity(n * DIM);
    for row in first..first + n {
        let mut state = row as u64 ^ 0xBEEF;
        let mut centre = splitmix(&mut state) % 1000;
        for _ in 0..DIM {
            let c = uniform(&mut centre) * 2.0 - 1.0;
            let noise = (uniform(&mut state) - 0.5) * 0.6;
            out.push(c + noise);
        }
    }
    out
}

fn options() -> Options {
    Options::new(DIM, Metric::L2)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn insert_all(index: &Index, n: usize) -> f64 {
    let start = Instant::now();
    for first in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - first);
        let ids: Vec<u64> = (first as u64..(first + count) as u64).collect();
        index.insert_batch(&ids, &data(first, count)).unwrap_or_else(|e| panic!("insert: {e}"));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Queries/s over `queries` at `ef`, best of three passes, and the ids found.
fn qps(index: &Index, queries: &[f32], ef: usize) -> (f64, Vec<Vec<u64>>) {
    let mut found = Vec::new();
    let mut best = 0f64;
    for _ in 0..3 {
        found.clear();
        let start = Instant::now();
        for q in queries.chunks_exact(DIM) {
            found.push(index.search(q, 10, ef).unwrap_or_default().iter().map(|h| h.id).collect());
        }
        best = best.max((queries.len() / DIM) as f64 / start.elapsed().as_secs_f64());
    }
    (best, found)
}

fn open_in_child(dir: &Path, verify: bool) {
    let exe = std::env::current_exe().unwrap_or_default();
    let status = std::process::Command::new(exe)
        .env("OMENDB_BENCH_OPEN", dir)
        .env("OMENDB_BENCH_VERIFY", if verify { "1" } else { "0" })
        .status();
    assert!(status.is_ok_and(|s| s.success()), "open child failed");
}

/// In a fresh process: how long opening takes and how much it makes resident.
fn measure_open(dir: &Path, verify: bool) {
    let before = rss_bytes();
    let start = Instant::now();
    let index = Index::open(dir, Options { dim: 0, verify, ..options() }).unwrap_or_else(|e| panic!("open: {e}"));
    let elapsed = start.elapsed();
    let after = rss_bytes();
    let stats = index.stats();
    println!(
        "open (verify={verify}): {:.1} ms, {} vectors in {} segments; resident +{:.1} MB = {:.1}% of {:.0} MB on disk \
         (mapped resident {:.1} MB, heap {:.1} MB)",
        elapsed.as_secs_f64() * 1e3,
        stats.vectors,
        stats.segments,
        (after.saturating_sub(before)) as f64 / 1e6,
        100.0 * after.saturating_sub(before) as f64 / stats.bytes_on_disk as f64,
        stats.bytes_on_disk as f64 / 1e6,
        stats.bytes_mapped_resident as f64 / 1e6,
        stats.bytes_heap as f64 / 1e6,
    );
}

fn main() {
    if let Ok(dir) = std::env::var("OMENDB_BENCH_OPEN") {
        measure_open(Path::new(&dir), std::env::var("OMENDB_BENCH_VERIFY").as_deref() == Ok("1"));
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it: only check
    // that it starts.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/storage: run it with `cargo bench --bench storage`");
        return;
    }
    let n: usize = std::env::var("OMENDB_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let base: PathBuf = std::env::var("OMENDB_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("omendb-bench-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Insert throughput, side by side on the first 200,000 vectors (or n).
    let m = n.min(200_000);
    let memory = insert_all(&Index::new(options()).unwrap_or_else(|e| panic!("{e}")), m);
    let throughput_dir = dir.with_extension("throughput");
    let durable = insert_all(&Index::open(&throughput_dir, options()).unwrap_or_else(|e| panic!("{e}")), m);
    let _ = std::fs::remove_dir_all(&throughput_dir);
    println!(
        "insert {m} x {DIM}-d in batches of {BATCH}: in-memory {memory:.0} vec/s, WAL fsync per batch {durable:.0} vec/s \
         ({:.2}x)",
        durable / memory
    );

    // The database for the open and search measurements.
    let queries = data(n + 1_000_000, 1000);
    let (heap_qps, heap_found) = {
        let index = Index::open(&dir, options()).unwrap_or_else(|e| panic!("{e}"));
        let rate = insert_all(&index, n);
        println!("built {n} vectors at {rate:.0} vec/s");
        let measured = qps(&index, &queries, 64);
        index.close().unwrap_or_else(|e| panic!("close: {e}"));
        measured
    };
    open_in_child(&dir, false);
    open_in_child(&dir, true);
    let index = Index::open(&dir, options()).unwrap_or_else(|e| panic!("{e}"));
    let (mapped_qps, mapped_found) = qps(&index, &queries, 64);
    let same = heap_found.iter().zip(&mapped_found).filter(|(a, b)| a == b).count();
    println!(
        "search ef 64, k 10, one thread: heap {heap_qps:.0} q/s, mapped {mapped_qps:.0} q/s ({:.2}x); \
         {same}/{} queries with identical results",
        mapped_qps / heap_qps,
        heap_found.len()
    );
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
}
