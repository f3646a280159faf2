package omendb

import (
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
)

func clustered(n, dim int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	centres := make([]float32, 20*dim)
	for i := range centres {
		centres[i] = rng.Float32()*2 - 1
	}
	out := make([]float32, n*dim)
	for i := 0; i < n; i++ {
		c := rng.Intn(20)
		for j := 0; j < dim; j++ {
			out[i*dim+j] = centres[c*dim+j] + float32(rng.NormFloat64()*0.25)
		}
	}
	return out
}

func newIndex(t *testing.T, dim int, metric Metric) *Index {
	t.Helper()
	ix, err := New(DefaultOptions(dim, metric))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func sequence(from, n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(from + i)
	}
	return ids
}

func TestRecallAgainstBruteForce(t *testing.T) {
	const n, dim, k = 3000, 24, 10
	data := clustered(n+50, dim, 1)
	base, queries := data[:n*dim], data[n*dim:]
	ix := newIndex(t, dim, L2)
	if err := ix.InsertBatch(sequence(0, n), base); err != nil {
		t.Fatal(err)
	}
	if ix.Len() != n {
		t.Fatalf("len %d", ix.Len())
	}
	batch, err := ix.SearchBatch(queries, k, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for q := 0; q < 50; q++ {
		query := queries[q*dim : (q+1)*dim]
		type scored struct {
			d  float64
			id uint64
		}
		all := make([]scored, n)
		for i := 0; i < n; i++ {
			var d float64
			for j := 0; j < dim; j++ {
				diff := float64(query[j] - base[i*dim+j])
				d += diff * diff
			}
			all[i] = scored{d, uint64(i)}
		}
		sort.Slice(all, func(a, b int) bool { return all[a].d < all[b].d })
		truth := map[uint64]bool{}
		for _, s := range all[:k] {
			truth[s.id] = true
		}
		for _, r := range batch[q] {
			if truth[r.ID] {
				hits++
			}
		}
		single, err := ix.Search(query, k, 0)
		if err != nil || len(single) != k || single[0] != batch[q][0] {
			t.Fatalf("single search differs from batch: %v %v", err, single)
		}
	}
	if recall := float64(hits) / (50 * k); recall < 0.95 {
		t.Fatalf("recall %.3f", recall)
	}
}

func TestBadInputIsAnErrorAndChangesNothing(t *testing.T) {
	ix := newIndex(t, 4, Cosine)
	if err := ix.InsertBatch([]uint64{1, 2}, []float32{1, 0, 0, 0, 0, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"wrong dimension", ix.InsertBatch([]uint64{3}, []float32{1, 2, 3}), ErrDimensionMismatch},
		{"NaN", ix.InsertBatch([]uint64{3}, []float32{1, float32(math.NaN()), 0, 0}), ErrNonFinite},
		{"zero under cosine", ix.InsertBatch([]uint64{3}, []float32{0, 0, 0, 0}), ErrZeroVector},
		{"duplicate", ix.InsertBatch([]uint64{1}, []float32{1, 1, 1, 1}), ErrDuplicateID},
		{"duplicate in batch", ix.InsertBatch([]uint64{5, 5}, []float32{1, 1, 1, 1, 1, 2, 1, 1}), ErrDuplicateID},
		{"k = 0", func() error { _, err := ix.Search([]float32{1, 0, 0, 0}, 0, 0); return err }(), ErrInvalidArgument},
		{"negative ef", func() error { _, err := ix.Search([]float32{1, 0, 0, 0}, 1, -1); return err }(), ErrInvalidArgument},
		{"query dimension", func() error { _, err := ix.Search([]float32{1, 0}, 1, 0); return err }(), ErrDimensionMismatch},
		{"nil ids", ix.InsertBatch(nil, []float32{1, 0, 0, 0}), ErrDimensionMismatch},
		{"nil query", func() error { _, err := ix.Search(nil, 1, 0); return err }(), ErrDimensionMismatch},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
		var typed *Error
		if !errors.As(c.err, &typed) || typed.Message == "" {
			t.Errorf("%s: no message in %v", c.name, c.err)
		}
	}
	if ix.Len() != 2 {
		t.Fatalf("len changed to %d", ix.Len())
	}
	if _, err := New(DefaultOptions(0, L2)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("dim 0: %v", err)
	}
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	ix, err := New(DefaultOptions(2, L2))
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix.Close()
	if err := ix.InsertBatch([]uint64{1}, []float32{1, 2}); !errors.Is(err, ErrClosed) {
		t.Fatalf("insert after close: %v", err)
	}
	if _, err := ix.Search([]float32{1, 2}, 1, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("search after close: %v", err)
	}
	if ix.Len() != 0 {
		t.Fatal("len after close")
	}
}

// searchUntilStopped starts `searchers` goroutines that search rows of data (dim floats each) one
// after another, 5 nearest each, until the returned stop is called; stop waits for them. A failed
// search, or a non-empty complaint from check about its results, fails the test.
func searchUntilStopped(t *testing.T, ix *Index, data []float32, dim, searchers int, check func([]Result) string) (stop func()) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	rows := len(data) / dim
	for g := 0; g < searchers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				q := (g*7919 + i*31) % rows
				results, err := ix.Search(data[q*dim:(q+1)*dim], 5, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if complaint := check(results); complaint != "" {
					t.Error(complaint)
					return
				}
			}
		}(g)
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// Single rows are linked on the calling thread (a batch of one never wakes the index's pool), so
// each goroutine's insert runs on whatever OS thread it holds at that call; several at once, with
// searches alongside, must lose nothing.
func TestGoroutinesInsertSingleRowsWhileOthersSearch(t *testing.T) {
	const dim, writers, rows = 8, 4, 300
	data := clustered(writers*rows, dim, 5)
	ix := newIndex(t, dim, L2)
	stop := searchUntilStopped(t, ix, data, dim, 2, func([]Result) string { return "" })
	var inserters sync.WaitGroup
	for w := 0; w < writers; w++ {
		inserters.Add(1)
		go func(w int) {
			defer inserters.Done()
			for r := w * rows; r < (w+1)*rows; r++ {
				if err := ix.InsertBatch([]uint64{uint64(r)}, data[r*dim:(r+1)*dim]); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	inserters.Wait()
	stop()
	if ix.Len() != writers*rows {
		t.Fatalf("len %d, want %d", ix.Len(), writers*rows)
	}
	got, found, err := ix.Get(sequence(0, writers*rows))
	if err != nil {
		t.Fatal(err)
	}
	for r := range found {
		if !found[r] || !reflect.DeepEqual(got[r*dim:(r+1)*dim], data[r*dim:(r+1)*dim]) {
			t.Fatalf("row %d: found %v, stored %v, inserted %v", r, found[r], got[r*dim:(r+1)*dim], data[r*dim:(r+1)*dim])
		}
	}
	// Every row finds itself: nothing was left unlinked.
	for r := 0; r < writers*rows; r++ {
		results, err := ix.Search(data[r*dim:(r+1)*dim], 1, 200)
		if err != nil {
			t.Fatal(err)
		}
		if results[0].Distance != 0 {
			t.Fatalf("row %d: nearest at distance %v", r, results[0].Distance)
		}
	}
}

func TestSearchesWhileOneGoroutineInserts(t *testing.T) {
	const dim, batches, batch = 16, 20, 200
	data := clustered(batches*batch, dim, 2)
	opts := DefaultOptions(dim, InnerProduct)
	opts.SegmentCapacity = 700
	ix, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	stop := searchUntilStopped(t, ix, data, dim, 4, func(results []Result) string {
		for j := 1; j < len(results); j++ {
			if results[j-1].Distance > results[j].Distance {
				return "unsorted results"
			}
		}
		return ""
	})
	for b := 0; b < batches; b++ {
		if err := ix.InsertBatch(sequence(b*batch, batch), data[b*batch*dim:(b+1)*batch*dim]); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if ix.Len() != batches*batch {
		t.Fatalf("len %d", ix.Len())
	}
}

func BenchmarkSearchOne(b *testing.B) {
	const dim = 128
	data := clustered(10000, dim, 3)
	ix, _ := New(DefaultOptions(dim, L2))
	defer ix.Close()
	if err := ix.InsertBatch(sequence(0, 10000), data); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := i % 10000
		if _, err := ix.Search(data[q*dim:(q+1)*dim], 10, 16); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearchTiny is the Go side of `make bench-overhead`: the same data, query, k and ef as
// benches/overhead/overhead.c, so the difference is the binding's cost per call.
func BenchmarkSearchTiny(b *testing.B) {
	const n, dim = 1000, 16
	vectors := make([]float32, n*dim)
	for i := range vectors {
		vectors[i] = float32(math.Sin(float64(i)))
	}
	ix, err := New(DefaultOptions(dim, L2))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	if err := ix.InsertBatch(sequence(0, n), vectors); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := i % n
		if _, err := ix.Search(vectors[q*dim:(q+1)*dim], 10, 10); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOpenReopenAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	opts := DefaultOptions(8, L2)
	opts.SegmentCapacity = 300
	opts.Create = false
	if _, err := Open(dir, opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open without create: %v", err)
	}
	opts.Create = true
	ix, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]uint64, 1000)
	vectors := make([]float32, 1000*8)
	for i := range ids {
		ids[i] = uint64(i + 1)
		for j := 0; j < 8; j++ {
			vectors[i*8+j] = float32((i*31+j*7)%97) / 97
		}
	}
	if err := ix.InsertBatch(ids, vectors); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	before, err := ix.Search(vectors[8:16], 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := ix.Stats()
	if err != nil || stats.Vectors != 1000 || stats.Segments != 4 || stats.BytesOnDisk == 0 {
		t.Fatalf("stats %+v, %v", stats, err)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("flush after close: %v", err)
	}

	ro := DefaultOptions(0, L2)
	ro.ReadOnly = true
	reader, err := Open(dir, ro)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if reader.Len() != 1000 || reader.Dim() != 8 {
		t.Fatalf("reopened len %d dim %d", reader.Len(), reader.Dim())
	}
	after, err := reader.Search(vectors[8:16], 5, 0)
	if err != nil || !reflect.DeepEqual(before, after) {
		t.Fatalf("results differ after reopen: %v vs %v (%v)", before, after, err)
	}
	if err := reader.InsertBatch([]uint64{5000}, vectors[:8]); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only insert: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ro); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged manifest: %v", err)
	}
}

func TestQuantizedSearch(t *testing.T) {
	opts := DefaultOptions(32, L2)
	opts.Quantization = QuantizationBits8
	ix, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	data := clustered(3000, 32, 9)
	ids := make([]uint64, 3000)
	for i := range ids {
		ids[i] = uint64(i)
	}
	if err := ix.InsertBatch(ids, data); err != nil {
		t.Fatal(err)
	}
	results, err := ix.SearchBatchWith(data[:32*10], 10, 1, SearchParams{Oversample: 8, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	for q, hits := range results {
		if len(hits) != 1 || hits[0].ID != uint64(q) || hits[0].Distance != 0 {
			t.Fatalf("query %d: %v", q, hits)
		}
	}
	// Binary codes serve the inner product too: every vector finds itself.
	opts = DefaultOptions(8, InnerProduct)
	opts.Quantization = QuantizationBinary
	ip, err := New(opts)
	if err != nil {
		t.Fatalf("binary with inner product: %v", err)
	}
	defer ip.Close()
	rows := make([]float32, 0, 64*8)
	ipIDs := make([]uint64, 64)
	for i := range ipIDs {
		ipIDs[i] = uint64(i)
		for d := 0; d < 8; d++ {
			rows = append(rows, float32((i*7+d*3)%11)-5)
		}
	}
	if err := ip.InsertBatch(ipIDs, rows); err != nil {
		t.Fatal(err)
	}
	hits, err := ip.Search(rows[:8], 1, 0)
	if err != nil || len(hits) != 1 {
		t.Fatalf("inner-product search: %v %v", hits, err)
	}
}

func TestSearchBatchWithoutQueriesIsANoOp(t *testing.T) {
	ix, err := New(DefaultOptions(4, L2))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	results, err := ix.SearchBatch(nil, 5, 0, 0)
	if err != nil || len(results) != 0 {
		t.Fatalf("no queries: %v, %v", results, err)
	}
	if _, err := ix.SearchBatch(nil, 0, 0, 0); err == nil {
		t.Fatal("k = 0 accepted")
	}
	if err := ix.InsertBatch([]uint64{1, ^uint64(0)}, make([]float32, 8)); err == nil {
		t.Fatal("OMEN_NO_ID accepted as an id")
	}
}

func TestADamagedLogTailIsMovedAsideOrRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	ix, err := Open(dir, DefaultOptions(4, L2))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for id := uint64(1); id <= 2; id++ {
		if err := ix.InsertBatch([]uint64{id}, []float32{float32(id), 0, 0, 1}); err != nil {
			t.Fatal(err)
		}
	}
	// A copy of the open database, as a crash leaves it, with the log's last byte flipped.
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(copyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var log string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Name(), "wal-") {
			log = e.Name()
			b[len(b)-1] ^= 0x10
		}
		if err := os.WriteFile(filepath.Join(copyDir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	strict := DefaultOptions(0, L2)
	strict.LogRecovery = StrictLog
	if _, err := Open(copyDir, strict); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("strict open of a damaged log: %v", err)
	}
	reopened, err := Open(copyDir, DefaultOptions(0, L2))
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	stats, err := reopened.Stats()
	if err != nil || reopened.Len() != 1 || stats.LogDroppedRecords != 1 || stats.LogDroppedBytes == 0 {
		t.Fatalf("len %d, stats %+v, %v", reopened.Len(), stats, err)
	}
	notice, err := reopened.RecoveryNotice()
	if err != nil || !strings.Contains(notice, log) {
		t.Fatalf("notice %q does not name %s (%v)", notice, log, err)
	}
	if notice, _ := ix.RecoveryNotice(); notice != "" {
		t.Fatalf("a clean open has a notice: %q", notice)
	}
}

func TestDeleteUpsertGetCompact(t *testing.T) {
	opts := DefaultOptions(4, L2)
	opts.CompactThreshold = 0 // the counts below are checked before Compact
	ix, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ids := []uint64{1, 2, 3, 4}
	vectors := []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}
	if err := ix.InsertBatch(ids, vectors); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Delete([]uint64{2, 2}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("delete of a repeated id: %v", err)
	}
	removed, err := ix.Delete([]uint64{2, 9})
	if err != nil || removed != 1 || ix.Len() != 3 {
		t.Fatalf("delete: %d, %v, len %d", removed, err, ix.Len())
	}
	if err := ix.Upsert([]uint64{3, 5}, []float32{0, 1, 0, 0, 0, 0, 0, 2}); err != nil {
		t.Fatal(err)
	}
	results, err := ix.Search([]float32{0, 1, 0, 0}, 1, 0)
	if err != nil || results[0].ID != 3 || results[0].Distance != 0 {
		t.Fatalf("upserted vector not found: %v, %v", results, err)
	}
	got, found, err := ix.Get([]uint64{3, 2})
	if err != nil || !reflect.DeepEqual(found, []bool{true, false}) || !reflect.DeepEqual(got, []float32{0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("get: %v %v %v", got, found, err)
	}
	stats, _ := ix.Stats()
	if stats.Vectors != 4 || stats.Deleted != 2 {
		t.Fatalf("stats before compaction: %+v", stats)
	}
	if err := ix.Compact(); err != nil {
		t.Fatal(err)
	}
	stats, _ = ix.Stats()
	if stats.Vectors != 4 || stats.Deleted != 0 {
		t.Fatalf("stats after compaction: %+v", stats)
	}
}

func TestBackupAndIncrementalBackup(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions(4, L2)
	opts.Create = true
	ix, err := Open(dir+"/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.InsertBatch([]uint64{1, 2}, []float32{1, 0, 0, 0, 0, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	full, err := ix.Backup(dir+"/full", "")
	if err != nil || full.BytesCopied == 0 || full.BytesLinked != 0 {
		t.Fatalf("full backup: %+v, %v", full, err)
	}
	if err := ix.InsertBatch([]uint64{3}, []float32{0, 0, 1, 0}); err != nil {
		t.Fatal(err)
	}
	next, err := ix.Backup(dir+"/next", dir+"/full")
	if err != nil || next.BytesLinked == 0 {
		t.Fatalf("incremental backup: %+v, %v", next, err)
	}
	if _, err := ix.Backup(dir+"/db", ""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("backup into the database itself: %v", err)
	}
	readOnly := DefaultOptions(0, L2)
	readOnly.ReadOnly = true
	copy, err := Open(dir+"/next", readOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer copy.Close()
	results, err := copy.Search([]float32{0, 0, 1, 0}, 1, 0)
	if err != nil || copy.Len() != 3 || results[0].ID != 3 {
		t.Fatalf("the backup holds %d vectors, search %v, %v", copy.Len(), results, err)
	}
}

func TestFilteredAndRangeSearch(t *testing.T) {
	const n, dim, k = 2000, 16, 10
	ix := newIndex(t, dim, L2)
	defer ix.Close()
	data := clustered(n, dim, 5)
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i) + 100
	}
	if err := ix.InsertBatch(ids, data); err != nil {
		t.Fatal(err)
	}
	query := data[:dim]
	var allow []uint64
	for _, id := range ids {
		if id%3 == 0 {
			allow = append(allow, id)
		}
	}
	byList, err := ix.SearchWith(query, k, SearchParams{Allow: allow, Plan: PlanExact})
	if err != nil || len(byList) != k {
		t.Fatalf("allow-list search: %v, %d hits", err, len(byList))
	}
	byPredicate, err := ix.SearchWith(query, k, SearchParams{Predicate: func(id uint64) bool { return id%3 == 0 }, Plan: PlanExact})
	if err != nil || len(byPredicate) != k {
		t.Fatalf("predicate search: %v, %d hits", err, len(byPredicate))
	}
	for i := range byList {
		if byList[i] != byPredicate[i] || byList[i].ID%3 != 0 {
			t.Fatalf("hit %d: list %v, predicate %v", i, byList[i], byPredicate[i])
		}
	}
	batch, err := ix.SearchBatchWith(data[:4*dim], 4, k, SearchParams{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range batch {
		for _, hit := range row {
			if hit.ID%3 != 0 {
				t.Fatalf("batch returned %d, not allowed", hit.ID)
			}
		}
	}
	if none, err := ix.SearchWith(query, k, SearchParams{Allow: []uint64{}}); err != nil || len(none) != 0 {
		t.Fatalf("empty allow-list: %v, %d hits", err, len(none))
	}
	func() {
		defer func() {
			if r := recover(); r != "no answer" {
				t.Fatalf("the predicate's panic came back as %v", r)
			}
		}()
		_, _ = ix.SearchWith(query, k, SearchParams{Predicate: func(uint64) bool { panic("no answer") }})
		t.Fatal("no panic")
	}()
	radius := byList[4].Distance
	near, err := ix.SearchRange(query, radius, 100, SearchParams{Allow: allow, Plan: PlanExact})
	if err != nil || len(near) != 5 {
		t.Fatalf("range: %v, %d hits", err, len(near))
	}
	if _, err := ix.SearchRange(query, float32(math.NaN()), 10, SearchParams{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NaN radius: %v", err)
	}
	if _, err := ix.SearchRange(query, 1, 0, SearchParams{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("max_results 0: %v", err)
	}
}
