//go:build omendb_pkgconfig

package omendb

/*
#cgo pkg-config: omendb
*/
import "C"
