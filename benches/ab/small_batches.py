"""What a row costs when an application inserts a few rows a call, and a query when it searches a
few a call: two builds of the library side by side in one process, next to hnswlib, at each
batch size, thread count and dimension.

    python benches/ab/small_batches.py --a OLD/libomendb.so --b target/release/libomendb.so \
        [--dims 8,384] [--threads 1,2] [--sizes 1,2,4,8,16,32] [--rounds 2]

Each measurement starts an index (M 16, ef_construction 100, L2) with 1,000 rows in one batch,
then times inserting the next `--rows` rows (Gaussian, seed 1) in batches of one size, from
Python; then, on the index filled in the first batch size, `search_batch` (k 10, ef 64, the
index's threads) of 500 queries in calls of each batch size, the best of three passes. Each round measures A, B and hnswlib in turn
(the order reversed every other round, so that a noisy neighbour slows all alike); the best round
counts. Prints microseconds a row and a query.
"""
import argparse
import time

import numpy as np

from search_ab import load_package


def omendb_index(package, dim, threads):
    index = package.Index(dim=dim, metric="l2", threads=threads, seed=7)

    class Adapter:
        insert_batch = index.insert_batch

        def search_batch(self, queries):
            index.search_batch(queries, k=10, ef=64)
    return Adapter()


def hnswlib_index(dim, threads, capacity):
    import hnswlib
    index = hnswlib.Index(space="l2", dim=dim)
    index.init_index(max_elements=capacity, M=16, ef_construction=100, random_seed=7)
    index.set_num_threads(threads)
    index.set_ef(64)

    class Adapter:
        def insert_batch(self, ids, rows):
            index.add_items(rows, ids)

        def search_batch(self, queries):
            index.knn_query(queries, 10)
    return Adapter()


def per_item(step, items, size):
    """Microseconds an item for calling `step(first, last)` over `items` items, `size` a call."""
    start = time.perf_counter()
    for first in range(0, items, size):
        step(first, min(first + size, items))
    return (time.perf_counter() - start) / items * 1e6


def costs(make, rows, sizes):
    """Microseconds a row for inserting `rows[1000:]` in batches of each size, and a query for
    searching 500 of them in batches of each size (on the index filled one size first)."""
    inserts, searches = {}, {}
    for size in sizes:
        index = make()
        index.insert_batch(np.arange(1000, dtype=np.uint64), rows[:1000])
        rest = rows[1000:]
        inserts[size] = per_item(lambda a, b: index.insert_batch(np.arange(1000 + a, 1000 + b, dtype=np.uint64),
                                                                 rest[a:b]), len(rest), size)
        if not searches:
            search = lambda a, b: index.search_batch(rows[a:b])  # noqa: E731
            # Threads that sat idle wake slowly for a while (seen on a KVM guest, where an idle
            # vCPU halts): about 0.2 s of calls on the pool first, and the best of three passes.
            start = time.perf_counter()
            while time.perf_counter() - start < 0.2:
                per_item(search, 500, max(sizes))
            searches = {s: min(per_item(search, 500, s) for _ in range(3)) for s in sizes}
    return inserts, searches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="the base build's libomendb.so")
    ap.add_argument("--b", required=True, help="the build to compare")
    ap.add_argument("--dims", default="8,384")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--sizes", default="1,2,4,8,16,32")
    ap.add_argument("--rows", type=int, default=3000, help="rows inserted in small batches")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    packages = {"A": load_package(a.a), "B": load_package(a.b)}
    sizes = [int(s) for s in a.sizes.split(",")]
    for dim in (int(d) for d in a.dims.split(",")):
        rows = np.random.default_rng(1).standard_normal((1000 + a.rows, dim), dtype=np.float32)
        for threads in (int(t) for t in a.threads.split(",")):
            makers = {name: (lambda p=package: omendb_index(p, dim, threads)) for name, package in packages.items()}
            makers["hnswlib"] = lambda: hnswlib_index(dim, threads, len(rows))
            best = {}
            for round_ in range(a.rounds):
                for name in list(makers) if round_ % 2 == 0 else list(reversed(makers)):
                    measured = costs(makers[name], rows, sizes)
                    old = best.get(name, measured)
                    best[name] = tuple({s: min(m[s], o[s]) for s in sizes} for m, o in zip(measured, old))
            for name, (inserts, searches) in best.items():
                print(f"dim {dim} threads {threads} {name:8s} us/row inserted by batch size "
                      + " ".join(f"{s}:{inserts[s]:.1f}" for s in sizes)
                      + "; us/query searched " + " ".join(f"{s}:{searches[s]:.1f}" for s in sizes), flush=True)


if __name__ == "__main__":
    main()
