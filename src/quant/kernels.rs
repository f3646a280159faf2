//! Code kernels: weighted sums over 8-bit and 4-bit codes, bit-plane popcounts over binary
//! codes, and the Walsh-Hadamard transform that rotates vectors for binary codes.
//!
//! The portable versions are the reference the SIMD ones are tested against, and the fallback.

use super::rabitq::{bit_planes, walsh_hadamard, BitEstimate, FACTOR_BYTES};
use super::{CodeRows, Estimate};
use crate::distance::permitted;

/// One instruction-set build of every code kernel.
#[derive(Clone, Copy, Debug)]
pub struct QuantKernels {
    pub name: &'static str,
    /// `Σ w_i c_i` over 8-bit codes.
    pub dot_u8: fn(&[f32], &[u8]) -> f32,
    /// `Σ w_i c_i` over 4-bit codes packed 32 dimensions to 16 bytes (low nibbles first).
    pub dot_u4: fn(&[f32], &[u8]) -> f32,
    /// Binary codes' estimates from `Σ_j 2^j popcount(code ∧ plane_j)`: their bits
    /// (little-endian words) against a query's `QUERY_BITS` bit planes, as many words each,
    /// lowest first; over many nodes' codes at once.
    pub bit_planes: BitPlanesKernel,
    /// The orthonormal Walsh-Hadamard transform in place (a power of two long): the same
    /// additions in the same order in every build, so every build gives the same bits.
    pub walsh_hadamard: fn(&mut [f32]),
    /// `Σ w_i c_i` in exact integers over 8-bit codes and i8 weights within
    /// `±u8_weight_limit` (AVX-512 VNNI and AVX-VNNI: `vpdpbusd`; AVX2: `vpmaddubsw`, whose
    /// 16-bit pair sums saturate beyond 64 · 255 · 2), over many nodes' codes at once.
    pub dot_u8_i8: Option<IntegerKernel>,
    /// The same over 4-bit codes (any i8 weights), with the weights in `group_nibbles` order.
    pub dot_u4_i8: Option<IntegerKernel>,
    /// The largest weight magnitude `dot_u8_i8` takes.
    pub u8_weight_limit: i8,
}

/// Weighted sums with i8 weights over the codes of many nodes, each exact in i32 and then
/// converted and finished by `estimate`: `out[i] = estimate.of(Σ w_j c_j, |x̂|²)` over the code
/// (and norm) of `nodes[i]` in `rows`. While one node's code is summed, what the estimate reads
/// of the node `ahead` places on (its code and norm) loads.
///
/// One call an expansion rather than one a node: in a walk whose codes are cached, the
/// indirect call, the dispatch on the code's kind and the spills around each call cost about
/// as much as the sum itself.
pub type IntegerKernel =
    fn(weights: &[i8], rows: CodeRows<'_>, nodes: &[u32], ahead: usize, estimate: Estimate, out: &mut [f32]);

/// The estimates `estimate.of(Σ_j 2^j popcount(bits ∧ plane_j), factors)` for the binary codes
/// of many nodes (each code its `bits`, then its factors): `out[i]` for `nodes[i]` in `rows`,
/// loading ahead as `IntegerKernel` does, and for the same reason. `planes` holds `QUERY_BITS`
/// planes of as many words as a code's bits.
pub type BitPlanesKernel =
    fn(planes: &[u64], rows: CodeRows<'_>, nodes: &[u32], ahead: usize, estimate: BitEstimate, out: &mut [f32]);

/// The loop of every batch kernel: `out[i] = distance(code of nodes[i], norm of nodes[i])`,
/// loading the codes and norms of the nodes `ahead` places on meanwhile. The estimate is
/// finished here, where the node's norm was loaded with its code, rather than in a second pass
/// over the nodes, whose norm loads stalled (5% of a 1M 4-bit search). One graph, both
/// interleaved: 4-bit +4.7% on 10,000 of npm51k, +3.4% on npm51k, +2-3% at 1M clustered; 8-bit
/// in cache within noise.
#[inline(always)]
fn each_code(rows: CodeRows<'_>, nodes: &[u32], ahead: usize, out: &mut [f32], distance: impl Fn(&[u8], f32) -> f32) {
    for &node in nodes.iter().take(ahead) {
        rows.prefetch(node);
    }
    for (i, (&node, out)) in nodes.iter().zip(out.iter_mut()).enumerate() {
        if let Some(&next) = nodes.get(i + ahead) {
            rows.prefetch(next);
        }
        *out = distance(rows.code(node), rows.norm(node));
    }
}

/// `each_code` for binary codes: `count` gives a code's bit-plane count from its bits, which
/// `estimate` finishes with the factors after them.
#[inline(always)]
fn each_binary_code(
    rows: CodeRows<'_>,
    nodes: &[u32],
    ahead: usize,
    estimate: BitEstimate,
    out: &mut [f32],
    count: impl Fn(&[u8]) -> u32,
) {
    each_code(rows, nodes, ahead, out, |code, _| {
        let (bits, factors) = code.split_at(code.len() - FACTOR_BYTES);
        estimate.of(count(bits), factors)
    });
}

/// The reference `bit_planes` over many codes.
fn bit_planes_batch(
    planes: &[u64],
    rows: CodeRows<'_>,
    nodes: &[u32],
    ahead: usize,
    estimate: BitEstimate,
    out: &mut [f32],
) {
    each_binary_code(rows, nodes, ahead, estimate, out, |bits| bit_planes(planes, bits));
}

/// Reorders weights (natural dimension order, a multiple of 64 long) the way the integer 4-bit
/// kernels unpack codes. A 64-dimension group of codes (32 bytes, two 16-byte blocks) holds dims
/// 0-15 and 32-47 in its low nibbles and dims 16-31 and 48-63 in its high ones. Groups go in
/// pairs, one 64-byte load: first the weights of both groups' low nibbles, then of both groups'
/// high nibbles, so that each half of the pair meets its weights in one 64-byte load; a last
/// group without a pair has its low nibbles' weights, then its high nibbles'.
pub(crate) fn group_nibbles(weights: &[i8]) -> Vec<i8> {
    let groups = weights.len() / 64;
    let mut grouped = vec![0; groups * 64];
    for (g, group) in weights.chunks_exact(64).enumerate() {
        let (low, high) = nibble_weights(g, groups);
        for (at, [first, second]) in [(low, [0..16, 32..48]), (high, [16..32, 48..64])] {
            grouped[at..at + 16].copy_from_slice(&group[first]);
            grouped[at + 16..at + 32].copy_from_slice(&group[second]);
        }
    }
    grouped
}

/// Where the weights of 64-dimension group `g`'s low and high nibbles start in `group_nibbles`
/// order, of `groups` groups.
#[inline(always)]
fn nibble_weights(g: usize, groups: usize) -> (usize, usize) {
    let (pair, second) = (g / 2, g % 2);
    let paired = 2 * pair + 1 < groups;
    let low = 128 * pair + 32 * second;
    (low, low + if paired { 64 } else { 32 })
}

/// Reference for `dot_u8_i8`, and the AVX2 kernels' tails of fewer than 32 dimensions.
#[cfg(any(test, target_arch = "x86_64"))]
pub(super) fn dot_u8_i8_reference(w: &[i8], c: &[u8]) -> i32 {
    w.iter().zip(c).map(|(&w, &c)| i32::from(w) * i32::from(c)).sum()
}

/// Reference for `dot_u4_i8`: weights in `group_nibbles` order.
#[cfg(test)]
pub(super) fn dot_u4_i8_reference(w: &[i8], c: &[u8]) -> i32 {
    let groups = (w.len() / 64).min(c.len() / 32);
    let mut sum = 0;
    for (g, cg) in c.chunks_exact(32).take(groups).enumerate() {
        let (low, high) = nibble_weights(g, groups);
        let dot = |at: usize, shift: u8| {
            w[at..at + 32].iter().zip(cg).map(|(&w, &b)| i32::from(w) * i32::from((b >> shift) & 0xF)).sum::<i32>()
        };
        sum += dot(low, 0) + dot(high, 4);
    }
    sum
}

#[inline(always)]
fn dot_u8(w: &[f32], c: &[u8]) -> f32 {
    let n = w.len().min(c.len());
    let (w, c) = (&w[..n], &c[..n]);
    let mut acc = [0f32; 16];
    let (mut wc, mut cc) = (w.chunks_exact(16), c.chunks_exact(16));
    for (x, y) in (&mut wc).zip(&mut cc) {
        for i in 0..16 {
            acc[i] += x[i] * f32::from(y[i]);
        }
    }
    let tail: f32 = wc.remainder().iter().zip(cc.remainder()).map(|(&x, &y)| x * f32::from(y)).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_u4(w: &[f32], c: &[u8]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, y) in w.chunks_exact(32).zip(c.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * f32::from(y[i] & 0xF) + x[16 + i] * f32::from(y[i] >> 4);
        }
    }
    acc.iter().sum()
}

const SCALAR: QuantKernels = QuantKernels {
    name: "scalar",
    dot_u8,
    dot_u4,
    bit_planes: bit_planes_batch,
    walsh_hadamard,
    dot_u8_i8: None,
    dot_u4_i8: None,
    u8_weight_limit: 127,
};

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Hand-written AVX2, AVX-VNNI and AVX-512 bodies: f32 weights over codes widened to f32,
    //! exact integer sums (`vpdpbusd`, `vpmaddubsw`), bit-plane counts, and the Walsh-Hadamard
    //! transform, with several sums in flight. Each safe wrapper is handed
    //! out only by `detected`, after the CPU reported the features: the invariant every `SAFETY`
    //! note below relies on.
    use std::arch::x86_64::*;

    use super::{
        dot_u8_i8_reference, each_binary_code, each_code, nibble_weights, BitEstimate, BitPlanesKernel, CodeRows,
        Estimate, IntegerKernel, QuantKernels,
    };
    use crate::distance::sum256;
    use crate::quant::rabitq::{walsh_hadamard_with, FACTOR_BYTES, QUERY_BITS};

    /// # Safety
    /// The CPU supports AVX-512F; `c` holds at least `w.len()` bytes is not required (clipped).
    #[target_feature(enable = "avx512f")]
    unsafe fn dot_u8_avx512(w: &[f32], c: &[u8]) -> f32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`: 32 weights and 32 codes are readable; loads are unaligned.
            unsafe {
                let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i).cast())));
                let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i + 16).cast())));
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(i)), c0, acc0);
                acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(i + 16)), c1, acc1);
            }
            i += 32;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for j in i..n {
            sum += w[j] * f32::from(c[j]);
        }
        sum
    }

    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn dot_u4_avx512(w: &[f32], c: &[u8]) -> f32 {
        let blocks = (w.len() / 32).min(c.len() / 16);
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let low = _mm_set1_epi8(0x0F);
        for b in 0..blocks {
            // SAFETY: `b < blocks`: 32 weights at `32 b` and 16 bytes at `16 b` are readable.
            unsafe {
                let bytes = _mm_loadu_si128(pc.add(16 * b).cast());
                let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(bytes, low)));
                let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16::<4>(bytes), low)));
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(32 * b)), lo, acc0);
                acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(32 * b + 16)), hi, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_u8_avx2(w: &[f32], c: &[u8]) -> f32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: `i + 16 <= n`: 16 weights and 16 codes are readable; loads are unaligned.
            unsafe {
                let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(i).cast())));
                let c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(i + 8).cast())));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(i)), c0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(i + 8)), c1, acc1);
            }
            i += 16;
        }
        let mut sum = sum256(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += w[j] * f32::from(c[j]);
        }
        sum
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_u4_avx2(w: &[f32], c: &[u8]) -> f32 {
        let blocks = (w.len() / 32).min(c.len() / 16);
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let low = _mm_set1_epi8(0x0F);
        for b in 0..blocks {
            // SAFETY: `b < blocks`: 32 weights at `32 b` and 16 bytes at `16 b` are readable.
            unsafe {
                let bytes = _mm_loadu_si128(pc.add(16 * b).cast());
                let lo = _mm_and_si128(bytes, low);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), low);
                let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
                for (k, part) in parts.into_iter().enumerate() {
                    let codes = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(part));
                    acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(32 * b + 8 * k)), codes, acc[k]);
                }
            }
        }
        sum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])))
    }

    /// # Safety
    /// The CPU supports AVX-512F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_u8_vnni(w: &[i8], c: &[u8]) -> i32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        // Two sums, so that consecutive steps do not wait on each other's `vpdpbusd` (5 cycles).
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 128 <= n {
            // SAFETY: `i + 128 <= n`: 128 codes and 128 weights are readable; loads are unaligned.
            unsafe {
                let (c0, w0) = (_mm512_loadu_si512(pc.add(i).cast()), _mm512_loadu_si512(pw.add(i).cast()));
                let (c1, w1) = (_mm512_loadu_si512(pc.add(i + 64).cast()), _mm512_loadu_si512(pw.add(i + 64).cast()));
                acc0 = _mm512_dpbusd_epi32(acc0, c0, w0);
                acc1 = _mm512_dpbusd_epi32(acc1, c1, w1);
            }
            i += 128;
        }
        while i < n {
            // Whole 64-byte steps, then one masked step for the tail: masked-off bytes are
            // neither read nor counted.
            let mask: __mmask64 = if n - i >= 64 { !0 } else { (1u64 << (n - i)) - 1 };
            // SAFETY: the mask covers only bytes `i..n`, inside both slices.
            unsafe {
                let codes = _mm512_maskz_loadu_epi8(mask, pc.add(i).cast());
                let weights = _mm512_maskz_loadu_epi8(mask, pw.add(i).cast());
                acc0 = _mm512_dpbusd_epi32(acc0, codes, weights);
            }
            i += 64;
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1))
    }

    /// # Safety
    /// The CPU supports AVX-512F, BW and VNNI, and AVX2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
    unsafe fn dot_u4_vnni(w: &[i8], c: &[u8]) -> i32 {
        let groups = (w.len() / 64).min(c.len() / 32);
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let low = _mm512_set1_epi8(0x0F);
        // Two sums, as in `dot_u8_vnni`: the low and the high nibbles.
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        // A pair of groups a step: 64 code bytes, their low nibbles against the first 64 weights
        // of the pair, their high nibbles against the next 64 (`group_nibbles`).
        let pairs = groups / 2;
        for p in 0..pairs {
            // SAFETY: `2 p + 1 < groups`: 64 code bytes at `64 p` and 128 weights at `128 p`
            // are readable.
            unsafe {
                let bytes = _mm512_loadu_si512(pc.add(64 * p).cast());
                let lo = _mm512_and_si512(bytes, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), low);
                acc0 = _mm512_dpbusd_epi32(acc0, lo, _mm512_loadu_si512(pw.add(128 * p).cast()));
                acc1 = _mm512_dpbusd_epi32(acc1, hi, _mm512_loadu_si512(pw.add(128 * p + 64).cast()));
            }
        }
        if groups % 2 == 1 {
            // The last group alone: its 32 bytes widened to 64 nibbles, against its 64 weights.
            // SAFETY: group `2 pairs` exists: 32 code bytes at `64 pairs` and 64 weights at
            // `128 pairs` are readable.
            unsafe {
                let bytes = _mm256_loadu_si256(pc.add(64 * pairs).cast());
                let low_half = _mm512_castsi512_si256(low);
                let lo = _mm256_and_si256(bytes, low_half);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low_half);
                let nibbles = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                acc0 = _mm512_dpbusd_epi32(acc0, nibbles, _mm512_loadu_si512(pw.add(128 * pairs).cast()));
            }
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1))
    }

    /// # Safety
    /// The CPU supports AVX2; every weight is within ±64, so no pair sum of `vpmaddubsw`
    /// (at most 2 · 255 · 64 = 32,640) saturates.
    #[target_feature(enable = "avx2")]
    unsafe fn dot_u8_maddubs(w: &[i8], c: &[u8]) -> i32 {
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let ones = _mm256_set1_epi16(1);
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: `i + 64 <= n`: 64 codes and 64 weights are readable; loads are unaligned.
            unsafe {
                let p0 =
                    _mm256_maddubs_epi16(_mm256_loadu_si256(pc.add(i).cast()), _mm256_loadu_si256(pw.add(i).cast()));
                let p1 = _mm256_maddubs_epi16(
                    _mm256_loadu_si256(pc.add(i + 32).cast()),
                    _mm256_loadu_si256(pw.add(i + 32).cast()),
                );
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
                acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, ones));
            }
            i += 64;
        }
        if i + 32 <= n {
            // SAFETY: `i + 32 <= n`: 32 codes and 32 weights are readable.
            unsafe {
                let p =
                    _mm256_maddubs_epi16(_mm256_loadu_si256(pc.add(i).cast()), _mm256_loadu_si256(pw.add(i).cast()));
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p, ones));
            }
            i += 32;
        }
        sum256_epi32(_mm256_add_epi32(acc0, acc1)) + dot_u8_i8_reference(&w[i..n], &c[i..n])
    }

    /// # Safety
    /// The CPU supports AVX2. Nibbles (at most 15) times i8 weights never saturate a pair sum.
    #[target_feature(enable = "avx2")]
    unsafe fn dot_u4_maddubs(w: &[i8], c: &[u8]) -> i32 {
        let groups = (w.len() / 64).min(c.len() / 32);
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0F);
        // One group's sum: its 32 code bytes at `code`, the weights of its low and high nibbles
        // at `low_weights` and `high_weights` (`nibble_weights`).
        let group = |code: usize, low_weights: usize, high_weights: usize| {
            // SAFETY: callers pass a group below `groups` and its offsets from `nibble_weights`,
            // which lie within the `64 groups` weights: 32 bytes are readable at each.
            unsafe {
                let bytes = _mm256_loadu_si256(pc.add(code).cast());
                let lo = _mm256_and_si256(bytes, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low);
                // Each pair sum is within 2 · 15 · 128, so the two add up without saturating.
                let pairs = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, _mm256_loadu_si256(pw.add(low_weights).cast())),
                    _mm256_maddubs_epi16(hi, _mm256_loadu_si256(pw.add(high_weights).cast())),
                );
                _mm256_madd_epi16(pairs, ones)
            }
        };
        // Pairs of groups, then the last alone, without computing `nibble_weights` a group.
        let mut acc = _mm256_setzero_si256();
        let pairs = groups / 2;
        for p in 0..pairs {
            acc = _mm256_add_epi32(acc, group(64 * p, 128 * p, 128 * p + 64));
            acc = _mm256_add_epi32(acc, group(64 * p + 32, 128 * p + 32, 128 * p + 96));
        }
        if groups % 2 == 1 {
            let (low_weights, high_weights) = nibble_weights(2 * pairs, groups);
            acc = _mm256_add_epi32(acc, group(64 * pairs, low_weights, high_weights));
        }
        sum256_epi32(acc)
    }

    /// # Safety
    /// The CPU supports AVX2 and AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn dot_u8_avxvnni(w: &[i8], c: &[u8]) -> i32 {
        // `dot_u8_vnni` in 32-byte registers: Alder Lake and later clients, and the E-core
        // Xeons, have `vpdpbusd` without AVX-512. Four sums, as a step's `vpdpbusd` waits 4-5
        // cycles on the last, and no pair sum to saturate, so weights take the full ±127.
        let n = w.len().min(c.len());
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        while i + 128 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 128 <= n`: 32 codes and 32 weights at `i + 32 j` are readable.
                unsafe {
                    let (codes, weights) = (pc.add(i + 32 * j), pw.add(i + 32 * j));
                    *acc = _mm256_dpbusd_avx_epi32(
                        *acc,
                        _mm256_loadu_si256(codes.cast()),
                        _mm256_loadu_si256(weights.cast()),
                    );
                }
            }
            i += 128;
        }
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`: 32 codes and 32 weights are readable.
            unsafe {
                let (codes, weights) = (_mm256_loadu_si256(pc.add(i).cast()), _mm256_loadu_si256(pw.add(i).cast()));
                acc[0] = _mm256_dpbusd_avx_epi32(acc[0], codes, weights);
            }
            i += 32;
        }
        sum_of_four(acc) + dot_u8_i8_reference(&w[i..n], &c[i..n])
    }

    /// # Safety
    /// The CPU supports AVX2 and AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn dot_u4_avxvnni(w: &[i8], c: &[u8]) -> i32 {
        // `dot_u4_maddubs` with `vpdpbusd` in place of `vpmaddubsw`, `vpmaddwd` and the adds.
        let groups = (w.len() / 64).min(c.len() / 32);
        let (pw, pc) = (w.as_ptr(), c.as_ptr());
        let low = _mm256_set1_epi8(0x0F);
        // Four sums: each group's low and high nibbles, for the even and the odd groups.
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut group = |g: usize, low_weights: usize, high_weights: usize| {
            // SAFETY: callers pass a group below `groups` and its offsets from `nibble_weights`,
            // within the `64 groups` weights: 32 code bytes at `32 g` and 32 weights at each
            // offset are readable.
            unsafe {
                let bytes = _mm256_loadu_si256(pc.add(32 * g).cast());
                let lo = _mm256_and_si256(bytes, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low);
                let sums = &mut acc[2 * (g % 2)..];
                sums[0] = _mm256_dpbusd_avx_epi32(sums[0], lo, _mm256_loadu_si256(pw.add(low_weights).cast()));
                sums[1] = _mm256_dpbusd_avx_epi32(sums[1], hi, _mm256_loadu_si256(pw.add(high_weights).cast()));
            }
        };
        let pairs = groups / 2;
        for p in 0..pairs {
            group(2 * p, 128 * p, 128 * p + 64);
            group(2 * p + 1, 128 * p + 32, 128 * p + 96);
        }
        if groups % 2 == 1 {
            let (low_weights, high_weights) = nibble_weights(2 * pairs, groups);
            group(2 * pairs, low_weights, high_weights);
        }
        sum_of_four(acc)
    }

    /// The lanes of four sums of the AVX-VNNI kernels, added up.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum_of_four(acc: [__m256i; 4]) -> i32 {
        sum256_epi32(_mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3])))
    }

    #[inline(always)]
    fn sum256_epi32(v: __m256i) -> i32 {
        let mut lanes = [0i32; 8];
        // SAFETY: an unaligned store of 32 bytes into an 8-lane i32 array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        lanes.iter().sum()
    }

    /// The words of a binary code's bits that both it and the query's planes hold (they hold
    /// the same number, `padded / 64`): the kernels' loads stay within both whatever they hold.
    #[inline(always)]
    fn code_words(planes: &[u64], rows: CodeRows<'_>) -> usize {
        (rows.len.saturating_sub(FACTOR_BYTES) / 8).min(planes.len() / QUERY_BITS)
    }

    /// # Safety
    /// The CPU supports popcnt.
    #[target_feature(enable = "popcnt")]
    unsafe fn bit_planes_popcnt_batch(
        planes: &[u64],
        rows: CodeRows<'_>,
        nodes: &[u32],
        ahead: usize,
        estimate: BitEstimate,
        out: &mut [f32],
    ) {
        // Written out with the intrinsic: the reference's iterator closures are compiled outside
        // this function's target features, and there popcount is a dozen shifts and masks (a
        // third of a binary search's time on npm51k). The four planes are counted apart and
        // weighted once, where a loop over any number of planes divided and shifted by a
        // variable a node.
        let words = code_words(planes, rows);
        // Sliced one by one: `[0, 1, 2, 3].map` over a closure stayed a call with four calls
        // inside, for every batch (2% of a binary search on npm51k).
        let (p0, p1) = (&planes[..words], &planes[words..2 * words]);
        let (p2, p3) = (&planes[2 * words..3 * words], &planes[3 * words..4 * words]);
        each_binary_code(rows, nodes, ahead, estimate, out, |bits| {
            let mut counts = [0u64; QUERY_BITS];
            let words = bits.chunks_exact(8).zip(p0).zip(p1).zip(p2).zip(p3);
            for ((((word, &p0), &p1), &p2), &p3) in words {
                let word = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
                for (count, plane) in counts.iter_mut().zip([p0, p1, p2, p3]) {
                    *count += u64::from(_popcnt64((word & plane) as i64) as u32);
                }
            }
            (counts[0] + 2 * counts[1] + 4 * counts[2] + 8 * counts[3]) as u32
        });
    }

    /// `Σ_j 2^j popcount(bits ∧ plane_j)` lane by lane, for the four planes `p`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    fn weighted_counts(bits: __m512i, p: &[__m512i; QUERY_BITS]) -> __m512i {
        let count = |j: usize| _mm512_popcnt_epi64(_mm512_and_si512(bits, p[j]));
        let low = _mm512_add_epi64(count(0), _mm512_slli_epi64::<1>(count(1)));
        let high = _mm512_add_epi64(_mm512_slli_epi64::<2>(count(2)), _mm512_slli_epi64::<3>(count(3)));
        _mm512_add_epi64(low, high)
    }

    /// # Safety
    /// The CPU supports AVX-512F and VPOPCNTDQ.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn bit_planes_vpopcnt_batch(
        planes: &[u64],
        rows: CodeRows<'_>,
        nodes: &[u32],
        ahead: usize,
        estimate: BitEstimate,
        out: &mut [f32],
    ) {
        // Eight words of the code at a time against each plane, counted lane by lane, weighted
        // by shifting, and the lanes summed once at the end.
        let words = code_words(planes, rows);
        let pp = planes.as_ptr();
        let mask_from = |w: usize| -> __mmask8 {
            if words - w >= 8 {
                !0
            } else {
                (1u8 << (words - w)) - 1
            }
        };
        let plane = |j: usize, w: usize| {
            // SAFETY: the mask covers only words `w..words`, which plane `j` holds from
            // `j * words` on (`code_words`).
            unsafe { _mm512_maskz_loadu_epi64(mask_from(w), pp.add(j * words + w).cast()) }
        };
        if words <= 8 {
            // Codes of up to 512 dimensions: the planes stay in registers for the whole batch,
            // where they were loaded again for every node.
            let (mask, p) = (mask_from(0), [0, 1, 2, 3].map(|j| plane(j, 0)));
            each_binary_code(rows, nodes, ahead, estimate, out, |bits| {
                // SAFETY: the mask covers the code's first `words` words (`code_words`).
                let bits = unsafe { _mm512_maskz_loadu_epi64(mask, bits.as_ptr().cast()) };
                _mm512_reduce_add_epi64(weighted_counts(bits, &p)) as u32
            });
        } else {
            each_binary_code(rows, nodes, ahead, estimate, out, |bits| {
                let mut acc = _mm512_setzero_si512();
                for w in (0..words).step_by(8) {
                    // SAFETY: the mask covers only words `w..words` of the code (`code_words`).
                    let code = unsafe { _mm512_maskz_loadu_epi64(mask_from(w), bits.as_ptr().add(8 * w).cast()) };
                    let p = [0, 1, 2, 3].map(|j| plane(j, w));
                    acc = _mm512_add_epi64(acc, weighted_counts(code, &p));
                }
                _mm512_reduce_add_epi64(acc) as u32
            });
        }
    }

    /// # Safety
    /// The CPU supports AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn walsh_hadamard_avx2(x: &mut [f32]) {
        // The portable body, inlined here and vectorised with eight lanes.
        walsh_hadamard_with(x, |x| walsh_hadamard_first_stages(x));
    }

    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn walsh_hadamard_avx512(x: &mut [f32]) {
        // The portable body, inlined here and vectorised with sixteen lanes.
        walsh_hadamard_with(x, |x| walsh_hadamard_first_stages(x));
    }

    /// The first stages of `walsh_hadamard` in registers; returns the partner distance of the
    /// next. Thirty-two values at a time, four registers, where `x` holds that many: partners
    /// 1, 2 and 4 apart within each register (`eight_stages`), then 8 and 16 apart between the
    /// registers, where each stage was a pass through memory. The same additions and
    /// subtractions as the reference's (`a + b` where it adds, `a - b` where it subtracts), so
    /// the same bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn walsh_hadamard_first_stages(x: &mut [f32]) -> usize {
        let load = |values: &[f32]| {
            // SAFETY: callers pass chunks of at least eight f32; the load is unaligned.
            unsafe { _mm256_loadu_ps(values.as_ptr()) }
        };
        let store = |values: &mut [f32], v: __m256| {
            // SAFETY: as the load.
            unsafe { _mm256_storeu_ps(values.as_mut_ptr(), v) }
        };
        if x.len() < 32 {
            for chunk in x.chunks_exact_mut(8) {
                store(chunk, eight_stages(load(chunk)));
            }
            return 8;
        }
        let pair = |a: __m256, b: __m256| (_mm256_add_ps(a, b), _mm256_sub_ps(a, b));
        for chunk in x.chunks_exact_mut(32) {
            let (v0, v1) = (eight_stages(load(&chunk[..8])), eight_stages(load(&chunk[8..16])));
            let (v2, v3) = (eight_stages(load(&chunk[16..24])), eight_stages(load(&chunk[24..])));
            let ((v0, v1), (v2, v3)) = (pair(v0, v1), pair(v2, v3));
            let ((v0, v2), (v1, v3)) = (pair(v0, v2), pair(v1, v3));
            for (at, v) in [(0, v0), (8, v1), (16, v2), (24, v3)] {
                store(&mut chunk[at..at + 8], v);
            }
        }
        32
    }

    /// The stages with partners 1, 2 and 4 apart on eight values: each pairs the values with
    /// their partners by a permute, and keeps the sum in the first of each pair and the
    /// difference in the second by a blend.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn eight_stages(v: __m256) -> __m256 {
        // Partners 1 apart (lanes 1, 0, 3, 2 in each half), then 2 apart (2, 3, 0, 1), then 4
        // apart (the other half).
        let partner = _mm256_permute_ps::<0b10_11_00_01>(v);
        let v = _mm256_blend_ps::<0b1010_1010>(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v));
        let partner = _mm256_permute_ps::<0b01_00_11_10>(v);
        let v = _mm256_blend_ps::<0b1100_1100>(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v));
        let partner = _mm256_permute2f128_ps::<1>(v, v);
        _mm256_blend_ps::<0b1111_0000>(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v))
    }

    /// Batch wrappers (`IntegerKernel`) around the integer kernels for one code, each with the
    /// safe function the tables hold: the same target features as the inner kernel, so that
    /// each node's sum is inlined into `each_code`'s loop (a closure inherits its function's
    /// target features; the disassembly shows no call).
    macro_rules! batched {
        ($safe:ident, $batch:ident, $features:literal, $single:ident) => {
            /// # Safety
            /// The CPU supports the target features, and the query is within the bounds the
            /// inner kernel states.
            #[target_feature(enable = $features)]
            unsafe fn $batch(
                q: &[i8],
                rows: CodeRows<'_>,
                nodes: &[u32],
                ahead: usize,
                estimate: Estimate,
                out: &mut [f32],
            ) {
                // SAFETY: the closure runs inside this function, which has the inner kernel's
                // target features, and whose caller keeps the query's bounds.
                each_code(rows, nodes, ahead, out, |code, norm| estimate.of(unsafe { $single(q, code) } as f32, norm));
            }

            /// The safe `IntegerKernel` that `detected` hands out.
            fn $safe(q: &[i8], rows: CodeRows<'_>, nodes: &[u32], ahead: usize, estimate: Estimate, out: &mut [f32]) {
                // SAFETY: reachable only through the tables `detected` builds after the CPU
                // reported the features; callers keep the weights within `u8_weight_limit`.
                unsafe { $batch(q, rows, nodes, ahead, estimate, out) }
            }
        };
    }
    batched!(dot_u8_i8, dot_u8_vnni_batch, "avx512f,avx512bw,avx512vnni", dot_u8_vnni);
    batched!(dot_u4_i8, dot_u4_vnni_batch, "avx512f,avx512bw,avx512vnni,avx2", dot_u4_vnni);
    batched!(dot_u8_i8_256, dot_u8_maddubs_batch, "avx2", dot_u8_maddubs);
    batched!(dot_u4_i8_256, dot_u4_maddubs_batch, "avx2", dot_u4_maddubs);
    batched!(dot_u8_i8_avxvnni, dot_u8_avxvnni_batch, "avx2,avxvnni", dot_u8_avxvnni);
    batched!(dot_u4_i8_avxvnni, dot_u4_avxvnni_batch, "avx2,avxvnni", dot_u4_avxvnni);

    // The safe wrappers. SAFETY for each: reachable only through the tables `detected` builds
    // after the CPU reported the features their bodies need.
    fn dot_u8_512(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: see above.
        unsafe { dot_u8_avx512(w, c) }
    }
    fn dot_u4_512(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: see above.
        unsafe { dot_u4_avx512(w, c) }
    }
    fn dot_u8_256(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: see above.
        unsafe { dot_u8_avx2(w, c) }
    }
    fn dot_u4_256(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: see above.
        unsafe { dot_u4_avx2(w, c) }
    }
    fn bit_planes(
        planes: &[u64],
        rows: CodeRows<'_>,
        nodes: &[u32],
        ahead: usize,
        estimate: BitEstimate,
        out: &mut [f32],
    ) {
        // SAFETY: see above.
        unsafe { bit_planes_popcnt_batch(planes, rows, nodes, ahead, estimate, out) }
    }
    fn bit_planes_512(
        planes: &[u64],
        rows: CodeRows<'_>,
        nodes: &[u32],
        ahead: usize,
        estimate: BitEstimate,
        out: &mut [f32],
    ) {
        // SAFETY: see above.
        unsafe { bit_planes_vpopcnt_batch(planes, rows, nodes, ahead, estimate, out) }
    }
    fn walsh_hadamard_256(x: &mut [f32]) {
        // SAFETY: see above.
        unsafe { walsh_hadamard_avx2(x) }
    }
    fn walsh_hadamard_512(x: &mut [f32]) {
        // SAFETY: see above.
        unsafe { walsh_hadamard_avx512(x) }
    }

    /// The builds this CPU can run, best last.
    pub(super) fn detected() -> Vec<QuantKernels> {
        let mut found = Vec::new();
        let popcnt = is_x86_feature_detected!("popcnt");
        let avx2 = popcnt && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        // Integer kernels on AVX2 (`vpmaddubsw`) serve AVX-512 CPUs without VNNI as well.
        let (dot_u8_i8_avx2, dot_u4_i8_avx2) =
            (Some(dot_u8_i8_256 as IntegerKernel), Some(dot_u4_i8_256 as IntegerKernel));
        if avx2 {
            found.push(QuantKernels {
                name: "avx2+fma",
                dot_u8: dot_u8_256,
                dot_u4: dot_u4_256,
                bit_planes,
                walsh_hadamard: walsh_hadamard_256,
                dot_u8_i8: dot_u8_i8_avx2,
                dot_u4_i8: dot_u4_i8_avx2,
                u8_weight_limit: 64,
            });
        }
        if avx2 && is_x86_feature_detected!("avxvnni") {
            found.push(QuantKernels {
                name: "avxvnni",
                dot_u8: dot_u8_256,
                dot_u4: dot_u4_256,
                bit_planes,
                walsh_hadamard: walsh_hadamard_256,
                dot_u8_i8: Some(dot_u8_i8_avxvnni),
                dot_u4_i8: Some(dot_u4_i8_avxvnni),
                u8_weight_limit: 127,
            });
        }
        if avx2 && is_x86_feature_detected!("avx512f") {
            let (dot_u8, dot_u4) = (dot_u8_512, dot_u4_512);
            // Ice Lake and later count a whole register's bits at once; Skylake and Cascade
            // Lake (VNNI without it) keep the scalar popcnt.
            let bit_planes: BitPlanesKernel =
                if is_x86_feature_detected!("avx512vpopcntdq") { bit_planes_512 } else { bit_planes };
            found.push(QuantKernels {
                name: "avx512f",
                dot_u8,
                dot_u4,
                bit_planes,
                walsh_hadamard: walsh_hadamard_512,
                dot_u8_i8: dot_u8_i8_avx2,
                dot_u4_i8: dot_u4_i8_avx2,
                u8_weight_limit: 64,
            });
            if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni") {
                found.push(QuantKernels {
                    name: "avx512vnni",
                    dot_u8,
                    dot_u4,
                    bit_planes,
                    walsh_hadamard: walsh_hadamard_512,
                    dot_u8_i8: Some(dot_u8_i8),
                    dot_u4_i8: Some(dot_u4_i8),
                    u8_weight_limit: 127,
                });
            }
        }
        found
    }
}

/// Every build this CPU can run, the scalar reference first, the best last.
pub fn available() -> Vec<QuantKernels> {
    #[allow(unused_mut)]
    let mut all = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    all.extend(x86::detected());
    all
}

/// The fastest build for this CPU (within `OMENDB_KERNELS`), detected once.
pub(crate) fn best_kernels() -> QuantKernels {
    static BEST: std::sync::OnceLock<QuantKernels> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| available().into_iter().rfind(|k| permitted(k.name)).unwrap_or(SCALAR))
}
