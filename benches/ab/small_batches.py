"""What a row costs when an application inserts a few rows a call: two builds of the library side
by side in one process, next to hnswlib, at each batch size, thread count and dimension.

    python benches/ab/small_batches.py --a OLD/libomendb.so --b target/release/libomendb.so \
        [--dims 8,384] [--threads 1,2] [--sizes 1,2,4,8,16,32] [--rounds 2]

Each measurement starts an index (M 16, ef_construction 100, L2) with 1,000 rows in one batch,
then times inserting the next `--rows` rows (Gaussian, seed 1) in batches of one size, from
Python. Each round measures A, B and hnswlib in turn (the order reversed every other round, so
that a noisy neighbour slows all alike); the best round counts. Prints microseconds a row, and
for reference a single search of the final index (k 10, ef 64).
"""
import argparse
import time

import numpy as np

from search_ab import load_package


def omendb_index(package, dim, threads):
    return package.Index(dim=dim, metric="l2", threads=threads, seed=7)


def hnswlib_index(dim, threads, capacity):
    import hnswlib
    index = hnswlib.Index(space="l2", dim=dim)
    index.init_index(max_elements=capacity, M=16, ef_construction=100, random_seed=7)
    index.set_num_threads(threads)
    index.set_ef(64)

    class Adapter:
        def insert_batch(self, ids, rows):
            index.add_items(rows, ids)

        def search(self, query, k):
            index.knn_query(query, k)
    return Adapter()


def cost(make, rows, size):
    """Microseconds a row for inserting `rows[1000:]` in batches of `size`, and of one search."""
    index = make()
    index.insert_batch(np.arange(1000, dtype=np.uint64), rows[:1000])
    start = time.perf_counter()
    for first in range(1000, len(rows), size):
        index.insert_batch(np.arange(first, min(first + size, len(rows)), dtype=np.uint64), rows[first:first + size])
    per_row = (time.perf_counter() - start) / (len(rows) - 1000) * 1e6
    start = time.perf_counter()
    for query in rows[:500]:
        index.search(query, 10)
    return per_row, (time.perf_counter() - start) / 500 * 1e6


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
            best = {name: {} for name in makers}
            for round_ in range(a.rounds):
                names = list(makers) if round_ % 2 == 0 else list(reversed(makers))
                for size in sizes:
                    for name in names:
                        per_row, search = cost(makers[name], rows, size)
                        old = best[name].get(size)
                        best[name][size] = (min(per_row, old[0]), min(search, old[1])) if old else (per_row, search)
            for name, by_size in best.items():
                costs = " ".join(f"{size}:{by_size[size][0]:.1f}" for size in sizes)
                print(f"dim {dim} threads {threads} {name:8s} us/row by batch size {costs}"
                      f"  (search {by_size[sizes[0]][1]:.1f} us)", flush=True)


if __name__ == "__main__":
    main()
