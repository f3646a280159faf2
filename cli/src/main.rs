//! `omendb`: create, import into, query, inspect and change an omendb database from the shell.
//!
//! Exit codes: 0 success; 1 the database or a file refused the command (the message names
//! which); 2 bad arguments (from the argument parser).

mod bench;
mod vectors;

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use omendb::{Filter, Index, Metric, Options, Quantization, SearchParams};
use serde_json::json;

#[derive(Parser)]
#[command(name = "omendb", version, about = "Create, import, query and inspect omendb databases")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum MetricArg {
    L2,
    Cosine,
    Ip,
}

impl MetricArg {
    pub(crate) fn metric(self) -> Metric {
        match self {
            MetricArg::L2 => Metric::L2,
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Ip => Metric::InnerProduct,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantizationArg {
    None,
    Binary,
    #[value(name = "4bit")]
    Bits4,
    #[value(name = "8bit")]
    Bits8,
}

#[derive(Subcommand)]
enum Command {
    /// Creates an empty database in DIR.
    Create {
        dir: PathBuf,
        #[arg(long)]
        dim: usize,
        #[arg(long, value_enum, default_value = "l2")]
        metric: MetricArg,
        #[arg(long, default_value_t = Options::DEFAULT_M)]
        m: usize,
        #[arg(long, default_value_t = Options::DEFAULT_EF_CONSTRUCTION)]
        ef_construction: usize,
        #[arg(long, value_enum, default_value = "none")]
        quantization: QuantizationArg,
    },
    /// Imports vectors from FILE (.fvecs, .fbin or .npy float32/float64 rows).
    Import {
        dir: PathBuf,
        file: PathBuf,
        /// Ids, one per row: .npy of integers or text with one id a line. Default: --start-id on.
        #[arg(long)]
        ids: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        start_id: u64,
        /// Rows per insert batch (each one logged and synced).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Skip rows whose id is already present (to resume an interrupted import).
        #[arg(long)]
        skip_existing: bool,
    },
    /// Finds the nearest neighbours of queries from FILE, or of JSON arrays on stdin (one per line).
    Query {
        dir: PathBuf,
        #[arg(long)]
        query: Option<PathBuf>,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 0)]
        ef: usize,
        /// Only these ids may be returned (.npy of integers or one id a line).
        #[arg(long)]
        filter_ids: Option<PathBuf>,
        /// One JSON object a query instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prints the stored vectors of the given ids.
    Get {
        dir: PathBuf,
        ids: Vec<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Deletes the given ids (or those in --ids FILE); absent ids are no error.
    Delete {
        dir: PathBuf,
        ids: Vec<u64>,
        #[arg(long)]
        ids_file: Option<PathBuf>,
    },
    /// Rewrites segments holding deleted vectors without them.
    Compact { dir: PathBuf },
    /// Builds an in-memory index and measures recall@k, queries/s and latency per ef.
    Bench(bench::Args),
    /// Dimension, metric, parameters, sizes.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("omendb: {message}");
            ExitCode::from(1)
        }
    }
}

/// Opens an existing database: read-only when the command only reads.
fn open(dir: &Path, read_only: bool) -> Result<Index, String> {
    let options = Options { create: false, read_only, ..Options::new(0, Metric::L2) };
    Index::open(dir, options).map_err(|e| format!("{}: {e}", dir.display()))
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Create { dir, dim, metric, m, ef_construction, quantization } => {
            if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                return Err(format!("{}: already exists and is not empty", dir.display()));
            }
            let metric = metric.metric();
            let quantization = match quantization {
                QuantizationArg::None => Quantization::None,
                QuantizationArg::Binary => Quantization::Binary,
                QuantizationArg::Bits4 => Quantization::Bits4,
                QuantizationArg::Bits8 => Quantization::Bits8,
            };
            let options = Options { m, ef_construction, quantization, create: true, ..Options::new(dim, metric) };
            let index = Index::open(&dir, options).map_err(|e| format!("{}: {e}", dir.display()))?;
            index.close().map_err(|e| e.to_string())
        }
        Command::Import { dir, file, ids, start_id, batch, skip_existing } => {
            let vectors = vectors::read_vectors(&file)?;
            let rows = vectors.rows();
            let ids = match ids {
                Some(path) => vectors::read_ids(&path)?,
                None => (0..rows as u64).map(|i| start_id + i).collect(),
            };
            if ids.len() != rows {
                return Err(format!("{} ids for {rows} vectors", ids.len()));
            }
            let index = open(&dir, false)?;
            if vectors.dim != index.dim() {
                return Err(format!(
                    "{}: dimension {} but the database has {}",
                    file.display(),
                    vectors.dim,
                    index.dim()
                ));
            }
            let (mut added, mut skipped) = (0usize, 0usize);
            for (ids, rows) in ids.chunks(batch.max(1)).zip(vectors.data.chunks(batch.max(1) * vectors.dim)) {
                if skip_existing {
                    let (new_ids, new_rows): (Vec<u64>, Vec<&[f32]>) = ids
                        .iter()
                        .zip(rows.chunks_exact(vectors.dim))
                        .filter(|(id, _)| !index.contains(**id))
                        .map(|(id, row)| (*id, row))
                        .unzip();
                    skipped += ids.len() - new_ids.len();
                    index.insert_batch(&new_ids, &new_rows.concat()).map_err(|e| e.to_string())?;
                    added += new_ids.len();
                } else {
                    index.insert_batch(ids, rows).map_err(|e| e.to_string())?;
                    added += ids.len();
                }
            }
            index.close().map_err(|e| e.to_string())?;
            eprintln!("imported {added} vectors, skipped {skipped} already present");
            Ok(())
        }
        Command::Query { dir, query, k, ef, filter_ids, json } => {
            let index = open(&dir, true)?;
            let queries = match query {
                Some(path) => vectors::read_vectors(&path)?.data,
                None => stdin_vectors(index.dim())?,
            };
            let allow = filter_ids.map(|path| vectors::read_ids(&path)).transpose()?;
            let filter = allow.as_deref().map_or_else(Filter::default, Filter::allow);
            let params = SearchParams { ef, filter, ..SearchParams::default() };
            let results = index.search_batch(&queries, k, params, 0).map_err(|e| e.to_string())?;
            let mut out = io::stdout().lock();
            for (q, hits) in results.iter().enumerate() {
                let line = if json {
                    let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    let distances: Vec<f32> = hits.iter().map(|h| h.distance).collect();
                    json!({ "query": q, "ids": ids, "distances": distances }).to_string()
                } else {
                    hits.iter().map(|h| format!("{}:{:.6}", h.id, h.distance)).collect::<Vec<_>>().join(" ")
                };
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Command::Get { dir, ids, json } => {
            let index = open(&dir, true)?;
            let mut vectors = vec![0.0; ids.len() * index.dim()];
            let mut found = vec![false; ids.len()];
            index.get(&ids, &mut vectors, &mut found).map_err(|e| e.to_string())?;
            let mut out = io::stdout().lock();
            for ((id, row), found) in ids.iter().zip(vectors.chunks_exact(index.dim().max(1))).zip(found) {
                let line = match (json, found) {
                    (true, true) => json!({ "id": id, "vector": row }).to_string(),
                    (true, false) => json!({ "id": id, "vector": null }).to_string(),
                    (false, true) => format!("{id} {}", row.iter().map(f32::to_string).collect::<Vec<_>>().join(" ")),
                    (false, false) => format!("{id} absent"),
                };
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Command::Delete { dir, mut ids, ids_file } => {
            if let Some(path) = ids_file {
                ids.extend(vectors::read_ids(&path)?);
            }
            ids.sort_unstable();
            ids.dedup();
            let index = open(&dir, false)?;
            let removed = index.delete(&ids).map_err(|e| e.to_string())?;
            index.close().map_err(|e| e.to_string())?;
            eprintln!("deleted {removed} of {} ids", ids.len());
            Ok(())
        }
        Command::Compact { dir } => {
            let index = open(&dir, false)?;
            index.compact().map_err(|e| e.to_string())?;
            index.close().map_err(|e| e.to_string())
        }
        Command::Bench(args) => bench::run(args),
        Command::Info { dir, json } => {
            let index = open(&dir, true)?;
            let options = index.options();
            let stats = index.stats();
            let info = json!({
                "path": dir.display().to_string(),
                "dim": index.dim(),
                "metric": index.metric().to_string(),
                "m": options.m,
                "ef_construction": options.ef_construction,
                "segment_capacity": options.segment_capacity,
                "quantization": options.quantization.to_string(),
                "vectors": stats.vectors,
                "deleted": stats.deleted,
                "segments": stats.segments,
                "bytes_on_disk": stats.bytes_on_disk,
                "abi_version": omendb::ffi::OMEN_ABI_VERSION,
            });
            if json {
                println!("{info}");
            } else if let Some(fields) = info.as_object() {
                for (key, value) in fields {
                    println!("{key:>16}  {value}");
                }
            }
            Ok(())
        }
    }
}

/// Queries as JSON arrays of `dim` numbers, one a line, from stdin.
fn stdin_vectors(dim: usize) -> Result<Vec<f32>, String> {
    let mut data = Vec::new();
    for (n, line) in io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Vec<f32> = serde_json::from_str(&line).map_err(|e| format!("stdin line {}: {e}", n + 1))?;
        if row.len() != dim {
            return Err(format!("stdin line {}: {} numbers, the database has dimension {dim}", n + 1, row.len()));
        }
        data.extend(row);
    }
    Ok(data)
}
