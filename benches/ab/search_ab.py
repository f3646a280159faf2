"""Queries/s of two builds of the library on one data set, searched alternately: each build runs
in a process of its own (the library is loaded once per process), both build the same index, and
the rounds alternate which one searches first; each keeps its fastest round.

    python benches/ab/search_ab.py --a OLD/libomendb.so --b target/release/libomendb.so \
        --data ../shared/data/npm51k --metric cos --ef 48
    python benches/ab/search_ab.py --a ... --b ... --data build/clustered1000000 --metric l2 --n 200000 --ef 64

Prints both queries/s and B/A. The two graphs are built in parallel and are not identical, so
small differences (a few percent) need several runs to call.
"""
import argparse
import os
import subprocess
import sys

WORKER = r'''
import sys, time
import numpy as np
sys.path.insert(0, {package!r}); sys.path.insert(0, {peers!r})
import omendb
from ann_peers import load_dataset
base, queries, _ = load_dataset({data!r}, {metric!r}, {n}, 10)
index = omendb.Index(dim=base.shape[1], metric={{"cos": "cosine", "l2": "l2", "ip": "ip"}}[{metric!r}],
                     quantization={code!r}, threads=2, seed=7)
index.insert_batch(np.arange(len(base), dtype=np.uint64), base)
for _ in sys.stdin:
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        index.search_batch(queries, 10, {ef}, oversample={oversample}, threads=1)
        best = max(best, len(queries) / (time.perf_counter() - t))
    print(int(best), flush=True)
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="the base build's libomendb.so")
    ap.add_argument("--b", required=True, help="the build to compare")
    ap.add_argument("--data", default="../shared/data/npm51k")
    ap.add_argument("--metric", default="cos", choices=["cos", "l2", "ip"])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--ef", type=int, default=48)
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--oversample", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    script = WORKER.format(package=os.path.join(here, "..", "..", "python"), peers=os.path.join(here, "..", "peers"),
                           data=a.data, metric=a.metric, n=a.n, code=a.quantization, ef=a.ef,
                           oversample=a.oversample)
    workers = {name: subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, OMENDB_LIBRARY=lib),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for name, lib in (("A", a.a), ("B", a.b))}
    best = {"A": 0, "B": 0}
    for round_ in range(a.rounds):
        for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
            workers[name].stdin.write("go\n")
            workers[name].stdin.flush()
            best[name] = max(best[name], int(workers[name].stdout.readline()))
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    print(f"{os.path.basename(a.data)} {a.metric} {a.quantization} ef {a.ef}: A {best['A']} q/s, B {best['B']} q/s, "
          f"B/A {best['B'] / best['A']:.3f}")


if __name__ == "__main__":
    main()
