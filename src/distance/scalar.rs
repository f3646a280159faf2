//! Portable kernels: the reference every SIMD variant is tested against, and the fallback.
//! Eight independent accumulators let the compiler keep several FMA chains in flight.

use super::widen;

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

pub(super) fn dot_coarse(a: &[f32], high: &[u16]) -> f32 {
    let n = a.len().min(high.len());
    let (a, high) = (&a[..n], &high[..n]);
    let mut acc = [0.0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_h = high.chunks_exact(8);
    for (x, h) in (&mut chunks_a).zip(&mut chunks_h) {
        for i in 0..8 {
            acc[i] += x[i] * widen(h[i]);
        }
    }
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_h.remainder()).map(|(x, &h)| x * widen(h)).sum();
    acc.iter().sum::<f32>() + tail
}

pub(super) fn l2sq_coarse(a: &[f32], high: &[u16]) -> f32 {
    let n = a.len().min(high.len());
    let (a, high) = (&a[..n], &high[..n]);
    let mut acc = [0.0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_h = high.chunks_exact(8);
    for (x, h) in (&mut chunks_a).zip(&mut chunks_h) {
        for i in 0..8 {
            let d = x[i] - widen(h[i]);
            acc[i] += d * d;
        }
    }
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_h.remainder()).map(|(x, &h)| (x - widen(h)).powi(2)).sum();
    acc.iter().sum::<f32>() + tail
}
