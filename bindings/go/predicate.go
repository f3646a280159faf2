package omendb

/*
#include <stdbool.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"sync"
	"unsafe"
)

// filterCall is a SearchParams.Predicate for the length of one call: the library calls it
// through omenGoPredicate from its own threads, so a panic in it is caught there (it cannot
// unwind through C) and raised again once the call returns.
type filterCall struct {
	accepts  func(uint64) bool
	mu       sync.Mutex
	panicked any
}

//export omenGoPredicate
func omenGoPredicate(id C.uint64_t, context unsafe.Pointer) C.bool {
	call := cgo.Handle(*(*C.uintptr_t)(context)).Value().(*filterCall)
	return C.bool(call.run(uint64(id)))
}

func (c *filterCall) run(id uint64) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.mu.Lock()
			if c.panicked == nil {
				c.panicked = r
			}
			c.mu.Unlock()
			ok = false
		}
	}()
	return c.accepts(id)
}
