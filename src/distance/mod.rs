//! Distance kernels: squared L2 and dot product, with SIMD variants picked once at run time.
//!
//! Every metric reduces to one of the two kernels: cosine vectors are normalised on insert, so
//! cosine distance is `1 - dot`; inner-product distance is `-dot` (smaller is closer).
//!
//! Each kernel also comes in a coarse form whose second operand is only the high 16 bits of each
//! f32 (a bfloat16, read as the f32 it truncates to). Graph search is bound by memory traffic, so
//! it walks the graph reading half the bytes and re-scores its final candidates exactly (see
//! `hnsw::vectors`), by a third form that joins each value's two halves as it reads them.

use std::fmt;
use std::sync::OnceLock;

#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::sum256;

/// How two vectors are compared. Smaller distances are closer for every metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - cos(a, b)`; vectors are normalised on insert and zero vectors are rejected.
    Cosine,
    /// `-dot(a, b)`: the negated inner product.
    InnerProduct,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "inner_product",
        })
    }
}

/// cbindgen:ignore
impl Metric {
    /// The number that stands for this metric in files and in the C ABI (`omen_metric`).
    pub const fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::Cosine => 1,
            Metric::InnerProduct => 2,
        }
    }

    pub const fn from_code(code: u32) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::Cosine),
            2 => Some(Metric::InnerProduct),
            _ => None,
        }
    }
}

/// A kernel over two slices of equal length.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// A kernel between f32 values and the high halves (bfloat16 bits) of another vector's values.
pub type CoarseKernel = fn(&[f32], &[u16]) -> f32;

/// A kernel between f32 values and another vector's values kept as their high and low 16-bit
/// halves in two slices (`hnsw::vectors`): exact, as the halves join into the f32 values.
pub type HalvesKernel = fn(&[f32], &[u16], &[u16]) -> f32;

/// The f32 that the bfloat16 bits `high` stand for (the low 16 bits zero).
#[inline(always)]
pub fn widen(high: u16) -> f32 {
    f32::from_bits(u32::from(high) << 16)
}

/// The f32 whose high and low 16 bits are `high` and `low`.
#[inline(always)]
pub fn join(high: u16, low: u16) -> f32 {
    f32::from_bits(u32::from(high) << 16 | u32::from(low))
}

/// The second operand of a kernel body, read as f32 values: f32 values themselves, high halves
/// alone (`&[u16]`, widened), or both halves (`Halves`, joined).
trait Operand: Copy {
    fn len(self) -> usize;
    /// Value `i`, which must be below `len`.
    fn value(self, i: usize) -> f32;
    /// Values `start..start + 8`, which must be below `len`: one bounds check for eight values,
    /// so that the scalar kernels vectorise.
    fn eight(self, start: usize) -> [f32; 8];
}

/// `values[start..start + 8]` as an array.
#[inline(always)]
fn eight_of<T: Copy>(values: &[T], start: usize) -> [T; 8] {
    let chunk = &values[start..start + 8];
    std::array::from_fn(|i| chunk[i])
}

impl Operand for &[f32] {
    #[inline(always)]
    fn len(self) -> usize {
        <[f32]>::len(self)
    }

    #[inline(always)]
    fn value(self, i: usize) -> f32 {
        self[i]
    }

    #[inline(always)]
    fn eight(self, start: usize) -> [f32; 8] {
        eight_of(self, start)
    }
}

impl Operand for &[u16] {
    #[inline(always)]
    fn len(self) -> usize {
        <[u16]>::len(self)
    }

    #[inline(always)]
    fn value(self, i: usize) -> f32 {
        widen(self[i])
    }

    #[inline(always)]
    fn eight(self, start: usize) -> [f32; 8] {
        eight_of(self, start).map(widen)
    }
}

/// Values split in two slices of equal length, high halves and low halves.
#[derive(Clone, Copy)]
struct Halves<'a> {
    high: &'a [u16],
    low: &'a [u16],
}

impl<'a> Halves<'a> {
    /// The halves, which must be as many high as low ones.
    #[inline(always)]
    fn new(high: &'a [u16], low: &'a [u16]) -> Self {
        same_length(high.len(), low.len());
        Halves { high, low }
    }
}

impl Operand for Halves<'_> {
    #[inline(always)]
    fn len(self) -> usize {
        self.high.len()
    }

    #[inline(always)]
    fn value(self, i: usize) -> f32 {
        join(self.high[i], self.low[i])
    }

    #[inline(always)]
    fn eight(self, start: usize) -> [f32; 8] {
        let (high, low) = (eight_of(self.high, start), eight_of(self.low, start));
        std::array::from_fn(|i| join(high[i], low[i]))
    }
}

/// Checks that a kernel's operands have equal lengths. A mismatch is a caller's bug: it panics in
/// every build, because the SIMD bodies index both operands by one length. (One compare against
/// a loop over hundreds of dimensions.)
#[inline(always)]
fn same_length(a: usize, b: usize) {
    assert!(a == b, "distance kernel operands differ in length ({a} and {b})");
}

/// One instruction-set implementation of both kernels, in each operand form.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// Name of the instruction set, e.g. `"avx512f"`.
    pub name: &'static str,
    /// Dot product.
    pub dot: Kernel,
    /// Squared Euclidean distance.
    pub l2sq: Kernel,
    /// Dot product against high halves.
    pub dot_coarse: CoarseKernel,
    /// Squared Euclidean distance against high halves.
    pub l2sq_coarse: CoarseKernel,
    /// Dot product against both halves.
    pub dot_halves: HalvesKernel,
    /// Squared Euclidean distance against both halves.
    pub l2sq_halves: HalvesKernel,
}

/// The scalar reference implementation.
pub const SCALAR: Kernels = Kernels {
    name: "scalar",
    dot: scalar::dot,
    l2sq: scalar::l2sq,
    dot_coarse: scalar::dot_coarse,
    l2sq_coarse: scalar::l2sq_coarse,
    dot_halves: scalar::dot_halves,
    l2sq_halves: scalar::l2sq_halves,
};

/// Every implementation this CPU can run, best last; the scalar one is always first.
pub fn available_kernels() -> Vec<Kernels> {
    let mut all = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    all.extend(x86::detected());
    #[cfg(target_arch = "aarch64")]
    all.push(neon::KERNELS);
    all
}

/// The fastest implementation for this CPU (within `OMENDB_KERNELS`), detected once.
pub fn best_kernels() -> Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    *BEST.get_or_init(|| available_kernels().into_iter().rfind(|k| permitted(k.name)).unwrap_or(SCALAR))
}

/// Whether the kernels named `name` may run: all of them, unless the environment variable
/// `OMENDB_KERNELS` caps the instruction sets at `scalar`, `avx2`, or `avxvnni` (AVX2 with
/// AVX-VNNI's 256-bit `vpdpbusd`) (read once per process). A benchmarking aid: an AVX-512
/// machine then measures the paths an AVX2-only CPU (an AMD EPYC before Zen 4), or one with
/// AVX-VNNI but not AVX-512 (an Intel client since Alder Lake, an E-core Xeon), takes.
pub(crate) fn permitted(name: &str) -> bool {
    static CAP: OnceLock<Option<String>> = OnceLock::new();
    match CAP.get_or_init(|| std::env::var("OMENDB_KERNELS").ok()).as_deref() {
        Some("scalar") => name == "scalar",
        Some("avx2") => name == "scalar" || name.starts_with("avx2"),
        Some("avxvnni") => name == "scalar" || name.starts_with("avx2") || name == "avxvnni",
        _ => true,
    }
}

/// A metric bound to the CPU's kernels: the one object the graph code calls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Distance {
    metric: Metric,
    kernels: Kernels,
}

impl Distance {
    pub(crate) fn new(metric: Metric) -> Self {
        Distance { metric, kernels: best_kernels() }
    }

    pub(crate) fn metric(&self) -> Metric {
        self.metric
    }

    /// The distance between two f32 vectors: the tests' reference (the index keeps its vectors
    /// as halves and reads them with `exact`).
    #[cfg(test)]
    pub(crate) fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            Metric::L2 => (self.kernels.l2sq)(a, b),
            Metric::Cosine => 1.0 - (self.kernels.dot)(a, b),
            Metric::InnerProduct => -(self.kernels.dot)(a, b),
        }
    }

    /// The distance from `a` to the vector whose high halves are `b_high`: within about 0.4% of
    /// the exact one per component, for choosing where to walk, never for the final answer.
    #[inline]
    pub(crate) fn coarse(&self, a: &[f32], b_high: &[u16]) -> f32 {
        match self.metric {
            Metric::L2 => (self.kernels.l2sq_coarse)(a, b_high),
            Metric::Cosine => 1.0 - (self.kernels.dot_coarse)(a, b_high),
            Metric::InnerProduct => -(self.kernels.dot_coarse)(a, b_high),
        }
    }

    /// The exact distance from `a` to the vector whose high and low halves are `b_high` and
    /// `b_low`: `eval` on the joined values, bit for bit, without writing them out first.
    #[inline]
    pub(crate) fn exact(&self, a: &[f32], b_high: &[u16], b_low: &[u16]) -> f32 {
        match self.metric {
            Metric::L2 => (self.kernels.l2sq_halves)(a, b_high, b_low),
            Metric::Cosine => 1.0 - (self.kernels.dot_halves)(a, b_high, b_low),
            Metric::InnerProduct => -(self.kernels.dot_halves)(a, b_high, b_low),
        }
    }

    /// Squared Euclidean norm, used to normalise cosine vectors.
    pub(crate) fn norm_squared(&self, a: &[f32]) -> f32 {
        (self.kernels.dot)(a, a)
    }
}

/// Hints the CPU to start loading every cache line of `data`; a no-op where unsupported.
#[inline(always)]
pub(crate) fn prefetch_all<T>(data: &[T]) {
    let bytes = size_of_val(data);
    let mut offset = 0;
    while offset < bytes {
        prefetch(&data[offset / size_of::<T>()..]);
        offset += 64;
    }
}

/// Hints the CPU to start loading `data` into cache; a no-op where unsupported.
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// f64 reference, independent of every kernel under test.
    fn reference(a: &[f32], b: &[f32]) -> (f64, f64) {
        let dot = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let l2 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
        (dot, l2)
    }

    #[test]
    fn every_kernel_agrees_with_the_reference_on_every_length() {
        let kernels = available_kernels();
        println!("kernels: {:?}", kernels.iter().map(|k| k.name).collect::<Vec<_>>());
        for len in (0..140).chain([255, 256, 257, 384, 768, 1000, 1536]) {
            let a = pseudo_random(len, 1 + len as u64);
            let b = pseudo_random(len, 1000 + len as u64);
            let (dot, l2) = reference(&a, &b);
            for k in &kernels {
                let tolerance = 1e-4 * (1.0 + len as f64);
                let got_dot = (k.dot)(&a, &b) as f64;
                let got_l2 = (k.l2sq)(&a, &b) as f64;
                assert!((got_dot - dot).abs() <= tolerance, "{} dot len {len}: {got_dot} vs {dot}", k.name);
                assert!((got_l2 - l2).abs() <= tolerance, "{} l2 len {len}: {got_l2} vs {l2}", k.name);
            }
        }
    }

    #[test]
    fn every_coarse_kernel_agrees_with_the_reference_on_the_widened_values() {
        for len in (0..140).chain([255, 256, 257, 384, 768, 1000, 1536]) {
            let a = pseudo_random(len, 3 + len as u64);
            let b = pseudo_random(len, 3000 + len as u64);
            let high: Vec<u16> = b.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
            let widened: Vec<f32> = high.iter().map(|&h| widen(h)).collect();
            let (dot, l2) = reference(&a, &widened);
            for k in available_kernels() {
                let tolerance = 1e-4 * (1.0 + len as f64);
                let got_dot = (k.dot_coarse)(&a, &high) as f64;
                let got_l2 = (k.l2sq_coarse)(&a, &high) as f64;
                assert!((got_dot - dot).abs() <= tolerance, "{} dot len {len}: {got_dot} vs {dot}", k.name);
                assert!((got_l2 - l2).abs() <= tolerance, "{} l2 len {len}: {got_l2} vs {l2}", k.name);
            }
        }
    }

    /// Joining the halves as they are read changes nothing: each kernel on both halves returns
    /// the same bits as the same family's kernel on the joined f32 values.
    #[test]
    fn every_halves_kernel_equals_its_kernel_on_the_joined_values() {
        for len in (0..140).chain([255, 256, 257, 384, 768, 1000, 1536]) {
            let a = pseudo_random(len, 5 + len as u64);
            let b = pseudo_random(len, 5000 + len as u64);
            let high: Vec<u16> = b.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
            let low: Vec<u16> = b.iter().map(|x| x.to_bits() as u16).collect();
            for k in available_kernels() {
                let (dot, l2) = ((k.dot_halves)(&a, &high, &low), (k.l2sq_halves)(&a, &high, &low));
                assert_eq!(dot.to_bits(), (k.dot)(&a, &b).to_bits(), "{} dot len {len}", k.name);
                assert_eq!(l2.to_bits(), (k.l2sq)(&a, &b).to_bits(), "{} l2 len {len}", k.name);
            }
            for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
                let d = Distance::new(metric);
                assert_eq!(d.exact(&a, &high, &low).to_bits(), d.eval(&a, &b).to_bits(), "{metric} len {len}");
            }
        }
    }

    #[test]
    fn kernels_refuse_operands_of_different_lengths() {
        let (a, b) = (pseudo_random(100, 7), pseudo_random(37, 8));
        let high: Vec<u16> = b.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
        let long: Vec<u16> = a.iter().map(|x| x.to_bits() as u16).collect();
        for k in available_kernels() {
            let calls: [&dyn Fn() -> f32; 7] = [
                &|| (k.dot)(&a, &b),
                &|| (k.l2sq)(&b, &a),
                &|| (k.dot_coarse)(&a, &high),
                &|| (k.l2sq_coarse)(&a, &high),
                &|| (k.dot_halves)(&a, &high, &high),
                &|| (k.l2sq_halves)(&a, &long, &high),
                &|| (k.dot_halves)(&b, &high, &long),
            ];
            let names = ["dot", "l2sq", "dot_coarse", "l2sq_coarse", "dot_halves", "l2sq_halves", "dot_halves (low)"];
            for (name, call) in names.into_iter().zip(calls) {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
                assert!(outcome.is_err(), "{} {name} accepted operands of 100 and 37 values", k.name);
            }
        }
    }

    #[test]
    fn metrics_order_neighbours_as_documented() {
        let a = [1.0f32, 0.0];
        let near = [0.9f32, 0.1];
        let far = [-1.0f32, 0.0];
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let d = Distance::new(metric);
            assert!(d.eval(&a, &near) < d.eval(&a, &far), "{metric}");
        }
        assert_eq!(Distance::new(Metric::Cosine).eval(&a, &a), 0.0);
        assert_eq!(Distance::new(Metric::InnerProduct).eval(&a, &a), -1.0);
    }
}
