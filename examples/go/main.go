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
	// Change the contents: replace 8's vector, delete 7, read a vector back.
	if err := index.Upsert([]uint64{8}, []float32{0.9, 0.1, 0}); err != nil {
		log.Fatal(err)
	}
	deleted, err := index.Delete([]uint64{7, 12345})
	if err != nil {
		log.Fatal(err)
	}
	vectors, found, err := index.Get([]uint64{8, 7})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", deleted, "; 8 is now", vectors[:3], "; 7 found:", found[1])
}
