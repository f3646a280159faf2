"""Writes a seeded clustered data set in the TEXMEX layout that benches/peers/ann_peers.py reads:
PREFIX_base.fvecs (N vectors) and PREFIX_query.fvecs (1,000 more from the same distribution).

    python benches/peers/gen_clustered.py build/clustered1m 1000000 128  (or: make bench-clustered)
    python benches/peers/gen_clustered.py build/tight200k 200000 128 0.05

1,000 centres drawn uniformly from [-1, 1]^dim, each vector a centre plus normal noise of
standard deviation SPREAD (default 0.25; smaller makes tighter clusters, as embeddings of one
narrow domain form).
"""
import sys

import numpy as np


def write_fvecs(path, vectors):
    rows = np.empty((len(vectors), vectors.shape[1] + 1), np.float32)
    rows[:, 0] = np.array([vectors.shape[1]], np.int32).view(np.float32)[0]
    rows[:, 1:] = vectors
    rows.tofile(path)


def main():
    prefix, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spread = float(sys.argv[4]) if len(sys.argv) > 4 else 0.25
    rng = np.random.default_rng(20261125)
    centres = rng.uniform(-1, 1, (1000, dim)).astype(np.float32)
    data = np.empty((n + 1000, dim), np.float32)
    for start in range(0, n + 1000, 100_000):
        end = min(start + 100_000, n + 1000)
        data[start:end] = centres[rng.integers(0, len(centres), end - start)]
        data[start:end] += spread * rng.standard_normal((end - start, dim), dtype=np.float32)
    write_fvecs(prefix + "_base.fvecs", data[:n])
    write_fvecs(prefix + "_query.fvecs", data[n:])
    print(f"wrote {prefix}_base.fvecs ({n} x {dim}) and {prefix}_query.fvecs (1000 x {dim})")


if __name__ == "__main__":
    main()
