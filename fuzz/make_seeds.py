"""Writes fuzz/corpus/open_files/: one seed per file of a small real database, prefixed by the
byte that makes the fuzz target put it in place (the same choice index as FILES there)."""
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import numpy as np  # noqa: E402

import omendb  # noqa: E402

FILES = ["MANIFEST", "segment-0000000000.omen", "growing-", "wal-"]
corpus = pathlib.Path(__file__).resolve().parent / "corpus" / "open_files"
corpus.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    db = pathlib.Path(tmp) / "db"
    # A child process that dies without closing leaves a log record behind.
    subprocess.run([sys.executable, "-c", f"""
import os, sys, numpy as np
sys.path.insert(0, {str(pathlib.Path(omendb.__file__).parents[1])!r})
import omendb
index = omendb.Index.open({str(db)!r}, dim=4, m=4, ef_construction=16, segment_capacity=64, threads=1)
for b in range(10):
    index.insert_batch(np.arange(b * 10, b * 10 + 10, dtype=np.uint64), (np.arange(40) % 17).reshape(10, 4))
index.flush()
index.insert_batch([1000], np.array([[1, 2, 3, 4]], np.float32))
os._exit(0)
"""], check=True)
    for path in db.iterdir():
        for choice, prefix in enumerate(FILES):
            if path.name.startswith(prefix):
                for verify_bit in (0, 0x80):
                    (corpus / f"{path.name}-{verify_bit}").write_bytes(bytes([choice | verify_bit]) + path.read_bytes())
print(f"seeds in {corpus}: {len(os.listdir(corpus))}")
