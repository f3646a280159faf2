//go:build !omendb_pkgconfig

package omendb

// By default the package builds against this checkout: the header in include/ and the library
// that `cargo build --release` leaves in target/release. Build with `-tags omendb_pkgconfig` to
// use an installed omendb (`make install`) found through pkg-config instead.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -lomendb -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
