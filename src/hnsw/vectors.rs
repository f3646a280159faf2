//! Vectors stored as the high and low 16-bit halves of each f32, in two arrays.
//!
//! The high half of an f32 (sign, exponent, 7 mantissa bits) is a bfloat16: within 0.4% of the
//! value. Graph search is bound by the bytes it pulls from memory, so walking the graph reads only
//! the high halves (half the traffic of f32) and the final candidates are re-scored exactly by
//! joining both halves again. Memory stays 4 bytes a component and no precision is lost.

use crate::distance::{join, prefetch_all, widen};
use crate::memory::{AlignedVec, Array};
use crate::quant::{Codes, Quantization};

pub(crate) struct SplitVectors {
    dim: usize,
    high: Array<u16>,
    low: Array<u16>,
}

impl SplitVectors {
    pub(crate) fn new(dim: usize) -> Self {
        SplitVectors { dim, high: Array::default(), low: Array::default() }
    }

    /// Appends row-major `rows`.
    pub(crate) fn push(&mut self, rows: &[f32]) {
        let (high, low) = (self.high.vec_mut(), self.low.vec_mut());
        high.reserve(rows.len());
        low.reserve(rows.len());
        high.extend(rows.iter().map(|x| (x.to_bits() >> 16) as u16));
        low.extend(rows.iter().map(|x| x.to_bits() as u16));
    }

    /// The high halves of `node`'s vector: what `Distance::coarse` reads.
    #[inline]
    pub(crate) fn high(&self, node: u32) -> &[u16] {
        let start = node as usize * self.dim;
        &self.high[start..start + self.dim]
    }

    /// The low halves of `node`'s vector: with `high`, its exact values (`Distance::exact`).
    #[inline]
    pub(crate) fn low(&self, node: u32) -> &[u16] {
        let start = node as usize * self.dim;
        &self.low[start..start + self.dim]
    }

    /// Starts loading `node`'s low halves, which only exact re-scoring reads.
    #[inline]
    pub(crate) fn prefetch_low(&self, node: u32) {
        let start = node as usize * self.dim;
        prefetch_all(&self.low[start..start + self.dim]);
    }

    /// `node`'s exact vector, written into `out`.
    #[inline]
    pub(crate) fn exact_into(&self, node: u32, out: &mut Vec<f32>) {
        let (high, low) = (self.high(node), self.low(node));
        // Sized first, then written in place: a loop the compiler vectorises (an `extend` over
        // the zipped halves checks capacity each element, and re-scoring spent more time here
        // than in the binary walk).
        out.clear();
        out.resize(self.dim, 0.0);
        for ((out, &h), &l) in out.iter_mut().zip(high).zip(low) {
            *out = join(h, l);
        }
    }

    /// `node`'s vector as its high halves stand for it (each value within 0.4%), into `out`:
    /// reads half the bytes of `exact_into`.
    #[inline]
    pub(crate) fn coarse_into(&self, node: u32, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.high(node).iter().map(|&h| widen(h)));
    }

    /// Number of vectors.
    pub(crate) fn len(&self) -> usize {
        self.high.len() / self.dim.max(1)
    }

    /// Codes of every vector, with a codebook learnt from all of them (in parallel).
    pub(crate) fn recode(&self, kind: Quantization) -> Codes {
        Codes::build_with(kind, self.dim, self.len(), |node, buffer| self.exact_into(node, buffer))
    }

    /// Reorders the vectors from `first` on (`Array::permute_rows`), both halves side by side.
    pub(crate) fn permute(&mut self, first: usize, order: &[u32]) {
        let (high, low) = (&mut self.high, &mut self.low);
        rayon::join(|| high.permute_rows(self.dim, first, order), || low.permute_rows(self.dim, first, order));
    }

    /// A copy with no spare capacity.
    pub(crate) fn compacted(&self) -> SplitVectors {
        let (high, low) = (AlignedVec::copy_of(&self.high), AlignedVec::copy_of(&self.low));
        SplitVectors { dim: self.dim, high: high.into(), low: low.into() }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.high.shrink_to_fit();
        self.low.shrink_to_fit();
    }

    /// The two halves' arrays (high, low), as a segment file stores them.
    pub(crate) fn halves(&self) -> (&Array<u16>, &Array<u16>) {
        (&self.high, &self.low)
    }

    /// Vectors over arrays read from a file; `None` unless both hold `len * dim` halves.
    pub(crate) fn from_halves(dim: usize, len: usize, high: Array<u16>, low: Array<u16>) -> Option<Self> {
        let expected = len.checked_mul(dim)?;
        (high.len() == expected && low.len() == expected).then_some(SplitVectors { dim, high, low })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.high.heap_bytes() + self.low.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_join_back_into_the_exact_values() {
        let rows = [1.0f32, -0.0, f32::MIN_POSITIVE, std::f32::consts::PI, -1e-30, 65504.0, f32::MAX, 0.1];
        let mut vectors = SplitVectors::new(4);
        vectors.push(&rows);
        let mut out = Vec::new();
        for node in 0..2 {
            vectors.exact_into(node, &mut out);
            let expected = &rows[node as usize * 4..node as usize * 4 + 4];
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        assert_eq!(widen(vectors.high(0)[0]), 1.0);
    }
}
