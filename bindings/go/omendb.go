// Package omendb binds the omendb C library (embeddable vector search, segmented HNSW).
//
// An *Index may be used from many goroutines at once: searches run concurrently with each other
// and with inserts. Close waits for calls in flight, is idempotent, and a finalizer frees an
// index that was never closed. No Go pointer is kept by C: every slice is only read or written
// during the call that receives it.
package omendb

/*
#include <stdlib.h>
#include "omendb.h"

extern bool omenGoPredicate(uint64_t id, void *context);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Metric is how vectors are compared; smaller distances are closer for every metric.
type Metric uint32

const (
	L2           Metric = C.OMEN_METRIC_L2            // squared Euclidean distance
	Cosine       Metric = C.OMEN_METRIC_COSINE        // 1 - cosine similarity (vectors normalised on insert)
	InnerProduct Metric = C.OMEN_METRIC_INNER_PRODUCT // negated dot product
)

// Status is the library's omen_status code.
type Status uint32

const (
	StatusOK                Status = C.OMEN_STATUS_OK
	StatusNullArgument      Status = C.OMEN_STATUS_NULL_ARGUMENT
	StatusInvalidArgument   Status = C.OMEN_STATUS_INVALID_ARGUMENT
	StatusDimensionMismatch Status = C.OMEN_STATUS_DIMENSION_MISMATCH
	StatusNonFinite         Status = C.OMEN_STATUS_NON_FINITE
	StatusZeroVector        Status = C.OMEN_STATUS_ZERO_VECTOR
	StatusDuplicateID       Status = C.OMEN_STATUS_DUPLICATE_ID
	StatusIO                Status = C.OMEN_STATUS_IO
	StatusCorrupt           Status = C.OMEN_STATUS_CORRUPT
	StatusVersion           Status = C.OMEN_STATUS_VERSION
	StatusLocked            Status = C.OMEN_STATUS_LOCKED
	StatusReadOnly          Status = C.OMEN_STATUS_READ_ONLY
	StatusNotFound          Status = C.OMEN_STATUS_NOT_FOUND
	StatusResourceExhausted Status = C.OMEN_STATUS_RESOURCE_EXHAUSTED
	StatusPanic             Status = C.OMEN_STATUS_PANIC
)

func (s Status) String() string { return C.GoString(C.omen_status_name(C.uint32_t(s))) }

// Error is a failed call: its status and the library's message. errors.Is matches it against the
// sentinel of its status (ErrDimensionMismatch, ...).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "omendb: " + e.Status.String()
	}
	return fmt.Sprintf("omendb: %s: %s", e.Status, e.Message)
}

// Is reports whether target is the sentinel for e's status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is, one per status.
var (
	ErrNullArgument      = &Error{Status: StatusNullArgument}
	ErrInvalidArgument   = &Error{Status: StatusInvalidArgument}
	ErrDimensionMismatch = &Error{Status: StatusDimensionMismatch}
	ErrNonFinite         = &Error{Status: StatusNonFinite}
	ErrZeroVector        = &Error{Status: StatusZeroVector}
	ErrDuplicateID       = &Error{Status: StatusDuplicateID}
	ErrIO                = &Error{Status: StatusIO}
	ErrCorrupt           = &Error{Status: StatusCorrupt}
	ErrVersion           = &Error{Status: StatusVersion}
	ErrLocked            = &Error{Status: StatusLocked}
	ErrReadOnly          = &Error{Status: StatusReadOnly}
	ErrNotFound          = &Error{Status: StatusNotFound}
	ErrResourceExhausted = &Error{Status: StatusResourceExhausted}
	ErrPanic             = &Error{Status: StatusPanic}
	// ErrClosed is returned by every call on a closed index.
	ErrClosed = errors.New("omendb: index is closed")
)

// check turns a status and its error object into a Go error, freeing the object.
func check(status C.omen_status, err *C.omen_error) error {
	if status == C.OMEN_STATUS_OK {
		return nil
	}
	defer C.omen_error_free(err)
	return &Error{Status: Status(status), Message: C.GoString(C.omen_error_message(err))}
}

// Durability says when an acknowledged insert into a database reaches the disk. A crash of the
// process alone loses nothing in any mode; they differ on an OS crash or power loss.
type Durability uint32

const (
	EveryBatch Durability = C.OMEN_DURABILITY_EVERY_BATCH // fsync before InsertBatch returns (group commit)
	Interval   Durability = C.OMEN_DURABILITY_INTERVAL    // fsync in the background every SyncInterval
	Never      Durability = C.OMEN_DURABILITY_NEVER       // fsync at checkpoints only
)

// Quantization is the code the graph walk reads; the best candidates are re-scored exactly.
// Bits4 is the fastest where neighbours lie far apart next to the whole set's spread (sentence
// embeddings); where vectors crowd into many tight clusters, Bits4 and Binary are slower than
// None and Bits8 still gains (README: "Tight clusters"). Binary's error shrinks as 1/sqrt(dim):
// wide vectors need less than its default oversample (5 reached recall 0.95 on 384-d sentence
// embeddings, 0.987 at 1536-d).
type Quantization uint32

const (
	QuantizationNone   Quantization = C.OMEN_QUANTIZATION_NONE   // bfloat16 halves of the vectors
	QuantizationBinary Quantization = C.OMEN_QUANTIZATION_BINARY // 1 bit a dimension
	QuantizationBits4  Quantization = C.OMEN_QUANTIZATION_BITS4  // 4 bits a dimension
	QuantizationBits8  Quantization = C.OMEN_QUANTIZATION_BITS8  // 8 bits a dimension
)

// LogRecovery says what Open does with a write-ahead log whose last record is torn or damaged,
// as a crash during its write leaves it.
type LogRecovery uint32

const (
	// DropTail moves the tail's bytes to a .damaged file beside the log and reports them
	// (RecoveryNotice, Stats.LogDroppedBytes). The default.
	DropTail LogRecovery = C.OMEN_LOG_RECOVERY_DROP_TAIL
	// StrictLog refuses such a log with ErrCorrupt and changes nothing.
	StrictLog LogRecovery = C.OMEN_LOG_RECOVERY_STRICT
)

// Options configure an index; start from DefaultOptions. The fields after Seed apply to Open.
type Options struct {
	Dim             int
	Metric          Metric
	M               int    // links per node on upper layers (2*M on layer 0)
	EfConstruction  int    // beam width while building
	EfSearch        int    // beam width of searches that pass ef = 0
	SegmentCapacity int    // vectors per segment before it is sealed
	Threads         int    // build and batch-search threads; 0 = one per core
	Seed            uint64 // seeds the level draw (reproducible builds)
	Quantization    Quantization
	Oversample      int // quantized: candidates re-scored per result when a search passes 0; 0 = the code's default

	Create       bool          // create the database when the directory holds none (default true)
	ReadOnly     bool          // open without the write lock; inserts fail with ErrReadOnly
	NoVerify     bool          // skip the checksums of vectors and links: open in milliseconds
	Durability   Durability    // default EveryBatch
	SyncInterval time.Duration // for Interval (default 1s)
	LogRecovery  LogRecovery   // default DropTail

	// CompactThreshold: a background thread compacts once more than this fraction of some
	// segment's vectors is deleted; 0 = only when Compact is called. Default 0.2.
	CompactThreshold float64
}

// Stats is an index's segments, vectors and bytes on disk and in memory.
type Stats struct {
	Segments, Vectors                                        uint64
	BytesOnDisk, BytesHeap, BytesMapped, BytesMappedResident uint64
	LogSyncs                                                 uint64 // fsyncs of the write-ahead log since Open
	CodeBytesPerVector                                       uint64 // quantized code a vector carries
	BytesPerVectorOnDisk, BytesPerVectorResident             uint64
	LogDroppedBytes, LogDroppedRecords                       uint64 // dropped from the end of the log by Open
	Deleted                                                  uint64 // deleted vectors not yet compacted away (Vectors counts the live ones)
}

// DefaultOptions returns the library's defaults for the given dimension and metric.
func DefaultOptions(dim int, metric Metric) Options {
	var raw C.omen_options
	// Cannot fail: the pointer is valid and the size is this header's.
	_ = C.omen_options_default(&raw, C.size_t(unsafe.Sizeof(raw)), nil)
	return Options{
		Dim: dim, Metric: metric, M: int(raw.m), EfConstruction: int(raw.ef_construction),
		EfSearch: int(raw.ef_search), SegmentCapacity: int(raw.segment_capacity), Threads: int(raw.threads),
		Seed: uint64(raw.seed), Create: raw.create != 0, ReadOnly: raw.read_only != 0, NoVerify: raw.verify == 0,
		Durability: Durability(raw.durability), SyncInterval: time.Duration(raw.sync_interval_ms) * time.Millisecond,
		CompactThreshold: float64(raw.compact_threshold),
	}
}

func flag(b bool) C.uint32_t {
	if b {
		return 1
	}
	return 0
}

// raw converts opts to the C struct, refusing negative sizes.
func (opts Options) raw() (C.omen_options, error) {
	var raw C.omen_options
	_ = C.omen_options_default(&raw, C.size_t(unsafe.Sizeof(raw)), nil)
	for _, v := range []int{opts.Dim, opts.M, opts.EfConstruction, opts.EfSearch, opts.SegmentCapacity, opts.Threads} {
		if _, err := size(v); err != nil {
			return raw, err
		}
	}
	raw.dim, raw.metric, raw.m = C.size_t(opts.Dim), C.uint32_t(opts.Metric), C.size_t(opts.M)
	raw.ef_construction, raw.ef_search = C.size_t(opts.EfConstruction), C.size_t(opts.EfSearch)
	raw.segment_capacity, raw.threads, raw.seed = C.size_t(opts.SegmentCapacity), C.size_t(opts.Threads), C.uint64_t(opts.Seed)
	raw.create, raw.read_only, raw.verify = flag(opts.Create), flag(opts.ReadOnly), flag(!opts.NoVerify)
	raw.durability = C.uint32_t(opts.Durability)
	raw.log_recovery = C.uint32_t(opts.LogRecovery)
	raw.compact_threshold = C.double(opts.CompactThreshold)
	raw.quantization = C.uint32_t(opts.Quantization)
	if _, err := size(opts.Oversample); err != nil {
		return raw, err
	}
	raw.oversample = C.size_t(opts.Oversample)
	if opts.SyncInterval > 0 {
		ms := opts.SyncInterval.Milliseconds()
		if ms < 1 || ms > math.MaxUint32 {
			return raw, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("SyncInterval %v out of range", opts.SyncInterval)}
		}
		raw.sync_interval_ms = C.uint32_t(ms)
	}
	return raw, nil
}

// Result is one neighbour: the caller's id and its distance.
type Result struct {
	ID       uint64
	Distance float32
}

// Index is a segmented HNSW index, in memory (New) or in a database directory (Open).
type Index struct {
	mu  sync.RWMutex // read-held by calls, write-held by Close: no call runs on a freed handle
	ptr *C.omen_index
	dim int
}

func size(n int) (C.size_t, error) {
	if n < 0 {
		return 0, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("negative value %d", n)}
	}
	return C.size_t(n), nil
}

// New creates an empty in-memory index.
func New(opts Options) (*Index, error) {
	raw, err := opts.raw()
	if err != nil {
		return nil, err
	}
	var ptr *C.omen_index
	var cerr *C.omen_error
	if err := check(C.omen_index_create(&raw, &ptr, &cerr), cerr); err != nil {
		return nil, err
	}
	return adopt(ptr), nil
}

// Open opens the database in directory path, creating it when opts.Create is set and it holds
// none. opts.Dim may be 0 to accept the stored dimension; a nonzero Dim and the Metric must match
// the database's. M, EfConstruction, SegmentCapacity and Seed are fixed when it is created. One
// process at a time may open a database for writing (ErrLocked otherwise); ReadOnly opens
// alongside it.
func Open(path string, opts Options) (*Index, error) {
	raw, err := opts.raw()
	if err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.omen_index
	var cerr *C.omen_error
	if err := check(C.omen_index_open(cpath, &raw, &ptr, &cerr), cerr); err != nil {
		return nil, err
	}
	return adopt(ptr), nil
}

func adopt(ptr *C.omen_index) *Index {
	ix := &Index{ptr: ptr, dim: int(C.omen_index_dim(ptr))}
	runtime.SetFinalizer(ix, (*Index).Close)
	return ix
}

// Close closes the index, checkpointing a database first and returning what failed (nothing
// acknowledged is lost: the next Open replays the log). It waits for calls in flight and may be
// called more than once.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.ptr == nil {
		return nil
	}
	var cerr *C.omen_error
	err := check(C.omen_index_close(ix.ptr, &cerr), cerr)
	ix.ptr = nil
	runtime.SetFinalizer(ix, nil)
	return err
}

// Flush checkpoints a database (segment files, growing snapshot, empty log), so the next Open
// replays nothing. A no-op in memory.
func (ix *Index) Flush() error {
	ptr, err := ix.acquire()
	if err != nil {
		return err
	}
	defer ix.mu.RUnlock()
	var cerr *C.omen_error
	return check(C.omen_index_flush(ptr, &cerr), cerr)
}

// Stats reports segments, vectors and bytes on disk and in memory.
func (ix *Index) Stats() (Stats, error) {
	ptr, err := ix.acquire()
	if err != nil {
		return Stats{}, err
	}
	defer ix.mu.RUnlock()
	raw := C.omen_stats{size: C.size_t(unsafe.Sizeof(C.omen_stats{}))}
	var cerr *C.omen_error
	if err := check(C.omen_index_stats(ptr, &raw, &cerr), cerr); err != nil {
		return Stats{}, err
	}
	return Stats{
		Segments: uint64(raw.segments), Vectors: uint64(raw.vectors), BytesOnDisk: uint64(raw.bytes_on_disk),
		BytesHeap: uint64(raw.bytes_heap), BytesMapped: uint64(raw.bytes_mapped),
		BytesMappedResident: uint64(raw.bytes_mapped_resident), LogSyncs: uint64(raw.log_syncs),
		CodeBytesPerVector: uint64(raw.code_bytes_per_vector), BytesPerVectorOnDisk: uint64(raw.bytes_per_vector_on_disk),
		BytesPerVectorResident: uint64(raw.bytes_per_vector_resident),
		LogDroppedBytes:        uint64(raw.log_dropped_bytes), LogDroppedRecords: uint64(raw.log_dropped_records),
		Deleted: uint64(raw.deleted),
	}, nil
}

// RecoveryNotice says what Open dropped from the end of the write-ahead log (bytes, records,
// why, and the .damaged file they were moved to); "" when nothing was dropped.
func (ix *Index) RecoveryNotice() (string, error) {
	ptr, err := ix.acquire()
	if err != nil {
		return "", err
	}
	defer ix.mu.RUnlock()
	notice := C.omen_index_recovery_notice(ptr)
	if notice == nil {
		return "", nil
	}
	return C.GoString(notice), nil
}

// acquire read-locks the index for one call; the caller must call ix.mu.RUnlock.
func (ix *Index) acquire() (*C.omen_index, error) {
	ix.mu.RLock()
	if ix.ptr == nil {
		ix.mu.RUnlock()
		return nil, ErrClosed
	}
	return ix.ptr, nil
}

// Dim is the index dimension.
func (ix *Index) Dim() int { return ix.dim }

// Len is the number of vectors (0 once closed).
func (ix *Index) Len() int {
	ptr, err := ix.acquire()
	if err != nil {
		return 0
	}
	defer ix.mu.RUnlock()
	return int(C.omen_index_len(ptr))
}

func floatsPtr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func idsPtr(s []uint64) *C.uint64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint64_t)(unsafe.Pointer(&s[0]))
}

// InsertBatch inserts len(ids) vectors stored row-major in vectors (len(ids)*Dim floats); all or
// nothing.
func (ix *Index) InsertBatch(ids []uint64, vectors []float32) error {
	return ix.write(ids, vectors, false)
}

// Upsert inserts like InsertBatch, but an id already present has its vector replaced (the old
// one is never returned again); one atomic, durable change. An id repeated in ids is ErrDuplicateID.
func (ix *Index) Upsert(ids []uint64, vectors []float32) error {
	return ix.write(ids, vectors, true)
}

func (ix *Index) write(ids []uint64, vectors []float32, upsert bool) error {
	ptr, err := ix.acquire()
	if err != nil {
		return err
	}
	defer ix.mu.RUnlock()
	dim := ix.dim
	if len(ids) > 0 {
		if len(vectors)%len(ids) != 0 {
			return &Error{Status: StatusDimensionMismatch, Message: fmt.Sprintf("%d floats for %d ids", len(vectors), len(ids))}
		}
		dim = len(vectors) / len(ids)
	} else if len(vectors) != 0 {
		return &Error{Status: StatusDimensionMismatch, Message: fmt.Sprintf("%d floats for no ids", len(vectors))}
	}
	var cerr *C.omen_error
	count, cdim := C.size_t(len(ids)), C.size_t(dim)
	if upsert {
		return check(C.omen_index_upsert(ptr, idsPtr(ids), floatsPtr(vectors), count, cdim, &cerr), cerr)
	}
	return check(C.omen_index_insert_batch(ptr, idsPtr(ids), floatsPtr(vectors), count, cdim, &cerr), cerr)
}

// Delete removes every listed id that is present and returns how many were; absent ids are no
// error, an id listed twice is ErrDuplicateID (and nothing is deleted). Durable before it returns;
// the space comes back with Compact.
func (ix *Index) Delete(ids []uint64) (int, error) {
	ptr, err := ix.acquire()
	if err != nil {
		return 0, err
	}
	defer ix.mu.RUnlock()
	var removed C.size_t
	var cerr *C.omen_error
	if err := check(C.omen_index_delete(ptr, idsPtr(ids), C.size_t(len(ids)), &removed, &cerr), cerr); err != nil {
		return 0, err
	}
	return int(removed), nil
}

// Get returns the stored vectors of ids (normalised ones under Cosine), Dim floats per id, and
// which were found; an absent id's row is zero.
func (ix *Index) Get(ids []uint64) ([]float32, []bool, error) {
	ptr, err := ix.acquire()
	if err != nil {
		return nil, nil, err
	}
	defer ix.mu.RUnlock()
	vectors := make([]float32, len(ids)*ix.dim)
	found := make([]uint8, len(ids))
	var foundPtr *C.uint8_t
	if len(found) > 0 {
		foundPtr = (*C.uint8_t)(unsafe.Pointer(&found[0]))
	}
	var cerr *C.omen_error
	status := C.omen_index_get(ptr, idsPtr(ids), C.size_t(len(ids)), floatsPtr(vectors), C.size_t(ix.dim), foundPtr, &cerr)
	if err := check(status, cerr); err != nil {
		return nil, nil, err
	}
	flags := make([]bool, len(ids))
	for i, f := range found {
		flags[i] = f != 0
	}
	return vectors, flags, nil
}

// Compact rewrites the segments holding deleted vectors without them (and merges small ones),
// so memory and disk come back, and rebuilds as one batch segments of 262,144 vectors or more
// filled in small batches (faster to search); searches keep running meanwhile.
func (ix *Index) Compact() error {
	ptr, err := ix.acquire()
	if err != nil {
		return err
	}
	defer ix.mu.RUnlock()
	var cerr *C.omen_error
	return check(C.omen_index_compact(ptr, &cerr), cerr)
}

// BackupReport says what a backup wrote.
type BackupReport struct {
	Files       uint64 // files in the backup, the manifest included
	BytesCopied uint64 // bytes copied from the database
	BytesLinked uint64 // bytes of unchanged files hard-linked from the earlier backup
}

// Backup writes a complete database directory at dest (which must not exist, or be empty)
// holding exactly the batches logged at one moment, while inserts and searches continue. With
// previous set to an earlier backup, the files it holds unchanged are hard-linked instead of
// copied (an incremental backup); "" makes a full one. See omen_index_backup_incremental.
func (ix *Index) Backup(dest, previous string) (BackupReport, error) {
	ptr, err := ix.acquire()
	if err != nil {
		return BackupReport{}, err
	}
	defer ix.mu.RUnlock()
	cdest := C.CString(dest)
	defer C.free(unsafe.Pointer(cdest))
	var cprevious *C.char
	if previous != "" {
		cprevious = C.CString(previous)
		defer C.free(unsafe.Pointer(cprevious))
	}
	report := C.omen_backup_report{size: C.size_t(unsafe.Sizeof(C.omen_backup_report{}))}
	var cerr *C.omen_error
	if err := check(C.omen_index_backup_incremental(ptr, cdest, cprevious, &report, &cerr), cerr); err != nil {
		return BackupReport{}, err
	}
	return BackupReport{uint64(report.files), uint64(report.bytes_copied), uint64(report.bytes_linked)}, nil
}

// Search returns the k nearest neighbours of query, closest first; ef 0 uses the default.
func (ix *Index) Search(query []float32, k, ef int) ([]Result, error) {
	results, err := ix.SearchBatchN(query, 1, k, ef, 1)
	if err != nil {
		return nil, err
	}
	return results[0], nil
}

// SearchBatch searches every row of queries (Dim floats each). threads: 1 = this goroutine's
// thread, 0 = the index's threads.
func (ix *Index) SearchBatch(queries []float32, k, ef, threads int) ([][]Result, error) {
	if ix.dim == 0 || len(queries)%ix.dim != 0 {
		return nil, &Error{Status: StatusDimensionMismatch, Message: fmt.Sprintf("%d floats are not rows of %d", len(queries), ix.dim)}
	}
	return ix.SearchBatchN(queries, len(queries)/ix.dim, k, ef, threads)
}

// SearchBatchN searches n queries of len(queries)/n floats each (the library checks the
// dimension).
func (ix *Index) SearchBatchN(queries []float32, n, k, ef, threads int) ([][]Result, error) {
	return ix.SearchBatchWith(queries, n, k, SearchParams{Ef: ef, Threads: threads})
}

// Plan is how a search covers each segment.
type Plan int

const (
	// PlanAuto scans a segment exactly when few of its vectors may be returned, else walks its
	// graph (turning to a scan once the walk has visited more vectors than may be returned).
	PlanAuto Plan = C.OMEN_SEARCH_PLAN_AUTO
	// PlanExact scans every segment: every result is a true nearest neighbour.
	PlanExact Plan = C.OMEN_SEARCH_PLAN_EXACT
	// PlanGraph always walks, never scans (to measure the walk alone).
	PlanGraph Plan = C.OMEN_SEARCH_PLAN_GRAPH
)

// SearchParams are per-call search settings. With a filter (Allow, Predicate, or both: an id
// must pass both) a search returns only the live ids that pass, min(k, their number) of them.
type SearchParams struct {
	Ef         int // beam width; 0 = Options.EfSearch
	Oversample int // quantized indexes: candidates re-scored per result; 0 = Options.Oversample
	Threads    int // 1 = this goroutine's thread, 0 = the index's threads
	// Allow, when non-nil, lists the ids a search may return (any order, repeats allowed);
	// an empty non-nil slice allows nothing.
	Allow []uint64
	// Predicate, when non-nil, accepts or refuses ids. The library calls it from its own
	// threads, possibly at once, during the call only; it must not call back into the index.
	// A panic in it is raised again by the search once the call returns.
	Predicate func(id uint64) bool
	Plan      Plan
}

// callParams holds p as an omen_search_params in C memory (with a copy of the allow-list: C
// may not read Go memory that holds Go pointers) until release.
type callParams struct {
	c      *C.omen_search_params
	allow  *C.uint64_t
	handle *C.uintptr_t
	filter *filterCall
}

func newCallParams(p SearchParams) (*callParams, error) {
	var fields [3]C.size_t
	for i, value := range []int{p.Ef, p.Oversample, p.Threads} {
		c, err := size(value)
		if err != nil {
			return nil, err
		}
		fields[i] = c
	}
	call := &callParams{c: (*C.omen_search_params)(C.calloc(1, C.size_t(unsafe.Sizeof(C.omen_search_params{}))))}
	call.c.size = C.size_t(unsafe.Sizeof(*call.c))
	call.c.ef, call.c.oversample, call.c.threads = fields[0], fields[1], fields[2]
	call.c.plan = C.uint32_t(p.Plan)
	if p.Allow != nil {
		// One slot at least: a non-NULL pointer with a zero count allows nothing.
		call.allow = (*C.uint64_t)(C.malloc(C.size_t(max(len(p.Allow), 1) * 8)))
		copy(unsafe.Slice((*uint64)(unsafe.Pointer(call.allow)), len(p.Allow)), p.Allow)
		call.c.allow_ids, call.c.allow_count = call.allow, C.size_t(len(p.Allow))
	}
	if p.Predicate != nil {
		call.filter = &filterCall{accepts: p.Predicate}
		call.handle = (*C.uintptr_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))
		*call.handle = C.uintptr_t(cgo.NewHandle(call.filter))
		call.c.predicate = C.omen_predicate(C.omenGoPredicate)
		call.c.predicate_context = unsafe.Pointer(call.handle)
	}
	return call, nil
}

// release frees the C memory and panics again with what the predicate panicked with.
func (c *callParams) release() {
	C.free(unsafe.Pointer(c.allow))
	if c.handle != nil {
		cgo.Handle(*c.handle).Delete()
		C.free(unsafe.Pointer(c.handle))
	}
	C.free(unsafe.Pointer(c.c))
	if c.filter != nil && c.filter.panicked != nil {
		panic(c.filter.panicked)
	}
}

// SearchWith finds the k nearest neighbours of one query with every per-call setting.
func (ix *Index) SearchWith(query []float32, k int, p SearchParams) ([]Result, error) {
	p.Threads = 1
	results, err := ix.SearchBatchWith(query, 1, k, p)
	if err != nil {
		return nil, err
	}
	return results[0], nil
}

// SearchRange finds every vector within radius of query (a distance as searches report it:
// squared L2, 1 - cosine, or the negated inner product), closest first, at most maxResults (the
// closest). p.Ef is how many vectors outside the radius the walk keeps in view to cross gaps;
// p.Plan = PlanExact finds all of them. Oversample and Threads are ignored.
func (ix *Index) SearchRange(query []float32, radius float32, maxResults int, p SearchParams) ([]Result, error) {
	limit, err := size(maxResults)
	if err != nil {
		return nil, err
	}
	call, err := newCallParams(p)
	if err != nil {
		return nil, err
	}
	defer call.release()
	ptr, err := ix.acquire()
	if err != nil {
		return nil, err
	}
	defer ix.mu.RUnlock()
	// No more slots than the index holds (one at least, so that 0 reaches the library's check).
	if held := max(int(C.omen_index_len(ptr)), 1); maxResults > held {
		limit = C.size_t(held)
	}
	ids := make([]uint64, max(int(limit), 1))
	distances := make([]float32, max(int(limit), 1))
	var count C.size_t
	var cerr *C.omen_error
	status := C.omen_index_search_range_with(ptr, floatsPtr(query), C.size_t(len(query)), C.float(radius), limit, call.c,
		idsPtr(ids), floatsPtr(distances), &count, &cerr)
	if err := check(status, cerr); err != nil {
		return nil, err
	}
	out := make([]Result, count)
	for i := range out {
		out[i] = Result{ID: ids[i], Distance: distances[i]}
	}
	return out, nil
}

// SearchBatchWith is SearchBatchN with every per-call setting; one filter for the whole batch.
func (ix *Index) SearchBatchWith(queries []float32, n, k int, p SearchParams) ([][]Result, error) {
	ck, err := size(k)
	if err != nil {
		return nil, err
	}
	call, err := newCallParams(p)
	if err != nil {
		return nil, err
	}
	defer call.release()
	empty := n == 0 && len(queries) == 0
	if !empty && (n <= 0 || len(queries)%n != 0) {
		return nil, &Error{Status: StatusDimensionMismatch, Message: fmt.Sprintf("%d floats are not %d queries", len(queries), n)}
	}
	ptr, err := ix.acquire()
	if err != nil {
		return nil, err
	}
	defer ix.mu.RUnlock()
	if empty {
		// No queries: a no-op, as in omen_index_search_batch (which still refuses k = 0).
		if k == 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "k must be at least 1"}
		}
		return [][]Result{}, nil
	}
	slots := n * k
	if k != 0 && slots/k != n {
		return nil, &Error{Status: StatusInvalidArgument, Message: "n * k overflows"}
	}
	if k > int(C.omen_index_len(ptr)) && k > 0 {
		// No query returns more hits than the index holds; don't allocate slots for them.
		slots = n * max(int(C.omen_index_len(ptr)), 1)
		ck = C.size_t(slots / n)
	}
	ids := make([]uint64, slots)
	distances := make([]float32, slots)
	counts := make([]C.size_t, n)
	var cerr *C.omen_error
	status := C.omen_index_search_batch_with(ptr, floatsPtr(queries), C.size_t(n), C.size_t(len(queries)/n), ck, call.c,
		idsPtr(ids), floatsPtr(distances), &counts[0], &cerr)
	if err := check(status, cerr); err != nil {
		return nil, err
	}
	width := int(ck)
	out := make([][]Result, n)
	for q := range out {
		out[q] = make([]Result, counts[q])
		for i := range out[q] {
			out[q][i] = Result{ID: ids[q*width+i], Distance: distances[q*width+i]}
		}
	}
	return out, nil
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}
