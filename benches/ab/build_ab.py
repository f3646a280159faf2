"""Build rate and graph quality of two builds of the library on one data set, in one process: both
libraries are loaded side by side, and each round builds the index once with each (in turn, the
order reversed every other round, so that a noisy neighbour slows both alike), then searches
the new graph at each ef.

    python benches/ab/build_ab.py --a OLD/libomendb.so --b target/release/libomendb.so \
        --data build/clustered1000000 --metric l2 --rounds 2 --ef 56,64,72,80,88 [--batch 1000]
        [--durable build]
    python benches/ab/build_ab.py --a target/release/libomendb.so --b target/release/libomendb.so \
        --data build/clustered1000000 --metric l2 --ef 56,64,72,80,88,96 --batch 0,1000 [--compact]

Prints one line per build: its build rate, recall@k and queries/s (one search thread, the best
of two passes) per ef, and queries/s at recall 0.95 as `compare.py` interpolates it between the
efs around it (`-` when no ef reaches 0.95). A change of the order nodes are linked in, or of how
they are linked, changes the graph: compare recall at equal ef and queries/s at 0.95, not
queries/s at equal ef.
"""
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from search_ab import ab_arguments, load_dataset, load_package, new_index  # puts benches/peers on the path
from compare import qps_at  # noqa: E402


def main():
    ap = ab_arguments(__doc__.split("\n")[0])
    ap.add_argument("--ef", default="32,48,64", help="comma-separated, ascending")
    ap.add_argument("--rounds", type=int, default=2, help="builds with each library")
    ap.add_argument("--batch", default="0",
                    help="rows a call to insert_batch, as an application adding as it goes (default 0: all at "
                         "once); A's,B's to compare batch sizes (one library as both A and B)")
    ap.add_argument("--durable", metavar="DIR",
                    help="build a database in a new directory under DIR (each batch logged and fsynced, "
                         "the closing checkpoint timed with the build) instead of an in-memory index")
    ap.add_argument("--compact", action="store_true",
                    help="compact after building (timed apart): rebuilds a segment filled in batches as one batch")
    a = ap.parse_args()
    packages = {"A": load_package(a.a), "B": load_package(a.b)}
    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)
    efs = [int(e) for e in a.ef.split(",")]
    batches = [int(b) for b in a.batch.split(",")]
    batch = dict(zip("AB", batches * 2 if len(batches) == 1 else batches))
    for round_ in range(a.rounds):
        for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
            path = tempfile.mkdtemp(dir=a.durable) if a.durable else None
            index = new_index(packages[name], base.shape[1], a, path)
            start = time.perf_counter()
            step = batch[name] or len(base)
            for first in range(0, len(base), step):
                index.insert_batch(np.arange(first, min(first + step, len(base)), dtype=np.uint64),
                                   base[first:first + step])
            if path:
                index.flush()
            rate = len(base) / (time.perf_counter() - start)
            compacted = ""
            if a.compact:
                start = time.perf_counter()
                index.compact()
                compacted = f" compact {time.perf_counter() - start:.1f} s"
            points = []
            for ef in efs:
                best = 0.0
                for _ in range(2):
                    start = time.perf_counter()
                    ids = index.search_batch(queries, a.k, ef, threads=1)[0]
                    best = max(best, len(queries) / (time.perf_counter() - start))
                hits = sum(len(set(got) & set(want[:a.k])) for got, want in zip(ids, truth))
                points.append((hits / (a.k * len(queries)), best))
            index.close()
            if path:
                shutil.rmtree(path)
            at = qps_at(points, 0.95)
            cells = " ".join(f"ef{ef} {r:.3f}/{q:.0f}" for ef, (r, q) in zip(efs, points))
            print(f"{name} {os.path.basename(a.data)} n={len(base)} batch {step} build {rate:.0f} vec/s{compacted} {cells} "
                  f"qps@0.95 {round(at) if at else '-'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
