//! The options struct callers fill before creating an index.

use super::error::{omen_error, omen_status, Failure};
use super::guard::{guard, require, write_out};
use crate::{Metric, Options};

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
    /// Threads for building and batch search; 0 = one per core. Default 0.
    pub threads: usize,
    /// Seeds the random level of each node, so builds are reproducible.
    pub seed: u64,
}

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
        }
    }

    /// The engine's options, or the reason these are unusable.
    pub(crate) fn to_options(self) -> Result<Options, Failure> {
        check_size(self.size)?;
        let metric = match self.metric {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::InnerProduct,
            other => return Err(Failure::invalid(format!("unknown metric {other} (expected an omen_metric value)"))),
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
        })
    }
}

fn check_size(size: usize) -> Result<(), Failure> {
    if size == size_of::<omen_options>() {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "omen_options size is {size} but this library's is {}: the header does not match the library",
            size_of::<omen_options>()
        )))
    }
}

/// Fills `*options` with the defaults (dim 0, which must be set before creating an index).
///
/// Pass `sizeof(omen_options)` as `size`: a mismatch means the header you compiled against does
/// not match the library, and fails without writing.
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
        check_size(size)?;
        // SAFETY: `options` is non-NULL and aligned (checked) and points to `size` =
        // sizeof(omen_options) writable bytes (caller's contract).
        unsafe { write_out(options, omen_options::defaults()) };
        Ok(())
    })
}
