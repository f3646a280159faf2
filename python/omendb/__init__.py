"""omendb for Python: the C library loaded with ctypes (numpy in, numpy out).

    import numpy as np, omendb
    index = omendb.Index(dim=128, metric="cosine")
    index.insert_batch(np.arange(1000, dtype=np.uint64), vectors)        # float32[1000, 128]
    ids, distances = index.search_batch(queries, k=10)                   # uint64[q, 10], float32[q, 10]

The library is found through the OMENDB_LIBRARY variable (a path to libomendb.so), else beside
this file (where `pip install ./python` puts it), else in the cargo target directory of the
checkout this package sits in (release, then debug). Every call releases the GIL while the library
works (ctypes does so for each foreign call), so Python threads run during long inserts and
searches.

A database on disk survives crashes and opens by memory-mapping its files:

    with omendb.Index.open("vectors.db", dim=128, metric="cosine") as index:
        index.insert_batch(ids, vectors)     # durable (fsync'd) when it returns
    index = omendb.Index.open("vectors.db", read_only=True)

Errors raise `omendb.Error` subclasses named after the status: `DimensionMismatchError`,
`NonFiniteError`, `ZeroVectorError`, `DuplicateIdError`, `NullArgumentError` and
`InvalidArgumentError` are also `ValueError`s (the input was wrong); `IoError`, `CorruptError`,
`VersionError`, `LockedError`, `ReadOnlyError` and `NotFoundError` are also `OSError`s (the
files); `ClosedError` is raised by any call on a closed index.
"""
import ctypes
import os
import pathlib
import threading
import time

import numpy as np

__all__ = [
    "Index", "Filter", "Error", "InvalidInputError", "NullArgumentError", "InvalidArgumentError", "DimensionMismatchError",
    "NonFiniteError", "ZeroVectorError", "DuplicateIdError", "ResourceExhaustedError", "PanicError", "ClosedError",
    "StorageError", "IoError", "CorruptError", "VersionError", "LockedError", "ReadOnlyError", "NotFoundError",
    "library_path", "version",
]

_METRICS = {"l2": 0, "cosine": 1, "cos": 1, "ip": 2, "inner_product": 2}
_DURABILITY = {"batch": 0, "interval": 1, "never": 2}
_QUANTIZATION = {"none": 0, "binary": 1, "4bit": 2, "8bit": 3}
_LOG_RECOVERY = {"drop_tail": 0, "strict": 1}


class Error(Exception):
    """A failed omendb call; `status` is the omen_status code, `status_name` its name."""

    def __init__(self, status, status_name, message):
        super().__init__(f"{status_name}: {message}")
        self.status, self.status_name, self.message = status, status_name, message

    def __reduce__(self):
        # Pickled as its three fields (Ray and multiprocessing carry errors between processes).
        return type(self), (self.status, self.status_name, self.message)


class InvalidInputError(Error, ValueError):
    """The input was rejected (statuses 1-99): wrong dimension, NaN, duplicate id, k = 0, ..."""


class NullArgumentError(InvalidInputError):
    """OMEN_STATUS_NULL_ARGUMENT."""


class InvalidArgumentError(InvalidInputError):
    """OMEN_STATUS_INVALID_ARGUMENT: k = 0, dim = 0, a parameter out of range."""


class DimensionMismatchError(InvalidInputError):
    """OMEN_STATUS_DIMENSION_MISMATCH."""


class NonFiniteError(InvalidInputError):
    """OMEN_STATUS_NON_FINITE: NaN or an infinity in a vector."""


class ZeroVectorError(InvalidInputError):
    """OMEN_STATUS_ZERO_VECTOR: a zero vector under the cosine metric."""


class DuplicateIdError(InvalidInputError):
    """OMEN_STATUS_DUPLICATE_ID."""


class ResourceExhaustedError(Error):
    """OMEN_STATUS_RESOURCE_EXHAUSTED: the OS refused threads."""


class PanicError(Error):
    """OMEN_STATUS_PANIC: a bug inside omendb, caught at the boundary."""


class ClosedError(Error):
    """A call on a closed index."""


class StorageError(Error, OSError):
    """A database file could not be used; the message names it."""


class IoError(StorageError):
    """A file operation failed (disk full, permissions); nothing acknowledged was lost."""


class CorruptError(StorageError):
    """A database file fails its checksums or is inconsistent."""


class VersionError(StorageError):
    """A database file has a format version this library does not read."""


class LockedError(StorageError):
    """Another process has the database open for writing."""


class ReadOnlyError(StorageError):
    """A write to a database opened read-only."""


class NotFoundError(StorageError, FileNotFoundError):
    """No database at the path, and create=False."""


_ERRORS = {1: NullArgumentError, 2: InvalidArgumentError, 3: DimensionMismatchError, 4: NonFiniteError,
           5: ZeroVectorError, 6: DuplicateIdError, 100: IoError, 101: CorruptError, 102: VersionError,
           103: LockedError, 104: ReadOnlyError, 105: NotFoundError, 200: ResourceExhaustedError,
           1000: PanicError}


def library_path():
    """Where the shared library is loaded from."""
    explicit = os.environ.get("OMENDB_LIBRARY")
    if explicit:
        return pathlib.Path(explicit)
    bundled = pathlib.Path(__file__).resolve().parent / "libomendb.so"
    if bundled.exists():
        return bundled
    root = pathlib.Path(__file__).resolve().parents[2]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "libomendb.so"
        if candidate.exists():
            return candidate
    raise OSError(f"libomendb.so not found under {target}: run `cargo build --release` or set OMENDB_LIBRARY")


class _Options(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("dim", ctypes.c_size_t),
        ("metric", ctypes.c_uint32),
        ("m", ctypes.c_size_t),
        ("ef_construction", ctypes.c_size_t),
        ("ef_search", ctypes.c_size_t),
        ("segment_capacity", ctypes.c_size_t),
        ("threads", ctypes.c_size_t),
        ("seed", ctypes.c_uint64),
        ("create", ctypes.c_uint32),
        ("read_only", ctypes.c_uint32),
        ("verify", ctypes.c_uint32),
        ("durability", ctypes.c_uint32),
        ("sync_interval_ms", ctypes.c_uint32),
        ("quantization", ctypes.c_uint32),
        ("oversample", ctypes.c_size_t),
        ("log_recovery", ctypes.c_uint32),
        ("compact_threshold", ctypes.c_double),
    ]


_PREDICATE = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_uint64, ctypes.c_void_p)


class _SearchParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("ef", ctypes.c_size_t), ("oversample", ctypes.c_size_t),
                ("threads", ctypes.c_size_t), ("allow_ids", ctypes.c_void_p), ("allow_count", ctypes.c_size_t),
                ("predicate", _PREDICATE), ("predicate_context", ctypes.c_void_p), ("plan", ctypes.c_uint32)]


_PLANS = {"auto": 0, "exact": 1, "graph": 2}


class Filter:
    """Which ids a search may return: those in `allow` (any sequence of ids; repeats allowed)
    that `predicate` (a function of one int id returning bool) accepts; either may be None.

    Searches also take a bare sequence of ids or a bare function as their `filter`. The
    predicate is called from the index's threads (each call takes the GIL, so an allow-list is
    far faster); an exception in it is raised by the search once it returns."""

    def __init__(self, allow=None, predicate=None):
        self.allow = None if allow is None else np.ascontiguousarray(allow, dtype=np.uint64).reshape(-1)
        if predicate is not None and not callable(predicate):
            raise TypeError("predicate must be callable")
        self.predicate = predicate

    @staticmethod
    def of(filter):
        if filter is None or isinstance(filter, Filter):
            return filter
        return Filter(predicate=filter) if callable(filter) else Filter(allow=filter)


class _Call:
    """`_SearchParams` for one call, holding what its pointers point to until the call returns,
    and the first exception the predicate raised."""

    def __init__(self, ef=0, oversample=0, threads=0, filter=None, plan="auto"):
        if plan not in _PLANS:
            raise ValueError(f"plan must be one of {sorted(_PLANS)}, got {plan!r}")
        self.params = _SearchParams(ctypes.sizeof(_SearchParams), _size(ef, "ef"), _size(oversample, "oversample"),
                                    _size(threads, "threads"))
        self.params.plan = _PLANS[plan]
        self.errors = []
        filter = Filter.of(filter)
        if filter is not None and filter.allow is not None:
            # An empty allow-list allows nothing; a non-NULL pointer (to one unused slot) tells
            # it from no allow-list at all.
            self.allow = filter.allow if len(filter.allow) else np.zeros(1, np.uint64)
            self.params.allow_ids, self.params.allow_count = self.allow.ctypes.data, len(filter.allow)
        if filter is not None and filter.predicate is not None:
            accepts, errors = filter.predicate, self.errors

            def call(id, _context):
                try:
                    return bool(accepts(id))
                except BaseException as error:  # noqa: B036 - re-raised once the search returns
                    errors.append(error)
                    return False

            self.predicate = _PREDICATE(call)
            self.params.predicate = self.predicate

    def run(self, function, *args):
        _call(function, *args)
        if self.errors:
            raise self.errors[0]


class _Stats(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t)] + [(name, ctypes.c_uint64) for name in (
        "segments", "vectors", "bytes_on_disk", "bytes_heap", "bytes_mapped", "bytes_mapped_resident", "log_syncs",
        "code_bytes_per_vector", "bytes_per_vector_on_disk", "bytes_per_vector_resident", "log_dropped_bytes",
        "log_dropped_records", "deleted")]


class _BackupReport(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("files", ctypes.c_uint64), ("bytes_copied", ctypes.c_uint64),
                ("bytes_linked", ctypes.c_uint64)]


def _load():
    lib = ctypes.CDLL(str(library_path()))
    p, size, u32, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64
    err = ctypes.POINTER(ctypes.c_void_p)
    signatures = {
        "omen_abi_version": (u32, []),
        "omen_version": (ctypes.c_char_p, []),
        "omen_status_name": (ctypes.c_char_p, [u32]),
        "omen_error_code": (u32, [p]),
        "omen_error_message": (ctypes.c_char_p, [p]),
        "omen_error_free": (None, [p]),
        "omen_options_default": (u32, [ctypes.POINTER(_Options), size, err]),
        "omen_index_create": (u32, [ctypes.POINTER(_Options), ctypes.POINTER(p), err]),
        "omen_index_open": (u32, [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(p), err]),
        "omen_index_flush": (u32, [p, err]),
        "omen_index_close": (u32, [p, err]),
        "omen_index_stats": (u32, [p, ctypes.POINTER(_Stats), err]),
        "omen_index_insert_batch": (u32, [p, p, p, size, size, err]),
        "omen_index_upsert": (u32, [p, p, p, size, size, err]),
        "omen_index_delete": (u32, [p, p, size, ctypes.POINTER(size), err]),
        "omen_index_get": (u32, [p, p, size, p, size, p, err]),
        "omen_index_compact": (u32, [p, err]),
        "omen_index_backup_incremental": (u32, [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_BackupReport),
                                                err]),
        "omen_index_search": (u32, [p, p, size, size, size, p, p, ctypes.POINTER(size), err]),
        "omen_index_search_batch": (u32, [p, p, size, size, size, size, size, p, p, p, err]),
        "omen_index_search_batch_with": (u32, [p, p, size, size, size, ctypes.POINTER(_SearchParams), p, p, p, err]),
        "omen_index_search_range_with": (u32, [p, p, size, ctypes.c_float, size, ctypes.POINTER(_SearchParams), p, p,
                                               ctypes.POINTER(size), err]),
        "omen_index_len": (size, [p]),
        "omen_index_dim": (size, [p]),
        "omen_index_segment_count": (size, [p]),
        "omen_index_recovery_notice": (ctypes.c_char_p, [p]),
        "omen_index_free": (None, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    if lib.omen_abi_version() != 1:
        raise OSError(f"{library_path()} has ABI {lib.omen_abi_version()}, this binding needs 1")
    return lib


_lib = _load()


def version():
    return _lib.omen_version().decode()


def _call(function, *args):
    error = ctypes.c_void_p()
    status = function(*args, ctypes.byref(error))
    if status != 0:
        _raise(status, error)


def _pointer(array):
    """The address of `array`'s data, for a `void *` argument: the caller keeps `array` alive
    through the call, as a plain int holds no reference to it. (`ctypes.data_as` would, at three
    times the cost: 3 against 1 µs, paid per array on every call.)"""
    return array.ctypes.data


_local = threading.local()


def _single_search_buffers(k):
    """Per-thread output buffers for `Index.search`, reused across calls: taking the address of
    fresh numpy arrays costs more than the search itself on small indexes."""
    buffers = getattr(_local, "search", None)
    if buffers is None or buffers[0] < k:
        size = max(k, 16)
        ids, distances = np.empty(size, np.uint64), np.empty(size, np.float32)
        count, error = ctypes.c_size_t(), ctypes.c_void_p()
        buffers = (size, ids, distances, ids.ctypes.data, distances.ctypes.data, count, ctypes.byref(count),
                   error, ctypes.byref(error))
        _local.search = buffers
    return buffers


def _raise(status, error):
    message = _lib.omen_error_message(error).decode(errors="replace")
    _lib.omen_error_free(error)
    name = _lib.omen_status_name(status).decode()
    raise _ERRORS.get(status, InvalidInputError if status < 100 else Error)(status, name, message)


class _Handle:
    """The C handle and the calls running on it. Every call releases the GIL, so without this a
    `close()` in one thread could free the index under a search in another: `close()` refuses new
    calls at once and frees the index when the running ones are done. (list.append and list.pop
    are atomic under the GIL, which keeps this cheaper than a lock on every call.)"""

    def __init__(self, pointer):
        self.pointer, self.calls = pointer, []

    def __enter__(self):
        self.calls.append(None)
        pointer = self.pointer  # read after registering: close() either waits for us or we see None
        if pointer is None:
            self.calls.pop()
            raise ClosedError(2, "OMEN_STATUS_INVALID_ARGUMENT", "the index is closed")
        return pointer

    def __exit__(self, *exc):
        self.calls.pop()

    def close(self):
        """Closes once the running calls return; raises what closing a database reported."""
        pointer, self.pointer = self.pointer, None
        while self.calls:
            time.sleep(0.001)
        if pointer is not None:
            _call(_lib.omen_index_close, pointer)


def _options(dim, metric, m, ef_construction, ef_search, segment_capacity, threads, seed, quantization, oversample,
             compact_threshold):
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    if quantization not in _QUANTIZATION:
        raise ValueError(f"quantization must be one of {sorted(_QUANTIZATION)}, got {quantization!r}")
    options = _Options()
    _call(_lib.omen_options_default, ctypes.byref(options), ctypes.sizeof(options))
    options.dim, options.metric, options.m = _size(dim, "dim"), _METRICS[metric], _size(m, "m")
    options.quantization, options.oversample = _QUANTIZATION[quantization], _size(oversample, "oversample")
    if isinstance(compact_threshold, bool) or not isinstance(compact_threshold, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", f"compact_threshold must be a number, got {compact_threshold!r}")
    options.compact_threshold = float(compact_threshold)
    options.ef_construction, options.threads = _size(ef_construction, "ef_construction"), _size(threads, "threads")
    if ef_search is not None:
        options.ef_search = _size(ef_search, "ef_search")
    if segment_capacity is not None:
        options.segment_capacity = _size(segment_capacity, "segment_capacity")
    if seed is not None:
        options.seed = _size(seed, "seed")
    return options


def _size(value, name):
    """`value` as a non-negative int for a size_t argument: Python and numpy integers only (a
    float would be truncated, a negative number wrap, a bool is no count)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", f"{name} must be an int, got {value!r}")
    if not 0 <= int(value) < 2**64:
        raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", f"{name} must be in 0..2**64, got {value!r}")
    return int(value)


def _ids(ids):
    """`ids` as a uint64 array, refusing what a conversion would change: floats (truncated) and
    negative numbers (wrapped)."""
    array = np.asarray(ids)
    # uint64 needs no check (the common case, and `np.issubdtype` costs 0.5 µs a call).
    if array.dtype != np.uint64:
        if array.size == 0:
            return np.zeros(0, np.uint64)
        if array.dtype.kind not in "iu":  # bool is kind "b"
            raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", f"ids must be integers, got dtype {array.dtype}")
        if array.dtype.kind == "i" and (array < 0).any():
            raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", "ids must not be negative")
    return np.ascontiguousarray(array, dtype=np.uint64).reshape(-1)


def _path(path):
    """A database path as bytes for C, refusing a NUL byte (C would stop reading there)."""
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise InvalidArgumentError(2, "OMEN_STATUS_INVALID_ARGUMENT", f"path contains a NUL byte: {path!r}")
    return encoded


class Index:
    """A segmented HNSW index, in memory (`Index(...)`) or in a database directory
    (`Index.open(...)`). Safe to share between threads, `close()` included."""

    def __init__(self, dim, metric="l2", m=16, ef_construction=100, ef_search=None, segment_capacity=None,
                 threads=0, seed=None, quantization="none", oversample=0, compact_threshold=0.2):
        """quantization: "none", "binary" (1 bit a dimension), "4bit" or "8bit": the
        codes the graph walk reads; the best max(k * oversample, ef / 2) candidates are re-scored
        with the exact vectors (oversample 0: the code's default, binary 20, 4bit 2, 8bit 2).
        4bit is the fastest where neighbours lie far apart next to the whole set's spread
        (sentence embeddings); where vectors crowd into many tight clusters, 4bit and binary are
        slower than "none" and 8bit still gains (README: "Tight clusters"). Binary's error shrinks
        as 1/sqrt(dim): wide vectors need less than its default oversample (5 reached recall 0.95
        on 384-d sentence embeddings, 0.987 at 1536-d).
        compact_threshold: a background thread compacts once more than this fraction of some
        segment's vectors is deleted (0: only when compact() is called)."""
        options = _options(dim, metric, m, ef_construction, ef_search, segment_capacity, threads, seed,
                           quantization, oversample, compact_threshold)
        handle = ctypes.c_void_p()
        _call(_lib.omen_index_create, ctypes.byref(options), ctypes.byref(handle))
        self._adopt(handle)

    @classmethod
    def open(cls, path, dim=0, metric="l2", m=16, ef_construction=100, create=True, read_only=False,
             durability="batch", sync_interval_ms=1000, verify=True, ef_search=None, segment_capacity=None,
             threads=0, seed=None, quantization="none", oversample=0, log_recovery="drop_tail",
             compact_threshold=0.2):
        """Opens the database in directory `path`, creating it when `create` and it holds none.

        dim=0 accepts the stored dimension; a nonzero dim and the metric must match the
        database's. m, ef_construction, segment_capacity and seed are fixed when it is created.
        durability: "batch" (fsync before each insert returns; the default), "interval" (in the
        background every sync_interval_ms) or "never" (at checkpoints only); a process crash
        loses nothing in any mode. verify=False skips the checksums of vectors and links, for
        opening in milliseconds. One process at a time may open a database for writing
        (LockedError otherwise); read_only=True opens alongside it.

        log_recovery: what to do when the log's last record is torn or damaged, as a crash during
        its write leaves it: "drop_tail" (the default) moves its bytes to a `.damaged` file beside
        the log and reports them (`recovery_notice`, stats `log_dropped_bytes`/`_records`);
        "strict" raises CorruptError and changes nothing. compact_threshold as for Index()."""
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be one of {sorted(_DURABILITY)}, got {durability!r}")
        if log_recovery not in _LOG_RECOVERY:
            raise ValueError(f"log_recovery must be one of {sorted(_LOG_RECOVERY)}, got {log_recovery!r}")
        options = _options(dim, metric, m, ef_construction, ef_search, segment_capacity, threads, seed,
                           quantization, oversample, compact_threshold)
        options.create, options.read_only, options.verify = bool(create), bool(read_only), bool(verify)
        options.durability, options.sync_interval_ms = _DURABILITY[durability], sync_interval_ms
        options.log_recovery = _LOG_RECOVERY[log_recovery]
        handle = ctypes.c_void_p()
        _call(_lib.omen_index_open, _path(path), ctypes.byref(options), ctypes.byref(handle))
        index = cls.__new__(cls)
        index._adopt(handle)
        return index

    def _adopt(self, handle):
        self._handle = _Handle(handle)
        self.dim = _lib.omen_index_dim(handle)
        notice = _lib.omen_index_recovery_notice(handle)
        #: What opening dropped from the end of the write-ahead log, in words; None when nothing.
        self.recovery_notice = notice.decode(errors="replace") if notice is not None else None

    def close(self):
        """Closes the index once calls running in other threads return (a database is
        checkpointed first; a failure raises IoError, and nothing acknowledged is lost). Later
        calls raise ClosedError. Idempotent."""
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()

    def __del__(self):
        try:
            self.close()
        except Error:
            pass  # nowhere to report it; the write-ahead log still holds everything

    def flush(self):
        """Checkpoints a database (segment files, growing snapshot, empty log), so the next
        open replays nothing. A no-op in memory."""
        with self._handle as index:
            _call(_lib.omen_index_flush, index)

    def stats(self):
        """A dict: segments, vectors, bytes_on_disk, bytes_heap, bytes_mapped, bytes_mapped_resident,
        log_syncs, code_bytes_per_vector, bytes_per_vector_on_disk, bytes_per_vector_resident,
        log_dropped_bytes, log_dropped_records (what opening dropped from the end of the log),
        deleted (vectors deleted but not yet compacted away), and live (= vectors: the ones not
        deleted)."""
        stats = _Stats(size=ctypes.sizeof(_Stats))
        with self._handle as index:
            _call(_lib.omen_index_stats, index, ctypes.byref(stats))
        result = {name: getattr(stats, name) for name, _ in _Stats._fields_[1:]}
        result["live"] = result["vectors"]
        return result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        with self._handle as index:
            return _lib.omen_index_len(index)

    @property
    def segment_count(self):
        with self._handle as index:
            return _lib.omen_index_segment_count(index)

    def _matrix(self, vectors):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2:
            raise ValueError(f"expected a 2-d array of vectors, got shape {vectors.shape}")
        return vectors

    def insert_batch(self, ids, vectors):
        """Inserts rows of `vectors` (float32[n, dim]) under `ids` (uint64[n]); all or nothing.
        An id already present raises DuplicateIdError (`upsert` replaces it instead)."""
        self._write(_lib.omen_index_insert_batch, ids, vectors)

    def upsert(self, ids, vectors):
        """Inserts rows of `vectors` under `ids`, replacing the vector of any id already present
        (its old vector is never returned again); one atomic, durable change. An id repeated
        within `ids` raises DuplicateIdError."""
        self._write(_lib.omen_index_upsert, ids, vectors)

    def _write(self, function, ids, vectors):
        ids = _ids(ids)
        vectors = self._matrix(vectors)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        with self._handle as index:
            _call(function, index, _pointer(ids), _pointer(vectors), len(ids), vectors.shape[1])

    def delete(self, ids):
        """Deletes every listed id that is present and returns how many were (absent ids are no
        error; an id listed twice raises DuplicateIdError and deletes nothing). Durable before it
        returns; the space comes back with `compact()`."""
        ids = _ids(ids)
        removed = ctypes.c_size_t()
        with self._handle as index:
            _call(_lib.omen_index_delete, index, _pointer(ids), len(ids), ctypes.byref(removed))
        return removed.value

    def get(self, ids):
        """The stored vectors of `ids` (normalised ones under cosine): (float32[n, dim], bool[n]
        found); an absent id's row is zero."""
        ids = _ids(ids)
        vectors = np.zeros((len(ids), self.dim), dtype=np.float32)
        found = np.zeros(len(ids), dtype=np.uint8)
        with self._handle as index:
            _call(_lib.omen_index_get, index, _pointer(ids), len(ids), _pointer(vectors), self.dim, _pointer(found))
        return vectors, found.astype(bool)

    def compact(self):
        """Rewrites segments holding deleted vectors without them (and merges small ones), so
        memory and disk come back, and rebuilds as one batch segments of 262,144 vectors or more
        filled in small batches (faster to search); returns when done. Searches keep running
        meanwhile."""
        with self._handle as index:
            _call(_lib.omen_index_compact, index)

    def backup(self, dest, previous=None):
        """Writes a complete database directory at dest (which must not exist, or be empty)
        holding exactly the batches logged at one moment, while inserts and searches go on in
        other threads. With previous (an earlier backup), the files it holds unchanged are
        hard-linked instead of copied. Returns {"files", "bytes_copied", "bytes_linked"}."""
        report = _BackupReport(size=ctypes.sizeof(_BackupReport))
        previous = _path(previous) if previous is not None else None
        with self._handle as index:
            _call(_lib.omen_index_backup_incremental, index, _path(dest), previous, ctypes.byref(report))
        return {"files": report.files, "bytes_copied": report.bytes_copied, "bytes_linked": report.bytes_linked}

    def insert(self, id, vector):
        self.insert_batch([id], vector)

    def search(self, query, k=10, ef=0, oversample=0, filter=None, plan="auto"):
        """The k nearest neighbours of one query: (uint64 ids, float32 distances), closest first.
        oversample, filter and plan as in search_batch."""
        if oversample or filter is not None or plan != "auto":
            ids, distances = self.search_batch(np.reshape(query, (1, -1)), k, ef, 1, oversample, filter, plan)
            found = int(np.count_nonzero(ids[0] != 2**64 - 1))
            return ids[0][:found].copy(), distances[0][:found].copy()
        query = np.ascontiguousarray(query, dtype=np.float32)
        if query.ndim != 1:
            query = query.reshape(-1)
        k, ef = _size(k, "k"), _size(ef, "ef")
        if k > 16:
            k = max(1, min(k, len(self)))  # no search returns more hits than the index holds
        _, ids, distances, ids_at, distances_at, count, count_ref, error, error_ref = _single_search_buffers(k)
        # A query's bytes are passed directly: cheaper than taking a numpy array's address.
        with self._handle as index:
            status = _lib.omen_index_search(index, query.tobytes(), query.size, k, ef, ids_at, distances_at, count_ref,
                                            error_ref)
        if status != 0:
            _raise(status, error)
        n = count.value
        return ids[:n].copy(), distances[:n].copy()

    def search_range(self, query, radius, max_results=1000, ef=0, filter=None, plan="auto"):
        """Every vector within `radius` of `query` (a distance as searches report it: squared
        L2, 1 - cosine, or the negated inner product), closest first, at most `max_results` (the
        closest): (uint64 ids, float32 distances). The walk crosses gaps between them with a
        beam of `ef` (0 = the index default); plan="exact" finds all of them."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        max_results = _size(max_results, "max_results")
        # Buffers for no more hits than the index holds (and at least one slot, so that a
        # max_results of 0 reaches the library's check).
        slots = min(max_results, max(len(self), 1))
        ids, distances = np.empty(slots, np.uint64), np.empty(slots, np.float32)
        count = ctypes.c_size_t()
        call = _Call(ef=ef, filter=filter, plan=plan)
        with self._handle as index:
            call.run(_lib.omen_index_search_range_with, index, _pointer(query), query.size, float(radius), slots,
                     ctypes.byref(call.params), _pointer(ids), _pointer(distances), ctypes.byref(count))
        return ids[:count.value].copy(), distances[:count.value].copy()

    def search_batch(self, queries, k=10, ef=0, threads=0, oversample=0, filter=None, plan="auto"):
        """Searches every row of `queries`: (uint64[q, k] ids, float32[q, k] distances). Missing
        hits (fewer than k vectors, or than pass the filter) have id 2**64-1 and distance inf.
        threads: 0 = the index's threads, 1 = this thread. oversample: with quantization,
        candidates re-scored per result (0 = the index's default). filter: a sequence of allowed
        ids, a predicate over ids, or a Filter with both; one filter for the whole batch. plan:
        "auto" (the planner chooses per segment), "exact" (brute force) or "graph" (the walk
        alone)."""
        queries = self._matrix(queries)
        k = _size(k, "k")
        call = _Call(ef, oversample, threads, filter, plan)
        if k > 16:
            k = max(1, min(k, len(self)))  # no query returns more hits than the index holds
        n = len(queries)
        ids, distances = np.empty((n, k), np.uint64), np.empty((n, k), np.float32)
        counts = np.empty(n, np.uintp)
        with self._handle as index:
            call.run(_lib.omen_index_search_batch_with, index, _pointer(queries), n, queries.shape[1], k,
                     ctypes.byref(call.params), _pointer(ids), _pointer(distances), _pointer(counts))
        return ids, distances
