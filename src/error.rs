//! Every error the engine reports, and the helpers that name a file in one.

use std::path::Path;

/// Everything that can go wrong, each with the detail a caller needs to fix the input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of its documented range (k = 0, dim = 0, m too small, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A vector's length does not match the index dimension.
    #[error("dimension mismatch: {0}")]
    DimensionMismatch(String),
    /// A vector holds NaN or an infinity.
    #[error("vector {row} has a non-finite component ({value}) at position {column}")]
    NonFinite { row: usize, column: usize, value: f32 },
    /// A vector so long that distances to it would overflow f32: its squared norm exceeds
    /// `f32::MAX / 4` (reported with the NaN/infinity status).
    #[error(
        "vector {row} is too long: its squared norm {squared_norm:e} exceeds f32::MAX / 4, so distances would overflow"
    )]
    NormOverflow { row: usize, squared_norm: f64 },
    /// Memory for a request could not be had (a count far beyond what the machine holds).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A zero vector under the cosine metric, which has no direction to compare.
    #[error("vector {row} is all zeros, which the cosine metric cannot compare")]
    ZeroVector { row: usize },
    /// An id that is already in the index, or twice in one batch.
    #[error("id {id} {}", if *.in_batch { "appears more than once in the batch" } else { "is already in the index" })]
    DuplicateId { id: u64, in_batch: bool },
    /// The worker thread pool could not start.
    #[error("could not start worker threads: {0}")]
    Threads(String),
    /// A file operation failed (disk full, permissions, ...). Nothing acknowledged was lost.
    #[error("I/O error on {path}: {detail}")]
    Io { path: String, detail: String },
    /// A file fails its checksums or its structure is inconsistent.
    #[error("{path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    /// A file written by a newer (or unknown) format version.
    #[error("{path} has an unsupported format: {detail}")]
    Version { path: String, detail: String },
    /// Another process has the database open for writing.
    #[error("the database is locked by another process for writing (lock file {path})")]
    Locked { path: String },
    /// A write to a database opened read-only.
    #[error("the database {path} is open read-only")]
    ReadOnly { path: String },
    /// No database at the path, and `Options::create` was not set.
    #[error("no database at {path} (set create to make one)")]
    NotFound { path: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An I/O failure on `path` during `action`.
pub(crate) fn io_error(path: &Path, action: &str, error: &std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), detail: format!("{action}: {error}") }
}

/// Damage found in `path`.
pub(crate) fn corrupt(path: &Path, detail: String) -> Error {
    Error::Corrupt { path: path.display().to_string(), detail }
}
