//! `omendb bench`: build an in-memory index from a file or generated data, then measure per ef
//! recall@k against exact neighbours, queries/s on one thread and on all, and latency
//! percentiles of single queries.

use std::path::PathBuf;
use std::time::Instant;

use omendb::{Index, Metric, Options, Plan, SearchParams};
use serde_json::json;

use crate::vectors::VectorFile;
use crate::MetricArg;

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors (any format `import` reads; raw .f16/.f32 take the queries' dimension; an
    /// ann-benchmarks .hdf5 file also supplies `test` queries and `neighbors`); or --generate.
    #[arg(long, conflicts_with = "generate")]
    base: Option<PathBuf>,
    /// Query vectors (default: the base file's `test` dataset, for HDF5).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Exact neighbours of the queries, nearest first (.ivecs, .ibin, .npy, HDF5 `neighbors`);
    /// computed exactly when absent.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// N,DIM: N clustered vectors of DIM dimensions, plus 1,000 queries drawn like them.
    #[arg(long)]
    generate: Option<String>,
    #[arg(long, value_enum, default_value = "l2")]
    metric: MetricArg,
    #[arg(long, default_value_t = Options::DEFAULT_M)]
    m: usize,
    #[arg(long, default_value_t = Options::DEFAULT_EF_CONSTRUCTION)]
    ef_construction: usize,
    /// Beam widths to measure, comma separated.
    #[arg(long, default_value = "16,32,64,128")]
    ef: String,
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Threads for building and for the all-threads figure (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    json: bool,
}

/// `n` vectors around `n / 100` Gaussian clusters (at least 10), seeded.
fn generate(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let clusters = (n / 100).max(10);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| next() * 2.0 - 1.0).collect();
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (next() * clusters as f32) as usize % clusters;
        // A sum of uniforms is close enough to a Gaussian for a benchmark's spread.
        data.extend((0..dim).map(|j| centres[c * dim + j] + 0.25 * ((next() + next() + next()) - 1.5)));
    }
    data
}

pub fn run(args: Args) -> Result<(), String> {
    let (base, queries, dim, truth_file) = match (&args.base, &args.generate) {
        (Some(base), None) => {
            let hdf5 = |p: &PathBuf| p.extension().is_some_and(|e| e == "hdf5" || e == "h5");
            let queries_path = args.queries.clone().or_else(|| hdf5(base).then(|| base.clone()));
            let queries_path = queries_path.ok_or("--base needs --queries (or an HDF5 file holding `test`)")?;
            let queries = VectorFile::open(&queries_path, "test", None)?;
            let base_file = VectorFile::open(base, "train", Some(queries.dim))?;
            if base_file.dim != queries.dim {
                return Err(format!("base dimension {} but queries {}", base_file.dim, queries.dim));
            }
            let truth_path = args.truth.clone().or_else(|| hdf5(base).then(|| base.clone()));
            let truth = truth_path.map(|p| VectorFile::open_neighbours(&p)).transpose()?;
            if truth.as_ref().is_some_and(|t| t.rows != queries.rows) {
                return Err(format!("{} queries but neighbours for {}", queries.rows, truth.map_or(0, |t| t.rows)));
            }
            (base_file.all(), queries.all(), queries.dim, truth)
        }
        (None, Some(spec)) => {
            let parts: Vec<usize> = spec
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("--generate takes N,DIM, got {spec:?}"))?;
            let [n, dim] = parts[..] else { return Err(format!("--generate takes N,DIM, got {spec:?}")) };
            (generate(n, dim, 7), generate(1000, dim, 7).iter().map(|x| x + 0.01).collect(), dim, None)
        }
        _ => return Err("give --base (and --queries), or --generate N,DIM".into()),
    };
    let efs: Vec<usize> =
        args.ef.split(',').map(str::parse).collect::<Result<_, _>>().map_err(|_| format!("bad --ef {:?}", args.ef))?;
    let metric: Metric = args.metric.metric();
    let n = base.len() / dim.max(1);
    let options = Options {
        m: args.m,
        ef_construction: args.ef_construction,
        threads: args.threads,
        ..Options::new(dim, metric)
    };
    let index = Index::new(options).map_err(|e| e.to_string())?;
    let ids: Vec<u64> = (0..n as u64).collect();
    let started = Instant::now();
    index.insert_batch(&ids, &base).map_err(|e| e.to_string())?;
    let build_rate = n as f64 / started.elapsed().as_secs_f64();
    let q = queries.len() / dim.max(1);
    // The true top-k ids of each query: from the file, else by an exact scan.
    let truth: Vec<Vec<u64>> = match &truth_file {
        Some(file) => (0..file.rows).map(|row| file.ids_of_row(row).into_iter().take(args.k).collect()).collect(),
        None => index
            .search_batch(&queries, args.k, SearchParams { plan: Plan::Exact, ..SearchParams::default() }, 0)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|hits| hits.into_iter().map(|h| h.id).collect())
            .collect(),
    };
    let mut rows = Vec::new();
    for &ef in &efs {
        let timed = |threads| {
            let started = Instant::now();
            let found = index.search_batch(&queries, args.k, ef, threads).map_err(|e| e.to_string())?;
            Ok::<_, String>((found, q as f64 / started.elapsed().as_secs_f64()))
        };
        let (found, qps_one) = timed(1)?;
        let (_, qps_all) = timed(0)?;
        // |found top-k ∩ true top-k| / k, averaged: ann-benchmarks' and ann_peers.py's recall.
        let hits: usize = found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|h| t.contains(&h.id)).count()).sum();
        let recall = hits as f64 / (truth.len() * args.k).max(1) as f64;
        let mut latencies: Vec<f64> = queries
            .chunks_exact(dim)
            .map(|query| {
                let started = Instant::now();
                let _ = index.search(query, args.k, ef);
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let at = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        rows.push(json!({
            "ef": ef, "recall": recall, "qps_one_thread": qps_one, "qps_all_threads": qps_all,
            "p50_us": at(0.5), "p95_us": at(0.95), "p99_us": at(0.99),
        }));
    }
    let report = json!({ "vectors": n, "dim": dim, "queries": q, "k": args.k, "metric": metric.to_string(),
        "truth": if truth_file.is_some() { "file" } else { "exact scan" },
        "m": args.m, "ef_construction": args.ef_construction, "build_vectors_per_s": build_rate, "results": rows });
    if args.json {
        say!("{report}");
        return Ok(());
    }
    say!(
        "{n} x {dim} {metric}, M {} efc {}: built at {build_rate:.0} vectors/s; {q} queries, k {}",
        args.m,
        args.ef_construction,
        args.k
    );
    say!(
        "{:>6} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "ef",
        "recall",
        "q/s 1 thr",
        "q/s all",
        "p50 us",
        "p95 us",
        "p99 us"
    );
    for row in &rows {
        say!(
            "{:>6} {:>8.4} {:>12.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1}",
            row["ef"].as_u64().unwrap_or(0),
            row["recall"].as_f64().unwrap_or(0.0),
            row["qps_one_thread"].as_f64().unwrap_or(0.0),
            row["qps_all_threads"].as_f64().unwrap_or(0.0),
            row["p50_us"].as_f64().unwrap_or(0.0),
            row["p95_us"].as_f64().unwrap_or(0.0),
            row["p99_us"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
