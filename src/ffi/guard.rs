//! The panic boundary and pointer checks that every export goes through.

use std::any::Any;
use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::error::{omen_error, omen_status, Failure};

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("internal error (please report): {detail}")
}

thread_local! {
    /// How many guarded export bodies this thread is inside.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Keeps the library's panics off the host's stderr: a panic inside a guarded call (or on one
/// of the library's worker threads, named `omendb-*`) is reported through its status and
/// error, so the default hook's message would only be noise in someone else's program. Other
/// panics go to the hook that was there before. Installed on the first guarded call, so a Rust
/// program that never calls the C ABI keeps its own hook untouched.
///
/// The hook holds nothing on the heap (the previous one stays in a static, and the default one
/// is zero-sized), so a host that unloads the library (dlclose) leaks nothing.
fn quiet_panics() {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    static PREVIOUS: std::sync::OnceLock<Hook> = std::sync::OnceLock::new();
    fn quiet(info: &std::panic::PanicHookInfo<'_>) {
        let guarded = GUARDED.with(|g| g.get() > 0);
        let worker = std::thread::current().name().is_some_and(|name| name.starts_with("omendb-"));
        if let (false, false, Some(previous)) = (guarded, worker, PREVIOUS.get()) {
            previous(info);
        }
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = PREVIOUS.set(std::panic::take_hook());
        std::panic::set_hook(Box::new(quiet));
    });
}

/// Runs `body` counted as guarded (see `quiet_panics`).
fn guarded<T>(body: impl FnOnce() -> T) -> std::thread::Result<T> {
    quiet_panics();
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(body));
    GUARDED.with(|g| g.set(g.get() - 1));
    outcome
}

/// Runs a fallible export body: catches panics, turns failures into a status, and stores the
/// error in `*err` (when `err` is not NULL). On success `*err` is set to NULL.
pub(crate) fn guard(err: *mut *mut omen_error, body: impl FnOnce() -> Result<(), Failure>) -> omen_status {
    let outcome =
        guarded(body).unwrap_or_else(|payload| Err(Failure::new(omen_status::Panic, panic_message(&*payload))));
    let (status, error) = match outcome {
        Ok(()) => (omen_status::Ok, std::ptr::null_mut()),
        Err(failure) => (failure.status, Box::into_raw(omen_error::boxed(failure))),
    };
    if err.is_null() {
        if !error.is_null() {
            // SAFETY: `error` was just made by `Box::into_raw` and nobody else has seen it.
            drop(unsafe { Box::from_raw(error) });
        }
    } else {
        // SAFETY: a non-NULL `err` points to writable storage for one pointer (caller's contract).
        unsafe { err.write(error) };
    }
    status
}

/// Runs an export that cannot fail; a panic yields `fallback`.
pub(crate) fn infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    guarded(body).unwrap_or(fallback)
}

/// A borrowed C array as a slice. (NULL, 0) is the empty slice; NULL with a length fails.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` initialised `T`s that stay valid and unmodified for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    check_array(ptr, len, name)?;
    // SAFETY: non-NULL, aligned, size fits in isize (checked above); validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's output array as a mutable slice, with the same rules as [`slice`].
///
/// # Safety
/// A non-NULL `ptr` must point to `len` writable `T`s that nothing else accesses during `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, name: &str) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_array(ptr, len, name)?;
    // SAFETY: as in `slice`, plus exclusive access (caller's contract; overlap between our own
    // arguments is rejected by `disjoint`).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_array<T>(ptr: *const T, len: usize, name: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("`{name}` is not aligned for its element type")));
    }
    match len.checked_mul(size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(Failure::invalid(format!("`{name}` length {len} is too large"))),
    }
}

/// The bytes an argument array covers, named for the error message.
pub(crate) fn span<'n, T>(name: &'n str, array: &[T]) -> (&'n str, std::ops::Range<usize>) {
    let start = array.as_ptr() as usize;
    (name, start..start + size_of_val(array))
}

/// Fails when any two argument arrays share memory (which would alias a `&mut`).
pub(crate) fn disjoint(spans: &[(&str, std::ops::Range<usize>)]) -> Result<(), Failure> {
    for (i, (name_a, a)) in spans.iter().enumerate() {
        for (name_b, b) in &spans[i + 1..] {
            if !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end {
                return Err(Failure::invalid(format!("`{name_a}` and `{name_b}` overlap")));
            }
        }
    }
    Ok(())
}

/// Writes `value` to a required out-pointer.
///
/// # Safety
/// A non-NULL `ptr` must be valid for one write of `T`.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: checked non-NULL by the caller's `require` and valid by its contract.
    unsafe { ptr.write(value) }
}

/// Writes the first `size` bytes of `value` to `ptr`: a caller with an older, shorter layout of a
/// struct that grows at its end gets the fields it knows.
///
/// # Safety
/// `ptr` is non-NULL and aligned (checked by `require`) and points to `size` writable bytes;
/// `size` is at most `sizeof(T)` (checked by [`check_size`]).
pub(crate) unsafe fn write_sized<T>(ptr: *mut T, value: T, size: usize) {
    debug_assert!(size <= size_of::<T>());
    // SAFETY: `value` holds `sizeof(T) >= size` bytes; `ptr` holds `size` writable bytes
    // (caller's contract) and cannot overlap a local.
    unsafe { std::ptr::copy_nonoverlapping((&raw const value).cast::<u8>(), ptr.cast::<u8>(), size) };
}

/// The `size` a caller set as the first field of its struct at `ptr`, after checking `ptr`.
///
/// # Safety
/// A non-NULL `ptr` must point to a readable `T` whose first field is a `size_t`.
pub(crate) unsafe fn size_field<T>(ptr: *const T, name: &str) -> Result<usize, Failure> {
    require(ptr, name)?;
    // SAFETY: non-NULL and aligned for `T` (checked), whose first field is a size_t (contract).
    Ok(unsafe { ptr.cast::<usize>().read() })
}

/// Fails unless `size` is this library's `sizeof(T)` or one of the `older` layouts it still
/// accepts: any other size means the caller's header does not match the library.
pub(crate) fn check_size<T>(size: usize, older: &[usize]) -> Result<(), Failure> {
    if size == size_of::<T>() || older.contains(&size) {
        return Ok(());
    }
    let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("struct");
    Err(Failure::invalid(format!(
        "{name} size is {size} but this library's is {}: the header does not match the library",
        size_of::<T>()
    )))
}

/// Reads a caller's struct whose first field is its `size` (checked by [`check_size`]). An
/// older, shorter layout is read as far as it goes; the newer fields keep `defaults`' values,
/// and the copy's `size` is this library's.
///
/// # Safety
/// A non-NULL `ptr` must point to a readable struct of the size its first field states; `T`
/// must be `#[repr(C)]`, start with a `usize`, and accept any bytes in its fields (integers and
/// floats).
pub(crate) unsafe fn read_sized<T: Copy>(
    ptr: *const T,
    name: &str,
    older: &[usize],
    defaults: T,
) -> Result<T, Failure> {
    // SAFETY: passed on (caller's contract).
    let size = unsafe { size_field(ptr, name) }?;
    check_size::<T>(size, older)?;
    let mut copy = defaults;
    // SAFETY: `size` is at most `sizeof(T)` and readable at `ptr` (caller's contract); every field
    // accepts any bytes, and a shorter copy leaves the later fields at their defaults.
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut copy).cast::<u8>(), size) };
    // SAFETY: the first field of `T` is a usize (contract).
    unsafe { (&raw mut copy).cast::<usize>().write(size_of::<T>()) };
    Ok(copy)
}

/// Fails with `OMEN_STATUS_NULL_ARGUMENT` when `ptr` is NULL.
/// A NUL-terminated C path argument as a `Path` (bytes as they are: Unix paths need not be UTF-8).
///
/// # Safety
/// A non-NULL `path` is NUL-terminated and stays valid and unchanged during `'a`.
pub(crate) unsafe fn path_arg<'a>(path: *const c_char, name: &str) -> Result<&'a Path, Failure> {
    require(path, name)?;
    // SAFETY: non-NULL (checked), NUL-terminated and live during 'a (this function's contract).
    Ok(Path::new(OsStr::from_bytes(unsafe { CStr::from_ptr(path) }.to_bytes())))
}

pub(crate) fn require<T>(ptr: *const T, name: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        Err(Failure::null(name))
    } else if !ptr.is_aligned() {
        Err(Failure::invalid(format!("`{name}` is not aligned for its type")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::error::{omen_error_code, omen_error_free, omen_error_message};

    #[test]
    fn a_panic_becomes_a_status_and_an_error_and_never_unwinds_into_c() {
        let mut err = std::ptr::null_mut();
        let status = guard(&mut err, || panic!("boom {}", 42));
        assert_eq!(status, omen_status::Panic);
        assert_eq!(omen_error_code(err), omen_status::Panic);
        // SAFETY: `err` is a live error, its message a valid C string.
        let message = unsafe { std::ffi::CStr::from_ptr(omen_error_message(err)) }.to_str().unwrap().to_owned();
        assert!(message.contains("boom 42"), "{message}");
        omen_error_free(err);
        assert_eq!(guard(std::ptr::null_mut(), || panic!("no err pointer")), omen_status::Panic);
        assert_eq!(infallible(7, || panic!("getter")), 7);
    }

    #[test]
    fn success_clears_the_error_pointer() {
        let mut err = 0x10 as *mut omen_error;
        assert_eq!(guard(&mut err, || Ok(())), omen_status::Ok);
        assert!(err.is_null());
    }

    #[test]
    fn overlapping_ranges_are_detected() {
        let buffer = [0u64; 8];
        assert!(disjoint(&[span("a", &buffer[..4]), span("b", &buffer[4..])]).is_ok());
        assert!(disjoint(&[span("a", &buffer[..5]), span("b", &buffer[4..])]).is_err());
        assert!(disjoint(&[span("a", &buffer[..0]), span("b", &buffer[..])]).is_ok());
        assert!(disjoint(&[span("a", &buffer[..2]), span("b", &buffer[2..4]), span("c", &buffer[1..3])]).is_err());
    }
}
