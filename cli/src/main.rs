//! `omendb`: create, import into, query, inspect, verify, back up and change an omendb database
//! from the shell.
//!
//! Exit codes: 0 success; 1 the database or a file refused the command, or `verify` found damage
//! (the message names which file); 2 bad arguments (from the argument parser).

/// `println!` that ends the program quietly when the reader went away (`omendb query ... | head`),
/// as shell tools do, rather than panicking.
macro_rules! say {
    ($($arg:tt)*) => { $crate::emit(format_args!($($arg)*)) };
}

mod bench;
mod hdf5;
mod vectors;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use omendb::{Error, Filter, Index, Metric, Options, Quantization, SearchParams};
use serde_json::json;

use vectors::VectorFile;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a file or the database refused the command, or verify found \
damage (the message names the file); 2 bad arguments.";

#[derive(Parser)]
#[command(
    name = "omendb",
    version,
    about = "Create, import, query, inspect, verify and back up omendb databases",
    after_help = EXIT_CODES
)]
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
        #[arg(long)]
        json: bool,
    },
    /// Imports vectors from FILE: .fvecs, .bvecs, .fbin, .u8bin, .i8bin, .npy (float32, float64,
    /// float16, uint8, int8), raw .f32/.f16 rows of the database's dimension, or ann-benchmarks
    /// .hdf5. The whole file is checked first (format,
    /// every value finite, ids new), so a bad file changes nothing.
    Import {
        dir: PathBuf,
        file: PathBuf,
        /// The HDF5 dataset to import.
        #[arg(long, default_value = "train")]
        dataset: String,
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
        #[arg(long)]
        json: bool,
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
        /// The HDF5 dataset the queries are in.
        #[arg(long, default_value = "test")]
        dataset: String,
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
        #[arg(long)]
        json: bool,
    },
    /// Rewrites segments holding deleted vectors without them.
    Compact {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Checks every checksum of every file, every link of every graph, that every node is
    /// reachable and that the log replays; exits 1 naming the file on any damage.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Copies the database to the new directory DEST while it is in use (by this or another
    /// process): exactly what was acknowledged at one moment.
    Backup {
        dir: PathBuf,
        dest: PathBuf,
        /// An earlier backup: files it holds unchanged are hard-linked instead of copied.
        #[arg(long)]
        incremental: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Builds an in-memory index and measures recall@k, queries/s and latency per ef.
    Bench(bench::Args),
    /// Dimension, metric, parameters, sizes.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Writes one line to stdout (see `say!`).
pub(crate) fn emit(line: std::fmt::Arguments<'_>) {
    if let Err(e) = writeln!(io::stdout().lock(), "{line}") {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("omendb: stdout: {e}");
        std::process::exit(1);
    }
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
    Index::open(dir, options).map_err(|e| match e {
        Error::NotFound { .. } => format!("{}: not an omendb database (no MANIFEST)", dir.display()),
        other => format!("{}: {other}", dir.display()),
    })
}

/// Prints `value` as one JSON line, or each of its fields on a line of its own.
fn print_fields(value: &serde_json::Value, json: bool) {
    if json {
        say!("{value}");
    } else if let Some(fields) = value.as_object() {
        for (key, value) in fields {
            say!("{key:>22}  {value}");
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Create { dir, dim, metric, m, ef_construction, quantization, json } => {
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
            let info = info(&dir, &index)?;
            index.close().map_err(|e| e.to_string())?;
            if json {
                say!("{info}");
            }
            Ok(())
        }
        Command::Import { dir, file, dataset, ids, start_id, batch, skip_existing, json } => {
            import(&dir, &file, &dataset, ids.as_deref(), start_id, batch.max(1), skip_existing, json)
        }
        Command::Query { dir, query, k, ef, filter_ids, dataset, json } => {
            let index = open(&dir, true)?;
            let queries = match query {
                Some(path) => {
                    let file = VectorFile::open(&path, &dataset, Some(index.dim()))?;
                    if file.dim != index.dim() {
                        return Err(format!(
                            "{}: dimension {}, the database has {}",
                            path.display(),
                            file.dim,
                            index.dim()
                        ));
                    }
                    file.all()
                }
                None => stdin_vectors(index.dim())?,
            };
            let allow = filter_ids.map(|path| vectors::read_ids(&path)).transpose()?;
            let filter = allow.as_deref().map_or_else(Filter::default, Filter::allow);
            let params = SearchParams { ef, filter, ..SearchParams::default() };
            let results = index.search_batch(&queries, k, params, 0).map_err(|e| e.to_string())?;
            for (q, hits) in results.iter().enumerate() {
                let line = if json {
                    let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    let distances: Vec<f32> = hits.iter().map(|h| h.distance).collect();
                    json!({ "query": q, "ids": ids, "distances": distances }).to_string()
                } else {
                    hits.iter().map(|h| format!("{}:{:.6}", h.id, h.distance)).collect::<Vec<_>>().join(" ")
                };
                say!("{line}");
            }
            Ok(())
        }
        Command::Get { dir, ids, json } => {
            let index = open(&dir, true)?;
            let mut vectors = vec![0.0; ids.len() * index.dim()];
            let mut found = vec![false; ids.len()];
            index.get(&ids, &mut vectors, &mut found).map_err(|e| e.to_string())?;
            for ((id, row), found) in ids.iter().zip(vectors.chunks_exact(index.dim().max(1))).zip(found) {
                let line = match (json, found) {
                    (true, true) => json!({ "id": id, "vector": row }).to_string(),
                    (true, false) => json!({ "id": id, "vector": null }).to_string(),
                    (false, true) => format!("{id} {}", row.iter().map(f32::to_string).collect::<Vec<_>>().join(" ")),
                    (false, false) => format!("{id} absent"),
                };
                say!("{line}");
            }
            Ok(())
        }
        Command::Delete { dir, mut ids, ids_file, json } => {
            if let Some(path) = ids_file {
                ids.extend(vectors::read_ids(&path)?);
            }
            ids.sort_unstable();
            ids.dedup();
            let index = open(&dir, false)?;
            let removed = index.delete(&ids).map_err(|e| e.to_string())?;
            index.close().map_err(|e| e.to_string())?;
            if json {
                say!("{}", json!({ "deleted": removed, "requested": ids.len() }));
            } else {
                eprintln!("deleted {removed} of {} ids", ids.len());
            }
            Ok(())
        }
        Command::Compact { dir, json } => {
            let index = open(&dir, false)?;
            let before = index.stats();
            index.compact().map_err(|e| e.to_string())?;
            let after = index.stats();
            index.close().map_err(|e| e.to_string())?;
            let report = json!({
                "vectors": after.vectors, "deleted_removed": before.deleted - after.deleted,
                "segments": after.segments, "bytes_on_disk_before": before.bytes_on_disk,
                "bytes_on_disk_after": after.bytes_on_disk,
            });
            print_fields(&report, json);
            Ok(())
        }
        Command::Verify { dir, json } => verify(&dir, json),
        Command::Backup { dir, dest, incremental, json } => backup(&dir, &dest, incremental.as_deref(), json),
        Command::Bench(args) => bench::run(args),
        Command::Info { dir, json } => {
            let index = open(&dir, true)?;
            print_fields(&info(&dir, &index)?, json);
            Ok(())
        }
    }
}

fn files_json(files: &[omendb::FileInfo]) -> serde_json::Value {
    files.iter().map(|f| json!({ "file": f.name, "bytes": f.bytes, "format_version": f.format_version })).collect()
}

/// What `info` prints: `vectors` is the live count.
fn info(dir: &Path, index: &Index) -> Result<serde_json::Value, String> {
    let options = index.options();
    let stats = index.stats();
    let files = index.files().map_err(|e| e.to_string())?;
    let log_bytes: u64 = files.iter().filter(|f| f.name.starts_with("wal-")).map(|f| f.bytes).sum();
    let segments: Vec<_> = index
        .segments()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|s| json!({ "file": s.file, "vectors": s.vectors, "deleted": s.deleted, "bytes": s.bytes, "sealed": s.sealed }))
        .collect();
    Ok(json!({
        "path": dir.display().to_string(),
        "dim": index.dim(),
        "metric": index.metric().to_string(),
        "m": options.m,
        "ef_construction": options.ef_construction,
        "segment_capacity": options.segment_capacity,
        "quantization": options.quantization.to_string(),
        "vectors": stats.vectors,
        "deleted": stats.deleted,
        "segments": segments,
        "bytes_on_disk": stats.bytes_on_disk,
        "log_bytes": log_bytes,
        "files": files_json(&files),
        "library_version": env!("CARGO_PKG_VERSION"),
        "abi_version": omendb::ffi::OMEN_ABI_VERSION,
    }))
}

/// A progress bar on stderr with vectors/s and ETA, drawn only when stderr is a terminal.
fn progress(rows: usize) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rows as u64);
    let style = ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} vectors  {per_sec}  ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

#[allow(clippy::too_many_arguments)]
fn import(
    dir: &Path,
    path: &Path,
    dataset: &str,
    ids_path: Option<&Path>,
    start_id: u64,
    batch: usize,
    skip_existing: bool,
    json: bool,
) -> Result<(), String> {
    let index = open(dir, false)?;
    let file = VectorFile::open(path, dataset, Some(index.dim()))?;
    let ids = match ids_path {
        Some(ids_path) => vectors::read_ids(ids_path)?,
        None => (0..file.rows as u64).map(|i| start_id.saturating_add(i)).collect(),
    };
    if ids.len() != file.rows {
        return Err(format!("{} ids for the {} vectors of {}", ids.len(), file.rows, path.display()));
    }
    if file.dim != index.dim() {
        return Err(format!("{}: dimension {} but the database has {}", path.display(), file.dim, index.dim()));
    }
    // Check the whole file before changing anything: a bad row must not leave half an import.
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("id {} appears more than once", pair[0]));
    }
    if !skip_existing {
        if let Some(id) = ids.iter().find(|&&id| index.contains(id)) {
            return Err(format!("id {id} is already in {} (--skip-existing resumes an import)", dir.display()));
        }
    }
    let mut rows = Vec::new();
    for first in (0..file.rows).step_by(batch) {
        rows.clear();
        file.read_into(first..(first + batch).min(file.rows), &mut rows);
        if let Some(at) = rows.iter().position(|x| !x.is_finite()) {
            return Err(format!("{}: row {} holds {}", path.display(), first + at / file.dim, rows[at]));
        }
    }

    let started = Instant::now();
    let bar = progress(file.rows);
    let (mut added, mut skipped) = (0usize, 0usize);
    for first in (0..file.rows).step_by(batch) {
        let end = (first + batch).min(file.rows);
        rows.clear();
        file.read_into(first..end, &mut rows);
        let batch_ids = &ids[first..end];
        let result = if skip_existing {
            let keep: Vec<bool> = batch_ids.iter().map(|&id| !index.contains(id)).collect();
            let new_ids: Vec<u64> = batch_ids.iter().zip(&keep).filter(|(_, &k)| k).map(|(&id, _)| id).collect();
            let new_rows: Vec<f32> = rows
                .chunks_exact(file.dim)
                .zip(&keep)
                .filter(|(_, &k)| k)
                .flat_map(|(row, _)| row.iter().copied())
                .collect();
            skipped += batch_ids.len() - new_ids.len();
            added += new_ids.len();
            index.insert_batch(&new_ids, &new_rows)
        } else {
            added += batch_ids.len();
            index.insert_batch(batch_ids, &rows)
        };
        result.map_err(|e| {
            format!(
                "{}: rows {first}..{end}: {e}; the {} rows before them are imported (rerun with --skip-existing to resume)",
                path.display(),
                first
            )
        })?;
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    index.close().map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "imported": added, "skipped": skipped, "seconds": seconds,
        "vectors_per_s": added as f64 / seconds.max(1e-9),
    });
    if json {
        say!("{report}");
    } else {
        eprintln!(
            "imported {added} vectors in {seconds:.1} s ({:.0}/s), skipped {skipped} already present",
            added as f64 / seconds.max(1e-9)
        );
    }
    Ok(())
}

fn verify(dir: &Path, json: bool) -> Result<(), String> {
    let report = Index::verify(dir).map_err(|e| match e {
        Error::NotFound { .. } => format!("{}: not an omendb database (no MANIFEST)", dir.display()),
        other => format!("damage: {other}"),
    })?;
    let bytes: u64 = report.files.iter().map(|f| f.bytes).sum();
    if json {
        let segments: Vec<_> = report
            .segments
            .iter()
            .map(|s| {
                json!({ "file": s.segment.file, "vectors": s.segment.vectors, "deleted": s.segment.deleted,
                    "links": s.links, "unreachable": s.unreachable })
            })
            .collect();
        let value = json!({ "sound": report.problems.is_empty(), "files": files_json(&report.files),
            "segments": segments, "problems": report.problems, "notices": report.notices });
        say!("{value}");
    } else {
        for file in &report.files {
            say!("checksums ok  {:<48} {:>14} bytes  (format {})", file.name, file.bytes, file.format_version);
        }
        for s in &report.segments {
            let file = if s.segment.file.is_empty() { "growing segment (from the log)" } else { &s.segment.file };
            say!(
                "graph         {file:<48} {:>9} vectors, {} deleted, {} links, {} unreachable",
                s.segment.vectors,
                s.segment.deleted,
                s.links,
                s.unreachable
            );
        }
        for notice in &report.notices {
            say!("notice        {notice}");
        }
        for problem in &report.problems {
            say!("DAMAGE        {problem}");
        }
    }
    if report.problems.is_empty() {
        eprintln!("{}: sound ({} files, {bytes} bytes)", dir.display(), report.files.len());
        Ok(())
    } else {
        Err(format!("{}: {} problems found", dir.display(), report.problems.len()))
    }
}

fn backup(dir: &Path, dest: &Path, previous: Option<&Path>, json: bool) -> Result<(), String> {
    let started = Instant::now();
    // Read-only, so that a database another process is writing can be backed up: the backup
    // holds what this opening read. Checksums are left to `verify` (of either copy).
    let options = Options { create: false, read_only: true, verify: false, ..Options::new(0, Metric::L2) };
    let index = Index::open(dir, options).map_err(|e| format!("{}: {e}", dir.display()))?;
    let report = match previous {
        Some(previous) => index.backup_incremental(dest, previous),
        None => index.backup(dest),
    }
    .map_err(|e| e.to_string())?;
    let value = json!({
        "dest": dest.display().to_string(), "files": report.files, "bytes_copied": report.bytes_copied,
        "bytes_linked": report.bytes_linked, "seconds": started.elapsed().as_secs_f64(),
    });
    print_fields(&value, json);
    Ok(())
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
