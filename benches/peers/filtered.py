"""Filtered search side by side: omendb's allow-list filter against hnswlib (filter functor),
faiss (IDSelectorBatch through SearchParametersHNSW) and usearch (no filter in its Python API:
searched for k / share results and filtered afterwards, the usual workaround), in one run.

    python benches/peers/filtered.py ../shared/data/npm51k --metric cos --omendb python/
    python benches/peers/filtered.py build/clustered1000000 --metric l2 --omendb python/ --peers faiss
    python benches/peers/filtered.py ../shared/data/npm51k --metric cos --omendb python/ --plans

Each share of allowed ids is a random subset of the base (seeded). Truth is exact over the
allowed vectors. Prints, with the CPU: per share and system, recall@k / queries/s (one search
thread, one batch call) for each ef, then queries/s at recall 0.95 (interpolated as compare.py
does) and its ratio to omendb's unfiltered queries/s at recall 0.95 on the same index.

--plans times omendb's two plans alone (plan="exact": a scan of the allowed vectors;
plan="graph": the walk alone) at ef 10, 24 and 64 across a finer grid of shares: where they cross
is what the planner's threshold (SCAN_FACTOR in src/segment/plan.rs) is set from. It prints the
factor each row implies, (allowed^2) / (ef * n).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ann_peers import cpu_model, load_dataset, recall  # noqa: E402
from compare import qps_at  # noqa: E402

METRICS = {"l2": "l2", "cos": "cosine", "ip": "ip"}
NO_ID = 2**64 - 1


def filtered_truth(base, allowed, queries, metric, k):
    import faiss
    sub = np.ascontiguousarray(base[allowed])
    flat = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    flat.add(sub)
    found = flat.search(queries, min(k, len(allowed)))[1]
    return allowed[found]


def timed(search, queries, repeat):
    search(queries[:20])
    best, found = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        found = search(queries)
        best = min(best, time.perf_counter() - t)
    return found, len(queries) / best


def filtered_recall(found, truth, k):
    wanted = min(k, truth.shape[1])
    hits = sum(len(set(f[:k].tolist()) & set(t[:wanted].tolist())) for f, t in zip(found, truth))
    return hits / (len(truth) * wanted)


def at_095(cells):
    """Queries/s at recall 0.95 (log-linear between the efs around it, as compare.py), or None."""
    return qps_at(cells, 0.95) or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--metric", default="cos", choices=list(METRICS))
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="10,16,24,32,48,64,96,128,256")
    ap.add_argument("--shares", default="0.5,0.1,0.01,0.001")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--omendb", metavar="DIR", required=True)
    ap.add_argument("--peers", default="hnswlib,faiss,usearch")
    ap.add_argument("--plans", action="store_true")
    ap.add_argument("--slow-queries", type=int, default=100,
                    help="queries for the peers below 5%% allowed, where hnswlib calls Python per node")
    a = ap.parse_args()
    sys.path.insert(0, a.omendb)
    import omendb

    base, queries, truth_all = load_dataset(a.data, a.metric, a.n, a.k)
    queries = np.ascontiguousarray(queries[: a.queries])
    truth_all = truth_all[: a.queries]
    n, dim, k = len(base), base.shape[1], a.k
    efs = [int(e) for e in a.efs.split(",")]
    print(f"# {os.path.basename(a.data)} n={n} dim={dim} metric={a.metric} M={a.m} efc={a.efc} k={k} "
          f"queries={len(queries)} cpu: {cpu_model()}")
    index = omendb.Index(dim=dim, metric=METRICS[a.metric], m=a.m, ef_construction=a.efc, threads=a.threads)
    index.insert_batch(np.arange(n, dtype=np.uint64), base)
    rng = np.random.default_rng(11)

    if a.plans:
        print("# plans: share  allowed  ef  exact qps  graph qps (recall)  allowed^2/(ef*n)")
        for share in (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01):
            allowed = np.sort(rng.choice(n, max(1, int(share * n)), replace=False)).astype(np.uint64)
            truth = filtered_truth(base, allowed.astype(np.int64), queries, a.metric, k)
            for ef in (10, 24, 64):
                row = []
                for plan in ("exact", "graph"):
                    found, qps = timed(
                        lambda q: index.search_batch(q, k=k, ef=ef, threads=1, filter=allowed, plan=plan)[0],
                        queries, a.repeat)
                    row.append(f"{qps:9.0f} ({filtered_recall(found, truth, k):.3f})")
                factor = len(allowed) ** 2 / (ef * n)
                print(f"{share:7.3f} {len(allowed):8d} {ef:4d}  {'  '.join(row)}  {factor:8.1f}", flush=True)
        return

    def sweep(search, count=len(queries)):
        cells = []
        for ef in efs:
            found, qps = timed(lambda q: search(q, ef), queries[:count], a.repeat)
            cells.append((found, qps))
        return cells

    unfiltered = [(recall(f.astype(np.int64), truth_all, k), qps)
                  for f, qps in sweep(lambda q, ef: index.search_batch(q, k=k, ef=ef, threads=1)[0])]
    base_qps = at_095(unfiltered)
    print("omendb unfiltered: " + "  ".join(f"{r:.3f}/{q:.0f}" for r, q in unfiltered)
          + f"  -> qps@0.95 {base_qps and round(base_qps)}")

    peers = {}
    for name in [p for p in a.peers.split(",") if p]:
        t = time.perf_counter()
        if name == "hnswlib":
            import hnswlib
            peer = hnswlib.Index(space={"l2": "l2", "cos": "cosine", "ip": "ip"}[a.metric], dim=dim)
            peer.init_index(max_elements=n, M=a.m, ef_construction=a.efc)
            peer.set_num_threads(a.threads)
            peer.add_items(base, np.arange(n))
        elif name == "faiss":
            import faiss
            faiss.omp_set_num_threads(a.threads)
            peer = faiss.IndexHNSWFlat(dim, a.m, faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT)
            peer.hnsw.efConstruction = a.efc
            peer.add(base)
            faiss.omp_set_num_threads(1)
        elif name == "usearch":
            from usearch.index import Index
            peer = Index(ndim=dim, metric={"l2": "l2sq", "cos": "cos", "ip": "ip"}[a.metric], dtype="f32",
                         connectivity=a.m, expansion_add=a.efc)
            peer.add(np.arange(n), base, threads=a.threads)
        else:
            raise SystemExit(f"unknown peer {name}")
        peers[name] = peer
        print(f"# built {name} in {time.perf_counter() - t:.1f} s", flush=True)

    for share in [float(s) for s in a.shares.split(",")]:
        allowed = np.sort(rng.choice(n, max(1, int(share * n)), replace=False))
        allowed_ids = allowed.astype(np.uint64)
        truth = filtered_truth(base, allowed, queries, a.metric, k)
        print(f"\n## share {share} ({len(allowed)} allowed)   recall@{k}/qps per ef {efs}")
        rows = {}
        rows["omendb"] = sweep(lambda q, ef: index.search_batch(q, k=k, ef=ef, threads=1, filter=allowed_ids)[0])
        for name, peer in peers.items():
            if name == "hnswlib":
                allowed_set = set(allowed.tolist())

                def search(q, ef, peer=peer, allowed_set=allowed_set):
                    peer.set_ef(ef)
                    try:
                        return peer.knn_query(q, k, num_threads=1, filter=allowed_set.__contains__)[0]
                    except RuntimeError:  # fewer than k found
                        return np.full((len(q), k), -1)
            elif name == "faiss":
                import faiss
                selector = faiss.IDSelectorBatch(allowed.astype(np.int64))

                def search(q, ef, peer=peer, selector=selector):
                    params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
                    return peer.search(q, k, params=params)[1]
            else:
                allowed_mask = np.zeros(n, bool)
                allowed_mask[allowed] = True
                wide = int(min(n, np.ceil(k / share)))

                def search(q, ef, peer=peer, mask=allowed_mask, wide=wide):
                    peer.expansion_search = max(ef, wide)
                    keys = peer.search(q, wide, threads=1).keys.astype(np.int64)
                    out = np.full((len(q), k), -1)
                    for i, row in enumerate(keys):
                        kept = row[(row >= 0) & (row < n)]
                        kept = kept[mask[kept]][:k]
                        out[i, :len(kept)] = kept
                    return out
            rows[name] = sweep(search, len(queries) if share >= 0.05 else a.slow_queries)
        for name, cells in rows.items():
            scored = [(filtered_recall(np.asarray(f).astype(np.int64), truth[:len(f)], k), qps) for f, qps in cells]
            best = at_095(scored)
            ratio = f"{best / base_qps:.2f}x unfiltered" if best and base_qps else "-"
            print(f"{name:8s} " + "  ".join(f"{r:.3f}/{q:7.0f}" for r, q in scored)
                  + f"  -> qps@0.95 {best and round(best)}  ({ratio})", flush=True)


if __name__ == "__main__":
    main()
