//! AVX2+FMA and AVX-512F kernels for x86_64.
//!
//! Each public kernel is a safe `fn` that checks both slices have the same length and then calls a
//! `#[target_feature]` body. Those wrappers are private to this module and handed out only by
//! [`detected`], after the CPU has reported the feature: that is the invariant every `SAFETY` note
//! below relies on.

use std::arch::x86_64::*;

use super::{same_length, widen, Kernels};

/// The kernels this CPU supports, in increasing order of preference.
pub(super) fn detected() -> Vec<Kernels> {
    let mut found = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        found.push(Kernels {
            name: "avx2+fma",
            dot: |a, b| avx2(a, b, dot_avx2),
            l2sq: |a, b| avx2(a, b, l2sq_avx2),
            dot_coarse: |a, b| avx2(a, b, dot_coarse_avx2),
            l2sq_coarse: |a, b| avx2(a, b, l2sq_coarse_avx2),
        });
    }
    if is_x86_feature_detected!("avx512f") {
        found.push(Kernels {
            name: "avx512f",
            dot: |a, b| avx512(a, b, dot_avx512),
            l2sq: |a, b| avx512(a, b, l2sq_avx512),
            dot_coarse: |a, b| avx512(a, b, dot_coarse_avx512),
            l2sq_coarse: |a, b| avx512(a, b, l2sq_coarse_avx512),
        });
    }
    found
}

#[inline(always)]
pub(super) fn prefetch<T>(data: &[T]) {
    // SAFETY: prefetching is only a hint and cannot fault; the pointer comes from a live slice
    // and SSE (which provides the instruction) is part of the x86_64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().cast()) }
}

/// Runs an AVX2 body on `a` and `b`, which must have the same length.
#[inline(always)]
fn avx2<B>(a: &[f32], b: &[B], body: unsafe fn(&[f32], &[B]) -> f32) -> f32 {
    same_length(a.len(), b.len());
    // SAFETY: only reachable through the table `detected` builds after seeing avx2 and fma;
    // both slices have the same length (checked above).
    unsafe { body(a, b) }
}

/// Runs an AVX-512 body on `a` and `b`, which must have the same length.
#[inline(always)]
fn avx512<B>(a: &[f32], b: &[B], body: unsafe fn(&[f32], &[B]) -> f32) -> f32 {
    same_length(a.len(), b.len());
    // SAFETY: only reachable through the table `detected` builds after seeing avx512f; both
    // slices have the same length (checked above).
    unsafe { body(a, b) }
}

/// Eight f32 lanes from eight f32 values.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8_f32(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 8 readable floats at `p`; unaligned loads accept any address.
    unsafe { _mm256_loadu_ps(p) }
}

/// Eight f32 lanes from eight bfloat16 high halves (shifted into place, low halves zero).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8_coarse(p: *const u16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable u16 at `p`; unaligned loads accept any address.
    let halves = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(halves)))
}

/// Sixteen f32 lanes from sixteen f32 values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16_f32(p: *const f32) -> __m512 {
    // SAFETY: the caller guarantees 16 readable floats at `p`; unaligned loads accept any address.
    unsafe { _mm512_loadu_ps(p) }
}

/// Sixteen f32 lanes from sixteen bfloat16 high halves.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16_coarse(p: *const u16) -> __m512 {
    // SAFETY: the caller guarantees 16 readable u16 at `p`; unaligned loads accept any address.
    let halves = unsafe { _mm256_loadu_si256(p.cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves)))
}

/// Horizontal sum of eight lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn sum256(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let single = _mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair));
    _mm_cvtss_f32(single)
}

/// Generates a kernel body: `$load` turns `$width` elements of `b` into one register,
/// `$step(acc, x, y)` folds a register pair into an accumulator, `$tail(x, y)` one scalar pair.
/// Four accumulators keep four FMA chains in flight; `$widen` maps a `b` element to f32.
macro_rules! kernel {
    ($name:ident, $feature:literal, $b:ty, $width:literal, $zero:expr, $load_a:expr, $load_b:expr,
     $step:expr, $add:expr, $sum:expr, $widen:expr, $tail:expr) => {
        /// # Safety
        /// The CPU must support the target feature, and `a.len() == b.len()`.
        #[target_feature(enable = $feature)]
        unsafe fn $name(a: &[f32], b: &[$b]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [$zero; 4];
            let mut i = 0;
            while i + 4 * $width <= n {
                for (lane, sum) in acc.iter_mut().enumerate() {
                    let offset = i + $width * lane;
                    // SAFETY: `offset + $width <= i + 4 * $width <= n`, inside both slices.
                    let (x, y) = unsafe { ($load_a(pa.add(offset)), $load_b(pb.add(offset))) };
                    *sum = $step(*sum, x, y);
                }
                i += 4 * $width;
            }
            while i + $width <= n {
                // SAFETY: `i + $width <= n`, inside both slices.
                let (x, y) = unsafe { ($load_a(pa.add(i)), $load_b(pb.add(i))) };
                acc[0] = $step(acc[0], x, y);
                i += $width;
            }
            let mut result = $sum($add($add(acc[0], acc[1]), $add(acc[2], acc[3])));
            for j in i..n {
                result += $tail(a[j], $widen(b[j]));
            }
            result
        }
    };
}

fn same(x: f32) -> f32 {
    x
}

fn product(x: f32, y: f32) -> f32 {
    x * y
}

fn squared_difference(x: f32, y: f32) -> f32 {
    (x - y) * (x - y)
}

macro_rules! avx2_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr, $widen:expr) => {
        kernel!(
            $dot,
            "avx2,fma",
            $b,
            8,
            _mm256_setzero_ps(),
            load8_f32,
            $load_b,
            |acc, x, y| _mm256_fmadd_ps(x, y, acc),
            _mm256_add_ps,
            sum256,
            $widen,
            product
        );
        kernel!(
            $l2,
            "avx2,fma",
            $b,
            8,
            _mm256_setzero_ps(),
            load8_f32,
            $load_b,
            |acc, x, y| {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            },
            _mm256_add_ps,
            sum256,
            $widen,
            squared_difference
        );
    };
}

macro_rules! avx512_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr, $widen:expr) => {
        kernel!(
            $dot,
            "avx512f",
            $b,
            16,
            _mm512_setzero_ps(),
            load16_f32,
            $load_b,
            |acc, x, y| _mm512_fmadd_ps(x, y, acc),
            _mm512_add_ps,
            _mm512_reduce_add_ps,
            $widen,
            product
        );
        kernel!(
            $l2,
            "avx512f",
            $b,
            16,
            _mm512_setzero_ps(),
            load16_f32,
            $load_b,
            |acc, x, y| {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            },
            _mm512_add_ps,
            _mm512_reduce_add_ps,
            $widen,
            squared_difference
        );
    };
}

avx2_kernels!(dot_avx2, l2sq_avx2, f32, load8_f32, same);
avx2_kernels!(dot_coarse_avx2, l2sq_coarse_avx2, u16, load8_coarse, widen);
avx512_kernels!(dot_avx512, l2sq_avx512, f32, load16_f32, same);
avx512_kernels!(dot_coarse_avx512, l2sq_coarse_avx512, u16, load16_coarse, widen);
