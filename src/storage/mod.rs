//! How the engine's large arrays sit in memory. (Files come here with durable storage.)

use std::mem::MaybeUninit;

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
