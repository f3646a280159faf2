//! Binary codes with an unbiased distance estimate: RaBitQ (Gao & Long, SIGMOD 2024).
//!
//! Symbols as in the paper: a segment's vectors are centred on their mean `c` (`o_r = o − c`) and
//! turned by a random orthogonal rotation `P` (`r = P o_r`, padded to `D`, a multiple of 64
//! dimensions); the code is the sign of each rotated component, `x_b = [r_i > 0]`. With
//! `x̄ = (2 x_b − 1)/√D`, the estimate `⟨o_r, q_r⟩ ≈ |o_r| ⟨x̄, q'⟩ / ⟨x̄, r/|r|⟩` (`q' = P q_r`) is
//! unbiased, with an error that shrinks as `1/√D`. Rewritten for the bits:
//!
//! `⟨o_r, q_r⟩ ≈ |r|² / Σ|r_i| · (2 ⟨x_b, q'⟩ − Σ q'_i)`
//!
//! The factor `|r|²/Σ|r_i|` is stored beside each code, so the estimate costs one bit product.
//! The query is quantised to 4 bits a dimension (`B_q = 4` in the paper: `q'_i ≈ low + step ·
//! u_i`), so `⟨x_b, q'⟩ ≈ low · |x_b| + step · Σ_j 2^j popcount(x_b ∧ plane_j)`: four popcounts a
//! 64-dimension word.
//!
//! Unlike the sign of `x − mean` that binary codes were before, the estimate keeps each vector's
//! length and angle to the query, so it ranks within a tight cluster (where every vector shares
//! its signs) and serves the inner product too.
//!
//! The rotation is a Kac walk of fast Walsh-Hadamard transforms: each round flips signs and
//! transforms the first `B` components (`B` the largest power of two within `D`), then flips
//! again and transforms the last `B`. O(D log D) a query, exact in any f32 arithmetic order that
//! the tests compare against, and stored as its signs alone.

use crate::distance::{self, Metric};

/// Rounds of the rotation: each mixes every component with `B` others twice.
const ROUNDS: usize = 3;

/// Bytes after a code's bits: `|o_r|²`, `|r|²/Σ|r_i|`, `⟨o_r, c⟩`, `|x_b|`, as little-endian f32.
pub(super) const FACTOR_BYTES: usize = 16;

/// Bits a query component is quantised to.
pub(super) const QUERY_BITS: usize = 4;

/// Dimensions after padding: whole 64-bit words of code.
pub(super) fn padded(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

/// A random orthogonal map of `padded(dim)` dimensions, kept as the signs of its flips.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Rotation {
    padded: usize,
    /// `2 · ROUNDS` vectors of `padded` signs (±1): one before each half-round.
    signs: Vec<f32>,
}

impl Rotation {
    /// The rotation drawn from `seed`.
    pub(super) fn new(dim: usize, seed: u64) -> Rotation {
        let padded = padded(dim);
        let mut state = seed;
        let signs = (0..2 * ROUNDS * padded)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                if (z ^ (z >> 31)) & 1 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        Rotation { padded, signs }
    }

    /// The rotation whose signs are `signs`, or `None` unless they are `2 · ROUNDS · padded(dim)`
    /// values of ±1.
    pub(super) fn from_signs(dim: usize, signs: &[f32]) -> Option<Rotation> {
        let padded = padded(dim);
        (signs.len() == 2 * ROUNDS * padded && signs.iter().all(|&s| s == 1.0 || s == -1.0))
            .then(|| Rotation { padded, signs: signs.to_vec() })
    }

    pub(super) fn signs(&self) -> &[f32] {
        &self.signs
    }

    /// Replaces `x` by `P x` (`padded` values; `x` is zero-padded first), transforming with
    /// `walsh_hadamard` (a kernel build of the function below: every build gives the same bits).
    pub(super) fn apply(&self, out: &mut Vec<f32>, walsh_hadamard: fn(&mut [f32])) {
        out.resize(self.padded, 0.0);
        let block = 1usize << (usize::BITS - 1 - self.padded.leading_zeros());
        for (round, signs) in self.signs.chunks_exact(self.padded).enumerate() {
            out.iter_mut().zip(signs).for_each(|(x, s)| *x *= s);
            let start = if round % 2 == 0 { 0 } else { self.padded - block };
            walsh_hadamard(&mut out[start..start + block]);
        }
    }
}

/// The orthonormal Walsh-Hadamard transform of `x` (a power of two long), in place: the
/// reference, and the body the kernels compile with their target features.
///
/// Plain loops, no iterator adapters: whatever is not inlined into a caller runs without the
/// caller's target features. The first
/// three stages (pairs 1, 2 and 4 apart) stay within eight neighbouring values: they run
/// together per chunk of eight, the same additions in the same order as stage by stage, and
/// the later stages are runs of adjacent values, which vectorise.
#[inline(always)]
pub(super) fn walsh_hadamard(x: &mut [f32]) {
    walsh_hadamard_with(x, |x| {
        for chunk in x.chunks_exact_mut(8) {
            // In a local array, which the compiler keeps in registers: through memory, the
            // scalar stores of one stage would stall the vector loads of the next (each a
            // failed store forward).
            let mut v = [0f32; 8];
            v.copy_from_slice(chunk);
            for half in [1, 2, 4] {
                for start in (0..8).step_by(2 * half) {
                    for i in start..start + half {
                        let (a, b) = (v[i], v[i + half]);
                        v[i] = a + b;
                        v[i + half] = a - b;
                    }
                }
            }
            chunk.copy_from_slice(&v);
        }
        8
    });
}

/// `walsh_hadamard` with its first stages by `first`, which runs them on `x` (at least eight
/// values) and returns the partner distance of the stage after them: the kernels' own, in
/// registers, where the compiler made the reference's eight-value stages into scalar adds and
/// inserts.
#[inline(always)]
pub(super) fn walsh_hadamard_with(x: &mut [f32], first: impl FnOnce(&mut [f32]) -> usize) {
    let n = x.len();
    let mut half = 1;
    if n >= 8 {
        half = first(x);
    }
    while half < n {
        for pair in x.chunks_exact_mut(2 * half) {
            let (a, b) = pair.split_at_mut(half);
            for i in 0..half {
                let (sum, difference) = (a[i] + b[i], a[i] - b[i]);
                a[i] = sum;
                b[i] = difference;
            }
        }
        half *= 2;
    }
    let scale = 1.0 / (n as f32).sqrt();
    for v in x.iter_mut() {
        *v *= scale;
    }
}

/// Writes the code of `row` (bits, then the factors) into `out`, which holds
/// `padded/8 + FACTOR_BYTES` zeroed bytes; `walsh_hadamard` as in `Rotation::apply`.
pub(super) fn encode(rotation: &Rotation, centre: &[f32], row: &[f32], out: &mut [u8], walsh_hadamard: fn(&mut [f32])) {
    let mut rotated: Vec<f32> = row.iter().zip(centre).map(|(x, c)| x - c).collect();
    let centre_dot: f64 = rotated.iter().zip(centre).map(|(x, c)| f64::from(*x) * f64::from(*c)).sum();
    rotation.apply(&mut rotated, walsh_hadamard);
    let (bits, factors) = out.split_at_mut(rotation.padded / 8);
    let (mut norm, mut absolute, mut ones) = (0f64, 0f64, 0u32);
    for (i, &r) in rotated.iter().enumerate() {
        norm += f64::from(r) * f64::from(r);
        absolute += f64::from(r.abs());
        if r > 0.0 {
            bits[i / 8] |= 1 << (i % 8);
            ones += 1;
        }
    }
    // A vector at the centre has no direction: its factor is 0, and so is its estimate.
    let factor = if absolute > 0.0 { norm / absolute } else { 0.0 };
    for (slot, value) in factors.chunks_exact_mut(4).zip([norm, factor, centre_dot, f64::from(ones)]) {
        slot.copy_from_slice(&(value as f32).to_le_bytes());
    }
}

/// A query prepared for one segment's binary codes.
#[derive(Default)]
pub(super) struct Query {
    /// `QUERY_BITS` bit planes of the quantised `q'`, each `padded/64` words, lowest first.
    planes: Vec<u64>,
    low: f32,
    step: f32,
    /// `Σ q'_i`.
    sum: f32,
    /// `|q_r|²`.
    norm: f32,
    /// `⟨c, q⟩`.
    centre_dot: f32,
}

impl Query {
    pub(super) fn new(rotation: &Rotation, centre: &[f32], query: &[f32], walsh_hadamard: fn(&mut [f32])) -> Query {
        let mut rotated: Vec<f32> = query.iter().zip(centre).map(|(x, c)| x - c).collect();
        // The vector kernels for the sums (an iterator's `sum` is a chain of dependent adds).
        let dot = distance::best_kernels().dot;
        // |q_r|² before the rotation, which keeps it.
        let norm = dot(&rotated, &rotated);
        rotation.apply(&mut rotated, walsh_hadamard);
        let (low, high, sum) = range_and_sum(&rotated);
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let step = if high > low { (high - low) / levels } else { 1.0 };
        let inverse = 1.0 / step;
        let words = rotation.padded / 64;
        let mut planes = vec![0u64; QUERY_BITS * words];
        // Eight levels at a time, one a byte of a word; bit `j` of each byte is then gathered
        // into one byte of plane `j` by a multiplication (the eight shifted copies it adds never
        // overlap in the top byte, nor carry into it).
        for (group, eight) in rotated.chunks_exact(8).enumerate() {
            let mut bytes = 0u64;
            for (b, &x) in eight.iter().enumerate() {
                // Round half up by hand (`x ≥ low`; `f32::round` is a libm call on baseline
                // x86-64); the cast saturates at 0 and `min` caps at the top level.
                let level = ((x - low) * inverse + 0.5).min(levels) as u8;
                bytes |= u64::from(level) << (8 * b);
            }
            let (word, shift) = (group / 8, 8 * (group % 8));
            for (bit, plane) in planes.chunks_exact_mut(words).enumerate() {
                let gathered = ((bytes >> bit) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56;
                plane[word] |= gathered << shift;
            }
        }
        Query { planes, low, step, sum, norm, centre_dot: dot(query, centre) }
    }

    /// One standard deviation of the error of the estimate under `metric` for a code whose
    /// last `FACTOR_BYTES` bytes are `factors` (`f₀..f₃` as in `estimate`).
    ///
    /// The paper's error bound: `⟨x̄, q'⟩ / ⟨x̄, r/|r|⟩` errs from `⟨o_r, q_r⟩ / |o_r|`
    /// by `√((1 − ⟨ō, o⟩²) / ⟨ō, o⟩²) · |q_r| / √(D − 1)` (one deviation), where
    /// `⟨ō, o⟩ = Σ|r_i| / (√D |r|)`; times `|o_r| = |r|` that is `√(D f₁² − f₀) |q_r| / √(D − 1)`.
    /// The query's rounding to `QUERY_BITS` adds up to `step / 2` to each of the `f₃` components
    /// the bits select (a deviation of `step / √12` each), which the estimate doubles and scales
    /// by `f₁`. The two add as deviations (not as variances), erring on the wide side. L2 counts
    /// `⟨o_r, q_r⟩` twice.
    pub(super) fn deviation(&self, metric: Metric, factors: &[u8]) -> f32 {
        let dims = (self.planes.len() / QUERY_BITS * 64) as f32;
        if dims < 2.0 {
            return f32::INFINITY;
        }
        let (f0, f1, f3) = (factor(factors, 0), factor(factors, 1), factor(factors, 3));
        let code = ((dims * f1 * f1 - f0).max(0.0) * self.norm / (dims - 1.0)).sqrt();
        let rounding = 2.0 * f1 * self.step * (f3 / 12.0).sqrt();
        let inner = if metric == Metric::L2 { 2.0 } else { 1.0 };
        inner * (code + rounding)
    }

    /// The query's bit planes, as the `bit_planes` kernels take them.
    pub(super) fn planes(&self) -> &[u64] {
        &self.planes
    }

    /// The estimate under `metric` of the distance to a code, from its bit-plane count (a
    /// `bit_planes` kernel's) and its factors.
    ///
    /// `⟨o_r, q_r⟩ ≈ f₁ (2 ⟨x_b, q'⟩ − Σ q'_i)` with `⟨x_b, q'⟩ ≈ low · |x_b| + step · count`
    /// (`f₀..f₃` the factors `encode` stores: `|o_r|²`, `|r|²/Σ|r_i|`, `⟨o_r, c⟩`, `|x_b|`), and
    /// `⟨o, q⟩ = ⟨o_r, q_r⟩ + ⟨o_r, c⟩ + ⟨c, q⟩`. So L2, `|o_r|² + |q_r|² − 2 ⟨o_r, q_r⟩`, and the
    /// cosine and inner-product distances, `1 − ⟨o, q⟩` and `−⟨o, q⟩`, are each
    /// `f₁ (ones_weight · f₃ + count_weight · count + offset) + norm_weight · f₀ +
    /// centre_weight · f₂ + bias` (`BitEstimate`'s fields).
    pub(super) fn estimate(&self, metric: Metric) -> BitEstimate {
        // `inner` multiplies `⟨o_r, q_r⟩`; `centre` multiplies `⟨o_r, c⟩ + ⟨c, q⟩`.
        let (inner, norm_weight, centre, bias) = match metric {
            Metric::L2 => (-2.0, 1.0, 0.0, self.norm),
            Metric::Cosine => (-1.0, 0.0, -1.0, 1.0),
            Metric::InnerProduct => (-1.0, 0.0, -1.0, 0.0),
        };
        BitEstimate {
            ones_weight: inner * 2.0 * self.low,
            count_weight: inner * 2.0 * self.step,
            offset: -inner * self.sum,
            norm_weight,
            centre_weight: centre,
            bias: bias + centre * self.centre_dot,
        }
    }
}

/// A binary code's estimated distance, in one affine form of its bit-plane count and the
/// factors after its bits (`Query::estimate`), which the batch kernels finish as they go, while
/// the code's line is loaded, where a second pass over the nodes read every line again. With
/// the kernels counting exactly four planes, one graph on an Intel Xeon: npm51k binary +7-10%
/// queries/s with VPOPCNTDQ, +17% with scalar `popcnt`.
///
/// cbindgen:ignore
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BitEstimate {
    ones_weight: f32,
    count_weight: f32,
    offset: f32,
    norm_weight: f32,
    centre_weight: f32,
    bias: f32,
}

/// cbindgen:ignore
impl BitEstimate {
    /// The estimate for a code whose bits have bit-plane count `count` and whose last
    /// `FACTOR_BYTES` bytes are `factors`: the same operations in the same order in every kernel,
    /// so every kernel gives the same bits.
    #[inline(always)]
    pub(crate) fn of(self, count: u32, factors: &[u8]) -> f32 {
        let inner = self.ones_weight * factor(factors, 3) + self.count_weight * count as f32 + self.offset;
        factor(factors, 1) * inner
            + self.norm_weight * factor(factors, 0)
            + self.centre_weight * factor(factors, 2)
            + self.bias
    }
}

/// Factor `i` of a code's `FACTOR_BYTES` (`encode`'s order).
#[inline(always)]
fn factor(factors: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([factors[4 * i], factors[4 * i + 1], factors[4 * i + 2], factors[4 * i + 3]])
}

/// The least, the greatest and the sum of `x`, in sixteen lanes (one dependent chain of
/// `x.len()` compares or adds would cost a binary query's preparation more than its rotation).
pub(super) fn range_and_sum(x: &[f32]) -> (f32, f32, f32) {
    let (mut low, mut high, mut sum) = ([f32::INFINITY; 16], [f32::NEG_INFINITY; 16], [0f32; 16]);
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for i in 0..16 {
            low[i] = if chunk[i] < low[i] { chunk[i] } else { low[i] };
            high[i] = if chunk[i] > high[i] { chunk[i] } else { high[i] };
            sum[i] += chunk[i];
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        low[i] = low[i].min(v);
        high[i] = high[i].max(v);
        sum[i] += v;
    }
    let low = low.iter().copied().fold(f32::INFINITY, f32::min);
    let high = high.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (low, high, sum.iter().sum())
}

/// Reference for the `bit_planes` kernels: `Σ_j 2^j popcount(code ∧ plane_j)` over the
/// `code.len()/8` little-endian words of `code`.
#[inline(always)]
pub(super) fn bit_planes(planes: &[u64], code: &[u8]) -> u32 {
    let words = code.len() / 8;
    let mut total = 0;
    for (bit, plane) in planes.chunks_exact(words.max(1)).enumerate() {
        let count: u32 = plane
            .iter()
            .zip(code.chunks_exact(8))
            .map(|(&p, c)| (p & u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).count_ones())
            .sum();
        total += count << bit;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_keeps_lengths_and_angles() {
        for dim in [1, 63, 64, 100, 128, 384, 1000] {
            let rotation = Rotation::new(dim, 5);
            let a: Vec<f32> = (0..dim).map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0).collect();
            let b: Vec<f32> = (0..dim).map(|i| ((i * 11 % 13) as f32 - 6.0) / 2.0).collect();
            let (mut ra, mut rb) = (a.clone(), b.clone());
            rotation.apply(&mut ra, walsh_hadamard);
            rotation.apply(&mut rb, walsh_hadamard);
            let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| f64::from(p * q)).sum::<f64>();
            for (before, after) in [(dot(&a, &a), dot(&ra, &ra)), (dot(&a, &b), dot(&ra, &rb))] {
                assert!((before - after).abs() <= 1e-4 * (1.0 + before.abs()), "dim {dim}: {before} vs {after}");
            }
            assert_eq!(Rotation::from_signs(dim, rotation.signs()), Some(rotation.clone()));
            assert_eq!(Rotation::from_signs(dim + 64, rotation.signs()), None);
        }
    }

    #[test]
    fn every_kernel_build_transforms_to_the_same_bits_as_stage_by_stage() {
        // The textbook order: one stage at a time over the whole vector.
        fn stage_by_stage(x: &mut [f32]) {
            let mut half = 1;
            while half < x.len() {
                for start in (0..x.len()).step_by(2 * half) {
                    for i in start..start + half {
                        let (a, b) = (x[i], x[i + half]);
                        x[i] = a + b;
                        x[i + half] = a - b;
                    }
                }
                half *= 2;
            }
            let scale = 1.0 / (x.len() as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= scale);
        }
        for n in [1usize, 2, 4, 8, 16, 32, 64, 256, 512, 1024] {
            let input: Vec<f32> = (0..n).map(|i| ((i * 7919 % 101) as f32 - 50.0) / 7.0).collect();
            let mut want = input.clone();
            stage_by_stage(&mut want);
            for kernels in crate::quant::available() {
                let mut got = input.clone();
                (kernels.walsh_hadamard)(&mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{} n {n}", kernels.name);
            }
        }
    }

    #[test]
    fn query_bit_planes_hold_each_rounded_level() {
        for dim in [5, 64, 384, 1000] {
            let rotation = Rotation::new(dim, 3);
            let centre = vec![0.0; dim];
            let query: Vec<f32> = (0..dim).map(|i| ((i * 31 % 23) as f32 - 11.0) / 5.0).collect();
            let prepared = Query::new(&rotation, &centre, &query, walsh_hadamard);
            let mut rotated = query.clone();
            rotation.apply(&mut rotated, walsh_hadamard);
            let words = padded(dim) / 64;
            for (i, &x) in rotated.iter().enumerate() {
                let level = ((x - prepared.low) / prepared.step).round().clamp(0.0, 15.0) as u64;
                let stored: u64 =
                    (0..QUERY_BITS).map(|bit| ((prepared.planes[bit * words + i / 64] >> (i % 64)) & 1) << bit).sum();
                assert_eq!(stored, level, "dim {dim} component {i}");
            }
            let sum: f32 = rotated.iter().sum();
            assert!((prepared.sum - sum).abs() <= 1e-4 * (1.0 + sum.abs()));
            assert_eq!(prepared.low, rotated.iter().copied().fold(f32::INFINITY, f32::min));
        }
    }

    /// Uniform values in [-1, 1) from `seed`.
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn the_estimate_is_close_to_the_true_inner_product() {
        let dim = 384;
        let mut next = uniform(3);
        let centre: Vec<f32> = (0..dim).map(|_| next() * 0.1).collect();
        let rotation = Rotation::new(dim, 9);
        let query: Vec<f32> = (0..dim).map(|_| next()).collect();
        let prepared = Query::new(&rotation, &centre, &query, walsh_hadamard);
        let mut errors = Vec::new();
        for _ in 0..200 {
            let row: Vec<f32> = (0..dim).map(|_| next()).collect();
            let mut code = vec![0u8; padded(dim) / 8 + FACTOR_BYTES];
            encode(&rotation, &centre, &row, &mut code, walsh_hadamard);
            let (bits, factors) = code.split_at(code.len() - FACTOR_BYTES);
            let count = bit_planes(&prepared.planes, bits);
            let l2 = prepared.estimate(Metric::L2).of(count, factors);
            let dot = -prepared.estimate(Metric::InnerProduct).of(count, factors);
            let exact_dot: f32 = row.iter().zip(&query).map(|(a, b)| a * b).sum();
            let exact_l2: f32 = row.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum();
            // Both estimates err by the same amount: twice the inner product's under L2.
            assert!(((exact_l2 - l2) - 2.0 * (dot - exact_dot)).abs() < 1e-2 * exact_l2);
            errors.push(f64::from(dot - exact_dot));
        }
        // Unbiased, and within a few |o||q|/√D (here |o||q| is about 128).
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let spread = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        assert!(mean.abs() < 2.0 && spread < 12.0, "mean error {mean}, spread {spread}");
    }

    #[test]
    fn the_deviation_bounds_each_estimates_error() {
        let dim = 256;
        let mut next = uniform(5);
        let centre = vec![0.0; dim];
        let rotation = Rotation::new(dim, 4);
        let rows: Vec<Vec<f32>> = (0..500).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let (mut outside, mut pairs) = (0, 0);
        for _ in 0..20 {
            let query: Vec<f32> = (0..dim).map(|_| next()).collect();
            let prepared = Query::new(&rotation, &centre, &query, walsh_hadamard);
            for metric in [Metric::L2, Metric::InnerProduct] {
                for row in &rows {
                    let mut code = vec![0u8; padded(dim) / 8 + FACTOR_BYTES];
                    encode(&rotation, &centre, row, &mut code, walsh_hadamard);
                    let (bits, factors) = code.split_at(code.len() - FACTOR_BYTES);
                    let estimate = prepared.estimate(metric).of(bit_planes(&prepared.planes, bits), factors);
                    let exact = match metric {
                        Metric::L2 => row.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                        _ => -row.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>(),
                    };
                    let deviation = prepared.deviation(metric, factors);
                    // Informative: a deviation is a few percent of the distances' own spread
                    // (|o| |q| is about 85 here, so √D puts it near 85 / 16).
                    let scale = if metric == Metric::L2 { 2.0 } else { 1.0 };
                    assert!(deviation > 0.0 && deviation < scale * 8.0, "{metric:?}: deviation {deviation}");
                    outside += usize::from((estimate - exact).abs() > 4.0 * deviation);
                    pairs += 1;
                }
            }
        }
        // Four deviations of a near-normal error leave out about 6 in 100,000.
        assert!(outside * 1000 <= pairs, "{outside} of {pairs} estimates err by more than four deviations");
    }
}
