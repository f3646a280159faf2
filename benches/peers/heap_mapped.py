"""One graph searched two ways in one run: on the heap it was built in, and mapped from the
snapshot its database wrote (a read-only opening of the same directory beside the writer).

    python benches/peers/heap_mapped.py ../shared/data/npm51k --metric cos --omendb python/
    python benches/peers/heap_mapped.py build/clustered1000000 --metric l2 --n 300000 --omendb python/

Both openings hold the same graph, so their results must be identical (checked). Rounds
alternate between the two so that a noisy neighbour slows both alike; each cell is the best of
the rounds. Prints recall@k / queries/s (one search thread) per ef and the mapped/heap ratio.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ann_peers import cpu_model, load_dataset, recall  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--metric", default="cos", choices=["l2", "cos", "ip"])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--omendb", metavar="DIR", required=True)
    a = ap.parse_args()
    sys.path.insert(0, a.omendb)
    import omendb

    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)
    efs = [int(e) for e in a.efs.split(",")]
    metric = {"l2": "l2", "cos": "cosine", "ip": "ip"}[a.metric]
    print(f"# {os.path.basename(a.data)} n={len(base)} dim={base.shape[1]} metric={a.metric} M={a.m} efc={a.efc} "
          f"quantization={a.quantization} rounds={a.rounds} cpu={cpu_model()}")
    with tempfile.TemporaryDirectory() as tmp:
        heap = omendb.Index.open(tmp, dim=base.shape[1], metric=metric, m=a.m, ef_construction=a.efc,
                                 threads=a.threads, durability="never", quantization=a.quantization,
                                 compact_threshold=0)
        t = time.perf_counter()
        heap.insert_batch(np.arange(len(base), dtype=np.uint64), base)
        print(f"# built in {time.perf_counter() - t:.1f} s; segments {heap.segment_count}")
        heap.flush()
        mapped = omendb.Index.open(tmp, read_only=True)
        best = {("heap", ef): float("inf") for ef in efs} | {("mapped", ef): float("inf") for ef in efs}
        found = {}
        for _ in range(a.rounds):
            for ef in efs:
                for name, index in (("heap", heap), ("mapped", mapped)):
                    index.search_batch(queries[:100], k=a.k, ef=ef, threads=1)
                    t = time.perf_counter()
                    ids = index.search_batch(queries, k=a.k, ef=ef, threads=1)[0]
                    best[name, ef] = min(best[name, ef], time.perf_counter() - t)
                    found[name, ef] = np.asarray(ids).astype(np.int64)
        print(f"{'ef':>5} {'recall':>7} {'heap q/s':>10} {'mapped q/s':>11} {'mapped/heap':>12}  identical")
        for ef in efs:
            same = np.array_equal(found["heap", ef], found["mapped", ef])
            qps = {name: len(queries) / best[name, ef] for name in ("heap", "mapped")}
            print(f"{ef:>5} {recall(found['heap', ef], truth, a.k):>7.4f} {qps['heap']:>10,.0f} {qps['mapped']:>11,.0f} "
                  f"{qps['mapped'] / qps['heap']:>11.2f}x  {same}", flush=True)
            if not same:
                raise SystemExit(f"heap and mapped results differ at ef {ef}")
        mapped.close()
        heap.close()


if __name__ == "__main__":
    main()
