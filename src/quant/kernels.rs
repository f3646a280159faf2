//! Code kernels: weighted sums over 8-bit and 4-bit codes, and Hamming distance over bits.
//!
//! The portable versions are the reference the SIMD ones are tested against, and the fallback.

/// One instruction-set build of every code kernel.
#[derive(Clone, Copy, Debug)]
pub struct QuantKernels {
    pub name: &'static str,
    /// `Σ w_i c_i` over 8-bit codes.
    pub dot_u8: fn(&[f32], &[u8]) -> f32,
    /// `Σ w_i c_i` over 4-bit codes packed 32 dimensions to 16 bytes (low nibbles first).
    pub dot_u4: fn(&[f32], &[u8]) -> f32,
    /// Differing bits between query words and a code's bytes (little-endian words).
    pub hamming: fn(&[u64], &[u8]) -> u32,
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

#[inline(always)]
fn hamming(q: &[u64], c: &[u8]) -> u32 {
    q.iter()
        .zip(c.chunks_exact(8))
        .map(|(&a, b)| (a ^ u64::from_le_bytes(b.try_into().unwrap_or_default())).count_ones())
        .sum()
}

const SCALAR: QuantKernels = QuantKernels { name: "scalar", dot_u8, dot_u4, hamming };

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Hand-written AVX2 and AVX-512 bodies: zero-extend 8 or 16 codes to i32, convert to f32
    //! and multiply-add with the weights, two accumulators in flight. Each safe wrapper is handed
    //! out only by `detected`, after the CPU reported the features: the invariant every `SAFETY`
    //! note below relies on.
    use std::arch::x86_64::*;

    use super::QuantKernels;

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

    /// Horizontal sum of eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum256(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
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
    /// The CPU supports popcnt.
    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_popcnt(q: &[u64], c: &[u8]) -> u32 {
        super::hamming(q, c)
    }

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
    fn hamming(q: &[u64], c: &[u8]) -> u32 {
        // SAFETY: see above.
        unsafe { hamming_popcnt(q, c) }
    }

    /// The builds this CPU can run, best last.
    pub(super) fn detected() -> Vec<QuantKernels> {
        let mut found = Vec::new();
        let popcnt = is_x86_feature_detected!("popcnt");
        if popcnt && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            found.push(QuantKernels { name: "avx2+fma", dot_u8: dot_u8_256, dot_u4: dot_u4_256, hamming });
        }
        if popcnt && is_x86_feature_detected!("avx512f") {
            found.push(QuantKernels { name: "avx512f", dot_u8: dot_u8_512, dot_u4: dot_u4_512, hamming });
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

/// The fastest build for this CPU, detected once.
pub(crate) fn best_kernels() -> QuantKernels {
    static BEST: std::sync::OnceLock<QuantKernels> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| available().pop().unwrap_or(SCALAR))
}
