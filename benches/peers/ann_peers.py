"""(Kept in the repository so every figure README quotes is reproducible from a clone; started
from the project's shared harness.)

Side by side: omendb against hnswlib, faiss (IndexHNSWFlat), usearch and voyager, in one run,
on one dataset, with the same HNSW parameters.

Setup (once):  python3 -m venv .venv && .venv/bin/pip install numpy faiss-cpu hnswlib usearch voyager
Run:           .venv/bin/python benches/peers/ann_peers.py ../shared/data/npm51k --metric cos \
                   --omendb python/  [--peers hnswlib,faiss,usearch,voyager] [--efs 10,20,40,80,160]

DATA is a prefix: DATA_base.fvecs (or DATA_base.f16: raw little-endian float16, row-major, with the
dimension taken from the queries), DATA_query.fvecs and (optional) DATA_groundtruth.ivecs (the TEXMEX
.fvecs/.ivecs format: each row is an int32 dimension followed by that many values). Without a
ground-truth file it is computed exactly with faiss.

--omendb DIR puts DIR on sys.path and imports the project's Python binding, which must offer:
    idx = omendb.Index(dim=..., metric="l2"|"cosine"|"ip", m=..., ef_construction=..., threads=...)
    idx.insert_batch(ids: uint64[n], vectors: float32[n, dim])
    ids, distances = idx.search_batch(queries: float32[q, dim], k=..., ef=..., threads=1)

--omendb-opt KEY=VALUE (repeatable) passes extra keyword arguments to omendb.Index (e.g.
quantization=binary); --omendb-search-opt KEY=VALUE passes them to search_batch (e.g. oversample=4).
Values that parse as int or float are passed as numbers.

--repeat R times every search R times and keeps the fastest (for noisy, shared hosts).

Prints, per system: build seconds, build vectors/s (all threads), resident memory growth in MB,
then for each ef: recall@k / queries per second (one thread, one batch call, so no Python
per-query overhead). Compare systems at equal recall, not at equal ef.
"""
import argparse, gc, os, sys, time
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(dtype).copy()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown"
    model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), "unknown")
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "neon/sse"
    return f"{model.replace(' ', '_')}/{simd}{'+vnni' if 'avx512_vnni' in flags else ''}"


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def exact_neighbours(base, queries, metric, k):
    import faiss
    index = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]


def parse_opts(pairs):
    opts = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for convert in (int, float, str):
            try:
                opts[key] = convert(value)
                break
            except ValueError:
                pass
    return opts


def recall(found, truth, k):
    return sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth)) / (len(truth) * k)


class Omendb:
    name = "omendb"
    module = None
    index_opts, search_opts = {}, {}

    def build(self, base, metric, m, efc, threads):
        self.index = self.module.Index(dim=base.shape[1], metric={"l2": "l2", "cos": "cosine", "ip": "ip"}[metric],
                                       m=m, ef_construction=efc, threads=threads, **self.index_opts)
        self.index.insert_batch(np.arange(len(base), dtype=np.uint64), base)

    def search(self, q, k, ef):
        return self.index.search_batch(q, k=k, ef=ef, threads=1, **self.search_opts)[0]


class Hnswlib:
    name = "hnswlib"

    def build(self, base, metric, m, efc, threads):
        import hnswlib
        self.index = hnswlib.Index(space={"l2": "l2", "cos": "cosine", "ip": "ip"}[metric], dim=base.shape[1])
        self.index.init_index(max_elements=len(base), M=m, ef_construction=efc)
        self.index.set_num_threads(threads)
        self.index.add_items(base, np.arange(len(base)))

    def search(self, q, k, ef):
        self.index.set_ef(ef)
        return self.index.knn_query(q, k, num_threads=1)[0]


class Faiss:
    name = "faiss"

    def build(self, base, metric, m, efc, threads):
        import faiss
        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = efc
        self.index.add(base)
        faiss.omp_set_num_threads(1)

    def search(self, q, k, ef):
        self.index.hnsw.efSearch = ef
        return self.index.search(q, k)[1]


class Usearch:
    name = "usearch"

    def build(self, base, metric, m, efc, threads):
        from usearch.index import Index
        self.index = Index(ndim=base.shape[1], metric={"l2": "l2sq", "cos": "cos", "ip": "ip"}[metric],
                           dtype="f32", connectivity=m, expansion_add=efc)
        self.index.add(np.arange(len(base)), base, threads=threads)

    def search(self, q, k, ef):
        self.index.expansion_search = ef
        return self.index.search(q, k, threads=1).keys


class Voyager:
    name = "voyager"

    def build(self, base, metric, m, efc, threads):
        import voyager
        space = {"l2": voyager.Space.Euclidean, "cos": voyager.Space.Cosine, "ip": voyager.Space.InnerProduct}[metric]
        self.index = voyager.Index(space, num_dimensions=base.shape[1], M=m, ef_construction=efc)
        self.index.add_items(base, ids=list(range(len(base))), num_threads=threads)

    def search(self, q, k, ef):
        return self.index.query(q, k=k, num_threads=1, query_ef=ef)[0]


SYSTEMS = {s.name: s for s in (Omendb, Hnswlib, Faiss, Usearch, Voyager)}


def load_dataset(data, metric, n, k):
    """(base, queries, truth) for the prefix `data` (see the module docs): the first `n` base
    vectors (0 = all), unit length under "cos", and the true top-k (read, or computed exactly
    when the file is absent or `n` cuts the base)."""
    queries = read_vecs(data + "_query.fvecs", np.float32)
    if os.path.exists(data + "_base.fvecs"):
        base = read_vecs(data + "_base.fvecs", np.float32)
    else:
        base = np.fromfile(data + "_base.f16", "<f2").astype(np.float32).reshape(-1, queries.shape[1])
    if n:
        base = np.ascontiguousarray(base[:n])
    if metric == "cos":
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gt_path = data + "_groundtruth.ivecs"
    truth = read_vecs(gt_path, np.int32) if os.path.exists(gt_path) and not n else exact_neighbours(base, queries, metric, k)
    return base, queries, truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="prefix of DATA_base.fvecs / DATA_query.fvecs / DATA_groundtruth.ivecs")
    ap.add_argument("--metric", default="cos", choices=["l2", "cos", "ip"])
    ap.add_argument("--n", type=int, default=0, help="use only the first N base vectors")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="10,20,40,80,160,320")
    ap.add_argument("--peers", default="hnswlib,faiss,usearch,voyager")
    ap.add_argument("--omendb", metavar="DIR", help="directory holding the omendb Python package")
    ap.add_argument("--omendb-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--omendb-search-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--repeat", type=int, default=1, help="time each search R times and keep the fastest (noisy hosts)")
    a = ap.parse_args()

    base, queries, truth = load_dataset(a.data, a.metric, a.n, a.k)

    names = a.peers.split(",") if a.peers else []
    if a.omendb:
        sys.path.insert(0, a.omendb)
        import omendb
        Omendb.module = omendb
        Omendb.index_opts, Omendb.search_opts = parse_opts(a.omendb_opt), parse_opts(a.omendb_search_opt)
        names = ["omendb"] + names
    print(f"# {os.path.basename(a.data)} n={len(base)} dim={base.shape[1]} metric={a.metric} queries={len(queries)} "
          f"M={a.m} efc={a.efc} build_threads={a.threads} search_threads=1 k={a.k} cpu={cpu_model()}")
    print(f"{'system':9} {'build_s':>8} {'vec/s':>8} {'memMB':>7}  " + "  ".join(f"{'ef' + e + ' rec/qps':>14}" for e in a.efs.split(",")))
    for name in names:
        system = SYSTEMS[name]()
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        system.build(base, a.metric, a.m, a.efc, a.threads)
        build_s = time.perf_counter() - t
        mem = rss_mb() - before
        cells = []
        for ef in map(int, a.efs.split(",")):
            system.search(queries[:50], a.k, ef)
            best = float("inf")
            for _ in range(max(1, a.repeat)):
                t = time.perf_counter()
                found = np.asarray(system.search(queries, a.k, ef)).astype(np.int64)
                best = min(best, time.perf_counter() - t)
            cells.append(f"{recall(found, truth, a.k):.3f}/{len(queries) / best:.0f}")
        print(f"{name:9} {build_s:8.1f} {len(base) / build_s:8.0f} {mem:7.0f}  " + "  ".join(f"{c:>14}" for c in cells), flush=True)
        del system
        gc.collect()


if __name__ == "__main__":
    main()
