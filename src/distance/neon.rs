//! NEON kernels for aarch64, where NEON is part of the baseline (no run-time detection needed).

use std::arch::aarch64::*;

use super::{same_length, widen, Kernels};

pub(super) const KERNELS: Kernels = Kernels { name: "neon", dot, l2sq, dot_coarse, l2sq_coarse };

/// Four f32 lanes from four f32 values.
///
/// # Safety
/// Four floats must be readable at `p`.
#[inline(always)]
unsafe fn load4_f32(p: *const f32) -> float32x4_t {
    // SAFETY: the caller guarantees 4 readable floats; NEON is mandatory on aarch64.
    unsafe { vld1q_f32(p) }
}

/// Four f32 lanes from four bfloat16 high halves (shifted into place, low halves zero).
///
/// # Safety
/// Four u16 must be readable at `p`.
#[inline(always)]
unsafe fn load4_coarse(p: *const u16) -> float32x4_t {
    // SAFETY: the caller guarantees 4 readable u16; NEON is mandatory on aarch64.
    unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p))) }
}

fn same(x: f32) -> f32 {
    x
}

macro_rules! neon_kernel {
    ($name:ident, $b:ty, $load_b:expr, $widen:expr, $step:expr, $tail:expr) => {
        fn $name(a: &[f32], b: &[$b]) -> f32 {
            same_length(a.len(), b.len());
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            // SAFETY: NEON is mandatory on aarch64; every load reads 4 elements at an offset
            // `o` with `o + 4 <= n`, inside both slices.
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    for (lane, sum) in acc.iter_mut().enumerate() {
                        *sum = $step(*sum, load4_f32(pa.add(i + 4 * lane)), $load_b(pb.add(i + 4 * lane)));
                    }
                    i += 16;
                }
                while i + 4 <= n {
                    acc[0] = $step(acc[0], load4_f32(pa.add(i)), $load_b(pb.add(i)));
                    i += 4;
                }
                let mut result = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
                for j in i..n {
                    result += $tail(a[j], $widen(b[j]));
                }
                result
            }
        }
    };
}

macro_rules! neon_kernels {
    ($dot:ident, $l2:ident, $b:ty, $load_b:expr, $widen:expr) => {
        neon_kernel!($dot, $b, $load_b, $widen, |acc, x, y| vfmaq_f32(acc, x, y), |x: f32, y: f32| x * y);
        neon_kernel!(
            $l2,
            $b,
            $load_b,
            $widen,
            |acc, x, y| {
                let d = vsubq_f32(x, y);
                vfmaq_f32(acc, d, d)
            },
            |x: f32, y: f32| (x - y) * (x - y)
        );
    };
}

neon_kernels!(dot, l2sq, f32, load4_f32, same);
neon_kernels!(dot_coarse, l2sq_coarse, u16, load4_coarse, widen);
