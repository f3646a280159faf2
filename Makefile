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

.PHONY: all lib header demo install test test-rust test-npm51k test-c test-install test-go test-examples test-python test-asan lint \
	bench bench-peers bench-clustered bench-wide bench-quantized bench-deletes bench-filtered bench-heap-mapped bench-ab bench-overhead clean bench-storage fuzz

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

# Installs like a C library: versioned .so with soname links, .a, headers, pkg-config file; and
# the command-line tool `omendb` (cli/) in $(BINDIR).
BINDIR ?= $(PREFIX)/bin
# The tool reads HDF5 files when the HDF5 library is installed (libhdf5-dev).
CLI_FEATURES ?= $(shell pkg-config --exists hdf5 2>/dev/null && echo --features hdf5)
install: lib
	$(CARGO) build --release -p omendb-cli $(CLI_FEATURES)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)
	install -m 755 $(RELEASE)/omendb $(DESTDIR)$(BINDIR)/omendb
	install -m 644 include/omendb.h include/omendb.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(RELEASE)/libomendb.so $(DESTDIR)$(LIBDIR)/libomendb.so.$(VERSION)
	ln -sf libomendb.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libomendb.so.$(SOVERSION)
	ln -sf libomendb.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libomendb.so
	install -m 644 $(RELEASE)/libomendb.a $(DESTDIR)$(LIBDIR)/libomendb.a
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: omendb' 'Description: Embeddable vector search engine (segmented HNSW)' 'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lomendb' 'Libs.private: -lpthread -ldl -lm' 'Cflags: -I$${includedir}' \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/omendb.pc

# Each suite runs or says why it cannot (in $(SKIPPED)); the summary names what ran and what was
# skipped. In CI (CI=true) a skipped suite is a failure: there everything must run.
SUITES  := lint test-rust test-npm51k test-c test-install test-go test-examples test-python test-asan
SKIPPED := $(BUILD)/skipped-suites
skip = { echo "$(1): $(2)" >> $(SKIPPED); echo "SKIPPED $(1): $(2)"; \
	if [ "$$CI" = true ]; then echo "$(1) must run in CI" >&2; exit 1; fi; }

test: | $(BUILD)
	@rm -f $(SKIPPED)
	@$(MAKE) --no-print-directory $(SUITES)
	@if [ -s $(SKIPPED) ]; then \
	  echo "make test: every suite that ran passed; SKIPPED:"; sed 's/^/  /' $(SKIPPED); \
	else echo "make test: all $(words $(SUITES)) suites ran and passed ($(SUITES))"; fi

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --features omendb-cli/hdf5 --quiet -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-targets --features omendb-cli/hdf5
	$(CARGO) test --doc
	$(CARGO) test --quiet --lib report_the_kernel_builds_tested_on_this_cpu -- --nocapture

# Recall on the real npm51k embeddings in ../shared/data (ignored by a plain `cargo test`).
NPM51K := ../shared/data/npm51k_base.f16
test-npm51k: | $(BUILD)
	@if [ -f $(NPM51K) ]; then $(CARGO) test --test npm51k -- --include-ignored --nocapture; \
	else $(call skip,test-npm51k,$(NPM51K) not found); fi

# C and C++ programs against the release library, under AddressSanitizer and UBSan.
test-c: lib | $(BUILD)
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_api.c -o $(BUILD)/test_api $(LINK) -lm
	$(CXX) -std=c++17 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_api.cpp tests/c/test_api_second.cpp -o $(BUILD)/test_api_cpp $(LINK)
	$(CXX) -std=c++17 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_wrapper.cpp -o $(BUILD)/test_wrapper $(LINK)
	grep -o '\bomen_[a-z0-9_]*(' include/omendb.h | tr -d '(' | sort -u | sed 's/.*/"&",/' > $(BUILD)/omen_exports.inc
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude -I$(BUILD) tests/c/test_dlopen.c -o $(BUILD)/test_dlopen -ldl
	$(CC) -std=c11 $(CWARN) $(SANITIZE) -Iinclude tests/c/test_storage.c -o $(BUILD)/test_storage $(LINK)
	$(CC) -O2 -std=c11 $(CWARN) $(SANITIZE) -Iinclude examples/c/demo.c -o $(BUILD)/demo_asan $(LINK) -lm
	./$(BUILD)/test_api
	./$(BUILD)/test_api_cpp
	./$(BUILD)/test_wrapper
	./$(BUILD)/test_dlopen $(RELEASE)/libomendb.so
	rm -rf $(BUILD)/test_storage.db* && ./$(BUILD)/test_storage $(BUILD)/test_storage.db && rm -rf $(BUILD)/test_storage.db*
	./$(BUILD)/demo_asan 5000 32

# Installs into a scratch prefix and builds examples/c/hello.c with pkg-config alone.
test-install: lib | $(BUILD)
	rm -rf $(BUILD)/prefix $(BUILD)/stage
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(BUILD))/prefix CLI_FEATURES=  # HDF5 is tested in test-rust
	test "$$(readelf -d $(BUILD)/prefix/lib/libomendb.so | sed -n 's/.*soname: \[\(.*\)\]/\1/p')" = libomendb.so.$(SOVERSION)
	PKG_CONFIG_PATH=$(abspath $(BUILD))/prefix/lib/pkgconfig sh -c \
	  '$(CC) -std=c11 $(CWARN) examples/c/hello.c $$(pkg-config --cflags --libs omendb) -o $(BUILD)/hello'
	LD_LIBRARY_PATH=$(abspath $(BUILD))/prefix/lib ./$(BUILD)/hello
	PKG_CONFIG_PATH=$(abspath $(BUILD))/prefix/lib/pkgconfig sh -c \
	  '$(CC) -std=c11 $(CWARN) -static-libgcc examples/c/hello.c $$(pkg-config --cflags omendb) $(abspath $(BUILD))/prefix/lib/libomendb.a $$(pkg-config --libs-only-l --static omendb | sed s/-lomendb//) -o $(BUILD)/hello_static'
	./$(BUILD)/hello_static
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD))/stage PREFIX=/usr CLI_FEATURES=
	test -L $(BUILD)/stage/usr/lib/libomendb.so -a -f $(BUILD)/stage/usr/lib/pkgconfig/omendb.pc -a -f $(BUILD)/stage/usr/include/omendb.hpp
	$(BUILD)/stage/usr/bin/omendb --version
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
	$(VENV)/bin/pip install --quiet ray pandas pyarrow   # omendb.distributed and its tests (Ray Data)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python -m pytest -q -rs python/tests
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/pip install --quiet ./python
	cd $(BUILD) && $(abspath $(VENV))/bin/python -c 'import omendb, pathlib; assert pathlib.Path(omendb.library_path()).parent == pathlib.Path(omendb.__file__).parent, omendb.library_path()'
	cd $(BUILD) && $(abspath $(VENV))/bin/python $(abspath examples/python/example.py)

# The Rust concurrency, FFI and storage tests once more, instrumented by AddressSanitizer
# (nightly only; fewer crash rounds).
test-asan: | $(BUILD)
ifeq ($(NIGHTLY_OK),yes)
	RUSTFLAGS=-Zsanitizer=address CARGO_TARGET_DIR=target/asan OMENDB_CRASH_ROUNDS=10 \
	  $(CARGO) +nightly test --target x86_64-unknown-linux-gnu --lib --test concurrency --test ffi --test ffi_random \
	  --test storage --test corruption
else
	@$(call skip,test-asan,no nightly toolchain (cargo +nightly) for the -Zsanitizer=address run)
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

# omendb beside hnswlib, faiss, usearch and voyager on npm51k (the data in ../shared/data; the
# harness in benches/peers/). Every peer figure in README.md names the target that produced it.
PEERS_VENV := $(VENV)/bin/pip install --quiet faiss-cpu hnswlib usearch voyager
NPM51K_DATA := ../shared/data/npm51k
bench-peers: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	$(VENV)/bin/python benches/peers/ann_peers.py $(NPM51K_DATA) --metric cos --threads 2 \
	  --omendb python/ | tee $(BUILD)/peers.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/peers.txt

# Generated clustered 128-d data (CLUSTERED_N vectors, default 1M), omendb beside hnswlib; set
# SEGMENT_CAPACITY to compare segment sizes (README: 262144 vs the default).
CLUSTERED_N ?= 1000000
SEGMENT_CAPACITY ?= 1048576
bench-clustered: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	test -f $(BUILD)/clustered$(CLUSTERED_N)_base.fvecs || \
	  $(VENV)/bin/python benches/peers/gen_clustered.py $(BUILD)/clustered$(CLUSTERED_N) $(CLUSTERED_N) 128
	$(VENV)/bin/python benches/peers/ann_peers.py $(BUILD)/clustered$(CLUSTERED_N) --metric l2 --threads 2 \
	  --peers hnswlib --omendb python/ --omendb-opt segment_capacity=$(SEGMENT_CAPACITY) \
	  | tee $(BUILD)/clustered.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/clustered.txt

# Wide vectors, generated as the clustered set is: 1536-d cosine (50,000, the width of common
# text-embedding APIs) and 768-d inner product (100,000), omendb beside hnswlib and faiss, then
# omendb's codes against its own f32 walk on the 1536-d set.
bench-wide: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	test -f $(BUILD)/c1536_base.fvecs || $(VENV)/bin/python benches/peers/gen_clustered.py $(BUILD)/c1536 50000 1536
	test -f $(BUILD)/c768_base.fvecs || $(VENV)/bin/python benches/peers/gen_clustered.py $(BUILD)/c768 100000 768
	$(VENV)/bin/python benches/peers/ann_peers.py $(BUILD)/c1536 --metric cos --threads 2 --repeat 2 \
	  --peers hnswlib,faiss --omendb python/ | tee $(BUILD)/wide1536.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/wide1536.txt
	$(VENV)/bin/python benches/peers/ann_peers.py $(BUILD)/c768 --metric ip --threads 2 --repeat 2 \
	  --peers hnswlib,faiss --omendb python/ | tee $(BUILD)/wide768.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/wide768.txt
	$(VENV)/bin/python benches/peers/quantized.py $(BUILD)/c1536 --metric cos --omendb python/ --rounds 2 \
	  --no-resident --efs 10,20,40,80 --systems omendb-none,omendb-4bit,omendb-8bit,omendb-binary,omendb-binary/os5 \
	  | tee $(BUILD)/wide-quantized.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/wide-quantized.txt

# The omendb tool: import rate against the library's batch insert, bench's recall against
# ann_peers.py, backup time and bytes (full, then incremental after 1% more), on npm51k and on
# the 1M clustered set (when `make bench-clustered` has generated it).
bench-cli: lib $(VENV)/bin/python | $(BUILD)
	$(CARGO) build --release -p omendb-cli $(CLI_FEATURES)
	benches/cli/run.sh npm51k $(NPM51K) ../shared/data/npm51k_query.fvecs ../shared/data/npm51k_groundtruth.ivecs cos 384 | tee $(BUILD)/cli-npm51k.txt
	test ! -f $(BUILD)/clustered1000000_base.fvecs || RECALL=0 benches/cli/run.sh clustered1000000 \
	  $(BUILD)/clustered1000000_base.fvecs $(BUILD)/clustered1000000_query.fvecs none l2 128 | tee $(BUILD)/cli-1m.txt

# The sharded index on a local Ray (1, 2, 4 shards) beside one Index, on npm51k (docs/scale-out.md).
bench-distributed: lib $(VENV)/bin/python | $(BUILD)
	$(VENV)/bin/pip install --quiet ray
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/distributed/shards.py $(NPM51K_DATA) \
	  | tee $(BUILD)/distributed.txt

# omendb's codes beside usearch's and faiss's quantized modes on npm51k.
# On npm51k by default; `make bench-deletes DELETES_DATA=build/clustered1000000 DELETES_METRIC=l2`
# after `make bench-clustered` has generated that set.
DELETES_DATA ?= $(NPM51K_DATA)
DELETES_METRIC ?= cos
bench-deletes: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/peers/deletes.py \
	  $(DELETES_DATA) --metric $(DELETES_METRIC) --omendb python/ | tee $(BUILD)/deletes.txt

# Filtered search beside hnswlib (filter functor), faiss (IDSelectorBatch) and usearch
# (post-filtering) on npm51k; FILTERED_DATA/FILTERED_METRIC/FILTERED_PEERS as for bench-deletes.
FILTERED_DATA ?= $(NPM51K_DATA)
FILTERED_METRIC ?= cos
FILTERED_PEERS ?= hnswlib,faiss,usearch
bench-filtered: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/peers/filtered.py \
	  $(FILTERED_DATA) --metric $(FILTERED_METRIC) --peers $(FILTERED_PEERS) --omendb python/ | tee $(BUILD)/filtered.txt

bench-quantized: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/peers/quantized.py \
	  $(NPM51K_DATA) --metric cos --omendb python/ | tee $(BUILD)/quantized.txt
	$(VENV)/bin/python benches/peers/compare.py < $(BUILD)/quantized.txt

# One graph searched on the heap it was built in and mapped from its snapshot, alternately
# (identical results checked): npm51k, then 300K and 1M of the clustered set when
# `make bench-clustered` has generated it.
bench-heap-mapped: lib $(VENV)/bin/python | $(BUILD)
	$(PEERS_VENV)
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/peers/heap_mapped.py \
	  $(NPM51K_DATA) --metric cos --omendb python/ | tee $(BUILD)/heap-mapped.txt
	for n in 300000 1000000; do test ! -f $(BUILD)/clustered1000000_base.fvecs || \
	  OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/peers/heap_mapped.py \
	  $(BUILD)/clustered1000000 --n $$n --metric l2 --omendb python/ | tee -a $(BUILD)/heap-mapped.txt; done

# This tree beside the library built from BASE (default: the previous commit), alternately, ROUNDS
# times, on npm51k: build vectors/s and, per ef, recall@10 / queries per CPU second on one thread.
BASE   ?= HEAD~1
ROUNDS ?= 3
bench-ab: lib | $(BUILD)
	rm -rf $(BUILD)/ab-base && git worktree prune && git worktree add --detach $(BUILD)/ab-base $(BASE)
	cd $(BUILD)/ab-base && $(CARGO) build --release --quiet && ln -sf libomendb.so target/release/libomendb.so.$(SOVERSION)
	$(CC) -O2 -std=c11 $(CWARN) -Iinclude benches/ab/ab.c -o $(BUILD)/ab $(LINK) -lm
	for round in $$(seq $(ROUNDS)); do \
	  printf 'base %s  ' "$(BASE)"; LD_LIBRARY_PATH=$(BUILD)/ab-base/target/release ./$(BUILD)/ab $(NPM51K_DATA); \
	  printf 'this tree  '; ./$(BUILD)/ab $(NPM51K_DATA); \
	done
	git worktree remove --force $(BUILD)/ab-base

# Per-call cost of a single-query search from C, Go and Python on the same data.
bench-overhead: lib $(VENV)/bin/python | $(BUILD)
	$(CC) -O2 -std=c11 $(CWARN) -Iinclude benches/overhead/overhead.c -o $(BUILD)/overhead $(LINK) -lm
	./$(BUILD)/overhead
	cd bindings/go && $(GO) test -run '^$$' -bench SearchTiny -benchtime 200000x . | grep ns/op
	OMENDB_LIBRARY=$(abspath $(RELEASE))/libomendb.so $(VENV)/bin/python benches/overhead/overhead.py

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
