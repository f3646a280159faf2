//! Status codes and the library-owned error object.

use std::ffi::{c_char, CStr, CString};

use crate::error::Error;

/// Result of every fallible call. Values are fixed forever and never reused; new codes take new
/// numbers. Ranges: 0 success; 1-99 the caller's input; 100-199 files and stored data;
/// 200-299 the operating system's resources; 1000 internal errors.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omen_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range: k = 0, dim = 0, an unknown enum value, a wrong struct size,
    /// overlapping buffers, or a misaligned pointer.
    InvalidArgument = 2,
    /// A vector's dimension differs from the index's.
    DimensionMismatch = 3,
    /// A vector holds NaN or an infinity.
    NonFinite = 4,
    /// A zero vector under the cosine metric.
    ZeroVector = 5,
    /// An id already present, or repeated within one batch.
    DuplicateId = 6,
    /// A file operation failed: disk full, permissions, a read-only file system. Nothing
    /// acknowledged was lost; the message names the file.
    Io = 100,
    /// A database file fails its checksums or is inconsistent (truncated, bit-flipped, foreign);
    /// the message names the file.
    Corrupt = 101,
    /// A database file has a format version this library does not read.
    Version = 102,
    /// Another process has the database open for writing (its `LOCK` file is held).
    Locked = 103,
    /// A write to a database opened read-only.
    ReadOnly = 104,
    /// No database at the path, and `options.create` is 0.
    NotFound = 105,
    /// The operating system refused a resource (threads).
    ResourceExhausted = 200,
    /// A bug inside omendb: a Rust panic was caught at the boundary. The handle stays usable.
    Panic = 1000,
}

impl omen_status {
    /// The status for a C value that may be outside the enum (reading it as the enum would be UB).
    fn from_u32(value: u32) -> Option<omen_status> {
        use omen_status::*;
        [
            Ok,
            NullArgument,
            InvalidArgument,
            DimensionMismatch,
            NonFinite,
            ZeroVector,
            DuplicateId,
            Io,
            Corrupt,
            Version,
            Locked,
            ReadOnly,
            NotFound,
            ResourceExhausted,
            Panic,
        ]
        .into_iter()
        .find(|s| *s as u32 == value)
    }

    fn name(self) -> &'static CStr {
        match self {
            omen_status::Ok => c"OMEN_STATUS_OK",
            omen_status::NullArgument => c"OMEN_STATUS_NULL_ARGUMENT",
            omen_status::InvalidArgument => c"OMEN_STATUS_INVALID_ARGUMENT",
            omen_status::DimensionMismatch => c"OMEN_STATUS_DIMENSION_MISMATCH",
            omen_status::NonFinite => c"OMEN_STATUS_NON_FINITE",
            omen_status::ZeroVector => c"OMEN_STATUS_ZERO_VECTOR",
            omen_status::DuplicateId => c"OMEN_STATUS_DUPLICATE_ID",
            omen_status::Io => c"OMEN_STATUS_IO",
            omen_status::Corrupt => c"OMEN_STATUS_CORRUPT",
            omen_status::Version => c"OMEN_STATUS_VERSION",
            omen_status::Locked => c"OMEN_STATUS_LOCKED",
            omen_status::ReadOnly => c"OMEN_STATUS_READ_ONLY",
            omen_status::NotFound => c"OMEN_STATUS_NOT_FOUND",
            omen_status::ResourceExhausted => c"OMEN_STATUS_RESOURCE_EXHAUSTED",
            omen_status::Panic => c"OMEN_STATUS_PANIC",
        }
    }
}

/// A failure on its way to C: a status and a human-readable message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: omen_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: omen_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    pub(crate) fn null(argument: &str) -> Self {
        Failure::new(omen_status::NullArgument, format!("`{argument}` must not be NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(omen_status::InvalidArgument, message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::InvalidArgument(_) => omen_status::InvalidArgument,
            Error::DimensionMismatch(_) => omen_status::DimensionMismatch,
            Error::NonFinite { .. } | Error::NormOverflow { .. } => omen_status::NonFinite,
            Error::OutOfMemory(_) => omen_status::ResourceExhausted,
            Error::ZeroVector { .. } => omen_status::ZeroVector,
            Error::DuplicateId { .. } => omen_status::DuplicateId,
            Error::Threads(_) => omen_status::ResourceExhausted,
            Error::Io { .. } => omen_status::Io,
            Error::Corrupt { .. } => omen_status::Corrupt,
            Error::Version { .. } => omen_status::Version,
            Error::Locked { .. } => omen_status::Locked,
            Error::ReadOnly { .. } => omen_status::ReadOnly,
            Error::NotFound { .. } => omen_status::NotFound,
        };
        Failure::new(status, error.to_string())
    }
}

/// An error with its status and message, owned by the caller once returned.
/// Read it with `omen_error_code` and `omen_error_message`; release it with `omen_error_free`.
#[allow(non_camel_case_types)]
pub struct omen_error {
    status: omen_status,
    message: CString,
}

impl omen_error {
    pub(crate) fn boxed(failure: Failure) -> Box<omen_error> {
        // An interior NUL would truncate the C string; replace it rather than lose the message.
        let message = CString::new(failure.message.replace('\0', "\u{FFFD}")).unwrap_or_default();
        Box::new(omen_error { status: failure.status, message })
    }
}

/// The status an error carries.
///
/// # Ownership
/// Borrows `error`. A NULL `error` yields `OMEN_STATUS_OK` (no error).
///
/// # Thread safety
/// May run concurrently with any call that does not free `error`.
#[no_mangle]
pub extern "C" fn omen_error_code(error: *const omen_error) -> omen_status {
    super::guard::infallible(omen_status::Panic, || {
        // SAFETY: the caller passes NULL or a live error from this library (documented).
        unsafe { error.as_ref() }.map_or(omen_status::Ok, |e| e.status)
    })
}

/// The error's message: a NUL-terminated UTF-8 string.
///
/// # Ownership
/// Borrows `error`; the returned string belongs to `error` and lives until `omen_error_free`.
/// A NULL `error` yields an empty static string.
///
/// # Thread safety
/// May run concurrently with any call that does not free `error`.
#[no_mangle]
pub extern "C" fn omen_error_message(error: *const omen_error) -> *const c_char {
    super::guard::infallible(c"".as_ptr(), || {
        // SAFETY: the caller passes NULL or a live error from this library (documented).
        unsafe { error.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
    })
}

/// Frees an error returned through an `omen_error **err` parameter.
///
/// # Ownership
/// Takes `error`; it must not be used afterwards. NULL is accepted and ignored.
///
/// # Thread safety
/// No other call may use `error` concurrently.
#[no_mangle]
pub extern "C" fn omen_error_free(error: *mut omen_error) {
    super::guard::infallible((), || {
        if !error.is_null() {
            // SAFETY: a non-NULL `error` came from `Box::into_raw` in this library and is freed once
            // (the caller's contract).
            drop(unsafe { Box::from_raw(error) });
        }
    })
}

/// The name of a status code, such as "OMEN_STATUS_DIMENSION_MISMATCH".
///
/// # Ownership
/// Returns a static string (never free it); an unknown value yields "OMEN_STATUS_UNKNOWN".
///
/// # Thread safety
/// Safe from any thread.
#[no_mangle]
pub extern "C" fn omen_status_name(status: u32) -> *const c_char {
    super::guard::infallible(c"OMEN_STATUS_UNKNOWN".as_ptr(), || {
        omen_status::from_u32(status).map_or(c"OMEN_STATUS_UNKNOWN", omen_status::name).as_ptr()
    })
}
