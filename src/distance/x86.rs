//! AVX2+FMA and AVX-512F kernels for x86_64.
//!
//! Each public kernel is a safe `fn` that clips both slices to their common length and then calls a
//! `#[target_feature]` body. Those wrappers are private to this module and handed out only by
//! [`detected`], after the CPU has reported the feature: that is the invariant every `SAFETY` note
//! below relies on.

use std::arch::x86_64::*;

use super::Kernels;

/// The kernels this CPU supports, in increasing order of preference.
pub(super) fn detected() -> Vec<Kernels> {
    let mut found = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        found.push(Kernels { name: "avx2+fma", dot: dot_avx2, l2sq: l2sq_avx2 });
    }
    if is_x86_feature_detected!("avx512f") {
        found.push(Kernels { name: "avx512f", dot: dot_avx512, l2sq: l2sq_avx512 });
    }
    found
}

#[inline(always)]
pub(super) fn prefetch<T>(data: &[T]) {
    // SAFETY: prefetching is only a hint and cannot fault; the pointer comes from a live slice
    // and SSE (which provides the instruction) is part of the x86_64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().cast()) }
}

fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: handed out by `detected` only when avx2 and fma are present; both slices hold `n` floats.
    unsafe { dot_avx2_body(&a[..n], &b[..n]) }
}

fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: handed out by `detected` only when avx2 and fma are present; both slices hold `n` floats.
    unsafe { l2sq_avx2_body(&a[..n], &b[..n]) }
}

fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: handed out by `detected` only when avx512f is present; both slices hold `n` floats.
    unsafe { dot_avx512_body(&a[..n], &b[..n]) }
}

fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: handed out by `detected` only when avx512f is present; both slices hold `n` floats.
    unsafe { l2sq_avx512_body(&a[..n], &b[..n]) }
}

/// Horizontal sum of eight lanes.
#[target_feature(enable = "avx2")]
fn sum256(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let single = _mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair));
    _mm_cvtss_f32(single)
}

/// Generates an AVX2 kernel: `$step(acc, x, y)` folds eight lanes, `$tail(x, y)` one scalar pair.
macro_rules! avx2_kernel {
    ($name:ident, $step:expr, $tail:expr) => {
        /// # Safety
        /// The CPU must support avx2 and fma, and `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (lane, sum) in acc.iter_mut().enumerate() {
                    let (x, y) =
                        // SAFETY: the loop condition keeps `i + lane_offset + width <= n`, inside both slices.
                        unsafe { (_mm256_loadu_ps(pa.add(i + 8 * lane)), _mm256_loadu_ps(pb.add(i + 8 * lane))) };
                    *sum = $step(*sum, x, y);
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: the loop condition keeps `i + width <= n`, inside both slices.
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                acc[0] = $step(acc[0], x, y);
                i += 8;
            }
            let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut result = sum256(total);
            for j in i..n {
                result += $tail(a[j], b[j]);
            }
            result
        }
    };
}

avx2_kernel!(dot_avx2_body, |acc, x, y| _mm256_fmadd_ps(x, y, acc), |x: f32, y: f32| x * y);
avx2_kernel!(
    l2sq_avx2_body,
    |acc, x, y| {
        let d = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(d, d, acc)
    },
    |x: f32, y: f32| (x - y) * (x - y)
);

/// Generates an AVX-512 kernel; the tail uses masked loads, so there is no scalar loop.
macro_rules! avx512_kernel {
    ($name:ident, $step:expr) => {
        /// # Safety
        /// The CPU must support avx512f, and `a.len() == b.len()`.
        #[target_feature(enable = "avx512f")]
        unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= n {
                for (lane, sum) in acc.iter_mut().enumerate() {
                    let (x, y) =
                        // SAFETY: the loop condition keeps `i + lane_offset + width <= n`, inside both slices.
                        unsafe { (_mm512_loadu_ps(pa.add(i + 16 * lane)), _mm512_loadu_ps(pb.add(i + 16 * lane))) };
                    *sum = $step(*sum, x, y);
                }
                i += 64;
            }
            while i + 16 <= n {
                // SAFETY: the loop condition keeps `i + width <= n`, inside both slices.
                let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
                acc[0] = $step(acc[0], x, y);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u16 << (n - i)) - 1;
                let (x, y) =
                    // SAFETY: the mask enables only the `n - i < 16` lanes inside both slices; masked-off
                    // lanes are never read.
                    unsafe { (_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i))) };
                acc[1] = $step(acc[1], x, y);
            }
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
        }
    };
}

avx512_kernel!(dot_avx512_body, |acc, x, y| _mm512_fmadd_ps(x, y, acc));
avx512_kernel!(l2sq_avx512_body, |acc, x, y| {
    let d = _mm512_sub_ps(x, y);
    _mm512_fmadd_ps(d, d, acc)
});
