//! Quantized codes: a smaller stand-in for each vector that the graph walk reads instead of the
//! vector itself; the best candidates are then re-scored with the exact vectors.
//!
//! - `Bits8` / `Bits4`: scalar quantization with a range per dimension, learnt from the segment's
//!   vectors (re-learnt when it is sealed). The estimate is asymmetric: the query stays f32, and
//!   `q · x̂ = q · lower + Σ (q_i step_i) c_i` is one weighted sum over the codes. L2 uses
//!   `|q|² - 2 q · x̂ + |x̂|²` with `|x̂|²` stored per vector, and cosine half of that (see
//!   `Estimate::new`).
//! - `Binary`: one bit per dimension of a randomly rotated, centred vector, with per-vector
//!   factors that make the distance estimate unbiased (RaBitQ; see `rabitq`).

mod kernels;
mod rabitq;

use rayon::prelude::*;

use crate::distance::{self, prefetch, prefetch_all, Metric};
use crate::memory::{AlignedVec, Array};
pub(crate) use kernels::best_kernels;
pub use kernels::{available, BitPlanesKernel, IntegerKernel, QuantKernels};
pub use rabitq::BitEstimate;

/// How vectors are coded for the graph walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// The walk reads bfloat16 halves of the vectors (2 bytes a dimension); no codes.
    #[default]
    None,
    /// 1 bit a dimension. Slower than no codes where vectors crowd into many tight clusters.
    /// Its estimate's error shrinks as `1/√dim`, so wide vectors need less than the default
    /// oversample (20): 5 reached recall 0.95 on 384-d sentence embeddings and 0.987 at 1536-d.
    Binary,
    /// 4 bits a dimension: the fastest code where neighbours lie far apart next to the whole
    /// set's spread, slower than no codes where vectors crowd into many tight clusters (one
    /// range per dimension spans them all, and a step is wider than a cluster).
    Bits4,
    /// 8 bits a dimension: faster than no codes on tight clusters too.
    Bits8,
}

/// cbindgen:ignore
impl Quantization {
    /// The number in files and in the C ABI (`omen_quantization`).
    pub const fn code(self) -> u32 {
        match self {
            Quantization::None => 0,
            Quantization::Binary => 1,
            Quantization::Bits4 => 2,
            Quantization::Bits8 => 3,
        }
    }

    pub const fn from_code(code: u32) -> Option<Quantization> {
        match code {
            0 => Some(Quantization::None),
            1 => Some(Quantization::Binary),
            2 => Some(Quantization::Bits4),
            3 => Some(Quantization::Bits8),
            _ => None,
        }
    }

    /// Candidates re-scored per result when a search passes `oversample = 0`: coarser codes
    /// rank less reliably, so they re-score more.
    pub const fn default_oversample(self) -> usize {
        match self {
            Quantization::None => 1,
            Quantization::Binary => 20,
            Quantization::Bits4 => 2,
            Quantization::Bits8 => 2,
        }
    }

    /// Bytes of one vector's code at `dim` dimensions.
    pub fn code_len(self, dim: usize) -> usize {
        match self {
            Quantization::None => 0,
            // The bits of the padded rotation, then the per-vector factors: 64 bytes at 384-d.
            Quantization::Binary => rabitq::padded(dim) / 8 + rabitq::FACTOR_BYTES,
            // Whole 64-dimension groups (two 16-byte blocks), the width of one integer kernel step.
            Quantization::Bits4 => dim.div_ceil(64) * 32,
            Quantization::Bits8 => dim,
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantization::None => "none",
            Quantization::Binary => "binary",
            Quantization::Bits4 => "4bit",
            Quantization::Bits8 => "8bit",
        })
    }
}

/// What maps a vector to its code: per dimension, `lower` and `step` (scalar codes: the range
/// is the data's, clipped where its codes err least, see `SPREADS`) or the mean (binary, kept in
/// `lower`, with the rotation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Codebook {
    pub kind: Quantization,
    pub lower: Vec<f32>,
    pub step: Vec<f32>,
    /// Binary codes' rotation; `None` in a binary codebook from before RaBitQ (format version
    /// 3 and older: the sign of `x - lower`), whose codes are recomputed from the vectors.
    rotation: Option<rabitq::Rotation>,
}

impl Codebook {
    /// Learns the ranges (or means) of `rows` (row-major, `dim` wide).
    pub(crate) fn train(kind: Quantization, dim: usize, rows: &[f32]) -> Codebook {
        let mut trainer = Trainer::new(dim);
        rows.chunks_exact(dim).for_each(|row| trainer.add(row));
        let every = sample_step(rows.len() / dim.max(1));
        trainer.finish(kind, |tally| rows.chunks_exact(dim).step_by(every).for_each(tally))
    }

    fn levels(kind: Quantization) -> f32 {
        if kind == Quantization::Bits4 {
            15.0
        } else {
            255.0
        }
    }

    fn dim(&self) -> usize {
        self.lower.len()
    }

    /// Whether this is a binary codebook from before RaBitQ, whose codes must be recomputed.
    pub(crate) fn is_outdated(&self) -> bool {
        self.kind == Quantization::Binary && self.rotation.is_none()
    }

    /// Writes the code of `row` into `out` (`code_len` bytes) and returns `|x̂|²`, the squared
    /// norm of the vector the code stands for (0 for binary codes, which carry their factors).
    pub(crate) fn encode(&self, row: &[f32], out: &mut [u8]) -> f32 {
        out.fill(0);
        match (self.kind, &self.rotation) {
            (Quantization::None, _) => 0.0,
            (Quantization::Binary, rotation) => {
                if let Some(rotation) = rotation {
                    rabitq::encode(rotation, &self.lower, row, out, best_kernels().walsh_hadamard);
                }
                0.0
            }
            (kind, _) => {
                let levels = Self::levels(kind);
                let mut norm = 0f32;
                for (i, ((&x, &lo), &step)) in row.iter().zip(&self.lower).zip(&self.step).enumerate() {
                    let level = ((x - lo) / step).round().clamp(0.0, levels);
                    let value = lo + level * step;
                    norm += value * value;
                    let level = level as u8;
                    if kind == Quantization::Bits8 {
                        out[i] = level;
                    } else {
                        // Blocks of 32 dimensions in 16 bytes: low nibbles hold the first 16.
                        let (block, offset) = (i / 32, i % 32);
                        out[block * 16 + offset % 16] |= level << (4 * (offset / 16));
                    }
                }
                norm
            }
        }
    }

    /// Flattens the codebook for a file: kind, dim, then `lower` and `step` (binary: the
    /// rotation's signs) as f32 bits.
    pub(crate) fn to_words(&self) -> Vec<u32> {
        let mut words = vec![self.kind.code(), self.dim() as u32];
        let rest = self.rotation.as_ref().map_or(&self.step[..], |rotation| rotation.signs());
        words.extend(self.lower.iter().chain(rest).map(|x| x.to_bits()));
        words
    }

    /// The codebook `to_words` wrote, or `None` when the words do not describe one at `dim`.
    pub(crate) fn from_words(words: &[u32], dim: usize) -> Option<Codebook> {
        let kind = Quantization::from_code(*words.first()?)?;
        if *words.get(1)? as usize != dim || kind == Quantization::None {
            return None;
        }
        let floats: Vec<f32> = words[2..].iter().map(|&w| f32::from_bits(w)).collect();
        if floats.len() < dim || floats.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let (lower, rest) = floats.split_at(dim);
        let lower = lower.to_vec();
        match kind {
            Quantization::Binary if rest.is_empty() => Some(Codebook { kind, lower, step: Vec::new(), rotation: None }),
            Quantization::Binary => {
                let rotation = Some(rabitq::Rotation::from_signs(dim, rest)?);
                Some(Codebook { kind, lower, step: Vec::new(), rotation })
            }
            _ => (rest.len() == dim).then(|| Codebook { kind, lower, step: rest.to_vec(), rotation: None }),
        }
    }
}

/// Per-dimension statistics a codebook is learnt from; mergeable, so training runs in parallel.
/// Each distinct row counts once: a vector stored a thousand times (an empty text's embedding)
/// would otherwise pull every range towards itself and coarsen the codes of all the others.
/// (Rows are told apart by a hash of their bits; copies that reach different threads of a
/// parallel training count once per thread, which is harmless.)
#[derive(Clone)]
struct Trainer {
    lower: Vec<f32>,
    upper: Vec<f32>,
    sum: Vec<f64>,
    squares: Vec<f64>,
    count: usize,
    seen: std::collections::HashSet<u64>,
}

/// A 64-bit hash of a row's bits (FxHash's multiply-rotate, then a finaliser).
fn row_hash(row: &[f32]) -> u64 {
    let mut h = 0u64;
    for &x in row {
        h = (h.rotate_left(5) ^ u64::from(x.to_bits())).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    h ^ (h >> 29)
}

impl Trainer {
    fn new(dim: usize) -> Trainer {
        Trainer {
            lower: vec![f32::INFINITY; dim],
            upper: vec![f32::NEG_INFINITY; dim],
            sum: vec![0.0; dim],
            squares: vec![0.0; dim],
            count: 0,
            seen: Default::default(),
        }
    }

    fn add(&mut self, row: &[f32]) {
        if !self.seen.insert(row_hash(row)) {
            return;
        }
        for (i, &x) in row.iter().enumerate() {
            self.lower[i] = self.lower[i].min(x);
            self.upper[i] = self.upper[i].max(x);
            self.sum[i] += f64::from(x);
            self.squares[i] += f64::from(x) * f64::from(x);
        }
        self.count += 1;
    }

    fn merge(mut self, other: Trainer) -> Trainer {
        for i in 0..self.lower.len() {
            self.lower[i] = self.lower[i].min(other.lower[i]);
            self.upper[i] = self.upper[i].max(other.upper[i]);
            self.sum[i] += other.sum[i];
            self.squares[i] += other.squares[i];
        }
        self.count += other.count;
        self
    }

    /// The range of dimension `i` clipped at `spread` standard deviations around its mean (and
    /// at its least and greatest values), as `(lower, step)` for `levels` steps.
    fn range(&self, i: usize, spread: f64, levels: f32) -> (f32, f32) {
        let count = self.count.max(1) as f64;
        let mean = self.sum[i] / count;
        let deviation = (self.squares[i] / count - mean * mean).max(0.0).sqrt();
        let lo = (self.lower[i] as f64).max(mean - spread * deviation) as f32;
        let hi = (self.upper[i] as f64).min(mean + spread * deviation) as f32;
        (if lo.is_finite() { lo } else { 0.0 }, if hi > lo { (hi - lo) / levels } else { 1.0 })
    }

    /// The codebook. Scalar codes: each dimension's range is the one among `SPREADS` whose codes
    /// err least (squared error) on the rows `sample` hands to its argument, which should be a
    /// few thousand of the rows `add` saw.
    fn finish(self, kind: Quantization, sample: impl FnOnce(&mut dyn FnMut(&[f32]))) -> Codebook {
        if kind == Quantization::Binary {
            let count = self.count.max(1) as f64;
            let centre = self.sum.iter().map(|s| (s / count) as f32).collect();
            // A fixed seed: a segment's rotation is stored with it, so none depends on another.
            let rotation = Some(rabitq::Rotation::new(self.lower.len(), 0x005E_ED0F_B175));
            return Codebook { kind, lower: centre, step: Vec::new(), rotation };
        }
        let levels = Codebook::levels(kind);
        let candidates: Vec<[(f32, f32); SPREADS.len()]> =
            (0..self.lower.len()).map(|i| SPREADS.map(|spread| self.range(i, spread, levels))).collect();
        let mut errors = vec![[0f64; SPREADS.len()]; candidates.len()];
        let mut seen = std::collections::HashSet::new();
        sample(&mut |row: &[f32]| {
            if !seen.insert(row_hash(row)) {
                return;
            }
            for ((&x, ranges), errors) in row.iter().zip(&candidates).zip(&mut errors) {
                for (&(lo, step), error) in ranges.iter().zip(errors.iter_mut()) {
                    // Rounded half up by hand (`f32::round` is a libm call on baseline x86-64).
                    let level = ((x - lo) / step + 0.5).clamp(0.0, levels) as u32 as f32;
                    let e = f64::from(x - (lo + level * step));
                    *error += e * e;
                }
            }
        });
        let (mut lower, mut step) = (Vec::new(), Vec::new());
        for (ranges, errors) in candidates.iter().zip(&errors) {
            // The first of equally good ranges: three deviations when nothing was sampled.
            let best = (0..SPREADS.len()).min_by(|&a, &b| errors[a].total_cmp(&errors[b])).unwrap_or(0);
            lower.push(ranges[best].0);
            step.push(ranges[best].1);
        }
        Codebook { kind, lower, step, rotation: None }
    }
}

/// Where a scalar code's range may stop, in standard deviations from the mean (infinity: the
/// data's whole range), each dimension choosing by its squared error. Outliers stretch a whole
/// range and coarsen every other vector's code, so ranges are clipped (outliers are clamped):
/// at three deviations, npm51k 4-bit's top-10 from the codes alone rose from 0.887 to 0.906. But
/// the best clip depends on the data: 16 levels over a Gaussian err least at about 2.7
/// deviations, and on 200K clustered 128-d vectors a clip at 2 raised 4-bit recall at ef 32
/// from 0.921 to 0.960 where npm51k lost 0.007 at ef 40. First the clip that serves when
/// nothing is sampled.
const SPREADS: [f64; 6] = [3.0, 1.5, 2.0, 2.5, 4.0, f64::INFINITY];

/// Every how many rows the range choice samples one, for `count` rows: about 10,000 in all.
fn sample_step(count: usize) -> usize {
    count.div_ceil(10_000).max(1)
}

/// Rows encoded as one piece of parallel work by `Codes::push`: an encoding costs well under a
/// microsecond, so smaller pieces would spend more on handing them out than on encoding.
pub(crate) const ENCODE_PIECE: usize = 256;

/// One segment's codes: `code_len` bytes a vector, and `|x̂|²` a vector for scalar codes (read
/// under L2 and cosine).
pub(crate) struct Codes {
    pub codebook: Codebook,
    pub code_len: usize,
    pub bytes: Array<u8>,
    pub norms: Array<f32>,
    /// How many vectors the codebook was learnt from (`needs_training` compares).
    pub trained_on: usize,
}

impl Codes {
    /// Codes for `rows` with a codebook learnt from them, encoded in parallel.
    pub(crate) fn build(kind: Quantization, dim: usize, rows: &[f32]) -> Codes {
        let mut codes = Codes {
            codebook: Codebook::train(kind, dim, rows),
            code_len: kind.code_len(dim),
            bytes: Array::default(),
            norms: Array::default(),
            trained_on: rows.len() / dim.max(1),
        };
        codes.push(rows);
        codes
    }

    /// Codes for `count` vectors that `row(node, buffer)` writes out, with a codebook learnt from
    /// all of them; both passes run in parallel on the current rayon pool.
    pub(crate) fn build_with(
        kind: Quantization,
        dim: usize,
        count: usize,
        row: impl Fn(u32, &mut Vec<f32>) + Sync,
    ) -> Codes {
        let codebook = (0..count as u32)
            .into_par_iter()
            .fold(
                || (Trainer::new(dim), Vec::new()),
                |(mut trainer, mut buffer), node| {
                    row(node, &mut buffer);
                    trainer.add(&buffer);
                    (trainer, buffer)
                },
            )
            .map(|(trainer, _)| trainer)
            .reduce(|| Trainer::new(dim), Trainer::merge)
            .finish(kind, |tally| {
                let mut buffer = Vec::new();
                for node in (0..count as u32).step_by(sample_step(count)) {
                    row(node, &mut buffer);
                    tally(&buffer);
                }
            });
        let code_len = kind.code_len(dim);
        let (mut bytes, mut norms) = (AlignedVec::new(), AlignedVec::new());
        bytes.resize(count * code_len, 0u8);
        norms.resize(if kind == Quantization::Binary { 0 } else { count }, 0f32);
        let encode = |buffer: &mut Vec<f32>, node: usize, out: &mut [u8]| {
            row(node as u32, buffer);
            codebook.encode(buffer, out)
        };
        if norms.is_empty() {
            bytes.par_chunks_mut(code_len).enumerate().for_each_init(Vec::new, |buffer, (node, out)| {
                encode(buffer, node, out);
            });
        } else {
            bytes
                .par_chunks_mut(code_len)
                .zip(norms.par_iter_mut())
                .enumerate()
                .for_each_init(Vec::new, |buffer, (node, (out, norm))| *norm = encode(buffer, node, out));
        }
        Codes { codebook, code_len, bytes: bytes.into(), norms: norms.into(), trained_on: count }
    }

    /// Whether the codebook should be learnt again for `count` vectors: when they are at least
    /// twice as many as it was learnt from. Re-learning then costs O(1) a vector over a segment's
    /// life, and codes never stay fitted to a small first batch.
    pub(crate) fn needs_training(&self, count: usize) -> bool {
        count >= 2 * self.trained_on.max(1)
    }

    /// Reorders the codes from `first` on (`Array::permute_rows`), codes and norms side by side.
    pub(crate) fn permute(&mut self, first: usize, order: &[u32]) {
        let (bytes, norms, code_len) = (&mut self.bytes, &mut self.norms, self.code_len);
        // Binary codes keep no norms.
        let permute_norms = || (!norms.is_empty()).then(|| norms.permute_rows(1, first, order));
        rayon::join(|| bytes.permute_rows(code_len, first, order), permute_norms);
    }

    /// Appends the codes of `rows` (row-major), encoding in parallel on the current rayon pool in
    /// pieces of `ENCODE_PIECE` rows; fewer rows than that are one piece, encoded on the calling
    /// thread with no rayon call, so a caller outside any pool does not hand them to rayon's
    /// global one.
    pub(crate) fn push(&mut self, rows: &[f32]) {
        let dim = self.codebook.dim();
        let count = rows.len() / dim;
        let bytes = self.bytes.vec_mut();
        let start = bytes.len();
        bytes.resize(start + count * self.code_len, 0);
        let mut norms = vec![0f32; count];
        let code_len = self.code_len.max(1);
        let encode = |((out, row), norm): ((&mut [u8], &[f32]), &mut f32)| *norm = self.codebook.encode(row, out);
        if count < ENCODE_PIECE {
            bytes[start..].chunks_mut(code_len).zip(rows.chunks(dim)).zip(norms.iter_mut()).for_each(encode);
        } else {
            bytes[start..]
                .par_chunks_mut(code_len)
                .zip(rows.par_chunks(dim))
                .zip(norms.par_iter_mut())
                .with_min_len(ENCODE_PIECE)
                .for_each(encode);
        }
        // Binary codes rank by Hamming distance alone: no norms.
        if self.codebook.kind != Quantization::Binary {
            self.norms.vec_mut().extend(norms);
        }
    }

    /// The codes as a walk under `metric` reads them: with their norms where the estimate
    /// needs them (scalar codes under L2 and cosine).
    pub(crate) fn rows(&self, metric: Metric) -> CodeRows<'_> {
        let norms = if metric == Metric::InnerProduct { &[] } else { &self.norms[..] };
        CodeRows { bytes: &self.bytes, len: self.code_len, norms }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.heap_bytes() + self.norms.heap_bytes()
    }
}

/// One segment's codes as a walk reads them: `len` bytes a node, from `node · len` in `bytes`,
/// and each code's `|x̂|²` where the estimate reads it (else `norms` is empty). The norms lie in
/// an array of their own: one more line a node, as far away as the code.
#[derive(Clone, Copy, Debug)]
pub struct CodeRows<'a> {
    pub bytes: &'a [u8],
    pub len: usize,
    pub norms: &'a [f32],
}

impl<'a> CodeRows<'a> {
    /// The code of `node`, which must have one.
    #[inline(always)]
    pub(crate) fn code(&self, node: u32) -> &'a [u8] {
        let start = node as usize * self.len;
        &self.bytes[start..start + self.len]
    }

    /// The norm of `node`'s code, 0 where the estimate reads none.
    #[inline(always)]
    pub(crate) fn norm(&self, node: u32) -> f32 {
        self.norms.get(node as usize).copied().unwrap_or(0.0)
    }

    /// Starts loading what an estimate for `node` reads: its code and its norm.
    #[inline(always)]
    pub(crate) fn prefetch(&self, node: u32) {
        prefetch_all(self.code(node));
        if let Some(norm) = self.norms.get(node as usize..) {
            prefetch(norm);
        }
    }
}

/// A code's distance estimate from its weighted sum `s` (`q · x̂ = scale · s + offset`) and its
/// `|x̂|²`: `bias + sum_weight · s + norm_weight · |x̂|²`, finished by the batch kernels as they
/// go (see `IntegerKernel`).
///
/// cbindgen:ignore
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    bias: f32,
    sum_weight: f32,
    norm_weight: f32,
}

/// cbindgen:ignore
impl Estimate {
    /// The sum itself: what a query without scalar codes holds, and what tests and benchmarks
    /// of the kernels' sums pass.
    pub const SUM: Estimate = Estimate { bias: 0.0, sum_weight: 1.0, norm_weight: 0.0 };

    /// The estimate under `metric` for a query of squared length `query_norm`.
    ///
    /// L2 is `|q|² - 2 q · x̂ + |x̂|²`. Cosine ranks by `|q - x̂|² / 2 = (1 + |x̂|²) / 2 - q · x̂`
    /// (unit vectors), not by `1 - q · x̂`: with `x̂ = x + e` the first errs by
    /// `-(q - x) · e + |e|² / 2`, the second by `-q · e`, and the part `x · e` that only the
    /// first cancels dominates near the query, where ranking matters. 1M clustered 128-d unit
    /// vectors, 4-bit: recall@10 at ef 64 rose from 0.80 to 0.93, at ef 128 from 0.93 to 0.98;
    /// npm51k, whose neighbours lie farther apart, kept its recall and lost 1-3% of queries/s
    /// to reading the norms. The inner product is `-q · x̂`.
    fn new(metric: Metric, scale: f32, offset: f32, query_norm: f32) -> Estimate {
        match metric {
            Metric::L2 => Estimate { bias: query_norm - 2.0 * offset, sum_weight: -2.0 * scale, norm_weight: 1.0 },
            Metric::Cosine => Estimate { bias: 0.5 - offset, sum_weight: -scale, norm_weight: 0.5 },
            Metric::InnerProduct => Estimate { bias: -offset, sum_weight: -scale, norm_weight: 0.0 },
        }
    }

    #[inline(always)]
    pub(crate) fn of(self, sum: f32, norm: f32) -> f32 {
        self.bias + self.sum_weight * sum + self.norm_weight * norm
    }
}

/// A query prepared for one codebook: weights for scalar codes (f32, or i8 for the integer
/// kernels), or its rotated bit planes (binary).
pub(crate) struct QueryCode {
    kind: Quantization,
    /// `q_i * step_i`, padded to the code's dimension blocks.
    weights: Vec<f32>,
    /// The weights rounded to i8 (`weights ≈ scale * weights_i8`, the scale folded into
    /// `estimate`), in the order the integer kernel reads codes; empty when the CPU has no
    /// integer kernel.
    weights_i8: Vec<i8>,
    /// The estimate from the weighted sums (the integer kernels' or the f32 weights').
    estimate: Estimate,
    binary: rabitq::Query,
    /// The estimate from binary codes' bit-plane counts and factors.
    binary_estimate: BitEstimate,
}

impl QueryCode {
    pub(crate) fn new(codebook: &Codebook, metric: Metric, query: &[f32], kernels: &QuantKernels) -> QueryCode {
        let kind = codebook.kind;
        let mut code = QueryCode {
            kind,
            weights: Vec::new(),
            weights_i8: Vec::new(),
            estimate: Estimate::SUM,
            binary: rabitq::Query::default(),
            binary_estimate: BitEstimate::default(),
        };
        match kind {
            Quantization::None => {}
            Quantization::Binary => {
                if let Some(rotation) = &codebook.rotation {
                    code.binary = rabitq::Query::new(rotation, &codebook.lower, query, kernels.walsh_hadamard);
                    code.binary_estimate = code.binary.estimate(metric);
                }
            }
            _ => {
                let padded = if kind == Quantization::Bits4 { query.len().next_multiple_of(64) } else { query.len() };
                code.weights = query.iter().zip(&codebook.step).map(|(q, s)| q * s).collect();
                code.weights.resize(padded, 0.0);
                // The vector kernels: an iterator's `sum` adds one element at a time (f32
                // addition is not reassociated), a chain of 384 dependent adds a query.
                let dot = distance::best_kernels().dot;
                let offset = dot(query, &codebook.lower);
                // The f32 weights' sums need no scale.
                let mut scale = 1.0;
                let integer = if kind == Quantization::Bits8 { kernels.dot_u8_i8 } else { kernels.dot_u4_i8 };
                if integer.is_some() {
                    let (low, high, _) = rabitq::range_and_sum(&code.weights);
                    let largest = high.max(-low).max(0.0);
                    let limit = if kind == Quantization::Bits8 { kernels.u8_weight_limit } else { 127 };
                    scale = if largest > 0.0 { largest / f32::from(limit) } else { 1.0 };
                    let inverse = 1.0 / scale;
                    // Half away from zero by hand: `f32::round` is a libm call on baseline
                    // x86-64, which took a tenth of a 4-bit search on npm51k with the grouping.
                    let rounded = code.weights.iter().map(|w| {
                        let x = w * inverse;
                        (x + 0.5f32.copysign(x)) as i8
                    });
                    code.weights_i8 = if kind == Quantization::Bits4 {
                        kernels::group_nibbles(&rounded.collect::<Vec<_>>())
                    } else {
                        rounded.collect()
                    };
                }
                code.estimate = Estimate::new(metric, scale, offset, dot(query, query));
            }
        }
        code
    }

    /// The integer kernel for this query's code, when it was prepared for one.
    fn integer_kernel(&self, kernels: &QuantKernels) -> Option<IntegerKernel> {
        match self.kind {
            _ if self.weights_i8.is_empty() => None,
            Quantization::Bits8 => kernels.dot_u8_i8,
            Quantization::Bits4 => kernels.dot_u4_i8,
            _ => None,
        }
    }

    /// The estimated distance to the vector with `code` (and `norm`, its `|x̂|²`): ordered like
    /// the true distance, good enough to choose where to walk and what to re-score.
    #[inline]
    pub(crate) fn distance(&self, kernels: &QuantKernels, code: &[u8], norm: f32) -> f32 {
        let norms = [norm];
        let rows = CodeRows { bytes: code, len: code.len(), norms: &norms };
        let mut out = [0.0];
        match (self.kind, self.integer_kernel(kernels)) {
            (Quantization::Binary, _) => {
                (kernels.bit_planes)(self.binary.planes(), rows, &[0], 0, self.binary_estimate, &mut out);
                out[0]
            }
            (_, Some(integer)) => {
                integer(&self.weights_i8, rows, &[0], 0, self.estimate, &mut out);
                out[0]
            }
            (Quantization::Bits8, None) => self.estimate.of((kernels.dot_u8)(&self.weights, code), norm),
            (Quantization::Bits4, None) => self.estimate.of((kernels.dot_u4)(&self.weights, code), norm),
            (Quantization::None, None) => self.estimate.of(0.0, norm),
        }
    }

    /// Whether `deviation` bounds the estimates' error: binary codes; the scalar codes do not.
    pub(crate) fn bounds_its_error(&self) -> bool {
        self.kind == Quantization::Binary
    }

    /// One standard deviation of the error of `node`'s estimate under `metric`; only where
    /// `bounds_its_error`.
    pub(crate) fn deviation(&self, metric: Metric, rows: CodeRows<'_>, node: u32) -> f32 {
        let code = rows.code(node);
        self.binary.deviation(metric, &code[code.len() - rabitq::FACTOR_BYTES..])
    }

    /// The estimated distances to `nodes`, in order, into `out`, with one kernel call for them
    /// all (see `IntegerKernel`), the codes `ahead` places on loading meanwhile. False, and
    /// `out` unchanged, where the kernels have no such call for this code (scalar codes on a
    /// CPU without integer kernels): call `distance` for each node then.
    pub(crate) fn distances(
        &self,
        kernels: &QuantKernels,
        rows: CodeRows<'_>,
        nodes: &[u32],
        ahead: usize,
        out: &mut Vec<f32>,
    ) -> bool {
        if self.kind == Quantization::Binary {
            out.clear();
            out.resize(nodes.len(), 0.0);
            (kernels.bit_planes)(self.binary.planes(), rows, nodes, ahead, self.binary_estimate, out);
            return true;
        }
        let Some(integer) = self.integer_kernel(kernels) else { return false };
        out.clear();
        out.resize(nodes.len(), 0.0);
        integer(&self.weights_i8, rows, nodes, ahead, self.estimate, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize) -> Vec<f32> {
        let mut state = 11u64;
        (0..n * dim)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The vector a scalar code stands for, decoded independently of the kernels.
    fn decode(codebook: &Codebook, code: &[u8], dim: usize) -> Vec<f32> {
        (0..dim)
            .map(|i| {
                let level = match codebook.kind {
                    Quantization::Bits8 => code[i],
                    _ => (code[(i / 32) * 16 + (i % 32) % 16] >> (4 * ((i % 32) / 16))) & 0xF,
                };
                codebook.lower[i] + f32::from(level) * codebook.step[i]
            })
            .collect()
    }

    #[test]
    fn scalar_codes_estimate_every_metric_within_their_step() {
        for kind in [Quantization::Bits8, Quantization::Bits4] {
            for dim in [1, 7, 31, 32, 33, 100, 384] {
                let data = rows(50, dim);
                let codes = Codes::build(kind, dim, &data);
                for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
                    let query = &data[..dim];
                    for node in 0..50u32 {
                        let decoded = decode(&codes.codebook, codes.rows(metric).code(node), dim);
                        let dot: f64 = query.iter().zip(&decoded).map(|(a, b)| f64::from(a * b)).sum();
                        let l2: f64 = query.iter().zip(&decoded).map(|(a, b)| f64::from((a - b) * (a - b))).sum();
                        let norm: f64 = decoded.iter().map(|&x| f64::from(x * x)).sum();
                        let exact = match metric {
                            Metric::L2 => l2,
                            // Half the L2 estimate, were the query of unit length (it is not here).
                            Metric::Cosine => 0.5 * (1.0 + norm) - dot,
                            Metric::InnerProduct => -dot,
                        };
                        for k in available() {
                            let prepared = QueryCode::new(&codes.codebook, metric, query, &k);
                            let got = f64::from(prepared.distance(
                                &k,
                                codes.rows(metric).code(node),
                                codes.norms[node as usize],
                            ));
                            // Integer kernels round each weight to i8: off by at most half a
                            // weight step per code unit (twice that under L2's -2 q·x).
                            let rounding = if prepared.weights_i8.is_empty() {
                                0.0
                            } else {
                                let units: f64 = decoded
                                    .iter()
                                    .zip(&codes.codebook.lower)
                                    .zip(&codes.codebook.step)
                                    .map(|((x, lo), step)| f64::from((x - lo) / step))
                                    .sum();
                                // The sum's weight is the scale (twice it under L2).
                                0.5 * f64::from(prepared.estimate.sum_weight.abs()) * units
                            };
                            let tolerance = 1e-3 * (1.0 + dim as f64) + rounding;
                            assert!(
                                (got - exact).abs() <= tolerance,
                                "{kind} {metric} {} dim {dim}: {got} vs {exact}",
                                k.name
                            );
                        }
                        // Every component inside the range is within half a step of the vector
                        // it codes (outliers beyond three deviations are clamped to it).
                        let row = &data[node as usize * dim..][..dim];
                        let levels = if kind == Quantization::Bits8 { 255.0 } else { 15.0 };
                        for (i, (x, y)) in row.iter().zip(&decoded).enumerate() {
                            let (lo, step) = (codes.codebook.lower[i], codes.codebook.step[i]);
                            let clamped = x.clamp(lo, lo + levels * step);
                            assert!((clamped - y).abs() <= step * 0.5 + 1e-6);
                        }
                    }
                }
            }
        }
    }

    /// One code's sum through a batch kernel (converted to f32, as the kernels give it).
    fn sum_of(kernel: IntegerKernel, w: &[i8], code: &[u8]) -> f32 {
        let mut out = [f32::NAN];
        kernel(w, CodeRows { bytes: code, len: code.len(), norms: &[] }, &[0], 0, Estimate::SUM, &mut out);
        out[0]
    }

    #[test]
    fn each_dimension_takes_the_range_whose_codes_err_least() {
        // Gaussian components (Box-Muller), whose best 16-level clip lies near 2.7 deviations.
        let (n, dim) = (4_000, 24);
        let uniform = rows(n * dim, 1);
        let gaussian: Vec<f32> = uniform
            .chunks_exact(2)
            .flat_map(|pair| {
                let (u, v) = ((pair[0] + 1.0) / 2.0, (pair[1] + 1.0) / 2.0);
                let radius = (-2.0 * (u.max(1e-7)).ln()).sqrt();
                let angle = std::f32::consts::TAU * v;
                [radius * angle.cos(), radius * angle.sin()]
            })
            .collect();
        for kind in [Quantization::Bits4, Quantization::Bits8] {
            let codebook = Codebook::train(kind, dim, &gaussian);
            let mut trainer = Trainer::new(dim);
            gaussian.chunks_exact(dim).for_each(|row| trainer.add(row));
            let levels = Codebook::levels(kind);
            let error = |lower: &[f32], step: &[f32]| -> f64 {
                let mut total = 0.0;
                for row in gaussian.chunks_exact(dim) {
                    for ((&x, &lo), &step) in row.iter().zip(lower).zip(step) {
                        let decoded = lo + ((x - lo) / step).round().clamp(0.0, levels) * step;
                        total += f64::from(x - decoded).powi(2);
                    }
                }
                total
            };
            let chosen = error(&codebook.lower, &codebook.step);
            // Every row was sampled (fewer than 10,000): no single clip for all does better.
            for spread in SPREADS {
                let (lower, step): (Vec<f32>, Vec<f32>) = (0..dim).map(|i| trainer.range(i, spread, levels)).unzip();
                assert!(chosen <= error(&lower, &step) * (1.0 + 1e-9), "{kind}: clip {spread} errs less");
            }
            if kind == Quantization::Bits4 {
                let (lower, step): (Vec<f32>, Vec<f32>) = (0..dim).map(|i| trainer.range(i, 3.0, levels)).unzip();
                let three = error(&lower, &step);
                assert!(chosen < 0.95 * three, "4-bit: {chosen} against {three} at three deviations");
            }
        }
    }

    #[test]
    fn integer_kernels_match_their_references_exactly() {
        for k in available() {
            let (Some(dot_u8), Some(dot_u4)) = (k.dot_u8_i8, k.dot_u4_i8) else { continue };
            for dim in [1usize, 63, 64, 65, 128, 192, 384, 1000] {
                let padded = dim.next_multiple_of(64);
                let weights: Vec<i8> = (0..padded).map(|i| ((i * 7919) % 255) as u8 as i8).collect();
                // The extremes of each kernel's range: the limit, its negation, and every code.
                let limit = i32::from(k.u8_weight_limit);
                let weights_u8: Vec<i8> =
                    (0..padded).map(|i| ((i * 7919) as i32 % (2 * limit + 1) - limit) as i8).collect();
                let mut codes: Vec<u8> = (0..padded).map(|i| ((i * 104729) % 256) as u8).collect();
                let (w, c) = (&weights_u8[..dim], &codes[..dim]);
                assert_eq!(sum_of(dot_u8, w, c), kernels::dot_u8_i8_reference(w, c) as f32, "{} dim {dim}", k.name);
                let extreme: Vec<i8> =
                    (0..dim).map(|i| if i % 3 == 0 { -k.u8_weight_limit } else { k.u8_weight_limit }).collect();
                codes[..dim].fill(255);
                let want = kernels::dot_u8_i8_reference(&extreme, &codes[..dim]) as f32;
                assert_eq!(sum_of(dot_u8, &extreme, &codes[..dim]), want);
                let packed = &codes[..padded / 2];
                let want = kernels::dot_u4_i8_reference(&weights, packed) as f32;
                assert_eq!(sum_of(dot_u4, &weights, packed), want, "dim {dim}");
            }
        }
    }

    /// Names the kernel builds this CPU tested (every test here runs each build `available`
    /// lists against the references) and those it could not, as the CPU lacks them: `make
    /// test-rust` prints this, so that a run on an AVX2-only CPU says it tested no VNNI kernel.
    #[test]
    fn report_the_kernel_builds_tested_on_this_cpu() {
        #[cfg(target_arch = "x86_64")]
        let (every_vector, every_code) =
            (["scalar", "avx2+fma", "avx512f"], ["scalar", "avx2+fma", "avxvnni", "avx512f", "avx512vnni"]);
        #[cfg(target_arch = "aarch64")]
        let (every_vector, every_code) = (["scalar", "neon"], ["scalar"]);
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let (every_vector, every_code) = (["scalar"], ["scalar"]);
        let vector: Vec<&str> = distance::available_kernels().iter().map(|k| k.name).collect();
        let code: Vec<&str> = available().iter().map(|k| k.name).collect();
        for (kind, every, here) in [("vector", &every_vector[..], &vector), ("code", &every_code[..], &code)] {
            assert!(here.iter().all(|name| every.contains(name)), "{kind} builds {here:?} beyond {every:?}");
            let missing: Vec<&&str> = every.iter().filter(|name| !here.contains(name)).collect();
            eprintln!("{kind} kernels tested on this CPU: {here:?}; NOT tested here (the CPU lacks them): {missing:?}");
        }
    }

    #[test]
    fn batched_estimates_equal_one_at_a_time() {
        let (n, dim) = (300, 100);
        let data = rows(n, dim);
        // Every node, in a scrambled order, some twice: the loads run ahead of the sums.
        let nodes: Vec<u32> = (0..2 * n as u32).map(|i| (i * 7919) % n as u32).collect();
        for kind in [Quantization::Bits8, Quantization::Bits4, Quantization::Binary] {
            let codes = Codes::build(kind, dim, &data);
            for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
                for k in available() {
                    let prepared = QueryCode::new(&codes.codebook, metric, &data[dim..2 * dim], &k);
                    let rows = codes.rows(metric);
                    let mut batched = Vec::new();
                    let has_batch = prepared.distances(&k, rows, &nodes, 6, &mut batched);
                    let expected = kind == Quantization::Binary || prepared.integer_kernel(&k).is_some();
                    assert_eq!(has_batch, expected, "{}", k.name);
                    if !has_batch {
                        continue;
                    }
                    let single: Vec<f32> =
                        nodes.iter().map(|&node| prepared.distance(&k, rows.code(node), rows.norm(node))).collect();
                    assert_eq!(batched, single, "{kind} {metric} {}", k.name);
                }
            }
        }
    }

    #[test]
    fn binary_estimates_agree_across_kernels_and_rank_the_true_neighbours_first() {
        for dim in [1, 63, 64, 65, 384, 600, 1024] {
            let data = rows(200, dim);
            let codes = Codes::build(Quantization::Binary, dim, &data);
            let query = &data[dim..2 * dim];
            for metric in [Metric::L2, Metric::Cosine] {
                let reference = QueryCode::new(&codes.codebook, metric, query, &available()[0]);
                for k in available() {
                    let prepared = QueryCode::new(&codes.codebook, metric, query, &k);
                    for node in 0..200u32 {
                        let (want, got) = (
                            reference.distance(&available()[0], codes.rows(metric).code(node), 0.0),
                            prepared.distance(&k, codes.rows(metric).code(node), 0.0),
                        );
                        assert_eq!(want, got, "{} dim {dim} node {node}", k.name);
                    }
                }
            }
            // The query's own row ranks among the closest by the estimate.
            let prepared = QueryCode::new(&codes.codebook, Metric::L2, query, &best_kernels());
            let own = prepared.distance(&best_kernels(), codes.rows(Metric::L2).code(1), 0.0);
            let closer = (0..200u32)
                .filter(|&n| prepared.distance(&best_kernels(), codes.rows(Metric::L2).code(n), 0.0) < own)
                .count();
            assert!(closer <= 2 + 200 / dim, "dim {dim}: {closer} rows estimated closer than the query itself");
        }
    }

    #[test]
    fn cosine_estimates_are_half_the_l2_ones_and_rank_a_tight_cluster() {
        // Unit vectors around eight far centres, a twentieth of their length off them: what
        // clustered embeddings look like to codes whose ranges span every cluster.
        let (n, dim) = (2000, 64);
        let noise = rows(n + 1, dim);
        let centres = rows(8, dim + 1);
        let unit = |row: &[f32]| {
            let centre = &centres[(row[0].to_bits() % 8) as usize * dim..][..dim];
            let shifted: Vec<f32> = row.iter().zip(centre).map(|(x, c)| c + 0.05 * x).collect();
            let length = shifted.iter().map(|x| x * x).sum::<f32>().sqrt();
            shifted.into_iter().map(|x| x / length).collect::<Vec<f32>>()
        };
        let data: Vec<f32> = noise[..n * dim].chunks_exact(dim).flat_map(unit).collect();
        let query = unit(&noise[n * dim..]);
        let exact: Vec<f32> =
            data.chunks_exact(dim).map(|x| 1.0 - x.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>()).collect();
        let nearest = |distances: &[f32]| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| distances[a].total_cmp(&distances[b]));
            order.truncate(10);
            order
        };
        let truth = nearest(&exact);
        for kind in [Quantization::Bits4, Quantization::Bits8] {
            let codes = Codes::build(kind, dim, &data);
            for k in available() {
                let estimate = |metric| {
                    let prepared = QueryCode::new(&codes.codebook, metric, &query, &k);
                    let rows = codes.rows(metric);
                    (0..n as u32)
                        .map(|node| prepared.distance(&k, rows.code(node), rows.norm(node)))
                        .collect::<Vec<f32>>()
                };
                let (cosine, l2) = (estimate(Metric::Cosine), estimate(Metric::L2));
                for (c, l) in cosine.iter().zip(&l2) {
                    assert!((c - 0.5 * l).abs() <= 1e-4, "{kind} {}: {c} vs half of {l}", k.name);
                }
                // By the codes alone: `1 - q · x̂` found none of the ten at 4 bits, 3-5 at 8.
                let found = nearest(&cosine).iter().filter(|node| truth.contains(node)).count();
                let least = if kind == Quantization::Bits4 { 3 } else { 6 };
                assert!(found >= least, "{kind} {}: {found} of the 10 nearest", k.name);
            }
        }
    }

    #[test]
    fn binary_codebooks_from_before_rabitq_are_recognised() {
        let mut words = vec![Quantization::Binary.code(), 3];
        words.extend([0.5f32, -1.0, 2.0].map(f32::to_bits));
        let outdated = Codebook::from_words(&words, 3).unwrap();
        assert!(outdated.is_outdated());
        assert!(!Codebook::train(Quantization::Binary, 3, &rows(5, 3)).is_outdated());
        // Signs that are not all +-1 are damage, not an old format.
        let mut damaged = Codebook::train(Quantization::Binary, 3, &rows(5, 3)).to_words();
        let last = damaged.len() - 1;
        damaged[last] = 0.5f32.to_bits();
        assert_eq!(Codebook::from_words(&damaged, 3), None);
    }

    #[test]
    fn codebooks_round_trip_through_words_and_refuse_damage() {
        let data = rows(10, 40);
        for kind in [Quantization::Binary, Quantization::Bits4, Quantization::Bits8] {
            let codebook = Codebook::train(kind, 40, &data);
            let words = codebook.to_words();
            assert_eq!(Codebook::from_words(&words, 40), Some(codebook.clone()));
            assert_eq!(Codebook::from_words(&words, 41), None);
            assert_eq!(Codebook::from_words(&words[..words.len() - 1], 40), None);
            let mut nan = words.clone();
            nan[2] = f32::NAN.to_bits();
            assert_eq!(Codebook::from_words(&nan, 40), None);
        }
    }
}
