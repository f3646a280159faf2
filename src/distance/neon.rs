//! NEON kernels for aarch64, where NEON is part of the baseline (no run-time detection needed).

use std::arch::aarch64::*;

use super::{same_length, Halves, Kernels, Operand};

pub(super) const KERNELS: Kernels = Kernels {
    name: "neon",
    dot,
    l2sq,
    dot_coarse,
    l2sq_coarse,
    dot_halves: |a, high, low| dot_halves(a, Halves::new(high, low)),
    l2sq_halves: |a, high, low| l2sq_halves(a, Halves::new(high, low)),
};

// The loads below read four values of an operand from `offset` on, as four f32 lanes. Each
// caller guarantees `offset + 4 <= len` (the SAFETY note in `neon_kernel!`); NEON is mandatory
// on aarch64.

/// Four f32 lanes from four f32 values.
///
/// # Safety
/// Four floats must be readable from `offset`.
#[inline(always)]
unsafe fn load4_f32(b: &[f32], offset: usize) -> float32x4_t {
    // SAFETY: the caller guarantees 4 readable floats from `offset`.
    unsafe { vld1q_f32(b.as_ptr().add(offset)) }
}

/// Four f32 lanes from four bfloat16 high halves (shifted into place, low halves zero).
///
/// # Safety
/// Four u16 must be readable from `offset`.
#[inline(always)]
unsafe fn load4_coarse(high: &[u16], offset: usize) -> float32x4_t {
    // SAFETY: the caller guarantees 4 readable u16 from `offset`.
    unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(high.as_ptr().add(offset)))) }
}

/// Four f32 lanes joined from four high and four low halves.
///
/// # Safety
/// Four u16 must be readable from `offset` in both slices.
#[inline(always)]
unsafe fn load4_halves(b: Halves<'_>, offset: usize) -> float32x4_t {
    // SAFETY: the caller guarantees 4 readable u16 from `offset` in both slices.
    unsafe {
        let (high, low) = (vld1_u16(b.high.as_ptr().add(offset)), vld1_u16(b.low.as_ptr().add(offset)));
        vreinterpretq_f32_u32(vorrq_u32(vshll_n_u16::<16>(high), vmovl_u16(low)))
    }
}

macro_rules! neon_kernel {
    ($name:ident, $b:ty, $load_b:expr, $step:expr, $tail:expr) => {
        fn $name(a: &[f32], b: $b) -> f32 {
            same_length(a.len(), b.len());
            let n = a.len();
            // SAFETY: NEON is mandatory on aarch64; every load reads 4 values at an offset
            // `o` with `o + 4 <= n`, inside both operands.
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    for (lane, sum) in acc.iter_mut().enumerate() {
                        *sum = $step(*sum, load4_f32(a, i + 4 * lane), $load_b(b, i + 4 * lane));
                    }
                    i += 16;
                }
                while i + 4 <= n {
                    acc[0] = $step(acc[0], load4_f32(a, i), $load_b(b, i));
                    i += 4;
                }
                let mut result = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
                for j in i..n {
                    result += $tail(a[j], b.value(j));
                }
                result
            }
        }
    };
}

macro_rules! neon_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr) => {
        neon_kernel!($dot, $b, $load_b, |acc, x, y| vfmaq_f32(acc, x, y), |x: f32, y: f32| x * y);
        neon_kernel!(
            $l2,
            $b,
            $load_b,
            |acc, x, y| {
                let d = vsubq_f32(x, y);
                vfmaq_f32(acc, d, d)
            },
            |x: f32, y: f32| (x - y) * (x - y)
        );
    };
}

neon_kernels!(dot, l2sq, &[f32], load4_f32);
neon_kernels!(dot_coarse, l2sq_coarse, &[u16], load4_coarse);
neon_kernels!(dot_halves, l2sq_halves, Halves<'_>, load4_halves);
