//! Quantized search: recall against brute force with re-scoring at the default oversample for
//! every code, the recall of the codes alone (reported), identical results after reopening, and
//! every code under every metric.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{brute_force, clustered, recall};
use omendb::{Error, Index, Metric, Options, Quantization, SearchParams};

const CODES: [Quantization; 3] = [Quantization::Binary, Quantization::Bits4, Quantization::Bits8];

fn build(quantization: Quantization, metric: Metric, dim: usize, base: &[f32]) -> Index {
    let options = Options { quantization, segment_capacity: 6000, ..Options::new(dim, metric) };
    let index = Index::new(options).unwrap();
    let ids: Vec<u64> = (0..(base.len() / dim) as u64).collect();
    for (ids, rows) in ids.chunks(2500).zip(base.chunks(2500 * dim)) {
        index.insert_batch(ids, rows).unwrap();
    }
    index
}

fn recall_at(index: &Index, queries: &[f32], dim: usize, truth: &[Vec<u64>], params: SearchParams) -> f64 {
    let found: Vec<Vec<u64>> = queries
        .chunks_exact(dim)
        .map(|q| index.search(q, 10, params).unwrap().iter().map(|h| h.id).collect())
        .collect();
    recall(&found, truth, 10)
}

#[test]
fn rescored_codes_reach_the_recall_of_the_vectors() {
    for (dim, metric) in [(128, Metric::L2), (384, Metric::Cosine), (96, Metric::InnerProduct)] {
        let n = 15_000;
        let data = clustered(n + 200, dim, 60, 7 + dim as u64);
        let (base, queries) = data.split_at(n * dim);
        let ids: Vec<u64> = (0..n as u64).collect();
        let truth = brute_force(metric, dim, base, &ids, queries, 10);
        for code in CODES {
            let index = build(code, metric, dim, base);
            assert!(index.segment_count() >= 3);
            let rescored = recall_at(&index, queries, dim, &truth, SearchParams::default());
            let codes_only =
                recall_at(&index, queries, dim, &truth, SearchParams { oversample: 1, ..SearchParams::default() });
            println!("{dim}-d {metric} {code}: recall@10 {rescored:.4} re-scored (default oversample {}), {codes_only:.4} from the codes' top 10", code.default_oversample());
            assert!(rescored >= 0.95, "{dim}-d {metric} {code}: recall {rescored}");
        }
    }
}

/// The byte range of section `kind` in a segment file (see docs/format.md).
fn section(bytes: &[u8], kind: u32) -> std::ops::Range<usize> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let entry = (0..word(60) as usize).map(|i| 64 + 32 * i).find(|&at| word(at) == kind).unwrap();
    long(entry + 8)..long(entry + 8) + long(entry + 16)
}

#[test]
fn quantized_databases_reopen_identical_and_detect_damaged_codes() {
    let dir = std::env::temp_dir().join(format!("omendb-quant-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dim = 48;
    let data = clustered(5000, dim, 30, 3);
    let queries = &data[..20 * dim];
    for code in CODES {
        let _ = std::fs::remove_dir_all(&dir);
        let options = Options { quantization: code, segment_capacity: 2000, ..Options::new(dim, Metric::L2) };
        let results = |index: &Index| -> Vec<Vec<(u64, u32)>> {
            queries
                .chunks_exact(dim)
                .map(|q| index.search(q, 10, 0).unwrap().iter().map(|h| (h.id, h.distance.to_bits())).collect())
                .collect()
        };
        let before = {
            let index = Index::open(&dir, options.clone()).unwrap();
            let ids: Vec<u64> = (0..5000).collect();
            index.insert_batch(&ids, &data).unwrap();
            results(&index)
        };
        let index = Index::open(&dir, Options { dim: 0, ..options.clone() }).unwrap();
        assert_eq!(index.options().quantization, code, "the stored quantization wins");
        assert_eq!(results(&index), before, "{code}: results differ after reopening");
        drop(index);

        let segment = dir.join("segment-0000000000.omen");
        let pristine = std::fs::read(&segment).unwrap();
        let codes = section(&pristine, 8);
        assert_eq!(codes.len(), 2000 * code.code_len(dim), "{code}: code section size");
        for at in [codes.start, codes.start + codes.len() / 2, codes.end - 1] {
            let mut damaged = pristine.clone();
            damaged[at] ^= 0x01;
            std::fs::write(&segment, &damaged).unwrap();
            match Index::open(&dir, options.clone()) {
                Err(Error::Corrupt { path, .. }) => assert!(path.ends_with("segment-0000000000.omen")),
                other => panic!("{code}: damaged code byte {at} went unnoticed: {:?}", other.map(|i| i.len())),
            }
        }
        std::fs::write(&segment, &pristine).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn codes_do_not_depend_on_how_inserts_were_batched() {
    let (dim, n) = (64, 10_000);
    let data = clustered(n + 200, dim, 40, 41);
    let (base, queries) = data.split_at(n * dim);
    let ids: Vec<u64> = (0..n as u64).collect();
    let truth = brute_force(Metric::L2, dim, base, &ids, queries, 10);
    for code in [Quantization::Bits4, Quantization::Bits8] {
        let options = Options { quantization: code, ..Options::new(dim, Metric::L2) };
        let whole = Index::new(options.clone()).unwrap();
        whole.insert_batch(&ids, base).unwrap();
        // One vector first: a codebook learnt from it alone maps everything else to its edges.
        let trickled = Index::new(options).unwrap();
        trickled.insert_batch(&ids[..1], &base[..dim]).unwrap();
        trickled.insert_batch(&ids[1..], &base[dim..]).unwrap();
        let params = SearchParams::from(64);
        let (r_whole, r_trickled) =
            (recall_at(&whole, queries, dim, &truth, params), recall_at(&trickled, queries, dim, &truth, params));
        println!("{code}: recall@10 at ef 64 {r_whole:.3} in one batch, {r_trickled:.3} after a batch of one");
        assert!(r_trickled >= r_whole - 0.02, "{code}: {r_trickled} after a batch of one, {r_whole} in one batch");
    }
}

/// A batch search returns what single searches return, with every code and without, on several
/// segments, on one thread and several, before and after deletes.
#[test]
fn batch_searches_return_what_single_searches_return() {
    let (dim, n) = (64, 14_000);
    let data = clustered(n + 37, dim, 40, 11);
    let (base, queries) = data.split_at(n * dim);
    for code in [Quantization::None].into_iter().chain(CODES) {
        let index = build(code, Metric::L2, dim, base);
        assert!(index.segment_count() >= 3);
        for deleted in [false, true] {
            if deleted {
                let gone: Vec<u64> = (0..n as u64).step_by(7).collect();
                index.delete(&gone).unwrap();
            }
            let params = SearchParams { ef: 40, ..SearchParams::default() };
            let single: Vec<_> = queries.chunks_exact(dim).map(|q| index.search(q, 10, params).unwrap()).collect();
            for threads in [1, 2, 3] {
                let batch = index.search_batch(queries, 10, params, threads).unwrap();
                assert_eq!(batch, single, "{code} deleted {deleted} threads {threads}");
            }
        }
    }
}
