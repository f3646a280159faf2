//! The options struct callers fill before creating an index.

use super::error::{omen_error, omen_status, Failure};
use super::guard::{check_size, guard, read_sized, require, write_sized};
use crate::distance::Metric;
use crate::options::{Durability, LogRecovery, Options};
use crate::quant::Quantization;

/// Distance metrics, as stored in `omen_options.metric`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_metric {
    /// Squared Euclidean distance.
    L2 = 0,
    /// 1 - cosine similarity; vectors are normalised on insert; zero vectors are rejected.
    Cosine = 1,
    /// Negated inner product (-dot): smaller is closer.
    InnerProduct = 2,
}

/// When an acknowledged insert reaches the disk (`omen_options.durability`). A crash of the
/// process alone loses nothing in any mode; they differ on an operating-system crash or power loss.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_durability {
    /// fsync before `omen_index_insert_batch` returns; concurrent inserts share one fsync.
    EveryBatch = 0,
    /// fsync in the background every `sync_interval_ms`: a power loss can lose that interval.
    Interval = 1,
    /// fsync only at checkpoints (seal, flush, close).
    Never = 2,
}

/// The codes searches walk on (`omen_options.quantization`); the best candidates are always
/// re-scored with the exact vectors.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_quantization {
    /// No codes: the walk reads the bfloat16 halves of the vectors (2 bytes a dimension).
    None = 0,
    /// 1 bit a dimension of the centred, randomly rotated vector, with factors that make the
    /// distance estimate unbiased (RaBitQ); every metric. Where vectors crowd into many tight
    /// clusters it needs a large oversample and is slower than no codes. The estimate's error
    /// shrinks as 1/sqrt(dim), so wide vectors need less than the default oversample (20): 5
    /// reached recall 0.95 on 384-d sentence embeddings and 0.987 at 1536-d (README).
    Binary = 1,
    /// 4 bits a dimension, a range per dimension: the fastest code where neighbours lie far
    /// apart next to the whole set's spread (sentence embeddings). Where vectors crowd into many
    /// tight clusters its steps are wider than a cluster, and it is slower than no codes at the
    /// same recall (README, "Tight clusters").
    Bits4 = 2,
    /// 8 bits a dimension, a range per dimension: faster than no codes on tight clusters too.
    Bits8 = 3,
}

/// What `omen_index_open` does with a write-ahead log whose end does not hold whole, intact
/// records (`omen_options.log_recovery`): the remains of a write a crash interrupted, or damage
/// that looks the same (docs/format.md says which).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_log_recovery {
    /// Drop the tail: its bytes are moved to a `.damaged` file beside the log (never deleted)
    /// and reported by `omen_stats.log_dropped_bytes` and `omen_index_recovery_notice`.
    DropTail = 0,
    /// Refuse such a log with `OMEN_STATUS_CORRUPT`, changing nothing (RocksDB's absolute
    /// consistency). An interrupted, never acknowledged insert is refused too; opening once with
    /// `OMEN_LOG_RECOVERY_DROP_TAIL` recovers.
    Strict = 1,
}

/// Index configuration. Fill it with `omen_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct omen_options {
    /// `sizeof(omen_options)` as the caller compiled it; set by `omen_options_default`. Lets the
    /// library detect a header that does not match it.
    pub size: usize,
    /// Dimension of every vector, 1..=65536. Default 0: must be set.
    pub dim: usize,
    /// One of `omen_metric` (a `uint32_t`, so that any value is safe to pass). Default L2.
    pub metric: u32,
    /// Links per node on upper layers (layer 0 keeps 2*m), 2..=128. Default 16.
    pub m: usize,
    /// Beam width while building. Default 100.
    pub ef_construction: usize,
    /// Beam width of searches that pass `ef = 0`. Default 64.
    pub ef_search: usize,
    /// Vectors per segment before it is sealed. Default 1048576.
    pub segment_capacity: usize,
    /// Threads for building and batch search; 0 = one per core. Default 0. A batch of a few rows
    /// is linked on the inserting thread instead.
    pub threads: usize,
    /// Seeds the random level of each node, so builds are reproducible.
    pub seed: u64,
    /// `omen_index_open`: nonzero creates the database when the directory holds none. Default 1.
    pub create: u32,
    /// `omen_index_open`: nonzero opens without the write lock; inserts then fail with
    /// `OMEN_STATUS_READ_ONLY`. Default 0.
    pub read_only: u32,
    /// `omen_index_open`: nonzero checks every checksum of every segment file while opening
    /// (reads each file once); 0 only maps sealed segments, so opening takes milliseconds, and
    /// damage inside their vectors or links then gives wrong answers instead of an error (never
    /// an out-of-bounds access). Default 1.
    pub verify: u32,
    /// `omen_index_open`: one of `omen_durability`. Default `OMEN_DURABILITY_EVERY_BATCH`.
    pub durability: u32,
    /// Milliseconds between background fsyncs under `OMEN_DURABILITY_INTERVAL` (at least 1).
    /// Default 1000.
    pub sync_interval_ms: u32,
    /// One of `omen_quantization`. Default `OMEN_QUANTIZATION_NONE`. Fixed when a database is
    /// created.
    pub quantization: u32,
    /// Candidates re-scored exactly per result with codes, for searches that pass 0; 0 = the
    /// code's default (binary 20, 4-bit 2, 8-bit 2).
    pub oversample: usize,
    /// `omen_index_open`: one of `omen_log_recovery`. Default `OMEN_LOG_RECOVERY_DROP_TAIL`.
    pub log_recovery: u32,
    /// A background thread compacts (`omen_index_compact`) once deletes and upserts leave more
    /// than this fraction of some segment's vectors deleted; 0 = only when called. In 0..=1,
    /// default 0.2.
    pub compact_threshold: f64,
}

/// `sizeof(omen_options)` in 0.1.0, before the fields from `create` on: such callers still
/// work, and get the defaults for the newer fields.
const SIZE_0_1: usize = 72;

/// `sizeof(omen_options)` before `log_recovery`: such callers get its default.
const SIZE_BEFORE_LOG_RECOVERY: usize = 104;
const _: () = assert!(std::mem::offset_of!(omen_options, log_recovery) == SIZE_BEFORE_LOG_RECOVERY);

/// `sizeof(omen_options)` before `compact_threshold`: such callers get its default.
const SIZE_BEFORE_COMPACT_THRESHOLD: usize = 112;
const _: () = assert!(std::mem::offset_of!(omen_options, compact_threshold) == SIZE_BEFORE_COMPACT_THRESHOLD);

/// Every older `omen_options` layout still accepted.
const OLDER_SIZES: [usize; 3] = [SIZE_0_1, SIZE_BEFORE_LOG_RECOVERY, SIZE_BEFORE_COMPACT_THRESHOLD];

impl omen_options {
    fn defaults() -> Self {
        let o = Options::new(0, Metric::L2);
        omen_options {
            size: size_of::<omen_options>(),
            dim: 0,
            metric: omen_metric::L2 as u32,
            m: o.m,
            ef_construction: o.ef_construction,
            ef_search: o.ef_search,
            segment_capacity: o.segment_capacity,
            threads: o.threads,
            seed: o.seed,
            create: o.create.into(),
            read_only: o.read_only.into(),
            verify: o.verify.into(),
            durability: omen_durability::EveryBatch as u32,
            sync_interval_ms: 1000,
            quantization: o.quantization.code(),
            oversample: o.oversample,
            log_recovery: omen_log_recovery::DropTail as u32,
            compact_threshold: o.compact_threshold,
        }
    }

    /// Reads the caller's options, which may be an older, shorter layout (see `size`).
    ///
    /// # Safety
    /// `options` is non-NULL, aligned, and points to a readable `omen_options` of the size its
    /// first field states.
    pub(crate) unsafe fn read(options: *const omen_options) -> Result<Options, Failure> {
        // SAFETY: `omen_options` is repr(C), starts with its size and holds only integers and a double (any bytes are a value); the
        // rest is the caller's contract.
        unsafe { read_sized(options, "options", &OLDER_SIZES, Self::defaults()) }?.to_options()
    }

    /// The engine's options, or the reason these are unusable.
    fn to_options(self) -> Result<Options, Failure> {
        let metric = Metric::from_code(self.metric).ok_or_else(|| {
            Failure::invalid(format!("unknown metric {} (expected an omen_metric value)", self.metric))
        })?;
        let durability = match (self.durability, self.sync_interval_ms) {
            (0, _) => Durability::EveryBatch,
            (1, 0) => return Err(Failure::invalid("sync_interval_ms must be at least 1")),
            (1, ms) => Durability::Interval(std::time::Duration::from_millis(ms.into())),
            (2, _) => Durability::Never,
            (other, _) => {
                return Err(Failure::invalid(format!("unknown durability {other} (expected an omen_durability value)")))
            }
        };
        Ok(Options {
            dim: self.dim,
            metric,
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            segment_capacity: self.segment_capacity,
            threads: self.threads,
            seed: self.seed,
            create: self.create != 0,
            read_only: self.read_only != 0,
            verify: self.verify != 0,
            durability,
            quantization: Quantization::from_code(self.quantization).ok_or_else(|| {
                Failure::invalid(format!(
                    "unknown quantization {} (expected an omen_quantization value)",
                    self.quantization
                ))
            })?,
            oversample: self.oversample,
            log_recovery: match self.log_recovery {
                0 => LogRecovery::DropTail,
                1 => LogRecovery::Strict,
                other => {
                    return Err(Failure::invalid(format!(
                        "unknown log_recovery {other} (expected an omen_log_recovery value)"
                    )))
                }
            },
            compact_threshold: self.compact_threshold,
        })
    }
}

/// Fills `*options` with the defaults (dim 0, which must be set before creating an index).
///
/// Pass `sizeof(omen_options)` as `size`: a size this library does not know means the header
/// you compiled against does not match it, and fails without writing. (Older layouts are still
/// accepted: 0.1.0's, which ends at `seed`, and those that end at `oversample` and at
/// `log_recovery`.)
///
/// # Ownership
/// Writes into the caller's `*options`; nothing is allocated.
///
/// # Thread safety
/// Safe from any thread.
///
/// # Errors
/// `OMEN_STATUS_NULL_ARGUMENT` when `options` is NULL; `OMEN_STATUS_INVALID_ARGUMENT` when `size`
/// differs from the library's `sizeof(omen_options)`.
#[no_mangle]
#[must_use]
pub extern "C" fn omen_options_default(
    options: *mut omen_options,
    size: usize,
    err: *mut *mut omen_error,
) -> omen_status {
    guard(err, || {
        require(options, "options")?;
        check_size::<omen_options>(size, &OLDER_SIZES)?;
        let defaults = omen_options { size, ..omen_options::defaults() };
        // SAFETY: `options` is non-NULL and aligned (checked) and points to `size` writable bytes,
        // one of this library's layouts (caller's contract); an older caller gets its prefix.
        unsafe { write_sized(options, defaults, size) };
        Ok(())
    })
}
