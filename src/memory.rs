//! Memory: arrays that live either on the heap or in a file mapping behind one slice type (so
//! the graph code reads a sealed segment straight from its file without knowing it), heap buffers
//! aligned as a mapping is, huge-page advice, and page release. Every libc call that is not file
//! I/O is here.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
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
    Owned(AlignedVec<T>),
    Mapped { map: Arc<Mapping>, offset: usize, len: usize },
}

impl<T: Plain> Default for Array<T> {
    fn default() -> Self {
        Array::Owned(AlignedVec::new())
    }
}

impl<T: Plain> From<AlignedVec<T>> for Array<T> {
    fn from(vec: AlignedVec<T>) -> Self {
        Array::Owned(vec)
    }
}

impl<T: Plain> From<Vec<T>> for Array<T> {
    fn from(vec: Vec<T>) -> Self {
        Array::Owned(AlignedVec::copy_of(&vec))
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
    pub(crate) fn vec_mut(&mut self) -> &mut AlignedVec<T> {
        if let Array::Mapped { .. } = self {
            *self = Array::Owned(AlignedVec::copy_of(self));
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
            Array::Owned(vec) => vec.capacity * size_of::<T>(),
            Array::Mapped { .. } => 0,
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        if let Array::Owned(vec) = self {
            vec.shrink_to_fit();
        }
    }

    /// Reorders the rows (of `width` elements) from row `first` on: row `first + j` takes the
    /// row `order[j]` held, `order` being a permutation of `first..first + order.len()`. In
    /// place, by swapping rows along each cycle of the permutation: no copy of the rows, which
    /// for a large batch would be hundreds of megabytes the allocator may keep. Copies a mapped
    /// array onto the heap first.
    pub(crate) fn permute_rows(&mut self, width: usize, first: usize, order: &[u32]) {
        if width == 0 || order.is_empty() {
            return;
        }
        let rows = &mut self.vec_mut()[first * width..(first + order.len()) * width];
        let mut placed = vec![false; order.len()];
        for start in 0..order.len() {
            let mut at = start;
            while !std::mem::replace(&mut placed[at], true) {
                let from = order[at] as usize - first;
                if from == start {
                    break;
                }
                // Row `at` takes row `from`'s contents; `at`'s old contents move on to `from`,
                // which the cycle fills next.
                let (low, high) = rows.split_at_mut(at.max(from) * width);
                let (a, b) = (&mut low[at.min(from) * width..][..width], &mut high[..width]);
                a.swap_with_slice(b);
                at = from;
            }
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

/// A heap buffer laid out as a mapped section is: it starts on a cache line, and once it spans a
/// huge page, on a 2 MiB boundary advised for transparent huge pages.
///
/// A `Vec` from the system allocator starts 16 bytes past a page boundary (glibc's chunk header),
/// so a 256-byte vector or a 132-byte neighbour list crosses one cache line more than the same
/// array mapped from a file: the same graph searched 1.30x faster mapped than on the heap at 300K
/// 128-d vectors (`benches/peers/heap_mapped.py`). Graph search reads vectors and links at random,
/// so with 4 KiB pages nearly every read also misses the TLB; with 2 MiB pages a segment fits in it.
pub(crate) struct AlignedVec<T: Plain> {
    ptr: NonNull<T>,
    len: usize,
    capacity: usize,
}

// SAFETY: an `AlignedVec` owns its buffer as a `Vec` does; `T: Plain` is `Send + Sync`.
unsafe impl<T: Plain> Send for AlignedVec<T> {}
// SAFETY: as above.
unsafe impl<T: Plain> Sync for AlignedVec<T> {}

/// Alignment of every heap array: one cache line.
const LINE: usize = 64;
/// A transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

impl<T: Plain> AlignedVec<T> {
    pub(crate) const fn new() -> Self {
        AlignedVec { ptr: NonNull::dangling(), len: 0, capacity: 0 }
    }

    /// A copy of `items` with no spare room.
    pub(crate) fn copy_of(items: &[T]) -> Self {
        let mut copy = AlignedVec::new();
        copy.extend_from_slice(items);
        copy
    }

    fn layout(capacity: usize) -> Layout {
        let bytes = capacity.checked_mul(size_of::<T>()).unwrap_or_else(|| capacity_overflow());
        let align = if bytes >= HUGE_PAGE { HUGE_PAGE } else { LINE };
        Layout::from_size_align(bytes, align).unwrap_or_else(|_| capacity_overflow())
    }

    /// Moves the elements into a buffer of exactly `capacity` (at least `len`) elements.
    fn reallocate(&mut self, capacity: usize) {
        debug_assert!(capacity >= self.len);
        let ptr = if capacity == 0 {
            NonNull::dangling()
        } else {
            let layout = Self::layout(capacity);
            // SAFETY: `layout` has a non-zero size (`capacity > 0`, `T` is not zero-sized).
            let raw = unsafe { alloc(layout) };
            let Some(ptr) = NonNull::new(raw.cast::<T>()) else { handle_alloc_error(layout) };
            if layout.align() == HUGE_PAGE {
                // SAFETY: the range is the buffer just allocated, not yet written; MADV_HUGEPAGE
                // changes only how the kernel backs it, never its contents; a refusal is harmless.
                #[cfg(target_os = "linux")]
                unsafe {
                    libc::madvise(raw.cast(), layout.size() / HUGE_PAGE * HUGE_PAGE, libc::MADV_HUGEPAGE)
                };
            }
            // SAFETY: both buffers hold at least `len` elements and do not overlap; `T: Plain`
            // makes a bytewise copy a valid value.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len) };
            ptr
        };
        self.free();
        self.ptr = ptr;
        self.capacity = capacity;
    }

    fn free(&mut self) {
        if self.capacity > 0 {
            // SAFETY: `ptr` was allocated by `reallocate` with this very layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.capacity)) };
        }
    }

    /// Makes room for `additional` more elements (at least doubling, so appends are amortised
    /// O(1)).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len.checked_add(additional).unwrap_or_else(|| capacity_overflow());
        if needed > self.capacity {
            self.reallocate(needed.max(self.capacity * 2).max(LINE / size_of::<T>().min(LINE)));
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        self.reserve(1);
        // SAFETY: `reserve` made room for one more element at `len`.
        unsafe { self.ptr.as_ptr().add(self.len).write(item) };
        self.len += 1;
    }

    /// Appends bytewise copies of `items` (valid values: `T: Plain`).
    pub(crate) fn extend_from_slice(&mut self, items: &[T]) {
        self.reserve(items.len());
        // SAFETY: room for `items.len()` more elements after `len`; `items` cannot overlap the
        // spare capacity, which no slice has been handed out for.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), self.ptr.as_ptr().add(self.len), items.len()) };
        self.len += items.len();
    }

    /// Sets the length to `len`, filling new elements with `value`.
    pub(crate) fn resize(&mut self, len: usize, value: T)
    where
        T: Copy,
    {
        if len <= self.len {
            self.len = len;
        } else {
            self.extend(std::iter::repeat_n(value, len - self.len));
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        if self.capacity > self.len {
            self.reallocate(self.len);
        }
    }
}

#[cold]
fn capacity_overflow() -> ! {
    panic!("array capacity overflow")
}

impl<T: Plain> Default for AlignedVec<T> {
    fn default() -> Self {
        AlignedVec::new()
    }
}

impl<T: Plain> Extend<T> for AlignedVec<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        let items = items.into_iter();
        self.reserve(items.size_hint().0);
        for item in items {
            self.push(item);
        }
    }
}

impl<T: Plain> Deref for AlignedVec<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` elements are initialised; `ptr` is valid (dangling only when
        // `len` is 0, which a slice allows).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> DerefMut for AlignedVec<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> Drop for AlignedVec<T> {
    fn drop(&mut self) {
        // `T: Plain` has no drop glue: freeing the buffer is all.
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_rows_are_the_rows_the_order_names() {
        let (width, first, count) = (3, 5, 1_000);
        let rows: Vec<u32> = (0..(first + count) * width).map(|x| x as u32).collect();
        // A permutation of many cycles, of every length up to 200 (and fixed points).
        let mut order: Vec<u32> = Vec::new();
        let mut next = first as u32;
        for length in 1.. {
            let end = (next + length).min((first + count) as u32);
            order.extend((next + 1..end).chain(std::iter::once(next)));
            next = end;
            if next as usize == first + count {
                break;
            }
        }
        let mut array = Array::from(rows.clone());
        array.permute_rows(width, first, &order);
        assert_eq!(array[..first * width], rows[..first * width], "rows before `first` stay");
        for (j, &from) in order.iter().enumerate() {
            let row = &array[(first + j) * width..][..width];
            assert_eq!(row, &rows[from as usize * width..][..width], "row {}", first + j);
        }
    }

    #[test]
    fn heap_arrays_start_on_a_cache_line_and_large_ones_on_a_huge_page() {
        let mut small = AlignedVec::<u16>::new();
        let mut large = AlignedVec::<u32>::new();
        for i in 0..400_000u32 {
            small.push(i as u16);
            large.extend([i, !i]);
            assert_eq!(small.as_ptr() as usize % LINE, 0);
            assert_eq!(large.as_ptr() as usize % LINE, 0);
        }
        assert_eq!(large.as_ptr() as usize % HUGE_PAGE, 0, "{} bytes", large.capacity * 4);
        assert!(small.iter().enumerate().all(|(i, &x)| x == i as u16));
        assert!(large.chunks(2).enumerate().all(|(i, pair)| pair == [i as u32, !(i as u32)]));
    }

    #[test]
    fn aligned_vec_copies_resizes_and_shrinks_like_a_vec() {
        let mut items = AlignedVec::copy_of(&[1u64, 2, 3]);
        items.resize(5, 9);
        assert_eq!(&*items, &[1, 2, 3, 9, 9]);
        items.resize(2, 0);
        items.extend_from_slice(&[7, 8]);
        assert_eq!(&*items, &[1, 2, 7, 8]);
        items.reserve(1000);
        assert!(items.capacity >= 1004);
        items.shrink_to_fit();
        assert_eq!((items.capacity, &*items), (4, &[1u64, 2, 7, 8][..]));
        items.resize(0, 0);
        items.shrink_to_fit();
        assert!(items.is_empty());
        let array: Array<u64> = vec![4, 5].into();
        assert_eq!(&*array, &[4, 5]);
        assert_eq!(array.heap_bytes() % 8, 0);
    }
}
