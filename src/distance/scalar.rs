//! Portable kernels: the reference every SIMD variant is tested against, and the fallback.
//! Eight independent accumulators let the compiler keep several FMA chains in flight.

use super::{same_length, widen};

/// Sums `term(a[i], value(b[i]))` over `a` and `b`, of equal lengths.
#[inline(always)]
fn fold<B: Copy>(a: &[f32], b: &[B], value: impl Fn(B) -> f32, term: impl Fn(f32, f32) -> f32) -> f32 {
    same_length(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        for i in 0..8 {
            acc[i] += term(x[i], value(y[i]));
        }
    }
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(&x, &y)| term(x, value(y))).sum();
    acc.iter().sum::<f32>() + tail
}

fn product(x: f32, y: f32) -> f32 {
    x * y
}

fn squared_difference(x: f32, y: f32) -> f32 {
    (x - y) * (x - y)
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |y| y, product)
}

pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |y| y, squared_difference)
}

pub(super) fn dot_coarse(a: &[f32], high: &[u16]) -> f32 {
    fold(a, high, widen, product)
}

pub(super) fn l2sq_coarse(a: &[f32], high: &[u16]) -> f32 {
    fold(a, high, widen, squared_difference)
}
