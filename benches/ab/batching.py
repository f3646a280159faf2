"""What batching costs the search, and what a compaction gives back, with one build of the
library: index A is filled in one batch, index B in batches of `--batch` rows, both searched
in interleaved rounds (`search_ab.py`'s); then B is compacted (which rebuilds a segment filled in
batches as one batch) and both are searched again.

    python benches/ab/batching.py --lib target/release/libomendb.so --data build/clustered1000000 \
        --metric l2 --ef 64,80,96 --rounds 4 --batch 1000

Prints each build's time, the compaction's, and per ef and phase each index's recall@k and
queries/s (one search thread) with B/A.
"""
import argparse
import time

import numpy as np

from search_ab import load_dataset, load_package, new_index, search_interleaved  # puts benches/peers on the path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default="target/release/libomendb.so")
    ap.add_argument("--data", default="build/clustered1000000")
    ap.add_argument("--metric", default="l2", choices=["cos", "l2", "ip"])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000, help="rows a call to insert_batch for index B")
    ap.add_argument("--ef", default="64,80,96", help="comma-separated")
    ap.add_argument("--oversample", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4, help="passes over the queries, in 10 chunks each")
    a = ap.parse_args()
    package = load_package(a.lib)
    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)
    ids = np.arange(len(base), dtype=np.uint64)
    indexes = {name: new_index(package, base.shape[1], a) for name in ("A", "B")}
    for name, step in (("A", len(base)), ("B", a.batch)):
        start = time.perf_counter()
        for first in range(0, len(base), step):
            indexes[name].insert_batch(ids[first:first + step], base[first:first + step])
        print(f"{name}: {len(base)} vectors in batches of {step}, {time.perf_counter() - start:.1f} s", flush=True)
    print("B filled in batches:", flush=True)
    search_interleaved(a, indexes, queries, truth)
    start = time.perf_counter()
    indexes["B"].compact()
    print(f"B compacted in {time.perf_counter() - start:.1f} s:", flush=True)
    search_interleaved(a, indexes, queries, truth)


if __name__ == "__main__":
    main()
