"""One omendb.Index beside omendb.distributed.ShardedIndex with 1, 2 and 4 shards on a local Ray,
side by side in one run: build vectors/s, and batch queries/s (k = 10, one batch of all queries)
at the smallest ef whose recall@10 reaches 0.95.

Usage: python benches/distributed/shards.py DATA_PREFIX [--metric cos] [--shards 1,2,4] [--repeat 3]
DATA is read as ann_peers.py reads it (DATA_base.fvecs or .f16, DATA_query.fvecs,
DATA_groundtruth.ivecs)."""
import argparse, os, sys, time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import omendb  # noqa: E402
import omendb.distributed as od  # noqa: E402
import ray  # noqa: E402


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    return raw.reshape(-1, raw[0] + 1)[:, 1:].view(dtype).copy()


def load(prefix):
    queries = read_vecs(prefix + "_query.fvecs", np.float32)
    if os.path.exists(prefix + "_base.fvecs"):
        base = read_vecs(prefix + "_base.fvecs", np.float32)
    else:
        base = np.fromfile(prefix + "_base.f16", dtype=np.float16).astype(np.float32).reshape(-1, queries.shape[1])
    truth = read_vecs(prefix + "_groundtruth.ivecs", np.int32)[:, :10]
    return base, queries, truth


def recall(found, truth):
    return sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist())) / truth.size


def measure(name, index, base, queries, truth, efs, repeat):
    ids = np.arange(len(base), dtype=np.uint64)
    started = time.perf_counter()
    for first in range(0, len(base), 10_000):
        index.insert_batch(ids[first:first + 10_000], base[first:first + 10_000])
    build = len(base) / (time.perf_counter() - started)
    for ef in efs:
        found = index.search_batch(queries, k=10, ef=ef)[0]
        r = recall(found, truth)
        if r >= 0.95:
            best = min(timed(lambda: index.search_batch(queries, k=10, ef=ef)) for _ in range(repeat))
            print(f"{name:<12} build {build:8.0f} vec/s   ef {ef:4d} recall {r:.3f}   {len(queries) / best:8.0f} q/s (batch)"
                  f"   one query {latency_us(index, queries, ef):7.0f} us (median)")
            return build, len(queries) / best
    print(f"{name:<12} build {build:8.0f} vec/s   recall never 0.95 (max {r:.3f})")
    return build, 0.0


def latency_us(index, queries, ef):
    """Median microseconds of one single-query search call (the fan-out's per-call cost)."""
    times = [timed(lambda: index.search(q, k=10, ef=ef)) for q in queries[:300]]
    return 1e6 * float(np.median(times))


def timed(call):
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--metric", default="cos")
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--efs", default="16,24,32,48,64,96,128")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    metric = {"cos": "cosine", "l2": "l2", "ip": "ip"}[a.metric]
    base, queries, truth = load(a.data)
    efs = [int(e) for e in a.efs.split(",")]
    cores = os.cpu_count()
    cpu = next((l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# {os.path.basename(a.data)} n={len(base)} dim={base.shape[1]} {metric}, M 16 efc 100, {cores} cores: {cpu}")
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "python")),
                                       **({"OMENDB_LIBRARY": os.environ["OMENDB_LIBRARY"]} if "OMENDB_LIBRARY" in os.environ else {})}})
    plain = measure("one Index", omendb.Index(dim=base.shape[1], metric=metric, threads=cores), base, queries, truth, efs, a.repeat)
    for shards in (int(s) for s in a.shards.split(",")):
        threads = max(1, cores // shards)
        index = od.ShardedIndex(shards, base.shape[1], metric, cpus_per_shard=min(1.0, cores / shards), threads=threads)
        build, qps = measure(f"{shards} shard(s)", index, base, queries, truth, efs, a.repeat)
        print(f"{'':<12} vs one Index: build {build / plain[0]:.2f}x, batch search {qps / max(plain[1], 1e-9):.2f}x")
        index.close()
    ray.shutdown()


if __name__ == "__main__":
    main()
