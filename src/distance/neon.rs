//! NEON kernels for aarch64, where NEON is part of the baseline (no run-time detection needed).

use std::arch::aarch64::*;

use super::Kernels;

pub(super) const KERNELS: Kernels = Kernels { name: "neon", dot, l2sq };

macro_rules! neon_kernel {
    ($name:ident, $step:expr, $tail:expr) => {
        fn $name(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            // SAFETY: NEON is mandatory on aarch64; every load reads 4 floats at `i` with
            // `i + 4 <= n`, inside both slices.
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    for (lane, sum) in acc.iter_mut().enumerate() {
                        *sum = $step(*sum, vld1q_f32(pa.add(i + 4 * lane)), vld1q_f32(pb.add(i + 4 * lane)));
                    }
                    i += 16;
                }
                while i + 4 <= n {
                    acc[0] = $step(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                    i += 4;
                }
                let mut result = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
                for j in i..n {
                    result += $tail(a[j], b[j]);
                }
                result
            }
        }
    };
}

neon_kernel!(dot, |acc, x, y| vfmaq_f32(acc, x, y), |x: f32, y: f32| x * y);
neon_kernel!(
    l2sq,
    |acc, x, y| {
        let d = vsubq_f32(x, y);
        vfmaq_f32(acc, d, d)
    },
    |x: f32, y: f32| (x - y) * (x - y)
);
