//! Files and memory: segment files, the write-ahead log, the manifest, the directory lock, and
//! how the engine's large arrays sit in memory (heap with huge pages, or a file mapping).

mod array;
mod manifest;
pub(crate) mod segment_file;
mod store;
mod wal;

use std::fs::{File, OpenOptions};
use std::mem::MaybeUninit;
use std::path::Path;

pub(crate) use array::{Array, Mapping};
pub(crate) use manifest::{Manifest, SegmentEntry};
pub(crate) use store::Store;
pub use store::{Durability, Stats};

use crate::Error;

/// An I/O failure on `path` during `action`.
pub(crate) fn io_error(path: &Path, action: &str, error: &std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), detail: format!("{action}: {error}") }
}

/// Damage found in `path`.
pub(crate) fn corrupt(path: &Path, detail: String) -> Error {
    Error::Corrupt { path: path.display().to_string(), detail }
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> crate::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, "sync directory", &e))
}

/// Writes a whole file so that `path` holds either its old contents or all the new ones, never
/// a mix: write to `path.tmp`, fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, write: impl FnOnce(&File) -> std::io::Result<()>) -> crate::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let result = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temporary)
        .and_then(|file| {
            write(&file)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(temporary, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(temporary);
        return Err(io_error(path, "write", &e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Asks the kernel to back the part of `spare` that covers whole 2 MiB pages with transparent
/// huge pages. Graph search reads vectors and links at random: with 4 KiB pages nearly every
/// read misses the TLB, with 2 MiB pages a whole segment fits in it. Call it on memory not yet
/// written (a `Vec`'s spare capacity), so the first touch already faults in huge pages.
/// Best effort: a kernel that refuses (or another OS) leaves ordinary pages.
pub(crate) fn advise_huge_pages<T>(spare: &mut [MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = spare.as_ptr() as usize;
        let end = start + size_of_val(spare);
        let aligned_start = start.next_multiple_of(HUGE);
        let aligned_end = end / HUGE * HUGE;
        if aligned_end > aligned_start {
            // SAFETY: the range lies inside memory this slice owns; MADV_HUGEPAGE changes only how
            // the kernel backs it, never its contents, and a failure is harmless (ignored).
            unsafe {
                libc::madvise(aligned_start as *mut libc::c_void, aligned_end - aligned_start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = spare;
}

/// Reserves room for `additional` more elements and advises huge pages for it.
pub(crate) fn reserve_huge<T>(vec: &mut Vec<T>, additional: usize) {
    vec.reserve(additional);
    advise_huge_pages(vec.spare_capacity_mut());
}

/// A copy of `items` in memory advised for huge pages.
pub(crate) fn huge_copy<T: Clone>(items: &[T]) -> Vec<T> {
    let mut copy = Vec::new();
    reserve_huge(&mut copy, items.len());
    copy.extend_from_slice(items);
    copy
}
