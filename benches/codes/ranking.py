"""How well a code ranks, without a graph: the share of each query's true 10 nearest that lie
among the R best by the code's estimate over the whole set, for codes of the vectors
themselves (one centre: the data's mean) or of their residuals to k-means centres.

    python benches/codes/ranking.py ../shared/data/npm51k --metric cos --code binary --centres 1,64,256
    python benches/codes/ranking.py build/clustered1000000 --metric l2 --n 200000 --code 4bit --centres 1,256

A numpy model of omendb's codes, for deciding whether a change to them is worth building (the
walk's own detours come on top, so a search's recall at oversample R/10 is lower):
- `4bit`: per dimension, a range clipped at one of the spreads the library tries (standard
  deviations around the mean, or the data's whole range), chosen by squared error on a sample,
  16 levels; the estimate is the exact distance to the decoded vector.
- `binary`: RaBitQ, the sign of each component of the rotated residual `r = P (o - c)` and the
  factor `|r|^2 / sum |r_i|`; the query is rotated as it is, not quantised to 4 bits (which adds
  about 5% to the estimate's variance), and `P` is a random orthogonal matrix, where the library
  uses a Kac walk of Walsh-Hadamard transforms.
With several centres each vector is coded against its nearest, and the query's residual to that
centre is what the estimate reads (IVF-RaBitQ; for a scalar code, IVF residuals).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from ann_peers import load_dataset  # noqa: E402

SPREADS = [3.0, 1.5, 2.0, 2.5, 4.0, np.inf]  # as src/quant/mod.rs
RANKS = (10, 20, 30, 50, 100)


def squared_l2(queries, rows):
    return (rows * rows).sum(1)[None, :] - 2 * queries @ rows.T + (queries * queries).sum(1)[:, None]


def nearest(rows, centres, chunk=20000):
    return np.concatenate([np.argmin(squared_l2(rows[i:i + chunk], centres), 1) for i in range(0, len(rows), chunk)])


def kmeans(rows, count, rng, iterations=8, sample=50000):
    """Lloyd's iterations on a sample from k-means++ seeds (each next seed drawn in proportion to
    its squared distance from the seeds so far), which find every cluster of a well-separated
    set where seeds drawn uniformly leave some clusters without a centre and split others."""
    sample = rows[rng.choice(len(rows), min(sample, len(rows)), replace=False)]
    centres = np.empty((count, rows.shape[1]), np.float32)
    centres[0] = sample[rng.integers(len(sample))]
    closest = ((sample - centres[0]) ** 2).sum(1)
    for j in range(1, count):
        centres[j] = sample[rng.choice(len(sample), p=closest / closest.sum())]
        closest = np.minimum(closest, ((sample - centres[j]) ** 2).sum(1))
    for _ in range(iterations):
        assigned = nearest(sample, centres)
        for j in range(count):
            members = assigned == j
            if members.any():
                centres[j] = sample[members].mean(0)
    return centres


def scalar_4bit(residuals, rng):
    """Decoded residuals: per dimension the clipped range whose codes err least on a sample."""
    mean, deviation = residuals.mean(0), residuals.std(0)
    low, high = residuals.min(0), residuals.max(0)
    sample = residuals[rng.choice(len(residuals), min(10000, len(residuals)), replace=False)]
    best = None
    for spread in SPREADS:
        lower, upper = (low, high) if np.isinf(spread) else (np.maximum(low, mean - spread * deviation),
                                                             np.minimum(high, mean + spread * deviation))
        step = np.maximum((upper - lower) / 15, 1e-12)
        error = ((lower + step * np.clip(np.rint((sample - lower) / step), 0, 15) - sample) ** 2).sum(0)
        if best is None:
            best = (error, lower, step)
        else:
            better = error < best[0]
            best = tuple(np.where(better, new, old) for new, old in zip((error, lower, step), best))
    _, lower, step = best
    return lower + step * np.clip(np.rint((residuals - lower) / step), 0, 15)


def estimates(code, rows, queries, centres, assigned, rng):
    residuals = rows - centres[assigned]
    if code == "4bit":
        return squared_l2(queries, centres[assigned] + scalar_4bit(residuals, rng))
    rotation, _ = np.linalg.qr(rng.standard_normal((rows.shape[1], rows.shape[1])))
    turn = rotation.T.astype(np.float32)  # x @ turn = P x
    rotated = residuals @ turn
    bits = rotated > 0
    norm = (rotated * rotated).sum(1)
    factor = np.divide(norm, np.abs(rotated).sum(1), out=np.zeros_like(norm), where=norm > 0)
    # The query's rotated residual to each centre, once per centre rather than per vector.
    rotated_centres = centres @ turn
    out = np.empty((len(queries), len(rows)), np.float32)
    for i, query in enumerate(queries):
        query_residual = (query @ turn)[None, :] - rotated_centres  # per centre
        per_vector = query_residual[assigned]
        inner = factor * (2 * (bits * per_vector).sum(1) - per_vector.sum(1))
        out[i] = norm + (query_residual * query_residual).sum(1)[assigned] - 2 * inner
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="prefix of DATA_base.fvecs / DATA_query.fvecs (as ann_peers.py)")
    ap.add_argument("--metric", default="cos", choices=["l2", "cos"])
    ap.add_argument("--n", type=int, default=0, help="the first N vectors (default: all)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--code", default="binary", choices=["binary", "4bit"])
    ap.add_argument("--centres", default="1,256", help="comma-separated counts; 1 is the data's mean")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    rows, queries, _ = load_dataset(a.data, a.metric, a.n, 10)
    rows, queries = rows.astype(np.float32), queries[:a.queries].astype(np.float32)
    if a.metric == "cos":
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(squared_l2(queries, rows), 1)[:, :10]
    print(f"# {os.path.basename(a.data)} n={len(rows)} dim={rows.shape[1]} metric={a.metric} "
          f"queries={len(queries)} code={a.code}: share of the true top 10 among the best R by estimate")
    print(f"{'centres':>8} {'|o-c| mean':>11} " + " ".join(f"{'R=' + str(r):>7}" for r in RANKS))
    for count in map(int, a.centres.split(",")):
        centres = rows.mean(0, keepdims=True) if count == 1 else kmeans(rows, count, rng)
        assigned = nearest(rows, centres)
        order = np.argsort(estimates(a.code, rows, queries, centres, assigned, rng), 1)
        shares = [np.mean([len(set(best[:r]) & set(t)) / 10 for best, t in zip(order, truth)]) for r in RANKS]
        residual = np.linalg.norm(rows - centres[assigned], axis=1).mean()
        print(f"{count:>8} {residual:>11.3f} " + " ".join(f"{s:>7.3f}" for s in shares), flush=True)


if __name__ == "__main__":
    main()
