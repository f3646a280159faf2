"""omendb past one machine: a sharded index whose shards are Ray actors, each owning one
`omendb.Index` (in memory, or a database directory `path/shard-NNN`).

    import ray, omendb.distributed as od
    ray.init()                                   # or ray.init(address="auto") on a cluster
    index = od.ShardedIndex(4, dim=384, metric="cosine", path="/data/vectors")
    index.insert_batch(ids, vectors)             # routed by a fixed hash of each id
    ids, distances = index.search_batch(queries, k=10)   # every shard, merged on the caller
    index.close()
    index = od.ShardedIndex.open("/data/vectors")        # the same shards, the same answers

Design (docs/scale-out.md): an id lives on shard `shard_of(id)`, a splitmix64 hash of the id modulo
the shard count, fixed when the index is created (re-sharding = building a new index). A search asks
every shard for its top k and keeps the k closest of the union: the exact merge of exact per-shard
results, so recall at equal ef is at least one index's. Writes are checked on the caller first
(dimension, finite values, repeated ids, ids already present), so bad input changes no shard.
Shard actors are spread over the cluster, declare their CPUs and restart after a failure
(reopening their directory); a write to a shard that died is retried once it is back, skipping the
ids its log already holds, so each id is inserted exactly once.
"""
import json
import os
import time

import numpy as np

try:
    import ray
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("omendb.distributed needs Ray: pip install './python[ray]' (or pip install ray)") from error

import omendb

__all__ = ["ShardedIndex", "from_ray_dataset", "shard_of"]

_METADATA = "omendb-sharded.json"
_METADATA_VERSION = 1


def shard_of(ids, num_shards):
    """The shard of each id: splitmix64(id) % num_shards. Fixed: changing it would lose ids."""
    z = np.asarray(ids, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z % np.uint64(num_shards)).astype(np.int64)


class _Shard:
    """One shard: an omendb.Index in a Ray actor. A restarted actor runs __init__ again, which
    reopens the same directory and replays its log."""

    def __init__(self, path, options):
        if path is None:
            self.index = omendb.Index(**options)
        else:
            self.index = omendb.Index.open(path, **options)

    def present(self, ids):
        return self.index.get(ids)[1]

    def insert_batch(self, ids, vectors, resume):
        if resume:
            # A retry after this actor died: the log may already hold part of the slice.
            fresh = ~self.index.get(ids)[1]
            ids, vectors = ids[fresh], vectors[fresh]
        if len(ids):
            self.index.insert_batch(ids, vectors)
        return len(ids)

    def upsert(self, ids, vectors):
        self.index.upsert(ids, vectors)

    def delete(self, ids):
        return self.index.delete(ids)

    def get(self, ids):
        return self.index.get(ids)

    def search_batch(self, queries, k, ef, oversample, allow):
        return self.index.search_batch(queries, k=k, ef=ef, oversample=oversample, filter=allow)

    def flush(self):
        self.index.flush()

    def stats(self):
        return self.index.stats()

    def close(self):
        self.index.close()


def _error(cls, status, message):
    return cls(status, {3: "OMEN_STATUS_DIMENSION_MISMATCH", 4: "OMEN_STATUS_NON_FINITE",
                        5: "OMEN_STATUS_ZERO_VECTOR", 6: "OMEN_STATUS_DUPLICATE_ID",
                        2: "OMEN_STATUS_INVALID_ARGUMENT"}[status], message)


def _unwrapped(call):
    """Runs `call`; an omendb error raised inside an actor comes out as itself, not wrapped."""
    try:
        return call()
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, omendb.Error):
            raise cause from None
        raise


class ShardedIndex:
    """`num_shards` omendb indexes in Ray actors, used as one index with the API of
    `omendb.Index`. `path` None keeps the shards in memory (lost with their actors); otherwise
    each shard is the database directory `path/shard-NNN` and the shard count and options are kept
    in `path/omendb-sharded.json`. `index_options` go to every shard's `omendb.Index`
    (m, ef_construction, quantization, ...). `cpus_per_shard` is what each actor declares to
    Ray's scheduler; `max_restarts` how often a failed actor is restarted."""

    def __init__(self, num_shards, dim, metric="l2", path=None, cpus_per_shard=1, max_restarts=4, **index_options):
        if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
            raise _error(omendb.InvalidArgumentError, 2, f"num_shards must be a positive integer, got {num_shards!r}")
        self.num_shards, self.dim, self.metric, self.path = int(num_shards), int(dim), metric, path
        self._options = dict(index_options, dim=self.dim, metric=metric)
        self._cpus, self._max_restarts = cpus_per_shard, max_restarts
        if path is not None:
            os.makedirs(path, exist_ok=True)
            meta = os.path.join(path, _METADATA)
            if os.path.exists(meta):
                raise _error(omendb.InvalidArgumentError, 2,
                             f"{path} already holds a sharded index: use ShardedIndex.open")
            self._write_metadata()
        self._start()

    @classmethod
    def open(cls, path, cpus_per_shard=1, max_restarts=4):
        """Re-attaches to the sharded database at `path` (its shard count and options are stored
        beside the shards)."""
        meta = os.path.join(path, _METADATA)
        try:
            with open(meta) as f:
                stored = json.load(f)
        except FileNotFoundError:
            raise omendb.NotFoundError(105, "OMEN_STATUS_NOT_FOUND", f"no sharded index at {path} ({meta} is missing)") from None
        if stored.get("version") != _METADATA_VERSION:
            raise omendb.VersionError(102, "OMEN_STATUS_VERSION", f"{meta}: version {stored.get('version')}")
        index = cls.__new__(cls)
        index.num_shards, index.dim, index.metric, index.path = (
            stored["num_shards"], stored["dim"], stored["metric"], path)
        index._options = dict(stored["index_options"], dim=index.dim, metric=index.metric)
        index._cpus, index._max_restarts = cpus_per_shard, max_restarts
        index._start(create=False)
        return index

    def _write_metadata(self):
        meta = os.path.join(self.path, _METADATA)
        options = {k: v for k, v in self._options.items() if k not in ("dim", "metric")}
        record = {"version": _METADATA_VERSION, "num_shards": self.num_shards, "dim": self.dim,
                  "metric": self.metric, "hash": "splitmix64", "index_options": options}
        with open(meta + ".tmp", "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(meta + ".tmp", meta)

    def shard_path(self, shard):
        return None if self.path is None else os.path.join(self.path, f"shard-{shard:03d}")

    def _start(self, create=True):
        #: Shard calls sent again after their actor died (and Ray restarted it).
        self.retries = 0
        actor = ray.remote(_Shard).options(num_cpus=self._cpus, max_restarts=self._max_restarts,
                                           max_task_retries=0, scheduling_strategy="SPREAD")
        options = dict(self._options)
        if self.path is not None:
            options["create"] = create
        self._shards = [actor.remote(self.shard_path(s), options) for s in range(self.num_shards)]
        # Fail here, not at the first call, when a shard cannot open.
        _unwrapped(lambda: ray.get([s.stats.remote() for s in self._shards]))

    # Writes -------------------------------------------------------------------------------

    def _matrix(self, rows, what):
        """`rows` as a C-ordered float32[n, dim] (one row may be given as a vector)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise _error(omendb.DimensionMismatchError, 3,
                         f"{what} have shape {rows.shape} but the index has dimension {self.dim}")
        return rows

    def _rows(self, ids, vectors):
        """Checks a write on the caller, as each shard would, so that bad input changes nothing."""
        ids = np.ascontiguousarray(ids, dtype=np.uint64).reshape(-1)
        vectors = self._matrix(vectors, "vectors")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        bad = ~np.isfinite(vectors)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise _error(omendb.NonFiniteError, 4,
                         f"vector {row} has a non-finite component ({vectors[row, column]}) at position {column}")
        if self.metric in ("cosine", "cos"):
            zero = ~vectors.any(axis=1)
            if zero.any():
                raise _error(omendb.ZeroVectorError, 5,
                             f"vector {int(np.argmax(zero))} is all zeros, which the cosine metric cannot compare")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise _error(omendb.DuplicateIdError, 6, f"id {unique[counts > 1][0]} appears more than once in the batch")
        return ids, vectors

    def _slices(self, ids):
        shards = shard_of(ids, self.num_shards)
        return [(s, np.flatnonzero(shards == s)) for s in range(self.num_shards) if (shards == s).any()]

    def _on_shards(self, method, slices, *arrays, resume_on_retry=False):
        """Calls `method` on each shard with its slice of `arrays`, in parallel; a shard whose actor
        died is called again once Ray restarted it (with resume=True for inserts). Returns the
        results in the order of `slices`."""
        def call(shard, rows, resume):
            args = [array[rows] for array in arrays]
            if resume_on_retry:
                args.append(resume)
            return getattr(self._shards[shard], method).remote(*args)

        pending = {i: call(shard, rows, False) for i, (shard, rows) in enumerate(slices)}
        results, attempts = {}, 0
        while pending:
            ready = {}
            for i, ref in pending.items():
                try:
                    ready[i] = _unwrapped(lambda: ray.get(ref))
                except ray.exceptions.RayActorError:
                    if attempts >= self._max_restarts + 1:
                        raise
            results.update(ready)
            retry = {i: slices[i] for i in pending if i not in ready}
            if retry:
                attempts += 1
                self.retries += len(retry)
                time.sleep(0.2 * attempts)  # let Ray restart the actor
            pending = {i: call(shard, rows, True) for i, (shard, rows) in retry.items()}
        return [results[i] for i in range(len(slices))]

    def insert_batch(self, ids, vectors):
        """Inserts rows of `vectors` under `ids`, each on its shard, in parallel; returns when
        every shard has acknowledged its slice (durably, for shards in a directory). An id
        already present anywhere raises DuplicateIdError and nothing is inserted."""
        ids, vectors = self._rows(ids, vectors)
        slices = self._slices(ids)
        for present, (_, rows) in zip(self._on_shards("present", slices, ids), slices):
            if present.any():
                raise _error(omendb.DuplicateIdError, 6, f"id {ids[rows][present][0]} is already in the index")
        self._on_shards("insert_batch", slices, ids, vectors, resume_on_retry=True)

    def upsert(self, ids, vectors):
        """Inserts, replacing the vector of any id already present (atomic per shard)."""
        ids, vectors = self._rows(ids, vectors)
        self._on_shards("upsert", self._slices(ids), ids, vectors)

    def delete(self, ids):
        """Deletes the listed ids that are present; returns how many were."""
        ids = np.ascontiguousarray(ids, dtype=np.uint64).reshape(-1)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise _error(omendb.DuplicateIdError, 6, f"id {unique[counts > 1][0]} appears more than once")
        return int(sum(self._on_shards("delete", self._slices(ids), ids)))

    def get(self, ids):
        """The stored vectors of `ids`: (float32[n, dim], bool[n] found), as omendb.Index.get."""
        ids = np.ascontiguousarray(ids, dtype=np.uint64).reshape(-1)
        vectors, found = np.zeros((len(ids), self.dim), np.float32), np.zeros(len(ids), bool)
        slices = self._slices(ids)
        for (got, hit), (_, rows) in zip(self._on_shards("get", slices, ids), slices):
            vectors[rows], found[rows] = got, hit
        return vectors, found

    # Searches -----------------------------------------------------------------------------

    def search_batch(self, queries, k=10, ef=0, oversample=0, filter=None):
        """The k nearest neighbours of every row of `queries` over all shards: (uint64[q, k] ids,
        float32[q, k] distances), closest first; missing hits have id 2**64-1 and distance inf,
        as omendb.Index.search_batch. `filter`: a sequence of allowed ids (each shard gets its
        own part)."""
        queries = self._matrix(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise _error(omendb.InvalidArgumentError, 2, f"k must be a positive integer, got {k!r}")
        allow = None
        if filter is not None:
            if callable(filter) or isinstance(filter, omendb.Filter):
                raise _error(omendb.InvalidArgumentError, 2, "a sharded index takes a filter of allowed ids only")
            allow = np.ascontiguousarray(filter, dtype=np.uint64).reshape(-1)
            allow_shard = shard_of(allow, self.num_shards)
        refs = queries if len(queries) < 64 else ray.put(queries)  # one copy in the object store
        calls = [shard.search_batch.remote(refs, k, ef, oversample,
                                           None if allow is None else allow[allow_shard == s])
                 for s, shard in enumerate(self._shards)]
        parts = _unwrapped(lambda: ray.get(calls))
        return _merge(parts, len(queries), k)

    def search(self, query, k=10, ef=0, oversample=0, filter=None):
        """The k nearest neighbours of one query: (uint64 ids, float32 distances)."""
        ids, distances = self.search_batch(np.asarray(query, np.float32).reshape(1, -1), k, ef, oversample, filter)
        return ids[0], distances[0]

    # Whole index ----------------------------------------------------------------------------

    def flush(self):
        _unwrapped(lambda: ray.get([s.flush.remote() for s in self._shards]))

    def stats(self):
        """{"shards": [each shard's omendb stats], "total": sums of the numeric fields}."""
        shards = _unwrapped(lambda: ray.get([s.stats.remote() for s in self._shards]))
        total = {key: sum(s[key] for s in shards) for key in shards[0] if isinstance(shards[0][key], (int, float))}
        return {"shards": shards, "total": total}

    def __len__(self):
        return int(self.stats()["total"]["vectors"])

    def close(self):
        """Closes every shard (checkpointing databases) and ends the actors."""
        shards, self._shards = getattr(self, "_shards", []), []
        try:
            _unwrapped(lambda: ray.get([s.close.remote() for s in shards]))
        finally:
            for shard in shards:
                ray.kill(shard, no_restart=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def actors(self):
        """The shard actors, in shard order (for placement, monitoring or fault drills)."""
        return list(self._shards)


def _merge(parts, n, k):
    """The k closest of every shard's top k, per query, closest first (ties by shard order)."""
    width = max(ids.shape[1] for ids, _ in parts)
    ids = np.full((n, width * len(parts)), np.iinfo(np.uint64).max, np.uint64)
    distances = np.full((n, width * len(parts)), np.inf, np.float32)
    for s, (part_ids, part_distances) in enumerate(parts):
        ids[:, s * width:s * width + part_ids.shape[1]] = part_ids
        distances[:, s * width:s * width + part_ids.shape[1]] = part_distances
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    merged_ids, merged = np.take_along_axis(ids, order, 1), np.take_along_axis(distances, order, 1)
    if merged.shape[1] < k:  # fewer vectors in all than k
        pad = k - merged.shape[1]
        merged_ids = np.pad(merged_ids, ((0, 0), (0, pad)), constant_values=np.iinfo(np.uint64).max)
        merged = np.pad(merged, ((0, 0), (0, pad)), constant_values=np.inf)
    return merged_ids, merged


def from_ray_dataset(dataset, id_column, vector_column, num_shards, dim, metric="l2", path=None,
                     batch_size=4096, **index_options):
    """A ShardedIndex built from a Ray Data dataset: `map_batches` runs over the dataset's blocks
    in parallel, each batch routed to the shards by id (the shards insert concurrently)."""
    index = ShardedIndex(num_shards, dim, metric, path, **index_options)

    def insert(batch):
        ids = np.asarray(batch[id_column], dtype=np.uint64)
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in batch[vector_column]])
        index.insert_batch(ids, vectors)
        return {"inserted": np.array([len(ids)])}

    inserted = dataset.map_batches(insert, batch_size=batch_size, batch_format="numpy")
    total = sum(int(row["inserted"]) for row in inserted.iter_rows())
    if total != len(index):
        raise RuntimeError(f"{total} rows were inserted but the shards hold {len(index)}")
    return index
