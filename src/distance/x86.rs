//! AVX2+FMA and AVX-512F kernels for x86_64.
//!
//! Each public kernel is a safe `fn` that checks both operands have the same length and then
//! calls a `#[target_feature]` body. Those wrappers are private to this module and handed out
//! only by [`detected`], after the CPU has reported the feature: that is the invariant every
//! `SAFETY` note below relies on.

use std::arch::x86_64::*;

use super::{same_length, Halves, Kernels, Operand};

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
            dot_halves: |a, high, low| avx2(a, Halves::new(high, low), dot_halves_avx2),
            l2sq_halves: |a, high, low| avx2(a, Halves::new(high, low), l2sq_halves_avx2),
        });
    }
    if is_x86_feature_detected!("avx512f") {
        found.push(Kernels {
            name: "avx512f",
            dot: |a, b| avx512(a, b, dot_avx512),
            l2sq: |a, b| avx512(a, b, l2sq_avx512),
            dot_coarse: |a, b| avx512(a, b, dot_coarse_avx512),
            l2sq_coarse: |a, b| avx512(a, b, l2sq_coarse_avx512),
            dot_halves: |a, high, low| avx512(a, Halves::new(high, low), dot_halves_avx512),
            l2sq_halves: |a, high, low| avx512(a, Halves::new(high, low), l2sq_halves_avx512),
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
fn avx2<B: Operand>(a: &[f32], b: B, body: unsafe fn(&[f32], B) -> f32) -> f32 {
    same_length(a.len(), b.len());
    // SAFETY: only reachable through the table `detected` builds after seeing avx2 and fma;
    // both operands have the same length (checked above).
    unsafe { body(a, b) }
}

/// Runs an AVX-512 body on `a` and `b`, which must have the same length.
#[inline(always)]
fn avx512<B: Operand>(a: &[f32], b: B, body: unsafe fn(&[f32], B) -> f32) -> f32 {
    same_length(a.len(), b.len());
    // SAFETY: only reachable through the table `detected` builds after seeing avx512f; both
    // operands have the same length (checked above).
    unsafe { body(a, b) }
}

// The loads below read `N` values of an operand from `offset` on, as `N` f32 lanes. Unaligned
// loads accept any address; each caller guarantees `offset + N <= len` (SAFETY notes in
// `kernel!`), which is what makes each load's read in bounds.

/// Eight f32 lanes from eight f32 values.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8_f32(b: &[f32], offset: usize) -> __m256 {
    // SAFETY: 8 floats are readable from `offset` (the caller's guarantee).
    unsafe { _mm256_loadu_ps(b.as_ptr().add(offset)) }
}

/// Eight f32 lanes from eight bfloat16 high halves, shifted into place (low halves zero).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8_coarse(high: &[u16], offset: usize) -> __m256 {
    // SAFETY: 8 u16 are readable from `offset` (the caller's guarantee).
    let high = unsafe { _mm_loadu_si128(high.as_ptr().add(offset).cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(high)))
}

/// Eight f32 lanes joined from eight high and eight low halves.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load8_halves(b: Halves<'_>, offset: usize) -> __m256 {
    // SAFETY: 8 u16 are readable from `offset` in both slices, of equal length (the caller's
    // guarantee and `Halves::new`'s check).
    let (high, low) = unsafe {
        (_mm_loadu_si128(b.high.as_ptr().add(offset).cast()), _mm_loadu_si128(b.low.as_ptr().add(offset).cast()))
    };
    let high = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(high));
    _mm256_castsi256_ps(_mm256_or_si256(high, _mm256_cvtepu16_epi32(low)))
}

/// Sixteen f32 lanes from sixteen f32 values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16_f32(b: &[f32], offset: usize) -> __m512 {
    // SAFETY: 16 floats are readable from `offset` (the caller's guarantee).
    unsafe { _mm512_loadu_ps(b.as_ptr().add(offset)) }
}

/// Sixteen f32 lanes from sixteen bfloat16 high halves.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16_coarse(high: &[u16], offset: usize) -> __m512 {
    // SAFETY: 16 u16 are readable from `offset` (the caller's guarantee).
    let high = unsafe { _mm256_loadu_si256(high.as_ptr().add(offset).cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(high)))
}

/// Sixteen f32 lanes joined from sixteen high and sixteen low halves.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16_halves(b: Halves<'_>, offset: usize) -> __m512 {
    // SAFETY: 16 u16 are readable from `offset` in both slices, of equal length (the caller's
    // guarantee and `Halves::new`'s check).
    let (high, low) = unsafe {
        (_mm256_loadu_si256(b.high.as_ptr().add(offset).cast()), _mm256_loadu_si256(b.low.as_ptr().add(offset).cast()))
    };
    let high = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(high));
    _mm512_castsi512_ps(_mm512_or_si512(high, _mm512_cvtepu16_epi32(low)))
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

/// Generates a kernel body: `$load_a` and `$load_b` turn `$width` values of `a` and of `b` (from
/// an offset) into one register each, `$step(acc, x, y)` folds a register pair into an
/// accumulator, `$tail(x, y)` one scalar pair. Four accumulators keep four FMA chains in flight.
macro_rules! kernel {
    ($name:ident, $feature:literal, $b:ty, $width:literal, $zero:expr, $load_a:expr, $load_b:expr,
     $step:expr, $add:expr, $sum:expr, $tail:expr) => {
        /// # Safety
        /// The CPU must support the target feature, and `a.len() == b.len()`.
        #[target_feature(enable = $feature)]
        unsafe fn $name(a: &[f32], b: $b) -> f32 {
            let n = a.len();
            let mut acc = [$zero; 4];
            let mut i = 0;
            while i + 4 * $width <= n {
                for (lane, sum) in acc.iter_mut().enumerate() {
                    let offset = i + $width * lane;
                    // SAFETY: `offset + $width <= i + 4 * $width <= n`, inside both operands.
                    let (x, y) = unsafe { ($load_a(a, offset), $load_b(b, offset)) };
                    *sum = $step(*sum, x, y);
                }
                i += 4 * $width;
            }
            while i + $width <= n {
                // SAFETY: `i + $width <= n`, inside both operands.
                let (x, y) = unsafe { ($load_a(a, i), $load_b(b, i)) };
                acc[0] = $step(acc[0], x, y);
                i += $width;
            }
            let mut result = $sum($add($add(acc[0], acc[1]), $add(acc[2], acc[3])));
            for j in i..n {
                result += $tail(a[j], b.value(j));
            }
            result
        }
    };
}

fn product(x: f32, y: f32) -> f32 {
    x * y
}

fn squared_difference(x: f32, y: f32) -> f32 {
    (x - y) * (x - y)
}

macro_rules! avx2_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr) => {
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
            squared_difference
        );
    };
}

macro_rules! avx512_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr) => {
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
            squared_difference
        );
    };
}

avx2_kernels!(dot_avx2, l2sq_avx2, &[f32], load8_f32);
avx2_kernels!(dot_coarse_avx2, l2sq_coarse_avx2, &[u16], load8_coarse);
avx2_kernels!(dot_halves_avx2, l2sq_halves_avx2, Halves<'_>, load8_halves);
avx512_kernels!(dot_avx512, l2sq_avx512, &[f32], load16_f32);
avx512_kernels!(dot_coarse_avx512, l2sq_coarse_avx512, &[u16], load16_coarse);
avx512_kernels!(dot_halves_avx512, l2sq_halves_avx512, Halves<'_>, load16_halves);
