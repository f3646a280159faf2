"""Online backup of a live database (the application keeps it open, so no checkpoint runs
between backups): a full backup, 1% more vectors inserted, then an incremental backup against
the full one. Prints seconds and bytes copied / linked of each.

Usage: python benches/cli/backup_live.py DB_DIR WORK_DIR   (DB_DIR: a database, e.g. from
`omendb import`; its dimension is read from it)."""
import os, shutil, sys, time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import omendb  # noqa: E402

db, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
with omendb.Index.open(db, create=False) as index:
    n = len(index)
    t = time.perf_counter()
    full = index.backup(os.path.join(work, "full"))
    print(f"full backup of {n} vectors: {time.perf_counter() - t:.2f} s, {full['bytes_copied']} bytes copied")
    extra = n // 100
    rng = np.random.default_rng(1)
    vectors = index.get(np.arange(extra, dtype=np.uint64))[0] + rng.normal(0, 0.01, (extra, index.dim)).astype(np.float32)
    index.insert_batch(np.arange(n, n + extra, dtype=np.uint64) + np.uint64(10**9), vectors)
    t = time.perf_counter()
    nxt = index.backup(os.path.join(work, "next"), previous=os.path.join(work, "full"))
    print(f"incremental after {extra} more: {time.perf_counter() - t:.2f} s, {nxt['bytes_copied']} bytes copied "
          f"({100 * nxt['bytes_copied'] / full['bytes_copied']:.2f}% of the full backup), {nxt['bytes_linked']} linked")
with omendb.Index.open(os.path.join(work, "next"), create=False, read_only=True) as copy:
    assert len(copy) == n + extra
shutil.rmtree(work)
