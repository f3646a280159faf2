//! The C ABI: the only place where raw pointers meet the engine.
//!
//! Conventions (see `include/omendb.h`):
//! - every fallible function returns an `omen_status` and takes `omen_error **err` last; on
//!   failure `*err` receives an error the caller frees with `omen_error_free`, on success it is
//!   set to NULL; `err` itself may be NULL;
//! - outputs are written only on success; every pointer is checked for NULL and alignment,
//!   every length is an explicit `size_t`, and (NULL, 0) is a valid empty array;
//! - every export runs inside a panic guard: a panic becomes `OMEN_STATUS_PANIC`;
//! - an `omen_index` may be used from many threads at once (searches and inserts run
//!   concurrently; inserts serialise among themselves); only `omen_index_free` needs exclusive
//!   access.

#![allow(non_camel_case_types)]
// The exports are called from C, where every call is unchecked anyway; their pointer contracts are
// written in each doc comment, and NULL, alignment, sizes and overlap are checked before use.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod backup;
pub mod error;
mod guard;
pub mod index;
pub mod options;
pub mod search;

use std::ffi::c_char;

pub use backup::*;
pub use error::{omen_error, omen_error_code, omen_error_free, omen_error_message, omen_status, omen_status_name};
pub use index::*;
pub use options::{omen_metric, omen_options, omen_options_default};
pub use search::*;

/// Version of the C ABI this header describes; must equal `omen_abi_version()` of the linked
/// library. Raised on every incompatible change.
pub const OMEN_ABI_VERSION: u32 = 1;

/// The ABI version of the linked library: compare with `OMEN_ABI_VERSION` from the header you
/// compiled against; a difference means the header and the library do not match.
///
/// # Thread safety
/// Safe from any thread.
#[no_mangle]
pub extern "C" fn omen_abi_version() -> u32 {
    OMEN_ABI_VERSION
}

/// The library version, such as "0.1.0".
///
/// # Ownership
/// Returns a static NUL-terminated string; never free it.
///
/// # Thread safety
/// Safe from any thread.
#[no_mangle]
pub extern "C" fn omen_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
