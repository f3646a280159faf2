"""The Python binding: real results against numpy brute force, and clear errors."""
import time

import numpy as np
import pytest

import omendb


def clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1, 1, (20, dim)).astype(np.float32)
    return (centres[rng.integers(0, 20, n)] + 0.25 * rng.standard_normal((n, dim))).astype(np.float32)


def test_recall_against_brute_force():
    data = clustered(5100, 48, 1)
    base, queries = data[:5000], data[5000:]
    with omendb.Index(dim=48, metric="l2", threads=2) as index:
        index.insert_batch(np.arange(5000, dtype=np.uint64) + 10, base)
        assert len(index) == 5000
        ids, distances = index.search_batch(queries, k=10)
        assert ids.shape == (100, 10) and ids.dtype == np.uint64 and distances.dtype == np.float32
        exact = np.argsort(((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1), axis=1)[:, :10] + 10
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert recall >= 0.95, recall
        single_ids, single_distances = index.search(queries[0], k=10)
        assert (single_ids == ids[0]).all() and np.allclose(single_distances, distances[0])


def test_cosine_distance_and_padding():
    with omendb.Index(dim=2, metric="cosine") as index:
        index.insert_batch([1, 2], np.array([[1, 0], [0, 3]], np.float32))
        ids, distances = index.search_batch(np.array([[2, 0]], np.float32), k=3)
        assert ids[0].tolist() == [1, 2, 2**64 - 1]
        assert np.allclose(distances[0][:2], [0, 1]) and np.isinf(distances[0][2])
        huge_ids, _ = index.search(np.array([2, 0], np.float32), k=10**12)
        assert huge_ids.tolist() == [1, 2]


@pytest.mark.parametrize("vectors, status", [
    (np.full((1, 8), np.nan, np.float32), "OMEN_STATUS_NON_FINITE"),
    (np.ones((1, 7), np.float32), "OMEN_STATUS_DIMENSION_MISMATCH"),
    (np.zeros((1, 8), np.float32), "OMEN_STATUS_ZERO_VECTOR"),
])
def test_bad_vectors_raise_and_change_nothing(vectors, status):
    with omendb.Index(dim=8, metric="cosine") as index:
        index.insert_batch([1], np.ones((1, 8), np.float32))
        with pytest.raises(omendb.InvalidInputError) as caught:
            index.insert_batch([2], vectors)
        assert caught.value.status_name == status and isinstance(caught.value, ValueError)
        assert len(index) == 1


def test_duplicate_ids_and_k_zero_and_closed_index():
    index = omendb.Index(dim=4)
    index.insert_batch([5], np.ones((1, 4), np.float32))
    with pytest.raises(omendb.InvalidInputError, match="DUPLICATE_ID"):
        index.insert_batch([6, 5], np.ones((2, 4), np.float32))
    with pytest.raises(omendb.InvalidInputError, match="INVALID_ARGUMENT"):
        index.search(np.ones(4, np.float32), k=0)
    index.close()
    index.close()
    with pytest.raises(omendb.Error, match="closed"):
        len(index)


def test_bad_options_raise():
    with pytest.raises(omendb.InvalidInputError, match="dim"):
        omendb.Index(dim=0)
    with pytest.raises(ValueError):
        omendb.Index(dim=4, metric="hamming")
    assert omendb.version().count(".") == 2


@pytest.mark.parametrize("call, error", [
    (lambda ix: ix.insert_batch([1], np.ones((1, 3), np.float32)), omendb.DimensionMismatchError),
    (lambda ix: ix.insert_batch([1], np.full((1, 4), np.inf, np.float32)), omendb.NonFiniteError),
    (lambda ix: ix.insert_batch([1], np.zeros((1, 4), np.float32)), omendb.ZeroVectorError),
    (lambda ix: ix.insert_batch([9], np.ones((1, 4), np.float32)), omendb.DuplicateIdError),
    (lambda ix: ix.search(np.ones(4, np.float32), k=0), omendb.InvalidArgumentError),
    (lambda ix: ix.search_batch(np.ones((2, 5), np.float32), k=1), omendb.DimensionMismatchError),
])
def test_each_status_has_its_exception(call, error):
    with omendb.Index(dim=4, metric="cosine") as index:
        index.insert_batch([9], np.ones((1, 4), np.float32))
        with pytest.raises(error) as caught:
            call(index)
        assert isinstance(caught.value, ValueError) and caught.value.message
        assert len(index) == 1


def test_none_and_closed_index_raise_instead_of_crashing():
    index = omendb.Index(dim=2)
    with pytest.raises((TypeError, ValueError)):
        index.insert_batch(None, None)
    with pytest.raises((TypeError, ValueError)):
        index.search(None)
    index.close()
    with pytest.raises(omendb.ClosedError):
        index.search(np.ones(2, np.float32))
    with pytest.raises(omendb.ClosedError):
        index.insert_batch([1], np.ones((1, 2), np.float32))


def test_single_and_batch_calls_agree():
    data = clustered(2000, 16, 4)
    with omendb.Index(dim=16, metric="ip", threads=2) as index:
        index.insert_batch(np.arange(2000, dtype=np.uint64), data)
        ids, distances = index.search_batch(data[:20], k=5, threads=1)
        for q in range(20):
            single_ids, single_distances = index.search(data[q], k=5)
            assert (single_ids == ids[q]).all() and np.allclose(single_distances, distances[q])


def test_the_gil_is_released_while_the_library_works():
    import threading

    counter, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        data = clustered(20000, 64, 5)
        index = omendb.Index(dim=64, threads=1)
        before = counter[0]
        index.insert_batch(np.arange(20000, dtype=np.uint64), data)  # ~0.3 s inside the library
        during = counter[0] - before
    finally:
        stop.set()
        thread.join()
    # With the GIL held for the whole call the other thread could not have counted at all.
    assert during > 0


def test_close_waits_for_calls_running_in_other_threads():
    import threading

    data = clustered(20000, 64, 6)
    index = omendb.Index(dim=64, threads=1)
    started, outcome = threading.Event(), []

    def insert():
        started.set()
        try:
            index.insert_batch(np.arange(20000, dtype=np.uint64), data)  # ~0.3 s, GIL released
            outcome.append("inserted")
        except omendb.ClosedError:
            outcome.append("closed first")

    worker = threading.Thread(target=insert)
    worker.start()
    started.wait()
    time.sleep(0.1)  # let the insert enter the library (it runs for about 0.3 s)
    index.close()  # must not free the index under the running insert (which would crash)
    # close() returned only after the running insert finished, so its outcome is already in.
    assert outcome == ["inserted"]
    worker.join()
    with pytest.raises(omendb.ClosedError):
        len(index)


@pytest.mark.parametrize("quantization", ["binary", "4bit", "8bit"])
def test_quantized_search_rescored_to_high_recall(quantization):
    data = clustered(4100, 128, 5)
    base, queries = data[:4000], data[4000:]
    with omendb.Index(dim=128, metric="l2", quantization=quantization) as index:
        index.insert_batch(np.arange(4000, dtype=np.uint64), base)
        ids, _ = index.search_batch(queries, k=10)
        exact = np.argsort(((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert recall >= 0.95, (quantization, recall)
        wide, _ = index.search_batch(queries, k=10, oversample=20)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(wide, exact)]) >= recall - 0.01
        single, _ = index.search(queries[0], k=10, oversample=20)
        assert (single == wide[0]).all()


def test_binary_codes_serve_the_inner_product():
    data = clustered(2100, 64, 9)
    base, queries = data[:2000], data[2000:]
    with omendb.Index(dim=64, metric="ip", quantization="binary") as index:
        index.insert_batch(np.arange(2000, dtype=np.uint64), base)
        ids, _ = index.search_batch(queries, k=10)
        exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]) >= 0.95
    with pytest.raises(ValueError):
        omendb.Index(dim=8, quantization="2bit")


def test_inputs_that_a_conversion_would_change_are_refused(tmp_path):
    index = omendb.Index(dim=4)
    rows = np.eye(4, dtype=np.float32)[:2]
    for ids in ([-1, 2], [100.7, 3.0], [True, False]):
        with pytest.raises(omendb.InvalidArgumentError):
            index.insert_batch(ids, rows)
    with pytest.raises(omendb.InvalidArgumentError):
        index.insert_batch([1, 2**64 - 1], rows)  # OMEN_NO_ID marks empty result slots
    assert len(index) == 0
    index.insert_batch(np.array([1, 2], np.int64), rows)
    for bad in ({"ef": -1}, {"k": 2.5}, {"k": -3}):
        with pytest.raises(omendb.InvalidArgumentError):
            index.search(rows[0], **bad)
        with pytest.raises(omendb.InvalidArgumentError):
            index.search_batch(rows, **bad)
    for bad in ({"threads": -1}, {"m": 2.5}, {"ef_search": -1}):
        with pytest.raises(omendb.InvalidArgumentError):
            omendb.Index(dim=4, **bad)
    ids, _ = index.search(rows[0], k=np.int64(3))
    assert list(ids) == [1, 2]
    with pytest.raises(omendb.InvalidArgumentError):
        omendb.Index.open(str(tmp_path / "db\0suffix"), dim=4)
    assert not (tmp_path / "db").exists()


def test_search_batch_caps_k_at_the_index_size():
    index = omendb.Index(dim=4)
    index.insert_batch([1, 2], np.eye(4, dtype=np.float32)[:2])
    ids, distances = index.search_batch(np.eye(4, dtype=np.float32)[:1], k=500_000_000)
    assert ids.shape == (1, 2) and distances.shape == (1, 2)
    assert sorted(ids[0]) == [1, 2]


def _filtered_truth(base, ids, query, allowed, k):
    mask = np.isin(ids, allowed)
    distances = ((base[mask] - query) ** 2).sum(-1)
    return ids[mask][np.argsort(distances, kind="stable")[:k]]


def test_filters_return_the_nearest_allowed_ids():
    data = clustered(4050, 24, 7)
    base, queries = data[:4000], data[4000:]
    ids = np.arange(4000, dtype=np.uint64) * 3 + 1
    with omendb.Index(dim=24, metric="l2", segment_capacity=1500) as index:
        index.insert_batch(ids, base)
        rng = np.random.default_rng(3)
        for share in (0.5, 0.1, 0.01, 0.001):
            allowed = rng.choice(ids, max(1, int(share * len(ids))), replace=False)
            found, distances = index.search_batch(queries, k=10, filter=allowed)
            allowed_set = set(allowed.tolist())
            by_predicate, _ = index.search_batch(queries, k=10, filter=allowed_set.__contains__, plan="exact")
            hits = 0
            for q, row, exact_row in zip(queries, found, by_predicate):
                truth = _filtered_truth(base, ids, q, allowed, 10)
                present = row[row != 2**64 - 1]
                assert len(present) == len(truth) and np.isin(present, allowed).all()
                assert list(exact_row[:len(truth)]) == list(truth)
                hits += len(set(present) & set(truth))
            recall = hits / sum(min(10, len(allowed)) for _ in queries)
            assert recall >= 0.95, (share, recall)
        one, _ = index.search(queries[0], k=10, filter=[ids[17]])
        assert list(one) == [ids[17]]
        nothing, _ = index.search(queries[0], k=10, filter=[])
        assert len(nothing) == 0
        both, _ = index.search(queries[0], k=10, filter=omendb.Filter(allow=ids[:100], predicate=lambda id: id % 2 == 0))
        assert len(both) == 10 and all(id % 2 == 0 and id < ids[100] for id in both)


def test_a_predicate_that_raises_reaches_the_caller():
    with omendb.Index(dim=4) as index:
        index.insert_batch(np.arange(50, dtype=np.uint64), clustered(50, 4, 2))

        def broken(id):
            raise KeyError(id)

        with pytest.raises(KeyError):
            index.search(np.ones(4, np.float32), k=5, filter=broken)
        assert len(index.search(np.ones(4, np.float32), k=5)[0]) == 5
        with pytest.raises(ValueError):
            index.search(np.ones(4, np.float32), k=5, plan="fastest")


def test_range_search_matches_brute_force():
    data = clustered(3000, 16, 9)
    with omendb.Index(dim=16, metric="l2") as index:
        index.insert_batch(np.arange(3000, dtype=np.uint64), data)
        for q in data[::500]:
            distances = ((data - q) ** 2).sum(-1)
            radius = float(np.sort(distances)[40])
            inside = set(np.nonzero(distances <= radius)[0].tolist())
            ids, found = index.search_range(q, radius, plan="exact")
            assert set(ids.tolist()) ^ inside <= {int(np.argsort(distances)[40])}  # f32 at the boundary
            assert (found <= radius).all() and (np.diff(found) >= 0).all()
            walked, _ = index.search_range(q, radius)
            assert len(set(walked.tolist()) & set(ids.tolist())) >= 0.95 * len(ids)
            few, _ = index.search_range(q, radius, max_results=5)
            assert len(few) == 5
        for bad in (float("nan"), -1.0):
            with pytest.raises(omendb.InvalidArgumentError):
                index.search_range(data[0], bad)
        with pytest.raises(omendb.InvalidArgumentError):
            index.search_range(data[0], 1.0, max_results=0)
