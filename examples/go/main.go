// A complete Go program: create an index, insert a batch, search, close.
//
//	cd examples/go && go run .
package main

import (
	"errors"
	"fmt"
	"log"

	"omendb"
)

func main() {
	index, err := omendb.New(omendb.DefaultOptions(3, omendb.Cosine))
	if err != nil {
		log.Fatal(err)
	}
	defer index.Close()

	ids := []uint64{7, 8, 9}
	vectors := []float32{1, 0, 0, 0, 1, 0, 0, 0, 1} // row-major: len(ids) x 3
	if err := index.InsertBatch(ids, vectors); err != nil {
		log.Fatal(err)
	}
	results, err := index.Search([]float32{0.9, 0.1, 0}, 2, 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Printf("id %d distance %.4f\n", r.ID, r.Distance)
	}
	// Errors carry the library's status.
	if err := index.InsertBatch([]uint64{7}, []float32{1, 1, 1}); errors.Is(err, omendb.ErrDuplicateID) {
		fmt.Println("rejected:", err)
	}
	if results[0].ID != 7 {
		log.Fatalf("expected id 7 first, got %d", results[0].ID)
	}
}
