//! omendb: an embeddable vector search engine built from segmented HNSW graphs.
//!
//! This is the Rust API; C, C++ and other runtimes use the same engine through [`ffi`] and the
//! generated `include/omendb.h`.
//!
//! ```
//! use omendb::{Index, Metric, Options};
//!
//! let index = Index::new(Options::new(3, Metric::L2)).unwrap();
//! index.insert_batch(&[10, 11], &[0.0, 0.0, 1.0, 5.0, 5.0, 5.0]).unwrap();
//! let hits = index.search(&[0.0, 0.0, 0.9], 1, 0).unwrap();
//! assert_eq!(hits[0].id, 10);
//! ```
//!
//! # Layout
//! Imports point one way, from the C boundary down to the kernels:
//! - [`ffi`]: the C ABI (handles, statuses, the panic boundary): the only caller of `index`
//!   from outside Rust.
//! - `index`: the [`Index`]: checks input, logs it, applies it to the segments, searches them;
//!   `open` keeps it in a database directory.
//! - `segment`: the growing and sealed segments, how a batch fills them, fan-out and merge.
//! - `hnsw`: one graph: layout, search, building, and its segment-file sections.
//! - `storage`: files only: manifest, write-ahead log, segment files, lock.
//! - [`quant`] and [`distance`]: codes and kernels, chosen at run time for the CPU.
//! - `memory`: heap and mapped arrays, huge pages: every libc call that is not file I/O.
//! - `error` and `options`: what every layer reports and what a caller chooses.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod distance;
mod error;
pub mod ffi;
mod hnsw;
mod index;
mod memory;
mod options;
pub mod quant;
mod segment;
mod storage;

pub use distance::Metric;
pub use error::{Error, Result};
pub use index::{FileInfo, Index, SegmentInfo, SegmentReport, Stats, Verification};
pub use options::{Durability, Filter, LogRecovery, Options, Plan, SearchParams};
pub use quant::Quantization;
pub use segment::SearchResult;
pub use storage::BackupReport;
