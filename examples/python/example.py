"""A complete Python program: create an index, insert a batch, search (numpy in, numpy out).

    pip install ./python        # or: PYTHONPATH=python with the library built in target/release
    python examples/python/example.py
"""
import numpy as np

import omendb

with omendb.Index(dim=3, metric="cosine") as index:
    index.insert_batch(np.array([7, 8, 9], dtype=np.uint64), np.eye(3, dtype=np.float32))
    ids, distances = index.search(np.array([0.9, 0.1, 0], dtype=np.float32), k=2)
    for i, d in zip(ids, distances):
        print(f"id {i} distance {d:.4f}")
    try:
        index.insert_batch([7], np.ones((1, 3), np.float32))
    except omendb.InvalidInputError as e:
        print("rejected:", e)
    assert ids[0] == 7

    # Change the contents: replace 8's vector, delete 7, read a vector back.
    index.upsert([8], np.array([[0.9, 0.1, 0]], dtype=np.float32))
    print("deleted", index.delete([7, 12345]))
    vectors, found = index.get([8, 7])
    print("8 is now", np.round(vectors[0], 3), "; 7 found:", bool(found[1]))
    assert index.search(np.array([0.9, 0.1, 0], dtype=np.float32), k=1)[0][0] == 8
