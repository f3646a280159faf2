"""Quantized search side by side: omendb's codes (none, binary, 4bit, 8bit) beside usearch's i8
and b1 modes and faiss IndexHNSWSQ (8 and 4 bit) and IndexBinaryHNSW, on one dataset, in one run.

    python benches/peers/quantized.py ../shared/data/npm51k --metric cos --omendb python/ \
        | tee build/quantized.txt
    python benches/peers/compare.py < build/quantized.txt   # queries/s at recall 0.95

Output rows use ann_peers.py's format (build s, vec/s, memory MB, then recall/qps per ef, one
search thread), so compare.py reads them. Peers that return neighbours ranked by their codes
alone (faiss SQ and binary, usearch i8 and b1) are measured as they answer, without re-scoring.

With --separate every system is built and searched in a process of its own, the processes
taking turns, so that each searches with the cache to itself: for sets that fit in the cache,
where indexes sharing one process evict each other's data between searches (see
benches/ab/search_ab.py).

Graphs are built on one thread unless --threads says otherwise: a one-thread build is the same
in every run (the recall columns repeat exactly), so the ratios of the codes to omendb's f32
measure the search alone. Built in parallel, each run's graphs differ, and f32's queries/s at 0.95
moved by about 5% from run to run with them, enough to decide a 1.5x target either way.

Then, per omendb code, the resident memory of a search: the index is written to a database,
opened (mapped) in a fresh process, searched at every ef, and its heap plus the mapped pages
it touched are divided by the vectors ("resident B/vec"), next to the f32 vectors' 4*dim.
"""
import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ann_peers import Faiss, load_dataset, recall, rss_mb  # noqa: E402


class OmendbCode:
    """`omendb-CODE`, or `omendb-CODE/osN` to search with oversample N instead of the default."""

    def __init__(self, module, code, oversample=0, seed=None):
        self.module, self.code, self.oversample, self.seed = module, code, oversample, seed
        self.name = f"omendb-{code}" + (f"/os{oversample}" if oversample else "")

    def build(self, base, metric, m, efc, threads):
        self.index = self.module.Index(dim=base.shape[1], metric={"l2": "l2", "cos": "cosine"}[metric], m=m,
                                       ef_construction=efc, threads=threads, quantization=self.code,
                                       seed=self.seed)
        self.index.insert_batch(np.arange(len(base), dtype=np.uint64), base)

    def search(self, q, k, ef):
        return self.index.search_batch(q, k, ef, oversample=self.oversample, threads=1)[0]


class UsearchCode:
    def __init__(self, dtype):
        self.dtype, self.name = dtype, f"usearch-{dtype}"

    def build(self, base, metric, m, efc, threads):
        from usearch.index import Index
        if self.dtype == "b1":
            self.mean = base.mean(axis=0)
            base = np.packbits(base > self.mean, axis=1)
            kind = "hamming"
        else:
            kind = {"l2": "l2sq", "cos": "cos"}[metric]
        self.index = Index(ndim=base.shape[1] * (8 if self.dtype == "b1" else 1), metric=kind, dtype=self.dtype,
                           connectivity=m, expansion_add=efc)
        self.index.add(np.arange(len(base)), base, threads=threads)

    def search(self, q, k, ef):
        self.index.expansion_search = ef
        if self.dtype == "b1":
            q = np.packbits(q > self.mean, axis=1)
        return self.index.search(q, k, threads=1).keys


class FaissSQ(Faiss):
    """faiss IndexHNSWSQ; searched as `Faiss` searches IndexHNSWFlat."""

    def __init__(self, bits):
        self.bits, self.name = bits, f"faiss-sq{bits}"

    def build(self, base, metric, m, efc, threads):
        import faiss
        faiss.omp_set_num_threads(threads)
        qtype = faiss.ScalarQuantizer.QT_8bit if self.bits == 8 else faiss.ScalarQuantizer.QT_4bit
        space = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self.index = faiss.IndexHNSWSQ(base.shape[1], qtype, m, space)
        self.index.hnsw.efConstruction = efc
        self.index.train(base)
        self.index.add(base)
        faiss.omp_set_num_threads(1)


class FaissBinary:
    name = "faiss-bin"

    def build(self, base, metric, m, efc, threads):
        import faiss
        faiss.omp_set_num_threads(threads)
        self.mean = base.mean(axis=0)
        self.index = faiss.IndexBinaryHNSW(base.shape[1], m)
        self.index.hnsw.efConstruction = efc
        self.index.add(np.packbits(base > self.mean, axis=1))
        faiss.omp_set_num_threads(1)

    def search(self, q, k, ef):
        self.index.hnsw.efSearch = ef
        return self.index.search(np.packbits(q > self.mean, axis=1), k)[1]


RESIDENT = """
import json, sys, numpy as np
sys.path.insert(0, {package!r})
import omendb
queries = np.load({queries!r})
index = omendb.Index.open({path!r}, verify=False)
for ef in {efs!r}:
    index.search_batch(queries, {k}, ef, threads=1)
print(json.dumps(index.stats()))
"""


def resident_per_vector(module, package, code, base, queries, metric, m, efc, threads, efs, k):
    """Heap plus touched mapped bytes per vector of a database searched in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db")
        with module.Index.open(path, dim=base.shape[1], metric={"l2": "l2", "cos": "cosine"}[metric], m=m,
                               ef_construction=efc, threads=threads, quantization=code,
                               segment_capacity=len(base), durability="never") as index:
            index.insert_batch(np.arange(len(base), dtype=np.uint64), base)
        np.save(os.path.join(tmp, "queries.npy"), queries)
        script = RESIDENT.format(package=package, queries=os.path.join(tmp, "queries.npy"), path=path, efs=efs, k=k)
        import json
        stats = json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                          text=True).stdout)
        disk = stats["bytes_on_disk"] / len(base)
        return (stats["bytes_heap"] + stats["bytes_mapped_resident"]) / len(base), disk


class Timed:
    """System `name`, built in this process (`build_result`: build seconds and the MB the build
    added); `search(ef)` returns the ids found for every query and queries/s (after 50 queries
    to warm up)."""

    def __init__(self, name, a, base, queries):
        self.system, self.a, self.queries = make_system(name, a), a, queries
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        self.system.build(base, a.metric, a.m, a.efc, a.threads)
        self.build_result = time.perf_counter() - t, rss_mb() - before

    def search(self, ef):
        self.system.search(self.queries[:50], self.a.k, ef)
        t = time.perf_counter()
        found = np.asarray(self.system.search(self.queries, self.a.k, ef)).astype(np.int64)
        return found, len(self.queries) / (time.perf_counter() - t)

    def close(self):
        del self.system
        gc.collect()


def serve(conn, name, a):
    """A --separate worker, in a fresh interpreter: loads the data, builds system `name`, then
    answers each ef it is sent until it is sent None."""
    base, queries, _ = load_dataset(a.data, a.metric, a.n, a.k)
    timed = Timed(name, a, base, queries)
    conn.send(timed.build_result)
    while (ef := conn.recv()) is not None:
        conn.send(timed.search(ef))


class Separate:
    """A system in a process of its own: a fresh interpreter (spawned, as a forked child can
    hang in faiss's OpenMP), which loads the data itself."""

    def __init__(self, name, a, base, queries):
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, name, a))
        self.process.start()
        self.build_result = self.conn.recv()

    def search(self, ef):
        self.conn.send(ef)
        return self.conn.recv()

    def close(self):
        self.conn.send(None)
        self.process.join()


def make_system(name, a):
    """The system called `name` (see --systems)."""
    sys.path.insert(0, a.omendb)
    import omendb
    code, _, oversample = name.partition("/os")
    if name.startswith("omendb-"):
        return OmendbCode(omendb, code[len("omendb-"):], int(oversample or 0), a.seed)
    makers = {"usearch-i8": lambda: UsearchCode("i8"), "usearch-b1": lambda: UsearchCode("b1"),
              "faiss-sq8": lambda: FaissSQ(8), "faiss-sq4": lambda: FaissSQ(4), "faiss-bin": FaissBinary}
    return makers[name]()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="prefix of DATA_base.fvecs (or _base.f16) / DATA_query.fvecs / DATA_groundtruth.ivecs")
    ap.add_argument("--metric", default="cos", choices=["l2", "cos"])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1,
                    help="build threads (default 1: every run builds the same graphs, so the ratios to "
                         "omendb f32 move only with the timings; parallel builds differ run to run and "
                         "moved them by about 5%%)")
    ap.add_argument("--seed", type=int, default=None,
                    help="omendb's level seed (default: the library's): graphs of one seed repeat exactly, and "
                         "at 1M f32's recall at ef 64 moved by 0.013 between two seeds")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="10,20,40,80,160,320")
    ap.add_argument("--omendb", metavar="DIR", required=True, help="directory holding the omendb Python package")
    ap.add_argument("--systems", default="omendb-none,omendb-4bit,omendb-8bit,omendb-binary,omendb-binary/os5,"
                                         "usearch-i8,usearch-b1,"
                                         "faiss-sq8,faiss-sq4,faiss-bin")
    ap.add_argument("--no-resident", action="store_true", help="skip the resident-memory runs")
    ap.add_argument("--rounds", type=int, default=3, help="search rounds over all systems; the fastest counts")
    ap.add_argument("--separate", action="store_true", help="each system in a process of its own (sets that fit "
                                                            "in the cache)")
    a = ap.parse_args()

    sys.path.insert(0, a.omendb)
    import omendb

    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)

    efs = list(map(int, a.efs.split(",")))
    print(f"# {os.path.basename(a.data)} n={len(base)} dim={base.shape[1]} metric={a.metric} queries={len(queries)} "
          f"M={a.m} efc={a.efc} build_threads={a.threads} search_threads=1 k={a.k}"
          + (f" seed={a.seed}" if a.seed is not None else ""))
    print(f"{'system':14} {'build_s':>8} {'vec/s':>8} {'memMB':>7}  " + "  ".join(f"{'ef' + str(e) + ' rec/qps':>14}" for e in efs))
    runner = Separate if a.separate else Timed
    built = []
    for name in a.systems.split(","):
        built.append((name, runner(name, a, base, queries)))
    # Every system is searched in every round, each keeping its fastest time per ef: a noisy
    # neighbour then slows all of them alike instead of whichever ran at that moment.
    best = {(name, ef): 0.0 for name, _ in built for ef in efs}
    found = {}
    for _ in range(a.rounds):
        for ef in efs:
            for name, run in built:
                found[name, ef], qps = run.search(ef)
                best[name, ef] = max(best[name, ef], qps)
    for name, run in built:
        build_s, mem = run.build_result
        cells = [f"{recall(found[name, ef], truth, a.k):.3f}/{best[name, ef]:.0f}" for ef in efs]
        print(f"{name:14} {build_s:8.1f} {len(base) / build_s:8.0f} {mem:7.0f}  " + "  ".join(f"{c:>14}" for c in cells),
              flush=True)
        run.close()
    del built
    gc.collect()
    if a.no_resident:
        return
    print(f"# resident memory of a mapped database after searching at every ef; f32 vectors alone: "
          f"{4 * base.shape[1]} B/vec")
    for code in ("none", "binary", "4bit", "8bit"):
        if f"omendb-{code}" not in a.systems.split(","):
            continue
        resident, disk = resident_per_vector(omendb, os.path.abspath(a.omendb), code, base, queries, a.metric, a.m,
                                             a.efc, a.threads, efs, a.k)
        print(f"# omendb-{code:7} resident {resident:7.0f} B/vec   on disk {disk:7.0f} B/vec", flush=True)


if __name__ == "__main__":
    main()
