"""The sharded index on a local Ray: recall against one index, a shard killed during inserts,
reopening, bad input, deletes/upserts/get/filters, and building from a Ray dataset."""
import os
import threading

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (make test installs it): pip install ray")

import omendb  # noqa: E402
import omendb.distributed as od  # noqa: E402

DIM = 16


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Ray's workers are new processes: they import this checkout's omendb and library.
    package = os.path.dirname(os.path.dirname(os.path.abspath(omendb.__file__)))
    env = {"PYTHONPATH": package}
    if "OMENDB_LIBRARY" in os.environ:
        env["OMENDB_LIBRARY"] = os.environ["OMENDB_LIBRARY"]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def clustered(n, seed=5):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32) * 3
    return (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, DIM)).astype(np.float32)).astype(np.float32)


def recall(found, truth, k):
    return sum(len(set(f[:k]) & set(t[:k])) for f, t in zip(found.tolist(), truth.tolist())) / (len(truth) * k)


def test_the_hash_spreads_ids_and_never_changes():
    shards = od.shard_of(np.arange(100_000, dtype=np.uint64), 4)
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 24_000, counts
    # Fixed values: a change would send stored ids to the wrong shard.
    assert od.shard_of([0, 1, 2, 2**64 - 2], 7).tolist() == od.shard_of([0, 1, 2, 2**64 - 2], 7).tolist()
    assert od.shard_of([0, 1, 2, 3], 1000).tolist() == [int(x) for x in od.shard_of([0, 1, 2, 3], 1000)]


def test_four_shards_recall_at_least_one_index_minus_a_hundredth():
    base, queries = clustered(5000), clustered(200, seed=9)
    ids = np.arange(len(base), dtype=np.uint64)
    single = omendb.Index(dim=DIM, m=8, ef_construction=64, threads=2)
    single.insert_batch(ids, base)
    truth = np.argsort(((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
    with od.ShardedIndex(4, DIM, m=8, ef_construction=64, threads=1) as sharded:
        sharded.insert_batch(ids, base)
        assert len(sharded) == len(base)
        stats = sharded.stats()
        assert len(stats["shards"]) == 4 and all(s["vectors"] > 1000 for s in stats["shards"])
        for ef in (10, 20, 40):
            found, distances = sharded.search_batch(queries, k=10, ef=ef)
            one = recall(single.search_batch(queries, k=10, ef=ef)[0], truth, 10)
            assert recall(found, truth, 10) >= one - 0.01, ef
            assert (np.diff(distances, axis=1) >= 0).all(), "sorted"
            assert all(len(set(row)) == 10 for row in found.tolist()), "ids unique"
        ids1, d1 = sharded.search(queries[0], k=5)
        assert ids1.tolist() == sharded.search_batch(queries[:1], k=5)[0][0].tolist()


def test_a_shard_killed_during_inserts_loses_no_acknowledged_id(tmp_path):
    base = clustered(4000)
    index = od.ShardedIndex(3, DIM, path=str(tmp_path / "db"), m=8, ef_construction=32, threads=1)
    acknowledged, errors = [], []

    def stream():
        try:
            for first in range(0, len(base), 200):
                batch = np.arange(first, first + 200, dtype=np.uint64)
                index.insert_batch(batch, base[first:first + 200])
                acknowledged.append(batch)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writer = threading.Thread(target=stream)
    writer.start()
    while len(acknowledged) < 5 and writer.is_alive():
        threading.Event().wait(0.01)
    ray.kill(index.actors[1], no_restart=False)  # dies; Ray restarts it, it reopens its directory
    writer.join()
    assert not errors, errors
    print(f"{index.retries} shard calls retried after the kill")
    ids = np.concatenate(acknowledged)
    assert len(ids) == len(base)
    vectors, found = index.get(ids)
    assert found.all() and np.array_equal(vectors, base[ids.astype(np.int64)])
    assert len(index) == len(base), "every id exactly once"
    hits = index.search_batch(base[:50], k=1, ef=64)[0][:, 0]
    assert (hits == np.arange(50)).mean() >= 0.98
    index.close()


def test_reopen_gives_identical_results(tmp_path):
    base, queries = clustered(3000), clustered(50, seed=3)
    path = str(tmp_path / "db")
    with od.ShardedIndex(2, DIM, path=path, m=8, ef_construction=32, threads=1) as index:
        index.insert_batch(np.arange(3000, dtype=np.uint64), base)
        before = index.search_batch(queries, k=10, ef=32)
    with pytest.raises(omendb.InvalidArgumentError):
        od.ShardedIndex(2, DIM, path=path)
    with od.ShardedIndex.open(path) as index:
        assert index.num_shards == 2 and len(index) == 3000
        after = index.search_batch(queries, k=10, ef=32)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    with pytest.raises(omendb.NotFoundError):
        od.ShardedIndex.open(str(tmp_path / "nothing"))


def test_bad_input_raises_the_library_exceptions_and_changes_nothing():
    with od.ShardedIndex(2, DIM, metric="cosine", threads=1) as index:
        index.insert_batch(np.arange(10, dtype=np.uint64), clustered(10))
        with pytest.raises(omendb.DimensionMismatchError):
            index.insert_batch([100], np.ones((1, DIM + 1), np.float32))
        nan = clustered(3)
        nan[2, 4] = np.nan
        with pytest.raises(omendb.NonFiniteError):
            index.insert_batch([100, 101, 102], nan)
        with pytest.raises(omendb.DuplicateIdError):
            index.insert_batch([100, 100], clustered(2))
        with pytest.raises(omendb.DuplicateIdError):  # already present, on whichever shard
            index.insert_batch([200, 3], clustered(2))
        with pytest.raises(omendb.ZeroVectorError):
            index.insert_batch([300], np.zeros((1, DIM), np.float32))
        with pytest.raises(omendb.DimensionMismatchError):
            index.search_batch(np.ones((1, DIM - 1), np.float32))
        with pytest.raises(omendb.InvalidArgumentError):
            index.search_batch(np.ones((1, DIM), np.float32), k=0)
        assert len(index) == 10, "nothing was inserted"
        # An error raised inside a shard comes out as the library's own class.
        with pytest.raises(omendb.DuplicateIdError):
            index.delete([4, 4])


def test_delete_upsert_get_and_filters():
    base = clustered(2000)
    with od.ShardedIndex(3, DIM, threads=1) as index:
        index.insert_batch(np.arange(2000, dtype=np.uint64), base)
        assert index.delete([5, 6, 99999]) == 2
        assert len(index) == 1998
        index.upsert([7, 5000], base[[100, 101]])
        vectors, found = index.get([7, 5, 5000])
        assert found.tolist() == [True, False, True] and np.array_equal(vectors[0], base[100])
        ids, _ = index.search(base[100], k=2, ef=64)
        assert set(ids.tolist()) == {7, 100}
        allowed = np.array([11, 12, 13, 1500], dtype=np.uint64)
        ids, distances = index.search_batch(base[:20], k=4, filter=allowed)
        assert set(ids.flatten().tolist()) <= set(allowed.tolist())
        ids, distances = index.search_batch(base[:2], k=10, filter=[11, 12])
        assert (ids[:, 2:] == 2**64 - 1).all() and np.isinf(distances[:, 2:]).all()


def test_from_ray_dataset_builds_every_row():
    pytest.importorskip("pandas", reason="Ray Data needs pandas and pyarrow (make test installs them)")
    base = clustered(3000)
    dataset = ray.data.from_items([{"id": i, "vector": base[i]} for i in range(len(base))])
    index = od.from_ray_dataset(dataset, "id", "vector", num_shards=2, dim=DIM, batch_size=500, threads=1)
    assert len(index) == 3000
    vectors, found = index.get(np.arange(3000, dtype=np.uint64))
    assert found.all() and np.array_equal(vectors, base)
    index.close()
