"""Per-call cost of one single-query search through the Python binding (same data as overhead.c)."""
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "python"))
import omendb  # noqa: E402

N, DIM, CALLS = 1000, 16, 200_000
vectors = np.sin(np.arange(N * DIM, dtype=np.float32)).reshape(N, DIM).astype(np.float32)
index = omendb.Index(dim=DIM)
index.insert_batch(np.arange(N, dtype=np.uint64), vectors)
queries = [vectors[i] for i in range(N)]
start = time.perf_counter()
for call in range(CALLS):
    index.search(queries[call % N], k=10, ef=10)
print(f"Python  {(time.perf_counter() - start) / CALLS * 1e6:.3f} us per search")
