"""Queries/s of two builds of the library on one data set, in one process: both libraries are
loaded side by side (each copy of the package binds its own), each builds the same index, and
the searches alternate in small chunks of queries, so that a noisy neighbour slows both alike.

    python benches/ab/search_ab.py --a OLD/libomendb.so --b target/release/libomendb.so \
        --data ../shared/data/npm51k --metric cos --ef 24,48 --quantization 8bit
    python benches/ab/search_ab.py --a ... --b ... --data build/clustered1000000 --metric l2 --n 200000 --ef 64

Prints, per ef, each build's recall@k and queries/s (one search thread) and B/A. The two graphs
are built in parallel and are not identical, so their recalls differ a little, and differences
of a percent or two need several runs to call: two runs of one change at 1M 4-bit gave +16.5%
and +1.2% at ef 64 (AMD EPYC, a noisy day). With `--build-threads 1` both builds make the same
graph (equal recalls show it) when the change leaves construction alone, and only the search
speed differs.

With `--separate` each build runs in a process of its own instead, one process a build a round
(the order alternating), and the median round counts: for sets that fit in the cache, where two
indexes in one process evict each other's data and measure neither in cache (10,000 of npm51k:
about 30K q/s in one process against 45-60K alone).
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from ann_peers import load_dataset  # noqa: E402


def load_package(library):
    """A fresh copy of the `omendb` package bound to `library`."""
    os.environ["OMENDB_LIBRARY"] = os.path.abspath(library)
    sys.modules.pop("omendb", None)
    return importlib.import_module("omendb")


def ab_arguments(description):
    """The arguments both A/B scripts take: the two libraries, the data and the index's code."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--a", required=True, help="the base build's libomendb.so")
    ap.add_argument("--b", required=True, help="the build to compare")
    ap.add_argument("--data", default="../shared/data/npm51k")
    ap.add_argument("--metric", default="cos", choices=["cos", "l2", "ip"])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--build-threads", type=int, default=2,
                    help="1 builds the same graph in both (when the change leaves construction alone)")
    return ap


def new_index(package, dim, a, path=None):
    """An empty index as both A/B scripts build it (`--build-threads`, seed 7): in memory, or a
    new database in directory `path`."""
    options = dict(dim=dim, metric={"cos": "cosine", "l2": "l2", "ip": "ip"}[a.metric],
                   quantization=a.quantization, threads=a.build_threads, seed=7)
    return package.Index.open(path, **options) if path else package.Index(**options)


def main():
    ap = ab_arguments(__doc__.split("\n")[0])
    ap.add_argument("--ef", default="48", help="comma-separated")
    ap.add_argument("--oversample", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=12,
                    help="passes over the queries, in 10 chunks each (with --separate: processes a build)")
    ap.add_argument("--separate", action="store_true", help="each build in processes of its own, a round each")
    ap.add_argument("--alone", choices=["A", "B"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.alone:
        return search_alone(a)
    if a.separate:
        return compare_separately(a)
    packages = {"A": load_package(a.a), "B": load_package(a.b)}
    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)
    indexes = {}
    for name, package in packages.items():
        indexes[name] = new_index(package, base.shape[1], a)
        indexes[name].insert_batch(np.arange(len(base), dtype=np.uint64), base)
    search_interleaved(a, indexes, queries, truth)


def search_interleaved(a, indexes, queries, truth):
    """Searches indexes "A" and "B" at each of `a.ef` in `a.rounds` rounds of ten chunks of the
    queries, the two taking turns a chunk (the order reversed every other round), and reports
    each one's recall and queries/s."""
    chunks = np.array_split(np.arange(len(queries)), 10)
    # An untimed pass of each over every query first: the index built last starts with its data
    # in the cache, and a large L3 (480 MiB on one Xeon) holds most of a 1M index, so the first ef
    # measured favoured B by 7-11% before, in runs whose other efs agreed within 2-3%.
    for name in ("A", "B"):
        indexes[name].search_batch(queries, a.k, int(a.ef.split(",")[0]), oversample=a.oversample, threads=1)
    for ef in (int(e) for e in a.ef.split(",")):
        seconds, hits = {"A": 0.0, "B": 0.0}, {"A": 0, "B": 0}
        for round_ in range(a.rounds):
            for chunk in chunks:
                for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                    start = time.perf_counter()
                    ids = indexes[name].search_batch(queries[chunk], a.k, ef, oversample=a.oversample, threads=1)[0]
                    seconds[name] += time.perf_counter() - start
                    if round_ == 0:
                        hits[name] += sum(len(set(got) & set(want[:a.k])) for got, want in zip(ids, truth[chunk]))
        qps = {name: a.rounds * len(queries) / seconds[name] for name in seconds}
        recall = {name: hits[name] / (a.k * len(queries)) for name in hits}
        report(a, ef, recall, qps)


def report(a, ef, recall, qps):
    print(f"{os.path.basename(a.data)} {a.metric} {a.quantization} ef {ef}: A {recall['A']:.3f} / {qps['A']:.0f} q/s, "
          f"B {recall['B']:.3f} / {qps['B']:.0f} q/s, B/A {qps['B'] / qps['A']:.3f}", flush=True)


def search_alone(a):
    """One build's index alone in this process: per ef, its recall and its best of three passes
    over the queries (after one to warm the cache), as a line of JSON."""
    package = load_package(a.a if a.alone == "A" else a.b)
    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)
    index = new_index(package, base.shape[1], a)
    index.insert_batch(np.arange(len(base), dtype=np.uint64), base)
    results = {}
    for ef in (int(e) for e in a.ef.split(",")):
        ids = index.search_batch(queries, a.k, ef, oversample=a.oversample, threads=1)[0]
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            index.search_batch(queries, a.k, ef, oversample=a.oversample, threads=1)
            best = max(best, len(queries) / (time.perf_counter() - start))
        hits = sum(len(set(got) & set(want[:a.k])) for got, want in zip(ids, truth))
        results[ef] = (hits / (a.k * len(queries)), best)
    print(json.dumps(results))


def compare_separately(a):
    """`--separate`: `a.rounds` rounds, each running A and B in a process of their own (the order
    alternating), and per ef the median round's queries/s of each."""
    rounds = {"A": [], "B": []}
    for round_ in range(a.rounds):
        for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
            argv = [arg for arg in sys.argv[1:] if arg != "--separate"]
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--alone", name],
                                 check=True, capture_output=True, text=True).stdout
            rounds[name].append(json.loads(out.strip().splitlines()[-1]))
    for ef in a.ef.split(","):
        recall = {name: rounds[name][0][ef][0] for name in rounds}
        qps = {name: statistics.median(r[ef][1] for r in rounds[name]) for name in rounds}
        report(a, int(ef), recall, qps)


if __name__ == "__main__":
    main()
