# omendb: `make demo` runs the demo, `make test` runs every test. See README.md.

CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
GO         ?= go
PYTHON     ?= python3
RELEASE    := target/release
BUILD      := build
VENV       := .venv
RPATH      := -Wl,-rpath,$(abspath $(RELEASE))
LINK       := -L$(RELEASE) -lomendb $(RPATH)
SANITIZE   := -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CWARN      := -Wall -Wextra -Werror -Wpedantic
NIGHTLY_OK := $(shell $(CARGO) +nightly --version >/dev/null 2>&1 && echo yes)
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOVERSION  := $(shell echo $(VERSION) | awk -F. '{ print ($$1 == 0) ? "0." $$2 : $$1 }')
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

.PHONY: all lib header demo install test test-rust test-c test-install test-go test-examples test-python test-asan lint \
	bench bench-peers bench-overhead clean bench-storage fuzz

all: lib

# The library carries a soname (libomendb.so.$(SOVERSION)); programs linked against target/release
# look for that name, so give it one there too.
lib:
	$(CARGO) build --release
	ln -sf libomendb.so $(RELEASE)/libomendb.so.$(SOVERSION)

# Copies the header that build.rs generates from src/ffi/ over the committed include/omendb.h
# (tests/header.rs fails while the two differ).
header:
	OMENDB_UPDATE_HEADER=1 $(CARGO) test --quiet --test header committed_header_is_what_the_source_generates

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/demo: examples/c/demo.c include/omendb.h lib | $(BUILD)
	$(CC) -O2 -std=c11 $(CWARN) -Iinclude $< -o $@ $(LINK) -lm

demo: $(BUILD)/demo
	./$(BUILD)/demo

# Installs like a C library: versioned .so with soname links, .a, headers, pkg-config file.
install: lib
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 include/omendb.h include/omendb.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(RELEASE)/libomendb.so $(DESTDIR)$(LIBDIR)/libomendb.so.$(VERSION)
	ln -sf libomendb.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libomendb.so.$(SOVERSION)
	ln -sf libomendb.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libomendb.so
	install -m 644 $(RELEASE)/libomendb.a $(DESTDIR)$(LIBDIR)/libomendb.a
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: omendb' 'Description: Embeddable vector search engine (segmented HNSW)' 'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lomendb' 'Libs.private: -lpthread -ldl -lm' 'Cflags: -I$${includedir}' \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/omendb.pc

test: lint test-rust test-c test-install test-go test-examples test-python test-asan
	@echo "make test: every suite passed"

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

test-rust:
	$(CARGO) test --all-targets
	$(CARGO) test --doc

# C and C++ programs against the release library, under AddressSanitizer and UBSan.
test-c: lib | $(BUILD)
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_api.c -o $(BUILD)/test_api $(LINK) -lm
	$(CXX) -std=c++17 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_api.cpp tests/c/test_api_second.cpp -o $(BUILD)/test_api_cpp $(LINK)
	$(CXX) -std=c++17 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_wrapper.cpp -o $(BUILD)/test_wrapper $(LINK)
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_dlopen.c -o $(BUILD)/test_dlopen -ldl
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_storage.c -o $(BUILD)/test_storage $(LINK)
	$(CC) -O2 -std=c11 $(CWARN) $(SANITIZE) -Iinclude examples/c/demo.c -o $(BUILD)/demo_asan $(LINK) -lm
	./$(BUILD)/test_api
	./$(BUILD)/test_api_cpp
	./$(BUILD)/test_wrapper
	./$(BUILD)/test_dlopen $(RELEASE)/libomendb.so
	rm -rf $(BUILD)/test_storage.db && ./$(BUILD)/test_storage $(BUILD)/test_storage.db && rm -rf $(BUILD)/test_storage.db
	./$(BUILD)/demo_asan 5000 32

# Installs into a scratch prefix and builds examples/c/hello.c with pkg-config alone.
test-install: lib | $(BUILD)
	rm -rf $(BUILD)/prefix $(BUILD)/stage
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(BUILD))/prefix
	test "$$(readelf -d $(BUILD)/prefix/lib/libomendb.so | sed -n 's/.*soname: \[\(.*\)\]/\1/p')" = libomendb.so.$(SOVERSION)
	PKG_CONFIG_PATH=$(abspath $(BUILD))/prefix/lib/pkgconfig sh -c \
	  '$(CC) -std=c11 $(CWARN) examples/c/hello.c $$(pkg-config --cflags --libs omendb) -o $(BUILD)/hello'
	LD_LIBRARY_PATH=$(abspath $(BUILD))/prefix/lib ./$(BUILD)/hello
	PKG_CONFIG_PATH=$(abspath $(BUILD))/prefix/lib/pkgconfig sh -c \
	  '$(CC) -std=c11 $(CWARN) -static-libgcc examples/c/hello.c $$(pkg-config --cflags omendb) $(abspath $(BUILD))/prefix/lib/libomendb.a $$(pkg-config --libs-only-l --static omendb | sed s/-lomendb//) -o $(BUILD)/hello_static'
	./$(BUILD)/hello_static
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD))/stage PREFIX=/usr
	test -L $(BUILD)/stage/usr/lib/libomendb.so -a -f $(BUILD)/stage/usr/lib/pkgconfig/omendb.pc -a -f $(BUILD)/stage/usr/include/omendb.hpp
	@echo "test-install: pkg-config, soname, static and DESTDIR installs all passed"

# The Go binding: vet, and its tests under the race detector (goroutines search while one inserts).
test-go: lib
	test -z "$$(gofmt -l bindings/go examples/go)" || { gofmt -l bindings/go examples/go; exit 1; }
	cd bindings/go && $(GO) vet ./... && $(GO) test -race -count=1 ./...

# Every example a user copies is built and run, so none can rot.
test-examples: lib $(VENV)/bin/python | $(BUILD)
	$(CXX) -std=c++17 $(CWARN) -Iinclude examples/cpp/example.cpp -o $(BUILD)/example_cpp $(LINK)
	./$(BUILD)/example_cpp
	$(CC) -std=c11 $(CWARN) -Iinclude examples/c/database.c -o $(BUILD)/database $(LINK)
	rm -rf $(BUILD)/example.db && ./$(BUILD)/database $(BUILD)/example.db && ./$(BUILD)/database $(BUILD)/example.db
	cd examples/go && $(GO) vet . && $(GO) run .
	PYTHONPATH=python OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python examples/python/example.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet numpy pytest

# The binding's tests against the checkout, then `pip install ./python` and the example run from
# the installed package (its bundled library) outside the checkout.
test-python: lib $(VENV)/bin/python | $(BUILD)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python -m pytest -q python/tests
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/pip install --quiet ./python
	cd $(BUILD) && $(abspath $(VENV))/bin/python -c 'import omendb, pathlib; assert pathlib.Path(omendb.library_path()).parent == pathlib.Path(omendb.__file__).parent, omendb.library_path()'
	cd $(BUILD) && $(abspath $(VENV))/bin/python $(abspath examples/python/example.py)

# The Rust concurrency, FFI and storage tests once more, instrumented by AddressSanitizer
# (nightly only; fewer crash rounds).
test-asan:
ifeq ($(NIGHTLY_OK),yes)
	RUSTFLAGS=-Zsanitizer=address CARGO_TARGET_DIR=target/asan OMENDB_CRASH_ROUNDS=10 \
	  $(CARGO) +nightly test --target x86_64-unknown-linux-gnu --lib --test concurrency --test ffi --test ffi_random \
	  --test storage --test corruption
else
	@echo "SKIPPED test-asan: no nightly toolchain (cargo +nightly), so no -Zsanitizer=address run"
endif

bench:
	$(CARGO) bench

# Durable storage against memory: open time and RSS at OMENDB_BENCH_N vectors (default 1M),
# WAL vs in-memory inserts, mapped vs heap queries/s.
bench-storage:
	$(CARGO) bench --bench storage

# Fuzzes the database file readers (nightly and cargo-fuzz; seeds from a real database).
FUZZ_SECONDS ?= 60
fuzz: lib $(VENV)/bin/python
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python fuzz/make_seeds.py
	cd fuzz && $(CARGO) +nightly fuzz run open_files corpus/open_files -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

# omendb beside hnswlib, faiss, usearch and voyager on npm51k (needs ../shared).
bench-peers: lib $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet faiss-cpu hnswlib usearch voyager
	$(VENV)/bin/python ../shared/bench/ann_peers.py ../shared/data/npm51k --metric cos --threads 2 \
	  --omendb python/ | tee $(BUILD)/peers.txt
	$(VENV)/bin/python ../shared/bench/compare.py < $(BUILD)/peers.txt

# Per-call cost of a single-query search from C, Go and Python on the same data.
bench-overhead: lib $(VENV)/bin/python | $(BUILD)
	$(CC) -O2 -std=c11 $(CWARN) -Iinclude benches/overhead/overhead.c -o $(BUILD)/overhead $(LINK) -lm
	./$(BUILD)/overhead
	cd bindings/go && $(GO) test -run '^$$' -bench SearchTiny -benchtime 200000x . | grep ns/op
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/overhead/overhead.py

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
