//! Random, often invalid, calls through the C ABI: none may panic (OMEN_STATUS_PANIC would mean an
//! internal bug), and the index must always agree with what was accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ptr::null_mut;

use common::Rng;
use omendb::ffi::*;

#[test]
fn random_calls_never_panic_and_keep_the_index_consistent() {
    let seed = 0x5EED;
    println!("seed {seed}");
    let mut rng = Rng::new(seed);
    for round in 0..40 {
        let mut options = std::mem::MaybeUninit::<omen_options>::uninit();
        assert_eq!(omen_options_default(options.as_mut_ptr(), size_of::<omen_options>(), null_mut()), omen_status::Ok);
        // SAFETY: omen_options_default returned OK, so the struct is initialised.
        let mut options = unsafe { options.assume_init() };
        let dim = 1 + (rng.next_u64() % 12) as usize;
        options.dim = dim;
        options.metric = (rng.next_u64() % 4) as u32; // 3 is not a metric
        options.m = (rng.next_u64() % 40) as usize; // 0 and 1 are invalid
        options.ef_construction = (rng.next_u64() % 50) as usize;
        options.ef_search = (rng.next_u64() % 50) as usize;
        options.segment_capacity = (rng.next_u64() % 300) as usize;
        options.threads = (rng.next_u64() % 3) as usize;
        options.quantization = (rng.next_u64() % 5) as u32; // 4 is not a code
        options.oversample = (rng.next_u64() % 4) as usize;
        let mut index = null_mut();
        let status = omen_index_create(&options, &mut index, null_mut());
        assert_ne!(status, omen_status::Panic, "round {round}: create panicked");
        if status != omen_status::Ok {
            continue;
        }
        let mut accepted = 0usize;
        let mut next_id = 0u64;
        for _ in 0..30 {
            let count = (rng.next_u64() % 70) as usize;
            let call_dim = if rng.next_u64().is_multiple_of(10) { dim + 1 } else { dim };
            let mut vectors: Vec<f32> = (0..count * call_dim).map(|_| rng.gaussian()).collect();
            if rng.next_u64().is_multiple_of(8) && !vectors.is_empty() {
                let at = (rng.next_u64() as usize) % vectors.len();
                vectors[at] = [f32::NAN, f32::INFINITY, 0.0][(rng.next_u64() % 3) as usize];
            }
            let mut ids: Vec<u64> = (0..count as u64).map(|i| next_id + i).collect();
            if rng.next_u64().is_multiple_of(10) && count > 1 {
                ids[1] = ids[0];
            }
            let status = omen_index_insert_batch(index, ids.as_ptr(), vectors.as_ptr(), count, call_dim, null_mut());
            assert_ne!(status, omen_status::Panic, "round {round}: insert panicked");
            if status == omen_status::Ok {
                accepted += count;
                next_id += count as u64;
            }
            assert_eq!(omen_index_len(index), accepted, "round {round}: a rejected batch changed the index");

            let k = (rng.next_u64() % 15) as usize;
            let ef = (rng.next_u64() % 40) as usize;
            let queries = 1 + (rng.next_u64() % 4) as usize;
            let query: Vec<f32> = (0..queries * dim).map(|_| rng.gaussian()).collect();
            let (mut out_ids, mut out_distances, mut counts) =
                (vec![0u64; queries * k], vec![0f32; queries * k], vec![0usize; queries]);
            let threads = (rng.next_u64() % 3) as usize;
            let (ids_out, distances_out, counts_out) =
                (out_ids.as_mut_ptr(), out_distances.as_mut_ptr(), counts.as_mut_ptr());
            let status = if rng.next_u64().is_multiple_of(2) {
                omen_index_search_batch(
                    index,
                    query.as_ptr(),
                    queries,
                    dim,
                    k,
                    ef,
                    threads,
                    ids_out,
                    distances_out,
                    counts_out,
                    null_mut(),
                )
            } else {
                let params = omen_search_params {
                    size: size_of::<omen_search_params>(),
                    ef,
                    oversample: (rng.next_u64() % 5) as usize,
                    threads,
                    allow_ids: std::ptr::null(),
                    allow_count: 0,
                    predicate: None,
                    predicate_context: null_mut(),
                    plan: 0,
                };
                omen_index_search_batch_with(
                    index,
                    query.as_ptr(),
                    queries,
                    dim,
                    k,
                    &params,
                    ids_out,
                    distances_out,
                    counts_out,
                    null_mut(),
                )
            };
            assert_ne!(status, omen_status::Panic, "round {round}: search panicked");
            if status == omen_status::Ok {
                for q in 0..queries {
                    assert_eq!(counts[q], k.min(accepted), "round {round}: hits");
                    let row = &out_ids[q * k..q * k + counts[q]];
                    assert!(row.iter().all(|&id| id < next_id), "round {round}: unknown id");
                }
            }
        }
        omen_index_free(index);
    }
}
