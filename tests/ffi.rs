//! The C ABI driven from Rust: every bad input gets its own status and leaves the index
//! exactly as it was (same length, same search results).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use omendb::ffi::*;

const DIM: usize = 16;
const K: usize = 5;

struct Handle(*mut omen_index);

impl Drop for Handle {
    fn drop(&mut self) {
        omen_index_free(self.0);
    }
}

fn options(dim: usize, metric: omen_metric) -> omen_options {
    let mut options = std::mem::MaybeUninit::<omen_options>::uninit();
    assert_eq!(omen_options_default(options.as_mut_ptr(), size_of::<omen_options>(), null_mut()), omen_status::Ok);
    // SAFETY: omen_options_default returned OK, so it wrote the whole struct.
    let mut options = unsafe { options.assume_init() };
    options.dim = dim;
    options.metric = metric as u32;
    options
}

fn create(options: &omen_options) -> Handle {
    let mut index = null_mut();
    assert_eq!(omen_index_create(options, &mut index, null_mut()), omen_status::Ok);
    Handle(index)
}

/// Runs a call that must fail with `expected`, checking the error object it returns.
fn expect(expected: omen_status, call: impl FnOnce(*mut *mut omen_error) -> omen_status) {
    let mut err = null_mut();
    let status = call(&mut err);
    assert_eq!(status, expected);
    assert!(!err.is_null(), "no error object for {expected:?}");
    assert_eq!(omen_error_code(err), expected);
    // SAFETY: a live error's message is a valid C string until omen_error_free.
    let message = unsafe { CStr::from_ptr(omen_error_message(err)) }.to_string_lossy().into_owned();
    assert!(!message.is_empty());
    println!("{expected:?}: {message}");
    omen_error_free(err);
}

fn search(index: &Handle, query: &[f32]) -> (Vec<u64>, Vec<f32>) {
    let (mut ids, mut distances, mut count) = (vec![0u64; K], vec![0f32; K], 0usize);
    let status = omen_index_search(
        index.0,
        query.as_ptr(),
        query.len(),
        K,
        0,
        ids.as_mut_ptr(),
        distances.as_mut_ptr(),
        &mut count,
        null_mut(),
    );
    assert_eq!(status, omen_status::Ok);
    ids.truncate(count);
    distances.truncate(count);
    (ids, distances)
}

#[test]
fn bad_inputs_get_their_status_and_change_nothing() {
    let data = common::clustered(1_100, DIM, 8, 1);
    let ids: Vec<u64> = (0..1_100).collect();
    let index = create(&options(DIM, omen_metric::Cosine));
    let mut err = null_mut();
    assert_eq!(omen_index_insert_batch(index.0, ids.as_ptr(), data.as_ptr(), 1_000, DIM, &mut err), omen_status::Ok);
    assert!(err.is_null(), "success must set *err to NULL");
    let query = &data[1_050 * DIM..1_051 * DIM];
    let before = search(&index, query);
    let (fresh, rows) = (&ids[1_000..1_002], &data[1_000 * DIM..1_002 * DIM]);
    let insert = |ids: *const u64, vectors: *const f32, count: usize, dim: usize| {
        move |err| omen_index_insert_batch(index.0, ids, vectors, count, dim, err)
    };

    let mut nan = rows.to_vec();
    nan[3] = f32::NAN;
    expect(omen_status::NonFinite, insert(fresh.as_ptr(), nan.as_ptr(), 2, DIM));
    nan[3] = f32::NEG_INFINITY;
    expect(omen_status::NonFinite, insert(fresh.as_ptr(), nan.as_ptr(), 2, DIM));
    let zero = [0f32; DIM];
    expect(omen_status::ZeroVector, insert(fresh.as_ptr(), zero.as_ptr(), 1, DIM));
    expect(omen_status::DimensionMismatch, insert(fresh.as_ptr(), rows.as_ptr(), 2, DIM - 1));
    expect(omen_status::DuplicateId, insert(ids.as_ptr(), rows.as_ptr(), 2, DIM));
    let twice = [fresh[0], fresh[0]];
    expect(omen_status::DuplicateId, insert(twice.as_ptr(), rows.as_ptr(), 2, DIM));
    expect(omen_status::NullArgument, insert(null(), rows.as_ptr(), 2, DIM));
    expect(omen_status::NullArgument, insert(fresh.as_ptr(), null(), 2, DIM));
    expect(omen_status::NullArgument, |err| {
        omen_index_insert_batch(null_mut(), fresh.as_ptr(), rows.as_ptr(), 2, DIM, err)
    });
    expect(omen_status::InvalidArgument, insert(fresh.as_ptr(), rows.as_ptr(), usize::MAX / 2, DIM));
    let misaligned = (rows.as_ptr() as usize + 1) as *const f32;
    expect(omen_status::InvalidArgument, insert(fresh.as_ptr(), misaligned, 2, DIM));
    assert_eq!(insert(null(), null(), 0, DIM)(null_mut()), omen_status::Ok, "an empty batch is a no-op");

    let (mut out_ids, mut out_distances, mut count) = ([7u64; K], [7f32; K], 99usize);
    let search_with =
        |query: *const f32, dim: usize, k: usize, out_ids: *mut u64, out_distances: *mut f32, out_count: *mut usize| {
            move |err| omen_index_search(index.0, query, dim, k, 0, out_ids, out_distances, out_count, err)
        };
    let (oi, od, oc) = (out_ids.as_mut_ptr(), out_distances.as_mut_ptr(), &mut count as *mut usize);
    expect(omen_status::InvalidArgument, search_with(query.as_ptr(), DIM, 0, oi, od, oc));
    expect(omen_status::DimensionMismatch, search_with(query.as_ptr(), DIM + 1, K, oi, od, oc));
    expect(omen_status::NonFinite, search_with(nan.as_ptr(), DIM, K, oi, od, oc));
    expect(omen_status::ZeroVector, search_with(zero.as_ptr(), DIM, K, oi, od, oc));
    expect(omen_status::NullArgument, search_with(null(), DIM, K, oi, od, oc));
    expect(omen_status::NullArgument, search_with(query.as_ptr(), DIM, K, null_mut(), od, oc));
    expect(omen_status::NullArgument, search_with(query.as_ptr(), DIM, K, oi, od, null_mut()));
    expect(omen_status::InvalidArgument, search_with(query.as_ptr(), DIM, K, oi, oi.cast(), oc));
    expect(omen_status::InvalidArgument, search_with(query.as_ptr(), DIM, usize::MAX / 4, oi, od, oc));
    assert_eq!((out_ids, out_distances, count), ([7u64; K], [7f32; K], 99), "outputs written on failure");

    assert_eq!(omen_index_len(index.0), 1_000);
    assert_eq!(search(&index, query), before, "a rejected call changed the index");
}

#[test]
fn search_batch_matches_single_searches_and_pads_missing_slots() {
    let data = common::clustered(300, DIM, 4, 2);
    let ids: Vec<u64> = (500..800).collect();
    let index = create(&options(DIM, omen_metric::L2));
    assert_eq!(omen_index_insert_batch(index.0, ids.as_ptr(), data.as_ptr(), 300, DIM, null_mut()), omen_status::Ok);
    let queries = &data[..20 * DIM];
    let (mut out_ids, mut out_distances, mut counts) = (vec![0u64; 20 * K], vec![0f32; 20 * K], vec![0usize; 20]);
    for threads in [1, 0, 3] {
        let status = omen_index_search_batch(
            index.0,
            queries.as_ptr(),
            20,
            DIM,
            K,
            0,
            threads,
            out_ids.as_mut_ptr(),
            out_distances.as_mut_ptr(),
            counts.as_mut_ptr(),
            null_mut(),
        );
        assert_eq!(status, omen_status::Ok);
        for q in 0..20 {
            let (single_ids, single_distances) = search(&index, &queries[q * DIM..(q + 1) * DIM]);
            assert_eq!(counts[q], K);
            assert_eq!(&out_ids[q * K..(q + 1) * K], single_ids.as_slice(), "threads {threads} query {q}");
            assert_eq!(&out_distances[q * K..(q + 1) * K], single_distances.as_slice());
            assert_eq!(out_ids[q * K], 500 + q as u64, "each query is an inserted vector");
        }
    }
    expect(omen_status::InvalidArgument, |err| {
        omen_index_search_batch(
            index.0,
            queries.as_ptr(),
            20,
            DIM,
            K,
            0,
            1,
            out_ids.as_mut_ptr(),
            out_distances.as_mut_ptr(),
            out_ids.as_mut_ptr().cast(),
            err,
        )
    });

    let small = create(&options(DIM, omen_metric::L2));
    assert_eq!(omen_index_insert_batch(small.0, ids.as_ptr(), data.as_ptr(), 2, DIM, null_mut()), omen_status::Ok);
    let status = omen_index_search_batch(
        small.0,
        queries.as_ptr(),
        1,
        DIM,
        K,
        0,
        1,
        out_ids.as_mut_ptr(),
        out_distances.as_mut_ptr(),
        counts.as_mut_ptr(),
        null_mut(),
    );
    assert_eq!(status, omen_status::Ok);
    assert_eq!(counts[0], 2);
    assert_eq!(&out_ids[2..K], &[u64::MAX; K - 2]);
    assert!(out_distances[2..K].iter().all(|d| *d == f32::INFINITY));
}

#[test]
fn a_count_far_beyond_memory_is_refused_without_a_panic() {
    let index = create(&options(1, omen_metric::L2));
    let (ids, vectors) = ([1u64, 2], [0.5f32, 0.25]);
    // The buffers hold 2 rows; the count passes the size checks but no machine has the memory:
    // refused before a row beyond the second is read.
    let lying = usize::MAX / 16;
    expect(omen_status::ResourceExhausted, |err| {
        omen_index_insert_batch(index.0, ids.as_ptr(), vectors.as_ptr(), lying, 1, err)
    });
    assert_eq!(omen_index_len(index.0), 0);
}

#[test]
fn options_and_handles_are_checked() {
    let mut options = options(DIM, omen_metric::L2);
    expect(omen_status::InvalidArgument, |err| omen_options_default(&mut options, size_of::<omen_options>() + 8, err));
    expect(omen_status::NullArgument, |err| omen_options_default(null_mut(), size_of::<omen_options>(), err));
    let mut index = null_mut();
    for broken in [
        omen_options { size: 8, ..options },
        omen_options { metric: 7, ..options },
        omen_options { dim: 0, ..options },
        omen_options { m: 1, ..options },
    ] {
        expect(omen_status::InvalidArgument, |err| omen_index_create(&broken, &mut index, err));
        assert!(index.is_null(), "out_index written on failure");
    }
    expect(omen_status::NullArgument, |err| omen_index_create(null(), &mut index, err));
    expect(omen_status::NullArgument, |err| omen_index_create(&options, null_mut(), err));
    assert_eq!(omen_index_create(&options, &mut index, null_mut()), omen_status::Ok);
    assert_eq!((omen_index_len(index), omen_index_dim(index), omen_index_segment_count(index)), (0, DIM, 0));
    omen_index_free(index);
    assert_eq!((omen_index_len(null()), omen_index_dim(null())), (0, 0));
    omen_index_free(null_mut());
    omen_error_free(null_mut());
    assert_eq!(omen_error_code(null()), omen_status::Ok);
    // SAFETY: both return static C strings.
    let (empty, unknown) =
        unsafe { (CStr::from_ptr(omen_error_message(null())), CStr::from_ptr(omen_status_name(4242))) };
    assert_eq!((empty.to_bytes(), unknown.to_bytes()), (&b""[..], &b"OMEN_STATUS_UNKNOWN"[..]));
}

#[test]
fn deletes_upserts_gets_and_compaction_through_the_c_abi() {
    let data = common::clustered(600, DIM, 8, 3);
    let ids: Vec<u64> = (0..600).collect();
    let index = create(&options(DIM, omen_metric::L2));
    assert_eq!(omen_index_insert_batch(index.0, ids.as_ptr(), data.as_ptr(), 600, DIM, null_mut()), omen_status::Ok);
    let query = &data[7 * DIM..8 * DIM];
    let before = search(&index, query);

    // Bad input: a status each, nothing changed.
    let mut removed = 99usize;
    let twice = [3u64, 3];
    expect(omen_status::DuplicateId, |err| omen_index_delete(index.0, twice.as_ptr(), 2, &mut removed, err));
    expect(omen_status::NullArgument, |err| omen_index_delete(index.0, null(), 2, &mut removed, err));
    expect(omen_status::NullArgument, |err| omen_index_delete(null(), ids.as_ptr(), 2, &mut removed, err));
    let mut nan = data[..2 * DIM].to_vec();
    nan[5] = f32::NAN;
    expect(omen_status::NonFinite, |err| omen_index_upsert(index.0, ids.as_ptr(), nan.as_ptr(), 2, DIM, err));
    expect(omen_status::DuplicateId, |err| omen_index_upsert(index.0, twice.as_ptr(), data.as_ptr(), 2, DIM, err));
    expect(omen_status::DimensionMismatch, |err| {
        omen_index_upsert(index.0, ids.as_ptr(), data.as_ptr(), 2, DIM + 1, err)
    });
    expect(omen_status::InvalidArgument, |err| {
        omen_index_upsert(index.0, ids.as_ptr(), data.as_ptr(), usize::MAX / 2, DIM, err)
    });
    let (mut out, mut found) = (vec![0f32; 2 * DIM], [7u8; 2]);
    expect(omen_status::DimensionMismatch, |err| {
        omen_index_get(index.0, ids.as_ptr(), 2, out.as_mut_ptr(), DIM - 1, found.as_mut_ptr(), err)
    });
    expect(omen_status::NullArgument, |err| {
        omen_index_get(index.0, ids.as_ptr(), 2, null_mut(), DIM, found.as_mut_ptr(), err)
    });
    expect(omen_status::NullArgument, |err| omen_index_compact(null(), err));
    assert_eq!((omen_index_len(index.0), removed), (600, 99));
    assert_eq!(search(&index, query), before);

    // Delete the query's own vector and two absent ids: it is never returned again.
    let doomed = [7u64, 5000, 5001];
    assert_eq!(omen_index_delete(index.0, doomed.as_ptr(), 3, &mut removed, null_mut()), omen_status::Ok);
    assert_eq!((removed, omen_index_len(index.0)), (1, 599));
    assert_eq!(omen_index_delete(index.0, doomed.as_ptr(), 3, null_mut(), null_mut()), omen_status::Ok);
    let (after, _) = search(&index, query);
    assert!(!after.contains(&7) && after.len() == K);
    // Upsert: id 8 gets the old vector of 7 (and is then its nearest), id 7000 is new.
    let (upsert_ids, upsert_rows) = ([8u64, 7000], [query, &data[9 * DIM..10 * DIM]].concat());
    assert_eq!(
        omen_index_upsert(index.0, upsert_ids.as_ptr(), upsert_rows.as_ptr(), 2, DIM, null_mut()),
        omen_status::Ok
    );
    assert_eq!(omen_index_len(index.0), 600);
    assert_eq!(search(&index, query).0[0], 8);
    let wanted = [8u64, 7, 7000];
    let (mut out, mut found) = (vec![1f32; 3 * DIM], [9u8; 3]);
    assert_eq!(
        omen_index_get(index.0, wanted.as_ptr(), 3, out.as_mut_ptr(), DIM, found.as_mut_ptr(), null_mut()),
        omen_status::Ok
    );
    assert_eq!(found, [1, 0, 1]);
    assert_eq!(&out[..DIM], query);
    assert!(out[DIM..2 * DIM].iter().all(|&x| x == 0.0));
    let mut stats = omen_stats { size: size_of::<omen_stats>(), ..Default::default() };
    assert_eq!(omen_index_stats(index.0, &mut stats, null_mut()), omen_status::Ok);
    assert_eq!((stats.vectors, stats.deleted), (600, 2));
    assert_eq!(omen_index_compact(index.0, null_mut()), omen_status::Ok);
    assert_eq!(omen_index_stats(index.0, &mut stats, null_mut()), omen_status::Ok);
    assert_eq!((stats.vectors, stats.deleted), (600, 0));
    assert_eq!(search(&index, query).0[0], 8);
}
