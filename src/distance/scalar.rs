//! Portable kernels: the reference every SIMD variant is tested against, and the fallback.
//! Eight independent accumulators let the compiler keep several FMA chains in flight.

use super::{same_length, Halves, Operand};

/// Sums `term(a[i], b.value(i))` over `a` and `b`, of equal lengths.
#[inline(always)]
fn fold(a: &[f32], b: impl Operand, term: impl Fn(f32, f32) -> f32) -> f32 {
    same_length(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let mut chunks = a.chunks_exact(8);
    for (c, x) in (&mut chunks).enumerate() {
        let y = b.eight(8 * c);
        for i in 0..8 {
            acc[i] += term(x[i], y[i]);
        }
    }
    let done = a.len() - chunks.remainder().len();
    let tail: f32 = chunks.remainder().iter().enumerate().map(|(i, &x)| term(x, b.value(done + i))).sum();
    acc.iter().sum::<f32>() + tail
}

fn product(x: f32, y: f32) -> f32 {
    x * y
}

fn squared_difference(x: f32, y: f32) -> f32 {
    (x - y) * (x - y)
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, product)
}

pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, squared_difference)
}

pub(super) fn dot_coarse(a: &[f32], high: &[u16]) -> f32 {
    fold(a, high, product)
}

pub(super) fn l2sq_coarse(a: &[f32], high: &[u16]) -> f32 {
    fold(a, high, squared_difference)
}

pub(super) fn dot_halves(a: &[f32], high: &[u16], low: &[u16]) -> f32 {
    fold(a, Halves::new(high, low), product)
}

pub(super) fn l2sq_halves(a: &[f32], high: &[u16], low: &[u16]) -> f32 {
    fold(a, Halves::new(high, low), squared_difference)
}
