"""Databases on disk from Python: reopen with identical results, the context manager, read-only
and locked openings, damaged files and closed handles."""
import subprocess
import sys

import numpy as np
import pytest

import omendb


def data(n, dim=16, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32)


def test_reopen_gives_identical_results(tmp_path):
    path = tmp_path / "db"
    vectors = data(3000)
    with omendb.Index.open(path, dim=16, metric="cosine", m=8, segment_capacity=1000) as index:
        for first in range(0, 3000, 500):
            index.insert_batch(np.arange(first, first + 500, dtype=np.uint64), vectors[first:first + 500])
        before = index.search_batch(vectors[:50], k=10)
        stats = index.stats()
        assert stats["vectors"] == 3000 and stats["segments"] == 3 and stats["bytes_on_disk"] > 0
    with omendb.Index.open(path, create=False) as index:  # dim=0: the stored one
        assert len(index) == 3000 and index.dim == 16
        after = index.search_batch(vectors[:50], k=10)
        assert (after[0] == before[0]).all() and (after[1] == before[1]).all()
        assert index.stats()["bytes_mapped"] > 0


def test_errors_name_the_problem(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(omendb.NotFoundError) as missing:
        omendb.Index.open(path, dim=4, create=False)
    assert isinstance(missing.value, FileNotFoundError) and str(path) in str(missing.value)
    index = omendb.Index.open(path, dim=4)
    index.insert_batch([1, 2], data(2, 4))
    with pytest.raises(omendb.LockedError):
        omendb.Index.open(path, dim=4)
    with pytest.raises(omendb.DimensionMismatchError):
        omendb.Index.open(path, dim=5, read_only=True)
    reader = omendb.Index.open(path, read_only=True)
    assert len(reader) == 2
    with pytest.raises(omendb.ReadOnlyError):
        reader.insert_batch([3], data(1, 4))
    reader.close()
    index.close()
    index.close()  # idempotent
    with pytest.raises(omendb.ClosedError):
        len(index)
    with pytest.raises(omendb.ClosedError):
        index.flush()
    (path / "MANIFEST").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(omendb.CorruptError) as damaged:
        omendb.Index.open(path)
    assert isinstance(damaged.value, OSError) and "MANIFEST" in str(damaged.value)
    with pytest.raises(ValueError):
        omendb.Index.open(path, durability="sometimes")


def test_a_killed_process_keeps_every_acknowledged_batch(tmp_path):
    path = tmp_path / "db"
    child = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, numpy as np
sys.path.insert(0, {str(omendb.__file__.rsplit('/', 2)[0])!r})
import omendb
index = omendb.Index.open({str(path)!r}, dim=16, durability="interval", sync_interval_ms=5)
rng = np.random.default_rng(0)
index.insert_batch(np.arange(100, dtype=np.uint64), rng.standard_normal((100, 16)).astype(np.float32))
print("acknowledged", flush=True)
os.kill(os.getpid(), 9)
"""], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=60)
    assert "acknowledged" in out and child.returncode == -9
    with omendb.Index.open(path) as index:
        assert len(index) == 100


def test_a_damaged_log_tail_is_moved_aside_and_reported_or_refused(tmp_path):
    import shutil
    path, copy = tmp_path / "db", tmp_path / "copy"
    index = omendb.Index.open(path, dim=8)
    index.insert_batch([1, 2], data(2, 8))
    index.insert_batch([3, 4], data(2, 8, seed=4))
    # A copy of the open database, as a crash leaves it, with the last byte of the last record flipped.
    shutil.copytree(path, copy)
    log = next(copy.glob("wal-*"))
    damaged = bytearray(log.read_bytes())
    damaged[-1] ^= 0x10
    log.write_bytes(damaged)
    with pytest.raises(omendb.CorruptError) as refused:
        omendb.Index.open(copy, log_recovery="strict")
    assert log.name in str(refused.value) and log.read_bytes() == damaged
    with pytest.raises(ValueError):
        omendb.Index.open(copy, log_recovery="lenient")
    with omendb.Index.open(copy) as reopened:
        assert len(reopened) == 2
        stats = reopened.stats()
        assert stats["log_dropped_records"] == 1 and stats["log_dropped_bytes"] == 16 + 16 + 2 * 8 + 2 * 8 * 4
        aside = list(copy.glob("*.damaged"))
        assert len(aside) == 1 and aside[0].name in reopened.recovery_notice
        assert aside[0].read_bytes() == bytes(damaged[-stats["log_dropped_bytes"]:])
    assert index.recovery_notice is None
    index.close()


def test_delete_upsert_get_and_compact_survive_reopening(tmp_path):
    path = tmp_path / "db"
    vectors = data(1200, 16)
    with omendb.Index.open(path, dim=16, m=8, segment_capacity=400, compact_threshold=0) as index:
        index.insert_batch(np.arange(1200, dtype=np.uint64), vectors)
        assert index.delete(np.arange(0, 1200, 2)) == 600
        assert index.delete([0, 2, 5000]) == 0
        with pytest.raises(omendb.DuplicateIdError):
            index.delete([1, 1])
        with pytest.raises(omendb.DuplicateIdError):
            index.upsert([3, 3], vectors[:2])
        index.upsert([1, 5001], vectors[10:12])  # 1 now holds row 10's vector
        assert len(index) == 601
        stats = index.stats()
        assert stats["live"] == stats["vectors"] == 601 and stats["deleted"] == 601
        ids, _ = index.search_batch(vectors[:200], k=10, ef=200)
        assert not np.isin(ids, np.arange(0, 1200, 2)).any()
    with omendb.Index.open(path, compact_threshold=0) as index:
        assert len(index) == 601
        got, found = index.get([1, 2, 5001])
        assert found.tolist() == [True, False, True]
        assert (got[0] == vectors[10]).all() and (got[1] == 0).all() and (got[2] == vectors[11]).all()
        index.compact()
        stats = index.stats()
        assert stats["deleted"] == 0 and stats["vectors"] == 601
        assert index.search(vectors[10], k=1)[0].tolist() == [1]  # row 10 itself was deleted
    with omendb.Index.open(path, read_only=True) as reader:
        assert len(reader) == 601
        with pytest.raises(omendb.ReadOnlyError):
            reader.delete([1])
        with pytest.raises(omendb.ReadOnlyError):
            reader.compact()


def test_backup_while_inserting_and_incremental_backup(tmp_path):
    import threading

    vectors = data(4000)
    with omendb.Index.open(tmp_path / "db", dim=16, m=8, segment_capacity=500) as index:
        index.insert_batch(np.arange(1000, dtype=np.uint64), vectors[:1000])

        def insert_rest():
            for first in range(1000, 4000, 100):
                index.insert_batch(np.arange(first, first + 100, dtype=np.uint64), vectors[first:first + 100])

        writer = threading.Thread(target=insert_rest)
        writer.start()
        full = index.backup(tmp_path / "full")
        writer.join()
        assert full["bytes_copied"] > 0 and full["bytes_linked"] == 0
        following = index.backup(tmp_path / "next", previous=tmp_path / "full")
        assert following["bytes_linked"] > 0
        with pytest.raises(omendb.InvalidArgumentError):
            index.backup(tmp_path / "db")
        with pytest.raises(omendb.NotFoundError):
            index.backup(tmp_path / "other", previous=tmp_path / "nothing-here")
    with omendb.Index.open(tmp_path / "full", create=False, read_only=True) as copy:
        # A prefix of the batches: whole ones only, every vector its own.
        assert len(copy) % 100 == 0 and 1000 <= len(copy) <= 4000
        got, found = copy.get(np.arange(len(copy), dtype=np.uint64))
        assert found.all() and np.array_equal(got, vectors[:len(copy)])
    with omendb.Index.open(tmp_path / "next", create=False, read_only=True) as copy:
        assert len(copy) == 4000
