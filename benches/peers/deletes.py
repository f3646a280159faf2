"""Deletes side by side: omendb's delete, upsert and compaction against a fresh build of the same
live set, with hnswlib (mark_deleted) and usearch (remove) on the same workload, in one run.

    python benches/peers/deletes.py ../shared/data/npm51k --metric cos --omendb python/
    python benches/peers/deletes.py build/clustered200k --metric l2 --omendb python/

Prints, with the CPU:
- recall@k / queries/s (one search thread) per ef for: a fresh build of the live half; the full
  set with a random half deleted, before and after compact(); hnswlib and usearch with the same
  half deleted;
- delete rate (ids/s applied, batches of 10,000, in memory and on a database with one fsync a
  call), upsert rate against the insert rate, compaction time, and queries/s while a compaction
  runs against idle;
- bytes on disk and resident after deleting half and compacting, against the fresh build;
- repair (a fifth deleted) against rebuilding the same live set on the compaction's threads:
  time, recall and queries/s;
- churn: 20 cycles of deleting 5% and inserting 5% new vectors (with the default background
  compaction, past 20% deleted in a segment), recall drift and bytes against a fresh build of the
  final live set.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ann_peers import cpu_model, load_dataset, recall  # noqa: E402

METRICS = {"l2": "l2", "cos": "cosine", "ip": "ip"}


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def truth_of(base, ids, queries, metric, k):
    """Exact top-k ids among `base` rows labelled `ids`."""
    import faiss
    index = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base))
    return ids[index.search(queries, k)[1]]


def interleaved(named, queries, truth, k, efs, repeat):
    """Lines of recall/qps per ef for each (name, index, note) of `named`, searched in turn in
    every round (the fastest round counts), so that a noisy neighbour slows all of them alike."""
    best, found = {}, {}
    for _ in range(repeat):
        for ef in efs:
            for name, index, _ in named:
                index.search_batch(queries[:50], k=k, ef=ef, threads=1)
                t = time.perf_counter()
                found[name, ef] = np.asarray(index.search_batch(queries, k=k, ef=ef, threads=1)[0]).astype(np.int64)
                best[name, ef] = max(best.get((name, ef), 0.0), len(queries) / (time.perf_counter() - t))
    for name, _, note in named:
        cells = [f"{recall(found[name, ef], truth, k):.3f}/{best[name, ef]:.0f}" for ef in efs]
        print(f"{name:34} " + "  ".join(f"{c:>13}" for c in cells) + f"  {note}", flush=True)


def sweep(search, queries, truth, k, efs, repeat):
    cells = []
    for ef in efs:
        search(queries[:50], ef)
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            found = np.asarray(search(queries, ef)).astype(np.int64)
            best = min(best, time.perf_counter() - t)
        cells.append(f"{recall(found, truth, k):.3f}/{len(queries) / best:.0f}")
    return "  ".join(f"{c:>13}" for c in cells)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--metric", default="cos", choices=list(METRICS))
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="32,64,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--omendb", metavar="DIR", required=True)
    ap.add_argument("--peers", default="hnswlib,usearch")
    a = ap.parse_args()
    sys.path.insert(0, a.omendb)
    import omendb

    base, queries, _ = load_dataset(a.data, a.metric, a.n, a.k)
    n, dim, k, efs = len(base), base.shape[1], a.k, [int(e) for e in a.efs.split(",")]
    rng = np.random.default_rng(7)
    ids = np.arange(n, dtype=np.uint64)
    doomed = np.sort(rng.permutation(n)[: n // 2]).astype(np.uint64)
    live = np.setdiff1d(ids, doomed)
    truth = truth_of(base[live], live.astype(np.int64), queries, a.metric, k)
    # Compaction only when called, so the half-deleted state is measured as it is; churn runs with
    # the default background compaction (past 20% deleted in a segment).
    options = dict(dim=dim, metric=METRICS[a.metric], m=a.m, ef_construction=a.efc, threads=a.threads,
                   compact_threshold=0)
    print(f"# {os.path.basename(a.data)} n={n} dim={dim} metric={a.metric} queries={len(queries)} M={a.m} "
          f"efc={a.efc} k={k} half deleted, cpu={cpu_model()}")
    print(f"{'case':34} " + "  ".join(f"{'ef' + str(e) + ' rec/qps':>13}" for e in efs))

    def database(path, vectors, labels, **extra):
        index = omendb.Index.open(path, durability="never", **{**options, **extra})
        t = time.perf_counter()
        index.insert_batch(labels, vectors)
        seconds = time.perf_counter() - t
        index.flush()
        return index, seconds

    with tempfile.TemporaryDirectory() as tmp:
        fresh, _ = database(os.path.join(tmp, "fresh"), base[live], live)
        fresh_stats = fresh.stats()
        full, insert_s = database(os.path.join(tmp, "full"), base, ids)
        t = time.perf_counter()
        for start in range(0, len(doomed), 10_000):
            full.delete(doomed[start:start + 10_000])
        delete_s = time.perf_counter() - t
        # The same again, compacted: three indexes searched side by side.
        compacted, _ = database(os.path.join(tmp, "compacted"), base, ids)
        compacted.delete(doomed)
        t = time.perf_counter()
        compacted.compact()
        compact_s = time.perf_counter() - t
        stats = compacted.stats()
        interleaved([("omendb fresh build of the live half", fresh, ""), ("omendb half deleted", full, ""),
                     ("omendb half deleted, compacted", compacted, "")], queries, truth, k, efs, a.repeat)
        resident = lambda s: s["bytes_heap"] + s["bytes_mapped_resident"]
        print(f"# durable delete (batches of 10,000, fsync each): {len(doomed) / delete_s:,.0f} ids/s; "
              f"compaction {compact_s:.2f} s; insert {n / insert_s:,.0f} vec/s")
        print(f"# after compaction: disk {stats['bytes_on_disk'] / fresh_stats['bytes_on_disk']:.3f}x and "
              f"resident {resident(stats) / max(1, resident(fresh_stats)):.3f}x the fresh build "
              f"({stats['bytes_on_disk'] / 2**20:.1f} vs {fresh_stats['bytes_on_disk'] / 2**20:.1f} MiB on disk)")
        compacted.close()
        full.close()
        fresh.close()

        # In memory: delete rate, upsert rate, and searches while a compaction runs.
        memory = omendb.Index(**options)
        memory.insert_batch(ids, base)
        t = time.perf_counter()
        for start in range(0, len(doomed), 10_000):
            memory.delete(doomed[start:start + 10_000])
        delete_rate = len(doomed) / (time.perf_counter() - t)
        # Searches on the same index, idle and while it compacts (half of its vectors deleted).
        idle = sweep(lambda q, ef: memory.search_batch(q, k=k, ef=ef, threads=1)[0], queries, truth, k, efs[1:2], 1)
        compacting = threading.Thread(target=memory.compact)
        compacting.start()
        during = sweep(lambda q, ef: memory.search_batch(q, k=k, ef=ef, threads=1)[0], queries, truth, k, efs[1:2], 1)
        compacting.join()
        print(f"# ef{efs[1]} recall/qps idle {idle.strip()}, while compacting {during.strip()} (same index)")
        # Pauses and memory of a second compaction (a third of the rest deleted): one thread inserts
        # batches of 100 throughout (their latency shows the waits on the writer lock) while the
        # resident set is sampled (the rebuild's extra memory).
        gone = rng.choice(live, len(live) // 3, replace=False).astype(np.uint64)
        memory.delete(gone)
        still = np.setdiff1d(live, gone)
        # Far from every query (random directions; offset under L2), so they change no result.
        extra = (rng.normal(0, 1, (20_000, dim)) + (10 if a.metric == "l2" else 0)).astype(np.float32)
        next_id = [2 * n]

        def insert_latencies(stop):
            times = []
            while not stop() and next_id[0] < 2 * n + len(extra):
                at = next_id[0] - 2 * n
                t = time.perf_counter()
                memory.insert_batch(np.arange(next_id[0], next_id[0] + 100, dtype=np.uint64), extra[at:at + 100])
                times.append(time.perf_counter() - t)
                next_id[0] += 100
            return np.array(times) * 1e3

        calm = insert_latencies(lambda: next_id[0] >= 2 * n + 2_000)
        before_rss, peak_rss, done = rss_bytes(), [0], threading.Event()

        def compact():
            memory.compact()
            done.set()

        def sample():
            while not done.wait(0.01):
                peak_rss[0] = max(peak_rss[0], rss_bytes())

        workers = [threading.Thread(target=compact), threading.Thread(target=sample)]
        for worker in workers:
            worker.start()
        busy = insert_latencies(done.is_set)
        for worker in workers:
            worker.join()
        busy = busy if len(busy) else np.zeros(1)
        memory.delete(np.arange(2 * n, next_id[0], dtype=np.uint64))
        print(f"# inserts of 100 during a compaction: p50 {np.median(busy):.1f} ms, max {busy.max():.1f} ms "
              f"({len(busy)} batches) against p50 {np.median(calm):.1f} ms, max {calm.max():.1f} ms idle; "
              f"resident set during it peaked {(peak_rss[0] - before_rss) / 2**20:+.0f} MiB over "
              f"{before_rss / 2**20:.0f} MiB")
        # Upserts of present ids against inserts of as many new ones into the same index, in
        # alternating rounds (so a noisy neighbour or the index's growth weighs on both alike).
        replaced = still[: min(len(still), 10_000)]
        rates = {"insert": [], "upsert": []}
        for round_ in range(6):
            noisy = base[replaced] + rng.normal(0, 1e-3, (len(replaced), dim)).astype(np.float32)
            order = ("insert", "upsert") if round_ % 2 == 0 else ("upsert", "insert")
            for name in order:
                labels = replaced + np.uint64(3 * n + round_ * n) if name == "insert" else replaced
                call = memory.insert_batch if name == "insert" else memory.upsert
                t = time.perf_counter()
                call(labels, noisy)
                rates[name].append(len(replaced) / (time.perf_counter() - t))
        upsert_rate, insert_rate = np.median(rates["upsert"]), np.median(rates["insert"])
        ratios = np.array(rates["upsert"]) / np.array(rates["insert"])
        print(f"# in memory, batches of 10,000: delete {delete_rate:,.0f} ids/s; upsert {upsert_rate:,.0f} vec/s = "
              f"{upsert_rate / insert_rate:.2f}x insert ({insert_rate:,.0f} vec/s; median of 6 alternating rounds, "
              f"per-round ratios {ratios.min():.2f}-{ratios.max():.2f})")
        memory.close()

        # Repair (up to 40% deleted) against a rebuild of the same live set on as many threads.
        fifth = np.sort(rng.permutation(n)[: n // 5]).astype(np.uint64)
        kept = np.setdiff1d(ids, fifth)
        fifth_truth = truth_of(base[kept.astype(np.int64)], kept.astype(np.int64), queries, a.metric, k)
        repaired = omendb.Index(**options)
        repaired.insert_batch(ids, base)
        repaired.delete(fifth)
        t = time.perf_counter()
        repaired.compact()
        repair_s = time.perf_counter() - t
        rebuilt = omendb.Index(**{**options, "threads": max(1, a.threads // 2)})
        t = time.perf_counter()
        rebuilt.insert_batch(kept, base[kept.astype(np.int64)])
        rebuild_s = time.perf_counter() - t
        interleaved([("omendb 20% deleted, repaired", repaired, ""), ("omendb same set rebuilt", rebuilt, "")],
                     queries, fifth_truth, k, efs, a.repeat)
        print(f"# 20% deleted: repair {repair_s:.2f} s, rebuild {rebuild_s:.2f} s on {max(1, a.threads // 2)} thread(s): "
              f"{rebuild_s / repair_s:.1f}x")
        repaired.close()
        rebuilt.close()

        # Churn: start from the live half, then 20 cycles of -5% / +5% (new vectors from the other half).
        churn, _ = database(os.path.join(tmp, "churn"), base[live], live, compact_threshold=0.2)
        pool = list(doomed)
        current = set(live.tolist())
        step = n // 20
        for cycle in range(20):
            gone = rng.choice(np.fromiter(current, np.uint64), step // 2, replace=False)
            churn.delete(gone)
            current -= set(gone.tolist())
            new = np.array(pool[cycle * (step // 2):(cycle + 1) * (step // 2)], dtype=np.uint64)
            churn.insert_batch(new, base[new.astype(np.int64)])
            current |= set(new.tolist())
        # Let the background compaction the last cycles started finish before measuring.
        deadline = time.time() + 120
        while time.time() < deadline:
            s = churn.stats()
            if s["deleted"] <= 0.2 * (s["vectors"] + s["deleted"]):
                break
            time.sleep(0.2)
        time.sleep(2)
        final = np.array(sorted(current), dtype=np.uint64)
        churn_truth = truth_of(base[final.astype(np.int64)], final.astype(np.int64), queries, a.metric, k)
        refresh, _ = database(os.path.join(tmp, "refresh"), base[final.astype(np.int64)], final)
        footprint = lambda s: f"disk {s['bytes_on_disk'] / 2**20:.1f} MiB resident {resident(s) / 2**20:.1f} MiB"
        interleaved([("omendb after 20 churn cycles", churn, footprint(churn.stats())),
                     ("omendb fresh build of that set", refresh, footprint(refresh.stats()))],
                    queries, churn_truth, k, efs, a.repeat)
        churn.close()
        refresh.close()

    for peer in a.peers.split(",") if a.peers else []:
        if peer == "hnswlib":
            import hnswlib
            index = hnswlib.Index(space={"l2": "l2", "cos": "cosine", "ip": "ip"}[a.metric], dim=dim)
            index.init_index(max_elements=n, M=a.m, ef_construction=a.efc)
            index.set_num_threads(a.threads)
            index.add_items(base, ids)
            for i in doomed:
                index.mark_deleted(int(i))

            def search(q, ef, index=index):
                index.set_ef(ef)
                return index.knn_query(q, k, num_threads=1)[0]
        elif peer == "usearch":
            from usearch.index import Index
            index = Index(ndim=dim, metric={"l2": "l2sq", "cos": "cos", "ip": "ip"}[a.metric], dtype="f32",
                          connectivity=a.m, expansion_add=a.efc)
            index.add(ids, base, threads=a.threads)
            index.remove(doomed)

            def search(q, ef, index=index):
                index.expansion_search = ef
                return index.search(q, k, threads=1).keys
        else:
            raise SystemExit(f"unknown peer {peer}")
        print(f"{peer + ' half deleted':34} {sweep(search, queries, truth, k, efs, a.repeat)}", flush=True)


if __name__ == "__main__":
    main()
