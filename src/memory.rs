//! Memory: arrays that live either on the heap or in a file mapping behind one slice type (so
//! the graph code reads a sealed segment straight from its file without knowing it), huge-page
//! advice, and page release. Every libc call that is not file I/O is here.

use std::fs::File;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// Element types that may be viewed straight from file bytes.
///
/// # Safety
/// Implementors have no padding, no drop glue, no invalid bit patterns, and an alignment of at
/// most 8 (sections start at 8-aligned offsets of a page-aligned mapping).
pub(crate) unsafe trait Plain: Sized + Send + Sync + 'static {}

// SAFETY: integers: every bit pattern is a value, no padding.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above; any bit pattern is some f32 (NaN included).
unsafe impl Plain for f32 {}
// SAFETY: `AtomicU32` has the size, alignment and bit validity of `u32`.
unsafe impl Plain for AtomicU32 {}

/// A whole file mapped copy-on-write: readable, and writable without touching the file, so a
/// stray store can never corrupt it or fault.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value until drop; access goes through slices
// whose element types (`Plain`) are themselves `Send + Sync`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all of `file` (`len` bytes, at least 1).
    pub(crate) fn new(file: &File, len: usize) -> std::io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private mapping of an open file; the kernel chooses the address. The
        // result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes until `self` drops.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Bytes of the mapping in this process's resident set (`Rss` in /proc/self/smaps): the pages
    /// it has touched. Where smaps is unreadable, the pages in memory at all (mincore), which
    /// also counts pages only the page cache holds.
    pub(crate) fn resident(&self) -> usize {
        self.rss().unwrap_or_else(|| self.in_memory())
    }

    fn rss(&self) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = format!("{:x}-", self.ptr as usize);
        let mut lines = smaps.lines().skip_while(|line| !line.starts_with(&start)).skip(1);
        let rss = lines.find_map(|line| line.strip_prefix("Rss:"))?;
        let kb: usize = rss.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }

    fn in_memory(&self) -> usize {
        let page = page_size();
        let mut pages = vec![0u8; self.len.div_ceil(page)];
        // SAFETY: `ptr` is page-aligned (mmap) and spans `len` bytes; `pages` holds one byte per
        // page of that range, as mincore requires.
        let ok = unsafe { libc::mincore(self.ptr.cast(), self.len, pages.as_mut_ptr()) } == 0;
        if ok {
            (pages.iter().filter(|&&p| p & 1 == 1).count() * page).min(self.len)
        } else {
            0
        }
    }

    /// Tells the kernel these pages are read in random order (no read-ahead), as graph search does.
    pub(crate) fn advise_random(&self) {
        // SAFETY: advice on our own mapping; it never changes contents, a failure is harmless.
        unsafe { libc::madvise(self.ptr.cast(), self.len, libc::MADV_RANDOM) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice into it outlives `self`, because every
        // `Array::Mapped` holds an `Arc<Mapping>`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// A slice of `T` on the heap or inside a mapping.
pub(crate) enum Array<T: Plain> {
    Owned(Vec<T>),
    Mapped { map: Arc<Mapping>, offset: usize, len: usize },
}

impl<T: Plain> Default for Array<T> {
    fn default() -> Self {
        Array::Owned(Vec::new())
    }
}

impl<T: Plain> From<Vec<T>> for Array<T> {
    fn from(vec: Vec<T>) -> Self {
        Array::Owned(vec)
    }
}

impl<T: Plain> Array<T> {
    /// `len` elements at byte `offset` of `map`, or `None` when they do not fit or are misaligned.
    pub(crate) fn mapped(map: &Arc<Mapping>, offset: usize, len: usize) -> Option<Array<T>> {
        let bytes = len.checked_mul(size_of::<T>())?;
        let end = offset.checked_add(bytes)?;
        if end > map.len || !offset.is_multiple_of(align_of::<T>()) {
            return None;
        }
        Some(Array::Mapped { map: map.clone(), offset, len })
    }

    /// The heap vector behind this array, copying a mapped one onto the heap first.
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<T> {
        if let Array::Mapped { .. } = self {
            let slice: &[T] = self;
            let mut copy = Vec::with_capacity(slice.len());
            // SAFETY: `copy` has room for `slice.len()` elements and does not overlap the mapping;
            // `T: Plain` makes a bytewise copy a valid value.
            unsafe {
                std::ptr::copy_nonoverlapping(slice.as_ptr(), copy.as_mut_ptr(), slice.len());
                copy.set_len(slice.len());
            }
            *self = Array::Owned(copy);
        }
        match self {
            Array::Owned(vec) => vec,
            Array::Mapped { .. } => unreachable!("converted above"),
        }
    }

    /// The elements' bytes, as they are written to a file.
    pub(crate) fn bytes(&self) -> &[u8] {
        let slice: &[T] = self;
        // SAFETY: `T: Plain` has no padding, so every byte of the slice is initialised.
        unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), size_of_val(slice)) }
    }

    /// Heap bytes this array holds (0 for a mapped one).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Array::Owned(vec) => vec.capacity() * size_of::<T>(),
            Array::Mapped { .. } => 0,
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        if let Array::Owned(vec) = self {
            vec.shrink_to_fit();
        }
    }
}

impl<T: Plain> Deref for Array<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Array::Owned(vec) => vec,
            // SAFETY: `mapped` checked that `len` elements at `offset` lie inside the mapping and
            // are aligned for `T`; `T: Plain` makes any bytes a valid value; the `Arc` keeps the
            // mapping alive as long as `self`.
            Array::Mapped { map, offset, len } => unsafe {
                std::slice::from_raw_parts(map.ptr.add(*offset).cast::<T>(), *len)
            },
        }
    }
}

/// Drops the whole pages inside `chunk`, a part of a [`Mapping`] nothing has written to, from
/// this process's resident set (the page cache keeps them; a later read maps them again).
pub(crate) fn release_pages(chunk: &[u8]) {
    let page = page_size();
    let start = (chunk.as_ptr() as usize).next_multiple_of(page);
    let end = (chunk.as_ptr() as usize + chunk.len()) / page * page;
    if end > start {
        // SAFETY: the range lies inside a private file mapping that nothing has written to, so
        // MADV_DONTNEED only drops clean pages that the next access maps again from the file.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Asks the kernel to back the part of `spare` that covers whole 2 MiB pages with transparent
/// huge pages. Graph search reads vectors and links at random: with 4 KiB pages nearly every
/// read misses the TLB, with 2 MiB pages a whole segment fits in it. Call it on memory not yet
/// written (a `Vec`'s spare capacity), so the first touch already faults in huge pages.
/// Best effort: a kernel that refuses (or another OS) leaves ordinary pages.
fn advise_huge_pages<T>(spare: &mut [MaybeUninit<T>]) {
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
